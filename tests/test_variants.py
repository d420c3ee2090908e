"""Every shape Adobe's spec allows, end to end: a full download against the emulator serving that
variant ends byte-identical with its truth (or with the documented per-entry error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asyncdl.audience import ExportRequest, create_export_job, wait_for_job
from asyncdl.client import AEPClient
from asyncdl.emulator import Emulator, Faults, Variants, running_emulator
from asyncdl.listing.pages import PAGES_AHEAD
from asyncdl.models import PartStatus
from asyncdl.pipeline import DownloadResult, download
from tests.helpers import DATASET, EmulatorFactory, credentials_for, settings_for

MiB = 1 << 20
# Three dataSetFiles of four parts: first, second and last differ, as the variants need.
SHAPE = {"files_per_batch": 3, "parts_per_file": 4}


def assert_matches_truth(emu: Emulator, out: Path, *, missing: frozenset[str] = frozenset()) -> int:
    """The newest batch on disk is exactly the served view: every expected file byte for byte
    (but ``missing``), and nothing else but the manifest."""
    batch = emu.batches_for(DATASET)[0]
    expected = emu.expected_files(batch.id)
    assert expected, "the emulator serves no part: the test proves nothing"
    root = out / batch.id
    for relpath, truth in expected.items():
        local = root / relpath
        if relpath in missing:
            assert not local.exists()
            continue
        assert local.read_bytes() == truth.path.read_bytes(), relpath
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert on_disk == (set(expected) - missing) | {"manifest.json"}
    return len(expected)


async def run(
    emulator_config: EmulatorFactory,
    tmp_path: Path,
    variants: Variants,
    *,
    dataset: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    **config: Any,
) -> tuple[Emulator, DownloadResult]:
    emu_config = emulator_config(dataset=dataset or SHAPE, variants=variants, **config)
    async with running_emulator(emu_config) as emu:
        result = await download(
            DATASET,
            credentials=credentials_for(emu),
            settings=settings_for(emu, tmp_path, backoff_base_s=0.01, **(settings or {})),
        )
        await emu.wait_idle()
        return emu, result


def assert_reconciled(result: DownloadResult) -> None:
    assert result.ok, [(r.part.relpath, r.error) for r in result.failed] + [
        (e.name, e.reason) for e in result.rejected
    ]
    (report,) = result.batches
    assert report.reconciliation is not None
    assert report.reconciliation.ok


@pytest.mark.parametrize("linked", [True, False], ids=["next-links", "start-limit-only"])
async def test_a_batch_of_150_dataset_files_is_listed_whole(
    emulator_config: EmulatorFactory, tmp_path: Path, linked: bool
) -> None:
    emu, result = await run(
        emulator_config,
        tmp_path,
        Variants(unlinked_batch_files=not linked),
        dataset={"files_per_batch": 150, "parts_per_file": 1, "rows_per_part": 50},
        max_page_size=100,  # AEP's own page size, not the fixture's 3
    )
    assert_reconciled(result)
    assert assert_matches_truth(emu, tmp_path) == 150
    listings = [r for r in emu.requests if r.kind == "batch_files"]
    # 100, then 50: a short page ends it (and at most the read-ahead's waste past it).
    assert {r.query.get("start", "0") for r in listings} >= {"0", "100"}
    assert len(listings) <= 2 + PAGES_AHEAD - 1


async def test_a_dataset_file_that_is_the_file_itself_is_fetched_with_one_request(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    emu, result = await run(emulator_config, tmp_path, Variants(single_file=True))
    assert_reconciled(result)
    assert assert_matches_truth(emu, tmp_path) == 12
    last = emu.batches_for(DATASET)[0].files[-1]
    for part in last.parts:
        served = [r for r in emu.requests if r.part == part.name]
        assert len(served) == 1, f"{part.name} was asked for {len(served)} times"


async def test_nested_dataset_files_are_walked(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    emu, result = await run(emulator_config, tmp_path, Variants(nested_datasetfiles=True))
    assert_reconciled(result)
    assert assert_matches_truth(emu, tmp_path) == 12


async def test_relative_hrefs_resolve_against_their_page(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    emu, result = await run(emulator_config, tmp_path, Variants(relative_hrefs=True))
    assert_reconciled(result)
    assert assert_matches_truth(emu, tmp_path) == 12


async def test_commit_files_are_markers_and_partition_folders_are_paths(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    emu, result = await run(emulator_config, tmp_path, Variants(commit_markers=True))
    assert_reconciled(result)
    assert_matches_truth(emu, tmp_path)
    batch = emu.batches_for(DATASET)[0]
    assert any(relpath.startswith("scoreDate=") for relpath in emu.expected_files(batch.id))
    assert result.markers == 3 * 3  # _started_, _committed_, _SUCCESS in each directory
    assert not [r for r in emu.downloads() if r.query.get("path", "").startswith("_")]


async def test_entries_without_a_length_are_sized_with_head(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    emu, result = await run(emulator_config, tmp_path, Variants(missing_length=True))
    assert_reconciled(result)
    assert assert_matches_truth(emu, tmp_path) == 12
    heads = [r for r in emu.requests if r.kind == "head"]
    assert len(heads) == 2 * 3  # the second and third entry of each directory


async def test_a_part_whose_size_nobody_knows_fails_alone(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    emu, result = await run(emulator_config, tmp_path, Variants(unknown_length=True))
    first = emu.batches_for(DATASET)[0].files[0].parts[0]
    assert not result.ok
    (rejected,) = result.rejected
    assert rejected.name == first.name
    assert "no usable length" in rejected.reason
    assert not result.failed
    assert_matches_truth(emu, tmp_path, missing=frozenset({first.name}))
    assert result.batches[0].reconciliation is None  # not the whole batch: nothing to compare


async def test_listing_links_that_never_end_stop_at_the_first_empty_page(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    emu, result = await run(emulator_config, tmp_path, Variants(endless_next=True))
    assert_reconciled(result)
    assert assert_matches_truth(emu, tmp_path) == 12
    directories = [r for r in emu.requests if r.kind == "directory"]
    # Pages of 3 (the fixture's cap): four entries and a marker are 2 pages, plus one empty
    # (asked for ahead or not), plus at most the read-ahead's waste, in each of 3 directories.
    assert len(directories) <= 3 * (3 + PAGES_AHEAD - 1)


async def test_shorter_206s_than_asked_are_progress(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    emu, result = await run(
        emulator_config,
        tmp_path,
        Variants(short_206=True),
        dataset={"files_per_batch": 1, "parts_per_file": 2, "part_bytes": 3 * MiB},
        settings={"segment_threshold_bytes": 2 * MiB, "segment_bytes": MiB, "max_attempts": 1},
    )
    assert_reconciled(result)
    assert_matches_truth(emu, tmp_path)
    short = [r for r in emu.downloads() if r.status == 206]
    assert len(short) > 2 * 3 * 5  # every segment asked for again as its answers came short


async def test_file_counts_of_another_kind_only_warn(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    _, result = await run(emulator_config, tmp_path, Variants(file_count_of_datasetfiles=True))
    assert_reconciled(result)
    reconciliation = result.batches[0].reconciliation
    assert reconciliation is not None
    (warning,) = reconciliation.warnings
    assert "outputFileCount says 3 files, 12 parts arrived" in warning


async def test_metrics_as_strings_and_minus_one_still_reconcile(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    _, result = await run(emulator_config, tmp_path, Variants(quirky_metrics=True))
    assert_reconciled(result)
    reconciliation = result.batches[0].reconciliation
    assert reconciliation is not None
    assert reconciliation.expected_bytes == reconciliation.actual_bytes
    assert reconciliation.expected_rows == reconciliation.actual_rows
    assert reconciliation.expected_files is None  # -1: the producer did not count


async def test_a_malformed_retry_after_falls_back_to_backoff(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    emu, result = await run(
        emulator_config,
        tmp_path,
        Variants(malformed_retry_after=True),
        faults=Faults(rate_429=0.3, error_5xx_rate=0.2, retry_after_s=300, seed=2),
    )
    assert_reconciled(result)
    assert_matches_truth(emu, tmp_path)
    assert any(r.fault == "429" for r in emu.requests)
    # 300 s were never waited: the run is over in well under a minute (pytest's timeout).


async def test_answers_cut_at_the_response_limit_are_resumes(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    emu, result = await run(
        emulator_config,
        tmp_path,
        Variants(response_limit_s=0.15),
        dataset={"files_per_batch": 1, "parts_per_file": 2, "part_bytes": 2 * MiB},
        settings={"max_attempts": 1, "segment_threshold_bytes": None},
        bandwidth_bps=4 * MiB,
    )
    assert_reconciled(result)
    assert_matches_truth(emu, tmp_path)
    cut = [r for r in emu.requests if r.fault == "response_limit"]
    assert len(cut) >= 2  # each part cut at least once, and finished on one attempt


async def test_export_jobs_with_float_ids_and_one_batch_object(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    config = emulator_config(variants=Variants(export_job_quirks=True), export_duration_s=0.2)
    async with (
        running_emulator(config) as emu,
        AEPClient(credentials=credentials_for(emu), settings=settings_for(emu, tmp_path)) as client,
    ):
        request = ExportRequest(
            segment_ids=("seg-churn",),
            dataset_id=DATASET,
            merge_policy_id="mp-default",
            fields=("person.name",),
            segment_per_batch=True,
        )
        job = await create_export_job(client, request)
        done = await wait_for_job(client, job.id, poll_min_s=0.05, poll_max_s=0.1)
    assert done.batch_ids
    assert set(done.batch_ids) <= {b.id for b in emu.export_batches}


async def test_every_variant_at_once(emulator_config: EmulatorFactory, tmp_path: Path) -> None:
    emu, result = await run(
        emulator_config,
        tmp_path,
        Variants.every(response_limit_s=0.3),
        faults=Faults(rate_429=0.1, error_5xx_rate=0.1, drop_rate=0.1, retry_after_s=1, seed=9),
        dataset={**SHAPE, "part_bytes": 400_000},
        settings={"segment_threshold_bytes": 1 * MiB, "segment_bytes": MiB},
        bandwidth_bps=4 * MiB,
    )
    first = emu.batches_for(DATASET)[0].files[0].parts[0]  # unknown_length: no size anywhere
    rejected = {e.name for e in result.rejected}
    assert rejected == {first.name}
    assert not result.failed, [(r.part.relpath, r.error) for r in result.failed]
    expected = emu.expected_files(emu.batches_for(DATASET)[0].id)
    missing = frozenset(r for r, truth in expected.items() if truth.name == first.name)
    assert_matches_truth(emu, tmp_path, missing=missing)
    assert all(r.status is not PartStatus.FAILED for r in result.results)
