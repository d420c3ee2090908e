"""The landing zone credentials AEP answers, in both shapes, and what is refused; an AWS zone's
presigned requests on its own endpoint."""

from __future__ import annotations

import datetime as dt

import pytest

from asyncdl.dlz.credentials import AzureZone, S3Zone, parse_landing_zone, secrets_of
from asyncdl.errors import (
    NoLandingZoneError,
    UnsafeResponseError,
)

SAS = "sv=2022-09-11&si=dlz-ed86&sr=c&sp=racwdlm&sig=4yTba8voU3L0wlcLAv9mZLdZ7NlMahbfYYPTMkQ6ZGU%3D"


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


def test_every_form_a_secret_can_take_in_a_url_is_scrubbed() -> None:
    """A signature or a session token holds '+', '/' and '=': in a query string each is
    percent-encoded, '/' included, and that form must be hidden as well as the raw one."""
    sig = "a+b/c="
    azure = AzureZone(
        container_url="https://acct.blob.core.windows.net/dlz",
        account="acct",
        container="dlz",
        sas_token=f"sv=1&sig={sig.replace('+', '%2B').replace('/', '%2F').replace('=', '%3D')}",
    )
    assert {sig, "a%2Bb%2Fc%3D"} <= set(secrets_of(azure))
    s3 = S3Zone(
        bucket="b", folder="f", access_key_id="AK", secret_access_key="sk", session_token="t/k+n="
    )
    assert set(secrets_of(s3)) == {"sk", "t/k+n=", "t%2Fk%2Bn%3D"}
