"""The score report, what ``asyncdl inspect`` shows: counts, the unified schema, the score
column's distribution over its own range, percentile buckets, propensity types and the most
common influential factors of the parquet parts below a directory, labelled with the dataset
and batch their manifests name.

Record batches are streamed through ``pyarrow.dataset`` and reduced with ``pyarrow.compute`` as
they arrive, so memory stays bounded whatever the size: one pass over the Customer AI columns
(see ``columns``) for everything but the histogram, and a second over the score column alone
once its exact range is known (see ``histogram``). A dataset without those columns still gets
the counts and the schema. Nothing here prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ..errors import ConfigError
from .columns import FACTORS, PERCENTILE, PROPENSITY, SCORE, Located, is_text, locate_columns
from .histogram import (
    Distribution,
    Histogram,
    Summary,
    ValueRange,
    add_counts,
    bin_indices,
    finite_values,
)
from .parts import PartSet, batch_labels, scan_parts

__all__ = ["Bucket", "FactorCount", "ScoreReport", "inspect_scores"]

_PERCENTILE_BUCKET_WIDTH = 10
_PERCENTILE_BUCKETS = 10
_IMPORTANCE_LEVELS = ("low", "medium", "high")


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
class ScoreReport:
    """Everything ``inspect_scores`` learnt; Customer AI fields are None/empty when absent.

    ``columns_used`` maps each role that was found (``score``, ``percentileScore``,
    ``propensityType``, ``influentialFactors``) to the dotted path it was read from, e.g.
    ``("score", "_tenant.instance.probability")``: the score role's column is the one drawn.
    ``score`` and ``score_summary`` are None when that column has no finite value.
    ``dataset_ids`` and ``batch_ids`` are what the manifests below the directory name.
    """

    directory: Path
    parts: int
    rows: int
    bytes: int
    schema: tuple[tuple[str, str], ...]
    columns_used: tuple[tuple[str, str], ...]
    dataset_ids: tuple[str, ...]
    batch_ids: tuple[str, ...]
    score: Histogram | None
    score_summary: Summary | None
    percentile_buckets: tuple[Bucket, ...]
    propensity_types: tuple[tuple[str, int], ...]
    top_factors: tuple[FactorCount, ...]

    @property
    def score_column(self) -> str | None:
        """The dotted path of the column the histogram is drawn from, if one was found."""
        return dict(self.columns_used).get(SCORE)


def inspect_scores(
    directory: Path, *, bins: int = 10, top_factors: int = 10, column: str | None = None
) -> ScoreReport:
    """Summarise every parquet part below ``directory``.

    The histogram has at most ``bins`` bins on round edges covering the score column's min..max
    (see ``nice_edges``); ``column`` draws another numeric column by leaf name or dotted path
    instead of ``score`` (else ``probability``). Min, max and mean are exact, the quartiles
    within a thousandth of the range. Null and NaN values are left out of the histogram and the
    summary (but not out of ``rows``).
    """
    if bins < 1:
        raise ConfigError(f"bins must be at least 1, not {bins}")
    if top_factors < 0:
        raise ConfigError(f"top_factors must not be negative, not {top_factors}")
    parts = scan_parts(directory)
    located = locate_columns(parts.schema, score_column=column)
    span = ValueRange()
    percentiles = [0] * _PERCENTILE_BUCKETS if PERCENTILE in located else None
    propensities: Counter[str] = Counter()
    factors: dict[str, list[int]] = {}
    for batch in _iter_batches(parts, located):
        if SCORE in located:
            span.add(finite_values(batch.column(SCORE)))
        if percentiles is not None:
            _count_percentiles(percentiles, batch.column(PERCENTILE))
        if PROPENSITY in located:
            _count_values(propensities, batch.column(PROPENSITY))
        if FACTORS in located:
            _count_factors(factors, batch.column(FACTORS))
    distribution = None
    if span.count:
        distribution = Distribution(span, bins=bins)
        for batch in _iter_batches(parts, {SCORE: located[SCORE]}):
            distribution.add(finite_values(batch.column(SCORE)))
    labels = batch_labels(directory)
    return ScoreReport(
        directory=directory,
        parts=len(parts.paths),
        rows=parts.rows,
        bytes=parts.bytes,
        schema=tuple((field.name, str(field.type)) for field in parts.schema),
        columns_used=tuple((role, ".".join(path)) for role, path in located.items()),
        dataset_ids=labels.dataset_ids,
        batch_ids=labels.batch_ids,
        score=None if distribution is None else distribution.histogram(),
        score_summary=None if distribution is None else distribution.summary(),
        percentile_buckets=_buckets(percentiles),
        propensity_types=tuple(sorted(propensities.items(), key=lambda kv: (-kv[1], kv[0]))),
        top_factors=_top_factors(factors, top_factors),
    )


def _iter_batches(parts: PartSet, located: Located) -> Iterator[pa.RecordBatch]:
    """Only the located columns, nested ones projected by field path and named by role; nothing
    to stream (and no file to open again) when none was found, since the footers gave the counts.
    """
    if not located:
        return
    dataset = ds.dataset([str(path) for path in parts.paths], format="parquet", schema=parts.schema)
    projection = {role: ds.field(*path) for role, path in located.items()}
    try:
        # The stubs only know the list form; a dict projects named expressions (nested refs).
        yield from dataset.to_batches(columns=projection)  # type: ignore[arg-type]
    except (OSError, pa.ArrowException) as exc:
        # pyarrow reports a corrupt page as OSError too, so this is not a disk failure to blame.
        raise ConfigError(f"the parts below {parts.directory} are not readable: {exc}") from exc


def _count_percentiles(counts: list[int], column: pa.Array[Any]) -> None:
    # percentileScore 1..100 → bucket (p - 1) // 10, values outside folded into the end buckets.
    values = finite_values(column)
    span = float(_PERCENTILE_BUCKET_WIDTH * _PERCENTILE_BUCKETS)
    add_counts(counts, bin_indices(values, 1.0, 1.0 + span, _PERCENTILE_BUCKETS))


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
    assert isinstance(kind, pa.StructType)  # checked by locate_columns
    index = kind.get_field_index("importance")
    if index >= 0 and is_text(kind.field(index).type):
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
