"""Adobe IMS as the emulator plays it: the client-credentials token route and the store of the
tokens it issued, which the gateway asks whether a bearer token is still valid.

IMS is another service than the API gateway: its route sees no gateway checks and no injected
faults (the request wrapper in recording.py knows it by its kind, ``token``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from aiohttp import web

from asyncdl.emulator.answers import json_answer
from asyncdl.emulator.config import EmulatorConfig
from asyncdl.models import IMS_TOKEN_PATH

__all__ = ["IMS_TOKEN_PATH", "Tokens", "token"]


class Tokens:
    """Tokens IMS issued and when each expires; the config's static tokens never expire."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}  # token -> clock() at which it stops being valid

    def issue(self, lifetime_s: float) -> str:
        now = self._clock()
        # Drop the expired ones here: a long-running server issues tokens all day.
        self._expiry = {t: e for t, e in self._expiry.items() if e > now}
        issued = secrets.token_urlsafe(32)
        self._expiry[issued] = now + lifetime_s
        return issued

    def valid(self, bearer: str, *, static: tuple[str, ...]) -> bool:
        if bearer in static:
            return True
        expiry = self._expiry.get(bearer)
        if expiry is None:
            return False
        if self._clock() >= expiry:
            del self._expiry[bearer]
            return False
        return True

    def revoke(self) -> None:
        """Forget every issued token (static tokens stay valid)."""
        self._expiry.clear()


async def token(request: web.Request, *, config: EmulatorConfig, tokens: Tokens) -> web.Response:
    """``POST /ims/token/v3``: a bearer token for the configured OAuth client."""
    form = await request.post()
    # Some clients send the credentials as query parameters; the form wins when both exist.
    fields = {**request.query, **{k: v for k, v in form.items() if isinstance(v, str)}}
    if fields.get("grant_type") != "client_credentials":
        return json_answer(400, {"error": "unsupported_grant_type"})
    if (
        fields.get("client_id") != config.client_id
        or fields.get("client_secret") != config.client_secret
    ):
        description = "invalid client_id or client_secret"
        return json_answer(401, {"error": "invalid_client", "error_description": description})
    body = {
        "access_token": tokens.issue(config.token_lifetime_s),
        "token_type": "bearer",
        "expires_in": int(config.token_lifetime_s),
    }
    return json_answer(200, body)
