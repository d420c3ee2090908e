"""The Data Access routes over the served view: a batch's dataSetFiles, a dataSetFile's answer
(a directory of parts, a listing of further dataSetFiles, or a complete file's bytes) and the
downloads of listed entries, with the download faults and the variants that shape them.

The request wrapper (recording.py) has already run the gateway checks and drawn the request's
fault ticket; these functions only decide what a correct Data Access would answer, then how
it is sent.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from asyncdl.emulator import download
from asyncdl.emulator.answers import (
    BadParam,
    Exchange,
    json_answer,
    origin_of,
    page_params,
    problem_answer,
)
from asyncdl.emulator.config import EmulatorConfig
from asyncdl.emulator.data import TruthPart
from asyncdl.emulator.variants import Directory, Nested, ServedBatch, ServedView, Single
from asyncdl.emulator.views import Index, Page, batch_files_json, directory_json, nested_json
from asyncdl.models import EXPORT_PATH

__all__ = ["batch_files", "files"]


async def batch_files(
    request: web.Request,
    exchange: Exchange,
    *,
    index: Index,
    view: ServedView,
    config: EmulatorConfig,
) -> web.StreamResponse:
    """``GET /batches/{id}/files``: the batch's dataSetFiles as served, one page."""
    batch_id = request.match_info["id"]
    served = view.batch(batch_id)
    if served is None:
        return problem_answer(404, "Not Found", f"batch {batch_id} not found", "DAS-2002-404")
    try:
        start, limit = page_params(
            request, default=config.batch_files_page_size, max_page_size=config.max_page_size
        )
    except BadParam as exc:
        return problem_answer(400, "Bad Request", exc.detail, "DAS-2001-400")
    page = Page(
        origin=origin_of(request),
        path=f"{EXPORT_PATH}/batches/{batch_id}/files",
        start=start,
        limit=limit,
        relative=config.variants.relative_hrefs,
    )
    dataset = index.dataset_of(served.batch)
    body = batch_files_json(
        served, dataset, page=page, unlinked=config.variants.unlinked_batch_files
    )
    return json_answer(200, body)


async def files(
    request: web.Request,
    exchange: Exchange,
    *,
    index: Index,
    view: ServedView,
    config: EmulatorConfig,
) -> web.StreamResponse:
    """``GET|HEAD /files/{id}[?path=NAME]``: a listing, or bytes."""
    file_id = request.match_info["id"]
    found = view.node(file_id)
    name = request.query.get("path")
    if found is None:
        return problem_answer(404, "Not Found", f"file {file_id} not found", "DAS-2003-404")
    served, node = found
    if isinstance(node, Single):
        if name is not None:  # a complete file has no entries to name
            detail = f"file {name!r} not found in {file_id}"
            return problem_answer(404, "Not Found", detail, "DAS-2003-404")
        # Recorded as what it is: a download, though its URL looks like a listing's.
        exchange.kind = "head" if request.method == "HEAD" else "download"
        return await _send_part(
            request, exchange, node.part, config=config, head_length=node.head_length, single=True
        )
    if name is None:
        return _listing(request, served, node, index=index, config=config)
    entry = (
        view.lookup(node, name, hostile=config.faults.hostile_names)
        if isinstance(node, Directory)
        else None
    )
    if entry is None or entry.subdir is not None:
        detail = f"file {name!r} not found in {file_id}"
        return problem_answer(404, "Not Found", detail, "DAS-2003-404")
    if entry.part is not None:
        return await _send_part(
            request, exchange, entry.part, config=config, head_length=entry.head_length
        )
    return await _send(request, exchange, entry.blob or b"", entry.length, config=config)


def _listing(
    request: web.Request,
    served: ServedBatch,
    node: Directory | Nested,
    *,
    index: Index,
    config: EmulatorConfig,
) -> web.Response:
    try:
        start, limit = page_params(
            request, default=config.page_size, max_page_size=config.max_page_size
        )
    except BadParam as exc:
        return problem_answer(400, "Bad Request", exc.detail, "DAS-2001-400")
    variants = config.variants
    page = Page(
        origin=origin_of(request),
        path=f"{EXPORT_PATH}/files/{node.id}",
        start=start,
        limit=limit,
        relative=variants.relative_hrefs,
        endless=variants.endless_next,
    )
    if isinstance(node, Nested):
        body = nested_json(served, node.children, index.dataset_of(served.batch), page=page)
    else:
        faults = config.faults
        entries = ServedView.entries(node, hostile=faults.hostile_names)
        body = directory_json(entries, node.id, page=page, part_origin=faults.foreign_origin)
    return json_answer(200, body)


async def _send_part(
    request: web.Request,
    exchange: Exchange,
    part: TruthPart,
    *,
    config: EmulatorConfig,
    head_length: bool,
    single: bool = False,
) -> web.StreamResponse:
    exchange.part = part.name
    return await _send(
        request,
        exchange,
        part.path,
        part.size,
        config=config,
        head_length=head_length,
        filename=part.name if single else None,
    )


async def _send(
    request: web.Request,
    exchange: Exchange,
    source: Path | bytes,
    size: int,
    *,
    config: EmulatorConfig,
    head_length: bool = True,
    filename: str | None = None,
) -> web.StreamResponse:
    """Bytes as every download is sent: the request's body fault, pacing, the variants."""
    fault = None
    if request.method == "GET" and size > 0 and exchange.ticket is not None:
        fault = exchange.ticket.body_fault()
    exchange.fault = fault
    variants = config.variants
    limit_s = variants.response_limit_s
    delivery = download.Delivery(
        range_support=config.faults.range_support,
        bandwidth_bps=config.bandwidth_bps,
        fault=fault,
        # Only what changes the answer leaves the sendfile path: unranged GETs stay fast.
        short_206=variants.short_206 and "Range" in request.headers,
        # Timed from the request's arrival, as AEP's limit is.
        deadline_s=None if limit_s is None else exchange.started_s + limit_s,
        head_length=head_length or request.method != "HEAD",
        filename=filename,
    )
    if isinstance(source, Path) and delivery.plain:
        return download.fast_file(source, delivery)
    exchange.body_bytes = 0

    def cut() -> None:
        exchange.fault = "response_limit"

    return await download.stream(
        request,
        source=source,
        size=size,
        delivery=delivery,
        on_bytes=exchange.add_bytes,
        on_response=exchange.on_response,
        on_cut=cut,
    )
