"""The per-batch record on disk (``OUT/<batch>/manifest.json``): what arrived, verified how.

Written atomically (temp file + ``os.replace``) so a crash leaves the old or the new manifest,
never half of one. The next run consults it to skip finished parts without recomputing their
hash; a part's file on disk stays the ground truth (a part whose size disagrees is fetched again).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

from .errors import StorageError
from .models import Batch, PartResult

__all__ = ["MANIFEST_NAME", "Manifest", "ManifestEntry"]

MANIFEST_NAME = "manifest.json"
_FORMAT = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class ManifestEntry:
    """One part as last recorded."""

    name: str
    relpath: str
    size: int
    rows: int | None
    sha256: str | None
    attempts: int
    status: str
    error: str | None = None

    @classmethod
    def from_result(cls, result: PartResult) -> ManifestEntry:
        return cls(
            name=result.part.name,
            relpath=result.part.relpath,
            size=result.part.size,
            rows=result.rows,
            sha256=result.sha256,
            attempts=result.attempts,
            status=result.status.value,
            error=result.error,
        )


class Manifest:
    """The manifest of one batch directory; entries keyed by relpath."""

    def __init__(self, batch_dir: Path, batch: Batch, entries: dict[str, ManifestEntry]) -> None:
        self.path = batch_dir / MANIFEST_NAME
        self.batch = batch
        self.entries = entries
        self.extra: dict[str, Any] = {}

    @classmethod
    def load(cls, batch_dir: Path, batch: Batch) -> Manifest:
        """Read the previous run's record; a missing or unreadable one means "nothing known"."""
        entries: dict[str, ManifestEntry] = {}
        try:
            raw = json.loads((batch_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
            for item in raw.get("parts", []):
                entry = ManifestEntry(**item)
                entries[entry.relpath] = entry
        except (OSError, ValueError, TypeError, AttributeError):
            entries = {}
        return cls(batch_dir, batch, entries)

    def record(self, result: PartResult) -> None:
        self.entries[result.part.relpath] = ManifestEntry.from_result(result)

    def _document(self, entries: list[ManifestEntry], extra: dict[str, Any]) -> dict[str, Any]:
        metrics = self.batch.metrics
        return {
            "format": _FORMAT,
            "batch_id": self.batch.id,
            "dataset_id": self.batch.dataset_id,
            "catalog_metrics": {
                "outputByteSize": metrics.output_byte_size,
                "outputRecordCount": metrics.output_record_count,
                "outputFileCount": metrics.output_file_count,
            },
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **extra,
        }

    async def save(self) -> None:
        """Write atomically, off the event loop.

        Only the snapshot of the (immutable) entries is taken on the loop; sorting and encoding
        10,000 entries happen in the worker thread.
        """
        snapshot = list(self.entries.values())
        extra = dict(self.extra)
        await anyio.to_thread.run_sync(self._write, snapshot, extra)

    def _write(self, entries: list[ManifestEntry], extra: dict[str, Any]) -> None:
        # One line per part, encoded one at a time: a 10,000-part manifest never exists as
        # 10,000 dicts at once (peak memory is what a big batch is short of).
        head = json.dumps(self._document(entries, extra), indent=1)  # ends with "\n}"
        lines = [json.dumps(asdict(e)) for e in sorted(entries, key=lambda e: e.relpath)]
        separator = ",\n  "
        listed = f"\n  {separator.join(lines)}\n " if lines else ""
        document = f'{head[:-2]},\n "parts": [{listed}]\n}}\n'
        # A unique name opened with "x" (not mkstemp): the file gets the user's umask, not 0600.
        tmp = self.path.with_name(f".manifest.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            try:
                with tmp.open("x", encoding="utf-8") as fh:
                    fh.write(document)
                os.replace(tmp, self.path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
