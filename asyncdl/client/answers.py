"""What an answer is once its headers are in: a body stream (with its range, version and stated
MD5), a HEAD's size and version, a JSON page (with the URL it came from), or a file where a
listing was asked for; and reading those headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ..errors import ProtocolError
from .transport import aiohttp, translate

__all__ = ["ByteStream", "FileAnswer", "ObjectHead", "Page", "filename_from", "is_json_type"]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
# RFC 6266 / 5987: filename*=charset'lang'percent-encoded, and filename="quoted" or token.
_FILENAME_EXT = re.compile(r"(?:^|;)\s*filename\*\s*=\s*([\w!#$%&+^`{}~-]*)'[^']*'([^;]*)", re.I)
_FILENAME = re.compile(r'(?:^|;)\s*filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.I)


def is_json_type(content_type: str) -> bool:
    """``application/json`` and its ``+json`` relatives (problem+json, vnd.adobe.*+json)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def filename_from(content_disposition: str | None) -> str | None:
    """The file name a ``Content-Disposition`` header gives (RFC 6266: ``filename*`` wins).

    Unchecked: the caller applies its own safe-name rules to it, as to any name from a server.
    """
    if not content_disposition:
        return None
    extended = _FILENAME_EXT.search(content_disposition)
    if extended is not None:
        charset, value = extended.group(1) or "utf-8", extended.group(2).strip()
        try:
            name = unquote(value, encoding=charset, errors="strict")
        except (LookupError, UnicodeDecodeError):
            name = ""
        if name.strip():
            return name.strip()
    plain = _FILENAME.search(content_disposition)
    if plain is None:
        return None
    name = plain.group(1) if plain.group(1) is not None else plain.group(2)
    name = re.sub(r"\\(.)", r"\1", name).strip()  # quoted-pair
    return name or None


class ByteStream:
    """An open download response; iterate ``chunks()`` once."""

    def __init__(self, response: aiohttp.ClientResponse, url: str) -> None:
        self._response = response
        self._url = url
        self.status = response.status
        self.content_length = response.content_length
        self.url = url
        self.start = 0
        self.total: int | None = None
        if self.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None:
                raise ProtocolError(f"206 without a usable Content-Range from {url}")
            self.start = int(match.group(1))
            if match.group(3) != "*":
                self.total = int(match.group(3))
        elif self.content_length is not None:
            self.total = self.content_length
        self.etag = response.headers.get("ETag")
        self.content_md5 = _stated_md5(response)
        self.finished = False

    @property
    def end(self) -> int | None:
        """One past the last byte this answer carries, when its headers say (None: unknown)."""
        if self.content_length is None:
            return None
        return self.start + self.content_length

    def close(self) -> None:
        """Give the connection up (unread bytes cannot be reused); safe to call twice."""
        if self.finished:
            self._response.release()
        else:
            self._response.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        reader = self._response.content
        try:
            while True:
                # readchunk() hands over one received buffer at a time; read(n) and readany()
                # join the buffered ones into a new bytes object, a second copy of every byte
                # on the event loop (the writer gathers buffers with writev anyway).
                chunk, end_of_http_chunk = await reader.readchunk()
                if not chunk:
                    if end_of_http_chunk:
                        continue  # a chunked-encoding boundary, not the end of the body
                    break
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise translate(exc, self._url) from exc
        self.finished = True


def _stated_md5(response: aiohttp.ClientResponse) -> str | None:
    """The MD5 of the whole object as the store states it (base64, as sent): Azure's
    ``x-ms-blob-content-md5`` (ranged answers carry it too), else ``Content-MD5`` on a whole
    body. A 206's ``Content-MD5`` would be the range's own, never the object's."""
    stated = response.headers.get("x-ms-blob-content-md5")
    if not stated and response.status == 200:
        stated = response.headers.get("Content-MD5")
    return stated.strip() if stated and stated.strip() else None


@dataclass(frozen=True, kw_only=True, slots=True)
class ObjectHead:
    """What a HEAD says of an object: its size and version (None: not said)."""

    size: int | None
    etag: str | None

    @classmethod
    def of(cls, response: aiohttp.ClientResponse) -> ObjectHead:
        raw = response.headers.get("Content-Length", "").strip()
        return cls(size=int(raw) if raw.isdigit() else None, etag=response.headers.get("ETag"))


@dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    """A JSON answer and the URL that gave it: the base its relative hrefs resolve against."""

    url: str
    body: Any


@dataclass(frozen=True, kw_only=True, slots=True)
class FileAnswer:
    """A listing call answered with a file's bytes instead of JSON (the Data Access spec allows it).

    ``stream`` is open and now belongs to the caller, who reads it or ``close()``s it.
    """

    url: str
    stream: ByteStream
    filename: str | None  # from Content-Disposition, unchecked
    content_type: str
