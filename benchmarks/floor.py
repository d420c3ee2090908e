"""The aiohttp floor (issue 18): the least a client on asyncdl's mandated stack can do.

One ``aiohttp.ClientSession``, ``-j`` concurrent streams over the finished URL list the
sequential lister built (untimed, the same list aria2c and curl get) with the four AEP headers,
1 MiB ``iter_chunked`` reads, and a plain blocking ``open(...).write`` per chunk into
``--out/<name>``. Nothing else: no listing, no hashing, no progress, no fsync, no temporary name
and rename, no retries. Its output is checked like every tool's (names, sizes, PAR1), so its
CPU-seconds and wall time are what the stack itself costs for the same bytes.

Run as a script by the harness: ``floor.py --urls FILE --out DIR -j N``, where FILE is the JSON
``{"headers": {...}, "parts": [[url, name], ...]}`` written by ``peers._floor_input``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import aiohttp

READ_BYTES = 1 << 20


async def _fetch_all(
    parts: list[tuple[str, str]], headers: dict[str, str], out: Path, j: int
) -> None:
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for part in parts:
        queue.put_nowait(part)
    connector = aiohttp.TCPConnector(limit=j)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(
        headers=headers, connector=connector, timeout=timeout
    ) as session:

        async def stream() -> None:
            while not queue.empty():
                url, name = queue.get_nowait()
                async with session.get(url) as response:
                    if response.status != 200:
                        raise SystemExit(f"floor: GET {url} answered {response.status}")
                    with open(out / name, "wb") as fh:  # noqa: ASYNC230 - blocking on purpose
                        async for chunk in response.content.iter_chunked(READ_BYTES):
                            fh.write(chunk)

        await asyncio.gather(*(stream() for _ in range(j)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=Path, required=True, help="JSON: headers and [url, name]")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("-j", type=int, required=True, help="concurrent streams")
    args = parser.parse_args(argv)
    raw = json.loads(args.urls.read_text(encoding="utf-8"))
    parts = [(str(url), str(name)) for url, name in raw["parts"]]
    headers = {str(k): str(v) for k, v in raw["headers"].items()}
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(_fetch_all(parts, headers, args.out, args.j))
    return 0


if __name__ == "__main__":
    sys.exit(main())
