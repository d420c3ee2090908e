"""Profile export jobs: the API calls, without printing (their values: ``values.py``).

Owns ``POST /data/foundation/catalog/dataSets`` for a new target
dataset, and ``/data/core/ups/export/jobs``: create a job, poll it with capped backoff until it
SUCCEEDED or FAILED (bounded by a timeout), cancel it, list jobs across relative ``link.next``
pages. A wait that is cancelled (Ctrl-C) or runs out of time first asks AEP to cancel the job, in
a shielded and time-boxed scope, unless the caller keeps it; the cancellation itself always goes
on. Downloading the output is ``workflow``'s: a finished ``ExportJob`` carries its batch ids.
Answers spell the destination's dataset key ``datasetId`` or ``dataSetId``: both are accepted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from urllib.parse import quote, urlencode

import anyio

from ..client import AEPClient
from ..errors import (
    AsyncdlError,
    ConfigError,
    ExportJobError,
    ExportJobFailedError,
    ExportTimeoutError,
    ProtocolError,
)
from ..models import CATALOG_PATH, EXPORT_JOBS_PATH, UPS_PATH
from .values import PROFILE_UNION_SCHEMA_ID, ExportJob, ExportRequest, JobStatus

__all__ = [
    "cancel_job",
    "create_dataset",
    "create_export_job",
    "get_export_job",
    "iter_export_jobs",
    "wait_for_job",
]

XED_CONTENT_TYPE = "application/vnd.adobe.xed+json;version=1"
#: How long a cancelled or timed-out wait may spend asking AEP to cancel the job: a dead network
#: must not turn Ctrl-C into a hang.
CANCEL_TIMEOUT_S = 15.0
JOBS_PAGE_MAX = 50


def _job_url(client: AEPClient, job_id: int) -> str:
    return client.api_url(f"{EXPORT_JOBS_PATH}/{quote(str(job_id))}")


async def create_dataset(
    client: AEPClient, name: str, *, schema_id: str = PROFILE_UNION_SCHEMA_ID
) -> str:
    """Create an empty dataset on the profile union schema (the export target); its id."""
    if not name.strip():
        raise ConfigError("a dataset needs a non-empty name")
    body = {"name": name, "schemaRef": {"id": schema_id, "contentType": XED_CONTENT_TYPE}}
    answer = await client.post_json(client.api_url(f"{CATALOG_PATH}/dataSets"), body)
    # Catalog answers ["@/dataSets/{id}"].
    if isinstance(answer, list) and answer and isinstance(answer[0], str):
        dataset_id = answer[0].rstrip("/").rsplit("/", 1)[-1]
        if dataset_id and dataset_id != "@":
            return dataset_id
    raise ProtocolError(f"Catalog created a dataset but answered {answer!r}, not ['@/dataSets/ID']")


async def create_export_job(client: AEPClient, request: ExportRequest) -> ExportJob:
    """Ask Profile to export ``request``'s segments; the job as queued (usually NEW).

    Not retried after the request may have reached AEP (see ``AEPClient.post_json``): a second
    job would export everything twice.
    """
    answer = await client.post_json(client.api_url(EXPORT_JOBS_PATH), request.to_json())
    return ExportJob.from_json(answer)


async def get_export_job(client: AEPClient, job_id: int) -> ExportJob:
    """The job's current state."""
    return ExportJob.from_json(await client.get_json(_job_url(client, job_id)))


async def cancel_job(client: AEPClient, job_id: int) -> None:
    """Ask AEP to cancel the job (``DELETE``; retried like a read: it is idempotent)."""
    await client.delete(_job_url(client, job_id))


async def _abandon(
    client: AEPClient,
    job_id: int,
    *,
    cancel_timeout_s: float,
    on_cancel: Callable[[int, AsyncdlError | None], None] | None,
) -> AsyncdlError | None:
    """Cancel the job even while our own task is being cancelled; the failure, if any."""
    error: AsyncdlError | None = None
    # Shielded: the wait around us is already cancelled, and without the shield the DELETE
    # would be cancelled at its first await. The deadline keeps a dead network from hanging it.
    with anyio.CancelScope(shield=True, deadline=anyio.current_time() + cancel_timeout_s) as scope:
        try:
            await cancel_job(client, job_id)
        except AsyncdlError as exc:
            error = exc
    if scope.cancelled_caught and error is None:
        error = ExportJobError(f"no answer to the cancel request within {cancel_timeout_s:g} s")
    if on_cancel is not None:
        on_cancel(job_id, error)
    return error


async def wait_for_job(
    client: AEPClient,
    job_id: int,
    *,
    timeout_s: float | None = None,
    poll_min_s: float = 1.0,
    poll_max_s: float = 10.0,
    on_status: Callable[[ExportJob], None] | None = None,
    keep_job: bool = False,
    cancel_timeout_s: float = CANCEL_TIMEOUT_S,
    on_cancel: Callable[[int, AsyncdlError | None], None] | None = None,
) -> ExportJob:
    """Poll the job until it SUCCEEDED (returned) or FAILED/CANCELLED (ExportJobFailedError).

    Polls start ``poll_min_s`` apart and double up to ``poll_max_s``; ``on_status`` sees every
    answer. After ``timeout_s`` (None: no limit) raises ExportTimeoutError. When the wait is
    cancelled or times out, AEP is asked to cancel the job first unless ``keep_job``;
    ``on_cancel(job_id, error or None)`` reports how that went. The cancellation is re-raised.
    """
    if poll_min_s <= 0 or poll_max_s < poll_min_s:
        raise ConfigError("poll intervals must satisfy 0 < poll_min_s <= poll_max_s")
    if timeout_s is not None and timeout_s <= 0:
        raise ConfigError(f"the wait timeout must be positive, got {timeout_s:g} s")
    last: ExportJob | None = None
    try:
        with anyio.move_on_after(timeout_s):
            delay = poll_min_s
            while True:
                last = await get_export_job(client, job_id)
                if on_status is not None:
                    on_status(last)
                if last.status is JobStatus.SUCCEEDED:
                    return last
                if last.status.finished:
                    raise ExportJobFailedError(
                        job_id=last.id,
                        status=last.raw_status,
                        errors=[(e.code, e.message) for e in last.errors],
                    )
                await anyio.sleep(delay)
                delay = min(delay * 2, poll_max_s)
    except anyio.get_cancelled_exc_class():
        if not keep_job:
            await _abandon(client, job_id, cancel_timeout_s=cancel_timeout_s, on_cancel=on_cancel)
        raise
    # Only the timeout leaves the block without returning or raising.
    assert timeout_s is not None
    error = None
    if not keep_job:
        error = await _abandon(
            client, job_id, cancel_timeout_s=cancel_timeout_s, on_cancel=on_cancel
        )
    raise ExportTimeoutError(
        job_id=job_id,
        timeout_s=timeout_s,
        last_status=None if last is None else last.raw_status,
        cancelled=not keep_job and error is None,
        cancel_error=error,
    )


def _next_url(client: AEPClient, link: object) -> str | None:
    """``link.next`` is relative to the Profile service: "/export/jobs/?limit=2&offset=.."."""
    if not isinstance(link, str) or not link.strip():
        return None
    link = link.strip()
    if "://" in link:
        return link  # absolute: the client's origin lock still decides where it may go
    if link.startswith("?"):
        return client.api_url(EXPORT_JOBS_PATH) + link
    path = link if link.startswith("/") else f"/{link}"
    if not path.startswith(f"{UPS_PATH}/"):
        path = UPS_PATH + path
    return client.api_url(path)


async def iter_export_jobs(
    client: AEPClient,
    *,
    status: JobStatus | str | None = None,
    limit: int | None = None,
    page_size: int = JOBS_PAGE_MAX,
) -> AsyncIterator[ExportJob]:
    """Export jobs as AEP lists them (newest first), following ``link.next`` page by page.

    ``limit`` bounds how many are yielded (None: all); ``page_size`` how many one request asks for.
    """
    # Sent as given (upper-cased): a status this version does not know still filters.
    wanted = status.value if isinstance(status, JobStatus) else (status or "").strip().upper()
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    if page_size < 1:
        raise ConfigError(f"page_size must be at least 1, got {page_size}")
    params = {"limit": str(min(limit or page_size, page_size))}
    if wanted:
        params["status"] = wanted
    next_url: str | None = f"{client.api_url(EXPORT_JOBS_PATH)}?{urlencode(params)}"
    seen: set[str] = set()
    remaining = limit
    while next_url is not None:
        if next_url in seen:  # a page linking back to itself must not loop us forever
            raise ProtocolError(f"export job listing loops back to {next_url}")
        seen.add(next_url)
        body = await client.get_json(next_url)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise ProtocolError(f"{next_url} answered without a records list")
        for record in records:
            job = ExportJob.from_json(record)
            if wanted and job.raw_status.upper() != wanted:
                continue  # the filter is the server's, but a stray record must not show
            yield job
            if remaining is not None:
                remaining -= 1
                if remaining == 0:
                    return
        if not records:
            return
        link = body.get("link")
        next_url = _next_url(client, link.get("next") if isinstance(link, dict) else None)
