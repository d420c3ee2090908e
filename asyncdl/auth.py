"""Access tokens: a static token, or OAuth server-to-server with single-flight refresh.

The OAuth provider owns caching and refresh timing only; the HTTP call that obtains a grant is
injected (``client`` supplies it), so this module never touches the network itself. Refresh is
single-flight: when 32 workers see the same expired token at once, one of them asks IMS and the
other 31 wait for that answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

__all__ = [
    "OAuthTokenProvider",
    "StaticTokenProvider",
    "TokenGrant",
    "TokenProvider",
    "lifetime_s",
]

#: What IMS grants a server-to-server token (24 h less a second), and the most a value in
#: seconds can honestly be: the retired JWT exchange answered ``expires_in`` in milliseconds.
DEFAULT_LIFETIME_S = 86_399.0
_MAX_SECONDS = 86_400.0


def lifetime_s(expires_in: object) -> float:
    """Seconds a token lives, from IMS's ``expires_in``: a number or a numeric string.

    Over a day it cannot be seconds (JWT's milliseconds): it is read as milliseconds. Zero or
    less is a token to renew before its next use; anything unreadable or absent means IMS's
    usual lifetime.
    """
    try:
        value = float(str(expires_in).strip()) if expires_in is not None else DEFAULT_LIFETIME_S
    except ValueError:
        return DEFAULT_LIFETIME_S
    if value != value or value == float("inf"):  # NaN, infinity: not a lifetime at all
        return DEFAULT_LIFETIME_S
    if value <= 0:
        return 0.0
    if value > _MAX_SECONDS:
        value /= 1000.0
    return min(value, _MAX_SECONDS)


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenGrant:
    """What IMS answered: the token and how long it lives."""

    access_token: str
    expires_in_s: float

    def __repr__(self) -> str:  # the token itself must never reach a log or traceback
        return f"TokenGrant(access_token='***', expires_in_s={self.expires_in_s})"


class TokenProvider(Protocol):
    """Where the client gets the bearer token for each request."""

    @property
    def can_refresh(self) -> bool: ...

    async def token(self) -> str:
        """A token believed valid now."""
        ...

    async def refresh(self, stale: str) -> str:
        """A token other than ``stale`` (which the API just refused)."""
        ...


class StaticTokenProvider:
    """A token the user handed us (``AEP_ACCESS_TOKEN``); it cannot be renewed."""

    def __init__(self, token: str) -> None:
        self._token = token

    @property
    def can_refresh(self) -> bool:
        return False

    async def token(self) -> str:
        return self._token

    async def refresh(self, stale: str) -> str:
        return self._token

    def __repr__(self) -> str:
        return "StaticTokenProvider(token='***')"


class OAuthTokenProvider:
    """Client-credentials tokens from IMS, renewed before expiry and after a 401.

    ``refresh_margin_s`` renews a token that far ahead of its expiry (capped at a tenth of its
    lifetime, so short-lived tokens in tests are still used).
    """

    def __init__(
        self,
        fetch_grant: Callable[[], Awaitable[TokenGrant]],
        *,
        refresh_margin_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_grant = fetch_grant
        self._refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._lock = anyio.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self.grants = 0  # how many times IMS was asked; tests and --verbose read it

    @property
    def can_refresh(self) -> bool:
        return True

    def _fresh(self) -> str | None:
        if self._token is not None and self._clock() < self._renew_at:
            return self._token
        return None

    async def token(self) -> str:
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        async with self._lock:
            # Whoever held the lock before us may already have renewed it.
            fresh = self._fresh()
            if fresh is not None:
                return fresh
            return await self._renew()

    async def refresh(self, stale: str) -> str:
        async with self._lock:
            if self._token is not None and self._token != stale:
                return self._token  # another worker already replaced the refused token
            return await self._renew()

    async def _renew(self) -> str:
        grant = await self._fetch_grant()
        self.grants += 1
        margin = min(self._refresh_margin_s, grant.expires_in_s / 10)
        self._token = grant.access_token
        self._renew_at = self._clock() + grant.expires_in_s - margin
        return grant.access_token

    def __repr__(self) -> str:
        return f"OAuthTokenProvider(grants={self.grants})"
