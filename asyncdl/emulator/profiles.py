"""Generated profile parquet parts for export jobs: identity, the requested XDM fields and
segment membership, written atomically and cached on disk by content (a repeated request costs a
few ``stat`` calls). Blocking; exports.py calls it off the event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as _pc
import pyarrow.parquet as pq

from asyncdl.emulator.parquet import (
    DIGIT_TABLE,
    ECID_DIGITS,
    GENERATOR_VERSION,
    ROW_GROUP_ROWS,
    uniform,
)

# The compute stubs reject scalar operands pyarrow accepts (see parquet.py).
pc: Any = _pc

__all__ = ["PROFILE_GENERATOR_VERSION", "GeneratedPart", "generate_profile_parts"]

#: Bump when the generated profile bytes change for the same request.
PROFILE_GENERATOR_VERSION = 1
_FIXED_COLUMNS = frozenset({"personID", "identityMap", "segmentMembership"})
#: Qualification times sit in the 30 days before this instant (fixed: reproducible bytes).
_QUALIFIED_BEFORE_MS = 1_748_736_000_000
_THIRTY_DAYS_MS = 30 * 86_400_000

_IDENTITY = pa.struct([pa.field("id", pa.string()), pa.field("primary", pa.bool_())])
_IDENTITY_LIST = pa.list_(pa.field("element", _IDENTITY))
_MEMBERSHIP = pa.struct(
    [
        pa.field("status", pa.string()),
        pa.field("lastQualificationTime", pa.timestamp("ms", tz="UTC")),
    ]
)
_STATUSES = pa.array(["realized", "existing"], pa.string())
_U8_1 = pa.scalar(1, pa.uint8())
_F_WINDOW = pa.scalar(float(_THIRTY_DAYS_MS), pa.float64())
_I_BEFORE = pa.scalar(_QUALIFIED_BEFORE_MS, pa.int64())


def _field_tree(paths: Sequence[str]) -> dict[str, Any]:
    """Dotted XDM paths → nested dict (``None`` marks a leaf); a deeper path wins over a leaf."""
    tree: dict[str, Any] = {}
    for path in paths:
        *parents, leaf = path.split(".")
        if (parents[0] if parents else leaf) in _FIXED_COLUMNS:
            continue  # always present: identity and membership are what an export is about
        node = tree
        for name in parents:
            child = node.get(name)
            if not isinstance(child, dict):
                child = node[name] = {}
            node = child
        node.setdefault(leaf, None)
    return tree


def _digit_strings(rng: random.Random, n: int, width: int) -> pa.StringArray:
    """``n`` random strings of ``width`` ASCII digits, built in one buffer."""
    digits = rng.randbytes(width * n).translate(DIGIT_TABLE)
    offsets = pa.array(range(0, width * (n + 1), width), pa.int32())
    return cast(
        pa.StringArray,
        pa.Array.from_buffers(pa.string(), n, [None, offsets.buffers()[1], pa.py_buffer(digits)]),
    )


def _single_entry_map(n: int, key: str, items: Any) -> Any:
    """A map column with one entry per row, ``key`` → that row of ``items``."""
    # The stubs insist on int64 offsets; a map array takes int32 ones at runtime.
    from_arrays: Any = pa.MapArray.from_arrays
    offsets = pa.array(range(n + 1), pa.int32())
    return from_arrays(offsets, pa.repeat(pa.scalar(key, pa.string()), n), items)


def _field_column(rng: random.Random, n: int, name: str, subtree: dict[str, Any] | None) -> Any:
    if subtree is None:
        return pc.binary_join_element_wise(
            pa.scalar(f"{name}-", pa.string()), _digit_strings(rng, n, 8), ""
        )
    children = [_field_column(rng, n, key, value) for key, value in subtree.items()]
    return pa.StructArray.from_arrays(children, names=list(subtree))


def _profiles(rng: random.Random, n: int, *, segment_id: str, tree: dict[str, Any]) -> pa.Table:
    """``n`` profiles qualified for ``segment_id``: identity, the requested fields, membership."""
    ecid = _digit_strings(rng, n, ECID_DIGITS)
    identity = pa.StructArray.from_arrays(
        [ecid, pa.repeat(pa.scalar(True), n)], fields=list(_IDENTITY)
    )
    one_each = pa.array(range(n + 1), pa.int32())  # list offsets: one identity per profile
    identity_map = _single_entry_map(
        n, "ECID", pa.ListArray.from_arrays(one_each, identity, type=_IDENTITY_LIST)
    )
    flags = pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(rng.randbytes(n))])
    status = pc.take(_STATUSES, pc.bit_wise_and(flags, _U8_1))
    ago = pc.cast(pc.floor(pc.multiply(uniform(rng, n), _F_WINDOW)), pa.int64())
    qualified = pc.cast(pc.subtract(_I_BEFORE, ago), pa.timestamp("ms", tz="UTC"))
    # segmentMembership.ups.<segmentId> = {status, lastQualificationTime}, as XDM nests it.
    membership = _single_entry_map(
        n,
        "ups",
        _single_entry_map(
            n,
            segment_id,
            pa.StructArray.from_arrays([status, qualified], fields=list(_MEMBERSHIP)),
        ),
    )
    columns: dict[str, Any] = {"personID": ecid, "identityMap": identity_map}
    for name, subtree in tree.items():
        columns[name] = _field_column(rng, n, name, subtree)
    columns["segmentMembership"] = membership
    return pa.table(columns)


@dataclass(frozen=True, kw_only=True, slots=True)
class GeneratedPart:
    name: str
    path: Path
    size: int
    rows: int


def generate_profile_parts(
    root: Path,
    *,
    seed: int,
    segment_ids: Sequence[str],
    fields: Sequence[str],
    rows_per_segment: int,
    parts: int,
) -> list[GeneratedPart]:
    """The parquet parts of one export batch under ``root`` (blocking), reused when cached.

    The directory is named by a hash of everything that decides the bytes, so a repeated
    request costs a few ``stat`` calls, and every part is written to a temp name and renamed.
    """
    material = {
        "generator": GENERATOR_VERSION,
        "profiles": PROFILE_GENERATOR_VERSION,
        "pyarrow": pa.__version__,
        "seed": seed,
        "segments": list(segment_ids),
        "fields": list(fields),
        "rows_per_segment": rows_per_segment,
        "parts": parts,
    }
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    directory = root / key
    rng = random.Random(f"asyncdl-emulator/profiles/{key}")
    tid = rng.randrange(10**18, 10**19)
    job = uuid.UUID(int=rng.getrandbits(128), version=4)
    total = rows_per_segment * len(segment_ids)
    count = max(1, min(parts, total))
    names = [f"part-{i:05d}-tid-{tid}-{job}-611-1-c000.snappy.parquet" for i in range(count)]
    paths = [directory / name for name in names]
    if not all(path.exists() for path in paths):  # complete by construction (renamed into place)
        tree = _field_tree(fields)
        table = pa.concat_tables(
            [_profiles(rng, rows_per_segment, segment_id=s, tree=tree) for s in segment_ids]
        )
        directory.mkdir(parents=True, exist_ok=True)
        start = 0
        for index, path in enumerate(paths):
            rows = total // count + (1 if index < total % count else 0)
            _write_atomically(path, table.slice(start, rows))
            start += rows
    return [
        GeneratedPart(
            name=name, path=path, size=path.stat().st_size, rows=pq.read_metadata(path).num_rows
        )
        for name, path in zip(names, paths, strict=True)
    ]


def _write_atomically(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        pq.write_table(table, tmp, compression="snappy", row_group_size=ROW_GROUP_ROWS)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
