"""The plan of a part fetched as several ranged segments, and its record's bytes.

A big part is split into fixed-size byte ranges fetched concurrently and written in place at
their offsets (no concatenation pass). What each segment has on disk is kept in a record (JSON)
that the storage writes after the bytes it counts, so after a crash the record never claims more
than is there and each segment resumes where it stood. With syncing on, those bytes are synced
before the record is written, which extends that to a power loss: the part is preallocated, so
without the record its unwritten ranges would read as zeros of the right size. Nothing here does
I/O: the storage (``PartFile.save_record``/``load_record``) keeps the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["Segment", "SegmentPlan"]

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
    """All segments of one part."""

    size: int
    segment_bytes: int
    segments: list[Segment]

    @classmethod
    def fresh(cls, *, size: int, segment_bytes: int, prefix: int = 0) -> SegmentPlan:
        """A new plan; ``prefix`` bytes already on disk (a single-stream ``.part``) are done."""
        segments = []
        for start in range(0, size, segment_bytes):
            end = min(size, start + segment_bytes)
            segments.append(Segment(start, end, max(0, min(prefix - start, end - start))))
        return cls(size=size, segment_bytes=segment_bytes, segments=segments)

    @classmethod
    def from_record(cls, raw: bytes | None, *, size: int) -> SegmentPlan | None:
        """The plan an earlier attempt recorded, if the record describes this very part."""
        if raw is None:
            return None
        try:
            document = json.loads(raw)
            if document.get("format") != _FORMAT or document.get("size") != size:
                return None
            layout = int(document["segment_bytes"])
            segments = [Segment(int(s), int(e), int(d)) for s, e, d in document["segments"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        plan = cls(size=size, segment_bytes=layout, segments=segments)
        return plan if plan._consistent() else None

    def _consistent(self) -> bool:
        position = 0
        for segment in self.segments:
            if segment.start != position or not 0 <= segment.done <= segment.end - segment.start:
                return False
            position = segment.end
        return position == self.size

    def record(self) -> bytes:
        """The record's bytes now (taken on the event loop: the counts do not move under it)."""
        document = {
            "format": _FORMAT,
            "size": self.size,
            "segment_bytes": self.segment_bytes,
            "segments": [[s.start, s.end, s.done] for s in self.segments],
        }
        return json.dumps(document).encode()

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
