"""A download on a Dask cluster: list once, one task per (batch, shard), one API budget.

The client lists the selection once (a plan), submits a task per shard of each batch, with
retries, and finalizes each batch as its tasks complete. A task runs asyncdl's own pipeline
(``download_shard``) with ``anyio.run`` in the task's thread, so the worker's event loop and
heartbeats never wait for it. Credentials come from each worker's environment or config file,
never from the task's arguments (nothing secret is pickled). ``-j`` is the whole cluster's
number of streams: each stream also holds a lease of one ``distributed.Semaphore``, so N
workers do not multiply the load on AEP. Progress travels back on a ``distributed.Queue``.

A worker killed mid-run: the scheduler runs its task again elsewhere; the task resumes like any
rerun (finished parts skipped, temp files continued), and its shard's lock died with it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

from .config import Credentials, DownloadSettings, resolve_environment
from .errors import AsyncdlError, ConfigError
from .models import Part, PartResult, PartStatus
from .pipeline import resolve_run
from .progress import NullProgress, ProgressListener
from .results import PlannedBatch
from .shards import Finalized, ShardPlan, ShardSpec, download_shard, make_plan
from .shards.finalize import finalize_batch
from .slots import StreamSlots
from .storage import LocalStorage, open_storage
from .storage.lease import LEASE_S

__all__ = ["ClusterResult", "TaskOutcome", "download_on_cluster", "parse_cluster"]

#: Retries of a task whose worker died or whose run raised (a run that ends with failed parts
#: returns normally: those are in its outcome).
TASK_RETRIES = 3
#: How long a task run again waits for its shard's lock: the worker that held it may still be
#: dying (a lock in a local or NFS directory goes with its process, at once; a lease in an
#: object store when it expires, LEASE_S after its last renewal, plus a minute of clock skew).
TASK_LOCK_WAIT_S = LEASE_S + 60.0
#: How long a ``local:N`` cluster keeps a dead worker's stream leases.
LOCAL_LEASE_TIMEOUT = "5s"
#: How often a task sends the bytes it received since the last report.
_PROGRESS_S = 0.25


def _distributed() -> Any:
    """``distributed``, the optional extra; its API is untyped, so it is used through Any."""
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise ConfigError("--cluster needs dask: pip install 'asyncdl[dask]'") from exc


def parse_cluster(text: str) -> str | int:
    """``local:N`` → N local worker processes; ``tcp://host:port`` (or any scheduler address)
    as given."""
    if text.startswith("local:"):
        try:
            workers = int(text.removeprefix("local:"))
        except ValueError:
            workers = 0
        if workers < 1:
            raise ConfigError(f"--cluster local:N needs N >= 1, got {text!r}")
        return workers
    if "://" not in text:
        raise ConfigError(f"--cluster takes local:N or a scheduler address, got {text!r}")
    return text


@dataclass(frozen=True, kw_only=True)
class _Task:
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


@dataclass(frozen=True, kw_only=True)
class ClusterResult:
    """Every task's outcome and every batch's finalize."""

    tasks: tuple[TaskOutcome, ...]
    finalized: tuple[Finalized, ...]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return all(not t.failed for t in self.tasks) and all(f.ok for f in self.finalized)

    @property
    def fetched_bytes(self) -> int:
        return sum(t.fetched_bytes for t in self.tasks)


#: How long one wait for a lease of the cluster's stream budget lasts before it is asked again.
_BUDGET_WAIT_S = 1.0


class _BudgetedSlots(StreamSlots):
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


def _run_task(task: _Task) -> TaskOutcome:
    """A task, in a worker's thread: credentials from the worker's own environment."""
    dask = _distributed()
    environment = {k: v.value for k, v in resolve_environment().items()}
    credentials = Credentials.from_env(environment)
    client = dask.get_client()
    budget = dask.Semaphore(max_leases=task.settings.concurrency, name=task.budget)
    reporter = _Reporter(dask.Queue(task.progress, client=client))

    async def main() -> TaskOutcome:
        shard_plan = ShardPlan.decode(task.plan)
        settings = task.settings
        slots = _BudgetedSlots(settings.concurrency, adaptive=settings.adaptive, budget=budget)
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


def _one_batch(shard_plan: ShardPlan, planned: PlannedBatch) -> bytes:
    return dataclasses.replace(shard_plan, batches=(planned,)).encode()


async def download_on_cluster(
    dataset_id: str | None = None,
    *,
    cluster: str,
    shards: int | None = None,
    out: Path | str | None = None,
    latest: int = 1,
    batch_ids: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    credentials: Credentials | None = None,
    settings: DownloadSettings | None = None,
    on_progress: ProgressListener | None = None,
) -> ClusterResult:
    """The run ``download`` would make, on a Dask cluster (``local:N`` or a scheduler address):
    ``shards`` tasks per batch (default: one per worker thread)."""
    dask = _distributed()
    Client, LocalCluster, Queue, Semaphore = (
        dask.Client,
        dask.LocalCluster,
        dask.Queue,
        dask.Semaphore,
    )
    target = parse_cluster(cluster)
    credentials, settings = resolve_run(
        out=out, concurrency=None, credentials=credentials, settings=settings
    )
    listener = on_progress or NullProgress()
    started = time.monotonic()
    root = open_storage(settings.out_dir)
    if isinstance(root, LocalStorage):
        # Workers run elsewhere (another process, another host on a shared volume), each
        # with its own working directory: a relative --out must mean this one's.
        settings = dataclasses.replace(settings, out_dir=root.root.absolute())
    await anyio.to_thread.run_sync(root.prepare)
    local = None
    if isinstance(target, int):
        # A dead worker's stream leases come back after the lease timeout: 30 s by default,
        # which stalls a small budget for that long. Workers refresh theirs every fifth of it.
        config = importlib.import_module("dask").config
        config.set(
            {
                "distributed.scheduler.locks.lease-timeout": LOCAL_LEASE_TIMEOUT,
                "distributed.scheduler.locks.lease-validation-interval": "1s",
            }
        )
        local = await LocalCluster(
            n_workers=target,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            asynchronous=True,
        )
    try:
        async with Client(local or target, asynchronous=True) as client:
            threads = sum((await client.nthreads()).values()) if shards is None else 0
            count = shards or max(1, threads)
            shard_plan = await make_plan(
                dataset_id,
                shards=count,
                latest=latest,
                batch_ids=batch_ids,
                include=include,
                exclude=exclude,
                credentials=credentials,
                settings=settings,
            )
            run_id = uuid.uuid4().hex
            budget_name = f"asyncdl-streams-{run_id}"
            await Semaphore(max_leases=settings.concurrency, name=budget_name)
            progress = Queue(f"asyncdl-progress-{run_id}", client=client)
            parts = {(p.batch_id, p.relpath): p for b in shard_plan.batches for p in b.parts}
            for batch in shard_plan.batches:
                listener.on_batch(batch.batch)
                for part in batch.parts:
                    listener.on_queued(part)
            futures = {}
            for planned in shard_plan.batches:
                encoded = _one_batch(shard_plan, planned)
                for index in range(1, count + 1):
                    task = _Task(
                        plan=encoded,
                        shard=ShardSpec(index=index, count=count),
                        settings=settings,
                        budget=budget_name,
                        progress=progress.name,
                    )
                    future = client.submit(
                        _run_task,
                        task,
                        retries=TASK_RETRIES,
                        pure=False,
                        key=f"asyncdl-{planned.batch.id}-{index}-of-{count}-{run_id}",
                    )
                    futures[future.key] = (planned, future)
            outcomes: list[TaskOutcome] = []
            finalized: list[Finalized] = []
            left: defaultdict[str, int] = defaultdict(int)
            for planned, _ in futures.values():
                left[planned.batch.id] += 1

            async def relay() -> None:
                while True:
                    events = await progress.get()
                    _replay(events, parts, listener)

            async with anyio.create_task_group() as tg:
                tg.start_soon(relay)
                async for future in dask.as_completed([f for _, f in futures.values()]):
                    outcome = await future
                    outcomes.append(outcome)
                    planned = futures[future.key][0]
                    left[planned.batch.id] -= 1
                    if not left[planned.batch.id]:
                        finalized.append(
                            await finalize_batch(
                                root.sub(planned.batch.id),
                                planned.batch,
                                planned.parts,
                                shards=count,
                            )
                        )
                while await progress.qsize():  # what the last tasks sent before they returned
                    _replay(await progress.get(), parts, listener)
                tg.cancel_scope.cancel()
    finally:
        if local is not None:
            with anyio.CancelScope(shield=True):
                await local.close()
    return ClusterResult(
        tasks=tuple(outcomes), finalized=tuple(finalized), elapsed_s=time.monotonic() - started
    )


def _replay(
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
