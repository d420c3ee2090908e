"""What several test modules share: the emulator's credentials and settings, where a part
lands, a threaded emulator for code with its own loop, a scripted API, a recording listener, the
CLI through typer's runner, and the one byte-for-byte check of a batch against the truth."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio.from_thread
from aiohttp import web
from typer.testing import CliRunner

from asyncdl.checksum import Checksum
from asyncdl.cli import app
from asyncdl.config import Credentials, DownloadSettings
from asyncdl.emulator import Emulator, EmulatorConfig, TruthBatch, TruthPart, running_emulator
from asyncdl.errors import AsyncdlError
from asyncdl.layout import temp_of
from asyncdl.models import Batch, Part, PartResult
from asyncdl.storage.local import LocalPartFile

#: The emulator's default Customer AI dataset.
DATASET = "5cd9146b31dae914b75f654f"
EMPTY_DATASET = "5cd9146b31dae914b75f0000"

EmulatorFactory = Callable[..., EmulatorConfig]


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


def digest_of(data: bytes, checksum: Checksum = Checksum.BLAKE3) -> str:
    """The digest a run records for ``data`` (tagged, as checksum.py keeps it)."""
    hasher = checksum.new()
    hasher.update(data)
    return checksum.tag(hasher.hexdigest())


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


def assert_identical(batch: TruthBatch, out_dir: Path) -> int:
    """Every truth part is on disk under its name, byte for byte; returns how many."""
    count = 0
    for truth_file in batch.files:
        for part in truth_file.parts:
            local = out_dir / batch.id / part.name
            assert local.read_bytes() == part.path.read_bytes(), part.name
            count += 1
    assert not list((out_dir / batch.id).glob("**/*.part"))
    assert not (out_dir / batch.id / "_SUCCESS").exists()
    return count


class RecordingListener:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.bytes: defaultdict[str, int] = defaultdict(int)
        self.negative = 0
        self.retries = 0
        self.done: list[PartResult] = []
        self.request_retries: list[str] = []

    def on_batch(self, batch: Batch) -> None:
        self.events.append("batch")

    def on_queued(self, part: Part) -> None:
        self.events.append("queued")

    def on_bytes(self, part: Part, n: int) -> None:
        self.bytes[part.relpath] += n
        self.negative += n < 0

    def on_retry(self, part: Part, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        self.retries += 1

    def on_done(self, result: PartResult) -> None:
        self.events.append("done")
        self.done.append(result)

    def on_request_retry(self, url: str, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        self.request_retries.append(url)


def env_for(emu: Emulator, **overrides: str) -> dict[str, str]:
    env = {
        "AEP_BASE_URL": emu.base_url,
        "AEP_ACCESS_TOKEN": emu.config.static_tokens[0],
        "AEP_API_KEY": emu.config.api_key,
        "AEP_ORG_ID": emu.config.org_id,
        "AEP_SANDBOX": "prod",
        "AEP_CLIENT_ID": "",
        "AEP_CLIENT_SECRET": "",
    }
    env.update(overrides)
    return env


def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr
