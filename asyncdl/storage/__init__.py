"""The storage seam: where a verified part goes, and where asyncdl keeps its own records.

``fetch`` and ``pipeline`` never touch a file system themselves: they ask a ``Storage`` (one
batch directory, or one prefix of an object store) for a part's ``PartFile``, write it there
(appending, or at offsets for ranged segments), and ``seal`` it under its final name once it is
verified; nothing is visible under that name before. Manifests and later state files go through
``read`` and ``replace`` (atomic, small). Every method blocks and is called off the event loop;
every failure of the medium is a ``StorageError`` that names the file, raised by the
implementation, the one place that knows the medium.

Implementations: ``LocalStorage`` (a directory: ``.part`` + fsync + rename, resumable across
runs) and ``objects.ObjectStorage`` (a prefix of an S3, Azure or GCS bucket: parts stream into
uploads committed only once verified; segmented parts are staged on local disk). ``open_storage``
picks one from ``--out``; the object store's modules, and obstore with them, are imported only
when ``--out`` is such a URL, so a local run neither needs the ``cloud`` extra nor pays for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from ..checksum import Hasher
from ..errors import ConfigError
from .directory import LocalStorage
from .local import OpenMode

__all__ = [
    "OBJECT_SCHEMES",
    "OBJECT_STREAM_BUFFER_BYTES",
    "LocalStorage",
    "LockHold",
    "OpenMode",
    "PartFile",
    "PartWriter",
    "SegmentedFile",
    "Storage",
    "open_storage",
    "stream_buffer_bytes",
]

# A URL-shaped --out: "s3://bucket/x", "az://container", "file:///tmp". Two or more letters
# before "://", so a Windows drive ("C:\\scores") is a path.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
#: The schemes of object stores (stores.py parses them; listed here so that telling one from a
#: local path imports nothing).
OBJECT_SCHEMES = frozenset({"s3", "az", "abfs", "abfss", "gs"})
#: The most a download stream should buffer on its way into an object store. An upload holds a
#: whole multipart part (S3's minimum: 5 MiB) per stream until the store has it, and while it
#: waits, a stream's own buffers (the write buffer, and aiohttp's read-ahead of twice the read
#: size) fill up too: at -j 16, 1 MiB buffers took peak RSS from ~150 to ~190 MB (S8).
OBJECT_STREAM_BUFFER_BYTES = 64 << 10


def stream_buffer_bytes(out: str | Path) -> int | None:
    """The most a stream should buffer for the destination ``out`` (None: no limit of its own)."""
    match = _URL.match(str(out))
    if match is not None and match.group(1).lower() in OBJECT_SCHEMES:
        return OBJECT_STREAM_BUFFER_BYTES
    return None


class PartWriter(Protocol):
    """One stream's way into a part: gathered writes, appended or in place."""

    def write(self, chunks: Sequence[bytes], *, offset: int | None, hasher: Hasher | None) -> None:
        """Write ``chunks`` at ``offset`` (None: after what is there), feeding ``hasher``."""

    def close(self, *, sync: bool = False) -> None:
        """Done writing (what was written stays until ``seal`` or ``remove``); with ``sync``,
        once it is durable (a failed sync throws the file away: Linux may report the next sync
        clean over the lost pages)."""


class PartFile(Protocol):
    """A part on its way: written where no reader looks, visible only once ``seal``ed."""

    @property
    def name(self) -> str:
        """How messages name it (a path or a URL)."""

    def resumable(self, size: int, *, sync: bool) -> int:
        """How many bytes at its start an earlier attempt or run left that can be trusted;
        anything else there is thrown away (0: start over)."""

    def hash_into(self, hasher: Hasher, start: int, length: int) -> int:
        """Feed bytes ``[start, start + length)`` to ``hasher``; how many there were."""

    def open(self, mode: OpenMode) -> PartWriter:
        """Open for writing: after what is there ("append"), from empty ("fresh"), or at any
        offset of a ``resize``d file ("in_place", segmented files only)."""

    def rows(self, label: str) -> int | None:
        """The parquet footer's row count of what is written (VerificationError if none)."""

    def seal(self, *, sync: bool) -> None:
        """Give it its final name (synced first with ``sync``); a segment record goes too."""

    def remove(self) -> None:
        """Throw it away, record and all."""

    def release(self) -> None:
        """The fetch is over, sealed or not: let go of what only an unfinished write holds (an
        object store's open upload is aborted; a local ``.part`` stays, for the next run)."""

    @property
    def releases(self) -> bool:
        """Whether ``release`` has anything to do now (False: the caller may skip it, and the
        thread hop it costs: one per part, a tenth of a small part's CPU)."""


class SegmentedFile(PartFile, Protocol):
    """A part written at offsets by concurrent ranged segments, with a record of their progress
    (a local file: a destination that cannot write at offsets stages these)."""

    def size(self) -> int | None:
        """How big the file is now (None: there is none yet)."""

    def unsegmented_prefix(self, on_disk: int) -> int:
        """``resumable``'s rule without throwing anything away: how much of what is there
        (``on_disk`` bytes) one stream wrote front to back."""

    def resize(self, size: int, *, keep: int) -> None:
        """Make it ``size`` bytes (sparse), keeping the first ``keep`` (0 and 0: empty it)."""

    def load_record(self) -> bytes | None:
        """The progress record an earlier attempt kept, if there is a readable one."""

    def save_record(self, document: bytes, *, sync: bool) -> None:
        """Replace the record atomically; with ``sync``, the part's bytes are synced first and
        the record itself before it counts (it vouches for those bytes)."""

    def holes(self, ranges: Sequence[tuple[int, int]]) -> dict[int, int]:
        """For each ``[start, end)`` that has never been written: start → where that begins."""

    def drop_attempt(self, *, sync: bool) -> None:
        """Empty a segmented attempt, then forget its record (in that order)."""


class LockHold(Protocol):
    """A lock while it is held: ``check`` before each write that the lock protects."""

    def check(self) -> None:
        """BusyError once this run can no longer be sure it holds the lock (a lease taken over,
        or not renewed for its whole length): nothing more may be written under it."""


class Storage(Protocol):
    """One batch's place: its parts and asyncdl's records, by relative path."""

    def memory_held(self, size: int, *, segmented: bool) -> int:
        """The most of a part of ``size`` bytes that writing it here keeps in memory: a whole
        part until it is sealed or released, a segmented one while it is sealed (0: none).
        Each part holds that share of the run's ``store_memory_bytes`` meanwhile."""

    def where(self, relpath: str = "") -> str:
        """How messages name ``relpath`` (a path or a URL)."""

    def prepare(self) -> None:
        """Make sure it can be written to (StorageError if not), before anything is fetched."""

    def sub(self, name: str) -> Storage:
        """The storage of ``name`` below this one (a batch below the output root)."""

    def size(self, relpath: str) -> int | None:
        """The size of the visible file at ``relpath``; None when there is none."""

    def files(self) -> frozenset[str]:
        """Relative paths of every file below (one listing, so fresh parts need no lookups)."""

    def part(self, relpath: str) -> PartFile:
        """The part that will be visible at ``relpath`` once sealed."""

    def segmented(self, relpath: str) -> SegmentedFile:
        """The same part, for fetching in ranged segments."""

    def digest(self, relpath: str, hasher: Hasher) -> None:
        """Feed the visible file's bytes to ``hasher`` (a finished part without a manifest)."""

    def rows(self, relpath: str, label: str) -> int | None:
        """The visible file's parquet row count (VerificationError when it has none)."""

    def read(self, relpath: str) -> bytes | None:
        """A small file's bytes (manifest, state); None when absent or unreadable."""

    def replace(self, relpath: str, data: bytes, *, durable: bool = False) -> None:
        """Write a small file atomically: readers see the old bytes or the new ones; with
        ``durable``, synced before and after the new name (state that vouches for batches)."""

    def folders(self) -> list[str]:
        """The names of the folders right below (the batches of an output root)."""

    def remove_tree(self, relpath: str) -> None:
        """Delete ``relpath`` and everything below it (a pruned batch); absent is fine."""

    def lock(self, relpath: str) -> AbstractContextManager[LockHold]:
        """Hold the exclusive lock ``relpath`` for the block (released if the process dies);
        BusyError at once when another holder has it."""


def open_storage(out: str | Path) -> Storage:
    """The storage ``--out`` names: a local directory (also ``file://``), or an object store
    (``s3://``, ``az://``, ``abfs://``, ``abfss://``, ``gs://``). Any other URL is refused
    rather than written into a local folder named after its scheme (``ftp:``).

    ConfigError (exit 2) for an unknown scheme, a malformed store URL, missing credentials, or
    obstore not installed; nothing is written here (``prepare`` proves the destination).
    """
    text = str(out)
    match = _URL.match(text)
    if match is None:
        return LocalStorage(Path(text))
    scheme = match.group(1).lower()
    if scheme == "file":
        return LocalStorage(Path(text[len("file://") :] or "/"))
    if scheme not in OBJECT_SCHEMES:
        raise ConfigError(
            f"--out {text}: {scheme}:// destinations are not supported (give a local "
            "directory, or an s3://, az://, abfs:// or gs:// URL)"
        )
    try:
        from .objects import object_storage
        from .stores import parse_store_url
    except ModuleNotFoundError as exc:
        if exc.name != "obstore" and not (exc.name or "").startswith("obstore."):
            raise
        raise ConfigError(
            f"--out {text}: writing to an object store needs obstore: pip install 'asyncdl[cloud]'"
        ) from None
    url = parse_store_url(text)
    assert url is not None  # its scheme is one of OBJECT_SCHEMES
    return object_storage(url)
