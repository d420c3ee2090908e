"""OAuth server-to-server against the emulator's IMS: expiry mid-run and a 401 herd."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from asyncdl.config import Credentials
from asyncdl.emulator import Emulator, running_emulator
from asyncdl.pipeline import download
from tests.helpers import DATASET, EmulatorFactory, assert_identical, settings_for


def oauth_credentials(emu: Emulator) -> Credentials:
    config = emu.config
    return Credentials(
        api_key=config.client_id,
        org_id=config.org_id,
        client_id=config.client_id,
        client_secret=config.client_secret,
        ims_url=emu.base_url,
    )


async def test_token_expiring_mid_run_is_renewed(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(
        dataset={"parts_per_file": 4, "part_bytes": 200_000},
        token_lifetime_s=0.4,
        bandwidth_bps=1_000_000,
    )
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, concurrency=2)
        result = await download(DATASET, credentials=oauth_credentials(emu), settings=settings)
        await emu.wait_idle()
        grants = [r for r in emu.requests if r.kind == "token"]
        newest = emu.batches_for(DATASET)[0]
    assert result.ok, [r.error for r in result.failed]
    assert len(grants) >= 3  # the run outlived several tokens
    assert_identical(newest, tmp_path)


async def test_herd_of_401s_causes_one_refresh(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(
        dataset={"files_per_batch": 4, "parts_per_file": 16, "part_bytes": 50_000},
        page_size=100,
        max_page_size=100,
        latency_s=0.05,
    )
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, concurrency=32)

        async def revoke_when_busy() -> None:
            while len(emu.downloads()) < 8:
                await anyio.sleep(0.005)
            emu.revoke_tokens()

        async with anyio.create_task_group() as tg:
            tg.start_soon(revoke_when_busy)
            result = await download(DATASET, credentials=oauth_credentials(emu), settings=settings)
        await emu.wait_idle()
        grants = [r for r in emu.requests if r.kind == "token"]
        refused = [r for r in emu.requests if r.status == 401]
        newest = emu.batches_for(DATASET)[0]
    assert result.ok
    assert len(refused) > 1, "the revocation did not hit several requests at once"
    assert len(grants) == 2  # the first token and one single-flight refresh
    assert_identical(newest, tmp_path)


async def test_wrong_client_secret_is_an_auth_error(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    from asyncdl.errors import AuthError

    async with running_emulator(emulator_config()) as emu:
        creds = Credentials(
            api_key=emu.config.client_id,
            org_id=emu.config.org_id,
            client_id=emu.config.client_id,
            client_secret="wrong-secret-value",
            ims_url=emu.base_url,
        )
        with pytest.raises(AuthError) as caught:
            await download(DATASET, credentials=creds, settings=settings_for(emu, tmp_path))
    assert "wrong-secret-value" not in str(caught.value)
