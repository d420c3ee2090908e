"""The MD5 an object store states, checked before the part is sealed."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from asyncdl.errors import (
    VerificationError,
)
from asyncdl.fetch.integrity import CheckedPartFile, StoredDigest
from asyncdl.storage.local import LocalPartFile


class _Stated:
    def __init__(self, data: bytes) -> None:
        self.content_md5 = base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.mark.parametrize("stated", ["right", "wrong"])
def test_a_part_resumed_from_an_earlier_run_is_checked_whole(tmp_path: Path, stated: str) -> None:
    data = bytes(range(256)) * 1000
    earlier = LocalPartFile(tmp_path, "p.bin")
    writer = earlier.open("fresh")
    writer.write([data[:100_000]], offset=None, hasher=None)
    writer.close()
    digest = StoredDigest()
    file = CheckedPartFile(LocalPartFile(tmp_path, "p.bin"), digest, size=len(data))
    kept = file.resumable(len(data), sync=False)  # before any answer: nothing to tee into yet
    assert kept == 100_000
    digest.answered(_Stated(data if stated == "right" else b"other"), "p.bin")  # type: ignore[arg-type]
    appending = file.open("append")
    appending.write([data[kept:]], offset=None, hasher=None)
    appending.close()
    if stated == "right":
        file.seal(sync=False)
        assert (tmp_path / "p.bin").read_bytes() == data
    else:
        with pytest.raises(VerificationError, match="MD5"):
            file.seal(sync=False)
        assert not (tmp_path / "p.bin").exists()
