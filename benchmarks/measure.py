"""Running one child process and measuring it: wall time, CPU seconds and peak RSS from rusage.

Each child is reaped with ``os.wait4`` so its own ``ru_maxrss`` (KiB on Linux) and
``ru_utime + ru_stime`` are known without psutil. Every child has a deadline: a timer thread
kills it through a pidfd (which can never hit a recycled pid) when the deadline passes. Output
goes to files, never to a pipe, so a chatty child cannot block on a full pipe while we wait.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measured", "measure"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Measured:
    """One finished child: how it ended and what it cost."""

    exit_code: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_kib: int
    timed_out: bool

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def measure(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    stdout: Path,
    stderr: Path,
    cwd: Path | None = None,
) -> Measured:
    """Run ``argv`` to completion (or until ``timeout_s``), measuring the child alone."""
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # a Ctrl-C at the terminal is ours to handle, not the child's
        )
        pidfd = os.pidfd_open(proc.pid)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)

        timer = threading.Timer(timeout_s, kill)
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
        except BaseException:
            kill()  # interrupted while waiting: the child must not outlive us
            os.waitpid(proc.pid, 0)
            raise
        finally:
            timer.cancel()
            os.close(pidfd)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Measured(
        exit_code=proc.returncode,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        max_rss_kib=usage.ru_maxrss,
        timed_out=timed_out.is_set(),
    )
