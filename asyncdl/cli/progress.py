"""Progress listeners for the terminal (rich), for logs (a plain line), for scripts (NDJSON)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..errors import APIError, AsyncdlError
from ..models import Batch, Part, PartResult, PartStatus
from ..pipeline import DownloadResult
from ._common import emit, err, mb

# -- progress ------------------------------------------------------------------------------------


class RunRecord:
    """The progress listener every mode shares: counts what happened; subclasses show it."""

    def __init__(self) -> None:
        # Counters, not a list of results: a 10,000-part run must not keep them twice.
        self.finished = 0
        self.finished_ok = 0
        self.finished_ok_bytes = 0
        self.retries = 0
        self.throttled = 0
        self.queued = 0
        self.bytes_total = 0
        self.bytes_done = 0
        self.started = time.monotonic()

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def on_batch(self, batch: Batch) -> None:
        pass

    def on_queued(self, part: Part) -> None:
        self.queued += 1
        self.bytes_total += part.size

    def on_bytes(self, part: Part, n: int) -> None:
        self.bytes_done += n

    def on_retry(self, part: Part, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        self._count_retry(error)

    def on_request_retry(self, url: str, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        self._count_retry(error)

    def _count_retry(self, error: AsyncdlError) -> None:
        self.retries += 1
        if isinstance(error, APIError) and error.status == 429:
            self.throttled += 1

    def on_done(self, result: PartResult) -> None:
        self.finished += 1
        if result.ok:
            self.finished_ok += 1
            self.finished_ok_bytes += result.part.size
        if result.status is PartStatus.SKIPPED:
            self.bytes_done += result.part.size

    def status_line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        text = (
            f"{self.finished}/{self.queued} parts, "
            f"{mb(self.bytes_done)} of {mb(self.bytes_total)}, "
            f"{self.bytes_done / elapsed / 1e6:.1f} MB/s"
        )
        if self.retries:
            text += f", {self.retries} retries"
        return text


class PlainProgress(RunRecord):
    """For cron and CI logs: one status line every ``interval_s``, no control characters."""

    def __init__(self, console: Console, *, interval_s: float = 5.0) -> None:
        super().__init__()
        self._console = console
        self._interval_s = interval_s
        self._last = time.monotonic()

    def _maybe_print(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval_s:
            self._last = now
            self._console.print(f"asyncdl: {self.status_line()}", markup=False)

    def on_bytes(self, part: Part, n: int) -> None:
        super().on_bytes(part, n)
        self._maybe_print()

    def on_done(self, result: PartResult) -> None:
        super().on_done(result)
        self._maybe_print()


class RichProgress(RunRecord):
    """On a terminal: one bar for the whole job and a line per part in flight."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._job: TaskID = self._progress.add_task("listing", total=None)
        self._lines: dict[tuple[str, str], TaskID] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _refresh(self) -> None:
        description = f"{self.finished}/{self.queued} parts"
        if self.retries:
            description += f" · {self.retries} retries"
        self._progress.update(
            self._job,
            description=description,
            total=self.bytes_total or None,
            completed=self.bytes_done,
        )

    def on_queued(self, part: Part) -> None:
        super().on_queued(part)
        self._refresh()

    def on_bytes(self, part: Part, n: int) -> None:
        super().on_bytes(part, n)
        key = (part.batch_id, part.relpath)
        line = self._lines.get(key)
        if line is None:
            name = part.name if len(part.name) <= 40 else part.name[:18] + "…" + part.name[-21:]
            line = self._progress.add_task(f"  {name}", total=part.size)
            self._lines[key] = line
        self._progress.advance(line, n)
        self._refresh()

    def on_retry(self, part: Part, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        super().on_retry(part, attempt, error, delay_s)
        self._refresh()

    def on_done(self, result: PartResult) -> None:
        super().on_done(result)
        line = self._lines.pop((result.part.batch_id, result.part.relpath), None)
        if line is not None:
            self._progress.remove_task(line)
        self._refresh()


class JsonEvents(RunRecord):
    """``--json``: an NDJSON event per batch, part, and retry, then one summary object."""

    def on_batch(self, batch: Batch) -> None:
        emit({"event": "batch", **batch_json(batch)})

    def on_retry(self, part: Part, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        super().on_retry(part, attempt, error, delay_s)
        emit(
            {
                "event": "retry",
                "batch_id": part.batch_id,
                "part": part.relpath,
                "attempt": attempt,
                "error": type(error).__name__,
                "status": error.status if isinstance(error, APIError) else None,
                "message": str(error),
                "delay_s": round(delay_s, 3),
            }
        )

    def on_request_retry(self, url: str, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        super().on_request_retry(url, attempt, error, delay_s)
        emit(
            {
                "event": "retry",
                "request": url,
                "attempt": attempt,
                "error": type(error).__name__,
                "status": error.status if isinstance(error, APIError) else None,
                "message": str(error),
                "delay_s": round(delay_s, 3),
            }
        )

    def on_done(self, result: PartResult) -> None:
        super().on_done(result)
        emit({"event": "part", **_result_json(result)})


def make_listener(*, quiet: bool, as_json: bool) -> RunRecord:
    if as_json:
        return JsonEvents()
    if quiet:
        return RunRecord()
    if err.is_terminal:
        return RichProgress(err)
    return PlainProgress(err)


def batch_json(batch: Batch) -> dict[str, Any]:
    return {
        "batch_id": batch.id,
        "status": batch.status,
        "created_ms": batch.created_ms,
        "records": batch.metrics.output_record_count,
        "bytes": batch.metrics.output_byte_size,
        "files": batch.metrics.output_file_count,
    }


def _result_json(result: PartResult) -> dict[str, Any]:
    return {
        "batch_id": result.part.batch_id,
        "part": result.part.relpath,
        "status": result.status.value,
        "size": result.part.size,
        "fetched_bytes": result.fetched_bytes,
        "rows": result.rows,
        "digest": result.digest,
        "attempts": result.attempts,
        "error": result.error,
    }


def summary_json(result: DownloadResult, record: RunRecord) -> dict[str, Any]:
    seconds = max(result.elapsed_s, 1e-9)
    batches = []
    for report in result.batches:
        rec = report.reconciliation
        batches.append(
            {
                "batch_id": report.batch.id,
                "directory": str(report.directory),
                "parts": len(report.results),
                "markers": report.markers,
                "reconciliation": None
                if rec is None
                else {
                    "ok": rec.ok,
                    "bytes": rec.actual_bytes,
                    "expected_bytes": rec.expected_bytes,
                    "rows": rec.actual_rows,
                    "expected_rows": rec.expected_rows,
                    "files": rec.actual_files,
                    "expected_files": rec.expected_files,
                    "warnings": list(rec.warnings),
                },
            }
        )
    return {
        "event": "summary",
        "ok": result.ok,
        "parts": len(result.results),
        "downloaded": result.downloaded,
        "skipped": result.skipped,
        "failed": [{"part": r.part.relpath, "error": r.error} for r in result.failed],
        "rejected": [{"name": e.name, "reason": e.reason} for e in result.rejected],
        "markers": result.markers,
        "bytes": result.total_bytes,
        "fetched_bytes": result.fetched_bytes,
        "seconds": round(seconds, 3),
        "mb_per_s": round(result.fetched_bytes / seconds / 1e6, 2),
        "retries": record.retries,
        "throttled": record.throttled,
        "batches": batches,
    }
