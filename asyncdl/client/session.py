"""The run's connection to AEP, as the calls the rest of asyncdl makes: JSON exchanges (retried
with the run's policy), pages, files answered in place of JSON, HEAD, byte streams. How each
request goes out and comes back is ``sender.py``'s: credentials only to the API's origin, a
store's signature on a store's URLs, redirects through the origin lock, one 401 replay.

JSON reads are retried here with the run's policy; body streams are not (``fetch`` resumes them
from what it wrote).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import anyio

from ..config import Credentials, DownloadSettings
from ..errors import AsyncdlError, ProtocolError
from ..retry import RetryPolicy
from .answers import ByteStream, FileAnswer, ObjectHead, Page, filename_from, is_json_type
from .sender import Sender
from .signing import RequestSigner
from .transport import aiohttp, not_processed, translate

__all__ = ["AEPClient", "RetryListener"]

_JSON_ACCEPT = {"Accept": "application/json"}

T = TypeVar("T")


class RetryListener(Protocol):
    """Told about every retry the client makes on its own (listing pages and other JSON calls).

    A ``ProgressListener`` is one; the client does not need to know.
    """

    def on_request_retry(self, url: str, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        """``url`` failed with ``error``; attempt ``attempt + 1`` follows after ``delay_s``."""


def _always(error: AsyncdlError) -> bool:
    return True


def _never(error: AsyncdlError) -> bool:
    return False


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
        self._sender = Sender(credentials=credentials, settings=settings)
        self._send = self._sender.send
        self.origins = self._sender.origins
        self.trust = self._sender.trust
        self.tokens = self._sender.tokens

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
        self._sender.sign_requests(signer)

    async def __aenter__(self) -> Self:
        await self._sender.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._sender.__aexit__(exc_type, exc, tb)

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

    async def get_page(
        self, url: str, *, params: Mapping[str, str] | None = None, retry: bool = True
    ) -> Page:
        """GET a JSON document with the URL that answered it (for relative hrefs); with
        ``retry=False`` one attempt only (a guess nobody waits for must not back off)."""
        answer = await self._call("GET", url, params=params, may_retry=_always if retry else _never)
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
