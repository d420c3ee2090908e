"""Getting bytes past the page cache, so that what asyncdl vouches for survives a power loss.

A crashed or killed process loses nothing the kernel had accepted. A power loss (or a kernel
panic) loses what the page cache had not yet written back, and a file system may keep a rename,
or the size of a preallocated file, while losing the data behind it. A part's final name, a
manifest entry and a segment record all vouch for bytes, so each is written only after those
bytes are synced: data first, then the name or record that points at it (as dpkg, git and
databases do). Blocking calls: run them in a worker thread.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["sync_directory", "sync_file"]


def sync_file(path: Path) -> None:
    """Return once ``path``'s data and size are on stable storage."""
    # Read-write, not read-only: Windows cannot flush a handle opened for reading.
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_directory(path: Path) -> None:
    """Return once the names created or replaced in ``path`` are on stable storage."""
    if os.name == "nt":  # NTFS journals names itself; a directory cannot be opened to flush
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
