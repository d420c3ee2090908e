"""The library surface: what the README documents is what ``asyncdl`` exports, and it runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import asyncdl
from asyncdl.emulator import Emulator
from tests.helpers import EmulatorFactory, env_for, threaded_emulator

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_public_names_are_sorted_and_documented() -> None:
    assert asyncdl.__all__ == sorted(asyncdl.__all__)
    section = readme_section("Library API")
    listed = section[section.index("Public names") :]
    documented = set(re.findall(r"`(\w+)`", listed[: listed.index("returns")]))
    assert documented == set(asyncdl.__all__)
    for name in asyncdl.__all__:
        assert hasattr(asyncdl, name), name


@pytest.fixture
def emu(emulator_config: EmulatorFactory) -> Iterator[Emulator]:
    with threaded_emulator(emulator_config()) as running:
        yield running


def test_readme_example_runs(
    emu: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    section = readme_section("Library API")
    code = section[section.index("```python") + len("```python") : section.index("```\n\nPublic")]
    for name, value in env_for(emu).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    newest = emu.batches_for("5cd9146b31dae914b75f654f")[0]
    assert f"{len(newest.parts)} parts, {newest.size} bytes, ok=True" in printed
    assert newest.id in printed
    for part in newest.parts:
        assert (tmp_path / "scores" / newest.id / part.name).read_bytes() == part.path.read_bytes()
