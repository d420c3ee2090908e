"""The object stores of the storage tests: a fresh bucket or container per test on the module's
moto server and Azurite (tests/conftest.py starts them), and asyncdl configured for them only
through each cloud's standard variables (a developer's own cloud configuration never leaks in)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cloud import Azurite, MotoS3, no_cloud


@pytest.fixture(autouse=True)
def hermetic_cloud(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    no_cloud(monkeypatch, tmp_path_factory.mktemp("no-cloud"))


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Segmented parts stage in the test's own temp dir (``default_staging`` reads TMPDIR)."""
    import tempfile

    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@dataclass(frozen=True)
class S3Bucket:
    server: MotoS3
    name: str

    @property
    def url(self) -> str:
        return f"s3://{self.name}"

    def object_keys(self) -> list[str]:
        return self.server.keys(self.name)

    def open_uploads(self) -> list[str]:
        return self.server.open_uploads(self.name)

    def body(self, key: str) -> bytes:
        return self.server.body(self.name, key)


@pytest.fixture
def s3(moto_server: MotoS3, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    moto_server.use(monkeypatch)
    return S3Bucket(moto_server, moto_server.bucket())


@dataclass(frozen=True)
class AzureContainer:
    server: Azurite
    name: str

    @property
    def url(self) -> str:
        return f"az://{self.name}"


@pytest.fixture
def az(azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch) -> AzureContainer:
    azurite_server.use(monkeypatch)
    return AzureContainer(azurite_server, azurite_server.container())
