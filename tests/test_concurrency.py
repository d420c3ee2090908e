"""Stream slots (a lone 429 costs its own wait; a steady limit is held, halved and paced, once
per episode; successes add back), thread batches for the small blocking jobs of many parts, and
single_error."""

from __future__ import annotations

import random
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


class _Paced:
    """Adaptive slots on a clock the test moves: the arithmetic, step by step."""

    def __init__(self, maximum: int = 32) -> None:
        self.now = 0.0
        self.slots = StreamSlots(maximum, cooldown_s=1.0, clock=lambda: self.now)

    @property
    def held(self) -> bool:
        """Everyone waits for a Retry-After."""
        return self.slots.held_until > self.now

    def successes(self, count: int, *, start: float, every: float) -> None:
        for i in range(count):
            self.now = start + i * every
            self.slots.on_success()

    def refused(
        self, at: float, *, retry_after_s: float = 1.0, started_at: float | None = None
    ) -> None:
        self.now = at
        self.slots.on_throttled(retry_after_s, started_at=started_at)

    def hammered(self, count: int, *, start: float, retry_after_s: float = 1.0) -> None:
        """A token bucket with nothing left: ``count`` requests refused one after another."""
        for i in range(count):
            self.refused(start + i * 0.001, retry_after_s=retry_after_s)


def _pace_a_steady_limit() -> _Paced:
    """S7's opening: a bucket of 50 drained in 0.2 s, a hold, the refilled bucket, then a pace."""
    paced = _Paced()
    paced.successes(50, start=0.0, every=0.004)
    paced.hammered(6, start=0.2)  # the fourth in a row begins the hold; two more were in flight
    paced.successes(45, start=1.21, every=0.002)
    paced.hammered(4, start=1.3)  # refused again after the hold: paced at the 45 let through
    assert paced.slots.rate == 45.0
    return paced


# Scattered refusals


def test_scattered_refusals_keep_the_pool_near_its_maximum() -> None:
    paced = _Paced()
    slots = paced.slots
    rng = random.Random(2024)
    limits = []
    for i in range(20_000):  # 50 s at 400 requests/s, 3% of them refused at random
        paced.now = i * 0.0025
        if rng.random() < 0.03:
            slots.on_throttled(1.0)
        else:
            slots.on_success()
        assert not paced.held  # nobody else waits for a lone refusal's Retry-After
        assert slots.rate is None  # and nothing is paced
        limits.append(slots.limit)
    assert sum(limits) / len(limits) >= 0.9 * slots.maximum
    assert 0 < slots.decreases <= 50  # at most once per episode: once a second here


def test_a_lone_refusal_costs_only_its_own_wait() -> None:
    paced = _Paced()
    paced.successes(100, start=0.0, every=0.01)
    paced.refused(1.0)
    assert not paced.held
    assert paced.slots.rate is None
    assert paced.slots.limit == 28  # an eighth, not half
    small = _Paced(maximum=4)
    small.successes(100, start=0.0, every=0.01)
    small.refused(1.0)
    assert small.slots.limit == 4  # an eighth of fewer than 8 is nothing


def test_the_pool_grows_back_after_a_scattered_refusal() -> None:
    paced = _Paced()
    paced.successes(100, start=0.0, every=0.01)
    paced.refused(1.0)
    paced.successes(28 + 29 + 30 + 30, start=1.01, every=0.0025)
    assert paced.slots.limit == 31
    paced.successes(1, start=1.5, every=0.0)
    assert paced.slots.limit == 32  # one slot per window of successes: back in 118 of them


def test_refusals_within_one_episode_decrease_once() -> None:
    paced = _Paced()
    slots = paced.slots
    paced.successes(100, start=0.0, every=0.01)
    paced.refused(1.0)
    for at in (1.5, 1.99):  # inside the cooldown: the same episode
        paced.successes(5, start=at - 0.2, every=0.01)
        paced.refused(at)
    assert slots.limit == 28
    assert slots.decreases == 1
    # Past the cooldown, but sent before the decrease: TCP's rule, still the same episode.
    paced.successes(5, start=2.0, every=0.01)
    paced.refused(2.2, started_at=0.99)
    assert slots.limit == 28
    paced.successes(5, start=2.21, every=0.001)
    paced.refused(2.3, started_at=2.25)
    assert slots.limit == 25
    assert slots.decreases == 2


# A steady limit


def test_a_steady_limit_holds_halves_and_then_paces() -> None:
    paced = _Paced()
    slots = paced.slots
    paced.successes(50, start=0.0, every=0.004)  # the opening burst: a bucket of 50 in 0.2 s
    paced.hammered(6, start=0.2)  # then nearly every request refused
    assert slots.held_until == pytest.approx(0.203 + 1.0)  # from the fourth in a row
    assert slots.limit == 16
    assert slots.decreases == 1  # the two refused after the hold began are the same burst
    assert slots.rate is None  # a hold first: the pace waits for refusals after it
    # After the hold the refilled bucket lets 45 through, then refuses most again.
    paced.successes(45, start=1.21, every=0.002)
    grown = slots.limit  # 18: a slot per window of successes
    paced.hammered(4, start=1.3)
    assert slots.rate == 45.0  # what got through in the last second
    assert not paced.held  # paced from now on instead of held
    assert slots.limit == grown // 2  # a new episode (past the cooldown): halved again
    assert slots.decreases == 2


def test_a_scattered_episode_that_turns_steady_halves_once() -> None:
    paced = _Paced()
    paced.successes(100, start=0.0, every=0.01)
    paced.hammered(3, start=1.0)  # three in a row could still be scattered
    assert paced.slots.limit == 28
    assert not paced.held
    paced.refused(1.003)  # the fourth: a limit being hammered
    assert paced.held
    assert paced.slots.limit == 16  # half the 32 the episode began with, not half of 28
    assert paced.slots.decreases == 1


def test_eight_of_the_last_32_refused_is_a_steady_limit() -> None:
    paced = _Paced()
    paced.successes(100, start=0.0, every=0.01)
    t = 1.0
    for _ in range(7):  # every fourth request refused: never four in a row
        paced.successes(3, start=t, every=0.0005)
        paced.refused(t + 0.002)
        t += 0.0025
    assert not paced.held
    paced.successes(3, start=t, every=0.0005)
    paced.refused(t + 0.002, retry_after_s=0.2)
    assert paced.held
    # The eight are used up: after the hold, one more refusal is no reason to pace.
    paced.successes(2, start=1.25, every=0.001)
    paced.refused(1.3)
    assert paced.slots.rate is None
    assert not paced.held


def test_a_chance_run_of_refusals_costs_one_hold_not_a_pace() -> None:
    paced = _Paced()
    paced.successes(100, start=0.0, every=0.01)
    paced.hammered(4, start=1.0)  # four scattered refusals happen to come in a row
    assert paced.held
    paced.successes(30, start=2.01, every=0.0025)
    paced.refused(2.1)  # after the hold they are scattered again: lone ones never pace
    paced.successes(30, start=2.11, every=0.0025)
    paced.refused(2.2)
    assert paced.slots.rate is None
    assert not paced.held


@pytest.mark.parametrize(("refused_in_flight", "paces"), [(8, True), (7, False)])
def test_most_of_the_requests_in_flight_refused_confirm_the_limit_at_once(
    refused_in_flight: int, paces: bool
) -> None:
    paced = _Paced()
    paced.successes(100, start=0.0, every=0.01)
    paced.hammered(4, start=1.0)  # hold until 2.003
    # Sent before the hold, refused in it: not evidence again, so no pace and no longer hold...
    paced.hammered(refused_in_flight - 1, start=1.01)
    assert paced.slots.rate is None
    assert paced.slots.held_until == pytest.approx(2.003)
    paced.refused(2.02, started_at=1.0)  # ...nor when the answer comes after the hold
    assert paced.slots.rate is None
    # ...but they say how hard the server refuses: the first fresh refusal settles it.
    paced.successes(40, start=2.03, every=0.001)
    paced.refused(2.08)
    assert paced.slots.rate == (40.0 if paces else None)


def test_each_hold_is_judged_by_the_requests_in_flight_at_its_own_start() -> None:
    paced = _Paced()
    paced.successes(100, start=0.0, every=0.01)
    paced.hammered(4, start=1.0)
    paced.hammered(8, start=1.01)  # most in flight refused: a limit...
    paced.successes(300, start=2.01, every=0.00996)  # ...that went away with the hold
    paced.hammered(4, start=5.0)  # much later a chance run, with nothing refused in flight:
    assert paced.slots.rate is None  # a hold, not the pace the first one would have confirmed
    assert paced.held
    paced.successes(40, start=6.01, every=0.001)
    paced.refused(6.06)
    assert paced.slots.rate is None


def test_no_pace_far_under_what_the_server_once_accepted() -> None:
    # Scattered refusals whose answers came back in a bunch (before the successes beside them
    # were stored) looked like a limit twice; the pace they gave was 38 where the server had
    # taken ~1,000 a second, and every later refusal cut it again (40 s for 3,000 parts).
    paced = _Paced()
    paced.successes(400, start=0.0, every=0.0025)  # the server took 400 in a second
    paced.hammered(4, start=1.0)
    paced.successes(40, start=2.01, every=0.001)
    paced.hammered(4, start=2.1)  # most refused again after the hold, 40 let through: 10%
    assert paced.slots.rate is None
    assert paced.held  # a hold again: a limit that low would have refused more before
    # Once paced, a cut that would go that far under it lifts the pace instead.
    paced = _pace_a_steady_limit()  # paced at 45; at most 50 were ever taken in a second
    paced.successes(10, start=2.5, every=0.01)
    paced.refused(3.0)  # a new episode with 10 got through: 9 a second is under 50 / 4
    assert paced.slots.rate is None


def test_a_steady_limit_inside_the_first_window_sets_no_pace() -> None:
    # Successes counted 30 ms in are whatever of the opening burst has come back yet, not the
    # server's rate: pacing at them made S7 crawl. The hold and the halving still apply.
    paced = _Paced()
    paced.successes(25, start=0.0, every=0.001)
    paced.hammered(4, start=0.03, retry_after_s=0.2)
    assert paced.slots.limit == 16
    paced.successes(20, start=0.24, every=0.001)
    paced.hammered(4, start=0.3, retry_after_s=0.2)  # refused again, still in the first window
    assert paced.slots.rate is None
    assert paced.held  # held again instead
    paced.successes(50, start=0.51, every=0.01)
    grown = paced.slots.limit
    paced.hammered(4, start=1.1)  # a window in: now the count means something
    assert paced.slots.rate == 70.0  # the 20 after the first hold and the 50 after the second
    assert paced.slots.limit == grown // 2  # a new episode (1.103 vs 0.033): halved again
    assert paced.slots.decreases == 2


def test_the_first_window_is_counted_from_the_first_stream_not_from_creation() -> None:
    paced = _Paced()
    # Token, Catalog and listing took 1.2 s before any part streamed.
    paced.successes(25, start=1.2, every=0.001)
    paced.hammered(4, start=1.23, retry_after_s=0.2)
    paced.successes(20, start=1.44, every=0.001)
    paced.hammered(4, start=1.6)
    assert paced.slots.rate is None


def test_the_first_window_starts_with_the_first_stream_not_its_first_success() -> None:
    paced = _Paced()
    paced.slots._book_start(1.2)  # the first stream starts; its answer takes 0.3 s
    paced.successes(40, start=1.5, every=0.01)
    paced.hammered(4, start=1.9, retry_after_s=0.2)
    paced.successes(30, start=2.11, every=0.001)
    paced.hammered(4, start=2.4)  # 1.2 s of streaming: a whole window
    assert paced.slots.rate is not None


def test_an_episode_begun_in_the_first_window_paces_once_the_window_has_passed() -> None:
    paced = _Paced()
    paced.successes(45, start=0.0, every=0.02)
    paced.hammered(4, start=0.9, retry_after_s=0.2)  # inside the first window: a hold only
    paced.successes(30, start=1.11, every=0.001)
    grown = paced.slots.limit
    paced.hammered(4, start=1.2)  # the same episode, but now the count means something
    assert paced.slots.rate == 64.0  # the 34 successes from 0.22 s on and the 30 after the hold
    assert paced.slots.limit == grown  # halved once for the episode, not twice
    assert paced.slots.decreases == 1


def test_a_paced_episode_backs_off_under_what_got_through_and_stops_the_probe() -> None:
    paced = _pace_a_steady_limit()  # paced at 45 from t = 1.303
    slots = paced.slots
    paced.successes(50, start=1.5, every=0.02)
    assert slots.rate is not None
    assert slots.rate > 50.0  # +0.1 a success, more after clean half-seconds (see below)
    grown = slots.limit
    paced.refused(2.5)  # a new episode: 10% under the 50 that got through
    assert slots.rate == pytest.approx(45.0)
    assert slots.limit == grown // 2
    paced.successes(10, start=2.6, every=0.01)
    assert slots.rate == pytest.approx(46.0)
    paced.refused(2.8)  # the same episode: the pace stops at what got through (35 + 10)...
    assert slots.rate == pytest.approx(45.0)
    assert slots.decreases == 3  # (no second decrease: the first two came before 2.5)
    paced.successes(10, start=2.9, every=0.01)
    assert slots.rate == pytest.approx(45.0)  # ...and stops probing until the episode ends
    paced.successes(1, start=3.5, every=0.0)
    assert slots.rate == pytest.approx(45.2)  # (clean for 0.7 s, under the 50: twice the step)


@pytest.mark.parametrize("started_at", [None, 2.49])
def test_refusals_sent_before_a_paced_episode_do_not_stop_its_probe(
    started_at: float | None,
) -> None:
    paced = _pace_a_steady_limit()
    paced.successes(50, start=1.5, every=0.02)
    paced.refused(2.5)  # a new episode
    paced.refused(2.51, started_at=started_at)  # in flight when it began: its tail
    paced.successes(10, start=2.6, every=0.01)
    assert paced.slots.rate == pytest.approx(46.0)  # still probing upwards


def test_a_count_above_the_pace_is_saved_tokens_not_the_rate() -> None:
    paced = _pace_a_steady_limit()
    paced.successes(60, start=1.51, every=0.0165)  # a bucket's saved tokens: 60 in a second
    pace = paced.slots.rate
    assert pace is not None
    assert pace < 60.0
    paced.refused(2.5)
    assert paced.slots.rate == pytest.approx(0.9 * pace)  # under the pace, not under the 60


def test_new_streams_start_after_the_hold_then_at_the_pace() -> None:
    paced = _Paced()
    paced.successes(50, start=0.0, every=0.004)
    paced.hammered(4, start=0.2)
    assert paced.slots._book_start(paced.now) == pytest.approx(1.203)
    paced = _pace_a_steady_limit()
    starts = [paced.slots._book_start(paced.now) for _ in range(3)]
    assert starts == pytest.approx([1.303, 1.303 + 1 / 45, 1.303 + 2 / 45])


async def test_a_stream_is_told_when_it_started() -> None:
    slots = StreamSlots(4, clock=lambda: 5.0)
    async with slots as started_at:
        assert started_at == 5.0  # what on_throttled(started_at=...) wants if it is refused


def test_successes_grow_the_limit_back_to_the_maximum() -> None:
    now = [0.0]
    slots = StreamSlots(4, cooldown_s=0.0, clock=lambda: now[0])
    for _ in range(8):  # no Retry-After (no hold): twice four in a row, two episodes
        slots.on_throttled()
    assert slots.limit == 1
    slots.on_success()
    assert slots.limit == 2
    for _ in range(2):
        slots.on_success()
    assert slots.limit == 3
    for _ in range(10):
        slots.on_success()
    assert slots.limit == 4


def test_never_below_the_minimum() -> None:
    slots = StreamSlots(2, cooldown_s=0.0, minimum=1)
    for _ in range(20):
        slots.on_throttled()
    assert slots.limit == 1


def test_fixed_slots_never_move() -> None:
    slots = StreamSlots(8, adaptive=False)
    for _ in range(8):
        slots.on_throttled(retry_after_s=5.0)
    slots.on_success()
    assert slots.limit == 8
    assert slots.rate is None
    assert slots.held_until == -float("inf")


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


async def test_retry_after_holds_every_new_stream() -> None:
    slots = StreamSlots(4, cooldown_s=0.0)
    for _ in range(4):  # a steady limit: four in a row
        slots.on_throttled(retry_after_s=0.2)
    started = anyio.current_time()
    async with slots:
        waited = anyio.current_time() - started
    assert waited >= 0.15


# Thread batches and single_error


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
