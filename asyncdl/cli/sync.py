"""``sync``: keep a dataset's current view on disk (the daily cron job)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..current import DEFAULT_KEEP, DEFAULT_LOOKBACK_S, SyncResult, sync
from ._common import (
    EPILOG,
    EXIT_FAILED,
    EXIT_OK,
    credentials_from,
    emit,
    err,
    fail,
    load_environment,
    mb,
    out,
    parse_duration,
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
from .progress import make_listener, summary_json
from .render import interrupted, render_result

app = typer.Typer()


@app.command("sync", epilog=EPILOG)
def sync_command(
    ctx: typer.Context,
    dataset_id: Annotated[str, typer.Argument(help="The dataset whose current view to keep.")],
    out_dir: Out = None,
    keep: Annotated[
        int,
        typer.Option(
            "--keep",
            help="Superseded batches kept on disk, newest first, besides the current view "
            f"[{DEFAULT_KEEP}].",
        ),
    ] = DEFAULT_KEEP,
    lookback: Annotated[
        str,
        typer.Option(
            "--lookback",
            help="Ask the Catalog again for batches created this long before the newest seen"
            f" (one created earlier can succeed later) [{DEFAULT_LOOKBACK_S / 3600:g}h].",
        ),
    ] = f"{DEFAULT_LOOKBACK_S / 3600:g}h",
    concurrency: Concurrency = None,
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
    """Keep OUT at the dataset's current view: its successful batches minus every batch a later
    one replaces (a Customer AI chain: its newest run; an append-only dataset: every batch).

    Asks the Catalog only for what may be new, downloads what the view lacks, then names the
    complete view in OUT/CURRENT and prunes superseded batches beyond --keep. State lives in
    OUT/.asyncdl/; one sync at a time per OUT (exit 75 if another holds it).

    Example (cron): asyncdl sync 5cd9146b31dae914b75f654f --out /data/scores --json
    """
    try:
        lookback_s = parse_duration(lookback) if lookback.strip() not in ("0", "0s") else 0.0
    except typer.BadParameter as error:
        fail(f"--lookback: {error}", 2)
    environment = load_environment(ctx)
    flags = DownloadFlags.of(locals())
    settings = flags.settings(environment)
    credentials = credentials_from(environment)
    record = make_listener(quiet=quiet, as_json=as_json)

    async def job() -> SyncResult:
        with record:
            return await sync(
                dataset_id,
                keep=keep,
                lookback_s=lookback_s,
                credentials=credentials,
                settings=settings,
                on_progress=record,
            )

    result = run_async(job, on_interrupt=interrupted(record))
    if as_json:
        emit(_summary(result, summary_json(result.fetched, record)))
    else:
        _render(result, quiet=quiet)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def _summary(result: SyncResult, fetched: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": "sync",
        "ok": result.ok,
        "dataset_id": result.dataset_id,
        "new": list(result.new),
        "fetched": {
            "batches": [b.batch.id for b in result.fetched.batches],
            "parts": result.fetched.downloaded,
            "bytes": result.fetched.fetched_bytes,
        },
        "superseded": list(result.superseded),
        "pruned": list(result.pruned),
        "current": list(result.current),
        "current_complete": result.current_complete,
        "rebuilt": result.rebuilt,
        "download": fetched,
    }


def _render(result: SyncResult, *, quiet: bool) -> None:
    """Plain lines, one fact each, for cron mail and logs."""
    if result.rebuilt:
        err.print(f"asyncdl: {result.rebuilt}", markup=False)
    if result.fetched.batches and not quiet:
        render_result(result.fetched)
    new = f"{len(result.new)} new batch{'es' if len(result.new) != 1 else ''}"
    if result.new:
        new += f" ({', '.join(result.new)})"
    fetched = result.fetched
    out.print(
        f"sync {result.dataset_id}: {new}, {fetched.downloaded} parts fetched "
        f"({mb(fetched.fetched_bytes)})",
        markup=False,
    )
    state = "complete" if result.current_complete else "INCOMPLETE (CURRENT unchanged)"
    out.print(f"current: {', '.join(result.current) or '-'} ({state})", markup=False)
    if result.superseded:
        out.print(f"superseded: {', '.join(result.superseded)}", markup=False)
    if result.pruned:
        out.print(f"pruned: {', '.join(result.pruned)}", markup=False)
