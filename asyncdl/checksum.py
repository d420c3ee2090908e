"""The content hash recorded for every part: which algorithms, and the tagged form they are kept in.

BLAKE3 by default. It is a cryptographic hash like sha256 and about four times cheaper here
(benchmarks/README.md: ~0.16 CPU-s per GiB against ~0.6, the largest single cost of a download
after the socket reads), through the BLAKE3 team's own bindings (``blake3``: SIMD, releases the
GIL on long inputs, typed). sha256 stays one option away (``--checksum sha256``) for tools that
compare against one. A digest is kept tagged with its algorithm, ``blake3:<hex>`` (the form OCI
image digests use), so a manifest says what it holds and a later run with another algorithm
knows to hash again rather than compare unlike digests.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Protocol

import blake3

__all__ = ["Checksum", "Hasher", "parse_digest"]


class Hasher(Protocol):
    """What the hashing code needs of a hash object (hashlib's and blake3's alike)."""

    def update(self, data: bytes | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


class Checksum(enum.Enum):
    """A content hash a run can record."""

    BLAKE3 = "blake3"
    SHA256 = "sha256"

    def new(self) -> Hasher:
        if self is Checksum.BLAKE3:
            return blake3.blake3(max_threads=1)  # one thread per part: the pool is the workers
        return hashlib.sha256()

    def tag(self, hexdigest: str) -> str:
        """The digest as recorded: ``<algorithm>:<hex>``."""
        return f"{self.value}:{hexdigest}"


def parse_digest(text: str | None) -> tuple[Checksum, str] | None:
    """A recorded digest's algorithm and hex (None: no digest, or one of no known algorithm)."""
    if not text:
        return None
    algorithm, sep, hexdigest = text.partition(":")
    if not sep or not hexdigest:
        return None
    try:
        return Checksum(algorithm), hexdigest
    except ValueError:
        return None
