"""Reading a parquet file's footer without pyarrow: magic bytes, footer length, row count.

Verifying every downloaded part must stay cheap (thousands of parts, a process that should stay
well under 100 MB): importing pyarrow costs ~45 MB and ~100 ms, and its metadata reader a thread
hop per part. The footer is a Thrift compact-protocol ``FileMetaData`` followed by its 4-byte
little-endian length and ``PAR1``; this module walks that structure up to ``num_rows`` (field 3;
every value before it decoded or skipped, bounds-checked) and returns it. Anything malformed is a
``VerificationError``. The tests hold it to pyarrow's answer on real files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import VerificationError

__all__ = ["parquet_rows", "parquet_rows_in"]

MAGIC = b"PAR1"
ENCRYPTED_MAGIC = b"PARE"
_TAIL = 8  # footer length (4 bytes, little endian) + magic
_MAX_DEPTH = 64

# Thrift compact protocol type ids.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY = range(9)
_LIST, _SET, _MAP, _STRUCT = 9, 10, 11, 12


class _FooterError(Exception):
    """Internal: malformed footer bytes (translated to VerificationError with the name)."""


# The walk below is written for speed in plain Python: it runs once per downloaded part, in a
# worker thread that holds the GIL while it runs. A cursor object with a method call per byte
# cost a large share of a small part's whole store; positions passed around as ints, varints
# decoded inline and strings skipped in O(1) take a fraction of that.
# Every byte up to num_rows is still accounted for: each value is decoded or skipped with bounds
# checks, and reading past the end surfaces as IndexError, translated once in _rows_from_footer.

_MAX_VARINT_BYTES = 10  # an i64 takes at most 10 bytes of 7 bits


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` and the position after it."""
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    end = pos + _MAX_VARINT_BYTES
    pos += 1
    shift = 7
    while pos < end:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
    raise _FooterError("varint too long")


def _skip_varint(data: bytes, pos: int) -> int:
    end = pos + _MAX_VARINT_BYTES
    while data[pos] & 0x80:
        pos += 1
        if pos >= end:
            raise _FooterError("varint too long")
    return pos + 1


def _skip_binary(data: bytes, pos: int) -> int:
    length, pos = _varint(data, pos)
    pos += length
    if pos > len(data):
        raise _FooterError("length runs past the footer")
    return pos


def _check_count(data: bytes, pos: int, count: int) -> None:
    # Every element of a container takes at least one byte, so a count beyond the bytes left is
    # a lie; without this check, a map of 2**60 one-byte values would keep a thread busy for
    # ever (elements that size are skipped without reading, so nothing runs off the end).
    if count > len(data) - pos:
        raise _FooterError(f"a container of {count} elements in {len(data) - pos} bytes")


def _skip_value(data: bytes, pos: int, kind: int, depth: int) -> int:
    """The position after one value of thrift type ``kind`` (not a struct field's bool)."""
    if kind in (_I16, _I32, _I64):
        return _skip_varint(data, pos)
    if kind == _BINARY:
        return _skip_binary(data, pos)
    if kind == _STRUCT:
        return _struct_fields(data, pos, depth + 1, -1)[0]
    if depth > _MAX_DEPTH:
        raise _FooterError("nesting too deep")
    if kind in (_LIST, _SET):
        header = data[pos]
        pos += 1
        size, element = header >> 4, header & 0x0F
        if size == 15:
            size, pos = _varint(data, pos)
        _check_count(data, pos, size)
        if element in (_TRUE, _FALSE, _BYTE):  # one byte each inside a container
            pos += size
        elif element == _DOUBLE:
            pos += 8 * size
        elif element in (_I16, _I32, _I64):
            for _ in range(size):
                pos = _skip_varint(data, pos)
        elif element == _BINARY:
            for _ in range(size):
                pos = _skip_binary(data, pos)
        elif element == _STRUCT:
            for _ in range(size):
                pos = _struct_fields(data, pos, depth + 1, -1)[0]
        else:
            for _ in range(size):
                pos = _skip_value(data, pos, element, depth + 1)
        if pos > len(data):
            raise _FooterError("length runs past the footer")
        return pos
    if kind == _MAP:
        size, pos = _varint(data, pos)
        _check_count(data, pos, size)
        if size:
            types = data[pos]
            pos += 1
            key, value = types >> 4, types & 0x0F
            for _ in range(size):
                pos = _skip_value(data, pos, key, depth + 1)
                pos = _skip_value(data, pos, value, depth + 1)
        return pos
    if kind in (_TRUE, _FALSE, _BYTE):
        pos += 1
        if pos > len(data):
            raise _FooterError("footer ends inside a value")
        return pos
    if kind == _DOUBLE:
        pos += 8
        if pos > len(data):
            raise _FooterError("length runs past the footer")
        return pos
    raise _FooterError(f"unknown thrift type {kind}")


def _struct_fields(
    data: bytes, pos: int, depth: int, want: int, *, stop_at_want: bool = False
) -> tuple[int, int | None]:
    """Walk one struct from ``pos``; the position after it and integer field ``want``'s value.

    ``stop_at_want``: return as soon as ``want`` is read (the position is then inside the struct).
    """
    if depth > _MAX_DEPTH:
        raise _FooterError("nesting too deep")
    found: int | None = None
    field_id = 0
    while True:
        header = data[pos]
        pos += 1
        kind = header & 0x0F
        if kind == _STOP:
            return pos, found
        delta = header >> 4
        if delta:
            field_id += delta
        else:
            raw, pos = _varint(data, pos)
            field_id = (raw >> 1) ^ -(raw & 1)
        if kind in (_TRUE, _FALSE):
            continue  # a struct field's bool lives in its type nibble
        if kind in (_I16, _I32, _I64):
            if field_id == want:
                raw, pos = _varint(data, pos)
                found = (raw >> 1) ^ -(raw & 1)
                if stop_at_want:
                    return pos, found
            elif data[pos] < 0x80:  # the common one-byte varint, inline
                pos += 1
            else:
                pos = _skip_varint(data, pos)
        elif kind == _BINARY:
            length = data[pos]
            if length < 0x80:
                pos += 1 + length
                if pos > len(data):
                    raise _FooterError("length runs past the footer")
            else:
                pos = _skip_binary(data, pos)
        elif kind == _STRUCT:
            pos = _struct_fields(data, pos, depth + 1, -1)[0]
        else:
            pos = _skip_value(data, pos, kind, depth)


def _rows_from_footer(footer: bytes) -> int:
    # FileMetaData is 1: version, 2: schema, 3: num_rows, 4: row_groups (most of the footer: a
    # ColumnChunk per column per row group), then key-value metadata. The walk stops at num_rows:
    # walking row_groups too cost ~100 us a part in Python (the GIL held in a worker thread) and
    # catches nothing the checks around it miss: the exact size, PAR1 at both ends and a footer
    # length that fits already refuse truncated or foreign bodies, and the row counts are
    # reconciled with the Catalog's outputRecordCount.
    try:
        _, rows = _struct_fields(footer, 0, 0, want=3, stop_at_want=True)
    except IndexError:
        raise _FooterError("footer ends inside a value") from None
    except RecursionError:
        raise _FooterError("nesting too deep") from None
    if rows is None or not 0 <= rows < 1 << 63:  # an i64, and a count
        raise _FooterError("FileMetaData has no usable num_rows")
    return rows


def parquet_rows(path: Path, name: str | None = None) -> int | None:
    """Rows recorded in the footer of ``path``; ``None`` for an encrypted footer.

    Raises VerificationError when the file is not a complete parquet file.
    """
    label = name or path.name
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size

            def read_at(offset: int, length: int) -> bytes:
                fh.seek(offset)
                return fh.read(length)

            return _rows(size, read_at)
    except _FooterError as exc:
        raise VerificationError(f"{label}: parquet footer unreadable ({exc})") from exc
    except OSError as exc:
        raise VerificationError(f"{label}: cannot read back ({exc.strerror or exc})") from exc


def parquet_rows_in(chunks: Sequence[bytes], name: str) -> int | None:
    """``parquet_rows`` for a whole file held in memory as consecutive ``chunks``.

    A small part is verified from the buffers it was just written from: no second open and
    three reads in the worker thread for each of thousands of parts.
    """
    size = sum(map(len, chunks))

    def read_at(offset: int, length: int) -> bytes:
        pieces: list[bytes] = []
        start = 0
        for chunk in chunks:
            end = start + len(chunk)
            if end > offset and start < offset + length:
                pieces.append(chunk[max(offset - start, 0) : offset + length - start])
            start = end
        return b"".join(pieces)

    try:
        return _rows(size, read_at)
    except _FooterError as exc:
        raise VerificationError(f"{name}: parquet footer unreadable ({exc})") from exc


def _rows(size: int, read_at: Callable[[int, int], bytes]) -> int | None:
    if size < len(MAGIC) + _TAIL:
        raise _FooterError(f"{size} bytes is too short for parquet")
    head = read_at(0, len(MAGIC))
    tail = read_at(size - _TAIL, _TAIL)
    if tail[4:] == ENCRYPTED_MAGIC and head == ENCRYPTED_MAGIC:
        return None  # the footer is encrypted: its row count cannot be read
    if head != MAGIC or tail[4:] != MAGIC:
        raise _FooterError("missing PAR1 magic bytes")
    length = int.from_bytes(tail[:4], "little")
    if length <= 0 or length > size - len(MAGIC) - _TAIL:
        raise _FooterError(f"footer length {length} does not fit a {size}-byte file")
    return _rows_from_footer(read_at(size - _TAIL - length, length))
