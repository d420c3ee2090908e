"""The chart names what it shows (dataset, batch, rows, the column and its range, every axis),
draws one panel per part of the report that has data, is saved as a readable PNG, and without
matplotlib ``--plot`` fails with the line that says how to install it."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.axes import Axes
from typer.testing import CliRunner

from asyncdl.cli import app
from asyncdl.errors import ConfigError
from asyncdl.tools.plot import (
    INSTALL_HINT,
    chart_title,
    compact_count,
    draw_report,
    write_report_png,
)
from asyncdl.tools.scores import ScoreReport, inspect_scores
from tests.tools.test_scores import ROWS, make_rows, write_parts

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    directory = tmp_path / "01JWJCFTWHN7X5JNZE6BAB2R7A"
    write_parts(directory, make_rows())
    manifest = {"batch_id": directory.name, "dataset_id": "5cd9146b31dae914b75f654f", "parts": []}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


@pytest.fixture
def report(batch: Path) -> ScoreReport:
    return inspect_scores(batch)


def tick_labels(axes: Axes, axis: str) -> list[str]:
    ticks = axes.get_xticklabels() if axis == "x" else axes.get_yticklabels()
    return [tick.get_text() for tick in ticks]


def test_the_title_names_dataset_batch_and_rows(report: ScoreReport) -> None:
    figure = draw_report(report)
    title = figure.get_suptitle()
    assert "dataset 5cd9146b31dae914b75f654f" in title
    assert "batch 01JWJCFTWHN7X5JNZE6BAB2R7A" in title
    assert f"{ROWS} rows in 3 parts" in title
    assert title.startswith("Customer AI scores: ")


def test_the_histogram_names_its_column_range_and_axes(report: ScoreReport) -> None:
    histogram = draw_report(report).axes[0]
    assert histogram.get_title() == "Distribution of score (0-100, 10 bins of 10)"
    assert histogram.get_xlabel().startswith("score (min 0, max 100)")
    assert histogram.get_ylabel() == "profiles"
    assert tick_labels(histogram, "x") == [str(edge) for edge in range(0, 101, 10)]
    assert report.score is not None
    numbers = [text.get_text() for text in histogram.texts]
    assert numbers == [f"{count:,}" for count in report.score.counts]  # one per bar
    legend = histogram.get_legend()
    assert legend is not None
    assert [text.get_text().split()[0] for text in legend.get_texts()] == ["median", "mean"]


def test_many_bins_keep_about_ten_edge_labels(batch: Path) -> None:
    report = inspect_scores(batch, bins=50)
    assert report.score is not None
    assert len(report.score.counts) == 50
    histogram = draw_report(report).axes[0]
    labels = tick_labels(histogram, "x")
    assert len(labels) == 51  # a tick on every edge
    assert [label for label in labels if label] == [str(edge) for edge in range(0, 101, 10)]
    assert {text.get_rotation() for text in histogram.texts} == {90.0}  # upright counts


def test_percentiles_propensities_and_factors_have_their_panels(report: ScoreReport) -> None:
    _, percentiles, propensities, factors = draw_report(report).axes
    assert percentiles.get_title() == "Percentile buckets"
    assert percentiles.get_xlabel() == "percentileScore"
    assert tick_labels(percentiles, "x") == [f"{b.low}-{b.high}" for b in report.percentile_buckets]
    assert propensities.get_title() == "Propensity types"
    assert tick_labels(propensities, "y") == [name for name, _ in report.propensity_types]
    assert propensities.get_xlabel() == "profiles"
    assert factors.get_title() == f"Top {len(report.top_factors)} influential factors"
    assert tick_labels(factors, "y") == [factor.code for factor in report.top_factors]
    legend = factors.get_legend()
    assert legend is not None
    assert [text.get_text() for text in legend.get_texts()] == ["high", "medium", "low"]


def test_a_plain_dataset_is_one_panel_titled_by_its_column(tmp_path: Path) -> None:
    values = pa.array([0.05, 0.2, 0.21, 0.9], pa.float64())
    pq.write_table(pa.table({"probability": values}), tmp_path / "a.parquet")
    figure = draw_report(inspect_scores(tmp_path))
    assert len(figure.axes) == 1
    assert figure.get_suptitle() == f"Distribution of probability: {tmp_path} · 4 rows in 1 part"
    assert tick_labels(figure.axes[0], "x")[:3] == ["0", "0.1", "0.2"]


def test_the_png_is_written_at_its_size(report: ScoreReport, tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    figure = write_report_png(report, path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 900)
    assert len(data) > 30_000  # text, bars and axes, not a blank canvas
    assert figure.get_suptitle().endswith("rows in 3 parts")


def test_an_unwritable_path_is_a_storage_error(report: ScoreReport, tmp_path: Path) -> None:
    from asyncdl.errors import StorageError

    with pytest.raises(StorageError, match="cannot write"):
        write_report_png(report, tmp_path / "missing" / "chart.png")


def test_no_score_values_is_a_config_error(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "a.parquet")
    with pytest.raises(ConfigError, match="no score values"):
        draw_report(inspect_scores(tmp_path))


def test_titles_count_several_batches(report: ScoreReport) -> None:
    from dataclasses import replace

    several = replace(report, batch_ids=("A", "B", "C"), dataset_ids=())
    assert chart_title(several) == f"3 batches · {ROWS} rows in 3 parts"


@pytest.mark.parametrize(
    ("count", "label"),
    [
        (0, "0"),
        (950, "950"),
        (5_000, "5k"),
        (12_500, "12.5k"),
        (480_000, "480k"),
        (2.5e6, "2.5M"),
    ],
)
def test_compact_counts(count: float, label: str) -> None:
    assert compact_count(count) == label


def test_without_matplotlib_plot_says_how_to_install_it(
    batch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, name, None)  # what an import of a missing package does
    with pytest.raises(ConfigError, match=r"pip install 'asyncdl\[plot\]'"):
        draw_report(inspect_scores(batch))
    png = tmp_path / "chart.png"
    result = CliRunner().invoke(app, ["inspect", str(batch), "--plot", str(png)])
    assert result.exit_code == 2
    assert result.stderr == f"asyncdl: error: --plot needs matplotlib: {INSTALL_HINT}\n"
    assert not png.exists()


def test_inspect_plot_and_column_on_the_command_line(batch: Path, tmp_path: Path) -> None:
    png = tmp_path / "chart.png"
    args = ["inspect", str(batch), "--column", "percentileScore", "--bins", "5", "--plot", str(png)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "score distribution: percentileScore, 0-100 in 5 bins of 20" in result.stdout
    assert f"chart drawn into {png}" in result.stdout
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    result = CliRunner().invoke(app, ["inspect", str(batch), "--column", "ecid"])
    assert result.exit_code == 2
    assert "no numeric column 'ecid'" in result.stderr
