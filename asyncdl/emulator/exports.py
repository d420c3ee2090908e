"""A minimal Profile export-jobs service (``/data/core/ups/export/jobs``): enough for a client
that asks for an audience export to a dataset and polls until it has a batch id.

A job moves one step per status read: NEW (on creation) → PROCESSING → SUCCEEDED, whose
``destination.batchId`` is the target dataset's newest successful batch; a target without one
ends FAILED. Cancelling answers 204 and marks the job CANCELLED.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from asyncdl.emulator.views import Index, problem

__all__ = ["EXPORT_JOBS_PATH", "ExportJobs"]

EXPORT_JOBS_PATH = "/data/core/ups/export/jobs"
_FIRST_JOB_ID = 11_000  # real job ids are plain integers


@dataclass(frozen=True, kw_only=True, slots=True)
class _Job:
    id: int
    dataset_id: str
    request: dict[str, Any]
    status: str
    created_ms: int
    updated_ms: int


def _now_ms() -> int:
    return int(time.time() * 1000)


class ExportJobs:
    """Job state for one emulator; every method returns (status, JSON body or None)."""

    def __init__(self, index: Index, *, org_id: str) -> None:
        self._index = index
        self._org_id = org_id
        self._jobs: dict[int, _Job] = {}

    def create(self, body: object) -> tuple[int, dict[str, Any]]:
        request: dict[str, Any] = body if isinstance(body, dict) else {}
        destination = request.get("destination")
        dataset_id = None
        if isinstance(destination, dict):
            # Adobe's examples spell the key both ways.
            dataset_id = destination.get("datasetId") or destination.get("dataSetId")
        if not isinstance(dataset_id, str):
            return 400, problem(
                status=400,
                title="Bad Request",
                detail="destination.datasetId is required",
                code="UPS-EXPORT-400",
            )
        if dataset_id not in self._index.datasets:
            return 422, problem(
                status=422,
                title="Unprocessable Entity",
                detail=f"dataset {dataset_id} does not exist",
                code="UPS-EXPORT-422",
            )
        now = _now_ms()
        job = _Job(
            id=_FIRST_JOB_ID + len(self._jobs),
            dataset_id=dataset_id,
            request=request,
            status="NEW",
            created_ms=now,
            updated_ms=now,
        )
        self._jobs[job.id] = job
        return 200, self._json(job)

    def get(self, raw_id: str) -> tuple[int, dict[str, Any]]:
        job = self._find(raw_id)
        if job is None:
            return 404, self._missing(raw_id)
        if job.status in {"NEW", "PROCESSING"}:
            job = replace(job, status=self._next_status(job), updated_ms=_now_ms())
            self._jobs[job.id] = job
        return 200, self._json(job)

    def list(self, *, limit: int, offset: int, status: str | None) -> tuple[int, dict[str, Any]]:
        jobs = [j for j in self._jobs.values() if status is None or j.status == status]
        page = jobs[offset : offset + limit]
        return 200, {
            "records": [self._json(j) for j in page],
            "page": {
                "sortField": "createdTime",
                "sort": "desc",
                "pageOffset": offset,
                "pageSize": len(page),
            },
            "link": {
                "next": f"?offset={offset + limit}&limit={limit}"
                if offset + limit < len(jobs)
                else ""
            },
        }

    def cancel(self, raw_id: str) -> tuple[int, dict[str, Any] | None]:
        job = self._find(raw_id)
        if job is None:
            return 404, self._missing(raw_id)
        self._jobs[job.id] = replace(job, status="CANCELLED", updated_ms=_now_ms())
        return 204, None

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

    def _newest_success(self, dataset_id: str) -> str | None:
        dataset = self._index.datasets[dataset_id]
        ids = [b.id for b in dataset.batches if b.status == "success"]
        return ids[-1] if ids else None

    def _next_status(self, job: _Job) -> str:
        if job.status == "NEW":
            return "PROCESSING"
        return "SUCCEEDED" if self._newest_success(job.dataset_id) else "FAILED"

    def _json(self, job: _Job) -> dict[str, Any]:
        destination: dict[str, Any] = {"datasetId": job.dataset_id, "segmentPerBatch": False}
        body: dict[str, Any] = {
            **{k: v for k, v in job.request.items() if k != "destination"},
            "id": job.id,
            "jobType": "BATCH",
            "imsOrgId": self._org_id,
            "status": job.status,
            "destination": destination,
            "creationTime": job.created_ms,
            "updateTime": job.updated_ms,
        }
        if job.status == "SUCCEEDED":
            batch_id = self._newest_success(job.dataset_id)
            assert batch_id is not None  # SUCCEEDED only when there is one
            destination["batchId"] = batch_id
            rows = self._index.batches[batch_id].rows
            body["metrics"] = {"totalExportedProfileCounter": rows}
        elif job.status == "FAILED":
            body["errors"] = [{"code": "0090000009", "msg": "No profiles to export (emulated)"}]
        return body
