"""Walking the API's listings lazily: Catalog batches, a batch's files, paginated directories.

Everything here is an async generator that fetches the next page only when the consumer asks for
more, so a listing of 10,000 parts is never held whole and downloads start with the first page.
Names from the server are checked here, once, before they can become paths; every href is
resolved against the URL of the page it came from before the client's origin lock sees it.
Every shape Adobe's spec allows is walked (``/work/shared/aep-api.md``, Data Access).

Modules: ``catalog`` (batches), ``pages`` (paging and hrefs), ``directories`` (what each entry
is), ``names`` (safe paths, metadata files).
"""

from __future__ import annotations

from .catalog import get_batch, iter_batches, latest_batches
from .directories import Entry, Marker, OpenedPart, Rejected, iter_dataset_files, iter_parts
from .names import check_name, check_relpath, is_metadata

__all__ = [
    "Entry",
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
