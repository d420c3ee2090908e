"""``serve`` and ``demo``: the local AEP emulator for trying asyncdl without an Adobe account."""

from __future__ import annotations

import datetime as dt
import math
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer

from ..config import (
    Credentials,
)
from ..errors import AsyncdlError
from ..pipeline import DownloadResult, download
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    err,
    exit_code_for,
    fail,
    out,
    parse_size,
    run_async,
)
from .options import (
    Adaptive,
    Concurrency,
    DownloadFlags,
    Fsync,
    Retries,
    SegmentSize,
    SegmentThreshold,
    StoreMemory,
    Timeout,
    out_option,
)
from .progress import make_listener

if TYPE_CHECKING:
    from ..emulator import DatasetSpec, Emulator, EmulatorConfig, Faults, TruthBatch, Variants

from .render import glimpse, interrupted, render_report, render_result

app = typer.Typer()


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
    from ..emulator import EmulatorConfig  # aiohttp.web and the generator: only for these commands

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


#: ``Variants``' switches as ``--variant`` spells them. Written out because importing the
#: emulator costs every command its aiohttp.web import; tests/test_emulator_variants.py checks
#: this against ``asyncdl.emulator.VARIANT_NAMES``.
VARIANT_FLAGS = (
    "unlinked-batch-files",
    "single-file",
    "nested-datasetfiles",
    "relative-hrefs",
    "commit-markers",
    "missing-length",
    "unknown-length",
    "endless-next",
    "short-206",
    "file-count-of-datasetfiles",
    "quirky-metrics",
    "malformed-retry-after",
    "export-job-quirks",
)


def _check_variants(names: list[str] | None) -> list[str]:
    unknown = [name for name in names or () if name not in VARIANT_FLAGS]
    if unknown:
        raise typer.BadParameter(
            f"unknown variant {', '.join(map(repr, unknown))}; known: {', '.join(VARIANT_FLAGS)}"
        )
    return names or []


def _check_period(seconds: float | None) -> float | None:
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise typer.BadParameter(f"must be a number of seconds > 0, got {seconds}")
    return seconds


def _variants(names: list[str], *, every: bool, response_limit: float | None) -> Variants:
    from ..emulator import Variants

    chosen = VARIANT_FLAGS if every else names
    switches = {name.replace("-", "_"): True for name in chosen}
    try:
        return Variants(**switches, response_limit_s=response_limit)
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
    max_page_size: Annotated[
        int, typer.Option("--max-page-size", help="Largest page a request may ask for.")
    ] = 100,
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
        float | None, typer.Option("--retry-after", help="Retry-After on 429/503, whole seconds.")
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
    rate_limit_debt: Annotated[
        bool,
        typer.Option(
            "--rate-limit-debt",
            help="A refused request still costs a token: hammering prolongs the 429s.",
        ),
    ] = False,
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
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            metavar="NAME",
            callback=_check_variants,
            help="Serve a response shape Adobe's spec allows (repeatable): "
            + ", ".join(VARIANT_FLAGS)
            + ".",
        ),
    ] = None,
    all_variants: Annotated[
        bool, typer.Option("--all-variants", help="Every --variant at once.")
    ] = False,
    response_limit: Annotated[
        float | None,
        typer.Option(
            "--response-limit",
            metavar="S",
            help="Cut a download still sending after S seconds (AEP's limit is 60).",
        ),
    ] = None,
    append_only: Annotated[
        bool,
        typer.Option("--append-only", help="No replays: no batch replaces an earlier one."),
    ] = False,
    new_batch_every: Annotated[
        float | None,
        typer.Option(
            "--new-batch-every",
            metavar="S",
            callback=_check_period,
            help="Add a successful batch (a new scoring run) to the dataset every S seconds.",
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Where generated parts are kept.")
    ] = None,
) -> None:
    """Run the local AEP emulator (Catalog, Data Access, IMS) until Ctrl-C.

    Example: asyncdl serve --port 8080 --parts 50 --part-size 16M --page-size 10
    --variant single-file --variant relative-hrefs
    """
    from ..emulator import DatasetSpec, Faults
    from ..emulator import serve as serve_emulator

    try:
        dataset = DatasetSpec(
            batches=batches,
            files_per_batch=files,
            parts_per_file=parts,
            rows_per_part=rows,
            part_bytes=parse_size(part_size) if part_size else None,
            nested=nested,
            append_only=append_only,
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
            rate_limit_debt=rate_limit_debt,
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
        variants=_variants(variant or [], every=all_variants, response_limit=response_limit),
        export_duration_s=export_duration,
        max_page_size=max_page_size,
        record_limit=10_000,  # a long-running server must not grow without bound
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
        if new_batch_every is not None:
            out.print(f"a new batch every {new_batch_every:g} s", markup=False)

    def new_batch(batch: TruthBatch) -> None:
        created = dt.datetime.fromtimestamp(batch.created_ms / 1000, tz=dt.UTC)
        out.print(
            f"new batch {batch.id} in dataset {batch.dataset_id}: {len(batch.parts)} parts,"
            f" {batch.size} bytes, created {created:%Y-%m-%dT%H:%M:%SZ}",
            markup=False,
        )

    async def job() -> None:
        async with anyio.create_task_group() as tg:
            if sys.platform != "win32":  # asyncio has no signal receivers on Windows
                tg.start_soon(_stop_on_sigterm, tg.cancel_scope)
            await serve_emulator(
                config,
                host=host,
                port=port,
                on_ready=ready,
                new_batch_every_s=new_batch_every,
                on_new_batch=new_batch,
            )

    def stopped() -> None:
        err.print("emulator stopped", markup=False)

    run_async(job, on_interrupt=stopped)  # Ctrl-C: exit code 130
    stopped()  # SIGTERM: exit code 0


async def _stop_on_sigterm(scope: anyio.CancelScope) -> None:
    """Stop cleanly on SIGTERM too: what process managers send, and what still arrives when a
    non-interactive shell started the server in the background with SIGINT ignored (the
    benchmark harness then waited 15 s per emulator for a SIGINT that could never land)."""
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


DEMO_OUT = "demo-scores"


@app.command("demo")
def demo_command(
    out_dir: out_option(DEMO_OUT) = None,  # type: ignore[valid-type]
    concurrency: Concurrency = None,
    retries: Retries = None,
    timeout: Timeout = None,
    segment_size: SegmentSize = None,
    segment_threshold: SegmentThreshold = None,
    store_memory: StoreMemory = None,
    adaptive: Adaptive = None,
    fsync: Fsync = None,
) -> None:
    """Start the emulator in-process, download its newest batch, and show a glimpse of the scores.

    Example: asyncdl demo --out ./demo-scores
    """
    from ..emulator import DatasetSpec, Faults, running_emulator
    from ..tools.scores import inspect_scores

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
    listener = make_listener(quiet=False, as_json=False)
    flags = DownloadFlags.of(locals(), out=out_dir or DEMO_OUT)
    flags.settings({})  # a bad value is a usage error before the emulator starts

    async def job() -> tuple[str, DownloadResult]:
        async with running_emulator(config) as emu:
            out.print(f"emulator running at {emu.base_url}", markup=False)
            settings = flags.settings({}, base_url=emu.base_url)
            credentials = Credentials(
                api_key=config.api_key,
                org_id=config.org_id,
                access_token=config.static_tokens[0],
            )
            out.print(
                f"$ asyncdl download {dataset.id} --out {settings.out_dir} "
                f"-j {settings.concurrency}",
                markup=False,
            )
            with listener:
                result = await download(
                    dataset.id, credentials=credentials, settings=settings, on_progress=listener
                )
            return emu.base_url, result

    _, result = run_async(job, on_interrupt=interrupted(listener))
    render_result(result)
    for report in result.batches:
        glimpse(Path(report.directory))
        out.print(f"$ asyncdl inspect {report.directory}", markup=False)
        try:
            render_report(inspect_scores(Path(report.directory)))
        except AsyncdlError as error:
            fail(str(error), exit_code_for(error))
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)
