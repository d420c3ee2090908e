"""nice_edges puts at most the asked-for bins on round numbers covering the values; Distribution
counts by those edges exactly; render_bars draws eighth-blocks."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest

from asyncdl.errors import ConfigError
from asyncdl.tools.histogram import (
    Distribution,
    Histogram,
    ValueRange,
    finite_values,
    nice_edges,
    render_bars,
)


@pytest.mark.parametrize(
    ("low", "high", "bins", "edges"),
    [
        (0.0, 100.0, 10, tuple(float(10 * i) for i in range(11))),
        (0.0, 100.0, 4, (0.0, 25.0, 50.0, 75.0, 100.0)),
        (0.0003, 0.97, 10, tuple(i / 10 for i in range(11))),
        (0.0003, 0.97, 20, tuple(round(i * 0.05, 2) for i in range(21))),
        (12.3, 87.9, 10, tuple(float(10 * i) for i in range(1, 10))),
        (1.0, 100.0, 10, tuple(float(10 * i) for i in range(11))),
        (-3.2, 4.1, 8, (-4.0, -2.0, 0.0, 2.0, 4.0, 6.0)),
        (-250.0, 1e6, 1, (-250.0, 1e6)),  # no round step straddles zero in one bin
        (1_000.0, 250_000.0, 5, (0.0, 50_000.0, 100_000.0, 150_000.0, 200_000.0, 250_000.0)),
        (0.3, 0.7, 4, (0.3, 0.4, 0.5, 0.6, 0.7)),
        (5.0, 5.0, 10, (5.0, 5.0)),
        (0.0, 1.0, 1, (0.0, 1.0)),
    ],
)
def test_nice_edges(low: float, high: float, bins: int, edges: tuple[float, ...]) -> None:
    assert nice_edges(low, high, bins=bins) == edges


@pytest.mark.parametrize("bins", [1, 2, 3, 7, 10, 13, 50])
@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (0.017, 0.93), (-250.0, 1e6), (3.0, 3.5)])
def test_nice_edges_cover_the_range_in_at_most_the_bins(low: float, high: float, bins: int) -> None:
    edges = nice_edges(low, high, bins=bins)
    assert edges[0] <= low
    assert edges[-1] >= high
    assert 1 <= len(edges) - 1 <= bins
    steps = {round(b - a, 9) for a, b in itertools.pairwise(edges)}
    assert len(steps) == 1  # equal widths


def test_nice_edges_refuse_zero_bins() -> None:
    with pytest.raises(ConfigError):
        nice_edges(0.0, 1.0, bins=0)


def distribution(values: list[float | None], *, bins: int) -> Distribution:
    batches = [
        finite_values(pa.array(values[:3], pa.float64())),
        finite_values(pa.array(values[3:], pa.float64())),
    ]
    span = ValueRange()
    for batch in batches:
        span.add(batch)
    result = Distribution(span, bins=bins)
    for batch in batches:
        result.add(batch)
    return result


def test_values_on_edges_open_the_bin_their_label_starts() -> None:
    # 0.3, 0.6 and 0.7 divided by 0.1 land just below 3, 6 and 7 in floating point.
    histogram = distribution([0.0, 0.3, 0.6, 0.7, 0.29999, 1.0, None], bins=10).histogram()
    assert histogram.edges == tuple(i / 10 for i in range(11))
    assert histogram.counts == (1, 0, 1, 1, 0, 0, 1, 1, 0, 1)


def test_summary_and_an_empty_distribution() -> None:
    summary = distribution([4.0, 1.0, 3.0, 2.0, float("nan")], bins=3).summary()
    assert (summary.count, summary.min, summary.max, summary.mean) == (4, 1.0, 4.0, 2.5)
    assert summary.p50 == pytest.approx(2.0, abs=0.01)
    with pytest.raises(ConfigError):
        Distribution(ValueRange(), bins=10)


def test_histogram_step_low_high() -> None:
    histogram = Histogram(edges=(0.0, 0.25, 0.5), counts=(1, 2))
    assert (histogram.low, histogram.high, histogram.step) == (0.0, 0.5, 0.25)


def test_render_bars_scales_to_the_largest_bin() -> None:
    histogram = Histogram(edges=(0.0, 10.0, 20.0, 30.0), counts=(8, 4, 0))
    assert render_bars(histogram, width=8) == [
        " 0-10  ████████  8",
        "10-20  ████      4",
        "20-30" + " " * 12 + "0",
    ]


def test_render_bars_uses_eighth_blocks_and_thousands_separators() -> None:
    histogram = Histogram(edges=(0.0, 10.0, 100.0), counts=(1_234, 8_000))
    lines = render_bars(histogram, width=2)
    # 1234 / 8000 * 16 eighths = 2.47 → 2 eighths, the quarter block.
    assert lines == ["  0-10  ▎" + " " * 3 + "1,234", "10-100  ██  8,000"]


def test_render_bars_shows_tiny_bins() -> None:
    lines = render_bars(Histogram(edges=(0.0, 1.0, 2.0), counts=(10_000, 1)), width=4)
    assert lines[1] == "1-2  ▏" + " " * 10 + "1"


def test_render_bars_of_an_empty_histogram() -> None:
    lines = render_bars(Histogram(edges=(0.0, 50.0, 100.0), counts=(0, 0)), width=3)
    assert lines == ["  0-50" + " " * 7 + "0", "50-100" + " " * 7 + "0"]


def test_render_bars_rejects_a_zero_width() -> None:
    with pytest.raises(ConfigError):
        render_bars(Histogram(edges=(0.0, 1.0), counts=(1,)), width=0)
