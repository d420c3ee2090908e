"""``plan`` and ``finalize``, and the sharded form of ``download`` (``--shard K/N``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..config import BatchSelection, Credentials, DownloadSettings
from ..errors import ConfigError
from ..shards import (
    Finalized,
    ShardResult,
    ShardSpec,
    download_shard,
    finalize,
    make_plan,
    read_plan,
    write_plan,
)
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
    out,
    quietly,
    run_async,
)
from .options import BaseUrl, DownloadFlags, Out
from .progress import make_listener, summary_json
from .render import interrupted, render_result

app = typer.Typer()

Latest = Annotated[int, typer.Option("--latest", help="How many of the newest successful batches.")]
BatchIds = Annotated[
    list[str] | None,
    typer.Option("--batch", help="A batch id (repeatable); skips the Catalog."),
]
Include = Annotated[
    list[str] | None, typer.Option("--include", help="Only part names matching this glob.")
]
Exclude = Annotated[
    list[str] | None, typer.Option("--exclude", help="Skip part names matching this glob.")
]
PlanFile = Annotated[
    str | None,
    typer.Option("--plan", help="A plan written by `asyncdl plan --write` (path or URL)."),
]


def _selection(dataset_id: str | None, latest: int, batch: list[str] | None) -> BatchSelection:
    if dataset_id is None and not batch:
        fail("give a DATASET_ID or at least one --batch ID", EXIT_USAGE)
    try:
        return BatchSelection(latest=latest, batch_ids=tuple(batch or ()))
    except ConfigError as error:
        fail(str(error), EXIT_USAGE)


def render_finalized(outcomes: tuple[Finalized, ...], *, as_json: bool) -> bool:
    """One line per batch; whether all of them are final and reconciled."""
    ok = True
    for outcome in outcomes:
        ok = ok and outcome.ok
        if as_json:
            emit(
                {
                    "event": "finalized",
                    "batch_id": outcome.batch_id,
                    "ok": outcome.ok,
                    "shards": outcome.shards,
                    "missing_shards": list(outcome.missing),
                    "problems": list(outcome.problems),
                }
            )
            continue
        if outcome.ok:
            out.print(
                f"batch {outcome.batch_id}: finalized from {outcome.shards} shards, "
                "matches the Catalog's metrics",
                markup=False,
            )
            continue
        if outcome.missing:
            shards = ", ".join(f"{k}/{outcome.shards}" for k in outcome.missing)
            err.print(
                f"asyncdl: batch {outcome.batch_id}: not final, missing shards {shards}",
                markup=False,
            )
        for problem in outcome.problems:
            err.print(f"asyncdl: batch {outcome.batch_id}: {problem}", markup=False)
        rec = outcome.reconciliation
        if rec is not None and not rec.ok:
            err.print(
                f"asyncdl: batch {outcome.batch_id} does not match the Catalog: bytes "
                f"{rec.actual_bytes} vs {rec.expected_bytes}, rows {rec.actual_rows} vs "
                f"{rec.expected_rows}",
                markup=False,
            )
    return ok


def run_shard(
    dataset_id: str | None,
    *,
    shard_text: str,
    plan_file: str | None,
    arguments: dict[str, Any],
    quiet: bool,
    as_json: bool,
) -> None:
    """``download --shard K/N``: this shard's share, its fragments, and any batch it can finish."""
    try:
        shard = ShardSpec.parse(shard_text)
    except ConfigError as error:
        fail(str(error), EXIT_USAGE)
    record = make_listener(quiet=quiet, as_json=as_json)

    async def job() -> ShardResult:
        shard_plan = None if plan_file is None else await read_plan(plan_file)
        with record:
            return await download_shard(
                dataset_id, shard=shard, shard_plan=shard_plan, on_progress=record, **arguments
            )

    result = run_async(job, on_interrupt=interrupted(record))
    if as_json:
        emit({**summary_json(result.download, record), "shard": str(shard)})
    else:
        render_result(result.download)
    render_finalized(result.finalized, as_json=as_json)
    if not as_json and not result.finalized and result.ok:
        out.print(
            f"shard {shard} done; the batches are final once every shard is "
            "(or run: asyncdl finalize)",
            markup=False,
        )
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def run_cluster(
    dataset_id: str | None,
    *,
    cluster: str,
    shards: int | None,
    arguments: dict[str, Any],
    quiet: bool,
    as_json: bool,
) -> None:
    """``download --cluster``: the run planned once, its tasks on Dask, the batches finalized."""
    from ..cluster import ClusterResult, download_on_cluster

    record = make_listener(quiet=quiet, as_json=as_json)

    async def job() -> ClusterResult:
        with record:
            return await download_on_cluster(
                dataset_id, cluster=cluster, shards=shards, on_progress=record, **arguments
            )

    result = run_async(job, on_interrupt=interrupted(record))
    for task in result.tasks:
        for relpath, error in task.failed:
            err.print(f"  failed {task.batch_id}/{relpath} (shard {task.shard}): {error}")
    ok = render_finalized(result.finalized, as_json=as_json)
    fetched = result.fetched_bytes
    if as_json:
        emit(
            {
                "event": "summary",
                "ok": result.ok,
                "tasks": len(result.tasks),
                "downloaded": sum(t.downloaded for t in result.tasks),
                "skipped": sum(t.skipped for t in result.tasks),
                "fetched_bytes": fetched,
                "seconds": round(result.elapsed_s, 3),
            }
        )
    else:
        out.print(
            f"{len(result.tasks)} tasks on {cluster}: {sum(t.downloaded for t in result.tasks)} "
            f"parts fetched ({fetched / 1e6:,.1f} MB) in {result.elapsed_s:.1f} s",
            markup=False,
        )
    raise typer.Exit(EXIT_OK if result.ok and ok else EXIT_FAILED)


def _settings(
    ctx: typer.Context, out_dir: str | None, base_url: str | None
) -> tuple[Credentials, DownloadSettings]:
    environment = load_environment(ctx)
    settings = DownloadFlags(out=out_dir, base_url=base_url).settings(environment)
    return credentials_from(environment), settings


@app.command("plan", epilog=EPILOG)
def plan_command(
    ctx: typer.Context,
    dataset_id: Annotated[str | None, typer.Argument(help="The dataset to plan.")] = None,
    shards: Annotated[int, typer.Option("--shards", help="How many shards will share it.")] = 1,
    write: Annotated[
        str, typer.Option("--write", help="Where to write the plan (path or URL).")
    ] = "plan.json",
    latest: Latest = 1,
    batch: BatchIds = None,
    include: Include = None,
    exclude: Exclude = None,
    base_url: BaseUrl = None,
) -> None:
    """List the selection once into a plan, for `download --plan PLAN --shard K/N` to fetch
    without listing again (every shard then works from the same listing).

    Example: asyncdl plan 5cd9146b31dae914b75f654f --shards 4 --write s3://bucket/plan.json
    """
    selection = _selection(dataset_id, latest, batch)
    credentials, settings = _settings(ctx, None, base_url)

    async def job() -> int:
        shard_plan = await make_plan(
            dataset_id,
            shards=shards,
            latest=selection.latest,
            batch_ids=selection.batch_ids,
            include=tuple(include or ()),
            exclude=tuple(exclude or ()),
            credentials=credentials,
            settings=settings,
        )
        await write_plan(write, shard_plan)
        return sum(len(b.parts) for b in shard_plan.batches)

    parts = run_async(job, on_interrupt=quietly)
    out.print(f"plan of {parts} parts for {shards} shards written to {write}", markup=False)
    raise typer.Exit(EXIT_OK)


@app.command("finalize", epilog=EPILOG)
def finalize_command(
    ctx: typer.Context,
    dataset_id: Annotated[
        str | None, typer.Argument(help="The dataset the shards fetched.")
    ] = None,
    out_dir: Out = None,
    shards: Annotated[
        int | None, typer.Option("--shards", help="How many shards [from the fragments].")
    ] = None,
    plan_file: PlanFile = None,
    latest: Latest = 1,
    batch: BatchIds = None,
    include: Include = None,
    exclude: Exclude = None,
    base_url: BaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per batch.")] = False,
) -> None:
    """Check every shard's fragment of each batch and write the batch's manifest: one complete
    fragment per shard, of the same plan, every planned part exactly once and verified, bytes
    and rows matching the Catalog. Exit 1 naming the missing shards otherwise.

    Example: asyncdl finalize 5cd9146b31dae914b75f654f --out /data/scores --shards 4
    """
    selection = BatchSelection() if plan_file else _selection(dataset_id, latest, batch)
    credentials, settings = _settings(ctx, out_dir, base_url)

    async def job() -> tuple[Finalized, ...]:
        shard_plan = None if plan_file is None else await read_plan(plan_file)
        return await finalize(
            dataset_id,
            shards=shards,
            shard_plan=shard_plan,
            latest=selection.latest,
            batch_ids=selection.batch_ids,
            include=tuple(include or ()),
            exclude=tuple(exclude or ()),
            credentials=credentials,
            settings=settings,
        )

    ok = render_finalized(run_async(job, on_interrupt=quietly), as_json=as_json)
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)
