"""One file please: merges every parquet part below a directory into a single ``.parquet`` or
``.csv`` file, streaming record batches so memory stays bounded whatever the size.

Parts are read in path order and each batch is conformed to one schema unified up front from
the footers. The output is written under ``<target>.part`` and renamed into place only when
complete, so the real name never holds half a file; the temp file is removed on any failure.
CSV cannot hold nested values, so struct columns are flattened into ``parent.child`` columns and
list/map columns become one JSON text column each. Nothing here prints.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import anyio.from_thread
import anyio.to_thread
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import ConfigError, StorageError
from .parts import PartSet, scan_parts

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "SUPPORTED_SUFFIXES",
    "MergeResult",
    "merge_parts",
    "merge_parts_async",
]

DEFAULT_BATCH_ROWS = 65_536
SUPPORTED_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True, kw_only=True, slots=True)
class MergeResult:
    """The merged file: ``parts`` read, ``rows`` written, ``bytes`` is the target's size."""

    target: Path
    parts: int
    rows: int
    bytes: int


def merge_parts(
    directory: Path, target: Path, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> MergeResult:
    """Write every ``*.parquet`` below ``directory`` (sorted by path) into ``target``.

    The format follows ``target``'s extension (``.parquet``: snappy, row groups of
    ``batch_rows`` rows; ``.csv``: a header line, nested columns flattened or as JSON).
    ``target`` and its temp file are never read as input, even when they lie inside
    ``directory``. Blocking; see ``merge_parts_async`` for async callers.
    """
    return _merge(directory, target, batch_rows=batch_rows, checkpoint=_no_checkpoint)


async def merge_parts_async(
    directory: Path, target: Path, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> MergeResult:
    """``merge_parts`` in a worker thread. Cancelling the caller stops the merge at the next
    batch (the temp file is removed and nothing appears under ``target``)."""
    run = functools.partial(
        _merge,
        directory,
        target,
        batch_rows=batch_rows,
        checkpoint=anyio.from_thread.check_cancelled,
    )
    return await anyio.to_thread.run_sync(run)


def _no_checkpoint() -> None:
    return None


def _merge(
    directory: Path, target: Path, *, batch_rows: int, checkpoint: Callable[[], None]
) -> MergeResult:
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be at least 1, not {batch_rows}")
    suffix = target.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(SUPPORTED_SUFFIXES)
        raise ConfigError(
            f"cannot merge into {target.name}: the supported extensions are {supported}"
        )
    if target.is_dir():
        raise ConfigError(f"cannot merge into {target}: it is a directory")
    temp = target.with_name(target.name + ".part")
    # A target inside the directory (say from an earlier merge) must not be merged into itself.
    parts = scan_parts(directory, exclude=(target, temp))
    rows = 0
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with _open_sink(suffix, temp, parts.schema, batch_rows) as sink:
                for batch in _iter_batches(parts, batch_rows):
                    checkpoint()
                    sink.write(batch)
                    rows += batch.num_rows
            os.replace(temp, target)
            size = target.stat().st_size
        except OSError as exc:
            raise StorageError(f"cannot write {target}: {exc}") from exc
        except pa.ArrowException as exc:
            raise ConfigError(f"cannot write the parts as {suffix}: {exc}") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return MergeResult(target=target, parts=len(parts.paths), rows=rows, bytes=size)


def _iter_batches(parts: PartSet, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Every part's batches in path order, conformed to the unified schema; read failures are
    translated here so that an ``OSError`` reaching ``_merge`` is always a write failure."""
    for path in parts.paths:
        try:
            with pq.ParquetFile(path) as part:
                for batch in part.iter_batches(batch_size=batch_rows):
                    yield _conform(batch, parts.schema)
        except (OSError, pa.ArrowException) as exc:
            raise ConfigError(f"cannot read {path} as parquet: {exc}") from exc


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema``'s columns in its order: cast where a part's type was promoted,
    all-null where a part lacks the column."""
    arrays: list[pa.Array[Any]] = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            arrays.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(index)
        arrays.append(column if column.type == field.type else column.cast(field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class _Sink(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...

    def __enter__(self) -> _Sink: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def _open_sink(suffix: str, path: Path, schema: pa.Schema, batch_rows: int) -> _Sink:
    if suffix == ".csv":
        return _CsvSink(path, schema)
    return _ParquetSink(path, schema, batch_rows)


class _ParquetSink:
    """Coalesces incoming batches into row groups of exactly ``batch_rows`` rows (the last one
    shorter): parts are often small, and one row group per small batch makes a slow file."""

    def __init__(self, path: Path, schema: pa.Schema, batch_rows: int) -> None:
        self._schema = schema
        self._batch_rows = batch_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._writer = pq.ParquetWriter(path, schema, compression="snappy")

    def __enter__(self) -> _ParquetSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and self._pending_rows:
                self._writer.write_table(pa.Table.from_batches(self._pending, self._schema))
        finally:
            self._writer.close()

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self._batch_rows:
            table = pa.Table.from_batches(self._pending, self._schema)
            self._writer.write_table(
                table.slice(0, self._batch_rows), row_group_size=self._batch_rows
            )
            rest = table.slice(self._batch_rows)
            self._pending = rest.to_batches()
            self._pending_rows = rest.num_rows


class _CsvSink:
    """CSV with a header; each batch is made flat first (see ``_flat_for_csv``)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        empty = pa.RecordBatch.from_arrays(
            [pa.array([], field.type) for field in schema], schema=schema
        )
        self._writer = pacsv.CSVWriter(path, _flat_for_csv(empty).schema)

    def __enter__(self) -> _CsvSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._writer.close()

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(_flat_for_csv(batch))


def _flat_for_csv(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Struct columns become ``parent.child`` columns (recursively, so a null parent makes its
    children null); list, map and union columns become JSON text, one document per cell.

    JSON keeps a list of factors in one readable, machine-parseable cell; exploding lists into
    rows or numbered columns would change the row count or make the header data-dependent.
    """
    names: list[str] = []
    arrays: list[pa.Array[Any]] = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        _flatten_into(names, arrays, field.name, column)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _flatten_into(
    names: list[str], arrays: list[pa.Array[Any]], name: str, column: pa.Array[Any]
) -> None:
    if isinstance(column, pa.StructArray):
        struct = column.type
        for index, child in enumerate(column.flatten()):
            _flatten_into(names, arrays, f"{name}.{struct.field(index).name}", child)
    elif pa.types.is_nested(column.type):
        names.append(name)
        arrays.append(_to_json(column))
    else:
        names.append(name)
        arrays.append(column)


def _to_json(column: pa.Array[Any]) -> pa.Array[Any]:
    # pyarrow has no JSON encoder, so this is the one per-row Python loop; it only runs for
    # nested columns of a CSV merge. Dates, decimals and the like are written as their str().
    encode = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"), default=str)
    return pa.array(
        [None if value is None else encode(value) for value in column.to_pylist()], pa.string()
    )
