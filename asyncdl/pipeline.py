"""A whole run: pick batches, list them into a bounded stream, fetch with N workers, reconcile.

The producer (this task) walks Catalog batches → batch files → directory pages and sends parts
into a bounded anyio memory object stream; N workers, each with a clone of the receive side,
fetch them concurrently. Back-pressure is by construction: when the workers are busy the producer
waits, so neither the queue nor the listing is ever held whole, and downloads start with the
first listing page. End of input is the producer closing its send side. The task group owns every
task; a fatal error (disk, auth, listing) cancels the rest and leaves ``.part`` files for resume.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from .client import AEPClient, ByteStream
from .concurrency import StreamSlots, single_error, thread_batches
from .config import (
    DEFAULT_BASE_URL,
    BatchSelection,
    Credentials,
    DownloadSettings,
    queue_bound,
    resolve_environment,
)
from .errors import ConfigError, StorageError, UnsafeNameError
from .fetch import FetchOptions, fetch_part
from .listing import (
    Marker,
    OpenedPart,
    Rejected,
    check_name,
    get_batch,
    iter_parts,
    latest_batches,
)
from .manifest import MANIFEST_NAME, Manifest
from .models import Batch, Part, PartResult, PartStatus
from .progress import NullProgress, ProgressListener
from .retry import RetryPolicy

__all__ = [
    "BatchReport",
    "DownloadResult",
    "PlannedBatch",
    "Reconciliation",
    "RejectedEntry",
    "connect",
    "download",
    "plan",
    "resolve_run",
    "select_batches",
]

log = logging.getLogger(__name__)

_MANIFEST_INTERVAL_S = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RejectedEntry:
    """A listing entry that was refused before any request (unsafe name)."""

    batch_id: str
    name: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Reconciliation:
    """A batch's downloaded totals against the Catalog's ``metrics``; ``None`` = not claimed.

    Bytes and rows decide: they describe the data itself. The file count only warns: Catalog
    metrics are "determined by the producer", and some count dataSetFiles, or markers, or
    nothing at all.
    """

    expected_bytes: int | None
    actual_bytes: int
    expected_rows: int | None
    actual_rows: int | None
    expected_files: int | None
    actual_files: int

    @property
    def ok(self) -> bool:
        return (self.expected_bytes is None or self.expected_bytes == self.actual_bytes) and (
            self.expected_rows is None
            or self.actual_rows is None
            or self.expected_rows == self.actual_rows
        )

    @property
    def warnings(self) -> tuple[str, ...]:
        """Disagreements that do not fail the batch, each naming the metric."""
        if self.expected_files is None or self.expected_files == self.actual_files:
            return ()
        return (
            f"outputFileCount says {self.expected_files} files, {self.actual_files} parts "
            "arrived (the producer's count; bytes and rows match)"
            if self.ok
            else f"outputFileCount says {self.expected_files} files, {self.actual_files} arrived",
        )


@dataclass(frozen=True, kw_only=True)
class BatchReport:
    """Everything one batch came to in this run."""

    batch: Batch
    directory: Path
    results: tuple[PartResult, ...]
    markers: int
    rejected: tuple[RejectedEntry, ...]
    reconciliation: Reconciliation | None  # None when the run did not see the whole batch

    @property
    def failed(self) -> tuple[PartResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    @property
    def ok(self) -> bool:
        return (
            not self.failed
            and not self.rejected
            and (self.reconciliation is None or self.reconciliation.ok)
        )


@dataclass(frozen=True, kw_only=True)
class DownloadResult:
    """The outcome of ``download``: per-batch reports plus run totals."""

    batches: tuple[BatchReport, ...]
    elapsed_s: float

    @property
    def results(self) -> tuple[PartResult, ...]:
        return tuple(r for b in self.batches for r in b.results)

    @property
    def failed(self) -> tuple[PartResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    @property
    def rejected(self) -> tuple[RejectedEntry, ...]:
        return tuple(e for b in self.batches for e in b.rejected)

    @property
    def downloaded(self) -> int:
        return sum(1 for r in self.results if r.status is PartStatus.DOWNLOADED)

    @property
    def skipped(self) -> int:
        return sum(1 for r in self.results if r.status is PartStatus.SKIPPED)

    @property
    def markers(self) -> int:
        return sum(b.markers for b in self.batches)

    @property
    def fetched_bytes(self) -> int:
        return sum(r.fetched_bytes for r in self.results)

    @property
    def total_bytes(self) -> int:
        return sum(r.part.size for r in self.results if r.ok)

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.batches)


@dataclass(eq=False)
class _BatchState:
    """Mutable bookkeeping of one batch while the run is in flight."""

    batch: Batch
    directory: Path
    manifest: Manifest
    complete_listing: bool = False  # set once the whole listing was walked, unfiltered
    queued: int = 0  # parts handed to the workers
    results: list[PartResult] = field(default_factory=list)
    markers: int = 0
    rejected: list[RejectedEntry] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # part name → dataSetFileId holding it
    paths: set[str] = field(default_factory=set)  # relpaths given out
    folders: set[str] = field(default_factory=set)  # the folders those relpaths create
    present: frozenset[str] = frozenset()  # relpaths of files there when the batch was opened
    save_lock: anyio.Lock = field(default_factory=anyio.Lock)
    saved_at: float = 0.0

    def reject(self, name: str, reason: str) -> None:
        self.rejected.append(RejectedEntry(batch_id=self.batch.id, name=name, reason=reason))

    def place(self, part: Part) -> Part | None:
        """Give ``part`` a unique relpath in the batch; ``None`` for a repeated listing entry.

        Raises UnsafeNameError for a path no part can take: a dataSetFileId that cannot be a
        folder name, or a file where another part needs a folder (``a`` and ``a/b``).
        """
        holder = self.seen.get(part.name)
        if holder is None:
            self.seen[part.name] = part.dataset_file_id
            placed = part
        elif holder == part.dataset_file_id:
            return None  # the same entry listed twice (overlapping pages): fetch it once
        else:
            sub = check_name(part.dataset_file_id)
            placed = dataclasses.replace(part, relpath=f"{sub}/{part.name}")
        folders = [placed.relpath[:i] for i, c in enumerate(placed.relpath) if c == "/"]
        if placed.relpath in self.folders or any(f in self.paths for f in folders):
            raise UnsafeNameError(placed.relpath, "another part needs that path as a folder")
        self.paths.add(placed.relpath)
        self.folders.update(folders)
        return placed

    async def save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.saved_at < _MANIFEST_INTERVAL_S:
            return
        async with self.save_lock:
            self.saved_at = now
            await self.manifest.save()

    def report(self) -> BatchReport:
        results = tuple(sorted(self.results, key=lambda r: r.part.relpath))
        reconciliation = None
        finished = len(results) == self.queued  # an interrupted run has parts in flight
        if self.complete_listing and finished and not self.rejected and all(r.ok for r in results):
            rows = [r.rows for r in results]
            metrics = self.batch.metrics
            reconciliation = Reconciliation(
                expected_bytes=metrics.output_byte_size,
                actual_bytes=sum(r.part.size for r in results),
                expected_rows=metrics.output_record_count,
                actual_rows=None if None in rows else sum(r or 0 for r in rows),
                expected_files=metrics.output_file_count,
                actual_files=len(results),
            )
            self.manifest.extra["reconciliation"] = {
                "ok": reconciliation.ok,
                "bytes": reconciliation.actual_bytes,
                "rows": reconciliation.actual_rows,
                "files": reconciliation.actual_files,
                "warnings": list(reconciliation.warnings),
            }
        return BatchReport(
            batch=self.batch,
            directory=self.directory,
            results=results,
            markers=self.markers,
            rejected=tuple(self.rejected),
            reconciliation=reconciliation,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class _Job:
    part: Part
    state: _BatchState
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


def _prepare_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".asyncdl-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageError(f"cannot write to {out_dir}: {exc.strerror or exc}") from exc


def _wanted(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
        return False
    return not include or any(fnmatch.fnmatchcase(name, pattern) for pattern in include)


def resolve_run(
    *,
    out: Path | str | None,
    concurrency: int | None,
    credentials: Credentials | None,
    settings: DownloadSettings | None,
) -> tuple[Credentials, DownloadSettings]:
    """Fill what the caller left out: credentials from config file + environment, defaults."""
    environment = None
    if credentials is None or settings is None:
        environment = {k: v.value for k, v in resolve_environment().items()}
    if credentials is None:
        assert environment is not None
        credentials = Credentials.from_env(environment)
    if settings is None:
        assert environment is not None
        settings = DownloadSettings(base_url=environment.get("AEP_BASE_URL", DEFAULT_BASE_URL))
    if out is not None:
        settings = dataclasses.replace(settings, out_dir=Path(out))
    if concurrency is not None:
        settings = dataclasses.replace(settings, concurrency=concurrency)
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


def _policy(settings: DownloadSettings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        base_delay_s=settings.backoff_base_s,
        max_delay_s=settings.backoff_max_s,
        deadline_s=settings.part_timeout_s,
    )


@dataclass(frozen=True, kw_only=True)
class PlannedBatch:
    """What a download of one batch would fetch (``--dry-run``)."""

    batch: Batch
    parts: tuple[Part, ...]
    complete: frozenset[str]  # relpaths already complete on disk: would be skipped
    markers: int
    rejected: tuple[RejectedEntry, ...]

    @property
    def bytes_to_fetch(self) -> int:
        return sum(p.size for p in self.parts if p.relpath not in self.complete)


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
    planned = []
    async with AEPClient(credentials=credentials, settings=settings) as client:
        for batch in await select_batches(client, dataset_id, selection):
            state = _BatchState(
                batch=batch,
                directory=settings.out_dir / check_name(batch.id),
                manifest=Manifest(settings.out_dir / batch.id, batch, {}),
            )
            parts = []
            async for part, opened in _walk(client, state, include, exclude):
                if opened is not None:
                    opened.close()  # a dry run reads no part's bytes
                parts.append(part)
            complete = await anyio.to_thread.run_sync(_complete_on_disk, state.directory, parts)
            planned.append(
                PlannedBatch(
                    batch=batch,
                    parts=tuple(parts),
                    complete=complete,
                    markers=state.markers,
                    rejected=tuple(state.rejected),
                )
            )
    return planned


def _complete_on_disk(directory: Path, parts: list[Part]) -> frozenset[str]:
    complete = set()
    for part in parts:
        try:
            if (directory / part.relpath).stat().st_size == part.size:
                complete.add(part.relpath)
        except OSError:
            pass
    return frozenset(complete)


async def _walk(
    client: AEPClient,
    state: _BatchState,
    include: Sequence[str],
    exclude: Sequence[str],
) -> AsyncIterator[tuple[Part, ByteStream | None]]:
    """The batch's wanted parts, placed, each with its open answer when the listing call was
    answered with the file itself; markers and rejected entries counted into ``state``."""
    async for listed in iter_parts(client, state.batch.id):
        opened: ByteStream | None = None
        entry = listed.part if isinstance(listed, OpenedPart) else listed
        if isinstance(listed, OpenedPart):
            opened = listed.stream
        if isinstance(entry, Marker):
            state.markers += 1
            continue
        if isinstance(entry, Rejected):
            state.reject(entry.name, str(entry.error))
            continue
        placed = None
        if _reserved(entry.relpath):
            state.reject(entry.name, "collides with asyncdl's own files (manifest, .part)")
        elif _wanted(entry.name, include, exclude):
            try:
                placed = state.place(entry)
            except UnsafeNameError as exc:
                state.reject(entry.name, str(exc))
        if placed is None:
            if opened is not None:
                opened.close()  # not wanted: the file's bytes are not read
            continue
        yield placed, opened


def _reserved(relpath: str) -> bool:
    """Names asyncdl itself writes into a batch directory; a part must not overwrite them."""
    name = relpath.rsplit("/", 1)[-1]
    return (
        relpath == MANIFEST_NAME
        or name.startswith(".manifest.")
        or name.endswith((".part", ".segments", ".segments.tmp"))
    )


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
    policy = _policy(settings)
    options = FetchOptions(
        policy=policy,
        write_buffer_bytes=settings.write_buffer_bytes,
        verify_parquet=settings.verify_parquet,
        segment_threshold_bytes=settings.segment_threshold_bytes,
        segment_bytes=settings.segment_bytes,
        fsync=settings.fsync,
    )
    slots = StreamSlots(settings.concurrency, adaptive=settings.adaptive)
    await anyio.to_thread.run_sync(_prepare_out_dir, settings.out_dir)
    states: list[_BatchState] = []
    async with AEPClient(
        credentials=credentials, settings=settings, retry=policy, retry_listener=listener
    ) as client:
        batches = await select_batches(client, dataset_id, selection)
        send, receive = anyio.create_memory_object_stream[_Job](queue_bound(settings.concurrency))

        async def worker(jobs: MemoryObjectReceiveStream[_Job]) -> None:
            async with jobs:
                async for job in jobs:
                    known = job.state.manifest.entries.get(job.part.relpath)
                    result = await fetch_part(
                        client,
                        job.part,
                        batch_dir=job.state.directory,
                        options=options,
                        listener=listener,
                        slots=slots,
                        known=known,
                        absent=job.part.relpath not in job.state.present
                        and f"{job.part.relpath}.part" not in job.state.present,
                        stores=stores,
                        opened=job.opened,
                    )
                    job.state.results.append(result)
                    job.state.manifest.record(result)
                    listener.on_done(result)
                    await job.state.save()

        try:
            async with (
                thread_batches() as stores,
                single_error(),
                anyio.create_task_group() as tg,
            ):
                for _ in range(settings.concurrency):
                    tg.start_soon(worker, receive.clone())
                receive.close()
                async with send:
                    for batch in batches:
                        state = await _open_batch(batch, settings.out_dir)
                        states.append(state)
                        listener.on_batch(batch)
                        log.info(
                            "batch %s (%s): Catalog claims %s files, %s bytes, %s records",
                            batch.id,
                            batch.status,
                            batch.metrics.output_file_count,
                            batch.metrics.output_byte_size,
                            batch.metrics.output_record_count,
                        )
                        async for part, opened in _walk(client, state, include, exclude):
                            listener.on_queued(part)
                            state.queued += 1
                            job = _Job(part=part, state=state, opened=opened)
                            try:
                                await send.send(job)
                            except BaseException:
                                if opened is not None:
                                    opened.close()
                                raise
                        # Reconciling against the Catalog needs every part of the batch.
                        state.complete_listing = not include and not exclude
        finally:
            with anyio.CancelScope(shield=True):
                for state in states:
                    state.report()  # fills the manifest's reconciliation block
                    await state.save(force=True)
    return DownloadResult(
        batches=tuple(s.report() for s in states), elapsed_s=time.monotonic() - started
    )


async def _open_batch(batch: Batch, out_dir: Path) -> _BatchState:
    check_name(batch.id)  # a batch id from the server becomes a directory name
    directory = out_dir / batch.id
    try:
        await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    manifest = await anyio.to_thread.run_sync(Manifest.load, directory, batch)
    try:
        present = await anyio.to_thread.run_sync(_files_below, directory)
    except OSError as exc:
        raise StorageError(f"cannot list {directory}: {exc.strerror or exc}") from exc
    return _BatchState(batch=batch, directory=directory, manifest=manifest, present=present)


def _files_below(directory: Path) -> frozenset[str]:
    """Relative paths of the files in a batch directory and below (dataSetFileId and partition
    folders).

    Listed once, off the loop, so that a fresh part needs no stat at all.
    """
    found: set[str] = set()
    pending = [("", directory)]
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file():
                    found.add(prefix + entry.name)
                elif entry.is_dir():
                    pending.append((f"{prefix}{entry.name}/", Path(entry.path)))
    return frozenset(found)
