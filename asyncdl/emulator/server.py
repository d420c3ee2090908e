"""The emulated AEP endpoint: an aiohttp.web app on 127.0.0.1 that issues IMS tokens, runs the
API gateway's checks (gateway.py), answers Catalog (catalog.py), Data Access (access.py) and
export jobs (exports.py) from the generated world as the served view (variants.py) arranges it,
injects the configured faults, and records every request it serves.

Every route goes through one wrapper (``_endpoint``) that owns the order AEP's stack applies:
latency, gateway checks, the rate-limit bucket, 5xx/429 faults, then the route itself. The
wrapper sends the answer before recording it, so ``finished_s`` and ``body_bytes`` describe what
really went out. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from aiohttp import web

from asyncdl.emulator import access, catalog, gateway
from asyncdl.emulator.answers import (
    BadParam,
    Exchange,
    Route,
    int_param,
    json_answer,
    problem_answer,
)
from asyncdl.emulator.config import MAX_PAGE_LIMIT, EmulatorConfig, Faults, Variants
from asyncdl.emulator.data import TruthBatch, TruthPart, World, build_world
from asyncdl.emulator.exports import EXPORT_JOBS_PATH, BadCursor, ExportJobs
from asyncdl.emulator.faults import RATE_LIMIT_ERROR, FaultInjector, Refusal
from asyncdl.emulator.variants import ServedBatch, ServedView
from asyncdl.emulator.views import Index
from asyncdl.models import CATALOG_PATH, EXPORT_PATH

__all__ = ["Emulator", "RecordedRequest", "running_emulator", "serve"]

IMS_TOKEN_PATH = "/ims/token/v3"
_RECORDED_HEADERS = (
    "authorization",
    "x-api-key",
    "x-gw-ims-org-id",
    "x-sandbox-name",
    "range",
    "host",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedRequest:
    """One request as the emulator served it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-cased names, only the ones worth asserting on
    # token | catalog_batches | dataset | batch_files | directory | download | head | export | other
    # (a single-file dataSetFile's bytes are a download or head, though its URL has no ?path=)
    kind: str
    status: int
    started_s: float  # time.monotonic()
    finished_s: float
    body_bytes: int  # body bytes actually handed to the connection
    fault: str | None  # 5xx | 429 | drop | truncate | rate_limit | response_limit
    part: str | None = None  # the generated part a download served (its name), if any


class Emulator:
    """The emulated API: generates its world at ``start()`` and serves it until ``stop()``.

    ``faults`` and ``variants`` can be replaced while it runs; the bytes never change.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._injector = FaultInjector(config.faults)
        self._tokens: dict[str, float] = {}  # IMS-issued token -> monotonic expiry
        self._world: World | None = None
        self._index: Index | None = None
        self._view: ServedView | None = None
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
    def variants(self) -> Variants:
        return self._config.variants

    @variants.setter
    def variants(self, variants: Variants) -> None:
        # The served view is rebuilt (per batch, on first use): listings change at once.
        self._config = dataclasses.replace(self._config, variants=variants)
        if self._index is not None:
            self._view = ServedView(self._index.batches, variants)
        if self._jobs is not None:
            self._jobs.quirks = variants.export_job_quirks

    def expected_files(self, batch_id: str) -> dict[str, TruthPart]:
        """Where a correct client puts each part the batch's served view offers: the path below
        ``OUT/<batch id>/`` → the part. That is the listed name (``scoreDate=.../part-...``
        under ``commit_markers``), or the Content-Disposition filename of a single-file
        dataSetFile. Part names are unique within a batch, so no rule for duplicate names is
        needed. Markers are not parts and are not here; a failed batch has none.
        """
        return dict(self._served(batch_id).expected)

    def served_file_ids(self, batch_id: str) -> list[str]:
        """The dataSetFileIds the batch-files listing shows for the batch, in order."""
        return list(self._served(batch_id).file_ids)

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
        """Recorded GET downloads, optionally only those of ``name``: a listed name asked for
        with ``?path=``, or the generated part's name (also for single-file dataSetFiles)."""
        return [
            r
            for r in self.requests
            if r.kind == "download"
            and (name is None or r.query.get("path") == name or r.part == name)
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
            self._view = ServedView(self._index.batches, self._config.variants)
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

    def _require_view(self) -> ServedView:
        if self._view is None:
            raise RuntimeError("the emulator is not started")
        return self._view

    def _served(self, batch_id: str) -> ServedBatch:
        served = self._require_view().batch(batch_id)
        if served is None:
            raise KeyError(f"no batch {batch_id}")
        return served

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
        self, route_kind: str, route: Route
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            exchange = Exchange(kind=_kind(route_kind, request), started_s=time.monotonic())
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
        self, request: web.Request, exchange: Exchange, route: Route
    ) -> web.StreamResponse:
        if self._config.latency_s:
            await anyio.sleep(self._config.latency_s)
        if exchange.kind == "token":  # IMS is another service: no gateway, no injected faults
            return await route(request, exchange)
        refused = gateway.check_headers(request, self._config, token_valid=self._token_valid)
        if refused is not None:
            return refused
        injector = self._injector
        wait_s = injector.rate_limit_wait()
        if wait_s is not None:
            exchange.fault = "rate_limit"
            return gateway.refusal_answer(
                Refusal(
                    kind="rate_limit",
                    status=429,
                    retry_after_s=max(1, math.ceil(wait_s)),
                    gateway=RATE_LIMIT_ERROR,
                ),
                self._config,
            )
        exchange.ticket = injector.ticket(request.method, request.raw_path)
        refusal = exchange.ticket.refusal()
        if refusal is not None:
            exchange.fault = refusal.kind
            return gateway.refusal_answer(refusal, self._config)
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
        limit = self._config.record_limit
        if limit is not None and len(self.requests) > 2 * limit:
            # A long-running `asyncdl serve` keeps the newest requests, not all of them.
            del self.requests[:-limit]

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

    # -- routes ---------------------------------------------------------------------------------

    async def _token(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        form = await request.post()
        # Some clients send the credentials as query parameters; the form wins when both exist.
        fields = {**request.query, **{k: v for k, v in form.items() if isinstance(v, str)}}
        if fields.get("grant_type") != "client_credentials":
            return json_answer(400, {"error": "unsupported_grant_type"})
        config = self._config
        if (
            fields.get("client_id") != config.client_id
            or fields.get("client_secret") != config.client_secret
        ):
            description = "invalid client_id or client_secret"
            return json_answer(401, {"error": "invalid_client", "error_description": description})
        now = time.monotonic()
        self._tokens = {t: e for t, e in self._tokens.items() if e > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = now + config.token_lifetime_s
        body = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(config.token_lifetime_s),
        }
        return json_answer(200, body)

    async def _batches(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        view, config = self._require_view(), self._config
        return catalog.batches(request, index=self._require_index(), view=view, config=config)

    async def _batch(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        view, config = self._require_view(), self._config
        return catalog.batch(request, index=self._require_index(), view=view, config=config)

    async def _dataset(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return catalog.dataset(request, index=self._require_index(), config=self._config)

    async def _batch_files(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return await access.batch_files(
            request,
            exchange,
            index=self._require_index(),
            view=self._require_view(),
            config=self._config,
        )

    async def _files(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return await access.files(
            request,
            exchange,
            index=self._require_index(),
            view=self._require_view(),
            config=self._config,
        )

    async def _export_create(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        status, answer = await self._require_jobs().create(body)
        return json_answer(status, answer)

    async def _dataset_create(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        status, answer = self._require_jobs().create_dataset(body)
        return json_answer(status, answer)

    async def _export_list(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        try:
            limit = min(int_param(request.query, "limit", default=50, minimum=1), MAX_PAGE_LIMIT)
            status, answer = self._require_jobs().list(
                limit=limit,
                offset=request.query.get("offset") or None,
                status=request.query.get("status"),
            )
        except (BadParam, BadCursor) as exc:
            return problem_answer(400, "Bad Request", str(exc), "UPS-EXPORT-400")
        return json_answer(status, answer)

    async def _export_get(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        status, answer = self._require_jobs().get(request.match_info["id"])
        return json_answer(status, answer)

    async def _export_cancel(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        status, answer = self._require_jobs().cancel(request.match_info["id"])
        return json_answer(status, answer)

    async def _not_found(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return problem_answer(404, "Not Found", f"no resource at {request.path}", "EMU-404")

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
