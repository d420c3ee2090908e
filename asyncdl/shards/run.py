"""Sharded runs: a shard's share of the selected batches, fragments, finalize, and plans.

``download_shard`` lists the batches (or takes them from a plan), places every part as a whole
run would (so every shard puts a part in the same place), fetches only the parts its shard owns,
records them in its fragment, and finalizes each batch whose fragments are all there. One live
writer per shard: the shard's lock in the output root is held for the run (a second run of a
held shard stops at once: BusyError). A rerun resumes like any download.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import anyio

from ..batch import BatchRun
from ..client import AEPClient
from ..config import BatchSelection, Credentials, DownloadSettings
from ..errors import BusyError, ConfigError
from ..fetch import FetchOptions
from ..layout import fragment_name, shard_lock
from ..pipeline import fetch_batches, plan, resolve_run, select_batches
from ..progress import NullProgress, ProgressListener
from ..results import DownloadResult, PlannedBatch
from ..slots import StreamSlots
from ..storage import LockHold, Storage, open_storage
from .assign import ShardSpec
from .finalize import Finalized, finalize_batch, fragment_extra, shard_count
from .plan import ShardPlan

#: How often a waiting shard tries its lock again.
_LOCK_POLL_S = 0.2

__all__ = [
    "ShardResult",
    "download_shard",
    "finalize",
    "make_plan",
    "read_plan",
    "write_plan",
]


@dataclass(frozen=True, kw_only=True)
class ShardResult:
    """What one shard did: its download (its share only), and the batches it finalized."""

    shard: ShardSpec
    download: DownloadResult
    finalized: tuple[Finalized, ...]  # batches whose fragments were all there when it ended

    @property
    def ok(self) -> bool:
        return self.download.ok


def _locate(target: str | Path) -> tuple[Storage, str]:
    """The storage holding a file given as a path or URL, and its name there."""
    text = str(target)
    parent, _, name = text.rpartition("/")
    if not name:
        raise ConfigError(f"{text} names a directory, not a plan file")
    return open_storage(parent or "."), name


async def write_plan(target: str | Path, shard_plan: ShardPlan) -> None:
    storage, name = _locate(target)
    await anyio.to_thread.run_sync(storage.prepare)
    data = shard_plan.encode()
    await anyio.to_thread.run_sync(lambda: storage.replace(name, data, durable=True))


async def read_plan(target: str | Path) -> ShardPlan:
    storage, name = _locate(target)
    raw = await anyio.to_thread.run_sync(storage.read, name)
    if raw is None:
        raise ConfigError(f"no plan at {target}")
    try:
        return ShardPlan.decode(raw)
    except ValueError as exc:
        raise ConfigError(f"{target} is not a usable plan: {exc}") from exc


async def download_shard(
    dataset_id: str | None = None,
    *,
    shard: ShardSpec,
    shard_plan: ShardPlan | None = None,
    out: Path | str | None = None,
    latest: int = 1,
    batch_ids: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    credentials: Credentials | None = None,
    settings: DownloadSettings | None = None,
    on_progress: ProgressListener | None = None,
    finalize_done: bool = True,
    slots: StreamSlots | None = None,
    lock_wait_s: float = 0.0,
) -> ShardResult:
    """Shard ``shard``'s share of the run ``download`` would make with the same arguments (or of
    ``shard_plan``, without listing); each batch finalized when all its fragments are in.

    A shard held by another run raises BusyError at once, or after ``lock_wait_s`` (a cluster's
    task run again after its worker died waits for the dead holder's lock to go).
    """
    if shard_plan is not None and shard_plan.shards != shard.count:
        raise ConfigError(f"the plan is for {shard_plan.shards} shards, not {shard.count}")
    credentials, settings = resolve_run(
        out=out, concurrency=None, credentials=credentials, settings=settings
    )
    listener = on_progress or NullProgress()
    started = time.monotonic()
    options = FetchOptions.from_settings(settings)
    root = open_storage(settings.out_dir)
    await anyio.to_thread.run_sync(root.prepare)
    finalized: list[Finalized] = []
    lock = root.lock(shard_lock(shard.index, shard.count))
    held = await _take(lock, wait_s=lock_wait_s)
    try:
        async with AEPClient(
            credentials=credentials,
            settings=settings,
            retry=options.policy,
            retry_listener=listener,
        ) as client:
            if shard_plan is not None:
                batches = [planned.batch for planned in shard_plan.batches]
                planned = {p.batch.id: p for p in shard_plan.batches}
            else:
                selection = BatchSelection(latest=latest, batch_ids=tuple(batch_ids))
                batches = await select_batches(client, dataset_id, selection)
                planned = None

            async def recorded(run: BatchRun) -> None:
                report = run.report
                complete = report is not None and not report.failed and not report.rejected
                held.check()  # the fragment and the batch's finalization are the shard's to write
                run.manifest.extra.update(
                    fragment_extra(
                        shard=str(shard),
                        parts=run.planned,
                        complete=complete,
                        rejected=[e.name for e in run.rejected],
                    )
                )
                await run.save(force=True)
                if finalize_done and complete:
                    outcome = await finalize_batch(
                        run.storage, run.batch, run.planned, shards=shard.count
                    )
                    if not outcome.missing:
                        finalized.append(outcome)

            reports = await fetch_batches(
                client,
                batches,
                root,
                settings=settings,
                options=options,
                listener=listener,
                include=include,
                exclude=exclude,
                on_batch=recorded,
                owns=shard.owns,
                manifest_name=fragment_name(shard.index, shard.count),
                planned=planned,
                slots=slots,
            )
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lock.__exit__, None, None, None)
    return ShardResult(
        shard=shard,
        download=DownloadResult(batches=reports, elapsed_s=time.monotonic() - started),
        finalized=tuple(finalized),
    )


async def finalize(
    dataset_id: str | None = None,
    *,
    shards: int | None = None,
    shard_plan: ShardPlan | None = None,
    out: Path | str | None = None,
    latest: int = 1,
    batch_ids: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    credentials: Credentials | None = None,
    settings: DownloadSettings | None = None,
) -> tuple[Finalized, ...]:
    """Finalize every batch of the selection (or of ``shard_plan``) from its fragments: the
    listing is asked again (or the plan read) for what every batch must hold."""
    credentials, settings = resolve_run(
        out=out, concurrency=None, credentials=credentials, settings=settings
    )
    if shard_plan is not None:
        batches: Sequence[PlannedBatch] = shard_plan.batches
        shards = shards or shard_plan.shards
    else:
        batches = await plan(
            dataset_id,
            latest=latest,
            batch_ids=batch_ids,
            include=include,
            exclude=exclude,
            credentials=credentials,
            settings=settings,
        )
    root = open_storage(settings.out_dir)
    outcomes = []
    for planned in batches:
        storage = root.sub(planned.batch.id)
        count = shards or await anyio.to_thread.run_sync(shard_count, storage)
        if count is None:
            raise ConfigError(
                f"no shard fragments below {storage.where()}: give --shards N, or run the shards"
            )
        outcomes.append(await finalize_batch(storage, planned.batch, planned.parts, shards=count))
    return tuple(outcomes)


async def make_plan(
    dataset_id: str | None = None,
    *,
    shards: int,
    latest: int = 1,
    batch_ids: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    credentials: Credentials | None = None,
    settings: DownloadSettings | None = None,
) -> ShardPlan:
    """List the selection once, for ``shards`` shards to share."""
    if shards < 1:
        raise ConfigError(f"--shards must be at least 1, got {shards}")
    batches = await plan(
        dataset_id,
        latest=latest,
        batch_ids=batch_ids,
        include=include,
        exclude=exclude,
        credentials=credentials,
        settings=settings,
    )
    return ShardPlan(dataset_id=dataset_id, shards=shards, batches=tuple(batches))


async def _take(lock: AbstractContextManager[LockHold], *, wait_s: float) -> LockHold:
    """Enter ``lock``; while another holds it, try again for up to ``wait_s``."""
    deadline = anyio.current_time() + wait_s
    while True:
        try:
            return await anyio.to_thread.run_sync(lock.__enter__)
        except BusyError:
            if anyio.current_time() >= deadline:
                raise
        await anyio.sleep(_LOCK_POLL_S)
