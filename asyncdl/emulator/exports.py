"""The Profile export-jobs service (``/data/core/ups/export/jobs``) and the Catalog additions it
needs: datasets created with ``POST /dataSets`` and the profile batches a job writes into them.

A job is NEW for the first quarter of ``export_duration_s``, PROCESSING until the whole duration
has passed, then SUCCEEDED, or FAILED with AEP-style ``errors[{code, msg}]`` when ``export_fail``
is set. The status is worked out from the clock on every read, so the pace does not depend on how
often a client polls. A job's profile parquet parts are generated when it is created (off the
event loop; cached on disk by content, like the world's parts) and registered in the ``Index``
when the job is first seen SUCCEEDED: from then on Catalog and Data Access serve them like any
batch, with true metrics. With ``segmentPerBatch`` every segment gets its own batch. ``DELETE``
cancels a job that is still running and answers 200 with the job. The listing pages with opaque
cursors. Adobe's examples spell the destination's dataset key both ways, so this service does
too: ``datasetId`` for even job ids, ``dataSetId`` for odd ones; ``export_job_quirks`` adds the
other shapes producers show (``id`` as ``100.0``, one batch as an object, not a list). Nothing
here does HTTP; jobs.py turns the (status, body) pairs into answers.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import anyio

from asyncdl.emulator.config import EmulatorConfig
from asyncdl.emulator.data import TruthBatch, TruthDataset, TruthFile, TruthPart, ulid
from asyncdl.emulator.profiles import generate_profile_parts
from asyncdl.emulator.views import Index, problem
from asyncdl.models import EXPORT_JOBS_PATH

__all__ = ["EXPORT_JOBS_PATH", "PROFILE_SCHEMA_NAME", "BadCursor", "ExportJobs"]

#: ``link.next`` is relative to the Profile service root, as in Adobe's examples.
_NEXT_LINK_PATH = "/export/jobs/"
PROFILE_SCHEMA_NAME = "_xdm.context.profile"
#: What a job exports when its request names no ``fields``.
DEFAULT_FIELDS = ("person.name.firstName", "person.name.lastName", "personalEmail.address")
_FIRST_JOB_ID = 11_000  # real job ids are plain integers
_NEW_FRACTION = 0.25  # of export_duration_s
_FAILURE = {"code": "0090000009", "msg": "Profile export failed: segment evaluation timed out"}


class BadCursor(Exception):
    """A listing ``offset`` the service did not issue (AEP answers 400)."""


# -- jobs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class _Output:
    """One batch a job writes: for one segment (``segmentPerBatch``) or for all of them."""

    segment_id: str | None
    batch: TruthBatch | None  # None for a job that is going to fail: nothing was generated


@dataclass(frozen=True, kw_only=True, slots=True)
class _Job:
    id: int
    dataset_id: str
    request: dict[str, Any]
    segment_ids: tuple[str, ...]
    segment_per_batch: bool
    created_ms: int
    started_s: float  # time.monotonic() at creation
    outputs: tuple[_Output, ...]
    cancelled_ms: int | None = None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _bad_request(detail: str) -> tuple[int, dict[str, Any]]:
    return 400, problem(status=400, title="Bad Request", detail=detail, code="UPS-EXPORT-400")


def _segments(request: Mapping[str, Any]) -> tuple[str, ...] | None:
    filter_ = request.get("filter")
    segments = filter_.get("segments") if isinstance(filter_, dict) else None
    if not isinstance(segments, list) or not segments:
        return None
    ids = []
    for segment in segments:
        segment_id = segment.get("segmentId") if isinstance(segment, dict) else None
        if not isinstance(segment_id, str) or not segment_id:
            return None
        if segment_id not in ids:
            ids.append(segment_id)
    return tuple(ids)


def _fields(request: Mapping[str, Any]) -> tuple[str, ...] | None:
    raw = request.get("fields")
    if raw is None:
        return DEFAULT_FIELDS
    if not isinstance(raw, str):
        return None
    fields = tuple(f.strip() for f in raw.split(",") if f.strip())
    if any("" in (name.strip() for name in f.split(".")) for f in fields):
        return None
    return fields or DEFAULT_FIELDS


class ExportJobs:
    """Export jobs and created datasets of one emulator; methods return (status, JSON body)."""

    def __init__(self, index: Index, *, config: EmulatorConfig) -> None:
        self._index = index
        self._config = config
        self._root = config.cache_dir / "exports"
        self._jobs: dict[int, _Job] = {}
        self._registered: dict[str, TruthBatch] = {}
        self._next_id = _FIRST_JOB_ID
        #: Variants.export_job_quirks: float ids and a lone ``destination.batches`` object.
        self.quirks = config.variants.export_job_quirks

    @property
    def batches(self) -> tuple[TruthBatch, ...]:
        """Batches written by succeeded jobs so far, oldest first: the ground truth of exports."""
        return tuple(self._registered.values())

    # -- Catalog: POST /dataSets ----------------------------------------------------------------

    def create_dataset(self, body: object) -> tuple[int, Any]:
        """An empty dataset; Catalog answers ``["@/dataSets/{id}"]`` with 201."""
        request: Mapping[str, Any] = body if isinstance(body, dict) else {}
        name = request.get("name")
        if not isinstance(name, str) or not name.strip():
            return 400, problem(
                status=400, title="Bad Request", detail="name is required", code="CAT-1104-400"
            )
        schema = request.get("schemaRef")
        schema_id = schema.get("id") if isinstance(schema, dict) else None
        if not isinstance(schema_id, str) or not schema_id:
            return 400, problem(
                status=400,
                title="Bad Request",
                detail="schemaRef.id is required",
                code="CAT-1104-400",
            )
        dataset = TruthDataset(
            id=secrets.token_hex(12),  # Catalog ids are 24 hex digits
            name=name,
            view_id=secrets.token_hex(12),
            schema_id=schema_id,
            propensity="",  # not a scores dataset
            created_ms=_now_ms(),
            batches=(),
        )
        self._index.datasets[dataset.id] = dataset
        return 201, [f"@/dataSets/{dataset.id}"]

    # -- Profile: /export/jobs ------------------------------------------------------------------

    async def create(self, body: object) -> tuple[int, dict[str, Any]]:
        request: dict[str, Any] = body if isinstance(body, dict) else {}
        destination = request.get("destination")
        dataset_id = None
        if isinstance(destination, dict):
            dataset_id = destination.get("datasetId") or destination.get("dataSetId")
        if not isinstance(dataset_id, str) or not dataset_id:
            return _bad_request("destination.datasetId is required")
        segment_ids = _segments(request)
        if segment_ids is None:
            return _bad_request("filter.segments must list at least one {segmentId}")
        fields = _fields(request)
        if fields is None:
            return _bad_request("fields must be a comma-separated list of XDM paths")
        schema = request.get("schema")
        if not isinstance(schema, dict) or schema.get("name") != PROFILE_SCHEMA_NAME:
            return _bad_request(f"schema.name must be {PROFILE_SCHEMA_NAME!r}")
        if dataset_id not in self._index.datasets:
            return 422, problem(
                status=422,
                title="Unprocessable Entity",
                detail=f"dataset {dataset_id} does not exist",
                code="UPS-EXPORT-422",
            )
        assert isinstance(destination, dict)
        per_batch = destination.get("segmentPerBatch") is True
        job_id, self._next_id = self._next_id, self._next_id + 1
        now = _now_ms()
        finished_ms = now + int(self._config.export_duration_s * 1000)
        groups = [(s, (s,)) for s in segment_ids] if per_batch else [(None, segment_ids)]
        outputs = []
        for segment_id, segments in groups:
            batch = None
            if not self._config.export_fail:
                batch = await anyio.to_thread.run_sync(
                    self._batch, dataset_id, segments, fields, finished_ms
                )
            outputs.append(_Output(segment_id=segment_id, batch=batch))
        job = _Job(
            id=job_id,
            dataset_id=dataset_id,
            request=request,
            segment_ids=segment_ids,
            segment_per_batch=per_batch,
            created_ms=now,
            started_s=time.monotonic(),
            outputs=tuple(outputs),
        )
        self._jobs[job.id] = job
        # The creation answer is the job as queued, whatever the pace.
        return 200, self._json(job, "NEW")

    def get(self, raw_id: str) -> tuple[int, dict[str, Any]]:
        job = self._find(raw_id)
        if job is None:
            return 404, self._missing(raw_id)
        return 200, self._json(job, self._observe(job))

    def list(
        self, *, limit: int, offset: str | None, status: str | None
    ) -> tuple[int, dict[str, Any]]:
        """One page, newest first; ``offset`` is a cursor from an earlier ``link.next``.

        A cursor names the last job of the page before (``<creationTime>_<id>``, the shape of
        Adobe's ``1538573416687_722``): the page goes on after it, so jobs created meanwhile
        do not shift what the next page shows. Raises BadCursor for one never issued.
        """
        after = None if offset is None else self._parse_cursor(offset)
        wanted = status.upper() if status else None
        jobs = []
        for job in sorted(self._jobs.values(), key=lambda j: j.id, reverse=True):  # newest first
            if after is not None and job.id >= after:
                continue
            current = self._observe(job)
            if wanted is None or current == wanted:
                jobs.append((job, current))
        page = jobs[:limit]
        cursor = ""
        next_link = ""
        if len(jobs) > limit:
            last = page[-1][0]
            cursor = f"{last.created_ms}_{last.id}"
            next_link = f"{_NEXT_LINK_PATH}?limit={limit}&offset={cursor}"
            if wanted is not None:
                next_link += f"&status={wanted}"
        return 200, {
            "records": [self._json(job, current) for job, current in page],
            "page": {
                "sortField": "createdTime",
                "sort": "desc",
                "pageOffset": cursor,  # as in Adobe's example: the cursor link.next carries
                "pageSize": len(page),
            },
            "link": {"next": next_link},
        }

    def cancel(self, raw_id: str) -> tuple[int, dict[str, Any]]:
        """Cancel a running job; 200 with the job as it now is (a finished one is unchanged)."""
        job = self._find(raw_id)
        if job is None:
            return 404, self._missing(raw_id)
        if self._observe(job) in {"NEW", "PROCESSING"}:
            job = self._jobs[job.id] = replace(job, cancelled_ms=_now_ms())
        return 200, self._json(job, self._observe(job))

    def _parse_cursor(self, raw: str) -> int:
        """The job id a cursor we issued names; BadCursor for anything else."""
        created, sep, number = raw.partition("_")
        ok = sep and created.isdigit() and number.isdigit()
        job = self._jobs.get(int(number)) if ok else None
        if job is None or str(job.created_ms) != created:
            raise BadCursor(f"offset {raw!r} is not a cursor this service issued")
        return job.id

    # -- internals ------------------------------------------------------------------------------

    def _batch(
        self,
        dataset_id: str,
        segment_ids: tuple[str, ...],
        fields: tuple[str, ...],
        created_ms: int,
    ) -> TruthBatch:
        """Generate (or reuse) a batch's parts; blocking, so called in a worker thread."""
        config = self._config
        generated = generate_profile_parts(
            self._root,
            seed=config.seed,
            segment_ids=segment_ids,
            fields=fields,
            rows_per_segment=config.export_rows_per_segment,
            parts=config.export_parts_per_batch,
        )
        batch_id = ulid(created_ms, random.Random(secrets.randbits(64)))
        file_id = f"{batch_id}-1"
        parts = tuple(
            TruthPart(name=p.name, path=p.path, size=p.size, rows=p.rows, directory=file_id)
            for p in generated
        )
        return TruthBatch(
            id=batch_id,
            dataset_id=dataset_id,
            status="success",
            created_ms=created_ms,
            files=(TruthFile(dataset_file_id=file_id, parts=parts),),
        )

    def _observe(self, job: _Job) -> str:
        """The job's status now; the first SUCCEEDED seen makes its batches visible."""
        if job.cancelled_ms is not None:
            return "CANCELLED"
        elapsed = time.monotonic() - job.started_s
        duration = self._config.export_duration_s
        if elapsed >= duration:
            if self._config.export_fail:
                return "FAILED"
            self._register(job)
            return "SUCCEEDED"
        return "NEW" if elapsed < duration * _NEW_FRACTION else "PROCESSING"

    def _register(self, job: _Job) -> None:
        """Make a succeeded job's batches visible to Catalog and Data Access (once)."""
        index = self._index
        for output in job.outputs:
            batch = output.batch
            if batch is None or batch.id in self._registered:
                continue
            # An export replaces nothing. Data Access serves it from here on: the served view
            # reads index.batches.
            index.add(batch, replaces=False)
            self._registered[batch.id] = batch

    def _find(self, raw_id: str) -> _Job | None:
        try:
            return self._jobs.get(int(raw_id))
        except ValueError:
            return None

    @staticmethod
    def _missing(raw_id: str) -> dict[str, Any]:
        return problem(
            status=404,
            title="Not Found",
            detail=f"export job {raw_id} not found",
            code="UPS-EXPORT-404",
        )

    def _json(self, job: _Job, status: str) -> dict[str, Any]:
        key = "datasetId" if job.id % 2 == 0 else "dataSetId"
        destination: dict[str, Any] = {
            key: job.dataset_id,
            "segmentPerBatch": job.segment_per_batch,
        }
        done = status == "SUCCEEDED"
        if job.segment_per_batch:
            batches = [
                {
                    "segmentId": output.segment_id,
                    "segmentNs": "ups",
                    "status": ["realized", "existing"],
                    **({"batchId": output.batch.id} if done and output.batch else {}),
                }
                for output in job.outputs
            ]
            one = self.quirks and len(batches) == 1
            destination["batches"] = batches[0] if one else batches
        else:
            # AEP's examples show an empty batchId until there is one.
            batch = job.outputs[0].batch
            destination["batchId"] = batch.id if done and batch is not None else ""
        body: dict[str, Any] = {
            "profileInstanceId": "ups",
            **{k: v for k, v in job.request.items() if k != "destination"},
            # A JSON number written by a producer that keeps every number as a double.
            "id": float(job.id) if self.quirks else job.id,
            "jobType": "BATCH",
            "imsOrgId": self._config.org_id,
            "status": status,
            "destination": destination,
            "creationTime": job.created_ms,
            "updateTime": job.cancelled_ms or job.created_ms,
        }
        if done:
            rows = sum(o.batch.rows for o in job.outputs if o.batch is not None)
            body["metrics"] = {"totalExportedProfileCounter": rows}
            body["updateTime"] = job.created_ms + int(self._config.export_duration_s * 1000)
        elif status == "FAILED":
            body["errors"] = [dict(_FAILURE)]
        return body
