"""The whole-part path: one stream at a time into the part's file, each continuing where the
bytes already written end, then verify and seal.

A part that fits one write buffer is received whole and written, hashed, verified and sealed by
a single worker-thread job (with thousands of small parts, thread hops were the cost). Others
stream through ``BufferedWriter``, hashed on the way; a part resumed from an earlier run hashes
its prefix back first. A rewind (the server ignored Range, or verification failed) reports
negative bytes to the progress listener.
"""

from __future__ import annotations

import functools
import logging
import time

import anyio

from ..checksum import Hasher
from ..client import AEPClient
from ..errors import (
    RUN_ENDING,
    AsyncdlError,
    StreamInterruptedError,
    VerificationError,
)
from ..footer import parquet_rows_in
from ..models import PartResult, PartStatus
from ..storage import PartFile
from .answers import FirstAnswer, body_from, open_answer
from .attempts import Retrying
from .integrity import replaced
from .outcome import describe, failed, is_parquet
from .transfer import Transfer, off_loop
from .writer import BufferedWriter

__all__ = ["fetch_whole"]

log = logging.getLogger(__name__)


def _store_whole(
    file: PartFile,
    chunks: list[bytes],
    hasher: Hasher,
    *,
    label: str,
    verify: bool,
    sync: bool,
) -> int | None:
    """Write a whole part, hash it, check its footer, seal it (one worker-thread job)."""
    writer = file.open("fresh")
    written = False
    try:
        writer.write(chunks, offset=None, hasher=hasher)
        written = True
    finally:
        writer.close(sync=sync and written)
    rows = parquet_rows_in(chunks, label) if verify and is_parquet(label) else None
    file.seal(sync=False)  # synced above, through the descriptor that wrote it
    return rows


class _WholePart:
    """The part's file plus its running hash; knows how many bytes are safely written."""

    def __init__(self, transfer: Transfer) -> None:
        self.transfer = transfer
        self.part = transfer.part
        self.file = transfer.file
        self.listener = transfer.listener
        self.offset = 0
        self.hasher = transfer.options.checksum.new()
        self.fetched = 0

    async def resume(self) -> None:
        """Continue from whatever an earlier attempt or run left."""
        sync = self.transfer.options.fsync
        on_disk = await off_loop(functools.partial(self.file.resumable, self.part.size, sync=sync))
        if not on_disk:
            return
        log.info("%s: resuming at byte %d of %d", self.part.name, on_disk, self.part.size)
        await off_loop(self.file.hash_into, self.hasher, 0, on_disk)
        self.offset = on_disk
        self.listener.on_bytes(self.part, on_disk)

    async def rewind(self) -> None:
        """Throw away every byte written (and the progress they showed); start over."""

        def empty() -> None:
            self.file.open("fresh").close()

        await off_loop(empty)
        if self.offset:
            self.listener.on_bytes(self.part, -self.offset)
        self.offset = 0
        self.hasher = self.transfer.options.checksum.new()

    def _written(self, size: int) -> None:
        self.offset += size
        self.fetched += size

    async def stream_from(self, client: AEPClient, first: FirstAnswer) -> None:
        """One request: GET from ``offset`` to the end, appending.

        Returns when the answer ended as its headers promised, which may be before the part's
        end (a shorter 206 than asked: the spec allows it); a broken stream raises.
        """
        part = self.part
        async with open_answer(
            client, first, part, offset=self.offset, stored=self.transfer.stored
        ) as stream:
            if self.offset and stream.status == 200:
                log.info("%s: the server ignored Range; starting over", part.name)
                await self.rewind()  # the server ignored Range: the body starts at byte 0
            body = body_from(stream, self.offset, part.name)
            writer = await off_loop(self.file.open, "append" if self.offset else "fresh")
            buffered = BufferedWriter(
                writer,
                buffer_bytes=self.transfer.options.write_buffer_bytes,
                on_written=self._written,
                hasher=self.hasher,
            )
            try:
                async for chunk in body:
                    if self.offset + buffered.pending + len(chunk) > part.size:
                        raise VerificationError(
                            f"{part.name}: server sent more than the listed {part.size}"
                        )
                    # Reported as it arrives, not per write: a small part's progress line must
                    # move. Arrived bytes are always written (``close``), so the count holds.
                    self.listener.on_bytes(part, len(chunk))
                    await buffered.add(chunk)
            finally:
                await buffered.close()

    async def fetch_small(self, client: AEPClient) -> int | None:
        """A part that fits one write buffer, from byte 0, stored by one worker-thread job.

        ``stores`` runs the jobs of parts that finish together in one batch. A stream that
        breaks still keeps what arrived, so the next attempt continues with Range.
        """
        part, options = self.part, self.transfer.options
        chunks: list[bytes] = []
        received = 0
        try:
            async with open_answer(
                client, self.transfer.first, part, stored=self.transfer.stored
            ) as stream:
                async for chunk in stream.chunks():
                    if received + len(chunk) > part.size:
                        raise VerificationError(
                            f"{part.name}: server sent more than the listed {part.size}"
                        )
                    chunks.append(chunk)
                    received += len(chunk)
                    self.listener.on_bytes(part, len(chunk))
            if received < part.size:
                raise StreamInterruptedError(
                    f"{part.name}: body ended at {received} of {part.size} bytes", url=part.href
                )
        except BaseException:
            if chunks:
                with anyio.CancelScope(shield=True):
                    await self._keep_prefix(chunks)
            raise
        store = functools.partial(
            _store_whole,
            self.file,
            chunks,
            self.hasher,
            label=part.name,
            verify=options.verify_parquet,
            sync=options.fsync,
        )
        try:
            stores = self.transfer.stores
            rows = await (off_loop(store) if stores is None else stores.run_sync(store))
        except BaseException:
            self.listener.on_bytes(part, -received)  # none of it counts: the attempt failed
            raise
        self.offset = self.fetched = received
        return rows

    async def _keep_prefix(self, chunks: list[bytes]) -> None:
        def write() -> None:
            writer = self.file.open("fresh")
            try:
                writer.write(chunks, offset=None, hasher=self.hasher)
            finally:
                writer.close()

        await off_loop(write)
        self._written(sum(map(len, chunks)))

    async def verify_and_seal(self) -> int | None:
        """The last step: the footer must read back before the file gets its real name."""
        part, options = self.part, self.transfer.options
        rows: int | None = None
        if options.verify_parquet and is_parquet(part.name) and part.size > 0:
            rows = await off_loop(self.file.rows, part.name)
        await off_loop(functools.partial(self.file.seal, sync=options.fsync))
        return rows


async def fetch_whole(transfer: Transfer) -> PartResult:
    """One stream per request, each continuing where the bytes written end.

    A request that moved the part on and ended short is followed at once (``Retrying``); only
    requests that brought nothing count against the retry policy.
    """
    client, part, options, slots = transfer.client, transfer.part, transfer.options, transfer.slots
    started = time.monotonic()
    whole = _WholePart(transfer)
    if not transfer.absent:
        await whole.resume()
    retrying = Retrying(
        part, policy=options.policy, slots=slots, listener=transfer.listener, started=started
    )
    requests = 0
    while True:
        requests += 1
        before = whole.offset
        started_at: float | None = None  # when this request's stream took its slot
        try:
            remaining = options.policy.deadline_s - (time.monotonic() - started)
            with anyio.move_on_after(remaining) as scope:
                if whole.offset == 0 and 0 < part.size <= options.write_buffer_bytes:
                    async with slots as started_at:
                        rows = await whole.fetch_small(client)
                    slots.on_success()
                else:
                    if whole.offset < part.size:
                        async with slots as started_at:
                            await whole.stream_from(client, transfer.first)
                        slots.on_success()
                        if whole.offset < part.size:
                            if whole.offset > before:
                                log.info(
                                    "%s: a short answer (to byte %d of %d); asking for the rest",
                                    part.name,
                                    whole.offset,
                                    part.size,
                                )
                                continue
                            raise StreamInterruptedError(
                                f"{part.name}: an answer without bytes at {whole.offset} "
                                f"of {part.size}",
                                url=part.href,
                            )
                    elif part.size == 0:
                        await whole.rewind()  # creates the empty file
                    rows = await whole.verify_and_seal()
            if scope.cancelled_caught:
                return failed(part, whole.fetched, requests, "per-part deadline exceeded")
            return PartResult(
                part=part,
                status=PartStatus.DOWNLOADED,
                fetched_bytes=whole.fetched,
                rows=rows,
                digest=options.checksum.tag(whole.hasher.hexdigest()),
                attempts=requests,
            )
        except RUN_ENDING:
            raise
        except AsyncdlError as error:
            if replaced(part, error):
                await whole.rewind()  # bytes of a version that is gone: fetch_part starts over
                raise
            if isinstance(error, VerificationError):
                await whole.rewind()  # wrong bytes written: no prefix of them can be trusted
                progress = 0
            else:
                progress = whole.offset - before
            if not await retrying.again(
                error, progress=progress, requests=requests, started_at=started_at
            ):
                return failed(part, whole.fetched, requests, describe(error))
