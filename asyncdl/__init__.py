"""asyncdl: fast, complete, verified downloads of Adobe Experience Platform dataset exports.

The library API is async; credentials default to the config file and ``AEP_*`` environment::

    import asyncdl

    result = await asyncdl.download("5cd9146b31dae914b75f654f", out="scores", concurrency=16)
    async with asyncdl.connect() as client:
        async for batch in asyncdl.iter_batches(client, "5cd9146b31dae914b75f654f", limit=3):
            ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import BatchSelection, Credentials, DownloadSettings
    from .current import SyncResult, sync
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

# Imported on first use, not with the package: the ``asyncdl`` command must run first
# (asyncdl/tls.py says why), and ``asyncdl --version`` needs none of it.
_PUBLIC = {
    "config": ("BatchSelection", "Credentials", "DownloadSettings"),
    "current": ("SyncResult", "sync"),
    "errors": ("AsyncdlError",),
    "listing": ("iter_batches", "iter_parts"),
    "models": ("Batch", "BatchMetrics", "Part", "PartResult", "PartStatus"),
    "pipeline": (
        "BatchReport",
        "DownloadResult",
        "PlannedBatch",
        "Reconciliation",
        "connect",
        "download",
        "plan",
    ),
    "progress": ("NullProgress", "ProgressListener"),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'asyncdl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


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
    "SyncResult",
    "__version__",
    "connect",
    "download",
    "iter_batches",
    "iter_parts",
    "plan",
    "sync",
]
