"""One batch while a run is in flight: its place in storage, its listing turned into placed
parts, what came back, its manifest, and its reconciliation with the Catalog.

``walk`` turns the listing's entries into the parts a run fetches: markers counted, refused
entries recorded, names placed so that no two parts share a path (a name two dataSetFiles hold
goes below its dataSetFileId) and no part takes a name asyncdl writes itself (layout.py).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import anyio

from .client import AEPClient, ByteStream
from .errors import UnsafeNameError
from .layout import MANIFEST_NAME, reserved
from .listing import Marker, OpenedPart, Rejected, check_name, iter_parts
from .manifest import Manifest
from .models import Batch, Part, PartResult
from .results import BatchReport, PlannedBatch, Reconciliation, RejectedEntry
from .storage import Storage

__all__ = ["BatchRun", "open_batch", "replay", "walk"]

#: The manifest is rewritten at most this often while parts finish (and once at the end).
MANIFEST_INTERVAL_S = 1.0


@dataclass(eq=False)
class BatchRun:
    """Mutable bookkeeping of one batch while the run is in flight."""

    batch: Batch
    storage: Storage  # the batch's own (OUT/<batch id>)
    manifest: Manifest
    listed: bool = False  # set once the listing was walked to its end
    complete_listing: bool = False  # ... and unfiltered: every part of the batch was queued
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
    report: BatchReport | None = None  # once closed
    settling: bool = False  # claimed by the task that closes it as done
    # Which placed parts this run fetches (a shard: its share); every placed part is in
    # ``planned`` all the same, so all shards agree on paths and on the plan's digest.
    owns: Callable[[Part], bool] = field(default=lambda part: True)
    planned: list[Part] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """Whether every part of the walked listing has its result (nothing left in flight)."""
        return self.listed and len(self.results) == self.queued

    def reject(self, name: str, reason: str) -> None:
        self.rejected.append(RejectedEntry(batch_id=self.batch.id, name=name, reason=reason))

    def absent(self, part: Part) -> bool:
        """Whether neither the part nor its temp file was there when the batch was opened."""
        return part.relpath not in self.present and f"{part.relpath}.part" not in self.present

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

    def finished(self, result: PartResult) -> None:
        self.results.append(result)
        self.manifest.record(result)

    async def save(self, *, force: bool = False) -> None:
        """Rewrite the manifest, at most once per interval unless ``force``."""
        now = time.monotonic()
        if not force and now - self.saved_at < MANIFEST_INTERVAL_S:
            return
        async with self.save_lock:
            self.saved_at = now
            await self.manifest.save()

    def reconciliation(self) -> Reconciliation | None:
        """The batch against the Catalog's metrics; None unless every part of the whole
        listing arrived (an interrupted or filtered run has nothing to compare)."""
        results = self.results
        finished = len(results) == self.queued  # an interrupted run has parts in flight
        if not (self.complete_listing and finished and not self.rejected):
            return None
        if not all(r.ok for r in results):
            return None
        rows = [r.rows for r in results]
        metrics = self.batch.metrics
        return Reconciliation(
            expected_bytes=metrics.output_byte_size,
            actual_bytes=sum(r.part.size for r in results),
            expected_rows=metrics.output_record_count,
            actual_rows=None if None in rows else sum(r or 0 for r in rows),
            expected_files=metrics.output_file_count,
            actual_files=len(results),
        )

    async def settle(self, on_done: Callable[[BatchRun], Awaitable[None]] | None) -> None:
        """Close the batch and tell ``on_done``, once, if every part of it is in.

        Claimed before the first await: the worker that stores the last part and the producer
        that ends the listing can both find the batch done while closing awaits its manifest.
        """
        if self.done and not self.settling:
            self.settling = True
            await self.close()
            if on_done is not None:
                await on_done(self)

    async def close(self) -> BatchReport:
        """The batch's report, its reconciliation written into the manifest, saved (shielded:
        an interrupted run still records what arrived). Once: later calls return the same."""
        if self.report is not None:
            return self.report
        reconciliation = self.reconciliation()
        if reconciliation is not None:
            self.manifest.extra["reconciliation"] = {
                "ok": reconciliation.ok,
                "bytes": reconciliation.actual_bytes,
                "rows": reconciliation.actual_rows,
                "files": reconciliation.actual_files,
                "warnings": list(reconciliation.warnings),
            }
        with anyio.CancelScope(shield=True):
            await self.save(force=True)
        self.report = BatchReport(
            batch=self.batch,
            directory=self.storage.where(),
            results=tuple(sorted(self.results, key=lambda r: r.part.relpath)),
            markers=self.markers,
            rejected=tuple(self.rejected),
            reconciliation=reconciliation,
        )
        return self.report


async def open_batch(
    batch: Batch,
    root: Storage,
    *,
    manifest_name: str = MANIFEST_NAME,
    owns: Callable[[Part], bool] | None = None,
) -> BatchRun:
    """The batch's run state: its storage below ``root``, the manifest of an earlier run (a
    shard's: its fragment), and one listing of what is already there, so a fresh part needs no
    lookup."""
    check_name(batch.id)  # a batch id from the server becomes a directory name
    storage = root.sub(batch.id)
    await anyio.to_thread.run_sync(storage.prepare)
    manifest = await anyio.to_thread.run_sync(
        functools.partial(Manifest.load, storage, batch, name=manifest_name)
    )
    present = await anyio.to_thread.run_sync(storage.files)
    run = BatchRun(batch=batch, storage=storage, manifest=manifest, present=present)
    if owns is not None:
        run.owns = owns
    return run


def _wanted(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
        return False
    return not include or any(fnmatch.fnmatchcase(name, pattern) for pattern in include)


async def walk(
    client: AEPClient,
    run: BatchRun,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> AsyncIterator[tuple[Part, ByteStream | None]]:
    """The batch's wanted parts, placed, each with its open answer when the listing call was
    answered with the file itself; markers and refused entries counted into ``run``."""
    async for listed in iter_parts(client, run.batch.id):
        opened: ByteStream | None = None
        entry = listed.part if isinstance(listed, OpenedPart) else listed
        if isinstance(listed, OpenedPart):
            opened = listed.stream
        if isinstance(entry, Marker):
            run.markers += 1
            continue
        if isinstance(entry, Rejected):
            run.reject(entry.name, str(entry.error))
            continue
        placed = None
        if reserved(entry.relpath):
            run.reject(entry.name, "collides with asyncdl's own files (manifest, .part)")
        elif _wanted(entry.name, include, exclude):
            try:
                placed = run.place(entry)
            except UnsafeNameError as exc:
                run.reject(entry.name, str(exc))
        if placed is not None:
            run.planned.append(placed)
        if placed is None or not run.owns(placed):
            if opened is not None:
                opened.close()  # not wanted (or another shard's): its bytes are not read
            continue
        yield placed, opened


def replay(run: BatchRun, planned: PlannedBatch) -> Iterator[Part]:
    """A plan's parts as ``walk`` would have placed them, without listing (``--plan``)."""
    run.markers += planned.markers
    run.rejected.extend(planned.rejected)
    for part in planned.parts:
        run.planned.append(part)
        if run.owns(part):
            yield part
