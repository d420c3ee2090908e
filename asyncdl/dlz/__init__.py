"""A second source: a dataset's exports in the Data Landing Zone (Adobe's path for large and
recurring exports), downloaded through the same pipeline as Data Access batches.

``credentials`` asks AEP for the landing zone (an Azure container's SAS, or an AWS bucket's
session keys), ``store`` opens it (obstore to list, a request signer for the client to fetch
with), ``exports`` finds a dataset's export folders and reads each, ``completeness`` judges
whether one is whole, ``state`` is what ``--all-new`` remembers, ``run`` is one listing or
download.
"""

from __future__ import annotations

from .completeness import DEFAULT_SETTLE_S, CheckKind, Completeness
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
