"""Durability: nothing gets a final name or a record before the bytes it vouches for are synced."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncdl.emulator import Emulator, Faults, running_emulator
from asyncdl.errors import StorageError
from asyncdl.fetch import attempts
from asyncdl.fetch.plan import SegmentPlan
from asyncdl.pipeline import download
from asyncdl.storage import local
from asyncdl.storage.durable import SyncError, has_hole, sync_directory
from tests.helpers import (
    DATASET,
    EmulatorFactory,
    RecordingListener,
    assert_identical,
    credentials_for,
    first_part_paths,
    local_part,
    settings_for,
    until,
)

MiB = 1 << 20


@dataclass
class DiskLog:
    """Every gathered write, fsync and os.replace of the process, by inode (names move)."""

    events: list[tuple[str, int, str]] = field(default_factory=list)  # (kind, inode, target)
    written: dict[int, int] = field(default_factory=dict)  # bytes written, by inode
    # By inode: how many of its written bytes the last completed sync covers (those written
    # before that sync began).
    covered: dict[int, int] = field(default_factory=dict)
    # Per segment record written: (bytes it claims, bytes of its .part covered by a sync then).
    records: list[tuple[int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Called in the syncing thread before a sync, with the file's inode; True: it fails (EIO).
    before_sync: Callable[[int], bool] = lambda inode: False

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
            (i for i, e in enumerate(self.events[:position]) if e[:2] == ("write", inode)),
            default=-1,
        )
        assert last_write >= 0, "no write seen"
        return ("fsync", inode, "") in self.events[last_write + 1 : position]


def _claimed(record: Path) -> int:
    return sum(done for _, _, done in json.loads(record.read_text())["segments"])


@pytest.fixture
def disk_log(monkeypatch: pytest.MonkeyPatch) -> DiskLog:
    log = DiskLog()
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        inode = os.fstat(fd).st_ino
        fail = log.before_sync(inode)
        with log.lock:
            covered = log.written.get(inode, 0)
        if fail:
            with log.lock:
                log.events.append(("failed sync", inode, ""))
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)
        with log.lock:
            log.events.append(("fsync", inode, ""))
            log.covered[inode] = max(log.covered.get(inode, 0), covered)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        inode = os.stat(src).st_ino
        target = os.fspath(dst)
        record = target.endswith(".part.segments")
        if record:
            claimed = _claimed(Path(src))
            part = Path(target.removesuffix(".segments"))
            part_inode = part.stat().st_ino if part.exists() else -1
        real_replace(src, dst, **kwargs)
        with log.lock:
            log.events.append(("replace", inode, target))
            if record:
                log.records.append((claimed, log.covered.get(part_inode, 0)))

    def gathered(real: Callable[..., int]) -> Callable[..., int]:
        def write(fd: int, *args: Any) -> int:
            written = real(fd, *args)
            inode = os.fstat(fd).st_ino
            with log.lock:
                log.events.append(("write", inode, ""))
                log.written[inode] = log.written.get(inode, 0) + written
            return written

        return write

    real_unlink = os.unlink

    def unlink(path: Any, **kwargs: Any) -> None:
        real_unlink(path, **kwargs)
        with log.lock:
            log.events.append(("unlink", -1, os.fspath(path)))

    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(os, "writev", gathered(os.writev))
    monkeypatch.setattr(os, "pwritev", gathered(os.pwritev))
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return log


@pytest.fixture
def truncates(disk_log: DiskLog, monkeypatch: pytest.MonkeyPatch) -> DiskLog:
    """The disk log, with the storage's truncations of a .part (to 0, or full size) in it too."""
    real_preallocate = local._preallocate

    def preallocate(temp: Path, size: int, keep: int) -> None:
        real_preallocate(temp, size, keep)
        with disk_log.lock:
            disk_log.events.append((f"truncate to {size}", temp.stat().st_ino, str(temp)))

    monkeypatch.setattr(local, "_preallocate", preallocate)
    return disk_log


def _part_inodes(directory: Path) -> set[int]:
    found = set()
    for path in directory.rglob("*.parquet.part"):
        with contextlib.suppress(FileNotFoundError):  # renamed meanwhile
            found.add(path.stat().st_ino)
    return found


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
        if shape == "segmented":
            # Its record goes before the name: never a record beside a final file.
            record = f"{tmp_path / newest.id / part_result.part.relpath}.part.segments"
            assert ("unlink", -1, record) in disk_log.events[:position]


def test_a_segment_record_never_claims_bytes_that_are_not_synced(
    tmp_path: Path, disk_log: DiskLog
) -> None:
    part = tmp_path / "a.parquet.part"
    part.write_bytes(b"x" * 10)
    record = tmp_path / "a.parquet.part.segments"
    file = local_part(part)
    plan = SegmentPlan.fresh(size=10, segment_bytes=4)
    plan.segments[0].done = 4
    file.save_record(plan.record(), sync=True)
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
    file.save_record(plan.record(), sync=False)
    assert [kind for kind, _, _ in disk_log.events] == ["replace"]


def test_a_record_of_nothing_needs_no_part_file(tmp_path: Path, disk_log: DiskLog) -> None:
    """The first record of a fresh part is written before the .part exists (then preallocated)."""
    record = tmp_path / "a.parquet.part.segments"
    plan = SegmentPlan.fresh(size=10, segment_bytes=4)
    local_part(tmp_path / "a.parquet.part").save_record(plan.record(), sync=True)
    assert record.exists()
    assert record.stat().st_ino in disk_log.synced()


def _arrived(listener: RecordingListener) -> int:
    return sum(listener.bytes.values())


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
    arrived_when_held: list[int] = []

    def hold_part_syncs(inode: int) -> bool:
        # Only the .part's data syncs are held (record and directory syncs pass).
        if inode in _part_inodes(tmp_path) and not released.is_set():
            arrived_when_held.append(_arrived(listener))
            stuck.set()
            released.wait(30)  # longer than ``until`` waits: a stream waiting on it fails
        return False

    disk_log.before_sync = hold_part_syncs
    listener = RecordingListener()
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
                await until(lambda: _arrived(listener) >= total)
            finally:
                released.set()
    assert arrived_when_held[0] < total  # the hold began mid-part, not at the final seal
    assert_identical(newest, tmp_path)


def _segmented(emu: Any, tmp_path: Path, **overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "segment_threshold_bytes": MiB + 1,
        "segment_bytes": MiB,
        "write_buffer_bytes": 128 * 1024,
        "backoff_base_s": 0.01,
    }
    fields.update(overrides)
    return settings_for(emu, tmp_path, **fields)


async def test_every_segment_record_claims_only_synced_bytes(
    emulator_config: EmulatorFactory, tmp_path: Path, truncates: DiskLog
) -> None:
    disk_log = truncates
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 1, "part_bytes": 8 * MiB}
    )
    async with running_emulator(config) as emu:
        result = await download(
            DATASET, credentials=credentials_for(emu), settings=_segmented(emu, tmp_path)
        )
        newest = emu.batches_for(DATASET)[0]
    assert result.ok, [r.error for r in result.failed]
    assert_identical(newest, tmp_path)
    # Records were written while the segments streamed, none ahead of a sync of its bytes.
    assert any(claimed > 0 for claimed, _ in disk_log.records)
    assert all(claimed <= covered for claimed, covered in disk_log.records), disk_log.records
    # The first record is on disk (synced, named, its directory synced) before the .part is
    # made full-size: its holes are never there without a record saying they are holes.
    kinds = [kind for kind, _, _ in disk_log.events]
    truncate = next(
        i
        for i, kind in enumerate(kinds)
        if kind.startswith("truncate to ") and kind != "truncate to 0"
    )
    record_named = next(
        i
        for i, (kind, _, target) in enumerate(disk_log.events)
        if kind == "replace" and target.endswith(".segments")
    )
    assert record_named < truncate
    record_inode = disk_log.events[record_named][1]
    assert ("fsync", record_inode, "") in disk_log.events[:record_named]
    directory = (tmp_path / newest.id).stat().st_ino
    assert ("fsync", directory, "") in disk_log.events[record_named:truncate]


async def test_an_interrupted_segmented_part_keeps_a_synced_record_of_what_arrived(
    emulator_config: EmulatorFactory,
    tmp_path: Path,
    disk_log: DiskLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every cut counts as a failed attempt here (not as a resume), so the run ends interrupted.
    monkeypatch.setattr(attempts, "RESUME_MIN_BYTES", 1 << 40)
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 1, "part_bytes": 8 * MiB},
        faults=Faults(drop_rate=1.0),  # every body is cut half-way
    )
    async with running_emulator(config) as emu:
        settings = _segmented(emu, tmp_path, max_attempts=1)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
    assert not result.ok
    (record,) = tmp_path.rglob("*.part.segments")
    (part,) = tmp_path.rglob("*.parquet.part")
    claimed = _claimed(record)
    # Up to date: everything written to the .part is recorded, and synced before it was.
    assert claimed == disk_log.written[part.stat().st_ino] > 0
    assert disk_log.records[-1] == (claimed, claimed)


async def test_after_a_failed_record_sync_no_record_vouches_for_more(
    emulator_config: EmulatorFactory, tmp_path: Path, disk_log: DiskLog
) -> None:
    """Linux may drop the pages of a failed fsync and report success on the next one: a record
    saved after the failure would vouch for bytes the disk never got."""
    failures: list[int] = []

    def fail_once(inode: int) -> bool:  # then succeed, as Linux does over the lost pages
        if failures or inode not in _part_inodes(tmp_path):
            return False
        failures.append(inode)
        return True

    disk_log.before_sync = fail_once
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 1, "part_bytes": 8 * MiB}
    )
    async with running_emulator(config) as emu:
        with pytest.raises(StorageError, match=r"cannot sync .*\.part to disk"):
            await download(
                DATASET, credentials=credentials_for(emu), settings=_segmented(emu, tmp_path)
            )
    failed = next(i for i, e in enumerate(disk_log.events) if e[0] == "failed sync")
    assert not [e for e in disk_log.events[failed:] if e[2].endswith(".segments")]
    (record,) = tmp_path.rglob("*.part.segments")
    assert _claimed(record) == 0  # the record of the preallocation: nothing was ever synced


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_part_whose_sync_failed_is_fetched_again_not_kept(
    emulator_config: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    """The sync before the final name fails: neither the .part nor its record may stay."""

    def failing_sync(path: Path, fd: int | None = None) -> None:
        raise SyncError(errno.EIO, os.strerror(errno.EIO), str(path))

    real_sync_or_drop = local._sync_or_drop

    def seal_sync_fails(temp: Path, fd: int | None = None, *also: Path) -> None:
        with monkeypatch.context() as patched:  # the seals' syncs only, not the records'
            patched.setattr(local, "sync_file", failing_sync)
            real_sync_or_drop(temp, fd, *also)

    monkeypatch.setattr(local, "_sync_or_drop", seal_sync_fails)
    dataset, overrides = SHAPES[shape]
    config = emulator_config(dataset={"files_per_batch": 1, "parts_per_file": 1, **dataset})
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, **overrides)
        with pytest.raises(StorageError, match="cannot sync"):
            await download(DATASET, credentials=credentials_for(emu), settings=settings)
        newest = emu.batches_for(DATASET)[0]
    assert not list(tmp_path.rglob("*.part*"))
    assert not (tmp_path / newest.id / newest.files[0].parts[0].name).exists()


def test_a_sync_failure_names_the_file_and_the_way_out() -> None:
    from asyncdl.storage.local import storage_error

    path = Path("/data/a.parquet.part")
    unsupported = storage_error(SyncError(errno.EINVAL, "Invalid argument", str(path)), path)
    assert str(unsupported) == (
        "cannot sync /data/a.parquet.part to disk: Invalid argument"
        " (this file system cannot sync; --no-fsync skips syncing)"
    )
    broken = storage_error(SyncError(errno.EIO, "Input/output error", str(path)), path)
    assert "--no-fsync" not in str(broken)


def test_a_directory_that_cannot_be_synced_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = errno.EINVAL

    def fsync(fd: int) -> None:
        raise OSError(answer, os.strerror(answer))

    monkeypatch.setattr(os, "fsync", fsync)
    sync_directory(tmp_path)  # some FUSE and CIFS mounts: the names are kept their own way
    answer = errno.EIO
    with pytest.raises(SyncError) as caught:
        sync_directory(tmp_path)
    assert caught.value.filename == str(tmp_path)


@asynccontextmanager
async def _one_part(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> AsyncIterator[tuple[Emulator, Path, bytes]]:
    """An emulator with one part of 3 MB: it, where its .part goes, and its bytes."""
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 1, "part_bytes": 3_000_000}
    )
    async with running_emulator(config) as emu:
        truth, _, temp = first_part_paths(emu, DATASET, tmp_path)
        yield emu, temp, truth.path.read_bytes()


def _without_its_middle(temp: Path, data: bytes, *, hole: bool) -> bool:
    """``data`` into a full-size ``temp`` but for its second MiB: a hole, or written zeros.

    Whether the file came out sparse (some file systems allocate every block).
    """
    with temp.open("wb") as fh:
        fh.truncate(len(data))
        fh.write(data[:MiB])
        if not hole:
            fh.write(b"\0" * MiB)
        fh.seek(2 * MiB)
        fh.write(data[2 * MiB :])
    return temp.stat().st_blocks * 512 < len(data)


@pytest.mark.parametrize("segmented", [True, False], ids=["segmented", "one-stream"])
@pytest.mark.parametrize("record", ["lost", "unreadable"])
async def test_a_preallocated_part_without_its_record_is_not_trusted(
    emulator_config: EmulatorFactory, tmp_path: Path, segmented: bool, record: str
) -> None:
    """Dropping a segmented attempt truncates the .part, then deletes its record; a power loss
    can keep only the delete, and a record can be torn. A full-size .part whose middle was
    never written must not then pass for complete (its footer reads fine)."""
    async with _one_part(emulator_config, tmp_path) as (emu, temp, data):
        # "unreadable": zeros written, no hole; only the record could tell they are not data.
        sparse = _without_its_middle(temp, data, hole=record == "lost")
        if record == "unreadable":
            temp.with_name(temp.name + ".segments").write_text("")
        elif not sparse:
            pytest.skip("this file system does not keep files sparse")
        overrides: dict[str, Any] = (
            {"segment_threshold_bytes": MiB + 1, "segment_bytes": MiB}
            if segmented
            else {"segment_threshold_bytes": None}
        )
        settings = settings_for(emu, tmp_path, **overrides)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
    assert result.ok, [r.error for r in result.failed]
    assert_identical(emu.batches_for(DATASET)[0], tmp_path)
    assert result.results[0].fetched_bytes == len(data)  # nothing of the old .part was kept


def test_a_file_written_front_to_back_has_no_hole(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    whole.write_bytes(b"x" * (2 * MiB))
    assert not has_hole(whole, 2 * MiB)
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as fh:
        fh.truncate(2 * MiB)
        fh.write(b"x" * 4096)
    if sparse.stat().st_blocks * 512 >= 2 * MiB:
        pytest.skip("this file system does not keep files sparse")
    assert has_hole(sparse, 2 * MiB)
    assert not has_hole(sparse, 4096)  # the hole starts after the bytes written


async def test_a_dropped_segmented_attempt_is_emptied_for_good_before_its_record_goes(
    emulator_config: EmulatorFactory, tmp_path: Path, truncates: DiskLog
) -> None:
    """A server that ignores Range: the preallocated .part is emptied, synced, and only then
    loses its record, so no power loss can leave it full-size without one."""
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 1, "part_bytes": 3_000_000},
        faults=Faults(range_support=False),
    )
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, segment_threshold_bytes=MiB + 1, segment_bytes=MiB)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        newest = emu.batches_for(DATASET)[0]
    assert result.ok, [r.error for r in result.failed]
    assert_identical(newest, tmp_path)
    events = truncates.events
    emptied = next(i for i, e in enumerate(events) if e[0] == "truncate to 0")
    forgotten = next(
        i for i, e in enumerate(events) if e[0] == "unlink" and e[2].endswith(".segments")
    )
    assert ("fsync", events[emptied][1], "") in events[emptied:forgotten]


async def test_a_record_that_claims_a_hole_is_taken_back_to_it(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    """A record written without syncing (--no-fsync, or an older asyncdl) outlived the bytes it
    counts: the hole is fetched again, the rest of what it claims is kept."""
    async with _one_part(emulator_config, tmp_path) as (emu, temp, data):
        if not _without_its_middle(temp, data, hole=True):
            pytest.skip("this file system does not keep files sparse")
        plan = SegmentPlan.fresh(size=len(data), segment_bytes=MiB)
        for segment in plan.segments:
            segment.done = segment.end - segment.start  # all of it, the hole included
        plan.segments[1].done = MiB - 1  # not complete: the part is still in segments
        local_part(temp).save_record(plan.record(), sync=False)
        settings = settings_for(emu, tmp_path, segment_threshold_bytes=MiB + 1, segment_bytes=MiB)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        await emu.wait_idle()
        ranges = [r.headers.get("range") for r in emu.downloads()]
    assert result.ok, [r.error for r in result.failed]
    assert_identical(emu.batches_for(DATASET)[0], tmp_path)
    assert ranges == [f"bytes={MiB}-{2 * MiB - 1}"]
    assert result.results[0].fetched_bytes == MiB


async def test_a_record_that_cannot_be_saved_never_replaces_a_cancellation(
    emulator_config: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = threading.Event()
    real_save = local.LocalPartFile.save_record

    def save(file: local.LocalPartFile, document: bytes, *, sync: bool) -> None:
        if broken.is_set():
            raise StorageError(f"cannot write {file.record}: {os.strerror(errno.EIO)}")
        real_save(file, document, sync=sync)

    monkeypatch.setattr(local.LocalPartFile, "save_record", save)
    listener = RecordingListener()
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 1, "part_bytes": 8 * MiB},
        bandwidth_bps=8_000_000,
    )
    async with running_emulator(config) as emu:
        settings = _segmented(emu, tmp_path)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    await download(
                        DATASET,
                        credentials=credentials_for(emu),
                        settings=settings,
                        on_progress=listener,
                    )

                tg.start_soon(run)
                await until(lambda: _arrived(listener) > MiB)
                broken.set()  # the save in the part's finally is the next one
                tg.cancel_scope.cancel()
    assert "progress not recorded" in caplog.text


def test_a_record_whose_own_sync_fails_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(os, "fsync", fsync)
    record = tmp_path / "a.parquet.part.segments"
    plan = SegmentPlan.fresh(size=10, segment_bytes=4)
    file = local_part(tmp_path / "a.parquet.part")
    with pytest.raises(StorageError) as caught:  # no .part yet: only the record is synced
        file.save_record(plan.record(), sync=True)
    assert f"cannot sync {record}.tmp to disk" in str(caught.value)
    assert "--no-fsync" in str(caught.value)
    assert not record.exists()
