"""Read a Parquet file's key-value metadata without pyarrow.

``vecx info`` on a vecx table needs only the ``vecx`` key of the footer, and importing
pyarrow costs more than everything else the command does. A Parquet file ends with
``<FileMetaData, Thrift compact protocol> <4-byte little-endian length> PAR1``; this module
walks that struct, skipping every field except ``num_rows`` (3) and ``key_value_metadata``
(5), with a generic Thrift compact skipper. Anything unexpected returns ``None`` and the
caller falls back to pyarrow, which gives the precise error for a damaged file.
"""

from __future__ import annotations

import os
import struct

MAGIC = b"PAR1"
#: Footers larger than this are left to pyarrow (vecx footers are a few KB to a few MB).
MAX_FOOTER_BYTES = 64 << 20

# Thrift compact protocol type ids.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)


class _Malformed(Exception):
    """The footer is not what this reader understands (the caller falls back to pyarrow)."""


class _Reader:
    """A cursor over Thrift compact-protocol bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise _Malformed("truncated")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise _Malformed("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def binary(self) -> bytes:
        size = self.varint()
        if self.pos + size > len(self.data):
            raise _Malformed("binary past the end")
        value = self.data[self.pos: self.pos + size]
        self.pos += size
        return value

    def field_header(self, last_id: int) -> tuple[int, int]:
        """(type, field id) of the next field; type ``_STOP`` ends the struct."""
        head = self.byte()
        kind = head & 0x0F
        if kind == _STOP:
            return _STOP, 0
        delta = head >> 4
        return kind, (last_id + delta if delta else self.zigzag())

    def list_header(self) -> tuple[int, int]:
        head = self.byte()
        size = head >> 4
        if size == 15:
            size = self.varint()
        return head & 0x0F, size

    def skip(self, kind: int, depth: int = 0) -> None:
        if depth > 64:
            raise _Malformed("nesting too deep")
        if kind in (_TRUE, _FALSE):
            return  # a bool field's value lives in its header
        if kind == _BYTE:
            self.pos += 1
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.pos += 8
        elif kind == _BINARY:
            self.binary()
        elif kind in (_LIST, _SET):
            element, size = self.list_header()
            for _ in range(size):
                if element in (_TRUE, _FALSE):
                    self.pos += 1  # bools inside collections take one byte each
                else:
                    self.skip(element, depth + 1)
        elif kind == _MAP:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.skip(types >> 4, depth + 1)
                    self.skip(types & 0x0F, depth + 1)
        elif kind == _STRUCT:
            last = 0
            while True:
                field_kind, last = self.field_header(last)
                if field_kind == _STOP:
                    return
                self.skip(field_kind, depth + 1)
        else:
            raise _Malformed(f"unknown thrift type {kind}")
        if self.pos > len(self.data):
            raise _Malformed("truncated")


def _key_value(reader: _Reader) -> tuple[bytes, bytes | None]:
    key: bytes | None = None
    value: bytes | None = None
    last = 0
    while True:
        kind, last = reader.field_header(last)
        if kind == _STOP:
            break
        if last == 1 and kind == _BINARY:
            key = reader.binary()
        elif last == 2 and kind == _BINARY:
            value = reader.binary()
        else:
            reader.skip(kind)
    if key is None:
        raise _Malformed("key-value pair without a key")
    return key, value


def read_footer(path: str) -> tuple[int, dict[bytes, bytes]] | None:
    """``(num_rows, key-value metadata)`` of a Parquet file, or ``None`` if it cannot be read this way."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size < 12:
                return None
            handle.seek(size - 8)
            tail = handle.read(8)
            if tail[4:] != MAGIC:
                return None
            length = struct.unpack("<I", tail[:4])[0]
            if length <= 0 or length > min(MAX_FOOTER_BYTES, size - 12):
                return None
            handle.seek(size - 8 - length)
            data = handle.read(length)
            handle.seek(0)
            if handle.read(4) != MAGIC:
                return None
    except OSError:
        return None
    reader = _Reader(data)
    rows: int | None = None
    pairs: dict[bytes, bytes] = {}
    try:
        last = 0
        while True:
            kind, last = reader.field_header(last)
            if kind == _STOP:
                break
            if last == 3 and kind == _I64:
                rows = reader.zigzag()
            elif last == 5 and kind == _LIST:
                element, count = reader.list_header()
                if element != _STRUCT:
                    raise _Malformed("key_value_metadata is not a list of structs")
                for _ in range(count):
                    key, value = _key_value(reader)
                    if value is not None:
                        pairs[key] = value
            else:
                reader.skip(kind)
    except _Malformed:
        return None
    if rows is None or reader.pos != len(data):
        return None
    return rows, pairs


def vecx_metadata(path: str) -> tuple[int, bytes] | None:
    """``(num_rows, raw vecx metadata)`` of a Parquet file written by vecx, else ``None``."""
    from vecx.formats.metadata import KEY

    footer = read_footer(path)
    if footer is None or KEY not in footer[1]:
        return None
    return footer[0], footer[1][KEY]


def table_metadata(path: str) -> dict | None:
    """The parsed ``vecx`` metadata of a vecx Parquet file, read from its footer without pyarrow, else None.

    Only trusted when the footer's row count agrees with the metadata; anything unusual goes the
    slow way, through pyarrow, which reports damage precisely.
    """
    from vecx.formats import metadata

    if path == "-" or not path.endswith(".parquet") or not os.path.isfile(path):
        return None
    found = vecx_metadata(path)
    if found is None:
        return None
    rows, raw = found
    meta = metadata.loads(raw, path)
    if meta.get("kind", "vectors") == "vectors" and meta.get("rows") != rows:
        return None
    return meta
