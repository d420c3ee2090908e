"""The verdicts: issue 18's targets (which replace issue 4's), issue 12's S7b and issue 15's S8.

Each judge turns one scenario's medians (verified runs only) into ``Target`` rows. A target is
met or not; ``met`` None means it could not be measured (a tool missing or every run failed);
``info`` rows are figures the issues ask to see without a threshold (S2d, S9, the floor in S4).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from results_model import MB, ScenarioResult, Target, ToolResult
from scenarios import (
    CPU_MAX_OVER_FLOOR,
    S1_J,
    S1_J_WIDE,
    S1_LATENCY_S,
    S1_MAX_OVER_FLOOR,
    S1_MIN_OVER_SEQUENTIAL,
    S1_REQUESTS_BEFORE_PARTS,
    S2_MIN_OVER_ARIA2C,
    S2_MIN_OVER_CURL,
    S3_CAP_BPS,
    S3_SEGMENT_BYTES,
    S4_MIN_OVER_ARIA2C,
    S5_RSS_LIMIT_MB,
    S7_BURST,
    S7_J,
    S7_MAX_OVER_FLOOR,
    S7_MIN_SPEEDUP,
    S7_RATE,
    S7B_MAX_SLOWDOWN,
    S8_J,
    S8_RSS_LIMIT_MB,
)

__all__ = ["judge"]


def _ratio(slow: float | None, fast: float | None) -> float | None:
    if slow is None or fast is None or fast <= 0:
        return None
    return slow / fast


def _x(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}x"


def _verdict(value: float | None, ok: Callable[[float], bool]) -> bool | None:
    return None if value is None else ok(value)


def _kind(result: ScenarioResult, kind: str) -> ToolResult | None:
    return next((t for t in result.tools if t.tool.kind == kind), None)


def _wall(tool: ToolResult | None) -> float | None:
    return None if tool is None else tool.wall_s


def _cpu(tool: ToolResult | None) -> float | None:
    return None if tool is None else tool.median("cpu_s")


def _info(scenario: str, goal: str, measured: str) -> Target:
    return Target(scenario=scenario, goal=goal, measured=measured, met=None, info=True)


def _startup(result: ScenarioResult, name: str = "asyncdl_startup_s") -> float | None:
    value = result.facts.get(name)
    return value if isinstance(value, float) else None


def _s1(result: ScenarioResult) -> list[Target]:
    seq = result.tool("sequential")
    targets = []
    narrow = result.tool(f"asyncdl -j {S1_J}")
    startup = _startup(result)
    if narrow is not None and result.listing is not None:
        parts = len(result.listing.parts)
        waves = math.ceil(parts / S1_J)
        trips = S1_REQUESTS_BEFORE_PARTS + waves
        floor = None if startup is None else startup + trips * S1_LATENCY_S
        ms = S1_LATENCY_S * 1000
        formula = (
            f"start-up + (Catalog + batch files + first page + ceil({parts}/{S1_J}) = {waves}"
            f" waves) x {ms:.0f} ms"
        )
        result.facts["network_floor_s"] = floor
        result.facts["floor_formula"] = formula
        share = _ratio(narrow.wall_s, floor)
        measured = _x(share)
        if floor is not None and narrow.wall_s is not None:
            measured += f": {narrow.wall_s:.2f} s vs the floor {floor:.2f} s"
        targets.append(
            Target(
                scenario="S1",
                goal=f"asyncdl -j {S1_J} <= {S1_MAX_OVER_FLOOR}x its floor {formula}",
                measured=measured,
                met=_verdict(share, lambda v: v <= S1_MAX_OVER_FLOOR),
            )
        )
    wide = result.tool(f"asyncdl -j {S1_J_WIDE}")
    if wide is not None:
        speedup = _ratio(_wall(seq), wide.wall_s)
        targets.append(
            Target(
                scenario="S1",
                goal=f">= {S1_MIN_OVER_SEQUENTIAL:.0f}x the sequential client (asyncdl -j"
                f" {S1_J_WIDE}; issue 4's, kept by issue 18)",
                measured=_x(speedup),
                met=_verdict(speedup, lambda v: v >= S1_MIN_OVER_SEQUENTIAL),
            )
        )
    return targets


def _s2(result: ScenarioResult) -> list[Target]:
    asyncdl, floor = _kind(result, "asyncdl"), _kind(result, "floor")
    aria, curl = _kind(result, "aria2c"), _kind(result, "curl")
    cpu, floor_cpu = _cpu(asyncdl), _cpu(floor)
    cpu_ratio = _ratio(cpu, floor_cpu)
    measured = _x(cpu_ratio)
    if cpu is not None and floor_cpu is not None:
        measured += f": {cpu:.2f} vs {floor_cpu:.2f} CPU-s"
        if result.listing is not None:
            measured += f" ({cpu / (result.listing.total_bytes / 1e9):.2f} CPU-s/GB for asyncdl)"
    targets = [
        Target(
            scenario="S2",
            goal=f"CPU: asyncdl's CPU-s <= {CPU_MAX_OVER_FLOOR}x the bare aiohttp loop's"
            " (user + sys, rusage)",
            measured=measured,
            met=_verdict(cpu_ratio, lambda v: v <= CPU_MAX_OVER_FLOOR),
        )
    ]
    for peer, name, minimum in (
        (aria, "aria2c", S2_MIN_OVER_ARIA2C),
        (curl, "curl", S2_MIN_OVER_CURL),
    ):
        speedup = _ratio(_wall(peer), _wall(asyncdl))
        targets.append(
            Target(
                scenario="S2",
                goal=f"asyncdl's MB/s >= {minimum}x {name}'s",
                measured=_x(speedup),
                met=None if speedup is None else speedup >= minimum,
            )
        )
    vs_floor = _ratio(_wall(floor), _wall(asyncdl))
    targets.append(_info("S2", "asyncdl's MB/s over the aiohttp floor's", _x(vs_floor)))
    return targets


def _s2d(result: ScenarioResult) -> list[Target]:
    disk = result.tools[0].wall_s if result.tools else None
    walls = {t.tool.label: t.wall_s for t in result.tools}
    tmpfs = next((w for label, w in walls.items() if "tmpfs" in label), None)
    nofsync = next((w for label, w in walls.items() if "--no-fsync" in label), None)
    figures = "; ".join(
        f"{label}: {'-' if w is None else f'{w:.2f} s'}" for label, w in walls.items()
    )
    base = result.facts.get("disk_base")
    fs = result.facts.get("disk_fs")
    if fs in ("tmpfs", "ramfs"):
        fs = f"{fs}: NOT a disk, pass --disk-base"
    return [
        _info(
            "S2d",
            f"S2 on disk ({base}, {fs}), fsync on and off, beside tmpfs",
            f"{figures}; fsync / no-fsync {_x(_ratio(disk, nofsync))},"
            f" fsync on disk / tmpfs {_x(_ratio(disk, tmpfs))}",
        )
    ]


def _s3(result: ScenarioResult) -> list[Target]:
    single = next(
        (t for t in result.tools if t.tool.label.endswith("one connection per part")), None
    )
    targets = []
    startup = _startup(result)
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
            if wall is not None and startup is not None:
                net = result.listing.total_bytes / (wall - startup) / MB
                measured += f" ({net:.1f} without the {startup:.2f} s start-up)"
            targets.append(
                Target(
                    scenario="S3",
                    goal=f">= 0.9 x {in_flight} segments in flight x 20 MB/s"
                    f" = {goal_mbps:.0f} MB/s",
                    measured=measured,
                    met=None if mbps is None else mbps >= goal_mbps,
                    issue="4, kept by 18",
                )
            )
        speedup = _ratio(_wall(single), segmented.wall_s)
        targets.append(
            _info(
                "S3",
                f"speed-up over one connection per part (asyncdl -j {j} segments)",
                _x(speedup),
            )
        )
    return targets


def _s4(result: ScenarioResult) -> list[Target]:
    asyncdl, aria, floor = _kind(result, "asyncdl"), _kind(result, "aria2c"), _kind(result, "floor")
    speedup = _ratio(_wall(aria), _wall(asyncdl))
    rate = None
    if asyncdl is not None and asyncdl.wall_s and result.listing is not None:
        rate = len(result.listing.parts) / asyncdl.wall_s
    measured = _x(speedup)
    if rate is not None:
        measured += f" ({rate:,.0f} parts/s)"
    vs_floor = _ratio(_wall(floor), _wall(asyncdl))
    cpu_ratio = _ratio(_cpu(asyncdl), _cpu(floor))
    return [
        Target(
            scenario="S4",
            goal=f">= {S4_MIN_OVER_ARIA2C}x aria2c",
            measured=measured,
            met=_verdict(speedup, lambda v: v >= S4_MIN_OVER_ARIA2C),
        ),
        _info(
            "S4",
            "asyncdl against the aiohttp floor (-j 16)",
            f"speed {_x(vs_floor)} (floor time / asyncdl time); CPU-s {_x(cpu_ratio)} the floor's",
        ),
    ]


def _peak_mb(tool: ToolResult | None) -> float | None:
    peak = max((r.max_rss_kib for r in tool.good), default=None) if tool else None
    return None if peak is None else peak * 1024 / MB


def _s5(result: ScenarioResult) -> list[Target]:
    peak_mb = _peak_mb(_kind(result, "asyncdl"))
    return [
        Target(
            scenario=result.key,
            goal=f"peak RSS < {S5_RSS_LIMIT_MB:.0f} MB (worst of the runs)",
            measured="not measured" if peak_mb is None else f"{peak_mb:.1f} MB",
            met=_verdict(peak_mb, lambda v: v < S5_RSS_LIMIT_MB),
            issue="4, kept by 18",
        )
    ]


def _s8(result: ScenarioResult) -> list[Target]:
    asyncdl = _kind(result, "asyncdl")
    peak_mb = _peak_mb(asyncdl)
    wall = _wall(asyncdl)
    mbps = (
        None if wall is None or result.listing is None else result.listing.total_bytes / wall / MB
    )
    return [
        Target(
            scenario="S8",
            goal=f"peak RSS < {S8_RSS_LIMIT_MB:.0f} MB at -j {S8_J} into S3 (worst of the runs)",
            measured="not measured" if peak_mb is None else f"{peak_mb:.1f} MB",
            met=_verdict(peak_mb, lambda v: v < S8_RSS_LIMIT_MB),
            issue="15",
        ),
        _info("S8", "MB/s into S3", "not measured" if mbps is None else f"{mbps:.1f} MB/s"),
    ]


def _bounded(tool: ToolResult, name: str) -> tuple[float | None, bool]:
    """The median of ``name`` over the verified runs and the timed-out ones, whose figure (the
    time until the kill, the 429s until then) is a lower bound: so is the median. The flag says
    whether a timed-out run took part."""
    runs = [r for r in tool.runs if r.ok or r.timed_out]
    values = [float(v) for r in runs if (v := getattr(r, name)) is not None]
    if not values:
        return None, False
    return statistics.median(values), any(r.timed_out for r in runs)


def _s7(result: ScenarioResult) -> list[Target]:
    adaptive, fixed = (
        result.tool(f"asyncdl -j {S7_J} adaptive"),
        result.tool(f"asyncdl -j {S7_J} --no-adaptive"),
    )
    if adaptive is None or fixed is None:
        return []
    fixed_wall, fixed_cut = _bounded(fixed, "wall_s")
    at_least = ">= " if fixed_cut else ""
    speedup = _ratio(fixed_wall, adaptive.wall_s)
    measured = f"{at_least}{_x(speedup)} (fixed time / adaptive time)"
    if fixed_wall is not None and adaptive.wall_s is not None:
        measured += f": {at_least}{fixed_wall:.2f} s vs {adaptive.wall_s:.2f} s"
    if fixed_cut:
        timed_out = sum(r.timed_out for r in fixed.runs)
        measured += f"; {timed_out} fixed run(s) killed at the timeout (counted as that long)"
    targets = [
        Target(
            scenario="S7",
            goal=f"adaptive finishes >= {S7_MIN_SPEEDUP}x faster than a fixed -j {S7_J}",
            measured=measured,
            met=_verdict(speedup, lambda v: v >= S7_MIN_SPEEDUP),
        )
    ]
    if result.listing is not None:
        requests = result.listing.requests + len(result.listing.parts)
        floor = (requests - S7_BURST) / S7_RATE
        result.facts["rate_floor_s"] = floor
        share = _ratio(adaptive.wall_s, floor)
        measured = _x(share)
        startup = _startup(result)
        if adaptive.wall_s is not None and startup is not None:
            net = (adaptive.wall_s - startup) / floor
            measured += (
                f": {adaptive.wall_s:.2f} s vs {floor:.2f} s ({net:.2f}x without the"
                f" {startup:.2f} s start-up)"
            )
        targets.append(
            Target(
                scenario="S7",
                goal=f"adaptive <= {S7_MAX_OVER_FLOOR}x the rate floor ({result.listing.requests}"
                f" listing requests + {len(result.listing.parts)} parts - the bucket's"
                f" {S7_BURST} initial burst) / {S7_RATE} rps",
                measured=measured,
                met=_verdict(share, lambda v: v <= S7_MAX_OVER_FLOOR),
            )
        )
    a429 = adaptive.median("retries_429")
    f429, f429_cut = _bounded(fixed, "retries_429")
    fewer = None if a429 is None or f429 is None else (a429, f429)
    targets.append(
        Target(
            scenario="S7",
            goal="adaptive gets far fewer 429s (at most half the fixed pool's)",
            measured="not measured"
            if fewer is None
            else f"{fewer[0]:.0f} vs {'>= ' if f429_cut else ''}{fewer[1]:.0f} (medians)",
            met=None if fewer is None else fewer[0] <= fewer[1] / 2,
        )
    )
    return targets


def _s7b(result: ScenarioResult) -> list[Target]:
    if len(result.tools) < 3:
        return []
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
            goal=f"adaptive takes at most {S7B_MAX_SLOWDOWN}x a fixed -j {S7_J}",
            measured=measured,
            met=_verdict(slowdown, lambda v: v <= S7B_MAX_SLOWDOWN),
            issue="12",
        )
    ]


def _s9(result: ScenarioResult) -> list[Target]:
    plain = next((t for t in result.tools if "--cluster" not in t.tool.options), None)
    cluster = next((t for t in result.tools if "--cluster" in t.tool.options), None)
    ratio = _ratio(_wall(cluster), _wall(plain))
    measured = f"{_x(ratio)} (cluster time / plain time)"
    if plain is not None and cluster is not None and plain.wall_s and cluster.wall_s:
        measured += f": {cluster.wall_s:.2f} s vs {plain.wall_s:.2f} s"
        cpu_ratio = _ratio(_cpu(cluster), _cpu(plain))
        measured += f"; CPU-s {_x(cpu_ratio)} (rusage: the run and the workers it reaped)"
    return [_info(result.key, "--cluster local:2 overhead against a plain run", measured)]


_JUDGES: dict[str, Callable[[ScenarioResult], list[Target]]] = {
    "S1": _s1,
    "S2": _s2,
    "S2d": _s2d,
    "S3": _s3,
    "S4": _s4,
    "S5a": _s5,
    "S5b": _s5,
    "S7": _s7,
    "S7b": _s7b,
    "S8": _s8,
    "S9a": _s9,
    "S9b": _s9,
}


def judge(result: ScenarioResult) -> list[Target]:
    """This scenario's targets, from the medians of its verified runs."""
    if result.error is not None or not result.tools:
        return []
    return _JUDGES[result.key](result)
