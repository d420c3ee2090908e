"""How the wait for an export job is shown: a spinner on a terminal, a line per status change
in logs, NDJSON events with ``--json``, nothing with ``--quiet``; and what Ctrl-C says about it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.progress import (
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ..audience import ExportJob
from ..errors import AsyncdlError
from ._common import emit, err, out
from .progress import RunRecord
from .render import interrupted

__all__ = ["JobWatch", "job_json"]


def job_json(job: ExportJob) -> dict[str, Any]:
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
            emit({"event": "job_created", **job_json(job)})
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
