"""How many bytes of parts a run may keep in memory at once: a weighted, first-come semaphore.

A destination that holds a part's bytes in memory until it has them (an object store's upload
keeps a whole multipart part per stream, S3's minimum being 5 MiB) makes memory grow with the
number of streams, not with what the store can take: at ``-j 16`` into a store slower than the
download, every stream waits with a full part in flight. Like s3transfer's
``max_in_memory_upload_chunks``, the run bounds those bytes instead: a whole part holds its
share of the budget (``Storage.memory_held``) from before its first request until it is sealed
or its attempt released, a part staged on disk only while it is uploaded, and a part that does
not fit waits, without a stream slot, until earlier ones are done. First come, first served: a
big part is never overtaken for ever by small ones. A part bigger than the whole budget runs
alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

__all__ = ["MemoryBudget"]


@dataclass(frozen=True, eq=False, kw_only=True, slots=True)
class _Waiter:
    size: int
    granted: anyio.Event = field(default_factory=anyio.Event)


class MemoryBudget:
    """``total`` bytes shared by a run's parts; ``async with budget.hold(n):`` takes ``n``."""

    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError(f"a memory budget must be positive, not {total}")
        self.total = total
        self._free = total
        self._waiting: deque[_Waiter] = deque()

    @property
    def free(self) -> int:
        return self._free

    def fits(self, size: int) -> bool:
        """Whether ``hold(size)`` would begin at once."""
        size = min(size, self.total)
        return size <= 0 or (not self._waiting and size <= self._free)

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        """Hold ``size`` bytes (at most the whole budget) until the block ends; 0 waits never."""
        size = min(size, self.total)
        if size <= 0:
            yield
            return
        await self._acquire(size)
        try:
            yield
        finally:
            self._release(size)

    async def _acquire(self, size: int) -> None:
        if self.fits(size):
            self._free -= size  # no await between the test and the taking
            return
        waiter = _Waiter(size=size)
        self._waiting.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:  # cancelled: nothing of it may stay taken
            if waiter.granted.is_set():
                self._release(size)  # granted just before the cancellation arrived
            else:
                self._waiting.remove(waiter)
                self._grant()  # whoever queued behind it may fit now
            raise

    def _release(self, size: int) -> None:
        self._free += size
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._waiting[0].size <= self._free:
            waiter = self._waiting.popleft()
            self._free -= waiter.size
            waiter.granted.set()
