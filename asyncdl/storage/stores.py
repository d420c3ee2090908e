"""Where an object-store ``--out`` points, and the obstore store that reaches it: the URL, and
the credentials taken from each cloud's own standard configuration (never from asyncdl's flags).

``s3://bucket[/prefix]``, ``az://container[/prefix]`` (also ``abfs://`` and ``abfss://``, with
``container@account.dfs.core.windows.net`` as their host or not) and ``gs://bucket[/prefix]``.
A credential in the URL is refused, and nothing built here ever prints one.

Credentials, per cloud:

- **S3**: obstore's builder reads every ``AWS_*`` variable itself (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``,
  ``AWS_ALLOW_HTTP``, web identity, container credentials, instance roles); nothing is passed.
- **Azure**: ``AZURE_STORAGE_CONNECTION_STRING`` (the Azure tools' and Azurite's standard, which
  object_store does not read) is parsed here into account, key or SAS, and blob endpoint; else
  obstore reads ``AZURE_STORAGE_ACCOUNT_NAME`` with ``AZURE_STORAGE_ACCOUNT_KEY``, a SAS, a
  service principal, a federated token, the Azure CLI or a managed identity.
- **GCS**: obstore reads ``GOOGLE_APPLICATION_CREDENTIALS`` (or the gcloud default credentials
  file, or ``GOOGLE_SERVICE_ACCOUNT*``), else the metadata server.

Each cloud's client falls back to an instance-metadata endpoint when it finds nothing else, and
off that cloud such a request only hangs until its timeouts give up. So "no credentials at all"
is a ``ConfigError`` at once unless the machine says (in its DMI data) that it runs on that
cloud, where the metadata endpoint is the standard source.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import ConfigError

if TYPE_CHECKING:  # obstore's config types exist only in its stubs
    from obstore.store import AzureConfig, ClientConfig, ObjectStore

__all__ = ["SCHEMES", "StoreURL", "build_store", "parse_connection_string", "parse_store_url"]

Cloud = Literal["s3", "azure", "gcs"]

SCHEMES: dict[str, Cloud] = {
    "s3": "s3",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "gs": "gcs",
}
# Bucket and container names as the three clouds allow them (S3 and GCS: dots too).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$")
_TRUE = frozenset({"1", "true", "yes", "on"})

#: Where Linux tells which machine this is (patched by the tests).
DMI_ROOT = Path("/sys/class/dmi/id")
HYPERVISOR_UUID = Path("/sys/hypervisor/uuid")
_AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"  # every Azure VM's chassis asset tag

_HINTS: dict[Cloud, str] = {
    "s3": "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN and the "
    "bucket's policy",
    "azure": "check AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_NAME / "
    "AZURE_STORAGE_ACCOUNT_KEY and the container's access",
    "gcs": "check GOOGLE_APPLICATION_CREDENTIALS and the bucket's IAM",
}


@dataclass(frozen=True, kw_only=True)
class StoreURL:
    """An object-store ``--out``, parsed: which cloud, which bucket, which prefix."""

    cloud: Cloud
    scheme: str  # as written, lower-cased
    netloc: str  # bucket or container, with "@account.host" when the URL had one
    bucket: str
    account: str | None = None  # Azure: the account an abfs host names
    prefix: str = ""  # no leading or trailing "/"

    @property
    def base(self) -> str:
        """The bucket's URL, how messages name it (it never holds a credential)."""
        return f"{self.scheme}://{self.netloc}"

    @property
    def hint(self) -> str:
        """Where this cloud's credentials come from, for a refusal's message."""
        return _HINTS[self.cloud]


def parse_store_url(text: str) -> StoreURL | None:
    """The object store ``text`` names; None when its scheme is not one (ConfigError when it
    is one, but malformed)."""
    scheme, _, rest = text.partition("://")
    cloud = SCHEMES.get(scheme.lower())
    if cloud is None:
        return None
    netloc, _, path = rest.partition("/")
    if "?" in path or "#" in path or "?" in netloc:
        raise ConfigError(f"--out {text}: a query or fragment has no meaning here")
    bucket, account = netloc, None
    if "@" in netloc:
        bucket, _, host = netloc.partition("@")
        if cloud != "azure" or ":" in bucket:
            raise ConfigError(
                f"--out {text}: credentials do not belong in the URL (they come from the "
                "cloud's standard environment variables)"
            )
        account = host.split(".", 1)[0] or None
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(f"--out {text}: {bucket!r} is not a bucket or container name")
    segments = [s for s in path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise ConfigError(f"--out {text}: '.' and '..' are not prefix segments")
    return StoreURL(
        cloud=cloud,
        scheme=scheme.lower(),
        netloc=netloc,
        bucket=bucket,
        account=account,
        prefix="/".join(segments),
    )


def build_store(url: StoreURL, environ: Mapping[str, str] | None = None) -> ObjectStore:
    """The obstore store of ``url``'s bucket (no prefix: keys are asyncdl's to build).

    ConfigError when the environment holds no credentials for it or holds unusable ones;
    whether the store accepts them is ``prepare``'s probe to find out.
    """
    env = os.environ if environ is None else environ
    try:
        if url.cloud == "s3":
            return _s3(url, env)
        if url.cloud == "azure":
            return _azure(url, env)
        return _gcs(url, env)
    except (ValueError, OSError, NotImplementedError) as exc:
        raise ConfigError(f"--out {url.base}: {_first_line(exc)}") from exc
    except Exception as exc:  # obstore's own errors: an unusable configuration value
        if type(exc).__module__.startswith("obstore"):
            raise ConfigError(f"--out {url.base}: {_first_line(exc)}") from exc
        raise


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _true(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in _TRUE


def _dmi(name: str) -> str:
    try:
        return (DMI_ROOT / name).read_text(errors="replace").strip()
    except OSError:
        return ""


def _on_cloud(cloud: Cloud) -> bool:
    """Whether this machine says it is a VM of ``cloud`` (where the metadata endpoint is the
    standard credential source)."""
    if cloud == "s3":
        try:
            uuid = HYPERVISOR_UUID.read_text(errors="replace").strip().lower()
        except OSError:
            uuid = ""
        return (
            _dmi("sys_vendor") == "Amazon EC2"
            or _dmi("board_asset_tag").startswith("i-")
            or uuid.startswith("ec2")
        )
    if cloud == "azure":
        return _dmi("chassis_asset_tag") == _AZURE_ASSET_TAG
    return _dmi("product_name").startswith("Google Compute Engine")


def _s3(url: StoreURL, env: Mapping[str, str]) -> ObjectStore:
    from obstore.store import S3Store

    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if bool(key) != bool(secret):
        have, missing = (
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            if key
            else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
        )
        raise ConfigError(f"--out {url.base}: {have} is set but {missing} is not")
    found = bool(key) or any(
        env.get(name)
        for name in (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_METADATA_ENDPOINT",  # an explicit "ask the instance metadata here"
        )
    )
    found = found or _true(env, "AWS_SKIP_SIGNATURE")
    if not found and not _true(env, "AWS_EC2_METADATA_DISABLED"):
        found = _on_cloud("s3")
    if not found:
        raise ConfigError(
            f"--out {url.base}: no AWS credentials: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones; "
            "`aws configure export-credentials --format env` prints a profile's), or run where "
            "a role provides them"
        )
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
        endpoint = env.get(name, "")
        if endpoint.lower().startswith("http://") and not _true(env, "AWS_ALLOW_HTTP"):
            raise ConfigError(
                f"--out {url.base}: {name} is a plain-http endpoint; set AWS_ALLOW_HTTP=true "
                "to allow it"
            )
        if endpoint:
            break
    # No client options: passing any replaces those the builder read from AWS_* (AWS_ALLOW_HTTP,
    # AWS_PROXY_URL, timeouts) with ours.
    return S3Store(url.bucket)


def parse_connection_string(text: str) -> dict[str, str]:
    """``Key=Value;...`` (keys case-insensitive, values may hold "="), keys lower-cased."""
    fields: dict[str, str] = {}
    for item in text.split(";"):
        name, sep, value = item.strip().partition("=")
        if sep and name.strip():
            fields[name.strip().lower()] = value.strip()
    return fields


def _azure(url: StoreURL, env: Mapping[str, str]) -> ObjectStore:
    from obstore.store import AzureStore

    connection = env.get("AZURE_STORAGE_CONNECTION_STRING", "").strip()
    if connection:
        config = _from_connection_string(url, parse_connection_string(connection))
        if config.get("use_emulator") or str(config.get("endpoint", "")).startswith("http://"):
            # The connection string's own protocol says so (it replaces the client options
            # read from AZURE_*: a connection string is the whole configuration).
            client: ClientConfig = {"allow_http": True}
            return AzureStore(url.bucket, config=config, client_options=client)
        return AzureStore(url.bucket, config=config)
    account = env.get("AZURE_STORAGE_ACCOUNT_NAME") or url.account
    emulator = _true(env, "AZURE_STORAGE_USE_EMULATOR")
    credentials = emulator or any(
        env.get(name)
        for name in (
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_ACCESS_KEY",
            "AZURE_STORAGE_MASTER_KEY",
            "AZURE_STORAGE_SAS_KEY",
            "AZURE_STORAGE_SAS_TOKEN",
            "AZURE_STORAGE_TOKEN",
            "AZURE_CLIENT_SECRET",
            "AZURE_STORAGE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_MSI_ENDPOINT",
            "AZURE_IDENTITY_ENDPOINT",
        )
    )
    credentials = credentials or _true(env, "AZURE_USE_AZURE_CLI")
    credentials = credentials or _true(env, "AZURE_SKIP_SIGNATURE") or _on_cloud("azure")
    if not account and not emulator:
        raise ConfigError(
            f"--out {url.base}: no Azure storage account: set AZURE_STORAGE_CONNECTION_STRING, "
            "or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY (or a SAS)"
        )
    if not credentials:
        raise ConfigError(
            f"--out {url.base}: no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, or "
            "AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_TOKEN, a service principal's "
            "AZURE_CLIENT_ID / AZURE_CLIENT_SECRET / AZURE_TENANT_ID)"
        )
    settings: AzureConfig = {}
    if account:
        settings["account_name"] = account
    return AzureStore(url.bucket, config=settings)


def _from_connection_string(url: StoreURL, fields: Mapping[str, str]) -> AzureConfig:
    """The store's configuration from a parsed connection string (its values override what
    obstore would read from ``AZURE_*`` variables)."""
    config: AzureConfig = {}
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        config["use_emulator"] = True
        return config
    account = fields.get("accountname")
    endpoint = fields.get("blobendpoint", "").rstrip("/")
    if not account:
        raise ConfigError(f"--out {url.base}: AZURE_STORAGE_CONNECTION_STRING has no AccountName")
    if url.account and url.account != account:
        raise ConfigError(
            f"--out {url.base}: the URL names account {url.account!r}, "
            f"AZURE_STORAGE_CONNECTION_STRING account {account!r}"
        )
    config["account_name"] = account
    if not endpoint:
        protocol = fields.get("defaultendpointsprotocol", "https")
        suffix = fields.get("endpointsuffix", "core.windows.net")
        endpoint = f"{protocol}://{account}.blob.{suffix}"
    config["endpoint"] = endpoint
    if fields.get("accountkey"):
        config["account_key"] = fields["accountkey"]
    elif fields.get("sharedaccesssignature"):
        config["sas_key"] = fields["sharedaccesssignature"].lstrip("?")
    else:
        raise ConfigError(
            f"--out {url.base}: AZURE_STORAGE_CONNECTION_STRING has neither AccountKey nor "
            "SharedAccessSignature"
        )
    if urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
        raise ConfigError(f"--out {url.base}: the connection string's BlobEndpoint is not a URL")
    return config


def _gcs(url: StoreURL, env: Mapping[str, str]) -> ObjectStore:
    from obstore.store import GCSStore

    gcloud = Path(env.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    found = any(
        env.get(name)
        for name in (
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_SERVICE_ACCOUNT",
            "GOOGLE_SERVICE_ACCOUNT_PATH",
            "GOOGLE_SERVICE_ACCOUNT_KEY",
        )
    )
    found = found or _true(env, "GOOGLE_SKIP_SIGNATURE")
    found = found or (gcloud / "application_default_credentials.json").is_file()
    if not found and not _on_cloud("gcs"):
        raise ConfigError(
            f"--out {url.base}: no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS "
            "to a service account key file (or run `gcloud auth application-default login`)"
        )
    return GCSStore(url.bucket)
