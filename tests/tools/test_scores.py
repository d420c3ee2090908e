"""inspect_scores counts exactly what small hand-built parts hold, flat or nested under structs,
bins the score column over its own range and names it, labels the report from the manifests,
and still describes parquet that is not Customer AI output; the emulator's generated scores
read back as Customer AI's do (skewed, ranked percentiles, importance following the score)."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asyncdl.emulator.parquet import SCORE_SHAPE, generate_part
from asyncdl.errors import ConfigError
from asyncdl.tools.histogram import Histogram
from asyncdl.tools.scores import Bucket, FactorCount, ScoreReport, inspect_scores

ROWS = 300
FINE_BIN = 0.1  # width of the histogram the quartiles are read from

FACTOR = pa.struct(
    [
        pa.field("code", pa.string()),
        pa.field("value", pa.string()),
        pa.field("importance", pa.string()),
    ]
)
FACTORS = pa.list_(pa.field("element", FACTOR))
INSTANCE = pa.struct(
    [
        pa.field("score", pa.float64()),
        pa.field("percentileScore", pa.int32()),
        pa.field("propensityType", pa.string()),
        pa.field("influentialFactors", FACTORS),
    ]
)
FLAT = pa.schema(
    [pa.field("ecid", pa.string()), *(INSTANCE.field(i) for i in range(INSTANCE.num_fields))]
)
NESTED = pa.schema(
    [
        pa.field("ecid", pa.string()),
        pa.field("_tenant", pa.struct([pa.field("instance", INSTANCE)])),
    ]
)
LEVELS = ("low", "medium", "high")


def make_rows() -> list[dict[str, Any]]:
    """Skewed scores with nulls, a NaN and exact bin edges; factors with empty and null lists."""
    rows: list[dict[str, Any]] = []
    for i in range(ROWS):
        score: float | None = 100.0 * (i / ROWS) ** 2
        if i % 50 == 7:
            score = None
        elif i == 13:
            score = math.nan
        elif i in (20, 21):
            score = 10.0 * (i - 19)  # 10.0 and 20.0 sit on edges: they open the next bin
        elif i == ROWS - 1:
            score = 100.0  # the top edge belongs to the last bin
        propensity = None if i % 50 == 1 else ("churn" if i % 3 == 0 else "conversion")
        factors: list[dict[str, str]] | None = [
            {"code": "abcde"[(i + j) % 5], "value": str(j), "importance": LEVELS[(i * j) % 3]}
            for j in range(i % 4)
        ]
        if i % 10 == 9:
            factors = None
        elif i % 17 == 0 and factors:
            factors[0]["importance"] = "HIGH"  # importance is compared case-insensitively
        rows.append(
            {
                "ecid": f"{i:038d}",
                "score": score,
                "percentileScore": (i * 13) % 100 + 1,
                "propensityType": propensity,
                "influentialFactors": factors,
            }
        )
    return rows


def write_parts(directory: Path, rows: list[dict[str, Any]], *, nested: bool = False) -> None:
    """Three parts in two sub-directories, several row groups each, so batches really stream."""
    schema = NESTED if nested else FLAT
    chunks = [rows[:100], rows[100:220], rows[220:]]
    for index, chunk in enumerate(chunks):
        if nested:
            chunk = [
                {"ecid": row["ecid"], "_tenant": {"instance": _without(row, "ecid")}}
                for row in chunk
            ]
        path = directory / f"file-{index % 2}" / f"part-{index:05d}.snappy.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(chunk, schema=schema), path, row_group_size=32)


def _without(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name != key}


def valid_scores(rows: list[dict[str, Any]]) -> list[float]:
    scores = (row["score"] for row in rows)
    return sorted(s for s in scores if s is not None and not math.isnan(s))


def expected_factors(rows: list[dict[str, Any]]) -> dict[str, FactorCount]:
    tally: dict[str, Counter[str]] = {}
    for row in rows:
        for factor in row["influentialFactors"] or []:
            counts = tally.setdefault(factor["code"], Counter())
            counts["count"] += 1
            counts[factor["importance"].lower()] += 1
    return {
        code: FactorCount(
            code=code, count=c["count"], low=c["low"], medium=c["medium"], high=c["high"]
        )
        for code, c in tally.items()
    }


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    return make_rows()


@pytest.fixture
def flat_report(tmp_path: Path, rows: list[dict[str, Any]]) -> ScoreReport:
    write_parts(tmp_path, rows)
    return inspect_scores(tmp_path)


def test_counts_parts_rows_bytes_and_schema(tmp_path: Path, flat_report: ScoreReport) -> None:
    files = sorted(tmp_path.rglob("*.parquet"))
    assert flat_report.directory == tmp_path
    assert flat_report.parts == 3
    assert flat_report.rows == ROWS
    assert flat_report.bytes == sum(path.stat().st_size for path in files)
    assert flat_report.schema == tuple((field.name, str(field.type)) for field in FLAT)
    assert dict(flat_report.columns_used) == {
        "score": "score",
        "percentileScore": "percentileScore",
        "propensityType": "propensityType",
        "influentialFactors": "influentialFactors",
    }
    assert flat_report.score_column == "score"
    assert flat_report.dataset_ids == flat_report.batch_ids == ()  # no manifest: no labels


def test_score_histogram_is_exact(flat_report: ScoreReport, rows: list[dict[str, Any]]) -> None:
    expected = [0] * 10
    for score in valid_scores(rows):
        expected[min(int(score // 10), 9)] += 1
    assert flat_report.score == Histogram(
        edges=(0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0),
        counts=tuple(expected),
    )


def test_histogram_bin_count_is_configurable(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    write_parts(tmp_path, rows)
    report = inspect_scores(tmp_path, bins=4)
    assert report.score is not None
    assert report.score.edges == (0.0, 25.0, 50.0, 75.0, 100.0)
    expected = Counter(min(int(score // 25), 3) for score in valid_scores(rows))
    assert report.score.counts == tuple(expected[index] for index in range(4))


def test_summary_is_exact_and_quartiles_are_within_a_bin(
    flat_report: ScoreReport, rows: list[dict[str, Any]]
) -> None:
    scores = valid_scores(rows)
    summary = flat_report.score_summary
    assert summary is not None
    assert summary.count == len(scores) == ROWS - 7  # 6 nulls and one NaN are left out
    assert summary.min == scores[0]
    assert summary.max == scores[-1] == 100.0
    assert summary.mean == pytest.approx(math.fsum(scores) / len(scores), rel=1e-12)
    # Different quantile definitions pick either neighbour of the rank; allow a fine bin beyond.
    for q, estimate in ((0.25, summary.p25), (0.5, summary.p50), (0.75, summary.p75)):
        position = q * (len(scores) - 1)
        below, above = scores[math.floor(position)], scores[math.ceil(position)]
        assert below - FINE_BIN <= estimate <= above + FINE_BIN


def test_quartiles_of_dense_data_are_within_a_fine_bin(tmp_path: Path) -> None:
    rng = random.Random(7)
    scores = [rng.uniform(0, 100) for _ in range(20_000)]
    pq.write_table(pa.table({"score": pa.array(scores, pa.float64())}), tmp_path / "a.parquet")
    summary = inspect_scores(tmp_path).score_summary
    assert summary is not None
    exact = statistics.quantiles(scores, n=4, method="inclusive")
    assert summary.p25 == pytest.approx(exact[0], abs=FINE_BIN)
    assert summary.p50 == pytest.approx(exact[1], abs=FINE_BIN)
    assert summary.p75 == pytest.approx(exact[2], abs=FINE_BIN)


def test_percentile_buckets(flat_report: ScoreReport, rows: list[dict[str, Any]]) -> None:
    expected = Counter((row["percentileScore"] - 1) // 10 for row in rows)
    assert flat_report.percentile_buckets == tuple(
        Bucket(low=10 * index + 1, high=10 * index + 10, count=expected[index])
        for index in range(10)
    )
    assert sum(bucket.count for bucket in flat_report.percentile_buckets) == ROWS


def test_propensity_types_most_common_first(flat_report: ScoreReport) -> None:
    # i % 3 == 0 is churn (100 rows), the rest conversion, minus 6 null rows (i % 50 == 1).
    churn_nulls = sum(1 for i in range(ROWS) if i % 50 == 1 and i % 3 == 0)
    assert flat_report.propensity_types == (
        ("conversion", 200 - (6 - churn_nulls)),
        ("churn", 100 - churn_nulls),
    )


def test_top_factors(flat_report: ScoreReport, rows: list[dict[str, Any]]) -> None:
    expected = expected_factors(rows)
    ranked = sorted(expected.values(), key=lambda factor: (-factor.count, factor.code))
    assert flat_report.top_factors == tuple(ranked)
    assert all(f.count == f.low + f.medium + f.high for f in flat_report.top_factors)


def test_top_factors_limit(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    write_parts(tmp_path, rows)
    report = inspect_scores(tmp_path, top_factors=2)
    ranked = sorted(expected_factors(rows).values(), key=lambda f: (-f.count, f.code))
    assert report.top_factors == tuple(ranked[:2])


def test_nested_columns_are_found_by_leaf_name(
    tmp_path: Path, rows: list[dict[str, Any]], flat_report: ScoreReport
) -> None:
    nested_dir = tmp_path / "nested"
    write_parts(nested_dir, rows, nested=True)
    report = inspect_scores(nested_dir)
    assert dict(report.columns_used) == {
        "score": "_tenant.instance.score",
        "percentileScore": "_tenant.instance.percentileScore",
        "propensityType": "_tenant.instance.propensityType",
        "influentialFactors": "_tenant.instance.influentialFactors",
    }
    assert report.schema == tuple((field.name, str(field.type)) for field in NESTED)
    assert report.rows == ROWS
    assert report.score == flat_report.score
    assert report.score_summary == flat_report.score_summary
    assert report.percentile_buckets == flat_report.percentile_buckets
    assert report.propensity_types == flat_report.propensity_types
    assert report.top_factors == flat_report.top_factors


def test_other_parquet_still_inspects(tmp_path: Path) -> None:
    for index in range(2):
        table = pa.table({"id": pa.array(range(index * 10, index * 10 + 7)), "value": ["x"] * 7})
        pq.write_table(table, tmp_path / f"{index}.parquet")
    report = inspect_scores(tmp_path)
    assert report.parts == 2
    assert report.rows == 14
    assert report.bytes == sum(path.stat().st_size for path in tmp_path.glob("*.parquet"))
    assert report.schema == (("id", "int64"), ("value", "string"))
    assert report.columns_used == ()
    assert report.score_column is None
    assert report.score is None
    assert report.score_summary is None
    assert report.percentile_buckets == ()
    assert report.propensity_types == ()
    assert report.top_factors == ()


def test_a_column_of_another_type_is_ignored(tmp_path: Path) -> None:
    pq.write_table(pa.table({"score": ["high", "low"]}), tmp_path / "a.parquet")
    report = inspect_scores(tmp_path)
    assert report.rows == 2
    assert report.score is None


def test_empty_or_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"no \.parquet files"):
        inspect_scores(tmp_path)
    with pytest.raises(ConfigError, match="not a directory"):
        inspect_scores(tmp_path / "missing")


def test_unreadable_part_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "a.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ConfigError, match=r"a\.parquet"):
        inspect_scores(tmp_path)


@pytest.mark.parametrize(("bins", "top_factors"), [(0, 10), (10, -1)])
def test_bad_options_are_config_errors(tmp_path: Path, bins: int, top_factors: int) -> None:
    pq.write_table(pa.table({"score": [1.0]}), tmp_path / "a.parquet")
    with pytest.raises(ConfigError):
        inspect_scores(tmp_path, bins=bins, top_factors=top_factors)


def test_a_probability_column_is_binned_over_its_own_range(tmp_path: Path) -> None:
    """Without ``score``, the 0-1 ``probability`` is drawn, in tenths rather than one bin of 0-10;
    0.3 sits on an edge and opens the 0.3-0.4 bin although 0.3 / 0.1 < 3 in floating point."""
    values = [0.02, 0.05, 0.12, 0.3, 0.31, 0.33, 0.5, 0.97, None, math.nan]
    pq.write_table(
        pa.table({"probability": pa.array(values, pa.float64())}), tmp_path / "a.parquet"
    )
    report = inspect_scores(tmp_path)
    assert report.score_column == "probability"
    assert report.score == Histogram(
        edges=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        counts=(2, 1, 0, 3, 0, 1, 0, 0, 0, 1),
    )
    assert report.score_summary is not None
    assert (report.score_summary.min, report.score_summary.max) == (0.02, 0.97)


def test_edges_are_round_and_cover_the_values(tmp_path: Path) -> None:
    values = [12.3, 40.0, 87.9]
    pq.write_table(pa.table({"score": values}), tmp_path / "a.parquet")
    report = inspect_scores(tmp_path, bins=10)
    assert report.score is not None
    assert report.score.edges == (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)
    assert report.score.counts == (1, 0, 0, 1, 0, 0, 0, 1)


def test_another_column_can_be_drawn_by_leaf_or_dotted_path(tmp_path: Path) -> None:
    rows = make_rows()
    write_parts(tmp_path, rows, nested=True)
    by_leaf = inspect_scores(tmp_path, column="percentileScore")
    by_path = inspect_scores(tmp_path, column="_tenant.instance.percentileScore")
    assert by_leaf.score_column == by_path.score_column == "_tenant.instance.percentileScore"
    assert by_leaf.score == by_path.score
    assert by_leaf.score is not None
    assert sum(by_leaf.score.counts) == ROWS
    assert by_leaf.percentile_buckets  # the percentile role is still read as well
    for missing in ("nope", "ecid", "_tenant.instance"):  # absent, text, a struct
        with pytest.raises(ConfigError, match=f"no numeric column {missing!r}"):
            inspect_scores(tmp_path, column=missing)


def test_a_score_column_without_values_has_no_histogram(tmp_path: Path) -> None:
    scores = pa.array([None, math.nan, math.inf], pa.float64())
    pq.write_table(pa.table({"score": scores}), tmp_path / "a.parquet")
    report = inspect_scores(tmp_path)
    assert report.score_column == "score"
    assert report.score is None
    assert report.score_summary is None


def test_a_constant_score_is_one_bin(tmp_path: Path) -> None:
    pq.write_table(pa.table({"score": [42.5] * 3}), tmp_path / "a.parquet")
    report = inspect_scores(tmp_path)
    assert report.score == Histogram(edges=(42.5, 42.5), counts=(3,))
    assert report.score_summary is not None
    assert report.score_summary.p50 == 42.5


def test_manifests_label_the_report(tmp_path: Path) -> None:
    for batch in ("B2", "B1"):
        (tmp_path / batch / "f").mkdir(parents=True)
        pq.write_table(pa.table({"score": [1.0]}), tmp_path / batch / "f" / "a.parquet")
        manifest: dict[str, object] = {"batch_id": batch, "dataset_id": "D", "parts": []}
        (tmp_path / batch / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "B3").mkdir()
    (tmp_path / "B3" / "manifest.json").write_text("{not json")  # a label, not worth failing for
    report = inspect_scores(tmp_path)
    assert report.dataset_ids == ("D",)
    assert report.batch_ids == ("B1", "B2")
    assert inspect_scores(tmp_path / "B1").batch_ids == ("B1",)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """One part as the emulator generates it (two row groups, so ranks span row groups)."""
    directory = tmp_path_factory.mktemp("emulated")
    path = directory / "part-00000.snappy.parquet"
    generate_part(
        path, rows=80_000, seed="inspect", propensity="churn", score_date=dt.date(2025, 6, 1)
    )
    return directory, pq.read_table(path).to_pylist()


def test_emulated_scores_are_right_skewed(emulated: tuple[Path, list[dict[str, Any]]]) -> None:
    """probability ~ Kumaraswamy(a, b): the report's median and mean are the law's."""
    directory, rows = emulated
    a, b = SCORE_SHAPE
    median = 100 * (1 - 0.5 ** (1 / b)) ** (1 / a)
    mean = 100 * b * math.exp(math.lgamma(1 + 1 / a) + math.lgamma(b) - math.lgamma(1 + 1 / a + b))
    summary = inspect_scores(directory).score_summary
    assert summary is not None
    assert summary.p50 == pytest.approx(median, abs=0.5)
    assert summary.mean == pytest.approx(mean, abs=0.5)
    assert summary.p50 < summary.mean  # the long tail of likely profiles
    assert summary.min >= 0.0
    assert summary.max <= 100.0
    above_half = sum(1 for row in rows if row["score"] >= 50) / len(rows)
    assert 0.05 < above_half < 0.15


def test_emulated_score_is_the_probability_in_hundredths(
    emulated: tuple[Path, list[dict[str, Any]]],
) -> None:
    _, rows = emulated
    assert all(0.0 <= row["probability"] < 1.0 for row in rows)
    assert all(row["score"] == round(100 * row["probability"], 2) for row in rows)


def test_emulated_percentile_ranks_the_score_within_its_part(
    emulated: tuple[Path, list[dict[str, Any]]],
) -> None:
    directory, rows = emulated
    at_or_below = Counter(row["score"] for row in rows)
    running, share = 0, {}
    for score in sorted(at_or_below):
        running += at_or_below[score]
        share[score] = math.ceil(100 * running / len(rows))
    assert [row["percentileScore"] for row in rows] == [share[row["score"]] for row in rows]
    buckets = inspect_scores(directory).percentile_buckets
    assert all(abs(bucket.count / len(rows) - 0.1) < 0.005 for bucket in buckets)


def test_emulated_importance_follows_the_percentile(
    emulated: tuple[Path, list[dict[str, Any]]],
) -> None:
    _, rows = emulated

    def high_share(low: int, high: int) -> float:
        levels = [
            factor["importance"]
            for row in rows
            if low <= row["percentileScore"] <= high
            for factor in row["influentialFactors"]
        ]
        return levels.count("high") / len(levels)

    assert high_share(1, 33) < 0.05 < 0.6 < high_share(67, 100)
    everything = Counter(f["importance"] for row in rows for f in row["influentialFactors"])
    assert all(0.28 < count / everything.total() < 0.38 for count in everything.values())
