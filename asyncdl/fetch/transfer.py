"""What one part's fetch carries from step to step, whichever way it is fetched."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

from ..budget import MemoryBudget
from ..client import AEPClient
from ..models import Part
from ..progress import ProgressListener
from ..slots import StreamSlots
from ..storage import PartFile, Storage
from ..threads import ThreadBatches
from .answers import FirstAnswer
from .integrity import StoredDigest
from .options import FetchOptions

__all__ = ["Transfer", "off_loop"]

T = TypeVar("T")


async def off_loop(func: Callable[..., T], *args: object) -> T:
    """A storage call in a worker thread (the seam blocks; the event loop must not)."""
    return await anyio.to_thread.run_sync(func, *args)


@dataclass(frozen=True, kw_only=True)
class Transfer:
    """Everything one part's fetch needs."""

    client: AEPClient
    part: Part
    storage: Storage  # the batch's
    file: PartFile  # where the part is written until it is sealed
    options: FetchOptions
    listener: ProgressListener
    slots: StreamSlots
    absent: bool = False  # known: no .part and no final file existed when the run began
    stores: ThreadBatches | None = None  # where small parts are stored; None: a thread hop each
    first: FirstAnswer = field(default_factory=FirstAnswer)  # the listing's own answer, if any
    stored: StoredDigest = field(default_factory=StoredDigest)  # the MD5 the store states
    memory: MemoryBudget | None = None  # the run's, for what the destination keeps in memory

    @asynccontextmanager
    async def memory_share(self, *, segmented: bool) -> AsyncIterator[None]:
        """Hold the part's share of the run's memory budget (``Storage.memory_held``).

        A listing's own answer (``first``) must not sit unread while the part waits for its
        share (AEP ends every answer within 60 s): it is given up, and asked for again later.
        """
        memory = self.memory
        size = (
            0 if memory is None else self.storage.memory_held(self.part.size, segmented=segmented)
        )
        if memory is None or size <= 0:  # a disk: no share to take
            yield
            return
        if not memory.fits(size):
            self.first.discard()
        async with memory.hold(size):
            yield
