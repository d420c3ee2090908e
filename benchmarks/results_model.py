"""The benchmark's record: one timed run, one tool's runs in a scenario, a target's verdict.

Plain values with medians over the runs that passed verification (a failed run never counts),
plus their JSON form for ``results/latest.json``.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from peers import Tool
from sequential import Listing

__all__ = ["Run", "ScenarioResult", "Target", "ToolResult"]

MB = 1e6


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    """One timed run of one tool, and whether its output was complete."""

    round: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_kib: int
    exit_code: int
    timed_out: bool
    problem: str | None  # None: exit 0 and the output matches the listing
    retries_429: int | None = None  # from asyncdl --json (S7)
    retries: int | None = None
    inner_s: float | None = None  # asyncdl's own elapsed time from its --json summary

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


@dataclass(kw_only=True)
class ToolResult:
    """A tool's runs in one scenario (or why it could not run)."""

    tool: Tool
    unavailable: str | None = None
    runs: list[Run] = field(default_factory=list)

    @property
    def good(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    def median(self, name: str) -> float | None:
        values = [float(getattr(r, name)) for r in self.good if getattr(r, name) is not None]
        return statistics.median(values) if values else None

    @property
    def wall_s(self) -> float | None:
        return self.median("wall_s")

    def to_json(self, listing: Listing | None) -> dict[str, Any]:
        medians: dict[str, float | None] = {
            name: self.median(name)
            for name in ("wall_s", "cpu_s", "user_s", "sys_s", "max_rss_kib", "retries_429")
        }
        wall = medians["wall_s"]
        if listing is not None and wall:
            medians["mb_per_s"] = listing.total_bytes / wall / MB
            medians["parts_per_s"] = len(listing.parts) / wall
        return {
            "label": self.tool.label,
            "kind": self.tool.kind,
            "concurrency": self.tool.concurrency,
            "options": list(self.tool.options),
            "emulator_args": None if self.tool.serve_args is None else list(self.tool.serve_args),
            "unavailable": self.unavailable,
            "runs_ok": len(self.good),
            "runs": [{**asdict(r), "cpu_s": r.cpu_s, "ok": r.ok} for r in self.runs],
            "median": medians,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """One target and how this run fared (``met`` None: not measurable, or ``info``: a figure
    shown without a threshold); ``issue`` is the issue that set it."""

    scenario: str
    goal: str
    measured: str
    met: bool | None
    issue: str = "18"
    info: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(kw_only=True)
class ScenarioResult:
    """Everything a scenario produced."""

    key: str
    title: str
    note: str
    serve_args: tuple[str, ...]
    listing: Listing | None = None
    tools: list[ToolResult] = field(default_factory=list)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    error: str | None = None  # the scenario could not run at all
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. the S1 network floor

    def tool(self, label: str) -> ToolResult | None:
        return next((t for t in self.tools if t.tool.label == label), None)

    def to_json(self) -> dict[str, Any]:
        listing = self.listing
        return {
            "key": self.key,
            "title": self.title,
            "note": self.note,
            "emulator_args": list(self.serve_args),
            "error": self.error,
            "listing": None
            if listing is None
            else {
                "batch_id": listing.batch_id,
                "parts": len(listing.parts),
                "bytes": listing.total_bytes,
                "requests": listing.requests,
                "elapsed_s": listing.elapsed_s,
            },
            "facts": self.facts,
            "tools": [t.to_json(listing) for t in self.tools],
            "not_applicable": [{"tool": t, "reason": r} for t, r in self.not_applicable],
            "targets": [t.to_json() for t in self.targets],
        }
