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


def test_throttling_paces_at_the_accepted_rate_and_grows_back() -> None:
    now = [0.0]
    slots = StreamSlots(32, cooldown_s=1.0, clock=lambda: now[0])
    assert slots.rate is None
    for i in range(40):  # 40 accepted in the last second
        now[0] = 0.5 + i * 0.01
        slots.on_success()
    now[0] = 1.0
    slots.on_throttled(retry_after_s=2.0)
    assert slots.rate == 40.0
    assert slots.limit == 16
    for _ in range(40):
        slots.on_success()
    assert slots.rate is not None
    assert 43.9 < slots.rate < 44.1  # about 10% more per second of successes
    now[0] = 2.5
    slots.on_throttled(retry_after_s=1.0)  # nothing accepted in the last second but the burst
    assert slots.rate is not None
    assert slots.rate <= 44.0 / 2 + 1e-9


def test_later_throttles_pace_under_the_accepted_rate_and_stop_the_probe() -> None:
    now = [0.0]
    slots = StreamSlots(32, cooldown_s=1.0, clock=lambda: now[0])
    for i in range(40):
        now[0] = 0.5 + i * 0.01
        slots.on_success()
    now[0] = 1.0
    slots.on_throttled(retry_after_s=1.0)
    assert slots.rate == 40.0  # the first estimate is taken as it is
    for i in range(50):  # 50 accepted in the next second: the pace probes upwards
        now[0] = 1.5 + i * 0.01
        slots.on_success()
    assert slots.rate is not None
    assert slots.rate > 44.0
    now[0] = 2.4
    slots.on_throttled(retry_after_s=1.0)  # a new episode: a margin under what got through
    assert slots.rate == pytest.approx(0.9 * 50)
    for i in range(30):  # still in the episode's cooldown: successes probe upwards again...
        now[0] = 2.41 + i * 0.001
        slots.on_success()
    assert slots.rate > 45.0
    now[0] = 3.0
    slots.on_throttled(retry_after_s=1.0)  # ...but a refusal caps the pace at what got through
    # In the second before t=3.0 only the 30 successes after 2.41 got through (the 50 ended at
    # 1.99); the probe had taken the pace to 45 + 30 x 0.1 = 48.
    assert slots.rate == pytest.approx(30.0)


def test_fixed_slots_are_never_paced() -> None:
    slots = StreamSlots(8, adaptive=False)
    slots.on_success()
    slots.on_throttled(retry_after_s=5.0)
    assert slots.rate is None


@pytest.mark.anyio
async def test_retry_after_holds_every_new_stream() -> None:
    slots = StreamSlots(4, cooldown_s=0.0)
    slots.on_throttled(retry_after_s=0.2)
    started = anyio.current_time()
    async with slots:
        waited = anyio.current_time() - started
    assert waited >= 0.15
