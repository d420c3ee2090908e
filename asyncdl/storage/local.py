"""A part's file on a local (or network-mounted) disk: ``.part``, gathered writes, fsync, rename.

A part is written to ``<relpath>.part`` beside its final name (layout.py), resumable across
attempts and runs, and renamed only once verified and, with syncing on, durable (durable.py says
in which order, and why). A segmented part's progress record sits beside its ``.part``. Small
files (the manifest) are replaced atomically through a unique temp name. Every OSError is turned
into the ``StorageError`` about the file here, once: nothing above this module sees one.

Blocking throughout: the callers run every method in a worker thread.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

from ..checksum import Hasher
from ..errors import StorageError
from ..footer import parquet_rows
from ..layout import record_of, record_temp_of, temp_of
from .durable import SyncError, data_ends, has_hole, sync_directory, sync_file

__all__ = [
    "LocalPartFile",
    "LocalPartWriter",
    "OpenMode",
    "hash_range",
    "storage_error",
    "translated",
]

#: How a part is opened: after what is there, from an empty file, or in place (preallocated).
OpenMode = Literal["append", "fresh", "in_place"]
_MODES: dict[OpenMode, int] = {
    "append": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
    "fresh": os.O_WRONLY | os.O_TRUNC | os.O_CREAT,
    "in_place": os.O_WRONLY,
}
_HASH_BLOCK = 1 << 20
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024

T = TypeVar("T")


def storage_error(exc: OSError, path: Path | str, doing: str = "write") -> StorageError:
    """The one message for a failed disk operation: what, on which file, and why."""
    if isinstance(exc, SyncError):
        hint = ""
        if exc.errno in (errno.EINVAL, errno.ENOTSUP):
            hint = " (this file system cannot sync; --no-fsync skips syncing)"
        return StorageError(f"cannot sync {exc.filename} to disk: {exc.strerror or exc}{hint}")
    if exc.errno == errno.ENOSPC:
        return StorageError(f"disk full while writing {path}")
    return StorageError(f"cannot {doing} {path}: {exc.strerror or exc}")


def translated(path: Path, doing: str, func: Callable[[], T]) -> T:
    try:
        return func()
    except OSError as exc:
        raise storage_error(exc, path, doing) from exc


def write_chunks(
    fd: int, chunks: Sequence[bytes], *, offset: int | None, hasher: Hasher | None
) -> None:
    """Write ``chunks`` with one gathered syscall per IOV_MAX pieces, then hash them.

    The copy into the page cache and the hash (which releases the GIL) both happen here, in
    the caller's worker thread, and no join copy is made to coalesce the pieces. ``offset``
    None appends at the file position; otherwise writes in place (segments).
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


def hash_range(hasher: Hasher, path: Path, start: int, length: int) -> int:
    """Feed bytes ``[start, start + length)`` of ``path`` to ``hasher``; how many there were."""
    block = memoryview(bytearray(min(_HASH_BLOCK, max(length, 1))))  # one buffer, refilled
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


def _preallocate(temp: Path, size: int, keep: int) -> None:
    """Make ``temp`` exactly ``size`` bytes (sparse), keeping its first ``keep`` bytes."""
    temp.parent.mkdir(parents=True, exist_ok=True)
    with temp.open("r+b" if keep else "wb") as fh:
        fh.truncate(size)


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


class LocalPartWriter:
    """One open descriptor of a ``.part``; gathered writes, appended or at offsets."""

    def __init__(self, part: LocalPartFile, fd: int) -> None:
        self._part = part
        self._fd = fd

    def write(self, chunks: Sequence[bytes], *, offset: int | None, hasher: Hasher | None) -> None:
        translated(
            self._part.temp,
            "write",
            lambda: write_chunks(self._fd, chunks, offset=offset, hasher=hasher),
        )

    def close(self, *, sync: bool = False) -> None:
        """Close it; with ``sync``, once its bytes are durable (a failed sync drops the file)."""
        temp = self._part.temp
        try:
            if sync:
                translated(temp, "sync", lambda: _sync_or_drop(temp, self._fd))
        finally:
            os.close(self._fd)


class LocalPartFile:
    """``<relpath>.part`` in a directory, with its segment record beside it."""

    def __init__(self, root: Path, relpath: str) -> None:
        self.final = root / relpath
        self.temp = root / temp_of(relpath)
        self._root, self._relpath = root, relpath
        self._nested = "/" in relpath  # a partition or dataSetFileId folder to create first

    # Only a segmented part has a record: the paths are made when first asked for (a run of
    # thousands of small parts builds one per part otherwise, on the event loop).
    @functools.cached_property
    def record(self) -> Path:
        return self._root / record_of(temp_of(self._relpath))

    @functools.cached_property
    def record_temp(self) -> Path:
        return self._root / record_temp_of(record_of(temp_of(self._relpath)))

    @property
    def name(self) -> str:
        return str(self.final)

    def _parent(self) -> None:
        if self._nested:
            self.temp.parent.mkdir(parents=True, exist_ok=True)

    def resumable(self, size: int, *, sync: bool) -> int:
        """What an earlier attempt or run left in ``.part`` that can be trusted: all of it if one
        stream wrote it front to back; nothing (and it is emptied) if it is longer than the part,
        or has a record (a segmented attempt), or holes (one whose record a power loss took)."""

        def decide() -> int:
            try:
                on_disk = self.temp.stat().st_size
            except FileNotFoundError:
                return 0
            if not on_disk:
                return 0
            if on_disk > size or not self._front_to_back(on_disk):
                self.drop_attempt(sync=sync)
                return 0
            return on_disk

        return translated(self.temp, "read", decide)

    def unsegmented_prefix(self, on_disk: int) -> int:
        """How much of a ``.part`` without a usable record is real (``resumable``'s rule,
        without throwing anything away)."""
        return translated(self.temp, "read", lambda: on_disk if self._front_to_back(on_disk) else 0)

    def _front_to_back(self, on_disk: int) -> bool:
        """Whether one stream wrote the ``.part`` front to back: no record (a segmented attempt,
        or an unreadable record: nothing it claims is known) and no holes (a preallocated file
        whose record a power loss took, which would otherwise pass for complete)."""
        return not self.record.exists() and not has_hole(self.temp, on_disk)

    def size(self) -> int | None:
        try:
            return self.temp.stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(exc, self.temp, "read") from exc

    def hash_into(self, hasher: Hasher, start: int, length: int) -> int:
        return translated(self.temp, "read", lambda: hash_range(hasher, self.temp, start, length))

    def resize(self, size: int, *, keep: int) -> None:
        translated(self.temp, "write", lambda: _preallocate(self.temp, size, keep))

    def open(self, mode: OpenMode) -> LocalPartWriter:
        def open_fd() -> int:
            if mode != "in_place":
                self._parent()
            return os.open(self.temp, _MODES[mode], 0o666)

        return LocalPartWriter(self, translated(self.temp, "write", open_fd))

    def rows(self, label: str) -> int | None:
        return parquet_rows(self.temp, label)

    def seal(self, *, sync: bool) -> None:
        """Give the verified ``.part`` its final name; with ``sync``, once its bytes are durable.

        The record goes between the two: a complete ``.part`` left without it (a crash before
        the rename) has no holes and is renamed by the next run, while a record left beside a
        final file would never be cleaned up.
        """

        def seal() -> None:
            records = (self.record, self.record_temp)
            if sync:
                _sync_or_drop(self.temp, None, *records)
            for path in records:
                path.unlink(missing_ok=True)
            os.replace(self.temp, self.final)

        translated(self.final, "write", seal)

    def release(self) -> None:
        pass  # an unsealed .part stays: the next attempt or run continues it

    @property
    def releases(self) -> bool:
        return False

    def remove(self) -> None:
        def remove() -> None:
            for path in (self.temp, self.record, self.record_temp):
                path.unlink(missing_ok=True)

        translated(self.temp, "remove", remove)

    def load_record(self) -> bytes | None:
        try:
            return self.record.read_bytes()
        except OSError:
            return None  # unreadable is as good as absent: nothing it claims is trusted

    def save_record(self, document: bytes, *, sync: bool) -> None:
        """Replace the record atomically; with ``sync`` the ``.part``'s bytes go first (the
        record vouches for them), then the record's own, then its name."""

        def save() -> None:
            if sync and self.temp.exists():  # no .part yet: a fresh plan claims nothing
                sync_file(self.temp)
            try:
                with self.record_temp.open("wb") as fh:
                    fh.write(document)
                    if sync:
                        fh.flush()
                        sync_file(self.record_temp, fh.fileno())
                os.replace(self.record_temp, self.record)
            except BaseException:
                self.record_temp.unlink(missing_ok=True)  # half a record must never linger
                raise
            if sync:
                sync_directory(self.record.parent)

        translated(self.record, "write", save)

    def holes(self, ranges: Sequence[tuple[int, int]]) -> dict[int, int]:
        return translated(self.temp, "read", lambda: data_ends(self.temp, list(ranges)))

    def drop_attempt(self, *, sync: bool) -> None:
        """Empty a segmented ``.part``, then delete its record.

        Bytes first, record second, with the emptying synced in between when syncing: a
        full-size ``.part`` must never outlive the record that says which of its bytes are real.
        """

        def drop() -> None:
            _preallocate(self.temp, 0, 0)
            if sync:
                sync_file(self.temp)
            self.record.unlink(missing_ok=True)

        translated(self.temp, "write", drop)
