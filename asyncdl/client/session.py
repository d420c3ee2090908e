"""The run's connection to AEP: one session, the four AEP headers, the origin lock, retries of
JSON calls, the IMS grant, and the signed requests of a store a source reads from.

Credentials go only to the base URL's origin; other hosts must be allowed by name and never get
credentials. A store's URLs (the Data Landing Zone's container) are signed by its
``RequestSigner`` as each request is sent, and carry none of AEP's headers; errors name them
unsigned. A 401 gets one single-flight token refresh and one replay. JSON reads are retried
here with the run's policy; body streams are not (``fetch`` resumes them from what it wrote).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar
from urllib.parse import urljoin

import anyio
from yarl import URL

from .. import tls
from ..auth import (
    OAuthTokenProvider,
    StaticTokenProvider,
    TokenGrant,
    TokenProvider,
)
from ..config import Credentials, DownloadSettings, queue_bound
from ..errors import (
    AsyncdlError,
    AuthError,
    ProtocolError,
    SourceAuthError,
)
from ..retry import RetryPolicy
from .answers import ByteStream, FileAnswer, ObjectHead, Page, filename_from, is_json_type
from .failures import error_from
from .ims import request_grant
from .origins import OriginLock
from .signing import RequestSigner, Signers
from .transport import aiohttp, not_processed, translate

__all__ = ["AEPClient", "RetryListener"]

_MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_JSON_ACCEPT = {"Accept": "application/json"}

T = TypeVar("T")


class RetryListener(Protocol):
    """Told about every retry the client makes on its own (listing pages and other JSON calls).

    A ``ProgressListener`` is one; the client does not need to know.
    """

    def on_request_retry(self, url: str, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        """``url`` failed with ``error``; attempt ``attempt + 1`` follows after ``delay_s``."""


@dataclass(frozen=True, slots=True)
class _Sent:
    """How the request behind an answer went out: with AEP's credentials, signed by a store's
    signer, or bare; and its URL as errors may name it (never signed)."""

    url: str
    credentialed: bool
    signed: bool


class _IgnoreRetries:
    def on_request_retry(self, url: str, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        pass


class AEPClient:
    """One run's connection to AEP. Use as ``async with AEPClient(...) as client``."""

    def __init__(
        self,
        *,
        credentials: Credentials,
        settings: DownloadSettings,
        retry: RetryPolicy | None = None,
        retry_listener: RetryListener | None = None,
    ) -> None:
        self._credentials = credentials
        self._settings = settings
        self._retry = retry or RetryPolicy.from_settings(settings)
        self._retry_listener: RetryListener = retry_listener or _IgnoreRetries()
        self.origins = OriginLock(settings.base_url, settings.allowed_hosts)
        self._signers = Signers(settings.base_url)
        self._session: aiohttp.ClientSession | None = None
        self.trust = tls.LazyTrust(settings.ca_bundle)
        self.tokens: TokenProvider
        if credentials.access_token:
            self.tokens = StaticTokenProvider(credentials.access_token)
        else:
            self.tokens = OAuthTokenProvider(self._request_grant)

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    @property
    def sandbox(self) -> str:
        return self._credentials.sandbox

    def api_url(self, path: str) -> str:
        return self._settings.base_url + path

    def sign_requests(self, signer: RequestSigner) -> None:
        """From now on, requests for URLs ``signer`` covers are signed by it as they are sent
        (and carry none of AEP's headers); ConfigError for a store at the API's origin."""
        self._signers.add(signer)

    async def __aenter__(self) -> Self:
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

    # -- requests --------------------------------------------------------------------------

    async def _send(
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

    async def _call(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        may_retry: Callable[[AsyncdlError], bool] = lambda error: True,
        accept_file: bool = False,
    ) -> Page | FileAnswer | None:
        """One JSON exchange, retried with the run's policy where ``may_retry`` allows.

        The parsed answer as a ``Page`` (``None`` for an empty body). An answer that is not JSON
        is a ``ProtocolError``, read no further than its headers; with ``accept_file`` it is
        handed over open as a ``FileAnswer`` instead.
        """

        async def exchange() -> Page | FileAnswer | None:
            return await self._exchange(
                method, url, params=params, json_body=json_body, accept_file=accept_file
            )

        return await self._retrying(url, exchange, may_retry=may_retry)

    async def _retrying(
        self,
        url: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        may_retry: Callable[[AsyncdlError], bool] = lambda error: True,
    ) -> T:
        """``attempt()`` until it succeeds or the run's policy (and ``may_retry``) gives up."""
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                return await attempt()
            except AsyncdlError as error:
                delay = self._retry.delay_s(
                    error, attempt=attempts, elapsed_s=time.monotonic() - started
                )
                if delay is None or not may_retry(error):
                    raise
                self._retry_listener.on_request_retry(url, attempts, error, delay)
                await anyio.sleep(delay)

    async def _exchange(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        json_body: Any,
        accept_file: bool,
    ) -> Page | FileAnswer | None:
        # ``answered`` is after redirects: the base of the page's relative hrefs.
        response, answered = await self._send(
            method, url, params=params, headers=_JSON_ACCEPT, json_body=json_body
        )
        content_type = response.headers.get("Content-Type", "")
        disposition = response.headers.get("Content-Disposition")
        # No Content-Type at all is taken for JSON, as AEP's older answers were; a
        # Content-Disposition says "a file" whatever the type claims.
        if (is_json_type(content_type) or not content_type) and not disposition:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise translate(exc, url) from exc
            finally:
                response.release()
            if not raw.strip():
                return None
            try:
                return Page(url=answered, body=json.loads(raw))
            except ValueError as exc:
                raise ProtocolError(f"{url} did not answer with JSON") from exc
        if not accept_file:
            response.close()  # never read a body nobody asked for into memory
            raise ProtocolError(
                f"{url} answered {content_type or 'a file'}, not the JSON it documents"
            )
        try:
            stream = ByteStream(response, answered)
        except BaseException:
            response.close()
            raise
        return FileAnswer(
            url=answered,
            stream=stream,
            filename=filename_from(disposition),
            content_type=content_type,
        )

    async def get_json(self, url: str, *, params: Mapping[str, str] | None = None) -> Any:
        """GET a JSON document, retrying transient failures with the run's policy."""
        return (await self.get_page(url, params=params)).body

    async def get_page(self, url: str, *, params: Mapping[str, str] | None = None) -> Page:
        """GET a JSON document with the URL that answered it (for relative hrefs)."""
        answer = await self._call("GET", url, params=params)
        if not isinstance(answer, Page):
            raise ProtocolError(f"{url} answered with an empty body")
        return answer

    async def get_page_or_file(self, url: str) -> Page | FileAnswer:
        """GET a listing that may answer with the file itself (``GET /files/{dataSetFileId}``).

        A ``FileAnswer``'s stream is the caller's to read or close: the bytes are never asked
        for twice, and never held in memory.
        """
        answer = await self._call("GET", url, accept_file=True)
        if answer is None:
            raise ProtocolError(f"{url} answered with an empty body")
        return answer

    async def content_length(self, url: str) -> int | None:
        """``HEAD url``'s Content-Length (None when the server does not say), with retries."""
        return (await self.head(url)).size

    async def head(self, url: str) -> ObjectHead:
        """``HEAD url``: its size and version as the server states them, with retries."""

        async def head() -> ObjectHead:
            response, _ = await self._send("HEAD", url, headers={"Accept-Encoding": "identity"})
            response.release()
            return ObjectHead.of(response)

        return await self._retrying(url, head)

    async def post_json(self, url: str, body: Any) -> Any:
        """POST ``body`` as JSON; the answer's JSON (``None`` for an empty body).

        POST is not idempotent: a replay after the request may have reached the server could
        create a second export job or dataset. So only failures that prove the request was not
        processed are retried with the run's policy: 429 and 503 (the service refused it before
        doing anything) and a connection that could not be opened. A timeout, a dropped
        connection or another 5xx is raised at once: the caller must look before trying again.
        """
        answer = await self._call("POST", url, json_body=body, may_retry=not_processed)
        return answer.body if isinstance(answer, Page) else None

    async def delete(self, url: str) -> None:
        """DELETE ``url`` (any 2xx is success), retried with the run's policy: it is idempotent."""
        await self._call("DELETE", url)

    @asynccontextmanager
    async def open_stream(
        self, url: str, *, offset: int = 0, end: int | None = None, if_match: str | None = None
    ) -> AsyncIterator[ByteStream]:
        """GET ``url``'s bytes from ``offset`` to ``end`` (inclusive; None: to the end).

        A Range header is sent when the request is not for the whole body; ``if_match`` names
        the version the bytes must be of (a 412, PreconditionFailedError, when it is not).
        """
        # identity: byte offsets must count the stored bytes, not a compressed encoding.
        headers = {"Accept-Encoding": "identity"}
        if offset > 0 or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end}"
        if if_match is not None:
            headers["If-Match"] = if_match
        response, _ = await self._send("GET", url, headers=headers)
        stream: ByteStream | None = None
        try:
            stream = ByteStream(response, url)
            yield stream
        finally:
            if stream is not None and stream.finished:
                response.release()
            else:
                response.close()  # unread bytes: the connection cannot be reused

    # -- IMS --------------------------------------------------------------------------------

    async def _request_grant(self) -> TokenGrant:
        """A new token from IMS (the OAuth provider calls this)."""
        if self._session is None:
            raise RuntimeError("use AEPClient as an async context manager")
        return await request_grant(
            self._session, self._credentials, before=self.trust.before, scrub=self._scrub
        )
