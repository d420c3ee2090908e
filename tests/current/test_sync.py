"""``sync``: a dataset's current view kept on disk, incrementally and crash-safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from asyncdl.cli import app
from asyncdl.current import SyncResult, sync
from asyncdl.emulator import Emulator, TruthBatch, running_emulator
from asyncdl.errors import BusyError, ConfigError
from asyncdl.layout import SYNC_LOCK, sync_state
from asyncdl.storage import LocalStorage
from tests.helpers import EmulatorFactory, credentials_for, env_for, settings_for, threaded_emulator

DATASET = "5cd9146b31dae914b75f654f"
SMALL = {"files_per_batch": 1, "parts_per_file": 2}


async def run_sync(emu: Emulator, out: Path, **options: Any) -> SyncResult:
    return await sync(
        DATASET, credentials=credentials_for(emu), settings=settings_for(emu, out), **options
    )


def successes(emu: Emulator) -> list[TruthBatch]:
    """The dataset's successful batches, newest first."""
    return emu.batches_for(DATASET)


def fetched_parts(emu: Emulator, batch: TruthBatch) -> list[str]:
    names = {p.name for p in batch.parts}
    return [r.query["path"] for r in emu.downloads() if r.query.get("path") in names]


def assert_batch_on_disk(batch: TruthBatch, out: Path) -> None:
    for part in batch.parts:
        assert (out / batch.id / part.name).read_bytes() == part.path.read_bytes()


def current_file(out: Path) -> list[str]:
    return (out / "CURRENT").read_text().split()


async def test_a_chain_syncs_as_its_newest_run(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(dataset={**SMALL, "batches": 5})
    async with running_emulator(config) as emu:
        result = await run_sync(emu, tmp_path)
        await emu.wait_idle()
        head, *older = successes(emu)
        assert result.ok
        assert result.current == (head.id,)
        assert current_file(tmp_path) == [head.id]
        assert_batch_on_disk(head, tmp_path)
        assert all(not (tmp_path / b.id).exists() for b in older)  # never fetched
        assert not [r for r in emu.requests if r.kind == "directory" and head.id not in r.path]
        assert set(result.new) == {b.id for b in successes(emu)}


async def test_a_new_run_is_fetched_alone_and_replaces_the_current_one(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(dataset={**SMALL, "batches": 2})
    async with running_emulator(config) as emu:
        await run_sync(emu, tmp_path)
        old_head = successes(emu)[0]
        new = await emu.add_batch(DATASET)
        await emu.wait_idle()
        already = len(emu.downloads())
        result = await run_sync(emu, tmp_path)
        await emu.wait_idle()
        later = emu.downloads()[already:]
    assert result.ok
    assert result.new == (new.id,)
    assert result.current == (new.id,)
    assert old_head.id in result.superseded
    assert {r.query["path"] for r in later} == {p.name for p in new.parts}
    assert current_file(tmp_path) == [new.id]
    assert (tmp_path / old_head.id).is_dir()  # kept: within --keep


async def test_an_idle_sync_fetches_nothing(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config(dataset=SMALL)) as emu:
        await run_sync(emu, tmp_path)
        await emu.wait_idle()
        before = len(emu.requests)
        result = await run_sync(emu, tmp_path)
        await emu.wait_idle()
        kinds = [r.kind for r in emu.requests[before:]]
        catalog = emu.requests[-1]
    assert result.ok
    assert result.new == ()
    assert result.fetched.batches == ()
    assert kinds == ["catalog_batches"]  # one Catalog page; no listing, no part
    # Only what may be new: created after the newest seen, less the 48 h look-back.
    newest = max(b.created_ms for b in successes(emu))
    assert catalog.query["createdAfter"] == str(newest - 48 * 3600 * 1000)


async def test_an_append_only_dataset_syncs_every_batch(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(dataset={**SMALL, "batches": 3, "append_only": True})
    async with running_emulator(config) as emu:
        result = await run_sync(emu, tmp_path)
        batches = successes(emu)
    assert result.ok
    assert result.current == tuple(b.id for b in batches)
    assert current_file(tmp_path) == [b.id for b in batches]
    for batch in batches:
        assert_batch_on_disk(batch, tmp_path)
    assert result.superseded == ()


async def test_a_batch_that_succeeds_late_is_picked_up(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(dataset={**SMALL, "batches": 1, "append_only": True})
    async with running_emulator(config) as emu:
        late = await emu.add_batch(DATASET, status="processing")
        newer = await emu.add_batch(DATASET)
        first = await run_sync(emu, tmp_path)
        assert late.id not in first.current
        assert newer.id in first.current
        emu.set_status(late.id, "success")  # created before the watermark, within the look-back
        second = await run_sync(emu, tmp_path)
    assert second.ok
    assert second.new == (late.id,)
    assert late.id in second.current
    assert_batch_on_disk(late, tmp_path)


async def test_current_names_only_a_complete_view(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    from asyncdl.emulator import Faults

    async with running_emulator(emulator_config(dataset=SMALL)) as emu:
        (head,) = (await run_sync(emu, tmp_path)).current
        new = await emu.add_batch(DATASET)
        emu.faults = Faults(drop_rate=1.0, max_faults_per_path=100)  # downloads only
        broken = await sync(
            DATASET,
            credentials=credentials_for(emu),
            settings=settings_for(emu, tmp_path, max_attempts=1),
        )
        assert not broken.ok
        assert not broken.current_complete
        assert current_file(tmp_path) == [head]  # consumers still see the complete old one
        assert (tmp_path / head).is_dir()  # nothing pruned for an incomplete view
        emu.faults = Faults()
        fixed = await run_sync(emu, tmp_path)
    assert fixed.ok
    assert current_file(tmp_path) == [new.id]


async def test_superseded_batches_beyond_keep_are_pruned_after_the_new_one_is_complete(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config(dataset={**SMALL, "batches": 1})) as emu:
        heads = [successes(emu)[0]]
        await run_sync(emu, tmp_path, keep=1)
        for _ in range(3):
            heads.append(await emu.add_batch(DATASET))
            result = await run_sync(emu, tmp_path, keep=1)
    assert result.ok
    on_disk = sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and p.name != ".asyncdl")
    assert on_disk == sorted([heads[-1].id, heads[-2].id])  # the current one and one before
    assert heads[-3].id in result.pruned
    state = json.loads((tmp_path / sync_state(DATASET)).read_text())
    pruned = {b["id"] for b in state["batches"] if b["pruned"]}
    assert {heads[0].id, heads[1].id} <= pruned


async def test_a_corrupt_state_is_rebuilt_from_the_manifests_without_fetching(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config(dataset={**SMALL, "batches": 2})) as emu:
        await run_sync(emu, tmp_path)
        (tmp_path / sync_state(DATASET)).write_text("{ not json")
        await emu.wait_idle()
        before = len(emu.requests)
        result = await run_sync(emu, tmp_path)
        await emu.wait_idle()
        kinds = {r.kind for r in emu.requests[before:]}
    assert result.ok
    assert result.rebuilt is not None
    assert "unreadable" in result.rebuilt
    assert "rebuilt from 1 batch manifests" in result.rebuilt
    assert kinds == {"catalog_batches"}  # the complete batch is trusted from its manifest
    json.loads((tmp_path / sync_state(DATASET)).read_text())  # valid again


async def test_a_changed_manifest_is_checked_again_and_nothing_refetched(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config(dataset=SMALL)) as emu:
        first = await run_sync(emu, tmp_path)
        (head,) = first.current
        (tmp_path / head / "manifest.json").unlink()
        await emu.wait_idle()
        before = len(emu.downloads())
        result = await run_sync(emu, tmp_path)
        await emu.wait_idle()
        after = len(emu.downloads())
    assert result.ok
    assert [b.batch.id for b in result.fetched.batches] == [head]  # listed and verified again
    assert after == before  # every part was already on disk: hashed locally, not fetched
    assert (tmp_path / head / "manifest.json").exists()


async def test_a_second_sync_of_the_same_directory_is_refused(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config(dataset=SMALL)) as emu:
        with LocalStorage(tmp_path).lock(SYNC_LOCK), pytest.raises(BusyError, match="another run"):
            await run_sync(emu, tmp_path)
        assert emu.requests == []  # refused before the first request
        assert (await run_sync(emu, tmp_path)).ok  # and the lock is free after


async def test_a_state_from_another_sandbox_is_refused(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config(dataset=SMALL)) as emu:
        await run_sync(emu, tmp_path)
        path = tmp_path / sync_state(DATASET)
        state = json.loads(path.read_text())
        state["sandbox"] = "dev"
        path.write_text(json.dumps(state))
        with pytest.raises(ConfigError, match="sandbox dev"):
            await run_sync(emu, tmp_path)


@pytest.fixture
def served(emulator_config: EmulatorFactory) -> Iterator[Emulator]:
    with threaded_emulator(emulator_config(dataset={**SMALL, "batches": 2})) as emu:
        yield emu


def cli(args: list[str], emu: Emulator) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env=env_for(emu))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
def test_kill_9_between_the_manifest_and_the_state_then_a_rerun_converges(
    served: Emulator, tmp_path: Path
) -> None:
    # The child kills itself (SIGKILL: no cleanup, no finally) as it is about to record a batch
    # as complete: its manifest is written, the state that vouches for it is not.
    child = (
        "import os, signal, sys\n"
        "import asyncdl.current.run as run\n"
        "real = run._save\n"
        "async def save(root, state, saving, held):\n"
        "    if any(b.complete for b in state.batches.values()):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    await real(root, state, saving, held)\n"
        "run._save = save\n"
        "from asyncdl.cli import main\n"
        f"sys.argv = ['asyncdl', 'sync', {DATASET!r}, '--out', {str(tmp_path)!r}]\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", child],
        env={**os.environ, **env_for(served)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr
    head = served.batches_for(DATASET)[0]
    assert (tmp_path / head.id / "manifest.json").exists()
    assert not (tmp_path / "CURRENT").exists()
    code, stdout, stderr = cli(["sync", DATASET, "--out", str(tmp_path)], served)
    assert code == 0, stderr
    assert current_file(tmp_path) == [head.id]
    assert_batch_on_disk(head, tmp_path)
    for part in head.parts:  # no part fetched twice across the two runs
        assert [r.query["path"] for r in served.downloads(part.name)] == [part.name]
    assert "0 parts fetched" in stdout


def test_the_command_prints_lines_for_cron_and_a_json_summary(
    served: Emulator, tmp_path: Path
) -> None:
    code, stdout, stderr = cli(["sync", DATASET, "--out", str(tmp_path)], served)
    assert code == 0, stderr
    head = served.batches_for(DATASET)[0]
    assert f"current: {head.id} (complete)" in stdout
    assert "2 new batches" in stdout
    code, stdout, _ = cli(["sync", DATASET, "--out", str(tmp_path), "--json"], served)
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["event"] == "sync"
    assert summary["ok"] is True
    assert summary["new"] == []
    assert summary["fetched"] == {"batches": [], "parts": 0, "bytes": 0}
    assert summary["current"] == [head.id]


def test_a_busy_directory_exits_75_at_once(served: Emulator, tmp_path: Path) -> None:
    with LocalStorage(tmp_path).lock(SYNC_LOCK):
        code, _, stderr = cli(["sync", DATASET, "--out", str(tmp_path)], served)
    assert code == 75
    assert "sync.lock is held by another run (pid" in stderr
    assert "Traceback" not in stderr


async def test_two_saves_at_once_leave_the_newer_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches finishing together save the state concurrently: the older snapshot's write
    must never land last (the newer batch would be forgotten and fetched again)."""
    import time

    import anyio

    from asyncdl.current import run
    from asyncdl.current.state import SyncState
    from asyncdl.models import Batch, BatchMetrics

    root = LocalStorage(tmp_path)
    real_replace = LocalStorage.replace
    calls: list[int] = []

    def replace(self: LocalStorage, relpath: str, data: bytes, *, durable: bool = False) -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            time.sleep(0.1)  # the first save's write is slow
        real_replace(self, relpath, data, durable=durable)

    monkeypatch.setattr(LocalStorage, "replace", replace)
    state = SyncState(org_id="O", sandbox="prod", dataset_id="D")
    saving = anyio.Lock()

    class Held:
        def check(self) -> None:
            pass

    async def finish(batch_id: str, after_s: float) -> None:
        await anyio.sleep(after_s)
        state.learn(Batch(id=batch_id, status="success", metrics=BatchMetrics()))
        await run._save(root, state, saving, Held())

    async with anyio.create_task_group() as tg:
        tg.start_soon(finish, "B1", 0.0)
        tg.start_soon(finish, "B2", 0.02)
    saved = json.loads((tmp_path / sync_state("D")).read_text())
    assert len(calls) == 2
    assert {"B1", "B2"} <= set(json.dumps(saved["batches"]).split('"'))
