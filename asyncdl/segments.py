"""The plan and the on-disk record of a part fetched as several ranged segments.

A big part is split into fixed-size byte ranges fetched concurrently and written in place at
their offsets (no concatenation pass). Progress per segment lives in ``<name>.part.segments``
(JSON, replaced atomically), written after the bytes it counts, so after a crash the record
never claims more than is on disk and each segment resumes where it stood. With ``sync`` those
bytes are synced before the record is written, which extends that to a power loss: the part is
preallocated, so without the record its unwritten ranges would read as zeros of the right size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .durable import sync_directory, sync_file

__all__ = ["Segment", "SegmentPlan", "record_temp"]

_FORMAT = 1


@dataclass(slots=True)
class Segment:
    """Bytes ``[start, end)`` of the part, of which the first ``done`` are on disk."""

    start: int
    end: int
    done: int = 0

    @property
    def next_offset(self) -> int:
        return self.start + self.done

    @property
    def complete(self) -> bool:
        return self.start + self.done >= self.end


@dataclass(slots=True)
class SegmentPlan:
    """All segments of one part plus where their record is kept."""

    size: int
    segment_bytes: int
    segments: list[Segment]
    record: Path

    @classmethod
    def fresh(cls, *, size: int, segment_bytes: int, record: Path, prefix: int = 0) -> SegmentPlan:
        """A new plan; ``prefix`` bytes already on disk (a single-stream ``.part``) are done."""
        segments = []
        for start in range(0, size, segment_bytes):
            end = min(size, start + segment_bytes)
            segments.append(Segment(start, end, max(0, min(prefix - start, end - start))))
        return cls(size=size, segment_bytes=segment_bytes, segments=segments, record=record)

    @classmethod
    def load(cls, *, size: int, segment_bytes: int, record: Path) -> SegmentPlan | None:
        """The record of an earlier run, if it describes this very part and layout."""
        try:
            raw = json.loads(record.read_text(encoding="utf-8"))
            if raw.get("format") != _FORMAT or raw.get("size") != size:
                return None
            layout = int(raw["segment_bytes"])
            segments = [Segment(int(s), int(e), int(d)) for s, e, d in raw["segments"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        plan = cls(size=size, segment_bytes=layout, segments=segments, record=record)
        return plan if plan._consistent() else None

    def _consistent(self) -> bool:
        position = 0
        for segment in self.segments:
            if segment.start != position or not 0 <= segment.done <= segment.end - segment.start:
                return False
            position = segment.end
        return position == self.size

    @property
    def done(self) -> int:
        return sum(s.done for s in self.segments)

    @property
    def complete(self) -> bool:
        return all(s.complete for s in self.segments)

    @property
    def contiguous(self) -> int:
        """How many bytes from the start of the part are on disk with no gap before them."""
        position = 0
        for segment in self.segments:
            position = segment.next_offset
            if not segment.complete:
                break
        return position

    def save(self, *, sync: Path | None = None) -> None:
        """Replace the record atomically (called from a worker thread).

        ``sync`` is the file whose bytes the record counts: it is synced after the counts are
        read and before the record is written, and the record itself before it is used.
        """
        document = {
            "format": _FORMAT,
            "size": self.size,
            "segment_bytes": self.segment_bytes,
            "segments": [[s.start, s.end, s.done] for s in self.segments],
        }
        if sync is not None and self.done:  # nothing done: the .part may not exist yet
            sync_file(sync)
        tmp = record_temp(self.record)
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(document))
            if sync is not None:
                fh.flush()
                sync_file(tmp, fh.fileno())
        os.replace(tmp, self.record)
        if sync is not None:
            sync_directory(self.record.parent)


def record_temp(record: Path) -> Path:
    """Where a record is written before it replaces ``record``."""
    return record.with_name(record.name + ".tmp")
