"""The current view from replays, pure: chains, append-only, failed runs, retention."""

from __future__ import annotations

from asyncdl.current.state import BatchState
from asyncdl.current.view import current_view, prunable, superseding


def batch(
    batch_id: str, ms: int, *predecessors: str, status: str = "success", pruned: bool = False
) -> BatchState:
    return BatchState(
        id=batch_id, status=status, created_ms=ms, predecessors=predecessors, pruned=pruned
    )


def index(*batches: BatchState) -> dict[str, BatchState]:
    return {b.id: b for b in batches}


def test_a_chain_is_its_newest_run() -> None:
    chain = index(batch("a", 1), batch("b", 2, "a"), batch("c", 3, "b"))
    assert current_view(chain) == ["c"]
    assert superseding(chain.values()) == {"a": "b", "b": "c"}


def test_an_append_only_dataset_is_every_success_newest_first() -> None:
    assert current_view(index(batch("a", 1), batch("b", 3), batch("c", 2))) == ["b", "c", "a"]


def test_a_failed_run_replaces_nothing() -> None:
    batches = index(batch("a", 1), batch("x", 2, "a", status="failed"))
    assert current_view(batches) == ["a"]
    assert superseding(batches.values()) == {}


def test_two_runs_that_replace_the_same_one_are_both_current() -> None:
    """A batch created earlier that succeeds later replaced what was current when it was made."""
    assert current_view(index(batch("a", 1), batch("b", 2, "a"), batch("c", 3, "a"))) == ["c", "b"]


def test_retention_keeps_the_newest_superseded_and_skips_the_pruned() -> None:
    chain = index(
        batch("a", 1, pruned=True),
        batch("b", 2, "a"),
        batch("c", 3, "b"),
        batch("d", 4, "c"),
        batch("e", 5, "d"),
    )
    assert prunable(chain, keep=2) == ["b"]  # d and c kept; a is gone already
    assert prunable(chain, keep=0) == ["d", "c", "b"]
