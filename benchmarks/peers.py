"""The programs a scenario compares, as command lines: asyncdl, the sequential script, aria2c,
curl and the aiohttp floor (``floor.py``, issue 18).

Each ``Tool`` turns a ``RunContext`` (emulator URL, dataset, the finished listing, a fresh output
directory) into an argv. aria2c, curl and the aiohttp floor are handed the URL list the
sequential lister built (untimed) plus the four AEP headers; asyncdl and the sequential script
list by themselves inside their timed run. ``availability`` says why a tool cannot run here
(aria2c missing and not installable, an asyncdl flag not there yet), so the table can say so
instead of failing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sequential import Listing

__all__ = [
    "CREDENTIALS",
    "RunContext",
    "Tool",
    "asyncdl_flags",
    "ensure_aria2c",
    "tool_version",
]

BENCH_DIR = Path(__file__).resolve().parent
SEQUENTIAL_SCRIPT = BENCH_DIR / "sequential.py"
FLOOR_SCRIPT = BENCH_DIR / "floor.py"
#: What the emulator accepts (``asyncdl serve`` prints the same values).
CREDENTIALS = {
    "AEP_ACCESS_TOKEN": "emulator-token",
    "AEP_API_KEY": "emulator",
    "AEP_ORG_ID": "EMULATOR@AdobeOrg",
    "AEP_SANDBOX": "prod",
}
HEADERS = (
    f"Authorization: Bearer {CREDENTIALS['AEP_ACCESS_TOKEN']}",
    f"x-api-key: {CREDENTIALS['AEP_API_KEY']}",
    f"x-gw-ims-org-id: {CREDENTIALS['AEP_ORG_ID']}",
    f"x-sandbox-name: {CREDENTIALS['AEP_SANDBOX']}",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class RunContext:
    """Everything one timed run needs to know."""

    base_url: str
    dataset_id: str
    listing: Listing
    out_dir: Path  # fresh and empty
    work_dir: Path  # per scenario: URL lists live here
    out_url: str | None = None  # asyncdl's --out when the run writes to an object store (S8)


@dataclass(frozen=True, kw_only=True, slots=True)
class Tool:
    """One column of a scenario: a program plus its options.

    ``kind`` is asyncdl, sequential, aria2c, curl or floor (the bare aiohttp loop);
    ``concurrency`` is -j for asyncdl, aria2c and the floor.
    """

    label: str
    kind: str
    concurrency: int = 1
    options: tuple[str, ...] = ()
    needs_flags: tuple[str, ...] = field(default=())  # asyncdl download flags this variant uses
    #: The emulator's flags for this tool's runs instead of the scenario's (S7b's floor: the
    #: same emulator without the fault being measured); the listing must stay the same.
    serve_args: tuple[str, ...] | None = None
    #: Write this tool's output on the machine's disk instead of the bench's tmpfs (S2d).
    on_disk: bool = False

    def argv(self, ctx: RunContext, *, asyncdl: Path, python: Path) -> list[str]:
        if self.kind == "asyncdl":
            return [
                str(asyncdl),
                "download",
                ctx.dataset_id,
                "--out",
                ctx.out_url or str(ctx.out_dir),
                "-j",
                str(self.concurrency),
                "--base-url",
                ctx.base_url,
                *self.options,
            ]
        if self.kind == "sequential":
            return [
                str(python),
                str(SEQUENTIAL_SCRIPT),
                "download",
                ctx.dataset_id,
                "--base-url",
                ctx.base_url,
                "--out",
                str(ctx.out_dir),
            ]
        if self.kind == "aria2c":
            return [
                "aria2c",
                "-i",
                str(_aria2c_input(ctx)),
                "-d",
                str(ctx.out_dir),
                *(f"--header={h}" for h in HEADERS),
                "-j",
                str(self.concurrency),
                *(self.options or ("-x", "1", "-s", "1")),
                "--file-allocation=none",
                "--auto-file-renaming=false",
                "--allow-overwrite=true",
                "--console-log-level=error",
                "--summary-interval=0",
                "-q",
            ]
        if self.kind == "curl":
            return ["curl", "--config", str(_curl_config(ctx)), "--output-dir", str(ctx.out_dir)]
        if self.kind == "floor":
            return [
                str(python),
                str(FLOOR_SCRIPT),
                "--urls",
                str(_floor_input(ctx)),
                "--out",
                str(ctx.out_dir),
                "-j",
                str(self.concurrency),
            ]
        raise ValueError(f"unknown tool kind {self.kind!r}")

    def availability(self, flags: frozenset[str], aria2c: str | None) -> str | None:
        """None when this tool can run here, else why not (shown in the table)."""
        if self.kind == "aria2c" and aria2c is not None:
            return aria2c
        if self.kind == "curl" and shutil.which("curl") is None:
            return "curl not installed"
        missing = [f for f in self.needs_flags if f not in flags]
        if missing:
            return f"asyncdl download has no {', '.join(missing)} yet"
        return None


def _aria2c_input(ctx: RunContext) -> Path:
    """aria2c's input file: each URL with the name to save it under."""
    path = ctx.work_dir / "aria2c-urls.txt"
    if not path.exists():
        lines = [f"{p.url}\n  out={p.name}\n" for p in ctx.listing.parts]
        path.write_text("".join(lines), encoding="utf-8")
    return path


def _curl_config(ctx: RunContext) -> Path:
    """One curl invocation for every part: it reuses its connection from one URL to the next."""
    path = ctx.work_dir / "curl.config"
    if not path.exists():
        lines = ["silent", "show-error", "fail"]
        lines += [f'header = "{h}"' for h in HEADERS]
        for part in ctx.listing.parts:
            lines += [f'url = "{part.url}"', f'output = "{part.name}"']
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _floor_input(ctx: RunContext) -> Path:
    """The aiohttp floor's input: the four AEP headers and each URL with its name."""
    path = ctx.work_dir / "floor-urls.json"
    if not path.exists():
        headers = dict(h.split(": ", 1) for h in HEADERS)
        parts = [[p.url, p.name] for p in ctx.listing.parts]
        path.write_text(json.dumps({"headers": headers, "parts": parts}), encoding="utf-8")
    return path


_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def asyncdl_flags(asyncdl: Path, env: Mapping[str, str]) -> frozenset[str]:
    """Every long option ``asyncdl download --help`` mentions (``--adaptive/--no-adaptive`` too)."""
    result = subprocess.run(
        [str(asyncdl), "download", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "COLUMNS": "200"},
    )
    return frozenset(_FLAG.findall(result.stdout))


def ensure_aria2c(*, install: bool, log: Path) -> str | None:
    """None when aria2c is there (installed now if needed and allowed), else the reason."""
    if shutil.which("aria2c") is not None:
        return None
    if not install:
        return "aria2c unavailable (not installed; --no-install)"
    if shutil.which("apt-get") is None:
        return "aria2c unavailable (no apt-get to install it)"
    print("installing aria2 with apt-get ...", file=sys.stderr)
    install_cmd = ["apt-get", "install", "-y", "--no-install-recommends", "aria2"]
    with log.open("w", encoding="utf-8") as out:
        if not _apt(install_cmd, out) and _apt(["apt-get", "update"], out):
            _apt(install_cmd, out)
    if shutil.which("aria2c") is None:
        return f"aria2c unavailable (apt-get install aria2 failed; see {log})"
    return None


def _apt(cmd: list[str], out: TextIO) -> bool:
    try:
        done = subprocess.run(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        out.write(f"{cmd}: {exc}\n")
        return False
    return done.returncode == 0


def tool_version(argv: Sequence[str]) -> str:
    """The first line a program prints for ``--version``, or why there is none."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"
