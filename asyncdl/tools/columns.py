"""Where the Customer AI columns are in a schema: found by leaf name at the top level or inside
struct columns, because real Customer AI output nests them under ``_<tenant>.<instance>``, and
kept only when their type is the one the report can read.

A column found by name but of an unexpected type is treated as absent: the report describes what
it can rather than failing on a dataset that merely reuses a name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from ..errors import ConfigError

__all__ = [
    "FACTORS",
    "PERCENTILE",
    "PROPENSITY",
    "SCORE",
    "SCORE_CANDIDATES",
    "Located",
    "is_text",
    "locate_columns",
]

# Roles of the columns the report reads, named after Adobe's leaf names.
SCORE = "score"
PERCENTILE = "percentileScore"
PROPENSITY = "propensityType"
FACTORS = "influentialFactors"
#: The score role's column when none is asked for: Adobe's 0-100 score, else the 0-1 probability.
SCORE_CANDIDATES = ("score", "probability")

#: Role → field path (top-level name first), for the roles that were found.
Located = dict[str, tuple[str, ...]]


def locate_columns(schema: pa.Schema, *, score_column: str | None = None) -> Located:
    """The path of each role's column in ``schema``.

    ``score_column`` picks the score role's column by leaf name or dotted path (any numeric
    column: ``probability``, ``_tenant.instance.score``); one that is missing or not numeric is a
    ConfigError, because the user asked for it. Without it the first of ``SCORE_CANDIDATES``
    that is numeric is used, if any.
    """
    located: Located = {}
    if score_column is None:
        for leaf in SCORE_CANDIDATES:
            path = _fitting(schema, leaf, _is_numeric)
            if path is not None:
                located[SCORE] = path
                break
    else:
        path = _fitting(schema, score_column, _is_numeric)
        if path is None:
            raise ConfigError(f"no numeric column {score_column!r} to draw")
        located[SCORE] = path
    for role, fits in ((PERCENTILE, _is_numeric), (PROPENSITY, is_text), (FACTORS, _is_factors)):
        path = _fitting(schema, role, fits)
        if path is not None:
            located[role] = path
    return located


def _fitting(
    schema: pa.Schema, name: str, fits: Callable[[pa.DataType], bool]
) -> tuple[str, ...] | None:
    """``name`` as a dotted path if the schema has that exact path, else as a leaf name."""
    path = _exact(schema, tuple(name.split("."))) if "." in name else None
    if path is None:
        path = _locate(schema, name)
    if path is None or not fits(_field_type(schema, path)):
        return None
    return path


def _exact(schema: pa.Schema, path: tuple[str, ...]) -> tuple[str, ...] | None:
    index = schema.get_field_index(path[0])
    if index < 0:
        return None
    field = schema.field(index)
    for name in path[1:]:
        if not isinstance(field.type, pa.StructType):
            return None
        child = field.type.get_field_index(name)
        if child < 0:
            return None
        field = field.type.field(child)
    return path


def _locate(schema: pa.Schema, leaf: str) -> tuple[str, ...] | None:
    """The shallowest field path ending in ``leaf``, descending into structs only (a value
    inside a list is not one per row); ties go to schema order."""
    level: list[tuple[tuple[str, ...], pa.Field[Any]]] = [
        ((field.name,), field) for field in schema
    ]
    while level:
        for path, field in level:
            if field.name == leaf:
                return path
        deeper: list[tuple[tuple[str, ...], pa.Field[Any]]] = []
        for path, field in level:
            if isinstance(field.type, pa.StructType):
                struct = field.type
                for index in range(struct.num_fields):
                    child = struct.field(index)
                    deeper.append(((*path, child.name), child))
        level = deeper
    return None


def _field_type(schema: pa.Schema, path: tuple[str, ...]) -> pa.DataType:
    field = schema.field(path[0])
    for name in path[1:]:
        struct = field.type
        assert isinstance(struct, pa.StructType)  # paths only descend into structs
        field = struct.field(name)
    kind: pa.DataType = field.type
    return kind


def _is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def is_text(kind: pa.DataType) -> bool:
    """A string column, dictionary-encoded or not."""
    if isinstance(kind, pa.DictionaryType):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_factors(kind: pa.DataType) -> bool:
    if not isinstance(kind, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        return False
    item = kind.value_type
    return isinstance(item, pa.StructType) and item.get_field_index("code") >= 0
