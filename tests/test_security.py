"""Nothing leaked, nothing written outside --out, nothing marked complete that is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncdl.config import Credentials
from asyncdl.emulator import Faults, running_emulator
from asyncdl.errors import StorageError
from asyncdl.pipeline import download
from tests.helpers import (
    DATASET,
    EmulatorFactory,
    assert_identical,
    credentials_for,
    first_part_paths,
    settings_for,
)

CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-gw-ims-org-id")


async def test_foreign_origin_hrefs_are_refused(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config()) as foreign:
        faults = Faults(foreign_origin=foreign.base_url.replace("127.0.0.1", "localhost"))
        async with running_emulator(emulator_config(faults=faults)) as emu:
            result = await download(
                DATASET, credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)
            )
            await foreign.wait_idle()
    assert not result.ok
    assert result.failed
    assert all("outside the API origin" in (r.error or "") for r in result.failed)
    assert foreign.requests == []
    assert not list(tmp_path.rglob("*.parquet"))


async def test_allowed_foreign_host_never_receives_credentials(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config()) as foreign:
        faults = Faults(foreign_origin=foreign.base_url.replace("127.0.0.1", "localhost"))
        async with running_emulator(emulator_config(faults=faults)) as emu:
            settings = settings_for(emu, tmp_path, allowed_hosts=frozenset({"localhost"}))
            result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
            await foreign.wait_idle()
    assert foreign.requests, "the allowed host was never asked"
    for request in foreign.requests:
        for header in CREDENTIAL_HEADERS:
            assert header not in request.headers
    # The emulator's gateway wants credentials, so the allowed host refuses: a part-level
    # failure with its reason, not an authentication failure of the whole run.
    assert result.failed
    assert all("HTTP 403 [403010]" in (r.error or "") for r in result.failed)


async def test_hostile_names_are_rejected_and_the_rest_arrives(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    config = emulator_config(faults=Faults(hostile_names=True))
    async with running_emulator(config) as emu:
        result = await download(
            DATASET, credentials=credentials_for(emu), settings=settings_for(emu, out_dir)
        )
        newest = emu.batches_for(DATASET)[0]
        await emu.wait_idle()
        fetched = {r.query.get("path") for r in emu.downloads()}
    assert_identical(newest, out_dir)
    rejected = {e.name for e in result.rejected}
    assert {
        "../escape.parquet",
        "/etc/evil.parquet",
        "scoreDate=x/../../escape.parquet",
        "C:evil.parquet",
    } <= rejected
    assert not result.ok  # the user hears about it
    assert not rejected & fetched, "a rejected name was requested"
    assert not (tmp_path / "escape.parquet").exists()
    assert not Path("/etc/evil.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


async def test_disk_full_ends_the_run_without_a_complete_looking_part(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config()) as emu:
        _, final, temp = first_part_paths(emu, DATASET, tmp_path)
        temp.symlink_to("/dev/full")  # every write to it fails with ENOSPC, like a full disk
        with pytest.raises(StorageError, match="disk full"):
            await download(
                DATASET, credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)
            )
    assert not final.exists()


async def test_secrets_stay_out_of_the_manifest(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    async with running_emulator(emulator_config()) as emu:
        creds = credentials_for(emu)
        await download(DATASET, credentials=creds, settings=settings_for(emu, tmp_path))
    text = "".join(p.read_text() for p in tmp_path.rglob("manifest.json"))
    assert json.loads(text)["parts"]
    assert creds.access_token is not None
    assert creds.access_token not in text
    assert creds.api_key not in text


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials(api_key="k", org_id="o", client_id="c", client_secret="s3cr3t")
    assert "s3cr3t" not in repr(creds)
