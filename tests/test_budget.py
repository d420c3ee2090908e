"""The memory budget: holds that fit start at once, others wait first come first served, and
nothing stays taken when a hold ends, fails or is cancelled, waiting or granted."""

from __future__ import annotations

import anyio
import pytest

from asyncdl.budget import MemoryBudget
from tests.helpers import until


async def _hold(budget: MemoryBudget, size: int, log: list[str], name: str) -> None:
    async with budget.hold(size):
        log.append(f"{name} in")
        await anyio.sleep_forever()


async def test_holds_that_fit_start_at_once_and_the_rest_wait_in_order() -> None:
    budget = MemoryBudget(10)
    log: list[str] = []
    async with anyio.create_task_group() as tg:
        first, second, third = anyio.CancelScope(), anyio.CancelScope(), anyio.CancelScope()

        async def held(scope: anyio.CancelScope, size: int, name: str) -> None:
            with scope:
                await _hold(budget, size, log, name)

        tg.start_soon(held, first, 6, "a")
        await until(lambda: log == ["a in"])
        tg.start_soon(held, second, 8, "b")  # does not fit beside a
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(held, third, 2, "c")  # would fit, but b came first
        await anyio.wait_all_tasks_blocked()
        assert log == ["a in"]
        assert budget.free == 4
        first.cancel()  # a ends: b fits (8 of 10), then c (2 more)
        await until(lambda: log == ["a in", "b in", "c in"])
        assert budget.free == 0
        second.cancel()
        third.cancel()
    assert budget.free == 10


async def test_a_cancelled_waiter_gives_way_to_those_behind_it() -> None:
    budget = MemoryBudget(10)
    log: list[str] = []
    async with anyio.create_task_group() as tg:
        big = anyio.CancelScope()

        async def waits_big() -> None:
            with big:
                await _hold(budget, 10, log, "big")

        tg.start_soon(_hold, budget, 5, log, "a")
        await until(lambda: log == ["a in"])
        tg.start_soon(waits_big)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(_hold, budget, 5, log, "c")  # queued behind big
        await anyio.wait_all_tasks_blocked()
        assert log == ["a in"]
        big.cancel()  # big gives up waiting: c fits beside a
        await until(lambda: log == ["a in", "c in"])
        tg.cancel_scope.cancel()
    assert budget.free == 10


async def test_a_waiter_cancelled_as_it_is_granted_gives_its_share_back() -> None:
    budget = MemoryBudget(10)
    log: list[str] = []
    async with anyio.create_task_group() as tg:
        first, second = anyio.CancelScope(), anyio.CancelScope()

        async def held(scope: anyio.CancelScope, name: str) -> None:
            with scope:
                await _hold(budget, 10, log, name)

        tg.start_soon(held, first, "a")
        await until(lambda: log == ["a in"])
        tg.start_soon(held, second, "b")
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        second.cancel()  # in the same step as the grant that a's end makes
    assert budget.free == 10


async def test_a_hold_bigger_than_the_budget_runs_alone_and_zero_never_waits() -> None:
    budget = MemoryBudget(10)
    async with budget.hold(25):
        assert budget.free == 0
        with anyio.fail_after(1):
            async with budget.hold(0):
                pass
    assert budget.free == 10


async def test_a_failing_block_gives_its_share_back() -> None:
    budget = MemoryBudget(10)
    with pytest.raises(RuntimeError, match="broke"):
        async with budget.hold(7):
            raise RuntimeError("broke")
    assert budget.free == 10


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        MemoryBudget(0)


async def test_fits_says_whether_a_hold_would_begin_at_once() -> None:
    budget = MemoryBudget(10)
    async with budget.hold(6):
        assert budget.fits(4)
        assert not budget.fits(5)
        assert budget.fits(0)
    assert budget.fits(25)  # at most the whole budget, which is free
