"""asyncdl: fast, complete, verified downloads of Adobe Experience Platform dataset exports.

The library API is async::

    import asyncdl

    result = await asyncdl.download(
        "5cd9146b31dae914b75f654f",
        credentials=asyncdl.Credentials.from_env(),
        settings=asyncdl.DownloadSettings(out_dir=Path("scores"), concurrency=16),
    )
"""

from __future__ import annotations

from .config import BatchSelection, Credentials, DownloadSettings
from .errors import AsyncdlError
from .models import Batch, BatchMetrics, Part, PartResult, PartStatus
from .pipeline import BatchReport, DownloadResult, Reconciliation, download
from .progress import NullProgress, ProgressListener

__version__ = "0.1.0"

__all__ = [
    "AsyncdlError",
    "Batch",
    "BatchMetrics",
    "BatchReport",
    "BatchSelection",
    "Credentials",
    "DownloadResult",
    "DownloadSettings",
    "NullProgress",
    "Part",
    "PartResult",
    "PartStatus",
    "ProgressListener",
    "Reconciliation",
    "__version__",
    "download",
]
