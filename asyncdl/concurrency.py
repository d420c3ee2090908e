"""What the pipeline runs concurrently, and how: stream slots, thread batches, one error.

``StreamSlots`` (how many body streams at once, how fast they start; AIMD on 429s) lives in
``asyncdl.slots`` and is re-exported here for its callers. ``ThreadBatches`` runs the short
blocking jobs of many small parts together in worker threads; ``single_error`` surfaces the
error that ended a task group as itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import anyio

from .errors import AsyncdlError, AuthError, StorageError
from .slots import StreamSlots

__all__ = ["StreamSlots", "ThreadBatches", "single_error", "thread_batches"]

T = TypeVar("T")


@asynccontextmanager
async def single_error() -> AsyncIterator[None]:
    """Surface the error that ended a task group as itself, not as an ExceptionGroup.

    Workers and the producer fail for one reason at a time (a full disk, refused credentials, a
    listing that cannot be read); callers and the CLI handle that error, not a group of it
    and the cancellations it caused.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        # What ends the run outranks a part's own failure: a full disk or refused credentials
        # must not surface as "segment failed" just because that task was first.
        ranked = sorted(
            (e for e in leaves if isinstance(e, AsyncdlError)),
            key=lambda e: not isinstance(e, StorageError | AuthError),
        )
        primary: BaseException | None = ranked[0] if ranked else None
        if primary is None:  # KeyboardInterrupt and friends pass through as themselves
            primary = next((e for e in leaves if not isinstance(e, Exception)), None)
        if primary is None and len(leaves) == 1:
            primary = leaves[0]  # a bug, however deeply nested task groups wrapped it
        if primary is None:
            raise  # several unrelated bugs: the group shows them all
        raise primary from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves


class _ThreadJob(Generic[T]):
    """One blocking call waiting for, or in, a batch."""

    def __init__(self, func: Callable[[], T]) -> None:
        self.func = func
        self.started = False  # taken into a batch: it will run, whatever its caller does
        self.finished = anyio.Event()
        self.result: T | None = None
        self.error: Exception | None = None
        self.ran = False

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        if not self.ran:
            raise RuntimeError("thread batches stopped before this job ran")
        return self.result  # type: ignore[return-value]  # T itself may be None


def _run_batch(batch: list[_ThreadJob[Any]]) -> None:
    """One worker-thread job: every job of the batch in turn, each failing on its own."""
    for job in batch:
        try:
            job.result = job.func()
        except Exception as exc:  # handed to that job's caller, on the event loop
            job.error = exc
        job.ran = True


class ThreadBatches:
    """Short blocking calls run in a worker thread, all the calls waiting at the time together.

    ``anyio.to_thread.run_sync`` is a thread hop per call: a worker thread woken, the GIL handed
    over and back, the event loop woken. For a small part, whose store (write, sha256, footer,
    rename) takes ~100 us, the hop cost about as much again: S4's 2,000 parts of 64 KiB took
    1.15 s with a hop each and 0.9 s in batches (alternating runs on one emulator). Batches
    form by themselves: calls that arrive while one batch runs wait for the next.

    One batch runs at a time, unless the running one is slow (storage with latency, such as a
    network file system): after ``slow_s`` the next batch starts beside it, up to
    ``max_threads``, so slow storage is still written to in parallel.

    Like ``run_sync`` without ``abandon_on_cancel``, a cancelled caller whose call has started
    waits for it to finish; a call that has not started is withdrawn and never runs.
    """

    def __init__(self, *, slow_s: float = 0.005, max_threads: int = 8) -> None:
        if max_threads < 1 or slow_s < 0:
            raise ValueError("need max_threads >= 1 and slow_s >= 0")
        self._slow_s = slow_s
        self._max_threads = max_threads
        self._waiting: list[_ThreadJob[Any]] = []
        self._running = 0
        self._changed = anyio.Event()  # a call arrived or a batch finished
        self._closed = False

    async def run_sync(self, func: Callable[[], T]) -> T:
        """``func()`` in a worker thread, in the next batch."""
        if self._closed:
            raise RuntimeError("thread batches are no longer served")
        job = _ThreadJob(func)
        self._waiting.append(job)
        self._changed.set()
        try:
            await job.finished.wait()
        except BaseException:
            if not job.started:
                self._waiting.remove(job)
            else:
                with anyio.CancelScope(shield=True):
                    await job.finished.wait()
            raise
        return job.outcome()

    async def serve(self) -> None:
        """Start batches until cancelled (``thread_batches`` does that when its block ends)."""
        try:
            await self._start_batches()
        finally:
            # Calls still waiting would wait for ever: they fail instead ("stopped before this
            # job ran"), and so does any call made from now on.
            self._closed = True
            for job in self._waiting:
                job.finished.set()
            self._waiting = []

    async def _start_batches(self) -> None:
        last_start = -float("inf")
        async with anyio.create_task_group() as tg:
            while True:
                # A fresh event before looking: whatever changes after this line sets it.
                self._changed = anyio.Event()
                if self._waiting and self._running < self._max_threads:
                    # With a batch running, the waiting calls join the next batch when it ends,
                    # unless the newest running batch has been at it for ``slow_s``.
                    wait_s = last_start + self._slow_s - anyio.current_time()
                    if not self._running or wait_s <= 0:
                        batch, self._waiting = self._waiting, []
                        for job in batch:
                            job.started = True
                        self._running += 1
                        last_start = anyio.current_time()
                        tg.start_soon(self._run, batch)
                        continue
                    with anyio.move_on_after(wait_s):
                        await self._changed.wait()
                    continue
                await self._changed.wait()

    async def _run(self, batch: list[_ThreadJob[Any]]) -> None:
        try:
            await anyio.to_thread.run_sync(_run_batch, batch)
        finally:
            self._running -= 1
            for job in batch:
                job.finished.set()
            self._changed.set()


@asynccontextmanager
async def thread_batches(
    *, slow_s: float = 0.005, max_threads: int = 8
) -> AsyncIterator[ThreadBatches]:
    """A ``ThreadBatches`` served for the duration of the block."""
    batches = ThreadBatches(slow_s=slow_s, max_threads=max_threads)
    async with single_error(), anyio.create_task_group() as tg:
        tg.start_soon(batches.serve)
        yield batches
        tg.cancel_scope.cancel()
