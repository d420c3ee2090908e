"""Listing shapes the emulator does not serve, against a scripted API: loops, capped pages,
odd entries, HEAD for lengths, file answers without names or lengths, unlistable dataSetFiles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
import pytest
from aiohttp import web

from asyncdl.client import AEPClient
from asyncdl.config import DownloadSettings
from asyncdl.errors import AuthError
from asyncdl.listing import Marker, OpenedPart, Rejected, iter_dataset_files, iter_parts, pages
from asyncdl.listing.pages import PAGES_AHEAD
from asyncdl.models import Part
from tests.helpers import Handler, scripted_api, static_credentials

EXPORT = "/data/foundation/export"
BATCH = "B1"


def json_pages(pages: Callable[[web.Request], Any]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(pages(request))

    return handler


def entry(name: str, length: str | None = "10", **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"name": name, **extra}
    if length is not None:
        item["length"] = length
    return item


def client_for(base: str) -> AEPClient:
    settings = DownloadSettings(base_url=base, max_attempts=2, backoff_base_s=0.0)
    return AEPClient(credentials=static_credentials(), settings=settings)


async def walk(routes: dict[str, Handler]) -> list[Any]:
    async with scripted_api(routes) as base, client_for(base) as client:
        entries = []
        async for item in iter_parts(client, BATCH):
            if isinstance(item, OpenedPart):
                item.stream.close()
            entries.append(item)
        return entries


def one_file(file_id: str = "F1") -> Handler:
    return json_pages(lambda r: {"data": [{"dataSetFileId": file_id}]})


async def test_pages_without_links_are_followed_by_offset_as_the_server_caps_them() -> None:
    """No ``_links`` at all and a server that caps pages at 50 (``_page.limit``) although 100
    were asked for: 120 files take three pages, not one."""
    files = [{"dataSetFileId": f"F{i}"} for i in range(120)]
    seen: list[str] = []

    def page(request: web.Request) -> dict[str, Any]:
        seen.append(request.query_string)
        start = int(request.query.get("start", "0"))
        return {"data": files[start : start + 50], "_page": {"limit": 50, "count": 120}}

    routes = {f"{EXPORT}/batches/{BATCH}/files": json_pages(page)}
    async with scripted_api(routes) as base, client_for(base) as client:
        listed = [f.id async for f in iter_dataset_files(client, BATCH)]
    assert listed == [f"F{i}" for i in range(120)]
    starts = [dict(parse_qsl(q)).get("start", "0") for q in seen]
    assert {"0", "50", "100"} <= set(starts)  # the three pages the listing needs
    assert len(seen) <= 3 + PAGES_AHEAD - 1  # and at most the read-ahead's waste past the end


def linked_page(files: list[dict[str, str]], start: int) -> web.StreamResponse:
    """The page of 10 of ``files`` at ``start``, linked to the next by offset."""
    body: dict[str, Any] = {"data": files[start : start + 10]}
    if start + 10 < len(files):
        body["_links"] = {"next": {"href": f"?start={start + 10}&limit=10"}}
    return web.json_response(body)


class PagedServer:
    """A listing of ``pages`` full pages of 10 linked by ``next``, each answer 30 ms late;
    records how many requests were in flight at once."""

    def __init__(self, pages: int, *, cursor: bool) -> None:
        self.files = [{"dataSetFileId": f"F{i}"} for i in range(pages * 10 - 3)]  # last short
        self.cursor = cursor
        self.requests: list[str] = []
        self.in_flight = self.most_in_flight = 0

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.query_string)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await anyio.sleep(0.03)
        finally:
            self.in_flight -= 1
        raw = request.query.get("start", "c_0" if self.cursor else "0")
        start = int(raw.partition("_")[2] if self.cursor else raw)
        body: dict[str, Any] = {"data": self.files[start : start + 10]}
        if start + 10 < len(self.files):
            following = f"c_{start + 10}" if self.cursor else str(start + 10)
            body["_links"] = {"next": {"href": f"?start={following}&limit=10"}}
        return web.json_response(body)


async def test_pages_linked_by_offset_are_asked_for_ahead() -> None:
    server = PagedServer(9, cursor=False)
    routes = {f"{EXPORT}/batches/{BATCH}/files": server.handler}
    async with scripted_api(routes) as base, client_for(base) as client:
        listed = [f.id async for f in iter_dataset_files(client, BATCH)]
    assert listed == [f"F{i}" for i in range(87)]  # in order, each once
    assert server.most_in_flight == PAGES_AHEAD > 1  # the pages after the first, a round at a time
    assert 9 <= len(server.requests) <= 9 + PAGES_AHEAD - 1


async def test_pages_linked_by_a_cursor_are_followed_one_at_a_time() -> None:
    server = PagedServer(5, cursor=True)
    routes = {f"{EXPORT}/batches/{BATCH}/files": server.handler}
    async with scripted_api(routes) as base, client_for(base) as client:
        listed = [f.id async for f in iter_dataset_files(client, BATCH)]
    assert listed == [f"F{i}" for i in range(47)]
    assert server.most_in_flight == 1
    assert len(server.requests) == 5


async def test_a_page_asked_for_ahead_that_fails_is_asked_for_again_when_needed() -> None:
    failed: list[str] = []
    files = [{"dataSetFileId": f"F{i}"} for i in range(35)]

    async def handler(request: web.Request) -> web.StreamResponse:
        start = int(request.query.get("start", "0"))
        if start == 20 and not failed:
            failed.append(request.query_string)
            return web.json_response({"error_code": "400", "message": "no"}, status=400)
        return linked_page(files, start)

    routes = {f"{EXPORT}/batches/{BATCH}/files": handler}
    async with scripted_api(routes) as base, client_for(base) as client:
        listed = [f.id async for f in iter_dataset_files(client, BATCH)]
    assert failed  # the speculative request for start=20 failed ...
    assert listed == [f"F{i}" for i in range(35)]  # ... and the listing is whole all the same


@pytest.mark.parametrize("trouble", ["refused with a long Retry-After", "stalled"])
async def test_the_listing_never_waits_on_a_page_asked_for_ahead(trouble: str) -> None:
    """The guess for start=20 is refused with a 30 s Retry-After (a retried guess would sleep
    through it) or never answers: the listing goes on once the needed pages are in."""
    guessed: list[str] = []
    files = [{"dataSetFileId": f"F{i}"} for i in range(35)]
    listed_all = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        start = int(request.query.get("start", "0"))
        if start == 20 and not guessed:
            guessed.append(request.query_string)
            if trouble == "stalled":
                await listed_all.wait()  # (released at the end, so the server can stop)
            return web.json_response({"message": "busy"}, status=503, headers={"Retry-After": "30"})
        return linked_page(files, start)

    routes = {f"{EXPORT}/batches/{BATCH}/files": handler}
    async with scripted_api(routes) as base, client_for(base) as client:
        with anyio.fail_after(10):  # a guess that was waited for takes 30 s or more
            listed = [f.id async for f in iter_dataset_files(client, BATCH)]
        listed_all.set()
    assert guessed  # start=20 was asked for ahead, and that request went wrong ...
    assert listed == [f"F{i}" for i in range(35)]  # ... and the listing is whole all the same


async def test_a_page_that_links_to_itself_ends_the_listing_once_read() -> None:
    def page(request: web.Request) -> dict[str, Any]:
        return {
            "data": [entry("a.parquet", _links={"self": {"href": "?path=a.parquet"}})],
            "_links": {"next": {"href": request.path_qs}},
        }

    entries = await walk(
        {f"{EXPORT}/batches/{BATCH}/files": one_file(), f"{EXPORT}/files/F1": json_pages(page)}
    )
    assert [e.name for e in entries if isinstance(e, Part)] == ["a.parquet"]


async def test_relative_hrefs_resolve_against_the_page_that_was_redirected_to() -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{EXPORT}/v2/files/F1?{request.query_string}")

    def page(request: web.Request) -> dict[str, Any]:
        if request.query.get("start") == "1":
            return {"data": [entry("b.parquet", _links={"self": {"href": "F1?path=b.parquet"}})]}
        return {
            "data": [entry("a.parquet", _links={"self": {"href": "F1?path=a.parquet"}})],
            "_links": {"next": {"href": "F1?start=1"}},
        }

    routes = {
        f"{EXPORT}/batches/{BATCH}/files": one_file(),
        f"{EXPORT}/files/F1": moved,
        f"{EXPORT}/v2/files/F1": json_pages(page),
    }
    entries = await walk(routes)
    parts = [e for e in entries if isinstance(e, Part)]
    assert [p.name for p in parts] == ["a.parquet", "b.parquet"]
    assert all(p.href.split("?")[0].endswith(f"{EXPORT}/v2/files/F1") for p in parts)


async def test_entries_without_a_length_are_sized_with_head_one_by_one() -> None:
    heads: list[str] = []

    async def directory(request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            name = request.query["path"]
            heads.append(name)
            if name == "gone.parquet":
                return web.json_response({"title": "Not Found"}, status=404)
            if name == "unknown.parquet":
                return web.StreamResponse(headers={"Transfer-Encoding": "chunked"})
            return web.Response(headers={"Content-Length": "1234"})
        items = [
            entry("sized.parquet"),
            entry("missing.parquet", length=None),
            entry("negative.parquet", length="-1"),
            entry("gone.parquet", length="junk"),
            entry("unknown.parquet", length=None),
        ]
        for item in items:
            item["_links"] = {"self": {"href": f"?path={item['name']}"}}
        return web.json_response({"data": items})

    entries = await walk(
        {f"{EXPORT}/batches/{BATCH}/files": one_file(), f"{EXPORT}/files/F1": directory}
    )
    sizes = {e.name: e.size for e in entries if isinstance(e, Part)}
    assert sizes == {"sized.parquet": 10, "missing.parquet": 1234, "negative.parquet": 1234}
    rejected = {e.name: str(e.error) for e in entries if isinstance(e, Rejected)}
    assert set(rejected) == {"gone.parquet", "unknown.parquet"}
    assert "HEAD failed" in rejected["gone.parquet"]
    assert "no Content-Length" in rejected["unknown.parquet"]
    assert sorted(heads) == sorted(
        ["missing.parquet", "negative.parquet", "gone.parquet", "unknown.parquet"]
    )
    # In listing order, whatever order the HEADs finished in.
    assert [e.name for e in entries] == [
        "sized.parquet",
        "missing.parquet",
        "negative.parquet",
        "gone.parquet",
        "unknown.parquet",
    ]


async def test_one_dataset_file_that_cannot_be_listed_is_reported_and_the_rest_listed() -> None:
    files = json_pages(lambda r: {"data": [{"dataSetFileId": "F1"}, {"dataSetFileId": "F2"}]})

    async def broken(request: web.Request) -> web.StreamResponse:
        return web.json_response({"title": "gone", "detail": "no such file"}, status=404)

    def fine(request: web.Request) -> dict[str, Any]:
        return {"data": [entry("a.parquet", _links={"self": {"href": "?path=a.parquet"}})]}

    entries = await walk(
        {
            f"{EXPORT}/batches/{BATCH}/files": files,
            f"{EXPORT}/files/F1": broken,
            f"{EXPORT}/files/F2": json_pages(fine),
        }
    )
    (rejected,) = [e for e in entries if isinstance(e, Rejected)]
    assert rejected.name == "dataSetFile F1"
    assert "could not be listed" in str(rejected.error)
    assert [e.name for e in entries if isinstance(e, Part)] == ["a.parquet"]


async def test_refused_credentials_during_a_directory_end_the_walk() -> None:
    async def refused(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"error_code": "403003", "message": "Api Key is invalid"}, status=403
        )

    with pytest.raises(AuthError):
        await walk({f"{EXPORT}/batches/{BATCH}/files": one_file(), f"{EXPORT}/files/F1": refused})


async def test_odd_entries_are_their_own_problem_and_hidden_files_are_markers() -> None:
    def page(request: web.Request) -> dict[str, Any]:
        return {
            "data": [
                "not an object",
                {"length": "3"},
                entry("_SUCCESS", "0"),
                entry("_started_123"),
                entry("_committed_123"),
                entry("scoreDate=2020-04-09/.part-0.parquet.crc"),
                entry("scoreDate=2020-04-09/part-0.parquet"),
                entry("scoreDate=2020-04-09/../../escape.parquet"),
            ]
        }

    entries = await walk(
        {f"{EXPORT}/batches/{BATCH}/files": one_file(), f"{EXPORT}/files/F1": json_pages(page)}
    )
    markers = [e.name for e in entries if isinstance(e, Marker)]
    assert markers == [
        "_SUCCESS",
        "_started_123",
        "_committed_123",
        "scoreDate=2020-04-09/.part-0.parquet.crc",
    ]
    (part,) = [e for e in entries if isinstance(e, Part)]
    assert part.relpath == "scoreDate=2020-04-09/part-0.parquet"
    assert part.href.endswith(f"{EXPORT}/files/F1?path=scoreDate%3D2020-04-09%2Fpart-0.parquet")
    rejected = [e for e in entries if isinstance(e, Rejected)]
    assert len(rejected) == 3
    assert "component '..'" in str(rejected[-1].error)


async def test_a_dataset_file_listed_twice_or_nested_in_itself_is_walked_once() -> None:
    files = json_pages(lambda r: {"data": [{"dataSetFileId": "F1"}, {"dataSetFileId": "F1"}]})

    def page(request: web.Request) -> dict[str, Any]:
        return {
            "data": [
                {"dataSetFileId": "F1", "_links": {"self": {"href": f"{EXPORT}/files/F1"}}},
                entry("a.parquet", _links={"self": {"href": "?path=a.parquet"}}),
            ]
        }

    entries = await walk(
        {f"{EXPORT}/batches/{BATCH}/files": files, f"{EXPORT}/files/F1": json_pages(page)}
    )
    assert [e.name for e in entries] == ["a.parquet"]


@pytest.mark.parametrize(
    ("headers", "name"),
    [
        ({"Content-Disposition": 'attachment; filename="scores.parquet"'}, "scores.parquet"),
        (
            {"Content-Disposition": "attachment; filename*=UTF-8''sc%C3%B6res.parquet"},
            "scöres.parquet",
        ),
        ({}, "F1"),
    ],
)
async def test_a_dataset_file_that_answers_with_bytes_is_one_open_part(
    headers: dict[str, str], name: str
) -> None:
    body = b"PAR1" + b"x" * 100

    async def file(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/octet-stream", headers=headers)

    routes = {f"{EXPORT}/batches/{BATCH}/files": one_file(), f"{EXPORT}/files/F1": file}
    async with scripted_api(routes) as base, client_for(base) as client:
        entries = [e async for e in iter_parts(client, BATCH)]
        (opened,) = entries
        assert isinstance(opened, OpenedPart)
        assert opened.part.name == opened.part.relpath == name
        assert opened.part.size == len(body)
        assert opened.part.href == f"{base}{EXPORT}/files/F1"
        read = b"".join([chunk async for chunk in opened.stream.chunks()])
        opened.stream.close()
    assert read == body


async def test_a_file_answer_without_a_length_or_with_an_unsafe_name_is_rejected() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"data")
        return response

    async def unsafe(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Disposition": 'attachment; filename="../escape.parquet"'}
        return web.Response(body=b"x", content_type="application/octet-stream", headers=headers)

    files = json_pages(lambda r: {"data": [{"dataSetFileId": "F1"}, {"dataSetFileId": "F2"}]})
    with anyio.fail_after(10):
        entries = await walk(
            {
                f"{EXPORT}/batches/{BATCH}/files": files,
                f"{EXPORT}/files/F1": chunked,
                f"{EXPORT}/files/F2": unsafe,
            }
        )
    assert [type(e) for e in entries] == [Rejected, Rejected]
    assert "no Content-Length" in str(entries[0].error)
    assert entries[1].name == "../escape.parquet"


async def test_the_batch_files_listing_yields_each_dataset_file_once() -> None:
    """Overlapping pages (a file added while the batch was paged) repeat an entry."""

    def page(request: web.Request) -> dict[str, Any]:
        if request.query.get("start") == "2":
            return {"data": [{"dataSetFileId": "F2"}, {"dataSetFileId": "F3"}]}
        return {"data": [{"dataSetFileId": "F1"}, {"dataSetFileId": "F2"}], "_page": {"limit": 2}}

    routes = {f"{EXPORT}/batches/{BATCH}/files": json_pages(page)}
    async with scripted_api(routes) as base, client_for(base) as client:
        listed = [f.id async for f in iter_dataset_files(client, BATCH)]
    assert listed == ["F1", "F2", "F3"]


async def test_a_guess_is_not_waited_on_for_the_backoff_of_the_needed_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The page that is needed is refused once with a 3 s Retry-After; the guess beside it
    never answers. Given "as long again" as the needed page took, the guess would hold the
    listing 3 s more; it gets GUESS_GRACE_S (here 0.05 s)."""
    monkeypatch.setattr(pages, "GUESS_GRACE_S", 0.05)
    files = [{"dataSetFileId": f"F{i}"} for i in range(35)]
    refused: list[str] = []
    guessed: list[str] = []
    listed_all = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        start = int(request.query.get("start", "0"))
        if start == 20 and not guessed:
            guessed.append(request.query_string)
            await listed_all.wait()  # the guess: never answers (released at the end)
        if start == 10 and not refused:
            refused.append(request.query_string)
            return web.json_response({"message": "busy"}, status=503, headers={"Retry-After": "3"})
        return linked_page(files, start)

    routes = {f"{EXPORT}/batches/{BATCH}/files": handler}
    async with scripted_api(routes) as base, client_for(base) as client:
        try:
            with anyio.fail_after(5):  # 3 s of Retry-After, and 3 s more were the guess waited on
                listed = [f.id async for f in iter_dataset_files(client, BATCH)]
        finally:
            listed_all.set()
    assert refused
    assert listed == [f"F{i}" for i in range(35)]
