"""Frozen settings: credentials, download options and batch selection, validated on construction.

Values come from flags first, then the environment (``AEP_*``); an invalid combination raises
``ConfigError`` here, before any request is made. Secrets are kept out of every ``repr``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .checksum import Checksum
from .errors import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_IMS_URL",
    "DEFAULT_SCOPES",
    "BatchSelection",
    "Credentials",
    "DownloadSettings",
    "Setting",
    "default_config_path",
    "mask",
    "queue_bound",
    "resolve_environment",
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
        # The x-sandbox-name header is the all-lowercase sandbox name (Adobe's spec, every API).
        object.__setattr__(self, "sandbox", self.sandbox.strip().lower())
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
        if missing or api_key is None or org_id is None:
            raise ConfigError("missing credentials: set " + ", ".join(missing))
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
    # Where the run writes: a directory (a URL-shaped value is kept as written, for the storage
    # seam to decide: ``Path`` would fold "s3://b/x" into "s3:/b/x").
    out_dir: Path | str = Path("scores")
    concurrency: int = 8
    max_attempts: int = 8
    backoff_base_s: float = 0.5  # first retry waits up to this (full jitter), doubling to the max
    backoff_max_s: float = 30.0
    part_timeout_s: float = 1800.0  # one part, all attempts and waits included
    read_timeout_s: float = 60.0  # silence on a socket; AEP finishes every answer within 60 s
    connect_timeout_s: float = 30.0
    allowed_hosts: frozenset[str] = frozenset()
    ca_bundle: Path | None = None
    read_chunk_bytes: int = MiB  # the socket reads' buffer: large, so per-chunk work stays small
    write_buffer_bytes: int = MiB
    verify_parquet: bool = True
    # Parts this big are fetched as concurrent ranged segments (None: never).
    segment_threshold_bytes: int | None = 64 * MiB
    segment_bytes: int = 32 * MiB
    adaptive: bool = True  # shrink concurrency on 429, grow it back on success (AIMD)
    # Sync each part to stable storage before it gets its final name (and segment progress before
    # it is recorded): what the manifest vouches for then survives a power loss, not only a crash.
    fsync: bool = True
    checksum: Checksum = Checksum.BLAKE3  # the content hash each part's record keeps
    # The most of parts' bytes kept in memory on their way into an object store (an upload holds
    # each part's 5 MiB in flight until the store has it): the default -j's worth of big parts,
    # so memory stops growing with -j when the store is slower than the download.
    store_memory_bytes: int = 48 * MiB

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", _check_url(self.base_url, "the base URL"))
        if self.segment_bytes < MiB:
            raise ConfigError(f"--segment-size must be at least 1 MiB, got {self.segment_bytes}")
        if self.store_memory_bytes < MiB:
            raise ConfigError(
                f"--store-memory must be at least 1 MiB, got {self.store_memory_bytes}"
            )
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.max_attempts < 1:
            raise ConfigError(f"--retries must be at least 1, got {self.max_attempts}")
        if self.part_timeout_s <= 0:
            raise ConfigError(f"--timeout must be positive, got {self.part_timeout_s}")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ConfigError(f"--ca-bundle {self.ca_bundle} is not a readable file")
        object.__setattr__(self, "allowed_hosts", frozenset(h.lower() for h in self.allowed_hosts))


def queue_bound(concurrency: int) -> int:
    """How many listed parts may wait for a worker: two per worker.

    Enough that no worker starves while the producer waits for the next listing page (one
    round trip), few enough that a 10,000-part listing is never held whole.
    """
    return 2 * concurrency


# -- configuration files -------------------------------------------------------------------------

#: asyncdl's TOML keys → the environment variable each stands for.
TOML_KEYS = {
    "access_token": "AEP_ACCESS_TOKEN",
    "api_key": "AEP_API_KEY",
    "base_url": "AEP_BASE_URL",
    "client_id": "AEP_CLIENT_ID",
    "client_secret": "AEP_CLIENT_SECRET",
    "ims_url": "AEP_IMS_URL",
    "org_id": "AEP_ORG_ID",
    "sandbox": "AEP_SANDBOX",
    "scopes": "AEP_SCOPES",
}
#: aepp's JSON config keys (``aepp.createConfigFile``) → environment variable.
AEPP_KEYS = {
    "org_id": "AEP_ORG_ID",
    "client_id": "AEP_CLIENT_ID",
    "secret": "AEP_CLIENT_SECRET",
    "sandbox-name": "AEP_SANDBOX",
    "scopes": "AEP_SCOPES",
}
SECRET_VARIABLES = frozenset({"AEP_ACCESS_TOKEN", "AEP_CLIENT_SECRET"})
KNOWN_VARIABLES = tuple(sorted({*TOML_KEYS.values(), *AEPP_KEYS.values()}))


@dataclass(frozen=True, kw_only=True, slots=True)
class Setting:
    """One resolved value and where it came from (for ``asyncdl config show``)."""

    value: str
    source: str

    def shown(self, name: str) -> str:
        if name in SECRET_VARIABLES:
            return mask(self.value)
        return self.value


def mask(secret: str) -> str:
    """Enough to recognise a value, never enough to use it."""
    return "***" if len(secret) <= 8 else f"{secret[:2]}***{secret[-2:]}"


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "asyncdl" / "config.toml"


def _read_config(path: Path, profile: str | None) -> dict[str, str]:
    """AEP_* values from asyncdl's TOML (with profiles) or aepp's JSON file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        if profile:
            raise ConfigError("--profile applies to asyncdl's TOML files, not aepp's JSON")
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} is not an aepp config object")
        return {env: str(raw[key]) for key, env in AEPP_KEYS.items() if raw.get(key)}
    import tomllib  # here, not at the top: only runs that have a file pay for it at start-up

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    table = {k: v for k, v in raw.items() if k != "profiles"}
    if profile:
        profiles = raw.get("profiles", {})
        if not isinstance(profiles, dict) or profile not in profiles:
            names = ", ".join(sorted(profiles)) if isinstance(profiles, dict) else ""
            raise ConfigError(f"no profile {profile!r} in {path} (has: {names or 'none'})")
        table.update(profiles[profile])
    unknown = sorted(set(table) - set(TOML_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(unknown)}")
    return {TOML_KEYS[k]: str(v) for k, v in table.items() if v not in (None, "")}


def resolve_environment(
    *,
    config_path: Path | None = None,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Setting]:
    """AEP_* settings from the config file, overridden by the environment (flags come later).

    Without ``config_path`` the default file is read if it exists.
    """
    environ = os.environ if environ is None else environ
    settings: dict[str, Setting] = {}
    path = config_path
    if path is None and default_config_path().is_file():
        path = default_config_path()
    elif path is None and profile:
        raise ConfigError(f"--profile {profile} needs a config file ({default_config_path()})")
    if path is not None:
        for name, value in _read_config(path, profile).items():
            settings[name] = Setting(value=value, source=f"file {path}")
    for name in KNOWN_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            settings[name] = Setting(value=value, source="environment")
    return settings
