"""What an object store vouches for about the object a part is: the version it was listed at
(``Part.etag``: every request names it with ``If-Match``) and the MD5 its answers state
(Azure's ``x-ms-blob-content-md5`` or ``Content-MD5``), checked before the part is sealed.

``StoredDigest`` keeps the stated MD5 (the same on every answer of one version: another one
means the object changed under the download). ``CheckedPartFile`` and ``CheckedSegmentedFile``
wrap the storage seam's files: bytes written front to back are fed to an MD5 in the writer's
worker thread as they are written, bytes read back for the content hash (a resumed prefix, a
segmented part's contiguous prefix) on the way, and only what neither saw is read back once at
the end. ``seal`` refuses (VerificationError) a part whose MD5 is not the stated one, so such
bytes never get the part's name. A part whose answers state no MD5 costs nothing here.

``replaced`` says when an error means the listed version is gone (412: rewritten; 404: deleted):
nothing written can be kept, and the part starts again from the object as it is now, if any.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections.abc import Sequence

from ..checksum import Hasher
from ..client import ByteStream
from ..errors import (
    AsyncdlError,
    NotFoundError,
    PreconditionFailedError,
    ProtocolError,
    VerificationError,
)
from ..models import Part
from ..storage import OpenMode, PartFile, PartWriter, SegmentedFile

__all__ = ["CheckedPartFile", "CheckedSegmentedFile", "StoredDigest", "replaced"]


def replaced(part: Part, error: AsyncdlError) -> bool:
    """Whether ``error`` says the listed version of a versioned part is gone."""
    return part.etag is not None and isinstance(error, PreconditionFailedError | NotFoundError)


class StoredDigest:
    """The MD5 the store states for the object (None until an answer states one)."""

    def __init__(self) -> None:
        self.expected: bytes | None = None

    def answered(self, stream: ByteStream, label: str) -> None:
        """Learn the MD5 an answer states; an answer stating another one is of another
        version of the object (VerificationError: the part starts over)."""
        stated = stream.content_md5
        if stated is None:
            return
        try:
            md5 = base64.b64decode(stated, validate=True)
        except (binascii.Error, ValueError):
            md5 = b""
        if len(md5) != 16:
            raise ProtocolError(f"{label}: the store states an MD5 that is not one ({stated!r})")
        if self.expected is None:
            self.expected = md5
        elif md5 != self.expected:
            raise VerificationError(f"{label}: the object's MD5 changed while it was downloaded")


class _Tee:
    """Feeds the content hash and the MD5 at once (a ``Hasher``)."""

    def __init__(self, first: Hasher, second: Hasher) -> None:
        self._first = first
        self._second = second

    def update(self, data: bytes | memoryview, /) -> object:
        self._first.update(data)
        return self._second.update(data)

    def hexdigest(self) -> str:
        return self._first.hexdigest()


class _CheckedWriter:
    def __init__(self, file: CheckedPartFile, writer: PartWriter) -> None:
        self._file = file
        self._writer = writer

    def write(self, chunks: Sequence[bytes], *, offset: int | None, hasher: Hasher | None) -> None:
        self._writer.write(chunks, offset=offset, hasher=hasher)
        self._file.written(chunks, offset)

    def close(self, *, sync: bool = False) -> None:
        self._writer.close(sync=sync)


class CheckedPartFile:
    """A ``PartFile`` whose ``seal`` first checks the MD5 its store stated, if it stated one."""

    def __init__(self, inner: PartFile, stored: StoredDigest, *, size: int) -> None:
        self._inner = inner
        self._stored = stored
        self._size = size
        self._md5 = hashlib.md5()
        self._fed = 0  # bytes [0, fed) of the file went through ``_md5``, in order
        self._end: int | None = 0  # where appends land (None: unknown)
        # Segments write, and the content hash reads back, in worker threads at once: a range
        # is fed by whichever comes first in order, under this lock, never by both.
        self._lock = threading.Lock()

    def _restart(self, end: int | None) -> None:
        self._md5, self._fed, self._end = hashlib.md5(), 0, end

    def written(self, chunks: Sequence[bytes], offset: int | None) -> None:
        """Bytes just written: fed to the MD5 when they continue what it has seen."""
        size = sum(map(len, chunks))
        with self._lock:
            start = self._end if offset is None else offset
            if start is not None and start == self._fed and self._stored.expected is not None:
                for chunk in chunks:
                    self._md5.update(chunk)
                self._fed += size
            if offset is None:
                self._end = None if self._end is None else self._end + size

    @property
    def name(self) -> str:
        return self._inner.name

    def resumable(self, size: int, *, sync: bool) -> int:
        kept = self._inner.resumable(size, sync=sync)
        self._restart(kept)  # that prefix is fed as the content hash reads it back
        return kept

    def hash_into(self, hasher: Hasher, start: int, length: int) -> int:
        with self._lock:
            if start == self._fed and self._stored.expected is not None:
                read = self._inner.hash_into(_Tee(hasher, self._md5), start, length)
                self._fed += read
                return read
        return self._inner.hash_into(hasher, start, length)

    def open(self, mode: OpenMode) -> PartWriter:
        writer = self._inner.open(mode)
        if mode == "fresh":
            self._restart(0)
        return _CheckedWriter(self, writer)

    def rows(self, label: str) -> int | None:
        return self._inner.rows(label)

    def check(self) -> None:
        """The stated MD5 against the bytes (VerificationError when they differ)."""
        expected = self._stored.expected
        if expected is None:
            return
        if self._fed != self._size:  # not all of it was seen in order: read it back once
            self._md5, self._fed = hashlib.md5(), 0
            try:
                self._fed = self._inner.hash_into(self._md5, 0, self._size)
            except RuntimeError as exc:  # an upload in flight cannot be read back
                raise VerificationError(f"{self.name}: its MD5 cannot be checked: {exc}") from exc
        if self._md5.digest() != expected:
            raise VerificationError(
                f"{self.name}: its MD5 is not the one the store states "
                f"({base64.b64encode(self._md5.digest()).decode()} against "
                f"{base64.b64encode(expected).decode()})"
            )

    def seal(self, *, sync: bool) -> None:
        self.check()
        self._inner.seal(sync=sync)

    def remove(self) -> None:
        self._restart(0)
        self._inner.remove()

    @property
    def releases(self) -> bool:
        return self._inner.releases

    def release(self) -> None:
        self._inner.release()


class CheckedSegmentedFile(CheckedPartFile):
    """The same check for a part fetched in ranged segments (written at offsets)."""

    def __init__(self, inner: SegmentedFile, stored: StoredDigest, *, size: int) -> None:
        super().__init__(inner, stored, size=size)
        self._segmented = inner
        self._end = None  # segments write in place: appends are not how it grows

    def size(self) -> int | None:
        return self._segmented.size()

    def unsegmented_prefix(self, on_disk: int) -> int:
        return self._segmented.unsegmented_prefix(on_disk)

    def resize(self, size: int, *, keep: int) -> None:
        self._segmented.resize(size, keep=keep)
        if self._fed > keep:
            self._restart(None)

    def load_record(self) -> bytes | None:
        return self._segmented.load_record()

    def save_record(self, document: bytes, *, sync: bool) -> None:
        self._segmented.save_record(document, sync=sync)

    def holes(self, ranges: Sequence[tuple[int, int]]) -> dict[int, int]:
        return self._segmented.holes(ranges)

    def drop_attempt(self, *, sync: bool) -> None:
        self._segmented.drop_attempt(sync=sync)
        self._restart(None)
