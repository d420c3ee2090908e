"""One batch in flight: it is closed and heard once, whoever finds it done first."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from asyncdl.batch import BatchRun
from asyncdl.manifest import Manifest
from asyncdl.models import Batch, BatchMetrics
from asyncdl.storage import LocalStorage

BATCH = Batch(id="B1", status="success", metrics=BatchMetrics())


async def test_a_done_batch_is_heard_once_when_two_tasks_find_it_done_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing awaits (the manifest is saved): the worker that stored the last part and the
    producer that ended the listing both find the batch done meanwhile."""
    storage = LocalStorage(tmp_path)
    run = BatchRun(batch=BATCH, storage=storage, manifest=Manifest(storage, BATCH, {}))
    run.listed = True  # nothing queued, nothing in flight: done
    real_close = BatchRun.close

    async def slow_close(self: BatchRun) -> object:
        await anyio.sleep(0.05)
        return await real_close(self)

    monkeypatch.setattr(BatchRun, "close", slow_close)
    heard: list[BatchRun] = []

    async def on_done(done: BatchRun) -> None:
        heard.append(done)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run.settle, on_done)
        tg.start_soon(run.settle, on_done)
    assert heard == [run]
    assert run.report is not None


async def test_a_batch_with_parts_in_flight_is_not_settled(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    run = BatchRun(batch=BATCH, storage=storage, manifest=Manifest(storage, BATCH, {}))
    run.listed, run.queued = True, 1
    heard: list[BatchRun] = []

    async def on_done(done: BatchRun) -> None:
        heard.append(done)

    await run.settle(on_done)
    assert heard == []
    assert run.report is None
