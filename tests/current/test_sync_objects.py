"""``sync`` into S3 (moto), unchanged: CURRENT and the state are objects, the lock a lease
object, and a second sync fetches nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncdl.current import sync
from asyncdl.emulator import running_emulator
from asyncdl.errors import BusyError
from asyncdl.layout import CURRENT_NAME, MANIFEST_NAME, SYNC_LOCK, sync_state
from asyncdl.storage import open_storage
from tests.cloud import MotoS3, no_cloud
from tests.helpers import DATASET, EmulatorFactory, credentials_for, settings_for

SMALL = {"files_per_batch": 1, "parts_per_file": 2}


@pytest.fixture
def bucket(moto_server: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    no_cloud(monkeypatch, tmp_path)
    moto_server.use(monkeypatch)
    return moto_server.bucket()


async def test_a_sync_into_s3_keeps_the_current_view_and_repeats_nothing(
    emulator_config: EmulatorFactory, moto_server: MotoS3, bucket: str
) -> None:
    out = f"s3://{bucket}/views/scores"
    config = emulator_config(dataset={**SMALL, "batches": 3})
    async with running_emulator(config) as emu:
        settings = settings_for(emu, Path("unused"))
        credentials = credentials_for(emu)
        result = await sync(DATASET, out=out, credentials=credentials, settings=settings)
        await emu.wait_idle()
        head = emu.batches_for(DATASET)[0]
        assert result.ok
        assert result.current == (head.id,)
        keys = moto_server.keys(bucket)
        assert f"views/scores/{CURRENT_NAME}" in keys
        assert f"views/scores/{sync_state(DATASET)}" in keys
        assert f"views/scores/{head.id}/{MANIFEST_NAME}" in keys
        assert f"views/scores/{SYNC_LOCK}" not in keys  # the lease is released
        assert moto_server.body(bucket, f"views/scores/{CURRENT_NAME}") == f"{head.id}\n".encode()
        for part in head.parts:
            body = moto_server.body(bucket, f"views/scores/{head.id}/{part.name}")
            assert body == part.path.read_bytes()
        state = json.loads(moto_server.body(bucket, f"views/scores/{sync_state(DATASET)}"))
        known = {b["id"]: b for b in state["batches"]}
        assert known[head.id]["complete"] is True
        fetched = len(emu.downloads())
        again = await sync(DATASET, out=out, credentials=credentials, settings=settings)
        await emu.wait_idle()
    assert again.ok
    assert again.rebuilt is None  # the state object was read back
    assert again.fetched.batches == ()  # trusted from the state: no listing, no part
    assert len(emu.downloads()) == fetched
    assert moto_server.open_uploads(bucket) == []


async def test_a_second_sync_of_the_same_prefix_is_refused_while_the_lease_is_held(
    emulator_config: EmulatorFactory, bucket: str
) -> None:
    out = f"s3://{bucket}/scores"
    async with running_emulator(emulator_config(dataset=SMALL)) as emu:
        root = open_storage(out)
        busy = pytest.raises(BusyError, match=f"{out} is being synced by another run")
        with root.lock(SYNC_LOCK), busy:
            await sync(
                DATASET,
                out=out,
                credentials=credentials_for(emu),
                settings=settings_for(emu, Path("unused")),
            )
        await emu.wait_idle()
        assert not emu.downloads()
