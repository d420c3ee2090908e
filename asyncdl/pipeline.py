"""A whole run: pick batches, list them into a bounded stream, fetch with N workers, reconcile.

The producer (this task) walks Catalog batches → batch files → directory pages and sends parts
into a bounded anyio memory object stream; N workers, each with a clone of the receive side,
fetch them concurrently. Back-pressure is by construction: when the workers are busy the producer
waits, so neither the queue nor the listing is ever held whole, and downloads start with the
first listing page. End of input is the producer closing its send side. The task group owns every
task; a fatal error (disk, auth, listing) cancels the rest and leaves temp files for resume.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from .batch import BatchRun, open_batch, replay, walk
from .budget import MemoryBudget
from .client import AEPClient, ByteStream
from .config import (
    DEFAULT_BASE_URL,
    BatchSelection,
    Credentials,
    DownloadSettings,
    queue_bound,
    resolve_environment,
)
from .errors import ConfigError
from .fetch import FetchOptions, fetch_part
from .layout import MANIFEST_NAME
from .listing import check_name, get_batch, latest_batches
from .manifest import Manifest
from .models import Batch, Part
from .progress import NullProgress, ProgressListener
from .results import BatchReport, DownloadResult, PlannedBatch, Reconciliation, RejectedEntry
from .slots import StreamSlots
from .storage import Storage, open_storage, stream_buffer_bytes
from .tasks import single_error
from .threads import thread_batches

__all__ = [
    "BatchReport",
    "DownloadResult",
    "PlannedBatch",
    "Reconciliation",
    "RejectedEntry",
    "connect",
    "download",
    "fetch_batches",
    "plan",
    "resolve_run",
    "select_batches",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Job:
    part: Part
    run: BatchRun
    opened: ByteStream | None = None  # a single-file dataSetFile's answer, still unread


async def select_batches(
    client: AEPClient, dataset_id: str | None, selection: BatchSelection
) -> list[Batch]:
    """The batches a run covers: named ones, or the newest successful ones of the dataset."""
    if selection.batch_ids:
        return [await get_batch(client, batch_id) for batch_id in selection.batch_ids]
    if dataset_id is None:
        raise ConfigError("a dataset id or at least one --batch is required")
    return await latest_batches(client, dataset_id, count=selection.latest)


def resolve_run(
    *,
    out: Path | str | None,
    concurrency: int | None,
    credentials: Credentials | None,
    settings: DownloadSettings | None,
) -> tuple[Credentials, DownloadSettings]:
    """Fill what the caller left out: credentials from config file + environment, defaults."""
    environment: dict[str, str] = {}
    if credentials is None or settings is None:
        environment = {k: v.value for k, v in resolve_environment().items()}
    if credentials is None:
        credentials = Credentials.from_env(environment)
    if settings is None:
        settings = DownloadSettings(base_url=environment.get("AEP_BASE_URL", DEFAULT_BASE_URL))
    if out is not None:
        settings = dataclasses.replace(settings, out_dir=out)
    if concurrency is not None:
        settings = dataclasses.replace(settings, concurrency=concurrency)
    cap = stream_buffer_bytes(settings.out_dir)
    if cap is not None:  # the destination buffers a part itself (an object store's upload)
        settings = dataclasses.replace(
            settings,
            write_buffer_bytes=min(settings.write_buffer_bytes, cap),
            read_chunk_bytes=min(settings.read_chunk_bytes, cap),
        )
    return credentials, settings


@asynccontextmanager
async def connect(
    credentials: Credentials | None = None,
    *,
    settings: DownloadSettings | None = None,
) -> AsyncIterator[AEPClient]:
    """An open API client for the listing calls (``iter_batches``, ``iter_parts``)."""
    credentials, settings = resolve_run(
        out=None, concurrency=None, credentials=credentials, settings=settings
    )
    async with AEPClient(credentials=credentials, settings=settings) as client:
        yield client


async def plan(
    dataset_id: str | None = None,
    *,
    out: Path | str | None = None,
    latest: int = 1,
    batch_ids: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    credentials: Credentials | None = None,
    settings: DownloadSettings | None = None,
) -> list[PlannedBatch]:
    """List what ``download`` would fetch with the same arguments, fetching no part."""
    credentials, settings = resolve_run(
        out=out, concurrency=None, credentials=credentials, settings=settings
    )
    selection = BatchSelection(latest=latest, batch_ids=tuple(batch_ids))
    root = open_storage(settings.out_dir)
    planned = []
    async with AEPClient(credentials=credentials, settings=settings) as client:
        for batch in await select_batches(client, dataset_id, selection):
            run = await _read_only_batch(batch, root)
            parts = []
            async for part, opened in walk(client, run, include, exclude):
                if opened is not None:
                    opened.close()  # a dry run reads no part's bytes
                parts.append(part)
            complete = await anyio.to_thread.run_sync(_complete, run.storage, parts)
            planned.append(
                PlannedBatch(
                    batch=batch,
                    parts=tuple(parts),
                    complete=complete,
                    markers=run.markers,
                    rejected=tuple(run.rejected),
                )
            )
    return planned


async def _read_only_batch(batch: Batch, root: Storage) -> BatchRun:
    """A batch's run state that creates nothing (a dry run must not write)."""
    storage = root.sub(check_name(batch.id))
    return BatchRun(batch=batch, storage=storage, manifest=Manifest(storage, batch, {}))


def _complete(storage: Storage, parts: list[Part]) -> frozenset[str]:
    return frozenset(p.relpath for p in parts if storage.size(p.relpath) == p.size)


async def download(
    dataset_id: str | None = None,
    *,
    out: Path | str | None = None,
    concurrency: int | None = None,
    latest: int = 1,
    batch_ids: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    credentials: Credentials | None = None,
    settings: DownloadSettings | None = None,
    on_progress: ProgressListener | None = None,
) -> DownloadResult:
    """Download a dataset's newest successful batch (or ``latest`` N, or ``batch_ids``).

    Files go to ``out/<batch id>/<part name>``. ``credentials`` default to the config file and
    ``AEP_*`` environment; ``out`` and ``concurrency`` override ``settings``. ``include`` and
    ``exclude`` are glob patterns on part names (exclude wins). Part-level failures are in the
    result; raises only for what ends a run early (bad configuration, authentication, an
    unreachable API, a failed listing, a full disk).
    """
    credentials, settings = resolve_run(
        out=out, concurrency=concurrency, credentials=credentials, settings=settings
    )
    selection = BatchSelection(latest=latest, batch_ids=tuple(batch_ids))
    listener = on_progress or NullProgress()
    started = time.monotonic()
    options = FetchOptions.from_settings(settings)
    root = open_storage(settings.out_dir)
    await anyio.to_thread.run_sync(root.prepare)
    async with AEPClient(
        credentials=credentials, settings=settings, retry=options.policy, retry_listener=listener
    ) as client:
        batches = await select_batches(client, dataset_id, selection)
        runs = await fetch_batches(
            client,
            batches,
            root,
            settings=settings,
            options=options,
            listener=listener,
            include=include,
            exclude=exclude,
        )
    return DownloadResult(batches=runs, elapsed_s=time.monotonic() - started)


async def fetch_batches(
    client: AEPClient,
    batches: Sequence[Batch],
    root: Storage,
    *,
    settings: DownloadSettings,
    options: FetchOptions,
    listener: ProgressListener,
    include: Sequence[str],
    exclude: Sequence[str],
    on_batch: Callable[[BatchRun], Awaitable[None]] | None = None,
    owns: Callable[[Part], bool] | None = None,
    manifest_name: str = MANIFEST_NAME,
    planned: Mapping[str, PlannedBatch] | None = None,
    slots: StreamSlots | None = None,
) -> tuple[BatchReport, ...]:
    """The producer and the workers over ``batches``; every batch's report, manifests saved.

    ``on_batch`` hears each batch (closed: its report and manifest written) as soon as its last
    part is in (a sync commits its state then, a shard its fragment); batches cut short by the
    end of the run are not heard. ``owns`` picks the parts this run fetches (a shard's share)
    and ``manifest_name`` where it records them; ``planned`` gives each batch's parts from a
    plan instead of a listing; ``slots`` bound the streams (default: ``concurrency`` of them, as
    ``adaptive`` says; a cluster's also share one budget across workers).
    """

    async def settled(run: BatchRun) -> None:
        await run.settle(on_batch)

    slots = slots or StreamSlots(settings.concurrency, adaptive=settings.adaptive)
    memory = MemoryBudget(settings.store_memory_bytes)
    runs: list[BatchRun] = []
    send, receive = anyio.create_memory_object_stream[_Job](queue_bound(settings.concurrency))

    async def worker(jobs: MemoryObjectReceiveStream[_Job]) -> None:
        async with jobs:
            async for job in jobs:
                result = await fetch_part(
                    client,
                    job.part,
                    storage=job.run.storage,
                    options=options,
                    listener=listener,
                    slots=slots,
                    known=job.run.manifest.entries.get(job.part.relpath),
                    absent=job.run.absent(job.part),
                    stores=stores,
                    opened=job.opened,
                    memory=memory,
                )
                job.run.finished(result)
                listener.on_done(result)
                await job.run.save()
                await settled(job.run)

    try:
        async with thread_batches() as stores, single_error(), anyio.create_task_group() as tg:
            for _ in range(settings.concurrency):
                tg.start_soon(worker, receive.clone())
            receive.close()
            async with send:
                for batch in batches:
                    run = await open_batch(batch, root, manifest_name=manifest_name, owns=owns)
                    runs.append(run)
                    listener.on_batch(batch)
                    log.info(
                        "batch %s (%s): Catalog claims %s files, %s bytes, %s records",
                        batch.id,
                        batch.status,
                        batch.metrics.output_file_count,
                        batch.metrics.output_byte_size,
                        batch.metrics.output_record_count,
                    )
                    async for part, opened in _parts_of(client, run, planned, include, exclude):
                        listener.on_queued(part)
                        run.queued += 1
                        try:
                            await send.send(_Job(part=part, run=run, opened=opened))
                        except BaseException:
                            if opened is not None:
                                opened.close()
                            raise
                    # Reconciling against the Catalog needs every part of the batch (a shard
                    # has only its share: ``finalize`` reconciles the whole).
                    run.complete_listing = not include and not exclude and owns is None
                    run.listed = True
                    await settled(run)  # a batch whose parts are all in (or that has none)
    finally:
        reports = [await run.close() for run in runs]  # each shielded: manifests are saved
    return tuple(reports)


async def _parts_of(
    client: AEPClient,
    run: BatchRun,
    planned: Mapping[str, PlannedBatch] | None,
    include: Sequence[str],
    exclude: Sequence[str],
) -> AsyncIterator[tuple[Part, ByteStream | None]]:
    """The batch's parts this run fetches: from its plan when there is one, else listed."""
    if planned is not None:
        for part in replay(run, planned[run.batch.id]):
            yield part, None
        return
    async for item in walk(client, run, include, exclude):
        yield item
