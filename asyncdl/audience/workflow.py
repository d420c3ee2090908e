"""An audience export end to end: (create the dataset,) start the export job, wait for it, and
download its batches like ``download`` does, reporting each step to a listener.

The library's form of ``asyncdl export-audience``: the command only renders what the listener
hears. A wait that is cancelled or times out asks AEP to cancel the job unless ``keep_job``
(``jobs.wait_for_job``); the download is the pipeline's, with the run's settings whole.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

from ..config import Credentials, DownloadSettings
from ..errors import AsyncdlError, ExportJobError
from ..pipeline import DownloadResult, connect, download, resolve_run
from ..progress import ProgressListener
from .jobs import create_dataset, create_export_job, wait_for_job
from .values import ExportJob, ExportRequest

__all__ = ["ExportListener", "ExportOutcome", "NullExportListener", "export_audience"]

#: Polls start at ``poll_min_s`` and double up to this.
POLL_MAX_S = 10.0


class ExportListener(Protocol):
    """What an export tells its observer, in order (the download reports to its own)."""

    def on_dataset_created(self, dataset_id: str, name: str) -> None:
        """The target dataset was created."""

    def on_job_created(self, job: ExportJob) -> None:
        """AEP accepted the export job."""

    def on_status(self, job: ExportJob) -> None:
        """A poll answered (the status may be the same as before)."""

    def on_cancel(self, job_id: int, error: AsyncdlError | None) -> None:
        """AEP was asked to cancel the job (``error``: that request failed)."""

    def on_wait_broken(self, job_id: int, error: AsyncdlError) -> None:
        """The wait failed for a reason of its own (network, credentials): the job may run on."""

    def on_finished(self, job: ExportJob) -> None:
        """The job SUCCEEDED; its batches are downloaded next."""


class NullExportListener:
    """Hears nothing (the library default)."""

    def on_dataset_created(self, dataset_id: str, name: str) -> None:
        pass

    def on_job_created(self, job: ExportJob) -> None:
        pass

    def on_status(self, job: ExportJob) -> None:
        pass

    def on_cancel(self, job_id: int, error: AsyncdlError | None) -> None:
        pass

    def on_wait_broken(self, job_id: int, error: AsyncdlError) -> None:
        pass

    def on_finished(self, job: ExportJob) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class ExportOutcome:
    """The finished job, and its download (None when it exported no batch)."""

    job: ExportJob
    result: DownloadResult | None


async def export_audience(
    request: ExportRequest,
    *,
    create_dataset_name: str | None = None,
    timeout_s: float | None = 7200.0,
    keep_job: bool = False,
    poll_min_s: float = 1.0,
    credentials: Credentials | None = None,
    settings: DownloadSettings | None = None,
    listener: ExportListener | None = None,
    on_progress: ProgressListener | None = None,
) -> ExportOutcome:
    """Export ``request``'s audiences to its dataset (or to a new one named
    ``create_dataset_name``), wait for the job, and download what it wrote.

    Raises ``ExportJobFailedError`` (FAILED/CANCELLED), ``ExportTimeoutError`` (still running
    after ``timeout_s``; cancelled unless ``keep_job``), and what ``download`` raises.
    """
    credentials, settings = resolve_run(
        out=None, concurrency=None, credentials=credentials, settings=settings
    )
    heard = listener or NullExportListener()
    async with connect(credentials, settings=settings) as client:
        if create_dataset_name is not None:
            dataset_id = await create_dataset(client, create_dataset_name)
            heard.on_dataset_created(dataset_id, create_dataset_name)
            request = dataclasses.replace(request, dataset_id=dataset_id)
        created = await create_export_job(client, request)
        heard.on_job_created(created)
        try:
            finished = await wait_for_job(
                client,
                created.id,
                timeout_s=timeout_s,
                poll_min_s=poll_min_s,
                poll_max_s=max(POLL_MAX_S, poll_min_s),
                on_status=heard.on_status,
                keep_job=keep_job,
                on_cancel=heard.on_cancel,
            )
        except AsyncdlError as error:
            if not isinstance(error, ExportJobError):  # the wait broke, not the job
                heard.on_wait_broken(created.id, error)
            raise
    heard.on_finished(finished)
    if not finished.batch_ids:
        return ExportOutcome(job=finished, result=None)
    result = await download(
        None,
        batch_ids=finished.batch_ids,
        credentials=credentials,
        settings=settings,
        on_progress=on_progress,
    )
    return ExportOutcome(job=finished, result=result)
