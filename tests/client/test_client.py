"""Origins compare with default ports made explicit; credentials never leave the base origin."""

from __future__ import annotations

import contextlib

import anyio
import pytest
from aiohttp import web

from asyncdl.client import AEPClient, filename_from, is_json_type, origin_of
from asyncdl.client.origins import OriginLock
from asyncdl.config import Credentials, DownloadSettings
from asyncdl.errors import APIError, ForeignOriginError, ProtocolError
from tests.helpers import scripted_api, static_credentials


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://platform.adobe.io/x", "https://platform.adobe.io:443/y?z=1"),
        ("HTTPS://Platform.Adobe.IO", "https://platform.adobe.io:443"),
        ("http://127.0.0.1:8080/a", "http://127.0.0.1:8080/b"),
        ("http://host/a", "http://host:80/b"),
    ],
)
def test_same_origin(a: str, b: str) -> None:
    assert origin_of(a) == origin_of(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://platform.adobe.io", "http://platform.adobe.io"),
        ("https://platform.adobe.io", "https://platform.adobe.io:8443"),
        ("https://platform.adobe.io", "https://platform.adobe.io.evil.example"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8081"),
    ],
)
def test_different_origin(a: str, b: str) -> None:
    assert origin_of(a) != origin_of(b)


@pytest.mark.parametrize(
    ("base", "url", "same"),
    [
        ("https://platform.adobe.io", "https://platform.adobe.io/data/x", True),
        ("https://platform.adobe.io", "https://platform.adobe.io:443/data/x", True),
        ("https://platform.adobe.io", "HTTPS://PLATFORM.adobe.io/data/x", True),  # parsed
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/data/x", True),
        ("http://127.0.0.1:8080", "http://127.0.0.1:80801/data/x", False),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080.evil.example/x", False),
        ("https://platform.adobe.io", "https://platform.adobe.io.evil.example/x", False),
        ("https://platform.adobe.io", "https://platform.adobe.io@evil.example/x", False),
        ("https://platform.adobe.io", "http://platform.adobe.io/data/x", False),
        ("http://[::1]:8080", "http://[::1]:8080/data/x", True),
        ("http://[::1]:8080", "http://[::2]:8080/data/x", False),
    ],
)
def test_credentials_go_only_to_the_base_origin_however_it_is_spelled(
    base: str, url: str, same: bool
) -> None:
    lock = OriginLock(base, frozenset())
    if same:
        assert lock.credentials_for(url)
    else:
        with pytest.raises((ForeignOriginError, ProtocolError)):  # ProtocolError: a bad port
            lock.credentials_for(url)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="part-0.parquet"', "part-0.parquet"),
        ("attachment; filename=part-0.parquet", "part-0.parquet"),
        ("attachment; filename*=UTF-8''sc%C3%B6res.parquet", "scöres.parquet"),
        ("attachment; filename=\"a.parquet\"; filename*=UTF-8''b.parquet", "b.parquet"),
        ('attachment; filename="../escape"', "../escape"),  # unchecked here: listing checks it
        ("attachment", None),
        ("", None),
        (None, None),
    ],
)
def test_content_disposition_names(header: str | None, name: str | None) -> None:
    assert filename_from(header) == name


@pytest.mark.parametrize(
    ("content_type", "json"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("application/problem+json", True),
        ("application/vnd.adobe.xed+json;version=1", True),
        ("application/octet-stream", False),
        ("text/html", False),
        ("application/parquet", False),
    ],
)
def test_json_media_types(content_type: str, json: bool) -> None:
    assert is_json_type(content_type) is json


async def test_json_calls_ask_for_json_and_never_read_another_answer() -> None:
    """An HTML error page (or a file) where JSON was documented: refused from its headers, so an
    endless body cannot hang the run or fill its memory."""
    accepts: list[str] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        accepts.append(request.headers.get("Accept", ""))
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while True:
                await response.write(b"<html>" * 10_000)
        return response

    async with scripted_api({"/data": endless}) as base:
        settings = DownloadSettings(base_url=base, max_attempts=1)
        async with AEPClient(credentials=static_credentials(), settings=settings) as client:
            with anyio.fail_after(10), pytest.raises(ProtocolError, match="text/html"):
                await client.get_json(f"{base}/data")
    assert accepts == ["application/json"]


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (
            {"errorCode": "PSS-1001", "errorMessage": "Sandbox unknown"},
            "PSS-1001",
            "Sandbox unknown",
        ),
        ({"code": 4001, "message": "bad"}, "4001", "bad"),
        ({"error_code": "403003", "message": "Api Key is invalid"}, "403003", "Api Key is invalid"),
        (
            {"type": "https://ns.adobe.com/x", "title": "T", "detail": "D"},
            "https://ns.adobe.com/x",
            "D",
        ),
    ],
)
async def test_error_bodies_in_every_spelling(
    body: dict[str, object], code: str, reason: str
) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=400)

    async with scripted_api({"/data": refuse}) as base:
        settings = DownloadSettings(base_url=base, max_attempts=1)
        async with AEPClient(credentials=static_credentials(), settings=settings) as client:
            with pytest.raises(APIError) as caught:
                await client.get_json(f"{base}/data")
    assert (caught.value.code, caught.value.reason) == (code, reason)


def test_the_sandbox_header_is_always_lower_case() -> None:
    assert Credentials(api_key="k", org_id="o", access_token="t", sandbox=" Dev-EU ").sandbox == (
        "dev-eu"
    )
