"""S8's destination: moto's S3 server in its own process on 127.0.0.1, one per run, and the check
of what a run left in its bucket against the listing.

The server is ``moto_server`` from the project's venv (moto[server], a dev dependency), started
on a free port and stopped with SIGTERM afterwards (it keeps every object in memory: a fresh one
per run, like the emulator). asyncdl is pointed at it only through the standard AWS variables;
the bucket is created and checked with boto3, which comes with moto (asyncdl never imports it).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

from sequential import Listing

__all__ = ["MotoProcess"]

_START_TIMEOUT_S = 60.0
_MAGIC = b"PAR1"
BUCKET = "asyncdl-bench"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class MotoProcess:
    """``moto_server`` for one run: its endpoint, the variables that point asyncdl at it."""

    def __init__(self, *, log: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    @property
    def url(self) -> str:
        return f"s3://{BUCKET}/scores"

    def __enter__(self) -> MotoProcess:
        import boto3

        server = Path(sys.executable).parent / "moto_server"
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self._stop()
                    raise OSError(f"moto_server did not start (see {self._log})") from None
                time.sleep(0.05)
        self._client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        self._client.create_bucket(Bucket=BUCKET)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def verify(self, listing: Listing) -> str | None:
        """None when the bucket holds exactly the listed parts (names, sizes, PAR1 at both
        ends) and no multipart upload is left open; else what is wrong, in a line."""
        client = self._client
        assert client is not None
        found: Counter[tuple[str, int]] = Counter()
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith(".parquet"):
                    found[(key.rsplit("/", 1)[-1], int(item["Size"]))] += 1
                    keys.append((key, int(item["Size"])))
        expected = Counter((p.name, p.size) for p in listing.parts)
        if found != expected:
            return (
                f"{sum(found.values())} parquet objects vs {len(listing.parts)} listed; "
                f"{sum((expected - found).values())} missing or wrong size, "
                f"{sum((found - expected).values())} unexpected"
            )
        for key, size in keys:
            head = client.get_object(Bucket=BUCKET, Key=key, Range="bytes=0-3")["Body"].read()
            tail = client.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={size - 4}-")
            if head != _MAGIC or tail["Body"].read() != _MAGIC:
                return f"{key} is not a whole parquet object (no PAR1 at both ends)"
        uploads = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        if uploads:
            return f"{len(uploads)} multipart uploads left open"
        return None
