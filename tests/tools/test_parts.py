"""find_parts and scan_parts agree on which files are parts; batch_labels reads the manifests'
ids and passes over what it cannot read; first_rows takes the columns the parts have."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asyncdl.errors import ConfigError
from asyncdl.tools.parts import BatchLabels, batch_labels, find_parts, first_rows, scan_parts


def test_part_files_manifest_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    pq.write_table(pa.table({"score": [12.5]}), tmp_path / "a.parquet")
    (tmp_path / "b.parquet.part").write_bytes(b"half a download")
    (tmp_path / ".c.parquet.1234.tmp").write_bytes(b"temp")
    (tmp_path / "_d.parquet").write_bytes(b"not ours")
    (tmp_path / "manifest.json").write_text("{}")
    assert find_parts(tmp_path) == (tmp_path / "a.parquet",)
    assert find_parts(tmp_path / ".", exclude=()) == (tmp_path / "." / "a.parquet",)


def test_scan_unifies_schemas_and_counts(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int32())}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": pa.array([3], pa.int64()), "x": ["y"]}), tmp_path / "b.parquet")
    parts = scan_parts(tmp_path)
    assert parts.rows == 3
    assert [(field.name, str(field.type)) for field in parts.schema] == [
        ("id", "int64"),
        ("x", "string"),
    ]
    assert parts.bytes == sum(path.stat().st_size for path in parts.paths)


def test_scan_refuses_what_cannot_be_read_or_unified(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": ["one"]}), tmp_path / "b.parquet")
    with pytest.raises(ConfigError, match="incompatible schemas"):
        scan_parts(tmp_path)
    with pytest.raises(ConfigError, match="not a directory"):
        scan_parts(tmp_path / "missing")


def test_batch_labels_from_every_manifest(tmp_path: Path) -> None:
    documents = {
        "B1": {"batch_id": "B1", "dataset_id": "D"},
        "B2": {"batch_id": "B2", "dataset_id": "D"},
        "B3": {"batch_id": 3, "dataset_id": None},  # not strings: not labels
        "B4": ["a", "list"],
    }
    for name, document in documents.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(document))
    (tmp_path / "B5").mkdir()
    (tmp_path / "B5" / "manifest.json").write_bytes(b"\xff not json")
    assert batch_labels(tmp_path) == BatchLabels(dataset_ids=("D",), batch_ids=("B1", "B2"))
    assert batch_labels(tmp_path / "B1") == BatchLabels(dataset_ids=("D",), batch_ids=("B1",))
    assert batch_labels(tmp_path / "B5") == BatchLabels()


def test_first_rows_in_path_order_with_the_columns_present(tmp_path: Path) -> None:
    pq.write_table(pa.table({"ecid": ["b1", "b2"], "score": [2.0, 3.0]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"ecid": ["a1"], "score": [1.0]}), tmp_path / "a.parquet")
    rows = first_rows(scan_parts(tmp_path), columns=("ecid", "score", "missing"), limit=2)
    assert rows == [{"ecid": "a1", "score": 1.0}, {"ecid": "b1", "score": 2.0}]
