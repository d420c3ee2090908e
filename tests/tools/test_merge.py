"""merge_parts writes every part's rows into one parquet or CSV file, atomically, never reading
its own output, and refuses what it cannot do with a ConfigError."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from asyncdl.errors import ConfigError
from asyncdl.tools.merge import MergeResult, merge_parts, merge_parts_async

FACTOR = pa.struct([pa.field("code", pa.string()), pa.field("importance", pa.string())])
FIELDS: list[pa.Field[Any]] = [
    pa.field("ecid", pa.string()),
    pa.field("score", pa.float64()),
    pa.field("percentileScore", pa.int32()),
    pa.field("influentialFactors", pa.list_(pa.field("element", FACTOR))),
]
SCHEMA = pa.schema(FIELDS)
NESTED = pa.schema(
    [
        pa.field("ecid", pa.string()),
        pa.field(
            "_tenant",
            pa.struct(
                [
                    pa.field("score", pa.float64()),
                    pa.field("factors", pa.list_(pa.field("element", FACTOR))),
                ]
            ),
        ),
    ]
)
SIZES = (100, 100, 50)  # rows per part


def table(start: int, rows: int) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "ecid": f"{i:06d}",
                "score": i / 3,
                "percentileScore": i % 100 + 1,
                "influentialFactors": None
                if i % 7 == 0
                else [{"code": f"c{i % 4}", "importance": "high"}] * (i % 3),
            }
            for i in range(start, start + rows)
        ],
        schema=SCHEMA,
    )


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Path, list[pa.Table]]:
    """Three parts in two sub-directories, written in an order unlike their path order."""
    source = tmp_path / "download"
    tables = []
    start = 0
    for rows in SIZES:
        tables.append(table(start, rows))
        start += rows
    for index in (2, 0, 1):
        path = source / f"batch/dir-{index // 2}/part-{index:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(tables[index], path, row_group_size=40)
    return source, tables


def test_parquet_round_trips_every_row_in_path_order(
    tmp_path: Path, parts: tuple[Path, list[pa.Table]]
) -> None:
    source, tables = parts
    target = tmp_path / "out" / "all.parquet"
    result = merge_parts(source, target)
    assert result == MergeResult(
        target=target, parts=3, rows=sum(SIZES), bytes=target.stat().st_size
    )
    merged = pq.read_table(target)
    expected = pa.concat_tables(tables)
    assert merged.schema.equals(SCHEMA)
    assert merged.sort_by("ecid").equals(expected.sort_by("ecid"))
    assert merged.equals(expected)  # sorted by path: dir-0/part-0, dir-0/part-1, dir-1/part-2
    assert pq.ParquetFile(target).metadata.row_group(0).column(0).compression == "SNAPPY"
    assert not target.with_name("all.parquet.part").exists()


def test_row_groups_are_coalesced_across_parts(
    tmp_path: Path, parts: tuple[Path, list[pa.Table]]
) -> None:
    source, _ = parts
    target = tmp_path / "all.parquet"
    merge_parts(source, target, batch_rows=64)
    metadata = pq.ParquetFile(target).metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sizes == [64, 64, 64, 58]


def test_schemas_are_unified(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    pq.write_table(
        pa.table({"id": pa.array([1, 2], pa.int32()), "a": ["x", "y"]}), source / "1.parquet"
    )
    pq.write_table(pa.table({"id": pa.array([3], pa.int64()), "b": [0.5]}), source / "2.parquet")
    target = tmp_path / "all.parquet"
    assert merge_parts(source, target).rows == 3
    assert pq.read_table(target).to_pylist() == [
        {"id": 1, "a": "x", "b": None},
        {"id": 2, "a": "y", "b": None},
        {"id": 3, "a": None, "b": 0.5},
    ]


def test_incompatible_schemas_are_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["x"]}), tmp_path / "1.parquet")
    pq.write_table(pa.table({"id": [1]}), tmp_path / "2.parquet")
    with pytest.raises(ConfigError, match="incompatible"):
        merge_parts(tmp_path, tmp_path.parent / "all.parquet")


def test_csv_has_a_header_and_every_row(tmp_path: Path, parts: tuple[Path, list[pa.Table]]) -> None:
    source, tables = parts
    target = tmp_path / "all.csv"
    result = merge_parts(source, target, batch_rows=30)
    assert result.rows == sum(SIZES)
    assert result.bytes == target.stat().st_size
    lines = target.read_text().splitlines()
    assert lines[0] == '"ecid","score","percentileScore","influentialFactors"'
    assert len(lines) == 1 + sum(SIZES)
    options = pacsv.ConvertOptions(column_types={"ecid": pa.string()}, strings_can_be_null=True)
    back = pacsv.read_csv(target, convert_options=options)
    expected = pa.concat_tables(tables)
    assert back.column("ecid").to_pylist() == expected.column("ecid").to_pylist()
    assert back.column("score").to_pylist() == expected.column("score").to_pylist()
    factors = [None if cell is None else json.loads(cell) for cell in back.column(3).to_pylist()]
    assert factors == expected.column("influentialFactors").to_pylist()


def test_csv_flattens_structs_and_writes_lists_as_json(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    rows: list[dict[str, Any]] = [
        {"ecid": "1", "_tenant": {"score": 12.5, "factors": [{"code": "a", "importance": "low"}]}},
        {"ecid": "2", "_tenant": None},
        {"ecid": "3", "_tenant": {"score": None, "factors": []}},
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=NESTED), source / "part.parquet")
    target = tmp_path / "all.csv"
    merge_parts(source, target)
    assert target.read_text().splitlines() == [
        '"ecid","_tenant.score","_tenant.factors"',
        '"1",12.5,"[{""code"":""a"",""importance"":""low""}]"',
        '"2",,',
        '"3",,"[]"',
    ]


def test_unsupported_extension_is_a_config_error(
    tmp_path: Path, parts: tuple[Path, list[pa.Table]]
) -> None:
    source, _ = parts
    target = tmp_path / "all.json"
    with pytest.raises(ConfigError, match=r"\.csv, \.parquet"):
        merge_parts(source, target)
    assert not target.exists()
    assert not target.with_name("all.json.part").exists()


def test_no_parquet_files_is_a_config_error(tmp_path: Path) -> None:
    source = tmp_path / "empty"
    source.mkdir()
    (source / "manifest.json").write_text("{}")
    (source / "part-0.parquet.part").write_bytes(b"half")
    with pytest.raises(ConfigError, match=r"no \.parquet files"):
        merge_parts(source, tmp_path / "all.parquet")
    assert not (tmp_path / "all.parquet").exists()


def test_bad_batch_rows_is_a_config_error(
    tmp_path: Path, parts: tuple[Path, list[pa.Table]]
) -> None:
    source, _ = parts
    with pytest.raises(ConfigError, match="batch_rows"):
        merge_parts(source, tmp_path / "all.parquet", batch_rows=0)


def test_target_inside_the_directory_is_not_read(
    parts: tuple[Path, list[pa.Table]],
) -> None:
    source, tables = parts
    target = source / "merged.parquet"
    first = merge_parts(source, target)
    # The second run finds the first output in place; spelt differently, it is still excluded.
    second = merge_parts(source, source / "batch" / ".." / "merged.parquet")
    assert first.parts == second.parts == 3
    assert first.rows == second.rows == sum(SIZES)
    assert pq.read_table(target).equals(pa.concat_tables(tables))


def test_failure_mid_write_leaves_neither_file(
    tmp_path: Path, parts: tuple[Path, list[pa.Table]]
) -> None:
    source, _ = parts
    # A readable footer over a destroyed page: the failure comes after writing has begun.
    broken = source / "zzz" / "broken.parquet"
    broken.parent.mkdir()
    pq.write_table(pa.table({"ecid": [f"{i}" for i in range(500)]}), broken, compression="none")
    data = bytearray(broken.read_bytes())
    data[4:200] = b"\xff" * 196
    broken.write_bytes(bytes(data))
    target = tmp_path / "all.parquet"
    with pytest.raises(ConfigError, match=r"broken\.parquet"):
        merge_parts(source, target, batch_rows=10)
    assert not target.exists()
    assert not target.with_name("all.parquet.part").exists()


def test_an_earlier_result_survives_a_failed_merge(
    tmp_path: Path, parts: tuple[Path, list[pa.Table]]
) -> None:
    source, _ = parts
    target = tmp_path / "all.parquet"
    merge_parts(source, target)
    before = target.read_bytes()
    (source / "z.parquet").write_bytes(b"PAR1 nonsense")
    with pytest.raises(ConfigError):
        merge_parts(source, target)
    assert target.read_bytes() == before


def test_async_variant(tmp_path: Path, parts: tuple[Path, list[pa.Table]]) -> None:
    source, tables = parts
    target = tmp_path / "all.parquet"
    result = anyio.run(functools.partial(merge_parts_async, source, target, batch_rows=16))
    assert result.rows == sum(SIZES)
    assert pq.read_table(target).equals(pa.concat_tables(tables))
