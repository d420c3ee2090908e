"""The one attempt loop's rules: when a stream of a part asks again, and how long it waits.

Every request counts as one of the part's attempts in its result; only requests that brought
nothing spend the retry policy's budget. A request that moved the part on (a shorter 206 than
asked, which the spec allows, or a stream cut after at least ``RESUME_MIN_BYTES``, which is how
AEP ends every answer at 60 s) is followed at once. A failure waits what ``RetryPolicy`` says
(Retry-After included) and tells the limiter about a 429 and the listener about the retry.
"""

from __future__ import annotations

import logging
import time

import anyio

from ..errors import AsyncdlError, RateLimitedError, StreamInterruptedError
from ..models import Part
from ..progress import ProgressListener
from ..retry import RetryPolicy
from ..slots import StreamSlots

__all__ = ["RESUME_MIN_BYTES", "Retrying", "resumes"]

log = logging.getLogger(__name__)

# A cut after this much is a resume, not a failed attempt: a big part on a slow link is cut at
# 60 s again and again, each time further on. Less than this counts as a failure, so a server
# that drops every connection at once still runs out of attempts.
RESUME_MIN_BYTES = 1 << 16


def resumes(error: AsyncdlError, progress: int) -> bool:
    """A cut stream that brought enough to be a resume, not a failure."""
    return isinstance(error, StreamInterruptedError) and progress >= RESUME_MIN_BYTES


class Retrying:
    """The retry budget of one stream of a part (the whole part, or one of its segments)."""

    def __init__(
        self,
        part: Part,
        *,
        policy: RetryPolicy,
        slots: StreamSlots,
        listener: ProgressListener,
        started: float,
    ) -> None:
        self._part = part
        self._policy = policy
        self._slots = slots
        self._listener = listener
        self._started = started
        self.failures = 0

    async def again(
        self,
        error: AsyncdlError,
        *,
        progress: int,
        requests: int,
        started_at: float | None = None,
    ) -> bool:
        """After ``error`` (``progress`` bytes into the request): True to ask again (having
        waited when that is due), False to give up. ``requests`` is the part's count so far;
        ``started_at`` is when the failed stream took its slot (what ``async with slots``
        returned: a 429 to a request sent before the last decrease is the same episode)."""
        if resumes(error, progress):
            log.info("%s: %s after %d bytes; resuming", self._part.name, error, progress)
            return True
        self.failures += 1
        if isinstance(error, RateLimitedError):
            self._slots.on_throttled(error.retry_after_s, started_at=started_at)
        delay = self._policy.delay_s(
            error, attempt=self.failures, elapsed_s=time.monotonic() - self._started
        )
        if delay is None:
            log.warning(
                "%s: giving up after %d attempts: %s", self._part.name, self.failures, error
            )
            return False
        log.info(
            "%s: attempt %d failed (%s); retrying in %.1f s",
            self._part.name,
            self.failures,
            error,
            delay,
        )
        self._listener.on_retry(self._part, requests, error, delay)
        await anyio.sleep(delay)
        return True
