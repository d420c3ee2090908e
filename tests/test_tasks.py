"""single_error: which of a task group's failures the caller sees."""

from __future__ import annotations

import pytest

from asyncdl.errors import ServerError, StorageError
from asyncdl.tasks import single_error


async def test_ctrl_c_outranks_the_failures_beside_it() -> None:
    with pytest.raises(KeyboardInterrupt):
        async with single_error():
            raise BaseExceptionGroup(
                "run",
                [
                    StorageError("disk full"),
                    ExceptionGroup("x", [ServerError(status=503, url="u")]),
                    KeyboardInterrupt(),
                ],
            )


async def test_a_run_ending_error_outranks_a_part_failure_and_a_bug_passes_alone() -> None:
    with pytest.raises(StorageError, match="disk full"):
        async with single_error():
            raise ExceptionGroup(
                "run", [ServerError(status=503, url="u"), StorageError("disk full")]
            )
    with pytest.raises(ZeroDivisionError):
        async with single_error():
            raise ExceptionGroup("run", [ExceptionGroup("inner", [ZeroDivisionError()])])
