"""Interrupted runs: kill -9 and Ctrl-C of a real subprocess, then the same command again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asyncdl.emulator import Emulator
from asyncdl.fetch.plan import SegmentPlan
from tests.helpers import DATASET, EmulatorFactory, assert_identical, env_for, threaded_emulator

pytestmark = pytest.mark.slow

MiB = 1 << 20


def start_download(emu: Emulator, out_dir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, **env_for(emu)}
    return subprocess.Popen(
        [sys.executable, "-m", "asyncdl", "download", DATASET, "--out", str(out_dir), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], *, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def on_disk(out_dir: Path, suffix: str) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in out_dir.rglob(f"*{suffix}") if p.is_file()}


@pytest.fixture
def slow_emulator(emulator_config: EmulatorFactory) -> Iterator[Emulator]:
    # Six parts of ~3 MB at 3 MB/s per response: a run takes seconds, long enough to interrupt
    # with whole parts done and others cut after more than one write buffer (1 MiB) landed.
    config = emulator_config(
        dataset={"files_per_batch": 2, "parts_per_file": 3, "part_bytes": 3_000_000},
        bandwidth_bps=3_000_000,
    )
    with threaded_emulator(config) as emu:
        yield emu


def test_kill_9_then_resume(slow_emulator: Emulator, tmp_path: Path) -> None:
    emu = slow_emulator
    proc = start_download(emu, tmp_path, "-j", "2")
    try:
        wait_for(
            lambda: (
                bool(on_disk(tmp_path, ".parquet"))
                and any(size >= MiB for size in on_disk(tmp_path, ".part").values())
            )
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    finished = set(on_disk(tmp_path, ".parquet"))
    partial = {
        name.removesuffix(".part"): size for name, size in on_disk(tmp_path, ".part").items()
    }
    rerun_started = time.monotonic()  # the emulator stamps requests with this same clock

    rerun = start_download(emu, tmp_path, "-j", "2")
    stdout, stderr = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, stderr

    wait_for(lambda: emu.in_flight == 0)
    newest = emu.batches_for(DATASET)[0]
    assert_identical(newest, tmp_path)
    sizes = {p.name: p.size for f in newest.files for p in f.parts}
    after = [r for r in emu.downloads() if r.started_s >= rerun_started]
    fetched_again = {r.query["path"] for r in after}
    assert not finished & fetched_again, "a part finished before the kill was fetched again"
    for name, size in partial.items():
        requests = [r for r in after if r.query["path"] == name]
        if size == sizes[name]:
            assert not requests, "a part whose bytes had all arrived needs only verifying"
        elif size > 0:
            assert requests[0].headers.get("range") == f"bytes={size}-", name
    # No part crossed the network twice in full: at most one complete, un-ranged answer each.
    for name, size in sizes.items():
        full = [r for r in emu.downloads(name) if "range" not in r.headers and r.body_bytes == size]
        assert len(full) <= 1, name
    assert "already on disk" in stdout


def test_kill_9_then_resume_segments(slow_emulator: Emulator, tmp_path: Path) -> None:
    """Big parts in ranged segments: each segment resumes where its record (kept by a task
    beside the streams) says, and nothing the record vouches for is fetched again."""
    emu = slow_emulator
    segmented = ("-j", "4", "--segment-threshold", "2Mi", "--segment-size", "1Mi")
    proc = start_download(emu, tmp_path, *segmented)
    try:
        wait_for(lambda: any(done > 0 for done in recorded(tmp_path).values()))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    sizes = {p.name: p.size for f in emu.batches_for(DATASET)[0].files for p in f.parts}
    plans = {}
    for path in tmp_path.rglob("*.part.segments"):
        name = path.name.removesuffix(".part.segments")
        plans[name] = SegmentPlan.from_record(path.read_bytes(), size=sizes[name])
    rerun_started = time.monotonic()
    rerun = start_download(emu, tmp_path, *segmented)
    _, stderr = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, stderr
    wait_for(lambda: emu.in_flight == 0)
    assert_identical(emu.batches_for(DATASET)[0], tmp_path)
    assert not list(tmp_path.rglob("*.part*"))
    after = [r for r in emu.downloads() if r.started_s >= rerun_started]
    resumed = 0
    for name, plan in plans.items():
        assert plan is not None, name
        asked = sorted(r.headers.get("range", "") for r in after if r.query["path"] == name)
        expected = sorted(
            f"bytes={s.next_offset}-{s.end - 1}" for s in plan.segments if not s.complete
        )
        assert asked == expected, name
        resumed += plan.done > 0
    assert resumed, "the kill came after some segment progress was recorded"


def recorded(out_dir: Path) -> dict[str, int]:
    """Bytes each segment record on disk vouches for (0 for one being replaced)."""
    found = {}
    for path in out_dir.rglob("*.part.segments"):
        try:
            segments = json.loads(path.read_text())["segments"]
        except (OSError, ValueError, KeyError):
            continue
        found[path.name] = sum(done for _, _, done in segments)
    return found


def test_ctrl_c_keeps_parts_and_exits_130(slow_emulator: Emulator, tmp_path: Path) -> None:
    proc = start_download(slow_emulator, tmp_path, "-j", "2")
    try:
        wait_for(lambda: any(size > 0 for size in on_disk(tmp_path, ".part").values()))
        interrupted_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
        stopped_after = time.monotonic() - interrupted_at
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert stopped_after < 5.0  # the promise is 2 s; the margin absorbs a loaded CI machine
    assert on_disk(tmp_path, ".part"), "unfinished parts must stay for the next run"
    assert list(tmp_path.rglob("manifest.json"))
