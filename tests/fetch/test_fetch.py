"""fetch's smaller pieces: a 206 for another range than asked, reserved names, error ranking."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from asyncdl.errors import RangeMismatchError, ServerError, StorageError
from asyncdl.fetch.answers import body_from
from asyncdl.layout import reserved
from asyncdl.retry import is_retryable
from asyncdl.tasks import single_error


class FakeStream:
    def __init__(self, status: int, start: int, body: bytes, piece: int = 4) -> None:
        self.status = status
        self.start = start
        self._pieces = [body[i : i + piece] for i in range(0, len(body), piece)]

    async def chunks(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


async def collect(stream: FakeStream, wanted: int) -> bytes:
    return b"".join([c async for c in body_from(stream, wanted, "p")])  # type: ignore[arg-type]


async def test_a_range_served_from_earlier_is_trimmed() -> None:
    body = bytes(range(20))
    assert await collect(FakeStream(206, 0, body), 10) == body[10:]
    assert await collect(FakeStream(206, 5, body[5:]), 10) == body[10:]
    assert await collect(FakeStream(206, 10, body[10:]), 10) == body[10:]
    assert await collect(FakeStream(200, 0, body), 0) == body


async def test_a_range_served_from_later_is_a_retryable_mismatch() -> None:
    with pytest.raises(RangeMismatchError) as caught:
        await collect(FakeStream(206, 12, b"x" * 8), 10)
    assert is_retryable(caught.value)


@pytest.mark.parametrize(
    ("name", "is_reserved"),
    [
        ("manifest.json", True),
        (".asyncdl-1.abc.tmp", True),
        (".asyncdl/sync-ds.json", True),
        ("scoreDate=2020-04-09/a.parquet.part", True),
        ("a.parquet.part", True),
        ("a.parquet.part.segments", True),
        ("part-00000.snappy.parquet", False),
        ("manifest.json.parquet", False),
    ],
)
def test_names_asyncdl_writes_itself_are_reserved(name: str, is_reserved: bool) -> None:
    assert reserved(name) is is_reserved


async def test_a_full_disk_outranks_a_part_failure() -> None:
    async def part_fails() -> None:
        raise ServerError(status=503, url="u")

    async def disk_full() -> None:
        raise StorageError("disk full")

    async def both() -> None:
        # Neither awaits, so both failures land in the group, the part's first.
        async with single_error(), anyio.create_task_group() as tg:
            tg.start_soon(part_fails)
            tg.start_soon(disk_full)

    with pytest.raises(StorageError, match="disk full"):
        await both()
