"""The per-batch manifest: atomic, round-trips, and an unreadable one means "nothing known"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncdl.errors import StorageError
from asyncdl.layout import MANIFEST_NAME
from asyncdl.manifest import Manifest
from asyncdl.models import Batch, BatchMetrics, Part, PartResult, PartStatus
from asyncdl.storage import LocalStorage

BATCH = Batch(id="B1", status="success", metrics=BatchMetrics(output_byte_size=10))


def result(name: str, status: PartStatus = PartStatus.DOWNLOADED) -> PartResult:
    part = Part(batch_id="B1", dataset_file_id="B1-1", name=name, relpath=name, size=5, href="")
    return PartResult(part=part, status=status, rows=3, digest="blake3:" + "ab" * 32, attempts=2)


async def test_round_trip(tmp_path: Path) -> None:
    manifest = Manifest.load(LocalStorage(tmp_path), BATCH)
    assert manifest.entries == {}
    manifest.record(result("b.parquet"))
    manifest.record(result("a.parquet", PartStatus.FAILED))
    manifest.extra["reconciliation"] = {"ok": True}
    await manifest.save()
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert [p["name"] for p in raw["parts"]] == ["a.parquet", "b.parquet"]
    assert raw["catalog_metrics"]["outputByteSize"] == 10
    assert raw["reconciliation"] == {"ok": True}
    again = Manifest.load(LocalStorage(tmp_path), BATCH)
    assert again.entries["b.parquet"].digest == "blake3:" + "ab" * 32
    assert again.entries["a.parquet"].status == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]  # no temp left


async def test_a_part_recorded_again_is_saved_as_it_is_now(tmp_path: Path) -> None:
    """Saves reuse each entry's encoded line: a part that failed, then arrived, must be saved as
    arrived, with every field as ManifestEntry has it."""
    manifest = Manifest.load(LocalStorage(tmp_path), BATCH)
    manifest.record(result("a.parquet", PartStatus.FAILED))
    await manifest.save()
    manifest.record(result("a.parquet"))
    await manifest.save()
    (entry,) = json.loads((tmp_path / MANIFEST_NAME).read_text())["parts"]
    assert entry == {
        "name": "a.parquet",
        "relpath": "a.parquet",
        "size": 5,
        "rows": 3,
        "digest": "blake3:" + "ab" * 32,
        "attempts": 2,
        "status": "downloaded",
        "error": None,
    }


@pytest.mark.parametrize("content", ["{not json", '{"parts": [{"name": 1}]}', "[]"])
def test_unreadable_manifest_means_nothing_known(tmp_path: Path, content: str) -> None:
    (tmp_path / MANIFEST_NAME).write_text(content)
    assert Manifest.load(LocalStorage(tmp_path), BATCH).entries == {}


async def test_unwritable_directory_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-directory").write_bytes(b"")
    manifest = Manifest.load(LocalStorage(tmp_path / "not-a-directory"), BATCH)
    with pytest.raises(StorageError, match="cannot write"):
        await manifest.save()


def test_a_format_1_entry_reads_as_a_sha256_digest(tmp_path: Path) -> None:
    entry = {"name": "a.parquet", "relpath": "a.parquet", "size": 5, "rows": 3}
    old = [{**entry, "sha256": "cd" * 32, "attempts": 1, "status": "downloaded"}]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": 1, "parts": old}))
    loaded = Manifest.load(LocalStorage(tmp_path), BATCH).entries["a.parquet"]
    assert loaded.digest == "sha256:" + "cd" * 32
