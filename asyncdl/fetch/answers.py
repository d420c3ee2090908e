"""A part's byte streams from the API: which request to make, and what its answer may say.

The first request of a single-file dataSetFile is its listing call's own answer (still open, read
here instead of asking again). Every other request asks for a ``Range`` when it is not for the
whole body. An answer's total (``Content-Range``'s, or a 200's length) must be the listing's
size, else the listing is stale; a 206 that starts earlier than asked is trimmed, one that starts
later cannot fill the gap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..client import AEPClient, ByteStream
from ..errors import RangeMismatchError, StaleListingError
from ..models import Part
from .integrity import StoredDigest

__all__ = ["FirstAnswer", "body_from", "open_answer"]


class FirstAnswer:
    """The open answer a listing call got for a single-file dataSetFile: the part's bytes from
    byte 0, used by the first request that wants exactly those (never asked for twice)."""

    def __init__(self, stream: ByteStream | None = None) -> None:
        self._stream = stream

    def take(self) -> ByteStream | None:
        stream, self._stream = self._stream, None
        return stream

    def discard(self) -> None:
        stream = self.take()
        if stream is not None:
            stream.close()


@asynccontextmanager
async def open_answer(
    client: AEPClient,
    first: FirstAnswer,
    part: Part,
    *,
    offset: int = 0,
    end: int | None = None,
    stored: StoredDigest | None = None,
) -> AsyncIterator[ByteStream]:
    """A stream of ``part`` from ``offset`` (to ``end``, inclusive); the first answer if it fits.

    Every request names the listed version (``If-Match``) when the part has one, and ``stored``
    learns the MD5 each answer states. Raises StaleListingError (no retry can change it: the
    part fails at once) when the server's total is not the listing's size.
    """
    opened = first.take() if offset == 0 and end is None else None
    if opened is None:
        first.discard()  # a resume or a segment: those bytes are not the ones asked for
        async with client.open_stream(
            part.href, offset=offset, end=end, if_match=part.etag
        ) as stream:
            _check_answer(stream, part, stored)
            yield stream
        return
    try:
        _check_answer(opened, part, stored)
        yield opened
    finally:
        opened.close()


def _check_answer(stream: ByteStream, part: Part, stored: StoredDigest | None) -> None:
    _check_total(stream, part)
    if stored is not None:
        stored.answered(stream, part.name)


def _check_total(stream: ByteStream, part: Part) -> None:
    if stream.total is not None and stream.total != part.size:
        raise StaleListingError(
            f"{part.name}: the listing says {part.size} bytes, the server says {stream.total}"
        )


async def body_from(stream: ByteStream, wanted: int, name: str) -> AsyncIterator[bytes]:
    """The body's bytes from offset ``wanted`` on.

    AEP may serve another range than the one asked for: a 206 that starts earlier is trimmed to
    ``wanted``; one that starts later cannot fill the gap (RangeMismatchError, retried).
    """
    skip = 0
    if stream.status == 206:
        if stream.start > wanted:
            raise RangeMismatchError(f"{name}: asked for bytes from {wanted}, got {stream.start}")
        skip = wanted - stream.start
    async for chunk in stream.chunks():
        if skip:
            if len(chunk) <= skip:
                skip -= len(chunk)
                continue
            chunk = chunk[skip:]
            skip = 0
        yield chunk
