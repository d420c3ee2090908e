"""The ``asyncdl`` command: parse, build config, run, render. The only module that prints.

Exit codes: 0 every part arrived and reconciled; 1 some parts failed, a mismatch, or the run
could not complete (network, listing, disk); 2 bad usage; 3 authentication refused;
130 interrupted (Ctrl-C; ``.part`` files are kept for the next run to resume).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import anyio
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from . import __version__
from .audience import (
    ExportJob,
    ExportJobError,
    ExportRequest,
    create_dataset,
    create_export_job,
    iter_export_jobs,
    wait_for_job,
)
from .config import (
    DEFAULT_BASE_URL,
    KNOWN_VARIABLES,
    BatchSelection,
    Credentials,
    DownloadSettings,
    Setting,
    resolve_environment,
)
from .emulator import DatasetSpec, Emulator, EmulatorConfig, Faults, running_emulator
from .emulator import serve as serve_emulator
from .errors import APIError, AsyncdlError, AuthError, ConfigError
from .inspect import ScoreReport, inspect_scores, render_bars
from .listing import Marker, Rejected, iter_batches, iter_parts
from .merge import merge_parts
from .models import Batch, Part, PartResult, PartStatus
from .pipeline import DownloadResult, PlannedBatch, connect, download, plan

__all__ = ["app", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_INTERRUPTED = 130

EPILOG = (
    "Exit codes: 0 ok; 1 some parts failed or a batch does not match the Catalog; "
    "2 bad usage; 3 credentials refused; 130 interrupted (resume by running it again)."
)

app = typer.Typer(
    name="asyncdl",
    help="Fast, complete, verified downloads of Adobe Experience Platform dataset exports.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class GlobalOptions:
    """What the root callback parsed: where configuration comes from."""

    config_path: Path | None = None
    profile: str | None = None


def _version(value: bool) -> None:
    if value:
        out.print(f"asyncdl {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log more (-vv: debug).")
    ] = 0,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="asyncdl TOML or aepp JSON config [default ~/.config/asyncdl/config.toml]",
        ),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Profile of the TOML config to use.")
    ] = None,
) -> None:
    """Fast, complete, verified downloads of Adobe Experience Platform dataset exports.

    Settings: flags > environment (AEP_*) > config file.
    """
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            force=True,  # the CLI owns the process's logging, whatever was configured before
        )
    ctx.obj = GlobalOptions(config_path=config, profile=profile)


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


def _quietly() -> None:
    err.print("asyncdl: interrupted", markup=False)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _emit(event: dict[str, Any]) -> None:
    """One NDJSON line on stdout (``--json``); never holds a secret."""
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# -- settings ------------------------------------------------------------------------------------


def _environment(ctx: typer.Context) -> dict[str, Setting]:
    options = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
    try:
        return resolve_environment(config_path=options.config_path, profile=options.profile)
    except ConfigError as error:
        fail(str(error), EXIT_USAGE)


def _credentials(environment: dict[str, Setting]) -> Credentials:
    try:
        return Credentials.from_env({k: v.value for k, v in environment.items()})
    except ConfigError as error:
        fail(str(error), EXIT_USAGE)


def _settings(**kwargs: Any) -> DownloadSettings:
    try:
        return DownloadSettings(**kwargs)
    except AsyncdlError as error:
        fail(_describe(error), _exit_code_for(error))


def _base_url(flag: str | None, environment: dict[str, Setting]) -> str:
    if flag:
        return flag
    setting = environment.get("AEP_BASE_URL")
    return setting.value if setting else DEFAULT_BASE_URL


# -- progress ------------------------------------------------------------------------------------


class RunRecord:
    """The progress listener every mode shares: counts what happened; subclasses show it."""

    def __init__(self) -> None:
        self.finished: list[PartResult] = []
        self.retries = 0
        self.throttled = 0
        self.queued = 0
        self.bytes_total = 0
        self.bytes_done = 0
        self.started = time.monotonic()

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def on_batch(self, batch: Batch) -> None:
        pass

    def on_queued(self, part: Part) -> None:
        self.queued += 1
        self.bytes_total += part.size

    def on_bytes(self, part: Part, n: int) -> None:
        self.bytes_done += n

    def on_retry(self, part: Part, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        self.retries += 1
        if isinstance(error, APIError) and error.status == 429:
            self.throttled += 1

    def on_done(self, result: PartResult) -> None:
        self.finished.append(result)
        if result.status is PartStatus.SKIPPED:
            self.bytes_done += result.part.size

    def status_line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        text = (
            f"{len(self.finished)}/{self.queued} parts, "
            f"{_mb(self.bytes_done)} of {_mb(self.bytes_total)}, "
            f"{self.bytes_done / elapsed / 1e6:.1f} MB/s"
        )
        if self.retries:
            text += f", {self.retries} retries"
        return text


class PlainProgress(RunRecord):
    """For cron and CI logs: one status line every ``interval_s``, no control characters."""

    def __init__(self, console: Console, *, interval_s: float = 5.0) -> None:
        super().__init__()
        self._console = console
        self._interval_s = interval_s
        self._last = time.monotonic()

    def _maybe_print(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval_s:
            self._last = now
            self._console.print(f"asyncdl: {self.status_line()}", markup=False)

    def on_bytes(self, part: Part, n: int) -> None:
        super().on_bytes(part, n)
        self._maybe_print()

    def on_done(self, result: PartResult) -> None:
        super().on_done(result)
        self._maybe_print()


class RichProgress(RunRecord):
    """On a terminal: one bar for the whole job and a line per part in flight."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._job: TaskID = self._progress.add_task("listing", total=None)
        self._lines: dict[tuple[str, str], TaskID] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _refresh(self) -> None:
        description = f"{len(self.finished)}/{self.queued} parts"
        if self.retries:
            description += f" · {self.retries} retries"
        self._progress.update(
            self._job,
            description=description,
            total=self.bytes_total or None,
            completed=self.bytes_done,
        )

    def on_queued(self, part: Part) -> None:
        super().on_queued(part)
        self._refresh()

    def on_bytes(self, part: Part, n: int) -> None:
        super().on_bytes(part, n)
        key = (part.batch_id, part.relpath)
        line = self._lines.get(key)
        if line is None:
            name = part.name if len(part.name) <= 40 else part.name[:18] + "…" + part.name[-21:]
            line = self._progress.add_task(f"  {name}", total=part.size)
            self._lines[key] = line
        self._progress.advance(line, n)
        self._refresh()

    def on_retry(self, part: Part, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        super().on_retry(part, attempt, error, delay_s)
        self._refresh()

    def on_done(self, result: PartResult) -> None:
        super().on_done(result)
        line = self._lines.pop((result.part.batch_id, result.part.relpath), None)
        if line is not None:
            self._progress.remove_task(line)
        self._refresh()


class JsonEvents(RunRecord):
    """``--json``: an NDJSON event per batch, part, and retry, then one summary object."""

    def on_batch(self, batch: Batch) -> None:
        _emit({"event": "batch", **_batch_json(batch)})

    def on_retry(self, part: Part, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        super().on_retry(part, attempt, error, delay_s)
        _emit(
            {
                "event": "retry",
                "batch_id": part.batch_id,
                "part": part.relpath,
                "attempt": attempt,
                "error": type(error).__name__,
                "status": error.status if isinstance(error, APIError) else None,
                "message": str(error),
                "delay_s": round(delay_s, 3),
            }
        )

    def on_done(self, result: PartResult) -> None:
        super().on_done(result)
        _emit({"event": "part", **_result_json(result)})


def _listener(*, quiet: bool, as_json: bool) -> RunRecord:
    if as_json:
        return JsonEvents()
    if quiet:
        return RunRecord()
    if err.is_terminal:
        return RichProgress(err)
    return PlainProgress(err)


def _batch_json(batch: Batch) -> dict[str, Any]:
    return {
        "batch_id": batch.id,
        "status": batch.status,
        "created_ms": batch.created_ms,
        "records": batch.metrics.output_record_count,
        "bytes": batch.metrics.output_byte_size,
        "files": batch.metrics.output_file_count,
    }


def _result_json(result: PartResult) -> dict[str, Any]:
    return {
        "batch_id": result.part.batch_id,
        "part": result.part.relpath,
        "status": result.status.value,
        "size": result.part.size,
        "fetched_bytes": result.fetched_bytes,
        "rows": result.rows,
        "sha256": result.sha256,
        "attempts": result.attempts,
        "error": result.error,
    }


def _summary_json(result: DownloadResult, record: RunRecord) -> dict[str, Any]:
    seconds = max(result.elapsed_s, 1e-9)
    batches = []
    for report in result.batches:
        rec = report.reconciliation
        batches.append(
            {
                "batch_id": report.batch.id,
                "directory": str(report.directory),
                "parts": len(report.results),
                "markers": report.markers,
                "reconciliation": None
                if rec is None
                else {
                    "ok": rec.ok,
                    "bytes": rec.actual_bytes,
                    "expected_bytes": rec.expected_bytes,
                    "rows": rec.actual_rows,
                    "expected_rows": rec.expected_rows,
                    "files": rec.actual_files,
                    "expected_files": rec.expected_files,
                },
            }
        )
    return {
        "event": "summary",
        "ok": result.ok,
        "parts": len(result.results),
        "downloaded": result.downloaded,
        "skipped": result.skipped,
        "failed": [{"part": r.part.relpath, "error": r.error} for r in result.failed],
        "rejected": [{"name": e.name, "reason": e.reason} for e in result.rejected],
        "markers": result.markers,
        "bytes": result.total_bytes,
        "fetched_bytes": result.fetched_bytes,
        "seconds": round(seconds, 3),
        "mb_per_s": round(result.fetched_bytes / seconds / 1e6, 2),
        "retries": record.retries,
        "throttled": record.throttled,
        "batches": batches,
    }


# -- rendering -----------------------------------------------------------------------------------


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
    shown_s = f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"
    out.print(
        f"{parts} parts{detail}, {_mb(result.fetched_bytes)} fetched in {shown_s} s, "
        f"{rate:.1f} MB/s",
        markup=False,
    )


def _interrupted(record: RunRecord) -> Callable[[], None]:
    def report() -> None:
        done = [r for r in record.finished if r.ok]
        err.print(
            f"asyncdl: interrupted: {len(done)} parts finished "
            f"({_mb(sum(r.part.size for r in done))}); unfinished parts are kept as .part "
            "files and resume on the next run",
            markup=False,
        )

    return report


def _render_plan(planned: list[PlannedBatch], *, as_json: bool) -> None:
    if as_json:
        for batch in planned:
            for part in batch.parts:
                _emit(
                    {
                        "event": "planned",
                        "batch_id": part.batch_id,
                        "part": part.relpath,
                        "size": part.size,
                        "on_disk": part.relpath in batch.complete,
                    }
                )
        _emit(
            {
                "event": "plan",
                "parts": sum(len(b.parts) for b in planned),
                "bytes": sum(p.size for b in planned for p in b.parts),
                "bytes_to_fetch": sum(b.bytes_to_fetch for b in planned),
            }
        )
        return
    for batch in planned:
        out.print(f"batch {batch.batch.id} ({_iso(batch.batch.created_ms)}):", markup=False)
        for part in batch.parts:
            note = "  (on disk)" if part.relpath in batch.complete else ""
            out.print(f"  {part.relpath}  {part.size:,} bytes{note}", markup=False)
        for rejected in batch.rejected:
            out.print(f"  rejected {rejected.name!r}: {rejected.reason}", markup=False)
    total = sum(p.size for b in planned for p in b.parts)
    to_fetch = sum(b.bytes_to_fetch for b in planned)
    count = sum(len(b.parts) for b in planned)
    out.print(
        f"dry run: {count} parts, {_mb(total)} in total, {_mb(to_fetch)} to fetch; "
        "nothing was downloaded",
        markup=False,
    )


# -- commands ------------------------------------------------------------------------------------


@app.command("download", epilog=EPILOG)
def download_command(
    ctx: typer.Context,
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
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Only part names matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Skip part names matching this glob (wins over include)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be fetched; fetch nothing.")
    ] = False,
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
    segment_size: Annotated[
        str, typer.Option("--segment-size", help="Bytes per ranged segment of a big part.")
    ] = "32Mi",
    segment_threshold: Annotated[
        str,
        typer.Option("--segment-threshold", help="Parts at least this big go in segments."),
    ] = "64Mi",
    adaptive: Annotated[
        bool,
        typer.Option(
            "--adaptive/--no-adaptive", help="Halve concurrency on 429, grow back on success."
        ),
    ] = True,
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="NDJSON events and a summary object on stdout.")
    ] = False,
) -> None:
    """Download a dataset's newest successful batch (or --latest N, or --batch ID ...).

    Credentials come from AEP_ACCESS_TOKEN (or AEP_CLIENT_ID + AEP_CLIENT_SECRET), AEP_API_KEY,
    AEP_ORG_ID and AEP_SANDBOX (default prod), or from --config. Running it again resumes.

    Example: asyncdl download 5cd9146b31dae914b75f654f --out ./scores -j 16
    """
    if dataset_id is None and not batch:
        fail("give a DATASET_ID or at least one --batch ID", EXIT_USAGE)
    if batch and latest != 1:
        fail("--latest and --batch are exclusive", EXIT_USAGE)
    environment = _environment(ctx)
    settings = _settings(
        base_url=_base_url(base_url, environment),
        out_dir=out_dir,
        concurrency=concurrency,
        max_attempts=retries,
        part_timeout_s=timeout,
        allowed_hosts=frozenset(allow_host or ()),
        ca_bundle=ca_bundle,
        segment_bytes=parse_size(segment_size),
        segment_threshold_bytes=parse_size(segment_threshold),
        adaptive=adaptive,
    )
    credentials = _credentials(environment)
    try:
        selection = BatchSelection(latest=latest, batch_ids=tuple(batch or ()))
    except ConfigError as error:
        fail(str(error), EXIT_USAGE)
    arguments: dict[str, Any] = {
        "latest": selection.latest,
        "batch_ids": selection.batch_ids,
        "include": tuple(include or ()),
        "exclude": tuple(exclude or ()),
        "credentials": credentials,
        "settings": settings,
    }
    if dry_run:

        async def planning() -> list[PlannedBatch]:
            return await plan(dataset_id, **arguments)

        _render_plan(run_async(planning, on_interrupt=_quietly), as_json=as_json)
        raise typer.Exit(EXIT_OK)

    record = _listener(quiet=quiet, as_json=as_json)

    async def job() -> DownloadResult:
        with record:
            return await download(dataset_id, on_progress=record, **arguments)

    result = run_async(job, on_interrupt=_interrupted(record))
    if as_json:
        _emit(_summary_json(result, record))
    else:
        render_result(result)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


@app.command("batches", epilog=EPILOG)
def batches_command(
    ctx: typer.Context,
    dataset_id: Annotated[str, typer.Argument(help="The dataset whose batches to list.")],
    status: Annotated[
        str | None, typer.Option("--status", help="Only batches with this status.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many batches.")] = 20,
    since: Annotated[
        str | None, typer.Option("--since", help="Created on or after (YYYY-MM-DD or ISO).")
    ] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="API base URL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List a dataset's batches, newest first (pages the Catalog as needed).

    Example: asyncdl batches 5cd9146b31dae914b75f654f --status success --limit 5
    """
    if limit < 1:
        fail(f"--limit must be at least 1, got {limit}", EXIT_USAGE)
    since_ms = _parse_since(since) if since else None
    environment = _environment(ctx)
    credentials = _credentials(environment)
    settings = _settings(base_url=_base_url(base_url, environment))

    async def job() -> list[Batch]:
        async with connect(credentials, settings=settings) as client:
            return [
                b
                async for b in iter_batches(
                    client,
                    dataset_id,
                    status=status,
                    limit=limit,
                    created_client=None,
                    created_after_ms=since_ms,
                )
            ]

    batches = run_async(job, on_interrupt=_quietly)
    if as_json:
        for item in batches:
            _emit(_batch_json(item))
        raise typer.Exit(EXIT_OK)
    rows = []
    for item in batches:
        m = item.metrics
        rows.append(
            (
                item.id,
                item.status,
                _iso(item.created_ms),
                "-" if m.output_record_count is None else f"{m.output_record_count:,}",
                "-" if m.output_byte_size is None else _mb(m.output_byte_size),
                "-" if m.output_file_count is None else str(m.output_file_count),
            )
        )
    _print_table(
        f"batches of {dataset_id}",
        ("batch id", "status", "created", "records", "bytes", "files"),
        rows,
        right=3,
    )
    if not batches:
        out.print("no batches match", markup=False)


def _print_table(
    title: str, headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, right: int
) -> None:
    """A rich table on a terminal; tab-separated lines when piped (``| cut -f1`` works).

    Columns from index ``right`` on are right-aligned (numbers).
    """
    if not out.is_terminal:
        # Written directly: rich would expand the tabs into spaces.
        for line in (headers, *rows):
            out.file.write("\t".join(line) + "\n")
        out.file.flush()
        return
    table = Table(title=title, title_justify="left")
    for index, header in enumerate(headers):
        table.add_column(header, justify="right" if index >= right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _parse_since(text: str) -> int:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"--since takes a date like 2026-11-01 or 2026-11-01T12:00, got {text!r}", EXIT_USAGE)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


@app.command("files", epilog=EPILOG)
def files_command(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="The batch whose parts to list.")],
    base_url: Annotated[str | None, typer.Option("--base-url", help="API base URL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List every part of a batch with its size, across all pages and nested directories.

    Example: asyncdl files 01E5QSWCAASFQ054FNBKYV6TIQ --json
    """
    environment = _environment(ctx)
    credentials = _credentials(environment)
    settings = _settings(base_url=_base_url(base_url, environment))

    async def job() -> list[Part | Marker | Rejected]:
        async with connect(credentials, settings=settings) as client:
            return [entry async for entry in iter_parts(client, batch_id)]

    entries = run_async(job, on_interrupt=_quietly)
    parts = [e for e in entries if isinstance(e, Part)]
    if as_json:
        for entry in entries:
            if isinstance(entry, Part):
                _emit(
                    {
                        "name": entry.name,
                        "size": entry.size,
                        "directory": entry.dataset_file_id,
                        "href": entry.href,
                    }
                )
            elif isinstance(entry, Rejected):
                _emit({"name": entry.name, "rejected": str(entry.error)})
        raise typer.Exit(EXIT_OK)
    _print_table(
        f"parts of batch {batch_id}",
        ("name", "bytes", "directory"),
        [(p.name, f"{p.size:,}", p.dataset_file_id) for p in parts],
        right=1,
    )
    markers = sum(1 for e in entries if isinstance(e, Marker))
    out.print(
        f"{len(parts)} parts, {_mb(sum(p.size for p in parts))} "
        f"({markers} _SUCCESS markers not listed)",
        markup=False,
    )
    for entry in entries:
        if isinstance(entry, Rejected):
            err.print(f"  rejected {entry.name!r}: {entry.error}", markup=False)


@app.command("inspect", epilog=EPILOG)
def inspect_command(
    directory: Annotated[Path, typer.Argument(help="A download directory (or one batch).")],
    bins: Annotated[int, typer.Option("--bins", help="Histogram bins over 0-100.")] = 10,
    top: Annotated[int, typer.Option("--top", help="How many influential factors.")] = 10,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also draw the histogram into this PNG.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON object.")] = False,
) -> None:
    """Rows, parts, schema, score distribution, percentiles, propensity types, top factors.

    Reads parquet in streamed record batches, so any size fits in memory.

    Example: asyncdl inspect ./scores --bins 20 --plot scores.png
    """
    try:
        report = inspect_scores(directory, bins=bins, top_factors=top)
        if plot is not None:
            from .plot import write_histogram_png

            if report.score is None:
                raise ConfigError("no score column to plot")
            write_histogram_png(report.score, plot)
    except AsyncdlError as error:
        fail(str(error), _exit_code_for(error))
    if as_json:
        _emit(_report_json(report))
        raise typer.Exit(EXIT_OK)
    _render_report(report)
    if plot is not None:
        out.print(f"histogram drawn into {plot}", markup=False)


def _report_json(report: ScoreReport) -> dict[str, Any]:
    summary = report.score_summary
    return {
        "directory": str(report.directory),
        "parts": report.parts,
        "rows": report.rows,
        "bytes": report.bytes,
        "schema": dict(report.schema),
        "score_histogram": None
        if report.score is None
        else {"edges": report.score.edges, "counts": report.score.counts},
        "score_summary": None
        if summary is None
        else {
            "min": summary.min,
            "p25": summary.p25,
            "median": summary.p50,
            "p75": summary.p75,
            "max": summary.max,
            "mean": summary.mean,
        },
        "percentile_buckets": [[b.low, b.high, b.count] for b in report.percentile_buckets],
        "propensity_types": dict(report.propensity_types),
        "top_factors": [
            {"code": f.code, "count": f.count, "low": f.low, "medium": f.medium, "high": f.high}
            for f in report.top_factors
        ],
    }


def _render_report(report: ScoreReport) -> None:
    out.print(
        f"{report.directory}: {report.rows:,} rows in {report.parts} parts, {_mb(report.bytes)}",
        markup=False,
    )
    schema = Table(title="schema", title_justify="left")
    schema.add_column("column")
    schema.add_column("type")
    for name, kind in report.schema:
        schema.add_row(name, kind if len(kind) <= 70 else kind[:67] + "...")
    out.print(schema)
    if report.score is not None:
        out.print("score distribution", markup=False)
        for line in render_bars(report.score):
            out.print(line, markup=False)
    summary = report.score_summary
    if summary is not None:
        out.print(
            f"score min {summary.min:.1f}  p25 {summary.p25:.1f}  median {summary.p50:.1f}  "
            f"p75 {summary.p75:.1f}  max {summary.max:.1f}  mean {summary.mean:.2f}",
            markup=False,
        )
    if report.percentile_buckets:
        buckets = "  ".join(f"{b.low}-{b.high}: {b.count:,}" for b in report.percentile_buckets)
        out.print(f"percentiles  {buckets}", markup=False)
    if report.propensity_types:
        types = ", ".join(f"{name} {count:,}" for name, count in report.propensity_types)
        out.print(f"propensity types: {types}", markup=False)
    if report.top_factors:
        factors = Table(title="most common influential factors", title_justify="left")
        for column in ("code", "count", "high", "medium", "low"):
            factors.add_column(column, justify="left" if column == "code" else "right")
        for f in report.top_factors:
            factors.add_row(f.code, f"{f.count:,}", f"{f.high:,}", f"{f.medium:,}", f"{f.low:,}")
        out.print(factors)


@app.command("merge", epilog=EPILOG)
def merge_command(
    directory: Annotated[Path, typer.Argument(help="A download directory (or one batch).")],
    to: Annotated[Path, typer.Option("--to", help="The file to write: .parquet or .csv.")],
) -> None:
    """Merge every part below DIR into one parquet or CSV file, streaming (bounded memory).

    Example: asyncdl merge ./scores/01E5QSWCAASFQ054FNBKYV6TIQ --to scores.parquet
    """
    try:
        result = merge_parts(directory, to)
    except AsyncdlError as error:
        fail(str(error), _exit_code_for(error))
    out.print(
        f"merged {result.parts} parts, {result.rows:,} rows into {result.target} "
        f"({_mb(result.bytes)})",
        markup=False,
    )


@config_app.command("show")
def config_show_command(ctx: typer.Context) -> None:
    """Print the resolved AEP_* settings and where each came from (secrets masked).

    Example: asyncdl --config ~/aepp-config.json config show
    """
    environment = _environment(ctx)
    out.print("# asyncdl configuration: flags > environment > config file", markup=False)
    for name in KNOWN_VARIABLES:
        setting = environment.get(name)
        if setting is not None:
            value, source = setting.shown(name), setting.source
        elif name == "AEP_BASE_URL":
            value, source = DEFAULT_BASE_URL, "default"
        elif name == "AEP_SANDBOX":
            value, source = "prod", "default"
        else:
            value, source = "-", "not set"
        out.print(f"{name}={value}  # {source}", markup=False)


# -- audience exports ----------------------------------------------------------------------------

EXPORT_EPILOG = (
    "Exit codes: 0 exported and every part downloaded; 1 the job FAILED or timed out, or the "
    "download failed; 2 bad usage; 3 credentials refused; 130 interrupted (the job is cancelled "
    "unless --keep-job)."
)
#: Polls start at --poll-interval and double up to this.
POLL_MAX_S = 10.0
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'90s' → 90.0, '15m' → 900.0, '2h' → 7200.0; a plain number is seconds."""
    raw = text.strip().lower()
    scale = 1.0
    if raw[-1:] in _DURATION_UNITS:
        scale = _DURATION_UNITS[raw[-1]]
        raw = raw[:-1].strip()
    try:
        value = float(raw) * scale
    except ValueError:
        raise typer.BadParameter(f"not a duration: {text!r} (try 90s, 15m, 2h or 600)") from None
    if not (value > 0 and value != float("inf")):
        raise typer.BadParameter(f"a duration must be positive, got {text!r}")
    return value


def _job_json(job: ExportJob) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": job.raw_status,
        "dataset_id": job.dataset_id,
        "batch_ids": list(job.batch_ids),
        "profiles": job.profile_count,
        "created_ms": job.created_ms,
        "errors": [{"code": e.code, "msg": e.message} for e in job.errors],
    }


class JobWatch:
    """The wait for an export job: a spinner with status and elapsed time on a terminal, a line
    per status change in logs, NDJSON events with ``--json``, nothing with ``--quiet``."""

    def __init__(self, *, quiet: bool, as_json: bool) -> None:
        self._quiet = quiet
        self._as_json = as_json
        self.started = time.monotonic()
        self.job_id: int | None = None
        self.status: str | None = None
        self.downloading = False
        self.cancel_asked = False
        self.cancel_error: AsyncdlError | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> JobWatch:
        if not (self._quiet or self._as_json) and err.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self._task = self._progress.add_task(f"export job {self.job_id}: waiting", total=None)
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def on_status(self, job: ExportJob) -> None:
        changed = job.raw_status != self.status
        self.status = job.raw_status
        if self._as_json:
            if changed:
                _emit(
                    {
                        "event": "job",
                        "job_id": job.id,
                        "status": job.raw_status,
                        "elapsed_s": round(self.elapsed_s, 3),
                    }
                )
        elif self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=f"export job {job.id}: {job.raw_status}")
        elif changed and not self._quiet:
            err.print(
                f"asyncdl: export job {job.id}: {job.raw_status} after {self.elapsed_s:.0f} s",
                markup=False,
            )

    def on_cancel(self, job_id: int, error: AsyncdlError | None) -> None:
        self.cancel_asked = True
        self.cancel_error = error

    def interrupted(self, record: RunRecord, *, keep_job: bool) -> Callable[[], None]:
        def report() -> None:
            if self.downloading:
                _interrupted(record)()
            elif self.job_id is None:
                err.print(
                    "asyncdl: interrupted before AEP confirmed an export job "
                    "(check with: asyncdl export-jobs)",
                    markup=False,
                )
            elif keep_job:
                err.print(
                    f"asyncdl: interrupted: export job {self.job_id} keeps running "
                    "(--keep-job; check it with: asyncdl export-jobs)",
                    markup=False,
                )
            elif self.cancel_asked and self.cancel_error is None:
                err.print(
                    f"asyncdl: interrupted: asked AEP to cancel export job {self.job_id}",
                    markup=False,
                )
            else:
                reason = f": {self.cancel_error}" if self.cancel_error else ""
                err.print(
                    f"asyncdl: interrupted: could not cancel export job {self.job_id}{reason}",
                    markup=False,
                )

        return report


@app.command("export-audience", epilog=EXPORT_EPILOG)
def export_audience_command(
    ctx: typer.Context,
    segment_id: Annotated[
        list[str] | None,
        typer.Option("--segment-id", help="An audience (segment definition) id; repeatable."),
    ] = None,
    merge_policy: Annotated[
        str | None, typer.Option("--merge-policy", help="Merge policy id [the segment's own].")
    ] = None,
    fields: Annotated[
        str | None,
        typer.Option("--fields", help="Comma-separated XDM paths to export [every field]."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Export into this existing dataset.")
    ] = None,
    create_dataset_name: Annotated[
        str | None,
        typer.Option("--create-dataset", help="Create a profile dataset with this name first."),
    ] = None,
    segment_per_batch: Annotated[
        bool, typer.Option("--segment-per-batch", help="One output batch per segment.")
    ] = False,
    wait_timeout: Annotated[
        str, typer.Option("--wait-timeout", help="Give up waiting after this: 90s, 15m, 2h.")
    ] = "2h",
    keep_job: Annotated[
        bool,
        typer.Option("--keep-job", help="On Ctrl-C or timeout leave the job running."),
    ] = False,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Directory to write OUT/<batch id>/<part>.")
    ] = Path("audience"),
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-j", help="Parts downloaded at once.")
    ] = 8,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help=f"API base URL [env AEP_BASE_URL; {DEFAULT_BASE_URL}]"),
    ] = None,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", hidden=True, help="First poll after (s).")
    ] = 1.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="NDJSON events and a summary object on stdout.")
    ] = False,
) -> None:
    """Export audiences to a dataset, wait for the job, and download its batch(es).

    Creates the dataset first with --create-dataset (and prints its id), asks Profile for the
    export, polls until it SUCCEEDED or FAILED, then downloads the output like `download`
    (verified, resumable). Ctrl-C or --wait-timeout cancel the job unless --keep-job.

    Example: asyncdl export-audience --segment-id 8e1ad0c1-77cb-4ba4-9d7d-4d17e5a2ed30
    --create-dataset "High churn audience" --fields person.name,personalEmail.address
    """
    if not segment_id:
        fail("give at least one --segment-id", EXIT_USAGE)
    if (dataset is None) == (create_dataset_name is None):
        fail("give either --dataset ID or --create-dataset NAME", EXIT_USAGE)
    if poll_interval <= 0:
        fail(f"--poll-interval must be positive, got {poll_interval}", EXIT_USAGE)
    try:
        timeout_s = parse_duration(wait_timeout)
    except typer.BadParameter as error:
        fail(f"--wait-timeout: {error}", EXIT_USAGE)
    try:
        # Checked before anything is created: a bad request must not leave a dataset behind.
        request = ExportRequest(
            segment_ids=tuple(segment_id),
            dataset_id=dataset or "(created)",
            merge_policy_id=merge_policy,
            fields=tuple((fields or "").split(",")),
            segment_per_batch=segment_per_batch,
        )
    except ConfigError as error:
        fail(str(error), EXIT_USAGE)
    environment = _environment(ctx)
    settings = _settings(
        base_url=_base_url(base_url, environment), out_dir=out_dir, concurrency=concurrency
    )
    credentials = _credentials(environment)
    watch = JobWatch(quiet=quiet, as_json=as_json)
    record = _listener(quiet=quiet, as_json=as_json)

    async def job() -> tuple[ExportJob, DownloadResult | None]:
        async with connect(credentials, settings=settings) as client:
            target = dataset
            if create_dataset_name is not None:
                target = await create_dataset(client, create_dataset_name)
                if as_json:
                    _emit({"event": "dataset", "dataset_id": target, "name": create_dataset_name})
                else:
                    out.print(f"created dataset {target} ({create_dataset_name})", markup=False)
            assert target is not None
            created = await create_export_job(
                client, dataclasses.replace(request, dataset_id=target)
            )
            watch.job_id = created.id
            if as_json:
                _emit({"event": "job_created", **_job_json(created)})
            else:
                out.print(
                    f"export job {created.id} created: {len(request.segment_ids)} segment(s) "
                    f"into dataset {target}",
                    markup=False,
                )
            try:
                with watch:
                    finished = await wait_for_job(
                        client,
                        created.id,
                        timeout_s=timeout_s,
                        poll_min_s=poll_interval,
                        poll_max_s=max(POLL_MAX_S, poll_interval),
                        on_status=watch.on_status,
                        keep_job=keep_job,
                        on_cancel=watch.on_cancel,
                    )
            except AsyncdlError as error:
                if not isinstance(error, ExportJobError):  # the wait broke, not the job
                    err.print(
                        f"asyncdl: export job {created.id} may still be running "
                        "(check it with: asyncdl export-jobs)",
                        markup=False,
                    )
                raise
        if not as_json:
            profiles = "?" if finished.profile_count is None else f"{finished.profile_count:,}"
            out.print(
                f"export job {finished.id} {finished.raw_status} after {watch.elapsed_s:.1f} s: "
                f"{profiles} profiles in batch {', '.join(finished.batch_ids) or '-'}",
                markup=False,
            )
        if not finished.batch_ids:
            return finished, None
        watch.downloading = True
        with record:
            result = await download(
                None,
                batch_ids=finished.batch_ids,
                credentials=credentials,
                settings=settings,
                on_progress=record,
            )
        return finished, result

    finished, result = run_async(job, on_interrupt=watch.interrupted(record, keep_job=keep_job))
    if result is None:
        if finished.profile_count:
            fail(f"export job {finished.id} SUCCEEDED but names no output batch", EXIT_FAILED)
        if as_json:
            _emit({"event": "summary", "ok": True, "parts": 0, "export": _job_json(finished)})
        else:
            out.print("no profiles were exported: nothing to download", markup=False)
        raise typer.Exit(EXIT_OK)
    if as_json:
        _emit({**_summary_json(result, record), "export": _job_json(finished)})
    else:
        render_result(result)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


@app.command("export-jobs", epilog=EPILOG)
def export_jobs_command(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only jobs with this status (NEW, PROCESSING, SUCCEEDED…)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many jobs.")] = 20,
    base_url: Annotated[str | None, typer.Option("--base-url", help="API base URL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List Profile export jobs, newest first (follows the API's pages as needed).

    Example: asyncdl export-jobs --status SUCCEEDED --limit 5
    """
    if limit < 1:
        fail(f"--limit must be at least 1, got {limit}", EXIT_USAGE)
    environment = _environment(ctx)
    credentials = _credentials(environment)
    settings = _settings(base_url=_base_url(base_url, environment))

    async def job() -> list[ExportJob]:
        async with connect(credentials, settings=settings) as client:
            return [j async for j in iter_export_jobs(client, status=status, limit=limit)]

    jobs = run_async(job, on_interrupt=_quietly)
    if as_json:
        for item in jobs:
            _emit(_job_json(item))
        raise typer.Exit(EXIT_OK)
    _print_table(
        "export jobs",
        ("job id", "status", "dataset", "created", "profiles"),
        [
            (
                str(j.id),
                j.raw_status,
                j.dataset_id or "-",
                _iso(j.created_ms),
                "-" if j.profile_count is None else f"{j.profile_count:,}",
            )
            for j in jobs
        ],
        right=4,
    )
    if not jobs:
        out.print("no export jobs match", markup=False)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # `asyncdl ... | head` must not end in a traceback
        sys.stderr.close()
        raise SystemExit(EXIT_FAILED) from None


_SIZE_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def parse_size(text: str) -> int:
    """'16M' → 16,000,000; '1Mi' → 1,048,576; a plain number is bytes."""
    raw = text.strip().lower().removesuffix("/s").removesuffix("b")
    number = raw.rstrip("kmgi")
    suffix = raw[len(number) :]
    if suffix not in _SIZE_SUFFIXES:
        raise typer.BadParameter(f"not a size: {text!r} (try 16M, 512Ki or 1000000)")
    try:
        value = float(number) * _SIZE_SUFFIXES[suffix]
    except ValueError:
        raise typer.BadParameter(f"not a size: {text!r} (try 16M, 512Ki or 1000000)") from None
    if value < 0:
        raise typer.BadParameter(f"a size cannot be negative: {text!r}")
    return int(value)


def _emulator_config(
    *,
    cache_dir: Path | None,
    dataset: DatasetSpec,
    page_size: int,
    latency: float,
    bandwidth: str | None,
    token_lifetime: float,
    faults: Faults,
    **extra: Any,
) -> EmulatorConfig:
    fields: dict[str, Any] = {
        **extra,
        "datasets": (dataset,),
        "page_size": page_size,
        "latency_s": latency,
        "bandwidth_bps": parse_size(bandwidth) if bandwidth else None,
        "token_lifetime_s": token_lifetime,
        "faults": faults,
    }
    if cache_dir is not None:
        fields["cache_dir"] = cache_dir
    try:
        return EmulatorConfig(**fields)
    except AsyncdlError as error:
        fail(str(error), EXIT_USAGE)


def _emulator_env(emu: Emulator) -> list[str]:
    config = emu.config
    return [
        f"export AEP_BASE_URL={emu.base_url}",
        f"export AEP_ACCESS_TOKEN={config.static_tokens[0]}",
        f"export AEP_API_KEY={config.api_key}",
        f"export AEP_ORG_ID={config.org_id}",
        f"export AEP_SANDBOX={config.sandbox}",
        f"# or OAuth: AEP_CLIENT_ID={config.client_id} AEP_CLIENT_SECRET={config.client_secret}"
        f" AEP_IMS_URL={emu.base_url}",
    ]


@app.command("serve")
def serve_command(
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free).")] = 8080,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    batches: Annotated[int, typer.Option("--batches", help="Successful batches.")] = 3,
    files: Annotated[int, typer.Option("--files", help="dataSetFiles per batch.")] = 2,
    parts: Annotated[int, typer.Option("--parts", help="Parts per dataSetFile.")] = 4,
    rows: Annotated[int, typer.Option("--rows", help="Rows per part.")] = 2000,
    part_size: Annotated[
        str | None, typer.Option("--part-size", help="Part size instead of --rows, e.g. 16M.")
    ] = None,
    nested: Annotated[bool, typer.Option("--nested", help="Add a nested directory.")] = False,
    page_size: Annotated[int, typer.Option("--page-size", help="Directory page size.")] = 100,
    latency: Annotated[float, typer.Option("--latency", help="Seconds added per request.")] = 0.0,
    bandwidth: Annotated[
        str | None, typer.Option("--bandwidth", help="Bytes/s per response, e.g. 20M.")
    ] = None,
    token_lifetime: Annotated[
        float, typer.Option("--token-lifetime", help="Seconds an IMS token lives.")
    ] = 86399.0,
    error_rate: Annotated[float, typer.Option("--error-rate", help="Fraction of 5xx.")] = 0.0,
    rate_429: Annotated[float, typer.Option("--rate-429", help="Fraction of 429.")] = 0.0,
    retry_after: Annotated[
        float | None, typer.Option("--retry-after", help="Retry-After seconds on 429/503.")
    ] = None,
    drop_rate: Annotated[
        float, typer.Option("--drop-rate", help="Fraction of downloads cut mid-stream.")
    ] = 0.0,
    truncate_rate: Annotated[
        float, typer.Option("--truncate-rate", help="Fraction of downloads sent short.")
    ] = 0.0,
    no_range: Annotated[bool, typer.Option("--no-range", help="Ignore Range headers.")] = False,
    max_faults: Annotated[
        int, typer.Option("--max-faults", help="Injected faults per path at most.")
    ] = 2,
    rate_limit: Annotated[
        float | None, typer.Option("--rate-limit", help="Requests/s before 429s.")
    ] = None,
    foreign_origin: Annotated[
        str | None, typer.Option("--foreign-origin", help="Point part hrefs at this origin.")
    ] = None,
    hostile_names: Annotated[
        bool, typer.Option("--hostile-names", help="List path-traversal names too.")
    ] = False,
    export_duration: Annotated[
        float, typer.Option("--export-duration", help="Seconds an audience export job takes.")
    ] = 2.0,
    export_fail: Annotated[
        bool, typer.Option("--export-fail", help="Audience export jobs end FAILED.")
    ] = False,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Where generated parts are kept.")
    ] = None,
) -> None:
    """Run the local AEP emulator (Catalog, Data Access, IMS) until Ctrl-C.

    Example: asyncdl serve --port 8080 --parts 50 --part-size 16M --page-size 10
    """
    try:
        dataset = DatasetSpec(
            batches=batches,
            files_per_batch=files,
            parts_per_file=parts,
            rows_per_part=rows,
            part_bytes=parse_size(part_size) if part_size else None,
            nested=nested,
        )
        faults = Faults(
            error_5xx_rate=error_rate,
            rate_429=rate_429,
            retry_after_s=retry_after,
            drop_rate=drop_rate,
            truncate_rate=truncate_rate,
            range_support=not no_range,
            max_faults_per_path=max_faults,
            rate_limit_rps=rate_limit,
            foreign_origin=foreign_origin,
            hostile_names=hostile_names,
        )
    except AsyncdlError as error:
        fail(str(error), EXIT_USAGE)
    config = _emulator_config(
        cache_dir=cache_dir,
        dataset=dataset,
        page_size=page_size,
        latency=latency,
        bandwidth=bandwidth,
        token_lifetime=token_lifetime,
        faults=faults,
        export_duration_s=export_duration,
        export_fail=export_fail,
    )

    def ready(emu: Emulator) -> None:
        out.print(f"AEP emulator listening on {emu.base_url} (Ctrl-C stops it)", markup=False)
        for spec in emu.config.datasets:
            out.print(f"dataset {spec.id}: {spec.name}", markup=False)
        out.print("In another terminal:", markup=False)
        for line in _emulator_env(emu):
            out.print(f"  {line}", markup=False)
        out.print(f"  asyncdl download {emu.config.datasets[0].id}", markup=False)

    async def job() -> None:
        await serve_emulator(config, host=host, port=port, on_ready=ready)

    run_async(job, on_interrupt=lambda: err.print("emulator stopped", markup=False))


DEMO_OUT = Path("demo-scores")


@app.command("demo")
def demo_command(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where to download.")] = DEMO_OUT,
    concurrency: Annotated[int, typer.Option("--concurrency", "-j", help="Parallel parts.")] = 8,
) -> None:
    """Start the emulator in-process, download its newest batch, and show a glimpse of the scores.

    Example: asyncdl demo --out ./demo-scores
    """
    dataset = DatasetSpec(batches=3, files_per_batch=3, parts_per_file=8, rows_per_part=20_000)
    config = _emulator_config(
        cache_dir=None,
        dataset=dataset,
        page_size=5,
        latency=0.005,
        bandwidth="3M",  # slow enough per connection for the progress display to be seen
        token_lifetime=3600.0,
        faults=Faults(),
    )
    listener = _listener(quiet=False, as_json=False)

    async def job() -> tuple[str, DownloadResult]:
        async with running_emulator(config) as emu:
            out.print(f"emulator running at {emu.base_url}", markup=False)
            settings = _settings(base_url=emu.base_url, out_dir=out_dir, concurrency=concurrency)
            credentials = Credentials(
                api_key=config.api_key,
                org_id=config.org_id,
                access_token=config.static_tokens[0],
            )
            out.print(
                f"$ asyncdl download {dataset.id} --out {out_dir} -j {concurrency}", markup=False
            )
            with listener:
                result = await download(
                    dataset.id, credentials=credentials, settings=settings, on_progress=listener
                )
            return emu.base_url, result

    _, result = run_async(job, on_interrupt=_interrupted(listener))
    render_result(result)
    for report in result.batches:
        _glimpse(report.directory)
        out.print(f"$ asyncdl inspect {report.directory}", markup=False)
        try:
            _render_report(inspect_scores(report.directory))
        except AsyncdlError as error:
            fail(str(error), _exit_code_for(error))
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def _glimpse(directory: Path) -> None:
    """A first look at downloaded scores: the first few rows."""
    import pyarrow.dataset as ds

    files = sorted(str(p) for p in directory.rglob("*.parquet"))
    if not files:
        return
    dataset = ds.dataset(files, format="parquet")
    head = dataset.head(5, columns=["ecid", "score", "percentileScore", "propensityType"])
    table = Table(title=f"the first scores in {directory}", title_justify="left")
    for name in head.column_names:
        table.add_column(name)
    for row in head.to_pylist():
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))
    out.print(table)
