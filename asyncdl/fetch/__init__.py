"""Fetching one part, listing entry to verified file: skip → resume → stream → verify → seal.

The final name appears only after the size matches the listing's ``length`` and (for parquet) the
footer reads back, so a file under its real name is always complete; until then it is the
storage's temp file (``<name>.part`` on disk), which the next attempt or run continues with
``Range``. The content hash (checksum.py) is computed from the bytes as they stream (a resumed
part hashes its prefix back once); a part fetched in segments is hashed as its contiguous prefix
grows.

Modules, one concern each: ``part`` (the entry point: skip, or choose the path), ``whole`` (one
stream at a time, small parts in one job), ``segmented`` (concurrent ranges, record, prefix
hash) with its ``plan``, ``attempts`` (the one attempt loop's rules, applying ``RetryPolicy``),
``writer`` (the buffered writer both paths use), ``answers`` (which request, and what its answer
may say), ``options`` and ``transfer`` (what a fetch carries), ``outcome`` (failed results).
Bytes reach the storage seam (``asyncdl.storage``) only through ``writer`` and the small-part job.
"""

from __future__ import annotations

from .options import FetchOptions
from .part import fetch_part

__all__ = ["FetchOptions", "fetch_part"]
