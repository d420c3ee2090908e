"""Turning results into what people read: the Markdown tables and the machine/version facts.

One table of medians per tool and scenario (with how many times faster asyncdl was than each
peer, and n/a rows with their reason), then one table of the targets (issue 18's, which replace
issue 4's, with issue 12's S7b and issue 15's S8; each row names its issue) with what was
measured and whether it was met ("info": a figure shown without a threshold). The same text
goes to stdout and into benchmarks/README.md.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from peers import tool_version
from results_model import MB, ScenarioResult, ToolResult

__all__ = ["machine_info", "render_tables", "versions"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / 1e9
    except (OSError, ValueError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "python": platform.python_version(),
    }


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def versions(asyncdl: Path, repo: Path) -> dict[str, str]:
    found = {
        "asyncdl": tool_version([str(asyncdl), "--version"]),
        "git_commit": _git(repo, "rev-parse", "--short", "HEAD"),
        "git_dirty": {"": "no", "unknown": "unknown"}.get(
            _git(repo, "status", "--porcelain", "--", "asyncdl"), "yes"
        ),
        "aria2c": tool_version(["aria2c", "--version"]),
        "curl": tool_version(["curl", "--version"]),
    }
    for package in ("aiohttp", "anyio", "aiofiles", "pyarrow", "typer", "uvloop"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _row(result: ScenarioResult, tool: ToolResult, reference: ToolResult, first: bool) -> str:
    label = f"**{result.key}**" if first else ""
    if tool.unavailable is not None:
        return f"| {label} | {tool.tool.label} | n/a: {tool.unavailable} | | | | | | | |"
    listing = result.listing
    wall = tool.wall_s
    mbps = listing.total_bytes / wall / MB if listing and wall else None
    parts = len(listing.parts) / wall if listing and wall else None
    rss = tool.median("max_rss_kib")
    ratio = "-"
    if tool is not reference and wall is not None and reference.wall_s:
        ratio = f"{wall / reference.wall_s:.2f}x"
    throttled = tool.median("retries_429")
    ok = f"{len(tool.good)}/{len(tool.runs)}"
    timed_out = sum(r.timed_out for r in tool.runs)
    if timed_out:
        ok += f" ({timed_out} timed out)"
    cells = [
        label,
        tool.tool.label,
        ok,
        _num(wall, ".2f"),
        _num(mbps, ",.1f"),
        _num(parts, ",.0f"),
        _num(None if rss is None else rss * 1024 / MB, ".0f"),
        _num(tool.median("cpu_s"), ".2f"),
        _num(throttled, ".0f"),
        ratio,
    ]
    return "| " + " | ".join(cells) + " |"


def render_tables(results: list[ScenarioResult], *, rounds: int) -> str:
    lines = [
        f"Medians of {rounds} alternating rounds; only runs whose output matched the listing "
        "count (ok/runs).",
        "",
        "| scenario | tool | ok | median s | MB/s | parts/s | peak RSS MB | CPU s | 429s "
        "| asyncdl faster by |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        if result.error is not None:
            error = result.error.replace("|", "/").replace("\n", " ")
            lines.append(f"| **{result.key}** | - | failed: {error} | | | | | | | |")
            if not any(t.runs for t in result.tools):
                continue
        first = result.error is None
        reference = result.tools[0] if result.tools else None
        for tool in result.tools:
            assert reference is not None
            lines.append(_row(result, tool, reference, first))
            first = False
        for label, reason in result.not_applicable:
            lines.append(f"| | {label} | n/a: {reason} | | | | | | | |")
    lines += ["", "Scenarios:", ""]
    for result in results:
        size = ""
        if result.listing is not None:
            listing = result.listing
            size = (
                f" — {len(listing.parts):,} parts, {listing.total_bytes / MB:,.1f} MB, "
                f"{listing.requests} listing requests ({listing.elapsed_s:.2f} s for the "
                "sequential lister; aria2c, curl and the aiohttp floor get the finished list,"
                " untimed)"
            )
        lines.append(f"- **{result.key}** {result.title}{size}; {result.note}.")
    lines += [
        "",
        "| scenario | issue | target | measured | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for target in result.targets:
            met = {True: "**yes**", False: "no", None: "not measured"}[target.met]
            if target.info:
                met = "info"
            lines.append(
                f"| {target.scenario} | {target.issue} | {target.goal} | {target.measured}"
                f" | {met} |"
            )
    return "\n".join(lines)
