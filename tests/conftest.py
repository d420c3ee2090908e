"""Shared fixtures: hermetic settings and logging, the emulator's configuration on one session
part cache, and the object stores some folders need (moto's S3, Azurite: one per module that
asks, started from tests/cloud.py). Helpers that are not fixtures live in tests/helpers.py."""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncdl.config import KNOWN_VARIABLES
from asyncdl.emulator import DatasetSpec, EmulatorConfig
from tests.cloud import Azurite, MotoS3, azurite, moto_s3
from tests.helpers import EmulatorFactory

# A job started in the background by a non-interactive shell (`make test &`, some CI runners)
# ignores SIGINT, and every process it starts inherits that: the Ctrl-C tests' signal would go
# nowhere. A handled signal is reset to the default in a child, an ignored one is not.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def hermetic_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A developer's own AEP_* variables or config file must not leak into any test."""
    for name in KNOWN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``asyncdl -v`` configures the process's logging; in one test process that must not
    outlive the test (its handler writes to CliRunner's stream, closed afterwards)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def part_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated parquet parts are shared by the whole session (generation is the slow part)."""
    return tmp_path_factory.mktemp("emulator-cache")


@pytest.fixture
def emulator_config(part_cache: Path) -> EmulatorFactory:
    """Build an EmulatorConfig on the session cache; keyword overrides go to the config,
    ``dataset=`` overrides go to the default dataset."""

    def build(*, dataset: dict[str, Any] | None = None, **overrides: Any) -> EmulatorConfig:
        spec = dataclasses.replace(DatasetSpec(), **(dataset or {}))
        # Pages of 3 even when the client asks for 100: every test walks real pagination.
        fields: dict[str, Any] = {
            "cache_dir": part_cache,
            "datasets": (spec,),
            "page_size": 3,
            "max_page_size": 3,
        }
        fields.update(overrides)
        return EmulatorConfig(**fields)

    return build


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="module")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with azurite(tmp_path_factory.mktemp("azurite") / "azurite.log") as server:
        yield server
