"""The scenarios as data: issue 4's S1-S7 (issue 12's S7b, issue 15's S8, issue 18's S2d and
S9): the emulator's flags, the tools compared, and the constants the targets use.

Sizes are scaled so the whole of ``make bench`` stays within a few minutes on two cores; every
scaling is written in the scenario's ``note`` (and so in the table and the README). The verdicts
(issue 18's targets, which replace issue 4's, plus S7b's and S8's) are in ``judges.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from peers import Tool

__all__ = ["ALL_SCENARIOS", "Scenario"]

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
S2_J = 8
S4_J = 16
#: Issue 18: asyncdl's CPU-s on S2 at most this x the bare aiohttp loop's (floor.py).
CPU_MAX_OVER_FLOOR = 1.1
S2_MIN_OVER_ARIA2C = 1.25  # asyncdl's MB/s over aria2c's
S2_MIN_OVER_CURL = 1.0
S4_MIN_OVER_ARIA2C = 1.0
#: Issue 18: S1 at -j 32 within this x start-up + (3 + ceil(parts / 32)) round trips.
S1_MAX_OVER_FLOOR = 1.1
S1_MIN_OVER_SEQUENTIAL = 25.0  # at -j 64 (S1_J_WIDE)
#: Requests before the first part can start: the Catalog query, the batch's files (one page
#: with --files 1) and the first directory page; the other pages overlap with the parts.
S1_REQUESTS_BEFORE_PARTS = 3
S7_RATE = 50
S7_J = 32
S7_MIN_SPEEDUP = 1.5  # adaptive over the fixed pool
S7_MAX_OVER_FLOOR = 1.15  # adaptive over the rate floor
#: The emulator's token bucket starts full: max(1, rate) tokens pass at once before the steady
#: rate applies (asyncdl/emulator/faults.py, FaultInjector.__init__ and rate_limit_wait).
S7_BURST = S7_RATE
#: One run at most this long: a fixed pool deep in the bucket's debt (10 s of refill at most,
#: Retry-After up to 11 s) is killed and recorded as a timed-out run, not waited for.
S7_TIMEOUT_S = 60.0
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


def _floor(j: int) -> Tool:
    """The bare aiohttp loop (floor.py): the floor of the mandated stack."""
    return Tool(label=f"aiohttp floor -j {j}", kind="floor", concurrency=j)


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
        _asyncdl(f"asyncdl -j {S2_J}", S2_J, *QUIET),
        SEQUENTIAL,
        Tool(label=f"aria2c -j {S2_J}", kind="aria2c", concurrency=S2_J),
        CURL,
        _floor(S2_J),
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
        _asyncdl(f"asyncdl -j {S4_J}", S4_J, *QUIET),
        SEQUENTIAL,
        Tool(label=f"aria2c -j {S4_J}", kind="aria2c", concurrency=S4_J),
        CURL,
        _floor(S4_J),
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
    title=f"a realistic gateway: 400 small parts, {S7_RATE} requests/s, 429 + Retry-After above,"
    " and a refused request still costs a token (--rate-limit-debt)",
    note="issue 18 (issue 4's S7 with the gateway's debt); 429s counted from asyncdl's --json"
    f" retry events (parts and listing); a run is killed after {S7_TIMEOUT_S:.0f} s",
    serve_args=(
        *COMMON,
        "--parts",
        "400",
        "--rows",
        "50",
        "--rate-limit",
        str(S7_RATE),
        "--rate-limit-debt",
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
    timeout_s=S7_TIMEOUT_S,
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

#: S9: the same asyncdl -j with and without a local Dask cluster of 2 worker processes.
S9_CLUSTER = ("--cluster", "local:2")


def _cluster_pair(j: int) -> tuple[Tool, Tool]:
    plain = _asyncdl(f"asyncdl -j {j}", j, *QUIET)
    cluster = _asyncdl(
        f"asyncdl -j {j} --cluster local:2", j, *QUIET, *S9_CLUSTER, needs=("--cluster",)
    )
    return plain, cluster


S9A = Scenario(
    key="S9a",
    title="cluster overhead, latency-bound: S1's emulator (400 small parts, 40 ms per request)",
    note=f"issue 18; the same -j {S1_J} with and without --cluster local:2 (two Dask worker"
    " processes started by the run); information, no threshold",
    serve_args=S1.serve_args,
    tools=_cluster_pair(S1_J),
    not_applicable=(("peers", "no cluster mode"),),
    timeout_s=120.0,
)

S9B = Scenario(
    key="S9b",
    title="cluster overhead, throughput: S2's emulator (64 parts of 16 MB, no latency)",
    note=f"issue 18; the same -j {S2_J} with and without --cluster local:2; information, no"
    " threshold",
    serve_args=S2.serve_args,
    tools=_cluster_pair(S2_J),
    not_applicable=(("peers", "no cluster mode"),),
    warmup=True,
    timeout_s=120.0,
)

S2D = Scenario(
    key="S2d",
    title="S2 on this machine's disk: 64 parts of 16 MB (1 GB), fsync on and off, beside tmpfs",
    note="issue 18; output under --disk-base (default /var/tmp; the verdict row names its"
    " file-system type); information only",
    serve_args=S2.serve_args,
    tools=(
        Tool(
            label=f"asyncdl -j {S2_J} on disk (fsync)",
            kind="asyncdl",
            concurrency=S2_J,
            options=QUIET,
            needs_flags=("--quiet",),
            on_disk=True,
        ),
        Tool(
            label=f"asyncdl -j {S2_J} on disk --no-fsync",
            kind="asyncdl",
            concurrency=S2_J,
            options=(*QUIET, "--no-fsync"),
            needs_flags=("--quiet", "--no-fsync"),
            on_disk=True,
        ),
        _asyncdl(f"asyncdl -j {S2_J} on tmpfs (fsync)", S2_J, *QUIET),
    ),
    not_applicable=(("peers", "S2 has them, on tmpfs"),),
    warmup=True,
)

ALL_SCENARIOS = (S1, S2, S2D, S3, S4, S5A, S5B, S7, S7B, S8, S9A, S9B)
