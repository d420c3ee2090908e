"""``asyncdl dlz exports`` and ``asyncdl dlz download`` as a user runs them: the table and its
``--json``, a download's summary, every bad input as one line and its exit code, and the SAS
nowhere: not on stdout, stderr or in the logs (at -vv), not in a manifest or the state."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import urllib.parse
from pathlib import Path

import pytest

from asyncdl.emulator import EmulatorConfig
from asyncdl.layout import MANIFEST_NAME, dlz_lock, dlz_state
from asyncdl.storage import LocalStorage
from tests.dlz.conftest import Zone, files_below
from tests.helpers import DATASET, EmulatorFactory, env_for, run_cli, threaded_emulator

SHAPE = {"files_per_batch": 1, "parts_per_file": 3, "part_bytes": 200_000}
NEWER, OLDER = "202611020600", "202611010600"


def _config(emulator_config: EmulatorFactory, zone: Zone, **fields: object) -> EmulatorConfig:
    return emulator_config(dataset=SHAPE, landing_zone=zone.answer(), **fields)


def assert_no_secret(zone: Zone, *texts: str) -> None:
    """Neither the SAS's signature (as sent, or decoded) nor the token appears anywhere."""
    needles = {zone.signature, urllib.parse.unquote(zone.signature), zone.token}
    for text in texts:
        for needle in needles:
            assert needle not in text


def test_dlz_exports_lists_each_export_with_its_check(
    emulator_config: EmulatorFactory, threaded_zone: Zone
) -> None:
    with threaded_emulator(_config(emulator_config, threaded_zone)) as emu:
        newest, older = emu.batches_for(DATASET)[:2]
        threaded_zone.export(older, OLDER)
        threaded_zone.export(newest, NEWER, withheld=1)
        code, out, err = run_cli(["dlz", "exports", DATASET], env_for(emu))
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split("\t") == ["export time", "when", "files", "bytes", "check"]
        newer_row, older_row = lines[1].split("\t"), lines[2].split("\t")
        assert newer_row[:3] == [NEWER, "2026-11-02 06:00:00Z", "2"]
        assert newer_row[4] == "HELD BACK (manifest)"
        assert older_row[:3] == [OLDER, "2026-11-01 06:00:00Z", "3"]
        assert older_row[4] == "complete (manifest)"
        assert f"{NEWER}: manifest-" in out
        assert "1 not there yet" in out
        code, out, err = run_cli(["dlz", "exports", DATASET, "--json"], env_for(emu))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["export_time"], r["complete"], r["check"], r["files"]) for r in rows] == [
        (NEWER, False, "manifest", 2),
        (OLDER, True, "manifest", 3),
    ]
    assert rows[1]["bytes"] == sum(p.size for p in older.parts)
    assert rows[1]["folder"] == f"cmle/egress/{DATASET}"
    assert_no_secret(threaded_zone, out, err)


def test_a_download_never_shows_the_sas_anywhere(
    emulator_config: EmulatorFactory,
    threaded_zone: Zone,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    out_dir = tmp_path / "out"
    with threaded_emulator(_config(emulator_config, threaded_zone)) as emu:
        newest, older = emu.batches_for(DATASET)[:2]
        threaded_zone.export(older, OLDER)
        files = threaded_zone.export(newest, NEWER)
        bad = sorted(files)[0]  # an error path too: a part that fails with a message
        threaded_zone.azurite.set_blob_md5(
            threaded_zone.container,
            threaded_zone.key(bad, time=NEWER),
            hashlib.md5(b"other").digest(),
        )
        threaded_zone.proxy.cut[sorted(files)[1]] = 100_000  # and a retried, resumed stream
        args = [
            "-vv",
            "dlz",
            "download",
            DATASET,
            "--out",
            str(out_dir),
            "--all-new",
            "--retries",
            "2",
        ]
        code, out, err = run_cli([*args, "--json"], env_for(emu))
        code_text, out_text, err_text = run_cli(args, env_for(emu))
        dry = run_cli(
            ["dlz", "download", DATASET, "--out", str(out_dir), "--dry-run"], env_for(emu)
        )
    assert code == 1, err
    assert code_text == 1, err_text
    summary = json.loads(out.splitlines()[-1])
    assert summary["event"] == "dlz-download"
    assert [e["export_time"] for e in summary["exports"]] == [NEWER, OLDER]
    assert summary["download"]["failed"][0]["part"] == bad
    assert "MD5" in summary["download"]["failed"][0]["error"]
    assert "MD5" in err_text
    records = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    on_disk = "\n".join(data.decode("utf-8", "replace") for data in files_below(out_dir).values())
    assert (out_dir / dlz_state(DATASET)).exists()
    assert list(out_dir.rglob(MANIFEST_NAME))
    assert "resuming" in err + err_text + records  # the logs at -vv were there to look at
    assert_no_secret(threaded_zone, out, err, out_text, err_text, *dry[1:], records, on_disk)


def test_download_exit_codes(
    emulator_config: EmulatorFactory, threaded_zone: Zone, tmp_path: Path
) -> None:
    out_dir = str(tmp_path / "out")
    base = ["dlz", "download", DATASET, "--out", out_dir]
    with threaded_emulator(_config(emulator_config, threaded_zone)) as emu:
        # No export of the dataset yet: 1, one line naming what is missing.
        code, out, err = run_cli(base, env_for(emu))
        assert code == 1
        assert err.startswith("asyncdl: error: no export of dataset 5cd9146b31dae914b75f654f in")
        assert len(err.splitlines()) == 1
        newest = emu.batches_for(DATASET)[0]
        threaded_zone.export(newest, NEWER)
        # Bad usage: 2.
        assert run_cli([*base, "--export-time", "2026-11-02"], env_for(emu))[0] == 2
        assert run_cli([*base, "--export-time", NEWER, "--all-new"], env_for(emu))[0] == 2
        assert run_cli([*base, "--settle", "soon"], env_for(emu))[0] == 2
        # Another download of the dataset into OUT holds its lock: 75, at once.
        with LocalStorage(Path(out_dir)).lock(dlz_lock(DATASET)):
            code, _, err = run_cli(base, env_for(emu))
        assert code == 75, err
        # The export is there: 0, and a second run skips every file: 0.
        code, out, err = run_cli(base, env_for(emu))
        assert code == 0, err
        assert f"exportTime={NEWER}: 3 files" in out
        assert "complete by manifest" in out
        assert run_cli(base, env_for(emu))[0] == 0
        # Held back, named: 1.
        code, _, err = run_cli([*base, "--export-time", OLDER], env_for(emu))
        assert code == 1
        assert f"no export of {DATASET} at exportTime={OLDER}" in err


def test_no_landing_zone_is_one_line_and_exit_1(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    with threaded_emulator(emulator_config(landing_zone=None)) as emu:
        code, _, err = run_cli(["dlz", "exports", DATASET], env_for(emu))
        assert code == 1
        assert err == (
            "asyncdl: error: sandbox prod has no Data Landing Zone destination (AEP answered 404"
            " to /data/foundation/connectors/landingzone/credentials?type=dlz_destination)\n"
        )
        code, _, err = run_cli(["dlz", "download", DATASET, "--out", str(tmp_path)], env_for(emu))
        assert code == 1
        assert "has no Data Landing Zone destination" in err
        # AEP's own refusal is AEP's: exit 3 with AEP's hint.
        code, _, err = run_cli(
            ["dlz", "exports", DATASET], env_for(emu, AEP_ACCESS_TOKEN="not-a-token")
        )
    assert code == 3
    assert "AEP_ACCESS_TOKEN" in err


def test_a_revoked_or_expired_sas_exits_3_and_keeps_what_arrived(
    emulator_config: EmulatorFactory, threaded_zone: Zone, tmp_path: Path
) -> None:
    zone = threaded_zone
    zone.azurite.set_policy(zone.container, "dlz-policy", permissions="rl")
    revocable = dataclasses.replace(
        zone, token=zone.azurite.sas(zone.container, identifier="dlz-policy")
    )
    out_dir = tmp_path / "out"
    base = ["dlz", "download", DATASET, "--out", str(out_dir), "-j", "1"]
    with threaded_emulator(_config(emulator_config, revocable)) as emu:
        newest = emu.batches_for(DATASET)[0]
        files = zone.export(newest, NEWER)
        names = sorted(files)

        def revoke() -> None:  # a refresh (by anyone) rotates the policy: the SAS dies mid-run
            zone.azurite.set_policy(zone.container, None, permissions="")

        zone.proxy.before_get[names[1]] = revoke
        code, out, err = run_cli(base, env_for(emu))
        assert code == 3, err
        assert "the landing zone refused its credentials: HTTP 403 [AuthorizationFailure]" in err
        below = out_dir / DATASET / f"exportTime={NEWER}"
        assert (below / names[0]).read_bytes() == files[names[0]]  # nothing downloaded lost
        assert not (below / names[1]).exists()
        assert_no_secret(revocable, out, err)
        # Revoked before the run: the listing is refused, exit 3, nothing fetched.
        code, out, err = run_cli(base, env_for(emu))
        assert code == 3, err
        assert "refused the credentials to list" in err
        assert_no_secret(revocable, out, err)
    # A SAS whose own expiry has passed is not even tried.
    expired = dataclasses.replace(
        zone,
        token=zone.azurite.sas(
            zone.container, expiry=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        ),
    )
    with threaded_emulator(_config(emulator_config, expired)) as emu:
        before = len(zone.proxy.requests)
        code, out, err = run_cli(base, env_for(emu))
    assert code == 3
    assert "the landing zone's credentials expired at" in err
    assert len(zone.proxy.requests) == before
