"""aiohttp, imported once (without its unused CA loading when the command owns the process),
and the translation of its failures into the ``asyncdl.errors`` tree: the one place that
matches on aiohttp's exception types."""

from __future__ import annotations

import asyncio

from .. import tls
from ..errors import (
    AsyncdlError,
    ConnectError,
    ProtocolError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    StreamInterruptedError,
    TransportError,
)
from .origins import origin_text
from .signing import strip_query

with tls.aiohttp_import_guard():  # the command skips aiohttp's unused CA loading (tls.py)
    import aiohttp

__all__ = ["aiohttp", "not_processed", "translate"]


def translate(exc: BaseException, url: str) -> AsyncdlError:
    """One aiohttp/asyncio failure → our tree. Order matters: subclasses first."""
    if isinstance(exc, aiohttp.ClientConnectorError):  # includes certificate/SSL failures
        reason = strip_query(str(exc.os_error))
        return ConnectError(f"cannot connect to {origin_text(url)}: {reason}", url=url)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError | TimeoutError):
        return RequestTimeoutError(f"timed out waiting for {url}", url=url)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return StreamInterruptedError(f"connection dropped while reading {url}", url=url)
    # aiohttp's own text can quote the URL it sent, signature and all: never its query.
    if isinstance(exc, aiohttp.ClientConnectionError):
        return StreamInterruptedError(
            f"connection error on {url}: {strip_query(str(exc))}", url=url
        )
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.InvalidURL):
        return ProtocolError(f"malformed answer from {url}: {strip_query(str(exc))}")
    return TransportError(f"HTTP client error on {url}: {type(exc).__name__}", url=url)


def not_processed(error: AsyncdlError) -> bool:
    """Failures that prove the server did not act on a request (safe to send a POST again)."""
    if isinstance(error, ConnectError | RateLimitedError):
        return True
    return isinstance(error, ServerError) and error.status == 503
