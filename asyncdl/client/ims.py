"""OAuth server-to-server: one client-credentials grant from IMS (``/ims/token/v3``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..auth import TokenGrant, lifetime_s
from ..config import Credentials
from ..errors import AuthError, ProtocolError
from ..models import IMS_TOKEN_PATH
from .failures import error_from
from .transport import aiohttp, translate

__all__ = ["request_grant"]


async def request_grant(
    session: aiohttp.ClientSession,
    creds: Credentials,
    *,
    before: Callable[[str], Awaitable[None]],
    scrub: Callable[[str | None], str | None],
) -> TokenGrant:
    """POST client credentials to IMS; the answer never leaves this function unscrubbed.

    ``before(url)`` runs first (the TLS trust of an https IMS); refusals are AuthErrors.
    """
    url = creds.ims_url + IMS_TOKEN_PATH
    form = {
        "grant_type": "client_credentials",
        "client_id": creds.client_id or "",
        "client_secret": creds.client_secret or "",
        "scope": creds.scopes,
    }
    await before(url)
    try:
        response = await session.post(url, data=form, allow_redirects=False)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise translate(exc, url) from exc
    if response.status >= 400:
        error = await error_from(response, url, credentialed=True, scrub=scrub)
        if error.status in (400, 401, 403):
            raise AuthError(status=error.status, url=url, code=error.code, reason=error.reason)
        raise error
    try:
        body = await response.json(content_type=None)
    except (aiohttp.ClientError, ValueError, TimeoutError) as exc:
        raise ProtocolError(f"IMS at {url} did not answer with JSON") from exc
    finally:
        response.release()
    try:
        return TokenGrant(
            access_token=str(body["access_token"]),
            expires_in_s=lifetime_s(body.get("expires_in")),
        )
    except (KeyError, TypeError) as exc:
        raise ProtocolError(f"IMS at {url} answered without an access_token") from exc
