"""Origins compare with default ports made explicit; credentials never leave the base origin."""

from __future__ import annotations

import pytest

from asyncdl.client import AEPClient, origin_of
from asyncdl.config import Credentials, DownloadSettings
from asyncdl.errors import ForeignOriginError, ProtocolError


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
    client = AEPClient(
        credentials=Credentials(api_key="k", org_id="o", access_token="t"),
        settings=DownloadSettings(base_url=base),
    )
    if same:
        assert client._credential_target(url)
    else:
        with pytest.raises((ForeignOriginError, ProtocolError)):  # ProtocolError: a bad port
            client._credential_target(url)
