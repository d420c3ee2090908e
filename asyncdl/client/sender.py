"""One request as it goes out and comes back: the run's aiohttp session, AEP's four headers for
the API's origin only, a store's signature for a store's URLs, each redirect hop through the
origin lock, one single-flight token refresh and replay on a 401, and the IMS grant.

``AEPClient`` (session.py) builds the API's calls on it: JSON exchanges with retries, HEAD,
byte streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import anyio
from yarl import URL

from .. import tls
from ..auth import OAuthTokenProvider, StaticTokenProvider, TokenGrant, TokenProvider
from ..config import Credentials, DownloadSettings, queue_bound
from ..errors import AuthError, ProtocolError, SourceAuthError
from .failures import error_from
from .ims import request_grant
from .origins import OriginLock
from .signing import RequestSigner, Signers
from .transport import aiohttp, translate

__all__ = ["Sender"]

_MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class _Sent:
    """How the request behind an answer went out: with AEP's credentials, signed by a store's
    signer, or bare; and its URL as errors may name it (never signed)."""

    url: str
    credentialed: bool
    signed: bool


class Sender:
    """The run's session and how each request is sent; open with ``async with``."""

    def __init__(self, *, credentials: Credentials, settings: DownloadSettings) -> None:
        self._credentials = credentials
        self._settings = settings
        self.origins = OriginLock(settings.base_url, settings.allowed_hosts)
        self._signers = Signers(settings.base_url)
        self._session: aiohttp.ClientSession | None = None
        self.trust = tls.LazyTrust(settings.ca_bundle)
        self.tokens: TokenProvider
        if credentials.access_token:
            self.tokens = StaticTokenProvider(credentials.access_token)
        else:
            self.tokens = OAuthTokenProvider(self._request_grant)

    def sign_requests(self, signer: RequestSigner) -> None:
        """From now on, requests for URLs ``signer`` covers are signed by it as they are sent
        (and carry none of AEP's headers); ConfigError for a store at the API's origin."""
        self._signers.add(signer)

    async def __aenter__(self) -> Sender:
        if self._settings.ca_bundle is not None:
            await self.trust.load()  # asked for: a bad bundle fails the run now, not each part
        connector = aiohttp.TCPConnector(
            # A ceiling, not the bound: StreamSlots keeps body streams to ``concurrency``. Above
            # it, the producer's listing request and the answers of single-file dataSetFiles,
            # which arrive open with their listing and wait in the bounded queue for a worker
            # (its capacity, ``queue_bound``), each hold a connection; a lower limit could leave
            # a worker's retry waiting for a connection that only a queued answer frees.
            limit=self._settings.concurrency + queue_bound(self._settings.concurrency) + 2,
            ssl=self.trust.context,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self._settings.connect_timeout_s,
                sock_read=self._settings.read_timeout_s,
            ),
            # Large socket reads keep the per-chunk Python overhead small at high throughput.
            read_bufsize=max(self._settings.read_chunk_bytes, 1 << 16),
            raise_for_status=False,
            # AEP authenticates every call with headers; a cookie jar would only be filtered
            # on every request and updated on every response (thousands of times a run), and
            # could carry state between calls that nothing asked for.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            with anyio.CancelScope(shield=True):
                await self._session.close()
            self._session = None

    async def _auth_headers(self) -> dict[str, str]:
        token = await self.tokens.token()
        return {
            "Authorization": f"Bearer {token}",
            "x-api-key": self._credentials.api_key,
            "x-gw-ims-org-id": self._credentials.org_id,
            "x-sandbox-name": self._credentials.sandbox,
        }

    def _scrub(self, text: str | None) -> str | None:
        if text is None:
            return None
        for secret in (*self._credentials.secrets(), *self._signers.secrets()):
            text = text.replace(secret, "***")
        return text

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> tuple[aiohttp.ClientResponse, str]:
        """A successful answer to the request, and the URL that answered (unsigned):
        credentials, redirects, one 401 replay.

        As httpx splits its send path: this step owns the refused-token replay, ``_follow``
        the redirects (each hop through the origin lock), ``_request`` one request.
        """
        refreshed = False
        while True:
            response, sent = await self._follow(
                method, url, params=params, headers=headers, json_body=json_body
            )
            answered = sent.url if sent.signed else str(response.url)
            if response.status < 400:
                return response, answered
            error = await error_from(
                response,
                answered,
                credentialed=sent.credentialed,
                signed=sent.signed,
                scrub=self._scrub,
            )
            credentialed = sent.credentialed
            refused_token = (
                isinstance(error, AuthError)
                and not isinstance(error, SourceAuthError)
                and error.status == 401
            )
            if refused_token and credentialed and self.tokens.can_refresh and not refreshed:
                refreshed = True
                stale = response.request_info.headers.get("Authorization", "")
                await self.tokens.refresh(stale.removeprefix("Bearer "))
                continue
            if refused_token and not self.tokens.can_refresh:
                error.reason = (error.reason or "") + (
                    " (AEP_ACCESS_TOKEN is a static token and cannot be refreshed; "
                    "set AEP_CLIENT_ID and AEP_CLIENT_SECRET for automatic renewal)"
                )
                error.args = (f"HTTP 401 [{error.code}]: {error.reason}",)
            raise error

    async def _follow(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        json_body: Any,
    ) -> tuple[aiohttp.ClientResponse, _Sent]:
        """The answer after redirects, and how its last request went out."""
        for _ in range(_MAX_REDIRECTS + 1):
            response, sent = await self._request(
                method, url, params=params, headers=headers, json_body=json_body
            )
            if response.status not in _REDIRECTS or "Location" not in response.headers:
                return response, sent
            response.release()
            url = urljoin(url, response.headers["Location"])
            params = None  # the Location is complete
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, json_body = "GET", None  # what browsers and RFC 9110 do
        raise ProtocolError(f"more than {_MAX_REDIRECTS} redirects from {url}")

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        json_body: Any,
    ) -> tuple[aiohttp.ClientResponse, _Sent]:
        """One request: with AEP's credentials only when ``url`` is the API's origin, signed
        when it is a store's object a signer covers, bare for an allowed host."""
        if self._session is None:
            raise RuntimeError("use AEPClient as an async context manager")
        request_headers = dict(headers or {})
        signer = self._signers.for_url(url)
        target: str | URL = url
        if signer is not None:
            signed = signer.sign(method, url)
            request_headers.update(signed.headers)
            # encoded: the signature is sent exactly as signed, never re-quoted on the way.
            target = URL(signed.url, encoded=True)
            sent = _Sent(url=url, credentialed=False, signed=True)
        else:
            sent = _Sent(url=url, credentialed=self.origins.credentials_for(url), signed=False)
            if sent.credentialed:
                request_headers.update(await self._auth_headers())
        await self.trust.before(url)
        try:
            response = await self._session.request(
                method,
                target,
                params=params,
                headers=request_headers,
                json=json_body,
                allow_redirects=False,  # followed by _follow, each hop through the origin lock
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise translate(exc, url) from exc
        return response, sent

    # -- IMS --------------------------------------------------------------------------------

    async def _request_grant(self) -> TokenGrant:
        """A new token from IMS (the OAuth provider calls this)."""
        if self._session is None:
            raise RuntimeError("use the Sender as an async context manager")
        return await request_grant(
            self._session, self._credentials, before=self.trust.before, scrub=self._scrub
        )
