"""The HTTP boundary: the only module that imports the aiohttp client.

It owns the one ``ClientSession`` of a run, the four AEP headers, the origin lock (credentials go
only to the base URL's origin; other hosts must be allowed by name and never get credentials),
401 → single-flight token refresh → one replay, and the translation of every aiohttp and HTTP
failure into the ``asyncdl.errors`` tree. JSON reads are retried here with the run's policy;
body streams are not (``fetch`` resumes them from the bytes already on disk).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import unquote, urljoin, urlsplit

import anyio

from . import tls
from .auth import (
    OAuthTokenProvider,
    StaticTokenProvider,
    TokenGrant,
    TokenProvider,
    lifetime_s,
)
from .config import Credentials, DownloadSettings, queue_bound
from .errors import (
    APIError,
    AsyncdlError,
    AuthError,
    ConfigError,
    ConnectError,
    ForeignOriginError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    StreamInterruptedError,
    TransportError,
)
from .retry import RetryPolicy, parse_retry_after

with tls.aiohttp_import_guard():  # the command skips aiohttp's unused CA loading (tls.py)
    import aiohttp

__all__ = [
    "AEPClient",
    "ByteStream",
    "FileAnswer",
    "Origin",
    "Page",
    "RetryListener",
    "filename_from",
    "is_json_type",
    "origin_of",
]

_MAX_ERROR_BODY = 64 * 1024
_MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_JSON_ACCEPT = {"Accept": "application/json"}
# RFC 6266 / 5987: filename*=charset'lang'percent-encoded, and filename="quoted" or token.
_FILENAME_EXT = re.compile(r"(?:^|;)\s*filename\*\s*=\s*([\w!#$%&+^`{}~-]*)'[^']*'([^;]*)", re.I)
_FILENAME = re.compile(r'(?:^|;)\s*filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.I)
# Keys AEP's services use for an error's code and its text, in the order they are tried: the
# gateway's, Catalog/Data Access's RFC 7807, IMS's OAuth, and the camel-case some services use.
_ERROR_CODE_KEYS = ("error_code", "errorCode", "code", "error", "type")
_ERROR_TEXT_KEYS = ("message", "errorMessage", "detail", "error_description", "title")


def is_json_type(content_type: str) -> bool:
    """``application/json`` and its ``+json`` relatives (problem+json, vnd.adobe.*+json)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def filename_from(content_disposition: str | None) -> str | None:
    """The file name a ``Content-Disposition`` header gives (RFC 6266: ``filename*`` wins).

    Unchecked: the caller applies its own safe-name rules to it, as to any name from a server.
    """
    if not content_disposition:
        return None
    extended = _FILENAME_EXT.search(content_disposition)
    if extended is not None:
        charset, value = extended.group(1) or "utf-8", extended.group(2).strip()
        try:
            name = unquote(value, encoding=charset, errors="strict")
        except (LookupError, UnicodeDecodeError):
            name = ""
        if name.strip():
            return name.strip()
    plain = _FILENAME.search(content_disposition)
    if plain is None:
        return None
    name = plain.group(1) if plain.group(1) is not None else plain.group(2)
    name = re.sub(r"\\(.)", r"\1", name).strip()  # quoted-pair
    return name or None


@dataclass(frozen=True, slots=True)
class Origin:
    """scheme://host:port with the default port made explicit, so ``:443`` compares equal."""

    scheme: str
    host: str
    port: int


def origin_of(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError as exc:
        raise ProtocolError(f"invalid port in {url!r}") from exc
    return Origin(scheme, host, port)


class RetryListener(Protocol):
    """Told about every retry the client makes on its own (listing pages and other JSON calls).

    A ``ProgressListener`` is one; the client does not need to know.
    """

    def on_request_retry(self, url: str, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        """``url`` failed with ``error``; attempt ``attempt + 1`` follows after ``delay_s``."""


class _IgnoreRetries:
    def on_request_retry(self, url: str, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        pass


def _translate(exc: BaseException, url: str) -> AsyncdlError:
    """One aiohttp/asyncio failure → our tree. Order matters: subclasses first."""
    if isinstance(exc, aiohttp.ClientConnectorError):  # includes certificate/SSL failures
        return ConnectError(f"cannot connect to {origin_text(url)}: {exc.os_error}", url=url)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError | TimeoutError):
        return RequestTimeoutError(f"timed out waiting for {url}", url=url)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return StreamInterruptedError(f"connection dropped while reading {url}", url=url)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return StreamInterruptedError(f"connection error on {url}: {exc}", url=url)
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.InvalidURL):
        return ProtocolError(f"malformed answer from {url}: {exc}")
    return TransportError(f"HTTP client error on {url}: {type(exc).__name__}", url=url)


def _not_processed(error: AsyncdlError) -> bool:
    """Failures that prove the server did not act on a request (safe to send a POST again)."""
    if isinstance(error, ConnectError | RateLimitedError):
        return True
    return isinstance(error, ServerError) and error.status == 503


def origin_text(url: str) -> str:
    o = origin_of(url)
    return f"{o.scheme}://{o.host}:{o.port}"


class ByteStream:
    """An open download response; iterate ``chunks()`` once."""

    def __init__(self, response: aiohttp.ClientResponse, url: str, read_chunk_bytes: int) -> None:
        self._response = response
        self._url = url
        self._read_chunk_bytes = read_chunk_bytes
        self.status = response.status
        self.content_length = response.content_length
        self.url = url
        self.start = 0
        self.total: int | None = None
        if self.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None:
                raise ProtocolError(f"206 without a usable Content-Range from {url}")
            self.start = int(match.group(1))
            if match.group(3) != "*":
                self.total = int(match.group(3))
        elif self.content_length is not None:
            self.total = self.content_length
        self.finished = False

    @property
    def end(self) -> int | None:
        """One past the last byte this answer carries, when its headers say (None: unknown)."""
        if self.content_length is None:
            return None
        return self.start + self.content_length

    def close(self) -> None:
        """Give the connection up (unread bytes cannot be reused); safe to call twice."""
        if self.finished:
            self._response.release()
        else:
            self._response.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        reader = self._response.content
        try:
            while True:
                # readchunk() hands over one received buffer at a time; read(n) and readany()
                # join the buffered ones into a new bytes object, a second copy of every byte
                # on the event loop (the writer gathers buffers with writev anyway).
                chunk, end_of_http_chunk = await reader.readchunk()
                if not chunk:
                    if end_of_http_chunk:
                        continue  # a chunked-encoding boundary, not the end of the body
                    break
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc, self._url) from exc
        self.finished = True


@dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    """A JSON answer and the URL that gave it: the base its relative hrefs resolve against."""

    url: str
    body: Any


@dataclass(frozen=True, kw_only=True, slots=True)
class FileAnswer:
    """A listing call answered with a file's bytes instead of JSON (the Data Access spec allows it).

    ``stream`` is open and now belongs to the caller, who reads it or ``close()``s it.
    """

    url: str
    stream: ByteStream
    filename: str | None  # from Content-Disposition, unchecked
    content_type: str


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
        self._origin = origin_of(settings.base_url)
        # Spellings of the origin that need no parsing: a URL that starts with one of them has
        # exactly that origin (the authority ends at the first "/"). Anything else is parsed.
        host = f"[{self._origin.host}]" if ":" in self._origin.host else self._origin.host  # IPv6
        authority = f"{self._origin.scheme}://{host}"
        self._origin_prefixes: tuple[str, ...] = (f"{authority}:{self._origin.port}/",)
        if _DEFAULT_PORTS.get(self._origin.scheme) == self._origin.port:
            self._origin_prefixes += (f"{authority}/",)
        self._session: aiohttp.ClientSession | None = None
        self._tls = tls.new_context()
        self._trusting = False  # the CA store is in ``_tls``
        self._trust_lock: anyio.Lock | None = None
        self.tokens: TokenProvider
        if credentials.access_token:
            self.tokens = StaticTokenProvider(credentials.access_token)
        else:
            self.tokens = OAuthTokenProvider(self._request_grant)

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    def api_url(self, path: str) -> str:
        return self._settings.base_url + path

    async def __aenter__(self) -> Self:
        self._trust_lock = anyio.Lock()
        if self._settings.ca_bundle is not None:
            await self._load_trust()  # asked for: a bad bundle fails the run now, not each part
        connector = aiohttp.TCPConnector(
            # A ceiling, not the bound: StreamSlots keeps body streams to ``concurrency``. Above
            # it, the producer's listing request and the answers of single-file dataSetFiles,
            # which arrive open with their listing and wait in the bounded queue for a worker
            # (its capacity, ``queue_bound``), each hold a connection; a lower limit could leave
            # a worker's retry waiting for a connection that only a queued answer frees.
            limit=self._settings.concurrency + queue_bound(self._settings.concurrency) + 2,
            ssl=self._tls,
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

    async def _trust_before(self, url: str) -> None:
        """Load the CA store into the TLS context before the first request that may use TLS."""
        if self._trusting or urlsplit(url).scheme == "http":  # urlsplit strips what aiohttp does
            return
        await self._load_trust()

    async def _load_trust(self) -> None:
        assert self._trust_lock is not None, "use AEPClient as an async context manager"
        async with self._trust_lock:
            if self._trusting:
                return
            bundle = self._settings.ca_bundle
            try:
                await anyio.to_thread.run_sync(tls.load_trust, self._tls, bundle)
            except (OSError, ssl.SSLError) as exc:
                where = bundle or "the system's CA store"
                raise ConfigError(f"cannot load the certificates of {where}: {exc}") from exc
            self._trusting = True

    # -- credentials and origin lock -------------------------------------------------------

    def _credential_target(self, url: str) -> bool:
        """True when ``url`` may receive credentials; False for an allowed foreign host.

        Raises ForeignOriginError for anything else.
        """
        if url.startswith(self._origin_prefixes):
            return True
        origin = origin_of(url)
        if origin == self._origin:
            return True
        if origin.host in self._settings.allowed_hosts and origin.scheme in _DEFAULT_PORTS:
            return False
        raise ForeignOriginError(url)

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
        for secret in self._credentials.secrets():
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
    ) -> aiohttp.ClientResponse:
        """One request with credentials, manual redirects under the origin lock, 401 replay."""
        assert self._session is not None, "use AEPClient as an async context manager"
        refreshed = False
        for _ in range(_MAX_REDIRECTS + 1):
            send_credentials = self._credential_target(url)
            request_headers = dict(headers or {})
            if send_credentials:
                request_headers.update(await self._auth_headers())
            await self._trust_before(url)
            try:
                response = await self._session.request(
                    method,
                    url,
                    params=params,
                    headers=request_headers,
                    json=json_body,
                    allow_redirects=False,  # followed below, each hop through the origin lock
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _translate(exc, url) from exc
            if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                response.release()
                url = urljoin(url, response.headers["Location"])
                params = None  # the Location is complete
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method, json_body = "GET", None  # what browsers and RFC 9110 do
                continue
            if response.status < 400:
                return response
            error = await self._error_from(response, url, credentialed=send_credentials)
            if (
                isinstance(error, AuthError)
                and error.status == 401
                and send_credentials
                and self.tokens.can_refresh
                and not refreshed
            ):
                refreshed = True
                await self.tokens.refresh(request_headers["Authorization"].removeprefix("Bearer "))
                continue
            if isinstance(error, AuthError) and error.status == 401 and not self.tokens.can_refresh:
                error.reason = (error.reason or "") + (
                    " (AEP_ACCESS_TOKEN is a static token and cannot be refreshed; "
                    "set AEP_CLIENT_ID and AEP_CLIENT_SECRET for automatic renewal)"
                )
                error.args = (f"HTTP 401 [{error.code}]: {error.reason}",)
            raise error
        raise ProtocolError(f"more than {_MAX_REDIRECTS} redirects from {url}")

    async def _error_from(
        self, response: aiohttp.ClientResponse, url: str, *, credentialed: bool = True
    ) -> APIError:
        """Read AEP's error body (gateway, RFC 7807 or IMS shape) into the matching APIError.

        A 401/403 from a host we sent no credentials to is that host's refusal, not a problem
        with the user's credentials: it stays a plain APIError (a part failure, not fatal).
        """
        try:
            raw = await response.content.read(_MAX_ERROR_BODY)
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
        finally:
            response.release()
        code: str | None = None
        reason: str | None = None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if isinstance(body, dict):
            raw_code = next((body[k] for k in _ERROR_CODE_KEYS if body.get(k) is not None), None)
            code = str(raw_code) if raw_code is not None else None
            for key in _ERROR_TEXT_KEYS:
                value = body.get(key)
                if isinstance(value, str) and value:
                    reason = value
                    break
        elif raw and not raw.lstrip().startswith(b"<"):
            reason = raw[:200].decode("utf-8", "replace").strip() or None
        retry_after = parse_retry_after(
            response.headers.get("Retry-After"), now_epoch_s=time.time()
        )
        status = response.status
        cls: type[APIError] = APIError
        if status in (401, 403) and credentialed:
            cls = AuthError
        elif status == 404:
            cls = NotFoundError
        elif status == 429:
            cls = RateLimitedError
        elif status >= 500:
            cls = ServerError
        return cls(
            status=status,
            url=url,
            code=self._scrub(code),
            reason=self._scrub(reason),
            retry_after_s=retry_after,
        )

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
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._exchange(
                    method, url, params=params, json_body=json_body, accept_file=accept_file
                )
            except AsyncdlError as error:
                delay = self._retry.delay_s(
                    error, attempt=attempt, elapsed_s=time.monotonic() - started
                )
                if delay is None or not may_retry(error):
                    raise
                self._retry_listener.on_request_retry(url, attempt, error, delay)
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
        response = await self._send(
            method, url, params=params, headers=_JSON_ACCEPT, json_body=json_body
        )
        answered = str(response.url)  # after redirects: the base of the page's relative hrefs
        content_type = response.headers.get("Content-Type", "")
        disposition = response.headers.get("Content-Disposition")
        # No Content-Type at all is taken for JSON, as AEP's older answers were; a
        # Content-Disposition says "a file" whatever the type claims.
        if (is_json_type(content_type) or not content_type) and not disposition:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _translate(exc, url) from exc
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
            stream = ByteStream(response, answered, self._settings.read_chunk_bytes)
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
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._send("HEAD", url, headers={"Accept-Encoding": "identity"})
                response.release()
                raw = response.headers.get("Content-Length", "").strip()
                return int(raw) if raw.isdigit() else None
            except AsyncdlError as error:
                delay = self._retry.delay_s(
                    error, attempt=attempt, elapsed_s=time.monotonic() - started
                )
                if delay is None:
                    raise
                self._retry_listener.on_request_retry(url, attempt, error, delay)
                await anyio.sleep(delay)

    async def post_json(self, url: str, body: Any) -> Any:
        """POST ``body`` as JSON; the answer's JSON (``None`` for an empty body).

        POST is not idempotent: a replay after the request may have reached the server could
        create a second export job or dataset. So only failures that prove the request was not
        processed are retried with the run's policy: 429 and 503 (the service refused it before
        doing anything) and a connection that could not be opened. A timeout, a dropped
        connection or another 5xx is raised at once: the caller must look before trying again.
        """
        answer = await self._call("POST", url, json_body=body, may_retry=_not_processed)
        return answer.body if isinstance(answer, Page) else None

    async def delete(self, url: str) -> None:
        """DELETE ``url`` (any 2xx is success), retried with the run's policy: it is idempotent."""
        await self._call("DELETE", url)

    @asynccontextmanager
    async def open_stream(
        self, url: str, *, offset: int = 0, end: int | None = None
    ) -> AsyncIterator[ByteStream]:
        """GET ``url``'s bytes from ``offset`` to ``end`` (inclusive; None: to the end).

        A Range header is sent when the request is not for the whole body.
        """
        # identity: byte offsets must count the stored bytes, not a compressed encoding.
        headers = {"Accept-Encoding": "identity"}
        if offset > 0 or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end}"
        response = await self._send("GET", url, headers=headers)
        stream: ByteStream | None = None
        try:
            stream = ByteStream(response, url, self._settings.read_chunk_bytes)
            yield stream
        finally:
            if stream is not None and stream.finished:
                response.release()
            else:
                response.close()  # unread bytes: the connection cannot be reused

    # -- IMS --------------------------------------------------------------------------------

    async def _request_grant(self) -> TokenGrant:
        """POST client credentials to IMS; the answer never leaves this function unscrubbed."""
        assert self._session is not None
        creds = self._credentials
        url = creds.ims_url + "/ims/token/v3"
        form = {
            "grant_type": "client_credentials",
            "client_id": creds.client_id or "",
            "client_secret": creds.client_secret or "",
            "scope": creds.scopes,
        }
        await self._trust_before(url)
        try:
            response = await self._session.post(url, data=form, allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc, url) from exc
        if response.status >= 400:
            error = await self._error_from(response, url)
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
