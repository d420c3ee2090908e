"""Whether an export folder is whole: files arrive while an export runs, so a folder can be
partial, and only a whole one is downloaded unless asked otherwise.

The export's own accounting comes first: the optional ``manifest-<destinationId>-<runId>.json``
that the dataflow writes into the folder lists ``exportResults[]`` (``sinkPath``, ``name``,
``size``); the folder is whole when every file it lists is there at its size. Without one, a
quiet period: the folder is taken as whole once nothing in it has been written for
``settle_s`` (the newest file's last-modified time). Every verdict says which check made it.
Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_SETTLE_S",
    "CheckKind",
    "Completeness",
    "ExportManifest",
    "judge",
    "parse_manifest",
]

#: How long an export folder without a manifest must have been left alone to count as whole.
DEFAULT_SETTLE_S = 30 * 60.0


class CheckKind(enum.Enum):
    """Which check decided an export's completeness."""

    MANIFEST = "manifest"  # the export's manifest-<destinationId>-<runId>.json
    QUIET_PERIOD = "quiet-period"  # no manifest: nothing written for the settle time


@dataclass(frozen=True, kw_only=True, slots=True)
class Completeness:
    """The verdict on one export folder, and why."""

    kind: CheckKind
    complete: bool
    detail: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportManifest:
    """What the export's manifest(s) list for this folder: file name → size."""

    names: tuple[str, ...]  # the manifest files read
    files: Mapping[str, int]
    note: str = ""  # what the manifest said that did not fit (shown with the verdict)


def parse_manifest(documents: Sequence[tuple[str, bytes]], *, folder: str) -> ExportManifest | str:
    """The files the manifests list for ``folder`` (its key, no slashes at the ends), or why
    they cannot be used.

    ``sinkPath`` is the folder a file was deposited in; it is matched to ``folder`` by its end
    (a store's path may start above the landing zone's root). A manifest inside the folder
    whose sinkPaths name another place still lists this export (Adobe writes the manifest
    beside the files): its entries are taken, and the mismatch is noted.
    """
    matching: dict[str, int] = {}
    anywhere: dict[str, int] = {}
    for name, raw in documents:
        try:
            document = json.loads(raw)
            results = document["exportResults"]
            if not isinstance(results, list):
                raise TypeError("exportResults is not a list")
            for entry in results:
                file_name, size = str(entry["name"]), entry["size"]
                if isinstance(size, bool) or not isinstance(size, int | str):
                    raise TypeError(f"size of {file_name!r} is not a number")
                size = int(size)
                sink = str(entry.get("sinkPath") or "").strip("/")
                sink = sink.removesuffix(f"/{file_name}") if sink != file_name else ""
                anywhere[file_name] = size
                if sink == folder or folder.endswith(f"/{sink}") or sink.endswith(f"/{folder}"):
                    matching[file_name] = size
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"{name} is not a readable export manifest ({exc})"
    names = tuple(name for name, _ in documents)
    if matching or not anywhere:
        return ExportManifest(names=names, files=matching)
    return ExportManifest(
        names=names, files=anywhere, note="its sinkPath names another folder than this one"
    )


def judge(
    *,
    manifest: ExportManifest | str | None,
    present: Mapping[str, int],
    newest: dt.datetime | None,
    now: dt.datetime,
    settle_s: float,
) -> Completeness:
    """The verdict on a folder whose data files are ``present`` (relpath → size)."""
    if isinstance(manifest, str):  # a manifest that cannot be read vouches for nothing
        return Completeness(kind=CheckKind.MANIFEST, complete=False, detail=manifest)
    if manifest is not None:
        return _by_manifest(manifest, present)
    if not present:
        return Completeness(
            kind=CheckKind.QUIET_PERIOD, complete=False, detail="no manifest and no data file"
        )
    age_s = (now - newest).total_seconds() if newest is not None else 0.0
    if age_s >= settle_s:
        detail = f"no manifest; nothing written for {_duration(age_s)}"
        return Completeness(kind=CheckKind.QUIET_PERIOD, complete=True, detail=detail)
    detail = (
        f"no manifest; last file written {_duration(max(age_s, 0.0))} ago, within the "
        f"{_duration(settle_s)} quiet period: the export may still be running"
    )
    return Completeness(kind=CheckKind.QUIET_PERIOD, complete=False, detail=detail)


def _by_manifest(manifest: ExportManifest, present: Mapping[str, int]) -> Completeness:
    listed = manifest.files
    missing = [name for name in listed if name not in present]
    other_size = [n for n, size in listed.items() if n in present and present[n] != size]
    total = sum(listed.values())
    which = ", ".join(manifest.names)
    if missing or other_size:
        problems = []
        if missing:
            problems.append(f"{len(missing)} not there yet ({_few(missing)})")
        if other_size:
            problems.append(f"{len(other_size)} of another size ({_few(other_size)})")
        detail = f"{which} lists {len(listed)} files: {'; '.join(problems)}"
        return Completeness(kind=CheckKind.MANIFEST, complete=False, detail=detail)
    detail = f"{which} lists {len(listed)} files ({total:,} bytes): all there at their sizes"
    extra = [name for name in present if name not in listed]
    if extra:
        detail += f"; {len(extra)} other files left out ({_few(extra)})"
    if manifest.note:
        detail += f" ({manifest.note})"
    return Completeness(kind=CheckKind.MANIFEST, complete=True, detail=detail)


def _few(names: Sequence[str]) -> str:
    shown = ", ".join(sorted(names)[:3])
    return shown + (", ..." if len(names) > 3 else "")


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"
