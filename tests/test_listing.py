"""Server-supplied names are checked once, before they can become paths."""

from __future__ import annotations

import pytest

from asyncdl.errors import UnsafeNameError
from asyncdl.listing import check_name


@pytest.mark.parametrize(
    "name",
    [
        "part-00000-tid-7597930103898538622-a25f1890-efa9-40eb-a2cb-1b378e93d582-528-1-c000.snappy.parquet",
        "scores 2020.parquet",
        "..hidden-but-harmless",
        "ünïcode.parquet",
    ],
)
def test_safe_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../escape.parquet",
        "/etc/evil.parquet",
        "sub/dir.parquet",
        "sub\\dir.parquet",
        "C:evil.parquet",
        "c:\\windows\\x",
        "bad\x00nul.parquet",
        "ctl\x07.parquet",
        "new\nline.parquet",
        "del\x7f.parquet",
    ],
)
def test_unsafe_names_are_rejected(name: str) -> None:
    with pytest.raises(UnsafeNameError):
        check_name(name)
