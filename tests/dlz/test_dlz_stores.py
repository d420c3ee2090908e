"""The landing zone beyond the common case: listings paged many times (Azure's NextMarker),
big blobs in ranged segments (each answer's ``x-ms-blob-content-md5`` checked), an export
downloaded straight into another object store, and the AWS-provisioned landing zone (session
credentials, presigned requests) against moto."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest

from asyncdl.dlz import Zone, download_exports, list_exports
from asyncdl.emulator import AwsLandingZone, running_emulator
from asyncdl.errors import LandingZoneExpiredError
from asyncdl.storage import open_storage
from asyncdl.storage.objects import ObjectStorage
from tests.cloud import MotoS3
from tests.dlz.conftest import Zone as LandingZone
from tests.helpers import DATASET, EmulatorFactory, credentials_for, settings_for

MiB = 1 << 20
SHAPE = {"files_per_batch": 1, "parts_per_file": 3, "part_bytes": 200_000}
NEWER = "202611020600"


async def test_listings_are_paged_to_their_end(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    zone.proxy.page_size = 2  # every List Blobs answer ends in a NextMarker
    async with running_emulator(emulator_config(dataset=SHAPE, landing_zone=zone.answer())) as emu:
        batches = emu.batches_for(DATASET)
        for other in ("a1", "b2", "c3"):  # other dataflows' folders beside the one wanted
            zone.put(f"{other}/elsewhere/exportTime={NEWER}/x.parquet", b"x")
        times = [f"2026110{day}0600" for day in range(1, 6)]
        for time, batch in zip(times, [*batches, *batches], strict=False):
            zone.export(batch, time)
        found = await list_exports(
            DATASET, credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)
        )
    assert [e.export_time for e in found.exports] == sorted(times, reverse=True)
    assert all(len(e.files) == 3 for e in found.exports)
    markers = [r for r in zone.proxy.requests if "comp=list" in r.query and "marker=" in r.query]
    assert len(markers) >= 4  # the root, the folders and each export folder paged on


@pytest.mark.parametrize("md5", ["right", "wrong"])
async def test_a_big_blob_comes_in_segments_checked_against_its_md5(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path, md5: str
) -> None:
    shape = {"files_per_batch": 1, "parts_per_file": 1, "part_bytes": 3 * MiB}
    async with running_emulator(emulator_config(dataset=shape, landing_zone=zone.answer())) as emu:
        newest = emu.batches_for(DATASET)[0]
        files = zone.export(newest, NEWER)
        (name,) = files
        if md5 == "wrong":
            zone.azurite.set_blob_md5(
                zone.container, zone.key(name, time=NEWER), hashlib.md5(b"x").digest()
            )
        settings = settings_for(
            emu,
            tmp_path,
            segment_threshold_bytes=2 * MiB,
            segment_bytes=MiB,
            max_attempts=2,
            backoff_base_s=0.01,
        )
        result = await download_exports(
            DATASET, credentials=credentials_for(emu), settings=settings
        )
    ranged = [r for r in zone.proxy.blob_gets(name) if "range" in r.headers]
    assert len(ranged) >= 3  # one per segment
    local = tmp_path / DATASET / f"exportTime={NEWER}" / name
    if md5 == "right":
        assert result.ok, [r.error for r in result.fetched.failed]
        assert local.read_bytes() == files[name]
    else:
        assert not result.ok
        assert "MD5" in (result.fetched.failed[0].error or "")
        assert not local.exists()


async def test_an_export_lands_in_another_object_store(
    emulator_config: EmulatorFactory,
    zone: LandingZone,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # The lake's own credentials (an account key) are in the environment: the landing zone is
    # still read with its SAS alone.
    zone.azurite.use(monkeypatch)
    lake = zone.azurite.container()
    async with running_emulator(emulator_config(dataset=SHAPE, landing_zone=zone.answer())) as emu:
        newest = emu.batches_for(DATASET)[0]
        files = zone.export(newest, NEWER)
        settings = settings_for(emu, tmp_path)
        result = await download_exports(
            DATASET, out=f"az://{lake}/lake", credentials=credentials_for(emu), settings=settings
        )
    assert result.ok, [r.error for r in result.fetched.failed]
    storage = open_storage(f"az://{lake}/lake")
    assert isinstance(storage, ObjectStorage)
    below = storage.sub(DATASET).sub(f"exportTime={NEWER}")
    for name, data in files.items():
        assert below.read(name) == data
    manifest = below.read("manifest.json") or b""
    assert zone.signature.encode() not in manifest
    assert zone.signature not in caplog.text
    listings = [r for r in zone.proxy.requests if "comp=list" in r.query]
    assert all("sig=" in r.query for r in listings)  # obstore listed with the SAS, not the key
    assert not any(r.headers.get("authorization") for r in zone.proxy.requests)


def _aws(moto: MotoS3, **overrides: Any) -> tuple[str, AwsLandingZone]:
    bucket = moto.bucket()
    fields: dict[str, Any] = {
        "access_key_id": "ASIADLZEMULATED",
        "secret_access_key": "dlz-secret",
        "session_token": "dlz-session-token",
        "bucket": bucket,
        "folder": "dlz-destination",
        "expiry_s": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).timestamp(),
    }
    fields.update(overrides)
    return bucket, AwsLandingZone(**fields)


async def test_the_aws_provisioned_landing_zone(
    emulator_config: EmulatorFactory,
    moto_server: MotoS3,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bucket, answer = _aws(moto_server)
    async with running_emulator(emulator_config(dataset=SHAPE, landing_zone=answer)) as emu:
        newest = emu.batches_for(DATASET)[0]
        files = {p.name: p.path.read_bytes() for p in newest.parts}
        prefix = f"dlz-destination/flows/{DATASET}/exportTime={NEWER}"
        for name, data in files.items():
            moto_server.client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=data)
        zone = Zone(s3_endpoint=moto_server.endpoint, settle_s=0.0)
        settings = settings_for(emu, tmp_path)
        result = await download_exports(
            DATASET, zone=zone, credentials=credentials_for(emu), settings=settings
        )
    assert result.ok, [r.error for r in result.fetched.failed]
    assert result.chosen[0].completeness.kind.value == "quiet-period"
    below = tmp_path / DATASET / f"exportTime={NEWER}"
    for name, data in files.items():
        assert (below / name).read_bytes() == data
    # Every record but the test's own S3 server's (werkzeug logs each request it serves).
    ours = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("werkzeug", "moto"))
    )
    assert "dlz-secret" not in ours
    assert "dlz-session-token" not in ours
    assert "dlz-session-token" not in (below / "manifest.json").read_text()


async def test_expired_aws_credentials_are_refused_before_any_request(
    emulator_config: EmulatorFactory, moto_server: MotoS3, tmp_path: Path
) -> None:
    _, answer = _aws(moto_server, expiry_s=dt.datetime.now(dt.UTC).timestamp() - 60)
    async with running_emulator(emulator_config(landing_zone=answer)) as emu:
        with pytest.raises(LandingZoneExpiredError, match="expired at"):
            await download_exports(
                DATASET,
                zone=Zone(s3_endpoint=moto_server.endpoint),
                credentials=credentials_for(emu),
                settings=settings_for(emu, tmp_path),
            )
