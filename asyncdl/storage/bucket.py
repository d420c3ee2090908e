"""One bucket (or container) through obstore: the calls asyncdl makes, typed, and every failure
translated here, once, into the ``StorageError`` that names the object.

Nothing above this module sees an obstore exception: a refusal of the credentials or of a
permission is a ``StorageAuthError`` (exit 3), anything else a ``StorageError``; "not there"
and "already there" are answers (None), not errors, where a caller needs them. Messages quote the
store's own error code and never a URL's query (a SAS token travels in one).

Blocking throughout (obstore's synchronous calls release the GIL while they wait): the callers
run every method in a worker thread.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)

from ..checksum import Hasher
from ..errors import StorageAuthError, StorageError

if TYPE_CHECKING:
    from obstore import ObjectMeta, PutResult, UpdateVersion, WritableFile
    from obstore.store import ObjectStore

__all__ = ["PART_BYTES", "STAGED_UPLOAD_BYTES", "Bucket", "Upload"]

T = TypeVar("T")

#: S3's smallest multipart part, and so each upload's buffer: what one part in flight holds.
PART_BYTES = 5 * 1024 * 1024
_LIST_CHUNK = 1000  # objects per listing page handed to Python (S3 and Azure pages hold 1,000)
_DELETE_CHUNK = 1000  # S3's bulk delete limit
_STREAM_CHUNK = 1 << 20
# A staged part's multipart upload: parts in flight at once (each PART_BYTES read from disk).
_STAGED_CONCURRENCY = 4
#: What uploading a staged part holds in memory at most: its parts in flight, and the next one
#: that obstore has read from the file while it waits for room among them.
STAGED_UPLOAD_BYTES = (_STAGED_CONCURRENCY + 1) * PART_BYTES
# Error codes (from the store's XML or JSON) that mean the credentials were refused.
_AUTH_CODES = frozenset(
    {
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        # Azure's, when obstore does not map the 403 itself (a SAS refused, expired, revoked)
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
    }
)
_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_MESSAGE = re.compile(r"<Message>([^<\n]{1,300})")
_STATUS = re.compile(r"status code: (\d{3}[^:<\n]*)")
_QUERY = re.compile(r"\?[^\s\"'<>]*")


def reason(exc: BaseException) -> str:
    """One line about a failed call: the store's status and code when it sent them."""
    text = str(exc)
    status, code, message = _STATUS.search(text), _CODE.search(text), _MESSAGE.search(text)
    if status is not None and code is not None:
        said = f"{code.group(1)}: {message.group(1).strip()}" if message else code.group(1)
        line = f"HTTP {status.group(1).strip()} ({said})"
    else:
        line = (text.strip().splitlines() or [type(exc).__name__])[0]
    return _QUERY.sub("", line)[:300]


class Bucket:
    """A bucket's obstore store, how messages name it, and where its credentials come from."""

    def __init__(self, store: ObjectStore, *, url: str, hint: str = "") -> None:
        self.store = store
        self.url = url.rstrip("/")  # "s3://bucket": never a credential
        self.hint = hint

    def where(self, key: str) -> str:
        return f"{self.url}/{key}" if key else self.url

    def failure(self, exc: BaseException, doing: str, key: str) -> StorageError:
        """The one translation of a failed call on ``key``."""
        why = reason(exc)
        code = _CODE.search(str(exc))
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or (
            code is not None and code.group(1) in _AUTH_CODES
        ):
            hint = f"; {self.hint}" if self.hint else ""
            return StorageAuthError(
                f"{self.url} refused the credentials to {doing} {self.where(key)}: {why}{hint}"
            )
        if isinstance(exc, FileNotFoundError):
            return StorageError(f"cannot {doing} {self.where(key)}: not found ({why})")
        return StorageError(f"cannot {doing} {self.where(key)}: {why}")

    def call(self, doing: str, key: str, func: Callable[[], T]) -> T:
        try:
            return func()
        except (BaseError, OSError, NotImplementedError, ValueError) as exc:
            raise self.failure(exc, doing, key) from exc

    # -- reading ---------------------------------------------------------------------------------

    def head(self, key: str) -> ObjectMeta | None:
        """The object's metadata; None when there is none."""

        def head() -> ObjectMeta | None:
            try:
                return obstore.head(self.store, key)
            except FileNotFoundError:
                return None

        return self.call("read", key, head)

    def get(self, key: str) -> tuple[bytes, ObjectMeta] | None:
        """A small object's bytes and metadata; None when there is none."""

        def get() -> tuple[bytes, ObjectMeta] | None:
            try:
                result = obstore.get(self.store, key)
                return result.bytes().to_bytes(), result.meta
            except FileNotFoundError:
                return None

        return self.call("read", key, get)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.call(
            "read",
            key,
            lambda: obstore.get_range(self.store, key, start=start, length=length).to_bytes(),
        )

    def feed(self, key: str, hasher: Hasher) -> int:
        """Stream the object through ``hasher`` (bounded memory); how many bytes there were."""

        def feed() -> int:
            done = 0
            for chunk in obstore.get(self.store, key).stream(min_chunk_size=_STREAM_CHUNK):
                hasher.update(chunk)
                done += len(chunk)
            return done

        return self.call("read", key, feed)

    def listing(self, prefix: str) -> Iterator[ObjectMeta]:
        """Every object below ``prefix`` (a whole path segment; "" for the bucket)."""
        stream = self.call(
            "list", prefix, lambda: obstore.list(self.store, prefix or None, chunk_size=_LIST_CHUNK)
        )
        while True:
            try:
                page = self.call("list", prefix, lambda: next(stream))
            except StopIteration:
                return
            yield from page

    def children(self, prefix: str) -> list[str]:
        """The "folders" right below ``prefix``: their full keys."""
        listed = self.call(
            "list", prefix, lambda: obstore.list_with_delimiter(self.store, prefix or None)
        )
        return list(listed["common_prefixes"])

    # -- writing ---------------------------------------------------------------------------------

    def probe(self, key: str) -> None:
        """Write a tiny object at ``key`` and delete it at once: proof that the bucket exists
        and takes writes with these credentials."""

        def probe() -> None:
            try:
                obstore.put(self.store, key, b"")
            except FileNotFoundError as exc:  # a PUT finds nothing missing but the bucket
                raise StorageError(
                    f"{self.url} does not exist (no such bucket or container): {reason(exc)}"
                ) from exc
            obstore.delete(self.store, key)

        self.call("write", key, probe)

    def put(self, key: str, data: bytes) -> PutResult:
        """One PUT that replaces whatever is there (atomic: readers see old or new)."""
        return self.call("write", key, lambda: obstore.put(self.store, key, data))

    def create(self, key: str, data: bytes) -> PutResult | None:
        """One PUT that only succeeds where nothing is; None when something already is."""

        def create() -> PutResult | None:
            try:
                return obstore.put(self.store, key, data, mode="create")
            except AlreadyExistsError:
                return None

        return self.call("write", key, create)

    def update(self, key: str, data: bytes, meta: ObjectMeta | PutResult) -> PutResult | None:
        """One PUT that only succeeds while the object is still the version ``meta`` describes;
        None when it is not (replaced, or gone)."""
        version: UpdateVersion = {}
        if meta["e_tag"] is not None:
            version["e_tag"] = meta["e_tag"]
        if meta["version"] is not None:
            version["version"] = meta["version"]

        def update() -> PutResult | None:
            try:
                return obstore.put(self.store, key, data, mode=version)
            except (PreconditionError, AlreadyExistsError, FileNotFoundError):
                return None

        return self.call("write", key, update)

    def upload(self, key: str, path: Path) -> None:
        """A local file as one object, streamed in multipart chunks read from the file."""
        self.call(
            "write",
            key,
            lambda: obstore.put(
                self.store,
                key,
                path,
                chunk_size=PART_BYTES,
                max_concurrency=_STAGED_CONCURRENCY,
            ),
        )

    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _DELETE_CHUNK):
            batch = list(keys[start : start + _DELETE_CHUNK])

            def delete(batch: list[str] = batch) -> None:
                with contextlib.suppress(FileNotFoundError):  # gone: what a delete wants
                    obstore.delete(self.store, batch)

            self.call("remove", batch[0], delete)

    def upload_to(self, key: str) -> Upload:
        return Upload(self, key)


class Upload:
    """One object's multipart (S3, GCS) or block (Azure) upload, fed in order.

    Nothing is visible until ``complete``; ``abort`` throws the uploaded parts away. obstore's
    writer holds one ``PART_BYTES`` buffer and keeps one part in flight: a ``write`` that finds
    the previous part still uploading waits for it (backpressure onto the download).
    """

    def __init__(self, bucket: Bucket, key: str) -> None:
        self._bucket = bucket
        self._key = key
        self._file: WritableFile | None = obstore.open_writer(
            bucket.store, key, buffer_size=PART_BYTES, max_concurrency=1
        )

    def write(self, chunk: bytes) -> None:
        file = self._file
        if file is None:
            raise RuntimeError(f"{self._bucket.where(self._key)}: the upload is over")
        self._bucket.call("upload", self._key, lambda: file.write(chunk))

    def complete(self) -> None:
        """Commit: the object appears whole (a multipart upload has no precondition)."""
        file, self._file = self._file, None
        if file is None:
            raise RuntimeError(f"{self._bucket.where(self._key)}: the upload is over")
        self._bucket.call("upload", self._key, file.close)

    def abort(self) -> None:
        """Throw the uploaded parts away; nothing appears. Idempotent."""
        file, self._file = self._file, None
        if file is not None:
            error = RuntimeError("aborted")
            self._bucket.call(
                "abort the upload of", self._key, lambda: file.__exit__(RuntimeError, error, None)
            )
