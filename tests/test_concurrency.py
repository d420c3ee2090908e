"""AIMD stream slots: halve on 429 (once per cooldown), add one back per window of successes."""

from __future__ import annotations

import anyio
import pytest

from asyncdl.concurrency import StreamSlots, single_error
from asyncdl.errors import StorageError


def test_throttling_halves_once_per_cooldown() -> None:
    now = [0.0]
    slots = StreamSlots(32, cooldown_s=1.0, clock=lambda: now[0])
    slots.on_throttled()
    assert slots.limit == 16
    slots.on_throttled()  # the same burst of 429s
    assert slots.limit == 16
    now[0] = 1.5
    slots.on_throttled()
    assert slots.limit == 8
    assert slots.decreases == 2


def test_successes_grow_the_limit_back_to_the_maximum() -> None:
    now = [0.0]
    slots = StreamSlots(4, cooldown_s=0.0, clock=lambda: now[0])
    slots.on_throttled()
    slots.on_throttled()
    assert slots.limit == 1
    for _ in range(1):
        slots.on_success()
    assert slots.limit == 2
    for _ in range(2):
        slots.on_success()
    assert slots.limit == 3
    for _ in range(10):
        slots.on_success()
    assert slots.limit == 4


def test_fixed_slots_never_move() -> None:
    slots = StreamSlots(8, adaptive=False)
    slots.on_throttled()
    slots.on_success()
    assert slots.limit == 8


def test_never_below_the_minimum() -> None:
    slots = StreamSlots(2, cooldown_s=0.0, minimum=1)
    for _ in range(5):
        slots.on_throttled()
    assert slots.limit == 1


@pytest.mark.anyio
async def test_slots_bound_concurrent_holders() -> None:
    slots = StreamSlots(3, adaptive=False)
    inside = 0
    peak = 0

    async def hold() -> None:
        nonlocal inside, peak
        async with slots:
            inside += 1
            peak = max(peak, inside)
            await anyio.sleep(0.01)
            inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(hold)
    assert peak == 3


@pytest.mark.anyio
async def test_single_error_unwraps_the_cause() -> None:
    async def fail() -> None:
        raise StorageError("disk full")

    async def wait() -> None:
        await anyio.sleep(10)

    async def run_both() -> None:
        async with single_error(), anyio.create_task_group() as tg:
            tg.start_soon(wait)
            tg.start_soon(fail)

    with pytest.raises(StorageError, match="disk full"):
        await run_both()
