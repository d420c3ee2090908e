"""One part, listing entry to verified file: skip, or fetch (whole or in segments) and seal.

Raises only what must end the whole run (a storage failure, refused credentials); every
part-level failure is in the returned result.
"""

from __future__ import annotations

import anyio

from ..checksum import Checksum, parse_digest
from ..client import AEPClient, ByteStream
from ..errors import StorageError, VerificationError
from ..manifest import ManifestEntry
from ..models import Part, PartResult, PartStatus
from ..progress import ProgressListener
from ..slots import StreamSlots
from ..storage import Storage
from ..threads import ThreadBatches
from .answers import FirstAnswer
from .options import FetchOptions
from .outcome import is_parquet
from .segmented import fetch_segmented
from .transfer import Transfer, off_loop
from .whole import fetch_whole

__all__ = ["fetch_part"]

_UNLIMITED = 1 << 16  # stream slots when the caller gives none: no bound


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
) -> PartResult:
    """Bring one part into ``storage`` (its batch's); never raises for a part-level failure.

    Raises only what must end the whole run: StorageError (disk full/unwritable) and AuthError
    (every other part would fail the same way). ``slots`` bounds the streams open at once across
    the run (each segment of a big part takes one). ``absent`` says the caller knows that neither
    the part nor its temp file is there (it listed the batch once), which saves two lookups per
    part. ``stores`` batches the worker-thread jobs of small parts across the run (one thread hop
    each without it). ``opened`` is the part's own answer to its listing call (a single-file
    dataSetFile): the first request from byte 0 reads it, and it is closed whatever happens; such
    a part is fetched as one stream, never in segments.
    """
    first = FirstAnswer(opened)
    file = storage.part(part.relpath)
    try:
        if not absent and await off_loop(storage.size, part.relpath) == part.size:
            skipped = await _skip(storage, part, known, options)
            if skipped is not None:
                return skipped
        transfer = Transfer(
            client=client,
            part=part,
            storage=storage,
            file=file,
            options=options,
            listener=listener,
            slots=slots or StreamSlots(_UNLIMITED, adaptive=False),
            absent=absent,
            stores=stores,
            first=first,
        )
        threshold = options.segment_threshold_bytes
        if (
            opened is None
            and threshold is not None
            and part.size >= threshold
            and part.size > options.segment_bytes
        ):
            segmented = await fetch_segmented(transfer)
            if segmented is not None:
                return segmented
            # None: the server ignores Range (or the assembled file failed verification): one
            # stream from the start is the only way left.
        return await fetch_whole(transfer)
    finally:
        first.discard()
        if file.releases:
            with anyio.CancelScope(shield=True):
                await off_loop(file.release)  # an unsealed upload is aborted, even on Ctrl-C


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
