"""End to end against the in-process emulator: complete, byte-identical, streaming, resumable."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from asyncdl.checksum import Checksum
from asyncdl.config import DownloadSettings
from asyncdl.emulator import running_emulator
from asyncdl.models import PartStatus
from asyncdl.pipeline import Reconciliation, download
from tests.helpers import (
    DATASET,
    EmulatorFactory,
    assert_identical,
    credentials_for,
    digest_of,
    settings_for,
    static_credentials,
)


async def test_newest_batch_is_byte_identical_across_pages_and_directories(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(dataset={"files_per_batch": 3, "parts_per_file": 5, "nested": True})
    async with running_emulator(config) as emu:
        result = await download(
            DATASET, credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)
        )
        newest = emu.batches_for(DATASET)[0]
    assert result.ok
    assert [b.batch.id for b in result.batches] == [newest.id]
    count = assert_identical(newest, tmp_path)
    assert count == 3 * 5 + 2  # three directories of five, plus the nested directory's two
    assert len(result.results) == count
    assert all(r.status is PartStatus.DOWNLOADED for r in result.results)
    assert result.markers == 4  # one _SUCCESS per directory, the nested one included
    reconciliation = result.batches[0].reconciliation
    assert reconciliation is not None
    assert reconciliation.ok
    assert reconciliation.actual_rows == sum(p.rows for f in newest.files for p in f.parts)
    manifest = json.loads((tmp_path / newest.id / "manifest.json").read_text())
    by_name = {p["name"]: p for p in manifest["parts"]}
    for truth_file in newest.files:
        for part in truth_file.parts:
            entry = by_name[part.name]
            assert entry["digest"] == digest_of(part.path.read_bytes())
            assert entry["size"] == part.size
            assert entry["rows"] == part.rows
            assert entry["status"] == "downloaded"


async def test_latest_two_batches(emulator_config: EmulatorFactory, tmp_path: Path) -> None:
    async with running_emulator(emulator_config()) as emu:
        result = await download(
            DATASET,
            credentials=credentials_for(emu),
            settings=settings_for(emu, tmp_path),
            latest=2,
        )
        expected = emu.batches_for(DATASET)[:2]
    assert result.ok
    assert [b.batch.id for b in result.batches] == [b.id for b in expected]
    for batch in expected:
        assert_identical(batch, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(b.id for b in expected)


async def test_named_batch(emulator_config: EmulatorFactory, tmp_path: Path) -> None:
    async with running_emulator(emulator_config()) as emu:
        oldest = emu.batches_for(DATASET)[-1]
        result = await download(
            None,
            credentials=credentials_for(emu),
            settings=settings_for(emu, tmp_path),
            batch_ids=[oldest.id],
        )
        await emu.wait_idle()
        searches = [r for r in emu.requests if r.path == "/data/foundation/catalog/batches"]
    assert result.ok
    assert [b.batch.id for b in result.batches] == [oldest.id]
    assert_identical(oldest, tmp_path)
    assert not searches  # a named batch is fetched by id, without a Catalog search


async def test_downloads_start_before_the_listing_ends(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(dataset={"files_per_batch": 2, "parts_per_file": 9}, latency_s=0.02)
    async with running_emulator(config) as emu:
        result = await download(
            DATASET, credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)
        )
        await emu.wait_idle()
        listing = [r for r in emu.requests if r.kind == "directory"]
        downloads = emu.downloads()
    assert result.ok
    assert len(listing) >= 8  # 2 directories x (9 parts + _SUCCESS) / 3 per page
    # The client asks for AEP's largest page; the server's cap (3 here) decides.
    firsts = [r for r in listing if "start" not in r.query]
    assert firsts
    assert all(r.query.get("limit") == "100" for r in firsts)
    first_download = min(r.started_s for r in downloads)
    last_page = max(r.started_s for r in listing)
    assert first_download < last_page


async def test_second_run_fetches_nothing(emulator_config: EmulatorFactory, tmp_path: Path) -> None:
    async with running_emulator(emulator_config()) as emu:
        first = await download(
            DATASET, credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)
        )
        await emu.wait_idle()
        fetched_before = len(emu.downloads())
        second = await download(
            DATASET, credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)
        )
        await emu.wait_idle()
        assert len(emu.downloads()) == fetched_before
    assert first.ok
    assert second.ok
    assert second.skipped == len(second.results) > 0
    assert second.fetched_bytes == 0
    assert [r.digest for r in second.results] == [r.digest for r in first.results]


def test_a_file_count_that_disagrees_only_warns_naming_the_metric() -> None:
    matching = Reconciliation(
        expected_bytes=10,
        actual_bytes=10,
        expected_rows=5,
        actual_rows=5,
        expected_files=2,  # a producer that counted dataSetFiles
        actual_files=7,
    )
    assert matching.ok
    (warning,) = matching.warnings
    assert "outputFileCount says 2 files, 7 parts arrived" in warning
    wrong_bytes = dataclasses.replace(matching, expected_bytes=11)
    assert not wrong_bytes.ok
    wrong_rows = dataclasses.replace(matching, expected_rows=6)
    assert not wrong_rows.ok
    unclaimed = dataclasses.replace(matching, expected_files=None, expected_rows=None)
    assert unclaimed.ok
    assert unclaimed.warnings == ()


async def test_a_part_where_another_needs_a_folder_is_rejected_not_a_disk_error(
    tmp_path: Path,
) -> None:
    """``scores`` and ``scores/part-0.parquet`` cannot both be files: the second is refused
    before anything is written, and the first still arrives."""
    from aiohttp import web

    from tests.helpers import scripted_api, static_credentials

    body = b"bytes of a"

    async def files(request: web.Request) -> web.StreamResponse:
        return web.json_response({"data": [{"dataSetFileId": "F1"}]})

    async def directory(request: web.Request) -> web.StreamResponse:
        if "path" in request.query:
            return web.Response(body=body, content_type="application/octet-stream")
        items = [
            {"name": "scores", "length": str(len(body))},
            {"name": "scores/part-0.bin", "length": str(len(body))},
        ]
        return web.json_response({"data": items})

    async def batch(request: web.Request) -> web.StreamResponse:
        return web.json_response({"B1": {"id": "B1", "status": "success"}})

    routes = {
        "/data/foundation/catalog/batches/B1": batch,
        "/data/foundation/export/batches/B1/files": files,
        "/data/foundation/export/files/F1": directory,
    }
    async with scripted_api(routes) as base:
        settings = DownloadSettings(base_url=base, out_dir=tmp_path)
        result = await download(
            batch_ids=["B1"], credentials=static_credentials(), settings=settings
        )
    (rejected,) = result.rejected
    assert rejected.name == "scores/part-0.bin"
    assert "needs that path as a folder" in rejected.reason
    assert (tmp_path / "B1" / "scores").read_bytes() == body


async def test_a_rerun_with_another_checksum_hashes_again_without_fetching(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    """Unlike digests are never compared: the parts on disk are hashed again, not refetched."""
    async with running_emulator(emulator_config()) as emu:
        as_sha256 = settings_for(emu, tmp_path, checksum=Checksum.SHA256)
        first = await download(DATASET, credentials=credentials_for(emu), settings=as_sha256)
        await emu.wait_idle()
        fetched = len(emu.downloads())
        second = await download(
            DATASET, credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)
        )
        await emu.wait_idle()
        assert len(emu.downloads()) == fetched
        newest = emu.batches_for(DATASET)[0]
    truth = {p.name: p.path.read_bytes() for p in newest.parts}
    assert first.ok
    assert second.ok
    assert {r.part.name: r.digest for r in first.results} == {
        n: digest_of(b, Checksum.SHA256) for n, b in truth.items()
    }
    assert {r.part.name: r.digest for r in second.results} == {
        n: digest_of(b) for n, b in truth.items()
    }
    manifest = json.loads((tmp_path / newest.id / "manifest.json").read_text())
    assert {p["digest"].partition(":")[0] for p in manifest["parts"]} == {"blake3"}


@pytest.mark.parametrize(
    ("out", "capped"), [("s3://bucket/scores", True), ("az://c/x", True), ("scores", False)]
)
def test_a_run_into_an_object_store_buffers_less_per_stream(out: str, capped: bool) -> None:
    """An upload holds a whole multipart part per stream: the stream's own buffers come on top."""
    from asyncdl.pipeline import resolve_run
    from asyncdl.storage import OBJECT_STREAM_BUFFER_BYTES

    _, settings = resolve_run(
        out=out, concurrency=None, credentials=static_credentials(), settings=DownloadSettings()
    )
    limit = OBJECT_STREAM_BUFFER_BYTES if capped else DownloadSettings().write_buffer_bytes
    assert settings.write_buffer_bytes == limit
    assert settings.read_chunk_bytes == (limit if capped else DownloadSettings().read_chunk_bytes)
    assert DownloadSettings().write_buffer_bytes > OBJECT_STREAM_BUFFER_BYTES
