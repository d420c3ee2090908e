"""AIMD stream slots (halve on 429 once per cooldown, add back per window of successes); thread
batches for the small blocking jobs of many parts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from asyncdl import threads
from asyncdl.errors import StorageError
from asyncdl.slots import StreamSlots
from asyncdl.tasks import single_error
from asyncdl.threads import ThreadBatches, thread_batches
from tests.helpers import until


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


async def test_a_bug_inside_nested_task_groups_surfaces_as_itself() -> None:
    """The pipeline's shape: workers inside thread batches; a plain bug must not arrive as a
    group inside a group (the CLI would show "unhandled errors in a TaskGroup")."""

    async def buggy() -> None:
        raise KeyError("no such column")

    async def run() -> None:
        async with thread_batches(), single_error(), anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 10)
            tg.start_soon(buggy)

    with pytest.raises(KeyError, match="no such column"):
        await run()


async def test_unrelated_bugs_stay_together() -> None:
    async def buggy(exc: Exception) -> None:
        raise exc

    async def run() -> None:
        async with single_error(), anyio.create_task_group() as tg:
            tg.start_soon(buggy, KeyError("a"))
            tg.start_soon(buggy, ValueError("b"))

    with pytest.raises(ExceptionGroup) as caught:
        await run()
    assert {type(e) for e in caught.value.exceptions} == {KeyError, ValueError}


class _Paced:
    """Adaptive slots on a clock the test moves: the pacing arithmetic, step by step."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slots = StreamSlots(32, cooldown_s=1.0, clock=lambda: self.now)

    def successes(self, count: int, *, start: float, every: float) -> None:
        for i in range(count):
            self.now = start + i * every
            self.slots.on_success()

    def refused(self, at: float, *, retry_after_s: float = 1.0) -> None:
        self.now = at
        self.slots.on_throttled(retry_after_s=retry_after_s)


def test_throttling_paces_at_the_accepted_rate_and_grows_back() -> None:
    paced = _Paced()
    slots = paced.slots
    assert slots.rate is None
    paced.successes(40, start=0.0, every=0.01)  # 40 in the first second of streams
    paced.refused(1.0, retry_after_s=2.0)
    assert slots.rate == 40.0
    assert slots.limit == 16
    paced.successes(40, start=1.0, every=0.0)
    assert slots.rate is not None
    assert 43.9 < slots.rate < 44.1  # about 10% more per second of successes
    paced.refused(2.5)  # nothing accepted in the last second but the burst
    assert slots.rate is not None
    assert slots.rate <= 44.0 / 2 + 1e-9


def test_later_throttles_pace_under_the_accepted_rate_and_stop_the_probe() -> None:
    paced = _Paced()
    slots = paced.slots
    paced.successes(40, start=0.0, every=0.01)
    paced.refused(1.0)
    assert slots.rate == 40.0  # the first estimate is taken as it is
    paced.successes(50, start=1.5, every=0.01)  # 50 in the next second: the pace probes upwards
    assert slots.rate is not None
    assert slots.rate > 44.0
    paced.refused(2.4)  # a new episode: a margin under what got through
    assert slots.rate == pytest.approx(0.9 * 50)
    # Still in the episode's cooldown: successes probe upwards again...
    paced.successes(30, start=2.41, every=0.001)
    assert slots.rate > 45.0
    paced.refused(3.0)  # ...but a refusal caps the pace at what got through
    # In the second before t=3.0 only the 30 successes after 2.41 got through (the 50 ended at
    # 1.99); the probe had taken the pace to 45 + 30 x 0.1 = 48.
    assert slots.rate == pytest.approx(30.0)


def test_a_refusal_inside_the_first_window_sets_no_pace() -> None:
    # Successes counted 30 ms in are whatever of the opening burst has come back yet, not the
    # server's rate: pacing at them made S7 crawl. The hold and the halving still apply.
    paced = _Paced()
    paced.successes(25, start=0.0, every=0.001)
    paced.refused(0.03)
    assert paced.slots.rate is None
    assert paced.slots.limit == 16
    # After the hold, the server's bucket lets 50 through in a second.
    paced.successes(50, start=1.03, every=0.01)
    paced.refused(1.6)  # a window in: now the estimate counts
    assert paced.slots.rate == 50.0


def test_the_first_window_is_counted_from_the_first_stream_not_from_creation() -> None:
    paced = _Paced()
    # Token, Catalog and listing took 1.2 s before any part streamed.
    paced.successes(25, start=1.2, every=0.001)
    paced.refused(1.23)
    assert paced.slots.rate is None


def test_an_episode_begun_in_the_first_window_paces_once_the_window_has_passed() -> None:
    paced = _Paced()
    paced.successes(45, start=0.0, every=0.02)
    paced.refused(0.9)  # inside the first window: no pace
    assert paced.slots.rate is None
    paced.refused(1.2)  # the same episode, but now the count means something
    assert paced.slots.rate == 35.0  # the 35 successes from 0.2 s on (0.20 to 0.88 s)
    assert paced.slots.limit == 16  # halved once for the episode, not twice


def test_fixed_slots_are_never_paced() -> None:
    slots = StreamSlots(8, adaptive=False)
    slots.on_success()
    slots.on_throttled(retry_after_s=5.0)
    assert slots.rate is None


async def test_retry_after_holds_every_new_stream() -> None:
    slots = StreamSlots(4, cooldown_s=0.0)
    slots.on_throttled(retry_after_s=0.2)
    started = anyio.current_time()
    async with slots:
        waited = anyio.current_time() - started
    assert waited >= 0.15


def _blocked_job(gate: threading.Event, entered: threading.Event, value: int) -> Callable[[], int]:
    def job() -> int:
        entered.set()
        if not gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        return value

    return job


async def test_calls_that_wait_together_run_as_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real_run_batch = threads._run_batch

    def run_batch(batch: list[Any]) -> None:
        sizes.append(len(batch))
        real_run_batch(batch)

    monkeypatch.setattr(threads, "_run_batch", run_batch)
    gate, entered = threading.Event(), threading.Event()
    results: dict[int, object] = {}

    async def call(i: int, func: Callable[[], int]) -> None:
        try:
            results[i] = await batches.run_sync(func)
        except ValueError as exc:
            results[i] = exc

    def failing() -> int:
        raise ValueError("only mine")

    async with thread_batches(slow_s=60.0) as batches, anyio.create_task_group() as tg:
        tg.start_soon(call, 0, _blocked_job(gate, entered, 100))
        await until(entered.is_set)
        for i in range(1, 9):
            tg.start_soon(call, i, lambda i=i: i * 10)
        tg.start_soon(call, 9, failing)
        await until(lambda: len(batches._waiting) == 9)
        gate.set()
    assert sizes == [1, 9]  # one thread job for the nine that waited behind the first
    assert results[0] == 100
    assert [results[i] for i in range(1, 9)] == [i * 10 for i in range(1, 9)]
    assert isinstance(results[9], ValueError)  # raised to its own caller only


async def test_a_slow_batch_does_not_hold_up_the_next_one() -> None:
    gate, entered = threading.Event(), threading.Event()
    async with thread_batches(slow_s=0.01) as batches, anyio.create_task_group() as tg:
        tg.start_soon(batches.run_sync, _blocked_job(gate, entered, 1))
        await until(entered.is_set)
        with anyio.fail_after(10):
            assert await batches.run_sync(lambda: 2) == 2  # while the first is still blocked
        assert not gate.is_set()
        gate.set()


async def test_a_cancelled_call_that_has_not_started_never_runs() -> None:
    gate, entered = threading.Event(), threading.Event()
    ran: list[str] = []
    scope = anyio.CancelScope()

    async def withdrawn() -> None:
        with scope:
            await batches.run_sync(lambda: ran.append("withdrawn"))

    async with thread_batches(slow_s=60.0) as batches, anyio.create_task_group() as tg:
        tg.start_soon(batches.run_sync, _blocked_job(gate, entered, 1))
        await until(entered.is_set)
        tg.start_soon(withdrawn)
        await until(lambda: len(batches._waiting) == 1)
        scope.cancel()
        await until(lambda: not batches._waiting)  # withdrawn by its cancelled caller
        gate.set()
        await batches.run_sync(lambda: ran.append("later"))  # the next batch runs without it
    assert ran == ["later"]


async def test_no_more_threads_than_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    inside: list[int] = []
    lock = threading.Lock()
    most = [0]

    def job() -> None:
        with lock:
            inside.append(1)
            most[0] = max(most[0], len(inside))
        gate.wait(10)
        with lock:
            inside.pop()

    async with (
        thread_batches(slow_s=0.0, max_threads=2) as batches,
        anyio.create_task_group() as tg,
    ):
        for _ in range(6):
            tg.start_soon(batches.run_sync, job)
            await anyio.sleep(0.01)  # each arrives once the one before is running
        await until(lambda: len(inside) == 2)
        await anyio.sleep(0.05)
        assert len(inside) == 2  # the others wait for a thread of the two
        gate.set()
    assert most[0] == 2


async def test_calls_left_waiting_when_serving_stops_fail_instead_of_hanging() -> None:
    batches = ThreadBatches()
    async with anyio.create_task_group() as tg:
        tg.start_soon(batches.serve)
        tg.cancel_scope.cancel()
    with anyio.fail_after(5), pytest.raises(RuntimeError, match="no longer served"):
        await batches.run_sync(lambda: 1)


async def test_a_cancelled_call_that_has_started_is_waited_for() -> None:
    gate, entered = threading.Event(), threading.Event()
    order: list[str] = []

    def job() -> None:
        entered.set()
        gate.wait(10)
        order.append("job finished")

    async def caller(scope: anyio.CancelScope) -> None:
        with scope:
            await batches.run_sync(job)
        order.append("caller returned")

    scope = anyio.CancelScope()
    async with thread_batches() as batches, anyio.create_task_group() as tg:
        tg.start_soon(caller, scope)
        await until(entered.is_set)
        scope.cancel()
        await anyio.sleep(0.05)
        assert order == []  # cancelled, but its job is still running: the caller waits
        gate.set()
    assert order == ["job finished", "caller returned"]


async def test_thread_batches_end_with_their_block() -> None:
    with anyio.fail_after(10):
        async with thread_batches() as batches:
            assert await batches.run_sync(lambda: "done") == "done"
    with pytest.raises(ValueError, match="max_threads"):
        ThreadBatches(max_threads=0)
