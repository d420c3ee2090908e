"""Fault injection state for one ``Faults`` value: the global token bucket, the per-request
decisions, and the per-(method, path + query) cap that guarantees every client terminates.

Decisions are deterministic per request key: the n-th request for a key draws from a generator
seeded with (seed, method, path + query, n), so concurrency does not change which attempt of a
given URL fails. Nothing here does I/O; the request wrapper (recording.py) turns decisions into
answers.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from asyncdl.emulator.config import Faults

__all__ = [
    "MAX_DEBT_S",
    "RATE_LIMIT_ERROR",
    "FaultInjector",
    "FaultTicket",
    "Refusal",
    "retry_after_header",
]

_ERROR_STATUSES = (500, 502, 503, 504)
#: How deep a bucket in debt (Faults.rate_limit_debt) can go, in seconds of refill: deep enough
#: that hammering never pays, shallow enough that a client that stops recovers soon.
MAX_DEBT_S = 10.0
# Refill is computed in floating point: a client that waits exactly its Retry-After must find
# the token it was promised, not 0.9999999 of it.
_EPSILON = 1e-9
#: The gateway's own refusal when its rate limit is hit (it comes with a Retry-After).
RATE_LIMIT_ERROR = ("429050", "Too many requests")
#: What an injected 429 says: a service quota or the developer key's.
_QUOTA_ERRORS = (
    ("429001", "Service usage limit reached"),
    ("429002", "Developer key usage limit reached"),
)
#: The gateway's 503 when it cannot reach IMS; other 503s come from the service (RFC 7807).
_GATEWAY_503 = ("503010", "Could not validate the oauth token")


@dataclass(frozen=True, kw_only=True, slots=True)
class Refusal:
    """An injected error answer given instead of the route's own."""

    kind: str  # "5xx" | "429" | "rate_limit"
    status: int
    retry_after_s: float | None
    empty_body: bool = False
    #: (error_code, message) for the gateway's body shape; None: the service's RFC 7807 body.
    gateway: tuple[str, str] | None = None
    #: How Retry-After is spelled under Variants.malformed_retry_after ("1s" or "soon").
    malformed_retry_after: str = "soon"


def retry_after_header(seconds: float, *, http_date: bool) -> str:
    """``Retry-After`` as delay-seconds (an integer: ``Faults`` only allows whole seconds), or
    as an HTTP date ``seconds`` from now."""
    if http_date:
        return email.utils.formatdate(math.ceil(time.time() + seconds), usegmt=True)
    return str(math.ceil(seconds))


class FaultTicket:
    """The fault decisions for one request; each kind of fault is drawn at most once."""

    def __init__(self, injector: FaultInjector, key: tuple[str, str], rng: random.Random) -> None:
        self._injector = injector
        self._key = key
        self._rng = rng

    def refusal(self) -> Refusal | None:
        """A 5xx or 429 to answer instead of the route, or None."""
        faults = self._injector.faults
        draw = self._rng.random()
        if draw < faults.error_5xx_rate:
            kind = "5xx"
        elif draw < faults.error_5xx_rate + faults.rate_429:
            kind = "429"
        else:
            return None
        if not self._injector.take(self._key):
            return None
        # New draws come after the older ones, so a seed fails the same attempts as before.
        if kind == "5xx":
            status = self._rng.choice(_ERROR_STATUSES)
            retry = faults.retry_after_s if status == 503 else None
            gateway = _GATEWAY_503 if status == 503 and self._rng.random() < 0.5 else None
            return Refusal(
                kind="5xx",
                status=status,
                retry_after_s=retry,
                gateway=gateway,
                malformed_retry_after=self._malformed(retry),
            )
        empty = self._rng.random() < 0.5
        return Refusal(
            kind="429",
            status=429,
            retry_after_s=faults.retry_after_s,
            empty_body=empty,
            gateway=self._rng.choice(_QUOTA_ERRORS),
            malformed_retry_after=self._malformed(faults.retry_after_s),
        )

    def _malformed(self, seconds: float | None) -> str:
        """A Retry-After real gateways sometimes write: a unit suffix or a word."""
        whole = math.ceil(seconds or 0)
        return f"{whole}s" if self._rng.random() < 0.5 else "soon"

    def body_fault(self) -> str | None:
        """For a download: "drop", "truncate" or None."""
        faults = self._injector.faults
        draw = self._rng.random()
        if draw < faults.drop_rate:
            kind = "drop"
        elif draw < faults.drop_rate + faults.truncate_rate:
            kind = "truncate"
        else:
            return None
        return kind if self._injector.take(self._key) else None


class FaultInjector:
    """Counters and the token bucket for one ``Faults`` value; replaced with it."""

    def __init__(self, faults: Faults, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.faults = faults
        self._clock = clock
        self._seen: dict[tuple[str, str], int] = {}
        self._injected: dict[tuple[str, str], int] = {}
        rps = faults.rate_limit_rps
        # A full bucket of max(1, K) tokens: a burst of K passes, the steady rate is K per second.
        self._capacity = max(1.0, rps) if rps is not None else 0.0
        self._floor = -rps * MAX_DEBT_S if rps is not None and faults.rate_limit_debt else 0.0
        self._tokens = self._capacity
        self._refilled = clock()

    def rate_limit_wait(self) -> float | None:
        """None when a token was taken; else seconds until the bucket holds one again.

        In debt mode the refused request is charged too (down to the floor), and the wait
        counts from after that charge: a client asking again sooner only digs deeper.
        """
        rps = self.faults.rate_limit_rps
        if rps is None:
            return None
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._refilled) * rps)
        self._refilled = now
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens -= 1.0
            return None
        if self.faults.rate_limit_debt:
            self._tokens = max(self._floor, self._tokens - 1.0)
        return (1.0 - self._tokens) / rps

    def rate_limit_refusal(self) -> Refusal | None:
        """The gateway's 429 when the bucket has no token for this request, else None (the
        token is taken). Retry-After is whole seconds, rounded up: waiting it is enough."""
        wait_s = self.rate_limit_wait()
        if wait_s is None:
            return None
        return Refusal(
            kind="rate_limit",
            status=429,
            retry_after_s=max(1, math.ceil(wait_s)),
            gateway=RATE_LIMIT_ERROR,
        )

    def ticket(self, method: str, path_qs: str) -> FaultTicket:
        key = (method, path_qs)
        attempt = self._seen.get(key, 0)
        self._seen[key] = attempt + 1
        rng = random.Random(f"{self.faults.seed}|{method}|{path_qs}|{attempt}")
        return FaultTicket(self, key, rng)

    def take(self, key: tuple[str, str]) -> bool:
        """Count one injected fault for ``key`` unless that would exceed the cap."""
        used = self._injected.get(key, 0)
        if used >= self.faults.max_faults_per_path:
            return False
        self._injected[key] = used + 1
        return True
