"""A second source: a dataset's exports in the Data Landing Zone (Adobe's path for large and
recurring exports), downloaded through the same pipeline as Data Access batches.

``credentials`` asks AEP for the landing zone (an Azure container's SAS, or an AWS bucket's
session keys), ``store`` opens it (obstore to list, a request signer for the client to fetch
with), ``exports`` finds a dataset's export folders and reads each, ``completeness`` judges
whether one is whole, ``state`` is what ``--all-new`` remembers, ``run`` is one listing or
download. Only ``completeness`` is imported with the package: the rest (and obstore with it)
when one of its names is first used, so a command that never reads the landing zone neither
pays for obstore at start-up nor needs the ``cloud`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .completeness import DEFAULT_SETTLE_S, CheckKind, Completeness

if TYPE_CHECKING:
    from .exports import Blob, Export
    from .run import DlzDownload, ExportsFound, Zone, download_exports, list_exports

__all__ = [
    "DEFAULT_SETTLE_S",
    "Blob",
    "CheckKind",
    "Completeness",
    "DlzDownload",
    "Export",
    "ExportsFound",
    "Zone",
    "download_exports",
    "list_exports",
]

_LAZY = {
    "Blob": ".exports",
    "Export": ".exports",
    "DlzDownload": ".run",
    "ExportsFound": ".run",
    "Zone": ".run",
    "download_exports": ".run",
    "list_exports": ".run",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        loaded = importlib.import_module(module, __name__)
    except ModuleNotFoundError as exc:
        if exc.name != "obstore" and not (exc.name or "").startswith("obstore."):
            raise
        raise ConfigError(
            "reading the Data Landing Zone needs obstore: pip install 'asyncdl[cloud]'"
        ) from None
    return getattr(loaded, name)
