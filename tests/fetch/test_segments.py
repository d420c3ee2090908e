"""Big parts as concurrent ranged segments, written in place and resumable per segment."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
from pathlib import Path

import anyio
import pytest

from asyncdl.checksum import Checksum
from asyncdl.emulator import Faults, running_emulator
from asyncdl.fetch.plan import Segment, SegmentPlan
from asyncdl.pipeline import download
from tests.helpers import (
    DATASET,
    EmulatorFactory,
    assert_identical,
    credentials_for,
    digest_of,
    first_part_paths,
    local_part,
    settings_for,
    until,
)

MiB = 1 << 20
RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def test_fresh_plan_covers_the_part_and_counts_a_prefix(tmp_path: Path) -> None:
    plan = SegmentPlan.fresh(size=10, segment_bytes=4, prefix=5)
    assert [(s.start, s.end, s.done) for s in plan.segments] == [(0, 4, 4), (4, 8, 1), (8, 10, 0)]
    assert plan.done == 5


def test_plan_record_round_trips_and_rejects_foreign_records(tmp_path: Path) -> None:
    file = local_part(tmp_path / "x.part")
    plan = SegmentPlan.fresh(size=10, segment_bytes=4)
    plan.segments[1].done = 3
    file.save_record(plan.record(), sync=False)
    loaded = SegmentPlan.from_record(file.load_record(), size=10)
    assert loaded is not None
    assert [s.done for s in loaded.segments] == [0, 3, 0]
    assert SegmentPlan.from_record(file.load_record(), size=11) is None
    record = tmp_path / "x.part.segments"
    record.write_text('{"format": 1, "size": 10, "segment_bytes": 4, "segments": [[0, 4, 9]]}')
    assert SegmentPlan.from_record(file.load_record(), size=10) is None
    record.write_text("not json")
    assert SegmentPlan.from_record(file.load_record(), size=10) is None
    assert SegmentPlan.from_record(None, size=10) is None


def test_the_contiguous_prefix_stops_at_the_first_gap(tmp_path: Path) -> None:
    plan = SegmentPlan.fresh(size=10, segment_bytes=4)
    assert plan.contiguous == 0
    plan.segments[1].done = 4  # a later segment, whole: not contiguous with the start
    assert plan.contiguous == 0
    plan.segments[0].done = 3
    assert plan.contiguous == 3
    plan.segments[0].done = 4
    assert plan.contiguous == 8  # segment 0 and segment 1, then segment 2 has nothing
    plan.segments[2].done = 1
    assert plan.contiguous == 9
    plan.segments[2].done = 2
    assert plan.contiguous == 10


async def test_the_digest_follows_the_prefix_while_later_segments_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncdl.fetch import segmented as segmented_path
    from asyncdl.fetch.segmented import _PrefixDigest
    from asyncdl.storage import local

    monkeypatch.setattr(segmented_path, "HASH_STEP", 64 * 1024)  # many thread jobs per MiB
    jobs: list[int] = []
    real_hash_range = local.hash_range

    def hash_range(hasher: object, path: Path, start: int, length: int) -> int:
        jobs.append(length)
        if len(jobs) == 1:  # a segment lands while a job runs: its wake-up must not be lost
            anyio.from_thread.run_sync(land, 0, 200_000)
        return real_hash_range(hasher, path, start, length)  # type: ignore[arg-type]

    monkeypatch.setattr(local, "hash_range", hash_range)

    body = bytes(range(256)) * 4096 * 3  # 3 MiB
    temp = tmp_path / "x.part"
    temp.write_bytes(b"\0" * len(body))  # preallocated: what no segment vouches for is garbage
    plan = SegmentPlan.fresh(size=len(body), segment_bytes=MiB)
    digest = _PrefixDigest(local_part(temp), plan, Checksum.SHA256)

    def land(segment: int, upto: int) -> None:  # what _SegmentedRun._flush does
        start = plan.segments[segment].start
        with temp.open("r+b") as fh:
            fh.seek(start)
            fh.write(body[start : start + upto])
        plan.segments[segment].done = upto
        digest.landed()

    async def hashed_at_least(offset: int) -> int:
        await until(lambda: digest.hashed >= offset)
        return digest.hashed

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(digest.follow)
            land(2, MiB)  # the last segment first: nothing before it is there yet
            land(0, 100_000)
            # Hashed while two segments are unfinished, and not a byte past the first gap (the
            # first job lands 100,000 more bytes of segment 0 while it runs).
            assert await hashed_at_least(200_000) == 200_000
            land(0, MiB)
            land(1, MiB // 2)
            assert await hashed_at_least(MiB + MiB // 2) == MiB + MiB // 2
            assert not digest.complete
            land(1, MiB)
    assert digest.complete
    assert max(jobs) <= 64 * 1024  # one thread job never hashes more than a step
    assert len(jobs) >= len(body) // (64 * 1024)
    assert digest.hexdigest() == hashlib.sha256(body).hexdigest()


async def test_one_follower_at_a_time_and_another_after_it_stops(tmp_path: Path) -> None:
    from asyncdl.fetch.segmented import _PrefixDigest

    body = bytes(range(256)) * 4096 * 2  # 2 MiB
    temp = tmp_path / "x.part"
    temp.write_bytes(body)
    plan = SegmentPlan.fresh(size=len(body), segment_bytes=MiB)
    plan.segments[0].done = MiB
    digest = _PrefixDigest(local_part(temp), plan, Checksum.SHA256)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(digest.follow)
            await until(lambda: digest.hashed == MiB)  # now waiting for segment 1
            with pytest.raises(RuntimeError, match="already being followed"):
                await digest.follow()
            tg.cancel_scope.cancel()  # as a per-part deadline does
        plan.segments[1].done = MiB
        await digest.follow()
    assert digest.hexdigest() == hashlib.sha256(body).hexdigest()


async def test_a_deadline_during_the_last_hash_does_not_fail_a_part_that_arrived(
    emulator_config: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from asyncdl.storage import local

    real_hash_range = local.hash_range
    started = time.monotonic()

    def slow_hash_range(hasher: object, path: Path, start: int, length: int) -> int:
        # Hashing holds back until the part's deadline has passed: the bytes are all there.
        time.sleep(max(0.0, started + 1.5 - time.monotonic()))
        return real_hash_range(hasher, path, start, length)  # type: ignore[arg-type]

    monkeypatch.setattr(local, "hash_range", slow_hash_range)
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 1, "part_bytes": 3_000_000}
    )
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, part_timeout_s=1.0, **segmented({}))
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        newest = emu.batches_for(DATASET)[0]
    assert result.ok, [r.error for r in result.failed]
    assert_identical(newest, tmp_path)
    truth = newest.files[0].parts[0]
    assert result.results[0].digest == digest_of(truth.path.read_bytes())


async def test_a_part_shorter_than_its_record_never_gets_a_digest(tmp_path: Path) -> None:
    from asyncdl.fetch.segmented import _PrefixDigest

    temp = tmp_path / "x.part"
    temp.write_bytes(b"x" * (MiB + 10))  # truncated behind asyncdl's back
    plan = SegmentPlan.fresh(size=2 * MiB, segment_bytes=MiB)
    for segment in plan.segments:
        segment.done = segment.end - segment.start
    digest = _PrefixDigest(local_part(temp), plan, Checksum.SHA256)
    with anyio.fail_after(10):
        await digest.follow()
    assert digest.hashed == MiB + 10
    assert not digest.complete
    with pytest.raises(RuntimeError):
        digest.hexdigest()


def test_segment_progress() -> None:
    segment = Segment(10, 20, 4)
    assert segment.next_offset == 14
    assert not segment.complete
    segment.done = 10
    assert segment.complete


def segmented(emu_settings: dict[str, object]) -> dict[str, object]:
    return {"segment_threshold_bytes": MiB + 1, "segment_bytes": MiB, **emu_settings}


@pytest.mark.parametrize(
    "faults",
    [Faults(), Faults(drop_rate=0.5, seed=5), Faults(range_support=False)],
    ids=["clean", "drops", "no-range"],
)
async def test_big_parts_arrive_in_segments(
    emulator_config: EmulatorFactory, tmp_path: Path, faults: Faults
) -> None:
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 2, "part_bytes": 3_000_000},
        faults=faults,
    )
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, backoff_base_s=0.01, **segmented({}))
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        newest = emu.batches_for(DATASET)[0]
        await emu.wait_idle()
        ranges = [r.headers.get("range", "") for r in emu.downloads()]
    assert result.ok, [r.error for r in result.failed]
    assert_identical(newest, tmp_path)
    for r in result.results:
        truth = next(p for p in newest.files[0].parts if p.name == r.part.name)
        assert r.digest == digest_of(truth.path.read_bytes())
        assert r.rows == truth.rows
    assert not list(tmp_path.rglob("*.segments"))
    bounded = [m for m in map(RANGE.fullmatch, ranges) if m and m.group(2)]
    if faults.range_support:
        # Every request asked for one bounded segment: none runs long.
        assert bounded
        assert all(int(m.group(2)) - int(m.group(1)) < MiB for m in bounded)
        starts = {int(m.group(1)) for m in bounded}
        assert {0, MiB, 2 * MiB} <= starts
    else:
        assert any(r == "" for r in ranges)  # fell back to one whole stream


async def test_segments_resume_where_the_record_says(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 1, "part_bytes": 3_000_000}
    )
    async with running_emulator(config) as emu:
        newest = emu.batches_for(DATASET)[0]
        truth, _, temp = first_part_paths(emu, DATASET, tmp_path)
        # An earlier run got the first segment whole and 100,000 bytes of the second.
        shutil.copyfile(truth.path, temp)
        plan = SegmentPlan.fresh(size=truth.size, segment_bytes=MiB)
        plan.segments[0].done = MiB
        plan.segments[1].done = 100_000
        local_part(temp).save_record(plan.record(), sync=False)
        with temp.open("r+b") as fh:  # the bytes the record does not vouch for are garbage
            fh.seek(MiB + 100_000)
            fh.write(b"\0" * (truth.size - MiB - 100_000))
        settings = settings_for(emu, tmp_path, **segmented({}))
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        await emu.wait_idle()
        ranges = sorted(r.headers["range"] for r in emu.downloads())
    assert result.ok
    assert_identical(newest, tmp_path)
    assert ranges == sorted(
        [f"bytes={MiB + 100_000}-{2 * MiB - 1}", f"bytes={2 * MiB}-{truth.size - 1}"]
    )
    assert result.results[0].fetched_bytes == truth.size - MiB - 100_000
    # The prefix from the earlier run is hashed from disk, the rest as it lands.
    assert result.results[0].digest == digest_of(truth.path.read_bytes())


def test_segment_layout_is_validated() -> None:
    from asyncdl.config import DownloadSettings
    from asyncdl.errors import ConfigError

    with pytest.raises(ConfigError, match="segment"):
        DownloadSettings(segment_bytes=1000)
    assert dataclasses.replace(DownloadSettings(), segment_threshold_bytes=None)


async def test_a_preallocated_part_is_never_trusted_by_its_size(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    """A segmented run's .part is full-size with zero holes; a later unsegmented run (say, with
    a larger threshold) must not take that size as 'all bytes arrived'."""
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 1, "part_bytes": 3_000_000}
    )
    async with running_emulator(config) as emu:
        newest = emu.batches_for(DATASET)[0]
        truth, _, temp = first_part_paths(emu, DATASET, tmp_path)
        data = bytearray(truth.path.read_bytes())
        data[: 2 * MiB] = b"\0" * (2 * MiB)  # the first two segments never arrived
        temp.write_bytes(bytes(data))
        plan = SegmentPlan.fresh(size=truth.size, segment_bytes=MiB)
        plan.segments[2].done = plan.segments[2].end - plan.segments[2].start
        local_part(temp).save_record(plan.record(), sync=False)
        settings = settings_for(emu, tmp_path, segment_threshold_bytes=None)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
    assert result.ok
    assert_identical(newest, tmp_path)
    assert result.results[0].digest == digest_of(truth.path.read_bytes())
    assert not list(tmp_path.rglob("*.segments"))
