"""The emulator's world while it changes, through raw HTTP: Customer AI batches chained by
``replay.predecessors``, append-only datasets without replays, batches added while it serves
(``Emulator.add_batch``, the periodic adder behind ``asyncdl serve --new-batch-every``) and
batches that succeed later (``Emulator.set_status``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from typer.testing import CliRunner

from asyncdl.cli import app
from asyncdl.emulator import (
    DatasetSpec,
    Emulator,
    EmulatorConfig,
    TruthBatch,
    TruthPart,
    Variants,
    running_emulator,
    serve,
)
from asyncdl.emulator.data import data_key
from asyncdl.errors import ConfigError
from tests.emulator.test_emulator_variants import walk_batch

DATASET = "5cd9146b31dae914b75f654f"
EMPTY_DATASET = "5cd9146b31dae914b75f0000"
HEADERS = {
    "Authorization": "Bearer emulator-token",
    "x-api-key": "emulator",
    "x-gw-ims-org-id": "EMULATOR@AdobeOrg",
    "x-sandbox-name": "prod",
}
BATCHES = "/data/foundation/catalog/batches"
DATASETS = "/data/foundation/catalog/dataSets"
EXPORT = "/data/foundation/export"
DAY_MS = 86_400_000


@asynccontextmanager
async def serving(
    cache: Path, **overrides: Any
) -> AsyncIterator[tuple[Emulator, aiohttp.ClientSession]]:
    config = EmulatorConfig(cache_dir=cache, **overrides)
    async with (
        running_emulator(config) as emulator,
        aiohttp.ClientSession(emulator.base_url, headers=HEADERS) as http,
    ):
        yield emulator, http


async def get_json(http: aiohttp.ClientSession, url: str, **params: str) -> tuple[int, Any]:
    async with http.get(url, params=params) as response:
        return response.status, await response.json(content_type=None)


async def catalog_batches(http: aiohttp.ClientSession, **params: str) -> dict[str, Any]:
    status, body = await get_json(http, BATCHES, dataSet=DATASET, **params)
    assert status == 200
    assert isinstance(body, dict)
    return body


async def download_batch(http: aiohttp.ClientSession, batch_id: str) -> dict[str, bytes]:
    """Every part the batch's default listing offers: listed name → bytes, following links."""
    got: dict[str, bytes] = {}
    status, files = await get_json(http, f"{EXPORT}/batches/{batch_id}/files")
    assert status == 200
    for item in files["data"]:
        href: str | None = item["_links"]["self"]["href"]
        while href is not None:
            status, page = await get_json(http, href)
            assert status == 200
            for entry in page["data"]:
                if entry["name"] == "_SUCCESS":
                    continue
                async with http.get(entry["_links"]["self"]["href"]) as response:
                    assert response.status == 200
                    got[entry["name"]] = await response.read()
            href = page["_links"].get("next", {}).get("href")
    return got


def assert_served(got: Mapping[str, bytes], expected: Mapping[str, TruthPart]) -> None:
    assert got.keys() == expected.keys()
    for relpath, part in expected.items():
        assert got[relpath] == part.path.read_bytes(), relpath


# -- chains and append-only datasets -------------------------------------------------------------


async def test_customer_ai_batches_name_the_previous_success(part_cache: Path) -> None:
    async with serving(part_cache) as (emulator, http):
        oldest_first = sorted(emulator.batches_for(DATASET), key=lambda b: b.created_ms)
        body = await catalog_batches(http, orderBy="asc:created")
        successes = [b for b in body.values() if b["status"] == "success"]
        assert [b["id"] for b in successes] == [b.id for b in oldest_first]
        # Each scoring run replaces the one before: the current view is the newest alone.
        assert [b["replay"]["predecessors"] for b in successes] == [
            [],
            *([b.id] for b in oldest_first[:-1]),
        ]
        named = {p for b in successes for p in b["replay"]["predecessors"]}
        assert [b["id"] for b in successes if b["id"] not in named] == [oldest_first[-1].id]


async def test_append_only_batches_have_no_replay_and_share_the_part_cache(
    part_cache: Path,
) -> None:
    plain = EmulatorConfig(cache_dir=part_cache)
    appending = EmulatorConfig(cache_dir=part_cache, datasets=(DatasetSpec(append_only=True),))
    assert data_key(plain) == data_key(appending)
    async with running_emulator(plain) as emulator:
        plain_parts = [p.path for b in emulator.truth for p in b.parts]
    async with serving(part_cache, datasets=(DatasetSpec(append_only=True),)) as (emulator, http):
        assert [p.path for b in emulator.truth for p in b.parts] == plain_parts
        added = await emulator.add_batch(DATASET)
        body = await catalog_batches(http)
        assert added.id in body
        assert len(body) == 5
        assert all("replay" not in b for b in body.values())
        # Other datasets keep their chains.
        status, empty = await get_json(http, BATCHES, dataSet=EMPTY_DATASET)
        assert status == 200
        assert all("replay" in b for b in empty.values())


# -- add_batch -----------------------------------------------------------------------------------


async def test_an_added_batch_is_the_newest_and_is_served(part_cache: Path) -> None:
    async with serving(part_cache) as (emulator, http):
        before = {b.id: b for b in emulator.truth if b.dataset_id == DATASET}
        newest_ms = max(b.created_ms for b in before.values())
        previous = emulator.batches_for(DATASET)[0]
        added = await emulator.add_batch(DATASET)
        assert added.created_ms == newest_ms + DAY_MS
        assert (added.status, added.dataset_id) == ("success", DATASET)
        assert len(added.files) == 2
        assert [len(f.parts) for f in added.files] == [3, 3]
        assert [b for b in emulator.truth if b.dataset_id == DATASET][-1] == added
        assert emulator.batches_for(DATASET)[0] == added

        newest = await catalog_batches(http, orderBy="desc:created", limit="1")
        assert list(newest) == [added.id]
        after = await catalog_batches(http, createdAfter=str(newest_ms))
        assert list(after) == [added.id]
        earlier = await catalog_batches(http, createdBefore=str(added.created_ms))
        assert earlier.keys() == before.keys()
        second = await catalog_batches(http, orderBy="desc:created", start="1", limit="1")
        assert list(second) == [max(before.values(), key=lambda b: b.created_ms).id]
        status, one = await get_json(http, f"{BATCHES}/{added.id}")
        assert status == 200
        batch = one[added.id]
        assert batch["status"] == "success"
        assert batch["replay"]["predecessors"] == [previous.id]
        assert batch["metrics"]["outputByteSize"] == added.size
        assert batch["metrics"]["outputRecordCount"] == added.rows
        status, dataset = await get_json(http, f"{DATASETS}/{DATASET}")
        assert status == 200
        assert dataset[DATASET]["lastBatchId"] == added.id
        assert dataset[DATASET]["lastBatchStatus"] == "success"
        assert dataset[DATASET]["lastSuccessfulBatch"] == added.id
        assert dataset[DATASET]["updated"] == added.created_ms

        assert emulator.served_file_ids(added.id) == [f.dataset_file_id for f in added.files]
        expected = emulator.expected_files(added.id)
        assert sorted(expected) == sorted(p.name for p in added.parts)
        assert_served(await download_batch(http, added.id), expected)


async def test_added_batches_chain_and_are_deterministic(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    def digests(batches: list[TruthBatch]) -> list[tuple[str, list[str]]]:
        return [
            (b.id, [hashlib.sha256(p.path.read_bytes()).hexdigest() for p in b.parts])
            for b in batches
        ]

    runs = []
    for name in ("one", "two"):
        config = EmulatorConfig(cache_dir=tmp_path_factory.mktemp(name))
        async with running_emulator(config) as emulator:
            first = await emulator.add_batch(DATASET, parts=1)
            failed = await emulator.add_batch(DATASET, status="failed")
            second = await emulator.add_batch(DATASET, created_ms=failed.created_ms + 5)
            runs.append(digests([first, failed, second]))
            assert [len(f.parts) for f in first.files] == [1, 1]
            assert failed.files == ()
            assert second.created_ms == failed.created_ms + 5
            async with aiohttp.ClientSession(emulator.base_url, headers=HEADERS) as http:
                body = await catalog_batches(http, createdAfter=str(first.created_ms - 1))
            assert list(body) == [first.id, failed.id, second.id]
            # A failed run replaces nothing in the current view, but names what it would have.
            assert [b["replay"]["predecessors"] for b in body.values()] == [
                [emulator.batches_for(DATASET)[2].id],
                [first.id],
                [first.id],
            ]
    assert runs[0] == runs[1]


async def test_add_batch_refuses_what_cannot_be(part_cache: Path) -> None:
    async with serving(part_cache) as (emulator, _):
        newest_ms = max(b.created_ms for b in emulator.truth if b.dataset_id == DATASET)
        with pytest.raises(ValueError, match="created_ms"):
            await emulator.add_batch(DATASET, created_ms=newest_ms)
        with pytest.raises(ValueError, match="status"):
            await emulator.add_batch(DATASET, status="great")
        with pytest.raises(ValueError, match="parts"):
            await emulator.add_batch(DATASET, parts=-1)
        with pytest.raises(KeyError):
            await emulator.add_batch("nope")
        # The dataset that was never scored gets its first successful batch.
        first = await emulator.add_batch(EMPTY_DATASET)
        assert emulator.batches_for(EMPTY_DATASET) == [first]
    with pytest.raises(RuntimeError, match="not started"):
        await Emulator(EmulatorConfig(cache_dir=part_cache)).add_batch(DATASET)


async def test_an_added_batch_is_served_under_every_variant(part_cache: Path) -> None:
    world = DatasetSpec(id="live-every", batches=1, failed_batches=0, rows_per_part=50, nested=True)
    async with serving(
        part_cache, datasets=(world,), empty_dataset_id=None, variants=Variants.every()
    ) as (emulator, http):
        added = await emulator.add_batch("live-every", parts=4)
        expected = emulator.expected_files(added.id)
        assert sorted(p.name for p in expected.values()) == sorted(p.name for p in added.parts)
        assert len(emulator.served_file_ids(added.id)) > len(added.files)  # single files
        got = await walk_batch(http, emulator.base_url, added.id)
        assert_served(got, expected)
        # A new view (variants replaced) still holds it.
        emulator.variants = Variants()
        assert emulator.served_file_ids(added.id) == [f.dataset_file_id for f in added.files]


# -- set_status ----------------------------------------------------------------------------------


async def test_a_batch_created_earlier_can_succeed_later(part_cache: Path) -> None:
    async with serving(part_cache) as (emulator, http):
        current = emulator.batches_for(DATASET)[0]
        late = await emulator.add_batch(DATASET, status="processing")
        assert late.parts  # generated already: only not offered yet
        status, body = await get_json(http, f"{BATCHES}/{late.id}")
        assert status == 200
        assert body[late.id]["status"] == "processing"
        assert "completed" not in body[late.id]
        assert "errors" not in body[late.id]
        assert late.id not in await catalog_batches(http, status="success")
        status, files = await get_json(http, f"{EXPORT}/batches/{late.id}/files")
        assert (status, files["data"]) == (200, [])
        assert emulator.expected_files(late.id) == {}

        newer = await emulator.add_batch(DATASET)  # created after, succeeds first
        assert emulator.batches_for(DATASET)[0] == newer
        changed = emulator.set_status(late.id, "success")
        assert changed.status == "success"
        assert changed.files == late.files

        successes = await catalog_batches(http, status="success", orderBy="desc:created")
        assert list(successes)[:2] == [newer.id, late.id]
        batch = successes[late.id]
        assert batch["metrics"]["outputByteSize"] == late.size
        assert batch["completed"] > late.created_ms + DAY_MS  # it succeeded after `newer`
        assert batch["updated"] >= batch["completed"]
        # Predecessors are what the producer declared when it created the batch.
        assert batch["replay"]["predecessors"] == [current.id]
        assert successes[newer.id]["replay"]["predecessors"] == [current.id]
        assert emulator.batches_for(DATASET)[:2] == [newer, changed]
        assert_served(await download_batch(http, late.id), emulator.expected_files(late.id))
        assert emulator.served_file_ids(late.id) == [f.dataset_file_id for f in late.files]


async def test_set_status_refuses_what_cannot_be(part_cache: Path) -> None:
    async with serving(part_cache) as (emulator, http):
        (failed,) = emulator.batches_for(DATASET, status="failed")
        with pytest.raises(ValueError, match="no parts"):
            emulator.set_status(failed.id, "success")
        with pytest.raises(ValueError, match="status"):
            emulator.set_status(failed.id, "done")
        with pytest.raises(KeyError):
            emulator.set_status("nope", "success")
        # A success can be taken back: Data Access stops offering its parts.
        newest = emulator.batches_for(DATASET)[0]
        emulator.set_status(newest.id, "deleted")
        status, files = await get_json(http, f"{EXPORT}/batches/{newest.id}/files")
        assert (status, files["data"]) == (200, [])
        part = newest.parts[0]
        async with http.get(f"{EXPORT}/files/{part.directory}", params={"path": part.name}) as r:
            assert r.status == 404


# -- the periodic adder and asyncdl serve ---------------------------------------------------------


async def test_serve_adds_a_batch_every_period(part_cache: Path) -> None:
    config = EmulatorConfig(cache_dir=part_cache)
    started: list[Emulator] = []
    announced: list[TruthBatch] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: serve(
                    config,
                    host="127.0.0.1",
                    port=0,
                    on_ready=started.append,
                    new_batch_every_s=0.01,
                    on_new_batch=announced.append,
                )
            )
            while len(announced) < 3:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    (emulator,) = started
    ours = emulator.batches_for(DATASET)
    assert [b.id for b in ours[: len(announced)]] == [b.id for b in reversed(announced)]
    created = [b.created_ms for b in announced]
    assert created == sorted(created)
    assert len(set(created)) == len(created)


async def test_add_batches_every_validates_its_period(part_cache: Path) -> None:
    config = EmulatorConfig(cache_dir=part_cache)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="period"):
            await serve(config, host="127.0.0.1", port=0, on_ready=print, new_batch_every_s=bad)
    async with running_emulator(config) as emulator:
        with pytest.raises(ConfigError, match="period"):
            await emulator.add_batches_every(0.0)


def test_serve_flags_for_a_growing_dataset() -> None:
    shown = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    for flag in ("--new-batch-every", "--append-only"):
        assert flag in shown.stdout
    for bad in ("0", "-2", "nan", "inf"):
        refused = CliRunner().invoke(app, ["serve", "--new-batch-every", bad])
        assert refused.exit_code == 2, bad
        assert "--new-batch-every" in refused.stderr
        assert "must be a number of seconds > 0" in refused.stderr
