"""Object-store URLs and credentials: what ``--out`` may say, where each cloud's credentials come
from, and that "none at all" fails at once instead of asking an instance-metadata endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asyncdl.errors import ConfigError
from asyncdl.storage import OBJECT_SCHEMES, LocalStorage, open_storage, stores
from asyncdl.storage.objects import ObjectStorage
from asyncdl.storage.stores import StoreURL, parse_connection_string, parse_store_url
from tests.cloud import AZURITE_KEY


def test_the_schemes_are_listed_once_for_the_seam_and_the_parser() -> None:
    assert frozenset(stores.SCHEMES) == OBJECT_SCHEMES


@pytest.mark.parametrize(
    ("text", "cloud", "bucket", "account", "prefix", "base"),
    [
        ("s3://scores", "s3", "scores", None, "", "s3://scores"),
        ("s3://scores/", "s3", "scores", None, "", "s3://scores"),
        ("S3://my.bucket-1/a//b/", "s3", "my.bucket-1", None, "a/b", "s3://my.bucket-1"),
        ("az://lake/aep/scores", "azure", "lake", None, "aep/scores", "az://lake"),
        ("abfs://lake/x", "azure", "lake", None, "x", "abfs://lake"),
        (
            "abfss://lake@acct.dfs.core.windows.net/x/y",
            "azure",
            "lake",
            "acct",
            "x/y",
            "abfss://lake@acct.dfs.core.windows.net",
        ),
        ("gs://bkt/p", "gcs", "bkt", None, "p", "gs://bkt"),
    ],
)
def test_store_urls(
    text: str, cloud: str, bucket: str, account: str | None, prefix: str, base: str
) -> None:
    url = parse_store_url(text)
    assert url is not None
    assert (url.cloud, url.bucket, url.account, url.prefix, url.base) == (
        cloud,
        bucket,
        account,
        prefix,
        base,
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("s3://AKIA:secret@bucket/x", "credentials do not belong in the URL"),
        ("s3://user@bucket", "credentials do not belong in the URL"),
        ("abfs://c:key@acct.dfs.core.windows.net", "credentials do not belong in the URL"),
        ("s3://x", "is not a bucket or container name"),
        ("s3://Upper", "is not a bucket or container name"),
        ("s3:///prefix", "is not a bucket or container name"),
        ("gs://bkt/a/../b", "'.' and '..' are not prefix segments"),
        ("s3://bkt/x?versionId=1", "a query or fragment has no meaning here"),
    ],
)
def test_malformed_store_urls_are_usage_errors(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"^--out .*" + says.replace("(", r"\(")):
        open_storage(text)


def test_local_paths_and_other_schemes_are_what_they_were(tmp_path: Path) -> None:
    assert parse_store_url("ftp://x/y") is None
    assert isinstance(open_storage(tmp_path), LocalStorage)
    local = open_storage(f"file://{tmp_path}")
    assert isinstance(local, LocalStorage)
    assert local.root == tmp_path
    with pytest.raises(ConfigError, match=r"ftp:// destinations are not supported"):
        open_storage("ftp://bucket/scores")


def test_s3_credentials_come_only_from_the_aws_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no AWS credentials: set AWS_ACCESS_KEY_ID") as caught:
        open_storage("s3://bucket/x")
    assert "\n" not in str(caught.value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTKEY")
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY"):
        open_storage("s3://bucket/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="set AWS_ALLOW_HTTP=true") as caught:
        open_storage("s3://bucket/x")
    assert "s3cr3t-value" not in str(caught.value)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    storage = open_storage("s3://bucket/x")  # builds; nothing is sent until prepare
    assert isinstance(storage, ObjectStorage)
    assert storage.where("b/p.parquet") == "s3://bucket/x/b/p.parquet"


@pytest.mark.parametrize(
    "variable",
    ["AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"],
)
def test_s3_roles_given_by_the_environment_count_as_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    monkeypatch.setenv(variable, str(tmp_path / "token"))
    assert isinstance(open_storage("s3://bucket"), ObjectStorage)


def test_instance_metadata_is_asked_only_on_that_clouds_machines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dmi = tmp_path / "dmi"
    dmi.mkdir()
    monkeypatch.setattr(stores, "DMI_ROOT", dmi)
    (dmi / "sys_vendor").write_text("Amazon EC2\n")
    assert isinstance(open_storage("s3://bucket"), ObjectStorage)  # an instance role, maybe
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="no AWS credentials"):
        open_storage("s3://bucket")
    with pytest.raises(ConfigError, match="no Azure storage account"):
        open_storage("az://container")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    with pytest.raises(ConfigError, match="no Azure credentials"):
        open_storage("az://container")
    (dmi / "chassis_asset_tag").write_text("7783-7084-3265-9085-8269-3286-77\n")
    assert isinstance(open_storage("az://container"), ObjectStorage)  # a managed identity
    with pytest.raises(ConfigError, match="no Google Cloud credentials"):
        open_storage("gs://bucket")
    (dmi / "product_name").write_text("Google Compute Engine\n")
    assert isinstance(open_storage("gs://bucket"), ObjectStorage)


def _service_account_key(path: Path, *, valid: bool) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    if valid:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    document = {
        "type": "service_account",
        "client_email": "asyncdl@project.iam.gserviceaccount.com",
        "private_key": pem,
        "private_key_id": "1",
        "token_uri": "http://127.0.0.1:9/token",  # never asked: nothing is sent before prepare
    }
    path.write_text(json.dumps(document))


def test_gcs_credentials_come_from_the_google_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = tmp_path / "key.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    _service_account_key(key, valid=True)
    storage = open_storage("gs://bucket/scores")
    assert isinstance(storage, ObjectStorage)
    assert storage.where("b/p") == "gs://bucket/scores/b/p"
    _service_account_key(key, valid=False)
    with pytest.raises(ConfigError, match=r"^--out gs://bucket: .*Invalid RSA key") as caught:
        open_storage("gs://bucket/scores")  # obstore reads the key at once: one line, exit 2
    assert "\n" not in str(caught.value)
    assert "BEGIN PRIVATE KEY" not in str(caught.value)
    gcloud = tmp_path / "gcloud"
    gcloud.mkdir()
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(gcloud))
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        open_storage("gs://bucket")


def test_connection_strings_are_parsed_as_the_azure_tools_write_them() -> None:
    text = (
        "DefaultEndpointsProtocol=https; AccountName=acct ;AccountKey=" + AZURITE_KEY + ";"
        "EndpointSuffix=core.windows.net;"
    )
    fields = parse_connection_string(text)
    assert fields["accountname"] == "acct"
    assert fields["accountkey"] == AZURITE_KEY  # the "==" at its end survives
    url = parse_store_url("az://ctr")
    assert isinstance(url, StoreURL)
    config = stores._from_connection_string(url, fields)
    assert config["endpoint"] == "https://acct.blob.core.windows.net"
    assert config["account_key"] == AZURITE_KEY
    sas = stores._from_connection_string(
        url, parse_connection_string("AccountName=acct;SharedAccessSignature=?sv=1&sig=x")
    )
    assert sas["sas_key"] == "sv=1&sig=x"
    emulator = stores._from_connection_string(
        url, parse_connection_string("UseDevelopmentStorage=true")
    )
    assert emulator == {"use_emulator": True}


@pytest.mark.parametrize(
    ("connection", "says"),
    [
        ("AccountKey=abc", "has no AccountName"),
        ("AccountName=acct", "neither AccountKey nor SharedAccessSignature"),
        ("AccountName=other;AccountKey=abc", "the URL names account 'acct'"),
    ],
)
def test_unusable_connection_strings_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch, connection: str, says: str
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection)
    with pytest.raises(ConfigError, match=says) as caught:
        open_storage("abfss://ctr@acct.dfs.core.windows.net/x")
    assert "abc" not in str(caught.value)


def test_without_the_cloud_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "obstore", None)  # what an import of a missing package does
    for name in ("asyncdl.storage.objects", "asyncdl.storage.bucket"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ConfigError) as caught:
        open_storage("s3://bucket/x")
    assert str(caught.value) == (
        "--out s3://bucket/x: writing to an object store needs obstore: "
        "pip install 'asyncdl[cloud]'"
    )


def test_a_local_run_does_not_import_obstore(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "import asyncdl.pipeline, asyncdl.current\n"
        "from asyncdl.storage import open_storage\n"
        f"open_storage({str(tmp_path)!r}).prepare()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'obstore', 'boto3'}\n"
        "    or m in {'asyncdl.storage.objects', 'asyncdl.storage.stores'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
