"""The values of a Profile export: the request asyncdl sends and the job AEP answers with.

An answer's shapes vary within what the API documents (``id`` as ``100.0``, the destination's
dataset key spelled ``datasetId`` or ``dataSetId``, ``destination.batches`` a list or one
object): ``ExportJob.from_json`` takes them all, and anything else is a ProtocolError.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, ProtocolError
from ..models import integer

__all__ = [
    "PROFILE_SCHEMA_NAME",
    "PROFILE_UNION_SCHEMA_ID",
    "ExportJob",
    "ExportRequest",
    "JobError",
    "JobStatus",
]

PROFILE_SCHEMA_NAME = "_xdm.context.profile"
PROFILE_UNION_SCHEMA_ID = "https://ns.adobe.com/xdm/context/profile__union"


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
