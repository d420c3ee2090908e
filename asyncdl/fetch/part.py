"""One part, listing entry to verified file: skip, or fetch (whole or in segments) and seal.

Raises only what must end the whole run (a storage failure, refused credentials); every
part-level failure is in the returned result. A part an object store listed at a version
(``Part.etag``) that is rewritten while it downloads starts again from zero at the new version
(a HEAD says which); one deleted meanwhile fails, leaving nothing behind.
"""

from __future__ import annotations

import dataclasses
import logging

import anyio

from ..budget import MemoryBudget
from ..checksum import Checksum, parse_digest
from ..client import AEPClient, ByteStream
from ..errors import (
    RUN_ENDING,
    AsyncdlError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
    VerificationError,
)
from ..manifest import ManifestEntry
from ..models import Part, PartResult, PartStatus
from ..progress import ProgressListener
from ..slots import StreamSlots
from ..storage import Storage
from ..threads import ThreadBatches
from .answers import FirstAnswer
from .integrity import CheckedPartFile, StoredDigest
from .options import FetchOptions
from .outcome import describe, failed, is_parquet
from .segmented import fetch_segmented
from .transfer import Transfer, off_loop
from .whole import fetch_whole

__all__ = ["fetch_part"]

log = logging.getLogger(__name__)

_UNLIMITED = 1 << 16  # stream slots when the caller gives none: no bound
#: How often a part may be found rewritten during one fetch before it is left for a later run.
MAX_RESTARTS = 3


async def fetch_part(
    client: AEPClient,
    part: Part,
    *,
    storage: Storage,
    options: FetchOptions,
    listener: ProgressListener,
    slots: StreamSlots | None = None,
    known: ManifestEntry | None = None,
    absent: bool = False,
    stores: ThreadBatches | None = None,
    opened: ByteStream | None = None,
    memory: MemoryBudget | None = None,
) -> PartResult:
    """Bring one part into ``storage`` (its batch's); never raises for a part-level failure.

    Raises only what must end the whole run: StorageError (disk full/unwritable) and AuthError
    (every other part would fail the same way). ``slots`` bounds the streams open at once across
    the run (each segment of a big part takes one). ``absent`` says the caller knows that neither
    the part nor its temp file is there (it listed the batch once), which saves two lookups per
    part. ``stores`` batches the worker-thread jobs of small parts across the run (one thread hop
    each without it). ``opened`` is the part's own answer to its listing call (a single-file
    dataSetFile): the first request from byte 0 reads it, and it is closed whatever happens; such
    a part is fetched as one stream, never in segments. ``memory`` is the run's budget for
    the bytes a destination keeps in memory (``Storage.memory_held``): a whole part waits for
    its share before its first request and holds it until it is sealed or its attempt is
    thrown away; a segmented part, staged on disk, holds its share only while it is sealed.
    """
    first = FirstAnswer(opened)
    file = storage.part(part.relpath)
    try:
        if not absent and await off_loop(storage.size, part.relpath) == part.size:
            skipped = await _skip(storage, part, known, options)
            if skipped is not None:
                return skipped
        if part.etag is not None and not absent:
            # An object's unfinished bytes from an earlier run: nothing says which version they
            # are of (a prefix of the old one would be sealed under the new one's If-Match, and
            # a full-size one would skip the MD5 that only an answer states). Fetched afresh.
            await off_loop(file.remove)
            absent = True
        restarts = 0
        while True:
            stored = StoredDigest()  # a new version states its own MD5
            transfer = Transfer(
                client=client,
                part=part,
                storage=storage,
                file=CheckedPartFile(file, stored, size=part.size),
                options=options,
                listener=listener,
                slots=slots or StreamSlots(_UNLIMITED, adaptive=False),
                absent=absent,
                stores=stores,
                first=first,
                stored=stored,
                memory=memory,
            )
            try:
                return await _fetch(transfer, whole_only=opened is not None)
            except (PreconditionFailedError, NotFoundError) as error:  # raised when ``replaced``
                restarts += 1
                current = await _current_version(client, part, error, restarts)
                if isinstance(current, PartResult):
                    await off_loop(file.remove)  # nothing of a gone version is kept
                    return current
                part, absent = current, False
    finally:
        first.discard()
        if file.releases:
            with anyio.CancelScope(shield=True):
                await off_loop(file.release)  # an unsealed upload is aborted, even on Ctrl-C


async def _fetch(transfer: Transfer, *, whole_only: bool) -> PartResult:
    part, options = transfer.part, transfer.options
    threshold = options.segment_threshold_bytes
    if (
        not whole_only
        and threshold is not None
        and part.size >= threshold
        and part.size > options.segment_bytes
    ):
        segmented = await fetch_segmented(transfer)
        if segmented is not None:
            return segmented
        # None: the server ignores Range (or the assembled file failed verification): one
        # stream from the start is the only way left.
    async with transfer.memory_share(segmented=False):
        try:
            return await fetch_whole(transfer)
        finally:
            # An attempt given up keeps its bytes until it is released: before its share is.
            if transfer.file.releases:
                with anyio.CancelScope(shield=True):
                    await off_loop(transfer.file.release)


async def _current_version(
    client: AEPClient, part: Part, error: AsyncdlError, restarts: int
) -> Part | PartResult:
    """The part at the version its object has now (a HEAD), or its failed result."""
    if restarts > MAX_RESTARTS:
        why = f"{part.name}: rewritten {restarts} times while it downloaded; try again later"
        return failed(part, 0, restarts, why)
    try:
        head = await client.head(part.href)
    except NotFoundError as gone:
        why = f"{part.name} is no longer in the store: deleted since it was listed ({gone})"
        return failed(part, 0, restarts, f"NotFoundError: {why}")
    except RUN_ENDING:
        raise
    except AsyncdlError as other:
        return failed(part, 0, restarts, describe(other))
    if head.size is None or head.etag is None:
        why = f"{part.name} changed since it was listed and its store gives no size or version"
        return failed(part, 0, restarts, why)
    log.info("%s: rewritten since it was listed (%s); starting again", part.name, error)
    return dataclasses.replace(part, size=head.size, etag=head.etag)


async def _skip(
    storage: Storage, part: Part, known: ManifestEntry | None, options: FetchOptions
) -> PartResult | None:
    """A part whose final file already has the listed size: no request at all.

    ``None`` when the file cannot be vouched for (its footer does not read): fetch it again.
    """
    recorded = parse_digest(known.digest) if known is not None else None
    if (
        known is not None
        and known.size == part.size
        and recorded
        and recorded[0] is options.checksum
    ):
        return PartResult(
            part=part, status=PartStatus.SKIPPED, rows=known.rows, digest=known.digest
        )
    # Finished by a run that died before writing its manifest, or recorded with another
    # algorithm than this run's (unlike digests cannot be compared): hash the file again.
    try:
        digest, rows = await off_loop(
            _digest_and_rows, storage, part, options.verify_parquet, options.checksum
        )
    except (VerificationError, StorageError):
        return None  # cannot vouch for it: fetch it again (which reports a disk problem)
    return PartResult(part=part, status=PartStatus.SKIPPED, rows=rows, digest=digest)


def _digest_and_rows(
    storage: Storage, part: Part, verify: bool, checksum: Checksum
) -> tuple[str, int | None]:
    hasher = checksum.new()
    storage.digest(part.relpath, hasher)
    rows = storage.rows(part.relpath, part.name) if verify and is_parquet(part.name) else None
    return checksum.tag(hasher.hexdigest()), rows
