"""Profile export jobs: the request and job values and the API calls, without printing.

Owns the request and job values, ``POST /data/foundation/catalog/dataSets`` for a new target
dataset, and ``/data/core/ups/export/jobs``: create a job, poll it with capped backoff until it
SUCCEEDED or FAILED (bounded by a timeout), cancel it, list jobs across relative ``link.next``
pages. A wait that is cancelled (Ctrl-C) or runs out of time first asks AEP to cancel the job, in
a shielded and time-boxed scope, unless the caller keeps it; the cancellation itself always goes
on. Downloading the output is ``workflow``'s: a finished ``ExportJob`` carries its batch ids.
Answers spell the destination's dataset key ``datasetId`` or ``dataSetId``: both are accepted.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
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
from ..models import CATALOG_PATH, EXPORT_JOBS_PATH, UPS_PATH, integer

__all__ = [
    "PROFILE_SCHEMA_NAME",
    "PROFILE_UNION_SCHEMA_ID",
    "ExportJob",
    "ExportJobError",
    "ExportJobFailedError",
    "ExportRequest",
    "ExportTimeoutError",
    "JobError",
    "JobStatus",
    "cancel_job",
    "create_dataset",
    "create_export_job",
    "get_export_job",
    "iter_export_jobs",
    "wait_for_job",
]

PROFILE_SCHEMA_NAME = "_xdm.context.profile"
PROFILE_UNION_SCHEMA_ID = "https://ns.adobe.com/xdm/context/profile__union"
XED_CONTENT_TYPE = "application/vnd.adobe.xed+json;version=1"
#: How long a cancelled or timed-out wait may spend asking AEP to cancel the job: a dead network
#: must not turn Ctrl-C into a hang.
CANCEL_TIMEOUT_S = 15.0
JOBS_PAGE_MAX = 50


class JobStatus(enum.Enum):
    """An export job's status; anything AEP adds later reads as UNKNOWN (still running)."""

    NEW = "NEW"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def _missing_(cls, value: object) -> JobStatus:
        text = str(value).strip().upper()
        if text == "CANCELED":  # the American spelling some Adobe services use
            return cls.CANCELLED
        for member in cls:
            if member.value == text:
                return member
        return cls.UNKNOWN

    @property
    def finished(self) -> bool:
        return self in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


@dataclass(frozen=True, kw_only=True, slots=True)
class JobError:
    """One entry of a job's ``errors``: AEP's code and message."""

    code: str | None
    message: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" if self.code else self.message


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportRequest:
    """What to export: segments (audiences), their merge policy, fields, and the target dataset."""

    segment_ids: tuple[str, ...]
    dataset_id: str
    merge_policy_id: str | None = None
    fields: tuple[str, ...] = ()  # XDM paths; empty: every field
    segment_per_batch: bool = False
    segment_ns: str = "ups"
    statuses: tuple[str, ...] = ("realized", "existing")

    def __post_init__(self) -> None:
        # Tuples even when given lists (the value is frozen); repeated segments are sent once.
        object.__setattr__(self, "segment_ids", tuple(dict.fromkeys(self.segment_ids)))
        object.__setattr__(self, "fields", tuple(f.strip() for f in self.fields if f.strip()))
        object.__setattr__(self, "statuses", tuple(self.statuses))
        if not self.segment_ids or not all(s.strip() for s in self.segment_ids):
            raise ConfigError("an export needs at least one non-empty segment id")
        if not self.dataset_id.strip():
            raise ConfigError("an export needs a target dataset id")

    def to_json(self) -> dict[str, Any]:
        """The ``POST /export/jobs`` body, in the shape Adobe documents."""
        body: dict[str, Any] = {}
        if self.fields:
            body["fields"] = ",".join(self.fields)
        if self.merge_policy_id:
            body["mergePolicy"] = {"id": self.merge_policy_id, "version": 1}
        body["filter"] = {
            "segments": [
                {"segmentId": s, "segmentNs": self.segment_ns, "status": list(self.statuses)}
                for s in self.segment_ids
            ]
        }
        body["destination"] = {
            "datasetId": self.dataset_id,
            "segmentPerBatch": self.segment_per_batch,
        }
        body["schema"] = {"name": PROFILE_SCHEMA_NAME}
        return body


_int = integer


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportJob:
    """One export job as AEP last described it."""

    id: int
    status: JobStatus
    raw_status: str  # AEP's own word, for statuses this version does not know
    dataset_id: str | None = None
    batch_ids: tuple[str, ...] = ()
    segment_per_batch: bool = False
    errors: tuple[JobError, ...] = ()
    profile_count: int | None = None  # metrics.totalExportedProfileCounter
    created_ms: int | None = None
    updated_ms: int | None = None

    @classmethod
    def from_json(cls, body: Any) -> ExportJob:
        """Parse a job answer; tolerant of either dataset spelling and of absent parts."""
        if not isinstance(body, dict):
            raise ProtocolError("an export job answer is not an object")
        job_id = _int(body.get("id"))
        if job_id is None:
            raise ProtocolError(f"an export job answer has no integer id: {body.get('id')!r}")
        raw_status = str(body.get("status") or "")
        destination = body.get("destination")
        if not isinstance(destination, dict):
            destination = {}
        dataset_id = _text(destination.get("datasetId")) or _text(destination.get("dataSetId"))
        batch_ids: list[str] = []
        # An empty batchId ("") is what AEP shows before there is a batch.
        single = _text(destination.get("batchId"))
        if single:
            batch_ids.append(single)
        batches = destination.get("batches")
        if isinstance(batches, dict):  # one batch, written as the object itself
            batches = [batches]
        for item in batches if isinstance(batches, list) else ():
            batch_id = _text(item.get("batchId")) if isinstance(item, dict) else None
            if batch_id and batch_id not in batch_ids:
                batch_ids.append(batch_id)
        errors = []
        raw_errors = body.get("errors")
        for item in raw_errors if isinstance(raw_errors, list) else ():
            if isinstance(item, dict):
                code = item.get("code")
                message = item.get("msg") or item.get("message") or item.get("description")
                errors.append(
                    JobError(
                        code=None if code is None else str(code),
                        message=str(message or "no message"),
                    )
                )
            elif isinstance(item, str):
                errors.append(JobError(code=None, message=item))
        metrics = body.get("metrics")
        count = (
            _int(metrics.get("totalExportedProfileCounter")) if isinstance(metrics, dict) else None
        )
        return cls(
            id=job_id,
            status=JobStatus(raw_status),
            raw_status=raw_status or "?",
            dataset_id=dataset_id,
            batch_ids=tuple(batch_ids),
            segment_per_batch=destination.get("segmentPerBatch") is True,
            errors=tuple(errors),
            profile_count=count,
            created_ms=_int(body.get("creationTime")),
            updated_ms=_int(body.get("updateTime")),
        )


# These three depend on nothing in this module, so they can move to errors.py as they are.
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
