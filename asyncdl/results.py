"""What a run comes to, as values: per-part results gathered into batch reports and a run
result, a batch's reconciliation with the Catalog, and a dry run's plan."""

from __future__ import annotations

from dataclasses import dataclass

from .models import Batch, Part, PartResult, PartStatus

__all__ = ["BatchReport", "DownloadResult", "PlannedBatch", "Reconciliation", "RejectedEntry"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RejectedEntry:
    """A listing entry that was refused before any request (unsafe name)."""

    batch_id: str
    name: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Reconciliation:
    """A batch's downloaded totals against the Catalog's ``metrics``; ``None`` = not claimed.

    Bytes and rows decide: they describe the data itself. The file count only warns: Catalog
    metrics are "determined by the producer", and some count dataSetFiles, or markers, or
    nothing at all.
    """

    expected_bytes: int | None
    actual_bytes: int
    expected_rows: int | None
    actual_rows: int | None
    expected_files: int | None
    actual_files: int

    @property
    def ok(self) -> bool:
        return (self.expected_bytes is None or self.expected_bytes == self.actual_bytes) and (
            self.expected_rows is None
            or self.actual_rows is None
            or self.expected_rows == self.actual_rows
        )

    @property
    def warnings(self) -> tuple[str, ...]:
        """Disagreements that do not fail the batch, each naming the metric."""
        if self.expected_files is None or self.expected_files == self.actual_files:
            return ()
        return (
            f"outputFileCount says {self.expected_files} files, {self.actual_files} parts "
            "arrived (the producer's count; bytes and rows match)"
            if self.ok
            else f"outputFileCount says {self.expected_files} files, {self.actual_files} arrived",
        )


@dataclass(frozen=True, kw_only=True)
class BatchReport:
    """Everything one batch came to in this run."""

    batch: Batch
    directory: str  # where its parts went: a directory, or an object store URL
    results: tuple[PartResult, ...]
    markers: int
    rejected: tuple[RejectedEntry, ...]
    reconciliation: Reconciliation | None  # None when the run did not see the whole batch

    @property
    def failed(self) -> tuple[PartResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    @property
    def ok(self) -> bool:
        return (
            not self.failed
            and not self.rejected
            and (self.reconciliation is None or self.reconciliation.ok)
        )


@dataclass(frozen=True, kw_only=True)
class DownloadResult:
    """The outcome of ``download``: per-batch reports plus run totals."""

    batches: tuple[BatchReport, ...]
    elapsed_s: float

    @property
    def results(self) -> tuple[PartResult, ...]:
        return tuple(r for b in self.batches for r in b.results)

    @property
    def failed(self) -> tuple[PartResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    @property
    def rejected(self) -> tuple[RejectedEntry, ...]:
        return tuple(e for b in self.batches for e in b.rejected)

    @property
    def downloaded(self) -> int:
        return sum(1 for r in self.results if r.status is PartStatus.DOWNLOADED)

    @property
    def skipped(self) -> int:
        return sum(1 for r in self.results if r.status is PartStatus.SKIPPED)

    @property
    def markers(self) -> int:
        return sum(b.markers for b in self.batches)

    @property
    def fetched_bytes(self) -> int:
        return sum(r.fetched_bytes for r in self.results)

    @property
    def total_bytes(self) -> int:
        return sum(r.part.size for r in self.results if r.ok)

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.batches)


@dataclass(frozen=True, kw_only=True)
class PlannedBatch:
    """What a download of one batch would fetch (``--dry-run``)."""

    batch: Batch
    parts: tuple[Part, ...]
    complete: frozenset[str]  # relpaths already complete on disk: would be skipped
    markers: int
    rejected: tuple[RejectedEntry, ...]

    @property
    def bytes_to_fetch(self) -> int:
        return sum(p.size for p in self.parts if p.relpath not in self.complete)
