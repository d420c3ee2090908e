"""A batch's files: its dataSetFiles, and every entry of every directory below them.

What an entry is: a part, a marker (``_SUCCESS``, Spark's commit files), a sub-directory or a
further dataSetFile (the tutorial's case 2: no ``name``, no ``length``), or the file itself when
``GET /files/{id}`` answers with bytes (handed on open: the bytes are never asked for twice). An
entry without a usable length is sized with HEAD, a few at a time. One odd entry, or a
dataSetFile that cannot be listed, is that entry's problem (``Rejected``); the rest goes on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import anyio

from ..client import AEPClient, ByteStream, FileAnswer, Page
from ..errors import (
    RUN_ENDING,
    AsyncdlError,
    NoBatchError,
    NotFoundError,
    ProtocolError,
    UnsafeNameError,
)
from ..models import EXPORT_PATH, DataSetFile, Part
from ..tasks import single_error
from .catalog import metric
from .names import check_relpath, is_metadata
from .pages import data_of, file_url, href_of, is_directory, largest_pages, pages

__all__ = ["Entry", "Marker", "OpenedPart", "Rejected", "iter_dataset_files", "iter_parts"]

log = logging.getLogger(__name__)

#: HEAD requests in flight for the entries of one page that came without a usable length.
HEAD_CONCURRENCY = 8


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


async def iter_dataset_files(client: AEPClient, batch_id: str) -> AsyncIterator[DataSetFile]:
    """The batch's ``dataSetFileId`` directories, across pages, each once."""
    url = client.api_url(f"{EXPORT_PATH}/batches/{quote(batch_id)}/files")
    seen: set[str] = set()
    try:
        async for page in pages(client, url):
            for item in data_of(page):
                file_id = item.get("dataSetFileId") if isinstance(item, dict) else None
                if not isinstance(file_id, str) or not file_id:
                    raise ProtocolError(f"batch {batch_id} lists a file without dataSetFileId")
                if file_id in seen:
                    continue
                seen.add(file_id)
                yield DataSetFile(
                    id=file_id, href=href_of(item, page.url) or file_url(client, file_id)
                )
    except NotFoundError as exc:
        raise NoBatchError(f"batch {batch_id} has no files in Data Access") from exc


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
            answer = await self.client.get_page_or_file(largest_pages(directory.href))
            if isinstance(answer, FileAnswer):
                yield self._single_file(directory, answer)
                return
            async for page in pages(self.client, directory.href, first=answer):
                items = [self._item(item, page, directory) for item in data_of(page)]
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
        href = href_of(item, page.url)
        nested_id = item.get("dataSetFileId")
        if not isinstance(name, str) and isinstance(nested_id, str) and nested_id:
            # The tutorial's case 2: a directory listing further dataSetFiles.
            return DataSetFile(id=nested_id, href=href or file_url(self.client, nested_id))
        if not isinstance(name, str) or not name:
            error = ProtocolError("an entry with neither a name nor a dataSetFileId")
            return Rejected(batch_id=self.batch_id, name=where, error=error)
        if href is None:
            href = file_url(self.client, directory.id, name)  # the documented shape
        elif is_directory(href):
            sub_id = urlsplit(href).path.rstrip("/").rsplit("/", 1)[-1]
            return DataSetFile(id=sub_id, href=href)
        if is_metadata(name):
            return Marker(batch_id=self.batch_id, name=name)
        try:
            check_relpath(name)
        except UnsafeNameError as exc:
            return Rejected(batch_id=self.batch_id, name=name, error=exc)
        size = metric(item.get("length"))
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
