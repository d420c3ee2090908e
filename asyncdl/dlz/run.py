"""``dlz exports`` and ``dlz download``: a dataset's exports in the Data Landing Zone, listed, or
downloaded through the same pipeline as Data Access batches.

One run: ask AEP for the landing zone's credentials (once), give the client the store's request
signer, find the dataset's export folders and judge each, pick the exports asked for (the
newest complete one; ``export_time``; or ``all_new``: every complete one not yet on disk, by
the state), and fetch their files as parts of one batch per export, each into
``OUT/<dataset id>/exportTime=<time>/`` with its manifest written last. An export that does not
add up is held back (and said to be) unless ``partial``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from ..batch import BatchRun
from ..client import AEPClient
from ..config import Credentials, DownloadSettings
from ..errors import NoExportError
from ..fetch import FetchOptions
from ..layout import MANIFEST_NAME, dlz_lock
from ..listing import check_name
from ..models import Batch, BatchMetrics, Part
from ..pipeline import fetch_batches, resolve_run
from ..progress import NullProgress, ProgressListener
from ..results import BatchReport, DownloadResult, PlannedBatch, RejectedEntry
from ..storage import LockHold, Storage, open_storage
from .completeness import DEFAULT_SETTLE_S
from .credentials import fetch_landing_zone
from .exports import Export, find_exports
from .state import (
    SOURCE_KIND,
    DlzState,
    KnownExport,
    forget_changed,
    load_state,
    manifest_digest,
    save_state,
)
from .store import ZoneStore, open_zone

__all__ = ["DlzDownload", "ExportsFound", "Zone", "download_exports", "list_exports"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Zone:
    """Where to find a dataset's exports, and how long a folder without manifest must rest."""

    folder: str | None = None  # the dataflow's folder (None: searched)
    settle_s: float = DEFAULT_SETTLE_S
    s3_endpoint: str | None = None  # an AWS-provisioned landing zone's S3 endpoint
    s3_region: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExportsFound:
    """``dlz exports``: what the landing zone holds of the dataset, newest first."""

    dataset_id: str
    where: str  # the container or bucket (never a credential)
    exports: tuple[Export, ...]


@dataclass(frozen=True, kw_only=True)
class DlzDownload:
    """What one ``dlz download`` did."""

    dataset_id: str
    where: str
    found: tuple[Export, ...]  # every export of the dataset, newest first
    chosen: tuple[Export, ...]  # what this run fetched (or would have, for a dry run)
    held_back: tuple[Export, ...]  # incomplete exports left for a later run
    already: tuple[str, ...]  # export times the state knows complete (skipped without a look)
    fetched: DownloadResult
    planned: tuple[PlannedBatch, ...] = ()  # a dry run's plan
    rebuilt: str | None = None  # why the state was rebuilt, when it was

    @property
    def ok(self) -> bool:
        return self.fetched.ok


async def _open_zone(client: AEPClient, zone: Zone) -> ZoneStore:
    landing = await fetch_landing_zone(client)
    store = open_zone(landing, s3_endpoint=zone.s3_endpoint, s3_region=zone.s3_region)
    client.sign_requests(store.signer)
    return store


async def _exports(store: ZoneStore, dataset_id: str, zone: Zone) -> list[Export]:
    find = functools.partial(
        find_exports,
        store,
        dataset_id,
        folder=zone.folder,
        settle_s=zone.settle_s,
        now=dt.datetime.now(dt.UTC),
    )
    return await anyio.to_thread.run_sync(find)


async def list_exports(
    dataset_id: str,
    *,
    zone: Zone | None = None,
    credentials: Credentials | None = None,
    settings: DownloadSettings | None = None,
) -> ExportsFound:
    """The dataset's export folders in the landing zone, each judged; nothing is downloaded."""
    zone = zone or Zone()
    credentials, settings = resolve_run(
        out=None, concurrency=None, credentials=credentials, settings=settings
    )
    async with AEPClient(credentials=credentials, settings=settings) as client:
        store = await _open_zone(client, zone)
        exports = await _exports(store, dataset_id, zone)
    return ExportsFound(dataset_id=dataset_id, where=store.bucket.url, exports=tuple(exports))


def _choose(
    exports: Sequence[Export],
    *,
    export_time: str | None,
    all_new: bool,
    partial: bool,
    known: DlzState | None,
) -> tuple[list[Export], list[Export], list[str]]:
    """(to fetch, held back, already complete) among ``exports`` (newest first)."""
    usable = [e for e in exports if e.completeness.complete or partial]
    held = [e for e in exports if not (e.completeness.complete or partial)]
    if export_time is not None:
        match = [e for e in exports if e.export_time == export_time]
        if not match:
            times = ", ".join(e.export_time for e in exports)
            raise NoExportError(
                f"no export of {exports[0].dataset_id} at exportTime={export_time} "
                f"(the landing zone has {times})"
            )
        if match[0] not in usable:
            raise NoExportError(
                f"the export at exportTime={export_time} is held back: "
                f"{match[0].completeness.detail} (--partial takes it anyway)"
            )
        return match, [], []
    if all_new:
        done = {t for t, e in (known.exports.items() if known is not None else ()) if e.complete}
        return (
            [e for e in usable if e.export_time not in done],
            [e for e in held if e.export_time not in done],
            sorted(done & {e.export_time for e in exports}, reverse=True),
        )
    if not usable:
        detail = "; ".join(f"{e.export_time}: {e.completeness.detail}" for e in held[:3])
        raise NoExportError(
            f"no complete export of {exports[0].dataset_id} yet ({detail}); --partial takes "
            "the newest anyway"
        )
    newest = usable[0]
    return [newest], [e for e in held if e.export_time > newest.export_time], []


def _wanted(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
        return False
    return not include or any(fnmatch.fnmatchcase(name, pattern) for pattern in include)


def _planned(
    store: ZoneStore, export: Export, include: Sequence[str], exclude: Sequence[str]
) -> PlannedBatch:
    """The export as a batch of parts: each file's href is its unsigned URL, its etag the
    version listed (every request names it), its name the last path component."""
    batch = Batch(
        id=export.name,
        status="success",
        dataset_id=export.dataset_id,
        created_ms=int(export.when.timestamp() * 1000),
        metrics=BatchMetrics(
            output_byte_size=export.expected_bytes, output_file_count=export.expected_files
        ),
    )
    parts = tuple(
        Part(
            batch_id=batch.id,
            dataset_file_id=export.name,
            name=blob.relpath.rsplit("/", 1)[-1],
            relpath=blob.relpath,
            size=blob.size,
            href=store.href(blob.key),
            etag=blob.etag,
        )
        for blob in export.files
        if _wanted(blob.relpath.rsplit("/", 1)[-1], include, exclude)
    )
    rejected = tuple(
        RejectedEntry(batch_id=batch.id, name=name, reason=why) for name, why in export.rejected
    )
    return PlannedBatch(
        batch=batch, parts=parts, complete=frozenset(), markers=0, rejected=rejected
    )


def _source(export: Export) -> dict[str, object]:
    """What a downloaded export's manifest says of where it came from (never a URL)."""
    return {
        "kind": SOURCE_KIND,
        "folder": export.folder,
        "export_time": export.export_time,
        "check": export.completeness.kind.value,
        "complete": export.completeness.complete,
        "detail": export.completeness.detail,
        "export_manifests": list(export.manifests),
    }


async def _known(
    root: Storage, credentials: Credentials, dataset_id: str
) -> tuple[DlzState, str | None]:
    """What the state vouches for (rebuilt from the manifests when it must be, and why), less
    the exports whose manifest changed since; read only."""
    state, rebuilt = await anyio.to_thread.run_sync(
        functools.partial(
            load_state,
            root,
            org_id=credentials.org_id,
            sandbox=credentials.sandbox,
            dataset_id=dataset_id,
        )
    )
    if rebuilt:
        log.info("%s", rebuilt)
    for changed in await anyio.to_thread.run_sync(forget_changed, root, state):
        log.warning("exportTime=%s: its manifest changed since it was complete", changed)
    return state, rebuilt


async def download_exports(
    dataset_id: str,
    *,
    out: Path | str | None = None,
    export_time: str | None = None,
    all_new: bool = False,
    partial: bool = False,
    dry_run: bool = False,
    zone: Zone | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    concurrency: int | None = None,
    credentials: Credentials | None = None,
    settings: DownloadSettings | None = None,
    on_progress: ProgressListener | None = None,
) -> DlzDownload:
    """Download the dataset's newest complete export (or ``export_time``, or ``all_new``) into
    ``out/<dataset id>/exportTime=<time>/``; see the module. Raises NoLandingZoneError,
    NoExportError, SourceAuthError or LandingZoneExpiredError, BusyError (another download of
    the dataset holds ``out``) and what ``download`` raises; part failures are in the result."""
    zone = zone or Zone()
    check_name(dataset_id)
    credentials, settings = resolve_run(
        out=out, concurrency=concurrency, credentials=credentials, settings=settings
    )
    listener = on_progress or NullProgress()
    started = time.monotonic()
    options = FetchOptions.from_settings(settings)
    root = open_storage(settings.out_dir)
    async with AEPClient(
        credentials=credentials, settings=settings, retry=options.policy, retry_listener=listener
    ) as client:
        store = await _open_zone(client, zone)
        exports = await _exports(store, dataset_id, zone)
        if dry_run:
            known = None
            if all_new:  # what is new is what the state does not vouch for: read, not written
                known, _ = await _known(root, credentials, dataset_id)
            chosen, held, already = _choose(
                exports, export_time=export_time, all_new=all_new, partial=partial, known=known
            )
            below = root.sub(dataset_id)
            plan = [
                await anyio.to_thread.run_sync(
                    _on_disk, below, _planned(store, e, include, exclude)
                )
                for e in chosen
            ]
            return DlzDownload(
                dataset_id=dataset_id,
                where=store.bucket.url,
                found=tuple(exports),
                chosen=tuple(chosen),
                held_back=tuple(held),
                already=tuple(already),
                fetched=DownloadResult(batches=(), elapsed_s=time.monotonic() - started),
                planned=tuple(plan),
            )
        await anyio.to_thread.run_sync(root.prepare)
        lock = root.lock(dlz_lock(dataset_id))
        lock_hold = await anyio.to_thread.run_sync(lock.__enter__)
        try:
            state, rebuilt = await _known(root, credentials, dataset_id)
            chosen, held, already = _choose(
                exports, export_time=export_time, all_new=all_new, partial=partial, known=state
            )
            by_name = {e.name: e for e in chosen}
            planned = {e.name: _planned(store, e, include, exclude) for e in chosen}

            saving = anyio.Lock()  # two exports closing at once must not race their saves

            async def commit(run: BatchRun) -> None:
                async with saving:
                    await _commit(root, state, run, by_name[run.batch.id], lock_hold)

            reports: tuple[BatchReport, ...] = ()
            if chosen:
                reports = await fetch_batches(
                    client,
                    [p.batch for p in planned.values()],
                    root.sub(dataset_id),
                    settings=settings,
                    options=options,
                    listener=listener,
                    include=include,
                    exclude=exclude,
                    planned=planned,
                    on_batch=commit,
                )
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lock.__exit__, None, None, None)
    return DlzDownload(
        dataset_id=dataset_id,
        where=store.bucket.url,
        found=tuple(exports),
        chosen=tuple(chosen),
        held_back=tuple(held),
        already=tuple(already),
        fetched=DownloadResult(batches=reports, elapsed_s=time.monotonic() - started),
        rebuilt=rebuilt,
    )


def _on_disk(below: Storage, planned: PlannedBatch) -> PlannedBatch:
    storage = below.sub(planned.batch.id)
    complete = frozenset(p.relpath for p in planned.parts if storage.size(p.relpath) == p.size)
    return PlannedBatch(
        batch=planned.batch,
        parts=planned.parts,
        complete=complete,
        markers=0,
        rejected=planned.rejected,
    )


async def _commit(
    root: Storage, state: DlzState, run: BatchRun, export: Export, lock: LockHold
) -> None:
    """An export's batch is in: its manifest says where it came from, then the state vouches
    for it if it arrived whole and reconciled (manifest first: a crash between repeats work).

    An export taken before it was complete (``--partial``) is never vouched for, however well
    what was there arrived: ``--all-new`` must come back for the rest. Nothing is saved once the
    lock may be another run's (``lock.check``).
    """
    lock.check()
    run.manifest.extra["source"] = _source(export)
    await run.manifest.save()
    report = run.report
    if report is None or not (report.ok and report.reconciliation is not None):
        return
    if not export.completeness.complete:
        return
    raw = await anyio.to_thread.run_sync(run.storage.read, MANIFEST_NAME)
    if raw is None:
        return
    state.exports[export.export_time] = KnownExport(
        export_time=export.export_time,
        folder=export.folder,
        complete=True,
        manifest_sha256=manifest_digest(raw),
        check=export.completeness.kind.value,
    )
    lock.check()
    await anyio.to_thread.run_sync(save_state, root, state)
