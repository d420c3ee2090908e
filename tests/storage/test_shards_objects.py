"""Shards into an object store (moto's S3): the plan, the fragments, the shard leases and the
batch manifest all live in the bucket, each part fetched once, and a held shard refused."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from asyncdl.emulator import running_emulator
from asyncdl.errors import BusyError
from asyncdl.layout import MANIFEST_NAME, fragment_name, shard_lock
from asyncdl.shards import ShardSpec, download_shard, make_plan, read_plan, write_plan
from asyncdl.storage import open_storage
from tests.helpers import DATASET, EmulatorFactory, credentials_for, settings_for
from tests.storage.conftest import S3Bucket

SHAPE = {"files_per_batch": 2, "parts_per_file": 3}


async def test_three_shards_from_a_plan_in_the_bucket_land_each_part_once(
    emulator_config: EmulatorFactory, s3: S3Bucket
) -> None:
    out, plan_url = f"{s3.url}/lake/scores", f"{s3.url}/plans/scores.json"
    async with running_emulator(emulator_config(dataset=SHAPE)) as emu:
        creds = credentials_for(emu)
        settings = dataclasses.replace(settings_for(emu, Path("unused")), out_dir=out)
        await write_plan(
            plan_url, await make_plan(DATASET, shards=3, credentials=creds, settings=settings)
        )
        loaded = await read_plan(plan_url)
        results = [
            await download_shard(
                None,
                shard=ShardSpec(index=k, count=3),
                shard_plan=loaded,
                credentials=creds,
                settings=settings,
            )
            for k in (1, 2, 3)
        ]
        await emu.wait_idle()
        fetched = Counter(r.query["path"] for r in emu.downloads())
        newest = emu.batches_for(DATASET)[0]
    assert all(r.ok for r in results)
    assert [len(r.finalized) for r in results] == [0, 0, 1]
    assert fetched == Counter({p.name: 1 for p in newest.parts})  # each part exactly once
    batch = open_storage(out).sub(newest.id)
    for part in newest.parts:
        assert batch.read(part.name) == part.path.read_bytes(), part.name
    manifest = json.loads(batch.read(MANIFEST_NAME) or b"")
    assert manifest["shards"] == 3
    assert manifest["reconciliation"]["ok"] is True
    fragments = [json.loads(batch.read(fragment_name(k, 3)) or b"") for k in (1, 2, 3)]
    assert sum(len(f["parts"]) for f in fragments) == len(newest.parts)
    assert s3.open_uploads() == []


async def test_a_shard_whose_lease_is_held_in_the_bucket_is_refused(
    emulator_config: EmulatorFactory, s3: S3Bucket
) -> None:
    out = f"{s3.url}/lake/scores"
    async with running_emulator(emulator_config(dataset=SHAPE)) as emu:
        settings = dataclasses.replace(settings_for(emu, Path("unused")), out_dir=out)
        newest = emu.batches_for(DATASET)[0]
        root = open_storage(out)
        root.prepare()
        # Another live writer holds shard 2/3.
        with root.lock(shard_lock(2, 3)), pytest.raises(BusyError):
            await download_shard(
                DATASET,
                shard=ShardSpec(index=2, count=3),
                credentials=credentials_for(emu),
                settings=settings,
                lock_wait_s=0,
            )
        await emu.wait_idle()
        assert emu.downloads() == []  # refused before any part was fetched
    assert root.sub(newest.id).files() == frozenset()
