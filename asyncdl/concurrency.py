"""How many body streams may be open at once: a capacity limiter steered by AIMD.

Every download stream (a whole part or one segment of a big part) holds one slot while it reads.
With ``adaptive`` on, a 429 halves the number of slots (at most once per ``cooldown_s``, so one
burst of refusals counts once) and each window of successes adds one back, up to the user's
``-j``: TCP's congestion control applied to an API's rate limit. The server's ``Retry-After`` is
still honoured by the retry policy; this only decides how many try again at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType

import anyio

from .errors import AsyncdlError

__all__ = ["StreamSlots", "single_error"]


class StreamSlots:
    """Slots for concurrent streams; ``async with slots:`` around each body read."""

    def __init__(
        self,
        maximum: int,
        *,
        adaptive: bool = True,
        minimum: int = 1,
        cooldown_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maximum < 1 or not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.maximum = maximum
        self.minimum = minimum
        self.adaptive = adaptive
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._limiter = anyio.CapacityLimiter(maximum)
        self._successes = 0
        self._last_decrease = -float("inf")
        self.decreases = 0  # how often throttling shrank the limit (reported by benchmarks)

    @property
    def limit(self) -> int:
        return int(self._limiter.total_tokens)

    async def __aenter__(self) -> None:
        await self._limiter.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter.release()

    def on_success(self) -> None:
        """A stream finished without throttling: additive increase, one slot per full window."""
        if not self.adaptive or self.limit >= self.maximum:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self._limiter.total_tokens = self.limit + 1

    def on_throttled(self) -> None:
        """The server said 429: multiplicative decrease, once per cooldown."""
        if not self.adaptive:
            return
        now = self._clock()
        if now - self._last_decrease < self._cooldown_s:
            return
        self._last_decrease = now
        self._successes = 0
        new_limit = max(self.minimum, self.limit // 2)
        if new_limit < self.limit:
            self._limiter.total_tokens = new_limit
            self.decreases += 1


@asynccontextmanager
async def single_error() -> AsyncIterator[None]:
    """Surface the error that ended a task group as itself, not as an ExceptionGroup.

    Workers and the producer fail for one reason at a time (a full disk, refused credentials, a
    listing that cannot be read); callers and the CLI handle that error, not a group of it
    and the cancellations it caused.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        primary: BaseException | None = next(
            (e for e in leaves if isinstance(e, AsyncdlError)), None
        )
        if primary is None:  # KeyboardInterrupt and friends pass through as themselves
            primary = next((e for e in leaves if not isinstance(e, Exception)), None)
        if primary is None:
            raise
        raise primary from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves
