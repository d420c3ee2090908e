"""Beyond one machine without an engine: deterministic shards, fragments, finalize, plans.

``assign`` says which shard owns a part (a stable hash), ``plan`` is a run listed once,
``finalize`` merges a batch's fragments into its manifest, ``run`` is a shard's download.
"""

from __future__ import annotations

from .assign import ShardSpec, shard_of
from .finalize import Finalized
from .plan import ShardPlan, plan_digest
from .run import ShardResult, download_shard, finalize, make_plan, read_plan, write_plan

__all__ = [
    "Finalized",
    "ShardPlan",
    "ShardResult",
    "ShardSpec",
    "download_shard",
    "finalize",
    "make_plan",
    "plan_digest",
    "read_plan",
    "shard_of",
    "write_plan",
]
