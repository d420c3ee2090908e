"""Stream slots against a gateway that charges refused requests too (a token bucket in debt):
once paced, a run of refusals of paced requests holds new starts (streams waiting for their
paced turn too) for the Retry-After and the streams in flight; a clean probe quickens up to
what the server accepted before. All on a clock the test moves."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from tests.test_concurrency import _pace_a_steady_limit, _Paced


def _paced_and_probing() -> _Paced:
    """Paced at 45 from t = 1.303 (its episode began at 1.3), then a clean second at ~50."""
    paced = _pace_a_steady_limit()
    paced.successes(50, start=1.5, every=0.02)  # up to t = 2.48
    return paced


def _run_of_paced_refusals(paced: _Paced, *, start: float, retry_after_s: float = 1.0) -> None:
    """Four refusals in a row, each of a request sent after the one before was refused."""
    for i in range(4):
        at = start + i * 0.01
        paced.refused(at, retry_after_s=retry_after_s, started_at=at - 0.005)


def test_a_run_of_paced_refusals_holds_new_starts_for_the_retry_after() -> None:
    paced = _paced_and_probing()
    held_before = paced.slots.held_until
    _run_of_paced_refusals(paced, start=2.6)
    assert paced.slots.held_until == pytest.approx(2.63 + 1.0)  # from the fourth in a row
    assert paced.slots.held_until > held_before


def test_refusals_of_requests_sent_before_the_pace_was_cut_hold_nobody() -> None:
    paced = _paced_and_probing()
    held_before = paced.slots.held_until
    paced.refused(2.6, started_at=2.595)  # a new paced episode begins at 2.6
    for i in range(1, 4):  # in flight when it began: they say nothing about the new pace
        paced.refused(2.6 + i * 0.01, started_at=2.59)
    assert paced.slots.held_until == held_before


async def test_the_hold_leaves_room_for_the_streams_in_flight() -> None:
    paced = _paced_and_probing()
    slots = paced.slots
    answered = anyio.Event()

    async def stream(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with slots:
            task_status.started()
            await answered.wait()

    async with anyio.create_task_group() as tg:
        for i in range(5):  # five streams started at the pace and not answered yet
            paced.now = 2.5 + i * 0.05  # each after its paced turn: nobody waits
            await tg.start(stream)
        for i in range(3):
            at = 2.8 + i * 0.01
            paced.refused(at, started_at=at - 0.005)
        rate = slots.rate  # the pace the fourth refusal finds
        assert rate is not None
        paced.refused(2.83, started_at=2.825)
        # Each of the five will cost the bucket a token, accepted or refused: their turns
        # at the pace come after the Retry-After, before anyone new starts.
        assert slots.held_until == pytest.approx(2.83 + 1.0 + 5 / rate)
        answered.set()


async def test_a_stream_waiting_for_its_paced_turn_waits_for_a_hold_begun_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paced = _paced_and_probing()
    slots = paced.slots
    paced.now = 2.6
    slots._book_start(2.6)  # a stream starts now: the next one's turn is 1 / rate later
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        """The clock moves by the nap; the refusals come in during the first one."""
        asleep_at = paced.now
        naps.append(seconds)
        if len(naps) == 1:
            _run_of_paced_refusals(paced, start=2.605)
        paced.now = max(paced.now, asleep_at + seconds)

    monkeypatch.setattr(anyio, "sleep", nap)
    async with slots as started_at:
        pass
    assert started_at == pytest.approx(2.635 + 1.0)  # the hold's end, not its booked turn
    assert started_at == pytest.approx(slots.held_until)
    assert len(naps) == 2


def test_a_clean_probe_quickens_up_to_what_the_server_accepted_before() -> None:
    paced = _pace_a_steady_limit()  # paced at 45; its last refusal at 1.303; 50 in its best window
    slots = paced.slots
    steps = []
    for at in (1.5, 1.9, 2.4, 2.9, 3.9, 4.0, 4.1, 4.2, 4.3, 4.4):
        before = slots.rate
        paced.successes(1, start=at, every=0.0)
        assert before is not None
        assert slots.rate is not None
        steps.append(round(slots.rate - before, 6))
    # +0.1 a success in the first half-second after a refusal, doubling each clean half-second
    # up to 0.8; a quarter of 0.1 once the pace is above the 50 the server once accepted in a
    # second (where only a limit that rose is looked for).
    assert steps == [0.1, 0.2, 0.4, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.025]
    assert slots.rate == pytest.approx(50.525)
