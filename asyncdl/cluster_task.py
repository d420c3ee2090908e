"""One task of a cluster run, on its worker: a shard of one batch run with asyncdl's own pipeline,
each stream also holding a lease of the cluster's budget, progress sent back as events
(``bytes`` and ``done``) that the client replays to its own listener (``replay``)."""

from __future__ import annotations

import functools
import importlib
from collections import defaultdict
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio

from .config import Credentials, DownloadSettings, resolve_environment
from .errors import AsyncdlError, ConfigError
from .models import Part, PartResult, PartStatus
from .progress import ProgressListener
from .shards import ShardPlan, ShardSpec, download_shard
from .slots import StreamSlots
from .storage.lease import LEASE_S

__all__ = ["TASK_LOCK_WAIT_S", "Task", "TaskOutcome", "distributed", "replay", "run_task"]

#: How long a task run again waits for its shard's lock: the worker that held it may still be
#: dying (a lock in a local or NFS directory goes with its process, at once; a lease in an
#: object store when it expires, LEASE_S after its last renewal, plus a minute of clock skew).
TASK_LOCK_WAIT_S = LEASE_S + 60.0
#: How often a task sends the bytes it received since the last report.
_PROGRESS_S = 0.25


def distributed() -> Any:
    """``distributed``, the optional extra; its API is untyped, so it is used through Any."""
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise ConfigError("--cluster needs dask: pip install 'asyncdl[dask]'") from exc


@dataclass(frozen=True, kw_only=True)
class Task:
    """What a task needs, all of it safe to pickle: no credentials."""

    plan: bytes  # a ShardPlan of one batch
    shard: ShardSpec
    settings: DownloadSettings
    budget: str  # the cluster's stream semaphore
    progress: str  # the queue progress goes back on


@dataclass(frozen=True, kw_only=True)
class TaskOutcome:
    """What one task's run came to (its parts are in its fragment)."""

    batch_id: str
    shard: str
    downloaded: int
    skipped: int
    failed: tuple[tuple[str, str], ...]  # (relpath, error)
    fetched_bytes: int


#: How long one wait for a lease of the cluster's stream budget lasts before it is asked again.
_BUDGET_WAIT_S = 1.0


class BudgetedSlots(StreamSlots):
    """The worker's stream slots, each stream also holding a lease of the cluster's budget."""

    def __init__(self, maximum: int, *, adaptive: bool, budget: Any) -> None:
        super().__init__(maximum, adaptive=adaptive)
        self._budget = budget
        # Waiting for a lease blocks a thread: in threads of its own, not anyio's default 40,
        # or at -j 40 and more the waiters would hold every thread the writes of the streams
        # that have a lease need, and nothing would move again.
        self._waiting = anyio.CapacityLimiter(maximum)

    async def __aenter__(self) -> float:
        started_at = await super().__aenter__()
        try:
            # In short waits, so a cancelled stream stops waiting (a thread cannot be
            # interrupted): cancellation is delivered between them.
            wait = functools.partial(self._budget.acquire, timeout=_BUDGET_WAIT_S)
            while not await anyio.to_thread.run_sync(wait, limiter=self._waiting):
                pass
        except BaseException:
            await super().__aexit__(None, None, None)
            raise
        return started_at

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._budget.release)
        finally:
            await super().__aexit__(exc_type, exc, tb)


class _Reporter:
    """A task's progress listener: bytes summed and sent every so often, results as they come."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self._bytes: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._events: list[tuple[Any, ...]] = []

    def on_batch(self, batch: Any) -> None:
        pass

    def on_queued(self, part: Part) -> None:
        pass

    def on_bytes(self, part: Part, n: int) -> None:
        self._bytes[(part.batch_id, part.relpath)] += n

    def on_retry(self, part: Part, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        pass

    def on_done(self, result: PartResult) -> None:
        part = result.part
        self._events.append(
            (
                "done",
                part.batch_id,
                part.relpath,
                result.status.value,
                result.fetched_bytes,
                result.error,
            )
        )

    def on_request_retry(self, url: str, attempt: int, error: AsyncdlError, delay_s: float) -> None:
        pass

    def _take(self) -> list[tuple[Any, ...]]:
        events: list[tuple[Any, ...]] = [
            ("bytes", batch_id, relpath, n) for (batch_id, relpath), n in self._bytes.items() if n
        ]
        events += self._events
        self._bytes.clear()
        self._events = []
        return events

    async def send_every(self, interval_s: float) -> None:
        while True:
            await anyio.sleep(interval_s)
            await self.flush()

    async def flush(self) -> None:
        events = self._take()
        if events:
            await anyio.to_thread.run_sync(self._queue.put, events)


def run_task(task: Task) -> TaskOutcome:
    """A task, in a worker's thread: credentials from the worker's own environment."""
    dask = distributed()
    environment = {k: v.value for k, v in resolve_environment().items()}
    credentials = Credentials.from_env(environment)
    client = dask.get_client()
    budget = dask.Semaphore(max_leases=task.settings.concurrency, name=task.budget)
    reporter = _Reporter(dask.Queue(task.progress, client=client))

    async def main() -> TaskOutcome:
        shard_plan = ShardPlan.decode(task.plan)
        settings = task.settings
        slots = BudgetedSlots(settings.concurrency, adaptive=settings.adaptive, budget=budget)
        async with anyio.create_task_group() as tg:
            tg.start_soon(reporter.send_every, _PROGRESS_S)
            try:
                result = await download_shard(
                    None,
                    shard=task.shard,
                    shard_plan=shard_plan,
                    credentials=credentials,
                    settings=settings,
                    on_progress=reporter,
                    slots=slots,
                    lock_wait_s=TASK_LOCK_WAIT_S,
                )
            finally:
                tg.cancel_scope.cancel()
        await reporter.flush()
        download = result.download
        return TaskOutcome(
            batch_id=shard_plan.batches[0].batch.id,
            shard=str(task.shard),
            downloaded=download.downloaded,
            skipped=download.skipped,
            failed=tuple((r.part.relpath, r.error or "failed") for r in download.failed),
            fetched_bytes=download.fetched_bytes,
        )

    return anyio.run(main)


def replay(
    events: list[tuple[Any, ...]],
    parts: dict[tuple[str, str], Part],
    listener: ProgressListener,
) -> None:
    """A task's progress events, as the client's own listener would have heard them."""
    for event in events:
        part = parts.get((event[1], event[2]))
        if part is None:
            continue
        if event[0] == "bytes":
            listener.on_bytes(part, int(event[3]))
        elif event[0] == "done":
            listener.on_done(
                PartResult(
                    part=part,
                    status=PartStatus(event[3]),
                    fetched_bytes=int(event[4]),
                    error=event[5],
                )
            )
