"""A part on its way into an object store: streamed into an upload while it downloads, verified,
and only then committed, so no reader ever sees an unverified object under the part's key.

A whole part (``ObjectPartFile``) keeps its first ``PART_BYTES`` in memory; one that ends there
(most parts of most batches) is committed by a single conditional PUT (``create``: a second
writer of the same part finds it there and loses harmlessly). A bigger one starts a multipart
(S3, GCS) or block (Azure) upload with those bytes and streams the rest into it, one part in
flight (``bucket.Upload``), and commits by completing the upload, which has no precondition: a
second writer completing its own upload of the same part commits the same verified bytes. An
unfinished upload is aborted when the fetch ends (``release``), Ctrl-C included; parts are ~16
MB, so an interrupted one restarts its upload rather than resuming it (``resumable`` is 0).

The parquet footer is verified without reading anything back: the attempt keeps the part's
first 4 bytes and a rolling tail of its last ``TAIL_BYTES``, which is where ``footer``'s reader
looks. A footer longer than that tail is a ``VerificationError`` that says so, never a guess.

A segmented part (``StagedPartFile``) is fetched at offsets into a local staging file (a store
cannot write at offsets), resumable across runs like a ``.part``, and uploaded once verified.

Blocking throughout: the callers run every method in a worker thread.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from ..checksum import Hasher
from ..errors import StorageError, VerificationError
from ..footer import _FooterError, _rows
from .bucket import PART_BYTES, Bucket, Upload
from .local import LocalPartFile, OpenMode, translated

__all__ = [
    "TAIL_BYTES",
    "ObjectPartFile",
    "ObjectPartWriter",
    "StagedPartFile",
    "commit_whole",
    "whole_part_memory",
]

log = logging.getLogger(__name__)

#: How much of a part's end is kept to read its parquet footer before the commit.
TAIL_BYTES = 1 << 20
_HEAD_BYTES = 4  # parquet's leading magic
#: The most an attempt bigger than one PUT's buffer keeps in memory: the upload's part in flight
#: (its writer takes no more meanwhile) and the tail.
_MULTIPART_ATTEMPT_BYTES = PART_BYTES + TAIL_BYTES


def whole_part_memory(size: int) -> int:
    """The most of a whole part of ``size`` bytes that its attempt keeps in memory: all of it,
    twice at the moment of its single PUT (the chunks joined), or a multipart attempt's."""
    return 2 * size if size <= PART_BYTES else _MULTIPART_ATTEMPT_BYTES


def commit_whole(bucket: Bucket, key: str, data: bytes) -> None:
    """``data`` as the object at ``key`` by one conditional PUT.

    Another writer that committed the same part first makes this a success; an object of other
    bytes there (a stale or damaged one, which the fetch chose to replace) is replaced.
    """
    if bucket.create(key, data) is not None:
        return
    existing = bucket.head(key)
    if existing is not None and existing["size"] == len(data):
        found = bucket.get(key)
        if found is not None and found[0] == data:
            return  # the same verified bytes, committed by another writer
    log.info("%s: replacing an object with other bytes", bucket.where(key))
    bucket.put(key, data)


class _Attempt:
    """One attempt's bytes on their way into one object: in memory up to ``PART_BYTES``, then
    in an upload; the head and tail kept for the footer."""

    def __init__(self, bucket: Bucket, key: str) -> None:
        self.bucket = bucket
        self.key = key
        self.size = 0
        self.head = b""
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._pending: list[bytes] = []
        self._upload: Upload | None = None
        self.committed = False

    def write(self, chunks: Sequence[bytes]) -> None:
        for chunk in chunks:
            if not chunk:
                continue
            if len(self.head) < _HEAD_BYTES:
                self.head += chunk[: _HEAD_BYTES - len(self.head)]
            self._keep_tail(chunk)
            self.size += len(chunk)
            if self._upload is not None:
                self._upload.write(chunk)
                continue
            self._pending.append(chunk)
            if self.size > PART_BYTES:
                # Too big for one PUT's buffer: the bytes so far become the upload's first part.
                self._upload = self.bucket.upload_to(self.key)
                pending, self._pending = self._pending, []
                for piece in pending:
                    self._upload.write(piece)

    def _keep_tail(self, chunk: bytes) -> None:
        self._tail.append(chunk)
        self._tail_size += len(chunk)
        while self._tail_size - len(self._tail[0]) >= TAIL_BYTES:
            self._tail_size -= len(self._tail.popleft())

    def read_at(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)`` of what was written, from the head or the tail."""
        if offset + length <= len(self.head):
            return self.head[offset : offset + length]
        start = self.size - self._tail_size
        if offset < start:
            raise _BeyondTailError(length)
        pieces, position = [], start
        for chunk in self._tail:
            end = position + len(chunk)
            if end > offset and position < offset + length:
                pieces.append(chunk[max(offset - position, 0) : offset + length - position])
            position = end
        return b"".join(pieces)

    def commit(self) -> None:
        if self._upload is not None:
            self._upload.complete()
        else:
            commit_whole(self.bucket, self.key, b"".join(self._pending))
        self.committed = True
        self._pending, self._tail = [], deque()

    def abort(self) -> None:
        """Throw away what was uploaded; a failure is logged (a lifecycle rule removes it)."""
        self._pending, self._tail = [], deque()
        upload, self._upload = self._upload, None
        if upload is None:
            return
        try:
            upload.abort()
        except StorageError as error:
            log.warning("%s (the store keeps its parts until a lifecycle rule removes them)", error)


class _BeyondTailError(Exception):
    """The footer starts before the kept tail (internal: becomes a VerificationError)."""

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length


class ObjectPartWriter:
    """One stream's way into the part's current attempt (appends only)."""

    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt

    def write(self, chunks: Sequence[bytes], *, offset: int | None, hasher: Hasher | None) -> None:
        if offset is not None:
            raise ValueError("an object store part is written front to back")
        self._attempt.write(chunks)
        if hasher is not None:
            for chunk in chunks:
                hasher.update(chunk)

    def close(self, *, sync: bool = False) -> None:
        pass  # the upload stays open for the next stream of this part, or the seal


class ObjectPartFile:
    """The part that will be the object at ``key`` once sealed (the seam's ``PartFile``)."""

    def __init__(self, bucket: Bucket, key: str) -> None:
        self._bucket = bucket
        self._key = key
        self._attempt: _Attempt | None = None

    @property
    def name(self) -> str:
        return self._bucket.where(self._key)

    def resumable(self, size: int, *, sync: bool) -> int:
        return 0  # an interrupted part restarts its upload (parts are ~16 MB)

    def hash_into(self, hasher: Hasher, start: int, length: int) -> int:
        # Only a resume reads a part back, and nothing resumes here (``resumable`` is 0).
        raise RuntimeError(f"{self.name}: an uncommitted upload cannot be read back")

    def open(self, mode: OpenMode) -> ObjectPartWriter:
        if mode == "in_place":
            raise ValueError(f"{self.name}: an object store part cannot be written at offsets")
        if mode == "fresh" or self._attempt is None:
            self._abort()
            self._attempt = _Attempt(self._bucket, self._key)
        return ObjectPartWriter(self._attempt)

    def rows(self, label: str) -> int | None:
        attempt = self._attempt
        if attempt is None:
            raise VerificationError(f"{label}: nothing was written")
        try:
            return _rows(attempt.size, attempt.read_at)
        except _FooterError as exc:
            raise VerificationError(f"{label}: parquet footer unreadable ({exc})") from exc
        except _BeyondTailError as exc:
            raise VerificationError(
                f"{label}: its parquet footer ({exc.length:,} bytes) is longer than the "
                f"{TAIL_BYTES:,} bytes kept to verify it before the commit"
            ) from None

    def seal(self, *, sync: bool) -> None:
        """Commit the verified attempt (an object store's PUT is durable: ``sync`` is moot)."""
        attempt = self._attempt
        if attempt is None:
            attempt = _Attempt(self._bucket, self._key)  # opened never: an empty part
        try:
            attempt.commit()
        finally:
            self._attempt = None if attempt.committed else attempt

    def remove(self) -> None:
        self._abort()

    def release(self) -> None:
        self._abort()  # an unfinished upload is aborted: nothing of it may linger

    @property
    def releases(self) -> bool:
        return self._attempt is not None and not self._attempt.committed

    def _abort(self) -> None:
        attempt, self._attempt = self._attempt, None
        if attempt is not None and not attempt.committed:
            attempt.abort()


class StagedPartFile(LocalPartFile):
    """A segmented part staged in a local directory, uploaded once verified.

    Everything but the name, the seal and the release is the local ``.part``'s (record, holes,
    resume): a rerun continues the staged file where the last run left it. ``staging`` is made
    private to the user (0700): other users of a shared temp dir must not read or plant parts.
    """

    def __init__(self, staging: Path, digest: str, name: str, *, bucket: Bucket, key: str) -> None:
        super().__init__(staging / digest, name)
        self._staging = staging
        self._bucket = bucket
        self._key = key

    @property
    def name(self) -> str:
        return self._bucket.where(self._key)

    def _folder(self) -> None:
        def make() -> None:
            self._staging.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.temp.parent.mkdir(exist_ok=True)

        translated(self.temp, "write", make)

    def _parent(self) -> None:
        self._folder()

    def resize(self, size: int, *, keep: int) -> None:
        self._folder()
        super().resize(size, keep=keep)

    def save_record(self, document: bytes, *, sync: bool) -> None:
        self._folder()
        super().save_record(document, sync=sync)

    def seal(self, *, sync: bool) -> None:
        """Upload the verified staged file (streamed from disk), then remove it and its record.

        ``sync`` is moot: what must be durable is the object, and the store's PUT is.
        """
        size = translated(self.temp, "read", lambda: self.temp.stat().st_size)
        if size <= PART_BYTES:
            data = translated(self.temp, "read", self.temp.read_bytes)
            commit_whole(self._bucket, self._key, data)
        else:
            self._bucket.upload(self._key, self.temp)
        self.remove()

    @property
    def releases(self) -> bool:
        return True  # an empty staging directory is tidied away

    def release(self) -> None:
        """Leave the staged file for the next run, unless nothing in it can be resumed."""

        def tidy() -> None:
            if self.record.exists():
                return
            try:
                if self.temp.stat().st_size == 0:
                    self.temp.unlink()
                self.temp.parent.rmdir()  # only once empty: a staged file stays
            except OSError:
                pass  # not empty, or already gone

        translated(self.temp, "remove", tidy)
