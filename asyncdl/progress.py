"""The seam through which a run reports progress: a Protocol and a listener that ignores it all.

The pipeline calls these synchronously from the event loop, so implementations must be quick
and must not block. ``on_bytes`` may receive a negative count when a retry rewinds a part
(s3transfer's convention), so a bar that follows it never lies at the end.
"""

from __future__ import annotations

from typing import Protocol

from .errors import AsyncdlError
from .models import Batch, Part, PartResult

__all__ = ["NullProgress", "ProgressListener"]


class ProgressListener(Protocol):
    """What a run tells its observers, in order: batches, queued parts, bytes, retries, results."""

    def on_batch(self, batch: Batch) -> None:
        """A batch was selected and its listing is starting."""

    def on_queued(self, part: Part) -> None:
        """A part was listed and handed to the workers."""

    def on_bytes(self, part: Part, n: int) -> None:
        """``n`` more bytes of ``part`` arrived (negative: a retry discarded them)."""

    def on_retry(self, part: Part, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        """Attempt ``attempt`` of ``part`` failed with ``error``; retrying after ``delay_s``."""

    def on_done(self, result: PartResult) -> None:
        """``part`` ended: downloaded, skipped or failed."""

    def on_request_retry(self, url: str, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        """A listing page or other API call failed and is retried after ``delay_s``."""


class NullProgress:
    """A listener that ignores everything (the library default)."""

    def on_batch(self, batch: Batch) -> None:
        pass

    def on_queued(self, part: Part) -> None:
        pass

    def on_bytes(self, part: Part, n: int) -> None:
        pass

    def on_retry(self, part: Part, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        pass

    def on_done(self, result: PartResult) -> None:
        pass

    def on_request_retry(self, url: str, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        pass
