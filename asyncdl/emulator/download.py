"""Serving one file's bytes: ``web.FileResponse`` (sendfile) when nothing special is due, else a
range-aware stream read in 256 KiB chunks off the loop, paced to a byte rate, that can also cut
the connection half-way ("drop"), send a consistent but short body ("truncate"), answer a 206
with less than was asked (``short_206``), or cut a body still sending at the response limit.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

__all__ = ["CHUNK_BYTES", "Delivery", "fast_file", "stream"]

CHUNK_BYTES = 256 * 1024
OCTET_STREAM = "application/octet-stream"
# How often a paced stream checks whether its client is still there.
_HANGUP_POLL_S = 0.02


class _FileResponse(web.FileResponse):
    """A FileResponse that may be prepared twice, like every other response.

    The server sends answers itself (to record when they finished) and aiohttp prepares the
    returned response again; FileResponse would redo its work and fail, the base class does not.
    """

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await web.StreamResponse.prepare(self, request)
        return await super().prepare(request)


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivery:
    """How one file's answer is sent: the config's pacing and the request's fault draws."""

    range_support: bool = True
    bandwidth_bps: int | None = None
    fault: str | None = None  # "drop" | "truncate"
    short_206: bool = False  # a 206 sends half of the range asked for
    deadline_s: float | None = None  # time.monotonic() past which a body still sending is cut
    head_length: bool = True  # False: a HEAD answers without Content-Length
    filename: str | None = None  # a complete file's Content-Disposition

    @property
    def plain(self) -> bool:
        """Whether sendfile can answer: nothing to pace, shorten, cut or leave out."""
        return (
            self.range_support
            and self.bandwidth_bps is None
            and self.fault is None
            and not self.short_206
            and self.deadline_s is None
            and self.head_length
        )

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": OCTET_STREAM}
        if self.range_support:
            headers["Accept-Ranges"] = "bytes"
        if self.filename is not None:
            headers["Content-Disposition"] = f'attachment; filename="{self.filename}"'
        return headers


def fast_file(path: Path, delivery: Delivery) -> web.FileResponse:
    """The sendfile path; aiohttp handles Range, 206/416 and HEAD itself."""
    headers = delivery.headers()
    headers.pop("Accept-Ranges", None)  # FileResponse writes its own
    return _FileResponse(path, chunk_size=CHUNK_BYTES, headers=headers)


def _unsatisfiable(total: int, headers: dict[str, str]) -> web.Response:
    return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{total}"})


async def stream(
    request: web.Request,
    *,
    source: Path | bytes,
    size: int,
    delivery: Delivery,
    on_bytes: Callable[[int], None],
    on_response: Callable[[web.StreamResponse], None],
    on_cut: Callable[[], None],
) -> web.StreamResponse:
    """Answer a GET or HEAD for ``source`` (``size`` bytes) as ``delivery`` says.

    A truncated answer is a quarter shorter than the range asked for, and its Content-Length
    and Content-Range describe a file that ends right there: only the listing's length can
    reveal it, whatever offset a resuming client starts from. A short 206 is honest instead:
    its Content-Range ends where the body does and names the real total. ``on_cut`` hears of
    a body cut at the response limit.
    """
    headers = delivery.headers()
    status, start, count = 200, 0, size
    if delivery.range_support and "Range" in request.headers:
        try:
            wanted = request.http_range
        except ValueError:
            return _unsatisfiable(size, headers)
        if wanted.start is not None:
            if wanted.start < 0:  # a suffix range: the last N bytes
                start = max(0, size + wanted.start)
                count = size - start
            else:
                start = wanted.start
                stop = size if wanted.stop is None else min(wanted.stop, size)
                count = stop - start
            if start >= size or count <= 0:
                return _unsatisfiable(size, headers)
            status = 206
    total = size
    if delivery.fault == "truncate" and count >= 2:
        count -= max(1, count // 4)
        total = start + count
    if status == 206 and delivery.short_206:
        count = max(1, count // 2)  # "can be different from what user requested"
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{start + count - 1}/{total}"
    response = web.StreamResponse(status=status, headers=headers)
    if request.method != "HEAD" or delivery.head_length:
        response.content_length = count
    on_response(response)
    await response.prepare(request)
    if request.method == "HEAD" or count == 0:
        return response
    sending = count // 2 if delivery.fault == "drop" else count
    try:
        with anyio.move_on_after(_left(delivery.deadline_s)) as limit:
            await _pump(
                request,
                response,
                source,
                start=start,
                count=sending,
                rate=delivery.bandwidth_bps,
                on_bytes=on_bytes,
            )
        if limit.cancelled_caught:
            on_cut()
            _cut(request)
        elif delivery.fault == "drop":
            _cut(request)
    except ConnectionError:
        pass  # the client went away: nothing left to answer, the caller records what was sent
    return response


def _left(deadline_s: float | None) -> float:
    """Seconds until ``deadline_s`` (monotonic), for a cancel scope; inf when there is none."""
    if deadline_s is None:
        return math.inf
    return max(0.0, deadline_s - time.monotonic())


async def _pace(request: web.Request, delay_s: float) -> None:
    """Sleep ``delay_s``, but end early with ConnectionResetError if the client hangs up.

    aiohttp does not cancel handlers on disconnect (that would leak FileResponse's file), so a
    paced stream looks itself: the request is then recorded when the client goes, not later.
    """
    deadline = time.monotonic() + delay_s
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await anyio.sleep(min(left, _HANGUP_POLL_S))


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    source: Path | bytes,
    *,
    start: int,
    count: int,
    rate: int | None,
    on_bytes: Callable[[int], None],
) -> None:
    # Small chunks under a byte rate keep the pacing smooth (about 20 writes per second).
    chunk = CHUNK_BYTES if rate is None else max(1024, min(CHUNK_BYTES, rate // 20))
    file = (
        await anyio.open_file(source, "rb")
        if isinstance(source, Path)
        else anyio.wrap_file(io.BytesIO(source))
    )
    began = time.monotonic()
    sent = 0
    try:
        await file.seek(start)
        while sent < count:
            data = await file.read(min(chunk, count - sent))
            if not data:
                break  # the file shrank under us; the client will see a short body
            if rate is not None:
                # Wait before writing, as a link would, so the last byte goes out at N / rate and
                # the answer is recorded the moment it is complete (not one pause later).
                early = (sent + len(data)) / rate - (time.monotonic() - began)
                if early > 0:
                    await _pace(request, early)
            await response.write(data)
            sent += len(data)
            on_bytes(len(data))
    finally:
        # Closed synchronously: closing a read-only file cannot block, and an awaited close
        # could itself be cancelled (server shutdown) and leak the descriptor.
        file.wrapped.close()


def _cut(request: web.Request) -> None:
    """End the connection mid-body: the client sees it close before Content-Length was reached.

    ``close()`` (not ``abort()``) first flushes what was written, so "about half" really arrives.
    """
    if request.transport is not None:
        request.transport.close()
