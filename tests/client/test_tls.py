"""TLS is verified by default; --ca-bundle adds a CA; nothing turns verification off."""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from asyncdl import tls
from asyncdl.client import AEPClient
from asyncdl.config import Credentials, DownloadSettings
from asyncdl.errors import AsyncdlError, ConfigError, ConnectError, NoBatchError
from asyncdl.pipeline import download

CREDENTIALS = Credentials(api_key="k", org_id="o@AdobeOrg", access_token="t")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
    )
    return cert, key


@asynccontextmanager
async def tls_catalog(cert: Path, key: Path) -> AsyncIterator[str]:
    """A TLS server whose Catalog knows no batch: reaching it at all is what is tested."""

    async def batches(request: web.Request) -> web.Response:
        return web.json_response({})

    async def dataset(request: web.Request) -> web.Response:
        return web.json_response({"title": "Not Found", "status": 404}, status=404)

    app = web.Application()
    app.router.add_get("/data/foundation/catalog/batches", batches)
    app.router.add_get("/data/foundation/catalog/dataSets/{id}", dataset)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_unknown_ca_is_refused(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    async with tls_catalog(*certificate) as base_url:
        settings = DownloadSettings(base_url=base_url, out_dir=tmp_path, max_attempts=1)
        with pytest.raises(ConnectError, match="cannot connect"):
            await download("ds", credentials=CREDENTIALS, settings=settings)


async def test_ca_bundle_is_trusted(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, _ = certificate
    async with tls_catalog(*certificate) as base_url:
        settings = DownloadSettings(base_url=base_url, out_dir=tmp_path, ca_bundle=cert)
        # The handshake succeeds; the Catalog then has nothing, which is a clean NoBatchError.
        with pytest.raises(NoBatchError, match="not found"):
            await download("ds", credentials=CREDENTIALS, settings=settings)


async def test_an_unreadable_ca_bundle_is_a_configuration_error(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    async with tls_catalog(*certificate) as base_url:
        settings = DownloadSettings(base_url=base_url, out_dir=tmp_path, ca_bundle=bundle)
        with pytest.raises(ConfigError, match=r"cannot load the certificates of .*bundle\.pem"):
            await download("ds", credentials=CREDENTIALS, settings=settings)


async def test_the_ca_store_is_loaded_only_for_https(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """Loading it costs 15-20 ms of every start: a plain-http run (the emulator) never does."""
    async with tls_catalog(*certificate) as base_url:
        http = base_url.replace("https:", "http:")
        # A leading space is stripped by the URL parser aiohttp uses: still https.
        for url, loaded in ((http, False), (base_url, True), (f" {base_url}", True)):
            settings = DownloadSettings(base_url=base_url, out_dir=tmp_path, max_attempts=1)
            client = AEPClient(credentials=CREDENTIALS, settings=settings)
            async with client:
                with contextlib.suppress(AsyncdlError):  # no answer, or an unknown CA
                    await client.get_json(url + "/data/foundation/catalog/batches")
            assert (client.trust.context.cert_store_stats()["x509_ca"] > 0) is loaded, url


async def test_a_ca_bundle_is_loaded_at_the_start_even_for_http(tmp_path: Path) -> None:
    """It was asked for: a bad one stops the run before it starts, not each part after."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("not a certificate\n")
    settings = DownloadSettings(base_url="http://127.0.0.1:9", out_dir=tmp_path, ca_bundle=bundle)
    with pytest.raises(ConfigError, match=r"bundle\.pem"):
        async with AEPClient(credentials=CREDENTIALS, settings=settings):
            pass


def test_the_context_is_the_standard_one_less_its_ca_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "keys.log"))
    ours, standard = tls.new_context(), ssl.create_default_context()
    for attribute in (
        "protocol",
        "options",
        "verify_mode",
        "verify_flags",
        "check_hostname",
        "minimum_version",
        "maximum_version",
        "post_handshake_auth",
        "keylog_filename",
    ):
        assert getattr(ours, attribute) == getattr(standard, attribute), attribute
    assert ours.cert_store_stats()["x509_ca"] == 0


@pytest.mark.slow
def test_a_library_import_leaves_aiohttp_as_it_is() -> None:
    """Only the command skips aiohttp's CA loading: a program that imports asyncdl may have
    other aiohttp users that rely on aiohttp's defaults."""
    script = (
        "import asyncdl\n"
        "asyncdl.download\n"
        "import aiohttp.connector\n"
        "print(aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()['x509_ca'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == ssl.create_default_context().cert_store_stats()["x509_ca"]


def test_there_is_no_setting_to_skip_verification() -> None:
    fields = set(DownloadSettings.__dataclass_fields__)
    assert not {f for f in fields if "verify" in f and "parquet" not in f}
    assert not {f for f in fields if "insecure" in f or f == "ssl"}
