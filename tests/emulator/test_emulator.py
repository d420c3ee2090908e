"""The AEP emulator through raw HTTP: gateway, IMS, Catalog, Data Access, faults, ground truth.

Every test starts its own emulator on 127.0.0.1 port 0; generated parts are shared through one
session cache directory, so only the first start pays for generation.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import anyio
import pyarrow.parquet as pq
import pytest

from asyncdl.emulator import (
    HOSTILE_NAMES,
    SCHEMA,
    DatasetSpec,
    Emulator,
    EmulatorConfig,
    Faults,
    TruthBatch,
    running_emulator,
)
from asyncdl.errors import ConfigError

DATASET = "5cd9146b31dae914b75f654f"
EMPTY_DATASET = "5cd9146b31dae914b75f0000"
HEADERS = {
    "Authorization": "Bearer emulator-token",
    "x-api-key": "emulator",
    "x-gw-ims-org-id": "EMULATOR@AdobeOrg",
    "x-sandbox-name": "prod",
}
BATCHES = "/data/foundation/catalog/batches"
EXPORT = "/data/foundation/export"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emulator-cache")


@asynccontextmanager
async def serving(
    cache_dir: Path, **overrides: Any
) -> AsyncIterator[tuple[Emulator, aiohttp.ClientSession]]:
    config = EmulatorConfig(cache_dir=cache_dir, **overrides)
    async with (
        running_emulator(config) as emulator,
        aiohttp.ClientSession(emulator.base_url, headers=HEADERS) as http,
    ):
        yield emulator, http


async def get_json(
    http: aiohttp.ClientSession, url: str, **params: str
) -> tuple[int, Any, Mapping[str, str]]:
    async with http.get(url, params=params) as response:
        body = await response.json(content_type=None)
        return response.status, body, response.headers


def newest_success(emulator: Emulator) -> TruthBatch:
    return emulator.batches_for(DATASET)[0]


async def walk_directory(http: aiohttp.ClientSession, href: str) -> list[dict[str, Any]]:
    """Every entry of a directory, following ``_links.next`` until it is absent."""
    entries: list[dict[str, Any]] = []
    next_href: str | None = href
    while next_href is not None:
        status, page, _ = await get_json(http, next_href)
        assert status == 200
        entries.extend(page["data"])
        next_href = page["_links"].get("next", {}).get("href")
    return entries


# -- gateway and IMS -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"Authorization": None}, 403, "403010"),
        ({"Authorization": "Basic abc"}, 403, "403010"),
        ({"x-api-key": None}, 403, "403000"),
        ({"x-api-key": "wrong"}, 403, "403003"),
        ({"Authorization": "Bearer nope"}, 401, "401013"),
        ({"x-gw-ims-org-id": None}, 400, "400003"),
        ({"x-gw-ims-org-id": "OTHER@AdobeOrg"}, 403, "403025"),
        ({"x-sandbox-name": "dev"}, 403, "403025"),
    ],
)
async def test_gateway_refuses_bad_headers(
    cache_dir: Path, changes: dict[str, str | None], status: int, code: str
) -> None:
    headers = {k: v for k, v in {**HEADERS, **changes}.items() if v is not None}
    async with serving(cache_dir) as (emulator, _):
        async with (
            aiohttp.ClientSession(emulator.base_url) as bare,
            bare.get(BATCHES, headers=headers) as response,
        ):
            body = await response.json()
        assert response.status == status
        assert body["error_code"] == code
        assert body["message"]
        # Refusals are recorded too.
        await emulator.wait_idle()
        assert emulator.requests[-1].status == status
        assert emulator.requests[-1].kind == "catalog_batches"


async def test_missing_sandbox_header_means_prod(cache_dir: Path) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "x-sandbox-name"}
    async with (
        serving(cache_dir) as (emulator, _),
        aiohttp.ClientSession(emulator.base_url, headers=headers) as bare,
        bare.get(BATCHES) as response,
    ):
        assert response.status == 200


async def test_ims_token_is_accepted_then_expires(cache_dir: Path) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": "emulator-client",
        "client_secret": "emulator-secret",
        "scope": "openid,AdobeID,read_organizations",
    }
    async with serving(cache_dir, token_lifetime_s=0.3) as (emulator, http):
        async with http.post("/ims/token/v3", data=form) as response:
            assert response.status == 200
            issued = await response.json()
        assert issued["token_type"] == "bearer"
        assert isinstance(issued["expires_in"], int)
        # An OAuth client sends its client id as the API key.
        headers = {
            **HEADERS,
            "Authorization": f"Bearer {issued['access_token']}",
            "x-api-key": "emulator-client",
        }
        async with http.get(BATCHES, headers=headers) as response:
            assert response.status == 200
        await anyio.sleep(0.35)
        async with http.get(BATCHES, headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error_code"] == "401013"
        await emulator.wait_idle()
        assert emulator.requests[0].kind == "token"


async def test_revoked_tokens_are_refused(cache_dir: Path) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": "emulator-client",
        "client_secret": "emulator-secret",
    }
    async with serving(cache_dir) as (emulator, http):
        async with http.post("/ims/token/v3", data=form) as response:
            token = (await response.json())["access_token"]
        headers = {**HEADERS, "Authorization": f"Bearer {token}"}
        emulator.revoke_tokens()
        async with http.get(BATCHES, headers=headers) as response:
            assert response.status == 401
        async with http.get(BATCHES) as response:
            assert response.status == 200  # static tokens survive


async def test_ims_refuses_bad_client_and_grant(cache_dir: Path) -> None:
    async with serving(cache_dir) as (_, http):
        bad_client = {"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}
        async with http.post("/ims/token/v3", data=bad_client) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "invalid_client"
        bad_grant = {"grant_type": "password", "client_id": "emulator-client"}
        async with http.post("/ims/token/v3", data=bad_grant) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "unsupported_grant_type"


# -- Catalog -------------------------------------------------------------------------------------


async def test_catalog_latest_success_skips_newer_failed_batch(cache_dir: Path) -> None:
    async with serving(cache_dir) as (emulator, http):
        everything = sorted(
            (b for b in emulator.truth if b.dataset_id == DATASET), key=lambda b: b.created_ms
        )
        assert everything[-1].status == "failed"
        assert [b.created_ms - everything[0].created_ms for b in everything] == [
            i * 86_400_000 for i in range(len(everything))
        ]
        params = {"dataSet": DATASET, "createdClient": "acp_foundation_push"}
        status, newest, _ = await get_json(
            http, BATCHES, orderBy="desc:created", limit="1", **params
        )
        assert status == 200
        assert list(newest) == [everything[-1].id]
        status, body, _ = await get_json(
            http, BATCHES, status="success", orderBy="desc:created", limit="1", **params
        )
        (batch_id,) = body
        assert batch_id == newest_success(emulator).id
        _, single, _ = await get_json(http, f"{BATCHES}/{batch_id}")
        assert single == body
        status, _, _ = await get_json(http, f"{BATCHES}/unknown")
        assert status == 404
        batch = body[batch_id]
        assert batch["status"] == "success"
        assert batch["relatedObjects"] == [{"type": "dataSet", "id": DATASET}]
        assert batch["inputFormat"] == {"format": "parquet"}
        assert batch["replay"]["reason"].startswith("Replacing for ")
        assert "_page" not in body


async def test_catalog_order_limit_and_start(cache_dir: Path) -> None:
    async with serving(cache_dir) as (emulator, http):
        ours = [b for b in emulator.truth if b.dataset_id == DATASET]
        oldest_first = [b.id for b in sorted(ours, key=lambda b: b.created_ms)]
        _, ascending, _ = await get_json(http, BATCHES, dataSet=DATASET, orderBy="asc:created")
        assert list(ascending) == oldest_first
        _, default, _ = await get_json(http, BATCHES, dataSet=DATASET, orderBy="created")
        assert list(default) == oldest_first
        _, page, _ = await get_json(
            http, BATCHES, dataSet=DATASET, orderBy="desc:created", limit="2", start="1"
        )
        assert list(page) == oldest_first[::-1][1:3]
        _, successes, _ = await get_json(http, BATCHES, dataSet=DATASET, status="success")
        assert {b["status"] for b in successes.values()} == {"success"}
        assert len(successes) == 3
        _, unknown, _ = await get_json(http, BATCHES, dataSet="nope")
        assert unknown == {}
        _, other_client, _ = await get_json(http, BATCHES, createdClient="someone_else")
        assert other_client == {}
        middle = sorted(ours, key=lambda b: b.created_ms)[1]
        _, window, _ = await get_json(
            http,
            BATCHES,
            dataSet=DATASET,
            createdAfter=str(middle.created_ms - 1),
            createdBefore=str(middle.created_ms + 1),
        )
        assert list(window) == [middle.id]


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "ten"}, {"start": "-1"}, {"orderBy": "desc:updated"}],
)
async def test_catalog_rejects_bad_parameters(cache_dir: Path, params: dict[str, str]) -> None:
    async with serving(cache_dir) as (_, http):
        status, body, _ = await get_json(http, BATCHES, dataSet=DATASET, **params)
        assert status == 400
        assert body["status"] == 400
        assert {"type", "title", "detail"} <= set(body)


async def test_metrics_match_the_parts_on_disk(cache_dir: Path) -> None:
    async with serving(cache_dir) as (emulator, http):
        batch = newest_success(emulator)
        _, body, _ = await get_json(http, BATCHES, batch=batch.id)
        metrics = body[batch.id]["metrics"]
        assert metrics["outputByteSize"] == sum(p.path.stat().st_size for p in batch.parts)
        rows = sum(pq.read_metadata(p.path).num_rows for p in batch.parts)
        assert metrics["outputRecordCount"] == rows == batch.rows
        assert metrics["outputFileCount"] == len(batch.parts) == 6
        emulator.faults = Faults(wrong_metrics=True)
        _, body, _ = await get_json(http, BATCHES, batch=batch.id)
        assert body[batch.id]["metrics"]["outputByteSize"] == batch.size + 1
        assert body[batch.id]["metrics"]["outputRecordCount"] == batch.rows + 1


async def test_datasets(cache_dir: Path) -> None:
    async with serving(cache_dir) as (emulator, http):
        status, body, _ = await get_json(http, f"/data/foundation/catalog/dataSets/{DATASET}")
        assert status == 200
        dataset = body[DATASET]
        assert dataset["name"] == "Customer AI Scores - Emulated"
        assert dataset["lastSuccessfulBatch"] == newest_success(emulator).id
        assert dataset["schemaRef"]["contentType"].startswith("application/vnd.adobe.xed")
        status, body, _ = await get_json(http, f"/data/foundation/catalog/dataSets/{EMPTY_DATASET}")
        assert status == 200
        assert "lastSuccessfulBatch" not in body[EMPTY_DATASET]
        assert emulator.batches_for(EMPTY_DATASET) == []
        assert len(emulator.batches_for(EMPTY_DATASET, status="failed")) == 1
        status, body, _ = await get_json(http, "/data/foundation/catalog/dataSets/unknown")
        assert status == 404
        assert body["status"] == 404


# -- Data Access ---------------------------------------------------------------------------------


async def test_batch_files_paging_failed_and_unknown(cache_dir: Path) -> None:
    async with serving(cache_dir, batch_files_page_size=1) as (emulator, http):
        batch = newest_success(emulator)
        status, page, _ = await get_json(http, f"{EXPORT}/batches/{batch.id}/files")
        assert status == 200
        assert page["_page"] == {"limit": 1, "count": 1}
        first = page["data"][0]
        assert first["dataSetFileId"] == f"{batch.id}-1"
        assert first["isValid"] is False
        assert isinstance(first["created"], str)
        assert first["_links"]["self"]["href"] == (
            f"{emulator.base_url}{EXPORT}/files/{batch.id}-1"
        )
        _, second, _ = await get_json(http, page["_links"]["next"]["href"])
        assert second["data"][0]["dataSetFileId"] == f"{batch.id}-2"
        assert "_links" not in second
        failed = emulator.batches_for(DATASET, status="failed")[0]
        status, empty, _ = await get_json(http, f"{EXPORT}/batches/{failed.id}/files")
        assert (status, empty["data"]) == (200, [])
        status, missing, _ = await get_json(http, f"{EXPORT}/batches/unknown/files")
        assert (status, missing["status"]) == (404, 404)


async def test_directory_paging_walks_every_part(cache_dir: Path) -> None:
    async with serving(cache_dir, page_size=3) as (emulator, http):
        batch = newest_success(emulator)
        for file in batch.files:
            href = f"{emulator.base_url}{EXPORT}/files/{file.dataset_file_id}"
            status, first, _ = await get_json(http, href)
            assert status == 200
            assert first["_page"]["limit"] == 3
            assert first["_links"]["page"]["templated"] is True
            entries = await walk_directory(http, href)
            assert [e["name"] for e in entries] == [p.name for p in file.parts] + ["_SUCCESS"]
            assert all(isinstance(e["length"], str) for e in entries)
            assert entries[-1]["length"] == "0"
            assert [int(e["length"]) for e in entries[:-1]] == [p.size for p in file.parts]
            for entry, part in zip(entries, file.parts, strict=False):
                href = entry["_links"]["self"]["href"]
                assert href.startswith(f"{emulator.base_url}{EXPORT}/files/{part.directory}?")
                assert parse_qs(urlsplit(href).query)["path"] == [part.name]
        directory = f"{EXPORT}/files/{batch.files[0].dataset_file_id}"
        _, limited, _ = await get_json(http, directory, limit="2", start="1")
        assert len(limited["data"]) == 2
        _, capped, _ = await get_json(http, directory, limit="500")
        assert capped["_page"]["limit"] == 100
        status, _, _ = await get_json(http, directory, limit="0")
        assert status == 400
        status, missing, _ = await get_json(http, f"{EXPORT}/files/unknown-1")
        assert (status, missing["status"]) == (404, 404)


async def test_nested_directory(cache_dir: Path) -> None:
    spec = DatasetSpec(nested=True, batches=1, failed_batches=0)
    async with serving(cache_dir, datasets=(spec,)) as (emulator, http):
        batch = newest_success(emulator)
        file = batch.files[0]
        entries = await walk_directory(http, f"{EXPORT}/files/{file.dataset_file_id}")
        nested = [e for e in entries if e["name"] == "nested"]
        assert len(nested) == 1
        sub_href = nested[0]["_links"]["self"]["href"]
        assert "?" not in sub_href
        assert sub_href.endswith(f"/files/{file.dataset_file_id}-nested")
        sub_entries = await walk_directory(http, sub_href)
        sub_parts = [p for p in file.parts if p.directory != file.dataset_file_id]
        assert [e["name"] for e in sub_entries] == [p.name for p in sub_parts] + ["_SUCCESS"]
        assert len(sub_parts) == 2
        async with http.get(sub_entries[0]["_links"]["self"]["href"]) as response:
            assert await response.read() == sub_parts[0].path.read_bytes()
        assert len({p.name for p in batch.parts}) == len(batch.parts) == 8


async def test_download_full_range_head_and_416(cache_dir: Path) -> None:
    async with serving(cache_dir) as (emulator, http):
        part = newest_success(emulator).parts[0]
        url = f"{EXPORT}/files/{part.directory}"
        expected = part.path.read_bytes()
        async with http.get(url, params={"path": part.name}) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/octet-stream"
            assert response.headers["Accept-Ranges"] == "bytes"
            assert await response.read() == expected
        async with http.get(url, params={"path": part.name}, headers={"Range": "bytes=100-"}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 100-{part.size - 1}/{part.size}"
            assert await r.read() == expected[100:]
        async with http.get(url, params={"path": part.name}, headers={"Range": "bytes=5-9"}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 5-9/{part.size}"
            assert await r.read() == expected[5:10]
        async with http.head(url, params={"path": part.name}) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(part.size)
            assert response.headers["Accept-Ranges"] == "bytes"
        beyond = {"Range": f"bytes={part.size}-"}
        async with http.get(url, params={"path": part.name}, headers=beyond) as response:
            assert response.status == 416
            assert response.headers["Content-Range"] == f"bytes */{part.size}"
        async with http.get(url, params={"path": "_SUCCESS"}) as response:
            assert (response.status, await response.read()) == (200, b"")
        async with http.get(url, params={"path": "no-such.parquet"}) as response:
            assert response.status == 404
        await emulator.wait_idle()
        kinds = [r.kind for r in emulator.requests]
        assert kinds.count("download") == 6
        assert kinds.count("head") == 1
        assert [r.body_bytes for r in emulator.downloads(part.name)][:3] == [
            part.size,
            part.size - 100,
            5,
        ]


async def test_without_range_support_always_full(cache_dir: Path) -> None:
    async with serving(cache_dir, faults=Faults(range_support=False)) as (emulator, http):
        part = newest_success(emulator).parts[0]
        url = f"{EXPORT}/files/{part.directory}"
        ranged = {"Range": "bytes=100-"}
        async with http.get(url, params={"path": part.name}, headers=ranged) as response:
            assert response.status == 200
            assert "Accept-Ranges" not in response.headers
            assert "Content-Range" not in response.headers
            assert await response.read() == part.path.read_bytes()
        async with http.head(url, params={"path": part.name}) as response:
            assert response.headers["Content-Length"] == str(part.size)


# -- faults --------------------------------------------------------------------------------------


async def test_5xx_is_capped_per_path(cache_dir: Path) -> None:
    faults = Faults(error_5xx_rate=1.0, max_faults_per_path=2, retry_after_s=2.0)
    async with serving(cache_dir, faults=faults) as (emulator, http):
        statuses = []
        for _ in range(3):
            status, body, headers = await get_json(http, BATCHES, dataSet=DATASET)
            statuses.append(status)
            if status >= 500:
                # The service's RFC 7807 body, or for some 503s the gateway's own.
                assert body.get("status") == status or body["error_code"] == "503010"
                assert ("Retry-After" in headers) == (status == 503)
        assert all(s in {500, 502, 503, 504} for s in statuses[:2])
        assert statuses[2] == 200
        # Another URL has its own allowance.
        status, _, _ = await get_json(http, BATCHES, dataSet=EMPTY_DATASET)
        assert status >= 500
        await emulator.wait_idle()
        assert [r.fault for r in emulator.requests] == ["5xx", "5xx", None, "5xx"]


async def test_429_bodies_and_retry_after(cache_dir: Path) -> None:
    faults = Faults(rate_429=1.0, max_faults_per_path=40, retry_after_s=3.0)
    async with serving(cache_dir, faults=faults) as (emulator, http):
        bodies = set()
        for _ in range(40):
            async with http.get(BATCHES) as response:
                assert response.status == 429
                assert response.headers["Retry-After"] == "3"
                bodies.add(await response.read() != b"")
        assert bodies == {True, False}  # some empty, some gateway JSON
        async with http.get(BATCHES) as response:
            assert response.status == 200
        emulator.faults = Faults(rate_429=1.0, retry_after_s=1.0, retry_after_http_date=True)
        async with http.get(BATCHES) as response:
            assert response.status == 429  # counters were reset with the new faults
            assert response.headers["Retry-After"].endswith("GMT")


async def test_drop_cuts_the_connection_mid_body(cache_dir: Path) -> None:
    faults = Faults(drop_rate=1.0, max_faults_per_path=1)
    async with serving(cache_dir, faults=faults) as (emulator, http):
        part = newest_success(emulator).parts[0]
        params = {"path": part.name}
        async with http.get(f"{EXPORT}/files/{part.directory}", params=params) as response:
            assert response.headers["Content-Length"] == str(part.size)
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        async with http.get(f"{EXPORT}/files/{part.directory}", params=params) as response:
            assert await response.read() == part.path.read_bytes()
        await emulator.wait_idle()
        dropped, ok = emulator.downloads(part.name)
        assert dropped.fault == "drop"
        assert dropped.body_bytes == part.size // 2
        assert ok.fault is None


async def test_truncate_sends_a_consistent_short_body(cache_dir: Path) -> None:
    faults = Faults(truncate_rate=1.0, max_faults_per_path=2)
    async with serving(cache_dir, faults=faults) as (emulator, http):
        part = newest_success(emulator).parts[0]
        url = f"{EXPORT}/files/{part.directory}"
        async with http.get(url, params={"path": part.name}) as response:
            body = await response.read()
            assert response.status == 200
            assert int(response.headers["Content-Length"]) == len(body) < part.size
        assert body == part.path.read_bytes()[: len(body)]
        ranged = {"Range": "bytes=10-"}
        async with http.get(url, params={"path": part.name}, headers=ranged) as response:
            body = await response.read()
            total = int(response.headers["Content-Range"].rsplit("/", 1)[1])
            assert response.status == 206
            assert total == 10 + len(body) < part.size  # consistent, and short
        async with http.get(url, params={"path": part.name}) as response:
            assert len(await response.read()) == part.size
        await emulator.wait_idle()
        faults_seen = [r.fault for r in emulator.downloads(part.name)]
        assert faults_seen == ["truncate", "truncate", None]


async def test_rate_limit_bucket(cache_dir: Path) -> None:
    async with serving(cache_dir, faults=Faults(rate_limit_rps=1.0)) as (emulator, http):
        statuses = []
        for _ in range(4):
            async with http.get(BATCHES) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
        assert statuses[0] == 200
        assert 429 in statuses[1:]  # a second request within the same second
        await emulator.wait_idle()
        assert "rate_limit" in [r.fault for r in emulator.requests]


async def test_foreign_origin_and_hostile_names(cache_dir: Path) -> None:
    faults = Faults(foreign_origin="http://127.0.0.1:9999/", hostile_names=True)
    async with serving(cache_dir, faults=faults) as (emulator, http):
        file = newest_success(emulator).files[0]
        entries = await walk_directory(http, f"{EXPORT}/files/{file.dataset_file_id}")
        names = [e["name"] for e in entries]
        assert set(HOSTILE_NAMES) <= set(names)
        assert names[-1] == "_SUCCESS"
        by_name = {e["name"]: e["_links"]["self"]["href"] for e in entries}
        for part in file.parts:
            assert by_name[part.name].startswith("http://127.0.0.1:9999/data/foundation/export/")
        for name in HOSTILE_NAMES:
            query = urlsplit(by_name[name]).query
            async with http.get(f"{EXPORT}/files/{file.dataset_file_id}?{query}") as response:
                assert response.status == 200
                assert len(await response.read()) > 0


async def test_bandwidth_cap_slows_downloads(cache_dir: Path) -> None:
    spec = DatasetSpec(
        id="bandwidth", batches=1, failed_batches=0, files_per_batch=1, parts_per_file=1,
        part_bytes=200_000,
    )  # fmt: skip
    config = {"datasets": (spec,), "bandwidth_bps": 1_000_000, "empty_dataset_id": None}
    async with serving(cache_dir, **config) as (emulator, http):
        (part,) = emulator.batches_for("bandwidth")[0].parts
        assert 180_000 <= part.size <= 220_000
        began = time.monotonic()
        async with http.get(f"{EXPORT}/files/{part.directory}", params={"path": part.name}) as r:
            assert await r.read() == part.path.read_bytes()
        assert time.monotonic() - began >= 0.15
        ranged = {"Range": "bytes=100000-"}
        async with http.get(
            f"{EXPORT}/files/{part.directory}", params={"path": part.name}, headers=ranged
        ) as r:
            assert r.status == 206
            assert await r.read() == part.path.read_bytes()[100_000:]


async def test_latency_is_added(cache_dir: Path) -> None:
    async with serving(cache_dir, latency_s=0.1) as (_, http):
        began = time.monotonic()
        async with http.get(BATCHES) as response:
            assert response.status == 200
        assert time.monotonic() - began >= 0.1


# -- data ----------------------------------------------------------------------------------------


def _shape(truth: tuple[TruthBatch, ...]) -> list[tuple[object, ...]]:
    """Everything of the truth but where the files live."""
    return [
        (b.id, b.status, b.created_ms, [(p.name, p.size, p.rows, p.directory) for p in b.parts])
        for b in truth
    ]


def _digests(emulator: Emulator) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.path.read_bytes()).hexdigest()
        for batch in emulator.truth
        for p in batch.parts
    }


async def test_data_is_deterministic_and_has_the_schema(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    async with running_emulator(EmulatorConfig(cache_dir=tmp_path_factory.mktemp("a"))) as one:
        first = _digests(one)
        truth = one.truth
    async with running_emulator(EmulatorConfig(cache_dir=tmp_path_factory.mktemp("b"))) as two:
        assert _digests(two) == first
        assert _shape(two.truth) == _shape(truth)
    part = truth[0].parts[0]
    table = pq.read_table(part.path)
    assert table.schema.equals(SCHEMA)
    assert table.num_rows == part.rows == 200
    rows = table.to_pylist()
    assert all(len(r["ecid"]) == 38 and r["ecid"].isdigit() for r in rows)
    assert all(0 <= r["score"] <= 100 and 0 <= r["probability"] <= 1 for r in rows)
    assert all(1 <= r["percentileScore"] <= 100 for r in rows)
    assert {r["propensityType"] for r in rows} <= {"churn", "conversion"}
    assert len({r["scoreDate"] for r in rows}) == 1
    assert all(1 <= len(r["influentialFactors"]) <= 4 for r in rows)
    levels = {f["importance"] for r in rows for f in r["influentialFactors"]}
    assert levels == {"low", "medium", "high"}
    assert part.name.startswith("part-00000-tid-")
    assert part.name.endswith("-528-1-c000.snappy.parquet")


async def test_part_bytes_sizes_parts(cache_dir: Path) -> None:
    spec = DatasetSpec(
        id="sized", batches=1, failed_batches=0, parts_per_file=2, part_bytes=300_000
    )
    async with running_emulator(
        EmulatorConfig(cache_dir=cache_dir, datasets=(spec,), empty_dataset_id=None)
    ) as emulator:
        for part in emulator.truth[0].parts:
            assert 270_000 <= part.size <= 330_000


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        Faults(error_5xx_rate=1.5)
    with pytest.raises(ConfigError):
        Faults(foreign_origin="not a url")
    with pytest.raises(ConfigError):
        EmulatorConfig(datasets=(DatasetSpec(), DatasetSpec()))


# -- export jobs and recording -------------------------------------------------------------------


JOBS = "/data/core/ups/export/jobs"
DATASETS = "/data/foundation/catalog/dataSets"


def export_request(dataset_id: str, *segments: str, **destination: Any) -> dict[str, Any]:
    return {
        "fields": "person.name.firstName,personalEmail.address",
        "mergePolicy": {"id": "mp", "version": 1},
        "filter": {
            "segments": [
                {"segmentId": s, "segmentNs": "ups", "status": ["realized", "existing"]}
                for s in segments or ("seg",)
            ]
        },
        "destination": {"datasetId": dataset_id, **destination},
        "schema": {"name": "_xdm.context.profile"},
    }


async def post_json(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(url, json=body) as response:
        return response.status, await response.json(content_type=None)


async def test_create_dataset(cache_dir: Path) -> None:
    async with serving(cache_dir) as (_, http):
        schema = {"id": "https://ns.adobe.com/xdm/context/profile__union"}
        status, body = await post_json(http, DATASETS, {"name": "Audience", "schemaRef": schema})
        assert status == 201
        (ref,) = body
        assert ref.startswith("@/dataSets/")
        dataset_id = ref.removeprefix("@/dataSets/")
        status, dataset, _ = await get_json(http, f"{DATASETS}/{dataset_id}")
        assert status == 200
        assert dataset[dataset_id]["name"] == "Audience"
        assert dataset[dataset_id]["schemaRef"]["id"] == schema["id"]
        assert "lastBatchId" not in dataset[dataset_id]
        for bad in ({"schemaRef": schema}, {"name": "x"}, None):
            status, problem = await post_json(http, DATASETS, bad)
            assert status == 400
            assert problem["title"] == "Bad Request"


async def test_export_job_moves_through_its_statuses_and_writes_a_batch(cache_dir: Path) -> None:
    async with serving(cache_dir, export_duration_s=0.3) as (emulator, http):
        status, job = await post_json(http, JOBS, export_request(DATASET))
        assert (status, job["status"], job["id"]) == (200, "NEW", 11000)
        statuses: list[str] = []
        while not statuses or statuses[-1] not in {"SUCCEEDED", "FAILED"}:
            _, job, _ = await get_json(http, f"{JOBS}/{job['id']}")
            statuses.append(job["status"])
            if statuses[-1] != "SUCCEEDED":
                assert job["destination"]["batchId"] == ""
            await anyio.sleep(0.02)
        assert list(dict.fromkeys(statuses)) == ["NEW", "PROCESSING", "SUCCEEDED"]
        (batch,) = emulator.export_batches
        assert job["destination"] == {
            "datasetId": DATASET,
            "segmentPerBatch": False,
            "batchId": batch.id,
        }
        assert job["metrics"]["totalExportedProfileCounter"] == batch.rows == 500
        # Catalog and Data Access serve it like any batch, with metrics true to the bytes.
        _, catalog, _ = await get_json(http, f"{BATCHES}/{batch.id}")
        metrics = catalog[batch.id]["metrics"]
        assert metrics["outputByteSize"] == batch.size
        assert metrics["outputRecordCount"] == batch.rows
        assert metrics["outputFileCount"] == len(batch.parts) == 2
        _, files, _ = await get_json(http, f"{EXPORT}/batches/{batch.id}/files")
        (listing,) = files["data"]
        entries = await walk_directory(http, listing["_links"]["self"]["href"])
        lengths = {e["name"]: int(e["length"]) for e in entries if e["name"] != "_SUCCESS"}
        assert lengths == {part.name: part.size for part in batch.parts}
        part = batch.parts[0]
        async with http.get(f"{EXPORT}/files/{part.directory}", params={"path": part.name}) as r:
            assert await r.read() == part.path.read_bytes()
        schema = pq.read_schema(part.path)
        assert schema.names == [
            "personID",
            "identityMap",
            "person",
            "personalEmail",
            "segmentMembership",
        ]
        assert str(schema.field("person").type) == "struct<name: struct<firstName: string>>"
        _, newest, _ = await get_json(
            http, BATCHES, dataSet=DATASET, orderBy="desc:created", limit="1"
        )
        assert list(newest) == [batch.id]


async def test_export_job_bytes_are_cached_by_content(cache_dir: Path) -> None:
    async with serving(cache_dir, export_duration_s=0.0) as (emulator, http):
        for _ in range(2):
            await post_json(http, JOBS, export_request(DATASET, "same"))
        for job_id in (11000, 11001):
            await get_json(http, f"{JOBS}/{job_id}")
        first, second = emulator.export_batches
        assert first.id != second.id
        assert [p.path for p in first.parts] == [p.path for p in second.parts]


async def test_segment_per_batch_and_both_dataset_spellings(cache_dir: Path) -> None:
    async with serving(cache_dir, export_duration_s=0.0) as (emulator, http):
        await post_json(http, JOBS, export_request(DATASET))  # 11000: spelled datasetId
        body = export_request(DATASET, "a", "b", segmentPerBatch=True)
        _, job = await post_json(http, JOBS, body)
        _, job, _ = await get_json(http, f"{JOBS}/{job['id']}")
        assert job["id"] == 11001
        destination = job["destination"]
        assert destination["dataSetId"] == DATASET
        assert "datasetId" not in destination
        batches = destination["batches"]
        assert [b["segmentId"] for b in batches] == ["a", "b"]
        assert [b["batchId"] for b in batches] == [b.id for b in emulator.export_batches]
        assert job["metrics"]["totalExportedProfileCounter"] == 1000


async def test_export_fail_option(cache_dir: Path) -> None:
    async with serving(cache_dir, export_duration_s=0.0, export_fail=True) as (emulator, http):
        _, job = await post_json(http, JOBS, export_request(DATASET))
        _, job, _ = await get_json(http, f"{JOBS}/{job['id']}")
        assert job["status"] == "FAILED"
        assert job["errors"] == [
            {"code": "0090000009", "msg": "Profile export failed: segment evaluation timed out"}
        ]
        assert emulator.export_batches == ()


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        ({"destination": {}}, 400, "destination.datasetId"),
        ({"filter": {"segments": []}}, 400, "filter.segments"),
        ({"filter": {"segments": [{"segmentNs": "ups"}]}}, 400, "filter.segments"),
        ({"schema": {"name": "other"}}, 400, "schema.name"),
        ({"fields": "a..b"}, 400, "fields"),
        ({"destination": {"datasetId": "nope"}}, 422, "does not exist"),
    ],
)
async def test_export_job_validation(
    cache_dir: Path, change: dict[str, Any], status: int, detail: str
) -> None:
    async with serving(cache_dir) as (_, http):
        got, problem = await post_json(http, JOBS, {**export_request(DATASET), **change})
        assert got == status
        assert problem["status"] == status
        assert detail in problem["detail"]


async def test_export_job_listing_pages_and_cancel(cache_dir: Path) -> None:
    async with serving(cache_dir, export_duration_s=30.0) as (emulator, http):
        for _ in range(3):
            await post_json(http, JOBS, export_request(DATASET))
        async with http.delete(f"{JOBS}/11001") as response:
            assert response.status == 200
            cancelled_job = await response.json()
            assert (cancelled_job["id"], cancelled_job["status"]) == (11001, "CANCELLED")
        async with http.delete(f"{JOBS}/99") as response:
            assert response.status == 404
        status, page, _ = await get_json(http, JOBS, limit="2")
        assert status == 200
        assert [r["id"] for r in page["records"]] == [11002, 11001]
        assert [r["status"] for r in page["records"]] == ["NEW", "CANCELLED"]
        assert page["page"]["pageSize"] == 2
        # Relative to the Profile service root, as in Adobe's examples.
        next_href = page["link"]["next"]
        assert next_href.startswith("/export/jobs/?limit=2&offset=")
        _, last, _ = await get_json(http, "/data/core/ups" + page["link"]["next"])
        assert [r["id"] for r in last["records"]] == [11000]
        assert last["link"]["next"] == ""
        _, cancelled, _ = await get_json(http, JOBS, status="CANCELLED")
        assert [r["id"] for r in cancelled["records"]] == [11001]
        await emulator.wait_idle()
        (delete, missing) = [r for r in emulator.requests if r.method == "DELETE"]
        assert (delete.path, delete.status, delete.kind) == (f"{JOBS}/11001", 200, "export")
        assert missing.status == 404


async def test_requests_are_recorded(cache_dir: Path) -> None:
    async with serving(cache_dir) as (emulator, http):
        async with http.get("/no/such/thing") as response:
            assert response.status == 404
        part = newest_success(emulator).parts[0]
        async with http.get(
            f"{EXPORT}/files/{part.directory}",
            params={"path": part.name},
            headers={"Range": "bytes=0-9"},
        ) as response:
            await response.read()
        await emulator.wait_idle()
        other, download = emulator.requests
        assert (other.kind, other.status, other.path) == ("other", 404, "/no/such/thing")
        assert download.kind == "download"
        assert download.query == {"path": part.name}
        assert download.headers["range"] == "bytes=0-9"
        assert download.headers["x-api-key"] == "emulator"
        assert download.headers["host"].startswith("127.0.0.1:")
        assert download.body_bytes == 10
        assert download.started_s <= download.finished_s
        assert emulator.downloads() == [download]
