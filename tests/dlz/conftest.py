"""The landing zone tests' world: one Azurite per module, a fresh ``dlz-destination`` container
per test filled with exports of the emulator's batches, the proxy in front of it that the
emulator's SASUri points to, and a read+list SAS minted from Azurite's development key."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio.from_thread
import pytest

from asyncdl.emulator import AzureLandingZone, TruthBatch
from asyncdl.layout import export_folder
from tests.cloud import AZURITE_ACCOUNT, Azurite, no_cloud, unique
from tests.dlz.proxy import StoreProxy
from tests.helpers import DATASET

FOLDER = "cmle/egress"


@pytest.fixture(autouse=True)
def hermetic_cloud(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    no_cloud(monkeypatch, tmp_path_factory.mktemp("no-cloud"))


@dataclass
class Zone:
    """A landing zone container in Azurite, reached through ``proxy``."""

    azurite: Azurite
    container: str
    proxy: StoreProxy
    token: str
    written: dict[str, bytes] = field(default_factory=dict)  # key -> bytes, as put

    @property
    def signature(self) -> str:
        """The SAS's signature as it travels (percent-encoded), for the leak checks."""
        return self.token.split("sig=", 1)[1].split("&", 1)[0]

    def answer(self, token: str | None = None) -> AzureLandingZone:
        """What the emulator's credentials call hands out: the proxy's path-style SASUri."""
        endpoint = f"{self.proxy.url}/{AZURITE_ACCOUNT}"
        uri = self.azurite.sas_uri(self.container, token or self.token, endpoint=endpoint)
        return AzureLandingZone(sas_uri=uri, container=self.container)

    def key(self, name: str, *, time: str, folder: str = FOLDER, dataset: str = DATASET) -> str:
        return f"{folder}/{dataset}/{export_folder(time)}/{name}".lstrip("/")

    def put(self, key: str, data: bytes) -> str:
        self.written[key] = data
        return self.azurite.put_blob(self.container, key, data)

    def export(
        self,
        batch: TruthBatch,
        time: str,
        *,
        folder: str = FOLDER,
        manifest: bool = True,
        withheld: int = 0,
        extra: Mapping[str, bytes] | None = None,
        dataset: str = DATASET,
    ) -> dict[str, bytes]:
        """``batch``'s parts as the export at ``time`` (and ``extra`` files), with the export's
        manifest listing all of them; the last ``withheld`` files are not written (a partial
        export). Returns name -> bytes of every file the export should hold."""
        files = {part.name: part.path.read_bytes() for part in batch.parts}
        files.update(extra or {})
        names = sorted(files)
        for name in names[: len(names) - withheld]:
            self.put(self.key(name, time=time, folder=folder, dataset=dataset), files[name])
        if manifest:
            sink = f"/{folder}/{dataset}/{export_folder(time)}".replace("//", "/")
            document = {
                "flowRunId": str(uuid.uuid4()),
                "scheduledTime": f"{time[:4]}-{time[4:6]}-{time[6:8]}T{time[8:10]}:00:00Z",
                "exportResults": [
                    {"sinkPath": sink, "name": name, "size": len(files[name])} for name in names
                ],
            }
            name = f"manifest-{uuid.uuid4()}-{document['flowRunId']}.json"
            self.put(
                self.key(name, time=time, folder=folder, dataset=dataset),
                json.dumps(document).encode(),
            )
        return files


def _zone(azurite: Azurite, proxy: StoreProxy) -> Zone:
    container = azurite.container(unique("dlz-destination"))
    return Zone(azurite=azurite, container=container, proxy=proxy, token=azurite.sas(container))


@pytest.fixture
async def zone(azurite_server: Azurite) -> AsyncIterator[Zone]:
    """A landing zone whose proxy runs on the test's own event loop."""
    proxy = StoreProxy(upstream=azurite_server.endpoint.rsplit("/", 1)[0])
    async with proxy.serving():
        yield _zone(azurite_server, proxy)


@pytest.fixture
def threaded_zone(azurite_server: Azurite) -> Iterator[Zone]:
    """The same, its proxy on a loop of its own (for CLI tests, whose command runs its own)."""
    proxy = StoreProxy(upstream=azurite_server.endpoint.rsplit("/", 1)[0])
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(proxy.serving()),
    ):
        yield _zone(azurite_server, proxy)


def files_below(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (relative path -> bytes), asyncdl's own records included."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
