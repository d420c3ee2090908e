"""The served view: how each batch's generated parts are arranged into the dataSetFiles,
directories and entries Data Access shows under one ``Variants`` value.

A batch's truth (data.py) says which parts exist; this module decides where they are listed:
which dataSetFiles the batch-files listing shows (``single_file`` splits the last one into one
dataSetFile per part, ``nested_datasetfiles`` turns the first into a listing of two child
dataSetFiles), what each directory lists (Spark's commit markers, a partition folder, odd
lengths) and so where a correct client writes each part (``ServedBatch.expected``). Variants
never add, drop or change a part, so Catalog metrics summed over the served parts equal the
truth. Pure and deterministic; views.py turns the nodes into JSON and access.py serves them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from asyncdl.emulator.config import Variants
from asyncdl.emulator.data import TruthBatch, TruthFile, TruthPart

__all__ = [
    "HOSTILE_BYTES",
    "HOSTILE_NAMES",
    "MARKER_NAME",
    "Directory",
    "Entry",
    "Nested",
    "Node",
    "ServedBatch",
    "ServedView",
    "Single",
    "serve_batch",
]

MARKER_NAME = "_SUCCESS"
#: Names a careless client would turn into writes outside its output directory.
HOSTILE_NAMES = (
    "../escape.parquet",
    "/etc/evil.parquet",
    "scoreDate=x/../../escape.parquet",
    "C:evil.parquet",
    "bad\x00nul.parquet",
    "ctl\x07.parquet",
    "..",
)
HOSTILE_BYTES = b"asyncdl emulator: a hostile entry, never a part\n"
_TID = re.compile(r"-tid-(\d+)-")
#: A dataSetFile's sub-directories (DatasetSpec.nested): id → (listed name, parts).
_Subdirs = Mapping[str, tuple[str, tuple[TruthPart, ...]]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One item of a directory listing: a part, a sub-directory, or a few literal bytes."""

    name: str  # as listed: a partition folder is part of it
    length: int  # the real size in bytes
    listed_length: str | None  # what the listing says: usually str(length); None: no key
    part: TruthPart | None = None
    subdir: str | None = None  # the dataSetFileId it lists
    blob: bytes | None = None  # markers and hostile entries
    head_length: bool = True  # False: its HEAD answers without Content-Length (unknown_length)


@dataclass(frozen=True, kw_only=True, slots=True)
class Directory:
    """A dataSetFile (or a sub-directory) that lists parts and markers."""

    id: str
    entries: tuple[Entry, ...]  # up to where hostile names are inserted
    closing: tuple[Entry, ...]  # the commit markers and _SUCCESS, listed last
    by_name: Mapping[str, Entry] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Nested:
    """A dataSetFile that lists further dataSetFiles (the Data Access tutorial's case 2)."""

    id: str
    children: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Single:
    """A dataSetFile that is one complete file: ``GET /files/{id}`` answers the part's bytes."""

    id: str
    part: TruthPart
    head_length: bool = True


Node = Directory | Nested | Single


@dataclass(frozen=True, kw_only=True, slots=True)
class ServedBatch:
    """One batch as served: its listed dataSetFiles, every node below them, where parts go."""

    batch: TruthBatch
    file_ids: tuple[str, ...]  # what the batch-files listing shows, in order
    nodes: Mapping[str, Node]
    #: Relative path below OUT/<batch id>/ → the part a correct client writes there.
    expected: Mapping[str, TruthPart]

    @property
    def size(self) -> int:
        return sum(part.size for part in self.expected.values())

    @property
    def rows(self) -> int:
        return sum(part.rows for part in self.expected.values())


def _tid(batch: TruthBatch) -> str:
    """The Spark job's tid from the part names (one job writes a batch), else one from the id."""
    for part in batch.parts:
        found = _TID.search(part.name)
        if found:
            return found.group(1)
    return str(int(hashlib.sha256(batch.id.encode()).hexdigest()[:15], 16))


class _Builder:
    """Builds one batch's nodes; a class only so the recursion shares its accumulators."""

    def __init__(self, batch: TruthBatch, variants: Variants) -> None:
        self.batch = batch
        self.variants = variants
        self.nodes: dict[str, Node] = {}
        self.expected: dict[str, TruthPart] = {}
        self.tid = _tid(batch)
        first = batch.parts[0] if batch.parts else None
        self.unknown = first if variants.unknown_length else None
        self.prefix = f"scoreDate={batch.score_date.isoformat()}/"

    def add(self, node: Node) -> None:
        if node.id in self.nodes:  # derived ids are unique by construction; say so if not
            raise RuntimeError(f"dataSetFile id {node.id} served twice")
        self.nodes[node.id] = node

    def place(self, relpath: str, part: TruthPart) -> None:
        # Part names are unique within a batch (one Spark job numbers them), so the listed
        # names are too: a correct client needs no rule for duplicates.
        if relpath in self.expected:
            raise RuntimeError(f"{relpath} served twice in batch {self.batch.id}")
        self.expected[relpath] = part

    def serve_file(
        self,
        file_id: str,
        own: tuple[TruthPart, ...],
        subdirs: _Subdirs,
        *,
        single: bool,
        partitioned: bool,
    ) -> list[str]:
        """The dataSetFile ids listed in place of ``file_id``; its nodes are added."""
        if single:
            ids = []
            for number, part in enumerate(own, start=1):
                head = part is not self.unknown
                self.add(Single(id=f"{file_id}-{number}", part=part, head_length=head))
                self.place(part.name, part)
                ids.append(f"{file_id}-{number}")
            # A sub-directory (DatasetSpec.nested) has no parent left: it is listed itself.
            for sub_id, (_, parts) in subdirs.items():
                self.directory(sub_id, parts, {}, partitioned=partitioned)
                ids.append(sub_id)
            return ids
        self.directory(file_id, own, subdirs, partitioned=partitioned)
        return [file_id]

    def directory(
        self,
        directory_id: str,
        parts: tuple[TruthPart, ...],
        subdirs: _Subdirs,
        *,
        partitioned: bool,
    ) -> None:
        variants = self.variants
        prefix = self.prefix if partitioned else ""
        listed: list[Entry] = []
        for number, part in enumerate(parts):
            length: str | None = str(part.size)
            if variants.missing_length and number == 1:
                length = None
            elif variants.missing_length and number == 2:
                length = "-1"
            unknown = part is self.unknown
            listed.append(
                Entry(
                    name=prefix + part.name,
                    length=part.size,
                    listed_length=None if unknown else length,
                    part=part,
                    head_length=not unknown,
                )
            )
            self.place(prefix + part.name, part)
        for sub_id, (name, sub_parts) in subdirs.items():
            listed.append(Entry(name=name, length=0, listed_length="0", subdir=sub_id))
            self.directory(sub_id, sub_parts, {}, partitioned=partitioned)
        closing = [_blob(MARKER_NAME, b"")]
        if variants.commit_markers:
            # Spark's commit protocol: the transaction's start, then what it committed.
            names = [e.name for e in listed if e.part is not None]
            started = json.dumps({"tid": self.tid, "started": self.batch.created_ms + 591})
            committed = json.dumps({"added": names, "removed": []})
            listed.insert(0, _blob(f"_started_{self.tid}", started.encode()))
            closing.insert(0, _blob(f"_committed_{self.tid}", committed.encode()))
        entries, end = tuple(listed), tuple(closing)
        by_name = {entry.name: entry for entry in (*entries, *end)}
        self.add(Directory(id=directory_id, entries=entries, closing=end, by_name=by_name))

    def nested(
        self,
        file_id: str,
        own: tuple[TruthPart, ...],
        subdirs: _Subdirs,
        *,
        single: bool,
        partitioned: bool,
    ) -> list[str]:
        """``file_id`` lists two child dataSetFiles with half its parts each (one if one part)."""
        half = math.ceil(len(own) / 2)
        halves = [chunk for chunk in (own[:half], own[half:]) if chunk] or [()]
        children: list[str] = []
        for number, chunk in enumerate(halves, start=1):
            last = number == len(halves)
            # The last child takes the sub-directories and, in a one-file batch that is also
            # single_file's last dataSetFile, is the one served as single files.
            children += self.serve_file(
                f"{file_id}-{number}",
                chunk,
                subdirs if last else {},
                single=single and last,
                partitioned=partitioned,
            )
        self.add(Nested(id=file_id, children=tuple(children)))
        return [file_id]


def _blob(name: str, body: bytes) -> Entry:
    return Entry(name=name, length=len(body), listed_length=str(len(body)), blob=body)


def _split(file: TruthFile) -> tuple[tuple[TruthPart, ...], _Subdirs]:
    """A file's own parts, and its sub-directories: id → (listed name, parts)."""
    own = tuple(p for p in file.parts if p.directory == file.dataset_file_id)
    subdirs: dict[str, tuple[str, tuple[TruthPart, ...]]] = {}
    for part in file.parts:
        if part.directory != file.dataset_file_id:
            name = part.directory.removeprefix(f"{file.dataset_file_id}-")
            _, parts = subdirs.get(part.directory, (name, ()))
            subdirs[part.directory] = (name, (*parts, part))
    return own, subdirs


def serve_batch(batch: TruthBatch, variants: Variants) -> ServedBatch:
    """The served view of one batch; only a successful batch lists anything (a batch still
    processing already has its parts, but Data Access offers none of them yet)."""
    builder = _Builder(batch, variants)
    files = batch.files if batch.status == "success" else ()
    count = len(files)
    nested_at = 0 if variants.nested_datasetfiles else None
    single_at = count - 1 if variants.single_file else None
    # The partition folder goes to the second dataSetFile, or the first when there is one
    # only or when the second is served as single files (a complete file has no folder).
    partitioned_at = None
    if variants.commit_markers:
        for candidate in (1, 0) if count >= 2 else (0,):
            if candidate != single_at or candidate == nested_at:
                partitioned_at = candidate
                break
    file_ids: list[str] = []
    for position, file in enumerate(files):
        own, subdirs = _split(file)
        serve = builder.nested if position == nested_at else builder.serve_file
        file_ids += serve(
            file.dataset_file_id,
            own,
            subdirs,
            single=position == single_at,
            partitioned=position == partitioned_at,
        )
    return ServedBatch(
        batch=batch, file_ids=tuple(file_ids), nodes=builder.nodes, expected=builder.expected
    )


_HOSTILE = tuple(
    Entry(
        name=n, length=len(HOSTILE_BYTES), listed_length=str(len(HOSTILE_BYTES)), blob=HOSTILE_BYTES
    )
    for n in HOSTILE_NAMES
)
_HOSTILE_BY_NAME = {entry.name: entry for entry in _HOSTILE}


class ServedView:
    """Every batch's served view under one ``Variants``, built per batch on first use.

    Batches come from ``batches`` (the Index's live dict: export jobs and added batches go
    there), so a batch registered later is served as soon as it is asked for; a batch whose
    status changes is ``forget``-ten and built again from its new truth.
    """

    def __init__(self, batches: Mapping[str, TruthBatch], variants: Variants) -> None:
        self._batches = batches
        self.variants = variants
        self._served: dict[str, ServedBatch] = {}
        self._owner: dict[str, str] = {}  # node id → batch id

    def batch(self, batch_id: str) -> ServedBatch | None:
        served = self._served.get(batch_id)
        if served is None:
            truth = self._batches.get(batch_id)
            if truth is None:
                return None
            served = self._served[batch_id] = serve_batch(truth, self.variants)
            self._owner.update(dict.fromkeys(served.nodes, batch_id))
        return served

    def forget(self, batch_id: str) -> None:
        """Drop what was built for ``batch_id``: the next request builds it from ``batches``."""
        served = self._served.pop(batch_id, None)
        if served is not None:
            for node_id in served.nodes:
                del self._owner[node_id]

    def node(self, node_id: str) -> tuple[ServedBatch, Node] | None:
        """The node ``node_id`` and its batch; None when no batch serves it."""
        batch_id = self._owner.get(node_id)
        if batch_id is None:
            # Not built yet (a client may ask for a file id before listing its batch): build
            # the rest once; later misses only look at batches added since.
            for other in list(self._batches):
                if other not in self._served:
                    self.batch(other)
            batch_id = self._owner.get(node_id)
            if batch_id is None:
                return None
        served = self._served[batch_id]
        return served, served.nodes[node_id]

    @staticmethod
    def entries(directory: Directory, *, hostile: bool) -> list[Entry]:
        """The full listing of ``directory``: hostile names (a fault) before the markers."""
        return [*directory.entries, *(_HOSTILE if hostile else ()), *directory.closing]

    @staticmethod
    def lookup(directory: Directory, name: str, *, hostile: bool) -> Entry | None:
        """The entry ``name`` of ``directory`` as a download finds it."""
        if hostile and name in _HOSTILE_BY_NAME:
            return _HOSTILE_BY_NAME[name]
        return directory.by_name.get(name)
