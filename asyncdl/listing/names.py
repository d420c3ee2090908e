"""Names from the server, checked once before they can become paths, and which are data."""

from __future__ import annotations

import re

from ..errors import UnsafeNameError

__all__ = ["check_name", "check_relpath", "is_metadata"]

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RESERVED = frozenset({".", ".."})


def check_name(name: str) -> str:
    """Return ``name`` if it is one safe path component on every OS, else raise UnsafeNameError."""
    if not name:
        raise UnsafeNameError(name, "empty")
    if name in _RESERVED:
        raise UnsafeNameError(name, "a relative directory reference")
    if "/" in name or "\\" in name:
        raise UnsafeNameError(name, "contains a path separator")
    if _DRIVE.match(name):
        raise UnsafeNameError(name, "looks like a drive letter")
    if _CONTROL.search(name):
        raise UnsafeNameError(name, "contains NUL or control characters")
    return name


def check_relpath(name: str) -> str:
    """``name`` if every ``/``-separated component is safe (partition folders such as
    ``scoreDate=2020-04-09/part-0.parquet``), so the path stays inside the batch directory."""
    if not name:
        raise UnsafeNameError(name, "empty")
    if "\\" in name:
        raise UnsafeNameError(name, "contains a backslash")
    for component in name.split("/"):
        try:
            check_name(component)
        except UnsafeNameError as exc:
            raise UnsafeNameError(name, f"component {component!r} is {_why(exc)}") from None
    return name


def _why(exc: UnsafeNameError) -> str:
    return str(exc).rsplit(": ", 1)[-1]


def is_metadata(name: str) -> bool:
    """Hadoop's hidden-file rule, which Spark and every parquet reader follow: a file whose name
    starts with ``_`` or ``.`` (``_SUCCESS``, ``_started_<tid>``, ``_committed_<tid>``, ``.crc``)
    is bookkeeping, never data."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(("_", "."))
