"""Origins compare with default ports made explicit; credentials never leave the base origin."""

from __future__ import annotations

import pytest

from asyncdl.client import origin_of


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
