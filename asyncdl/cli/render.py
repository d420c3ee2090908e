"""Turning results into lines and tables: summaries, dry-run plans, inspect reports."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from ..pipeline import DownloadResult, PlannedBatch
from ._common import emit, err, iso, mb, out
from .progress import RunRecord

if TYPE_CHECKING:
    from ..tools.scores import ScoreReport

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
    histogram = report.score
    return {
        "directory": str(report.directory),
        "dataset_ids": list(report.dataset_ids),
        "batch_ids": list(report.batch_ids),
        "parts": report.parts,
        "rows": report.rows,
        "bytes": report.bytes,
        "schema": dict(report.schema),
        "columns_used": dict(report.columns_used),
        "score_column": report.score_column,
        "score_histogram": None
        if histogram is None
        else {
            "column": report.score_column,
            "low": histogram.low,
            "high": histogram.high,
            "step": histogram.step,
            "edges": histogram.edges,
            "counts": histogram.counts,
        },
        "score_summary": None
        if summary is None
        else {
            "count": summary.count,
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
    from ..tools.histogram import render_bars

    # What the manifests say the directory holds, unless its name already says it.
    labels = [f"dataset {name}" for name in report.dataset_ids]
    labels += [f"batch {name}" for name in report.batch_ids if name != report.directory.name]
    label = f" ({', '.join(labels)})" if 0 < len(labels) <= 2 else ""
    out.print(
        f"{report.directory}{label}: {report.rows:,} rows in {report.parts} parts, "
        f"{mb(report.bytes)}",
        markup=False,
    )
    schema = Table(title="schema", title_justify="left")
    schema.add_column("column")
    schema.add_column("type")
    for name, kind in report.schema:
        schema.add_row(name, kind if len(kind) <= 70 else kind[:67] + "...")
    out.print(schema)
    histogram, summary, column = report.score, report.score_summary, report.score_column
    if column is not None and (histogram is None or summary is None):
        out.print(f"score distribution: {column} has no values", markup=False)
    if histogram is not None and summary is not None:
        bins = len(histogram.counts)
        out.print(
            f"score distribution: {column}, {histogram.low:g}-{histogram.high:g} in {bins} "
            f"{'bin' if bins == 1 else 'bins'} of {histogram.step:g}",
            markup=False,
        )
        for line in render_bars(histogram):
            out.print(line, markup=False)
        # A decimal finer than the bins: 10-wide bins give 21.6, 0.1-wide ones 0.216.
        step = histogram.step or abs(summary.max) or 1.0
        places = max(0, 2 - math.floor(math.log10(step)))
        values = (
            ("min", summary.min),
            ("p25", summary.p25),
            ("median", summary.p50),
            ("p75", summary.p75),
            ("max", summary.max),
            ("mean", summary.mean),
        )
        shown = "  ".join(f"{name} {value:.{places}f}" for name, value in values)
        out.print(f"{column} {shown}", markup=False)
    if report.percentile_buckets:
        buckets = "  ".join(f"{b.low}-{b.high}: {b.count:,}" for b in report.percentile_buckets)
        out.print(f"percentiles  {buckets}", markup=False)
    if report.propensity_types:
        types = ", ".join(f"{name} {count:,}" for name, count in report.propensity_types)
        out.print(f"propensity types: {types}", markup=False)
    if report.top_factors:
        factors = Table(title="most common influential factors", title_justify="left")
        for name in ("code", "count", "high", "medium", "low"):
            factors.add_column(name, justify="left" if name == "code" else "right")
        for f in report.top_factors:
            factors.add_row(f.code, f"{f.count:,}", f"{f.high:,}", f"{f.medium:,}", f"{f.low:,}")
        out.print(factors)


def glimpse(directory: Path) -> None:
    """A first look at downloaded scores: the first few rows (nothing when there are none)."""
    from ..errors import AsyncdlError
    from ..tools.parts import first_rows, scan_parts

    try:
        rows = first_rows(
            scan_parts(directory), columns=("ecid", "score", "percentileScore", "propensityType")
        )
    except AsyncdlError:
        return  # inspect, which follows, says what is wrong with the directory
    if not rows:
        return
    table = Table(title=f"the first scores in {directory}", title_justify="left")
    for name in rows[0]:
        table.add_column(name)
    for row in rows:
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))
    out.print(table)
