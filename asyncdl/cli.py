"""The ``asyncdl`` command: parse, build config, run, render. The only module that prints.

Exit codes: 0 every part arrived and reconciled; 1 some parts failed, a mismatch, or the run
could not complete (network, listing, disk); 2 bad usage; 3 authentication refused;
130 interrupted (Ctrl-C; ``.part`` files are kept for the next run to resume).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import anyio
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from . import __version__
from .config import DEFAULT_BASE_URL, BatchSelection, Credentials, DownloadSettings
from .errors import AsyncdlError, AuthError, ConfigError
from .models import Batch, Part, PartResult, PartStatus
from .pipeline import DownloadResult, download

__all__ = ["app", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="asyncdl",
    help="Fast, complete, verified downloads of Adobe Experience Platform dataset exports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")


def _version(value: bool) -> None:
    if value:
        out.print(f"asyncdl {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Fast, complete, verified downloads of Adobe Experience Platform dataset exports."""


def fail(message: str, code: int) -> NoReturn:
    err.print(f"asyncdl: error: {message}", markup=False)
    raise typer.Exit(code)


def _exit_code_for(error: AsyncdlError) -> int:
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    if isinstance(error, AuthError):
        return EXIT_AUTH
    return EXIT_FAILED


def _describe(error: AsyncdlError) -> str:
    if isinstance(error, AuthError):
        hint = " (check AEP_ACCESS_TOKEN / AEP_CLIENT_ID, AEP_API_KEY, AEP_ORG_ID, AEP_SANDBOX)"
        return f"authentication refused: {error}{hint}"
    return str(error)


def run_async(func: Callable[[], Awaitable[T]], *, on_interrupt: Callable[[], None]) -> T:
    """Run ``func`` on an event loop; map our errors and Ctrl-C to a line and an exit code."""
    try:
        return anyio.run(func)
    except KeyboardInterrupt:
        on_interrupt()
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except AsyncdlError as error:
        fail(_describe(error), _exit_code_for(error))


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


class TerminalProgress:
    """The CLI's progress listener: a rich bar on a TTY, silence otherwise; keeps the record."""

    def __init__(self, console: Console, *, enabled: bool) -> None:
        self.finished: list[PartResult] = []
        self.retries = 0
        self._queued = 0
        self._bytes_total = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._task = self._progress.add_task("listing", total=None)

    def __enter__(self) -> TerminalProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _describe(self) -> str:
        done = len(self.finished)
        text = f"{done}/{self._queued} parts"
        if self.retries:
            text += f", {self.retries} retries"
        return text

    def _update(self, **kwargs: Any) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=self._describe(), **kwargs)

    def on_batch(self, batch: Batch) -> None:
        self._update()

    def on_queued(self, part: Part) -> None:
        self._queued += 1
        self._bytes_total += part.size
        self._update(total=self._bytes_total)

    def on_bytes(self, part: Part, n: int) -> None:
        self._update(advance=n)

    def on_retry(self, part: Part, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        self.retries += 1
        self._update()

    def on_done(self, result: PartResult) -> None:
        self.finished.append(result)
        if result.status is PartStatus.SKIPPED:
            self._update(advance=result.part.size)
        else:
            self._update()


def render_result(result: DownloadResult) -> None:
    """The run's summary: per batch, failures, and the final line."""
    for report in result.batches:
        rec = report.reconciliation
        line = f"batch {report.batch.id}: {len(report.results)} parts in {report.directory}"
        if rec is not None:
            rows = f", {rec.actual_rows:,} rows" if rec.actual_rows is not None else ""
            line += f", {_mb(rec.actual_bytes)}{rows}"
            if rec.ok:
                line += ", matches the Catalog's metrics"
        out.print(line, markup=False)
        if rec is not None and not rec.ok:
            err.print(
                f"asyncdl: error: batch {report.batch.id} does not match the Catalog: "
                f"bytes {rec.actual_bytes} vs outputByteSize {rec.expected_bytes}, "
                f"rows {rec.actual_rows} vs outputRecordCount {rec.expected_rows}, "
                f"files {rec.actual_files} vs outputFileCount {rec.expected_files}",
                markup=False,
            )
        for failed in report.failed:
            err.print(f"  failed {failed.part.relpath}: {failed.error}", markup=False)
        for rejected in report.rejected:
            err.print(f"  rejected {rejected.name!r}: {rejected.reason}", markup=False)
    seconds = max(result.elapsed_s, 1e-9)
    rate = result.fetched_bytes / seconds / 1e6
    parts = len(result.results)
    extra = []
    if result.skipped:
        extra.append(f"{result.skipped} already on disk")
    if result.failed:
        extra.append(f"{len(result.failed)} failed")
    if result.rejected:
        extra.append(f"{len(result.rejected)} rejected")
    if result.markers:
        extra.append(f"{result.markers} _SUCCESS markers skipped")
    if parts and result.skipped == parts:
        extra.append("nothing to fetch")
    detail = f" ({', '.join(extra)})" if extra else ""
    out.print(
        f"{parts} parts{detail}, {_mb(result.fetched_bytes)} fetched in {seconds:.1f} s, "
        f"{rate:.1f} MB/s",
        markup=False,
    )


def _interrupted(listener: TerminalProgress) -> Callable[[], None]:
    def report() -> None:
        done = [r for r in listener.finished if r.ok]
        err.print(
            f"asyncdl: interrupted: {len(done)} parts finished; unfinished parts are kept as "
            ".part files and resume on the next run",
            markup=False,
        )

    return report


def _run_download(
    dataset_id: str | None,
    *,
    credentials: Credentials,
    settings: DownloadSettings,
    selection: BatchSelection,
    show_progress: bool,
) -> DownloadResult:
    listener = TerminalProgress(err, enabled=show_progress)

    async def job() -> DownloadResult:
        with listener:
            return await download(
                dataset_id,
                credentials=credentials,
                settings=settings,
                selection=selection,
                listener=listener,
            )

    return run_async(job, on_interrupt=_interrupted(listener))


def _finish(result: DownloadResult) -> NoReturn:
    render_result(result)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def _settings(**kwargs: Any) -> DownloadSettings:
    try:
        return DownloadSettings(**kwargs)
    except AsyncdlError as error:
        fail(_describe(error), _exit_code_for(error))


@app.command("download")
def download_command(
    dataset_id: Annotated[
        str | None,
        typer.Argument(help="The dataset to download (Customer AI: 'Access scores' dialog)."),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Directory to write OUT/<batch id>/<part>.")
    ] = Path("scores"),
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-j", help="Parts downloaded at once.")
    ] = 8,
    latest: Annotated[
        int, typer.Option("--latest", help="How many of the newest successful batches.")
    ] = 1,
    batch: Annotated[
        list[str] | None,
        typer.Option("--batch", help="A batch id to download (repeatable); skips the Catalog."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help=f"API base URL [env AEP_BASE_URL; {DEFAULT_BASE_URL}]"),
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", help="Attempts per part and per listing page.")
    ] = 8,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds one part may take, retries included.")
    ] = 1800.0,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Also follow hrefs to this host (repeatable); it never receives credentials.",
        ),
    ] = None,
    ca_bundle: Annotated[
        Path | None, typer.Option("--ca-bundle", help="Extra CA certificates (PEM) to trust.")
    ] = None,
) -> None:
    """Download a dataset's newest successful batch (or --latest N, or --batch ID ...).

    Credentials come from AEP_ACCESS_TOKEN (or AEP_CLIENT_ID + AEP_CLIENT_SECRET), AEP_API_KEY,
    AEP_ORG_ID and AEP_SANDBOX (default prod).

    Example: asyncdl download 5cd9146b31dae914b75f654f --out ./scores -j 16
    """
    if dataset_id is None and not batch:
        fail("give a DATASET_ID or at least one --batch ID", EXIT_USAGE)
    if batch and latest != 1:
        fail("--latest and --batch are exclusive", EXIT_USAGE)
    settings = _settings(
        base_url=base_url or os.environ.get("AEP_BASE_URL") or DEFAULT_BASE_URL,
        out_dir=out_dir,
        concurrency=concurrency,
        max_attempts=retries,
        part_timeout_s=timeout,
        allowed_hosts=frozenset(allow_host or ()),
        ca_bundle=ca_bundle,
    )
    try:
        credentials = Credentials.from_env()
        selection = BatchSelection(latest=latest, batch_ids=tuple(batch or ()))
    except ConfigError as error:
        fail(str(error), EXIT_USAGE)
    result = _run_download(
        dataset_id,
        credentials=credentials,
        settings=settings,
        selection=selection,
        show_progress=err.is_terminal,
    )
    _finish(result)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # `asyncdl ... | head` must not end in a traceback
        sys.stderr.close()
        raise SystemExit(EXIT_FAILED) from None
