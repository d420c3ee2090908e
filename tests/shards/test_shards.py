"""Shards: a stable assignment, fragments, finalize, plans, one live writer per shard."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from asyncdl.emulator import Emulator, running_emulator
from asyncdl.errors import BusyError, ConfigError
from asyncdl.layout import fragment_name, shard_lock
from asyncdl.models import Batch, BatchMetrics, Part
from asyncdl.shards import (
    ShardSpec,
    download_shard,
    finalize,
    make_plan,
    plan_digest,
    read_plan,
    shard_of,
    write_plan,
)
from asyncdl.shards.finalize import finalize_batch, fragment_extra
from asyncdl.storage import LocalStorage
from tests.helpers import (
    DATASET,
    EmulatorFactory,
    assert_identical,
    credentials_for,
    run_cli,
    scripted_api,
    settings_for,
    static_credentials,
    threaded_emulator,
)

SHAPE = {"files_per_batch": 3, "parts_per_file": 4}


def parts(count: int, seed: int = 1) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    return [
        (f"B{rng.randrange(5)}", f"F{rng.randrange(9)}", f"part-{rng.getrandbits(64):x}.parquet")
        for _ in range(count)
    ]


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_part_has_exactly_one_shard_whatever_the_order(count: int) -> None:
    listed = parts(500)
    owners = [shard_of(*p, count) for p in listed]
    assert all(1 <= o <= count for o in owners)  # total: every part is someone's
    specs = [ShardSpec(index=k, count=count) for k in range(1, count + 1)]
    for p in listed:  # disjoint: exactly one spec owns it
        part = Part(batch_id=p[0], dataset_file_id=p[1], name=p[2], relpath=p[2], size=1, href="")
        assert sum(spec.owns(part) for spec in specs) == 1
    shuffled = listed[:]
    random.Random(2).shuffle(shuffled)
    assert {p: shard_of(*p, count) for p in shuffled} == dict(zip(listed, owners, strict=True))
    if count > 1:  # and it spreads: no shard gets less than half its share
        assert min(Counter(owners).values()) > 500 / count / 2


def test_the_assignment_is_the_same_in_every_process() -> None:
    script = (
        "from asyncdl.shards import shard_of\n"
        "print([shard_of('B', f'F{i}', f'p{i}', 5) for i in range(200)])\n"
    )
    answers = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        answers.add(done.stdout)
    assert len(answers) == 1
    assert answers.pop().strip() == str([shard_of("B", f"F{i}", f"p{i}", 5) for i in range(200)])


@pytest.mark.parametrize(("text", "spec"), [("2/3", (2, 3)), (" 1 / 1 ", (1, 1))])
def test_shard_specs_parse(text: str, spec: tuple[int, int]) -> None:
    parsed = ShardSpec.parse(text)
    assert (parsed.index, parsed.count) == spec


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "-1/2", "1/0"])
def test_bad_shard_specs_are_usage_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        ShardSpec.parse(text)


async def run_shard(emu: Emulator, out: Path, index: int, count: int, **options: Any) -> Any:
    return await download_shard(
        DATASET,
        shard=ShardSpec(index=index, count=count),
        credentials=credentials_for(emu),
        settings=settings_for(emu, out),
        **options,
    )


async def test_three_shards_fetch_each_part_once_and_the_last_one_finalizes(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config(dataset=SHAPE)) as emu:
        results = [await run_shard(emu, tmp_path, k, 3) for k in (1, 2, 3)]
        await emu.wait_idle()
        newest = emu.batches_for(DATASET)[0]
        fetched = Counter(r.query["path"] for r in emu.downloads())
    assert all(r.ok for r in results)
    assert [len(r.finalized) for r in results] == [0, 0, 1]  # the last one in finalizes
    (final,) = results[2].finalized
    assert final.ok
    assert fetched == Counter({p.name: 1 for p in newest.parts})  # each part exactly once
    assert_identical(newest, tmp_path)
    shares = [
        len(json.loads((tmp_path / newest.id / fragment_name(k, 3)).read_text())["parts"])
        for k in (1, 2, 3)
    ]
    assert sum(shares) == len(newest.parts)
    manifest = json.loads((tmp_path / newest.id / "manifest.json").read_text())
    assert len(manifest["parts"]) == len(newest.parts)
    assert manifest["reconciliation"]["ok"] is True
    assert manifest["shards"] == 3


async def test_finalize_names_the_missing_shards_and_writes_no_manifest(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config(dataset=SHAPE)) as emu:
        await run_shard(emu, tmp_path, 2, 3)
        (outcome,) = await finalize(
            DATASET, credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)
        )
        newest = emu.batches_for(DATASET)[0]
    assert not outcome.ok
    assert outcome.missing == (1, 3)
    assert not (tmp_path / newest.id / "manifest.json").exists()


async def test_a_fragment_of_another_listing_is_refused(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config(dataset=SHAPE)) as emu:
        for k in (1, 2):
            await run_shard(emu, tmp_path, k, 2, finalize_done=False)
        newest = emu.batches_for(DATASET)[0]
        path = tmp_path / newest.id / fragment_name(2, 2)
        fragment = json.loads(path.read_text())
        fragment["plan"]["digest"] = "0" * 64
        path.write_text(json.dumps(fragment))
        (outcome,) = await finalize(
            DATASET, credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)
        )
    assert not outcome.ok
    assert outcome.problems == ("shard 2/2 worked from another listing (plan digest)",)
    assert not (tmp_path / newest.id / "manifest.json").exists()


async def test_a_plan_lists_once_and_shards_fetch_from_it_without_listing(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config(dataset=SHAPE)) as emu:
        creds, settings = credentials_for(emu), settings_for(emu, tmp_path / "out")
        shard_plan = await make_plan(DATASET, shards=2, credentials=creds, settings=settings)
        await write_plan(tmp_path / "plan.json", shard_plan)
        await emu.wait_idle()
        listed = len(emu.requests)
        loaded = await read_plan(tmp_path / "plan.json")
        results = [
            await download_shard(
                None,
                shard=ShardSpec(index=k, count=2),
                shard_plan=loaded,
                credentials=creds,
                settings=settings,
            )
            for k in (1, 2)
        ]
        await emu.wait_idle()
        kinds = {r.kind for r in emu.requests[listed:]}
        newest = emu.batches_for(DATASET)[0]
    assert kinds == {"download"}  # no Catalog, no listing: the plan said it all
    assert results[1].finalized[0].ok
    assert_identical(newest, tmp_path / "out")


async def test_a_tampered_plan_is_refused(emulator_config: EmulatorFactory, tmp_path: Path) -> None:
    async with running_emulator(emulator_config(dataset=SHAPE)) as emu:
        shard_plan = await make_plan(
            DATASET,
            shards=2,
            credentials=credentials_for(emu),
            settings=settings_for(emu, tmp_path),
        )
    await write_plan(tmp_path / "plan.json", shard_plan)
    document = json.loads((tmp_path / "plan.json").read_text())
    document["batches"][0]["parts"][0]["size"] += 1
    (tmp_path / "plan.json").write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="do not match its digest"):
        await read_plan(tmp_path / "plan.json")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("relpath", "../../escaped.parquet"),
        ("relpath", "manifest.json"),
        ("relpath", "other-name.parquet"),
        ("dataset_file_id", ".."),
    ],
)
async def test_a_plan_that_places_a_part_elsewhere_is_refused_whatever_its_digest(
    emulator_config: EmulatorFactory, tmp_path: Path, field: str, value: str
) -> None:
    """Anyone can recompute a digest: a plan on a shared volume must not write outside --out."""
    async with running_emulator(emulator_config(dataset=SHAPE)) as emu:
        shard_plan = await make_plan(
            DATASET,
            shards=1,
            credentials=credentials_for(emu),
            settings=settings_for(emu, tmp_path),
        )
    await write_plan(tmp_path / "plan.json", shard_plan)
    document = json.loads((tmp_path / "plan.json").read_text())
    planned = document["batches"][0]
    planned["parts"][0][field] = value
    planned["digest"] = plan_digest(
        Part(batch_id=planned["batch"]["id"], **{k: p[k] for k in _PART_FIELDS})
        for p in planned["parts"]
    )
    (tmp_path / "plan.json").write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="planned part"):
        await read_plan(tmp_path / "plan.json")


_PART_FIELDS = ("dataset_file_id", "name", "relpath", "size", "href")


async def test_a_held_shard_is_refused_and_a_rerun_resumes(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config(dataset=SHAPE)) as emu:
        with LocalStorage(tmp_path).lock(shard_lock(1, 2)), pytest.raises(BusyError):
            await run_shard(emu, tmp_path, 1, 2)
        assert not [r for r in emu.requests if r.kind == "download"]
        first = await run_shard(emu, tmp_path, 1, 2)
        await emu.wait_idle()
        before = len(emu.downloads())
        again = await run_shard(emu, tmp_path, 1, 2)
        await emu.wait_idle()
    assert first.ok
    assert again.ok
    assert again.download.skipped == len(again.download.results) > 0
    assert len(emu.downloads()) == before  # nothing fetched twice


async def test_every_shard_places_a_repeated_name_in_the_same_place(tmp_path: Path) -> None:
    """Two dataSetFiles hold the same name: the one rule (the later one goes below its
    dataSetFileId) holds in every shard, whichever fetches it."""
    bodies = {"F1": b"first copy", "F2": b"second copy!"}

    async def files(request: web.Request) -> web.StreamResponse:
        return web.json_response({"data": [{"dataSetFileId": "F1"}, {"dataSetFileId": "F2"}]})

    def directory(file_id: str) -> Any:
        async def answer(request: web.Request) -> web.StreamResponse:
            if "path" in request.query:
                return web.Response(body=bodies[file_id], content_type="application/octet-stream")
            size = str(len(bodies[file_id]))
            return web.json_response({"data": [{"name": "scores.bin", "length": size}]})

        return answer

    async def batch(request: web.Request) -> web.StreamResponse:
        return web.json_response({"B1": {"id": "B1", "status": "success"}})

    routes = {
        "/data/foundation/catalog/batches/B1": batch,
        "/data/foundation/export/batches/B1/files": files,
        "/data/foundation/export/files/F1": directory("F1"),
        "/data/foundation/export/files/F2": directory("F2"),
    }
    from asyncdl.config import DownloadSettings

    async with scripted_api(routes) as base:
        settings = DownloadSettings(base_url=base, out_dir=tmp_path)
        for k in (1, 2):
            result = await download_shard(
                batch_ids=["B1"],
                shard=ShardSpec(index=k, count=2),
                credentials=static_credentials(),
                settings=settings,
            )
    assert result.finalized[0].ok
    assert (tmp_path / "B1" / "scores.bin").read_bytes() == b"first copy"
    assert (tmp_path / "B1" / "F2" / "scores.bin").read_bytes() == b"second copy!"


def test_the_shard_commands_end_to_end(emulator_config: EmulatorFactory, tmp_path: Path) -> None:
    with threaded_emulator(emulator_config(dataset=SHAPE)) as emu:
        env = {
            "AEP_BASE_URL": emu.base_url,
            "AEP_ACCESS_TOKEN": emu.config.static_tokens[0],
            "AEP_API_KEY": emu.config.api_key,
            "AEP_ORG_ID": emu.config.org_id,
        }
        out = str(tmp_path / "out")
        plan = str(tmp_path / "plan.json")
        code, stdout, stderr = run_cli(["plan", DATASET, "--shards", "2", "--write", plan], env)
        assert code == 0, stderr
        assert "for 2 shards written to" in stdout
        code, stdout, stderr = run_cli(
            ["download", "--plan", plan, "--shard", "1/2", "--out", out], env
        )
        assert code == 0, stderr
        assert "shard 1/2 done" in stdout
        code, _, stderr = run_cli(["finalize", DATASET, "--out", out, "--shards", "2"], env)
        assert code == 1
        assert "missing shards 2/2" in stderr
        code, stdout, stderr = run_cli(
            ["download", "--plan", plan, "--shard", "2/2", "--out", out], env
        )
        assert code == 0, stderr
        assert "finalized from 2 shards" in stdout
        code, stdout, stderr = run_cli(["finalize", DATASET, "--out", out], env)
        assert code == 0, stderr
        with LocalStorage(Path(out)).lock(shard_lock(1, 2)):
            code, _, stderr = run_cli(
                ["download", "--plan", plan, "--shard", "1/2", "--out", out], env
            )
        assert code == 75
        code, _, stderr = run_cli(["download", DATASET, "--shard", "3/2", "--out", out], env)
        assert code == 2
        assert "1 <= K <= N" in stderr


async def test_a_batch_with_rejected_entries_says_so_instead_of_missing_shards(
    tmp_path: Path,
) -> None:
    """Shards 1 and 2 ran but the listing held an entry asyncdl refuses: no rerun of a shard can
    make the batch whole, and "missing shards 1/3, 2/3" would send the user to run them again."""
    storage = LocalStorage(tmp_path)
    for index in (1, 2):
        extra = fragment_extra(shard=f"{index}/3", parts=[], complete=False, rejected=["../x"])
        storage.replace(fragment_name(index, 3), json.dumps({**extra, "parts": []}).encode())
    batch = Batch(id="B1", status="success", metrics=BatchMetrics())
    outcome = await finalize_batch(storage, batch, [], shards=3)
    assert not outcome.ok
    assert outcome.missing == (3,)  # the one that has not run
    assert outcome.problems == (
        "1 listing entries were rejected (../x): the batch cannot be whole, however often its"
        " shards run",
    )
