"""The sequential peer: what a user's first script does, with the Python standard library only.

One ``http.client.HTTPConnection`` kept alive for everything, in the seed's order: the Catalog
query for the newest successful batch, the batch's files, every directory page by following
``_links.next`` (recursing into nested directories), then one GET per part written to disk in
1 MiB reads. Run as a script (``download`` or ``list``) so the harness can measure it as a child
process; the harness also imports ``list_parts`` to build the URL list handed to aria2c and curl
and the truth every run's output is checked against. Credentials come from the ``AEP_*``
environment variables, as for asyncdl.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

__all__ = ["ListedPart", "Listing", "Session", "download_all", "list_parts", "main"]

CATALOG_PATH = "/data/foundation/catalog"
EXPORT_PATH = "/data/foundation/export"
READ_BYTES = 1 << 20
#: Spark's zero-length bookkeeping files: listed like parts, never data.
MARKERS = frozenset({"_SUCCESS", "_committed", "_started"})


@dataclass(frozen=True, slots=True)
class ListedPart:
    """One part of the batch as the directory listing shows it."""

    name: str
    size: int
    url: str


@dataclass(frozen=True, slots=True)
class Listing:
    """A batch's parts plus what it took to list them."""

    batch_id: str
    parts: tuple[ListedPart, ...]
    requests: int  # Catalog + batch files pages + directory pages
    elapsed_s: float

    @property
    def total_bytes(self) -> int:
        return sum(p.size for p in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "requests": self.requests,
            "elapsed_s": self.elapsed_s,
            "parts": [asdict(p) for p in self.parts],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Listing:
        return cls(
            batch_id=str(raw["batch_id"]),
            parts=tuple(ListedPart(**p) for p in raw["parts"]),
            requests=int(raw["requests"]),
            elapsed_s=float(raw["elapsed_s"]),
        )


def auth_headers(env: dict[str, str] | None = None) -> dict[str, str]:
    """The four headers every AEP call carries, from the ``AEP_*`` variables."""
    env = dict(os.environ) if env is None else env
    return {
        "Authorization": f"Bearer {env['AEP_ACCESS_TOKEN']}",
        "x-api-key": env["AEP_API_KEY"],
        "x-gw-ims-org-id": env["AEP_ORG_ID"],
        "x-sandbox-name": env.get("AEP_SANDBOX", "prod"),
    }


#: What the harness's untimed lister retries (``Session(retries=...)``): the emulator's injected
#: 5xx and 429s (S7b), which it gives at most twice per URL.
_RETRIED = frozenset({429, 500, 502, 503, 504})


class Session:
    """One keep-alive HTTP connection to the API's origin; every request goes through it.

    ``retries`` is 0 for the sequential client (a user's first script stops at the first error);
    the harness's untimed lister retries an injected 5xx or 429 after its ``Retry-After``.
    """

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        timeout_s: float = 60.0,
        *,
        retries: int = 0,
    ) -> None:
        split = urlsplit(base_url)
        if split.scheme != "http" or split.hostname is None:
            raise SystemExit(f"sequential: only http:// base URLs are supported, got {base_url}")
        self.netloc = split.netloc
        self.base_path = split.path.rstrip("/")
        self.headers = headers
        self.requests = 0
        self.retried = 0
        self._retries = retries
        self._conn = http.client.HTTPConnection(split.hostname, split.port or 80, timeout=timeout_s)

    def close(self) -> None:
        self._conn.close()

    def _target(self, url: str) -> str:
        """Path and query of ``url``, which must be on this connection's origin."""
        split = urlsplit(url)
        if split.netloc and split.netloc != self.netloc:
            raise SystemExit(f"sequential: {url} is not on {self.netloc}")
        return split.path + (f"?{split.query}" if split.query else "")

    def open(self, url: str) -> http.client.HTTPResponse:
        """GET ``url``; the caller reads the body to the end before the next request."""
        self.requests += 1
        for attempt in range(self._retries + 1):
            self._conn.request("GET", self._target(url), headers=self.headers)
            response = self._conn.getresponse()
            if response.status not in _RETRIED or attempt == self._retries:
                break
            response.read()
            self.retried += 1
            try:
                wait = float(response.getheader("Retry-After") or "0.1")
            except ValueError:
                wait = 1.0
            time.sleep(min(max(wait, 0.1), 10.0))
        if response.status != 200:
            body = response.read(500)
            raise SystemExit(f"sequential: GET {url} answered {response.status}: {body!r}")
        return response

    def get_json(self, url: str) -> Any:
        with self.open(url) as response:
            return json.loads(response.read())

    def api_url(self, path: str, params: dict[str, str] | None = None) -> str:
        query = f"?{urlencode(params)}" if params else ""
        return f"http://{self.netloc}{self.base_path}{path}{query}"


def _pages(session: Session, url: str) -> list[Any]:
    """Every item of a paginated listing, following ``_links.next``."""
    items: list[Any] = []
    next_url: str | None = url
    while next_url:
        body = session.get_json(next_url)
        items.extend(body.get("data") or [])
        next_url = ((body.get("_links") or {}).get("next") or {}).get("href")
    return items


def list_parts(session: Session, dataset_id: str) -> Listing:
    """The newest successful batch of ``dataset_id`` and every part in it (seed's flow)."""
    started = time.perf_counter()
    first = session.requests
    params = {
        "dataSet": dataset_id,
        "createdClient": "acp_foundation_push",
        "status": "success",
        "orderBy": "desc:created",
        "limit": "1",
    }
    batches = session.get_json(session.api_url(f"{CATALOG_PATH}/batches", params))
    batch_id = next(iter(batches))
    files = _pages(session, session.api_url(f"{EXPORT_PATH}/batches/{quote(batch_id)}/files"))
    parts: list[ListedPart] = []
    pending = [item["_links"]["self"]["href"] for item in files]
    while pending:
        directory = pending.pop(0)
        for entry in _pages(session, directory):
            href = entry["_links"]["self"]["href"]
            if "path" not in parse_qs(urlsplit(href).query):
                pending.append(href)  # a nested dataSetFileId
            elif entry["name"] not in MARKERS:
                parts.append(ListedPart(name=entry["name"], size=int(entry["length"]), url=href))
    return Listing(
        batch_id=batch_id,
        parts=tuple(parts),
        requests=session.requests - first,
        elapsed_s=time.perf_counter() - started,
    )


def download_all(session: Session, listing: Listing, out_dir: Path) -> int:
    """GET every part into ``out_dir/<name>`` in 1 MiB reads; returns the bytes written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for part in listing.parts:
        written = 0
        with session.open(part.url) as response, (out_dir / part.name).open("wb") as fh:
            while chunk := response.read(READ_BYTES):
                fh.write(chunk)
                written += len(chunk)
        if written != part.size:
            raise SystemExit(f"sequential: {part.name}: {written} bytes, listed {part.size}")
        total += written
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("download", "list"))
    parser.add_argument("dataset_id")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--out", type=Path, help="download: the output directory")
    parser.add_argument("--json", type=Path, help="list: where to write the listing")
    args = parser.parse_args(argv)
    session = Session(args.base_url, auth_headers())
    try:
        listing = list_parts(session, args.dataset_id)
        if args.command == "list":
            text = json.dumps(listing.to_json())
            if args.json is None:
                sys.stdout.write(text + "\n")
            else:
                args.json.write_text(text, encoding="utf-8")
            return 0
        if args.out is None:
            parser.error("download needs --out")
        download_all(session, listing, args.out)
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
