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
from collections.abc import Callable

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
        """The next byte; running past the end is :class:`_Malformed`."""
        if self.pos >= len(self.data):
            raise _Malformed("truncated")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        """An unsigned LEB128 varint (Thrift compact lengths, sizes and zigzag-encoded integers)."""
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
        """A signed integer (i16, i32, i64 and field id deltas are zigzag-encoded varints)."""
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def binary(self) -> bytes:
        """A length-prefixed byte string; a length past the end is :class:`_Malformed`."""
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
        """(element type, size) of a list or set; sizes from 15 up follow the header as a varint."""
        head = self.byte()
        size = head >> 4
        if size == 15:
            size = self.varint()
        return head & 0x0F, size

    def skip(self, kind: int, depth: int = 0) -> None:
        """Steps over one value of Thrift type ``kind`` (nesting is bounded, unknown types are refused).

        Each type has its own skipper in :data:`_SKIPPERS`; the cursor is checked against the
        end afterwards, since fixed-size values advance it without reading.
        """
        if depth > 64:
            raise _Malformed("nesting too deep")
        skipper = _SKIPPERS.get(kind)
        if skipper is None:
            raise _Malformed(f"unknown thrift type {kind}")
        skipper(self, depth)
        if self.pos > len(self.data):
            raise _Malformed("truncated")

    def _skip_nothing(self, depth: int) -> None:
        """A bool field: its value lives in its header, nothing follows."""

    def _skip_byte(self, depth: int) -> None:
        """A single byte."""
        self.pos += 1

    def _skip_varint(self, depth: int) -> None:
        """An i16, i32 or i64: one varint."""
        self.varint()

    def _skip_double(self, depth: int) -> None:
        """A double: eight bytes."""
        self.pos += 8

    def _skip_binary(self, depth: int) -> None:
        """A string or binary: a length and that many bytes."""
        self.binary()

    def _skip_list(self, depth: int) -> None:
        """A list or set: its header, then each element."""
        element, size = self.list_header()
        self._check_count(size, 1)
        for _ in range(size):
            self._skip_element(element, depth + 1)

    def _skip_map(self, depth: int) -> None:
        """A map: a size, then (if not empty) one byte of key and value types and the pairs."""
        size = self.varint()
        if size:
            types = self.byte()
            self._check_count(size, 2)
            for _ in range(size):
                self._skip_element(types >> 4, depth + 1)
                self._skip_element(types & 0x0F, depth + 1)

    def _skip_element(self, kind: int, depth: int) -> None:
        """One element of a collection: a bool takes a byte there (in a field it lives in the header)."""
        if kind in (_TRUE, _FALSE):
            self.pos += 1
        else:
            self.skip(kind, depth)

    def _check_count(self, count: int, min_bytes: int) -> None:
        """Refuse a collection whose elements (each at least ``min_bytes``) cannot fit in what is left:
        a damaged size would otherwise make the skipper loop for as long as the size says."""
        if count * min_bytes > len(self.data) - self.pos:
            raise _Malformed("collection larger than the footer")

    def _skip_struct(self, depth: int) -> None:
        """A struct: every field up to the stop field."""
        last = 0
        while True:
            field_kind, last = self.field_header(last)
            if field_kind == _STOP:
                return
            self.skip(field_kind, depth + 1)


#: How :meth:`_Reader.skip` steps over a value of each Thrift compact type.
_SKIPPERS: dict[int, Callable[[_Reader, int], None]] = {
    _TRUE: _Reader._skip_nothing, _FALSE: _Reader._skip_nothing,
    _BYTE: _Reader._skip_byte,
    _I16: _Reader._skip_varint, _I32: _Reader._skip_varint, _I64: _Reader._skip_varint,
    _DOUBLE: _Reader._skip_double,
    _BINARY: _Reader._skip_binary,
    _LIST: _Reader._skip_list, _SET: _Reader._skip_list,
    _MAP: _Reader._skip_map,
    _STRUCT: _Reader._skip_struct,
}


def _key_value(reader: _Reader) -> tuple[bytes, bytes | None]:
    """One ``KeyValue`` struct of the footer's metadata list: its key and (optional) value."""
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


def _footer_bytes(path: str) -> bytes | None:
    """The serialized ``FileMetaData`` of a Parquet file, or ``None`` if the file's frame is not Parquet's.

    Checks the leading and trailing magic and that the footer length fits the file (and
    :data:`MAX_FOOTER_BYTES`); an unreadable file is ``None`` too.
    """
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
    return data


def _key_value_list(reader: _Reader, pairs: dict[bytes, bytes]) -> None:
    """Reads the ``key_value_metadata`` list into ``pairs`` (keys without a value are left out)."""
    element, count = reader.list_header()
    if element != _STRUCT:
        raise _Malformed("key_value_metadata is not a list of structs")
    for _ in range(count):
        key, value = _key_value(reader)
        if value is not None:
            pairs[key] = value


def _schema_element(reader: _Reader) -> tuple[str, int]:
    """One ``SchemaElement``: its name and number of children (0 for a leaf)."""
    name, children, last = "", 0, 0
    while True:
        kind, last = reader.field_header(last)
        if kind == _STOP:
            return name, children
        if last == 4 and kind == _BINARY:
            name = reader.binary().decode("utf-8", "replace")
        elif last == 5 and kind == _I32:
            children = reader.zigzag()
        else:
            reader.skip(kind)


def _top_level_names(reader: _Reader) -> list[str]:
    """The names of the top-level columns, from the ``schema`` list (a depth-first flattening of the
    schema tree whose first element is the root)."""
    element, count = reader.list_header()
    if element != _STRUCT or count < 1:
        raise _Malformed("schema is not a list of structs")
    elements = [_schema_element(reader) for _ in range(count)]
    names, pending = [], [elements[0][1]]  # children still to visit, per open level
    for name, children in elements[1:]:
        while pending and pending[-1] == 0:
            pending.pop()
        if not pending:
            raise _Malformed("schema has more elements than its tree")
        if len(pending) == 1:
            names.append(name)
        pending[-1] -= 1
        pending.append(children)
    return names


def _file_metadata(reader: _Reader, names: list[str] | None = None) -> tuple[int | None, dict[bytes, bytes]]:
    """``num_rows`` (``None`` if absent) and the key-value metadata of a ``FileMetaData`` struct (and,
    into ``names`` if given, the top-level column names).

    Every other field is skipped; a damaged struct raises :class:`_Malformed`.
    """
    rows: int | None = None
    pairs: dict[bytes, bytes] = {}
    last = 0
    while True:
        kind, last = reader.field_header(last)
        if kind == _STOP:
            return rows, pairs
        if last == 3 and kind == _I64:
            rows = reader.zigzag()
        elif last == 5 and kind == _LIST:
            _key_value_list(reader, pairs)
        elif last == 2 and kind == _LIST and names is not None:
            names.extend(_top_level_names(reader))
        else:
            reader.skip(kind)


def column_names(path: str) -> list[str] | None:
    """The top-level column names of a Parquet file, from its footer without pyarrow (None if it
    cannot be read this way)."""
    data = _footer_bytes(path)
    if data is None:
        return None
    names: list[str] = []
    try:
        _file_metadata(_Reader(data), names)
    except _Malformed:
        return None
    return names


def read_footer(path: str) -> tuple[int, dict[bytes, bytes]] | None:
    """``(num_rows, key-value metadata)`` of a Parquet file, or ``None`` if it cannot be read this way."""
    data = _footer_bytes(path)
    if data is None:
        return None
    reader = _Reader(data)
    try:
        rows, pairs = _file_metadata(reader)
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
