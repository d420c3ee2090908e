"""The data engineer's commands: dry runs, filters, JSON, batches, files, inspect, merge, config."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from asyncdl.checksum import Checksum
from asyncdl.cli import app
from asyncdl.emulator import Emulator
from tests.helpers import DATASET, EmulatorFactory, digest_of, env_for, threaded_emulator
from tests.helpers import run_cli as run


@pytest.fixture
def emu(emulator_config: EmulatorFactory) -> Iterator[Emulator]:
    with threaded_emulator(emulator_config(dataset={"nested": True})) as running:
        yield running


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_dry_run_lists_everything_and_fetches_nothing(emu: Emulator, tmp_path: Path) -> None:
    code, stdout, _ = run(["download", DATASET, "--out", str(tmp_path), "--dry-run"], env_for(emu))
    assert code == 0
    newest = emu.batches_for(DATASET)[0]
    for part in newest.parts:
        assert part.name in stdout
    assert f"{sum(p.size for p in newest.parts) / 1e6:,.1f} MB in total" in stdout
    assert "nothing was downloaded" in stdout
    assert not emu.downloads()
    assert not list(tmp_path.iterdir())


def test_include_and_exclude_filter_parts(emu: Emulator, tmp_path: Path) -> None:
    newest = emu.batches_for(DATASET)[0]
    names = sorted(p.name for p in newest.parts)
    args = ["download", DATASET, "--out", str(tmp_path), "--include", "part-0000[0-3]*"]
    args += ["--exclude", names[0]]
    code, stdout, stderr = run(args, env_for(emu))
    assert code == 0, stderr
    got = sorted(p.name for p in (tmp_path / newest.id).glob("*.parquet"))
    assert got == [n for n in names if n[:10] in {f"part-0000{i}" for i in range(4)}][1:]
    assert "matches the Catalog" not in stdout  # a filtered run cannot reconcile the batch


def test_checksum_sha256_is_recorded_when_asked_and_an_unknown_one_is_a_usage_error(
    emu: Emulator, tmp_path: Path
) -> None:
    args = ["download", DATASET, "--out", str(tmp_path), "--json", "--checksum", "sha256"]
    code, stdout, _ = run(args, env_for(emu))
    assert code == 0
    newest = {p.name: p for p in emu.batches_for(DATASET)[0].parts}
    parts = [e for e in json_lines(stdout) if e["event"] == "part"]
    assert parts
    for event in parts:
        truth = newest[str(event["part"]).rpartition("/")[2]]
        assert event["digest"] == digest_of(truth.path.read_bytes(), Checksum.SHA256)
    code, _, stderr = run(["download", DATASET, "--out", str(tmp_path), "--checksum", "md5"], {})
    assert code == 2
    assert "md5" in stderr


def test_json_output_is_events_then_a_summary(emu: Emulator, tmp_path: Path) -> None:
    code, stdout, _ = run(["download", DATASET, "--out", str(tmp_path), "--json"], env_for(emu))
    assert code == 0
    events = json_lines(stdout)
    assert events[0]["event"] == "batch"
    parts = [e for e in events if e["event"] == "part"]
    newest = emu.batches_for(DATASET)[0]
    assert len(parts) == len(newest.parts)
    assert all(re.fullmatch(r"blake3:[0-9a-f]{64}", str(e["digest"])) for e in parts)
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["ok"] is True
    assert summary["bytes"] == newest.size
    assert emu.config.static_tokens[0] not in stdout


def test_quiet_non_tty_prints_only_the_summary(emu: Emulator, tmp_path: Path) -> None:
    code, stdout, stderr = run(["download", DATASET, "--out", str(tmp_path), "-q"], env_for(emu))
    assert code == 0
    assert stderr == ""
    assert stdout.strip().splitlines()[-1].endswith("MB/s")


def test_batches_table_and_json(emu: Emulator) -> None:
    code, stdout, _ = run(["batches", DATASET, "--json"], env_for(emu))
    assert code == 0
    rows = json_lines(stdout)
    truth = emu.batches_for(DATASET, status="success")
    successful = [r for r in rows if r["status"] == "success"]
    assert [r["batch_id"] for r in successful] == [b.id for b in truth]
    assert any(r["status"] == "failed" for r in rows)  # every status unless --status is given
    code, stdout, _ = run(["batches", DATASET, "--status", "success", "--limit", "2"], env_for(emu))
    assert code == 0
    assert truth[0].id in stdout
    assert truth[1].id in stdout
    assert truth[2].id not in stdout


def test_batches_since_filters_by_creation(emu: Emulator) -> None:
    import datetime as dt

    newest = emu.batches_for(DATASET)[0]
    day = dt.datetime.fromtimestamp(newest.created_ms / 1000, tz=dt.UTC).date().isoformat()
    code, stdout, _ = run(["batches", DATASET, "--since", day, "--json"], env_for(emu))
    assert code == 0
    ids = [r["batch_id"] for r in json_lines(stdout)]
    assert newest.id in ids
    assert emu.batches_for(DATASET)[-1].id not in ids
    code, _, stderr = run(["batches", DATASET, "--since", "yesterday"], env_for(emu))
    assert code == 2
    assert "--since" in stderr


def test_files_walks_pages_and_nested_directories(emu: Emulator) -> None:
    newest = emu.batches_for(DATASET)[0]
    code, stdout, _ = run(["files", newest.id, "--json"], env_for(emu))
    assert code == 0
    listed = {(r["name"], r["size"]) for r in json_lines(stdout)}
    assert listed == {(p.name, p.size) for p in newest.parts}
    code, stdout, _ = run(["files", newest.id], env_for(emu))
    assert code == 0
    assert f"{len(newest.parts)} parts" in stdout


def test_inspect_and_merge_a_download(emu: Emulator, tmp_path: Path) -> None:
    out_dir = tmp_path / "scores"
    code, _, _ = run(["download", DATASET, "--out", str(out_dir), "-q"], env_for(emu))
    assert code == 0
    newest = emu.batches_for(DATASET)[0]
    result = CliRunner().invoke(app, ["inspect", str(out_dir), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == newest.rows
    assert report["parts"] == len(newest.parts)
    assert sum(report["score_histogram"]["counts"]) == newest.rows
    assert report["score_column"] == report["score_histogram"]["column"] == "score"
    histogram = report["score_histogram"]
    assert histogram["edges"][0] == histogram["low"] <= report["score_summary"]["min"]
    assert histogram["edges"][-1] == histogram["high"] >= report["score_summary"]["max"]
    assert report["batch_ids"] == [newest.id]  # from the batch's manifest.json
    assert report["dataset_ids"] == [DATASET]
    png = tmp_path / "scores.png"
    result = CliRunner().invoke(app, ["inspect", str(out_dir), "--plot", str(png)])
    assert result.exit_code == 0, result.stderr
    assert "score distribution: score, 0-100 in 10 bins of 10" in result.stdout
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    merged = tmp_path / "all.parquet"
    result = CliRunner().invoke(app, ["merge", str(out_dir), "--to", str(merged)])
    assert result.exit_code == 0, result.stderr
    assert pq.read_metadata(merged).num_rows == newest.rows
    result = CliRunner().invoke(app, ["merge", str(out_dir), "--to", str(tmp_path / "x.txt")])
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr


def test_toml_profile_and_aepp_json_config(emu: Emulator, tmp_path: Path) -> None:
    toml = tmp_path / "config.toml"
    toml.write_text(
        f'base_url = "{emu.base_url}"\norg_id = "WRONG@AdobeOrg"\n'
        f'[profiles.emu]\norg_id = "{emu.config.org_id}"\napi_key = "{emu.config.api_key}"\n'
        f'access_token = "{emu.config.static_tokens[0]}"\n'
    )
    bare = dict.fromkeys(env_for(emu), "")
    args = ["--config", str(toml), "--profile", "emu", "download", DATASET]
    code, _, stderr = run([*args, "--out", str(tmp_path / "a"), "-q"], bare)
    assert code == 0, stderr
    # The environment beats the file; the flag beats both.
    code, stdout, _ = run(["--config", str(toml), "--profile", "emu", "config", "show"], bare)
    assert code == 0
    assert "WRONG" not in stdout
    assert emu.config.static_tokens[0] not in stdout
    assert f"file {toml}" in stdout
    code, stdout, _ = run(
        ["--config", str(toml), "--profile", "emu", "config", "show"],
        {**bare, "AEP_ORG_ID": "ENV@AdobeOrg"},
    )
    assert "ENV@AdobeOrg" in stdout
    assert "environment" in stdout
    code, _, stderr = run(["--config", str(toml), "--profile", "nope", "config", "show"], bare)
    assert code == 2
    assert "no profile 'nope'" in stderr

    aepp = tmp_path / "aepp.json"
    aepp.write_text(
        json.dumps(
            {
                "org_id": emu.config.org_id,
                "client_id": emu.config.client_id,
                "secret": emu.config.client_secret,
                "sandbox-name": "prod",
                "scopes": "openid",
            }
        )
    )
    env = {**bare, "AEP_BASE_URL": emu.base_url, "AEP_IMS_URL": emu.base_url}
    args = ["--config", str(aepp), "download", DATASET, "--out", str(tmp_path / "b"), "-q"]
    code, _, stderr = run(args, env)
    assert code == 0, stderr
    code, stdout, _ = run(["--config", str(aepp), "config", "show"], env)
    assert emu.config.client_secret not in stdout
    assert "AEP_CLIENT_SECRET" in stdout


def test_every_command_has_help_with_an_example() -> None:
    commands = ("download", "batches", "files", "inspect", "merge", "serve", "demo")
    for command in (*commands, "export-audience", "export-jobs", "dlz exports", "dlz download"):
        result = CliRunner().invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, command
        assert "Example: asyncdl" in result.stdout, command
    result = CliRunner().invoke(app, ["--help"])
    assert "130 interrupted" in result.stdout


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a non-interactive shell's `cmd &` does


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and preexec_fn")
@pytest.mark.parametrize(
    ("stop", "code"),
    [(signal.SIGTERM, 0), (signal.SIGINT, 130)],
    ids=["sigterm-with-sigint-ignored", "ctrl-c"],
)
def test_serve_stops_cleanly(tmp_path: Path, stop: signal.Signals, code: int) -> None:
    argv = [sys.executable, "-m", "asyncdl", "serve", "--port", "0", "--parts", "1", "--rows", "5"]
    proc = subprocess.Popen(
        [*argv, "--cache-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if stop == signal.SIGTERM else None,
    )
    try:
        assert proc.stdout is not None
        assert "listening on http://127.0.0.1:" in proc.stdout.readline()
        proc.send_signal(stop)
        _, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert "emulator stopped" in stderr
    assert "Traceback" not in stderr
