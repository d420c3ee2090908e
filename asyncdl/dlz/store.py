"""The landing zone's store, two ways in with the same credentials: obstore for listing (it
pages Azure's NextMarker and S3's continuation tokens itself) and small reads, and a request
signer through which the client fetches each file over HTTP like any other part (ranges,
segments, resume, If-Match, the stated MD5).

Azure: the SAS from ``SASUri``, appended to each request for the container (with
``x-ms-version``, so ranged answers state the blob's MD5). S3: a presigned URL per request
(obstore's ``sign``), valid for minutes and never past the session's expiry. Neither store is
built from the environment's own cloud settings (a ``--out`` lake's ``AZURE_*``/``AWS_*`` must
not leak in): everything it needs is given explicitly.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import obstore

from ..client import RequestSigner, SignedRequest, strip_query
from ..errors import LandingZoneExpiredError, StorageError
from ..storage.bucket import Bucket
from .credentials import AzureZone, LandingZone, S3Zone, secrets_of

if TYPE_CHECKING:
    from obstore.store import AzureConfig, ClientConfig, S3Config, S3Store

__all__ = ["AZURE_VERSION", "DEFAULT_S3_REGION", "ZoneSigner", "ZoneStore", "open_zone"]

#: The Blob service version asked for: ranged answers carry ``x-ms-blob-content-md5`` since
#: 2016-05-31.
AZURE_VERSION = "2021-08-06"
#: Where an AWS-provisioned landing zone's bucket is unless ``--s3-region`` says otherwise (the
#: credentials answer names no region).
DEFAULT_S3_REGION = "us-east-1"
#: How long one presigned URL is valid: a request starts within moments of being signed.
_PRESIGN_S = 900.0
_HINT = (
    "the landing zone's credentials were refused: expired, revoked, or rotated by a refresh; "
    "run again to fetch current ones"
)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class ZoneSigner(RequestSigner, Protocol):
    """A store's request signer that also names each object's unsigned URL."""

    def href(self, key: str) -> str:
        """The URL of the object at ``key``, without any credential."""


@dataclass(frozen=True)
class ZoneStore:
    """The landing zone as asyncdl reads it: ``bucket`` lists and reads keys below ``root``;
    ``href`` is a file's unsigned URL, which ``signer`` signs request by request."""

    bucket: Bucket
    root: str  # the key prefix every export is below ("" for the container's root)
    signer: ZoneSigner

    def href(self, key: str) -> str:
        return self.signer.href(key)

    def key(self, relative: str) -> str:
        return "/".join(p for p in (self.root, relative.strip("/")) if p)

    def relative(self, key: str) -> str:
        return key[len(self.root) + 1 :] if self.root else key


class SasSigner:
    """An Azure container's SAS, appended to each request for one of its blobs."""

    def __init__(self, zone: AzureZone) -> None:
        self._zone = zone
        self._prefix = zone.container_url + "/"
        self.origin = _origin(zone.container_url)

    def href(self, key: str) -> str:
        return self._prefix + urllib.parse.quote(key, safe="/")

    def covers(self, url: str) -> bool:
        return url.startswith(self._prefix)

    def sign(self, method: str, url: str) -> SignedRequest:
        self._check(dt.datetime.now(dt.UTC))
        joiner = "&" if "?" in url else "?"
        return SignedRequest(
            url=f"{url}{joiner}{self._zone.sas_token}", headers={"x-ms-version": AZURE_VERSION}
        )

    def _check(self, now: dt.datetime) -> None:
        expires = self._zone.expires
        if expires is not None and expires <= now:
            raise LandingZoneExpiredError(
                f"the landing zone's SAS expired at {expires:%Y-%m-%d %H:%M:%SZ} during the run"
            )

    def secrets(self) -> tuple[str, ...]:
        return secrets_of(self._zone)


class PresignSigner:
    """An S3 bucket's objects, each request with a freshly presigned URL."""

    def __init__(self, store: S3Store, zone: S3Zone) -> None:
        self._store = store
        self._zone = zone
        probe = self._presign("GET", "k", _PRESIGN_S)
        self._prefix = strip_query(probe)[:-1]  # everything before the key
        self.origin = _origin(probe)

    def _presign(self, method: str, key: str, seconds: float) -> str:
        # Reading is all asyncdl does here: only GET and HEAD are ever signed.
        verb: Literal["GET", "HEAD"] = "HEAD" if method == "HEAD" else "GET"
        if method != verb:
            raise StorageError(f"{self._zone.where} is only read: refusing to sign a {method}")
        try:
            return obstore.sign(self._store, verb, key, dt.timedelta(seconds=seconds))
        except Exception as exc:  # obstore's own errors: a configuration it cannot sign with
            raise StorageError(
                f"cannot sign a request for {self._zone.where}: {strip_query(str(exc))[:200]}"
            ) from None

    def href(self, key: str) -> str:
        # obstore's own encoding of the key, so that signing it again gives the same path.
        return strip_query(self._presign("GET", key, _PRESIGN_S))

    def covers(self, url: str) -> bool:
        return url.startswith(self._prefix)

    def sign(self, method: str, url: str) -> SignedRequest:
        seconds = _PRESIGN_S
        if self._zone.expires is not None:
            seconds = min(seconds, (self._zone.expires - dt.datetime.now(dt.UTC)).total_seconds())
            if seconds < 1:
                raise LandingZoneExpiredError(
                    f"the landing zone's AWS session expired at "
                    f"{self._zone.expires:%Y-%m-%d %H:%M:%SZ} during the run"
                )
        key = urllib.parse.unquote(url[len(self._prefix) :])
        return SignedRequest(url=self._presign(method, key, seconds))

    def secrets(self) -> tuple[str, ...]:
        return secrets_of(self._zone)


def open_zone(
    zone: LandingZone, *, s3_endpoint: str | None = None, s3_region: str | None = None
) -> ZoneStore:
    """The store of ``zone`` (blocking only in obstore's builder, which does no I/O)."""
    if isinstance(zone, AzureZone):
        return _azure(zone)
    return _s3(zone, endpoint=s3_endpoint, region=s3_region or DEFAULT_S3_REGION)


def _azure(zone: AzureZone) -> ZoneStore:
    from obstore.store import AzureStore

    endpoint = zone.container_url.rsplit("/", 1)[0]  # the account's blob endpoint
    config: AzureConfig = {
        "account_name": zone.account,
        "endpoint": endpoint,
        "sas_key": zone.sas_token,
        # The SAS, whatever AZURE_* credentials the environment holds for a --out lake.
        "credential_type": "sas_token",
    }
    client: ClientConfig = {"allow_http": endpoint.startswith("http://")}
    try:
        store = AzureStore(zone.container, config=config, client_options=client)
    except Exception as exc:  # obstore's builder: an unusable value
        raise StorageError(f"cannot open {zone.where}: {strip_query(str(exc))[:200]}") from None
    return ZoneStore(Bucket(store, url=zone.where, hint=_HINT), "", SasSigner(zone))


def _s3(zone: S3Zone, *, endpoint: str | None, region: str) -> ZoneStore:
    from obstore.store import S3Store

    config: S3Config = {
        "access_key_id": zone.access_key_id,
        "secret_access_key": zone.secret_access_key,
        "region": region,
        "skip_signature": False,
    }
    if endpoint is None:
        # AWS itself: virtual-hosted style (what new buckets are promised), the endpoint given
        # whole so that no AWS_ENDPOINT_URL of a --out lake can redirect the landing zone.
        config["virtual_hosted_style_request"] = True
        config["endpoint"] = f"https://{zone.bucket}.s3.{region}.amazonaws.com"
    else:
        config["endpoint"] = endpoint
    if zone.session_token:
        config["session_token"] = zone.session_token
    client: ClientConfig = {"allow_http": bool(endpoint and endpoint.startswith("http://"))}
    try:
        store = S3Store(zone.bucket, config=config, client_options=client)
    except Exception as exc:
        raise StorageError(f"cannot open {zone.where}: {strip_query(str(exc))[:200]}") from None
    bucket = Bucket(store, url=f"s3://{zone.bucket}", hint=_HINT)
    return ZoneStore(bucket, zone.folder, PresignSigner(store, zone))
