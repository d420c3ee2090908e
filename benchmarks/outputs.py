"""What a finished run left behind: its output directory checked against the listing, and the
events asyncdl printed with ``--json``.

A run counts only if its directory holds exactly the listed parts: the same names with the same
sizes (asyncdl nests them under the batch id; the peers write them flat), each starting and
ending with parquet's ``PAR1`` magic. So a fast run that dropped, truncated or garbled a part
can never be reported as a speed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sequential import Listing

__all__ = ["JsonReport", "read_json_events", "verify_output"]

_MAGIC = b"PAR1"


def verify_output(out_dir: Path, listing: Listing) -> str | None:
    """None when ``out_dir`` holds exactly the listed parts; else what is wrong, in a line."""
    found: Counter[tuple[str, int]] = Counter()
    for path in out_dir.rglob("*.parquet"):
        if path.is_file():
            found[(path.name, path.stat().st_size)] += 1
    expected = Counter((p.name, p.size) for p in listing.parts)
    if found != expected:
        missing = expected - found
        extra = found - expected
        return (
            f"{sum(found.values())} parquet files ({sum(n * c for (_, n), c in found.items())} B)"
            f" vs {len(listing.parts)} listed ({listing.total_bytes} B);"
            f" {sum(missing.values())} missing or wrong size, {sum(extra.values())} unexpected"
        )
    for path in out_dir.rglob("*.parquet"):
        with path.open("rb") as fh:
            head = fh.read(4)
            fh.seek(-4, 2)
            tail = fh.read(4)
        if head != _MAGIC or tail != _MAGIC:
            return f"{path.name} is not a whole parquet file (no PAR1 at both ends)"
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class JsonReport:
    """What asyncdl's ``--json`` stream says about one run."""

    retries: int
    retries_429: int  # retry events whose HTTP status was 429
    summary: dict[str, Any] | None


def read_json_events(stdout: Path) -> JsonReport:
    """Count retry events (and the 429s among them) and keep the final summary object."""
    retries = retries_429 = 0
    summary: dict[str, Any] | None = None
    for line in stdout.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("event") == "retry":
            retries += 1
            if event.get("status") == 429:
                retries_429 += 1
        elif event.get("event") == "summary":
            summary = event
    return JsonReport(retries=retries, retries_429=retries_429, summary=summary)
