"""What lies below a download directory: its parquet parts, described from their footers (rows,
bytes, one unified schema), the batch and dataset ids its manifests name, and its first rows.

The other tools start here: ``scores`` and ``merge`` take a ``PartSet`` and never list files
themselves, so every tool agrees on which files are parts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..errors import ConfigError
from ..layout import MANIFEST_NAME

__all__ = ["BatchLabels", "PartSet", "batch_labels", "find_parts", "first_rows", "scan_parts"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PartSet:
    """The parquet parts below a directory, described from their footers alone."""

    directory: Path
    paths: tuple[Path, ...]
    rows: int
    bytes: int
    schema: pa.Schema


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchLabels:
    """The dataset and batch ids that the manifests at or below a directory name, sorted and
    without repeats; empty when no manifest says (a directory asyncdl did not write)."""

    dataset_ids: tuple[str, ...] = ()
    batch_ids: tuple[str, ...] = ()


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


def batch_labels(directory: Path) -> BatchLabels:
    """``batch_id`` and ``dataset_id`` from every ``manifest.json`` at or below ``directory``
    (one per batch asyncdl downloaded). They only label a report or a chart, so a manifest that
    cannot be read or lacks them is passed over rather than failing the tool."""
    datasets: set[str] = set()
    batches: set[str] = set()
    try:
        manifests = sorted(directory.rglob(MANIFEST_NAME))
    except OSError:
        return BatchLabels()
    for path in manifests:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(document, dict):
            continue
        if isinstance(document.get("dataset_id"), str):
            datasets.add(document["dataset_id"])
        if isinstance(document.get("batch_id"), str):
            batches.add(document["batch_id"])
    return BatchLabels(dataset_ids=tuple(sorted(datasets)), batch_ids=tuple(sorted(batches)))


def first_rows(parts: PartSet, *, columns: Sequence[str], limit: int = 5) -> list[dict[str, Any]]:
    """The first ``limit`` rows in path order, with those of ``columns`` that the parts have
    (top-level names; the others are left out rather than refused)."""
    present = [name for name in columns if parts.schema.get_field_index(name) >= 0]
    dataset = ds.dataset([str(path) for path in parts.paths], format="parquet", schema=parts.schema)
    try:
        head = dataset.head(limit, columns=present)
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"the parts below {parts.directory} are not readable: {exc}") from exc
    rows: list[dict[str, Any]] = head.to_pylist()
    return rows
