"""Whatever the server does wrong, every part ends byte-identical or is reported, never corrupt."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from asyncdl.config import MiB
from asyncdl.emulator import Faults, running_emulator
from asyncdl.models import PartStatus
from asyncdl.pipeline import download
from asyncdl.slots import StreamSlots
from tests.helpers import DATASET, EmulatorFactory, assert_identical, credentials_for, settings_for

FAULTS = {
    "5xx": Faults(error_5xx_rate=0.5),
    "429": Faults(rate_429=0.5, retry_after_s=0.0),
    "drop": Faults(drop_rate=0.6),
    "all": Faults(error_5xx_rate=0.2, rate_429=0.2, retry_after_s=0.0, drop_rate=0.3),
}


@pytest.mark.parametrize("range_support", [True, False], ids=["range", "no-range"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_fault_matrix_ends_byte_identical(
    emulator_config: EmulatorFactory, tmp_path: Path, fault: str, range_support: bool
) -> None:
    faults = dataclasses.replace(FAULTS[fault], range_support=range_support, seed=3)
    # Parts of ~300 kB so that drops and truncations happen mid-body, after bytes were written.
    config = emulator_config(dataset={"parts_per_file": 3, "part_bytes": 300_000}, faults=faults)
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, backoff_base_s=0.01, write_buffer_bytes=64 * 1024)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        await emu.wait_idle()
        injected = [r.fault for r in emu.requests if r.fault]
        ranged = [r for r in emu.downloads() if r.headers.get("range")]
        newest = emu.batches_for(DATASET)[0]
    assert result.ok, [r.error for r in result.failed]
    assert injected, "the emulator injected no fault: the test proves nothing"
    assert_identical(newest, tmp_path)
    if fault == "drop":
        assert sum(r.attempts for r in result.results) > len(result.results)
        assert ranged, "an interrupted part must continue with Range, not start over"
        if range_support:
            # Continuing, not restarting: fewer bytes crossed than a restart would have needed.
            assert all(r.fetched_bytes <= r.part.size for r in result.results)


async def test_retry_after_is_honoured(emulator_config: EmulatorFactory, tmp_path: Path) -> None:
    faults = Faults(rate_429=1.0, retry_after_s=1.0, max_faults_per_path=1)
    config = emulator_config(dataset={"files_per_batch": 1, "parts_per_file": 1}, faults=faults)
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, backoff_base_s=0.01)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        await emu.wait_idle()
        catalog = [r for r in emu.requests if r.kind == "catalog_batches"]
    assert result.ok
    assert [r.status for r in catalog] == [429, 200]
    assert catalog[1].started_s - catalog[0].finished_s >= 0.9


async def test_exhausted_retries_fail_the_part_and_are_reported(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(dataset={"parts_per_file": 2})
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, backoff_base_s=0.01, max_attempts=2)
        # Listing pages survive (3 faults > 2 attempts would kill them too), so break downloads
        # only: the drop fault applies to downloads alone.
        emu.faults = Faults(drop_rate=1.0, max_faults_per_path=5)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        newest = emu.batches_for(DATASET)[0]
    assert not result.ok
    # Every part was tried to the end on its own: one failure stops none of the others.
    assert len(result.failed) == sum(len(f.parts) for f in newest.files)
    assert all(r.status is PartStatus.FAILED and r.error for r in result.failed)
    assert all(r.attempts == 2 for r in result.failed)
    assert not any(p.suffix == ".parquet" for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("range_support", [True, False], ids=["range", "no-range"])
async def test_small_parts_keep_what_arrived(
    emulator_config: EmulatorFactory, tmp_path: Path, range_support: bool
) -> None:
    # Parts under one write buffer take the one-hop path; a drop must still resume with Range.
    faults = Faults(drop_rate=0.6, range_support=range_support, seed=4)
    config = emulator_config(dataset={"part_bytes": 200_000}, faults=faults)
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, backoff_base_s=0.01)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        await emu.wait_idle()
        ranged = [r for r in emu.downloads() if r.headers.get("range")]
        newest = emu.batches_for(DATASET)[0]
    assert result.ok, [r.error for r in result.failed]
    assert_identical(newest, tmp_path)
    assert ranged, "an interrupted small part must continue with Range, not start over"


@pytest.mark.parametrize("range_support", [True, False], ids=["range", "no-range"])
async def test_a_server_size_other_than_the_listing_fails_the_part_at_once(
    emulator_config: EmulatorFactory, tmp_path: Path, range_support: bool
) -> None:
    """A stale listing: asking again would get the same answer, so there is no retry loop."""
    faults = Faults(truncate_rate=1.0, max_faults_per_path=1, range_support=range_support)
    config = emulator_config(dataset={"files_per_batch": 1, "parts_per_file": 2}, faults=faults)
    async with running_emulator(config) as emu:
        settings = settings_for(emu, tmp_path, backoff_base_s=0.01)
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
        newest = emu.batches_for(DATASET)[0]
    assert not result.ok
    assert len(result.failed) == len(newest.parts)
    for failed in result.failed:
        assert failed.attempts == 1
        assert f"the listing says {failed.part.size} bytes, the server says" in (failed.error or "")
    assert not list(tmp_path.rglob("*.parquet"))


@pytest.mark.parametrize(
    ("segment_threshold", "write_buffer"),
    [(None, 4 << 20), (None, 64 * 1024), (MiB + 1, 64 * 1024)],
    ids=["small-whole", "streamed-whole", "segments"],
)
async def test_a_refused_stream_tells_the_slots_when_it_started(
    emulator_config: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    segment_threshold: int | None,
    write_buffer: int,
) -> None:
    """TCP's episode rule needs each 429's send time: the one ``async with slots`` returned."""
    entered: list[float] = []
    refused: list[float | None] = []
    real_enter, real_throttled = StreamSlots.__aenter__, StreamSlots.on_throttled

    async def enter(self: StreamSlots) -> float:
        started_at = await real_enter(self)
        entered.append(started_at)
        return started_at

    def throttled(
        self: StreamSlots, retry_after_s: float | None = None, *, started_at: float | None = None
    ) -> None:
        refused.append(started_at)
        real_throttled(self, retry_after_s, started_at=started_at)

    monkeypatch.setattr(StreamSlots, "__aenter__", enter)
    monkeypatch.setattr(StreamSlots, "on_throttled", throttled)
    faults = Faults(rate_429=0.5, retry_after_s=0.0, seed=5, max_faults_per_path=8)
    config = emulator_config(dataset={"parts_per_file": 2, "part_bytes": 3 * MiB}, faults=faults)
    async with running_emulator(config) as emu:
        settings = settings_for(
            emu,
            tmp_path,
            backoff_base_s=0.01,
            segment_threshold_bytes=segment_threshold,
            segment_bytes=MiB,
            write_buffer_bytes=write_buffer,
        )
        result = await download(DATASET, credentials=credentials_for(emu), settings=settings)
    assert result.ok, [r.error for r in result.failed]
    assert refused, "no stream was refused: the test proves nothing"
    assert all(s is not None and s in entered for s in refused), refused
