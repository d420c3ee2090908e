"""The landing zone's pieces on their own: the credentials answer in both shapes (and what is
refused), the completeness verdicts, the emulator's credentials call behind the gateway, the
client's signed requests, and the MD5 check of a part before its seal."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from asyncdl.client import AEPClient, SignedRequest
from asyncdl.config import DownloadSettings
from asyncdl.dlz.completeness import CheckKind, judge, parse_manifest
from asyncdl.dlz.credentials import AzureZone, S3Zone, parse_landing_zone
from asyncdl.emulator import AwsLandingZone, AzureLandingZone, running_emulator
from asyncdl.errors import (
    ConfigError,
    NoLandingZoneError,
    SourceAuthError,
    StreamInterruptedError,
    UnsafeResponseError,
    VerificationError,
)
from asyncdl.fetch.integrity import CheckedPartFile, StoredDigest
from asyncdl.models import LANDING_ZONE_CREDENTIALS_PATH
from asyncdl.storage.local import LocalPartFile
from tests.helpers import EmulatorFactory, scripted_api, static_credentials

SAS = "sv=2022-09-11&si=dlz-ed86&sr=c&sp=racwdlm&sig=4yTba8voU3L0wlcLAv9mZLdZ7NlMahbfYYPTMkQ6ZGU%3D"
NOW = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)


# -- the credentials answer ---------------------------------------------------------------------


def test_the_azure_shape_is_read_from_the_sas_uri_as_given() -> None:
    zone = parse_landing_zone(
        {
            "containerName": "dlz-destination",
            "SASToken": SAS,
            "storageAccountName": "dlblobstore99hh25i3df123",  # Adobe's example: not the host's
            "SASUri": f"https://dlblobstore99hh25i3dflek.blob.core.windows.net/dlz-destination?{SAS}",
        }
    )
    assert isinstance(zone, AzureZone)
    assert (
        zone.container_url
        == "https://dlblobstore99hh25i3dflek.blob.core.windows.net/dlz-destination"
    )
    assert (zone.account, zone.container, zone.sas_token) == (
        "dlblobstore99hh25i3dflek",
        "dlz-destination",
        SAS,
    )
    assert "sig=" not in repr(zone)
    path_style = parse_landing_zone(
        {"SASUri": f"http://127.0.0.1:10000/devstoreaccount1/dlz?{SAS}"}
    )
    assert isinstance(path_style, AzureZone)
    assert (path_style.account, path_style.container) == ("devstoreaccount1", "dlz")


def test_a_sas_over_plain_http_to_another_host_is_refused() -> None:
    with pytest.raises(UnsafeResponseError, match="never sent over plain http"):
        parse_landing_zone({"SASUri": f"http://dlz.example.com/dlz-destination?{SAS}"})


def test_the_aws_shape_and_its_expiry() -> None:
    body = {
        "credentials": {
            "awsAccessKeyId": "ABCDW3MEC6HE2T73ZVKP",
            "awsSecretAccessKey": "A1B2Zdxj6y4xfR0QZGtf/phj/hNMAbOGtzM/JNeE",
            "awsSessionToken": "session",
        },
        "dlzPath": {"bucketName": "your-bucket-name", "dlzFolder": "dlz-destination"},
        "dlzProvider": "Amazon S3",
        "expiryTime": 1734494017,
    }
    zone = parse_landing_zone(body)
    assert isinstance(zone, S3Zone)
    assert (zone.bucket, zone.folder, zone.session_token) == (
        "your-bucket-name",
        "dlz-destination",
        "session",
    )
    assert zone.expires == dt.datetime.fromtimestamp(1734494017, tz=dt.UTC)
    assert "A1B2" not in repr(zone)
    in_ms = parse_landing_zone({**body, "expiryTime": 1734494017000})
    assert in_ms.expires == zone.expires


@pytest.mark.parametrize(
    "body",
    [{}, [], {"containerName": "dlz-destination"}, {"credentials": {}, "dlzPath": {}}],
    ids=["empty", "a list", "no uri", "no keys"],
)
def test_an_answer_without_a_landing_zone_is_no_landing_zone(body: object) -> None:
    with pytest.raises(NoLandingZoneError):
        parse_landing_zone(body)


# -- completeness -------------------------------------------------------------------------------


def _manifest(folder: str, files: dict[str, int]) -> list[tuple[str, bytes]]:
    results = [{"sinkPath": f"/{folder}", "name": n, "size": s} for n, s in files.items()]
    return [("manifest-d-r.json", json.dumps({"exportResults": results}).encode())]


def test_a_manifest_decides_when_there_is_one() -> None:
    folder = "cmle/egress/DS/exportTime=202611020600"
    manifest = parse_manifest(_manifest(folder, {"a.parquet": 10, "b.parquet": 20}), folder=folder)
    whole = judge(
        manifest=manifest,
        present={"a.parquet": 10, "b.parquet": 20, "c.parquet": 1},
        newest=NOW,
        now=NOW,
        settle_s=3600,
    )
    assert whole.kind is CheckKind.MANIFEST
    assert whole.complete
    assert "1 other files left out (c.parquet)" in whole.detail
    short = judge(manifest=manifest, present={"a.parquet": 10}, newest=NOW, now=NOW, settle_s=0)
    assert not short.complete
    assert "1 not there yet (b.parquet)" in short.detail
    resized = judge(
        manifest=manifest,
        present={"a.parquet": 10, "b.parquet": 5},
        newest=NOW,
        now=NOW,
        settle_s=0,
    )
    assert not resized.complete
    assert "1 of another size (b.parquet)" in resized.detail
    broken = parse_manifest([("manifest-x.json", b"{not json")], folder=folder)
    assert isinstance(broken, str)
    assert not judge(manifest=broken, present={}, newest=None, now=NOW, settle_s=0).complete
    elsewhere = parse_manifest(_manifest("some/where/else", {"a.parquet": 10}), folder=folder)
    assert not isinstance(elsewhere, str)
    assert dict(elsewhere.files) == {"a.parquet": 10}
    assert "another folder" in elsewhere.note


def test_without_manifest_a_quiet_period_decides() -> None:
    present = {"a.parquet": 10}
    recent = judge(
        manifest=None, present=present, newest=NOW - dt.timedelta(minutes=4), now=NOW, settle_s=1800
    )
    assert recent.kind is CheckKind.QUIET_PERIOD
    assert not recent.complete
    assert "last file written 4m ago, within the 30m quiet period" in recent.detail
    settled = judge(
        manifest=None, present=present, newest=NOW - dt.timedelta(hours=2), now=NOW, settle_s=1800
    )
    assert settled.complete
    assert settled.detail == "no manifest; nothing written for 2h00m"
    assert not judge(manifest=None, present={}, newest=None, now=NOW, settle_s=0).complete


# -- the emulator's credentials call -----------------------------------------------------------


async def test_the_emulator_answers_either_shape_behind_the_gateway(
    emulator_config: EmulatorFactory,
) -> None:
    azure = AzureLandingZone(sas_uri=f"http://127.0.0.1:1/devstoreaccount1/dlz-destination?{SAS}")
    aws = AwsLandingZone(
        access_key_id="AK", secret_access_key="SK", session_token="ST", bucket="b", expiry_s=1.0
    )
    for zone in (azure, aws, None):
        async with (
            running_emulator(emulator_config(landing_zone=zone)) as emu,
            aiohttp.ClientSession() as session,
        ):
            url = emu.base_url + LANDING_ZONE_CREDENTIALS_PATH
            headers = {
                "Authorization": f"Bearer {emu.config.static_tokens[0]}",
                "x-api-key": emu.config.api_key,
                "x-gw-ims-org-id": emu.config.org_id,
            }
            async with session.get(url, params={"type": "dlz_destination"}) as bare:
                assert bare.status == 403  # the gateway first: no token
                assert (await bare.json())["error_code"] == "403010"
            params = {"type": "dlz_destination", "action": "refresh"}
            async with session.get(url, params=params, headers=headers) as refresh:
                assert refresh.status == 400
            async with session.get(url, params={"type": "dlz_destination"}, headers=headers) as ok:
                body = await ok.json()
                if zone is None:
                    assert ok.status == 404
                elif zone is azure:
                    assert body["SASUri"] == azure.sas_uri
                    assert body["SASToken"] == SAS
                    assert body["containerName"] == "dlz-destination"
                else:
                    assert body["dlzProvider"] == "Amazon S3"
                    assert body["dlzPath"] == {"bucketName": "b", "dlzFolder": "dlz-destination"}
                    assert body["credentials"]["awsSessionToken"] == "ST"
                    assert body["expiryTime"] == 1


# -- the client's signed requests --------------------------------------------------------------


class _Signer:
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def covers(self, url: str) -> bool:
        return url.startswith(f"{self.origin}/store/")

    def sign(self, method: str, url: str) -> SignedRequest:
        return SignedRequest(url=f"{url}?sig=SECRET%2Bsig", headers={"x-ms-version": "v"})

    def secrets(self) -> tuple[str, ...]:
        return ("SECRET%2Bsig", "SECRET+sig")


async def _read(client: AEPClient, url: str) -> bytes:
    async with client.open_stream(url) as stream:
        return b"".join([chunk async for chunk in stream.chunks()])


async def test_a_store_gets_its_signature_and_none_of_aeps_headers() -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    async def blob(request: web.Request) -> web.StreamResponse:
        seen.append((request.query_string, dict(request.headers)))
        if request.path.endswith("/refused"):
            return web.Response(
                status=403,
                body=b"<Error><Code>AuthenticationFailed</Code><Message>SECRET+sig expired"
                b"</Message></Error>",
                headers={"x-ms-error-code": "AuthenticationFailed"},
            )
        if request.path.endswith("/cut"):
            response = web.StreamResponse(headers={"Content-Length": "100"})
            await response.prepare(request)
            await response.write(b"x" * 10)
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(body=b"bytes")

    routes = {"/store/a": blob, "/store/refused": blob, "/store/cut": blob}
    async with scripted_api(routes) as api, scripted_api(routes) as store:
        settings = DownloadSettings(base_url=api, max_attempts=1)
        async with AEPClient(credentials=static_credentials(), settings=settings) as client:
            with pytest.raises(ConfigError, match="the API's origin"):
                client.sign_requests(_Signer(api))
            client.sign_requests(_Signer(store))
            assert await _read(client, f"{store}/store/a") == b"bytes"
            with pytest.raises(SourceAuthError) as refused:
                async with client.open_stream(f"{store}/store/refused"):
                    pass
            with pytest.raises(StreamInterruptedError) as cut:
                await _read(client, f"{store}/store/cut")
    query, headers = seen[0]
    assert query == "sig=SECRET%2Bsig"  # exactly as signed, not re-quoted
    assert headers["x-ms-version"] == "v"
    assert not {"Authorization", "x-api-key", "x-gw-ims-org-id"} & set(headers)
    assert refused.value.code == "AuthenticationFailed"
    for error in (refused.value, cut.value):
        assert "SECRET" not in str(error)
        assert "SECRET" not in getattr(error, "url", "")


# -- the MD5 check before the seal --------------------------------------------------------------


class _Stated:
    def __init__(self, data: bytes) -> None:
        self.content_md5 = base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.mark.parametrize("stated", ["right", "wrong"])
def test_a_part_resumed_from_an_earlier_run_is_checked_whole(tmp_path: Path, stated: str) -> None:
    data = bytes(range(256)) * 1000
    earlier = LocalPartFile(tmp_path, "p.bin")
    writer = earlier.open("fresh")
    writer.write([data[:100_000]], offset=None, hasher=None)
    writer.close()
    digest = StoredDigest()
    file = CheckedPartFile(LocalPartFile(tmp_path, "p.bin"), digest, size=len(data))
    kept = file.resumable(len(data), sync=False)  # before any answer: nothing to tee into yet
    assert kept == 100_000
    digest.answered(_Stated(data if stated == "right" else b"other"), "p.bin")  # type: ignore[arg-type]
    appending = file.open("append")
    appending.write([data[kept:]], offset=None, hasher=None)
    appending.close()
    if stated == "right":
        file.seal(sync=False)
        assert (tmp_path / "p.bin").read_bytes() == data
    else:
        with pytest.raises(VerificationError, match="MD5"):
            file.seal(sync=False)
        assert not (tmp_path / "p.bin").exists()


def test_an_aws_landing_zone_is_signed_per_request_on_its_own_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asyncdl.dlz.store import open_zone

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9/a-lake-of-the-users")
    zone = parse_landing_zone(
        {
            "credentials": {
                "awsAccessKeyId": "ASIAKEY",
                "awsSecretAccessKey": "aws-secret",
                "awsSessionToken": "aws-session",
            },
            "dlzPath": {"bucketName": "adobe-dlz", "dlzFolder": "dlz-destination"},
            "dlzProvider": "Amazon S3",
            "expiryTime": int(dt.datetime.now(dt.UTC).timestamp()) + 3600,
        }
    )
    store = open_zone(zone, s3_region="eu-west-1")
    key = "dlz-destination/flow/DS/exportTime=202611020600/part-0.parquet"
    href = store.href(key)
    assert href.startswith("https://adobe-dlz.s3.eu-west-1.amazonaws.com/dlz-destination/")
    assert "?" not in href
    assert store.signer.covers(href)
    signed = store.signer.sign("GET", href)
    assert signed.url.startswith(href + "?")
    assert "X-Amz-Security-Token=aws-session" in signed.url
    assert "aws-secret" not in signed.url
    assert "aws-session" in store.signer.secrets()
    assert store.root == "dlz-destination"
