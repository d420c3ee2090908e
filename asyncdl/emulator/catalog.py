"""The Catalog routes: batches filtered, ordered and paged as Catalog does, one batch by id,
and datasets; batch metrics are those of the served view (variants.py), so they always match
the parts Data Access offers.
"""

from __future__ import annotations

from aiohttp import web

from asyncdl.emulator.answers import (
    BadParam,
    int_param,
    json_answer,
    optional_int,
    problem_answer,
)
from asyncdl.emulator.config import MAX_PAGE_LIMIT, EmulatorConfig
from asyncdl.emulator.data import TruthBatch
from asyncdl.emulator.variants import ServedView
from asyncdl.emulator.views import Index, batch_json, dataset_json, select_batches

__all__ = ["DEFAULT_BATCH_LIMIT", "batch", "batches", "dataset"]

DEFAULT_BATCH_LIMIT = 20


def _batch_json(
    batch: TruthBatch, *, index: Index, view: ServedView, config: EmulatorConfig
) -> dict[str, object]:
    served = view.batch(batch.id)
    assert served is not None  # every indexed batch is served
    return batch_json(
        index,
        served,
        org_id=config.org_id,
        variants=config.variants,
        wrong_metrics=config.faults.wrong_metrics,
    )


def batches(
    request: web.Request, *, index: Index, view: ServedView, config: EmulatorConfig
) -> web.Response:
    """``GET /batches``: an object keyed by batch id (no ``_page``)."""
    query = request.query
    try:
        limit = min(
            int_param(query, "limit", default=DEFAULT_BATCH_LIMIT, minimum=1), MAX_PAGE_LIMIT
        )
        start = int_param(query, "start", default=0, minimum=0)
        after = optional_int(query, "createdAfter", minimum=0)
        before = optional_int(query, "createdBefore", minimum=0)
        order = query.get("orderBy", "asc:created")
        if order not in {"desc:created", "asc:created", "created"}:
            raise BadParam(f"orderBy {order!r} is not supported (use desc:created or asc:created)")
    except BadParam as exc:
        return problem_answer(400, "Bad Request", exc.detail, "CAT-2201-400")
    chosen = select_batches(
        index,
        dataset=query.get("dataSet"),
        created_client=query.get("createdClient"),
        status=query.get("status"),
        batch_id=query.get("batch"),
        created_after=after,
        created_before=before,
        newest_first=order == "desc:created",
    )
    body = {
        b.id: _batch_json(b, index=index, view=view, config=config)
        for b in chosen[start : start + limit]
    }
    return json_answer(200, body)


def batch(
    request: web.Request, *, index: Index, view: ServedView, config: EmulatorConfig
) -> web.Response:
    """``GET /batches/{id}``: the same object-keyed-by-id shape as the listing."""
    found = index.batches.get(request.match_info["id"])
    if found is None:
        detail = f"batch {request.match_info['id']} not found"
        return problem_answer(404, "Not Found", detail, "CAT-2004-404")
    return json_answer(200, {found.id: _batch_json(found, index=index, view=view, config=config)})


def dataset(request: web.Request, *, index: Index, config: EmulatorConfig) -> web.Response:
    """``GET /dataSets/{id}``."""
    found = index.datasets.get(request.match_info["id"])
    if found is None:
        detail = f"dataSet {request.match_info['id']} not found"
        return problem_answer(404, "Not Found", detail, "CAT-2004-404")
    return json_answer(200, dataset_json(index, found, org_id=config.org_id))
