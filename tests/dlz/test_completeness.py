"""Whether an export folder is whole: its manifest's verdicts, and the quiet period's."""

from __future__ import annotations

import datetime as dt
import json

from asyncdl.dlz.completeness import CheckKind, judge, parse_manifest

NOW = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)


def _manifest(folder: str, files: dict[str, int]) -> list[tuple[str, bytes]]:
    results = [{"sinkPath": f"/{folder}", "name": n, "size": s} for n, s in files.items()]
    return [("manifest-d-r.json", json.dumps({"exportResults": results}).encode())]


def test_a_manifest_decides_when_there_is_one() -> None:
    folder = "cmle/egress/DS/exportTime=202611020600"
    manifest = parse_manifest(_manifest(folder, {"a.parquet": 10, "b.parquet": 20}), folder=folder)
    whole = judge(
        manifest=manifest,
        present={"a.parquet": 10, "b.parquet": 20, "c.parquet": 1},
        newest=NOW,
        now=NOW,
        settle_s=3600,
    )
    assert whole.kind is CheckKind.MANIFEST
    assert whole.complete
    assert "1 other files left out (c.parquet)" in whole.detail
    short = judge(manifest=manifest, present={"a.parquet": 10}, newest=NOW, now=NOW, settle_s=0)
    assert not short.complete
    assert "1 not there yet (b.parquet)" in short.detail
    resized = judge(
        manifest=manifest,
        present={"a.parquet": 10, "b.parquet": 5},
        newest=NOW,
        now=NOW,
        settle_s=0,
    )
    assert not resized.complete
    assert "1 of another size (b.parquet)" in resized.detail
    broken = parse_manifest([("manifest-x.json", b"{not json")], folder=folder)
    assert isinstance(broken, str)
    assert not judge(manifest=broken, present={}, newest=None, now=NOW, settle_s=0).complete
    elsewhere = parse_manifest(_manifest("some/where/else", {"a.parquet": 10}), folder=folder)
    assert not isinstance(elsewhere, str)
    assert dict(elsewhere.files) == {"a.parquet": 10}
    assert "another folder" in elsewhere.note


def test_without_manifest_a_quiet_period_decides() -> None:
    present = {"a.parquet": 10}
    recent = judge(
        manifest=None, present=present, newest=NOW - dt.timedelta(minutes=4), now=NOW, settle_s=1800
    )
    assert recent.kind is CheckKind.QUIET_PERIOD
    assert not recent.complete
    assert "last file written 4m ago, within the 30m quiet period" in recent.detail
    settled = judge(
        manifest=None, present=present, newest=NOW - dt.timedelta(hours=2), now=NOW, settle_s=1800
    )
    assert settled.complete
    assert settled.detail == "no manifest; nothing written for 2h00m"
    assert not judge(manifest=None, present={}, newest=None, now=NOW, settle_s=0).complete
