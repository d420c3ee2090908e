"""asyncdl: fast, complete, verified downloads of Adobe Experience Platform dataset exports.

The library API is async; credentials default to the config file and ``AEP_*`` environment::

    import asyncdl

    result = await asyncdl.download("5cd9146b31dae914b75f654f", out="scores", concurrency=16)
    async with asyncdl.connect() as client:
        async for batch in asyncdl.iter_batches(client, "5cd9146b31dae914b75f654f", limit=3):
            ...
"""

from __future__ import annotations

from .config import BatchSelection, Credentials, DownloadSettings
from .errors import AsyncdlError
from .listing import iter_batches, iter_parts
from .models import Batch, BatchMetrics, Part, PartResult, PartStatus
from .pipeline import (
    BatchReport,
    DownloadResult,
    PlannedBatch,
    Reconciliation,
    connect,
    download,
    plan,
)
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
    "PlannedBatch",
    "ProgressListener",
    "Reconciliation",
    "__version__",
    "connect",
    "download",
    "iter_batches",
    "iter_parts",
    "plan",
]
