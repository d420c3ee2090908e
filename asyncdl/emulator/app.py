"""The emulator's routing table: which method and path reach which route module (ims, catalog,
access, jobs, landingzone), each through the recording wrapper, with the state it answers from
read at request time (so replaced faults, variants and added batches apply to the next request).
Anything else is recorded and answered like AEP answers an unknown resource.
"""

from __future__ import annotations

from aiohttp import web

from asyncdl.emulator import access, catalog, ims, jobs, landingzone
from asyncdl.emulator.answers import Exchange, problem_answer
from asyncdl.emulator.exports import EXPORT_JOBS_PATH
from asyncdl.emulator.recording import Recorder
from asyncdl.emulator.state import State
from asyncdl.models import CATALOG_PATH, EXPORT_PATH, LANDING_ZONE_CREDENTIALS_PATH

__all__ = ["build_app"]


def build_app(state: State, recorder: Recorder) -> web.Application:
    """A fresh aiohttp application serving ``state``, recorded by ``recorder``."""

    async def token(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return await ims.token(request, config=state.config, tokens=state.tokens)

    async def batches(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return catalog.batches(request, index=state.index, view=state.view, config=state.config)

    async def batch(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return catalog.batch(request, index=state.index, view=state.view, config=state.config)

    async def dataset(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return catalog.dataset(request, index=state.index, config=state.config)

    async def dataset_create(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return await jobs.create_dataset(request, jobs=state.jobs)

    async def batch_files(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return await access.batch_files(
            request, exchange, index=state.index, view=state.view, config=state.config
        )

    async def files(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return await access.files(
            request, exchange, index=state.index, view=state.view, config=state.config
        )

    async def export_create(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return await jobs.create(request, jobs=state.jobs)

    async def export_list(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return jobs.listing(request, jobs=state.jobs)

    async def export_get(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return jobs.get(request, jobs=state.jobs)

    async def export_cancel(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return jobs.cancel(request, jobs=state.jobs)

    async def landing_zone(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return landingzone.credentials(request, config=state.config)

    async def not_found(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return problem_answer(404, "Not Found", f"no resource at {request.path}", "EMU-404")

    app = web.Application()
    add = app.router.add_route
    wrap = recorder.endpoint
    add("POST", ims.IMS_TOKEN_PATH, wrap("token", token))
    add("GET", f"{CATALOG_PATH}/batches", wrap("catalog_batches", batches))
    add("GET", f"{CATALOG_PATH}/batches/{{id}}", wrap("catalog_batches", batch))
    add("GET", f"{CATALOG_PATH}/dataSets/{{id}}", wrap("dataset", dataset))
    add("POST", f"{CATALOG_PATH}/dataSets", wrap("dataset", dataset_create))
    add("GET", f"{EXPORT_PATH}/batches/{{id}}/files", wrap("batch_files", batch_files))
    file_handler = wrap("files", files)  # recorded as directory, download or head
    add("GET", f"{EXPORT_PATH}/files/{{id}}", file_handler)
    add("HEAD", f"{EXPORT_PATH}/files/{{id}}", file_handler)
    add("POST", EXPORT_JOBS_PATH, wrap("export", export_create))
    add("GET", EXPORT_JOBS_PATH, wrap("export", export_list))
    # AEP's relative link.next is "/export/jobs/?limit=..": with the trailing slash.
    add("GET", f"{EXPORT_JOBS_PATH}/", wrap("export", export_list))
    add("GET", f"{EXPORT_JOBS_PATH}/{{id}}", wrap("export", export_get))
    add("DELETE", f"{EXPORT_JOBS_PATH}/{{id}}", wrap("export", export_cancel))
    add("GET", LANDING_ZONE_CREDENTIALS_PATH, wrap("landing_zone", landing_zone))
    add("*", "/{tail:.*}", wrap("other", not_found))
    return app
