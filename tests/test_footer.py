"""The pyarrow-free footer reader agrees with pyarrow and refuses anything that is not parquet."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asyncdl.emulator import EmulatorConfig, running_emulator
from asyncdl.errors import VerificationError
from asyncdl.footer import _FooterError, _rows_from_footer, parquet_rows, parquet_rows_in
from tests.helpers import EmulatorFactory


def write(path: Path, rows: int, **options: object) -> Path:
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "name": pa.array([f"n{i}" for i in range(rows)]),
            "flag": pa.array([i % 2 == 0 for i in range(rows)]),
            "tags": pa.array([[f"t{i}", "x"] for i in range(rows)]),
            "nested": pa.array([{"a": i, "b": float(i)} for i in range(rows)]),
        }
    )
    pq.write_table(table, path, **options)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"compression": "snappy", "row_group_size": 7},
        {"compression": "zstd", "write_statistics": False},
        {"version": "1.0", "use_dictionary": False},
        {"store_schema": False, "write_page_index": True},
    ],
)
@pytest.mark.parametrize("rows", [0, 1, 100, 5000])
def test_rows_match_pyarrow(tmp_path: Path, rows: int, options: dict[str, object]) -> None:
    path = write(tmp_path / "x.parquet", rows, **options)
    assert parquet_rows(path) == pq.read_metadata(path).num_rows == rows


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunk_bytes", [1, 5, 4096, 1 << 30])
def test_in_memory_chunks_read_like_the_file(tmp_path: Path, chunk_bytes: int) -> None:
    path = write(tmp_path / "x.parquet", 300, compression="snappy", row_group_size=50)
    data = path.read_bytes()
    assert parquet_rows_in(chunked(data, chunk_bytes), "x.parquet") == 300
    damaged = data[:-5] + b"XPAR1"  # a footer length that no longer fits
    with pytest.raises(VerificationError, match=r"x\.parquet"):
        parquet_rows_in(chunked(damaged, chunk_bytes), "x.parquet")


async def test_emulator_parts_match_pyarrow(emulator_config: EmulatorFactory) -> None:
    config: EmulatorConfig = emulator_config(dataset={"nested": True})
    async with running_emulator(config) as emu:
        for batch in emu.truth:
            for part in batch.parts:
                assert parquet_rows(part.path) == part.rows


@pytest.mark.parametrize(
    "damage",
    ["truncate", "no-head-magic", "huge-length", "garbled-footer", "tiny", "not-parquet"],
)
def test_damaged_files_are_refused(tmp_path: Path, damage: str) -> None:
    path = write(tmp_path / "x.parquet", 50)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "no-head-magic":
        data[:4] = b"XXXX"
    elif damage == "huge-length":
        data[-8:-4] = (len(data) * 2).to_bytes(4, "little")
    elif damage == "garbled-footer":
        length = int.from_bytes(data[-8:-4], "little")
        start = len(data) - 8 - length
        data[start : start + 16] = b"\xff" * 16
    elif damage == "tiny":
        data = bytearray(b"PAR1PAR1")
    else:
        data = bytearray(b"id,score\n1,2\n" * 10)
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=r"x\.parquet"):
        parquet_rows(path)


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    "footer_hex",
    [
        "1bffffffffffffffffff0133",  # field 1: a map<byte, byte> claiming ~2**63 entries
        "1bffffffff0f33",  # the same with ~2**32 entries
        "19f3ffffffff0f",  # field 1: a list<byte> claiming ~2**32 elements
        "36fefefefefefefefefe7f00",  # field 3, num_rows, beyond an i64
        "19" + "19" * 200,  # lists nested deeper than any parquet footer
    ],
)
def test_malformed_footers_fail_fast(footer_hex: str) -> None:
    with pytest.raises(_FooterError):
        _rows_from_footer(bytes.fromhex(footer_hex))
