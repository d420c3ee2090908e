"""The storage seam on a local (or network-mounted) directory: parts below it (local.py), small
files replaced atomically, one listing of what is there, locks that die with their holder.

Every OSError becomes the ``StorageError`` about its file here or in local.py: nothing above
the seam sees one. Blocking throughout: the callers run every method in a worker thread.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..checksum import Hasher
from ..errors import BusyError, StorageError
from ..footer import parquet_rows
from ..layout import WRITE_PROBE, replace_temp
from .durable import sync_directory, sync_file
from .local import LocalPartFile, hash_range, storage_error, translated

__all__ = ["LocalStorage"]


class _Flocked:
    """A held ``flock``: the kernel keeps it until the descriptor is closed, so it is never
    lost while the run goes on."""

    def check(self) -> None:
        pass


class LocalStorage:
    """A directory as the storage seam (the output root, or one batch below it)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def memory_held(self, size: int, *, segmented: bool) -> int:
        return 0  # a part goes to disk as it arrives (the fetch's own buffer is per stream)

    def where(self, relpath: str = "") -> str:
        return str(self.root / relpath) if relpath else str(self.root)

    def prepare(self) -> None:
        def probe() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / WRITE_PROBE
            path.write_bytes(b"")
            path.unlink()

        try:
            probe()
        except OSError as exc:
            raise StorageError(f"cannot write to {self.root}: {exc.strerror or exc}") from exc

    def sub(self, name: str) -> LocalStorage:
        return LocalStorage(self.root / name)

    def size(self, relpath: str) -> int | None:
        path = self.root / relpath
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(exc, path, "read") from exc

    def files(self) -> frozenset[str]:
        """Relative paths of every file below, walked once (missing directory: none)."""
        found: set[str] = set()
        pending = [("", self.root)]
        try:
            while pending:
                prefix, folder = pending.pop()
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_file():
                            found.add(prefix + entry.name)
                        elif entry.is_dir():
                            pending.append((f"{prefix}{entry.name}/", Path(entry.path)))
        except FileNotFoundError:
            if not found and not self.root.exists():
                return frozenset()
            raise
        except OSError as exc:
            raise StorageError(f"cannot list {self.root}: {exc.strerror or exc}") from exc
        return frozenset(found)

    def part(self, relpath: str) -> LocalPartFile:
        return LocalPartFile(self.root, relpath)

    def segmented(self, relpath: str) -> LocalPartFile:
        return LocalPartFile(self.root, relpath)  # a directory writes at offsets itself

    def digest(self, relpath: str, hasher: Hasher) -> None:
        path = self.root / relpath
        translated(path, "read", lambda: hash_range(hasher, path, 0, path.stat().st_size))

    def rows(self, relpath: str, label: str) -> int | None:
        return parquet_rows(self.root / relpath, label)

    def read(self, relpath: str) -> bytes | None:
        try:
            return (self.root / relpath).read_bytes()
        except OSError:
            return None

    def replace(self, relpath: str, data: bytes, *, durable: bool = False) -> None:
        """Atomically, through a unique temp name opened with "x" (not mkstemp: the file gets
        the user's umask, not 0600); with ``durable``, synced before and after the rename."""
        path = self.root / relpath
        tmp = path.with_name(replace_temp(f"{os.getpid()}.{uuid.uuid4().hex}"))

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with tmp.open("xb") as fh:
                    fh.write(data)
                    if durable:
                        fh.flush()
                        sync_file(tmp, fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            if durable:
                sync_directory(path.parent)

        translated(path, "write", write)

    def folders(self) -> list[str]:
        try:
            with os.scandir(self.root) as entries:
                return sorted(e.name for e in entries if e.is_dir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {self.root}: {exc.strerror or exc}") from exc

    def remove_tree(self, relpath: str) -> None:
        path = self.root / relpath
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error(exc, path, "remove") from exc

    @contextmanager
    def lock(self, relpath: str) -> Iterator[_Flocked]:
        """``flock`` on ``relpath``: the kernel releases it when the holder exits, however it
        dies (kill -9 included), so a stale lock never blocks the next cron run. The file says
        who holds it, for the refusal's message; it is never deleted (deleting a lock file
        races with the next taker)."""
        path = self.root / relpath
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise storage_error(exc, path, "lock") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
                raise BusyError(
                    f"{path} is held by another run ({holder or 'unknown holder'})"
                ) from None
            except OSError as exc:
                raise storage_error(exc, path, "lock") from exc
            since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            os.ftruncate(fd, 0)
            holder = f"pid {os.getpid()} on {socket.gethostname()} since {since}\n"
            os.pwrite(fd, holder.encode(), 0)
            yield _Flocked()
        finally:
            os.close(fd)  # releases the lock
