"""The emulator's ``Variants`` through raw HTTP: each response shape Adobe's spec allows, one
test each, then all of them at once walked like a careful client would (every href resolved
against its page, every entry downloaded, compared with ``expected_files`` byte for byte).

Also here: the always-on shape fixes of issue 12 that have no older test (export job cursors,
DELETE's body, integer-only Retry-After, the gateway's error codes) and the ``serve`` flags.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import aiohttp
import pytest
from typer.testing import CliRunner

from asyncdl.cli import app
from asyncdl.cli.emulate import VARIANT_FLAGS
from asyncdl.emulator import (
    VARIANT_NAMES,
    DatasetSpec,
    Emulator,
    EmulatorConfig,
    Faults,
    TruthBatch,
    Variants,
    running_emulator,
)
from asyncdl.emulator.data import data_key
from asyncdl.errors import ConfigError

DATASET = "5cd9146b31dae914b75f654f"
HEADERS = {
    "Authorization": "Bearer emulator-token",
    "x-api-key": "emulator",
    "x-gw-ims-org-id": "EMULATOR@AdobeOrg",
    "x-sandbox-name": "prod",
}
JSON = {"Accept": "application/json"}
BATCHES = "/data/foundation/catalog/batches"
EXPORT = "/data/foundation/export"
JOBS = "/data/core/ups/export/jobs"
_DISPOSITION = re.compile(r'attachment; filename="([^"]+)"')


@asynccontextmanager
async def serving(
    cache: Path, *, variants: Variants = Variants(), **overrides: Any
) -> AsyncIterator[tuple[Emulator, aiohttp.ClientSession]]:
    config = EmulatorConfig(cache_dir=cache, variants=variants, **overrides)
    async with (
        running_emulator(config) as emulator,
        aiohttp.ClientSession(emulator.base_url, headers=HEADERS) as http,
    ):
        yield emulator, http


async def get_json(
    http: aiohttp.ClientSession, url: str, **params: str
) -> tuple[int, Any, Mapping[str, str]]:
    async with http.get(url, params=params, headers=JSON) as response:
        return response.status, await response.json(content_type=None), response.headers


async def get_bytes(
    http: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, bytes, Mapping[str, str]]:
    async with http.get(url, headers=headers) as response:
        return response.status, await response.read(), response.headers


def newest(emulator: Emulator, dataset: str = DATASET) -> TruthBatch:
    return emulator.batches_for(dataset)[0]


def spec(name: str, **fields: Any) -> DatasetSpec:
    return DatasetSpec(id=name, **{"batches": 1, "failed_batches": 0, **fields})


async def listing(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    """Every item of a listing, following next hrefs (resolved) until an empty page."""
    items: list[dict[str, Any]] = []
    for _ in range(100):
        status, page, _ = await get_json(http, url)
        assert status == 200
        if not page["data"]:
            break
        items.extend(page["data"])
        following = page.get("_links", {}).get("next")
        if following is None:
            break
        url = urljoin(url, following["href"])
    return items


# -- one test per variant ------------------------------------------------------------------------


def test_variants_default_off_validated_and_outside_the_data_key(part_cache: Path) -> None:
    assert not any(getattr(Variants(), name) for name in VARIANT_NAMES)
    assert Variants().response_limit_s is None
    every = Variants.every(response_limit_s=2.0)
    assert all(getattr(every, name) for name in VARIANT_NAMES)
    assert every.response_limit_s == 2.0
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError):
            Variants(response_limit_s=bad)
    plain = EmulatorConfig(cache_dir=part_cache)
    varied = EmulatorConfig(cache_dir=part_cache, variants=every)
    assert data_key(plain) == data_key(varied)  # the part cache is shared


async def test_unlinked_batch_files_total_count_and_no_links(part_cache: Path) -> None:
    async with serving(part_cache, variants=Variants(unlinked_batch_files=True)) as (emu, http):
        batch = newest(emu)
        url = f"{EXPORT}/batches/{batch.id}/files"
        _, first, _ = await get_json(http, url, limit="1")
        assert "_links" not in first
        assert first["_page"] == {"limit": 1, "count": 2}  # the total, not the page
        _, second, _ = await get_json(http, url, limit="1", start="1")
        assert [f["dataSetFileId"] for f in first["data"] + second["data"]] == [
            f.dataset_file_id for f in batch.files
        ]
        _, past, _ = await get_json(http, url, limit="1", start="2")
        assert (past["data"], "_links" in past) == ([], False)


@pytest.mark.parametrize("unlinked", [False, True])
async def test_a_150_file_batch_is_listed_whole(part_cache: Path, unlinked: bool) -> None:
    wide = spec("wide", files_per_batch=150, parts_per_file=1, rows_per_part=50)
    variants = Variants(unlinked_batch_files=unlinked)
    async with serving(part_cache, variants=variants, datasets=(wide,), empty_dataset_id=None) as (
        emu,
        http,
    ):
        batch = newest(emu, "wide")
        files_url = f"{emu.base_url}{EXPORT}/batches/{batch.id}/files"
        url: str | None = files_url
        seen: list[str] = []
        while url is not None:
            _, page, _ = await get_json(http, url)
            shown = [f["dataSetFileId"] for f in page["data"]]
            assert len(shown) <= 100
            seen += shown
            if unlinked:  # start/limit until a short page, as the spec says
                assert "_links" not in page
                assert page["_page"]["count"] == 150
                full = len(shown) == page["_page"]["limit"]
                url = f"{files_url}?start={len(seen)}" if full else None
            else:
                url = page.get("_links", {}).get("next", {}).get("href")
        assert seen == emu.served_file_ids(batch.id) == [f.dataset_file_id for f in batch.files]
        assert len(seen) == 150


async def test_single_file_answers_bytes_with_a_filename_and_honours_range(
    part_cache: Path,
) -> None:
    async with serving(part_cache, variants=Variants(single_file=True)) as (emu, http):
        batch = newest(emu)
        last = batch.files[-1]
        singles = [f"{last.dataset_file_id}-{k}" for k in range(1, len(last.parts) + 1)]
        _, page, _ = await get_json(http, f"{EXPORT}/batches/{batch.id}/files")
        listed = [f["dataSetFileId"] for f in page["data"]]
        assert listed == [batch.files[0].dataset_file_id, *singles] == emu.served_file_ids(batch.id)
        part = last.parts[0]
        href = page["data"][1]["_links"]["self"]["href"]
        expected = part.path.read_bytes()
        # Bytes whatever Accept says: that is the point of a complete-file dataSetFile.
        async with http.get(href, headers=JSON) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/octet-stream"
            assert response.headers["Content-Length"] == str(part.size)
            assert response.headers["Content-Disposition"] == f'attachment; filename="{part.name}"'
            assert response.headers["Accept-Ranges"] == "bytes"
            assert await response.read() == expected
        status, body, headers = await get_bytes(http, href, Range="bytes=10-19")
        assert (status, body) == (206, expected[10:20])
        assert headers["Content-Range"] == f"bytes 10-19/{part.size}"
        assert headers["Content-Disposition"] == f'attachment; filename="{part.name}"'
        async with http.head(href) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(part.size)
        assert emu.expected_files(batch.id)[part.name] == part
        await emu.wait_idle()
        downloads = emu.downloads(part.name)
        assert [r.status for r in downloads] == [200, 206]
        assert all(r.part == part.name and "path" not in r.query for r in downloads)
        assert emu.requests[-1].kind == "head"
        status, _, _ = await get_json(http, href, path=part.name)
        assert status == 404  # a complete file has no entries


async def test_download_faults_apply_to_single_files(part_cache: Path) -> None:
    variants = Variants(single_file=True)
    faults = Faults(drop_rate=1.0, max_faults_per_path=1)
    async with serving(part_cache, variants=variants, faults=faults) as (emu, http):
        batch = newest(emu)
        part = batch.files[-1].parts[0]
        url = f"{EXPORT}/files/{batch.files[-1].dataset_file_id}-1"
        async with http.get(url) as response:
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        status, body, _ = await get_bytes(http, url)
        assert (status, body) == (200, part.path.read_bytes())
        emu.faults = Faults(error_5xx_rate=1.0, max_faults_per_path=1)
        status, _, _ = await get_bytes(http, url)
        assert status >= 500
        await emu.wait_idle()
        assert [r.fault for r in emu.requests] == ["drop", None, "5xx"]


async def test_nested_datasetfiles_list_datasetfiles_without_name_or_length(
    part_cache: Path,
) -> None:
    async with serving(part_cache, variants=Variants(nested_datasetfiles=True)) as (emu, http):
        batch = newest(emu)
        first = batch.files[0]
        entries = await listing(http, f"{emu.base_url}{EXPORT}/files/{first.dataset_file_id}")
        children = [f"{first.dataset_file_id}-1", f"{first.dataset_file_id}-2"]
        assert [e["dataSetFileId"] for e in entries] == children
        for entry in entries:
            assert "name" not in entry
            assert "length" not in entry
            assert {"dataSetViewId", "version", "created", "isValid"} <= set(entry)
            assert entry["_links"]["self"]["href"].endswith(
                f"{EXPORT}/files/{entry['dataSetFileId']}"
            )
        names = []
        for entry in entries:
            parts = await listing(http, entry["_links"]["self"]["href"])
            names.append([p["name"] for p in parts])
        assert names == [
            [p.name for p in first.parts[:2]] + ["_SUCCESS"],
            [first.parts[2].name, "_SUCCESS"],
        ]
    one = spec("one-part", parts_per_file=1)
    variants = Variants(nested_datasetfiles=True)
    async with serving(part_cache, variants=variants, datasets=(one,)) as (emu, http):
        first = newest(emu, "one-part").files[0]
        entries = await listing(http, f"{emu.base_url}{EXPORT}/files/{first.dataset_file_id}")
        assert [e["dataSetFileId"] for e in entries] == [f"{first.dataset_file_id}-1"]


async def test_relative_hrefs_resolve_to_working_urls(part_cache: Path) -> None:
    variants = Variants(relative_hrefs=True)
    async with serving(part_cache, variants=variants, page_size=2, batch_files_page_size=1) as (
        emu,
        http,
    ):
        batch = newest(emu)
        files_url = f"{emu.base_url}{EXPORT}/batches/{batch.id}/files"
        _, page, _ = await get_json(http, files_url)
        assert page["_links"]["next"]["href"] == "?start=1&limit=1"
        self_href = page["data"][0]["_links"]["self"]["href"]
        assert self_href == f"{EXPORT}/files/{batch.files[0].dataset_file_id}"
        for file in batch.files:
            url = f"{emu.base_url}{EXPORT}/files/{file.dataset_file_id}"
            _, first_page, _ = await get_json(http, url)
            assert first_page["_links"]["next"]["href"] == "?start=2&limit=2"
            assert first_page["_links"]["page"]["href"].startswith(f"{EXPORT}/files/")
            entries = await listing(http, url)
            assert [e["name"] for e in entries] == [p.name for p in file.parts] + ["_SUCCESS"]
            for entry, part in zip(entries, file.parts, strict=False):
                href = entry["_links"]["self"]["href"]
                assert href.startswith(f"{EXPORT}/files/{file.dataset_file_id}?path=")
                _, body, _ = await get_bytes(http, urljoin(url, href))
                assert body == part.path.read_bytes()


async def test_commit_markers_and_a_partition_folder(part_cache: Path) -> None:
    async with serving(part_cache, variants=Variants(commit_markers=True)) as (emu, http):
        batch = newest(emu)
        tid = re.search(r"-tid-(\d+)-", batch.parts[0].name)
        assert tid is not None
        folder = f"scoreDate={batch.score_date.isoformat()}/"
        for number, file in enumerate(batch.files):
            url = f"{emu.base_url}{EXPORT}/files/{file.dataset_file_id}"
            entries = await listing(http, url)
            names = [e["name"] for e in entries]
            prefix = folder if number == 1 else ""  # the second dataSetFile is partitioned
            parts = [prefix + p.name for p in file.parts]
            assert names == [f"_started_{tid[1]}", *parts, f"_committed_{tid[1]}", "_SUCCESS"]
            for entry in entries:
                _, body, _ = await get_bytes(http, entry["_links"]["self"]["href"])
                assert len(body) == int(entry["length"])
                if entry["name"].startswith("_") and entry["name"] != "_SUCCESS":
                    assert body  # small, but not empty
            committed = entries[-2]["_links"]["self"]["href"]
            _, body, _ = await get_bytes(http, committed)
            assert json.loads(body) == {"added": parts, "removed": []}
        second = batch.files[1]
        part = second.parts[0]
        query = quote(folder + part.name, safe="")
        status, body, _ = await get_bytes(
            http, f"{EXPORT}/files/{second.dataset_file_id}?path={query}"
        )
        assert (status, body) == (200, part.path.read_bytes())
        expected = emu.expected_files(batch.id)
        assert expected[folder + part.name] == part
        assert len(expected) == len(batch.parts)
        # Markers are not counted.
        _, catalog, _ = await get_json(http, f"{BATCHES}/{batch.id}")
        metrics = catalog[batch.id]["metrics"]
        assert (metrics["outputFileCount"], metrics["outputByteSize"]) == (6, batch.size)


async def test_missing_length_entries_and_head(part_cache: Path) -> None:
    async with serving(part_cache, variants=Variants(missing_length=True)) as (emu, http):
        file = newest(emu).files[0]
        url = f"{emu.base_url}{EXPORT}/files/{file.dataset_file_id}"
        entries = await listing(http, url)
        assert entries[0]["length"] == str(file.parts[0].size)
        assert "length" not in entries[1]
        assert entries[2]["length"] == "-1"
        assert entries[3] == {**entries[3], "name": "_SUCCESS", "length": "0"}
        for entry, part in zip(entries, file.parts, strict=False):
            async with http.head(entry["_links"]["self"]["href"]) as response:
                assert response.status == 200
                assert response.headers["Content-Length"] == str(part.size)
                assert response.headers["Accept-Ranges"] == "bytes"
                assert response.headers["Content-Type"] == "application/octet-stream"


async def test_unknown_length_head_has_no_content_length(part_cache: Path) -> None:
    async with serving(part_cache, variants=Variants(unknown_length=True)) as (emu, http):
        batch = newest(emu)
        url = f"{emu.base_url}{EXPORT}/files/{batch.files[0].dataset_file_id}"
        first, second, *_ = await listing(http, url)
        assert "length" not in first
        assert second["length"] == str(batch.parts[1].size)
        async with http.head(first["_links"]["self"]["href"]) as response:
            assert response.status == 200
            assert "Content-Length" not in response.headers
        async with http.head(second["_links"]["self"]["href"]) as response:
            assert response.headers["Content-Length"] == str(batch.parts[1].size)
        status, body, headers = await get_bytes(http, first["_links"]["self"]["href"])
        assert (status, body) == (200, batch.parts[0].path.read_bytes())
        assert headers["Content-Length"] == str(batch.parts[0].size)


async def test_endless_next_links_and_empty_pages(part_cache: Path) -> None:
    async with serving(part_cache, variants=Variants(endless_next=True), page_size=2) as (
        emu,
        http,
    ):
        file = newest(emu).files[0]
        url = f"{emu.base_url}{EXPORT}/files/{file.dataset_file_id}"
        sizes = []
        for _ in range(4):
            _, page, _ = await get_json(http, url)
            sizes.append(len(page["data"]))
            url = page["_links"]["next"]["href"]  # always there
        assert sizes == [2, 2, 0, 0]  # 3 parts and _SUCCESS, then nothing, forever
        assert url.endswith("?start=8&limit=2")


async def test_short_206_is_honest_about_what_it_sends(part_cache: Path) -> None:
    async with serving(part_cache, variants=Variants(short_206=True)) as (emu, http):
        part = newest(emu).parts[0]
        url = f"{EXPORT}/files/{part.directory}?path={quote(part.name, safe='')}"
        expected = part.path.read_bytes()
        status, body, headers = await get_bytes(http, url, Range="bytes=100-1099")
        assert (status, body) == (206, expected[100:600])
        assert headers["Content-Range"] == f"bytes 100-599/{part.size}"
        assert headers["Content-Length"] == "500"
        status, body, headers = await get_bytes(http, url, Range="bytes=0-0")
        assert (status, body, headers["Content-Range"]) == (
            206,
            expected[:1],
            f"bytes 0-0/{part.size}",
        )
        status, body, _ = await get_bytes(http, url)
        assert (status, body) == (200, expected)  # full answers are unaffected
        # Asking again for the rest, as the spec says a client must, gets the whole part.
        got = b""
        while len(got) < part.size:
            status, body, headers = await get_bytes(http, url, Range=f"bytes={len(got)}-")
            assert status == 206
            assert headers["Content-Range"].endswith(f"/{part.size}")
            got += body
        assert got == expected


async def test_file_count_of_datasetfiles(part_cache: Path) -> None:
    variants = Variants(file_count_of_datasetfiles=True, single_file=True)
    async with serving(part_cache, variants=variants) as (emu, http):
        batch = newest(emu)
        _, body, _ = await get_json(http, f"{BATCHES}/{batch.id}")
        served = emu.served_file_ids(batch.id)
        assert body[batch.id]["metrics"]["outputFileCount"] == len(served) == 1 + 3
        emu.variants = Variants(file_count_of_datasetfiles=True)
        _, body, _ = await get_json(http, f"{BATCHES}/{batch.id}")
        assert body[batch.id]["metrics"]["outputFileCount"] == len(batch.files) == 2
        emu.variants = Variants()
        _, body, _ = await get_json(http, f"{BATCHES}/{batch.id}")
        assert body[batch.id]["metrics"]["outputFileCount"] == len(batch.parts) == 6


async def test_quirky_metrics_are_strings(part_cache: Path) -> None:
    async with serving(part_cache, variants=Variants(quirky_metrics=True)) as (emu, http):
        batch = newest(emu)
        _, body, _ = await get_json(http, BATCHES, batch=batch.id)
        metrics = body[batch.id]["metrics"]
        assert metrics["outputByteSize"] == str(batch.size)
        assert metrics["outputRecordCount"] == str(batch.rows)
        assert metrics["outputFileCount"] == -1


async def test_malformed_retry_after_on_injected_refusals(part_cache: Path) -> None:
    variants = Variants(malformed_retry_after=True)
    faults = Faults(rate_429=0.5, error_5xx_rate=0.5, retry_after_s=1, max_faults_per_path=60)
    async with serving(part_cache, variants=variants, faults=faults) as (emu, http):
        seen: dict[int, set[str | None]] = {}
        for _ in range(60):
            async with http.get(BATCHES) as response:
                seen.setdefault(response.status, set()).add(response.headers.get("Retry-After"))
        assert seen[429] == {"1s", "soon"}
        assert seen[503] <= {"1s", "soon"}
        assert all(seen[s] == {None} for s in seen if s not in {429, 503})
        # The gateway's own rate limit still says something a client can use.
        emu.faults = Faults(rate_limit_rps=1.0)
        statuses = []
        for _ in range(3):
            async with http.get(BATCHES) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    assert (await response.json())["error_code"] == "429050"
        assert 429 in statuses


async def test_response_limit_cuts_a_slow_download(part_cache: Path) -> None:
    slow = spec("slow", files_per_batch=1, parts_per_file=1, part_bytes=40_000)
    variants = Variants(response_limit_s=0.3, single_file=True)
    async with serving(
        part_cache, variants=variants, datasets=(slow,), bandwidth_bps=40_000, empty_dataset_id=None
    ) as (emu, http):
        (part,) = newest(emu, "slow").parts
        url = f"{EXPORT}/files/{part.directory}-1"
        received: list[bytes] = []

        async def read_all(response: aiohttp.ClientResponse) -> None:
            async for chunk in response.content.iter_any():
                received.append(chunk)

        async with http.get(url) as response:
            assert response.headers["Content-Length"] == str(part.size)
            with pytest.raises(aiohttp.ClientPayloadError):
                await read_all(response)
        # Cut at the limit: some bytes came (the answer began), far from all of them (at
        # 40 kB/s the whole part takes 1 s, over three times the limit).
        assert 0 < len(b"".join(received)) < part.size
        # A range that fits in the limit arrives whole.
        status, body, _ = await get_bytes(http, url, Range="bytes=0-999")
        assert (status, body) == (206, part.path.read_bytes()[:1000])
        await emu.wait_idle()
        cut, whole = emu.downloads(part.name)
        assert cut.fault == "response_limit"
        assert 0 < cut.body_bytes < part.size
        assert whole.fault is None


async def test_export_job_quirks(part_cache: Path) -> None:
    variants = Variants(export_job_quirks=True)
    async with serving(part_cache, variants=variants, export_duration_s=0.0) as (_, http):
        one = export_request("a", segmentPerBatch=True)
        async with http.post(JOBS, json=one) as response:
            created = await response.json()
        assert created["id"] == 11000.0
        assert isinstance(created["id"], float)
        _, job, _ = await get_json(http, f"{JOBS}/11000")
        assert job["status"] == "SUCCEEDED"
        assert isinstance(job["destination"]["batches"], dict)
        assert job["destination"]["batches"]["segmentId"] == "a"
        async with http.post(JOBS, json=export_request("a", "b", segmentPerBatch=True)):
            pass
        _, job, _ = await get_json(http, f"{JOBS}/11001")
        assert [b["segmentId"] for b in job["destination"]["batches"]] == ["a", "b"]


# -- every variant at once -----------------------------------------------------------------------


async def walk_batch(http: aiohttp.ClientSession, base: str, batch_id: str) -> dict[str, bytes]:
    """What a careful client downloads for a batch: relpath → bytes (markers left out)."""
    got: dict[str, bytes] = {}

    async def visit(url: str) -> None:
        async with http.get(url, headers=JSON) as response:
            assert response.status == 200
            if response.content_type != "application/json":  # a complete file
                found = _DISPOSITION.fullmatch(response.headers["Content-Disposition"])
                assert found is not None
                got[found[1]] = await response.read()
                return
            page = await response.json()
        for _ in range(100):
            if not page["data"]:
                break
            for item in page["data"]:
                href = urljoin(url, item["_links"]["self"]["href"])
                if "dataSetFileId" in item or "path" not in parse_qs(urlsplit(href).query):
                    await visit(href)
                    continue
                status, body, _ = await get_bytes(http, href)
                assert status == 200
                if item.get("length") not in {None, "-1"}:
                    assert int(item["length"]) == len(body)
                if not item["name"].startswith("_"):
                    got[item["name"]] = body
            following = page.get("_links", {}).get("next")
            if following is None:
                break
            url = urljoin(url, following["href"])
            _, page, _ = await get_json(http, url)

    files_url = f"{base}{EXPORT}/batches/{batch_id}/files"
    start = 0
    while True:  # unlinked: start/limit until a short page
        _, page, _ = await get_json(http, files_url, start=str(start), limit="2")
        assert "_links" not in page
        for item in page["data"]:
            await visit(urljoin(files_url, item["_links"]["self"]["href"]))
        start += len(page["data"])
        if len(page["data"]) < 2:
            break
    return got


@pytest.mark.parametrize(
    "shape",
    [
        {"files_per_batch": 2, "nested": True},
        {"files_per_batch": 1, "nested": True},
        {"files_per_batch": 3, "parts_per_file": 1},
    ],
    ids=["two-files", "one-file", "three-files"],
)
async def test_every_variant_at_once_serves_a_consistent_world(
    part_cache: Path, shape: dict[str, Any]
) -> None:
    name = "every-" + "-".join(f"{k}{v}" for k, v in shape.items())
    world = DatasetSpec(id=name, batches=2, failed_batches=1, rows_per_part=50, **shape)
    variants = Variants.every()
    async with serving(
        part_cache, variants=variants, datasets=(world,), page_size=2, empty_dataset_id=None
    ) as (emu, http):
        for batch in emu.batches_for(name):
            expected = emu.expected_files(batch.id)
            assert sorted(p.name for p in expected.values()) == sorted(p.name for p in batch.parts)
            got = await walk_batch(http, emu.base_url, batch.id)
            assert got.keys() == expected.keys()
            for relpath, part in expected.items():
                assert got[relpath] == part.path.read_bytes(), relpath
            _, catalog, _ = await get_json(http, f"{BATCHES}/{batch.id}")
            metrics = catalog[batch.id]["metrics"]
            assert int(metrics["outputByteSize"]) == sum(len(b) for b in got.values())
            assert int(metrics["outputRecordCount"]) == sum(p.rows for p in expected.values())
        (failed,) = emu.batches_for(name, status="failed")
        assert emu.expected_files(failed.id) == {}
        assert emu.served_file_ids(failed.id) == []


# -- shape fixes ---------------------------------------------------------------------------------


def export_request(*segments: str, **destination: Any) -> dict[str, Any]:
    return {
        "filter": {"segments": [{"segmentId": s} for s in segments or ("seg",)]},
        "destination": {"datasetId": DATASET, **destination},
        "schema": {"name": "_xdm.context.profile"},
    }


async def test_export_job_listing_pages_with_opaque_cursors(part_cache: Path) -> None:
    async with serving(part_cache, export_duration_s=30.0) as (_, http):
        for _ in range(5):
            async with http.post(JOBS, json=export_request()) as response:
                assert response.status == 200
        ids: list[int] = []
        url = f"{JOBS}?limit=2"
        cursors = []
        while url:
            status, page, _ = await get_json(http, url)
            assert status == 200
            ids += [r["id"] for r in page["records"]]
            following = page["link"]["next"]
            if following:
                cursor = parse_qs(urlsplit(following).query)["offset"][0]
                assert re.fullmatch(r"\d{13}_\d+", cursor)
                assert page["page"]["pageOffset"] == cursor
                cursors.append(cursor)
            else:
                assert page["page"]["pageOffset"] == ""
            url = "/data/core/ups" + following if following else ""
        assert ids == [11004, 11003, 11002, 11001, 11000]
        assert len(cursors) == 2
        created, _, _ = cursors[0].partition("_")
        for bogus in ("2", "0", f"{created}_99", f"1{created}_11003", "soon"):
            status, problem, _ = await get_json(http, JOBS, limit="2", offset=bogus)
            assert (status, problem["status"]) == (400, 400)


async def test_delete_answers_the_job(part_cache: Path) -> None:
    async with serving(part_cache, export_duration_s=0.0) as (_, http):
        async with http.post(JOBS, json=export_request()) as response:
            job = await response.json()
        async with http.delete(f"{JOBS}/{job['id']}") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            finished = await response.json()
        assert (finished["id"], finished["status"]) == (job["id"], "SUCCEEDED")  # too late


def test_retry_after_must_be_whole_seconds() -> None:
    for bad in (0.5, 1.2, -1.0, float("inf")):
        with pytest.raises(ConfigError, match="whole number"):
            Faults(retry_after_s=bad)
    assert Faults(retry_after_s=0).retry_after_s == 0
    assert Faults(retry_after_s=2.0).retry_after_s == 2.0


async def test_gateway_error_codes_of_injected_refusals(part_cache: Path) -> None:
    faults = Faults(rate_429=0.5, error_5xx_rate=0.5, retry_after_s=2, max_faults_per_path=80)
    async with serving(part_cache, faults=faults) as (_, http):
        codes: set[str | None] = set()
        retry_after: set[str] = set()
        for _ in range(80):
            async with http.get(BATCHES) as response:
                raw = await response.read()
                body = json.loads(raw) if raw else {}
                if response.status == 429:
                    codes.add(body.get("error_code"))
                if response.status == 503:
                    codes.add(body.get("error_code", "rfc7807"))
                    assert body.get("status", 503) == 503
                if "Retry-After" in response.headers:
                    retry_after.add(response.headers["Retry-After"])
        assert codes == {"429001", "429002", None, "503010", "rfc7807"}
        assert retry_after == {"2"}


# -- asyncdl serve -------------------------------------------------------------------------------


def test_serve_flags() -> None:
    assert tuple(name.replace("_", "-") for name in VARIANT_NAMES) == VARIANT_FLAGS
    shown = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    for flag in ("--variant", "--all-variants", "--response-limit"):
        assert flag in shown.stdout
    unknown = CliRunner().invoke(app, ["serve", "--variant", "single-file", "--variant", "nope"])
    assert unknown.exit_code == 2
    assert "unknown variant 'nope'" in unknown.stderr
    assert "known: unlinked-batch-files, single-file," in unknown.stderr
    bad_limit = CliRunner().invoke(app, ["serve", "--response-limit", "0"])
    assert bad_limit.exit_code == 2
    assert "response_limit_s" in bad_limit.stderr
