"""The emulator's rate limit: the plain token bucket, where a refused request costs nothing and
hammering wins, and the bucket in debt (``Faults.rate_limit_debt``), where every refused
request still takes its token. The bucket is driven by an injected clock; one test goes through
HTTP to show the gateway's answers, one through ``asyncdl serve --rate-limit-debt``.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from asyncdl.cli import app
from asyncdl.emulator import EmulatorConfig, Faults, running_emulator
from asyncdl.emulator.faults import MAX_DEBT_S, FaultInjector
from asyncdl.errors import ConfigError

BATCHES = "/data/foundation/catalog/batches"
HEADERS = {
    "Authorization": "Bearer emulator-token",
    "x-api-key": "emulator",
    "x-gw-ims-org-id": "EMULATOR@AdobeOrg",
}
#: A hammering client's pace: a request every 10 ms.
TICKS_PER_S = 100


class Clock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bucket(rps: float, *, debt: bool) -> tuple[FaultInjector, Clock]:
    clock = Clock()
    return FaultInjector(Faults(rate_limit_rps=rps, rate_limit_debt=debt), clock=clock), clock


def ask(injector: FaultInjector) -> int | None:
    """One request: None when it passes, else the Retry-After seconds of its 429."""
    refusal = injector.rate_limit_refusal()
    if refusal is None:
        return None
    assert (refusal.status, refusal.gateway) == (429, ("429050", "Too many requests"))
    assert refusal.retry_after_s is not None
    assert float(refusal.retry_after_s).is_integer()
    return int(refusal.retry_after_s)


def test_debt_needs_a_rate_limit() -> None:
    with pytest.raises(ConfigError, match="rate_limit_debt"):
        Faults(rate_limit_debt=True)
    assert not Faults(rate_limit_rps=1.0).rate_limit_debt  # off by default


@pytest.mark.parametrize("debt", [False, True], ids=["plain", "debt"])
def test_a_client_that_respects_retry_after_gets_the_steady_rate(debt: bool) -> None:
    rps = 4.0
    injector, clock = bucket(rps, debt=debt)
    # It starts too fast: the full bucket lets a burst through, then it is told to wait.
    burst = 0
    while (wait := ask(injector)) is None:
        burst += 1
    assert burst == rps
    clock.now += wait
    # From then on it asks at the steady rate, and would wait whenever told to.
    successes = refusals = 0
    end = clock.now + 60
    while clock.now < end:
        wait = ask(injector)
        if wait is None:
            successes += 1
            clock.now += 1 / rps
        else:
            refusals += 1
            clock.now += wait
    assert (successes, refusals) == (60 * rps, 0)


@pytest.mark.parametrize("rps", [0.5, 1.0, 2.0, 10.0])
def test_each_retry_after_is_kept(rps: float) -> None:
    """A client that sends as fast as it can but waits every Retry-After it is given always
    finds a token when the wait is over, in debt too, where its refusals cost it throughput."""
    injector, clock = bucket(rps, debt=True)
    successes = waits = 0
    end = 60.0
    while clock.now < end:
        wait = ask(injector)
        if wait is None:
            successes += 1
            continue
        waits += 1
        clock.now += wait
        assert ask(injector) is None, f"no token after waiting {wait} s at {clock.now}"
        successes += 1
    assert waits > 0
    # Each cycle pays for one refusal; the rest of the refill gets through.
    assert successes >= rps * end / 2


def hammer(injector: FaultInjector, clock: Clock, *, requests: int) -> tuple[int, list[float]]:
    """Ask every 10 ms, whatever the answers say: (successes, when each 429 said to come back)."""
    successes = 0
    promised: list[float] = []
    start = round(clock.now * TICKS_PER_S)
    for tick in range(start, start + requests):
        clock.now = tick / TICKS_PER_S
        wait = ask(injector)
        if wait is None:
            successes += 1
        else:
            promised.append(clock.now + wait)
    return successes, promised


def test_hammering_a_plain_bucket_wins() -> None:
    """Today's bucket: refusals cost nothing, so a hammerer gets every token as it appears."""
    rps = 2.0
    injector, clock = bucket(rps, debt=False)
    successes, promised = hammer(injector, clock, requests=30 * TICKS_PER_S)
    assert successes >= 2 + 30 * rps - 1  # the burst, then the whole steady rate
    # And it is never told to stay away longer than the next token takes.
    assert max(p - clock.now for p in promised[-10:]) <= 1


def test_hammering_a_bucket_in_debt_is_refused_and_pushes_its_next_success_out() -> None:
    rps = 2.0
    injector, clock = bucket(rps, debt=True)
    successes, promised = hammer(injector, clock, requests=30 * TICKS_PER_S)
    assert successes == 2  # the burst of a full bucket, then nothing at all
    # Every refused request moved the promised success later than the one before.
    assert all(later > earlier for earlier, later in itertools.pairwise(promised))
    waits = [p - (i + 2) / TICKS_PER_S for i, p in enumerate(promised)]
    assert waits[0] == pytest.approx(1.0)
    # The debt is bounded: ten seconds of refill, then one token's worth.
    bound = math.ceil(MAX_DEBT_S + 1 / rps)
    assert max(waits) == pytest.approx(bound)
    assert all(w <= bound + 1e-9 for w in waits)
    # Once it stops, asking before the last promise is refused again, promising no sooner;
    # the promise then holds.
    clock.now = promised[-1] - 1
    wait = ask(injector)
    assert wait is not None
    assert clock.now + wait >= promised[-1]
    clock.now += wait
    assert ask(injector) is None


@pytest.mark.parametrize("debt", [False, True], ids=["plain", "debt"])
def test_a_longer_hammering_pushes_the_first_success_further_out(debt: bool) -> None:
    def first_success_after(requests: int) -> float:
        injector, clock = bucket(2.0, debt=debt)
        hammer(injector, clock, requests=requests)
        stopped = clock.now
        while ask(injector) is not None:  # then a polite probe every second
            clock.now += 1
        return clock.now - stopped

    recoveries = [first_success_after(n) for n in (3, 6, 12, 24)]
    if debt:
        assert recoveries == sorted(recoveries)
        assert recoveries[0] < recoveries[-1]
    else:
        assert len(set(recoveries)) == 1


async def test_the_gateway_answers_a_bucket_in_debt(part_cache: Path) -> None:
    faults = Faults(rate_limit_rps=1.0, rate_limit_debt=True)
    config = EmulatorConfig(cache_dir=part_cache, faults=faults)
    async with (
        running_emulator(config) as emulator,
        aiohttp.ClientSession(emulator.base_url, headers=HEADERS) as http,
    ):

        async def hammering(times: int) -> list[int | None]:
            seen: list[int | None] = []
            for _ in range(times):
                async with http.get(BATCHES) as response:
                    if response.status == 200:
                        seen.append(None)
                        continue
                    assert response.status == 429
                    assert (await response.json())["error_code"] == "429050"
                    seen.append(int(response.headers["Retry-After"]))
            return seen

        in_debt = await hammering(12)
        emulator.faults = Faults(rate_limit_rps=1.0)  # a fresh, plain bucket
        plain = await hammering(12)
        await emulator.wait_idle()
        refused = [r for r in emulator.requests if r.fault == "rate_limit"]
    assert in_debt[0] is None
    waits = [w for w in in_debt[1:] if w is not None]
    assert len(waits) == 11
    assert waits[-1] > waits[0]  # every refusal dug deeper
    assert max(waits) <= math.ceil(MAX_DEBT_S + 1)
    assert plain[0] is None
    # Refusals cost nothing: whenever refused, it may come back within the second.
    assert {w for w in plain[1:] if w is not None} == {1}
    assert len(refused) == sum(w is not None for w in in_debt + plain)
    assert all(r.status == 429 for r in refused)


def test_serve_flag() -> None:
    shown = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    assert "--rate-limit-debt" in shown.stdout
    alone = CliRunner().invoke(app, ["serve", "--rate-limit-debt"])
    assert alone.exit_code == 2
    assert "rate_limit_debt needs a rate limit" in alone.stderr
