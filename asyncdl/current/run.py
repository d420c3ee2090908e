"""``sync``: keep a dataset's current view in a destination, incrementally and crash-safe.

One run: take the destination's sync lock (one sync at a time), load the state (or rebuild it
from the batch manifests and the Catalog), ask the Catalog only for batches that may be new
(created after the watermark less a look-back: a batch created earlier can succeed later),
work out the current view, download what of it is not complete, then name it in ``CURRENT`` and
prune superseded batches beyond the newest ``keep``.

Writes happen in an order that makes a crash anywhere repeat work but never lose or trust
anything: a batch's manifest (by the pipeline), then the state that vouches for it (synced,
atomically), then ``CURRENT`` (only once every batch of the view is complete and reconciled),
then pruning.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from ..batch import BatchRun
from ..client import AEPClient
from ..config import Credentials, DownloadSettings
from ..errors import ConfigError
from ..fetch import FetchOptions
from ..layout import CURRENT_NAME, MANIFEST_NAME, SYNC_LOCK, sync_state
from ..listing import iter_batches
from ..pipeline import fetch_batches, resolve_run
from ..progress import NullProgress, ProgressListener
from ..results import BatchReport, DownloadResult
from ..storage import LockHold, Storage, open_storage
from .state import BatchState, SyncState, manifest_digest
from .view import current_view, prunable, superseding

__all__ = ["DEFAULT_LOOKBACK_S", "SyncResult", "sync"]

log = logging.getLogger(__name__)

#: How far before the watermark each run looks again: a batch created earlier may succeed later.
DEFAULT_LOOKBACK_S = 48 * 3600.0
#: Superseded batches kept on disk, newest first (a rollback window), besides the current view.
DEFAULT_KEEP = 2


@dataclass(frozen=True, kw_only=True)
class SyncResult:
    """What one sync did: the same batch reports as ``download``'s, plus the view's changes."""

    dataset_id: str
    new: tuple[str, ...]  # successful batches this run saw first
    fetched: DownloadResult  # the batches of the view it downloaded (none: nothing to do)
    superseded: tuple[str, ...]  # batches this run found replaced
    pruned: tuple[str, ...]  # superseded batch directories it removed
    current: tuple[str, ...]  # the current view, newest first
    current_complete: bool  # every batch of it is complete, and CURRENT names them
    rebuilt: str | None  # why the state was rebuilt, when it was

    @property
    def ok(self) -> bool:
        return self.fetched.ok and self.current_complete


async def _off_loop_read(storage: Storage, relpath: str) -> bytes | None:
    return await anyio.to_thread.run_sync(storage.read, relpath)


async def _save(root: Storage, state: SyncState, saving: anyio.Lock, held: LockHold) -> None:
    """The state, synced and atomically replaced: after a crash it is the old or the new;
    never once the sync lock may be another run's (``held.check``).

    One save at a time, each encoding the state once it holds ``saving``: two batches that
    finish together save concurrently, and the older snapshot's rename must not land last.
    """
    async with saving:
        held.check()
        document = state.encode()
        await anyio.to_thread.run_sync(
            lambda: root.replace(sync_state(state.dataset_id), document, durable=True)
        )


async def _load(
    root: Storage, *, credentials: Credentials, dataset_id: str
) -> tuple[SyncState, str | None]:
    """The state, or one rebuilt from the batch manifests (and why it had to be)."""
    where = root.where(sync_state(dataset_id))
    raw = await _off_loop_read(root, sync_state(dataset_id))
    if raw is not None:
        try:
            state = SyncState.decode(raw)
        except ValueError as exc:
            reason = f"{where} was unreadable ({exc})"
        else:
            state.check_owner(
                org_id=credentials.org_id,
                sandbox=credentials.sandbox,
                dataset_id=dataset_id,
                where=where,
            )
            return state, None
    else:
        reason = f"{where} did not exist"
    state = SyncState(org_id=credentials.org_id, sandbox=credentials.sandbox, dataset_id=dataset_id)
    found = await anyio.to_thread.run_sync(_manifests_of, root, dataset_id)
    for batch_id, (raw_manifest, reconciled) in found.items():
        # Known to be on disk; whether it still is current, and its Catalog facts, the full
        # Catalog listing of this run says (the watermark is gone).
        state.batches[batch_id] = BatchState(
            id=batch_id,
            status="unknown",
            complete=reconciled,
            manifest_sha256=manifest_digest(raw_manifest) if reconciled else None,
        )
    return state, f"{reason}: rebuilt from {len(found)} batch manifests and the Catalog"


def _manifests_of(root: Storage, dataset_id: str) -> dict[str, tuple[bytes, bool]]:
    """The batch manifests below ``root`` that are ``dataset_id``'s: raw, and reconciled?"""
    found: dict[str, tuple[bytes, bool]] = {}
    for folder in root.folders():
        raw = root.read(f"{folder}/{MANIFEST_NAME}")
        if raw is None:
            continue
        try:
            document = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(document, dict) or document.get("dataset_id") != dataset_id:
            continue
        reconciliation = document.get("reconciliation")
        reconciled = isinstance(reconciliation, dict) and reconciliation.get("ok") is True
        found[folder] = (raw, reconciled)
    return found


async def _trusted(root: Storage, state: SyncState, view: Sequence[str]) -> set[str]:
    """Batches of the view the state vouches for, whose manifest is still the one it vouched
    for: these need no listing at all."""
    trusted = set()
    for batch_id in view:
        known = state.batches[batch_id]
        if not known.complete or known.manifest_sha256 is None:
            continue
        raw = await _off_loop_read(root, f"{batch_id}/{MANIFEST_NAME}")
        if raw is not None and manifest_digest(raw) == known.manifest_sha256:
            trusted.add(batch_id)
        else:
            log.warning("%s: its manifest changed since it was complete; checking it", batch_id)
            state.update(batch_id, complete=False, manifest_sha256=None)
    return trusted


async def sync(
    dataset_id: str,
    *,
    out: Path | str | None = None,
    keep: int = DEFAULT_KEEP,
    lookback_s: float = DEFAULT_LOOKBACK_S,
    concurrency: int | None = None,
    credentials: Credentials | None = None,
    settings: DownloadSettings | None = None,
    on_progress: ProgressListener | None = None,
) -> SyncResult:
    """Bring ``out`` (default ``settings``'s) to the dataset's current view; see the module.

    Raises BusyError when another sync holds ``out``, ConfigError for a state of another org,
    sandbox or dataset, and what ``download`` raises. Part and batch failures are in the result.
    """
    if keep < 0:
        raise ConfigError(f"--keep must be 0 or more, got {keep}")
    if not lookback_s >= 0:
        raise ConfigError(f"--lookback must be 0 or more, got {lookback_s}")
    credentials, settings = resolve_run(
        out=out, concurrency=concurrency, credentials=credentials, settings=settings
    )
    listener = on_progress or NullProgress()
    started = time.monotonic()
    options = FetchOptions.from_settings(settings)
    root = open_storage(settings.out_dir)
    saving = anyio.Lock()  # the state is saved by one task at a time (_save)
    await anyio.to_thread.run_sync(root.prepare)
    lock = root.lock(SYNC_LOCK)
    held = await anyio.to_thread.run_sync(lock.__enter__)
    try:
        state, rebuilt = await _load(root, credentials=credentials, dataset_id=dataset_id)
        if rebuilt:
            log.warning("%s", rebuilt)
        before = set(superseding(state.batches.values()))
        async with AEPClient(
            credentials=credentials,
            settings=settings,
            retry=options.policy,
            retry_listener=listener,
        ) as client:
            since = None
            if state.watermark_ms is not None:
                since = max(0, state.watermark_ms - int(lookback_s * 1000))
            new = []
            async for batch in iter_batches(
                client,
                dataset_id,
                status="success",
                created_client=None,  # every producer's batches: the dataset's own view
                created_after_ms=since,
                newest_first=False,
            ):
                if state.learn(batch):
                    new.append(batch.id)
            replaced = superseding(state.batches.values())
            for batch_id, by in replaced.items():
                if batch_id in state.batches:
                    state.update(batch_id, superseded_by=by)
            view = current_view(state.batches)
            trusted = await _trusted(root, state, view)
            todo = [state.batches[b].batch(dataset_id) for b in view if b not in trusted]
            await _save(
                root, state, saving, held
            )  # what the Catalog said; it vouches for no batch yet

            async def commit(run: BatchRun) -> None:
                report = run.report
                if report is None or not (report.ok and report.reconciliation is not None):
                    return
                batch_id = report.batch.id
                raw = await _off_loop_read(root, f"{batch_id}/{MANIFEST_NAME}")
                if raw is None:
                    return
                state.update(batch_id, complete=True, manifest_sha256=manifest_digest(raw))
                await _save(
                    root, state, saving, held
                )  # after the manifest: it now vouches for the batch

            reports: tuple[BatchReport, ...] = ()
            if todo:
                reports = await fetch_batches(
                    client,
                    todo,
                    root,
                    settings=settings,
                    options=options,
                    listener=listener,
                    include=(),
                    exclude=(),
                    on_batch=commit,
                )
        complete = all(state.batches[b].complete for b in view)
        pruned: list[str] = []
        if complete:
            held.check()
            await _write_current(root, view)
            on_disk = set(await anyio.to_thread.run_sync(root.folders))
            for batch_id in prunable(state.batches, keep=keep):
                if batch_id in on_disk:
                    held.check()
                    await anyio.to_thread.run_sync(root.remove_tree, batch_id)
                    pruned.append(batch_id)
                state.update(batch_id, pruned=True)
            await _save(root, state, saving, held)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lock.__exit__, None, None, None)
    return SyncResult(
        dataset_id=dataset_id,
        new=tuple(new),
        fetched=DownloadResult(batches=reports, elapsed_s=time.monotonic() - started),
        superseded=tuple(b for b in replaced if b not in before and b in state.batches),
        pruned=tuple(pruned),
        current=tuple(view),
        current_complete=complete,
        rebuilt=rebuilt,
    )


async def _write_current(root: Storage, view: Sequence[str]) -> None:
    """``CURRENT``: the view's batch ids, newest first, replaced atomically (when it changed)."""
    document = "".join(f"{batch_id}\n" for batch_id in view).encode()
    if await _off_loop_read(root, CURRENT_NAME) == document:
        return
    await anyio.to_thread.run_sync(lambda: root.replace(CURRENT_NAME, document, durable=True))
