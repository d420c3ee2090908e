"""The distribution of one numeric column, streamed in two passes: the exact range first, then a
histogram on round edges over that range (``nice_edges``) and a fine one the quartiles are read
from; ``render_bars`` turns a histogram into text lines.

A Customer AI score is 0-100 but its probability is 0-1, and other datasets have any range, so
the bins follow the values rather than a fixed scale; reading the column twice is what an exact
range costs without holding every value. Nothing here prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError

__all__ = [
    "Distribution",
    "Histogram",
    "Summary",
    "ValueRange",
    "add_counts",
    "bin_indices",
    "finite_values",
    "nice_edges",
    "render_bars",
]

#: Bins of the fine histogram the quantiles are read from (1/1000 of the range each).
QUANTILE_BINS = 1000
# Steps of 1, 2, 2.5 and 5 times a power of ten: ticks a reader can count in.
_MANTISSAS = (1.0, 2.0, 2.5, 5.0)

# One eighth of a block per step: a 40-wide bar then resolves 320 levels.
_EIGHTHS = ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")
_FULL_BLOCK = "█"


@dataclass(frozen=True, kw_only=True, slots=True)
class Histogram:
    """Counts per bin; bin ``i`` holds ``edges[i] <= x < edges[i + 1]`` (the last bin also holds
    its upper edge). ``edges[0] <= min`` and ``edges[-1] >= max`` of the values counted."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def low(self) -> float:
        return self.edges[0]

    @property
    def high(self) -> float:
        return self.edges[-1]

    @property
    def step(self) -> float:
        """The width of a bin (0.0 when every value was the same)."""
        return (self.high - self.low) / len(self.counts)


@dataclass(frozen=True, kw_only=True, slots=True)
class Summary:
    """Non-null, finite values of a column: ``count``, ``min``, ``max`` and ``mean`` are exact;
    the quartiles are interpolated from a fine histogram (see ``Distribution``)."""

    count: int
    min: float
    max: float
    mean: float
    p25: float
    p50: float
    p75: float


def nice_edges(low: float, high: float, *, bins: int) -> tuple[float, ...]:
    """At most ``bins`` equal bins on round numbers (steps of 1, 2, 2.5 or 5 times a power of
    ten) that cover ``low..high``: 0.0003..0.97 in 10 gives 0, 0.1, ..., 1.

    The smallest such step wins, so the count is ``bins`` or a little fewer. Where no round step
    fits (one bin for a range that straddles zero) the bins are equal parts of ``low..high``;
    ``low == high`` (or a span too wide for a float) is one bin from ``low`` to ``high``.
    """
    if bins < 1:
        raise ConfigError(f"bins must be at least 1, not {bins}")
    span = high - low
    if not span > 0 or not math.isfinite(span):
        return (low, high)
    exponent = math.floor(math.log10(span / bins))
    # Past ten times the largest magnitude a bigger step only moves the edges away from zero.
    last_exponent = math.floor(math.log10(max(abs(low), abs(high)))) + 1
    while exponent <= last_exponent:
        for mantissa in _MANTISSAS:
            step = mantissa * 10.0**exponent
            edges = _round_edges(low, high, step=step, digits=max(0, 1 - exponent))
            if len(edges) - 1 <= bins:
                return edges
        exponent += 1
    width = span / bins
    return (*(low + width * index for index in range(bins)), high)


def _round_edges(low: float, high: float, *, step: float, digits: int) -> tuple[float, ...]:
    """The multiples of ``step`` from the last at or below ``low`` to the first at or above
    ``high``, each rounded to ``digits`` decimals so 0.1 * 3 is 0.3 and compares as 0.3."""

    def edge(index: int) -> float:
        return round(index * step, digits)

    # The division rounds either way: the rounded edges themselves decide which index fits.
    first, last = math.floor(low / step), math.ceil(high / step)
    if edge(first + 1) <= low:
        first += 1
    elif edge(first) > low:
        first -= 1
    if edge(last - 1) >= high:
        last -= 1
    elif edge(last) < high:
        last += 1
    return tuple(edge(index) for index in range(first, last + 1))


def finite_values(column: pa.Array[Any]) -> pa.Array[Any]:
    """The column as doubles without nulls, NaN and infinities (what a distribution counts)."""
    values = pc.cast(column, pa.float64(), safe=False)
    # Nulls in the mask make filter drop the row too, so nulls and NaN/inf go together.
    finite: pa.Array[Any] = values.filter(pc.is_finite(values))
    return finite


class ValueRange:
    """Pass one: the exact count, min, max and sum of the finite values seen."""

    def __init__(self) -> None:
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        self._sums: list[float] = []

    def add(self, values: pa.Array[Any]) -> None:
        """Take a batch of ``finite_values``."""
        if not len(values):
            return
        extremes = pc.min_max(values)
        self.min = min(self.min, extremes["min"].as_py())
        self.max = max(self.max, extremes["max"].as_py())
        self.count += len(values)
        self._sums.append(pc.sum(values).as_py())

    @property
    def mean(self) -> float:
        return math.fsum(self._sums) / self.count if self.count else math.nan


class Distribution:
    """Pass two, over a known range: counts on ``nice_edges`` and on 1000 fine bins.

    p25/p50/p75 are interpolated linearly inside the fine bin that holds the rank and clamped to
    the exact min/max, so their error is at most a thousandth of the range beyond the gap between
    neighbouring values (exact quantiles need every value in memory, and pyarrow's per-batch
    t-digests cannot be merged).
    """

    def __init__(self, span: ValueRange, *, bins: int) -> None:
        if not span.count:
            raise ConfigError("a distribution needs at least one finite value")
        self._span = span
        self._edges = nice_edges(span.min, span.max, bins=bins)
        self._edge_array = pa.array(self._edges, pa.float64())
        self._coarse = [0] * (len(self._edges) - 1)
        self._fine = [0] * QUANTILE_BINS

    def add(self, values: pa.Array[Any]) -> None:
        """Take the same batches of ``finite_values`` as pass one did."""
        if not len(values):
            return
        add_counts(self._coarse, self._coarse_indices(values))
        low, high = self._span.min, self._span.max
        add_counts(self._fine, bin_indices(values, low, high, QUANTILE_BINS))

    def histogram(self) -> Histogram:
        return Histogram(edges=self._edges, counts=tuple(self._coarse))

    def summary(self) -> Summary:
        span = self._span
        return Summary(
            count=span.count,
            min=span.min,
            max=span.max,
            mean=span.mean,
            p25=self._quantile(0.25),
            p50=self._quantile(0.50),
            p75=self._quantile(0.75),
        )

    def _coarse_indices(self, values: pa.Array[Any]) -> pa.Array[Any]:
        bins = len(self._coarse)
        guess = bin_indices(values, self._edges[0], self._edges[-1], bins)
        if bins == 1:
            return guess
        # The division can put a value that sits on an edge into the neighbouring bin; the
        # edges themselves decide, so 0.3 opens the bin 0.3-0.4 as its label says.
        below = pc.and_(
            pc.less(values, pc.take(self._edge_array, guess)),
            pc.greater(guess, pa.scalar(0, pa.int64())),
        )
        upper = pc.take(self._edge_array, pc.add(guess, pa.scalar(1, pa.int64())))
        above = pc.and_(
            pc.greater_equal(values, upper), pc.less(guess, pa.scalar(bins - 1, pa.int64()))
        )
        shift = pc.subtract(pc.cast(above, pa.int64()), pc.cast(below, pa.int64()))
        fixed: pa.Array[Any] = pc.add(guess, shift)
        return fixed

    def _quantile(self, q: float) -> float:
        low, high = self._span.min, self._span.max
        width = (high - low) / QUANTILE_BINS
        rank = q * self._span.count
        before = 0
        estimate = high
        for index, count in enumerate(self._fine):
            if count and before + count >= rank:
                estimate = low + width * (index + (rank - before) / count)
                break
            before += count
        return min(max(estimate, low), high)


def bin_indices(values: pa.Array[Any], low: float, high: float, bins: int) -> pa.Array[Any]:
    """Bin index per value over ``bins`` equal bins of ``low..high``, values outside folded into
    the end bins (and everything into bin 0 when ``low == high``)."""
    if not high > low:
        zeros: pa.Array[Any] = pa.repeat(pa.scalar(0, pa.int64()), len(values))
        return zeros
    scaled = pc.floor(pc.divide(pc.multiply(pc.subtract(values, low), float(bins)), high - low))
    clamped = pc.min_element_wise(pc.max_element_wise(scaled, 0.0), float(bins - 1))
    indices: pa.Array[Any] = pc.cast(clamped, pa.int64())
    return indices


def add_counts(counts: list[int], indices: pa.Array[Any]) -> None:
    """Add how many ``indices`` name each bin to ``counts``."""
    # value_counts returns at most one entry per bin, so this loop is per bin, not per row.
    tally = pc.value_counts(indices)
    keys = tally.field("values").to_pylist()
    numbers = tally.field("counts").to_pylist()
    for key, number in zip(keys, numbers, strict=True):
        if key is not None and number:
            counts[key] += number


def render_bars(histogram: Histogram, *, width: int = 40) -> list[str]:
    """One text line per bin, ``"  0-10  ████████▍  1,234"``: right-aligned range, a bar scaled
    to the largest bin in eighth-block steps and padded to ``width``, then the count.

    A non-empty bin always shows at least an eighth so it cannot be mistaken for an empty one.
    """
    if width < 1:
        raise ConfigError(f"width must be at least 1, not {width}")
    labels = [
        f"{low:g}-{high:g}" for low, high in zip(histogram.edges, histogram.edges[1:], strict=False)
    ]
    numbers = [f"{count:,}" for count in histogram.counts]
    label_width = max((len(label) for label in labels), default=0)
    number_width = max((len(number) for number in numbers), default=0)
    peak = max(histogram.counts, default=0)
    lines = []
    for label, number, count in zip(labels, numbers, histogram.counts, strict=True):
        eighths = round(count * width * 8 / peak) if peak else 0
        if count and not eighths:
            eighths = 1
        bar = _FULL_BLOCK * (eighths // 8) + _EIGHTHS[eighths % 8]
        lines.append(f"{label:>{label_width}}  {bar:<{width}}  {number:>{number_width}}")
    return lines
