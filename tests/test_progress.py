"""Progress may go back on a retry and never lies at the end."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from asyncdl.emulator import Faults, running_emulator
from asyncdl.models import PartStatus
from asyncdl.pipeline import download
from tests.helpers import DATASET, EmulatorFactory, RecordingListener, credentials_for, settings_for


@pytest.mark.parametrize(
    "faults",
    [Faults(), Faults(drop_rate=0.7, range_support=False, seed=2)],
    ids=["clean", "rewinds"],
)
async def test_bytes_reported_add_up_to_each_part(
    emulator_config: EmulatorFactory, tmp_path: Path, faults: Faults
) -> None:
    config = emulator_config(dataset={"part_bytes": 200_000}, faults=faults)
    async with running_emulator(config) as emu:
        listener = RecordingListener()
        settings = settings_for(emu, tmp_path, backoff_base_s=0.01, write_buffer_bytes=64 << 10)
        result = await download(
            DATASET, credentials=credentials_for(emu), settings=settings, on_progress=listener
        )
    assert result.ok
    assert {r.part.relpath: r.part.size for r in result.results} == dict(listener.bytes)
    assert Counter(listener.events)["done"] == Counter(listener.events)["queued"]
    assert listener.events[0] == "batch"
    if faults.drop_rate:
        assert listener.retries > 0
        assert listener.negative > 0, "a restart without Range must rewind the progress"


async def test_resumed_and_skipped_parts_count_once(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(dataset={"part_bytes": 200_000})
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path)
        await download(DATASET, credentials=credentials_for(emu), settings=settings)
        listener = RecordingListener()
        again = await download(
            DATASET, credentials=credentials_for(emu), settings=settings, on_progress=listener
        )
    assert all(r.status is PartStatus.SKIPPED for r in again.results)
    assert not listener.bytes  # nothing arrived; the CLI counts skipped parts from on_done
    assert len(listener.done) == len(again.results)


async def test_listing_retries_reach_the_listener(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(faults=Faults(error_5xx_rate=0.5, seed=6))
    async with running_emulator(config) as emu:
        listener = RecordingListener()
        settings = settings_for(emu, tmp_path, backoff_base_s=0.01)
        result = await download(
            DATASET, credentials=credentials_for(emu), settings=settings, on_progress=listener
        )
    assert result.ok
    assert listener.request_retries, "a 5xx on a listing page must be visible to the listener"
    assert all(url.startswith(emu.base_url) for url in listener.request_retries)
