"""Turning results into lines and tables: summaries, dry-run plans, inspect reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from ..pipeline import DownloadResult, PlannedBatch
from ._common import emit, err, iso, mb, out
from .progress import RunRecord

if TYPE_CHECKING:
    from ..inspect import ScoreReport

# -- rendering -----------------------------------------------------------------------------------


def render_result(result: DownloadResult) -> None:
    """The run's summary: per batch, failures, and the final line."""
    for report in result.batches:
        rec = report.reconciliation
        line = f"batch {report.batch.id}: {len(report.results)} parts in {report.directory}"
        if rec is not None:
            rows = f", {rec.actual_rows:,} rows" if rec.actual_rows is not None else ""
            line += f", {mb(rec.actual_bytes)}{rows}"
            if rec.ok:
                line += ", matches the Catalog's metrics"
        out.print(line, markup=False)
        if rec is not None and not rec.ok:
            err.print(
                f"asyncdl: error: batch {report.batch.id} does not match the Catalog: "
                f"bytes {rec.actual_bytes} vs outputByteSize {rec.expected_bytes}, "
                f"rows {rec.actual_rows} vs outputRecordCount {rec.expected_rows}",
                markup=False,
            )
        for warning in rec.warnings if rec is not None else ():
            err.print(f"asyncdl: warning: batch {report.batch.id}: {warning}", markup=False)
        for failed in report.failed:
            err.print(f"  failed {failed.part.relpath}: {failed.error}", markup=False)
        for rejected in report.rejected:
            err.print(f"  rejected {rejected.name!r}: {rejected.reason}", markup=False)
    seconds = max(result.elapsed_s, 1e-9)
    rate = result.fetched_bytes / seconds / 1e6
    parts = len(result.results)
    extra = []
    if result.skipped:
        extra.append(f"{result.skipped} already on disk")
    if result.failed:
        extra.append(f"{len(result.failed)} failed")
    if result.rejected:
        extra.append(f"{len(result.rejected)} rejected")
    if result.markers:
        extra.append(f"{result.markers} _SUCCESS markers skipped")
    if parts and result.skipped == parts:
        extra.append("nothing to fetch")
    detail = f" ({', '.join(extra)})" if extra else ""
    shown_s = f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"
    out.print(
        f"{parts} parts{detail}, {mb(result.fetched_bytes)} fetched in {shown_s} s, "
        f"{rate:.1f} MB/s",
        markup=False,
    )


def interrupted(record: RunRecord) -> Callable[[], None]:
    def report() -> None:
        err.print(
            f"asyncdl: interrupted: {record.finished_ok} parts finished "
            f"({mb(record.finished_ok_bytes)}); unfinished parts are kept as .part "
            "files and resume on the next run",
            markup=False,
        )

    return report


def render_plan(planned: list[PlannedBatch], *, as_json: bool) -> None:
    if as_json:
        for batch in planned:
            for part in batch.parts:
                emit(
                    {
                        "event": "planned",
                        "batch_id": part.batch_id,
                        "part": part.relpath,
                        "size": part.size,
                        "on_disk": part.relpath in batch.complete,
                    }
                )
        emit(
            {
                "event": "plan",
                "parts": sum(len(b.parts) for b in planned),
                "bytes": sum(p.size for b in planned for p in b.parts),
                "bytes_to_fetch": sum(b.bytes_to_fetch for b in planned),
            }
        )
        return
    for batch in planned:
        out.print(f"batch {batch.batch.id} ({iso(batch.batch.created_ms)}):", markup=False)
        for part in batch.parts:
            note = "  (on disk)" if part.relpath in batch.complete else ""
            out.print(f"  {part.relpath}  {part.size:,} bytes{note}", markup=False)
        for rejected in batch.rejected:
            out.print(f"  rejected {rejected.name!r}: {rejected.reason}", markup=False)
    total = sum(p.size for b in planned for p in b.parts)
    to_fetch = sum(b.bytes_to_fetch for b in planned)
    count = sum(len(b.parts) for b in planned)
    out.print(
        f"dry run: {count} parts, {mb(total)} in total, {mb(to_fetch)} to fetch; "
        "nothing was downloaded",
        markup=False,
    )


def report_json(report: ScoreReport) -> dict[str, Any]:
    summary = report.score_summary
    return {
        "directory": str(report.directory),
        "parts": report.parts,
        "rows": report.rows,
        "bytes": report.bytes,
        "schema": dict(report.schema),
        "score_histogram": None
        if report.score is None
        else {"edges": report.score.edges, "counts": report.score.counts},
        "score_summary": None
        if summary is None
        else {
            "min": summary.min,
            "p25": summary.p25,
            "median": summary.p50,
            "p75": summary.p75,
            "max": summary.max,
            "mean": summary.mean,
        },
        "percentile_buckets": [[b.low, b.high, b.count] for b in report.percentile_buckets],
        "propensity_types": dict(report.propensity_types),
        "top_factors": [
            {"code": f.code, "count": f.count, "low": f.low, "medium": f.medium, "high": f.high}
            for f in report.top_factors
        ],
    }


def render_report(report: ScoreReport) -> None:
    out.print(
        f"{report.directory}: {report.rows:,} rows in {report.parts} parts, {mb(report.bytes)}",
        markup=False,
    )
    schema = Table(title="schema", title_justify="left")
    schema.add_column("column")
    schema.add_column("type")
    for name, kind in report.schema:
        schema.add_row(name, kind if len(kind) <= 70 else kind[:67] + "...")
    out.print(schema)
    if report.score is not None:
        out.print("score distribution", markup=False)
        from ..inspect import render_bars

        for line in render_bars(report.score):
            out.print(line, markup=False)
    summary = report.score_summary
    if summary is not None:
        out.print(
            f"score min {summary.min:.1f}  p25 {summary.p25:.1f}  median {summary.p50:.1f}  "
            f"p75 {summary.p75:.1f}  max {summary.max:.1f}  mean {summary.mean:.2f}",
            markup=False,
        )
    if report.percentile_buckets:
        buckets = "  ".join(f"{b.low}-{b.high}: {b.count:,}" for b in report.percentile_buckets)
        out.print(f"percentiles  {buckets}", markup=False)
    if report.propensity_types:
        types = ", ".join(f"{name} {count:,}" for name, count in report.propensity_types)
        out.print(f"propensity types: {types}", markup=False)
    if report.top_factors:
        factors = Table(title="most common influential factors", title_justify="left")
        for column in ("code", "count", "high", "medium", "low"):
            factors.add_column(column, justify="left" if column == "code" else "right")
        for f in report.top_factors:
            factors.add_row(f.code, f"{f.count:,}", f"{f.high:,}", f"{f.medium:,}", f"{f.low:,}")
        out.print(factors)


def glimpse(directory: Path) -> None:
    """A first look at downloaded scores: the first few rows."""
    import pyarrow.dataset as ds

    files = sorted(str(p) for p in directory.rglob("*.parquet"))
    if not files:
        return
    dataset = ds.dataset(files, format="parquet")
    head = dataset.head(5, columns=["ecid", "score", "percentileScore", "propensityType"])
    table = Table(title=f"the first scores in {directory}", title_justify="left")
    for name in head.column_names:
        table.add_column(name)
    for row in head.to_pylist():
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))
    out.print(table)
