"""Audience exports end to end against the emulator: the library workflow (create dataset, export
job, wait, cancel, list), POST/DELETE semantics of the client, and the two CLI commands."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pyarrow.parquet as pq
import pytest
import typer
from aiohttp import web
from typer.testing import CliRunner

from asyncdl.audience import (
    ExportJob,
    ExportJobFailedError,
    ExportRequest,
    ExportTimeoutError,
    JobStatus,
    cancel_job,
    create_dataset,
    create_export_job,
    get_export_job,
    iter_export_jobs,
    wait_for_job,
)
from asyncdl.cli import app, parse_duration
from asyncdl.client import AEPClient
from asyncdl.config import Credentials, DownloadSettings
from asyncdl.emulator import Emulator, EmulatorConfig, RecordedRequest, running_emulator
from asyncdl.errors import AsyncdlError, ConfigError, ProtocolError, RateLimitedError, ServerError
from asyncdl.pipeline import download
from asyncdl.retry import RetryPolicy
from tests.helpers import EmulatorFactory, credentials_for, settings_for, threaded_emulator

DATASET = "5cd9146b31dae914b75f654f"
JOBS = "/data/core/ups/export/jobs"
FAST = 0.02  # poll interval for tests: the emulator's jobs take a fraction of a second
FIELDS = ("person.name.firstName", "personalEmail.address")


# -- helpers -------------------------------------------------------------------------------------


@asynccontextmanager
async def connected(
    emulator_config: EmulatorFactory, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[Emulator, AEPClient]]:
    config = emulator_config(**{"export_duration_s": 0.2, **overrides})
    async with (
        running_emulator(config) as emu,
        AEPClient(credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)) as client,
    ):
        yield emu, client


def deletes(emu: Emulator) -> list[RecordedRequest]:
    return [r for r in emu.requests if r.method == "DELETE"]


def request_for(dataset_id: str, *segments: str, per_batch: bool = False) -> ExportRequest:
    return ExportRequest(
        segment_ids=segments or ("seg-churn",),
        dataset_id=dataset_id,
        merge_policy_id="mp-default",
        fields=FIELDS,
        segment_per_batch=per_batch,
    )


def assert_identical(emu: Emulator, out: Path, batch_ids: tuple[str, ...]) -> None:
    """Every part of every export batch on disk, byte for byte the emulator's ground truth."""
    truth = {b.id: b for b in emu.export_batches}
    assert set(batch_ids) <= set(truth)
    for batch_id in batch_ids:
        parts = truth[batch_id].parts
        assert parts
        for part in parts:
            assert (out / batch_id / part.name).read_bytes() == part.path.read_bytes()


# -- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("600", 600.0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5s", "0", "1d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="duration"):
        parse_duration(text)


def test_request_body_has_the_documented_shape() -> None:
    request = ExportRequest(
        segment_ids=["a", "b", "a"],  # type: ignore[arg-type]  # a list is accepted and frozen
        dataset_id="ds",
        merge_policy_id="mp",
        fields=(" person.name ", "", "personalEmail.address"),
        segment_per_batch=True,
    )
    assert request.to_json() == {
        "fields": "person.name,personalEmail.address",
        "mergePolicy": {"id": "mp", "version": 1},
        "filter": {
            "segments": [
                {"segmentId": "a", "segmentNs": "ups", "status": ["realized", "existing"]},
                {"segmentId": "b", "segmentNs": "ups", "status": ["realized", "existing"]},
            ]
        },
        "destination": {"datasetId": "ds", "segmentPerBatch": True},
        "schema": {"name": "_xdm.context.profile"},
    }
    minimal = ExportRequest(segment_ids=("a",), dataset_id="ds").to_json()
    assert "fields" not in minimal
    assert "mergePolicy" not in minimal
    with pytest.raises(ConfigError):
        ExportRequest(segment_ids=(), dataset_id="ds")
    with pytest.raises(ConfigError):
        ExportRequest(segment_ids=("a",), dataset_id=" ")


def test_job_answers_are_read_tolerantly() -> None:
    job = ExportJob.from_json(
        {
            "id": "24115",
            "status": "succeeded",
            "destination": {"dataSetId": "ds", "batchId": "B1", "segmentPerBatch": False},
            "metrics": {"totalExportedProfileCounter": "20"},
            "creationTime": 1538573416687,
        }
    )
    assert (job.id, job.status, job.dataset_id, job.batch_ids) == (
        24115,
        JobStatus.SUCCEEDED,
        "ds",
        ("B1",),
    )
    assert job.profile_count == 20
    per_segment = ExportJob.from_json(
        {
            "id": 7,
            "status": "PROCESSING",
            "destination": {
                "datasetId": "ds",
                "segmentPerBatch": True,
                "batchId": "",  # AEP shows an empty id until there is a batch
                "batches": [{"segmentId": "a", "batchId": "B1"}, {"segmentId": "b"}],
            },
        }
    )
    assert per_segment.dataset_id == "ds"
    assert per_segment.batch_ids == ("B1",)
    assert per_segment.segment_per_batch
    odd = ExportJob.from_json({"id": 8, "status": "QUEUED", "errors": [{"code": 1, "msg": "x"}]})
    assert odd.status is JobStatus.UNKNOWN
    assert odd.raw_status == "QUEUED"
    assert not odd.status.finished
    assert str(odd.errors[0]) == "[1] x"
    assert JobStatus("CANCELED") is JobStatus.CANCELLED
    with pytest.raises(AsyncdlError):
        ExportJob.from_json({"status": "NEW"})


# -- the library against the emulator ------------------------------------------------------------


async def test_create_dataset_export_wait_and_download(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with connected(emulator_config, tmp_path) as (emu, client):
        dataset_id = await create_dataset(client, "High churn audience")
        created = await create_export_job(client, request_for(dataset_id))
        assert created.status is JobStatus.NEW
        seen: list[JobStatus] = []
        job = await wait_for_job(
            client, created.id, poll_min_s=FAST, on_status=lambda j: seen.append(j.status)
        )
        assert job.status is JobStatus.SUCCEEDED
        assert seen[-1] is JobStatus.SUCCEEDED
        assert JobStatus.PROCESSING in seen
        assert job.dataset_id == dataset_id
        assert len(job.batch_ids) == 1
        assert job.profile_count == emu.config.export_rows_per_segment
        result = await download(
            None,
            batch_ids=job.batch_ids,
            credentials=credentials_for(emu),
            settings=settings_for(emu, tmp_path / "out"),
        )
        assert result.ok
        (report,) = result.batches
        assert report.reconciliation is not None
        assert report.reconciliation.ok
        assert report.reconciliation.actual_rows == job.profile_count
        assert_identical(emu, tmp_path / "out", job.batch_ids)
        columns = pq.read_schema(next((tmp_path / "out" / job.batch_ids[0]).glob("*.parquet")))
        assert columns.names == [
            "personID",
            "identityMap",
            "person",
            "personalEmail",
            "segmentMembership",
        ]
        await emu.wait_idle()
        (post_dataset,) = [r for r in emu.requests if r.method == "POST" and "dataSets" in r.path]
        assert post_dataset.status == 201
        assert deletes(emu) == []


async def test_both_dataset_spellings_are_accepted(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with connected(emulator_config, tmp_path, export_duration_s=0.0) as (_, client):
        jobs = [await create_export_job(client, request_for(DATASET)) for _ in range(2)]
        raw_keys = set()
        for job in jobs:
            raw = await client.get_json(client.api_url(f"{JOBS}/{job.id}"))
            raw_keys |= set(raw["destination"]) & {"datasetId", "dataSetId"}
            parsed = await get_export_job(client, job.id)
            assert parsed.dataset_id == DATASET
            assert parsed.batch_ids
        assert raw_keys == {"datasetId", "dataSetId"}


async def test_segment_per_batch_writes_one_batch_per_segment(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with connected(emulator_config, tmp_path) as (emu, client):
        created = await create_export_job(
            client, request_for(DATASET, "seg-a", "seg-b", per_batch=True)
        )
        job = await wait_for_job(client, created.id, poll_min_s=FAST)
        assert len(job.batch_ids) == 2
        assert job.segment_per_batch
        result = await download(
            None,
            batch_ids=job.batch_ids,
            credentials=credentials_for(emu),
            settings=settings_for(emu, tmp_path / "out"),
        )
        assert result.ok
        assert [b.batch.id for b in result.batches] == list(job.batch_ids)
        assert_identical(emu, tmp_path / "out", job.batch_ids)
        for batch_id, segment in zip(job.batch_ids, ("seg-a", "seg-b"), strict=True):
            parts = sorted(str(p) for p in (tmp_path / "out" / batch_id).glob("*.parquet"))
            table = pq.read_table(parts[0], columns=["segmentMembership"])
            rows: list[Any] = table.column(0).to_pylist()
            # segmentMembership is map<namespace, map<segmentId, {status, time}>>: pairs.
            memberships = {seg for row in rows for _, inner in row for seg, _ in inner}
            assert memberships == {segment}


async def test_failed_job_raises_with_aep_errors(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with connected(emulator_config, tmp_path, export_fail=True) as (emu, client):
        created = await create_export_job(client, request_for(DATASET))
        with pytest.raises(ExportJobFailedError) as caught:
            await wait_for_job(client, created.id, poll_min_s=FAST)
        assert caught.value.status == "FAILED"
        assert caught.value.errors[0][0] == "0090000009"
        assert "0090000009" in str(caught.value)
        await emu.wait_idle()
        assert deletes(emu) == []  # a finished job has nothing to cancel


async def test_cancelling_the_wait_cancels_the_job(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with connected(emulator_config, tmp_path, export_duration_s=30.0) as (emu, client):
        created = await create_export_job(client, request_for(DATASET))
        polled = anyio.Event()
        outcomes: list[AsyncdlError | None] = []
        finished = False

        async def waiter() -> None:
            nonlocal finished
            await wait_for_job(
                client,
                created.id,
                poll_min_s=FAST,
                on_status=lambda _: polled.set(),
                on_cancel=lambda _, error: outcomes.append(error),
            )
            finished = True  # never reached: the cancellation must not be swallowed

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await polled.wait()
            tg.cancel_scope.cancel()
        assert not finished
        assert outcomes == [None]
        await emu.wait_idle()
        (delete,) = deletes(emu)
        assert (delete.path, delete.status) == (f"{JOBS}/{created.id}", 200)
        assert (await get_export_job(client, created.id)).status is JobStatus.CANCELLED


async def test_timeout_cancels_the_job_unless_kept(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with connected(emulator_config, tmp_path, export_duration_s=30.0) as (emu, client):
        first = await create_export_job(client, request_for(DATASET))
        with pytest.raises(ExportTimeoutError) as caught:
            await wait_for_job(client, first.id, timeout_s=0.1, poll_min_s=FAST)
        assert caught.value.cancelled
        assert "did not finish within 0.1 s" in str(caught.value)
        assert "asked to cancel" in str(caught.value)
        kept = await create_export_job(client, request_for(DATASET))
        with pytest.raises(ExportTimeoutError) as caught:
            await wait_for_job(client, kept.id, timeout_s=0.1, poll_min_s=FAST, keep_job=True)
        assert not caught.value.cancelled
        assert "left running" in str(caught.value)
        await emu.wait_idle()
        assert [d.path for d in deletes(emu)] == [f"{JOBS}/{first.id}"]
        assert (await get_export_job(client, kept.id)).status is not JobStatus.CANCELLED


async def test_listing_follows_relative_next_links(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with connected(emulator_config, tmp_path, export_duration_s=30.0) as (emu, client):
        ids = [(await create_export_job(client, request_for(DATASET))).id for _ in range(5)]
        await cancel_job(client, ids[1])
        listed = [job.id async for job in iter_export_jobs(client, page_size=2)]
        assert listed == ids[::-1]  # newest first, across three pages
        limited = [job.id async for job in iter_export_jobs(client, page_size=2, limit=3)]
        assert limited == ids[::-1][:3]
        cancelled = [job.id async for job in iter_export_jobs(client, status="cancelled")]
        assert cancelled == [ids[1]]
        await emu.wait_idle()
        pages = [r for r in emu.requests if r.method == "GET" and r.path == f"{JOBS}/"]
        # The relative "/export/jobs/?limit=2&offset=.." resolved under /data/core/ups, its
        # opaque cursor ("1538573416687_722") sent back verbatim.
        offsets = [p.query["offset"] for p in pages[:2]]
        assert len(offsets) == 2
        assert all(re.fullmatch(r"\d+_\d+", o) for o in offsets), offsets
        assert all(p.status == 200 for p in pages)


# -- the client's POST and DELETE ----------------------------------------------------------------


@asynccontextmanager
async def scripted(statuses: list[int]) -> AsyncIterator[tuple[AEPClient, list[str]]]:
    """A server that answers each request with the next status (200 with JSON after the list)."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.method)
        status = statuses.pop(0) if statuses else 200
        if status == 200:
            return web.json_response({"id": 1, "status": "NEW"})
        return web.json_response({"title": "nope", "detail": f"status {status}"}, status=status)

    server = web.Application()
    server.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    settings = DownloadSettings(base_url=f"http://{host}:{port}")
    credentials = Credentials(api_key="k", org_id="o@AdobeOrg", access_token="t")
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.001, max_delay_s=0.01)
    try:
        async with AEPClient(credentials=credentials, settings=settings, retry=policy) as client:
            yield client, seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("status", [429, 503])
async def test_post_retries_answers_that_were_not_processed(status: int) -> None:
    async with scripted([status, status]) as (client, seen):
        assert await client.post_json(client.api_url(JOBS), {}) == {"id": 1, "status": "NEW"}
    assert seen == ["POST"] * 3


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_post_is_not_replayed_when_it_may_have_been_processed(status: int) -> None:
    async with scripted([status]) as (client, seen):
        with pytest.raises(ServerError):
            await client.post_json(client.api_url(JOBS), {})
    assert seen == ["POST"]


async def test_post_gives_up_on_persistent_throttling_and_delete_retries() -> None:
    async with scripted([429] * 10) as (client, seen):
        with pytest.raises(RateLimitedError):
            await client.post_json(client.api_url(JOBS), {})
    assert len(seen) == 4  # the policy's max_attempts
    async with scripted([500, 502]) as (client, seen):
        await client.delete(client.api_url(f"{JOBS}/1"))
    assert seen == ["DELETE"] * 3


# -- the command line ----------------------------------------------------------------------------


def env_for(emu: Emulator) -> dict[str, str]:
    return {
        "AEP_BASE_URL": emu.base_url,
        "AEP_ACCESS_TOKEN": emu.config.static_tokens[0],
        "AEP_API_KEY": emu.config.api_key,
        "AEP_ORG_ID": emu.config.org_id,
        "AEP_SANDBOX": "prod",
        "AEP_CLIENT_ID": "",
        "AEP_CLIENT_SECRET": "",
    }


def run(args: list[str], emu: Emulator) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env=env_for(emu))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def settle(emu: Emulator) -> list[RecordedRequest]:
    """The emulator's record once every request it received is answered (threaded emulator)."""
    deadline = time.monotonic() + 5
    while emu.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(emu.requests)


@pytest.fixture
def cli_emu(emulator_config: EmulatorFactory, request: pytest.FixtureRequest) -> Iterator[Emulator]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    config: EmulatorConfig = emulator_config(**{"export_duration_s": 0.2, **overrides})
    with threaded_emulator(config) as running:
        yield running


def export_args(out: Path, *extra: str) -> list[str]:
    return ["export-audience", "--poll-interval", str(FAST), "--out", str(out), *extra]


def test_cli_creates_dataset_exports_and_downloads(cli_emu: Emulator, tmp_path: Path) -> None:
    args = export_args(
        tmp_path,
        "--segment-id",
        "seg-churn",
        "--create-dataset",
        "High churn audience",
        "--fields",
        ",".join(FIELDS),
        "--merge-policy",
        "mp-default",
    )
    code, stdout, stderr = run(args, cli_emu)
    assert code == 0, stderr
    (batch,) = cli_emu.export_batches
    assert f"created dataset {batch.dataset_id} (High churn audience)" in stdout
    assert "SUCCEEDED" in stdout
    assert "matches the Catalog's metrics" in stdout
    assert "export job 11000: PROCESSING" in stderr  # a line per status change in logs
    assert_identical(cli_emu, tmp_path, (batch.id,))


def test_cli_segment_per_batch_downloads_each_batch(cli_emu: Emulator, tmp_path: Path) -> None:
    args = export_args(
        tmp_path, "--segment-id", "a", "--segment-id", "b", "--dataset", DATASET,
        "--segment-per-batch", "--json",
    )  # fmt: skip
    code, stdout, stderr = run(args, cli_emu)
    assert code == 0, stderr
    batch_ids = tuple(b.id for b in cli_emu.export_batches)
    assert len(batch_ids) == 2
    assert_identical(cli_emu, tmp_path, batch_ids)
    summary = stdout.strip().splitlines()[-1]
    assert '"event":"summary"' in summary
    assert '"ok":true' in summary


@pytest.mark.parametrize("cli_emu", [{"export_fail": True}], indirect=True)
def test_cli_failed_job_exits_1_with_aep_error(cli_emu: Emulator, tmp_path: Path) -> None:
    code, _, stderr = run(export_args(tmp_path, "--segment-id", "a", "--dataset", DATASET), cli_emu)
    assert code == 1
    assert "export job 11000 FAILED: [0090000009] Profile export failed" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("cli_emu", [{"export_duration_s": 30.0}], indirect=True)
def test_cli_timeout_cancels_the_job(cli_emu: Emulator, tmp_path: Path) -> None:
    args = export_args(tmp_path, "--segment-id", "a", "--dataset", DATASET, "--wait-timeout", "0.3")
    code, _, stderr = run(args, cli_emu)
    assert code == 1
    assert "did not finish within 0.3 s" in stderr
    assert "AEP was asked to cancel it" in stderr
    assert [r.path for r in settle(cli_emu) if r.method == "DELETE"] == [f"{JOBS}/11000"]


@pytest.mark.parametrize("cli_emu", [{"export_duration_s": 30.0}], indirect=True)
def test_cli_keep_job_does_not_delete(cli_emu: Emulator, tmp_path: Path) -> None:
    args = export_args(
        tmp_path, "--segment-id", "a", "--dataset", DATASET, "--wait-timeout", "0.2s", "--keep-job"
    )
    code, _, stderr = run(args, cli_emu)
    assert code == 1
    assert "left running" in stderr
    assert [r for r in settle(cli_emu) if r.method == "DELETE"] == []


def test_cli_export_jobs_lists(cli_emu: Emulator, tmp_path: Path) -> None:
    for segment in ("a", "b"):
        code, _, stderr = run(
            export_args(tmp_path, "--segment-id", segment, "--dataset", DATASET), cli_emu
        )
        assert code == 0, stderr
    code, stdout, stderr = run(["export-jobs", "--status", "succeeded"], cli_emu)
    assert code == 0, stderr
    header, *rows = stdout.strip().splitlines()
    assert header.split()[:3] == ["job", "id", "status"]
    assert [row.split()[:3] for row in rows] == [
        ["11001", "SUCCEEDED", DATASET],
        ["11000", "SUCCEEDED", DATASET],
    ]
    assert rows[0].split()[-1] == f"{cli_emu.config.export_rows_per_segment:,}"
    code, stdout, _ = run(["export-jobs", "--limit", "1", "--json"], cli_emu)
    assert code == 0
    assert stdout.count("\n") == 1
    assert '"job_id":11001' in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", DATASET], "--segment-id"),
        (["--segment-id", "a"], "either --dataset ID or --create-dataset NAME"),
        (["--segment-id", "a", "--dataset", DATASET, "--create-dataset", "x"], "either"),
        (["--segment-id", "a", "--dataset", DATASET, "--wait-timeout", "soon"], "not a duration"),
    ],
)
def test_cli_usage_errors(cli_emu: Emulator, tmp_path: Path, args: list[str], message: str) -> None:
    code, _, stderr = run(export_args(tmp_path, *args), cli_emu)
    assert code == 2
    assert message in stderr
    assert [r for r in settle(cli_emu) if r.method == "POST"] == []


@pytest.mark.slow
@pytest.mark.parametrize("cli_emu", [{"export_duration_s": 60.0}], indirect=True)
def test_ctrl_c_cancels_the_job_and_exits_130(cli_emu: Emulator, tmp_path: Path) -> None:
    env = {**os.environ, **env_for(cli_emu)}
    args = export_args(tmp_path, "--segment-id", "a", "--dataset", DATASET)
    with subprocess.Popen(
        [sys.executable, "-m", "asyncdl", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        deadline = time.monotonic() + 30
        while not any(r.method == "GET" and r.path == f"{JOBS}/11000" for r in cli_emu.requests):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the command never polled its job"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "asked AEP to cancel export job 11000" in stderr
    assert [r.path for r in settle(cli_emu) if r.method == "DELETE"] == [f"{JOBS}/11000"]


@pytest.mark.parametrize("raw_id", [100, 100.0, "100", "100.0"])
def test_export_job_ids_as_aep_writes_them(raw_id: object) -> None:
    job = ExportJob.from_json({"id": raw_id, "status": "NEW"})
    assert job.id == 100


@pytest.mark.parametrize("raw_id", [100.5, "1e400x", True, None, "abc"])
def test_export_job_ids_that_are_not_integers_are_refused(raw_id: object) -> None:
    with pytest.raises(ProtocolError):
        ExportJob.from_json({"id": raw_id, "status": "NEW"})


def test_a_single_batch_object_counts_like_a_list_of_one() -> None:
    body = {
        "id": 7,
        "status": "SUCCEEDED",
        "destination": {"dataSetId": "DS", "segmentPerBatch": True, "batches": {"batchId": "B1"}},
    }
    job = ExportJob.from_json(body)
    assert job.batch_ids == ("B1",)
    assert job.dataset_id == "DS"
