"""The emulated AEP endpoint: an aiohttp.web app on 127.0.0.1 that issues IMS tokens, enforces
the API gateway's header checks, answers Catalog and Data Access from the generated world,
injects the configured faults, and records every request it serves.

Every route goes through one wrapper (``_endpoint``) that owns the order AEP's stack applies:
latency, gateway checks, the rate-limit bucket, 5xx/429 faults, then the route itself. The
wrapper sends the answer before recording it, so ``finished_s`` and ``body_bytes`` describe what
really went out. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from aiohttp import web

from asyncdl.emulator import download
from asyncdl.emulator.config import MAX_PAGE_LIMIT, EmulatorConfig, Faults
from asyncdl.emulator.data import TruthBatch, World, build_world
from asyncdl.emulator.exports import EXPORT_JOBS_PATH, ExportJobs
from asyncdl.emulator.faults import FaultInjector, FaultTicket, Refusal, retry_after_header
from asyncdl.emulator.views import (
    Index,
    batch_files_json,
    batch_json,
    dataset_json,
    directory_json,
    gateway_error,
    problem,
    select_batches,
)
from asyncdl.models import CATALOG_PATH, EXPORT_PATH

__all__ = ["Emulator", "RecordedRequest", "running_emulator", "serve"]

IMS_TOKEN_PATH = "/ims/token/v3"
DEFAULT_BATCH_LIMIT = 20
#: Sandbox refusals reuse the gateway's "profile is not valid" code: the token's profile has no
#: access to that sandbox. AEP documents no dedicated code for it.
SANDBOX_ERROR_CODE = "403025"
_RECORDED_HEADERS = (
    "authorization",
    "x-api-key",
    "x-gw-ims-org-id",
    "x-sandbox-name",
    "range",
    "host",
)
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedRequest:
    """One request as the emulator served it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-cased names, only the ones worth asserting on
    # token | catalog_batches | dataset | batch_files | directory | download | head | export | other
    kind: str
    status: int
    started_s: float  # time.monotonic()
    finished_s: float
    body_bytes: int  # body bytes actually handed to the connection
    fault: str | None  # 5xx | 429 | drop | truncate | rate_limit


@dataclass(slots=True)
class _Exchange:
    """What the wrapper and the route learn about one request while answering it."""

    kind: str
    started_s: float
    fault: str | None = None
    body_bytes: int | None = None
    ticket: FaultTicket | None = None
    # Set once a streamed answer's headers are out, so an interrupted stream records its status.
    response: web.StreamResponse | None = None

    def add_bytes(self, n: int) -> None:
        self.body_bytes = (self.body_bytes or 0) + n

    def on_response(self, response: web.StreamResponse) -> None:
        self.response = response


_Route = Callable[[web.Request, _Exchange], Awaitable[web.StreamResponse]]


class _BadParam(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


def _problem(status: int, title: str, detail: str, code: str) -> web.Response:
    return _json(status, problem(status=status, title=title, detail=detail, code=code))


def _optional_int(query: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise _BadParam(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise _BadParam(f"{name} must be >= {minimum}, got {value}")
    return value


def _int_param(query: Mapping[str, str], name: str, *, default: int, minimum: int) -> int:
    value = _optional_int(query, name, minimum=minimum)
    return default if value is None else value


def _origin(request: web.Request) -> str:
    """The origin the client reached us on, always with an explicit port (as AEP writes it)."""
    scheme = request.scheme
    host = request.host
    if host.startswith("["):  # an IPv6 literal: the port, if any, follows the bracket
        end = host.find("]")
        name, rest = host[: end + 1], host[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, sep, port = host.rpartition(":")
        if not sep or not port.isdigit():
            name, port = host, ""
    if not port:
        port = "443" if scheme == "https" else "80"
    return f"{scheme}://{name}:{port}"


class Emulator:
    """The emulated API: generates its world at ``start()`` and serves it until ``stop()``."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._injector = FaultInjector(config.faults)
        self._tokens: dict[str, float] = {}  # IMS-issued token -> monotonic expiry
        self._world: World | None = None
        self._index: Index | None = None
        self._jobs: ExportJobs | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._in_flight = 0
        self._idle: anyio.Event | None = None  # created on demand: it needs a running loop
        self.requests: list[RecordedRequest] = []

    # -- public surface -------------------------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        return self._config

    @property
    def faults(self) -> Faults:
        return self._config.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        # New faults start from zero: fresh per-path counters and a full token bucket.
        self._config = dataclasses.replace(self._config, faults=faults)
        self._injector = FaultInjector(faults)

    @property
    def truth(self) -> tuple[TruthBatch, ...]:
        return self._require_world().batches

    @property
    def export_batches(self) -> tuple[TruthBatch, ...]:
        """Batches written by succeeded export jobs so far (not in ``truth``), oldest first."""
        return self._require_jobs().batches

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the emulator is not started")
        return self._base_url

    def batches_for(self, dataset_id: str, *, status: str = "success") -> list[TruthBatch]:
        """The dataset's batches with ``status``, newest first."""
        chosen = [b for b in self.truth if b.dataset_id == dataset_id and b.status == status]
        return sorted(chosen, key=lambda b: b.created_ms, reverse=True)

    def downloads(self, name: str | None = None) -> list[RecordedRequest]:
        """Recorded GET downloads, optionally only those of the part called ``name``."""
        return [
            r
            for r in self.requests
            if r.kind == "download" and (name is None or r.query.get("path") == name)
        ]

    def revoke_tokens(self) -> None:
        """Invalidate every IMS-issued token now (static tokens stay valid)."""
        self._tokens.clear()

    @property
    def in_flight(self) -> int:
        """Requests being answered now (not yet in ``requests``)."""
        return self._in_flight

    async def wait_idle(self) -> None:
        """Wait until every request received so far is answered and recorded.

        A client can finish reading an answer before the server has recorded it (the last
        bytes leave before the handler resumes), so call this before asserting on ``requests``.
        """
        while self._in_flight:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Generate (or load) the part cache off the event loop, then bind and serve."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already started")
        if self._world is None:
            self._world = await anyio.to_thread.run_sync(build_world, self._config)
            self._index = Index(self._world)
            self._jobs = ExportJobs(self._index, config=self._config)
        # No handler_cancellation: cancelling a FileResponse mid-open leaks its file object.
        # Paced streams notice a hang-up themselves (download._pace).
        runner = web.AppRunner(
            self._app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._runner = runner
        self._base_url = f"http://{shown}:{bound_port}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- plumbing -------------------------------------------------------------------------------

    def _require_world(self) -> World:
        if self._world is None:
            raise RuntimeError("the emulator is not started: no ground truth yet")
        return self._world

    def _require_index(self) -> Index:
        if self._index is None:
            raise RuntimeError("the emulator is not started")
        return self._index

    def _app(self) -> web.Application:
        app = web.Application()
        add = app.router.add_route
        add("POST", IMS_TOKEN_PATH, self._endpoint("token", self._token))
        add("GET", f"{CATALOG_PATH}/batches", self._endpoint("catalog_batches", self._batches))
        add("GET", f"{CATALOG_PATH}/batches/{{id}}", self._endpoint("catalog_batches", self._batch))
        add("GET", f"{CATALOG_PATH}/dataSets/{{id}}", self._endpoint("dataset", self._dataset))
        add("POST", f"{CATALOG_PATH}/dataSets", self._endpoint("dataset", self._dataset_create))
        files = self._endpoint("files", self._files)
        add(
            "GET",
            f"{EXPORT_PATH}/batches/{{id}}/files",
            self._endpoint("batch_files", self._batch_files),
        )
        add("GET", f"{EXPORT_PATH}/files/{{id}}", files)
        add("HEAD", f"{EXPORT_PATH}/files/{{id}}", files)
        add("POST", EXPORT_JOBS_PATH, self._endpoint("export", self._export_create))
        add("GET", EXPORT_JOBS_PATH, self._endpoint("export", self._export_list))
        # AEP's relative link.next is "/export/jobs/?limit=..": with the trailing slash.
        add("GET", f"{EXPORT_JOBS_PATH}/", self._endpoint("export", self._export_list))
        add("GET", f"{EXPORT_JOBS_PATH}/{{id}}", self._endpoint("export", self._export_get))
        add("DELETE", f"{EXPORT_JOBS_PATH}/{{id}}", self._endpoint("export", self._export_cancel))
        # Everything else is recorded and answered like AEP answers an unknown resource.
        add("*", "/{tail:.*}", self._endpoint("other", self._not_found))
        return app

    def _endpoint(
        self, route_kind: str, route: _Route
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            exchange = _Exchange(kind=_kind(route_kind, request), started_s=time.monotonic())
            response: web.StreamResponse | None = None
            self._in_flight += 1
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
                self._in_flight -= 1
                if not self._in_flight and self._idle is not None:
                    self._idle.set()
                    self._idle = None
            return response

        return endpoint

    async def _answer(
        self, request: web.Request, exchange: _Exchange, route: _Route
    ) -> web.StreamResponse:
        if self._config.latency_s:
            await anyio.sleep(self._config.latency_s)
        if exchange.kind == "token":  # IMS is another service: no gateway, no injected faults
            return await route(request, exchange)
        refused = self._gateway(request)
        if refused is not None:
            return refused
        injector = self._injector
        wait_s = injector.rate_limit_wait()
        if wait_s is not None:
            exchange.fault = "rate_limit"
            return self._refusal(
                Refusal(kind="rate_limit", status=429, retry_after_s=max(1, math.ceil(wait_s)))
            )
        exchange.ticket = injector.ticket(request.method, request.raw_path)
        refusal = exchange.ticket.refusal()
        if refusal is not None:
            exchange.fault = refusal.kind
            return self._refusal(refusal)
        return await route(request, exchange)

    def _record(
        self, request: web.Request, exchange: _Exchange, response: web.StreamResponse | None
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
            )
        )
        limit = self._config.record_limit
        if limit is not None and len(self.requests) > 2 * limit:
            # A long-running `asyncdl serve` keeps the newest requests, not all of them.
            del self.requests[:-limit]

    def _gateway(self, request: web.Request) -> web.Response | None:
        """AEP's gateway checks, in the gateway's order; None lets the request through."""
        config = self._config
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _json(401, gateway_error("403010", "Oauth token is missing."))
        api_key = request.headers.get("x-api-key")
        if not api_key:
            return _json(403, gateway_error("403000", "Api Key is required"))
        # OAuth server-to-server clients send their client id as the API key, as on AEP.
        if api_key not in {config.api_key, config.client_id}:
            return _json(403, gateway_error("403003", "Api Key is invalid"))
        if not self._token_valid(token):
            return _json(401, gateway_error("401013", "Oauth token is not valid"))
        org = request.headers.get("x-gw-ims-org-id")
        if not org:
            return _json(400, gateway_error("400003", "Missing header x-gw-ims-org-id"))
        if org != config.org_id:
            return _json(403, gateway_error("403025", "Profile is not valid"))
        sandbox = request.headers.get("x-sandbox-name") or "prod"
        if sandbox != config.sandbox:
            message = f"Profile is not valid for sandbox {sandbox!r}"
            return _json(403, gateway_error(SANDBOX_ERROR_CODE, message))
        return None

    def _token_valid(self, token: str) -> bool:
        if token in self._config.static_tokens:
            return True
        expiry = self._tokens.get(token)
        if expiry is None:
            return False
        if time.monotonic() >= expiry:
            del self._tokens[token]
            return False
        return True

    def _refusal(self, refusal: Refusal) -> web.Response:
        headers = {}
        if refusal.retry_after_s is not None:
            headers["Retry-After"] = retry_after_header(
                refusal.retry_after_s, http_date=self._config.faults.retry_after_http_date
            )
        if refusal.status == 429:
            if refusal.empty_body:
                return web.Response(status=429, headers=headers)
            return _json(429, gateway_error("429001", "Too many requests"), headers)
        body = problem(
            status=refusal.status,
            title=_REASONS[refusal.status],
            detail="The service could not answer this time; try again later (emulated fault).",
            code=f"EMU-{refusal.status}",
        )
        return _json(refusal.status, body, headers)

    # -- routes ---------------------------------------------------------------------------------

    async def _token(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        form = await request.post()
        # Some clients send the credentials as query parameters; the form wins when both exist.
        fields = {**request.query, **{k: v for k, v in form.items() if isinstance(v, str)}}
        if fields.get("grant_type") != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type"})
        config = self._config
        if (
            fields.get("client_id") != config.client_id
            or fields.get("client_secret") != config.client_secret
        ):
            description = "invalid client_id or client_secret"
            return _json(401, {"error": "invalid_client", "error_description": description})
        now = time.monotonic()
        self._tokens = {t: e for t, e in self._tokens.items() if e > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = now + config.token_lifetime_s
        body = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(config.token_lifetime_s),
        }
        return _json(200, body)

    async def _batches(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        query = request.query
        try:
            limit = min(
                _int_param(query, "limit", default=DEFAULT_BATCH_LIMIT, minimum=1), MAX_PAGE_LIMIT
            )
            start = _int_param(query, "start", default=0, minimum=0)
            after = _optional_int(query, "createdAfter", minimum=0)
            before = _optional_int(query, "createdBefore", minimum=0)
            order = query.get("orderBy", "asc:created")
            if order not in {"desc:created", "asc:created", "created"}:
                raise _BadParam(
                    f"orderBy {order!r} is not supported (use desc:created or asc:created)"
                )
        except _BadParam as exc:
            return _problem(400, "Bad Request", exc.detail, "CAT-2201-400")
        chosen = select_batches(
            self._require_index(),
            dataset=query.get("dataSet"),
            created_client=query.get("createdClient"),
            status=query.get("status"),
            batch_id=query.get("batch"),
            created_after=after,
            created_before=before,
            newest_first=order == "desc:created",
        )
        faults = self._config.faults
        body = {
            b.id: batch_json(
                self._require_index(),
                b,
                org_id=self._config.org_id,
                wrong_metrics=faults.wrong_metrics,
            )
            for b in chosen[start : start + limit]
        }
        return _json(200, body)

    async def _batch(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        """``GET /batches/{id}``: the same object-keyed-by-id shape as the listing."""
        index = self._require_index()
        batch = index.batches.get(request.match_info["id"])
        if batch is None:
            detail = f"batch {request.match_info['id']} not found"
            return _problem(404, "Not Found", detail, "CAT-2004-404")
        wrong = self._config.faults.wrong_metrics
        body = batch_json(index, batch, org_id=self._config.org_id, wrong_metrics=wrong)
        return _json(200, {batch.id: body})

    async def _dataset(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        index = self._require_index()
        dataset = index.datasets.get(request.match_info["id"])
        if dataset is None:
            detail = f"dataSet {request.match_info['id']} not found"
            return _problem(404, "Not Found", detail, "CAT-2004-404")
        return _json(200, dataset_json(index, dataset, org_id=self._config.org_id))

    def _page(self, request: web.Request, *, default: int) -> tuple[int, int]:
        limit = _int_param(request.query, "limit", default=default, minimum=1)
        if "limit" in request.query:
            limit = min(limit, MAX_PAGE_LIMIT, self._config.max_page_size)
        return _int_param(request.query, "start", default=0, minimum=0), limit

    async def _batch_files(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        index = self._require_index()
        batch = index.batches.get(request.match_info["id"])
        if batch is None:
            detail = f"batch {request.match_info['id']} not found"
            return _problem(404, "Not Found", detail, "DAS-2002-404")
        try:
            start, limit = self._page(request, default=self._config.batch_files_page_size)
        except _BadParam as exc:
            return _problem(400, "Bad Request", exc.detail, "DAS-2001-400")
        body = batch_files_json(
            batch, index.dataset_of(batch), origin=_origin(request), start=start, limit=limit
        )
        return _json(200, body)

    async def _files(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        index = self._require_index()
        directory = request.match_info["id"]
        faults = self._config.faults
        name = request.query.get("path")
        if name is None:
            entries = index.entries(directory, hostile=faults.hostile_names)
            if entries is None:
                return _problem(404, "Not Found", f"file {directory} not found", "DAS-2003-404")
            try:
                start, limit = self._page(request, default=self._config.page_size)
            except _BadParam as exc:
                return _problem(400, "Bad Request", exc.detail, "DAS-2001-400")
            origin = _origin(request)
            body = directory_json(
                entries,
                directory,
                origin=origin,
                part_origin=faults.foreign_origin or origin,
                start=start,
                limit=limit,
            )
            return _json(200, body)
        entry = index.lookup(directory, name, hostile=faults.hostile_names)
        if entry is None or entry.subdir is not None:
            detail = f"file {name!r} not found in {directory}"
            return _problem(404, "Not Found", detail, "DAS-2003-404")
        fault = None
        if request.method == "GET" and entry.length > 0 and exchange.ticket is not None:
            fault = exchange.ticket.body_fault()
        exchange.fault = fault
        bandwidth = self._config.bandwidth_bps
        if entry.part is not None and fault is None and bandwidth is None and faults.range_support:
            return download.fast_file(entry.part.path)
        exchange.body_bytes = 0
        source = entry.part.path if entry.part is not None else (entry.blob or b"")
        return await download.stream(
            request,
            source=source,
            size=entry.length,
            range_support=faults.range_support,
            bandwidth_bps=bandwidth,
            fault=fault,
            on_bytes=exchange.add_bytes,
            on_response=exchange.on_response,
        )

    async def _export_create(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        status, answer = await self._require_jobs().create(body)
        return _json(status, answer)

    async def _dataset_create(
        self, request: web.Request, exchange: _Exchange
    ) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        status, answer = self._require_jobs().create_dataset(body)
        return _json(status, answer)

    async def _export_list(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        try:
            limit = min(_int_param(request.query, "limit", default=50, minimum=1), MAX_PAGE_LIMIT)
            offset = _int_param(request.query, "offset", default=0, minimum=0)
        except _BadParam as exc:
            return _problem(400, "Bad Request", exc.detail, "UPS-EXPORT-400")
        status, answer = self._require_jobs().list(
            limit=limit, offset=offset, status=request.query.get("status")
        )
        return _json(status, answer)

    async def _export_get(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        status, answer = self._require_jobs().get(request.match_info["id"])
        return _json(status, answer)

    async def _export_cancel(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        status, answer = self._require_jobs().cancel(request.match_info["id"])
        return web.Response(status=status) if answer is None else _json(status, answer)

    async def _not_found(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        return _problem(404, "Not Found", f"no resource at {request.path}", "EMU-404")

    def _require_jobs(self) -> ExportJobs:
        if self._jobs is None:
            raise RuntimeError("the emulator is not started")
        return self._jobs


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


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Emulator]:
    """An emulator serving for the duration of the block."""
    emulator = Emulator(config)
    await emulator.start(host=host, port=port)
    try:
        yield emulator
    finally:
        with anyio.CancelScope(shield=True):
            await emulator.stop()


async def serve(
    config: EmulatorConfig, *, host: str, port: int, on_ready: Callable[[Emulator], None]
) -> None:
    """Serve until cancelled; ``on_ready`` sees the started emulator (its base_url) first."""
    async with running_emulator(config, host=host, port=port) as emulator:
        on_ready(emulator)
        await anyio.sleep_forever()
