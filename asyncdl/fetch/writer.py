"""One buffered writer for every stream of a part: appends (one stream) and in-place writes
(segments), in gathered writes of at least a buffer each, each in a worker thread.

Buffers amortise the thread hop (and give the kernel big writes). Bytes that arrived are good
bytes: ``close`` writes what is buffered even when the stream broke or the run is being
cancelled (shielded), so the next attempt continues after them.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from ..checksum import Hasher
from ..storage import PartWriter

__all__ = ["BufferedWriter"]


class BufferedWriter:
    """Chunks in, gathered writes out; ``on_written(n)`` once ``n`` more bytes are written."""

    def __init__(
        self,
        writer: PartWriter,
        *,
        buffer_bytes: int,
        on_written: Callable[[int], None],
        offset: int | None = None,
        hasher: Hasher | None = None,
    ) -> None:
        self._writer = writer
        self._buffer_bytes = buffer_bytes
        self._on_written = on_written
        self._offset = offset  # None: append
        self._hasher = hasher
        self._chunks: list[bytes] = []
        self.pending = 0  # bytes buffered, not yet written

    async def add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self.pending += len(chunk)
        if self.pending >= self._buffer_bytes:
            await self.flush()

    async def flush(self) -> None:
        if not self._chunks:
            return
        chunks, size = self._chunks, self.pending
        self._chunks, self.pending = [], 0
        await anyio.to_thread.run_sync(self._write, chunks)
        if self._offset is not None:
            self._offset += size
        self._on_written(size)  # only after the write: nothing counts bytes not on disk

    def _write(self, chunks: list[bytes]) -> None:
        self._writer.write(chunks, offset=self._offset, hasher=self._hasher)

    async def close(self) -> None:
        """Write what is buffered, then close; shielded, so a cancellation loses nothing."""
        with anyio.CancelScope(shield=True):
            try:
                await self.flush()
            finally:
                await anyio.to_thread.run_sync(self._writer.close)
