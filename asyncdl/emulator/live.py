"""Batches added while the emulator serves (``Emulator.add_batch``): the shape they take from
their dataset's spec, their ids and part names, and their parts, generated into the world's part
cache exactly where ``build_world`` would put them (``<root>/<batchId>/<dirId>/<name>``).

Everything is deterministic from the seed, the dataset and a per-dataset counter (the n-th
batch added to a dataset), plus the batch's ``created_ms`` and part count: the same calls after
a restart give the same ids and bytes, and find their parts already in the cache (renamed into
place, so complete; only measured again). ``generate`` is blocking: the emulator runs it off the
event loop.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from asyncdl.emulator.config import DatasetSpec, EmulatorConfig
from asyncdl.emulator.data import (
    NESTED_PARTS,
    NESTED_SUFFIX,
    TruthBatch,
    TruthDataset,
    TruthFile,
    TruthPart,
    ulid,
)
from asyncdl.emulator.parquet import GENERATOR_VERSION, generate_part, rows_for_bytes
from asyncdl.emulator.views import FAILED_STATUSES

__all__ = ["BatchPlan", "generate", "plan_batch", "spec_of"]


@dataclass(frozen=True, kw_only=True, slots=True)
class _PlannedPart:
    name: str
    directory: str  # the dataSetFileId (or sub-directory) that lists it
    seed: str


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchPlan:
    """One added batch before its parts exist."""

    id: str
    dataset_id: str
    status: str
    created_ms: int
    propensity: str
    rows_per_part: int
    part_bytes: int | None  # overrides rows_per_part, as in DatasetSpec
    files: tuple[tuple[str, tuple[_PlannedPart, ...]], ...]


def spec_of(config: EmulatorConfig, dataset_id: str) -> DatasetSpec | None:
    """The spec a dataset's batches are shaped by; None for a dataset the config did not make."""
    for spec in config.datasets:
        if spec.id == dataset_id:
            return spec
    if dataset_id == config.empty_dataset_id:
        return DatasetSpec(id=dataset_id)  # never scored yet: the default shape from now on
    return None


def plan_batch(
    config: EmulatorConfig,
    spec: DatasetSpec,
    dataset: TruthDataset,
    *,
    number: int,
    status: str,
    created_ms: int,
    parts_per_file: int,
) -> BatchPlan:
    """The ``number``-th batch added to ``dataset`` (from 1); a failed one has no files."""
    rng = random.Random(f"asyncdl-emulator/{GENERATOR_VERSION}/{config.seed}/{dataset.id}/{number}")
    batch_id = ulid(created_ms, rng)
    files: list[tuple[str, tuple[_PlannedPart, ...]]] = []
    if status not in FAILED_STATUSES:
        # One Spark job writes the batch: one tid and job uuid, part numbers running across it.
        tid = rng.randrange(10**18, 10**19)
        job = uuid.UUID(int=rng.getrandbits(128), version=4)
        numbers = iter(range(1 << 30))

        def part(directory: str) -> _PlannedPart:
            name = f"part-{next(numbers):05d}-tid-{tid}-{job}-528-1-c000.snappy.parquet"
            return _PlannedPart(
                name=name, directory=directory, seed=f"{config.seed}/{batch_id}/{name}"
            )

        for position in range(1, spec.files_per_batch + 1):
            file_id = f"{batch_id}-{position}"
            parts = [part(file_id) for _ in range(parts_per_file)]
            if spec.nested and position == 1:
                parts.extend(part(f"{file_id}{NESTED_SUFFIX}") for _ in range(NESTED_PARTS))
            files.append((file_id, tuple(parts)))
    return BatchPlan(
        id=batch_id,
        dataset_id=dataset.id,
        status=status,
        created_ms=created_ms,
        propensity=dataset.propensity,
        rows_per_part=spec.rows_per_part,
        part_bytes=spec.part_bytes,
        files=tuple(files),
    )


@functools.lru_cache(maxsize=16)
def _rows_for_bytes(part_bytes: int, propensity: str) -> int:
    # A few calibration writes: worth doing once per shape, not once per added batch.
    return rows_for_bytes(part_bytes, propensity)


def generate(root: Path, plan: BatchPlan, *, workers: int | None = None) -> TruthBatch:
    """Generate what the cache lacks and describe every part from its file (blocking)."""
    rows = plan.rows_per_part
    if plan.part_bytes is not None:
        rows = _rows_for_bytes(plan.part_bytes, plan.propensity)
    score_date = dt.datetime.fromtimestamp(plan.created_ms / 1000, tz=dt.UTC).date()

    def one(part: _PlannedPart) -> TruthPart:
        path = root / plan.id / part.directory / part.name
        if not path.exists():  # a part in the cache was renamed into place: complete
            generate_part(
                path, rows=rows, seed=part.seed, propensity=plan.propensity, score_date=score_date
            )
        return TruthPart(
            name=part.name,
            path=path,
            size=path.stat().st_size,
            rows=pq.read_metadata(path).num_rows,
            directory=part.directory,
        )

    planned = [part for _, parts in plan.files for part in parts]
    described: dict[str, TruthPart] = {}
    if planned:
        # pyarrow releases the GIL while encoding and compressing, so threads use every core.
        max_workers = workers or min(len(planned), os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="emulator-add") as pool:
            described = {part.name: part for part in pool.map(one, planned)}
    return TruthBatch(
        id=plan.id,
        dataset_id=plan.dataset_id,
        status=plan.status,
        created_ms=plan.created_ms,
        files=tuple(
            TruthFile(dataset_file_id=file_id, parts=tuple(described[p.name] for p in parts))
            for file_id, parts in plan.files
        ),
    )
