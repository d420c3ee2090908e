"""The AEP emulator in its own process, for one scenario: start, learn its URL, stop with SIGTERM.

``asyncdl serve --port 0`` prints ``AEP emulator listening on http://127.0.0.1:PORT`` as its first
line once its parts exist (generated on the first run into the persistent cache directory, read
back afterwards). A thread drains the rest of its stdout so it never blocks on a full pipe. It is
stopped with SIGTERM (its own clean shutdown; SIGINT is ignored by a server that a
non-interactive shell started in the background, and each stop then waited out the timeout) and
killed only if that does not end it in time.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["EmulatorError", "EmulatorProcess"]

_LISTENING = re.compile(r"AEP emulator listening on (http://127\.0\.0\.1:\d+)")
_DATASET = re.compile(r"^dataset (\S+):")


class EmulatorError(RuntimeError):
    """The emulator did not start (or printed something we do not understand)."""


class EmulatorProcess:
    """``with EmulatorProcess(...) as emu:`` gives ``emu.base_url`` and ``emu.dataset_id``."""

    def __init__(
        self,
        asyncdl: Path,
        serve_args: Sequence[str],
        *,
        cache_dir: Path,
        log: Path,
        env: Mapping[str, str],
        start_timeout_s: float,
        stop_timeout_s: float = 15.0,
    ) -> None:
        self.argv = [
            str(asyncdl),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--cache-dir",
            str(cache_dir),
            *serve_args,
        ]
        self._log = log
        self._env = dict(env)
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.base_url = ""
        self.dataset_id = ""
        self.startup_s = 0.0

    def __enter__(self) -> EmulatorProcess:
        started = time.perf_counter()
        with self._log.open("w", encoding="utf-8") as log:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self._env,
                text=True,
                start_new_session=True,  # a Ctrl-C at the terminal stops the harness, not this
            )
        self._proc = proc
        self._drain = threading.Thread(target=self._drain_stdout, args=(proc,), daemon=True)
        self._drain.start()
        try:
            first = self._readline(deadline=started + self._start_timeout_s)
            match = _LISTENING.search(first)
            if match is None:
                raise EmulatorError(f"unexpected first line from asyncdl serve: {first!r}")
            self.base_url = match.group(1)
            second = self._readline(deadline=time.perf_counter() + 10.0)
            dataset = _DATASET.match(second)
            if dataset is None:
                raise EmulatorError(f"no dataset line from asyncdl serve: {second!r}")
            self.dataset_id = dataset.group(1)
        except BaseException:
            self._stop()
            raise
        self.startup_s = time.perf_counter() - started
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _readline(self, *, deadline: float) -> str:
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise EmulatorError(f"asyncdl serve printed nothing in time (see {self._log})")
            try:
                line = self._lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                code = self._proc.wait() if self._proc is not None else None
                raise EmulatorError(f"asyncdl serve exited with {code} (see {self._log})")
            return line

    def _drain_stdout(self, proc: subprocess.Popen[str]) -> None:
        """Every stdout line goes to the queue (the first two are read); None marks the end."""
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self._stop_timeout_s)
        if self._drain is not None:
            self._drain.join(timeout=self._stop_timeout_s)
        if proc.stdout is not None:
            proc.stdout.close()
