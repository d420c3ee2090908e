"""Frozen settings: credentials, download options and batch selection, validated on construction.

Values come from flags first, then the environment (``AEP_*``); an invalid combination raises
``ConfigError`` here, before any request is made. Secrets are kept out of every ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_IMS_URL",
    "DEFAULT_SCOPES",
    "BatchSelection",
    "Credentials",
    "DownloadSettings",
]

DEFAULT_BASE_URL = "https://platform.adobe.io"
DEFAULT_IMS_URL = "https://ims-na1.adobelogin.com"
DEFAULT_SCOPES = "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"
MiB = 1 << 20


def _check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """Who we are to AEP: either a static access token or an OAuth server-to-server client."""

    api_key: str
    org_id: str
    sandbox: str = "prod"
    access_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scopes: str = DEFAULT_SCOPES
    ims_url: str = DEFAULT_IMS_URL

    def __post_init__(self) -> None:
        if not self.access_token and not (self.client_id and self.client_secret):
            raise ConfigError(
                "no credentials: set AEP_ACCESS_TOKEN, or AEP_CLIENT_ID and AEP_CLIENT_SECRET"
            )
        _check_url(self.ims_url, "AEP_IMS_URL")

    @property
    def uses_oauth(self) -> bool:
        return not self.access_token

    def secrets(self) -> tuple[str, ...]:
        """Every value that must never be shown (used to scrub error texts)."""
        values = (self.access_token, self.client_secret, self.api_key)
        return tuple(v for v in values if v)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        """Read ``AEP_*`` variables; name every missing one in a single error."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        token = get("AEP_ACCESS_TOKEN")
        client_id = get("AEP_CLIENT_ID")
        secret = get("AEP_CLIENT_SECRET")
        api_key = get("AEP_API_KEY") or client_id  # Adobe's API key *is* the OAuth client ID
        org_id = get("AEP_ORG_ID")
        missing = []
        if not token and not (client_id and secret):
            missing.append("AEP_ACCESS_TOKEN (or AEP_CLIENT_ID + AEP_CLIENT_SECRET)")
        if not api_key:
            missing.append("AEP_API_KEY")
        if not org_id:
            missing.append("AEP_ORG_ID")
        if missing:
            raise ConfigError("missing credentials: set " + ", ".join(missing))
        assert api_key is not None
        assert org_id is not None
        return cls(
            api_key=api_key,
            org_id=org_id,
            sandbox=(get("AEP_SANDBOX") or "prod").lower(),
            access_token=token,
            client_id=client_id,
            client_secret=secret,
            scopes=get("AEP_SCOPES") or DEFAULT_SCOPES,
            ims_url=get("AEP_IMS_URL") or DEFAULT_IMS_URL,
        )


@dataclass(frozen=True, kw_only=True)
class BatchSelection:
    """Which batches of a dataset to fetch: the newest ``latest`` successful ones, or named ids."""

    latest: int = 1
    batch_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.batch_ids and self.latest < 1:
            raise ConfigError(f"--latest must be at least 1, got {self.latest}")


@dataclass(frozen=True, kw_only=True)
class DownloadSettings:
    """How to download: where to, how hard to push, how patient to be."""

    base_url: str = DEFAULT_BASE_URL
    out_dir: Path = Path("scores")
    concurrency: int = 8
    max_attempts: int = 8
    backoff_base_s: float = 0.5  # first retry waits up to this (full jitter), doubling to the max
    backoff_max_s: float = 30.0
    part_timeout_s: float = 1800.0  # one part, all attempts and waits included
    read_timeout_s: float = 60.0  # silence on a socket; AEP finishes every answer within 60 s
    connect_timeout_s: float = 30.0
    allowed_hosts: frozenset[str] = frozenset()
    ca_bundle: Path | None = None
    read_chunk_bytes: int = MiB
    write_buffer_bytes: int = MiB
    verify_parquet: bool = True
    # Parts this big are fetched as concurrent ranged segments (None: never).
    segment_threshold_bytes: int | None = 64 * MiB
    segment_bytes: int = 32 * MiB
    adaptive: bool = True  # shrink concurrency on 429, grow it back on success (AIMD)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", _check_url(self.base_url, "the base URL"))
        if self.segment_bytes < MiB:
            raise ConfigError(f"--segment-size must be at least 1 MiB, got {self.segment_bytes}")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.max_attempts < 1:
            raise ConfigError(f"--retries must be at least 1, got {self.max_attempts}")
        if self.part_timeout_s <= 0:
            raise ConfigError(f"--timeout must be positive, got {self.part_timeout_s}")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ConfigError(f"--ca-bundle {self.ca_bundle} is not a readable file")
        object.__setattr__(self, "allowed_hosts", frozenset(h.lower() for h in self.allowed_hosts))
