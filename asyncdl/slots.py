"""How many body streams may be open at once, and how fast new ones may start: AIMD on both.

Every download stream (a whole part or one segment of a big part) holds one slot while it reads.
Without ``adaptive`` every stream just takes a slot. With it, each 429 is first read as one of
two things, because a busy gateway and a rate limit call for opposite answers:

- *Scattered*: a few percent of requests refused at random (one node busy, a burst elsewhere).
  Slowing everyone down does not make them rarer, so a lone 429 costs only its own request's
  wait (the retry policy waits its Retry-After): no hold, no pace, and an eighth of the slots
  at most once per episode, which a few windows of successes give back. Halving the slots for
  each of them and holding everyone for the Retry-After took 5,000 parts with 3% of requests
  refused at random from 12 s (fixed pool) to 441 s: the pool never grew back.
- *Steady*: a limit being hammered refuses most requests, read from the last 32 outcomes (8 of
  them refused, or the last 4 in a row). Then TCP's congestion control applies: new streams hold
  off until the server's Retry-After has passed (everyone, so they do not all come back in one
  burst) and the slots halve. If the server still refuses after the hold (most requests again,
  or 8 of those that were in flight when the hold began), starts are paced at the rate it was
  just accepting (the successes of the last second: when requests are short, fewer slots alone
  do not lower the request rate; none inside the first second, when they only measure the
  opening burst). Waiting for that makes a chance run of scattered refusals cost one hold, not
  a pace that every later refusal would cut again; and no pace is set (or kept) under a quarter
  of the most the server ever accepted in a window, for a limit that low would have refused
  far more before. Once paced, every refusal is read as the limit (the pace, not their share,
  keeps them rare), and from the second paced episode on the pace goes 10% under what was
  accepted, so a token bucket refills before the probe reaches its limit again.
- *Steady, in debt*: a gateway that charges refused requests too (its bucket goes below zero)
  refuses everything sent before its debt is repaid, and each such request prolongs it. So once
  paced, when most of the requests sent at the current pace are refused (the same reading as
  above, of those only: the ones in flight when the pace was cut say nothing about it), nobody
  starts until the Retry-After has passed and the streams still in flight have had their turns
  at the pace (each costs the bucket a token, refused or not); a stream already waiting for its
  paced turn waits for such a hold too (booked at a pace of 79, 20 of them went on starting
  through it and each pushed the debt further).

Either kind decreases at most once per episode: the ``cooldown_s`` after a decrease, and (when
the caller says when the refused request started) every refusal of a request started before it,
TCP's rule: those were sent before the reaction, so they say nothing new. A scattered episode
that turns out steady is upgraded to a halving, not decreased twice. Each success then adds a
little back: one slot per window of successes, and to the pace until the pacing is lifted; a
refusal inside a paced episode stops that probe until the episode ends. The pace's probe is about
10% per second below what the server accepted in the second before it last began to refuse most
requests (a rate it has shown it takes) and below any pace it refused since, doubling every
clean half-second up to 8x: a pace estimated after a hold that repaid a debt is far under the
limit (21-31 against 50), and is found again in a second or two, not six. Above that the probe
only looks for a limit that rose, at a quarter of the step: a token bucket hides its limit until
the tokens it saved are spent, so a fast probe there overshoots far before the first refusal
(S7: to ~78 against 50), and that refusal's Retry-After often ends the run late. (Not the most
ever accepted in a window: after a hold that is a refilled bucket plus a second of its rate.)
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
# Under a rate the server has shown it accepts, the probe's step doubles every _QUICKEN_S without
# a refusal, up to _PROBE_MAX_GAIN times the first.
_QUICKEN_S = 0.5
_PROBE_MAX_GAIN = 8
_PROBE_ABOVE = 0.25  # the step's share above it (where only a limit that rose is looked for)
_PACE_BACKOFF = 0.9  # after a 429: pace at this share of what the server accepted
# A steady limit: _STEADY_REFUSALS of the last _OUTCOMES requests refused, or _IN_A_ROW in a row.
# A hammered token bucket refuses nearly every request it is sent. Were refusals of 3% of
# requests independent, each would come by chance once in ~35,000 of them (one hold in ~1% of
# 5,000-part runs); they come back in bunches, though (a 429 is answered at once, the successes
# beside it only count once stored), and at 5-8% a chance "steady" reading is common: one hold.
_OUTCOMES = 32
_STEADY_REFUSALS = 8
_IN_A_ROW = 4
_SCATTERED_CUT = 8  # a scattered episode takes limit // this (nothing below 8 slots)
# No pace under this share of the most the server ever accepted in a window: a token bucket's best
# window is its burst plus a second of its rate (S7: 50-100 against a pace of ~45), while the
# pace that two bunches of scattered refusals confirmed (8% at random) was 38 against ~1,000 a
# second, and every later refusal cut it again: 3,000 parts took minutes instead of 13 s.
_PACE_FLOOR = 0.25


class StreamSlots:
    """Slots for concurrent streams; ``async with slots as started_at:`` around each body read."""

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
        self._episode_steady = False  # the current episode was read as a steady limit
        self._episode_limit = maximum  # the limit before the current episode's decrease
        self._recent: collections.deque[float] = collections.deque()  # success times
        self._most_accepted = 0  # the most successes counted in one window so far
        self._quicken_below = 0.0  # the probe quickens under this rate (see on_success)
        self._outcomes: collections.deque[bool] = collections.deque(maxlen=_OUTCOMES)  # refused?
        self._resume_at = -float("inf")  # no new stream before this (Retry-After)
        self._held_at = -float("inf")  # when the last hold began
        self._confirm_until = -float("inf")  # refused most again before this: a limit, pace it
        self._refused_in_hold = 0  # refusals of requests sent before the last hold began
        self._next_start = -float("inf")  # pacing: the earliest next start
        self.rate: float | None = None  # starts per second; None: not paced
        self._probe_from = -float("inf")  # the pace grows with successes from this time on
        self._refused_at = -float("inf")  # the last refusal (a clean probe quickens from then)
        self._holds = 0  # holds begun so far: a stream waiting for its paced turn rechecks
        self._in_flight = 0  # streams started and not yet ended
        self.decreases = 0  # episodes that shrank the limit (reported by benchmarks)

    @property
    def limit(self) -> int:
        return int(self._limiter.total_tokens)

    @property
    def held_until(self) -> float:
        """No new stream starts before this clock time (a steady limit's Retry-After)."""
        return self._resume_at

    def _book_start(self, now: float) -> float:
        """When a stream asking at ``now`` may start: after Retry-After, at the paced rate."""
        if self._first_start is None:
            self._first_start = now
        start = max(now, self._resume_at)
        if self.rate is not None:
            start = max(start, self._next_start)
            self._next_start = start + 1.0 / self.rate
        return start

    async def _wait_turn(self) -> float:
        """Hold off for Retry-After, then keep the paced rate (both only once throttled)."""
        now = self._clock()
        start = self._book_start(now)
        while start > now:
            holds = self._holds
            await anyio.sleep(start - now)
            if self._holds == holds:
                break
            # A hold began while this stream waited for its paced turn: it waits for the hold
            # too (S7 with debt: 20 streams booked at a pace of 79 went on starting through
            # the hold their refusals had called for, and each pushed the debt further).
            now = self._clock()
            start = self._book_start(now)
        return start

    async def __aenter__(self) -> float:
        """Take a slot and wait for this stream's turn; returns when it starts (the clock's time),
        which is what ``on_throttled(started_at=...)`` wants if this stream is refused."""
        await self._limiter.acquire()
        try:
            started_at = await self._wait_turn()
        except BaseException:
            self._limiter.release()
            raise
        self._in_flight += 1
        return started_at

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._in_flight -= 1
        self._limiter.release()

    def _accepted_last_window(self, now: float) -> int:
        while self._recent and self._recent[0] < now - _WINDOW_S:
            self._recent.popleft()
        return len(self._recent)

    def _set_limit(self, new_limit: int) -> None:
        """Shrink to ``new_limit``; counted once per episode however often it shrinks in it."""
        if new_limit >= self.limit:
            return
        if self.limit == self._episode_limit:
            self.decreases += 1  # the episode's first cut (a steady upgrade is not a second one)
        self._limiter.total_tokens = new_limit

    def on_success(self) -> None:
        """A stream finished without throttling: additive increase of slots and pace."""
        if not self.adaptive:
            return
        now = self._clock()
        if self._first_start is None:
            self._first_start = now
        self._recent.append(now)
        self._outcomes.append(False)
        accepted = self._accepted_last_window(now)
        self._most_accepted = max(self._most_accepted, accepted)
        if self.rate is None and now < self._resume_at:
            # Answers that come during the first holds are the tail of the burst before them.
            self._quicken_below = max(self._quicken_below, float(accepted))
        if self.rate is not None and now >= self._probe_from:
            # About +10% per second of successes: probes back up to the limit within seconds
            # (a limit that rose, or an estimate taken from a short window, is found quickly).
            # Under a rate the server has shown it accepts (its burst), each clean
            # half-second doubles that, up to 8x: a bucket in debt (S7 with debt) let 21-31
            # through after the hold (its rate less the debt the hold repaid), and at +10% a
            # second the pace took 6 s to climb back to 50, most of the run.
            # Above it, only a limit that rose is looked for, at a quarter of that: a token bucket
            # hides the limit until the tokens it saved are spent, and at +10% a second S7's
            # pace crossed 50 and kept climbing to ~78 before the first refusal, whose
            # Retry-After then ended the run a second late.
            gain = _PROBE_ABOVE
            if self.rate < self._quicken_below:
                clean_s = now - self._refused_at
                gain = min(
                    _PROBE_MAX_GAIN, 2 ** min(8, int(clean_s / _QUICKEN_S))
                )  # (no huge ints)
            self.rate += _PROBE_PER_SUCCESS * gain
            if self.rate >= 1000.0:
                self.rate = None  # far above any limit seen: stop pacing
        if self.limit >= self.maximum:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self._limiter.total_tokens = self.limit + 1

    def on_throttled(
        self, retry_after_s: float | None = None, *, started_at: float | None = None
    ) -> None:
        """The server said 429 to a request that started at ``started_at`` (the clock's time,
        as ``async with`` returned it; None: unknown, the cooldown alone bounds the episode).

        Scattered: a gentle decrease, once per episode. Steady: hold off, halve, and pace at
        what the server accepted once the refusals outlast the hold.
        """
        if not self.adaptive:
            return
        now = self._clock()
        self._refused_at = now
        same_episode = now - self._last_decrease < self._cooldown_s or (
            started_at is not None and started_at < self._last_decrease
        )
        if self.rate is not None:
            self._on_paced_refusal(now, same_episode, started_at, retry_after_s)
            return
        if now < self._resume_at or (started_at is not None and started_at < self._held_at):
            # Sent before the hold: not evidence again, but how many of the requests then in
            # flight the server refused says how hard it is refusing (a hammered bucket: most).
            self._refused_in_hold += 1
            return
        self._outcomes.append(True)
        if self._refusing_most() or (
            now < self._confirm_until and self._refused_in_hold >= _STEADY_REFUSALS
        ):
            self._on_steady_refusals(now, retry_after_s, same_episode)
        elif not same_episode:
            self._begin_episode(now, steady=False)
            self._set_limit(max(self.minimum, self.limit - self.limit // _SCATTERED_CUT))

    def _refusing_most(self) -> bool:
        """The last requests look like a limit being hammered, not like scattered refusals."""
        outcomes = self._outcomes
        if outcomes.count(True) >= _STEADY_REFUSALS:
            return True
        return len(outcomes) >= _IN_A_ROW and all(outcomes[-i] for i in range(1, _IN_A_ROW + 1))

    def _begin_episode(self, now: float, *, steady: bool, upgrade: bool = False) -> None:
        if not upgrade:
            self._episode_limit = self.limit  # an upgrade halves the limit the episode began at
        self._last_decrease = now
        self._episode_steady = steady
        self._successes = 0

    def _on_steady_refusals(self, now: float, retry_after_s: float | None, same: bool) -> None:
        """Most recent requests refused, no pace yet: hold, or pace if they outlasted a hold."""
        accepted = self._accepted_last_window(now)
        # Successes counted before the streams have run for a whole window say how much of the
        # opening burst had come back yet, not what the server sustains: a refusal 30 ms into S7
        # counted 20-37 of them against a limit of 50 per second, and pacing at that, the run
        # crawled back up (7.6-10 s instead of ~7.4). So the first window sets no pace: the
        # Retry-After hold and the halving only, and the first confirmation after it paces.
        first_window = self._first_start is None or now - self._first_start < _WINDOW_S
        self._outcomes.clear()  # each run of refusals is evidence once
        confirmed = now < self._confirm_until and not first_window
        if confirmed and accepted and self._plausible(accepted):
            # Refused again after the hold: a limit, and what got through since is its rate. The
            # first estimate comes from the burst a token bucket let through after the hold,
            # above its steady rate: it is taken as it is, later ones with the margin.
            self.rate = float(accepted)  # from now on (refusals inside a hold never get here)
        else:
            # Nobody starts before the server's Retry-After, and the pace waits for refusals
            # after it: a chance run of scattered ones (rare at 3%, not at 8%) then
            # costs one hold, not a pace that every later refusal would cut again.
            if retry_after_s is not None:
                self._resume_at = max(self._resume_at, now + retry_after_s)
                self._holds += 1
            # What the server accepted in the second before it began refusing most (and during
            # the hold, see on_success): its burst, at the opening (not the window after a
            # hold, which adds a refilled bucket to it).
            self._quicken_below = float(accepted)
            self._held_at = now
            self._refused_in_hold = 0
            self._confirm_until = max(now, self._resume_at) + _WINDOW_S
        if not (same and self._episode_steady):
            self._begin_episode(now, steady=True, upgrade=same)
            self._set_limit(max(self.minimum, self._episode_limit // 2))

    def _plausible(self, rate: float) -> bool:
        """Could a limit be this low, given what the server has accepted before?"""
        return rate >= _PACE_FLOOR * self._most_accepted

    def _set_pace(self, rate: float) -> None:
        """Pace at ``rate``, or not at all if that is no limit's (holds and halving remain)."""
        self.rate = max(1.0, rate) if self._plausible(rate) else None

    def _on_paced_refusal(
        self,
        now: float,
        same_episode: bool,
        started_at: float | None,
        retry_after_s: float | None,
    ) -> None:
        """Paced: every refusal is the limit (the pace, not the share, keeps them rare now)."""
        accepted = self._accepted_last_window(now)
        rate = self.rate or 1.0
        if started_at is None or started_at >= self._last_decrease:
            self._outcomes.append(True)  # sent at the current pace: evidence about it
        if retry_after_s is not None and self._refusing_most():
            # Most of the paced requests refused: the pace ran into an empty bucket. A gateway
            # that charges refused requests too (a bucket in debt) refuses every request sent
            # before its Retry-After, and each of them pushes the end of the debt further off:
            # nobody starts until then, nor until the streams still in flight (each costs a
            # token, refused or not) have had their turns at the pace.
            self._outcomes.clear()
            # (At most one more Retry-After: streams that hold a slot may be reading a body
            # already answered, which costs nothing more.)
            hold = now + retry_after_s + min(self._in_flight / rate, retry_after_s)
            if hold > self._resume_at:
                self._resume_at = hold
                self._holds += 1
        if same_episode:
            # No second decrease, but no more probing upwards either, until the episode ends:
            # the pace grows with every success, and it kept climbing through S7's last second
            # of refusals (six at 53-55 a second). Not for the refusals of requests sent before
            # the episode began (unknown: answered within one paced interval of it), which say
            # nothing about the new pace and froze the probe for the first second after it.
            if accepted:
                self._set_pace(min(rate, float(accepted)))
            if started_at is None:
                fresh = now - self._last_decrease >= 1.0 / rate
            else:
                fresh = started_at >= self._last_decrease
            if fresh:
                self._probe_from = self._last_decrease + self._cooldown_s
            return
        self._begin_episode(now, steady=True)
        self._quicken_below = min(self._quicken_below, rate)  # a pace it refused is above it
        # What the server just accepted is the best estimate of its limit; a little under it
        # lets a token bucket refill, so the next refusal (and the Retry-After that the refused
        # part then waits, which at the end of a run is the run's tail) comes later. Without an
        # estimate (nothing got through for a second), halve like TCP does. A count above the
        # pace is the tokens a bucket saved while the pace was under its rate, not its rate.
        self._set_pace(_PACE_BACKOFF * min(accepted, rate) if accepted else rate / 2)
        self._set_limit(max(self.minimum, self._episode_limit // 2))
