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
from rich.table import Table

from . import __version__
from .config import DEFAULT_BASE_URL, BatchSelection, Credentials, DownloadSettings
from .emulator import DatasetSpec, Emulator, EmulatorConfig, Faults, running_emulator
from .emulator import serve as serve_emulator
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
                latest=selection.latest,
                batch_ids=selection.batch_ids,
                on_progress=listener,
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
) -> EmulatorConfig:
    fields: dict[str, Any] = {
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
        bandwidth=None,
        token_lifetime=3600.0,
        faults=Faults(),
    )
    listener = TerminalProgress(err, enabled=err.is_terminal)

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
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def _glimpse(directory: Path) -> None:
    """A first look at downloaded scores: a few rows and the score distribution."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    files = sorted(str(p) for p in directory.rglob("*.parquet"))
    if not files:
        return
    dataset = ds.dataset(files, format="parquet")
    head = dataset.head(5, columns=["ecid", "score", "percentileScore", "propensityType"])
    table = Table(title=f"{dataset.count_rows():,} scores in {directory}", title_justify="left")
    for name in head.column_names:
        table.add_column(name)
    for row in head.to_pylist():
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))
    out.print(table)
    scores = dataset.to_table(columns=["score"]).column("score")
    quantiles = pc.quantile(scores, q=[0.0, 0.25, 0.5, 0.75, 1.0]).to_pylist()  # type: ignore[arg-type]  # stubs say float; pyarrow takes a list
    labels = ("min", "p25", "median", "p75", "max")
    out.print(
        "score " + "  ".join(f"{k} {v:.1f}" for k, v in zip(labels, quantiles, strict=True)),
        markup=False,
    )
