"""What every route of the emulator shares: the per-request exchange the wrapper records, JSON
and RFC 7807 answers, query parameters checked the way AEP checks them, and the origin a client
reached us on. No route logic lives here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from asyncdl.emulator.config import MAX_PAGE_LIMIT
from asyncdl.emulator.faults import FaultTicket
from asyncdl.emulator.views import problem

__all__ = [
    "BadParam",
    "Exchange",
    "Route",
    "int_param",
    "json_answer",
    "optional_int",
    "origin_of",
    "page_params",
    "problem_answer",
]


@dataclass(slots=True)
class Exchange:
    """What the wrapper and the route learn about one request while answering it."""

    kind: str
    started_s: float  # time.monotonic() when the request arrived
    fault: str | None = None
    body_bytes: int | None = None
    ticket: FaultTicket | None = None
    # Set once a streamed answer's headers are out, so an interrupted stream records its status.
    response: web.StreamResponse | None = None
    part: str | None = None  # the part a download served (its generated name)

    def add_bytes(self, n: int) -> None:
        self.body_bytes = (self.body_bytes or 0) + n

    def on_response(self, response: web.StreamResponse) -> None:
        self.response = response


Route = Callable[[web.Request, Exchange], Awaitable[web.StreamResponse]]


class BadParam(Exception):
    """A query parameter AEP would refuse with a 400; ``detail`` says which and why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def json_answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


def problem_answer(status: int, title: str, detail: str, code: str) -> web.Response:
    return json_answer(status, problem(status=status, title=title, detail=detail, code=code))


def optional_int(query: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadParam(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise BadParam(f"{name} must be >= {minimum}, got {value}")
    return value


def int_param(query: Mapping[str, str], name: str, *, default: int, minimum: int) -> int:
    value = optional_int(query, name, minimum=minimum)
    return default if value is None else value


def page_params(request: web.Request, *, default: int, max_page_size: int) -> tuple[int, int]:
    """``start`` and ``limit`` of a Data Access listing; a named limit is capped, not refused."""
    limit = int_param(request.query, "limit", default=default, minimum=1)
    if "limit" in request.query:
        limit = min(limit, MAX_PAGE_LIMIT, max_page_size)
    return int_param(request.query, "start", default=0, minimum=0), limit


def origin_of(request: web.Request) -> str:
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
