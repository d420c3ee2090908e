"""The emulated AEP endpoint's lifecycle and public test surface: ``Emulator`` generates its
world at ``start()``, binds an aiohttp.web app (app.py) on 127.0.0.1 and serves it until
``stop()``; tests read its ground truth and recorded requests and change its faults and
variants while it runs. ``running_emulator`` and ``serve`` wrap that for tests and processes.

What each request meets lives elsewhere: the wrapper and its records (recording.py), the
gateway's checks (gateway.py), IMS (ims.py), Catalog (catalog.py), Data Access (access.py),
export jobs (jobs.py). Nothing here prints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from aiohttp import web

from asyncdl.emulator.app import build_app
from asyncdl.emulator.config import EmulatorConfig, Faults, Variants
from asyncdl.emulator.data import TruthBatch, TruthPart, build_world
from asyncdl.emulator.recording import RecordedRequest, Recorder
from asyncdl.emulator.state import State
from asyncdl.emulator.variants import ServedBatch

__all__ = ["Emulator", "RecordedRequest", "running_emulator", "serve"]


class Emulator:
    """The emulated API: generates its world at ``start()`` and serves it until ``stop()``.

    ``faults`` and ``variants`` can be replaced while it runs; the bytes never change.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self._state = State(config)
        self._recorder = Recorder(self._state)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # -- configuration ----------------------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        return self._state.config

    @property
    def faults(self) -> Faults:
        return self._state.config.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._state.set_faults(faults)

    @property
    def variants(self) -> Variants:
        return self._state.config.variants

    @variants.setter
    def variants(self, variants: Variants) -> None:
        self._state.set_variants(variants)

    def revoke_tokens(self) -> None:
        """Invalidate every IMS-issued token now (static tokens stay valid)."""
        self._state.tokens.revoke()

    # -- ground truth -----------------------------------------------------------------------

    @property
    def truth(self) -> tuple[TruthBatch, ...]:
        return self._state.world.batches

    @property
    def export_batches(self) -> tuple[TruthBatch, ...]:
        """Batches written by succeeded export jobs so far (not in ``truth``), oldest first."""
        return self._state.jobs.batches

    def batches_for(self, dataset_id: str, *, status: str = "success") -> list[TruthBatch]:
        """The dataset's batches with ``status``, newest first."""
        chosen = [b for b in self.truth if b.dataset_id == dataset_id and b.status == status]
        return sorted(chosen, key=lambda b: b.created_ms, reverse=True)

    def expected_files(self, batch_id: str) -> dict[str, TruthPart]:
        """Where a correct client puts each part the batch's served view offers: the path below
        ``OUT/<batch id>/`` → the part. That is the listed name (``scoreDate=.../part-...``
        under ``commit_markers``), or the Content-Disposition filename of a single-file
        dataSetFile. Part names are unique within a batch, so no rule for duplicate names is
        needed. Markers are not parts and are not here; a failed batch has none.
        """
        return dict(self._served(batch_id).expected)

    def served_file_ids(self, batch_id: str) -> list[str]:
        """The dataSetFileIds the batch-files listing shows for the batch, in order."""
        return list(self._served(batch_id).file_ids)

    def _served(self, batch_id: str) -> ServedBatch:
        served = self._state.view.batch(batch_id)
        if served is None:
            raise KeyError(f"no batch {batch_id}")
        return served

    # -- recorded requests ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered so far, oldest first (``record_limit`` keeps the newest)."""
        return self._recorder.requests

    @requests.setter
    def requests(self, requests: list[RecordedRequest]) -> None:
        self._recorder.requests = requests

    def downloads(self, name: str | None = None) -> list[RecordedRequest]:
        """Recorded GET downloads, optionally only those of ``name``: a listed name asked for
        with ``?path=``, or the generated part's name (also for single-file dataSetFiles)."""
        return [
            r
            for r in self.requests
            if r.kind == "download"
            and (name is None or r.query.get("path") == name or r.part == name)
        ]

    @property
    def in_flight(self) -> int:
        """Requests being answered now (not yet in ``requests``)."""
        return self._recorder.in_flight

    async def wait_idle(self) -> None:
        """Wait until every request received so far is answered and recorded.

        A client can finish reading an answer before the server has recorded it (the last
        bytes leave before the handler resumes), so call this before asserting on ``requests``.
        """
        await self._recorder.wait_idle()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the emulator is not started")
        return self._base_url

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Generate (or load) the part cache off the event loop, then bind and serve."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already started")
        state = self._state
        if not state.loaded:
            state.load(await anyio.to_thread.run_sync(build_world, state.config))
        # No handler_cancellation: cancelling a FileResponse mid-open leaks its file object.
        # Paced streams notice a hang-up themselves (download._pace).
        runner = web.AppRunner(
            build_app(state, self._recorder),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._runner = runner
        self._base_url = f"http://{shown}:{bound_port}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Emulator]:
    """An emulator serving for the duration of the block."""
    emulator = Emulator(config)
    await emulator.start(host=host, port=port)
    try:
        yield emulator
    finally:
        with anyio.CancelScope(shield=True):
            await emulator.stop()


async def serve(
    config: EmulatorConfig, *, host: str, port: int, on_ready: Callable[[Emulator], None]
) -> None:
    """Serve until cancelled; ``on_ready`` sees the started emulator (its base_url) first."""
    async with running_emulator(config, host=host, port=port) as emulator:
        on_ready(emulator)
        await anyio.sleep_forever()
