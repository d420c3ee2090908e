"""Requests to a store signed as they are sent: the signature exactly as signed, none of AEP's
headers, a store's 403 its own refusal (SourceAuthError), errors without the signature."""

from __future__ import annotations

import pytest
from aiohttp import web

from asyncdl.client import AEPClient, SignedRequest
from asyncdl.config import DownloadSettings
from asyncdl.errors import (
    ConfigError,
    SourceAuthError,
    StreamInterruptedError,
)
from tests.helpers import scripted_api, static_credentials


class _Signer:
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def covers(self, url: str) -> bool:
        return url.startswith(f"{self.origin}/store/")

    def sign(self, method: str, url: str) -> SignedRequest:
        return SignedRequest(url=f"{url}?sig=SECRET%2Bsig", headers={"x-ms-version": "v"})

    def secrets(self) -> tuple[str, ...]:
        return ("SECRET%2Bsig", "SECRET+sig")


async def _read(client: AEPClient, url: str) -> bytes:
    async with client.open_stream(url) as stream:
        return b"".join([chunk async for chunk in stream.chunks()])


async def test_a_store_gets_its_signature_and_none_of_aeps_headers() -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    async def blob(request: web.Request) -> web.StreamResponse:
        seen.append((request.query_string, dict(request.headers)))
        if request.path.endswith("/refused"):
            return web.Response(
                status=403,
                body=b"<Error><Code>AuthenticationFailed</Code><Message>SECRET+sig expired"
                b"</Message></Error>",
                headers={"x-ms-error-code": "AuthenticationFailed"},
            )
        if request.path.endswith("/cut"):
            response = web.StreamResponse(headers={"Content-Length": "100"})
            await response.prepare(request)
            await response.write(b"x" * 10)
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(body=b"bytes")

    routes = {"/store/a": blob, "/store/refused": blob, "/store/cut": blob}
    async with scripted_api(routes) as api, scripted_api(routes) as store:
        settings = DownloadSettings(base_url=api, max_attempts=1)
        async with AEPClient(credentials=static_credentials(), settings=settings) as client:
            with pytest.raises(ConfigError, match="the API's origin"):
                client.sign_requests(_Signer(api))
            client.sign_requests(_Signer(store))
            assert await _read(client, f"{store}/store/a") == b"bytes"
            with pytest.raises(SourceAuthError) as refused:
                async with client.open_stream(f"{store}/store/refused"):
                    pass
            with pytest.raises(StreamInterruptedError) as cut:
                await _read(client, f"{store}/store/cut")
    query, headers = seen[0]
    assert query == "sig=SECRET%2Bsig"  # exactly as signed, not re-quoted
    assert headers["x-ms-version"] == "v"
    assert not {"Authorization", "x-api-key", "x-gw-ims-org-id"} & set(headers)
    assert refused.value.code == "AuthenticationFailed"
    for error in (refused.value, cut.value):
        assert "SECRET" not in str(error)
        assert "SECRET" not in getattr(error, "url", "")
