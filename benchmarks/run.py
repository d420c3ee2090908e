"""``make bench``: the scenarios against asyncdl and its peers, side by side, reproducibly.

The tools of a scenario run alternately (A B C A B C ...) for ``--rounds`` rounds. Each run gets
a fresh emulator in its own process (``asyncdl serve --port 0`` on 127.0.0.1, parts cached in
``benchmarks/.cache`` across runs), whose listing the sequential lister reads first, untimed (the
truth the output is checked against, and the URL list aria2c and curl get); the tool then runs
as a child process into a fresh directory of a temp dir, measured by rusage, bounded by a
timeout. The table of medians and targets (issue 18's, with issue 12's S7b and issue 15's S8)
goes to stdout, the raw runs to ``benchmarks/results/latest.json``. A scenario that fails (its
emulator, its listing, its judge) ends with an error row; the next scenario still runs.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emulator_process import EmulatorError, EmulatorProcess
from judges import judge
from measure import measure
from object_store import MotoProcess
from outputs import read_json_events, verify_output
from peers import CREDENTIALS, RunContext, Tool, asyncdl_flags, ensure_aria2c
from report import machine_info, render_tables, versions
from results_model import Run, ScenarioResult, ToolResult
from scenarios import ALL_SCENARIOS, Scenario
from sequential import Listing, Session, auth_headers, list_parts

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
EMULATOR_START_TIMEOUT_S = 900.0  # the first run generates the parts (a few GB) into the cache
LISTING_RETRIES = 4  # the emulator injects at most 2 faults per URL (--max-faults)
OUT_BASE_MIN_FREE = 4 * 10**9  # the biggest run writes 1 GB; one run's output exists at a time


def _env() -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE dropped: an asyncdl given with --asyncdl (another checkout) then
    # writes its .pyc files on its first start (the start-up measurement), as this one's are
    # written by _byte_compile.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AEP_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(CREDENTIALS)
    return env


def _default_out_base() -> Path:
    """tmpfs when there is room: file-system churn (thousands of files created and deleted per
    run) made runs on the ext4 disk of the reference machine twice as slow and drift upwards
    from run to run, which would drown the differences between the tools."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and shutil.disk_usage(shm).free >= OUT_BASE_MIN_FREE:
            return shm
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def _fs_type(path: Path) -> str:
    """The file-system type ``path`` is on (the longest mount point above it), or "unknown"."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def _byte_compile(package: Path) -> None:
    """Write the package's ``.pyc`` files, as pip does when it installs asyncdl from a wheel.

    The project is installed editable, and where ``PYTHONDONTWRITEBYTECODE`` is set (it is on
    this machine) an edited module is compiled from source again on every start: ~20 ms of
    each asyncdl run that no installed copy pays. ``compileall`` writes them regardless.
    """
    if not compileall.compile_dir(package, quiet=1):
        raise SystemExit(f"cannot byte-compile {package}")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Bench:
    """One ``make bench``: settings shared by every scenario."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.rounds: int = args.rounds
        self.full: bool = args.full
        self.work = work
        self.cache_dir: Path = args.cache_dir
        self.out_base: Path = args.out_base or _default_out_base()
        self.disk_base: Path = args.disk_base
        self.python = Path(sys.executable)
        self.asyncdl = self.python.parent / "asyncdl"  # serves the emulator, always
        self.client: Path = args.asyncdl or self.asyncdl  # the asyncdl being measured
        _byte_compile(REPO / "asyncdl")  # the emulator's, and the measured one by default
        self.env = _env()
        self.flags = asyncdl_flags(self.client, self.env)
        self.aria2c = ensure_aria2c(install=args.install, log=work / "apt.log")
        self.startup: dict[str, float] = {}

    def measure_startup(self) -> None:
        """asyncdl's fixed cost (interpreter + imports), to read small-scenario numbers by."""
        runs = []
        for i in range(3):
            runs.append(
                measure(
                    [str(self.client), "--version"],
                    env=self.env,
                    timeout_s=60,
                    stdout=self.work / f"startup-{i}.out",
                    stderr=self.work / f"startup-{i}.err",
                )
            )
        self.startup = {
            "wall_s": statistics.median(r.wall_s for r in runs),
            "cpu_s": statistics.median(r.cpu_s for r in runs),
            "max_rss_kib": statistics.median(r.max_rss_kib for r in runs),
        }

    def run_scenario(self, scenario: Scenario) -> ScenarioResult:
        result = ScenarioResult(
            key=scenario.key,
            title=scenario.title,
            note=scenario.note,
            serve_args=scenario.serve_args,
            not_applicable=list(scenario.not_applicable),
        )
        result.facts["asyncdl_startup_s"] = self.startup.get("wall_s")
        result.facts["asyncdl_startup_cpu_s"] = self.startup.get("cpu_s")
        if any(t.on_disk for t in scenario.tools):
            result.facts["disk_base"] = str(self.disk_base)
            result.facts["disk_fs"] = _fs_type(self.disk_base)
        tools: list[ToolResult] = []
        for tool in scenario.tools:
            if tool.label in scenario.full_only and not self.full:
                result.not_applicable.append(
                    (tool.label, "sequential like `sequential` (same time); run with --full")
                )
                continue
            unavailable = tool.availability(self.flags, self.aria2c)
            tools.append(ToolResult(tool=tool, unavailable=unavailable))
        result.tools = tools
        here = self.work / scenario.key
        here.mkdir()
        _log(f"{scenario.key}: emulator {' '.join(scenario.serve_args)}")
        for tool_result in tools:
            if tool_result.tool.serve_args is not None:
                args = " ".join(tool_result.tool.serve_args)
                _log(f"{scenario.key}: {tool_result.tool.label}: emulator {args}")
        runnable = [t for t in tools if t.unavailable is None]
        try:
            if scenario.warmup and runnable and runnable[0].tool.kind == "asyncdl":
                self._one(scenario, runnable[0].tool, result, here, round_no=0)
            for round_no in range(1, self.rounds + 1):
                for tool_result in runnable:
                    run = self._one(scenario, tool_result.tool, result, here, round_no)
                    tool_result.runs.append(run)
        except (Exception, SystemExit) as exc:
            # EmulatorError, OSError, or the sequential lister's SystemExit on an answer it
            # does not expect (a 429 to the untimed listing): this scenario ends here.
            result.error = f"{type(exc).__name__}: {exc}"[:300]
            _log(f"{scenario.key}: {result.error}")
        try:
            result.targets = judge(result)
        except Exception as exc:
            result.error = f"judge: {type(exc).__name__}: {exc}"[:300]
            _log(f"{scenario.key}: {result.error}")
        return result

    def _listing(self, emu: EmulatorProcess, result: ScenarioResult) -> Listing:
        """The parts as the sequential lister sees them (untimed); the same in every run."""
        # Retries: S7b's emulator injects 5xx and 429s into the listing too (at most 2 per URL).
        session = Session(emu.base_url, auth_headers(self.env), retries=LISTING_RETRIES)
        try:
            listing = list_parts(session, emu.dataset_id)
        finally:
            session.close()
        first = result.listing
        if first is None:
            result.listing = listing
            result.facts["emulator_startup_s"] = emu.startup_s
        elif sorted((p.name, p.size) for p in first.parts) != sorted(
            (p.name, p.size) for p in listing.parts
        ):
            raise EmulatorError("the emulator listed other parts after a restart")
        return listing

    def _one(
        self,
        scenario: Scenario,
        tool: Tool,
        result: ScenarioResult,
        here: Path,
        round_no: int,
    ) -> Run:
        """One timed run against a fresh emulator.

        The emulator keeps a record of every request it served and slows down as it grows (the
        sequential client on S4: 0.94 s on a fresh emulator, 1.08 s after 14,000 requests), so
        each run gets its own emulator process rather than the leftovers of earlier runs.
        """
        slug = f"r{round_no}-" + re.sub(r"[^a-z0-9]+", "-", tool.label.lower()).strip("-")
        run_dir = here / slug
        run_dir.mkdir()
        serve_args = scenario.serve_args if tool.serve_args is None else tool.serve_args
        with EmulatorProcess(
            self.asyncdl,
            serve_args,
            cache_dir=self.cache_dir,
            log=run_dir / "emulator.log",
            env=self.env,
            start_timeout_s=EMULATOR_START_TIMEOUT_S,
        ) as emu:
            listing = self._listing(emu, result)
            base = self.disk_base if tool.on_disk else self.out_base
            out = Path(tempfile.mkdtemp(prefix="asyncdl-bench-out-", dir=base))
            with contextlib.ExitStack() as stack:
                env, store = self.env, None
                if scenario.store == "s3":
                    store = stack.enter_context(MotoProcess(log=run_dir / "moto.log"))
                    env = {**self.env, **store.env}
                ctx = RunContext(
                    base_url=emu.base_url,
                    dataset_id=emu.dataset_id,
                    listing=listing,
                    out_dir=out,
                    work_dir=run_dir,
                    out_url=store.url if store is not None else None,
                )
                argv = tool.argv(ctx, asyncdl=self.client, python=self.python)
                stdout, stderr = run_dir / "stdout", run_dir / "stderr"
                measured = measure(
                    argv, env=env, timeout_s=scenario.timeout_s, stdout=stdout, stderr=stderr
                )
                problem = None
                if measured.timed_out:
                    problem = f"killed after {scenario.timeout_s:.0f} s"
                elif measured.exit_code != 0:
                    tail = stderr.read_text(encoding="utf-8", errors="replace").strip().splitlines()
                    problem = f"exit {measured.exit_code}: {tail[-1] if tail else ''}"[:200]
                elif store is not None:
                    problem = store.verify(listing)
                else:
                    problem = verify_output(out, listing)
        retries_429 = retries = None
        inner = None
        if "--json" in tool.options:
            report = read_json_events(stdout)
            retries_429, retries = report.retries_429, report.retries
            if report.summary is not None:
                inner = float(report.summary.get("seconds", 0.0)) or None
        shutil.rmtree(out, ignore_errors=True)
        os.sync()  # the next run should not pay for this one's writeback
        state = "ok" if problem is None else f"FAILED ({problem})"
        label = "warm-up" if round_no == 0 else f"round {round_no}"
        _log(
            f"{scenario.key} {label}: {tool.label}: {measured.wall_s:.2f} s, "
            f"{measured.cpu_s:.2f} CPU-s, {measured.max_rss_kib / 1024:.0f} MiB RSS, {state}"
        )
        return Run(
            round=round_no,
            wall_s=measured.wall_s,
            user_s=measured.user_s,
            sys_s=measured.sys_s,
            max_rss_kib=measured.max_rss_kib,
            exit_code=measured.exit_code,
            timed_out=measured.timed_out,
            problem=problem,
            retries_429=retries_429,
            retries=retries,
            inner_s=inner,
        )


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument(
        "--only", default="", help="comma-separated scenario keys, e.g. S1,S4 (default: all)"
    )
    parser.add_argument("--full", action="store_true", help="also run the slow, redundant peers")
    parser.add_argument(
        "--no-install", dest="install", action="store_false", help="never apt-get install aria2"
    )
    parser.add_argument(
        "--asyncdl",
        type=Path,
        help="the asyncdl executable to measure (default: the one beside this Python)",
    )
    parser.add_argument("--cache-dir", type=Path, default=BENCH_DIR / ".cache")
    parser.add_argument(
        "--out-base",
        type=Path,
        help="where each run's output directory is made (default: /dev/shm if it has 4 GB free)",
    )
    parser.add_argument(
        "--disk-base",
        type=Path,
        default=Path("/var/tmp"),
        help="where S2d's on-disk runs write (default: /var/tmp, on this machine's disk)",
    )
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "results" / "latest.json")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("issue 4 asks for at least 3 rounds")
    wanted = {k.strip().lower() for k in args.only.split(",") if k.strip()}
    scenarios = [
        s
        for s in ALL_SCENARIOS
        if not wanted or s.key.lower() in wanted or s.key.lower().rstrip("ab") in wanted
    ]
    started = time.perf_counter()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="asyncdl-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        measured_versions = versions(bench.client, REPO)  # before the runs: what is measured
        bench.measure_startup()
        _log(
            f"asyncdl start-up (imports): {bench.startup['wall_s']:.2f} s, "
            f"{bench.startup['cpu_s']:.2f} CPU-s, {bench.startup['max_rss_kib'] / 1024:.0f} MiB"
        )
        results = [bench.run_scenario(s) for s in scenarios]
        table = render_tables(results, rounds=args.rounds)
        document = {
            "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, "benchmarks/run.py", *sys.argv[1:]]),
            "rounds": args.rounds,
            "duration_s": time.perf_counter() - started,
            "machine": machine_info(),
            "versions": measured_versions,
            "asyncdl_measured": str(bench.client),
            "output_base": str(bench.out_base),
            "asyncdl_download_flags": sorted(bench.flags),
            "asyncdl_startup": bench.startup,
            "scenarios": [r.to_json() for r in results],
            "targets": [t.to_json() for r in results for t in r.targets],
            "table_markdown": table,
        }
    _write_json(args.json, document)
    print(table)
    met = [t.met for r in results for t in r.targets if not t.info]
    failed = [r.key for r in results if r.error is not None]
    if failed:
        print(f"\nscenarios that failed: {', '.join(failed)}")
    print(
        f"\n{met.count(True)} of {len(met)} targets met (info rows aside); "
        f"{time.perf_counter() - started:.0f} s; "
        f"raw runs in {args.json}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
