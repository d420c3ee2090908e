"""How a part treats the answers the spec allows: shorter 206s than asked and cut streams are
progress (no attempt spent), a cut that brought next to nothing is a failure, and a listing's own
file answer is streamed without a second request."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from aiohttp import web

from asyncdl.client import AEPClient, FileAnswer
from asyncdl.config import DownloadSettings
from asyncdl.fetch import FetchOptions, fetch_part
from asyncdl.models import Part, PartStatus
from asyncdl.progress import NullProgress
from asyncdl.retry import RetryPolicy
from asyncdl.storage import LocalStorage
from tests.helpers import digest_of, scripted_api, static_credentials

KiB = 1 << 10
MiB = 1 << 20
BODY = random.Random(5).randbytes(3 * MiB + 12_345)


@dataclass
class PartServer:
    """Serves BODY at /part, cutting or shortening answers as told; counts requests."""

    cut_after: int | None = None  # close the connection after this many body bytes
    short_206: bool = False  # a ranged answer carries half of what was asked
    ranges: list[str | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        wanted = request.headers.get("Range")
        self.ranges.append(wanted)
        start, stop = 0, len(BODY)
        status = 200
        if wanted:
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start = int(first)
            stop = int(last) + 1 if last else len(BODY)
            status = 206
            if self.short_206:
                stop = start + max(1, (stop - start) // 2)
        headers = {"Content-Type": "application/octet-stream"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(BODY)}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = stop - start
        await response.prepare(request)
        body = BODY[start:stop]
        cut = self.cut_after is not None and len(body) > self.cut_after
        sending = body[: self.cut_after] if cut else body
        # In pieces, each given time to arrive, as from a real link: aiohttp drops what it had
        # buffered but not yet handed over when the connection breaks.
        for offset in range(0, len(sending), 16 * KiB):
            await response.write(sending[offset : offset + 16 * KiB])
            await anyio.sleep(0.001)
        if cut:
            assert request.transport is not None
            request.transport.close()
        return response


def options(*, attempts: int, segments: bool = False) -> FetchOptions:
    policy = RetryPolicy(max_attempts=attempts, base_delay_s=0.0, max_delay_s=0.0)
    if segments:
        return FetchOptions(policy=policy, segment_threshold_bytes=2 * MiB, segment_bytes=MiB)
    return FetchOptions(policy=policy, segment_threshold_bytes=None)


async def fetch(server: PartServer, tmp_path: Path, opts: FetchOptions) -> tuple[Part, object]:
    async with scripted_api({"/part": server.handle}) as base:
        settings = DownloadSettings(base_url=base)
        async with AEPClient(credentials=static_credentials(), settings=settings) as client:
            part = Part(
                batch_id="B",
                dataset_file_id="F",
                name="data.bin",
                relpath="data.bin",
                size=len(BODY),
                href=f"{base}/part",
            )
            result = await fetch_part(
                client,
                part,
                storage=LocalStorage(tmp_path),
                options=opts,
                listener=NullProgress(),
            )
    return part, result


def assert_complete(tmp_path: Path, result: object) -> None:
    from asyncdl.models import PartResult

    assert isinstance(result, PartResult)
    assert result.status is PartStatus.DOWNLOADED, result.error
    assert (tmp_path / "data.bin").read_bytes() == BODY
    assert result.digest == digest_of(BODY)


async def test_shorter_206s_than_asked_are_followed_without_spending_attempts(
    tmp_path: Path,
) -> None:
    # The first answer is cut, every ranged one carries half of the rest: one attempt is enough.
    server = PartServer(cut_after=512 * KiB, short_206=True)
    _, result = await fetch(server, tmp_path, options(attempts=1))
    assert_complete(tmp_path, result)
    assert len(server.ranges) > 5
    assert server.ranges[0] is None
    assert all(r is not None for r in server.ranges[1:])


async def test_short_206s_inside_segments_are_followed_too(tmp_path: Path) -> None:
    server = PartServer(short_206=True)
    _, result = await fetch(server, tmp_path, options(attempts=1, segments=True))
    assert_complete(tmp_path, result)
    # Four segments, each asked for again and again as its answers come back short.
    assert len(server.ranges) > 4 * 5
    assert all(r is not None for r in server.ranges)


async def test_streams_cut_again_and_again_are_resumes_not_failures(tmp_path: Path) -> None:
    """AEP cuts every answer at 60 s: a big part on a slow link arrives in many such pieces."""
    server = PartServer(cut_after=256 * KiB)
    _, result = await fetch(server, tmp_path, options(attempts=1))
    assert_complete(tmp_path, result)
    # Each piece but the last brings most of its 256 KiB (the tail of a cut may be lost).
    assert len(server.ranges) >= -(-len(BODY) // (256 * KiB))


async def test_a_cut_that_brings_next_to_nothing_spends_an_attempt(tmp_path: Path) -> None:
    server = PartServer(cut_after=KiB)
    _, result = await fetch(server, tmp_path, options(attempts=3))
    from asyncdl.models import PartResult

    assert isinstance(result, PartResult)
    assert result.status is PartStatus.FAILED
    assert result.attempts == len(server.ranges) == 3
    assert not (tmp_path / "data.bin").exists()


async def test_the_listing_answer_of_a_single_file_is_the_only_request(tmp_path: Path) -> None:
    server = PartServer()
    async with scripted_api({"/part": server.handle}) as base:
        settings = DownloadSettings(base_url=base)
        async with AEPClient(credentials=static_credentials(), settings=settings) as client:
            answer = await client.get_page_or_file(f"{base}/part")
            assert isinstance(answer, FileAnswer)
            part = Part(
                batch_id="B",
                dataset_file_id="F",
                name="data.bin",
                relpath="data.bin",
                size=len(BODY),
                href=f"{base}/part",
            )
            result = await fetch_part(
                client,
                part,
                storage=LocalStorage(tmp_path),
                options=options(attempts=1, segments=True),  # big enough, yet one stream
                listener=NullProgress(),
                opened=answer.stream,
            )
    assert_complete(tmp_path, result)
    assert server.ranges == [None]


async def test_an_open_answer_is_closed_when_the_part_is_already_on_disk(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(BODY)
    server = PartServer()
    async with scripted_api({"/part": server.handle}) as base:
        settings = DownloadSettings(base_url=base)
        async with AEPClient(credentials=static_credentials(), settings=settings) as client:
            answer = await client.get_page_or_file(f"{base}/part")
            assert isinstance(answer, FileAnswer)
            part = Part(
                batch_id="B",
                dataset_file_id="F",
                name="data.bin",
                relpath="data.bin",
                size=len(BODY),
                href=f"{base}/part",
            )
            result = await fetch_part(
                client,
                part,
                storage=LocalStorage(tmp_path),
                options=options(attempts=1),
                listener=NullProgress(),
                opened=answer.stream,
            )
            assert answer.stream._response.closed
    from asyncdl.models import PartResult

    assert isinstance(result, PartResult)
    assert result.status is PartStatus.SKIPPED
