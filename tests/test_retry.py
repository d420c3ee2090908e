"""The retry policy decides from types and statuses alone, with capped full-jitter backoff."""

from __future__ import annotations

import email.utils

import pytest

from asyncdl.errors import (
    APIError,
    AuthError,
    ConnectError,
    ForeignOriginError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    StreamInterruptedError,
    UnsafeNameError,
    VerificationError,
)
from asyncdl.retry import RetryPolicy, is_retryable, parse_retry_after

URL = "https://platform.adobe.io/x"


@pytest.mark.parametrize(
    "error",
    [
        ConnectError("refused", url=URL),
        RequestTimeoutError("slow", url=URL),
        StreamInterruptedError("cut", url=URL),
        RateLimitedError(status=429, url=URL),
        ServerError(status=500, url=URL),
        ServerError(status=502, url=URL),
        ServerError(status=503, url=URL),
        ServerError(status=504, url=URL),
        VerificationError("short"),
    ],
)
def test_transient_failures_are_retried(error: Exception) -> None:
    assert is_retryable(error)
    assert RetryPolicy().delay_s(error, attempt=1, elapsed_s=0.0) is not None


@pytest.mark.parametrize(
    "error",
    [
        AuthError(status=401, url=URL, code="401013"),
        AuthError(status=403, url=URL, code="403003"),
        NotFoundError(status=404, url=URL),
        APIError(status=400, url=URL),
        ServerError(status=501, url=URL),  # Not Implemented will not change on a retry
        ForeignOriginError("https://evil.example/x"),
        UnsafeNameError("../x", "separator"),
        ValueError("not ours"),
    ],
)
def test_permanent_failures_are_not_retried(error: Exception) -> None:
    assert RetryPolicy().delay_s(error, attempt=1, elapsed_s=0.0) is None


def test_attempts_are_bounded() -> None:
    policy = RetryPolicy(max_attempts=3)
    error = ServerError(status=503, url=URL)
    assert policy.delay_s(error, attempt=2, elapsed_s=0.0) is not None
    assert policy.delay_s(error, attempt=3, elapsed_s=0.0) is None


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=10.0, random_fraction=lambda: 1.0)
    assert [policy.backoff_s(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    low = RetryPolicy(base_delay_s=1.0, max_delay_s=10.0, random_fraction=lambda: 0.25)
    assert low.backoff_s(4) == 2.0


def test_retry_after_wins_when_longer_but_is_capped() -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=5.0, random_fraction=lambda: 1.0)
    slow_down = RateLimitedError(status=429, url=URL, retry_after_s=3.0)
    assert policy.delay_s(slow_down, attempt=1, elapsed_s=0.0) == 3.0
    hostile = RateLimitedError(status=429, url=URL, retry_after_s=86400.0)
    assert policy.delay_s(hostile, attempt=1, elapsed_s=0.0) == 20.0


def test_deadline_stops_retries() -> None:
    policy = RetryPolicy(deadline_s=10.0, random_fraction=lambda: 1.0)
    error = ServerError(status=503, url=URL, retry_after_s=5.0)
    assert policy.delay_s(error, attempt=1, elapsed_s=4.0) == 5.0
    assert policy.delay_s(error, attempt=1, elapsed_s=6.0) is None


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("7", now_epoch_s=now) == 7.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now_epoch_s=now) == pytest.approx(30.0, abs=1.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now_epoch_s=now) == 0.0
    assert parse_retry_after("soon", now_epoch_s=now) is None
    assert parse_retry_after(None, now_epoch_s=now) is None
    assert parse_retry_after(" ", now_epoch_s=now) is None


def test_invalid_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
