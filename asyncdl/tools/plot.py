"""The score report as a chart a person can read: ``draw_report`` lays out a matplotlib figure
(the score histogram with its range, median and mean; percentile buckets; propensity types; the
most common influential factors by importance) and ``write_report_png`` saves it as a PNG.

matplotlib is the optional extra ``plot`` (``pip install 'asyncdl[plot]'``): it is imported
here, inside the functions, so nothing else pays for it, and a missing one is a ConfigError
that says how to install it. Figures are built with the object API on the Agg canvas, never
through pyplot, so no display, GUI backend or global figure state is involved.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, StorageError
from .scores import ScoreReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["INSTALL_HINT", "chart_title", "compact_count", "draw_report", "write_report_png"]

INSTALL_HINT = "pip install 'asyncdl[plot]'"
_BAR = "#1f77b4"
_LEVEL_COLOURS = (("high", "#d62728"), ("medium", "#ff7f0e"), ("low", "#9ecae1"))
_WIDTH_IN, _DPI = 14.0, 100
_EDGE_LABELS = 10
_FLAT_LABELS_UP_TO = 12


def chart_title(report: ScoreReport) -> str:
    """``dataset <id> · batch <id> · 480,000 rows in 24 parts``; several batches are counted and
    a directory without a manifest is named by its path."""
    labels = []
    if len(report.dataset_ids) == 1:
        labels.append(f"dataset {report.dataset_ids[0]}")
    elif report.dataset_ids:
        labels.append(f"{len(report.dataset_ids)} datasets")
    if len(report.batch_ids) == 1:
        labels.append(f"batch {report.batch_ids[0]}")
    elif report.batch_ids:
        labels.append(f"{len(report.batch_ids)} batches")
    if not labels:
        labels.append(str(report.directory))
    parts = "part" if report.parts == 1 else "parts"
    labels.append(f"{report.rows:,} rows in {report.parts} {parts}")
    return " · ".join(labels)


def draw_report(report: ScoreReport) -> Figure:
    """The figure: the histogram across the top, the other panels that have data below it."""
    figure_module, ticker = _matplotlib()
    histogram, column = report.score, report.score_column
    if histogram is None or column is None:
        raise ConfigError("no score values to plot")
    below = [
        panel
        for panel, present in (
            (_draw_percentiles, bool(report.percentile_buckets)),
            (_draw_propensities, bool(report.propensity_types)),
            (_draw_factors, bool(report.top_factors)),
        )
        if present
    ]
    height = 9.0 if below else 5.5
    figure: Figure = figure_module.Figure(
        figsize=(_WIDTH_IN, height), dpi=_DPI, layout="constrained"
    )
    # Only the score column found (any parquet with a number column): not called Customer AI.
    kind = "Customer AI scores" if below else f"Distribution of {column}"
    figure.suptitle(f"{kind}: {chart_title(report)}", fontsize=14, weight="bold")
    grid = figure.add_gridspec(2 if below else 1, max(len(below), 1), height_ratios=None)
    _draw_histogram(figure.add_subplot(grid[0, :]), report, ticker)
    for index, panel in enumerate(below):
        panel(figure.add_subplot(grid[1, index]), report, ticker)
    return figure


def write_report_png(report: ScoreReport, path: Path) -> Figure:
    """Draw and save the chart as a PNG; returns the figure (for its texts). A failure to write
    is a StorageError naming the path."""
    figure = draw_report(report)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)  # the raster canvas, whatever backend matplotlib is configured with
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return figure


def _matplotlib() -> tuple[Any, Any]:
    try:
        import matplotlib.figure
        import matplotlib.ticker
    except ImportError as exc:
        raise ConfigError(f"--plot needs matplotlib: {INSTALL_HINT}") from exc
    return matplotlib.figure, matplotlib.ticker


def compact_count(value: float) -> str:
    """A tick label for a count: ``950``, ``5k``, ``12.5k``, ``480k``, ``2.5M``."""
    if abs(value) < 1_000:
        return f"{value:,.0f}"
    if abs(value) < 1_000_000:
        return f"{value / 1_000:.4g}k"
    return f"{value / 1_000_000:,.4g}M"


def _counts_axis(axes: Axes, ticker: Any, *, horizontal: bool = False) -> None:
    axis = axes.xaxis if horizontal else axes.yaxis
    # A narrow panel has room for about four labels as long as "400,000".
    axis.set_major_locator(ticker.MaxNLocator(nbins=4 if horizontal else 6, integer=True))
    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: compact_count(value)))
    axes.grid(axis="x" if horizontal else "y", alpha=0.3)
    axes.set_axisbelow(True)


def _draw_histogram(axes: Axes, report: ScoreReport, ticker: Any) -> None:
    histogram, summary, column = report.score, report.score_summary, report.score_column
    assert histogram is not None  # draw_report checked, and a histogram comes with the rest
    assert summary is not None
    assert column is not None
    edges, counts = histogram.edges, histogram.counts
    bins = len(counts)
    step = histogram.step
    lefts = edges[:-1]
    # A single-valued column has one zero-width bin: give it a visible width around the value.
    width = step if step > 0 else max(abs(edges[0]) * 0.1, 1.0)
    offset = 0.0 if step > 0 else -width / 2
    bars = axes.bar(
        [left + offset for left in lefts],
        counts,
        width=width,
        align="edge",
        color=_BAR,
        edgecolor="white",
    )
    # White behind the numbers: the median and mean lines may cross them. Past a dozen bars
    # the numbers stand upright so that neighbours do not run into each other.
    backing = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1}
    upright = bins > _FLAT_LABELS_UP_TO
    axes.bar_label(
        bars,
        labels=[f"{count:,}" for count in counts],
        fontsize=7 if upright else 8,
        rotation=90 if upright else 0,
        padding=2,
        bbox=backing,
    )
    if step > 0:
        # Every edge is a tick; a label on every k-th, about ten in all, stays legible.
        every = math.ceil(bins / _EDGE_LABELS)
        labels = [f"{edge:g}" if index % every == 0 else "" for index, edge in enumerate(edges)]
        axes.set_xticks(list(edges), labels)
        axes.set_xlim(edges[0], edges[-1])
    axes.axvline(
        summary.p50, color="black", linestyle="--", linewidth=1.2, label=f"median {summary.p50:.4g}"
    )
    axes.axvline(
        summary.mean,
        color="#2ca02c",
        linestyle=":",
        linewidth=1.5,
        label=f"mean {summary.mean:.4g}",
    )
    axes.legend(loc="upper right")
    shown = f"{histogram.low:g}-{histogram.high:g}"
    plural = "bin" if bins == 1 else "bins"
    axes.set_title(f"Distribution of {column} ({shown}, {bins} {plural} of {step:g})")
    axes.set_xlabel(f"{column} (min {summary.min:.4g}, max {summary.max:.4g})")
    axes.set_ylabel("profiles")
    axes.margins(y=0.2 if upright else 0.12)  # room for the count labels above the tallest bar
    _counts_axis(axes, ticker)


def _draw_percentiles(axes: Axes, report: ScoreReport, ticker: Any) -> None:
    buckets = report.percentile_buckets
    labels = [f"{bucket.low}-{bucket.high}" for bucket in buckets]
    bars = axes.bar(labels, [bucket.count for bucket in buckets], color=_BAR)
    axes.bar_label(
        bars, labels=[f"{b.count:,}" for b in buckets], fontsize=7, rotation=90, padding=2
    )
    column = dict(report.columns_used).get("percentileScore", "percentileScore")
    axes.set_title("Percentile buckets")
    axes.set_xlabel(column)
    axes.set_ylabel("profiles")
    axes.tick_params(axis="x", labelrotation=45, labelsize=8)
    axes.margins(y=0.2)
    _counts_axis(axes, ticker)


def _draw_propensities(axes: Axes, report: ScoreReport, ticker: Any) -> None:
    names = [name for name, _ in report.propensity_types]
    counts = [count for _, count in report.propensity_types]
    total = sum(counts)
    bars = axes.barh(names, counts, height=0.6, color=_BAR)
    shares = [f"{count:,} ({count / total:.0%})" for count in counts]
    axes.bar_label(bars, labels=shares, fontsize=8, padding=2)
    # Most common first, read from the top; a lone type stays a bar, not a filled panel.
    axes.set_ylim(len(names), -1)
    axes.set_title("Propensity types")
    axes.set_xlabel("profiles")
    axes.set_ylabel(dict(report.columns_used).get("propensityType", "propensityType"))
    axes.margins(x=0.35)
    _counts_axis(axes, ticker, horizontal=True)


def _draw_factors(axes: Axes, report: ScoreReport, ticker: Any) -> None:
    factors = report.top_factors
    codes = [factor.code for factor in factors]
    start = [0] * len(factors)
    for level, colour in _LEVEL_COLOURS:
        values = [getattr(factor, level) for factor in factors]
        axes.barh(codes, values, left=start, color=colour, label=level)
        start = [left + value for left, value in zip(start, values, strict=True)]
    axes.invert_yaxis()
    axes.set_title(f"Top {len(factors)} influential factors")
    axes.set_xlabel("occurrences by importance")
    axes.tick_params(axis="y", labelsize=8)
    axes.legend(loc="lower right", fontsize=8, title="importance", title_fontsize=8)
    _counts_axis(axes, ticker, horizontal=True)
