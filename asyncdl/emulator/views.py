"""The JSON the emulated API answers and the index it is built from: Catalog batches and
datasets, Data Access batch files and directory pages, gateway and RFC 7807 error bodies.

Pure functions of the ``World`` and the request's origin; no HTTP objects. Shapes follow
/work/shared/aep-api.md and Adobe's published examples (absolute hrefs with an explicit port,
``length`` as a string, ``_SUCCESS`` markers listed like files).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from asyncdl.emulator.data import CREATED_CLIENT, TruthBatch, TruthDataset, TruthPart, World
from asyncdl.models import EXPORT_PATH

__all__ = [
    "HOSTILE_BYTES",
    "HOSTILE_NAMES",
    "MARKER_NAME",
    "Entry",
    "Index",
    "batch_files_json",
    "batch_json",
    "dataset_json",
    "directory_json",
    "gateway_error",
    "problem",
    "select_batches",
]

MARKER_NAME = "_SUCCESS"
#: Names a careless client would turn into writes outside its output directory.
HOSTILE_NAMES = (
    "../escape.parquet",
    "/etc/evil.parquet",
    "scoreDate=x/../../escape.parquet",
    "C:evil.parquet",
    "bad\x00nul.parquet",
    "ctl\x07.parquet",
    "..",
)
HOSTILE_BYTES = b"asyncdl emulator: a hostile entry, never a part\n"


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One item of a directory listing: a part, a sub-directory, or a few literal bytes."""

    name: str
    length: int
    part: TruthPart | None = None
    subdir: str | None = None  # the dataSetFileId it lists
    blob: bytes | None = None  # markers and hostile entries


_MARKER = Entry(name=MARKER_NAME, length=0, blob=b"")
_HOSTILE = tuple(
    Entry(name=n, length=len(HOSTILE_BYTES), blob=HOSTILE_BYTES) for n in HOSTILE_NAMES
)


class Index:
    """Lookups by id over the world: datasets, batches, directories and their entries."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.datasets: dict[str, TruthDataset] = {d.id: d for d in world.datasets}
        self.batches: dict[str, TruthBatch] = {}
        self.predecessors: dict[str, list[str]] = {}
        self._directories: dict[str, tuple[Entry, ...]] = {}
        self._by_name: dict[str, dict[str, Entry]] = {}
        for dataset in world.datasets:
            previous: str | None = None
            for batch in dataset.batches:
                self.batches[batch.id] = batch
                self.predecessors[batch.id] = [previous] if previous else []
                if batch.status == "success":
                    previous = batch.id
                self._index_batch(batch)

    def _index_batch(self, batch: TruthBatch) -> None:
        for file in batch.files:
            listings: dict[str, list[Entry]] = {file.dataset_file_id: []}
            for part in file.parts:
                entries = listings.setdefault(part.directory, [])
                entries.append(Entry(name=part.name, length=part.size, part=part))
            own = listings[file.dataset_file_id]
            for directory in listings:
                if directory != file.dataset_file_id:
                    name = directory.removeprefix(f"{file.dataset_file_id}-")
                    own.append(Entry(name=name, length=0, subdir=directory))
            for directory, entries in listings.items():
                self._directories[directory] = tuple(entries)
                self._by_name[directory] = {e.name: e for e in entries}

    def entries(self, directory: str, *, hostile: bool) -> list[Entry] | None:
        """The full listing of ``directory`` (markers last), or None when it does not exist."""
        base = self._directories.get(directory)
        if base is None:
            return None
        return [*base, *(_HOSTILE if hostile else ()), _MARKER]

    def lookup(self, directory: str, name: str, *, hostile: bool) -> Entry | None:
        """The entry ``name`` of ``directory`` as a download would find it."""
        entries = self._by_name.get(directory)
        if entries is None:
            return None
        if name == MARKER_NAME:
            return _MARKER
        if hostile:
            for entry in _HOSTILE:
                if entry.name == name:
                    return entry
        return entries.get(name)

    def dataset_of(self, batch: TruthBatch) -> TruthDataset:
        return self.datasets[batch.dataset_id]


def gateway_error(code: str, message: str) -> dict[str, str]:
    """The API gateway's error body (401/403/400 before any service is reached)."""
    return {"error_code": code, "message": message}


def problem(*, status: int, title: str, detail: str, code: str) -> dict[str, Any]:
    """An RFC 7807 body as AEP's services send it."""
    return {
        "type": f"https://ns.adobe.com/aep/errors/{code}",
        "status": status,
        "title": title,
        "detail": detail,
    }


def batch_json(
    index: Index, batch: TruthBatch, *, org_id: str, wrong_metrics: bool
) -> dict[str, Any]:
    """One Catalog batch, shaped like the Customer AI example in Adobe's docs."""
    created = batch.created_ms
    body: dict[str, Any] = {
        "id": batch.id,
        "externalId": batch.id,
        "status": batch.status,
        "relatedObjects": [{"type": "dataSet", "id": batch.dataset_id}],
        "replay": {
            "predecessors": index.predecessors.get(batch.id, []),
            "reason": f"Replacing for {batch.score_date.isoformat()}",
            "predecessorListingType": "IMMEDIATE",
        },
        "inputFormat": {"format": "parquet"},
        "imsOrg": org_id,
        "started": created + 591,
        "completed": created + 11_518,
        "created": created,
        "createdClient": CREATED_CLIENT,
        "createdUser": "sensei_exp_customerai@AdobeID",
        "updatedUser": "acp_foundation_dataTracker@AdobeID",
        "updated": created + 12_365,
        "version": "1.0.5",
    }
    if batch.status == "success":
        size, rows = batch.size, batch.rows
        body["metrics"] = {
            "partitionCount": 1,
            "outputByteSize": size + (1 if wrong_metrics else 0),
            "inputFileCount": -1,
            "inputByteSize": size + 668,
            "outputRecordCount": rows + (1 if wrong_metrics else 0),
            "outputFileCount": len(batch.parts),
            "inputRecordCount": rows,
        }
    else:
        body["metrics"] = {"partitionCount": 0, "inputFileCount": -1}
        body["errors"] = [
            {
                "code": "INGEST-1212-400",
                "description": "Scoring run failed before writing its output (emulated).",
            }
        ]
    return body


def dataset_json(index: Index, dataset: TruthDataset, *, org_id: str) -> dict[str, Any]:
    """``GET /dataSets/{id}``: an object keyed by the dataset id."""
    body: dict[str, Any] = {
        "name": dataset.name,
        "description": "Customer AI scores (emulated)",
        "imsOrg": org_id,
        "tags": {"adobe/pqs/table": [dataset.name.lower().replace(" ", "_")]},
        "version": "1.0.3",
        "created": dataset.created_ms,
        "updated": dataset.batches[-1].created_ms if dataset.batches else dataset.created_ms,
        "createdClient": CREATED_CLIENT,
        "createdUser": "sensei_exp_customerai@AdobeID",
        "updatedUser": "acp_foundation_dataTracker@AdobeID",
        "viewId": dataset.view_id,
        "files": f"@/dataSetFiles?dataSetId={dataset.id}",
        "schemaRef": {
            "id": dataset.schema_id,
            "contentType": "application/vnd.adobe.xed+json;version=1",
        },
    }
    if dataset.batches:
        body["lastBatchId"] = dataset.batches[-1].id
        body["lastBatchStatus"] = dataset.batches[-1].status
    successes = [b for b in dataset.batches if b.status == "success"]
    if successes:
        body["lastSuccessfulBatch"] = successes[-1].id
    return {dataset.id: body}


def _page_links(
    base: str, *, start: int, limit: int, total: int, templated: bool
) -> dict[str, Any]:
    links: dict[str, Any] = {}
    if start + limit < total:
        links["next"] = {"href": f"{base}?start={start + limit}&limit={limit}"}
    if templated:
        links["page"] = {"href": f"{base}?start={{start}}&limit={{limit}}", "templated": True}
    return links


def batch_files_json(
    batch: TruthBatch, dataset: TruthDataset, *, origin: str, start: int, limit: int
) -> dict[str, Any]:
    """``GET /batches/{id}/files``: one page of the batch's dataSetFiles."""
    files = batch.files[start : start + limit]
    data = []
    for number, file in enumerate(files, start=start):
        stamp = str(batch.created_ms + 5_000 + number)
        data.append(
            {
                "dataSetFileId": file.dataset_file_id,
                "dataSetViewId": dataset.view_id,
                "version": "1.0.0",
                "created": stamp,
                "updated": stamp,
                "isValid": False,
                "_links": {"self": {"href": f"{origin}{EXPORT_PATH}/files/{file.dataset_file_id}"}},
            }
        )
    body: dict[str, Any] = {"data": data, "_page": {"limit": limit, "count": len(data)}}
    base = f"{origin}{EXPORT_PATH}/batches/{batch.id}/files"
    links = _page_links(base, start=start, limit=limit, total=len(batch.files), templated=False)
    if links:
        body["_links"] = links
    return body


def directory_json(
    entries: Sequence[Entry],
    directory: str,
    *,
    origin: str,
    part_origin: str,
    start: int,
    limit: int,
) -> dict[str, Any]:
    """``GET /files/{id}``: one page of a directory; parts (and markers) carry ``?path=``."""
    data = []
    for entry in entries[start : start + limit]:
        if entry.subdir is not None:
            href = f"{origin}{EXPORT_PATH}/files/{entry.subdir}"
        else:
            # Only real parts move to a foreign origin: that is where a leaked credential hurts.
            host = part_origin if entry.part is not None else origin
            href = f"{host}{EXPORT_PATH}/files/{directory}?path={quote(entry.name, safe='')}"
        data.append(
            {"name": entry.name, "length": str(entry.length), "_links": {"self": {"href": href}}}
        )
    base = f"{origin}{EXPORT_PATH}/files/{directory}"
    return {
        "data": data,
        "_page": {"limit": limit, "count": len(data)},
        "_links": _page_links(base, start=start, limit=limit, total=len(entries), templated=True),
    }


def select_batches(
    index: Index,
    *,
    dataset: str | None,
    created_client: str | None,
    status: str | None,
    batch_id: str | None,
    created_after: int | None,
    created_before: int | None,
    newest_first: bool,
) -> list[TruthBatch]:
    """Catalog's filters, then its order (ties by id, so paging is stable)."""
    chosen: Iterable[TruthBatch] = index.batches.values()
    if dataset is not None:
        chosen = (b for b in chosen if b.dataset_id == dataset)
    if created_client is not None:
        chosen = (b for b in chosen if created_client == CREATED_CLIENT)
    if status is not None:
        chosen = (b for b in chosen if b.status == status)
    if batch_id is not None:
        chosen = (b for b in chosen if b.id == batch_id)
    if created_after is not None:
        chosen = (b for b in chosen if b.created_ms > created_after)
    if created_before is not None:
        chosen = (b for b in chosen if b.created_ms < created_before)
    return sorted(chosen, key=lambda b: (b.created_ms, b.id), reverse=newest_first)
