"""A run's plan, listed once: the selected batches and every part of each, placed; and the
digest every shard and ``finalize`` compare so they know they worked from the same listing.

``asyncdl plan … --shards N --write PLAN.json`` writes one; ``--plan PLAN.json --shard K/N``
then fetches without listing again. The digest covers every placed part of a batch (path, size,
dataSetFile), whichever shard owns it, in a fixed order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import UnsafeNameError
from ..layout import reserved
from ..listing.names import check_name, check_relpath
from ..models import Batch, BatchMetrics, Part, count
from ..results import PlannedBatch, RejectedEntry

__all__ = ["ShardPlan", "plan_digest"]

_FORMAT = 1


def plan_digest(parts: Iterable[Part]) -> str:
    """The digest of a batch's placed parts, independent of the order they were listed in."""
    lines = sorted(f"{p.relpath}\t{p.size}\t{p.dataset_file_id}\n" for p in parts)
    hasher = hashlib.sha256()
    for line in lines:
        hasher.update(line.encode())
    return hasher.hexdigest()


def _batch_json(batch: Batch) -> dict[str, Any]:
    metrics = batch.metrics
    return {
        "id": batch.id,
        "status": batch.status,
        "dataset_id": batch.dataset_id,
        "created_ms": batch.created_ms,
        "predecessors": list(batch.predecessors),
        "metrics": {
            "outputByteSize": metrics.output_byte_size,
            "outputRecordCount": metrics.output_record_count,
            "outputFileCount": metrics.output_file_count,
        },
    }


def _batch_of(raw: dict[str, Any]) -> Batch:
    metrics = raw.get("metrics") or {}
    return Batch(
        id=str(raw["id"]),
        status=str(raw.get("status", "")),
        dataset_id=raw.get("dataset_id"),
        created_ms=count(raw.get("created_ms")),
        predecessors=tuple(str(p) for p in raw.get("predecessors") or ()),
        metrics=BatchMetrics(
            output_byte_size=count(metrics.get("outputByteSize")),
            output_record_count=count(metrics.get("outputRecordCount")),
            output_file_count=count(metrics.get("outputFileCount")),
        ),
    )


def _part_json(part: Part) -> dict[str, Any]:
    return {
        "dataset_file_id": part.dataset_file_id,
        "name": part.name,
        "relpath": part.relpath,
        "size": part.size,
        "href": part.href,
    }


@dataclass(frozen=True, kw_only=True)
class ShardPlan:
    """What a sharded run covers, listed once."""

    dataset_id: str | None
    shards: int
    batches: tuple[PlannedBatch, ...]

    def encode(self) -> bytes:
        document = {
            "format": _FORMAT,
            "dataset_id": self.dataset_id,
            "shards": self.shards,
            "batches": [
                {
                    "batch": _batch_json(planned.batch),
                    "digest": plan_digest(planned.parts),
                    "markers": planned.markers,
                    "rejected": [{"name": r.name, "reason": r.reason} for r in planned.rejected],
                    "parts": [_part_json(p) for p in planned.parts],
                }
                for planned in self.batches
            ],
        }
        return (json.dumps(document, indent=1) + "\n").encode()

    @classmethod
    def decode(cls, raw: bytes) -> ShardPlan:
        """The plan in ``raw``; ValueError when it is not one, or its parts were changed."""
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or document.get("format") != _FORMAT:
                raise ValueError("not a plan of this format")
            batches = []
            for item in document["batches"]:
                batch = _batch_of(item["batch"])
                parts = tuple(
                    Part(
                        batch_id=batch.id,
                        dataset_file_id=str(p["dataset_file_id"]),
                        name=str(p["name"]),
                        relpath=str(p["relpath"]),
                        size=int(p["size"]),
                        href=str(p["href"]),
                    )
                    for p in item["parts"]
                )
                if plan_digest(parts) != item.get("digest"):
                    raise ValueError(f"the parts of batch {batch.id} do not match its digest")
                for part in parts:
                    _check_placement(part)
                rejected = tuple(
                    RejectedEntry(batch_id=batch.id, name=str(r["name"]), reason=str(r["reason"]))
                    for r in item.get("rejected") or ()
                )
                batches.append(
                    PlannedBatch(
                        batch=batch,
                        parts=parts,
                        complete=frozenset(),
                        markers=int(item.get("markers") or 0),
                        rejected=rejected,
                    )
                )
            return cls(
                dataset_id=document.get("dataset_id"),
                shards=int(document["shards"]),
                batches=tuple(batches),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed plan: {exc}") from exc


def _check_placement(part: Part) -> None:
    """A planned part goes where a listing would have put it, or nowhere: the digest proves
    the parts unchanged only to whoever trusts the plan's writer (anyone can recompute it), and
    a plan on a shared volume or bucket must not write outside ``--out``."""
    try:
        check_name(part.batch_id)
        check_name(part.dataset_file_id)
        check_relpath(part.relpath)
    except UnsafeNameError as exc:
        raise ValueError(f"a planned part has an unsafe name: {exc}") from exc
    if reserved(part.relpath) or not part.relpath.endswith(part.name):
        raise ValueError(f"a planned part is placed at {part.relpath!r}, not under its name")
