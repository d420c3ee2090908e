"""Configuration is validated on construction and names what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncdl.config import BatchSelection, Credentials, DownloadSettings
from asyncdl.errors import ConfigError


def test_env_credentials_with_static_token() -> None:
    creds = Credentials.from_env(
        {"AEP_ACCESS_TOKEN": "tok", "AEP_API_KEY": "key", "AEP_ORG_ID": "ORG@AdobeOrg"}
    )
    assert creds.sandbox == "prod"
    assert not creds.uses_oauth
    assert "tok" not in repr(creds)


def test_env_credentials_oauth_defaults_api_key_to_client_id() -> None:
    creds = Credentials.from_env(
        {
            "AEP_CLIENT_ID": "cid",
            "AEP_CLIENT_SECRET": "shh",
            "AEP_ORG_ID": "ORG@AdobeOrg",
            "AEP_SANDBOX": "Dev",
        }
    )
    assert creds.api_key == "cid"
    assert creds.uses_oauth
    assert creds.sandbox == "dev"
    assert "shh" not in repr(creds)


def test_missing_credentials_name_every_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        Credentials.from_env({})
    message = str(caught.value)
    for name in ("AEP_ACCESS_TOKEN", "AEP_CLIENT_ID", "AEP_API_KEY", "AEP_ORG_ID"):
        assert name in message


@pytest.mark.parametrize("concurrency", [0, -3])
def test_concurrency_must_be_positive(concurrency: int) -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        DownloadSettings(concurrency=concurrency)


def test_base_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="URL"):
        DownloadSettings(base_url="platform.adobe.io")
    assert DownloadSettings(base_url="https://x.example/").base_url == "https://x.example"


def test_allowed_hosts_are_case_insensitive(tmp_path: Path) -> None:
    assert DownloadSettings(allowed_hosts=frozenset({"CDN.Example"})).allowed_hosts == {
        "cdn.example"
    }
    with pytest.raises(ConfigError, match="ca-bundle"):
        DownloadSettings(ca_bundle=tmp_path / "missing.pem")


def test_latest_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="latest"):
        BatchSelection(latest=0)
