"""Plain values shared by every layer (and by the emulator): batches, files, parts, results.

Nothing here does I/O. Sizes are bytes (int), times are seconds (float) unless a name says ``_ms``
(Catalog timestamps are epoch milliseconds on the wire and stay that way).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CATALOG_PATH",
    "EXPORT_JOBS_PATH",
    "EXPORT_PATH",
    "IMS_TOKEN_PATH",
    "LANDING_ZONE_CREDENTIALS_PATH",
    "UPS_PATH",
    "Batch",
    "BatchMetrics",
    "DataSetFile",
    "Part",
    "PartResult",
    "PartStatus",
    "count",
    "integer",
]

# The API's paths, below the base URL (IMS's below its own): one place for client and emulator.
CATALOG_PATH = "/data/foundation/catalog"
EXPORT_PATH = "/data/foundation/export"
UPS_PATH = "/data/core/ups"
EXPORT_JOBS_PATH = f"{UPS_PATH}/export/jobs"
IMS_TOKEN_PATH = "/ims/token/v3"
#: The Data Landing Zone's credentials (``?type=dlz_destination``); never with ``action=refresh``,
#: which rotates the SAS for everyone using it.
LANDING_ZONE_CREDENTIALS_PATH = "/data/foundation/connectors/landingzone/credentials"


def integer(value: object) -> int | None:
    """An integer as AEP writes one: ``100``, ``100.0`` (a JSON float), ``"100"``, ``" 7 "``;
    None for anything else (``True``, ``1.5``, junk)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)  # float() strips the spaces of a string itself
    except (ValueError, OverflowError):
        return None
    return int(number) if number.is_integer() else None


def count(value: object) -> int | None:
    """A count as producers write Catalog metrics: a non-negative integer; ``-1`` (not
    counted), negatives and junk are None (unknown)."""
    number = integer(value)
    return number if number is not None and number >= 0 else None


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchMetrics:
    """What the Catalog claims about a batch's output; any field may be absent."""

    output_byte_size: int | None = None
    output_record_count: int | None = None
    output_file_count: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Batch:
    """One Catalog batch of a dataset."""

    id: str
    status: str
    dataset_id: str | None = None
    created_ms: int | None = None
    #: Batches this one replaces (``replay.predecessors``): a Customer AI scoring run names the
    #: previous run's batch, so a dataset's current view leaves those out.
    predecessors: tuple[str, ...] = ()
    metrics: BatchMetrics = BatchMetrics()


@dataclass(frozen=True, kw_only=True, slots=True)
class DataSetFile:
    """One Data Access ``dataSetFileId`` of a batch: a directory of parts."""

    id: str
    href: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Part:
    """One downloadable file of a batch, as the directory listing describes it.

    ``relpath`` is where it goes below ``OUT/<batch_id>/``: the server's name, already checked to
    be safe path components (partition folders such as ``scoreDate=2020-04-09/`` allowed), or
    ``<dataSetFileId>/<name>`` when two directories of the same batch hold the same name.

    ``href`` never holds a credential: a store's SAS or signature is added by the client as each
    request is sent (``client.signing``). ``etag`` is the version an object store listed; every
    request for the part names it (``If-Match``), so bytes of two versions are never mixed.
    """

    batch_id: str
    dataset_file_id: str
    name: str
    relpath: str
    size: int
    href: str
    etag: str | None = None


class PartStatus(enum.Enum):
    """How a part ended in one run."""

    DOWNLOADED = "downloaded"
    SKIPPED = "skipped"  # already complete on disk: no request made
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True, slots=True)
class PartResult:
    """The outcome of one part in one run."""

    part: Part
    status: PartStatus
    fetched_bytes: int = 0  # bytes that crossed the network in this run
    rows: int | None = None
    digest: str | None = None  # tagged with its algorithm: checksum.py
    attempts: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not PartStatus.FAILED
