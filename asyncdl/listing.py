"""Walking the API's listings lazily: Catalog batches, a batch's files, paginated directories.

Everything here is an async generator that fetches the next page only when the consumer asks for
more, so a listing of 10,000 parts is never held whole and downloads start with the first page.
Names from the server are checked here, once, before they can become paths; every href is
resolved against the URL of the page it came from before the client's origin lock sees it.

Every shape Adobe's spec allows is walked (``/work/shared/aep-api.md``, Data Access): pages linked
by ``_links.next`` or only by ``start``/``limit``, a dataSetFile that answers with the file itself,
directories that list further dataSetFiles, partition folders in names, Spark's commit files,
entries without a ``length``. One odd entry, or a dataSetFile that cannot be listed, is reported
as that entry's problem (``Rejected``) while the rest of the batch goes on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode, urljoin, urlsplit, urlunsplit

import anyio

from .client import AEPClient, ByteStream, FileAnswer, Page
from .errors import (
    RUN_ENDING,
    AsyncdlError,
    NoBatchError,
    NotFoundError,
    ProtocolError,
    UnsafeNameError,
)
from .models import CATALOG_PATH, EXPORT_PATH, Batch, BatchMetrics, DataSetFile, Part
from .tasks import single_error

__all__ = [
    "Marker",
    "OpenedPart",
    "Rejected",
    "check_name",
    "check_relpath",
    "get_batch",
    "is_metadata",
    "iter_batches",
    "iter_dataset_files",
    "iter_parts",
    "latest_batches",
]

log = logging.getLogger(__name__)

CATALOG_PAGE_MAX = 100
PAGE_MAX = 100  # Data Access pages (batch files and directories): AEP's maximum limit
#: HEAD requests in flight for the entries of one page that came without a usable length.
HEAD_CONCURRENCY = 8
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RESERVED = frozenset({".", ".."})


@dataclass(frozen=True, kw_only=True, slots=True)
class Marker:
    """A bookkeeping entry (``_SUCCESS``, Spark's ``_started_*``/``_committed_*``): never data."""

    batch_id: str
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Rejected:
    """A listing entry that cannot be fetched: an unsafe name, no usable length, or a whole
    dataSetFile whose listing failed. Reported (the batch then fails), never silently skipped."""

    batch_id: str
    name: str
    error: AsyncdlError


@dataclass(frozen=True, kw_only=True, slots=True)
class OpenedPart:
    """A dataSetFile that answered its listing call with the file itself, still open.

    The consumer owns ``stream``: it streams the part from it (the bytes are never asked for
    twice) or closes it.
    """

    part: Part
    stream: ByteStream


Entry = Part | OpenedPart | Marker | Rejected


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


def check_relpath(name: str) -> str:
    """``name`` if every ``/``-separated component is safe (partition folders such as
    ``scoreDate=2020-04-09/part-0.parquet``), so the path stays inside the batch directory."""
    if not name:
        raise UnsafeNameError(name, "empty")
    if "\\" in name:
        raise UnsafeNameError(name, "contains a backslash")
    for component in name.split("/"):
        try:
            check_name(component)
        except UnsafeNameError as exc:
            raise UnsafeNameError(name, f"component {component!r} is {_why(exc)}") from None
    return name


def _why(exc: UnsafeNameError) -> str:
    return str(exc).rsplit(": ", 1)[-1]


def is_metadata(name: str) -> bool:
    """Hadoop's hidden-file rule, which Spark and every parquet reader follow: a file whose name
    starts with ``_`` or ``.`` (``_SUCCESS``, ``_started_<tid>``, ``_committed_<tid>``, ``.crc``)
    is bookkeeping, never data."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(("_", "."))


def _metric(value: Any) -> int | None:
    """A Catalog metric as a count: ints and numeric strings; ``-1``, negatives, junk: unknown."""
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number >= 0 else None


def _batch_from(batch_id: str, body: Any) -> Batch:
    if not isinstance(body, dict):
        raise ProtocolError(f"Catalog batch {batch_id} is not an object")
    raw_metrics = body.get("metrics")
    metrics: dict[str, Any] = raw_metrics if isinstance(raw_metrics, dict) else {}
    dataset_id = None
    for related in body.get("relatedObjects") or []:
        if isinstance(related, dict) and related.get("type") == "dataSet":
            dataset_id = related.get("id")
    replay = body.get("replay")
    raw_predecessors = replay.get("predecessors") if isinstance(replay, dict) else None
    listed = raw_predecessors if isinstance(raw_predecessors, list) else ()
    predecessors = tuple(p for p in listed if isinstance(p, str) and p)
    return Batch(
        id=str(body.get("id") or batch_id),
        status=str(body.get("status", "")),
        dataset_id=dataset_id,
        created_ms=_metric(body.get("created")),
        predecessors=predecessors,
        metrics=BatchMetrics(
            output_byte_size=_metric(metrics.get("outputByteSize")),
            output_record_count=_metric(metrics.get("outputRecordCount")),
            output_file_count=_metric(metrics.get("outputFileCount")),
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
    pass ``None`` to see every batch. A batch listed twice (pages that shifted while a batch
    was added) is yielded once.
    """
    url = client.api_url(f"{CATALOG_PATH}/batches")
    start = 0
    remaining = limit
    seen: set[str] = set()
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
        count = 0
        for batch_id, value in body.items():
            if batch_id.startswith("_"):  # tolerate a _page block some Catalog answers carry
                continue
            count += 1
            batch = _batch_from(batch_id, value)
            if batch.id in seen:
                continue
            seen.add(batch.id)
            yield batch
            if remaining is not None:
                remaining -= 1
                if remaining == 0:
                    return
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


# -- paging ------------------------------------------------------------------------------------


def _href(item: Any, page_url: str) -> str | None:
    """An item's ``_links.self.href``, resolved against its page (bare paths occur)."""
    try:
        href = item["_links"]["self"]["href"]
    except (KeyError, TypeError):
        return None
    return urljoin(page_url, href.strip()) if isinstance(href, str) and href.strip() else None


def _next_href(body: Any) -> str | None:
    try:
        href = body["_links"]["next"]["href"]
    except (KeyError, TypeError):
        return None
    return href.strip() if isinstance(href, str) and href.strip() else None


def _with_query(url: str, **fields: int) -> str:
    """``url`` with these query fields set (replacing any of the same name)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in fields]
    query.extend((k, str(v)) for k, v in fields.items())
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _largest_pages(href: str) -> str:
    """Ask for AEP's largest page (a 400-part batch is 4 round trips, not 16); the server's
    next links carry the limit on from there."""
    parts = urlsplit(href)
    if "limit" in dict(parse_qsl(parts.query)):
        return href
    query = f"{parts.query}&limit={PAGE_MAX}" if parts.query else f"limit={PAGE_MAX}"
    return urlunsplit(parts._replace(query=query))


def _page_limit(body: dict[str, Any], asked: int) -> int:
    """The page size the server used: ``_page.limit`` when it says (it may cap ours)."""
    page = body.get("_page")
    limit = page.get("limit") if isinstance(page, dict) else None
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        return min(limit, asked)
    return asked


def _data(page: Page) -> list[Any]:
    data = page.body.get("data") if isinstance(page.body, dict) else None
    if not isinstance(data, list):
        raise ProtocolError(f"{page.url} answered without a data list")
    return data


async def _pages(client: AEPClient, url: str, *, first: Page | None = None) -> AsyncIterator[Page]:
    """Every page of a Data Access listing that has entries, in order.

    ``_links.next`` is followed verbatim when given (``start`` may be an opaque cursor). An
    answer without any ``_links`` (the spec's unpaged example) is paged by ``start``/``limit``
    until a short page; ``_page.count`` is not used, because servers put the page size there
    as often as the total. The first empty page ends it, even if it links on, and a link back
    to a page already read ends it too: following it could only repeat entries.
    """
    asked = PAGE_MAX
    base = _largest_pages(url)
    seen = {base}
    page = first if first is not None else await client.get_page(base)
    position = 0  # entries listed so far: the next ``start`` of an unlinked listing
    linked = False  # once a page linked on, the first page that does not is the last
    while True:
        data = _data(page)
        if not data:
            return
        yield page
        position += len(data)
        body: dict[str, Any] = page.body
        link = _next_href(body)
        if link is not None:
            linked = True
            following = urljoin(page.url, link)
        elif linked or "_links" in body:
            return  # a linked listing whose last page links nowhere
        else:
            limit = _page_limit(body, asked)
            if len(data) < limit:
                return
            following = _with_query(url, start=position, limit=limit)
        if following in seen:
            log.warning("%s links back to %s; the listing ends there", page.url, following)
            return
        seen.add(following)
        log.debug("listing page %s", following)
        page = await client.get_page(following)


async def iter_dataset_files(client: AEPClient, batch_id: str) -> AsyncIterator[DataSetFile]:
    """The batch's ``dataSetFileId`` directories, across pages, each once."""
    url = client.api_url(f"{EXPORT_PATH}/batches/{quote(batch_id)}/files")
    seen: set[str] = set()
    try:
        async for page in _pages(client, url):
            for item in _data(page):
                file_id = item.get("dataSetFileId") if isinstance(item, dict) else None
                if not isinstance(file_id, str) or not file_id:
                    raise ProtocolError(f"batch {batch_id} lists a file without dataSetFileId")
                if file_id in seen:
                    continue
                seen.add(file_id)
                yield DataSetFile(
                    id=file_id, href=_href(item, page.url) or _file_url(client, file_id)
                )
    except NotFoundError as exc:
        raise NoBatchError(f"batch {batch_id} has no files in Data Access") from exc


def _file_url(client: AEPClient, file_id: str, name: str | None = None) -> str:
    url = client.api_url(f"{EXPORT_PATH}/files/{quote(file_id, safe='')}")
    return url if name is None else f"{url}?path={quote(name, safe='')}"


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


# -- directories -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class _Unsized:
    """A file entry whose listing gave no usable length: HEAD is asked before it is a Part."""

    name: str
    href: str
    directory_id: str
    listed: object  # what the listing said, for the message


class _Walk:
    """One batch's directory walk: which dataSetFiles were already walked, how deep to go."""

    def __init__(self, client: AEPClient, batch_id: str, max_depth: int) -> None:
        self.client = client
        self.batch_id = batch_id
        self.max_depth = max_depth
        self.walked: set[str] = set()

    async def dataset_file(self, directory: DataSetFile, depth: int) -> AsyncIterator[Entry]:
        """Every entry below one dataSetFile; its failure is reported, not raised."""
        if directory.id in self.walked:
            return  # listed twice (by the batch and by a directory): walked once
        self.walked.add(directory.id)
        if depth > self.max_depth:
            error = ProtocolError(f"directories nested deeper than {self.max_depth}")
            yield Rejected(batch_id=self.batch_id, name=f"dataSetFile {directory.id}", error=error)
            return
        try:
            answer = await self.client.get_page_or_file(_largest_pages(directory.href))
            if isinstance(answer, FileAnswer):
                yield self._single_file(directory, answer)
                return
            async for page in _pages(self.client, directory.href, first=answer):
                items = [self._item(item, page, directory) for item in _data(page)]
                for entry in await self._sized(items):
                    if isinstance(entry, DataSetFile):
                        async for inner in self.dataset_file(entry, depth + 1):
                            yield inner
                    else:
                        yield entry
        except RUN_ENDING:
            raise
        except AsyncdlError as exc:
            log.warning("dataSetFile %s could not be listed: %s", directory.id, exc)
            yield Rejected(
                batch_id=self.batch_id,
                name=f"dataSetFile {directory.id}",
                error=ProtocolError(f"could not be listed: {exc}"),
            )

    def _single_file(self, directory: DataSetFile, answer: FileAnswer) -> Entry:
        """``GET /files/{id}`` answered with the file: one part, named as the server says."""
        name = answer.filename or directory.id
        size = answer.stream.content_length if answer.stream.status == 200 else None
        try:
            check_relpath(name)
            if size is None:
                raise ProtocolError(f"{name}: the file answer has no Content-Length")
        except AsyncdlError as exc:
            answer.stream.close()
            return Rejected(batch_id=self.batch_id, name=name, error=exc)
        part = Part(
            batch_id=self.batch_id,
            dataset_file_id=directory.id,
            name=name,
            relpath=name,
            size=size,
            href=directory.href,
        )
        return OpenedPart(part=part, stream=answer.stream)

    def _item(
        self, item: Any, page: Page, directory: DataSetFile
    ) -> Entry | DataSetFile | _Unsized:
        """One directory entry as what it is: a part, a marker, a directory, or a problem."""
        where = f"an entry of dataSetFile {directory.id}"
        if not isinstance(item, dict):
            return Rejected(
                batch_id=self.batch_id, name=where, error=ProtocolError("not a JSON object")
            )
        name = item.get("name")
        href = _href(item, page.url)
        nested_id = item.get("dataSetFileId")
        if not isinstance(name, str) and isinstance(nested_id, str) and nested_id:
            # The tutorial's case 2: a directory listing further dataSetFiles.
            return DataSetFile(id=nested_id, href=href or _file_url(self.client, nested_id))
        if not isinstance(name, str) or not name:
            error = ProtocolError("an entry with neither a name nor a dataSetFileId")
            return Rejected(batch_id=self.batch_id, name=where, error=error)
        if href is None:
            href = _file_url(self.client, directory.id, name)  # the documented shape
        elif _is_directory(href):
            sub_id = urlsplit(href).path.rstrip("/").rsplit("/", 1)[-1]
            return DataSetFile(id=sub_id, href=href)
        if is_metadata(name):
            return Marker(batch_id=self.batch_id, name=name)
        try:
            check_relpath(name)
        except UnsafeNameError as exc:
            return Rejected(batch_id=self.batch_id, name=name, error=exc)
        size = _metric(item.get("length"))
        if size is None:
            return _Unsized(
                name=name, href=href, directory_id=directory.id, listed=item.get("length")
            )
        return self._part(directory.id, name, size, href)

    def _part(self, directory_id: str, name: str, size: int, href: str) -> Part:
        return Part(
            batch_id=self.batch_id,
            dataset_file_id=directory_id,
            name=name,
            relpath=name,
            size=size,
            href=href,
        )

    async def _sized(
        self, items: list[Entry | DataSetFile | _Unsized]
    ) -> list[Entry | DataSetFile]:
        """The page's items in order, each entry without a length asked for with HEAD (a few at
        a time); one that still has none is that entry's failure, not the batch's."""
        unsized = {i: item for i, item in enumerate(items) if isinstance(item, _Unsized)}
        found: dict[int, Entry] = {}
        limiter = anyio.CapacityLimiter(HEAD_CONCURRENCY)

        async def head(index: int, entry: _Unsized) -> None:
            async with limiter:
                try:
                    size = await self.client.content_length(entry.href)
                except RUN_ENDING:
                    raise
                except AsyncdlError as exc:
                    found[index] = self._unusable(entry, f"HEAD failed: {exc}")
                    return
            if size is None:
                found[index] = self._unusable(entry, "HEAD gives no Content-Length either")
                return
            log.info("%s: no length listed (%r); HEAD says %d", entry.name, entry.listed, size)
            found[index] = self._part(entry.directory_id, entry.name, size, entry.href)

        if unsized:
            async with single_error(), anyio.create_task_group() as tg:
                for index, entry in unsized.items():
                    tg.start_soon(head, index, entry)
        return [found[i] if isinstance(item, _Unsized) else item for i, item in enumerate(items)]

    def _unusable(self, entry: _Unsized, why: str) -> Rejected:
        error = ProtocolError(f"no usable length: the listing says {entry.listed!r}; {why}")
        return Rejected(batch_id=self.batch_id, name=entry.name, error=error)


async def iter_parts(
    client: AEPClient, batch_id: str, *, max_depth: int = 8
) -> AsyncIterator[Entry]:
    """Every entry of every directory of a batch, page by page, recursing into directories.

    An ``OpenedPart``'s stream belongs to the consumer (read it, or close it).
    """
    walk = _Walk(client, batch_id, max_depth)
    async for dataset_file in iter_dataset_files(client, batch_id):
        async for entry in walk.dataset_file(dataset_file, 0):
            yield entry
