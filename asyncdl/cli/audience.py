"""``export-audience`` and ``export-jobs``: the seed's second path, audience → dataset → disk."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.progress import (
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ..audience import (
    ExportJob,
    ExportOutcome,
    ExportRequest,
    export_audience,
    iter_export_jobs,
)
from ..errors import AsyncdlError, ConfigError
from ..pipeline import connect
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
    Quiet,
    Retries,
    SegmentSize,
    SegmentThreshold,
    Timeout,
    out_option,
)
from .progress import RunRecord, make_listener, summary_json
from .render import interrupted, render_result

app = typer.Typer()

# -- audience exports ----------------------------------------------------------------------------

EXPORT_EPILOG = (
    "Exit codes: 0 exported and every part downloaded; 1 the job FAILED or timed out, or the "
    "download failed; 2 bad usage; 3 credentials refused; 130 interrupted (the job is cancelled "
    "unless --keep-job)."
)
AUDIENCE_OUT = "audience"
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

    def __init__(
        self, *, quiet: bool, as_json: bool, segments: int = 1, dataset: str | None = None
    ) -> None:
        self._quiet = quiet
        self._as_json = as_json
        self._segments = segments
        self._dataset = dataset
        self.started = time.monotonic()
        self.job_id: int | None = None
        self.status: str | None = None
        self.downloading = False
        self.cancel_asked = False
        self.cancel_error: AsyncdlError | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> JobWatch:
        if not (self._quiet or self._as_json) and err.is_terminal and self._progress is None:
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
            self._progress = None

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def on_status(self, job: ExportJob) -> None:
        changed = job.raw_status != self.status
        self.status = job.raw_status
        if self._as_json:
            if changed:
                emit(
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

    def on_dataset_created(self, dataset_id: str, name: str) -> None:
        if self._as_json:
            emit({"event": "dataset", "dataset_id": dataset_id, "name": name})
        else:
            out.print(f"created dataset {dataset_id} ({name})", markup=False)

    def on_job_created(self, job: ExportJob) -> None:
        self.job_id = job.id
        if self._as_json:
            emit({"event": "job_created", **_job_json(job)})
        else:
            out.print(
                f"export job {job.id} created: {self._segments} segment(s) "
                f"into dataset {job.dataset_id or self._dataset or '-'}",
                markup=False,
            )
        self.__enter__()  # the spinner runs while the job does

    def on_wait_broken(self, job_id: int, error: AsyncdlError) -> None:
        self.__exit__()
        err.print(
            f"asyncdl: export job {job_id} may still be running "
            "(check it with: asyncdl export-jobs)",
            markup=False,
        )

    def on_finished(self, job: ExportJob) -> None:
        self.__exit__()
        if not self._as_json:
            profiles = "?" if job.profile_count is None else f"{job.profile_count:,}"
            out.print(
                f"export job {job.id} {job.raw_status} after {self.elapsed_s:.1f} s: "
                f"{profiles} profiles in batch {', '.join(job.batch_ids) or '-'}",
                markup=False,
            )
        self.downloading = bool(job.batch_ids)

    def interrupted(self, record: RunRecord, *, keep_job: bool) -> Callable[[], None]:
        def report() -> None:
            if self.downloading:
                interrupted(record)()
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
    out_dir: out_option(AUDIENCE_OUT) = None,  # type: ignore[valid-type]
    concurrency: Concurrency = None,
    base_url: BaseUrl = None,
    retries: Retries = None,
    timeout: Timeout = None,
    segment_size: SegmentSize = None,
    segment_threshold: SegmentThreshold = None,
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
    flags = DownloadFlags(
        out=out_dir or AUDIENCE_OUT,
        concurrency=concurrency,
        retries=retries,
        timeout=timeout,
        segment_size=segment_size,
        segment_threshold=segment_threshold,
        adaptive=adaptive,
        fsync=fsync,
        checksum=checksum,
        allow_host=allow_host,
        ca_bundle=ca_bundle,
        base_url=base_url,
    )
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
            emit({"event": "summary", "ok": True, "parts": 0, "export": _job_json(finished)})
        else:
            out.print("no profiles were exported: nothing to download", markup=False)
        raise typer.Exit(EXIT_OK)
    if as_json:
        emit({**summary_json(result, record), "export": _job_json(finished)})
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
            emit(_job_json(item))
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
