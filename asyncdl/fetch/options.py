"""How parts are fetched in one run: built once from the run's ``DownloadSettings``."""

from __future__ import annotations

from dataclasses import dataclass

from ..checksum import Checksum
from ..config import DownloadSettings
from ..retry import RetryPolicy

__all__ = ["FetchOptions"]


@dataclass(frozen=True, kw_only=True)
class FetchOptions:
    """How one part is fetched; shared by every worker of a run.

    Parts of at least ``segment_threshold_bytes`` are fetched as ranged segments of
    ``segment_bytes`` each (None: never), so no single response runs anywhere near AEP's 60 s.
    The defaults are ``DownloadSettings``'s (``from_settings``); tests build their own.
    """

    policy: RetryPolicy
    write_buffer_bytes: int = DownloadSettings.write_buffer_bytes
    verify_parquet: bool = DownloadSettings.verify_parquet
    segment_threshold_bytes: int | None = DownloadSettings.segment_threshold_bytes
    segment_bytes: int = DownloadSettings.segment_bytes
    fsync: bool = DownloadSettings.fsync  # sync before the final name (segments: the record)
    checksum: Checksum = DownloadSettings.checksum

    @classmethod
    def from_settings(cls, settings: DownloadSettings) -> FetchOptions:
        return cls(
            policy=RetryPolicy.from_settings(settings),
            write_buffer_bytes=settings.write_buffer_bytes,
            verify_parquet=settings.verify_parquet,
            segment_threshold_bytes=settings.segment_threshold_bytes,
            segment_bytes=settings.segment_bytes,
            fsync=settings.fsync,
            checksum=settings.checksum,
        )
