"""How many body streams may be open at once, and how fast new ones may start: AIMD on both.

Every download stream (a whole part or one segment of a big part) holds one slot while it reads.
With ``adaptive`` on, a 429 does three things, TCP's congestion control applied to an API's
rate limit: new streams hold off until the server's ``Retry-After`` has passed (everyone, not
just the worker that was refused, so they do not all come back in one burst); the number of
slots halves (at most once per ``cooldown_s``: one burst of refusals counts once); and starts
are paced at the rate the server was just accepting (the successes of the last second, because
when requests are short, fewer slots alone do not lower the request rate; none inside the first
second, when they only measure the opening burst; from the second episode on, 10% under it, so a
token bucket refills before the probe reaches its limit again).
Each success then adds a little back: one slot per window of successes, and about 10% per second
to the pace, until the pacing is lifted; a refusal inside an episode stops that probe at what
the server accepted. Without ``adaptive`` every stream just takes a slot.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from types import TracebackType

import anyio

__all__ = ["StreamSlots"]

_WINDOW_S = 1.0  # the window the accepted request rate is measured over
_PROBE_PER_SUCCESS = 0.1  # requests/s added to the pace per success
_PACE_BACKOFF = 0.9  # after a 429: pace at this share of what the server accepted


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
        self._first_start: float | None = None  # when the first stream started (or succeeded)
        self._limiter = anyio.CapacityLimiter(maximum)
        self._successes = 0
        self._last_decrease = -float("inf")
        self._recent: collections.deque[float] = collections.deque()  # success times
        self._resume_at = -float("inf")  # no new stream before this (Retry-After)
        self._next_start = -float("inf")  # pacing: the earliest next start
        self.rate: float | None = None  # starts per second; None: not paced
        self.decreases = 0  # how often throttling shrank the limit (reported by benchmarks)

    @property
    def limit(self) -> int:
        return int(self._limiter.total_tokens)

    async def _wait_turn(self) -> None:
        """Hold off for Retry-After, then keep the paced rate (both only once throttled)."""
        now = self._clock()
        if self._first_start is None:
            self._first_start = now
        start = max(now, self._resume_at)
        if self.rate is not None:
            start = max(start, self._next_start)
            self._next_start = start + 1.0 / self.rate
        if start > now:
            await anyio.sleep(start - now)

    async def __aenter__(self) -> None:
        await self._limiter.acquire()
        try:
            await self._wait_turn()
        except BaseException:
            self._limiter.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter.release()

    def _accepted_last_window(self, now: float) -> int:
        while self._recent and self._recent[0] < now - _WINDOW_S:
            self._recent.popleft()
        return len(self._recent)

    def on_success(self) -> None:
        """A stream finished without throttling: additive increase of slots and pace."""
        if not self.adaptive:
            return
        now = self._clock()
        if self._first_start is None:
            self._first_start = now
        self._recent.append(now)
        self._accepted_last_window(now)
        if self.rate is not None:
            # About +10% per second of successes: probes back up to the limit within seconds
            # (a limit that rose, or an estimate taken from a short window, is found quickly).
            self.rate += _PROBE_PER_SUCCESS
            if self.rate >= 1000.0:
                self.rate = None  # far above any limit seen: stop pacing
        if self.limit >= self.maximum:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self._limiter.total_tokens = self.limit + 1

    def on_throttled(self, retry_after_s: float | None = None) -> None:
        """The server said 429: hold off, pace at what it accepted, halve (once per cooldown)."""
        if not self.adaptive:
            return
        now = self._clock()
        if retry_after_s is not None and self.rate is None:
            # Until a pace is known, nobody starts before the server's Retry-After; once paced,
            # the pace itself keeps the rate under the limit (holding everyone would only idle
            # the tokens the server grants meanwhile). The refused request always waits its own
            # Retry-After in the retry policy.
            self._resume_at = max(self._resume_at, now + retry_after_s)
        accepted = self._accepted_last_window(now)
        # Successes counted before the streams have run for a whole window say how much of the
        # opening burst had come back yet, not what the server sustains: a refusal 30 ms into S7
        # counted 20-37 of them against a limit of 50 per second, and pacing at that, the run
        # crawled back up (7.6-10 s instead of ~7.4). So the first window sets no pace: the
        # Retry-After hold and the halving only, and the first refusal after it gives the pace.
        first_window = self._first_start is None or now - self._first_start < _WINDOW_S
        if now - self._last_decrease < self._cooldown_s:
            # The same episode: no second decrease, but no more probing upwards either. The pace
            # grows with every success, and it kept climbing through a run of refusals.
            if self.rate is not None and accepted:
                self.rate = max(1.0, min(self.rate, float(accepted)))
            elif self.rate is None and accepted and not first_window:
                # The episode began inside the first window; now the count means something.
                self.rate = float(accepted)
                self._resume_at = now
            return
        self._last_decrease = now
        self._successes = 0
        # What the server just accepted is the best estimate of its limit; a little under it
        # lets a token bucket refill, so the next refusal (and the Retry-After that the refused
        # part then waits, which at the end of a run is the run's tail) comes later. Without an
        # estimate (nothing got through for a second), halve like TCP does.
        new_rate: float | None
        if first_window:
            new_rate = None  # see ``first_window`` above
        elif accepted:
            # The first estimate comes from the opening burst, which a token bucket let through
            # above its steady rate: it is taken as it is, later ones with the margin.
            new_rate = float(accepted) if self.rate is None else _PACE_BACKOFF * accepted
        elif self.rate is not None:
            new_rate = self.rate / 2
        else:
            new_rate = 1.0
        first_pace = self.rate is None and new_rate is not None
        if new_rate is not None:
            self.rate = max(1.0, new_rate)
        if first_pace and accepted:
            self._resume_at = now  # the accepted rate is known: pace from now on instead
        new_limit = max(self.minimum, self.limit // 2)
        if new_limit < self.limit:
            self._limiter.total_tokens = new_limit
            self.decreases += 1
