"""One part, listing entry to verified file: resume → stream → ``.part`` → verify → rename.

The final name appears only after the size matches the listing's ``length`` and (for parquet) the
footer reads back, so a file under its real name is always complete; everything else is a
``<name>.part`` that the next attempt or the next run continues with ``Range: bytes=N-``.
The sha256 is computed from the bytes as they stream (a resumed part hashes its prefix from disk
once); a part fetched in segments is hashed from the file as its contiguous prefix grows.
Retries follow ``RetryPolicy``; a rewind (the server ignored Range, or verification failed)
reports negative bytes to the progress listener.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import aiofiles
import anyio

from .client import AEPClient, ByteStream
from .concurrency import StreamSlots, ThreadBatches, single_error
from .durable import SyncError, data_ends, has_hole, sync_file
from .errors import (
    AsyncdlError,
    AuthError,
    ForeignOriginError,
    RangeMismatchError,
    RateLimitedError,
    StaleListingError,
    StorageError,
    StreamInterruptedError,
    VerificationError,
)
from .footer import parquet_rows, parquet_rows_in
from .manifest import ManifestEntry
from .models import Part, PartResult, PartStatus
from .progress import ProgressListener
from .retry import RetryPolicy
from .segments import Segment, SegmentPlan, record_temp

if TYPE_CHECKING:
    from aiofiles.threadpool.binary import AsyncFileIO

__all__ = ["FetchOptions", "fetch_part", "part_paths"]

log = logging.getLogger(__name__)

_HASH_BLOCK = 1 << 20
# One worker-thread job of a segmented part's prefix hash (~8 ms of sha256): a cancelled run
# waits for at most one, and the hash looks for newly landed bytes between two.
_HASH_STEP = 16 << 20
_UNLIMITED = 1 << 16
_SEGMENT_RECORD_INTERVAL_S = 0.5
# A stream cut after it brought at least this much is a resume, not a failed attempt: AEP ends
# every response at 60 s, and a big part on a slow link is then cut again and again, each time
# further on. Less than this counts as a failure, so a server that drops every connection at
# once still runs out of attempts.
_RESUME_MIN_BYTES = 1 << 16


@dataclass(frozen=True, kw_only=True)
class FetchOptions:
    """How one part is fetched; shared by every worker of a run.

    Parts of at least ``segment_threshold_bytes`` are fetched as ranged segments of
    ``segment_bytes`` each (None: never), so no single response runs anywhere near AEP's 60 s.
    """

    policy: RetryPolicy
    write_buffer_bytes: int = 1 << 20
    verify_parquet: bool = True
    segment_threshold_bytes: int | None = 64 << 20
    segment_bytes: int = 32 << 20
    fsync: bool = True  # sync a part before its final name (and segments before their record)


def part_paths(batch_dir: Path, part: Part) -> tuple[Path, Path]:
    """(final path, temp path) of a part below its batch directory."""
    final = batch_dir / part.relpath
    return final, final.with_name(final.name + ".part")


def _storage_error(exc: OSError, path: Path, doing: str = "write") -> StorageError:
    if isinstance(exc, SyncError):
        hint = ""
        if exc.errno in (errno.EINVAL, errno.ENOTSUP):
            hint = " (this file system cannot sync; --no-fsync skips syncing)"
        return StorageError(f"cannot sync {exc.filename} to disk: {exc.strerror or exc}{hint}")
    if exc.errno == errno.ENOSPC:
        return StorageError(f"disk full while writing {path}")
    return StorageError(f"cannot {doing} {path}: {exc.strerror or exc}")


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _storage_error(exc, path) from exc


def _hash_prefix(path: Path, length: int) -> hashlib._Hash:
    """sha256 state over the first ``length`` bytes of ``path`` (a resumed ``.part``)."""
    hasher = hashlib.sha256()
    _hash_range(hasher, path, 0, length)
    return hasher


def _hash_range(hasher: hashlib._Hash, path: Path, start: int, length: int) -> int:
    """Feed bytes ``[start, start + length)`` of ``path`` to ``hasher``; how many there were."""
    block = memoryview(bytearray(min(_HASH_BLOCK, length)))  # one buffer, refilled in place
    done = 0
    with path.open("rb", buffering=0) as fh:
        fh.seek(start)
        while done < length:
            read = fh.readinto(block[: length - done])
            if not read:
                break
            hasher.update(block[:read])
            done += read
    return done


def _digest_and_rows(path: Path, name: str, verify_parquet: bool) -> tuple[str, int | None]:
    hasher = _hash_prefix(path, path.stat().st_size)
    return hasher.hexdigest(), _rows(path, name, verify_parquet)


def _rows(path: Path, name: str, verify_parquet: bool) -> int | None:
    return parquet_rows(path, name) if verify_parquet and _is_parquet(name) else None


def _is_parquet(name: str) -> bool:
    return name.endswith(".parquet")


T = TypeVar("T")

_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def _write_chunks(
    fd: int, chunks: list[bytes], *, offset: int | None, hasher: hashlib._Hash | None
) -> None:
    """Write ``chunks`` with one gathered syscall per IOV_MAX pieces, then hash them.

    Runs in a worker thread: the copy into the page cache and the sha256 (which releases the
    GIL) both stay off the event loop, and no join copy is made to coalesce the pieces.
    ``offset`` None appends at the file position; otherwise writes in place (segments).
    """
    views = [memoryview(c) for c in chunks]
    while views:
        batch = views[:_IOV_MAX]
        if offset is None:
            written = os.writev(fd, batch)
        else:
            written = os.pwritev(fd, batch, offset)
            offset += written
        if written <= 0:
            raise OSError(errno.EIO, "write accepted no bytes")
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]
    if hasher is not None:
        for chunk in chunks:
            hasher.update(chunk)


async def _flush_chunks(
    fh: AsyncFileIO,
    chunks: list[bytes],
    path: Path,
    *,
    offset: int | None = None,
    hasher: hashlib._Hash | None = None,
) -> None:
    """One thread hop for a buffer's worth of chunks (aiofiles owns the file's lifetime)."""
    try:
        await anyio.to_thread.run_sync(
            functools.partial(_write_chunks, fh.fileno(), chunks, offset=offset, hasher=hasher)
        )
    except OSError as exc:
        raise _storage_error(exc, path) from exc


def _store_whole(
    temp: Path,
    final: Path,
    chunks: list[bytes],
    hasher: hashlib._Hash,
    *,
    name: str,
    verify: bool,
    sync: bool,
) -> int | None:
    """Write a whole part, hash it, check its footer, give it its name (one worker thread)."""
    with temp.open("wb", buffering=0) as fh:
        _write_chunks(fh.fileno(), chunks, offset=None, hasher=hasher)
        if sync:
            _sync_or_drop(temp, fh.fileno())
    rows = parquet_rows_in(chunks, name) if verify and _is_parquet(name) else None
    os.replace(temp, final)
    return rows


def _sync_or_drop(temp: Path, fd: int | None = None, *also: Path) -> None:
    """Sync ``temp``; if that fails, delete it (and ``also``) before raising.

    After a failed fsync, Linux may mark the lost pages clean: the file then reads back whole
    and a later fsync succeeds, so a ``.part`` kept for the next run would be trusted by its
    size. Only fetching it again is safe.
    """
    try:
        sync_file(temp, fd)
    except SyncError:
        for path in (temp, *also):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                # The .part stays: then so does its record, or a full-size, hole-free .part
                # would pass for complete next time (the record says which bytes are real).
                break
        raise


class _FirstAnswer:
    """The open answer a listing call got for a single-file dataSetFile: the part's bytes from
    byte 0, used by the first request that wants exactly those (never asked for twice)."""

    def __init__(self, stream: ByteStream | None) -> None:
        self._stream = stream

    def take(self) -> ByteStream | None:
        stream, self._stream = self._stream, None
        return stream

    def discard(self) -> None:
        stream = self.take()
        if stream is not None:
            stream.close()


@asynccontextmanager
async def _open(
    client: AEPClient, first: _FirstAnswer, part: Part, *, offset: int = 0, end: int | None = None
) -> AsyncIterator[ByteStream]:
    """A stream of ``part`` from ``offset`` (to ``end``, inclusive); the first answer if it fits.

    Its total (Content-Range's, or a 200's length) must be the listing's size: if not, the
    listing is stale, and no retry can change that (StaleListingError, the part fails at once).
    """
    opened = first.take() if offset == 0 and end is None else None
    if opened is None:
        first.discard()  # a resume or a segment: those bytes are not the ones asked for
        async with client.open_stream(part.href, offset=offset, end=end) as stream:
            _check_total(stream, part)
            yield stream
        return
    try:
        _check_total(opened, part)
        yield opened
    finally:
        opened.close()


def _check_total(stream: ByteStream, part: Part) -> None:
    if stream.total is not None and stream.total != part.size:
        raise StaleListingError(
            f"{part.name}: the listing says {part.size} bytes, the server says {stream.total}"
        )


async def _body_from(stream: ByteStream, wanted: int, name: str) -> AsyncIterator[bytes]:
    """The body's bytes from offset ``wanted`` on.

    AEP may serve another range than the one asked for: a 206 that starts earlier is trimmed to
    ``wanted``; one that starts later cannot fill the gap (RangeMismatchError, retried).
    """
    skip = 0
    if stream.status == 206:
        if stream.start > wanted:
            raise RangeMismatchError(f"{name}: asked for bytes from {wanted}, got {stream.start}")
        skip = wanted - stream.start
    async for chunk in stream.chunks():
        if skip:
            if len(chunk) <= skip:
                skip -= len(chunk)
                continue
            chunk = chunk[skip:]
            skip = 0
        yield chunk


async def _open_for_writing(path: Path, mode: Literal["wb", "ab", "r+b"]) -> AsyncFileIO:
    """``path`` opened for the gathered writes of one stream (a whole part or a segment).

    Unbuffered: writes are already >= 1 MiB, and a full disk then fails in write(), where it is
    translated, not later in close(). Shielded: cancelled mid-open, the thread's file object
    would leak unclosed.
    """
    try:
        with anyio.CancelScope(shield=True):
            fh = await aiofiles.open(path, mode, buffering=0)
    except OSError as exc:
        raise _storage_error(exc, path) from exc
    return fh


class _PartWriter:
    """The ``.part`` file plus its running hash; knows how many bytes are safely on disk."""

    def __init__(self, part: Part, temp: Path, listener: ProgressListener, buffer_bytes: int):
        self.part = part
        self.temp = temp
        self.listener = listener
        self.buffer_bytes = buffer_bytes
        self.offset = 0
        self.hasher = hashlib.sha256()
        self.fetched = 0

    async def resume(self, *, sync: bool) -> None:
        """Continue from whatever an earlier attempt or run left in ``.part``."""
        on_disk = _size(self.temp) or 0
        if not on_disk:
            return
        record = _record_path(self.temp)
        if on_disk > self.part.size or not await _run_storage(
            self.temp, _unsegmented_prefix, self.temp, record, on_disk
        ):
            # Longer than the part, or a preallocated segmented file whose holes read as
            # zeros: its size says nothing about which bytes are real.
            await _run_storage(self.temp, _drop_segmented, self.temp, record, sync)
            return
        log.info("%s: resuming at byte %d of %d", self.part.name, on_disk, self.part.size)
        self.hasher = await _run_storage(self.temp, _hash_prefix, self.temp, on_disk)
        self.offset = on_disk
        self.listener.on_bytes(self.part, on_disk)

    async def rewind(self) -> None:
        """Throw away every byte on disk (and the progress they showed); start this part over."""
        await _run_storage(self.temp, _preallocate, self.temp, 0, 0)
        if self.offset:
            self.listener.on_bytes(self.part, -self.offset)
        self.offset = 0
        self.hasher = hashlib.sha256()

    async def stream_from(self, client: AEPClient, first: _FirstAnswer) -> None:
        """One request: GET from ``offset`` to the end, appending to ``.part``.

        Returns when the answer ended as its headers promised, which may be before the part's
        end (a shorter 206 than asked: the spec allows it); a broken stream raises.
        """
        async with _open(client, first, self.part, offset=self.offset) as stream:
            if self.offset and stream.status == 200:
                log.info("%s: the server ignored Range; starting over", self.part.name)
                await self.rewind()  # the server ignored Range: the body starts at byte 0
            body = _body_from(stream, self.offset, self.part.name)
            fh = await _open_for_writing(self.temp, "ab" if self.offset else "wb")
            pending: list[bytes] = []
            pending_bytes = 0
            try:
                async for chunk in body:
                    if self.offset + pending_bytes + len(chunk) > self.part.size:
                        raise VerificationError(
                            f"{self.part.name}: server sent more than the listed {self.part.size}"
                        )
                    pending.append(chunk)
                    pending_bytes += len(chunk)
                    # Reported as it arrives, not per 1 MiB write: a progress line for a small
                    # part must move. Arrived bytes are always flushed below, so the count holds.
                    self.listener.on_bytes(self.part, len(chunk))
                    if pending_bytes >= self.buffer_bytes:
                        await self._flush(fh, pending)
                        pending, pending_bytes = [], 0
            finally:
                # Bytes that arrived are good bytes: keep them for the next attempt, even when
                # the stream broke or the run is being cancelled.
                with anyio.CancelScope(shield=True):
                    try:
                        if pending:
                            await self._flush(fh, pending)
                    finally:
                        await fh.close()

    async def fetch_small(
        self,
        client: AEPClient,
        first: _FirstAnswer,
        final: Path,
        *,
        verify: bool,
        sync: bool,
        stores: ThreadBatches | None,
    ) -> int | None:
        """A part that fits one write buffer, from byte 0, in one worker-thread job.

        The body is received whole, then written, hashed, verified and renamed by a single
        thread job instead of five (open, write, close, verify, rename): with thousands of
        small parts, the hops were the cost, which is also why ``stores`` runs the jobs of
        parts that finish together in one batch. A stream that breaks still keeps what arrived
        in ``.part``, so the next attempt continues with Range like any other part.
        """
        part = self.part
        chunks: list[bytes] = []
        received = 0
        try:
            async with _open(client, first, part) as stream:
                async for chunk in stream.chunks():
                    if received + len(chunk) > part.size:
                        raise VerificationError(
                            f"{part.name}: server sent more than the listed {part.size}"
                        )
                    chunks.append(chunk)
                    received += len(chunk)
                    self.listener.on_bytes(part, len(chunk))
            if received < part.size:
                raise StreamInterruptedError(
                    f"{part.name}: body ended at {received} of {part.size} bytes", url=part.href
                )
        except BaseException:
            if chunks:
                with anyio.CancelScope(shield=True):
                    await self._keep_prefix(chunks)
            raise
        try:
            store = functools.partial(
                _store_whole,
                self.temp,
                final,
                chunks,
                self.hasher,
                name=part.name,
                verify=verify,
                sync=sync,
            )
            if stores is None:
                rows = await anyio.to_thread.run_sync(store)
            else:
                rows = await stores.run_sync(store)
        except BaseException as exc:
            self.listener.on_bytes(part, -received)  # none of it counts: the attempt failed
            if isinstance(exc, OSError):
                raise _storage_error(exc, self.temp) from exc
            raise
        self.offset = self.fetched = received
        return rows

    async def _keep_prefix(self, chunks: list[bytes]) -> None:
        def write() -> None:
            with self.temp.open("wb", buffering=0) as fh:
                _write_chunks(fh.fileno(), chunks, offset=None, hasher=self.hasher)

        await _run_storage(self.temp, write)
        size = sum(map(len, chunks))
        self.offset += size
        self.fetched += size

    async def _flush(self, fh: AsyncFileIO, chunks: list[bytes]) -> None:
        await _flush_chunks(fh, chunks, self.temp, hasher=self.hasher)
        size = sum(map(len, chunks))
        self.offset += size
        self.fetched += size


@dataclass(frozen=True, kw_only=True, slots=True)
class _Transfer:
    """Everything one part's fetch needs, whichever way it is fetched."""

    client: AEPClient
    part: Part
    final: Path
    temp: Path
    options: FetchOptions
    listener: ProgressListener
    slots: StreamSlots
    absent: bool = False  # known: no .part and no final file existed when the run began
    stores: ThreadBatches | None = None  # where small parts are stored; None: a thread hop each
    first: _FirstAnswer = field(default_factory=lambda: _FirstAnswer(None))  # see fetch_part

    async def backoff(
        self, error: AsyncdlError, *, attempt: int, started: float, total: int
    ) -> bool:
        """Wait before the next attempt after ``error``; False when the policy gives up.

        ``attempt`` counts this stream's attempts, ``total`` the part's (for the listener).
        """
        if isinstance(error, RateLimitedError):
            self.slots.on_throttled(error.retry_after_s)
        delay = self.options.policy.delay_s(
            error, attempt=attempt, elapsed_s=time.monotonic() - started
        )
        if delay is None:
            log.warning("%s: giving up after %d attempts: %s", self.part.name, attempt, error)
            return False
        log.info(
            "%s: attempt %d failed (%s); retrying in %.1f s", self.part.name, attempt, error, delay
        )
        self.listener.on_retry(self.part, total, error, delay)
        await anyio.sleep(delay)
        return True


async def fetch_part(
    client: AEPClient,
    part: Part,
    *,
    batch_dir: Path,
    options: FetchOptions,
    listener: ProgressListener,
    slots: StreamSlots | None = None,
    known: ManifestEntry | None = None,
    absent: bool = False,
    stores: ThreadBatches | None = None,
    opened: ByteStream | None = None,
) -> PartResult:
    """Bring one part to ``batch_dir``; never raises for a part-level failure.

    Raises only what must end the whole run: StorageError (disk full/unwritable) and AuthError
    (every other part would fail the same way). ``slots`` bounds the streams open at once across
    the run (each segment of a big part takes one). ``absent`` says the caller knows that neither
    the part nor its ``.part`` is on disk (it listed the directory once), which saves two stat
    calls on the event loop per part. ``stores`` batches the worker-thread jobs of small parts
    across the run (one thread hop each without it). ``opened`` is the part's own answer to its
    listing call (a single-file dataSetFile): the first request from byte 0 reads it, and it is
    closed whatever happens; such a part is fetched as one stream, never in segments.
    """
    first = _FirstAnswer(opened)
    try:
        final, temp = part_paths(batch_dir, part)
        if not absent and _size(final) == part.size:
            skipped = await _skip(part, final, known, options)
            if skipped is not None:
                return skipped
        if final.parent != batch_dir:  # a dataSetFileId prefix (duplicate names), or partitions
            try:
                await anyio.Path(final.parent).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _storage_error(exc, final.parent) from exc
        transfer = _Transfer(
            client=client,
            part=part,
            final=final,
            temp=temp,
            options=options,
            listener=listener,
            slots=slots or StreamSlots(_UNLIMITED, adaptive=False),
            absent=absent,
            stores=stores,
            first=first,
        )
        threshold = options.segment_threshold_bytes
        if (
            opened is None
            and threshold is not None
            and part.size >= threshold
            and part.size > options.segment_bytes
        ):
            segmented = await _fetch_segmented(transfer)
            if segmented is not None:
                return segmented
            # None: the server ignores Range (or the assembled file failed verification): one
            # stream from the start is the only way left.
        return await _fetch_whole(transfer)
    finally:
        first.discard()


async def _fetch_whole(transfer: _Transfer) -> PartResult:
    """One stream per request, each continuing where the bytes on disk end.

    A request that moved the part on (a shorter 206 than asked, or a stream cut after at least
    ``_RESUME_MIN_BYTES``) is followed at once and spends no attempt: only requests that brought
    nothing count against the retry policy.
    """
    client, part, options, slots = transfer.client, transfer.part, transfer.options, transfer.slots
    started = time.monotonic()
    writer = _PartWriter(part, transfer.temp, transfer.listener, options.write_buffer_bytes)
    if not transfer.absent:
        await writer.resume(sync=options.fsync)
    requests = failures = 0
    while True:
        requests += 1
        before = writer.offset
        try:
            remaining = options.policy.deadline_s - (time.monotonic() - started)
            with anyio.move_on_after(remaining) as scope:
                if writer.offset == 0 and 0 < part.size <= options.write_buffer_bytes:
                    async with slots:
                        rows = await writer.fetch_small(
                            client,
                            transfer.first,
                            transfer.final,
                            verify=options.verify_parquet,
                            sync=options.fsync,
                            stores=transfer.stores,
                        )
                    slots.on_success()
                else:
                    if writer.offset < part.size:
                        async with slots:
                            await writer.stream_from(client, transfer.first)
                        slots.on_success()
                        if writer.offset < part.size:
                            if writer.offset > before:
                                log.info(
                                    "%s: a short answer (to byte %d of %d); asking for the rest",
                                    part.name,
                                    writer.offset,
                                    part.size,
                                )
                                continue
                            raise StreamInterruptedError(
                                f"{part.name}: an answer without bytes at {writer.offset} "
                                f"of {part.size}",
                                url=part.href,
                            )
                    elif part.size == 0:
                        await writer.rewind()  # creates the empty .part
                    rows = await _verify_and_rename(transfer)
            if scope.cancelled_caught:
                return _failed(part, writer.fetched, requests, "per-part deadline exceeded")
            return PartResult(
                part=part,
                status=PartStatus.DOWNLOADED,
                fetched_bytes=writer.fetched,
                rows=rows,
                sha256=writer.hasher.hexdigest(),
                attempts=requests,
            )
        except (StorageError, AuthError):
            raise
        except AsyncdlError as error:
            if isinstance(error, VerificationError):
                await writer.rewind()  # wrong bytes on disk: no prefix of them can be trusted
            elif _resumes(error, writer.offset - before):
                log.info("%s: %s; resuming at byte %d", part.name, error, writer.offset)
                continue
            failures += 1
            if not await transfer.backoff(error, attempt=failures, started=started, total=requests):
                return _failed(part, writer.fetched, requests, _describe(error))


def _resumes(error: AsyncdlError, progress: int) -> bool:
    """A cut stream that brought enough to be a resume (AEP's 60 s cut), not a failure."""
    return isinstance(error, StreamInterruptedError) and progress >= _RESUME_MIN_BYTES


async def _verify_and_rename(transfer: _Transfer) -> int | None:
    """The last step: the footer must read back before the file gets its real name."""
    part, temp = transfer.part, transfer.temp
    rows: int | None = None
    if transfer.options.verify_parquet and _is_parquet(part.name) and part.size > 0:
        rows = await anyio.to_thread.run_sync(parquet_rows, temp, part.name)
    await _seal(temp, transfer.final, sync=transfer.options.fsync)
    return rows


async def _seal(temp: Path, final: Path, *, sync: bool, record: Path | None = None) -> None:
    """Give a verified ``.part`` its final name; with ``sync``, only once its bytes are durable.

    A segmented part's ``record`` goes between the two: a complete ``.part`` left without it
    (a crash before the rename) has no holes and is renamed by the next run, while a record
    left beside a final file would never be cleaned up.
    """

    def seal() -> None:
        extra = () if record is None else (record, record_temp(record))
        if sync:
            _sync_or_drop(temp, None, *extra)
        for path in extra:
            path.unlink(missing_ok=True)
        os.replace(temp, final)

    await _run_storage(final, seal)


class _RangeUnsupportedError(AsyncdlError):
    """A segment request was answered with the whole body: segments cannot work here."""


class _SegmentFailedError(AsyncdlError):
    """A segment ran out of attempts; carries the reason to the part's result."""

    def __init__(self, error: AsyncdlError) -> None:
        super().__init__(_describe(error))


def _preallocate(temp: Path, size: int, keep: int) -> None:
    """Make ``temp`` exactly ``size`` bytes (sparse), keeping its first ``keep`` bytes."""
    temp.parent.mkdir(parents=True, exist_ok=True)
    with temp.open("r+b" if keep else "wb") as fh:
        fh.truncate(size)


class _PrefixDigest:
    """The sha256 of a segmented part, taken while its later segments are still streaming.

    Segments land side by side, so only the bytes before the first unfinished segment's next
    offset are in order. ``follow`` hashes that contiguous prefix as it grows, reading it back
    from the file (the page cache) in a worker thread, so that when the last segment lands only
    the bytes beyond the prefix are left to hash, not the whole part: hashing a 256 MB part
    after its last byte took ~0.15 s on the reference machine, at the end of the run.
    """

    def __init__(self, temp: Path, plan: SegmentPlan) -> None:
        self._temp = temp
        self._plan = plan
        self._hasher = hashlib.sha256()
        self.hashed = 0
        self._landed = anyio.Event()
        self._following = False

    def landed(self) -> None:
        """More bytes are on disk (called after every segment write)."""
        self._landed.set()

    @property
    def complete(self) -> bool:
        return self.hashed == self._plan.size

    def hexdigest(self) -> str:
        if not self.complete:
            raise RuntimeError(f"{self._temp}: hashed {self.hashed} of {self._plan.size} bytes")
        return self._hasher.hexdigest()

    async def follow(self) -> None:
        """Hash the prefix as it grows; return once all of it is hashed or the file ends short.

        One at a time (a second follower would feed the same bytes to the hash twice); a
        follower stopped by a deadline can be followed by another.
        """
        if self._following:
            raise RuntimeError(f"{self._temp}: the digest is already being followed")
        self._following = True
        try:
            await self._follow()
        finally:
            self._following = False

    async def _follow(self) -> None:
        while self.hashed < self._plan.size:
            # A fresh event before the prefix is read: a write landing after this line sets it.
            self._landed = anyio.Event()
            step = min(self._plan.contiguous - self.hashed, _HASH_STEP)
            if step <= 0:
                await self._landed.wait()
                continue
            try:
                read = await anyio.to_thread.run_sync(
                    _hash_range, self._hasher, self._temp, self.hashed, step
                )
            except OSError as exc:  # asyncdl's own .part, unreadable: the disk, like a write
                raise _storage_error(exc, self._temp, "read") from exc
            self.hashed += read
            if read < step:  # shorter than its record says: ``complete`` stays False
                return


class _SegmentedRun:
    """One part fetched as concurrent ranged segments written in place."""

    def __init__(self, transfer: _Transfer, plan: SegmentPlan) -> None:
        self.transfer = transfer
        self.client = transfer.client
        self.part = transfer.part
        self.temp = transfer.temp
        self.plan = plan
        self.options = transfer.options
        self.listener = transfer.listener
        self.slots = transfer.slots
        self.started = time.monotonic()
        self.attempts = 0
        self.fetched = 0
        self.save_lock = anyio.Lock()
        self.digest = _PrefixDigest(transfer.temp, plan)
        self._landed = anyio.Event()  # bytes landed since the record was last saved
        self._all_landed = anyio.Event()
        self.save_failed = False

    async def save(self) -> None:
        """Record the segments' progress (synced first with ``fsync``); one save at a time."""
        sync = self.temp if self.options.fsync else None
        async with self.save_lock:
            try:
                await anyio.to_thread.run_sync(functools.partial(self.plan.save, sync=sync))
            except OSError as exc:
                # No later save: after a failed sync the next one can succeed over pages that
                # never reached the disk, and the record would vouch for them. The record on
                # disk still counts only what earlier syncs wrote.
                self.save_failed = True
                raise _storage_error(exc, self.plan.record) from exc

    async def keep_record(self) -> None:
        """Save the record while segments land, at most once per interval, until all have.

        A task beside the streams, not a step of theirs: a sync can take as long as the disk
        needs to write back what arrived, and no stream should stop reading meanwhile.
        """
        while not self.plan.complete:
            await self._landed.wait()
            self._landed = anyio.Event()
            if self.plan.complete:
                return  # the part is about to be synced whole and renamed
            await self.save()
            with anyio.move_on_after(_SEGMENT_RECORD_INTERVAL_S):
                await self._all_landed.wait()

    async def run_segment(self, segment: Segment) -> None:
        """Requests for the segment until it is on disk; progress spends no attempt (as in
        ``_fetch_whole``: a shorter 206 than asked, or a cut after ``_RESUME_MIN_BYTES``)."""
        failures = 0
        while True:
            self.attempts += 1
            before = segment.done
            try:
                async with self.slots:
                    await self._stream(segment)
                self.slots.on_success()
                if segment.complete:
                    return
                if segment.done > before:
                    continue  # a shorter answer than asked: ask for the rest
                raise StreamInterruptedError(
                    f"{self.part.name}: an answer without bytes at {segment.next_offset}",
                    url=self.part.href,
                )
            except (StorageError, AuthError, _RangeUnsupportedError):
                raise
            except AsyncdlError as error:
                if _resumes(error, segment.done - before):
                    continue
                failures += 1
                if not await self.transfer.backoff(
                    error, attempt=failures, started=self.started, total=self.attempts
                ):
                    raise _SegmentFailedError(error) from error

    async def _stream(self, segment: Segment) -> None:
        """One request for the rest of the segment; returns when the answer ended as promised."""
        offset = segment.next_offset
        async with _open(
            self.client, self.transfer.first, self.part, offset=offset, end=segment.end - 1
        ) as stream:
            if stream.status == 200:
                raise _RangeUnsupportedError(f"{self.part.name}: the server ignores Range")
            body = _body_from(stream, offset, self.part.name)
            fh = await _open_for_writing(self.temp, "r+b")
            pending: list[bytes] = []
            pending_bytes = 0
            try:
                async for chunk in body:
                    # The range served may be longer than asked: keep what this segment needs.
                    room = segment.end - segment.next_offset - pending_bytes
                    kept = chunk[:room] if len(chunk) > room else chunk
                    pending.append(kept)
                    pending_bytes += len(kept)
                    self.listener.on_bytes(self.part, len(kept))
                    if pending_bytes >= self.options.write_buffer_bytes:
                        await self._flush(fh, segment, pending)
                        pending, pending_bytes = [], 0
                    if len(chunk) >= room:
                        break
            finally:
                with anyio.CancelScope(shield=True):
                    try:
                        if pending:
                            await self._flush(fh, segment, pending)
                    finally:
                        await fh.close()

    async def _flush(self, fh: AsyncFileIO, segment: Segment, chunks: list[bytes]) -> None:
        await _flush_chunks(fh, chunks, self.temp, offset=segment.next_offset)
        # Counted only after the write: the record never claims bytes that are not on disk.
        size = sum(map(len, chunks))
        segment.done += size
        self.fetched += size
        self.digest.landed()
        self._landed.set()
        if self.plan.complete:
            self._all_landed.set()


async def _fetch_segmented(transfer: _Transfer) -> PartResult | None:
    """Several ranged streams at once into one preallocated ``.part``; ``None`` to fall back."""
    part, temp, options, listener = (
        transfer.part,
        transfer.temp,
        transfer.options,
        transfer.listener,
    )
    record = _record_path(temp)
    plan = await _run_storage(temp, _trusted_plan, record, temp, part.size, options.segment_bytes)
    on_disk = _size(temp) or 0
    preallocate: int | None = None
    if plan is None or on_disk != part.size:
        prefix = 0
        if plan is None and 0 < on_disk <= part.size:
            prefix = await _run_storage(temp, _unsegmented_prefix, temp, record, on_disk)
        plan = SegmentPlan.fresh(
            size=part.size, segment_bytes=options.segment_bytes, record=record, prefix=prefix
        )
        preallocate = prefix
    run = _SegmentedRun(transfer, plan)
    if preallocate is not None:
        # The record goes first: a full-size .part whose holes read as zeros must never exist
        # without the record that says which bytes are real.
        await run.save()
        await _run_storage(temp, _preallocate, temp, part.size, preallocate)
    log.info(
        "%s: %d segments of %d bytes, %d bytes already on disk",
        part.name,
        len(plan.segments),
        plan.segment_bytes,
        plan.done,
    )
    listener.on_bytes(part, plan.done)
    range_unsupported = stopping = False
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
                return _failed(part, run.fetched, run.attempts, "per-part deadline exceeded")
            # Every byte arrived; only the hash of the tail was cut short. The deadline bounds
            # the network, not the local work after it: finish the hash.
            await run.digest.follow()
    except _SegmentFailedError as failure:
        return _failed(part, run.fetched, run.attempts, str(failure))
    except _RangeUnsupportedError:
        range_unsupported = True
    except BaseException:
        stopping = True
        raise
    finally:
        if not range_unsupported and not plan.complete and not run.save_failed:
            with anyio.CancelScope(shield=True):
                try:
                    await run.save()  # what did arrive is kept for the next attempt
                except StorageError as error:
                    if not stopping:
                        raise
                    # Already stopping (cancelled, or a fatal error elsewhere): that reason
                    # stays the one reported, and a cancellation is never replaced.
                    log.warning("%s: progress not recorded: %s", part.name, error)
    if range_unsupported:
        await _abandon(run)
        return None
    try:
        if not run.digest.complete:
            raise VerificationError(f"{part.name}: the .part is shorter than its segment record")
        rows = await anyio.to_thread.run_sync(_rows, temp, part.name, options.verify_parquet)
    except VerificationError:
        await _abandon(run)
        return None
    await _seal(temp, transfer.final, sync=options.fsync, record=plan.record)
    return PartResult(
        part=part,
        status=PartStatus.DOWNLOADED,
        fetched_bytes=run.fetched,
        rows=rows,
        sha256=run.digest.hexdigest(),
        attempts=run.attempts,
    )


async def _abandon(run: _SegmentedRun) -> None:
    """Drop a segmented attempt: the record, the bytes, and the progress they showed."""
    done = run.plan.done
    await _run_storage(run.temp, _drop_segmented, run.temp, run.plan.record, run.options.fsync)
    if done:
        run.listener.on_bytes(run.part, -done)


def _drop_segmented(temp: Path, record: Path, sync: bool) -> None:
    """Empty a segmented ``.part``, then delete its record (one worker thread).

    Bytes first, record second, with the emptying synced in between when syncing: a full-size
    ``.part`` must never outlive the record that says which of its bytes are real.
    """
    _preallocate(temp, 0, 0)
    if sync:
        sync_file(temp)
    record.unlink(missing_ok=True)


def _record_path(temp: Path) -> Path:
    return temp.with_name(temp.name + ".segments")


def _trusted_plan(record: Path, temp: Path, size: int, segment_bytes: int) -> SegmentPlan | None:
    """The record of an earlier run, claiming no byte that is a hole in ``temp`` (one thread).

    A record written without syncing (``--no-fsync``, or by a version before syncing) can
    survive a power loss that its bytes did not; where a claimed range reads as a hole, the
    segment is taken back to where the hole begins.
    """
    plan = SegmentPlan.load(size=size, segment_bytes=segment_bytes, record=record)
    if plan is None or _size(temp) != size:
        return plan
    claimed = {s.start: s for s in plan.segments if s.done}
    holes = data_ends(temp, [(s.start, s.next_offset) for s in claimed.values()])
    for start, hole in holes.items():
        log.warning(
            "%s: bytes %d-%d of its record are a hole", temp, hole, claimed[start].next_offset
        )
        claimed[start].done = hole - start
    return plan


def _unsegmented_prefix(temp: Path, record: Path, on_disk: int) -> int:
    """How much of a ``.part`` without a usable record is real (one worker thread).

    All of it if it was written front to back, by one stream; none if a record is there but
    unreadable, or if the file has holes: a preallocated ``.part`` whose record was lost (a
    power loss can reorder an unsynced truncate and delete) would otherwise pass for complete.
    """
    if record.exists() or has_hole(temp, on_disk):
        return 0
    return on_disk


async def _run_storage(path: Path, func: Callable[..., T], *args: object) -> T:
    """``func(*args)`` in a worker thread; an OSError becomes the StorageError about ``path``."""
    try:
        return await anyio.to_thread.run_sync(func, *args)
    except OSError as exc:
        raise _storage_error(exc, path) from exc


async def _skip(
    part: Part, final: Path, known: ManifestEntry | None, options: FetchOptions
) -> PartResult | None:
    """A part whose final file already has the listed size: no request at all.

    ``None`` when the file cannot be vouched for (its footer does not read): fetch it again.
    """
    if known is not None and known.size == part.size and known.sha256 is not None:
        sha256, rows = known.sha256, known.rows
    else:  # finished by a run that died before writing its manifest: recompute locally
        try:
            sha256, rows = await anyio.to_thread.run_sync(
                _digest_and_rows, final, part.name, options.verify_parquet
            )
        except (VerificationError, OSError):
            return None  # cannot vouch for it: fetch it again (which reports a disk problem)
    return PartResult(part=part, status=PartStatus.SKIPPED, rows=rows, sha256=sha256)


def _failed(part: Part, fetched: int, attempts: int, why: str) -> PartResult:
    return PartResult(
        part=part,
        status=PartStatus.FAILED,
        fetched_bytes=fetched,
        attempts=attempts,
        error=why,
    )


def _describe(error: AsyncdlError) -> str:
    if isinstance(error, ForeignOriginError):
        return str(error)
    return f"{type(error).__name__}: {error}"
