"""Walking the API's listings lazily: Catalog batches, a batch's files, paginated directories.

Everything here is an async generator that fetches the next page only when the consumer asks for
more, so a listing of 10,000 parts is never held whole and downloads start with the first page.
Names from the server are checked here, once, before they can become paths.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote_plus, urlsplit, urlunsplit

from .client import AEPClient
from .errors import (
    AsyncdlError,
    NoBatchError,
    NotFoundError,
    ProtocolError,
    UnsafeNameError,
)
from .models import CATALOG_PATH, EXPORT_PATH, MARKER_NAMES, Batch, BatchMetrics, DataSetFile, Part

__all__ = [
    "Marker",
    "Rejected",
    "check_name",
    "get_batch",
    "iter_batches",
    "iter_dataset_files",
    "iter_parts",
    "latest_batches",
]

log = logging.getLogger(__name__)

CATALOG_PAGE_MAX = 100
PAGE_MAX = 100  # Data Access directory pages: AEP's maximum limit
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RESERVED = frozenset({".", ".."})


@dataclass(frozen=True, kw_only=True, slots=True)
class Marker:
    """A ``_SUCCESS``-style bookkeeping entry: listed, never downloaded."""

    batch_id: str
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Rejected:
    """A listing entry the client refuses (unsafe name, foreign origin); reported, not fetched."""

    batch_id: str
    name: str
    error: AsyncdlError


Entry = Part | Marker | Rejected


def check_name(name: str) -> str:
    """Return ``name`` if it is one safe path component on every OS, else raise UnsafeNameError."""
    if not name:
        raise UnsafeNameError(name, "empty")
    if name in _RESERVED:
        raise UnsafeNameError(name, "a relative directory reference")
    if "/" in name or "\\" in name:
        raise UnsafeNameError(name, "contains a path separator")
    if _DRIVE.match(name):
        raise UnsafeNameError(name, "looks like a drive letter")
    if _CONTROL.search(name):
        raise UnsafeNameError(name, "contains NUL or control characters")
    return name


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _batch_from(batch_id: str, body: Any) -> Batch:
    if not isinstance(body, dict):
        raise ProtocolError(f"Catalog batch {batch_id} is not an object")
    metrics = body.get("metrics") if isinstance(body.get("metrics"), dict) else {}
    assert isinstance(metrics, dict)
    dataset_id = None
    for related in body.get("relatedObjects") or []:
        if isinstance(related, dict) and related.get("type") == "dataSet":
            dataset_id = related.get("id")
    return Batch(
        id=str(body.get("id") or batch_id),
        status=str(body.get("status", "")),
        dataset_id=dataset_id,
        created_ms=_int(body.get("created")),
        metrics=BatchMetrics(
            output_byte_size=_int(metrics.get("outputByteSize")),
            output_record_count=_int(metrics.get("outputRecordCount")),
            output_file_count=_int(metrics.get("outputFileCount")),
        ),
    )


async def iter_batches(
    client: AEPClient,
    dataset_id: str,
    *,
    status: str | None = "success",
    limit: int | None = None,
    created_client: str | None = "acp_foundation_push",
    created_after_ms: int | None = None,
    newest_first: bool = True,
) -> AsyncIterator[Batch]:
    """Catalog batches of a dataset, newest first, paging with ``start`` until a short page.

    ``status`` and ``created_client`` default to the seed's query (Customer AI's scoring runs);
    pass ``None`` to see every batch.
    """
    url = client.api_url(f"{CATALOG_PATH}/batches")
    start = 0
    remaining = limit
    while remaining is None or remaining > 0:
        page_size = CATALOG_PAGE_MAX if remaining is None else min(remaining, CATALOG_PAGE_MAX)
        params = {
            "dataSet": dataset_id,
            "orderBy": "desc:created" if newest_first else "asc:created",
            "limit": str(page_size),
            "start": str(start),
        }
        if created_client:
            params["createdClient"] = created_client
        if status:
            params["status"] = status
        if created_after_ms is not None:
            params["createdAfter"] = str(created_after_ms)
        body = await client.get_json(url, params=params)
        if not isinstance(body, dict):
            raise ProtocolError("Catalog /batches did not answer with an object keyed by batch id")
        for batch_id, value in body.items():
            if batch_id.startswith("_"):  # tolerate a _page block some Catalog answers carry
                continue
            yield _batch_from(batch_id, value)
            if remaining is not None:
                remaining -= 1
        count = sum(1 for key in body if not key.startswith("_"))
        if count < page_size:
            return
        start += count


async def latest_batches(client: AEPClient, dataset_id: str, *, count: int) -> list[Batch]:
    """The ``count`` newest successful batches; NoBatchError says whether the dataset exists."""
    batches = [b async for b in iter_batches(client, dataset_id, limit=count)]
    if batches:
        return batches
    try:
        await client.get_json(client.api_url(f"{CATALOG_PATH}/dataSets/{quote(dataset_id)}"))
    except NotFoundError as exc:
        raise NoBatchError(f"dataset {dataset_id} not found in sandbox") from exc
    raise NoBatchError(f"dataset {dataset_id} has no successful batch yet")


async def get_batch(client: AEPClient, batch_id: str) -> Batch:
    """One batch by id (for ``--batch``)."""
    url = client.api_url(f"{CATALOG_PATH}/batches/{quote(batch_id)}")
    try:
        body = await client.get_json(url)
    except NotFoundError as exc:
        raise NoBatchError(f"batch {batch_id} not found") from exc
    if isinstance(body, dict) and batch_id in body:
        return _batch_from(batch_id, body[batch_id])
    if isinstance(body, dict) and "id" in body:
        return _batch_from(batch_id, body)
    raise NoBatchError(f"batch {batch_id} not found")


def _href(item: Any) -> str | None:
    try:
        href = item["_links"]["self"]["href"]
    except (KeyError, TypeError):
        return None
    return href if isinstance(href, str) else None


def _next_href(body: Any) -> str | None:
    try:
        href = body["_links"]["next"]["href"]
    except (KeyError, TypeError):
        return None
    return href if isinstance(href, str) and href else None


async def _iter_pages(client: AEPClient, url: str) -> AsyncIterator[list[Any]]:
    """Each page's ``data`` list, following ``_links.next`` (the reliable signal)."""
    seen: set[str] = set()
    next_url: str | None = url
    while next_url is not None:
        if next_url in seen:  # a server that links a page to itself must not loop us forever
            raise ProtocolError(f"listing loops back to {next_url}")
        seen.add(next_url)
        log.debug("listing page %s", next_url)
        body = await client.get_json(next_url)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProtocolError(f"{next_url} answered without a data list")
        yield data
        next_url = _next_href(body)


async def iter_dataset_files(client: AEPClient, batch_id: str) -> AsyncIterator[DataSetFile]:
    """The batch's ``dataSetFileId`` directories, across pages."""
    url = client.api_url(f"{EXPORT_PATH}/batches/{quote(batch_id)}/files")
    try:
        async for page in _iter_pages(client, url):
            for item in page:
                file_id = item.get("dataSetFileId") if isinstance(item, dict) else None
                if not isinstance(file_id, str):
                    raise ProtocolError(f"batch {batch_id} lists a file without dataSetFileId")
                href = _href(item) or client.api_url(f"{EXPORT_PATH}/files/{quote(file_id)}")
                yield DataSetFile(id=file_id, href=href)
    except NotFoundError as exc:
        raise NoBatchError(f"batch {batch_id} has no files in Data Access") from exc


def _largest_pages(href: str) -> str:
    """Ask for AEP's largest directory page: a 400-part batch is 4 round trips, not 16.

    The server's ``_links.next`` hrefs carry the limit on from there.
    """
    parts = urlsplit(href)
    if "limit" in parse_qs(parts.query):
        return href
    query = f"{parts.query}&limit={PAGE_MAX}" if parts.query else f"limit={PAGE_MAX}"
    return urlunsplit(parts._replace(query=query))


def _is_directory(href: str) -> bool:
    """A file's href names it with ?path=; a nested dataSetFileId (a directory) has no path.

    The same answer as ``"path" not in parse_qs(urlsplit(href).query)`` (a field needs "=" and
    a value; its name is unquoted), without building a dict per listed entry.
    """
    query = href.partition("#")[0].partition("?")[2]
    for field in query.split("&"):
        name, _, value = field.partition("=")
        if value and (unquote_plus(name) if "%" in name or "+" in name else name) == "path":
            return False
    return True


async def iter_parts(
    client: AEPClient, batch_id: str, *, max_depth: int = 8
) -> AsyncIterator[Entry]:
    """Every entry of every directory of a batch, page by page, recursing into directories."""

    async def walk(directory: DataSetFile, depth: int) -> AsyncIterator[Entry]:
        async for page in _iter_pages(client, _largest_pages(directory.href)):
            for item in page:
                name = item.get("name") if isinstance(item, dict) else None
                href = _href(item)
                if not isinstance(name, str) or href is None:
                    raise ProtocolError(f"{directory.href} lists an entry without name or href")
                if _is_directory(href):
                    if depth >= max_depth:
                        raise ProtocolError(f"directories nested deeper than {max_depth}")
                    sub_id = urlsplit(href).path.rstrip("/").rsplit("/", 1)[-1]
                    async for entry in walk(DataSetFile(id=sub_id, href=href), depth + 1):
                        yield entry
                    continue
                if name in MARKER_NAMES:
                    yield Marker(batch_id=batch_id, name=name)
                    continue
                try:
                    check_name(name)
                except UnsafeNameError as exc:
                    yield Rejected(batch_id=batch_id, name=name, error=exc)
                    continue
                size = _int(item.get("length"))
                if size is None or size < 0:
                    raise ProtocolError(f"{name} has no usable length: {item.get('length')!r}")
                yield Part(
                    batch_id=batch_id,
                    dataset_file_id=directory.id,
                    name=name,
                    relpath=name,
                    size=size,
                    href=href,
                )

    async for dataset_file in iter_dataset_files(client, batch_id):
        async for entry in walk(dataset_file, 0):
            yield entry
