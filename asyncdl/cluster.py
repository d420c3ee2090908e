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
import importlib
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from .cluster_task import Task, TaskOutcome, distributed, replay, run_task
from .config import Credentials, DownloadSettings
from .errors import ConfigError
from .pipeline import resolve_run
from .progress import NullProgress, ProgressListener
from .results import PlannedBatch
from .shards import Finalized, ShardPlan, ShardSpec, make_plan
from .shards.finalize import finalize_batch
from .storage import LocalStorage, open_storage

__all__ = ["ClusterResult", "TaskOutcome", "download_on_cluster", "parse_cluster"]

#: Retries of a task whose worker died or whose run raised (a run that ends with failed parts
#: returns normally: those are in its outcome).
TASK_RETRIES = 3
#: How long a ``local:N`` cluster keeps a dead worker's stream leases.
LOCAL_LEASE_TIMEOUT = "5s"


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
    dask = distributed()
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
                    task = Task(
                        plan=encoded,
                        shard=ShardSpec(index=index, count=count),
                        settings=settings,
                        budget=budget_name,
                        progress=progress.name,
                    )
                    future = client.submit(
                        run_task,
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
                    replay(events, parts, listener)

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
                    replay(await progress.get(), parts, listener)
                tg.cancel_scope.cancel()
    finally:
        if local is not None:
            with anyio.CancelScope(shield=True):
                await local.close()
    return ClusterResult(
        tasks=tuple(outcomes), finalized=tuple(finalized), elapsed_s=time.monotonic() - started
    )
