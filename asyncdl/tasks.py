"""Task-group hygiene shared by the run's layers: one error out of a group, not a group of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .errors import RUN_ENDING, AsyncdlError

__all__ = ["single_error"]


@asynccontextmanager
async def single_error() -> AsyncIterator[None]:
    """Surface the error that ended a task group as itself, not as an ExceptionGroup.

    Workers and the producer fail for one reason at a time (a full disk, refused credentials, a
    listing that cannot be read); callers and the CLI handle that error, not a group of it
    and the cancellations it caused.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        # The user's Ctrl-C (or an exit) outranks everything: the failures beside it are often
        # its consequence, and it must end the run with its own exit code (130), not theirs.
        primary: BaseException | None = next(
            (e for e in leaves if isinstance(e, KeyboardInterrupt | SystemExit)), None
        )
        # What ends the run outranks a part's own failure: a full disk or refused credentials
        # must not surface as "segment failed" just because that task was first.
        ranked = sorted(
            (e for e in leaves if isinstance(e, AsyncdlError)),
            key=lambda e: not isinstance(e, RUN_ENDING),
        )
        if primary is None and ranked:
            primary = ranked[0]
        if primary is None:  # cancellation and other BaseExceptions pass through as themselves
            primary = next((e for e in leaves if not isinstance(e, Exception)), None)
        if primary is None and len(leaves) == 1:
            primary = leaves[0]  # a bug, however deeply nested task groups wrapped it
        if primary is None:
            raise  # several unrelated bugs: the group shows them all
        raise primary from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves
