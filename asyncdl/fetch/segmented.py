"""The segmented path: one big part as concurrent ranged streams written in place, its content
hash taken while they stream, its progress recorded so each segment resumes on its own.

Each segment's stream holds one of the run's stream slots. A task beside the streams keeps the
record (bytes first, then the record that counts them: a sync can take as long as the disk
needs, and no stream should stop reading meanwhile). The hash follows the part's contiguous
prefix from the file (the page cache) as it grows. A server that ignores Range, or an assembled
file that fails verification, sends the part back to the whole path (``None``).
"""

from __future__ import annotations

import functools
import logging
import time

import anyio

from ..checksum import Checksum
from ..errors import (
    RUN_ENDING,
    AsyncdlError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
    StreamInterruptedError,
    VerificationError,
)
from ..models import PartResult, PartStatus
from ..storage import SegmentedFile
from ..tasks import single_error
from .answers import body_from, open_answer
from .attempts import Retrying
from .integrity import CheckedSegmentedFile, replaced
from .outcome import describe, failed, is_parquet
from .plan import Segment, SegmentPlan
from .transfer import Transfer, off_loop
from .writer import BufferedWriter

__all__ = ["fetch_segmented"]

log = logging.getLogger(__name__)

# One worker-thread job of the prefix hash (milliseconds of hashing): a cancelled run waits for
# at most one, and the hash looks for newly landed bytes between two.
HASH_STEP = 16 << 20
# The record is saved at most this often while segments land.
RECORD_INTERVAL_S = 0.5


class _RangeUnsupportedError(AsyncdlError):
    """A segment request was answered with the whole body: segments cannot work here."""


class _SegmentFailedError(AsyncdlError):
    """A segment ran out of attempts; carries the reason to the part's result."""

    def __init__(self, error: AsyncdlError) -> None:
        super().__init__(describe(error))


class _PrefixDigest:
    """The content hash of a segmented part, taken while its later segments are still streaming.

    Segments land side by side, so only the bytes before the first unfinished segment's next
    offset are in order. ``follow`` hashes that contiguous prefix as it grows, reading it back
    (from the page cache) in a worker thread, so that when the last segment lands only the
    bytes beyond the prefix are left to hash, not the whole part.
    """

    def __init__(self, file: SegmentedFile, plan: SegmentPlan, checksum: Checksum) -> None:
        self._file = file
        self._plan = plan
        self._hasher = checksum.new()
        self.hashed = 0
        self._landed = anyio.Event()
        self._following = False

    def landed(self) -> None:
        """More bytes are written (called after every segment write)."""
        self._landed.set()

    @property
    def complete(self) -> bool:
        return self.hashed == self._plan.size

    def hexdigest(self) -> str:
        if not self.complete:
            raise RuntimeError(f"{self._file.name}: hashed {self.hashed} of {self._plan.size}")
        return self._hasher.hexdigest()

    async def follow(self) -> None:
        """Hash the prefix as it grows; return once all of it is hashed or the file ends short.

        One at a time (a second follower would feed the same bytes to the hash twice); a
        follower stopped by a deadline can be followed by another.
        """
        if self._following:
            raise RuntimeError(f"{self._file.name}: the digest is already being followed")
        self._following = True
        try:
            await self._follow()
        finally:
            self._following = False

    async def _follow(self) -> None:
        while self.hashed < self._plan.size:
            # A fresh event before the prefix is read: a write landing after this line sets it.
            self._landed = anyio.Event()
            step = min(self._plan.contiguous - self.hashed, HASH_STEP)
            if step <= 0:
                await self._landed.wait()
                continue
            read = await off_loop(self._file.hash_into, self._hasher, self.hashed, step)
            self.hashed += read
            if read < step:  # shorter than its record says: ``complete`` stays False
                return


class _SegmentedRun:
    """One part fetched as concurrent ranged segments written in place."""

    def __init__(self, transfer: Transfer, file: SegmentedFile, plan: SegmentPlan) -> None:
        self.transfer = transfer
        self.file = file
        self.plan = plan
        self.part = transfer.part
        self.options = transfer.options
        self.listener = transfer.listener
        self.started = time.monotonic()
        self.attempts = 0
        self.fetched = 0
        self.save_lock = anyio.Lock()
        self.digest = _PrefixDigest(file, plan, transfer.options.checksum)
        self._landed = anyio.Event()  # bytes landed since the record was last saved
        self._all_landed = anyio.Event()
        self.save_failed = False

    async def save(self) -> None:
        """Record the segments' progress (their bytes synced first with ``fsync``)."""
        async with self.save_lock:
            document = self.plan.record()  # the counts now: every byte they claim is written
            save = functools.partial(self.file.save_record, document, sync=self.options.fsync)
            try:
                await off_loop(save)
            except StorageError:
                # No later save: after a failed sync the next one can succeed over pages that
                # never reached the disk, and the record would vouch for them. The record on
                # disk still counts only what earlier syncs wrote.
                self.save_failed = True
                raise

    async def keep_record(self) -> None:
        """Save the record while segments land, at most once per interval, until all have."""
        while not self.plan.complete:
            await self._landed.wait()
            self._landed = anyio.Event()
            if self.plan.complete:
                return  # the part is about to be synced whole and sealed
            await self.save()
            with anyio.move_on_after(RECORD_INTERVAL_S):
                await self._all_landed.wait()

    async def run_segment(self, segment: Segment) -> None:
        """Requests for the segment until it is written; progress spends no attempt."""
        retrying = Retrying(
            self.part,
            policy=self.options.policy,
            slots=self.transfer.slots,
            listener=self.listener,
            started=self.started,
        )
        while True:
            self.attempts += 1
            before = segment.done
            started_at: float | None = None  # when this request's stream took its slot
            try:
                async with self.transfer.slots as started_at:
                    await self._stream(segment)
                self.transfer.slots.on_success()
                if segment.complete:
                    return
                if segment.done > before:
                    continue  # a shorter answer than asked: ask for the rest
                raise StreamInterruptedError(
                    f"{self.part.name}: an answer without bytes at {segment.next_offset}",
                    url=self.part.href,
                )
            except RUN_ENDING:
                raise
            except _RangeUnsupportedError:
                raise
            except AsyncdlError as error:
                if replaced(self.part, error):
                    raise  # the listed version is gone: the whole part starts over
                progress = segment.done - before
                if not await retrying.again(
                    error, progress=progress, requests=self.attempts, started_at=started_at
                ):
                    raise _SegmentFailedError(error) from error

    async def _stream(self, segment: Segment) -> None:
        """One request for the rest of the segment; returns when the answer ended as promised."""
        offset = segment.next_offset
        transfer = self.transfer
        async with open_answer(
            transfer.client,
            transfer.first,
            self.part,
            offset=offset,
            end=segment.end - 1,
            stored=transfer.stored,
        ) as stream:
            if stream.status == 200:
                raise _RangeUnsupportedError(f"{self.part.name}: the server ignores Range")
            body = body_from(stream, offset, self.part.name)
            writer = await off_loop(self.file.open, "in_place")
            buffered = BufferedWriter(
                writer,
                buffer_bytes=self.options.write_buffer_bytes,
                on_written=functools.partial(self._written, segment),
                offset=offset,
            )
            try:
                async for chunk in body:
                    # The range served may be longer than asked: keep what this segment needs.
                    room = segment.end - segment.next_offset - buffered.pending
                    kept = chunk[:room] if len(chunk) > room else chunk
                    self.listener.on_bytes(self.part, len(kept))
                    await buffered.add(kept)
                    if len(chunk) >= room:
                        break
            finally:
                await buffered.close()

    def _written(self, segment: Segment, size: int) -> None:
        # Counted only after the write: the record never claims bytes that are not written.
        segment.done += size
        self.fetched += size
        self.digest.landed()
        self._landed.set()
        if self.plan.complete:
            self._all_landed.set()

    async def abandon(self) -> None:
        """Drop the attempt: the bytes, the record, and the progress they showed."""
        done = self.plan.done
        await off_loop(functools.partial(self.file.drop_attempt, sync=self.options.fsync))
        if done:
            self.listener.on_bytes(self.part, -done)


def _trusted_plan(file: SegmentedFile, size: int) -> SegmentPlan | None:
    """The record of an earlier run, claiming no byte that is a hole (one worker thread).

    A record written without syncing (``--no-fsync``, or by a version before syncing) can
    survive a power loss that its bytes did not; where a claimed range reads as a hole, the
    segment is taken back to where the hole begins.
    """
    plan = SegmentPlan.from_record(file.load_record(), size=size)
    if plan is None or file.size() != size:
        return plan
    claimed = {s.start: s for s in plan.segments if s.done}
    holes = file.holes([(s.start, s.next_offset) for s in claimed.values()])
    for start, hole in holes.items():
        log.warning(
            "%s: bytes %d-%d of its record are a hole", file.name, hole, claimed[start].next_offset
        )
        claimed[start].done = hole - start
    return plan


async def _plan_for(transfer: Transfer, file: SegmentedFile) -> _SegmentedRun:
    """The run of this attempt: the trusted record's, or a fresh plan over a preallocated file
    that keeps whatever prefix one stream had written."""
    part, options = transfer.part, transfer.options
    plan = await off_loop(_trusted_plan, file, part.size)
    on_disk = await off_loop(file.size) or 0
    if plan is not None and on_disk == part.size:
        return _SegmentedRun(transfer, file, plan)
    prefix = 0
    if plan is None and 0 < on_disk <= part.size:
        prefix = await off_loop(file.unsegmented_prefix, on_disk)
    plan = SegmentPlan.fresh(size=part.size, segment_bytes=options.segment_bytes, prefix=prefix)
    run = _SegmentedRun(transfer, file, plan)
    # The record goes first: a full-size file whose holes read as zeros must never exist
    # without the record that says which bytes are real.
    await run.save()
    await off_loop(functools.partial(file.resize, part.size, keep=prefix))
    return run


async def fetch_segmented(transfer: Transfer) -> PartResult | None:
    """Several ranged streams at once into one preallocated file; ``None`` to fall back."""
    part = transfer.part
    file = CheckedSegmentedFile(
        transfer.storage.segmented(part.relpath), transfer.stored, size=part.size
    )
    try:
        return await _fetch_segmented(transfer, file)
    finally:
        with anyio.CancelScope(shield=True):
            await off_loop(file.release)


async def _fetch_segmented(transfer: Transfer, file: SegmentedFile) -> PartResult | None:
    part, options, listener = transfer.part, transfer.options, transfer.listener
    run = await _plan_for(transfer, file)
    plan = run.plan
    log.info(
        "%s: %d segments of %d bytes, %d bytes already written",
        part.name,
        len(plan.segments),
        plan.segment_bytes,
        plan.done,
    )
    listener.on_bytes(part, plan.done)
    range_unsupported = stopping = False
    gone: AsyncdlError | None = None  # the listed version no longer exists
    try:
        with anyio.move_on_after(options.policy.deadline_s) as scope:
            async with single_error(), anyio.create_task_group() as tg:
                for segment in plan.segments:
                    if not segment.complete:
                        tg.start_soon(run.run_segment, segment)
                tg.start_soon(run.digest.follow)
                tg.start_soon(run.keep_record)
        if scope.cancelled_caught:
            if not plan.complete:
                return failed(part, run.fetched, run.attempts, "per-part deadline exceeded")
            # Every byte arrived; only the hash of the tail was cut short. The deadline bounds
            # the network, not the local work after it: finish the hash.
            await run.digest.follow()
    except _SegmentFailedError as failure:
        return failed(part, run.fetched, run.attempts, str(failure))
    except _RangeUnsupportedError:
        range_unsupported = True
    except (PreconditionFailedError, NotFoundError) as error:  # raised only when ``replaced``
        gone = error
    except BaseException:
        stopping = True
        raise
    finally:
        keep = not range_unsupported and gone is None
        if keep and not plan.complete and not run.save_failed:
            with anyio.CancelScope(shield=True):
                try:
                    await run.save()  # what did arrive is kept for the next attempt
                except StorageError as error:
                    if not stopping:
                        raise
                    # Already stopping (cancelled, or a fatal error elsewhere): that reason
                    # stays the one reported, and a cancellation is never replaced.
                    log.warning("%s: progress not recorded: %s", part.name, error)
    if gone is not None:
        await run.abandon()  # bytes of a version that is gone: fetch_part starts over
        raise gone
    if range_unsupported:
        await run.abandon()
        return None
    try:
        if not run.digest.complete:
            raise VerificationError(f"{part.name}: the file is shorter than its segment record")
        rows = None
        if options.verify_parquet and is_parquet(part.name):
            rows = await off_loop(file.rows, part.name)
        # The stated MD5 is checked by the seal, before the part has its name. Its upload (a
        # store's) is what holds memory, so the share is taken here, no slot held meanwhile.
        async with transfer.memory_share(segmented=True):
            await off_loop(functools.partial(file.seal, sync=options.fsync))
    except VerificationError:
        await run.abandon()
        return None
    return PartResult(
        part=part,
        status=PartStatus.DOWNLOADED,
        fetched_bytes=run.fetched,
        rows=rows,
        digest=options.checksum.tag(run.digest.hexdigest()),
        attempts=run.attempts,
    )
