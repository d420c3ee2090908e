"""A dataset's current view, kept in a destination by ``sync`` (the daily cron job).

``view`` works out the current view from the Catalog's replays (pure), ``state`` is what a sync
remembers between runs, ``run`` is one sync.
"""

from __future__ import annotations

from .run import DEFAULT_KEEP, DEFAULT_LOOKBACK_S, SyncResult, sync

__all__ = ["DEFAULT_KEEP", "DEFAULT_LOOKBACK_S", "SyncResult", "sync"]
