"""Payload columns of JSON inputs: one column type per field, decided over the whole input.

JSON has no schema, so a JSON input is read once to learn every field's type before any row
is written (the rows are not kept: only one type per field name). The rules:

- integers and decimals mix: the column is float64 (``1`` then ``2.5`` keeps both values);
- ``null`` or a missing field fits any type: that cell is null;
- a field first seen on a later line is kept, null on the lines before;
- a field that is only ever null is kept as a column of nulls;
- objects and arrays are kept as compact JSON text (keys sorted);
- any other mix (a string and a number, a boolean and a number, an object and a scalar) is
  refused, naming the file, the line and the field, before anything is written.

No value is dropped or changed, except that integers in a float column become floats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, where

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import orjson
    import pyarrow as pa
else:
    pa = lazy("pyarrow")
    orjson = lazy("orjson")

_INT64 = (-(1 << 63), (1 << 63) - 1)
_DESCRIBE = {"bool": "a boolean", "int": "a number", "float": "a number", "string": "a string",
             "json": "an object or array"}


def kind_of(value: Any) -> str | None:
    """The payload kind of one JSON value (``None`` for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "json"


class PayloadSchema:
    """The unified kind of every payload field of one JSON input, learnt line by line."""

    def __init__(self, path: str) -> None:
        self.path = path
        #: field -> kind (``None`` while only nulls were seen), in order of first appearance.
        self.kinds: dict[str, str | None] = {}
        self._seen_on: dict[str, int] = {}

    def observe(self, number: int, name: str, value: Any) -> None:
        """Merge the value of field ``name`` on line ``number``; refuse a type conflict."""
        kind = kind_of(value)
        if kind == "int" and not _INT64[0] <= value <= _INT64[1]:
            raise DataError(f"{where(self.path)}: line {number}: field {name!r}: integer {value} does not fit "
                            "in 64 bits", hint="store such numbers as strings; nothing was written")
        if name not in self.kinds:
            self.kinds[name] = kind
            self._seen_on[name] = number
            return
        known = self.kinds[name]
        if kind is None or kind == known:
            return
        if known is None:
            self.kinds[name], self._seen_on[name] = kind, number
        elif {kind, known} == {"int", "float"}:
            self.kinds[name] = "float"
        else:
            raise DataError(
                f"{where(self.path)}: line {number}: field {name!r} is {_DESCRIBE[kind]} ({_short(value)}), "
                f"but {_DESCRIBE[known]} on line {self._seen_on[name]}",
                hint="give the field one type in every record (integers and decimals may mix, null fits "
                     "anywhere), or rename one of them; nothing was written")

    def fields(self) -> list[Any]:
        """The Arrow fields of the payload columns, in order of first appearance."""
        return [pa.field(name, arrow_type(kind)) for name, kind in self.kinds.items()]


def arrow_type(kind: str | None) -> Any:
    """The Arrow type that stores values of a payload kind."""
    return {None: pa.null(), "bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(),
            "string": pa.string(), "json": pa.string()}[kind]


def column(values: list[Any], field: Any) -> Any:
    """The Arrow array of one payload field's values (``None`` for missing), as
    :meth:`PayloadSchema.fields` typed it."""
    t = field.type
    if pa.types.is_null(t):
        return pa.nulls(len(values))
    if pa.types.is_floating(t):
        return pa.array([None if v is None else float(v) for v in values], type=t)
    if pa.types.is_string(t):
        return pa.array([v if v is None or isinstance(v, str) else _json_text(v) for v in values], type=t)
    return pa.array(values, type=t)


def _json_text(value: Any) -> str:
    """Objects and arrays as compact JSON text, keys sorted (the same record gives the same text)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
