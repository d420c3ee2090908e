"""``dlz download`` against Azurite: the newest export byte for byte, one export by time, every
new one (twice: the second fetches nothing), and what a landing zone does to a download in
flight (a cut stream, a blob rewritten, a wrong Content-MD5, a partial export, a deleted blob).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from asyncdl.dlz import CheckKind, Zone, download_exports
from asyncdl.emulator import Emulator, running_emulator
from asyncdl.errors import NoExportError
from asyncdl.layout import MANIFEST_NAME, dlz_state
from asyncdl.models import PartStatus
from tests.dlz.conftest import Zone as LandingZone
from tests.helpers import DATASET, EmulatorFactory, credentials_for, settings_for

#: Three parts of ~200 kB per batch: big enough for a cut after 64 KiB to be a resume.
DATASET_SHAPE = {"files_per_batch": 1, "parts_per_file": 3, "part_bytes": 200_000}
NEWER, OLDER = "202611020600", "202611010600"


def _run(emu: Emulator, out: Path, **kwargs: Any) -> Any:
    settings = settings_for(emu, out, max_attempts=3, backoff_base_s=0.01)
    return download_exports(DATASET, credentials=credentials_for(emu), settings=settings, **kwargs)


def assert_export_on_disk(out: Path, time: str, files: dict[str, bytes]) -> dict[str, Any]:
    below = out / DATASET / f"exportTime={time}"
    for name, data in files.items():
        assert (below / name).read_bytes() == data, name
    assert not list(below.rglob("*.part"))
    manifest = json.loads((below / MANIFEST_NAME).read_text())
    assert {p["relpath"] for p in manifest["parts"]} == set(files)
    assert manifest["reconciliation"]["ok"] is True
    return dict(manifest)


async def test_the_newest_export_arrives_identical(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        newest, older = emu.batches_for(DATASET)[:2]
        zone.export(older, OLDER)
        files = zone.export(newest, NEWER)
        result = await _run(emu, tmp_path)
        await emu.wait_idle()
    assert result.ok, [r.error for r in result.fetched.failed]
    assert [e.export_time for e in result.chosen] == [NEWER]
    assert [e.export_time for e in result.found] == [NEWER, OLDER]
    assert result.chosen[0].completeness.kind is CheckKind.MANIFEST
    manifest = assert_export_on_disk(tmp_path, NEWER, files)
    assert manifest["source"]["check"] == "manifest"
    assert manifest["source"]["folder"] == f"cmle/egress/{DATASET}"
    assert not (tmp_path / DATASET / f"exportTime={OLDER}").exists()
    # Every GET named the version listed; the store never saw AEP's headers, AEP never the SAS.
    gets = [r for r in zone.proxy.blob_gets() if "/manifest-" not in r.path]  # obstore reads those
    assert len(gets) == len(files)
    assert all(r.headers.get("if-match", "").startswith('"') for r in gets)
    assert not any(
        "authorization" in r.headers or "x-api-key" in r.headers for r in zone.proxy.requests
    )
    for request in emu.requests:
        assert zone.signature not in json.dumps([request.path, request.query, request.headers])
    credentials_calls = [r for r in emu.requests if r.kind == "landing_zone"]
    assert len(credentials_calls) == 1
    assert credentials_calls[0].query == {"type": "dlz_destination"}  # never action=refresh


async def test_export_time_picks_that_export(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        newest, older = emu.batches_for(DATASET)[:2]
        files = zone.export(older, OLDER)
        zone.export(newest, NEWER)
        result = await _run(emu, tmp_path, export_time=OLDER)
        with pytest.raises(NoExportError, match=r"no export of .* at exportTime=202611030600"):
            await _run(emu, tmp_path, export_time="202611030600")
    assert result.ok
    assert [e.export_time for e in result.chosen] == [OLDER]
    assert_export_on_disk(tmp_path, OLDER, files)
    assert not (tmp_path / DATASET / f"exportTime={NEWER}").exists()


async def test_all_new_twice_fetches_nothing_the_second_time(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        newest, older = emu.batches_for(DATASET)[:2]
        older_files = zone.export(older, OLDER)
        newer_files = zone.export(newest, NEWER)
        before = await _run(emu, tmp_path, all_new=True, dry_run=True)
        assert not tmp_path.exists() or not any(tmp_path.iterdir())  # a dry run writes nothing
        first = await _run(emu, tmp_path, all_new=True)
        fetched = len(zone.proxy.blob_gets())
        after = await _run(emu, tmp_path, all_new=True, dry_run=True)
        second = await _run(emu, tmp_path, all_new=True)
    # A dry run of --all-new plans what the run would fetch: everything, then nothing.
    assert [e.export_time for e in before.chosen] == [NEWER, OLDER]
    assert after.chosen == ()
    assert after.already == (NEWER, OLDER)  # and why nothing would be fetched
    assert first.ok
    assert second.ok
    assert [e.export_time for e in first.chosen] == [NEWER, OLDER]
    assert_export_on_disk(tmp_path, NEWER, newer_files)
    assert_export_on_disk(tmp_path, OLDER, older_files)
    assert second.chosen == ()
    assert second.fetched.batches == ()
    assert second.already == (NEWER, OLDER)
    assert len(zone.proxy.blob_gets()) == fetched  # only listings: not one file asked for
    state = json.loads((tmp_path / dlz_state(DATASET)).read_text())
    assert {e["export_time"]: e["complete"] for e in state["exports"]} == {
        NEWER: True,
        OLDER: True,
    }
    # A manifest changed since (here: deleted) is checked again, its files skipped as on disk.
    (tmp_path / DATASET / f"exportTime={OLDER}" / MANIFEST_NAME).unlink()
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        dry = await _run(emu, tmp_path, all_new=True, dry_run=True)
        third = await _run(emu, tmp_path, all_new=True)
    assert [e.export_time for e in dry.chosen] == [OLDER]
    assert [e.export_time for e in third.chosen] == [OLDER]
    assert {r.status for r in third.fetched.results} == {PartStatus.SKIPPED}


async def test_a_stream_cut_mid_blob_resumes_where_it_ended(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        newest = emu.batches_for(DATASET)[0]
        files = zone.export(newest, NEWER)
        victim = sorted(files)[1]
        zone.proxy.cut[victim] = 120_000
        result = await _run(emu, tmp_path)
    assert result.ok, [r.error for r in result.fetched.failed]
    assert_export_on_disk(tmp_path, NEWER, files)
    gets = zone.proxy.blob_gets(victim)
    assert len(gets) == 2
    assert "range" not in gets[0].headers
    assert gets[1].headers["range"].startswith("bytes=")
    assert int(gets[1].headers["range"][6:].split("-")[0]) >= 65536  # the bytes kept were kept
    assert gets[1].headers["if-match"] == gets[0].headers["if-match"]


async def test_a_blob_rewritten_mid_download_restarts_at_the_new_version(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    old, new = b"A" * 180_000, b"B" * 180_000  # not parquet: only its size and MD5 are checked
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        newest = emu.batches_for(DATASET)[0]
        files = zone.export(newest, NEWER, extra={"scores.json.gz": old})
        key = zone.key("scores.json.gz", time=NEWER)

        def rewrite() -> None:
            zone.put(key, new)  # a new ETag: the resumed request's If-Match no longer holds

        zone.proxy.cut["scores.json.gz"] = 100_000
        zone.proxy.after_cut["scores.json.gz"] = rewrite
        result = await _run(emu, tmp_path)
    assert result.ok, [r.error for r in result.fetched.failed]
    assert_export_on_disk(tmp_path, NEWER, {**files, "scores.json.gz": new})
    seen = [
        (r.method, r.status, r.headers.get("range"))
        for r in zone.proxy.requests
        if r.path.endswith("scores.json.gz")
    ]
    # cut short, its resume refused (412: rewritten), a HEAD for the new version, from zero
    assert [(m, s) for m, s, _ in seen] == [("GET", 200), ("GET", 412), ("HEAD", 200), ("GET", 200)]
    assert seen[-1][2] is None
    assert not list((tmp_path / DATASET).rglob("*.part"))


async def test_a_wrong_content_md5_fails_the_part_and_leaves_nothing_visible(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        newest = emu.batches_for(DATASET)[0]
        files = zone.export(newest, NEWER)
        victim = sorted(files)[0]
        zone.azurite.set_blob_md5(
            zone.container, zone.key(victim, time=NEWER), hashlib.md5(b"other").digest()
        )
        result = await _run(emu, tmp_path)
    assert not result.ok
    (failed,) = result.fetched.failed
    assert failed.part.relpath == victim
    assert "MD5" in (failed.error or "")
    below = tmp_path / DATASET / f"exportTime={NEWER}"
    assert not (below / victim).exists()
    for name in sorted(files)[1:]:
        assert (below / name).read_bytes() == files[name]


async def test_a_partial_export_is_held_back(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        newest, older = emu.batches_for(DATASET)[:2]
        older_files = zone.export(older, OLDER)
        zone.export(newest, NEWER, withheld=1)  # its manifest lists a file not there yet
        result = await _run(emu, tmp_path)
        with pytest.raises(NoExportError, match=f"exportTime={NEWER} is held back: .*not there"):
            await _run(emu, tmp_path, export_time=NEWER)
        taken = await _run(emu, tmp_path / "partial", partial=True)
    assert result.ok
    assert [e.export_time for e in result.chosen] == [OLDER]  # the newest complete one
    (held,) = result.held_back
    assert held.export_time == NEWER
    assert not held.completeness.complete
    assert held.completeness.kind is CheckKind.MANIFEST
    assert "1 not there yet" in held.completeness.detail
    assert_export_on_disk(tmp_path, OLDER, older_files)
    assert not (tmp_path / DATASET / f"exportTime={NEWER}").exists()
    # --partial takes it, and its manifest says it did not add up.
    assert [e.export_time for e in taken.chosen] == [NEWER]
    assert not taken.ok  # fewer bytes than the export's manifest lists: not reconciled
    manifest = json.loads(
        (tmp_path / "partial" / DATASET / f"exportTime={NEWER}" / MANIFEST_NAME).read_text()
    )
    assert manifest["source"]["complete"] is False
    assert manifest["reconciliation"]["ok"] is False


async def test_an_export_without_manifest_waits_for_a_quiet_period(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        newest = emu.batches_for(DATASET)[0]
        files = zone.export(newest, NEWER, manifest=False)
        with pytest.raises(NoExportError, match="quiet period"):
            await _run(emu, tmp_path)  # just written: the export may still be running
        result = await _run(emu, tmp_path, zone=Zone(settle_s=0.0))
    assert result.ok
    assert result.chosen[0].completeness.kind is CheckKind.QUIET_PERIOD
    manifest = assert_export_on_disk(tmp_path, NEWER, files)
    assert manifest["source"]["check"] == "quiet-period"


async def test_a_blob_deleted_mid_run_is_a_clear_404_and_nothing_is_left_of_it(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        newest = emu.batches_for(DATASET)[0]
        files = zone.export(newest, NEWER)
        victim = sorted(files)[2]

        def expire() -> None:  # the landing zone's seven-day TTL, just after the listing
            zone.azurite.delete_blob(zone.container, zone.key(victim, time=NEWER))

        zone.proxy.cut[victim] = 100_000  # some of it is on disk when it goes
        zone.proxy.after_cut[victim] = expire
        result = await _run(emu, tmp_path)
    assert not result.ok
    (failed,) = result.fetched.failed
    assert failed.part.relpath == victim
    assert "no longer in the store: deleted since it was listed" in (failed.error or "")
    below = tmp_path / DATASET / f"exportTime={NEWER}"
    assert not (below / victim).exists()
    assert not list(below.rglob("*.part"))  # nothing half-written left
    for name in sorted(files)[:2]:
        assert (below / name).read_bytes() == files[name]  # nothing downloaded lost


async def test_include_exclude_and_dry_run_apply_as_for_batches(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        files = zone.export(emu.batches_for(DATASET)[0], NEWER)
        first, *others = sorted(files)
        some = await _run(emu, tmp_path, include=[first])
        plan = await _run(emu, tmp_path, dry_run=True)
        fetched = len(zone.proxy.blob_gets())
        again = await _run(emu, tmp_path, dry_run=True, exclude=[first])
    assert some.ok
    assert [r.part.relpath for r in some.fetched.results] == [first]
    assert some.fetched.batches[0].reconciliation is None  # filtered: nothing to reconcile
    assert not (tmp_path / dlz_state(DATASET)).exists()  # nor vouched for as complete
    (planned,) = plan.planned
    assert [p.relpath for p in planned.parts] == sorted(files)
    assert planned.complete == {first}  # on disk already: would be skipped
    assert planned.bytes_to_fetch == sum(len(files[name]) for name in others)
    assert [p.relpath for p in again.planned[0].parts] == others
    assert len(zone.proxy.blob_gets()) == fetched  # a dry run reads no file


@pytest.mark.parametrize("rebuilt", [False, True], ids=["state", "state-rebuilt"])
async def test_a_partial_export_taken_anyway_is_fetched_whole_by_a_later_all_new(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path, rebuilt: bool
) -> None:
    """``--partial`` takes what is there; the state (kept, or rebuilt from the manifests) must
    not vouch for the export, or ``--all-new`` would never come back for the files that land
    after it."""
    async with running_emulator(
        emulator_config(dataset=DATASET_SHAPE, landing_zone=zone.answer())
    ) as emu:
        newest = emu.batches_for(DATASET)[0]
        last, *first = sorted(newest.parts, key=lambda p: p.name, reverse=True)
        for part in first:  # still running: two of three files, no manifest, written just now
            zone.put(zone.key(part.name, time=NEWER), part.path.read_bytes())
        taken = await _run(emu, tmp_path, partial=True)
        assert taken.ok
        zone.put(zone.key(last.name, time=NEWER), last.path.read_bytes())  # the export ends
        if rebuilt:
            (tmp_path / dlz_state(DATASET)).unlink(missing_ok=True)
        again = await _run(emu, tmp_path, all_new=True, zone=Zone(settle_s=0.0))
        after = await _run(emu, tmp_path, all_new=True, zone=Zone(settle_s=0.0))
    assert [e.export_time for e in again.chosen] == [NEWER]
    below = tmp_path / DATASET / f"exportTime={NEWER}"
    assert (below / last.name).read_bytes() == last.path.read_bytes()
    assert [e.export_time for e in after.chosen] == []  # now it is whole, and vouched for


async def test_an_unfinished_part_of_an_earlier_run_is_fetched_afresh(
    emulator_config: EmulatorFactory, zone: LandingZone, tmp_path: Path
) -> None:
    """Nothing records which version an earlier run's ``.part`` holds: a full-size one with a
    wrong byte must not be sealed without the MD5 that only an answer states."""
    shape = {"files_per_batch": 1, "parts_per_file": 1, "part_bytes": 200_000}
    async with running_emulator(emulator_config(dataset=shape, landing_zone=zone.answer())) as emu:
        ((name, data),) = zone.export(emu.batches_for(DATASET)[0], NEWER).items()
        below = tmp_path / DATASET / f"exportTime={NEWER}"
        below.mkdir(parents=True)
        wrong = bytearray(data)
        wrong[len(wrong) // 2] ^= 0xFF  # the same size, the footer intact, one byte wrong
        (below / f"{name}.part").write_bytes(bytes(wrong))
        result = await _run(emu, tmp_path)
    assert result.ok, [r.error for r in result.fetched.failed]
    assert (below / name).read_bytes() == data
