"""What ``sync`` knows of a dataset between runs: ``OUT/.asyncdl/sync-<dataset>.json``.

Whose it is (org, sandbox, dataset: a run for another is refused), the watermark (the newest
``created`` seen, so the next run asks the Catalog only for what may be new), and per batch its
Catalog facts (status, predecessors, metrics), what superseded it, whether it is complete on
disk, and the digest of its manifest then (a manifest that changed since is checked again). It
only ever vouches for batches whose manifest was written first; a missing or unreadable state is
rebuilt from the batch manifests and the Catalog.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..models import Batch, BatchMetrics, count

__all__ = ["BatchState", "SyncState", "manifest_digest"]

_FORMAT = 1


def manifest_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchState:
    """One batch as the sync last knew it."""

    id: str
    status: str  # the Catalog's
    created_ms: int | None = None
    predecessors: tuple[str, ...] = ()
    metrics: BatchMetrics = field(default_factory=BatchMetrics)
    superseded_by: str | None = None
    complete: bool = False  # downloaded whole and reconciled (its manifest said so)
    manifest_sha256: str | None = None  # of the manifest when it was found complete
    pruned: bool = False  # superseded, and its directory removed

    @classmethod
    def of(cls, batch: Batch, known: BatchState | None = None) -> BatchState:
        """The Catalog's view of ``batch``, keeping what the sync learned itself."""
        fresh = cls(
            id=batch.id,
            status=batch.status,
            created_ms=batch.created_ms,
            predecessors=batch.predecessors,
            metrics=batch.metrics,
        )
        if known is None:
            return fresh
        return dataclasses.replace(
            fresh,
            complete=known.complete,
            manifest_sha256=known.manifest_sha256,
            pruned=known.pruned,
        )

    def batch(self, dataset_id: str) -> Batch:
        """As a Catalog ``Batch`` (for a download of it without asking the Catalog again)."""
        return Batch(
            id=self.id,
            status=self.status,
            dataset_id=dataset_id,
            created_ms=self.created_ms,
            predecessors=self.predecessors,
            metrics=self.metrics,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "created_ms": self.created_ms,
            "predecessors": list(self.predecessors),
            "metrics": {
                "outputByteSize": self.metrics.output_byte_size,
                "outputRecordCount": self.metrics.output_record_count,
                "outputFileCount": self.metrics.output_file_count,
            },
            "superseded_by": self.superseded_by,
            "complete": self.complete,
            "manifest_sha256": self.manifest_sha256,
            "pruned": self.pruned,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BatchState:
        metrics = raw.get("metrics") or {}
        predecessors = raw.get("predecessors") or []
        if not isinstance(raw.get("id"), str) or not isinstance(predecessors, list):
            raise ValueError("a batch entry without an id")
        return cls(
            id=raw["id"],
            status=str(raw.get("status", "")),
            created_ms=count(raw.get("created_ms")),
            predecessors=tuple(str(p) for p in predecessors),
            metrics=BatchMetrics(
                output_byte_size=count(metrics.get("outputByteSize")),
                output_record_count=count(metrics.get("outputRecordCount")),
                output_file_count=count(metrics.get("outputFileCount")),
            ),
            superseded_by=raw.get("superseded_by") or None,
            complete=raw.get("complete") is True,
            manifest_sha256=raw.get("manifest_sha256") or None,
            pruned=raw.get("pruned") is True,
        )


@dataclass(kw_only=True)
class SyncState:
    """The whole state file."""

    org_id: str
    sandbox: str
    dataset_id: str
    watermark_ms: int | None = None
    batches: dict[str, BatchState] = field(default_factory=dict)

    def check_owner(self, *, org_id: str, sandbox: str, dataset_id: str, where: str) -> None:
        """Refuse a state that is another org's, sandbox's or dataset's."""
        mine = (org_id, sandbox, dataset_id)
        theirs = (self.org_id, self.sandbox, self.dataset_id)
        if mine != theirs:
            raise ConfigError(
                f"{where} is the sync state of dataset {self.dataset_id} in org {self.org_id},"
                f" sandbox {self.sandbox}, not of dataset {dataset_id} in org {org_id}, sandbox"
                f" {sandbox}: sync into another --out"
            )

    def learn(self, batch: Batch) -> bool:
        """Record what the Catalog says of ``batch``; True when it was not known before."""
        known = self.batches.get(batch.id)
        self.batches[batch.id] = BatchState.of(batch, known)
        if batch.created_ms is not None:
            self.watermark_ms = max(self.watermark_ms or 0, batch.created_ms)
        return known is None

    def update(self, batch_id: str, **changes: Any) -> None:
        self.batches[batch_id] = dataclasses.replace(self.batches[batch_id], **changes)

    def encode(self) -> bytes:
        document = {
            "format": _FORMAT,
            "org_id": self.org_id,
            "sandbox": self.sandbox,
            "dataset_id": self.dataset_id,
            "watermark_ms": self.watermark_ms,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "batches": [b.to_json() for b in sorted(self.batches.values(), key=_newest_first)],
        }
        return (json.dumps(document, indent=1) + "\n").encode()

    @classmethod
    def decode(cls, raw: bytes) -> SyncState:
        """The state in ``raw``; ValueError when it is not one (corrupt, or another format)."""
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or document.get("format") != _FORMAT:
                raise ValueError("not a sync state of this format")
            state = cls(
                org_id=str(document["org_id"]),
                sandbox=str(document["sandbox"]),
                dataset_id=str(document["dataset_id"]),
                watermark_ms=count(document.get("watermark_ms")),
            )
            for item in document.get("batches") or []:
                batch = BatchState.from_json(item)
                state.batches[batch.id] = batch
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed sync state: {exc}") from exc
        return state


def _newest_first(batch: BatchState) -> tuple[int, str]:
    return (-(batch.created_ms or 0), batch.id)
