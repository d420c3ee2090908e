"""The object stores the tests use, each on 127.0.0.1 and stopped afterwards: moto's S3 server
(in this process, in a thread) and Azurite (node, from ``make install``'s node_modules); how
asyncdl is pointed at them (only through each cloud's standard variables), and what the
landing zone tests do to Azurite with its development key: blobs put, rewritten, deleted or
given another MD5, stored access policies, and container SAS tokens minted (no Azure SDK is
installed: each is one SharedKey-signed REST call or HMAC, as Microsoft documents them)."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
AZURITE = REPO / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's well-known development account (public: it is in Microsoft's documentation).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_START_TIMEOUT_S = 30.0
_AZURE_VERSION = "2021-08-06"

# Every variable through which a developer's own cloud configuration could reach a test.
CLOUD_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT",
    "AWS_ALLOW_HTTP",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_METADATA_ENDPOINT",
    "AWS_SKIP_SIGNATURE",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USE_AZURE_CLI",
    "AZURE_STORAGE_USE_EMULATOR",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "CLOUDSDK_CONFIG",
)


def no_cloud(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No cloud configuration from the machine, and a machine that is no cloud's VM."""
    from asyncdl.storage import stores

    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setattr(stores, "DMI_ROOT", tmp_path / "no-dmi")
    monkeypatch.setattr(stores, "HYPERVISOR_UUID", tmp_path / "no-hypervisor")


def unique(prefix: str) -> str:
    """A bucket or container name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class MotoS3:
    endpoint: str
    client: Any  # boto3's S3 client (boto3 ships no types)

    def bucket(self) -> str:
        name = unique("asyncdl")
        self.client.create_bucket(Bucket=name)
        return name

    def use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point asyncdl at this server through the standard AWS variables only."""
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ENDPOINT_URL", self.endpoint)
        monkeypatch.setenv("AWS_ALLOW_HTTP", "true")

    def open_uploads(self, bucket: str) -> list[str]:
        answer = self.client.list_multipart_uploads(Bucket=bucket)
        return [u["Key"] for u in answer.get("Uploads", [])]

    def keys(self, bucket: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def body(self, bucket: str, key: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data


@contextmanager
def moto_s3() -> Iterator[MotoS3]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        yield MotoS3(endpoint=endpoint, client=client)
        client.close()
    finally:
        server.stop()


_AZURITE_LISTENING = re.compile(r"successfully listens on http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class Azurite:
    endpoint: str  # the account's blob endpoint, path style: http://127.0.0.1:PORT/devstoreaccount1

    def connection_string(self, *, key: str = AZURITE_KEY) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint={self.endpoint};"
        )

    def use(self, monkeypatch: pytest.MonkeyPatch, *, key: str = AZURITE_KEY) -> None:
        """Point asyncdl at Azurite through the standard connection string only."""
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", self.connection_string(key=key))

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> tuple[int, dict[str, str]]:
        """One REST call signed with the account key (SharedKey): status and headers (names
        lower-cased)."""
        query = query or {}
        sent = {
            "x-ms-date": email.utils.formatdate(usegmt=True),
            "x-ms-version": _AZURE_VERSION,
            **(headers or {}),
        }
        ms = "".join(
            f"{k.lower()}:{v}\n"
            for k, v in sorted(sent.items(), key=lambda kv: kv[0].lower())
            if k.lower().startswith("x-ms-")
        )
        resource = f"/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}{path}" + "".join(
            f"\n{k}:{v}" for k, v in sorted(query.items())
        )
        fields = [
            method,
            "",
            "",
            str(len(body)) if body else "",
            sent.get("Content-MD5", ""),
            sent.get("Content-Type", ""),
            *[""] * 6,
        ]
        to_sign = "\n".join(fields) + "\n" + ms + resource
        key = base64.b64decode(AZURITE_KEY)
        signature = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest())
        sent["Authorization"] = f"SharedKey {AZURITE_ACCOUNT}:{signature.decode()}"
        url = f"{self.endpoint}{urllib.parse.quote(path, safe='/=')}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, method=method, headers=sent, data=body or None)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, {k.lower(): v for k, v in answer.headers.items()}
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}

    def container(self, name: str | None = None) -> str:
        """A new container, created by one SharedKey-signed REST call."""
        name = name or unique("asyncdl")
        status, _ = self.request("PUT", f"/{name}", query={"restype": "container"})
        assert status == 201, status
        return name

    def put_blob(self, container: str, name: str, data: bytes) -> str:
        """A block blob in one Put Blob (Azurite computes its Content-MD5); its ETag."""
        status, headers = self.request(
            "PUT",
            f"/{container}/{name}",
            headers={"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"},
            body=data,
        )
        assert status == 201, status
        return headers["etag"]

    def set_blob_md5(self, container: str, name: str, md5: bytes) -> None:
        """Give a blob another stated MD5 (Set Blob Properties: no check of the bytes)."""
        status, _ = self.request(
            "PUT",
            f"/{container}/{name}",
            query={"comp": "properties"},
            headers={
                "x-ms-blob-content-md5": base64.b64encode(md5).decode(),
                "x-ms-blob-content-type": "application/octet-stream",
            },
        )
        assert status == 200, status

    def delete_blob(self, container: str, name: str) -> None:
        status, _ = self.request("DELETE", f"/{container}/{name}")
        assert status == 202, status

    def set_policy(self, container: str, identifier: str | None, *, permissions: str) -> None:
        """The container's one stored access policy (None: none), as AEP ties its SAS to one;
        deleting it revokes every SAS that names it."""
        policies = ""
        if identifier is not None:
            expiry = _sas_time(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
            policies = (
                f"<SignedIdentifier><Id>{identifier}</Id><AccessPolicy><Expiry>{expiry}</Expiry>"
                f"<Permission>{permissions}</Permission></AccessPolicy></SignedIdentifier>"
            )
        body = f"<?xml version='1.0' encoding='utf-8'?><SignedIdentifiers>{policies}"
        body += "</SignedIdentifiers>"
        status, _ = self.request(
            "PUT",
            f"/{container}",
            query={"restype": "container", "comp": "acl"},
            headers={"Content-Type": "application/xml"},
            body=body.encode(),
        )
        assert status == 200, status

    def sas(
        self,
        container: str,
        *,
        permissions: str = "rl",
        expiry: dt.datetime | None = None,
        identifier: str | None = None,
    ) -> str:
        """A container SAS minted from the development key (a service SAS, ``sr=c``): with a
        stored policy's ``identifier`` it carries no permissions or expiry of its own."""
        fields: dict[str, str] = {"sv": _AZURE_VERSION, "sr": "c"}
        if identifier is None:
            when = expiry or dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
            fields["sp"], fields["se"] = permissions, _sas_time(when)
        else:
            fields["si"] = identifier
        to_sign = "\n".join(
            [
                fields.get("sp", ""),
                "",  # signedStart
                fields.get("se", ""),
                f"/blob/{AZURITE_ACCOUNT}/{container}",
                fields.get("si", ""),
                "",  # signedIP
                "",  # signedProtocol
                _AZURE_VERSION,
                "c",
                "",  # signedSnapshotTime
                "",  # signedEncryptionScope
                "",  # rscc
                "",  # rscd
                "",  # rsce
                "",  # rscl
                "",  # rsct
            ]
        )
        key = base64.b64decode(AZURITE_KEY)
        fields["sig"] = base64.b64encode(
            hmac.new(key, to_sign.encode(), hashlib.sha256).digest()
        ).decode()
        return urllib.parse.urlencode(fields)

    def sas_uri(self, container: str, token: str, *, endpoint: str | None = None) -> str:
        """The container's SAS URL as AEP's SASUri writes it (path style, as Azurite serves)."""
        return f"{endpoint or self.endpoint}/{container}?{token}"


def _sas_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def azurite(log: Path) -> Iterator[Azurite]:
    if not AZURITE.exists():
        pytest.fail(f"{AZURITE} is missing: run `make install` (it installs Azurite from npm)")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(AZURITE),
                "--inMemoryPersistence",
                "--disableTelemetry",  # on by default: it would try to reach the internet
                "--skipApiVersionCheck",
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",  # the system picks; Azurite says which (below)
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while (listening := _AZURITE_LISTENING.search(log.read_text(errors="replace"))) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Azurite did not start: {log.read_text(errors='replace')}")
            time.sleep(0.05)
        port = int(listening.group(1))
        yield Azurite(endpoint=f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
