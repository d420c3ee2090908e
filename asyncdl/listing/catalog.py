"""Catalog listings: a dataset's batches (paged by ``start``), one batch by id, metrics read as
producers write them (ints, numeric strings, ``-1`` for "not counted")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from ..client import AEPClient
from ..errors import NoBatchError, NotFoundError, ProtocolError
from ..models import CATALOG_PATH, Batch, BatchMetrics, count

__all__ = ["CATALOG_PAGE_MAX", "get_batch", "iter_batches", "latest_batches", "metric"]

CATALOG_PAGE_MAX = 100


metric = count  # Catalog metrics and timestamps: counts as producers write them


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
        created_ms=metric(body.get("created")),
        predecessors=predecessors,
        metrics=BatchMetrics(
            output_byte_size=metric(metrics.get("outputByteSize")),
            output_record_count=metric(metrics.get("outputRecordCount")),
            output_file_count=metric(metrics.get("outputFileCount")),
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
