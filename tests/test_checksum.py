"""The content hash: both algorithms, the tagged form, and what a recorded digest says."""

from __future__ import annotations

import hashlib

import blake3
import pytest

from asyncdl.checksum import Checksum, parse_digest

DATA = bytes(range(256)) * 1000


@pytest.mark.parametrize(
    ("checksum", "expected"),
    [
        (Checksum.BLAKE3, blake3.blake3(DATA).hexdigest()),
        (Checksum.SHA256, hashlib.sha256(DATA).hexdigest()),
    ],
)
def test_each_algorithm_hashes_incrementally_like_its_reference(
    checksum: Checksum, expected: str
) -> None:
    hasher = checksum.new()
    for start in range(0, len(DATA), 7777):
        hasher.update(memoryview(DATA)[start : start + 7777])  # views, as the writers pass
    assert hasher.hexdigest() == expected
    assert parse_digest(checksum.tag(expected)) == (checksum, expected)


@pytest.mark.parametrize("text", [None, "", "abc", "md5:abc", "blake3:", ":abc"])
def test_a_digest_of_no_known_algorithm_says_nothing(text: str | None) -> None:
    assert parse_digest(text) is None
