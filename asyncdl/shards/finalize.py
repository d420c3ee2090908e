"""Finalizing a sharded batch: its fragments checked against the plan, merged into its manifest.

Each shard records the parts it verified in its fragment (``layout.fragment_name``), with its
shard spec, the plan's digest, and whether it covered its whole share. A batch is final when
there is one complete fragment per shard, all of the same plan, and together they hold every
planned part exactly once, each verified; its bytes and rows then reconcile with the Catalog and
its manifest is written, last, atomically. Whichever shard (or ``asyncdl finalize``) finds all
fragments there may do it: two that do write the same manifest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from ..layout import fragment_name
from ..manifest import Manifest, ManifestEntry
from ..models import Batch, Part, PartStatus
from ..results import Reconciliation
from ..storage import Storage
from .plan import plan_digest

__all__ = ["Finalized", "finalize_batch", "fragment_extra"]

_FRAGMENT = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.json$")
_VERIFIED = frozenset({PartStatus.DOWNLOADED.value, PartStatus.SKIPPED.value})


def fragment_extra(
    *, shard: str, parts: Sequence[Part], complete: bool, rejected: Sequence[str] = ()
) -> dict[str, Any]:
    """What a fragment records beside its parts: who wrote it, of which plan, whether its
    share is all there, and the listing's entries it refused (why the batch cannot be whole,
    however often the shard is run again)."""
    return {
        "rejected": sorted(rejected),
        "shard": shard,
        "plan": {
            "digest": plan_digest(parts),
            "parts": len(parts),
            "bytes": sum(p.size for p in parts),
        },
        "complete": complete,
    }


@dataclass(frozen=True, kw_only=True)
class Finalized:
    """One batch's finalize: done, or what is missing or wrong."""

    batch_id: str
    shards: int
    missing: tuple[int, ...] = ()  # shards without a complete fragment
    problems: tuple[str, ...] = ()
    reconciliation: Reconciliation | None = None

    @property
    def ok(self) -> bool:
        return (
            not self.missing
            and not self.problems
            and self.reconciliation is not None
            and self.reconciliation.ok
        )


def shard_count(storage: Storage) -> int | None:
    """How many shards the fragments in ``storage`` were written by (None: none there)."""
    counts = {int(m.group(2)) for f in storage.files() if (m := _FRAGMENT.match(f))}
    return max(counts) if counts else None


def _read_fragments(storage: Storage, shards: int) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for index in range(1, shards + 1):
        raw = storage.read(fragment_name(index, shards))
        if raw is None:
            continue
        try:
            document = json.loads(raw)
        except ValueError:
            continue
        if isinstance(document, dict):
            found[index] = document
    return found


async def finalize_batch(
    storage: Storage, batch: Batch, planned: Sequence[Part], *, shards: int
) -> Finalized:
    """Check the batch's fragments against ``planned`` and, when they add up, write its manifest
    (``storage`` is the batch's)."""
    fragments = await anyio.to_thread.run_sync(_read_fragments, storage, shards)
    digest = plan_digest(planned)
    missing = []
    problems: list[str] = []
    entries: dict[str, ManifestEntry] = {}
    for index in range(1, shards + 1):
        document = fragments.get(index)
        if document is None:
            missing.append(index)
            continue
        refused = document.get("rejected") or []
        if refused and not any("listing entries" in p for p in problems):
            shown = ", ".join(str(r) for r in refused[:3]) + (", ..." if len(refused) > 3 else "")
            problems.append(
                f"{len(refused)} listing entries were rejected ({shown}): the batch cannot be "
                "whole, however often its shards run"
            )
        if document.get("complete") is not True:
            if not refused:
                missing.append(index)
            continue
        plan = document.get("plan")
        if not isinstance(plan, dict) or plan.get("digest") != digest:
            problems.append(f"shard {index}/{shards} worked from another listing (plan digest)")
            continue
        for item in document.get("parts") or []:
            try:
                entry = ManifestEntry(**item)
            except TypeError:
                problems.append(f"shard {index}/{shards} recorded an unreadable part")
                continue
            if entry.relpath in entries:
                problems.append(f"{entry.relpath} was fetched by two shards")
            entries[entry.relpath] = entry
    if missing or problems:
        return Finalized(
            batch_id=batch.id, shards=shards, missing=tuple(missing), problems=tuple(problems)
        )
    wanted = {p.relpath: p for p in planned}
    absent = sorted(set(wanted) - set(entries))
    extra = sorted(set(entries) - set(wanted))
    unverified = sorted(
        e.relpath for e in entries.values() if e.status not in _VERIFIED or e.digest is None
    )
    problems += [f"{r} is planned but no shard recorded it" for r in absent]
    problems += [f"{r} was recorded but is not in the plan" for r in extra]
    problems += [f"{r} is not verified" for r in unverified]
    if problems:
        return Finalized(batch_id=batch.id, shards=shards, problems=tuple(problems))
    rows = [e.rows for e in entries.values()]
    metrics = batch.metrics
    reconciliation = Reconciliation(
        expected_bytes=metrics.output_byte_size,
        actual_bytes=sum(e.size for e in entries.values()),
        expected_rows=metrics.output_record_count,
        actual_rows=None if None in rows else sum(r or 0 for r in rows),
        expected_files=metrics.output_file_count,
        actual_files=len(entries),
    )
    manifest = Manifest(storage, batch, entries)
    manifest.extra["reconciliation"] = {
        "ok": reconciliation.ok,
        "bytes": reconciliation.actual_bytes,
        "rows": reconciliation.actual_rows,
        "files": reconciliation.actual_files,
        "warnings": list(reconciliation.warnings),
    }
    manifest.extra["shards"] = shards
    await manifest.save()  # last, in one atomic write
    return Finalized(batch_id=batch.id, shards=shards, reconciliation=reconciliation)
