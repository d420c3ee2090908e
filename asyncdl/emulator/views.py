"""The JSON the emulated API answers and the index it is built from: Catalog batches and
datasets, Data Access batch files and directory pages, gateway and RFC 7807 error bodies.

Pure functions of the ``World``, the served view (variants.py) and the request's origin; no HTTP
objects. Shapes follow /work/shared/aep-api.md and Adobe's published examples (absolute hrefs
with an explicit port, ``length`` as a string, ``_SUCCESS`` markers listed like files), and each
``Variants`` switch the spec allows besides them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from asyncdl.emulator.config import Variants
from asyncdl.emulator.data import CREATED_CLIENT, TruthBatch, TruthDataset, World
from asyncdl.emulator.variants import Entry, ServedBatch
from asyncdl.models import EXPORT_PATH

__all__ = [
    "BATCH_STATUSES",
    "FAILED_STATUSES",
    "Index",
    "Page",
    "batch_files_json",
    "batch_json",
    "dataset_json",
    "directory_json",
    "gateway_error",
    "nested_json",
    "problem",
    "select_batches",
]


#: The statuses Catalog documents for a batch.
BATCH_STATUSES = frozenset(
    {
        "success",
        "failure",
        "failed",
        "processing",
        "queued",
        "retrying",
        "stalled",
        "aborted",
        "loading",
        "loaded",
        "staged",
        "active",
        "staging",
        "deleted",
    }
)
#: The ones that end a batch without output: Catalog shows their ``errors``.
FAILED_STATUSES = frozenset({"failed", "failure", "aborted"})


class Index:
    """Lookups by id over the world: datasets, batches and their replay predecessors.

    A batch's predecessors are decided when it is registered, as a producer declares its
    replay when it creates the batch: the dataset's newest successful batch at that moment
    (failed batches too name it; the world's first batch and every batch of an ``append_only``
    dataset name none). A batch created earlier that succeeds later therefore replaces what
    was current when it was created. Export jobs and ``Emulator.add_batch`` add batches here;
    where a batch's parts are listed is the served view's business (variants.py), built from
    ``batches``.
    """

    def __init__(self, world: World, *, append_only: Collection[str] = ()) -> None:
        self.append_only = frozenset(append_only)  # dataset ids whose batches never replay
        self.datasets: dict[str, TruthDataset] = {}
        self.batches: dict[str, TruthBatch] = {}
        self.predecessors: dict[str, list[str]] = {}
        #: Unix ms of the last status change of batches re-statused while serving.
        self.changed_ms: dict[str, int] = {}
        for dataset in world.datasets:
            self.datasets[dataset.id] = replace(dataset, batches=())
            for batch in dataset.batches:
                self.add(batch)

    def dataset_of(self, batch: TruthBatch) -> TruthDataset:
        return self.datasets[batch.dataset_id]

    def add(self, batch: TruthBatch, *, replaces: bool = True) -> None:
        """Register ``batch`` as its dataset's newest; unless ``replaces`` is False (an export
        replaces nothing) it names the newest successful batch as its predecessor."""
        dataset = self.datasets[batch.dataset_id]
        previous = next((b.id for b in reversed(dataset.batches) if b.status == "success"), None)
        chained = replaces and previous is not None and dataset.id not in self.append_only
        self.datasets[dataset.id] = replace(dataset, batches=(*dataset.batches, batch))
        self.batches[batch.id] = batch
        self.predecessors[batch.id] = [previous] if chained and previous else []

    def restatus(self, batch_id: str, status: str, *, at_ms: int) -> TruthBatch:
        """The batch ``batch_id`` with ``status`` from now on (its predecessors stay)."""
        changed = replace(self.batches[batch_id], status=status)
        dataset = self.datasets[changed.dataset_id]
        batches = tuple(changed if b.id == batch_id else b for b in dataset.batches)
        self.datasets[dataset.id] = replace(dataset, batches=batches)
        self.batches[batch_id] = changed
        self.changed_ms[batch_id] = at_ms
        return changed


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


def _metrics(served: ServedBatch, *, variants: Variants, wrong_metrics: bool) -> dict[str, Any]:
    """Catalog metrics of a successful batch: true to the parts served (markers excluded)."""
    size, rows = served.size, served.rows
    if wrong_metrics:
        size, rows = size + 1, rows + 1
    files = len(served.file_ids) if variants.file_count_of_datasetfiles else len(served.expected)
    metrics: dict[str, Any] = {
        "partitionCount": 1,
        "outputByteSize": size,
        "inputFileCount": -1,
        "inputByteSize": served.size + 668,
        "outputRecordCount": rows,
        "outputFileCount": files,
        "inputRecordCount": served.rows,
    }
    if variants.quirky_metrics:
        # Producers write what they like: numbers as strings, -1 for "not counted".
        for key in ("outputByteSize", "inputByteSize", "outputRecordCount", "inputRecordCount"):
            metrics[key] = str(metrics[key])
        metrics["outputFileCount"] = -1
    return metrics


def batch_json(
    index: Index,
    served: ServedBatch,
    *,
    org_id: str,
    variants: Variants,
    wrong_metrics: bool,
) -> dict[str, Any]:
    """One Catalog batch, shaped like the Customer AI example in Adobe's docs.

    An append-only dataset's batches have no ``replay``. A batch still in progress (processing,
    loading, ...) has no ``completed``, no metrics yet and no errors; one whose status changed
    while serving shows that moment as ``completed`` and ``updated``.
    """
    batch = served.batch
    created = batch.created_ms
    changed = index.changed_ms.get(batch.id, 0)
    body: dict[str, Any] = {
        "id": batch.id,
        "externalId": batch.id,
        "status": batch.status,
        "relatedObjects": [{"type": "dataSet", "id": batch.dataset_id}],
    }
    if batch.dataset_id not in index.append_only:
        body["replay"] = {
            "predecessors": index.predecessors.get(batch.id, []),
            "reason": f"Replacing for {batch.score_date.isoformat()}",
            "predecessorListingType": "IMMEDIATE",
        }
    body.update(
        {
            "inputFormat": {"format": "parquet"},
            "imsOrg": org_id,
            "started": created + 591,
            "completed": max(created + 11_518, changed),
            "created": created,
            "createdClient": CREATED_CLIENT,
            "createdUser": "sensei_exp_customerai@AdobeID",
            "updatedUser": "acp_foundation_dataTracker@AdobeID",
            "updated": max(created + 12_365, changed),
            "version": "1.0.5",
        }
    )
    if batch.status == "success":
        body["metrics"] = _metrics(served, variants=variants, wrong_metrics=wrong_metrics)
    elif batch.status not in FAILED_STATUSES:
        del body["completed"]
        body["metrics"] = {"partitionCount": 0, "inputFileCount": -1}
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


@dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    """Where one listing page is and how its links are written."""

    origin: str  # the origin the client reached us on
    path: str  # the listing's path, without a query
    start: int
    limit: int
    relative: bool = False  # Variants.relative_hrefs
    endless: bool = False  # Variants.endless_next

    def href(self, path_and_query: str, *, origin: str | None = None) -> str:
        """A self href: absolute with an explicit port, or origin-relative."""
        if self.relative and origin is None:
            return path_and_query
        return f"{origin or self.origin}{path_and_query}"

    def links(self, total: int, *, templated: bool) -> dict[str, Any]:
        links: dict[str, Any] = {}
        if self.endless or self.start + self.limit < total:
            query = f"?start={self.start + self.limit}&limit={self.limit}"
            # A query-only reference resolves against the page it is on (RFC 3986 5.2).
            links["next"] = {"href": query if self.relative else self.href(self.path + query)}
        if templated:
            template = f"{self.path}?start={{start}}&limit={{limit}}"
            links["page"] = {"href": self.href(template), "templated": True}
        return links


def _dataset_file_item(file_id: str, *, view_id: str, stamp: int, page: Page) -> dict[str, Any]:
    """A dataSetFile as batch files (and a nested dataSetFile's listing) show it."""
    return {
        "dataSetFileId": file_id,
        "dataSetViewId": view_id,
        "version": "1.0.0",
        "created": str(stamp),
        "updated": str(stamp),
        "isValid": False,
        "_links": {"self": {"href": page.href(f"{EXPORT_PATH}/files/{file_id}")}},
    }


def batch_files_json(
    served: ServedBatch, dataset: TruthDataset, *, page: Page, unlinked: bool
) -> dict[str, Any]:
    """``GET /batches/{id}/files``: one page of the batch's dataSetFiles as served.

    ``unlinked`` is the documented answer with no ``_links`` at all and ``_page.count`` the
    total (the spec's "sometimes the total"): a client pages with start/limit on its own.
    ``endless_next`` is about directories: the caller's ``page`` leaves it off here.
    """
    ids = served.file_ids
    first_ms = served.batch.created_ms + 5_000
    data = [
        _dataset_file_item(file_id, view_id=dataset.view_id, stamp=first_ms + number, page=page)
        for number, file_id in enumerate(
            ids[page.start : page.start + page.limit], start=page.start
        )
    ]
    if unlinked:
        return {"data": data, "_page": {"limit": page.limit, "count": len(ids)}}
    body: dict[str, Any] = {"data": data, "_page": {"limit": page.limit, "count": len(data)}}
    links = page.links(len(ids), templated=False)
    if links:
        body["_links"] = links
    return body


def nested_json(
    served: ServedBatch, children: Sequence[str], dataset: TruthDataset, *, page: Page
) -> dict[str, Any]:
    """``GET /files/{id}`` of a dataSetFile listing dataSetFiles: no ``name``, no ``length``."""
    first_ms = served.batch.created_ms + 6_000
    data = [
        _dataset_file_item(child, view_id=dataset.view_id, stamp=first_ms + number, page=page)
        for number, child in enumerate(
            children[page.start : page.start + page.limit], start=page.start
        )
    ]
    return {
        "data": data,
        "_page": {"limit": page.limit, "count": len(data)},
        "_links": page.links(len(children), templated=True),
    }


def directory_json(
    entries: Sequence[Entry], directory: str, *, page: Page, part_origin: str | None
) -> dict[str, Any]:
    """``GET /files/{id}``: one page of a directory; parts (and markers) carry ``?path=``.

    ``part_origin`` (Faults.foreign_origin) moves only real parts' hrefs, always absolute:
    that is where a leaked credential hurts.
    """
    data = []
    for entry in entries[page.start : page.start + page.limit]:
        if entry.subdir is not None:
            href = page.href(f"{EXPORT_PATH}/files/{entry.subdir}")
        else:
            target = f"{EXPORT_PATH}/files/{directory}?path={quote(entry.name, safe='')}"
            href = page.href(target, origin=part_origin if entry.part is not None else None)
        item: dict[str, Any] = {"name": entry.name}
        if entry.listed_length is not None:
            item["length"] = entry.listed_length
        item["_links"] = {"self": {"href": href}}
        data.append(item)
    return {
        "data": data,
        "_page": {"limit": page.limit, "count": len(data)},
        "_links": page.links(len(entries), templated=True),
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
