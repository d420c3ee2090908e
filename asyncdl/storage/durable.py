"""Getting bytes past the page cache, so that what asyncdl vouches for survives a power loss.

A crashed or killed process loses nothing the kernel had accepted. A power loss (or a kernel
panic) loses what the page cache had not yet written back, and a file system may keep a rename,
or the size of a preallocated file, while losing the data behind it. A part's final name and a
segment record vouch for bytes, so each is written only after those bytes are synced: data
first, then the name or record that points at it (as dpkg, git and databases do).

The manifest is not synced: it only saves re-reading finished parts, and a lost or stale one
means they are hashed again, never that a bad part is trusted. A part's final name is not
synced either: a lost rename leaves a synced, complete ``.part`` that the next run renames.

A ``.part`` written front to back (one stream) is resumed from its size without a sync
before: that relies on the file system never showing a size whose data was lost, which ext4
(data=ordered, the default), XFS and btrfs guarantee; the footer check catches a bad tail.
A preallocated one (segments) relies on nothing: its record and ``has_hole`` say what is real.

On macOS, ``fsync`` reaches the drive but not through its write cache (``F_FULLFSYNC`` would,
at a large cost); SQLite makes the same trade by default. POSIX, like the writer's
``os.pwritev``: files are synced through read-only descriptors, which Windows would refuse.
Blocking calls: run them in a thread.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["SyncError", "data_ends", "has_hole", "sync_directory", "sync_file"]

# What lseek answers where SEEK_HOLE is unknown (ENXIO: the offset is at or past the end).
_NO_SEEK_HOLE = frozenset({errno.EINVAL, errno.ENOTSUP, errno.ENXIO})
# What a file system that cannot sync a directory answers (PostgreSQL ignores the same ones).
_CANNOT_SYNC_DIRECTORY = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EBADF})


class SyncError(OSError):
    """A sync failed; ``filename`` is what did not reach the disk."""


def sync_file(path: Path, fd: int | None = None) -> None:
    """Return once ``path``'s data and size are on stable storage (``fd``: it, already open)."""
    try:
        if fd is None:
            _fsync_path(path)
        else:
            os.fsync(fd)
    except OSError as exc:
        raise SyncError(exc.errno, exc.strerror, os.fspath(path)) from exc


def sync_directory(path: Path) -> None:
    """Return once the names created or replaced in ``path`` are on stable storage."""
    try:
        _fsync_path(path)
    except OSError as exc:
        if exc.errno in _CANNOT_SYNC_DIRECTORY:
            return  # the file system keeps names some other way (or not at all): nothing to do
        raise SyncError(exc.errno, exc.strerror, os.fspath(path)) from exc


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def has_hole(path: Path, size: int) -> bool:
    """Whether ``path`` has a hole before byte ``size``: a range never written.

    A ``.part`` written front to back has none; a preallocated one (segments) has one wherever
    no segment wrote, even after a power loss that took its record.
    """
    return bool(data_ends(path, [(0, size)]))


def data_ends(path: Path, ranges: list[tuple[int, int]]) -> dict[int, int]:
    """For each ``[start, end)`` in ``ranges`` that has a hole: start → where the hole begins.

    Empty where the file system cannot tell (no ``SEEK_HOLE``): it reports everything as data.
    """
    seek_hole = getattr(os, "SEEK_HOLE", None)
    if seek_hole is None:
        return {}
    holes: dict[int, int] = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        for start, end in ranges:
            if end <= start:
                continue
            try:
                hole = os.lseek(fd, start, seek_hole)
            except OSError as exc:
                if exc.errno in _NO_SEEK_HOLE:
                    return {}
                raise
            if hole < end:
                holes[start] = hole
    finally:
        os.close(fd)
    return holes
