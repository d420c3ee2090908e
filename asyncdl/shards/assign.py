"""Which shard fetches which part: a stable hash of the part's identity, nothing else.

sha256 of (batch id, dataSetFileId, name), never Python's salted ``hash()``: the same answer in
every process, on every machine and under every ``PYTHONHASHSEED``, whatever order the listing
came in. Each part belongs to exactly one of N shards (disjoint and total by construction).
Shards are 1-based, as Jest and Playwright spell them: a Kubernetes Indexed Job passes
``$((JOB_COMPLETION_INDEX + 1))/N``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..errors import ConfigError
from ..models import Part

__all__ = ["ShardSpec", "shard_of"]

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def shard_of(batch_id: str, dataset_file_id: str, name: str, count: int) -> int:
    """The 1-based shard of ``count`` that owns this part."""
    key = "\0".join((batch_id, dataset_file_id, name)).encode()
    return 1 + int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % count


@dataclass(frozen=True, kw_only=True, slots=True)
class ShardSpec:
    """Shard ``index`` of ``count`` (1-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ConfigError(f"a shard is K/N with 1 <= K <= N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """``"2/3"`` → shard 2 of 3."""
        match = _SPEC.match(text)
        if match is None:
            raise ConfigError(f"--shard takes K/N (for example 2/3), got {text!r}")
        return cls(index=int(match.group(1)), count=int(match.group(2)))

    def owns(self, part: Part) -> bool:
        return shard_of(part.batch_id, part.dataset_file_id, part.name, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
