"""Audience (segment) exports to a dataset, and their download: the seed's second path.

``values`` holds the request and job values, ``jobs`` the Profile export-job calls (create, wait
with cancellation, cancel, list); ``workflow`` runs the whole path (``export_audience``) with a
listener Protocol for its progress, so the command only renders.
"""

from __future__ import annotations

from ..errors import ExportJobError, ExportJobFailedError, ExportTimeoutError
from .jobs import (
    cancel_job,
    create_dataset,
    create_export_job,
    get_export_job,
    iter_export_jobs,
    wait_for_job,
)
from .values import (
    PROFILE_SCHEMA_NAME,
    PROFILE_UNION_SCHEMA_ID,
    ExportJob,
    ExportRequest,
    JobError,
    JobStatus,
)
from .workflow import ExportListener, ExportOutcome, NullExportListener, export_audience

__all__ = [
    "PROFILE_SCHEMA_NAME",
    "PROFILE_UNION_SCHEMA_ID",
    "ExportJob",
    "ExportJobError",
    "ExportJobFailedError",
    "ExportListener",
    "ExportOutcome",
    "ExportRequest",
    "ExportTimeoutError",
    "JobError",
    "JobStatus",
    "NullExportListener",
    "cancel_job",
    "create_dataset",
    "create_export_job",
    "export_audience",
    "get_export_job",
    "iter_export_jobs",
    "wait_for_job",
]
