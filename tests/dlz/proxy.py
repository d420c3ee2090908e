"""A small fault-injecting HTTP proxy in front of Azurite, for the landing zone tests.

The SASUri the emulator hands out points here; every request (obstore's listings and reads,
the client's HEADs and GETs) is forwarded as it came (path, query and headers, the SAS left
exactly as signed) and recorded. Faults, each armed by a test: cut a blob's body after some
bytes (once) and run a hook right after the cut, run a hook before a blob's first GET is
forwarded (rewrite it, delete it, revoke the SAS), and page every listing at a few results
(Azure's NextMarker, many times).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from yarl import URL

__all__ = ["Proxied", "StoreProxy"]

_HOP = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
)


@dataclass(frozen=True)
class Proxied:
    """One request as the proxy forwarded it."""

    method: str
    path: str  # decoded
    query: str  # raw, as sent (the SAS included)
    headers: dict[str, str]  # lower-cased names
    status: int


@dataclass
class StoreProxy:
    upstream: str  # http://127.0.0.1:PORT
    requests: list[Proxied] = field(default_factory=list)
    page_size: int | None = None  # every List Blobs call asks for this many at most
    cut: dict[str, int] = field(default_factory=dict)  # blob name suffix -> cut after N bytes
    before_get: dict[str, Callable[[], Awaitable[None] | None]] = field(default_factory=dict)
    after_cut: dict[str, Callable[[], None]] = field(default_factory=dict)
    url: str = ""

    def blob_gets(self, suffix: str = "") -> list[Proxied]:
        """GETs of data files (not listings, not the export manifests obstore reads)."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and _is_blob(r, suffix) and "/manifest-" not in r.path
        ]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = request.query_string
        if self.page_size is not None and "comp=list" in query:
            query += f"&maxresults={self.page_size}"
        path = request.raw_path.partition("?")[0]
        name = request.path
        if request.method == "GET" and "comp=" not in query:
            for suffix, hook in list(self.before_get.items()):
                if name.endswith(suffix):
                    del self.before_get[suffix]  # once
                    done = hook()
                    if done is not None:
                        await done
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        target = URL(f"{self.upstream}{path}" + (f"?{query}" if query else ""), encoded=True)
        async with self._session.request(
            request.method,
            target,
            headers=headers,
            data=body or None,
            allow_redirects=False,
            auto_decompress=False,
        ) as answer:
            self.requests.append(
                Proxied(
                    method=request.method,
                    path=name,
                    query=query,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    status=answer.status,
                )
            )
            out_headers = {
                k: v
                for k, v in answer.headers.items()
                if k.lower() not in _HOP - {"content-length"}
            }
            response = web.StreamResponse(status=answer.status, headers=out_headers)
            await response.prepare(request)
            cut, then = None, None
            if request.method == "GET" and answer.status in (200, 206):
                for suffix in list(self.cut):
                    if name.endswith(suffix):
                        cut, then = self.cut.pop(suffix), self.after_cut.pop(suffix, None)
            sent = 0
            async for chunk in answer.content.iter_chunked(1 << 16):
                if cut is not None and sent + len(chunk) >= cut:
                    await response.write(chunk[: cut - sent])
                    if request.transport is not None:
                        request.transport.close()  # mid-body: the client sees it end early
                    if then is not None:
                        then()
                    return response
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
            return response

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[StoreProxy]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        try:
            yield self
        finally:
            await self._session.close()
            await runner.cleanup()

    _session: aiohttp.ClientSession = field(init=False, repr=False)


def _is_blob(request: Proxied, suffix: str) -> bool:
    return (
        "comp=" not in request.query
        and "restype=" not in request.query
        and (request.path.endswith(suffix))
    )
