"""Server-supplied names are checked once, before they can become paths."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from asyncdl.errors import UnsafeNameError
from asyncdl.listing import check_name, check_relpath, is_metadata
from asyncdl.listing.catalog import metric as _metric
from asyncdl.listing.pages import is_directory as _is_directory


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


@pytest.mark.parametrize(
    "href",
    [
        "http://h/data/foundation/export/files/F1?path=part-0.parquet",
        "http://h/data/foundation/export/files/F1",
        "http://h/data/foundation/export/files/F1?start=0&limit=100",
        "http://h/files/F1?limit=3&path=a%20b.parquet",
        "http://h/files/F1?path=",  # a blank value: parse_qs drops it
        "http://h/files/F1?path",  # no "=": dropped too
        "http://h/files/F1?pa%74h=x",  # an encoded name
        "http://h/files/F1?subpath=x&paths=y",
        "http://h/files/F1#?path=x",  # a fragment, not a query
        "http://h/files/F1?x=1#path=y",
        "http://h/files/F1?path+=x",  # "path " after unquoting
        "http://h/files/F1?&&path=x&",
    ],
)
def test_directory_detection_agrees_with_parse_qs(href: str) -> None:
    assert _is_directory(href) == ("path" not in parse_qs(urlsplit(href).query))


@pytest.mark.parametrize(
    "name",
    ["scoreDate=2020-04-09/part-0.parquet", "a/b/c.parquet", "part-0.parquet"],
)
def test_partition_folders_are_paths_inside_the_batch(name: str) -> None:
    assert check_relpath(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "../x.parquet", "a/../x.parquet", "/abs.parquet", "a//b", "a/", "a\\b", "a/./b", "a/C:x"],
)
def test_paths_that_could_leave_the_batch_are_rejected(name: str) -> None:
    with pytest.raises(UnsafeNameError):
        check_relpath(name)


@pytest.mark.parametrize(
    ("name", "hidden"),
    [
        ("_SUCCESS", True),
        ("_started_5461287312", True),
        ("_committed_5461287312", True),
        ("scoreDate=2020-04-09/_SUCCESS", True),
        (".part-0.parquet.crc", True),
        ("part-0.parquet", False),
        ("scoreDate=2020-04-09/part-0.parquet", False),
        ("_x/part-0.parquet", False),  # only the file's own name decides
    ],
)
def test_hidden_files_are_metadata_as_hadoop_reads_them(name: str, hidden: bool) -> None:
    assert is_metadata(name) is hidden


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (12, 12),
        ("12", 12),
        (" 7 ", 7),
        (0, 0),
        (-1, None),
        ("-1", None),
        (True, None),
        (None, None),
        ("many", None),
        (1.5, None),  # not a count
        ("12.0", 12),
        ([], None),
    ],
)
def test_catalog_metrics_are_counts_or_unknown(value: object, count: int | None) -> None:
    assert _metric(value) == count
