"""The landing zone's credentials, asked of AEP once per run and read into one of two shapes.

``GET /data/foundation/connectors/landingzone/credentials?type=dlz_destination`` with the usual
AEP auth answers, for an Azure-provisioned landing zone, a container SAS (``SASUri``,
``SASToken``, ``containerName``, ``storageAccountName``) and, for an AWS-provisioned one,
session credentials (``credentials{awsAccessKeyId, awsSecretAccessKey, awsSessionToken}``,
``dlzPath{bucketName, dlzFolder}``, ``dlzProvider: "Amazon S3"``, ``expiryTime``). The refresh
action (``&action=refresh``) is never called: it rotates the SAS for everyone who uses it.

The SAS is a read-and-write secret inside a URL. It is kept here in fields that no ``repr``
shows, and leaves this package only as a request signer for the store's own host.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ..client import AEPClient
from ..errors import (
    LandingZoneExpiredError,
    NoLandingZoneError,
    NotFoundError,
    ProtocolError,
    UnsafeResponseError,
)
from ..models import LANDING_ZONE_CREDENTIALS_PATH

__all__ = ["AzureZone", "LandingZone", "S3Zone", "fetch_landing_zone"]

_TYPE = {"type": "dlz_destination"}


@dataclass(frozen=True, kw_only=True)
class AzureZone:
    """An Azure Blob container and its SAS, as ``SASUri`` gives them (path-style URLs, such as
    an emulator's ``http://127.0.0.1:PORT/devstoreaccount1/dlz-destination``, included)."""

    container_url: str  # scheme://host[:port]/[account/]container, without the SAS
    container: str
    account: str
    sas_token: str = field(repr=False)  # "sv=...&sig=...", percent-encoded as given
    expires: dt.datetime | None = None  # the SAS's own ``se``, when it has one

    @property
    def where(self) -> str:
        return self.container_url


@dataclass(frozen=True, kw_only=True)
class S3Zone:
    """An S3 bucket, the landing zone's folder in it, and the session credentials for it."""

    bucket: str
    folder: str  # ``dlzPath.dlzFolder``: every export is below it ("" for the bucket's root)
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expires: dt.datetime | None = None

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.folder}".rstrip("/")


LandingZone = AzureZone | S3Zone


def secrets_of(zone: LandingZone) -> tuple[str, ...]:
    """The values that must never be shown."""
    if isinstance(zone, AzureZone):
        signature = urllib.parse.parse_qs(zone.sas_token).get("sig", [])
        values = (zone.sas_token, *signature, *(_encoded(s) for s in signature))
        return tuple(v for v in values if v)
    # A session token is base64 ('+', '/', '='): a URL or a log may hold it percent-encoded.
    token = () if zone.session_token is None else (zone.session_token, _encoded(zone.session_token))
    return tuple(v for v in (zone.secret_access_key, *token) if v)


def _encoded(secret: str) -> str:
    """``secret`` as it appears in a query string: every reserved character encoded, '/' too."""
    return urllib.parse.quote(secret, safe="")


async def fetch_landing_zone(client: AEPClient, *, now: dt.datetime | None = None) -> LandingZone:
    """The sandbox's landing zone (NoLandingZoneError when it has none; LandingZoneExpiredError
    when what AEP handed out has already expired)."""
    url = client.api_url(LANDING_ZONE_CREDENTIALS_PATH)
    try:
        body = await client.get_json(url, params=_TYPE)
    except NotFoundError as exc:
        raise NoLandingZoneError(
            f"sandbox {client.sandbox} has no Data Landing Zone destination (AEP answered "
            f"{exc.status} to {LANDING_ZONE_CREDENTIALS_PATH}?type=dlz_destination)"
        ) from exc
    except ProtocolError as exc:
        raise NoLandingZoneError(
            f"AEP gave no landing zone credentials for sandbox {client.sandbox} ({exc})"
        ) from exc
    zone = parse_landing_zone(body)
    _check_expiry(zone, now or dt.datetime.now(dt.UTC))
    return zone


def parse_landing_zone(body: Any) -> LandingZone:
    """Either shape of the credentials answer; NoLandingZoneError for anything else."""
    if not isinstance(body, dict) or not body:
        raise NoLandingZoneError("AEP answered the landing zone credentials call with nothing")
    if isinstance(body.get("SASUri"), str) and body["SASUri"].strip():
        return _azure(body)
    if isinstance(body.get("credentials"), dict):
        return _s3(body)
    raise NoLandingZoneError(
        "AEP's landing zone credentials hold neither a SASUri nor AWS credentials "
        f"(keys: {', '.join(sorted(map(str, body))) or 'none'})"
    )


def _azure(body: dict[str, Any]) -> AzureZone:
    parts = urllib.parse.urlsplit(str(body["SASUri"]).strip())
    host = parts.hostname or ""
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme not in ("http", "https") or not host or not segments or not parts.query:
        raise NoLandingZoneError("AEP's SASUri is not a container URL with a SAS")
    if parts.scheme == "http" and not _loopback(host):
        # A SAS in clear over the network: only an emulator on this machine may ask for that.
        raise UnsafeResponseError(
            f"refusing the landing zone at http://{host}: a SAS is never sent over plain http"
        )
    container_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    # The account is the host's first label (account.blob.core.windows.net), or the path's
    # first segment in a path-style URL (an emulator's): never storageAccountName alone, which
    # Adobe's own example shows differing from the host.
    path_style = len(segments) > 1
    account = segments[0] if path_style else host.split(".", 1)[0]
    token = parts.query
    return AzureZone(
        container_url=container_url.rstrip("/"),
        container=segments[-1],
        account=account,
        sas_token=token,
        expires=_sas_expiry(token),
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _sas_expiry(token: str) -> dt.datetime | None:
    values = urllib.parse.parse_qs(token).get("se")
    return _when(values[0]) if values else None


def _s3(body: dict[str, Any]) -> S3Zone:
    credentials, path = body["credentials"], body.get("dlzPath")
    key, secret = credentials.get("awsAccessKeyId"), credentials.get("awsSecretAccessKey")
    if not isinstance(path, dict) or not isinstance(path.get("bucketName"), str):
        raise NoLandingZoneError("AEP's AWS landing zone credentials have no dlzPath.bucketName")
    if not isinstance(key, str) or not key or not isinstance(secret, str) or not secret:
        raise NoLandingZoneError("AEP's AWS landing zone credentials have no access key pair")
    token = credentials.get("awsSessionToken")
    return S3Zone(
        bucket=path["bucketName"],
        folder=str(path.get("dlzFolder") or "").strip("/"),
        access_key_id=key,
        secret_access_key=secret,
        session_token=token if isinstance(token, str) and token else None,
        expires=_when(body.get("expiryTime")),
    )


def _when(value: object) -> dt.datetime | None:
    """An expiry as AEP may write one: epoch seconds (or milliseconds), or an ISO time."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        seconds = float(value)
        if seconds > 1e11:  # milliseconds: no expiry is thousands of years away
            seconds /= 1000
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return None


def _check_expiry(zone: LandingZone, now: dt.datetime) -> None:
    if zone.expires is not None and zone.expires <= now:
        stamp = zone.expires.strftime("%Y-%m-%d %H:%M:%SZ")
        raise LandingZoneExpiredError(
            f"the landing zone's credentials expired at {stamp} ({zone.where}); AEP handed out "
            "credentials that no request can use: ask again later"
        )
