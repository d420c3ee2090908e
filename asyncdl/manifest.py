"""The per-batch record (``OUT/<batch>/manifest.json``): what arrived, verified how.

Written atomically through the storage seam (``Storage.replace``) so a crash leaves the old or the
new manifest, never half of one. The next run consults it to skip finished parts without
recomputing their hash; a part's file stays the ground truth (a part whose size disagrees is
fetched again).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import anyio

from .checksum import Checksum
from .layout import MANIFEST_NAME
from .models import Batch, PartResult

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["Manifest", "ManifestEntry"]

_FORMAT = 2  # 2: digests tagged with their algorithm (format 1 entries are read as sha256)


@dataclass(frozen=True, kw_only=True, slots=True)
class ManifestEntry:
    """One part as last recorded."""

    name: str
    relpath: str
    size: int
    rows: int | None
    digest: str | None  # "<algorithm>:<hex>" (checksum.py)
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
            digest=result.digest,
            attempts=result.attempts,
            status=result.status.value,
            error=result.error,
        )


_ENTRY_FIELDS = tuple(f.name for f in fields(ManifestEntry))


def _encode_line(entry: ManifestEntry) -> str:
    # Not dataclasses.asdict: its deep copy of every value was most of a save's cost.
    return json.dumps({name: getattr(entry, name) for name in _ENTRY_FIELDS})


def _upgraded(item: dict[str, Any]) -> dict[str, Any]:
    """An entry as written before digests were tagged (``"sha256": hex``), in today's form."""
    if "sha256" in item:
        item = dict(item)
        hexdigest = item.pop("sha256")
        item["digest"] = Checksum.SHA256.tag(hexdigest) if hexdigest else None
    return item


class Manifest:
    """The manifest of one batch; entries keyed by relpath."""

    def __init__(
        self,
        storage: Storage,
        batch: Batch,
        entries: dict[str, ManifestEntry],
        *,
        name: str = MANIFEST_NAME,
    ) -> None:
        self.storage = storage
        self.batch = batch
        self.entries = entries
        self.name = name  # a shard writes its fragment under its own name (layout.py)
        self.extra: dict[str, Any] = {}
        # Each entry's JSON line, kept while the entry is the same object: a manifest is saved
        # every second of a run, and only the parts finished since need encoding again.
        self._lines: dict[str, tuple[ManifestEntry, str]] = {}

    @property
    def where(self) -> str:
        return self.storage.where(self.name)

    @classmethod
    def load(cls, storage: Storage, batch: Batch, *, name: str = MANIFEST_NAME) -> Manifest:
        """Read the previous run's record; a missing or unreadable one means "nothing known"
        (blocking: call it off the event loop)."""
        entries: dict[str, ManifestEntry] = {}
        try:
            raw = json.loads(storage.read(name) or b"{}")
            for item in raw.get("parts", []):
                entry = ManifestEntry(**_upgraded(item))
                entries[entry.relpath] = entry
        except (ValueError, TypeError, AttributeError):
            entries = {}
        return cls(storage, batch, entries, name=name)

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

    def encode(self, entries: list[ManifestEntry], extra: dict[str, Any]) -> bytes:
        # One line per part, encoded one at a time: a 10,000-part manifest never exists as
        # 10,000 dicts at once (peak memory is what a big batch is short of).
        head = json.dumps(self._document(entries, extra), indent=1)  # ends with "\n}"
        lines = [self._line(e) for e in sorted(entries, key=lambda e: e.relpath)]
        separator = ",\n  "
        listed = f"\n  {separator.join(lines)}\n " if lines else ""
        return f'{head[:-2]},\n "parts": [{listed}]\n}}\n'.encode()

    def _line(self, entry: ManifestEntry) -> str:
        known = self._lines.get(entry.relpath)
        if known is not None and known[0] is entry:
            return known[1]
        line = _encode_line(entry)
        self._lines[entry.relpath] = (entry, line)
        return line

    def _write(self, entries: list[ManifestEntry], extra: dict[str, Any]) -> None:
        self.storage.replace(self.name, self.encode(entries, extra))
