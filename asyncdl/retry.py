"""Retry policy: which failures are worth another try and how long to wait first.

Pure policy, no I/O and no clock: callers pass the attempt number and the time already spent, and
get back a delay or ``None`` (give up). Decisions come from exception types and HTTP statuses only,
never from message text. Backoff is capped exponential with full jitter (AWS architecture blog,
"Exponential Backoff And Jitter"); a server's ``Retry-After`` wins when it asks for longer.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import DownloadSettings
from .errors import (
    APIError,
    AsyncdlError,
    RangeMismatchError,
    TransportError,
    VerificationError,
)

__all__ = ["RetryPolicy", "is_retryable", "parse_retry_after"]

_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """True for failures another attempt can fix: the network, throttling, 5xx, short bodies."""
    if isinstance(exc, TransportError | VerificationError | RangeMismatchError):
        return True  # a 206 for another range than asked is a server glitch worth one more try
    if isinstance(exc, APIError):
        return exc.status in _RETRYABLE_STATUSES
    return False


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently one operation (a listing page, a part) is retried.

    ``max_attempts`` counts the first try. ``deadline_s`` bounds the whole operation including
    waits: a retry that would start after it is not made.
    """

    max_attempts: int = DownloadSettings.max_attempts
    base_delay_s: float = DownloadSettings.backoff_base_s
    max_delay_s: float = DownloadSettings.backoff_max_s
    deadline_s: float = DownloadSettings.part_timeout_s
    random_fraction: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: DownloadSettings) -> RetryPolicy:
        """The run's policy for parts and listing pages alike."""
        return cls(
            max_attempts=settings.max_attempts,
            base_delay_s=settings.backoff_base_s,
            max_delay_s=settings.backoff_max_s,
            deadline_s=settings.part_timeout_s,
        )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.deadline_s <= 0:
            raise ValueError("delays must be >= 0 and the deadline > 0")

    def backoff_s(self, attempt: int) -> float:
        """Full-jitter delay before attempt ``attempt + 1`` (``attempt`` starts at 1)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return float(ceiling * self.random_fraction())

    def delay_s(self, exc: BaseException, *, attempt: int, elapsed_s: float) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up on ``exc``.

        ``attempt`` is the number of attempts made so far (1 after the first failure).
        ``elapsed_s`` is the time the operation has taken so far.
        """
        if not isinstance(exc, AsyncdlError) or not is_retryable(exc):
            return None
        if attempt >= self.max_attempts:
            return None
        delay = self.backoff_s(attempt)
        if isinstance(exc, APIError) and exc.retry_after_s is not None:
            # The server knows its own load better than our jitter does; but never wait past a
            # cap we would not wait anyway (a hostile Retry-After of a day must not hang a run).
            delay = max(delay, min(exc.retry_after_s, self.max_delay_s * 4))
        if elapsed_s + delay >= self.deadline_s:
            return None
        return delay


def parse_retry_after(value: str | None, *, now_epoch_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Unparseable values are ignored (``None``): a broken header must not turn a retryable answer
    into a fatal one. Dates in the past mean "now" (0.0).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means the zone was omitted
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now_epoch_s)
