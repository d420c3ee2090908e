"""A dataset's current view, from what the Catalog says of its batches (pure: no I/O).

Replaying a batch "is equivalent to deleting the old batch and ingesting a new one": the current
view is the dataset's successful batches minus every batch a successful batch names as its
predecessor. A Customer AI chain of daily runs is its newest run; an append-only dataset (no
replays) is every successful batch. Only successful batches' predecessors count: a failed
scoring run replaced nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .state import BatchState

__all__ = ["current_view", "prunable", "superseding"]

SUCCESS = "success"


def _newest_first(batch: BatchState) -> tuple[int, str]:
    return (-(batch.created_ms or 0), batch.id)


def superseding(batches: Iterable[BatchState]) -> dict[str, str]:
    """Each replaced batch → the successful batch that names it (the newest, if several)."""
    replaced: dict[str, str] = {}
    for batch in sorted(batches, key=_newest_first, reverse=True):  # oldest first: newest wins
        if batch.status == SUCCESS:
            for predecessor in batch.predecessors:
                replaced[predecessor] = batch.id
    return replaced


def current_view(batches: Mapping[str, BatchState]) -> list[str]:
    """The ids of the current view, newest first."""
    replaced = superseding(batches.values())
    current = [b for b in batches.values() if b.status == SUCCESS and b.id not in replaced]
    return [b.id for b in sorted(current, key=_newest_first)]


def prunable(batches: Mapping[str, BatchState], *, keep: int) -> list[str]:
    """Superseded batches beyond the newest ``keep`` of them, still on disk: what retention
    removes once the current view is complete."""
    replaced = superseding(batches.values())
    superseded = sorted((b for b in batches.values() if b.id in replaced), key=_newest_first)
    return [b.id for b in superseded[keep:] if not b.pruned]
