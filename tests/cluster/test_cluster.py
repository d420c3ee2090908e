"""A Dask cluster run: a LocalCluster of worker processes, one budget, killed workers."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path

import anyio
import pytest

from asyncdl.cluster import download_on_cluster, parse_cluster
from asyncdl.cluster_task import BudgetedSlots
from asyncdl.emulator import Emulator
from asyncdl.errors import ConfigError
from tests.helpers import (
    DATASET,
    EmulatorFactory,
    RecordingListener,
    assert_identical,
    env_for,
    run_cli,
    settings_for,
    threaded_emulator,
)

pytestmark = pytest.mark.slow


def export_credentials(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers are processes the test starts: they find AEP_* in their own environment."""
    monkeypatch.setenv("AEP_ACCESS_TOKEN", emu.config.static_tokens[0])
    monkeypatch.setenv("AEP_API_KEY", emu.config.api_key)
    monkeypatch.setenv("AEP_ORG_ID", emu.config.org_id)


@pytest.mark.parametrize("text", ["local:0", "local:x", "nowhere"])
def test_bad_cluster_addresses_are_usage_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_cluster(text)


def test_a_local_cluster_downloads_two_batches_complete(
    emulator_config: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = emulator_config(dataset={"files_per_batch": 2, "parts_per_file": 3})
    with threaded_emulator(config) as emu:
        export_credentials(emu, monkeypatch)
        listener = RecordingListener()
        result = anyio.run(
            lambda: download_on_cluster(
                DATASET,
                cluster="local:2",
                latest=2,
                settings=settings_for(emu, tmp_path, concurrency=3),
                on_progress=listener,
            )
        )
        batches = emu.batches_for(DATASET)[:2]
        fetched = Counter(r.query["path"] for r in emu.downloads())
    assert result.ok, result
    assert len(result.finalized) == 2
    assert len(result.tasks) == 2 * 2  # a shard per worker, per batch
    for batch in batches:
        assert_identical(batch, tmp_path)
        assert (tmp_path / batch.id / "manifest.json").exists()
    assert fetched == Counter({p.name: 1 for b in batches for p in b.parts})
    # Progress came back from the workers: every part's bytes and result.
    assert len(listener.done) == sum(len(b.parts) for b in batches)
    assert sum(listener.bytes.values()) == sum(b.size for b in batches)


def _worker_processes() -> list[int]:
    """The worker processes the LocalCluster's nannies spawned (children of this process)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except OSError:
            continue
        if parent == os.getpid() and b"spawn_main" in command:
            found.append(int(entry))
    return found


def test_a_worker_killed_mid_run_and_the_job_still_completes(
    emulator_config: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    config = emulator_config(
        dataset={"files_per_batch": 2, "parts_per_file": 3, "part_bytes": 400_000},
        bandwidth_bps=1_000_000,
    )
    with threaded_emulator(config) as emu:
        export_credentials(emu, monkeypatch)
        listener = RecordingListener()
        outcome: list[object] = []

        def run() -> None:
            outcome.append(
                anyio.run(
                    lambda: download_on_cluster(
                        DATASET,
                        cluster="local:2",
                        latest=2,
                        settings=settings_for(emu, tmp_path, concurrency=2),
                        on_progress=listener,
                    )
                )
            )

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while not (listener.done and any(n > 0 for n in listener.bytes.values())):
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.02)
        finished = {r.part.name for r in listener.done}
        workers = _worker_processes()
        assert len(workers) == 2
        killed_at = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        thread.join(timeout=120)
        assert not thread.is_alive()
        batches = emu.batches_for(DATASET)[:2]
        after = [r for r in emu.downloads() if r.started_s > killed_at]
    (result,) = outcome
    assert result.ok, result  # type: ignore[attr-defined]
    for batch in batches:
        assert_identical(batch, tmp_path)
    assert not [r for r in after if r.query.get("path") in finished]  # not fetched again


def test_the_command_runs_on_a_local_cluster(
    emulator_config: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # --out relative: it means this directory, for every worker
    with threaded_emulator(emulator_config()) as emu:
        env = env_for(emu)
        args = ["download", DATASET, "--cluster", "local:2", "--out", "out", "-q"]
        code, stdout, stderr = run_cli(args, env)
        newest = emu.batches_for(DATASET)[0]
        assert code == 0, stderr
        assert "finalized from 2 shards" in stdout
        assert "tasks on local:2" in stdout
        assert_identical(newest, tmp_path / "out")
        code, _, stderr = run_cli([*args, "--shard", "1/2"], env)
        assert code == 2
        assert "no --shard or --plan" in stderr


class FakeBudget:
    """A cluster's stream budget of ``leases``, as dask's Semaphore answers: acquire(timeout)
    says whether a lease was had within the timeout."""

    def __init__(self, leases: int) -> None:
        self._free = threading.Semaphore(leases)

    def acquire(self, timeout: float | None = None) -> bool:
        return self._free.acquire(timeout=30 if timeout is None else min(timeout, 0.05))

    def release(self) -> None:
        self._free.release()


async def test_more_streams_waiting_for_the_budget_than_anyio_has_threads_still_finish() -> None:
    """60 streams on a worker, a budget of 2: 58 wait for a lease while the 2 that have one
    write through anyio's default threads (40). Waiting there too would take every one of
    them and the writers would never get one."""
    slots = BudgetedSlots(60, adaptive=False, budget=FakeBudget(2))
    written: list[int] = []

    async def stream(index: int) -> None:
        async with slots:
            await anyio.to_thread.run_sync(written.append, index)

    with anyio.fail_after(10):  # a deadlock's threads come back after 30 s (FakeBudget)
        async with anyio.create_task_group() as tg:
            for index in range(60):
                tg.start_soon(stream, index)
    assert sorted(written) == list(range(60))
