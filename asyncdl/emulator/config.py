"""Frozen settings of the emulator: which datasets exist, how it paces itself, what it breaks.

Every value is checked at construction so a bad flag fails before any data is generated. Only
``DatasetSpec`` fields (but ``append_only``), ``empty_dataset_id`` and ``seed`` decide the bytes of
the generated parts (``data_fields`` lists them); everything else can change between runs without
a regeneration.
``Variants`` in particular only change how the same bytes are listed and served.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from asyncdl.errors import ConfigError

__all__ = [
    "VARIANT_NAMES",
    "AwsLandingZone",
    "AzureLandingZone",
    "DatasetSpec",
    "EmulatorConfig",
    "Faults",
    "Variants",
    "default_cache_dir",
]

#: The most items one page of any listing carries, as in AEP.
MAX_PAGE_LIMIT = 100


def default_cache_dir() -> Path:
    """The platform's per-user cache directory for generated parts."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "asyncdl-emulator"


def _check_rate(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"{name} must be a fraction between 0 and 1, got {value!r}")


def _check_origin(name: str, value: str) -> str:
    origin = value.rstrip("/")
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme not in {"http", "https"} or not rest or "/" in rest:
        raise ConfigError(f"{name} must look like 'http://host:port', got {value!r}")
    return origin


@dataclass(frozen=True, kw_only=True, slots=True)
class DatasetSpec:
    """One emulated Customer AI scores dataset and the shape of its batches."""

    id: str = "5cd9146b31dae914b75f654f"
    name: str = "Customer AI Scores - Emulated"
    batches: int = 3  # successful batches
    failed_batches: int = 1  # the newest batch of all is a failed one when this is > 0
    files_per_batch: int = 2
    parts_per_file: int = 3
    rows_per_part: int = 200
    part_bytes: int | None = None  # overrides rows_per_part: parts of about this size (±10%)
    nested: bool = False  # the first dataSetFile also lists a sub-directory of 2 more parts
    #: No replays: batches carry no ``replay`` and the current view is every successful batch.
    #: By default each batch names the previous successful one as its replay predecessor (a
    #: Customer AI scoring run replaces the last). Only Catalog's answer changes, not the bytes,
    #: so it is left out of the part cache's key.
    append_only: bool = field(default=False, metadata={"data": False})

    def __post_init__(self) -> None:
        if not self.id or "/" in self.id or "?" in self.id:
            raise ConfigError(f"dataset id must be a non-empty path segment, got {self.id!r}")
        for name in ("batches", "failed_batches", "parts_per_file"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.files_per_batch < 1:
            raise ConfigError(f"files_per_batch must be >= 1, got {self.files_per_batch}")
        if self.rows_per_part < 1:
            raise ConfigError(f"rows_per_part must be >= 1, got {self.rows_per_part}")
        if self.part_bytes is not None and self.part_bytes < 1:
            raise ConfigError(f"part_bytes must be >= 1, got {self.part_bytes}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Faults:
    """What goes wrong, and how often; replaceable on a running emulator.

    ``retry_after_s`` is whole seconds (0 allowed): AEP's gateway writes delay-seconds as an
    integer, and a fractional value would be invalid HTTP. ``truncate_rate`` sends a consistent
    but short body: Content-Length (and Content-Range's total) describe a file that ends where
    the body does, which is what a stale listing looks like to a client; only the listed
    length reveals it.

    ``rate_limit_rps`` is one token bucket for every request that passes the gateway's checks:
    a burst of ``max(1, rps)``, then ``rps`` per second; an empty bucket answers 429 with a
    Retry-After. By default a refused request costs nothing, so a client that hammers gets each
    token as soon as it exists. ``rate_limit_debt`` makes the bucket punish that, as real
    gateways do: a refused request still takes its token, so the bucket goes into debt (at
    most ten seconds of refill, ``rps * 10`` tokens) and requests during the penalty prolong
    it; Retry-After says when the bucket is back at one token.
    """

    seed: int = 0
    error_5xx_rate: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float | None = None
    retry_after_http_date: bool = False
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    range_support: bool = True
    max_faults_per_path: int = 2
    foreign_origin: str | None = None
    hostile_names: bool = False
    rate_limit_rps: float | None = None
    rate_limit_debt: bool = False
    wrong_metrics: bool = False

    def __post_init__(self) -> None:
        for name in ("error_5xx_rate", "rate_429", "drop_rate", "truncate_rate"):
            _check_rate(name, getattr(self, name))
        # One draw decides among 5xx and 429 (and another among drop and truncate), so each pair
        # must fit in one unit interval.
        if self.error_5xx_rate + self.rate_429 > 1.0:
            raise ConfigError("error_5xx_rate + rate_429 must not exceed 1")
        if self.drop_rate + self.truncate_rate > 1.0:
            raise ConfigError("drop_rate + truncate_rate must not exceed 1")
        if self.retry_after_s is not None and not (
            math.isfinite(self.retry_after_s)
            and self.retry_after_s >= 0
            and float(self.retry_after_s).is_integer()
        ):
            raise ConfigError(
                f"retry_after_s must be a whole number of seconds >= 0, got {self.retry_after_s!r}"
            )
        if self.max_faults_per_path < 0:
            raise ConfigError(f"max_faults_per_path must be >= 0, got {self.max_faults_per_path}")
        if self.rate_limit_rps is not None and not (
            math.isfinite(self.rate_limit_rps) and self.rate_limit_rps > 0
        ):
            raise ConfigError(f"rate_limit_rps must be > 0, got {self.rate_limit_rps!r}")
        if self.rate_limit_debt and self.rate_limit_rps is None:
            raise ConfigError("rate_limit_debt needs a rate limit (rate_limit_rps)")
        if self.foreign_origin is not None:
            origin = _check_origin("foreign_origin", self.foreign_origin)
            object.__setattr__(self, "foreign_origin", origin)


@dataclass(frozen=True, kw_only=True, slots=True)
class Variants:
    """Response shapes Adobe's spec allows besides the tidy default; all off, any combination.

    None of them changes which bytes exist, only how they are listed and served (so they are
    not in ``data_fields``, and the part cache is shared). "First", "second" and "last"
    dataSetFile mean the batch's own order. See emulator/variants.py for the served view.

    Where two meet on one dataSetFile: in a one-file batch ``nested_datasetfiles`` nests it and
    ``single_file`` serves its last child as single files; the partition folder of
    ``commit_markers`` moves to the first dataSetFile when the second is served as single
    files (a complete file has no folder). ``quirky_metrics`` writes -1 over
    ``file_count_of_datasetfiles``' count. ``Faults.foreign_origin`` still writes its part
    hrefs absolute under ``relative_hrefs``: a foreign origin is the point of that fault.
    """

    #: Batch files paged by start/limit only: no ``_links`` at all, ``_page.count`` the total.
    unlinked_batch_files: bool = False
    #: The last dataSetFile becomes one dataSetFile per part that answers the bytes themselves.
    single_file: bool = False
    #: The first dataSetFile lists further dataSetFiles (no name, no length): two directories.
    nested_datasetfiles: bool = False
    #: Self hrefs as origin-relative paths, next hrefs as query-only references.
    relative_hrefs: bool = False
    #: ``_started_<tid>``/``_committed_<tid>`` in every directory, and a partition folder.
    commit_markers: bool = False
    #: In every directory, the second part has no ``length`` and the third ``"-1"``.
    missing_length: bool = False
    #: The batch's first part is listed without length and its HEAD has no Content-Length.
    unknown_length: bool = False
    #: Every directory page links a next page, even past the end (those pages are empty).
    endless_next: bool = False
    #: A 206 sends half the range asked for (at least 1 byte), with an honest Content-Range.
    short_206: bool = False
    #: Catalog ``outputFileCount`` counts the dataSetFiles as listed, not the parts.
    file_count_of_datasetfiles: bool = False
    #: Catalog byte and record metrics as strings, ``outputFileCount`` -1.
    quirky_metrics: bool = False
    #: Injected 429/503 answers write Retry-After as "1s" or "soon" (a client must ignore it).
    malformed_retry_after: bool = False
    #: AEP's response time limit: a download still sending after this many seconds is cut.
    response_limit_s: float | None = None
    #: Export jobs answer ``id`` as a float and a one-batch ``destination.batches`` as an object.
    export_job_quirks: bool = False

    def __post_init__(self) -> None:
        limit = self.response_limit_s
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise ConfigError(f"response_limit_s must be > 0, got {limit!r}")

    @classmethod
    def every(cls, *, response_limit_s: float | None = None) -> Variants:
        """Every on/off variant on at once (the response limit as given)."""
        return cls(**dict.fromkeys(VARIANT_NAMES, True), response_limit_s=response_limit_s)


#: The on/off variants, in declaration order (``response_limit_s`` is a number, not a switch).
VARIANT_NAMES: tuple[str, ...] = tuple(
    name for name in Variants.__dataclass_fields__ if name != "response_limit_s"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class AzureLandingZone:
    """What the landing zone credentials call answers for an Azure-provisioned landing zone:
    a container SAS (a test mints one for Azurite, whose path-style URL is used as given)."""

    sas_uri: str = field(repr=False)
    container: str = "dlz-destination"
    account: str = "devstoreaccount1"

    def __post_init__(self) -> None:
        if "?" not in self.sas_uri or "://" not in self.sas_uri:
            raise ConfigError("sas_uri must be a container URL with its SAS query")


@dataclass(frozen=True, kw_only=True, slots=True)
class AwsLandingZone:
    """The same call's answer for an AWS-provisioned landing zone: session credentials."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    bucket: str
    folder: str = "dlz-destination"
    expiry_s: float = 4102444800.0  # epoch seconds (2100-01-01 by default)


@dataclass(frozen=True, kw_only=True, slots=True)
class EmulatorConfig:
    """Everything an ``Emulator`` needs: datasets, credentials, pacing, faults, cache location."""

    datasets: tuple[DatasetSpec, ...] = (DatasetSpec(),)
    empty_dataset_id: str | None = "5cd9146b31dae914b75f0000"
    page_size: int = 100  # a directory page when the request names no limit
    # The most a request's limit may ask for (AEP: 100). Lower it to make a client that asks for
    # big pages still walk many of them.
    max_page_size: int = MAX_PAGE_LIMIT
    record_limit: int | None = None  # keep at most about this many recorded requests (serve)
    batch_files_page_size: int = 100
    latency_s: float = 0.0
    bandwidth_bps: int | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    seed: int = 7
    api_key: str = "emulator"
    org_id: str = "EMULATOR@AdobeOrg"
    sandbox: str = "prod"
    static_tokens: tuple[str, ...] = ("emulator-token",)
    client_id: str = "emulator-client"
    client_secret: str = "emulator-secret"
    token_lifetime_s: float = 86399.0
    faults: Faults = Faults()
    variants: Variants = Variants()
    # Profile export jobs (emulator/exports.py): seconds from NEW to the end (a quarter NEW, the
    # rest PROCESSING), whether every job ends FAILED with AEP-style errors instead of
    # SUCCEEDED, and the size of the profile batches a job writes.
    export_duration_s: float = 2.0
    export_fail: bool = False
    export_rows_per_segment: int = 500
    export_parts_per_batch: int = 2
    # The Data Landing Zone destination's credentials call (emulator/landingzone.py): the Azure
    # or the AWS shape, or None for a sandbox without one (404).
    landing_zone: AzureLandingZone | AwsLandingZone | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "datasets", tuple(self.datasets))
        ids = [spec.id for spec in self.datasets]
        if self.empty_dataset_id is not None:
            ids.append(self.empty_dataset_id)
        if len(set(ids)) != len(ids):
            raise ConfigError(f"dataset ids must be unique, got {ids}")
        if self.page_size < 1 or self.batch_files_page_size < 1 or self.max_page_size < 1:
            raise ConfigError("page sizes must be >= 1")
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise ConfigError(f"latency_s must be >= 0, got {self.latency_s!r}")
        if self.bandwidth_bps is not None and self.bandwidth_bps < 1:
            raise ConfigError(f"bandwidth_bps must be >= 1, got {self.bandwidth_bps}")
        if not (math.isfinite(self.token_lifetime_s) and self.token_lifetime_s > 0):
            raise ConfigError(f"token_lifetime_s must be > 0, got {self.token_lifetime_s!r}")
        if not self.sandbox:
            raise ConfigError("sandbox must not be empty")
        if not (math.isfinite(self.export_duration_s) and self.export_duration_s >= 0):
            raise ConfigError(f"export_duration_s must be >= 0, got {self.export_duration_s!r}")
        if self.export_rows_per_segment < 1 or self.export_parts_per_batch < 1:
            raise ConfigError("export_rows_per_segment and export_parts_per_batch must be >= 1")
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    def data_fields(self) -> dict[str, Any]:
        """The fields that decide the generated bytes: the cache key is a hash of these."""
        return {
            "datasets": [
                {
                    f.name: getattr(spec, f.name)
                    for f in fields(DatasetSpec)
                    if f.metadata.get("data", True)
                }
                for spec in self.datasets
            ],
            "empty_dataset_id": self.empty_dataset_id,
            "seed": self.seed,
        }
