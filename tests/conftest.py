"""Shared fixtures: the emulator in-process on 127.0.0.1 port 0, and credentials it accepts."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
from aiohttp import web

from asyncdl.config import KNOWN_VARIABLES, Credentials, DownloadSettings
from asyncdl.emulator import DatasetSpec, Emulator, EmulatorConfig, TruthPart, running_emulator
from asyncdl.layout import temp_of
from asyncdl.models import Part
from asyncdl.storage.local import LocalPartFile

EmulatorFactory = Callable[..., EmulatorConfig]


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


def credentials_for(emu: Emulator) -> Credentials:
    config = emu.config
    return Credentials(
        api_key=config.api_key, org_id=config.org_id, access_token=config.static_tokens[0]
    )


def settings_for(emu: Emulator, out_dir: Path, **overrides: Any) -> DownloadSettings:
    fields: dict[str, Any] = {"base_url": emu.base_url, "out_dir": out_dir, "concurrency": 4}
    fields.update(overrides)
    return DownloadSettings(**fields)


def first_part_paths(emu: Emulator, dataset_id: str, out_dir: Path) -> tuple[TruthPart, Path, Path]:
    """The newest batch's first part: its truth, and where it lands (final, .part) below out_dir."""
    newest = emu.batches_for(dataset_id)[0]
    truth = newest.files[0].parts[0]
    part = Part(
        batch_id=newest.id,
        dataset_file_id=newest.files[0].dataset_file_id,
        name=truth.name,
        relpath=truth.name,
        size=truth.size,
        href="",
    )
    final, temp = out_dir / newest.id / part.relpath, out_dir / newest.id / temp_of(part.relpath)
    temp.parent.mkdir(parents=True, exist_ok=True)
    return truth, final, temp


def local_part(temp: Path) -> LocalPartFile:
    """The storage seam's file whose ``.part`` is ``temp`` (its record sits beside it)."""
    return LocalPartFile(temp.parent, temp.name.removesuffix(".part"))


@contextmanager
def threaded_emulator(config: EmulatorConfig) -> Iterator[Emulator]:
    """The emulator on its own event loop in a thread, for code that runs its own loop (the CLI)."""
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(running_emulator(config)) as emu,
    ):
        yield emu


async def until(condition: Callable[[], bool], *, timeout_s: float = 10.0) -> None:
    """Wait on the event loop until ``condition()`` holds; fail after ``timeout_s``."""
    with anyio.fail_after(timeout_s):
        while not condition():
            await anyio.sleep(0.001)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def scripted_api(routes: Mapping[str, Handler]) -> AsyncIterator[str]:
    """A tiny API on 127.0.0.1 (port 0) answering each path with its handler: for the shapes
    the emulator does not serve (loops, odd headers). Yields the base URL."""

    async def dispatch(request: web.Request) -> web.StreamResponse:
        handler = routes.get(request.path)
        if handler is None:
            return web.json_response({"title": "Not Found"}, status=404)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def static_credentials() -> Credentials:
    return Credentials(
        api_key="scripted-key", org_id="scripted@AdobeOrg", access_token="scripted-t"
    )
