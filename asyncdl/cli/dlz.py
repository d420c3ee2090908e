"""``dlz exports`` and ``dlz download``: a dataset's exports in the Data Landing Zone."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..dlz.completeness import DEFAULT_SETTLE_S
from ..errors import ConfigError
from ._common import (
    EPILOG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    credentials_from,
    emit,
    err,
    fail,
    load_environment,
    mb,
    out,
    parse_duration,
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
    Quiet,
    Retries,
    SegmentSize,
    SegmentThreshold,
    StoreMemory,
    Timeout,
)
from .progress import make_listener, summary_json
from .render import interrupted, render_plan, render_result

if TYPE_CHECKING:  # the landing zone's modules (and obstore) load when a command runs
    from ..dlz import DlzDownload, Export, ExportsFound, Zone

app = typer.Typer(
    help="A dataset's exports in the Data Landing Zone (dataset export destinations).",
    no_args_is_help=True,
)

_EXPORT_TIME = re.compile(r"^\d{12}$")

DatasetId = Annotated[str, typer.Argument(help="The exported dataset.")]
Folder = Annotated[
    str | None,
    typer.Option(
        "--folder",
        help="The dataflow's folder in the landing zone (e.g. cmle/egress) [searched].",
    ),
]
Settle = Annotated[
    str,
    typer.Option(
        "--settle",
        help="An export folder without a manifest counts as complete once nothing in it was"
        f" written for this long [{DEFAULT_SETTLE_S / 60:g}m].",
    ),
]
S3Endpoint = Annotated[
    str | None,
    typer.Option(
        "--s3-endpoint",
        help="An AWS-provisioned landing zone's S3 endpoint [https://s3.REGION.amazonaws.com].",
    ),
]
S3Region = Annotated[
    str | None,
    typer.Option("--s3-region", help="An AWS-provisioned landing zone's region [us-east-1]."),
]
_OUT_HELP = (
    "Where OUT/<dataset id>/exportTime=<time>/<file> goes: a directory, or s3://BUCKET/PREFIX,"
    " az://CONTAINER/PREFIX (abfs://, abfss://), gs://BUCKET/PREFIX [scores]."
)


def _zone(folder: str | None, settle: str, s3_endpoint: str | None, s3_region: str | None) -> Zone:
    try:
        from ..dlz import Zone
    except ConfigError as error:  # obstore is not installed
        fail(str(error), EXIT_USAGE)
    try:
        settle_s = 0.0 if settle.strip() in ("0", "0s") else parse_duration(settle)
    except typer.BadParameter as error:
        fail(f"--settle: {error}", EXIT_USAGE)
    return Zone(folder=folder, settle_s=settle_s, s3_endpoint=s3_endpoint, s3_region=s3_region)


def export_json(export: Export) -> dict[str, Any]:
    """One export folder as ``--json`` shows it (no URL: the landing zone's are signed)."""
    check = export.completeness
    return {
        "export_time": export.export_time,
        "when": export.when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "folder": export.folder,
        "files": len(export.files),
        "bytes": export.bytes,
        "complete": check.complete,
        "check": check.kind.value,
        "detail": check.detail,
        "manifests": list(export.manifests),
        "rejected": [{"name": name, "reason": why} for name, why in export.rejected],
    }


@app.command("exports", epilog=EPILOG)
def exports_command(
    ctx: typer.Context,
    dataset_id: DatasetId,
    folder: Folder = None,
    settle: Settle = f"{DEFAULT_SETTLE_S / 60:g}m",
    s3_endpoint: S3Endpoint = None,
    s3_region: S3Region = None,
    base_url: BaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List the dataset's export folders in the landing zone, newest first: export time, files,
    bytes, and whether each is complete (and which check said so).

    Example: asyncdl dlz exports 5cd9146b31dae914b75f654f
    """
    zone = _zone(folder, settle, s3_endpoint, s3_region)
    environment = load_environment(ctx)
    credentials = credentials_from(environment)
    settings = DownloadFlags(base_url=base_url).settings(environment)

    async def job() -> ExportsFound:
        from ..dlz import list_exports

        return await list_exports(dataset_id, zone=zone, credentials=credentials, settings=settings)

    found = run_async(job, on_interrupt=quietly)
    if as_json:
        for export in found.exports:
            emit({"event": "export", "dataset_id": dataset_id, **export_json(export)})
        raise typer.Exit(EXIT_OK)
    rows = [
        (
            e.export_time,
            e.when.strftime("%Y-%m-%d %H:%M:%SZ"),
            str(len(e.files)),
            mb(e.bytes),
            ("complete" if e.completeness.complete else "HELD BACK")
            + f" ({e.completeness.kind.value})",
        )
        for e in found.exports
    ]
    print_table(
        f"exports of {dataset_id} in {found.where}",
        ("export time", "when", "files", "bytes", "check"),
        rows,
        right=2,
    )
    for export in found.exports:
        out.print(f"  {export.export_time}: {export.completeness.detail}", markup=False)


@app.command("download", epilog=EPILOG)
def download_command(
    ctx: typer.Context,
    dataset_id: DatasetId,
    out_dir: Annotated[str | None, typer.Option("--out", "-o", help=_OUT_HELP)] = None,
    export_time: Annotated[
        str | None,
        typer.Option("--export-time", help="The export to fetch (YYYYMMDDHHMM) [the newest]."),
    ] = None,
    all_new: Annotated[
        bool,
        typer.Option("--all-new", help="Every complete export not yet downloaded into OUT."),
    ] = False,
    partial: Annotated[
        bool,
        typer.Option("--partial", help="Also take an export that does not add up (yet)."),
    ] = False,
    folder: Folder = None,
    settle: Settle = f"{DEFAULT_SETTLE_S / 60:g}m",
    s3_endpoint: S3Endpoint = None,
    s3_region: S3Region = None,
    concurrency: Concurrency = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Only file names matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Skip file names matching this glob (wins over include)."),
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
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Download the dataset's newest complete export from the landing zone (or --export-time
    T, or --all-new) into OUT/<dataset id>/exportTime=<T>/, verified like any batch (size,
    parquet footer, the blob's Content-MD5, content hash) with a manifest per export.

    Credentials are AEP's (as for download); the landing zone's SAS or AWS keys are asked of
    AEP for this run and never shown. Running it again resumes.

    Example: asyncdl dlz download 5cd9146b31dae914b75f654f --out ./exports --all-new
    """
    if export_time is not None and all_new:
        fail("--export-time and --all-new are exclusive", EXIT_USAGE)
    if export_time is not None and not _EXPORT_TIME.match(export_time):
        fail(f"--export-time takes YYYYMMDDHHMM, got {export_time!r}", EXIT_USAGE)
    zone = _zone(folder, settle, s3_endpoint, s3_region)
    environment = load_environment(ctx)
    flags = DownloadFlags.of(locals())
    settings = flags.settings(environment)
    credentials = credentials_from(environment)
    record = make_listener(quiet=quiet or dry_run, as_json=as_json and not dry_run)

    async def job() -> DlzDownload:
        from ..dlz import download_exports

        with record:
            return await download_exports(
                dataset_id,
                export_time=export_time,
                all_new=all_new,
                partial=partial,
                dry_run=dry_run,
                zone=zone,
                include=tuple(include or ()),
                exclude=tuple(exclude or ()),
                credentials=credentials,
                settings=settings,
                on_progress=record,
            )

    result = run_async(job, on_interrupt=interrupted(record))
    if dry_run:
        _held_back(result)
        if result.already and not as_json:
            err.print(
                f"asyncdl: already complete: exportTime={', '.join(result.already)}", markup=False
            )
        render_plan(list(result.planned), as_json=as_json)
        raise typer.Exit(EXIT_OK)
    if as_json:
        emit(_summary(result, summary_json(result.fetched, record)))
    else:
        _render(result, quiet=quiet)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def _summary(result: DlzDownload, fetched: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": "dlz-download",
        "ok": result.ok,
        "dataset_id": result.dataset_id,
        "landing_zone": result.where,
        "exports": [export_json(e) for e in result.chosen],
        "held_back": [export_json(e) for e in result.held_back],
        "already_complete": list(result.already),
        "rebuilt": result.rebuilt,
        "download": fetched,
    }


def _held_back(result: DlzDownload) -> None:
    for export in result.held_back:
        err.print(
            f"asyncdl: warning: exportTime={export.export_time} held back: "
            f"{export.completeness.detail}",
            markup=False,
        )


def _render(result: DlzDownload, *, quiet: bool) -> None:
    """Which exports, checked how, then the download's own summary."""
    if result.rebuilt:
        err.print(f"asyncdl: {result.rebuilt}", markup=False)
    _held_back(result)
    for export in result.chosen:
        check = export.completeness
        state = "complete" if check.complete else "INCOMPLETE (--partial)"
        out.print(
            f"exportTime={export.export_time}: {len(export.files)} files, {mb(export.bytes)}, "
            f"{state} by {check.kind.value}: {check.detail}",
            markup=False,
        )
    if result.already:
        out.print(
            f"already downloaded: {len(result.already)} exports ({', '.join(result.already)})",
            markup=False,
        )
    if result.fetched.batches and not quiet:
        render_result(result.fetched)
    elif not result.chosen:
        out.print(f"dlz {result.dataset_id}: no new export to fetch", markup=False)
