"""One part, listing entry to verified file: resume → stream → ``.part`` → verify → rename.

The final name appears only after the size matches the listing's ``length`` and (for parquet) the
footer reads back, so a file under its real name is always complete; everything else is a
``<name>.part`` that the next attempt or the next run continues with ``Range: bytes=N-``.
The sha256 is computed from the bytes as they stream (a resumed part hashes its prefix from disk
once). Retries follow ``RetryPolicy``; a rewind (the server ignored Range, or verification
failed) reports negative bytes to the progress listener.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiofiles
import anyio
import pyarrow as pa
import pyarrow.parquet as pq

from .client import AEPClient
from .errors import (
    AsyncdlError,
    AuthError,
    ForeignOriginError,
    RangeMismatchError,
    StorageError,
    StreamInterruptedError,
    VerificationError,
)
from .manifest import ManifestEntry
from .models import Part, PartResult, PartStatus
from .progress import ProgressListener
from .retry import RetryPolicy

if TYPE_CHECKING:
    from aiofiles.threadpool.binary import AsyncBufferedIOBase

__all__ = ["FetchOptions", "fetch_part", "part_paths"]

_HASH_BLOCK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class FetchOptions:
    """How one part is fetched; shared by every worker of a run."""

    policy: RetryPolicy
    write_buffer_bytes: int = 1 << 20
    verify_parquet: bool = True


def part_paths(batch_dir: Path, part: Part) -> tuple[Path, Path]:
    """(final path, temp path) of a part below its batch directory."""
    final = batch_dir / part.relpath
    return final, final.with_name(final.name + ".part")


def _storage_error(exc: OSError, path: Path) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(f"disk full while writing {path}")
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")


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
    with path.open("rb") as fh:
        remaining = length
        while remaining > 0:
            block = fh.read(min(_HASH_BLOCK, remaining))
            if not block:
                break
            hasher.update(block)
            remaining -= len(block)
    return hasher


def _parquet_rows(path: Path, name: str) -> int:
    try:
        return pq.read_metadata(path).num_rows
    except (pa.ArrowException, OSError) as exc:
        raise VerificationError(f"{name}: parquet footer unreadable ({exc})") from exc


def _digest_and_rows(path: Path, name: str, verify_parquet: bool) -> tuple[str, int | None]:
    hasher = _hash_prefix(path, path.stat().st_size)
    rows = _parquet_rows(path, name) if verify_parquet and _is_parquet(name) else None
    return hasher.hexdigest(), rows


def _is_parquet(name: str) -> bool:
    return name.endswith(".parquet")


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

    async def resume(self) -> None:
        """Continue from whatever an earlier attempt or run left in ``.part``."""
        on_disk = _size(self.temp) or 0
        if on_disk > self.part.size:  # not a prefix of this part: useless
            await self.rewind()
            return
        if on_disk:
            self.hasher = await anyio.to_thread.run_sync(_hash_prefix, self.temp, on_disk)
            self.offset = on_disk
            self.listener.on_bytes(self.part, on_disk)

    async def rewind(self) -> None:
        """Throw away every byte on disk and start this part over."""
        try:
            await anyio.to_thread.run_sync(self._truncate)
        except OSError as exc:
            raise _storage_error(exc, self.temp) from exc
        if self.offset:
            self.listener.on_bytes(self.part, -self.offset)
        self.offset = 0
        self.hasher = hashlib.sha256()

    def _truncate(self) -> None:
        self.temp.parent.mkdir(parents=True, exist_ok=True)
        with self.temp.open("wb"):
            pass

    async def stream_from(self, client: AEPClient) -> None:
        """One attempt: GET from ``offset`` to the end, appending to ``.part``."""
        async with client.open_stream(self.part.href, offset=self.offset) as stream:
            if self.offset and stream.status == 200:
                await self.rewind()  # the server ignored Range: the body starts at byte 0
            elif stream.status == 206 and stream.start != self.offset:
                raise RangeMismatchError(
                    f"{self.part.name}: asked for bytes from {self.offset}, got {stream.start}"
                )
            try:
                fh = await aiofiles.open(self.temp, "ab" if self.offset else "wb")
            except OSError as exc:
                raise _storage_error(exc, self.temp) from exc
            pending = bytearray()
            try:
                async for chunk in stream.chunks():
                    if self.offset + len(pending) + len(chunk) > self.part.size:
                        raise VerificationError(
                            f"{self.part.name}: server sent more than the listed {self.part.size}"
                        )
                    pending += chunk
                    if len(pending) >= self.buffer_bytes:
                        await self._flush(fh, pending)
                        pending = bytearray()
            finally:
                # Bytes that arrived are good bytes: keep them for the next attempt, even when
                # the stream broke or the run is being cancelled.
                with anyio.CancelScope(shield=True):
                    try:
                        if pending:
                            await self._flush(fh, pending)
                    finally:
                        await fh.close()
        if self.offset < self.part.size:
            raise StreamInterruptedError(
                f"{self.part.name}: body ended at {self.offset} of {self.part.size} bytes",
                url=self.part.href,
            )

    async def _flush(self, fh: AsyncBufferedIOBase, data: bytearray) -> None:
        try:
            await fh.write(data)
        except OSError as exc:
            raise _storage_error(exc, self.temp) from exc
        self.hasher.update(data)
        self.offset += len(data)
        self.fetched += len(data)
        self.listener.on_bytes(self.part, len(data))


async def fetch_part(
    client: AEPClient,
    part: Part,
    *,
    batch_dir: Path,
    options: FetchOptions,
    listener: ProgressListener,
    known: ManifestEntry | None = None,
) -> PartResult:
    """Bring one part to ``batch_dir``; never raises for a part-level failure.

    Raises only what must end the whole run: StorageError (disk full/unwritable) and AuthError
    (every other part would fail the same way).
    """
    final, temp = part_paths(batch_dir, part)
    if _size(final) == part.size:
        skipped = await _skip(part, final, known, options)
        if skipped is not None:
            return skipped

    if final.parent != batch_dir:  # a relpath with a dataSetFileId prefix (duplicate names)
        await anyio.Path(final.parent).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    writer = _PartWriter(part, temp, listener, options.write_buffer_bytes)
    await writer.resume()
    attempts = 0
    while True:
        attempts += 1
        try:
            remaining = options.policy.deadline_s - (time.monotonic() - started)
            with anyio.move_on_after(remaining) as scope:
                rows = await _attempt(client, writer, final, options)
            if scope.cancelled_caught:
                return _failed(part, writer, attempts, "per-part deadline exceeded")
            return PartResult(
                part=part,
                status=PartStatus.DOWNLOADED,
                fetched_bytes=writer.fetched,
                rows=rows,
                sha256=writer.hasher.hexdigest(),
                attempts=attempts,
            )
        except (StorageError, AuthError):
            raise
        except AsyncdlError as error:
            if isinstance(error, VerificationError):
                await writer.rewind()  # wrong bytes on disk: no prefix of them can be trusted
            delay = options.policy.delay_s(
                error, attempt=attempts, elapsed_s=time.monotonic() - started
            )
            if delay is None:
                return _failed(part, writer, attempts, _describe(error))
            listener.on_retry(part, attempts, error, delay)
            await anyio.sleep(delay)


async def _attempt(
    client: AEPClient, writer: _PartWriter, final: Path, options: FetchOptions
) -> int | None:
    part = writer.part
    if writer.offset < part.size:
        await writer.stream_from(client)
    elif part.size == 0:
        await writer.rewind()  # creates the empty .part
    rows: int | None = None
    if options.verify_parquet and _is_parquet(part.name) and part.size > 0:
        rows = await anyio.to_thread.run_sync(_parquet_rows, writer.temp, part.name)
    try:
        await anyio.to_thread.run_sync(os.replace, writer.temp, final)
    except OSError as exc:
        raise _storage_error(exc, final) from exc
    return rows


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
        except VerificationError:
            return None
    return PartResult(part=part, status=PartStatus.SKIPPED, rows=rows, sha256=sha256)


def _failed(part: Part, writer: _PartWriter, attempts: int, why: str) -> PartResult:
    return PartResult(
        part=part,
        status=PartStatus.FAILED,
        fetched_bytes=writer.fetched,
        attempts=attempts,
        error=why,
    )


def _describe(error: AsyncdlError) -> str:
    if isinstance(error, ForeignOriginError):
        return str(error)
    return f"{type(error).__name__}: {error}"
