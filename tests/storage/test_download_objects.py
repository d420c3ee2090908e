"""Whole downloads straight into an object store (moto's S3, Azurite): the objects are the
emulator's truth byte for byte, a rerun fetches nothing, and nothing unverified or half-uploaded
is ever left behind (a part that fails verification, a cancelled run); bad destinations fail
before any part is fetched, each with its exit code."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import moto.settings
import pytest
from aiohttp import web

from asyncdl.client import AEPClient
from asyncdl.config import DownloadSettings
from asyncdl.emulator import Emulator, TruthBatch, running_emulator
from asyncdl.fetch import FetchOptions, fetch_part
from asyncdl.layout import MANIFEST_NAME
from asyncdl.models import Part, PartResult, PartStatus
from asyncdl.pipeline import download
from asyncdl.progress import NullProgress
from asyncdl.retry import RetryPolicy
from asyncdl.storage import open_storage
from asyncdl.storage.objects import ObjectStorage
from asyncdl.storage.uploads import StagedPartFile
from tests.helpers import (
    DATASET,
    EmulatorFactory,
    RecordingListener,
    credentials_for,
    env_for,
    run_cli,
    scripted_api,
    settings_for,
    static_credentials,
    threaded_emulator,
    until,
)
from tests.storage.conftest import AzureContainer, S3Bucket

MiB = 1 << 20


def settings_into(emu: Emulator, out: str, **overrides: Any) -> DownloadSettings:
    return dataclasses.replace(settings_for(emu, Path("unused"), **overrides), out_dir=out)


def assert_in_store(batch: TruthBatch, storage: ObjectStorage) -> dict[str, Any]:
    """Every truth part is the object under its name, byte for byte; the batch's manifest."""
    below = storage.sub(batch.id)
    names = set()
    for part in batch.parts:
        assert below.read(part.name) == part.path.read_bytes(), part.name
        names.add(part.name)
    assert below.files() == {*names, MANIFEST_NAME}  # no temp object, no probe, no record
    manifest = json.loads(below.read(MANIFEST_NAME) or b"")
    assert {p["relpath"] for p in manifest["parts"]} == names
    assert manifest["reconciliation"]["ok"] is True
    return dict(manifest)


@pytest.fixture(params=["s3", "azure"])
def destination(request: pytest.FixtureRequest) -> str:
    if request.param == "s3":
        bucket: S3Bucket = request.getfixturevalue("s3")
        return f"{bucket.url}/lake/scores"
    container: AzureContainer = request.getfixturevalue("az")
    return f"{container.url}/lake/scores"


@pytest.mark.parametrize(
    "dataset",
    [
        {"files_per_batch": 2, "parts_per_file": 2},  # small parts: one conditional PUT each
        {"files_per_batch": 1, "parts_per_file": 2, "part_bytes": 6 * MiB},  # multipart
    ],
    ids=["small", "multipart"],
)
async def test_a_download_lands_in_the_store_and_a_second_run_fetches_nothing(
    emulator_config: EmulatorFactory, destination: str, dataset: dict[str, Any]
) -> None:
    async with running_emulator(emulator_config(dataset=dataset)) as emu:
        settings = settings_into(emu, destination)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        assert result.ok, [r.error for r in result.failed]
        newest = emu.batches_for(DATASET)[0]
        storage = open_storage(destination)
        assert isinstance(storage, ObjectStorage)
        manifest = assert_in_store(newest, storage)
        assert all(p["digest"] for p in manifest["parts"])
        assert result.batches[0].directory == f"{destination}/{newest.id}"
        await emu.wait_idle()
        fetched = len(emu.downloads())
        again = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        await emu.wait_idle()
    assert again.ok
    assert len(emu.downloads()) == fetched  # every part skipped: HEADs and the manifest only
    assert {r.status for r in again.results} == {PartStatus.SKIPPED}


async def test_a_part_fetched_again_without_a_manifest_is_checked_from_the_store(
    emulator_config: EmulatorFactory, s3: S3Bucket
) -> None:
    config = emulator_config(dataset={"files_per_batch": 1, "parts_per_file": 2})
    async with running_emulator(config) as emu:
        settings = settings_into(emu, s3.url)
        await download(DATASET, credentials=credentials_for(emu), settings=settings)
        newest = emu.batches_for(DATASET)[0]
        s3.server.client.delete_object(Bucket=s3.name, Key=f"{newest.id}/{MANIFEST_NAME}")
        await emu.wait_idle()
        fetched = len(emu.downloads())
        again = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        await emu.wait_idle()
    assert again.ok
    assert len(emu.downloads()) == fetched  # hashed and footer-read from the store instead
    assert {r.status for r in again.results} == {PartStatus.SKIPPED}
    assert all(r.digest for r in again.results)


async def test_segmented_parts_are_staged_then_committed_whole(
    emulator_config: EmulatorFactory, destination: str, staging: Path
) -> None:
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 2, "part_bytes": 3_000_000}
    )
    async with running_emulator(config) as emu:
        settings = settings_into(
            emu, destination, segment_threshold_bytes=MiB + 1, segment_bytes=MiB
        )
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        newest = emu.batches_for(DATASET)[0]
        await emu.wait_idle()
        ranged = [r for r in emu.downloads() if r.headers.get("range")]
    assert result.ok, [r.error for r in result.failed]
    assert len(ranged) >= 6  # three segments or more per part
    storage = open_storage(destination)
    assert isinstance(storage, ObjectStorage)
    assert_in_store(newest, storage)
    assert [p for p in staging.rglob("*") if p.is_file()] == []  # nothing left staged


BAD = random.Random(7).randbytes(7 * MiB)  # the right size, but not parquet


async def test_a_part_that_fails_verification_leaves_no_object_and_no_upload(
    s3: S3Bucket,
) -> None:
    async def serve(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(BAD)
        await response.prepare(request)
        for offset in range(0, len(BAD), MiB):
            await response.write(BAD[offset : offset + MiB])
        return response

    policy = RetryPolicy(max_attempts=2, base_delay_s=0.0, max_delay_s=0.0)
    async with scripted_api({"/part": serve}) as base:
        settings = DownloadSettings(base_url=base)
        async with AEPClient(credentials=static_credentials(), settings=settings) as client:
            part = Part(
                batch_id="B",
                dataset_file_id="F",
                name="part-0.parquet",
                relpath="part-0.parquet",
                size=len(BAD),
                href=f"{base}/part",
            )
            root = open_storage(s3.url)
            result = await fetch_part(
                client,
                part,
                storage=root.sub("B"),
                options=FetchOptions(policy=policy, segment_threshold_bytes=None),
                listener=NullProgress(),
            )
    assert result.status is PartStatus.FAILED
    assert "parquet footer unreadable" in (result.error or "")
    assert s3.object_keys() == []
    assert s3.open_uploads() == []


async def test_a_cancelled_run_leaves_no_object_and_no_upload(
    emulator_config: EmulatorFactory, s3: S3Bucket
) -> None:
    listener = RecordingListener()
    config = emulator_config(
        # Cancelled past 6 MiB of 12: a second or more before either part could be complete.
        dataset={"files_per_batch": 1, "parts_per_file": 2, "part_bytes": 12 * MiB},
        bandwidth_bps=6_000_000,
    )
    async with running_emulator(config) as emu:
        settings = settings_into(emu, s3.url, segment_threshold_bytes=None)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    await download(
                        DATASET,
                        credentials=credentials_for(emu),
                        settings=settings,
                        on_progress=listener,
                    )

                tg.start_soon(run)
                # Past one 5 MiB part of each upload: both are open multipart uploads now.
                await until(lambda: min(listener.bytes.values(), default=0) > 6 * MiB)
                assert s3.open_uploads()
                tg.cancel_scope.cancel()  # what Ctrl-C does to the run
    assert [k for k in s3.object_keys() if not k.endswith(MANIFEST_NAME)] == []
    assert s3.open_uploads() == []


async def download_watched(emu: Emulator, settings: DownloadSettings, listener: _InFlight) -> None:
    """A whole download heard by ``listener``, then checked object by object in the store."""
    result = await download(
        DATASET, credentials=credentials_for(emu), settings=settings, on_progress=listener
    )
    assert result.ok, [r.error for r in result.failed]
    storage = open_storage(str(settings.out_dir))
    assert isinstance(storage, ObjectStorage)
    assert_in_store(emu.batches_for(DATASET)[0], storage)


class _InFlight(RecordingListener):
    """The most parts that were between their first byte and their end at once."""

    def __init__(self) -> None:
        super().__init__()
        self.active: set[str] = set()
        self.most = 0

    def on_bytes(self, part: Part, n: int) -> None:
        super().on_bytes(part, n)
        if n > 0:
            self.active.add(part.relpath)
            self.most = max(self.most, len(self.active))

    def on_done(self, result: PartResult) -> None:
        super().on_done(result)
        self.active.discard(result.part.relpath)


@pytest.mark.parametrize("budget", [2 * MiB, None], ids=["two-parts", "default"])
async def test_the_memory_budget_bounds_the_parts_in_flight_into_the_store(
    emulator_config: EmulatorFactory,
    s3: S3Bucket,
    budget: int | None,
) -> None:
    # Six parts of 512 KiB at -j 6, each a quarter of a second at 2 MB/s: with the default
    # budget all six stream at once; with room for two (each holds twice its size, for the
    # join of its single PUT), never more than two.
    listener = _InFlight()
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 6, "part_bytes": 512 << 10},
        bandwidth_bps=2_000_000,
    )
    async with running_emulator(config) as emu:
        memory = {} if budget is None else {"store_memory_bytes": budget}
        settings = settings_into(emu, s3.url, concurrency=6, **memory)
        await download_watched(emu, settings, listener)
    if budget is None:
        assert listener.most >= 4  # what the bound below is measured against
    else:
        assert listener.most == 2


async def test_segmented_parts_stream_at_once_and_only_their_uploads_take_turns(
    emulator_config: EmulatorFactory,
    s3: S3Bucket,
    staging: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Staged on disk, a segmented part holds memory only while its upload runs: with room for
    # one such upload, four parts still download at once, and their uploads go one at a time.
    sealing = {"now": 0, "most": 0}
    lock = threading.Lock()
    seal = StagedPartFile.seal

    def slow_seal(self: StagedPartFile, *, sync: bool) -> None:
        with lock:
            sealing["now"] += 1
            sealing["most"] = max(sealing["most"], sealing["now"])
        try:
            time.sleep(0.2)  # long enough that unbounded uploads would overlap
            seal(self, sync=sync)
        finally:
            with lock:
                sealing["now"] -= 1

    monkeypatch.setattr(StagedPartFile, "seal", slow_seal)
    listener = _InFlight()
    config = emulator_config(
        dataset={"files_per_batch": 1, "parts_per_file": 4, "part_bytes": 3_000_000},
        bandwidth_bps=4_000_000,
    )
    async with running_emulator(config) as emu:
        settings = settings_into(
            emu,
            s3.url,
            concurrency=8,
            segment_threshold_bytes=MiB + 1,
            segment_bytes=MiB,
            store_memory_bytes=3_000_000,  # one part's upload (read whole: under 5 MiB)
        )
        await download_watched(emu, settings, listener)
    assert listener.most >= 3  # the downloads did not wait for each other's uploads
    assert sealing["most"] == 1


# -- bad destinations, through the CLI ---------------------------------------------------------


@pytest.fixture
def emu(emulator_config: EmulatorFactory) -> Any:
    with threaded_emulator(emulator_config(dataset={"parts_per_file": 1})) as running:
        yield running


def _no_part_fetched(emu: Emulator) -> bool:
    return not [r for r in emu.requests if r.kind == "download"]


def test_no_credentials_at_all_is_a_usage_error(emu: Emulator) -> None:
    code, _, stderr = run_cli(["download", DATASET, "--out", "s3://some-bucket/x"], env_for(emu))
    assert code == 2
    assert "no AWS credentials: set AWS_ACCESS_KEY_ID" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert _no_part_fetched(emu)


def test_a_bucket_that_does_not_exist_fails_before_any_part(emu: Emulator, s3: S3Bucket) -> None:
    code, _, stderr = run_cli(["download", DATASET, "--out", "s3://no-such-bucket/x"], env_for(emu))
    assert code == 1
    assert "s3://no-such-bucket does not exist" in stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert _no_part_fetched(emu)


def test_refused_s3_credentials_exit_3(
    emu: Emulator, s3: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto checks keys
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-value")
    code, _, stderr = run_cli(["download", DATASET, "--out", f"{s3.url}/x"], env_for(emu))
    assert code == 3
    assert f"{s3.url} refused the credentials" in stderr
    assert "AWS_ACCESS_KEY_ID" in stderr  # where to look
    assert "not-the-secret-value" not in stderr
    assert _no_part_fetched(emu)


def test_refused_azure_credentials_exit_3(
    emu: Emulator, az: AzureContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "AAAA" + az.server.connection_string().split("AccountKey=")[1][4:].split(";")[0]
    az.server.use(monkeypatch, key=wrong)
    code, _, stderr = run_cli(["download", DATASET, "--out", f"{az.url}/x"], env_for(emu))
    assert code == 3
    assert f"{az.url} refused the credentials" in stderr
    assert wrong not in stderr
    assert _no_part_fetched(emu)


def test_a_missing_azure_container_fails_before_any_part(emu: Emulator, az: AzureContainer) -> None:
    code, _, stderr = run_cli(
        ["download", DATASET, "--out", "az://no-such-container"], env_for(emu)
    )
    assert code == 1
    assert "az://no-such-container does not exist" in stderr
    assert _no_part_fetched(emu)
