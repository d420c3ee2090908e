"""The command line through typer's CliRunner: the happy path and every bad input, no traceback."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asyncdl.cli import app, parse_size
from asyncdl.emulator import Emulator
from tests.helpers import DATASET, EMPTY_DATASET, EmulatorFactory, env_for, threaded_emulator
from tests.helpers import run_cli as run


@pytest.fixture
def emu(emulator_config: EmulatorFactory) -> Iterator[Emulator]:
    with threaded_emulator(emulator_config()) as running:
        yield running


def test_download_newest_batch(emu: Emulator, tmp_path: Path) -> None:
    code, stdout, stderr = run(["download", DATASET, "--out", str(tmp_path)], env_for(emu))
    assert code == 0, stderr
    newest = emu.batches_for(DATASET)[0]
    for truth_file in newest.files:
        for part in truth_file.parts:
            assert (tmp_path / newest.id / part.name).read_bytes() == part.path.read_bytes()
    assert "matches the Catalog's metrics" in stdout
    assert "_SUCCESS markers skipped" in stdout
    assert "MB/s" in stdout.splitlines()[-1]


def test_no_fsync_reaches_the_download(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, _, stderr = run(
        ["download", DATASET, "--out", str(tmp_path / "a"), "--no-fsync"], env_for(emu)
    )
    assert code == 0, stderr
    assert synced == []
    code, _, stderr = run(["download", DATASET, "--out", str(tmp_path / "b")], env_for(emu))
    assert code == 0, stderr
    assert len(synced) >= len(emu.batches_for(DATASET)[0].files[0].parts)


def test_names_are_printed_as_they_are(emu: Emulator, tmp_path: Path) -> None:
    out_dir = tmp_path / "scores:tada:[bold]"  # rich would make an emoji (and markup) of these
    code, stdout, stderr = run(["download", DATASET, "--out", str(out_dir)], env_for(emu))
    assert code == 0, stderr
    assert f"parts in {out_dir}" in stdout.replace("\n", "")


@pytest.mark.parametrize("value", ["0", "-2"])
def test_concurrency_must_be_positive(emu: Emulator, tmp_path: Path, value: str) -> None:
    code, _, stderr = run(["download", DATASET, "-j", value, "--out", str(tmp_path)], env_for(emu))
    assert code == 2
    assert "concurrency must be at least 1" in stderr
    assert "Traceback" not in stderr


def test_missing_credentials_are_named(emu: Emulator, tmp_path: Path) -> None:
    env = env_for(emu, AEP_ACCESS_TOKEN="", AEP_API_KEY="", AEP_ORG_ID="")
    code, _, stderr = run(["download", DATASET, "--out", str(tmp_path)], env)
    assert code == 2
    for name in ("AEP_ACCESS_TOKEN", "AEP_API_KEY", "AEP_ORG_ID"):
        assert name in stderr


def test_invalid_token_shows_aep_reason_not_the_token(emu: Emulator, tmp_path: Path) -> None:
    secret = "not-a-valid-token-123456"
    env = env_for(emu, AEP_ACCESS_TOKEN=secret)
    code, stdout, stderr = run(["download", DATASET, "--out", str(tmp_path)], env)
    assert code == 3
    assert "401013" in stderr
    assert "Oauth token is not valid" in stderr
    assert "cannot be refreshed" in stderr
    assert secret not in stderr + stdout


def test_invalid_api_key_is_a_403(emu: Emulator, tmp_path: Path) -> None:
    code, _, stderr = run(
        ["download", DATASET, "--out", str(tmp_path)], env_for(emu, AEP_API_KEY="wrong")
    )
    assert code == 3
    assert "403003" in stderr


def test_unknown_dataset(emu: Emulator, tmp_path: Path) -> None:
    code, _, stderr = run(["download", "nope", "--out", str(tmp_path)], env_for(emu))
    assert code == 1
    assert "dataset nope not found" in stderr


def test_dataset_without_successful_batch(emu: Emulator, tmp_path: Path) -> None:
    code, _, stderr = run(["download", EMPTY_DATASET, "--out", str(tmp_path)], env_for(emu))
    assert code == 1
    assert "no successful batch" in stderr


def test_unreachable_base_url(emu: Emulator, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["download", DATASET, "--out", str(tmp_path), "--retries", "1"]
    code, _, stderr = run([*args, "--base-url", f"http://127.0.0.1:{port}"], env_for(emu))
    assert code == 1
    assert "cannot connect" in stderr
    assert "Traceback" not in stderr


def test_unwritable_out_dir(emu: Emulator, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, stderr = run(["download", DATASET, "--out", str(blocker / "sub")], env_for(emu))
    assert code == 1
    assert "cannot write" in stderr


def test_dataset_or_batch_is_required(emu: Emulator) -> None:
    code, _, stderr = run(["download"], env_for(emu))
    assert code == 2
    assert "DATASET_ID" in stderr


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("asyncdl ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("16M", 16_000_000), ("512Ki", 524_288), ("1000", 1000), ("20MB/s", 20_000_000)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_failed_parts_are_listed_with_reasons(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    from asyncdl.emulator import Faults

    config = emulator_config(faults=Faults(drop_rate=1.0, max_faults_per_path=10))
    with threaded_emulator(config) as emu:
        args = ["download", DATASET, "--out", str(tmp_path), "--retries", "1", "-q"]
        code, _, stderr = run(args, env_for(emu))
        newest = emu.batches_for(DATASET)[0]
    assert code == 1
    for part in newest.parts:
        assert f"failed {part.name}: StreamInterruptedError" in stderr
    assert "Traceback" not in stderr


def test_catalog_mismatch_is_an_error_with_the_numbers(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    from asyncdl.emulator import Faults

    with threaded_emulator(emulator_config(faults=Faults(wrong_metrics=True))) as emu:
        code, _, stderr = run(["download", DATASET, "--out", str(tmp_path), "-q"], env_for(emu))
        newest = emu.batches_for(DATASET)[0]
    assert code == 1
    assert "does not match the Catalog" in stderr
    assert f"rows {newest.rows} vs outputRecordCount {newest.rows + 1}" in stderr
    assert f"bytes {newest.size} vs outputByteSize {newest.size + 1}" in stderr


def test_verbose_logs_never_show_the_token(
    emulator_config: EmulatorFactory, tmp_path: Path
) -> None:
    from asyncdl.emulator import Faults

    config = emulator_config(faults=Faults(drop_rate=0.5, seed=1))
    with threaded_emulator(config) as emu:
        args = ["-vv", "download", DATASET, "--out", str(tmp_path), "-q"]
        code, stdout, stderr = run(args, env_for(emu))
        token = emu.config.static_tokens[0]
    assert code == 0, stderr
    assert "DEBUG" in stderr
    assert "retrying in" in stderr
    assert token not in stderr + stdout


def test_an_unexpected_error_is_one_line_not_a_traceback(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncdl.cli.download as download_module

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(download_module, "download", broken)
    code, _, stderr = run(["download", DATASET, "--out", str(tmp_path)], env_for(emu))
    assert code == 1
    assert "unexpected error RuntimeError: boom" in stderr
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_a_download_imports_only_what_it_uses(emu: Emulator, tmp_path: Path) -> None:
    """A real ``asyncdl download`` in a fresh interpreter loads no pydantic, pyarrow or emulator.

    Start-up and exit are part of every run's time (issue 4): typer 0.29 brings pydantic (60-80
    ms per start, hence the pin in pyproject.toml), pyarrow is for ``inspect`` and ``merge``
    only, the emulator is for ``serve`` and ``demo``, tomllib for a config file, obstore (and the
    landing zone's modules) for an object store or the landing zone; and the objects
    still alive are frozen before the shutdown's garbage collections (25-30 ms).
    """
    script = (
        "import sys\n"
        "from asyncdl.cli import main\n"
        f"sys.argv = ['asyncdl', 'download', {DATASET!r}, '--out', {str(tmp_path)!r}, '-q']\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    roots = {'pydantic', 'pyarrow', 'asyncdl.emulator', 'aiohttp.web', 'tomllib',\n"
        "             'obstore', 'asyncdl.dlz.run'}\n"
        "    loaded = sorted(m for m in sys.modules if any(\n"
        "        m == r or m.startswith(r + '.') for r in roots))\n"
        "    print('LOADED', loaded, file=sys.stderr)\n"
        "    import gc\n"
        "    print('FROZEN', gc.get_freeze_count(), file=sys.stderr)\n"
        "    import ssl, aiohttp.connector\n"
        "    print('AIOHTTP_CAS', aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()"
        "['x509_ca'], file=sys.stderr)\n"
        "    print('PATCHED', sorted(set(vars(ssl.SSLContext)) & {'load_default_certs',"
        " 'set_default_verify_paths'}), ssl.SSLContext.load_default_certs.__module__,"
        " file=sys.stderr)\n"
        "    print('DEFAULT_CAS', ssl.create_default_context().cert_store_stats()['x509_ca'],"
        " file=sys.stderr)\n"
    )
    # No config file (tomllib is imported only to read one).
    env = {**os.environ, **env_for(emu), "XDG_CONFIG_HOME": str(tmp_path / "no-config")}
    done = subprocess.run(  # -I: no PYTHONPATH, PYTHONWARNINGS or user site from this machine
        [sys.executable, "-I", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / emu.batches_for(DATASET)[0].id).is_dir()  # it did download
    assert "LOADED []" in done.stderr, done.stderr
    frozen = int(done.stderr.split("FROZEN ")[1].split()[0])
    assert frozen > 10_000  # the imports alone make ~40,000
    # aiohttp's import-time SSL contexts loaded no CA store (15-20 ms each), and ssl is as it
    # was: a default context still gets the system's CAs.
    assert "AIOHTTP_CAS 0" in done.stderr, done.stderr
    assert "PATCHED ['load_default_certs'] ssl" in done.stderr, done.stderr
    system_cas = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert f"DEFAULT_CAS {system_cas}" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("args", "hoisted"),
    [
        (["download", "DS", "--config", "c.json"], ["--config", "c.json", "download", "DS"]),
        (
            ["download", "DS", "--config=c.json", "-j", "4"],
            ["--config=c.json", "download", "DS", "-j", "4"],
        ),
        (
            ["config", "show", "--profile", "dev", "-vv"],
            ["--profile", "dev", "-vv", "config", "show"],
        ),
        (["-v", "download", "DS", "--verbose"], ["-v", "--verbose", "download", "DS"]),
        (["--config", "a.toml", "download", "DS"], ["--config", "a.toml", "download", "DS"]),
        (["download", "DS", "--", "--config", "x"], ["download", "DS", "--", "--config", "x"]),
        (["download", "DS", "-vx"], ["download", "DS", "-vx"]),  # not a -v flag
    ],
)
def test_global_options_are_hoisted_in_front_of_the_command(
    args: list[str], hoisted: list[str]
) -> None:
    from asyncdl.cli.app import hoist_global_options

    assert hoist_global_options(args) == hoisted


def test_global_options_work_after_the_command(tmp_path: Path) -> None:
    config = tmp_path / "aepp.json"
    config.write_text('{"org_id": "FROM-FILE@AdobeOrg", "client_id": "c", "secret": "s"}')
    code, stdout, stderr = run(["config", "show", "--config", str(config)], {})
    assert code == 0, stderr
    assert "AEP_ORG_ID=FROM-FILE@AdobeOrg" in stdout
    toml = tmp_path / "asyncdl.toml"
    toml.write_text('org_id = "ROOT@AdobeOrg"\n[profiles.dev]\nsandbox = "dev"\n')
    code, stdout, stderr = run(["config", "show", "--config", str(toml), "--profile", "dev"], {})
    assert code == 0, stderr
    assert "AEP_SANDBOX=dev" in stdout


def test_an_object_store_url_is_a_usage_error_not_a_local_folder(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run(["download", DATASET, "--out", "ftp://bucket/scores"], env_for(emu))
    assert code == 2
    assert "ftp:// destinations are not supported" in stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []
    assert not [r for r in emu.requests if r.kind == "download"]


@pytest.mark.parametrize("command", ["download", "export-audience", "demo"])
def test_every_downloading_command_takes_the_download_options(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--concurrency", "--retries", "--timeout", "--segment-size", "--no-fsync"):
        assert option in result.stdout, (command, option)
    if command != "demo":  # the emulator needs no CA and no foreign host
        for option in ("--ca-bundle", "--allow-host", "--base-url"):
            assert option in result.stdout, (command, option)


def test_only_what_the_user_set_reaches_the_settings() -> None:
    from asyncdl.cli.options import DownloadFlags
    from asyncdl.config import DownloadSettings, Setting

    assert DownloadFlags().settings({}) == DownloadSettings()
    env = {"AEP_BASE_URL": Setting(value="http://127.0.0.1:1", source="environment")}
    chosen = DownloadFlags(concurrency=3, segment_size="2Mi", fsync=False).settings(env)
    assert chosen == DownloadSettings(
        base_url="http://127.0.0.1:1", concurrency=3, segment_bytes=2 << 20, fsync=False
    )


@pytest.mark.parametrize(
    "callback",
    [
        "download.download_command",
        "sync.sync_command",
        "audience.export_audience_command",
        "dlz.download_command",
    ],
)
def test_a_downloading_command_names_each_download_option_as_the_flags_do(callback: str) -> None:
    """``DownloadFlags.of(locals())`` reads the options by name: a renamed parameter would be
    silently unset, so every command's parameters must carry every field's name."""
    import dataclasses
    import importlib
    import inspect

    from asyncdl.cli.options import DownloadFlags

    module, _, name = callback.partition(".")
    function = getattr(importlib.import_module(f"asyncdl.cli.{module}"), name)
    parameters = set(inspect.signature(function).parameters)
    wanted = {f.name for f in dataclasses.fields(DownloadFlags)} - {"out"} | {"out_dir"}
    assert wanted <= parameters, wanted - parameters
