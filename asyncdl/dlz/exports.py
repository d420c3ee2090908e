"""Which exports of a dataset the landing zone holds: found by listing, each with its files and
its completeness verdict.

A dataflow writes ``<folder>/<datasetId>/exportTime=YYYYMMDDHHMM/<files>``; the folder is the
dataflow's choice and its macros can nest it (``cmle/egress``), so the dataset's folder is
searched level by level from the landing zone's root (delimited listings, paged by obstore),
up to ``MAX_FOLDER_DEPTH`` folders deep, stopping at the first level that has it; ``--folder``
names it instead. Blocking (obstore's calls): run it in a worker thread.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError, NoExportError, UnsafeNameError
from ..layout import export_folder, reserved
from ..listing import check_name, check_relpath, is_metadata
from .completeness import Completeness, judge, parse_manifest

if TYPE_CHECKING:
    from .store import ZoneStore

__all__ = ["MAX_FOLDER_DEPTH", "Blob", "Export", "dataset_folder", "find_exports", "read_export"]

#: Folder levels searched above ``<datasetId>/`` (the dataflow's folder and its macros).
MAX_FOLDER_DEPTH = 4
_EXPORT_TIME = re.compile(r"^exportTime=(\d{12})$")
_MANIFEST = re.compile(r"^manifest-[^/]+\.json$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Blob:
    """One data file of an export, as the listing gave it."""

    key: str
    relpath: str  # below the export folder
    size: int
    etag: str | None
    modified: dt.datetime


@dataclass(frozen=True, kw_only=True)
class Export:
    """One export folder of a dataset."""

    dataset_id: str
    folder: str  # the dataset's folder, below the landing zone's root ("cmle/egress/<id>")
    export_time: str  # YYYYMMDDHHMM, as the folder names it
    files: tuple[Blob, ...]  # what a download fetches
    rejected: tuple[tuple[str, str], ...]  # (name, why) of files no part can be made of
    manifests: tuple[str, ...]
    completeness: Completeness
    expected_bytes: int | None = None  # the manifest's total, when it has one
    expected_files: int | None = None

    @property
    def name(self) -> str:
        """Its folder's name, and its directory below ``OUT/<dataset id>/``."""
        return export_folder(self.export_time)

    @property
    def when(self) -> dt.datetime:
        return dt.datetime.strptime(self.export_time, "%Y%m%d%H%M").replace(tzinfo=dt.UTC)

    @property
    def bytes(self) -> int:
        return sum(blob.size for blob in self.files)


def _name(key: str) -> str:
    return key.rstrip("/").rsplit("/", 1)[-1]


def dataset_folder(zone: ZoneStore, dataset_id: str, folder: str | None = None) -> str:
    """The dataset's folder below the landing zone's root (NoExportError when there is none;
    ConfigError when two dataflows export it to different folders)."""
    check_name(dataset_id)
    if folder is not None:
        wanted = folder.strip("/")
        if _name(wanted) != dataset_id:
            wanted = f"{wanted}/{dataset_id}".lstrip("/")
        return wanted
    level = [zone.key("")]
    for _ in range(MAX_FOLDER_DEPTH + 1):
        found, deeper = [], []
        for prefix in level:
            for child in zone.bucket.children(prefix):
                name = _name(child)
                if name == dataset_id:
                    found.append(zone.relative(child.rstrip("/")))
                elif not _EXPORT_TIME.match(name):  # another dataset's exports end the path
                    deeper.append(child.rstrip("/"))
        if len(found) > 1:
            raise ConfigError(
                f"dataset {dataset_id} is exported to {len(found)} folders of "
                f"{zone.bucket.url} ({', '.join(sorted(found))}): name one with --folder"
            )
        if found:
            return found[0]
        if not deeper:
            break
        level = deeper
    raise NoExportError(
        f"no export of dataset {dataset_id} in the landing zone {zone.bucket.url} (no "
        f"*/{dataset_id}/exportTime=*/ up to {MAX_FOLDER_DEPTH} folders deep; a dataflow "
        "exporting it writes one on its schedule)"
    )


def find_exports(
    zone: ZoneStore,
    dataset_id: str,
    *,
    folder: str | None = None,
    settle_s: float,
    now: dt.datetime,
) -> list[Export]:
    """Every export of the dataset, newest first, each read and judged."""
    where = dataset_folder(zone, dataset_id, folder)
    times = []
    for child in zone.bucket.children(zone.key(where)):
        match = _EXPORT_TIME.match(_name(child))
        if match is not None:
            times.append(match.group(1))
    if not times:
        raise NoExportError(
            f"no export of dataset {dataset_id} in {zone.bucket.where(zone.key(where))} (no "
            "exportTime=YYYYMMDDHHMM folder)"
        )
    return [
        read_export(zone, dataset_id, where, time, settle_s=settle_s, now=now)
        for time in sorted(times, reverse=True)
    ]


def read_export(
    zone: ZoneStore,
    dataset_id: str,
    folder: str,
    export_time: str,
    *,
    settle_s: float,
    now: dt.datetime,
) -> Export:
    """One export folder: its files (one paged listing), its manifests read, its verdict."""
    relative = f"{folder}/{export_folder(export_time)}".lstrip("/")
    prefix = zone.key(relative)
    files: list[Blob] = []
    rejected: list[tuple[str, str]] = []
    manifests: list[tuple[str, bytes]] = []
    newest: dt.datetime | None = None
    for meta in zone.bucket.listing(prefix):
        relpath = meta["path"][len(prefix) + 1 :]
        modified = meta["last_modified"]
        newest = modified if newest is None or modified > newest else newest
        if "/" not in relpath and _MANIFEST.match(relpath):
            found = zone.bucket.get(meta["path"])
            if found is not None:
                manifests.append((relpath, found[0]))
            continue
        if is_metadata(relpath):
            continue  # _SUCCESS and its kind: bookkeeping, not data
        try:
            check_relpath(relpath)
        except UnsafeNameError as exc:
            rejected.append((relpath, str(exc)))
            continue
        if reserved(relpath):
            rejected.append((relpath, "collides with asyncdl's own files (manifest, .part)"))
            continue
        etag = meta["e_tag"]
        if etag is not None and not etag.startswith(('"', "W/")):
            etag = f'"{etag}"'  # Azure's listing leaves the quotes off; If-Match wants them
        files.append(
            Blob(key=meta["path"], relpath=relpath, size=meta["size"], etag=etag, modified=modified)
        )
    manifest = parse_manifest(manifests, folder=relative) if manifests else None
    present = {blob.relpath: blob.size for blob in files}
    verdict = judge(manifest=manifest, present=present, newest=newest, now=now, settle_s=settle_s)
    expected_bytes = expected_files = None
    if manifest is not None and not isinstance(manifest, str):
        # What the manifest lists is the export: files beside it that it does not list are
        # left out (the verdict names them), so the bytes can be reconciled with its total.
        files = [blob for blob in files if blob.relpath in manifest.files]
        expected_bytes, expected_files = sum(manifest.files.values()), len(manifest.files)
    return Export(
        dataset_id=dataset_id,
        folder=folder,
        export_time=export_time,
        files=tuple(sorted(files, key=lambda blob: blob.relpath)),
        rejected=tuple(rejected),
        manifests=tuple(name for name, _ in manifests),
        completeness=verdict,
        expected_bytes=expected_bytes,
        expected_files=expected_files,
    )
