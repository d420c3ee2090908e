"""The HTTP side of the Profile export-jobs service (exports.py): create, list, get and cancel
jobs, and Catalog's ``POST /dataSets`` that makes the datasets jobs write into. Each route reads
the request, asks ``ExportJobs`` and turns its (status, body) pair into the answer.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from asyncdl.emulator.answers import BadParam, int_param, json_answer, problem_answer
from asyncdl.emulator.config import MAX_PAGE_LIMIT
from asyncdl.emulator.exports import BadCursor, ExportJobs

__all__ = ["cancel", "create", "create_dataset", "get", "listing"]


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:  # the service validates what it got: None is "no usable body"
        return None


async def create(request: web.Request, *, jobs: ExportJobs) -> web.Response:
    """``POST /export/jobs``."""
    status, answer = await jobs.create(await _json_body(request))
    return json_answer(status, answer)


async def create_dataset(request: web.Request, *, jobs: ExportJobs) -> web.Response:
    """``POST /dataSets`` (Catalog): an empty dataset for jobs to write into."""
    status, answer = jobs.create_dataset(await _json_body(request))
    return json_answer(status, answer)


def listing(request: web.Request, *, jobs: ExportJobs) -> web.Response:
    """``GET /export/jobs[/]?limit=&offset=&status=``: one page, newest first."""
    try:
        limit = min(int_param(request.query, "limit", default=50, minimum=1), MAX_PAGE_LIMIT)
        status, answer = jobs.list(
            limit=limit,
            offset=request.query.get("offset") or None,
            status=request.query.get("status"),
        )
    except (BadParam, BadCursor) as exc:
        return problem_answer(400, "Bad Request", str(exc), "UPS-EXPORT-400")
    return json_answer(status, answer)


def get(request: web.Request, *, jobs: ExportJobs) -> web.Response:
    """``GET /export/jobs/{id}``."""
    status, answer = jobs.get(request.match_info["id"])
    return json_answer(status, answer)


def cancel(request: web.Request, *, jobs: ExportJobs) -> web.Response:
    """``DELETE /export/jobs/{id}``: 200 with the job as it now is."""
    status, answer = jobs.cancel(request.match_info["id"])
    return json_answer(status, answer)
