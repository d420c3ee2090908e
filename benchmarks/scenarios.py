"""Issue 4's scenarios S1-S7 (issue 12's S7b, issue 15's S8) as data: the emulator's flags,
the tools compared, the targets.

Sizes are scaled so the whole of ``make bench`` stays within a few minutes on two cores; every
scaling is written in the scenario's ``note`` (and so in the table and the README). ``judge``
turns a scenario's medians into ``Target`` verdicts; S6 (CPU per GB) is judged on S2's runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from peers import Tool
from results_model import MB, ScenarioResult, Target

__all__ = ["ALL_SCENARIOS", "Scenario", "judge"]

S1_LATENCY_S = 0.04
S1_J = 32
#: 25x the sequential client is a 0.70 s run: at j 32 the parts alone are 13 round trips (0.5 s)
#: on top of ~0.25 s of interpreter start-up, so the scenario also shows what a larger pool does.
S1_J_WIDE = 64
S3_CAP_BPS = 20_000_000
S3_J = 16  # 4 parts: one connection per part uses 4, so 3x that needs >= 12 segments at once
#: Also at 8 segments at once: the same fixed costs (start-up, the final hash of the last parts)
#: weigh half as much against a transfer twice as long.
S3_J_NARROW = 8
S3_SEGMENT_BYTES = 32_000_000
S3_THRESHOLD = "64M"
S5_RSS_LIMIT_MB = 100.0
S6_CPU_PER_GB = 1.2
S7_RATE = 50
S7_J = 32
S7B_PARTS = 3000
S7B_429_RATE = 0.03
S7B_MAX_SLOWDOWN = 1.3  # issue 12: scattered 429s cost adaptive at most this x the fixed pool
S8_J = 16
S8_RSS_LIMIT_MB = 150.0
COMMON = ("--batches", "1", "--files", "1")
QUIET = ("--quiet",)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One scenario: how the emulator is started and which tools run against it."""

    key: str
    title: str
    note: str
    serve_args: tuple[str, ...]
    tools: tuple[Tool, ...]
    not_applicable: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 120.0
    warmup: bool = False  # one untimed asyncdl run first (page cache, .pyc files)
    full_only: tuple[str, ...] = ()  # tool labels run only with --full (slow and uninformative)
    store: str | None = None  # "s3": asyncdl writes into moto's S3 in its own process (S8)


def _asyncdl(label: str, j: int, *options: str, needs: tuple[str, ...] = ()) -> Tool:
    return Tool(
        label=label, kind="asyncdl", concurrency=j, options=options, needs_flags=("--quiet", *needs)
    )


def _segmented(j: int) -> Tool:
    """asyncdl in S3 with ranged segments; ``_s3`` finds these by the " segments" label ending."""
    return _asyncdl(
        f"asyncdl -j {j} segments",
        j,
        *QUIET,
        "--segment-threshold",
        S3_THRESHOLD,
        "--segment-size",
        str(S3_SEGMENT_BYTES),
        needs=("--segment-threshold", "--segment-size"),
    )


SEQUENTIAL = Tool(label="sequential", kind="sequential")
CURL = Tool(label="curl", kind="curl")

S1 = Scenario(
    key="S1",
    title="latency-bound: 400 small parts, 17 directory pages of 25, 40 ms per request",
    note="as in issue 4 (the 17th page holds only the _SUCCESS marker)",
    serve_args=(
        *COMMON,
        "--parts",
        "400",
        "--rows",
        "50",
        "--page-size",
        "25",
        "--latency",
        str(S1_LATENCY_S),
    ),
    tools=(
        _asyncdl(f"asyncdl -j {S1_J}", S1_J, *QUIET),
        _asyncdl(f"asyncdl -j {S1_J_WIDE}", S1_J_WIDE, *QUIET),
        SEQUENTIAL,
        Tool(label=f"aria2c -j {S1_J}", kind="aria2c", concurrency=S1_J),
        CURL,
    ),
    full_only=("curl",),
    timeout_s=90.0,
)

S2 = Scenario(
    key="S2",
    title="throughput: 64 parts of 16 MB (1 GB), no latency",
    note="full size (64 x 16 MB)",
    serve_args=(*COMMON, "--parts", "64", "--part-size", "16M"),
    tools=(
        _asyncdl("asyncdl -j 8", 8, *QUIET),
        SEQUENTIAL,
        Tool(label="aria2c -j 8", kind="aria2c", concurrency=8),
        CURL,
    ),
    warmup=True,
)

S3 = Scenario(
    key="S3",
    title="big parts under a per-connection cap: 4 parts of 256 MB at 20 MB/s per connection",
    note=f"as in issue 4 (4 x 256 MB); {S3_J} connections for every tool",
    serve_args=(*COMMON, "--parts", "4", "--part-size", "256M", "--bandwidth", "20M"),
    tools=(
        _segmented(S3_J),
        _segmented(S3_J_NARROW),
        _asyncdl(
            f"asyncdl -j {S3_J} one connection per part",
            S3_J,
            *QUIET,
            "--segment-threshold",
            "100G",
            needs=("--segment-threshold",),
        ),
        Tool(
            label=f"aria2c -j 1 -x {S3_J} -s {S3_J}",
            kind="aria2c",
            concurrency=1,
            options=("-x", str(S3_J), "-s", str(S3_J), "-k", "1M"),
        ),
    ),
    not_applicable=(
        ("sequential", "one connection at the cap: 25.6 s by construction (20 MB/s)"),
        ("curl", "one connection at the cap: 25.6 s by construction (20 MB/s)"),
    ),
    timeout_s=120.0,
)

S4 = Scenario(
    key="S4",
    title="many small parts: 2,000 parts of 64 KiB, no latency",
    note="full size; directory pages of 100 (AEP's default)",
    serve_args=(*COMMON, "--parts", "2000", "--part-size", "64Ki"),
    tools=(
        _asyncdl("asyncdl -j 16", 16, *QUIET),
        SEQUENTIAL,
        Tool(label="aria2c -j 16", kind="aria2c", concurrency=16),
        CURL,
    ),
    warmup=True,
)

_S5_NA = (
    ("sequential", "target bounds asyncdl's own memory (peers' RSS: raw runs of S2/S4)"),
    ("aria2c", "target bounds asyncdl's own memory (peers' RSS: raw runs of S2/S4)"),
    ("curl", "target bounds asyncdl's own memory (peers' RSS: raw runs of S2/S4)"),
)

S5A = Scenario(
    key="S5a",
    title="memory, big parts: 8 parts of 64 MB",
    note="full size",
    serve_args=(*COMMON, "--parts", "8", "--part-size", "64M"),
    tools=(_asyncdl("asyncdl -j 8", 8, *QUIET),),
    not_applicable=_S5_NA,
    warmup=True,
)

S5B = Scenario(
    key="S5b",
    title="memory, long listing: 10,000 tiny parts (1 row each), pages of 100",
    note="full size",
    serve_args=(*COMMON, "--parts", "10000", "--rows", "1"),
    tools=(_asyncdl("asyncdl -j 8", 8, *QUIET),),
    not_applicable=_S5_NA,
    timeout_s=180.0,
)

_S7_NA = "no Retry-After handling: stops at (or blindly retries) the first 429"
S7 = Scenario(
    key="S7",
    title=f"rate-limited server: 400 small parts, {S7_RATE} requests/s, 429 + Retry-After above",
    note="as in issue 4; 429s counted from asyncdl's --json retry events (parts and listing)",
    serve_args=(
        *COMMON,
        "--parts",
        "400",
        "--rows",
        "50",
        "--rate-limit",
        str(S7_RATE),
        "--retry-after",
        "1",
    ),
    tools=(
        _asyncdl(
            f"asyncdl -j {S7_J} adaptive",
            S7_J,
            "--json",
            "--adaptive",
            needs=("--json", "--adaptive"),
        ),
        _asyncdl(
            f"asyncdl -j {S7_J} --no-adaptive",
            S7_J,
            "--json",
            "--no-adaptive",
            needs=("--json", "--no-adaptive"),
        ),
    ),
    not_applicable=(("sequential", _S7_NA), ("aria2c", _S7_NA), ("curl", _S7_NA)),
    timeout_s=180.0,
)

#: S7b's emulator without its 429s: 5xx and dropped connections only (the same parts, and the
#: same 5xx: one draw per request decides among 5xx, 429 and neither).
_S7B_OTHER_FAULTS = (
    *COMMON,
    "--parts",
    str(S7B_PARTS),
    "--rows",
    "50",
    "--error-rate",
    "0.02",
    "--drop-rate",
    "0.02",
    "--retry-after",
    "1",
)
S7B = Scenario(
    key="S7b",
    title=f"scattered 429s: {S7B_PARTS:,} small parts, {S7B_429_RATE:.0%} of requests refused at"
    " random (Retry-After: 1), 2% 5xx, 2% dropped connections",
    note="issue 12's case (a user's 5,000 parts: 441 s adaptive, 12 s fixed), at 3,000 parts; at"
    " most 2 faults per URL; the floor runs on the same emulator without the 429s",
    serve_args=(*_S7B_OTHER_FAULTS, "--rate-429", str(S7B_429_RATE)),
    tools=(
        _asyncdl(
            f"asyncdl -j {S7_J} adaptive",
            S7_J,
            "--json",
            "--adaptive",
            needs=("--json", "--adaptive"),
        ),
        _asyncdl(
            f"asyncdl -j {S7_J} --no-adaptive",
            S7_J,
            "--json",
            "--no-adaptive",
            needs=("--json", "--no-adaptive"),
        ),
        Tool(
            label=f"asyncdl -j {S7_J} adaptive, no 429s (floor)",
            kind="asyncdl",
            concurrency=S7_J,
            options=("--json", "--adaptive"),
            needs_flags=("--json", "--adaptive"),
            serve_args=_S7B_OTHER_FAULTS,
        ),
    ),
    not_applicable=(("sequential", _S7_NA), ("aria2c", _S7_NA), ("curl", _S7_NA)),
    timeout_s=120.0,
)

_S8_NA = "writes only to local disk"
S8 = Scenario(
    key="S8",
    title=f"straight into S3: 32 parts of 16 MB (512 MB) at -j {S8_J} into moto's S3",
    note="issue 15; moto_server in its own process on loopback, one per run; each run's bucket is "
    "checked (names, sizes, PAR1 at both ends, no multipart upload left open)",
    serve_args=(*COMMON, "--parts", "32", "--part-size", "16M"),
    tools=(_asyncdl(f"asyncdl -j {S8_J} into S3", S8_J, *QUIET),),
    not_applicable=(("sequential", _S8_NA), ("aria2c", _S8_NA), ("curl", _S8_NA)),
    warmup=True,
    store="s3",
)

ALL_SCENARIOS = (S1, S2, S3, S4, S5A, S5B, S7, S7B, S8)


def _ratio(slow: float | None, fast: float | None) -> float | None:
    if slow is None or fast is None or fast <= 0:
        return None
    return slow / fast


def _x(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}x"


def _verdict(value: float | None, ok: Callable[[float], bool]) -> bool | None:
    return None if value is None else ok(value)


def _at_least(scenario: str, goal: str, ratio: float | None, minimum: float) -> Target:
    """A speed-up target: met when ``ratio`` (slower time / asyncdl's time) reaches ``minimum``."""
    return Target(
        scenario=scenario,
        goal=goal,
        measured=_x(ratio),
        met=_verdict(ratio, lambda v: v >= minimum),
    )


def _s1(result: ScenarioResult) -> list[Target]:
    seq = result.tool("sequential")
    targets = []
    for asyncdl in (t for t in result.tools if t.tool.kind == "asyncdl"):
        j = asyncdl.tool.concurrency
        wall = asyncdl.wall_s
        speedup = _ratio(seq.wall_s if seq else None, wall)
        goal = f">= 25x the sequential client (asyncdl -j {j})"
        targets.append(_at_least("S1", goal, speedup, 25))
        if result.listing is None:
            continue
        requests = result.listing.requests
        parts = len(result.listing.parts)
        floor = (requests + parts / j) * S1_LATENCY_S
        latency_ms = S1_LATENCY_S * 1000
        formula = f"({requests} listing requests + {parts} parts / j {j}) x {latency_ms:.0f} ms"
        if j == S1_J:
            result.facts["network_floor_s"] = floor
            result.facts["floor_formula"] = formula
        share = _ratio(wall, floor)
        startup = result.facts.get("asyncdl_startup_s")
        measured = f"{_x(share)} of the floor {floor:.2f} s"
        if wall is not None and isinstance(startup, float):
            measured += f" ({(wall - startup) / floor:.2f}x without the {startup:.2f} s start-up)"
        targets.append(
            Target(
                scenario="S1",
                goal=f"<= 1.3x the network floor {formula}",
                measured=measured,
                met=_verdict(share, lambda v: v <= 1.3),
            )
        )
    return targets


def _s2(result: ScenarioResult) -> list[Target]:
    asyncdl, aria = result.tools[0], result.tool("aria2c -j 8")
    speedup = _ratio(aria.wall_s if aria else None, asyncdl.wall_s)
    targets = [_at_least("S2", ">= 2x aria2c's MB/s", speedup, 2)]
    cpu = asyncdl.median("cpu_s")
    per_gb = None
    if cpu is not None and result.listing is not None:
        per_gb = cpu / (result.listing.total_bytes / 1e9)
    measured = "not measured" if per_gb is None else f"{per_gb:.2f} CPU-s/GB"
    startup = result.facts.get("asyncdl_startup_cpu_s")
    if per_gb is not None and cpu is not None and isinstance(startup, float):
        assert result.listing is not None
        net = (cpu - startup) / (result.listing.total_bytes / 1e9)
        measured += f" ({net:.2f} without the {startup:.2f} CPU-s start-up)"
    targets.append(
        Target(
            scenario="S6",
            goal=f"<= {S6_CPU_PER_GB} CPU-s per GB in S2 (user + sys, rusage)",
            measured=measured,
            met=_verdict(per_gb, lambda v: v <= S6_CPU_PER_GB),
        )
    )
    return targets


def _s3(result: ScenarioResult) -> list[Target]:
    single = next(t for t in result.tools if t.tool.label.endswith("one connection per part"))
    targets = []
    for segmented in (t for t in result.tools if t.tool.label.endswith(" segments")):
        j = segmented.tool.concurrency
        if result.listing is not None:
            segments = sum(-(-p.size // S3_SEGMENT_BYTES) for p in result.listing.parts)
            in_flight = min(j, segments)
            goal_mbps = 0.9 * in_flight * S3_CAP_BPS / MB
            result.facts["segments"] = segments
            wall = segmented.wall_s
            mbps = None if wall is None else result.listing.total_bytes / wall / MB
            measured = "not measured" if mbps is None else f"{mbps:.1f} MB/s"
            startup = result.facts.get("asyncdl_startup_s")
            if wall is not None and isinstance(startup, float):
                net = result.listing.total_bytes / (wall - startup) / MB
                measured += f" ({net:.1f} without the {startup:.2f} s start-up)"
            targets.append(
                Target(
                    scenario="S3",
                    goal=f">= 0.9 x {in_flight} segments in flight x 20 MB/s"
                    f" = {goal_mbps:.0f} MB/s",
                    measured=measured,
                    met=None if mbps is None else mbps >= goal_mbps,
                )
            )
        if result.listing is not None:
            single_streams = min(single.tool.concurrency, len(result.listing.parts))
            if j < 3 * single_streams:
                continue  # 3x that many connections is out of reach by construction: no verdict
        speedup = _ratio(single.wall_s, segmented.wall_s)
        goal = f">= 3x one connection per part (asyncdl -j {j} segments)"
        targets.append(_at_least("S3", goal, speedup, 3))
    return targets


def _s4(result: ScenarioResult) -> list[Target]:
    asyncdl, aria = result.tools[0], result.tool("aria2c -j 16")
    rate = None
    if asyncdl.wall_s is not None and result.listing is not None:
        rate = len(result.listing.parts) / asyncdl.wall_s
    speedup = _ratio(aria.wall_s if aria else None, asyncdl.wall_s)
    return [
        Target(
            scenario="S4",
            goal=">= 1,500 parts/s",
            measured="not measured" if rate is None else f"{rate:,.0f} parts/s",
            met=_verdict(rate, lambda v: v >= 1500),
        ),
        _at_least("S4", ">= 2x aria2c", speedup, 2),
    ]


def _s5(result: ScenarioResult) -> list[Target]:
    runs = result.tools[0].good
    peak = max((r.max_rss_kib for r in runs), default=None)
    peak_mb = None if peak is None else peak * 1024 / MB
    return [
        Target(
            scenario=result.key,
            goal=f"peak RSS < {S5_RSS_LIMIT_MB:.0f} MB (worst of the runs)",
            measured="not measured" if peak_mb is None else f"{peak_mb:.1f} MB",
            met=_verdict(peak_mb, lambda v: v < S5_RSS_LIMIT_MB),
        )
    ]


def _s8(result: ScenarioResult) -> list[Target]:
    runs = result.tools[0].good
    peak = max((r.max_rss_kib for r in runs), default=None)
    peak_mb = None if peak is None else peak * 1024 / MB
    return [
        Target(
            scenario="S8",
            goal=f"peak RSS < {S8_RSS_LIMIT_MB:.0f} MB at -j {S8_J} into S3 (worst of the runs)",
            measured="not measured" if peak_mb is None else f"{peak_mb:.1f} MB",
            met=_verdict(peak_mb, lambda v: v < S8_RSS_LIMIT_MB),
        )
    ]


def _s7(result: ScenarioResult) -> list[Target]:
    adaptive, fixed = result.tools[0], result.tools[1]
    speedup = _ratio(fixed.wall_s, adaptive.wall_s)
    a429, f429 = adaptive.median("retries_429"), fixed.median("retries_429")
    fewer = None if a429 is None or f429 is None else (a429, f429)
    return [
        Target(
            scenario="S7",
            goal="adaptive finishes faster than a fixed -j 32",
            measured=f"{_x(speedup)} (fixed time / adaptive time)",
            met=_verdict(speedup, lambda v: v > 1.0),
        ),
        Target(
            scenario="S7",
            goal="adaptive gets far fewer 429s (at most half)",
            measured="not measured"
            if fewer is None
            else f"{fewer[0]:.0f} vs {fewer[1]:.0f} (medians)",
            met=None if fewer is None else fewer[0] <= fewer[1] / 2,
        ),
    ]


def _s7b(result: ScenarioResult) -> list[Target]:
    adaptive, fixed, floor = result.tools[0], result.tools[1], result.tools[2]
    slowdown = _ratio(adaptive.wall_s, fixed.wall_s)
    measured = f"{_x(slowdown)} (adaptive time / fixed time)"
    if adaptive.wall_s is not None and fixed.wall_s is not None and floor.wall_s is not None:
        measured += (
            f": {adaptive.wall_s:.2f} s vs {fixed.wall_s:.2f} s; {floor.wall_s:.2f} s"
            " without the 429s"
        )
    return [
        Target(
            scenario="S7b",
            goal=f"adaptive takes at most {S7B_MAX_SLOWDOWN}x a fixed -j {S7_J} (issue 12)",
            measured=measured,
            met=_verdict(slowdown, lambda v: v <= S7B_MAX_SLOWDOWN),
        )
    ]


_JUDGES: dict[str, Callable[[ScenarioResult], list[Target]]] = {
    "S1": _s1,
    "S2": _s2,
    "S3": _s3,
    "S4": _s4,
    "S5a": _s5,
    "S5b": _s5,
    "S7": _s7,
    "S7b": _s7b,
    "S8": _s8,
}


def judge(result: ScenarioResult) -> list[Target]:
    """Issue 4's targets for this scenario, from the medians of its verified runs."""
    if result.error is not None or not result.tools:
        return []
    return _JUDGES[result.key](result)
