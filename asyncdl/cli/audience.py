"""``export-audience`` and ``export-jobs``: the seed's second path, audience → dataset → disk."""

from __future__ import annotations

from typing import Annotated

import typer

from ..audience import (
    ExportJob,
    ExportOutcome,
    ExportRequest,
    export_audience,
    iter_export_jobs,
)
from ..errors import ConfigError
from ..pipeline import connect
from ._common import (
    EPILOG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    credentials_from,
    emit,
    fail,
    iso,
    load_environment,
    out,
    parse_duration,
    print_table,
    quietly,
    run_async,
)
from .job_watch import JobWatch, job_json
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
    out_option,
)
from .progress import make_listener, summary_json
from .render import render_result

app = typer.Typer()

# -- audience exports ----------------------------------------------------------------------------

EXPORT_EPILOG = (
    "Exit codes: 0 exported and every part downloaded; 1 the job FAILED or timed out, or the "
    "download failed; 2 bad usage; 3 credentials refused; 130 interrupted (the job is cancelled "
    "unless --keep-job)."
)
AUDIENCE_OUT = "audience"


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
    out_dir: out_option(AUDIENCE_OUT) = None,  # type: ignore[valid-type]
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
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", hidden=True, help="First poll after (s).")
    ] = 1.0,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Export audiences to a dataset, wait for the job, and download its batch(es).

    Creates the dataset first with --create-dataset (and prints its id), asks Profile for the
    export, polls until it SUCCEEDED or FAILED, then downloads the output like `download`
    (verified, resumable, every download option). Ctrl-C or --wait-timeout cancel the job unless
    --keep-job.

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
    environment = load_environment(ctx)
    flags = DownloadFlags.of(locals(), out=out_dir or AUDIENCE_OUT)
    settings = flags.settings(environment)
    credentials = credentials_from(environment)
    watch = JobWatch(
        quiet=quiet, as_json=as_json, segments=len(request.segment_ids), dataset=dataset
    )
    record = make_listener(quiet=quiet, as_json=as_json)

    async def job() -> ExportOutcome:
        try:
            with record:
                return await export_audience(
                    request,
                    create_dataset_name=create_dataset_name,
                    timeout_s=timeout_s,
                    keep_job=keep_job,
                    poll_min_s=poll_interval,
                    credentials=credentials,
                    settings=settings,
                    listener=watch,
                    on_progress=record,
                )
        finally:
            watch.__exit__()

    outcome = run_async(job, on_interrupt=watch.interrupted(record, keep_job=keep_job))
    finished, result = outcome.job, outcome.result
    if result is None:
        if finished.profile_count:
            fail(f"export job {finished.id} SUCCEEDED but names no output batch", EXIT_FAILED)
        if as_json:
            emit({"event": "summary", "ok": True, "parts": 0, "export": job_json(finished)})
        else:
            out.print("no profiles were exported: nothing to download", markup=False)
        raise typer.Exit(EXIT_OK)
    if as_json:
        emit({**summary_json(result, record), "export": job_json(finished)})
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
    base_url: BaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List Profile export jobs, newest first (follows the API's pages as needed).

    Example: asyncdl export-jobs --status SUCCEEDED --limit 5
    """
    if limit < 1:
        fail(f"--limit must be at least 1, got {limit}", EXIT_USAGE)
    environment = load_environment(ctx)
    credentials = credentials_from(environment)
    settings = DownloadFlags(base_url=base_url).settings(environment)

    async def job() -> list[ExportJob]:
        async with connect(credentials, settings=settings) as client:
            return [j async for j in iter_export_jobs(client, status=status, limit=limit)]

    jobs = run_async(job, on_interrupt=quietly)
    if as_json:
        for item in jobs:
            emit(job_json(item))
        raise typer.Exit(EXIT_OK)
    print_table(
        "export jobs",
        ("job id", "status", "dataset", "created", "profiles"),
        [
            (
                str(j.id),
                j.raw_status,
                j.dataset_id or "-",
                iso(j.created_ms),
                "-" if j.profile_count is None else f"{j.profile_count:,}",
            )
            for j in jobs
        ],
        right=4,
    )
    if not jobs:
        out.print("no export jobs match", markup=False)
