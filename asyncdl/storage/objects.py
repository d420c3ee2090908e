"""The storage seam on an object store (S3, Azure Blob Storage, GCS): one prefix of a bucket.

The layout is the local one, as keys: ``<prefix>/<batch>/<part relpath>``, the batch's
``manifest.json`` beside its parts, sync's ``<prefix>/.asyncdl/...`` and ``<prefix>/CURRENT``.
Parts stream into uploads that nothing sees until they are verified and committed (uploads.py);
segmented parts are staged on local disk first. Small files are single PUTs (atomic in every
store), one listing answers ``files`` and ``folders``, and the sync lock is a lease object
(lease.py). No temporary object ever appears below the prefix: the write probe and the lease
live in ``<prefix>/.asyncdl/``, asyncdl's own, and a part exists only once it is whole.

Built on any obstore store (``ObjectStorage(Bucket(store, url=...))``): the tests run the same
contract on obstore's MemoryStore, on moto's S3 and on Azurite. Blocking throughout: the callers
run every method in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

from ..checksum import Hasher
from ..errors import VerificationError
from ..footer import _FooterError, _rows
from ..layout import STATE_DIR, WRITE_PROBE
from .bucket import STAGED_UPLOAD_BYTES, Bucket
from .lease import LEASE_S, Lease
from .stores import StoreURL, build_store
from .uploads import ObjectPartFile, StagedPartFile, whole_part_memory

__all__ = ["ObjectStorage", "default_staging", "object_storage"]


def default_staging() -> Path:
    """Where segmented parts are staged: the user's own folder in the temp dir (``TMPDIR``)."""
    return Path(tempfile.gettempdir()) / f"asyncdl-staging-{os.getuid()}"


def object_storage(url: StoreURL) -> ObjectStorage:
    """The storage ``--out`` names (ConfigError when the environment has no credentials)."""
    bucket = Bucket(build_store(url), url=url.base, hint=url.hint)
    return ObjectStorage(bucket, url.prefix)


class ObjectStorage:
    """A prefix of a bucket as the storage seam (the output root, or one batch below it)."""

    def __init__(
        self,
        bucket: Bucket,
        prefix: str = "",
        *,
        staging: Path | None = None,
        lease_s: float = LEASE_S,
        proven: threading.Event | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.staging = staging or default_staging()
        self.lease_s = lease_s
        # Set once a probe below this output root succeeded: its batches need no probe of
        # their own (one store, one set of credentials, keys below the proven prefix).
        self._proven = proven or threading.Event()

    def memory_held(self, size: int, *, segmented: bool) -> int:
        if segmented:  # staged on disk; only its upload, once verified, holds memory
            return min(size, STAGED_UPLOAD_BYTES)
        return whole_part_memory(size)

    def key(self, relpath: str = "") -> str:
        return "/".join(p for p in (self.prefix, relpath.strip("/")) if p)

    def where(self, relpath: str = "") -> str:
        return self.bucket.where(self.key(relpath))

    def prepare(self) -> None:
        """Prove the bucket exists and takes writes: a tiny object in ``.asyncdl/``, written
        and deleted at once (StorageError, or StorageAuthError for refused credentials)."""
        if self._proven.is_set():
            return
        self.bucket.probe(self.key(f"{STATE_DIR}/{WRITE_PROBE}"))
        self._proven.set()

    def sub(self, name: str) -> ObjectStorage:
        return ObjectStorage(
            self.bucket,
            self.key(name),
            staging=self.staging,
            lease_s=self.lease_s,
            proven=self._proven,
        )

    def size(self, relpath: str) -> int | None:
        meta = self.bucket.head(self.key(relpath))
        return None if meta is None else meta["size"]

    def files(self) -> frozenset[str]:
        """Relative keys of every object below, from one listing (paged by the store)."""
        prefix = self.key()
        cut = len(prefix) + 1 if prefix else 0
        return frozenset(meta["path"][cut:] for meta in self.bucket.listing(prefix))

    def part(self, relpath: str) -> ObjectPartFile:
        return ObjectPartFile(self.bucket, self.key(relpath))

    def segmented(self, relpath: str) -> StagedPartFile:
        """The part staged in a local file (a store cannot write at offsets), named after a
        digest of its URL, so that a rerun finds the staged file and its record again."""
        where = self.where(relpath)
        digest = hashlib.sha256(where.encode()).hexdigest()[:24]
        return StagedPartFile(
            self.staging,
            digest,
            relpath.rsplit("/", 1)[-1],
            bucket=self.bucket,
            key=self.key(relpath),
        )

    def digest(self, relpath: str, hasher: Hasher) -> None:
        self.bucket.feed(self.key(relpath), hasher)

    def rows(self, relpath: str, label: str) -> int | None:
        """The object's parquet row count, from three ranged GETs (head, tail, footer)."""
        key = self.key(relpath)
        meta = self.bucket.head(key)
        if meta is None:
            raise VerificationError(f"{label}: cannot read back ({self.where(relpath)} is gone)")
        try:
            return _rows(
                meta["size"], lambda offset, length: self.bucket.get_range(key, offset, length)
            )
        except _FooterError as exc:
            raise VerificationError(f"{label}: parquet footer unreadable ({exc})") from exc

    def read(self, relpath: str) -> bytes | None:
        found = self.bucket.get(self.key(relpath))
        return None if found is None else found[0]

    def replace(self, relpath: str, data: bytes, *, durable: bool = False) -> None:
        """One PUT: atomic in every store, and durable once it returns (``durable`` is moot)."""
        self.bucket.put(self.key(relpath), data)

    def folders(self) -> list[str]:
        """The "folders" right below (common prefixes of one delimited listing)."""
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.bucket.children(self.key()))

    def remove_tree(self, relpath: str) -> None:
        """Every object below ``relpath``, listed, then deleted in bulk (absent is fine)."""
        prefix = self.key(relpath)
        self.bucket.delete([meta["path"] for meta in self.bucket.listing(prefix)])

    def lock(self, relpath: str) -> Lease:
        """A lease object at ``relpath``, renewed while held (lease.py)."""
        return Lease(self.bucket, self.key(relpath), subject=self.where(), lease_s=self.lease_s)
