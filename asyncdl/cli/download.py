"""``download``, ``batches`` and ``files``: the commands that talk to Catalog and Data Access."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from ..config import BatchSelection
from ..errors import ConfigError
from ..listing import Marker, OpenedPart, Rejected, iter_batches, iter_parts
from ..models import Batch, Part
from ..pipeline import DownloadResult, PlannedBatch, connect, download, plan
from ._common import (
    EPILOG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    credentials_from,
    emit,
    err,
    fail,
    iso,
    load_environment,
    mb,
    out,
    print_table,
    quietly,
    run_async,
)
from .options import (
    Adaptive,
    AllowHost,
    AsJson,
    BaseUrl,
    CaBundle,
    ChecksumOption,
    Concurrency,
    DownloadFlags,
    Fsync,
    Out,
    Quiet,
    Retries,
    SegmentSize,
    SegmentThreshold,
    StoreMemory,
    Timeout,
)
from .progress import batch_json, make_listener, summary_json
from .render import interrupted, render_plan, render_result
from .shards import PlanFile, run_cluster, run_shard

app = typer.Typer()


@app.command("download", epilog=EPILOG)
def download_command(
    ctx: typer.Context,
    dataset_id: Annotated[
        str | None,
        typer.Argument(help="The dataset to download (Customer AI: 'Access scores' dialog)."),
    ] = None,
    out_dir: Out = None,
    concurrency: Concurrency = None,
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
    base_url: BaseUrl = None,
    retries: Retries = None,
    timeout: Timeout = None,
    segment_size: SegmentSize = None,
    segment_threshold: SegmentThreshold = None,
    store_memory: StoreMemory = None,
    adaptive: Adaptive = None,
    fsync: Fsync = None,
    checksum: ChecksumOption = None,
    allow_host: AllowHost = None,
    ca_bundle: CaBundle = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="Fetch only shard K of N (1-based, e.g. 2/3): its parts, a manifest fragment "
            "per batch, and each batch finalized once all shards are in.",
        ),
    ] = None,
    plan_file: PlanFile = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Run on a Dask cluster: a scheduler address (tcp://host:8786) or local:N worker"
            " processes; -j is then the whole cluster's streams.",
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option("--shards", help="With --cluster: tasks per batch [one per worker]."),
    ] = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Download a dataset's newest successful batch (or --latest N, or --batch ID ...).

    Credentials come from AEP_ACCESS_TOKEN (or AEP_CLIENT_ID + AEP_CLIENT_SECRET), AEP_API_KEY,
    AEP_ORG_ID and AEP_SANDBOX (default prod), or from --config. Running it again resumes.

    Example: asyncdl download 5cd9146b31dae914b75f654f --out ./scores -j 16
    """
    if dataset_id is None and not batch and plan_file is None:
        fail("give a DATASET_ID or at least one --batch ID", EXIT_USAGE)
    if batch and latest != 1:
        fail("--latest and --batch are exclusive", EXIT_USAGE)
    environment = load_environment(ctx)
    flags = DownloadFlags.of(locals())
    settings = flags.settings(environment)
    credentials = credentials_from(environment)
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
    if cluster is not None:
        if shard is not None or plan_file is not None:
            fail("--cluster plans and shards the run itself: no --shard or --plan", EXIT_USAGE)
        run_cluster(
            dataset_id,
            cluster=cluster,
            shards=shards,
            arguments=arguments,
            quiet=quiet,
            as_json=as_json,
        )
    if shard is not None:
        run_shard(
            dataset_id,
            shard_text=shard,
            plan_file=plan_file,
            arguments=arguments,
            quiet=quiet,
            as_json=as_json,
        )
    if plan_file is not None:
        fail("--plan goes with --shard K/N", EXIT_USAGE)
    if dry_run:

        async def planning() -> list[PlannedBatch]:
            return await plan(dataset_id, **arguments)

        render_plan(run_async(planning, on_interrupt=quietly), as_json=as_json)
        raise typer.Exit(EXIT_OK)

    record = make_listener(quiet=quiet, as_json=as_json)

    async def job() -> DownloadResult:
        with record:
            return await download(dataset_id, on_progress=record, **arguments)

    result = run_async(job, on_interrupt=interrupted(record))
    if as_json:
        emit(summary_json(result, record))
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
    base_url: BaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List a dataset's batches, newest first (pages the Catalog as needed).

    Example: asyncdl batches 5cd9146b31dae914b75f654f --status success --limit 5
    """
    if limit < 1:
        fail(f"--limit must be at least 1, got {limit}", EXIT_USAGE)
    since_ms = _parse_since(since) if since else None
    environment = load_environment(ctx)
    credentials = credentials_from(environment)
    settings = DownloadFlags(base_url=base_url).settings(environment)

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

    batches = run_async(job, on_interrupt=quietly)
    if as_json:
        for item in batches:
            emit(batch_json(item))
        raise typer.Exit(EXIT_OK)
    rows = []
    for item in batches:
        m = item.metrics
        rows.append(
            (
                item.id,
                item.status,
                iso(item.created_ms),
                "-" if m.output_record_count is None else f"{m.output_record_count:,}",
                "-" if m.output_byte_size is None else mb(m.output_byte_size),
                "-" if m.output_file_count is None else str(m.output_file_count),
            )
        )
    print_table(
        f"batches of {dataset_id}",
        ("batch id", "status", "created", "records", "bytes", "files"),
        rows,
        right=3,
    )
    if not batches:
        out.print("no batches match", markup=False)


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
    base_url: BaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List every part of a batch with its size, across all pages and nested directories.

    Example: asyncdl files 01E5QSWCAASFQ054FNBKYV6TIQ --json
    """
    environment = load_environment(ctx)
    credentials = credentials_from(environment)
    settings = DownloadFlags(base_url=base_url).settings(environment)

    async def job() -> list[Part | Marker | Rejected]:
        entries: list[Part | Marker | Rejected] = []
        async with connect(credentials, settings=settings) as client:
            async for entry in iter_parts(client, batch_id):
                if isinstance(entry, OpenedPart):
                    entry.stream.close()  # listed, not downloaded
                    entries.append(entry.part)
                else:
                    entries.append(entry)
        return entries

    entries = run_async(job, on_interrupt=quietly)
    parts = [e for e in entries if isinstance(e, Part)]
    if as_json:
        for entry in entries:
            if isinstance(entry, Part):
                emit(
                    {
                        "name": entry.name,
                        "size": entry.size,
                        "directory": entry.dataset_file_id,
                        "href": entry.href,
                    }
                )
            elif isinstance(entry, Rejected):
                emit({"name": entry.name, "rejected": str(entry.error)})
        raise typer.Exit(EXIT_OK)
    print_table(
        f"parts of batch {batch_id}",
        ("name", "bytes", "directory"),
        [(p.name, f"{p.size:,}", p.dataset_file_id) for p in parts],
        right=1,
    )
    markers = sum(1 for e in entries if isinstance(e, Marker))
    out.print(
        f"{len(parts)} parts, {mb(sum(p.size for p in parts))} "
        f"({markers} _SUCCESS/commit markers not listed)",
        markup=False,
    )
    for entry in entries:
        if isinstance(entry, Rejected):
            err.print(f"  rejected {entry.name!r}: {entry.error}", markup=False)
