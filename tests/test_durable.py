"""Durability: nothing gets a final name or a record before the bytes it vouches for are synced."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncdl.emulator import running_emulator
from asyncdl.models import Part
from asyncdl.pipeline import download
from asyncdl.progress import NullProgress
from asyncdl.segments import SegmentPlan
from tests.conftest import EmulatorFactory, credentials_for, settings_for, until
from tests.test_pipeline import DATASET, assert_identical

MiB = 1 << 20


@dataclass
class DiskLog:
    """Every gathered write, fsync and os.replace of the process, by inode (names move)."""

    events: list[tuple[str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Called in the syncing thread before a sync happens, with the file's inode.
    before_sync: Callable[[int], None] = lambda inode: None

    def synced(self) -> set[int]:
        return {inode for kind, inode, _ in self.events if kind == "fsync"}

    def named(self, destination: Path) -> tuple[int, int]:
        """(position, inode) of the last rename onto ``destination``."""
        for position in range(len(self.events) - 1, -1, -1):
            kind, inode, target = self.events[position]
            if kind == "replace" and target == str(destination):
                return position, inode
        raise AssertionError(f"nothing was renamed to {destination}")

    def synced_whole_before(self, inode: int, position: int) -> bool:
        """Whether the file was synced after its last write and before ``position``."""
        last_write = max(
            (i for i, e in enumerate(self.events[:position]) if e == ("write", inode, "")),
            default=-1,
        )
        assert last_write >= 0, "no write seen"
        return any(self.events[i] == ("fsync", inode, "") for i in range(last_write + 1, position))


@pytest.fixture
def disk_log(monkeypatch: pytest.MonkeyPatch) -> DiskLog:
    log = DiskLog()
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        inode = os.fstat(fd).st_ino
        log.before_sync(inode)
        real_fsync(fd)
        with log.lock:
            log.events.append(("fsync", inode, ""))

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        inode = os.stat(src).st_ino
        real_replace(src, dst, **kwargs)
        with log.lock:
            log.events.append(("replace", inode, os.fspath(dst)))

    def gathered(real: Callable[..., int]) -> Callable[..., int]:
        def write(fd: int, *args: Any) -> int:
            written = real(fd, *args)
            with log.lock:
                log.events.append(("write", os.fstat(fd).st_ino, ""))
            return written

        return write

    monkeypatch.setattr(os, "writev", gathered(os.writev))
    monkeypatch.setattr(os, "pwritev", gathered(os.pwritev))
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return log


SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # One write buffer or less: written, synced and renamed by one thread job.
    "small": ({"part_bytes": 60_000}, {}),
    # Streamed through a .part in several writes, then verified, synced and renamed.
    "streamed": ({"part_bytes": 3_000_000}, {"segment_threshold_bytes": None}),
    # Ranged segments into a preallocated .part.
    "segmented": (
        {"part_bytes": 3_000_000},
        {"segment_threshold_bytes": MiB + 1, "segment_bytes": MiB},
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "no-fsync"])
async def test_a_part_is_synced_before_it_gets_its_name(
    emulator_config: EmulatorFactory, tmp_path: Path, disk_log: DiskLog, shape: str, fsync: bool
) -> None:
    dataset, overrides = SHAPES[shape]
    config = emulator_config(dataset={"files_per_batch": 1, "parts_per_file": 3, **dataset})
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, fsync=fsync, **overrides)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        newest = emu.batches_for(DATASET)[0]
    assert result.ok, [r.error for r in result.failed]
    assert_identical(newest, tmp_path)
    assert len(result.results) == 3
    for part_result in result.results:
        position, inode = disk_log.named(tmp_path / newest.id / part_result.part.relpath)
        assert disk_log.synced_whole_before(inode, position) is fsync, part_result.part.name


def test_a_segment_record_never_claims_bytes_that_are_not_synced(
    tmp_path: Path, disk_log: DiskLog
) -> None:
    part = tmp_path / "a.parquet.part"
    part.write_bytes(b"x" * 10)
    record = tmp_path / "a.parquet.part.segments"
    plan = SegmentPlan.fresh(size=10, segment_bytes=4, record=record)
    plan.segments[0].done = 4
    plan.save(sync=part)
    inode = {p: p.stat().st_ino for p in (part, record, tmp_path)}
    # The bytes, then the record's own bytes (synced under its temp name), its name, the name's
    # directory: after a power loss the record is old or new, never ahead of the data.
    assert disk_log.events == [
        ("fsync", inode[part], ""),
        ("fsync", inode[record], ""),
        ("replace", inode[record], str(record)),
        ("fsync", inode[tmp_path], ""),
    ]

    disk_log.events.clear()
    plan.save()
    assert [kind for kind, _, _ in disk_log.events] == ["replace"]


def test_a_record_of_nothing_needs_no_part_file(tmp_path: Path, disk_log: DiskLog) -> None:
    """The first record of a fresh part is written before the .part exists (then preallocated)."""
    record = tmp_path / "a.parquet.part.segments"
    plan = SegmentPlan.fresh(size=10, segment_bytes=4, record=record)
    plan.save(sync=tmp_path / "a.parquet.part")
    assert record.exists()
    assert record.stat().st_ino in disk_log.synced()


class _Arrivals(NullProgress):
    def __init__(self) -> None:
        self.arrived = 0

    def on_bytes(self, part: Part, n: int) -> None:
        self.arrived += n


@pytest.mark.anyio
async def test_streams_keep_reading_while_the_record_syncs(
    emulator_config: EmulatorFactory, tmp_path: Path, disk_log: DiskLog
) -> None:
    """A sync takes as long as the disk's write-back; the segments must not wait for it."""
    size = 8 * MiB
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 1, "part_bytes": size}
    )
    stuck = threading.Event()
    released = threading.Event()

    def hold_part_syncs(inode: int) -> None:
        # Only the .part's data syncs are held (record and directory syncs pass).
        if inode in part_inodes():
            stuck.set()
            released.wait(10)

    def part_inodes() -> set[int]:
        found = set()
        for path in tmp_path.rglob("*.parquet.part"):
            with contextlib.suppress(FileNotFoundError):  # renamed meanwhile
                found.add(path.stat().st_ino)
        return found

    disk_log.before_sync = hold_part_syncs
    listener = _Arrivals()
    async with running_emulator(config) as emu:
        newest = emu.batches_for(DATASET)[0]
        total = newest.files[0].parts[0].size
        settings = settings_for(
            emu,
            tmp_path,
            segment_threshold_bytes=MiB + 1,
            segment_bytes=MiB,
            write_buffer_bytes=128 * 1024,
        )
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                credentials = credentials_for(emu)
                result = await download(
                    DATASET, credentials=credentials, settings=settings, on_progress=listener
                )
                assert result.ok, [r.error for r in result.failed]

            tg.start_soon(run)
            try:
                await until(stuck.is_set)
                # Every byte arrives while that sync of the .part is still held (until finally).
                await until(lambda: listener.arrived >= total)
            finally:
                released.set()
    assert_identical(newest, tmp_path)
