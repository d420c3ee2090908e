"""The one wrapper every route goes through, and the ``RecordedRequest`` it leaves behind.

The wrapper owns the order AEP's stack applies: latency, the gateway's header checks, the
rate-limit bucket, injected 5xx/429 refusals, then the route itself (IMS, another service, skips
the gateway and the faults). It sends the answer before recording it, so ``finished_s`` and
``body_bytes`` describe what really went out, and it counts the requests in flight so a test can
wait until everything received has been recorded. Nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio
from aiohttp import web

from asyncdl.emulator import gateway
from asyncdl.emulator.answers import Exchange, Route
from asyncdl.emulator.state import State

__all__ = ["Handler", "RecordedRequest", "Recorder"]

_RECORDED_HEADERS = (
    "authorization",
    "x-api-key",
    "x-gw-ims-org-id",
    "x-sandbox-name",
    "range",
    "host",
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedRequest:
    """One request as the emulator served it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-cased names, only the ones worth asserting on
    # token | catalog_batches | dataset | batch_files | directory | download | head | export |
    # landing_zone | other
    # (a single-file dataSetFile's bytes are a download or head, though its URL has no ?path=)
    kind: str
    status: int
    started_s: float  # time.monotonic()
    finished_s: float
    body_bytes: int  # body bytes actually handed to the connection
    fault: str | None  # 5xx | 429 | drop | truncate | rate_limit | response_limit
    part: str | None = None  # the generated part a download served (its name), if any


class Recorder:
    """Wraps routes into aiohttp handlers and keeps what they answered, newest last."""

    def __init__(self, state: State) -> None:
        self._state = state
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self._idle: anyio.Event | None = None  # created on demand: it needs a running loop

    async def wait_idle(self) -> None:
        """Wait until every request received so far is answered and recorded."""
        while self.in_flight:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    def endpoint(self, route_kind: str, route: Route) -> Handler:
        """The aiohttp handler of ``route``; ``route_kind`` names it in the records."""

        async def endpoint(request: web.Request) -> web.StreamResponse:
            exchange = Exchange(kind=_kind(route_kind, request), started_s=time.monotonic())
            response: web.StreamResponse | None = None
            self.in_flight += 1
            try:
                response = await self._answer(request, exchange, route)
                if not response.prepared:
                    await response.prepare(request)
                    await response.write_eof()
            except ConnectionError:
                if response is None:
                    raise
            finally:
                self._record(request, exchange, response)
                self.in_flight -= 1
                if not self.in_flight and self._idle is not None:
                    self._idle.set()
                    self._idle = None
            return response

        return endpoint

    async def _answer(
        self, request: web.Request, exchange: Exchange, route: Route
    ) -> web.StreamResponse:
        state = self._state
        if state.config.latency_s:
            await anyio.sleep(state.config.latency_s)
        if exchange.kind == "token":  # IMS is another service: no gateway, no injected faults
            return await route(request, exchange)
        config = state.config
        static = config.static_tokens
        refused = gateway.check_headers(
            request, config, token_valid=lambda t: state.tokens.valid(t, static=static)
        )
        if refused is not None:
            return refused
        injector = state.injector
        limited = injector.rate_limit_refusal()
        if limited is not None:
            exchange.fault = "rate_limit"
            return gateway.refusal_answer(limited, config)
        exchange.ticket = injector.ticket(request.method, request.raw_path)
        refusal = exchange.ticket.refusal()
        if refusal is not None:
            exchange.fault = refusal.kind
            return gateway.refusal_answer(refusal, config)
        return await route(request, exchange)

    def _record(
        self, request: web.Request, exchange: Exchange, response: web.StreamResponse | None
    ) -> None:
        response = response or exchange.response
        # No response at all: the route failed (aiohttp answers 500) or the client hung up first.
        status = response.status if response is not None else 500
        body_bytes = exchange.body_bytes
        if body_bytes is None:
            body_bytes = _body_bytes(request, response)
        headers = {n: request.headers[n] for n in _RECORDED_HEADERS if n in request.headers}
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=headers,
                kind=exchange.kind,
                status=status,
                started_s=exchange.started_s,
                finished_s=time.monotonic(),
                body_bytes=body_bytes,
                fault=exchange.fault,
                part=exchange.part,
            )
        )
        limit = self._state.config.record_limit
        if limit is not None and len(self.requests) > 2 * limit:
            # A long-running `asyncdl serve` keeps the newest requests, not all of them.
            del self.requests[:-limit]


def _kind(route_kind: str, request: web.Request) -> str:
    if route_kind != "files":
        return route_kind
    if "path" not in request.query:
        return "directory"
    return "head" if request.method == "HEAD" else "download"


def _body_bytes(request: web.Request, response: web.StreamResponse | None) -> int:
    """Body bytes of an answer the route did not count itself (JSON and sendfile answers)."""
    if response is None or request.method == "HEAD" or response.status in {204, 304, 416}:
        return 0
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        return len(response.body)
    return response.content_length or 0
