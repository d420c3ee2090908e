"""What did I download: finds the parquet parts below a directory and summarises them in one
streaming pass (row, part and byte counts, the unified schema, a score histogram with summary
statistics, percentile buckets, propensity types and the most common influential factors).

Columns are found by leaf name at the top level or inside struct columns, because real Customer
AI output nests them under ``_<tenant>.<instance>``; a dataset without them still gets the counts
and the schema. Record batches are streamed through ``pyarrow.dataset`` and reduced with
``pyarrow.compute`` as they arrive, so memory stays bounded whatever the size. Nothing here
prints; ``render_bars`` returns text lines for the CLI to show.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .errors import ConfigError

__all__ = [
    "SCORE_RANGE",
    "Bucket",
    "FactorCount",
    "Histogram",
    "PartSet",
    "ScoreReport",
    "Summary",
    "find_parts",
    "inspect_scores",
    "render_bars",
    "scan_parts",
]

#: Customer AI scores are 0-100 by definition; the histogram always spans this range.
SCORE_RANGE = (0.0, 100.0)
#: Bins of the fine histogram the quantiles are read from: 0.1 wide over 0-100.
_QUANTILE_BINS = 1000
_PERCENTILE_BUCKET_WIDTH = 10
_PERCENTILE_BUCKETS = 10
_IMPORTANCE_LEVELS = ("low", "medium", "high")

# Leaf names of the Customer AI columns the report reads.
_SCORE = "score"
_PERCENTILE = "percentileScore"
_PROPENSITY = "propensityType"
_FACTORS = "influentialFactors"

# One eighth of a block per step: a 40-wide bar then resolves 320 levels.
_EIGHTHS = ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")
_FULL_BLOCK = "█"


@dataclass(frozen=True, kw_only=True, slots=True)
class Histogram:
    """Counts per fixed-width bin; bin ``i`` holds ``edges[i] <= x < edges[i + 1]`` (the last
    bin also holds its upper edge)."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Summary:
    """Non-null, finite values of a column: ``count``, ``min``, ``max`` and ``mean`` are exact;
    the quartiles are interpolated from a fine histogram (see ``inspect_scores``)."""

    count: int
    min: float
    max: float
    mean: float
    p25: float
    p50: float
    p75: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Bucket:
    """Rows whose value lies in ``low..high`` (both inclusive)."""

    low: int
    high: int
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class FactorCount:
    """How often a factor code occurs across all rows' factor lists, and at which importance.

    ``count`` may exceed ``low + medium + high`` when some entries have another or no importance.
    """

    code: str
    count: int
    low: int
    medium: int
    high: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PartSet:
    """The parquet parts below a directory, described from their footers alone."""

    directory: Path
    paths: tuple[Path, ...]
    rows: int
    bytes: int
    schema: pa.Schema


@dataclass(frozen=True, kw_only=True, slots=True)
class ScoreReport:
    """Everything ``inspect_scores`` learnt; Customer AI fields are None/empty when absent.

    ``columns_used`` maps each Customer AI leaf name that was found to the dotted path it was
    read from, e.g. ``("score", "_tenant.instance.score")``.
    """

    directory: Path
    parts: int
    rows: int
    bytes: int
    schema: tuple[tuple[str, str], ...]
    columns_used: tuple[tuple[str, str], ...]
    score: Histogram | None
    score_summary: Summary | None
    percentile_buckets: tuple[Bucket, ...]
    propensity_types: tuple[tuple[str, int], ...]
    top_factors: tuple[FactorCount, ...]


def find_parts(directory: Path, *, exclude: Iterable[Path] = ()) -> tuple[Path, ...]:
    """Every ``*.parquet`` file below ``directory``, recursively, sorted by path.

    Names starting with ``.`` or ``_`` are skipped, as pyarrow and Spark readers do (hidden temp
    files, ``_SUCCESS`` markers); ``.part`` downloads and ``manifest.json`` never match the
    pattern. ``exclude`` removes specific files, such as a merge target inside the directory.
    """
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory")
    skip = {path.resolve() for path in exclude}
    try:
        found = sorted(
            path
            for path in directory.rglob("*.parquet")
            if not path.name.startswith((".", "_"))
            and path.is_file()
            and path.resolve() not in skip
        )
    except OSError as exc:
        raise ConfigError(f"cannot list {directory}: {exc}") from exc
    if not found:
        raise ConfigError(f"no .parquet files below {directory}")
    return tuple(found)


def scan_parts(directory: Path, *, exclude: Iterable[Path] = ()) -> PartSet:
    """Find the parts and read their footers: rows, sizes and one schema that covers them all.

    Schemas are unified with permissive promotion (int32 with int64 gives int64, a column
    missing from some parts is null there); parts whose types cannot be reconciled are refused.
    """
    paths = find_parts(directory, exclude=exclude)
    schemas: list[pa.Schema] = []
    rows = 0
    size = 0
    for path in paths:
        try:
            with pq.ParquetFile(path) as part:
                schemas.append(part.schema_arrow)
                rows += part.metadata.num_rows
            size += path.stat().st_size
        except (OSError, pa.ArrowException) as exc:
            raise ConfigError(f"cannot read {path} as parquet: {exc}") from exc
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ConfigError(f"the parts below {directory} have incompatible schemas: {exc}") from exc
    return PartSet(directory=directory, paths=paths, rows=rows, bytes=size, schema=schema)


def inspect_scores(directory: Path, *, bins: int = 10, top_factors: int = 10) -> ScoreReport:
    """Summarise every parquet part below ``directory`` in one streaming pass.

    Min, max and mean of the score are exact. Exact quantiles would need every value in memory,
    and pyarrow's per-batch t-digests cannot be merged, so p25/p50/p75 come from a 1000-bin
    histogram over 0-100 (0.1 wide), interpolated linearly inside the bin that holds the rank
    and clamped to the exact min/max: the error is at most one fine bin (0.1) beyond the gap
    between the neighbouring values. Scores outside 0-100 count in the end bins; null and NaN
    scores are left out of the histogram and the summary (but not out of ``rows``).
    """
    if bins < 1:
        raise ConfigError(f"bins must be at least 1, not {bins}")
    if top_factors < 0:
        raise ConfigError(f"top_factors must not be negative, not {top_factors}")
    parts = scan_parts(directory)
    located = _locate_columns(parts.schema)
    score = _ScoreStats(bins) if _SCORE in located else None
    percentiles = [0] * _PERCENTILE_BUCKETS if _PERCENTILE in located else None
    propensities: Counter[str] = Counter()
    factors: dict[str, list[int]] = {}
    for batch in _iter_batches(parts, located):
        if score is not None:
            score.add(batch.column(_SCORE))
        if percentiles is not None:
            _count_percentiles(percentiles, batch.column(_PERCENTILE))
        if _PROPENSITY in located:
            _count_values(propensities, batch.column(_PROPENSITY))
        if _FACTORS in located:
            _count_factors(factors, batch.column(_FACTORS))
    return ScoreReport(
        directory=directory,
        parts=len(parts.paths),
        rows=parts.rows,
        bytes=parts.bytes,
        schema=tuple((field.name, str(field.type)) for field in parts.schema),
        columns_used=tuple((leaf, ".".join(path)) for leaf, path in located.items()),
        score=None if score is None else score.histogram(),
        score_summary=None if score is None else score.summary(),
        percentile_buckets=_buckets(percentiles),
        propensity_types=tuple(sorted(propensities.items(), key=lambda kv: (-kv[1], kv[0]))),
        top_factors=_top_factors(factors, top_factors),
    )


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


def _locate(schema: pa.Schema, leaf: str) -> tuple[str, ...] | None:
    """The shallowest field path ending in ``leaf``, descending into structs only (a value
    inside a list is not one per row); ties go to schema order."""
    level: list[tuple[tuple[str, ...], pa.Field[Any]]] = [
        ((field.name,), field) for field in schema
    ]
    while level:
        for path, field in level:
            if field.name == leaf:
                return path
        deeper: list[tuple[tuple[str, ...], pa.Field[Any]]] = []
        for path, field in level:
            if isinstance(field.type, pa.StructType):
                struct = field.type
                for index in range(struct.num_fields):
                    child = struct.field(index)
                    deeper.append(((*path, child.name), child))
        level = deeper
    return None


def _field_type(schema: pa.Schema, path: tuple[str, ...]) -> pa.DataType:
    field = schema.field(path[0])
    for name in path[1:]:
        struct = field.type
        assert isinstance(struct, pa.StructType)  # _locate only descends into structs
        field = struct.field(name)
    kind: pa.DataType = field.type
    return kind


def _is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _is_text(kind: pa.DataType) -> bool:
    if isinstance(kind, pa.DictionaryType):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_factor_list(kind: pa.DataType) -> bool:
    if not isinstance(kind, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        return False
    item = kind.value_type
    return isinstance(item, pa.StructType) and item.get_field_index("code") >= 0


# A column found by name but of an unexpected type is treated as absent: the report describes
# what it can rather than failing on a dataset that merely reuses a name.
_EXPECTED_TYPES = {
    _SCORE: _is_numeric,
    _PERCENTILE: _is_numeric,
    _PROPENSITY: _is_text,
    _FACTORS: _is_factor_list,
}


def _locate_columns(schema: pa.Schema) -> dict[str, tuple[str, ...]]:
    located = {}
    for leaf, fits in _EXPECTED_TYPES.items():
        path = _locate(schema, leaf)
        if path is not None and fits(_field_type(schema, path)):
            located[leaf] = path
    return located


def _iter_batches(parts: PartSet, located: dict[str, tuple[str, ...]]) -> Iterator[pa.RecordBatch]:
    """Only the located columns, nested ones projected by field path; nothing to stream (and no
    file to open again) when none was found, since the footers already gave the counts."""
    if not located:
        return
    dataset = ds.dataset([str(path) for path in parts.paths], format="parquet", schema=parts.schema)
    projection = {leaf: ds.field(*path) for leaf, path in located.items()}
    try:
        # The stubs only know the list form; a dict projects named expressions (nested refs).
        yield from dataset.to_batches(columns=projection)  # type: ignore[arg-type]
    except (OSError, pa.ArrowException) as exc:
        # pyarrow reports a corrupt page as OSError too, so this is not a disk failure to blame.
        raise ConfigError(f"the parts below {parts.directory} are not readable: {exc}") from exc


def _bin_indices(values: pa.Array[Any], low: float, high: float, bins: int) -> pa.Array[Any]:
    """Bin index per value, values outside ``low..high`` folded into the end bins."""
    scaled = pc.floor(pc.divide(pc.multiply(pc.subtract(values, low), float(bins)), high - low))
    clamped = pc.min_element_wise(pc.max_element_wise(scaled, 0.0), float(bins - 1))
    indices: pa.Array[Any] = pc.cast(clamped, pa.int64())
    return indices


def _add_value_counts(counts: list[int], indices: pa.Array[Any]) -> None:
    # value_counts returns at most one entry per bin, so this loop is per bin, not per row.
    tally = pc.value_counts(indices)
    keys = tally.field("values").to_pylist()
    numbers = tally.field("counts").to_pylist()
    for key, number in zip(keys, numbers, strict=True):
        if key is not None and number:
            counts[key] += number


class _ScoreStats:
    """Running exact count/min/max/sum plus the coarse and the fine histogram."""

    def __init__(self, bins: int) -> None:
        self._bins = bins
        self._coarse = [0] * bins
        self._fine = [0] * _QUANTILE_BINS
        self._count = 0
        self._sums: list[float] = []
        self._min = math.inf
        self._max = -math.inf

    def add(self, column: pa.Array[Any]) -> None:
        values = pc.cast(column, pa.float64(), safe=False)
        # Nulls in the mask make filter drop the row too, so nulls and NaN/inf go together.
        values = values.filter(pc.is_finite(values))
        if not len(values):
            return
        low, high = SCORE_RANGE
        _add_value_counts(self._coarse, _bin_indices(values, low, high, self._bins))
        _add_value_counts(self._fine, _bin_indices(values, low, high, _QUANTILE_BINS))
        extremes = pc.min_max(values)
        self._min = min(self._min, extremes["min"].as_py())
        self._max = max(self._max, extremes["max"].as_py())
        self._count += len(values)
        self._sums.append(pc.sum(values).as_py())

    def histogram(self) -> Histogram:
        low, high = SCORE_RANGE
        step = (high - low) / self._bins
        edges = (*(low + step * index for index in range(self._bins)), high)
        return Histogram(edges=edges, counts=tuple(self._coarse))

    def summary(self) -> Summary | None:
        if not self._count:
            return None
        return Summary(
            count=self._count,
            min=self._min,
            max=self._max,
            mean=math.fsum(self._sums) / self._count,
            p25=self._quantile(0.25),
            p50=self._quantile(0.50),
            p75=self._quantile(0.75),
        )

    def _quantile(self, q: float) -> float:
        low, high = SCORE_RANGE
        width = (high - low) / _QUANTILE_BINS
        rank = q * self._count
        before = 0
        estimate = self._max
        for index, count in enumerate(self._fine):
            if count and before + count >= rank:
                estimate = low + width * (index + (rank - before) / count)
                break
            before += count
        return min(max(estimate, self._min), self._max)


def _count_percentiles(counts: list[int], column: pa.Array[Any]) -> None:
    # percentileScore 1..100 → bucket (p - 1) // 10; the same binning as the score histogram.
    values = pc.cast(column, pa.float64(), safe=False)
    values = values.filter(pc.is_finite(values))
    span = float(_PERCENTILE_BUCKET_WIDTH * _PERCENTILE_BUCKETS)
    _add_value_counts(counts, _bin_indices(values, 1.0, 1.0 + span, _PERCENTILE_BUCKETS))


def _buckets(counts: list[int] | None) -> tuple[Bucket, ...]:
    if counts is None:
        return ()
    width = _PERCENTILE_BUCKET_WIDTH
    return tuple(
        Bucket(low=1 + width * index, high=width * (index + 1), count=count)
        for index, count in enumerate(counts)
    )


def _count_values(counter: Counter[str], column: pa.Array[Any]) -> None:
    if isinstance(column, pa.DictionaryArray):
        column = column.dictionary_decode()
    tally = pc.value_counts(column)
    keys = tally.field("values").to_pylist()
    numbers = tally.field("counts").to_pylist()
    for key, number in zip(keys, numbers, strict=True):
        if key is not None and number:
            counter[key] += number


def _count_factors(factors: dict[str, list[int]], column: pa.Array[Any]) -> None:
    """Tally factor entries by (code, importance): flatten the lists, group, then fold the few
    groups into ``factors`` as ``code → [count, low, medium, high]``."""
    entries = pc.list_flatten(column)
    if not len(entries):
        return
    codes = pc.struct_field(entries, "code")
    kind = entries.type
    assert isinstance(kind, pa.StructType)  # checked by _is_factor_list
    index = kind.get_field_index("importance")
    if index >= 0 and _is_text(kind.field(index).type):
        importance = pc.utf8_lower(pc.cast(pc.struct_field(entries, "importance"), pa.string()))
    else:
        importance = pa.nulls(len(entries), pa.string())
    table = pa.table({"code": pc.cast(codes, pa.string()), "importance": importance})
    groups = table.group_by(["code", "importance"]).aggregate([([], "count_all")])
    for code, level, number in zip(
        groups.column("code").to_pylist(),
        groups.column("importance").to_pylist(),
        groups.column("count_all").to_pylist(),
        strict=True,
    ):
        if code is None or not number:
            continue
        tally = factors.setdefault(code, [0, 0, 0, 0])
        tally[0] += number
        if level in _IMPORTANCE_LEVELS:
            tally[1 + _IMPORTANCE_LEVELS.index(level)] += number


def _top_factors(factors: dict[str, list[int]], limit: int) -> tuple[FactorCount, ...]:
    ranked = sorted(factors.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
    return tuple(
        FactorCount(code=code, count=count, low=low, medium=medium, high=high)
        for code, (count, low, medium, high) in ranked
    )
