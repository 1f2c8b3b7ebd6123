"""``--where``: a small filter language over payload columns, evaluated with pyarrow.compute.

Grammar (SQL-like; keywords are case-insensitive)::

    expr    := term ("or" term)*
    term    := factor ("and" factor)*
    factor  := "not" factor | "(" expr ")" | column op literal
             | column ["not"] "in" "(" literal ("," literal)* ")" | column "is" ["not"] "null"
             | column ["not"] ("like" | "ilike") 'pattern' | column ["not"] "between" literal "and" literal
    op      := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    column  := name | `any name`
    literal := 'text' | "text" | number | true | false

Examples: ``lang = 'en'``, ``year >= 2000 and (lang in ('en', 'de') or score > 0.5)``,
``title like 'The %'``, ``year between 1990 and 1999``, ```first name` = 'Marie'``.
``like`` patterns are SQL's: ``%`` any run of characters, ``_`` one character (``ilike``
ignores case); ``between`` includes both ends.
A comparison with a null value is false. The result is a boolean mask over the rows.

A literal must fit the column's type, else the filter is a usage error naming the column and
its type (never a silent cast that matches nothing or everything): quoted text for string
columns (and for date/time columns, parsed), numbers for numeric columns (an integer column
compared with a fraction is compared as floats), ``true``/``false`` for boolean columns. Columns
of other types (lists, structs) cannot be filtered on. Parentheses and ``not`` may nest at most
:data:`MAX_DEPTH` levels deep.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import UsageError

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

_TOKEN = re.compile(r"""\s*(?:(?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")|"""
                    r"""(?P<op><=|>=|!=|<>|==|=|<|>|\(|\)|,)|(?P<word>[A-Za-z_][A-Za-z0-9_.]*)|(?P<quoted>`(?:[^`]|``)+`))""")
#: Deepest nesting of parentheses and ``not`` a filter may have (the parser is recursive).
MAX_DEPTH = 64
_OPS = {"=": "equal", "==": "equal", "!=": "not_equal", "<>": "not_equal", "<": "less",
        "<=": "less_equal", ">": "greater", ">=": "greater_equal"}


def tokenize(text: str) -> list[tuple[str, str]]:
    """Split a filter into (kind, text) tokens; raise UsageError at the first character it cannot read."""
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UsageError(f"--where: cannot read {text[pos:pos + 12]!r} at character {pos + 1}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str, table: Any) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.table = table
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise UsageError(f"--where {self.text!r}: unexpected end")
        self.pos += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token and token[0] == "word" and token[1].lower() == word:
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        kind, value = self.take()
        if value != text:
            raise UsageError(f"--where {self.text!r}: expected {text!r}, found {value!r}")

    def parse(self) -> Any:
        mask = self.expr()
        token = self.peek()
        if token is not None:
            raise UsageError(f"--where {self.text!r}: unexpected {token[1]!r}")
        return mask

    def expr(self) -> Any:
        mask = self.term()
        while self.keyword("or"):
            mask = pc.or_kleene(mask, self.term())
        return mask

    def term(self) -> Any:
        mask = self.factor()
        while self.keyword("and"):
            mask = pc.and_kleene(mask, self.factor())
        return mask

    def factor(self) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise UsageError(f"--where: parentheses and NOT nest more than {MAX_DEPTH} levels deep",
                             hint="write the filter with less nesting")
        try:
            return self._factor()
        finally:
            self.depth -= 1

    def _factor(self) -> Any:
        if self.keyword("not"):
            return pc.invert(self.factor())
        token = self.peek()
        if token == ("op", "("):
            self.take()
            mask = self.expr()
            self.expect(")")
            return mask
        kind, name = self.take()
        if kind == "quoted":
            name = _unquote(name)
        elif kind != "word":
            raise UsageError(f"--where {self.text!r}: expected a column name, found {name!r}")
        column = self.column(name)
        if self.keyword("is"):
            return self._is_null(column)
        negate = self.keyword("not")
        if self.keyword("in"):
            mask = self._in_list(name, column)
        elif self.keyword("like") or self.keyword("ilike"):
            mask = self._like(name, column, self.tokens[self.pos - 1][1].lower() == "ilike")
        elif self.keyword("between"):
            mask = self._between(name, column)
        elif negate:
            raise UsageError(f"--where {self.text!r}: expected IN, LIKE or BETWEEN after {name!r} NOT")
        else:
            return self._comparison(name, column)
        return pc.invert(mask) if negate else mask

    def _like(self, name: str, column: Any, ignore_case: bool) -> Any:
        """``column like 'pattern'``, after the ``like``: text columns only."""
        pattern = self.literal()
        if not isinstance(pattern, str):
            raise UsageError(f"--where {self.text!r}: LIKE takes a quoted pattern, e.g. 'abc%'")
        dtype = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if not pa.types.is_null(dtype) and (_literal_kind(dtype) or ("",))[0] != "text":
            raise UsageError(f"--where {self.text!r}: LIKE compares text; column {name!r} holds {dtype}")
        column = self.comparable(name, column, [pattern])
        if column is None:
            return pa.nulls(len(self.table), pa.bool_())
        return pc.match_like(column, pattern, ignore_case=ignore_case)

    def _between(self, name: str, column: Any) -> Any:
        """``column between low and high`` (both ends included), after the ``between``."""
        low = self.literal()
        if not self.keyword("and"):
            raise UsageError(f"--where {self.text!r}: expected AND in {name!r} BETWEEN ... AND ...")
        high = self.literal()
        column = self.comparable(name, column, [low, high])
        if column is None:
            return pa.nulls(len(self.table), pa.bool_())
        try:
            return pc.and_kleene(pc.greater_equal(column, pa.scalar(low).cast(column.type)),
                                 pc.less_equal(column, pa.scalar(high).cast(column.type)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise UsageError(f"--where {self.text!r}: cannot compare column {name!r} ({column.type}) "
                             f"with {_spell(low)} and {_spell(high)}") from None

    def _is_null(self, column: Any) -> Any:
        """``column is [not] null``, after the ``is``."""
        negate = self.keyword("not")
        if not self.keyword("null"):
            raise UsageError(f"--where {self.text!r}: expected NULL after IS")
        mask = pc.is_null(column)
        return pc.invert(mask) if negate else mask

    def _in_list(self, name: str, column: Any) -> Any:
        """``column in (literal, ...)``, after the ``in``: a literal of the wrong kind is refused."""
        self.expect("(")
        values = [self.literal()]
        while self.peek() == ("op", ","):
            self.take()
            values.append(self.literal())
        self.expect(")")
        column = self.comparable(name, column, values)
        if column is None:
            return pa.nulls(len(self.table), pa.bool_())
        try:
            return pc.is_in(column, value_set=pa.array(values).cast(column.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise UsageError(f"--where {self.text!r}: cannot compare column {name!r} ({column.type}) "
                             f"with {', '.join(_spell(v) for v in values)}") from None

    def _comparison(self, name: str, column: Any) -> Any:
        """``column op literal``, after the column name: a literal of the wrong kind is refused."""
        kind, op = self.take()
        if op not in _OPS:
            raise UsageError(f"--where {self.text!r}: expected a comparison after {name!r}, found {op!r}")
        value = self.literal()
        column = self.comparable(name, column, [value])
        if column is None:
            return pa.nulls(len(self.table), pa.bool_())
        try:
            return getattr(pc, _OPS[op])(column, pa.scalar(value).cast(column.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise UsageError(f"--where {self.text!r}: cannot compare column {name!r} ({column.type}) "
                             f"with {value!r}") from None

    def comparable(self, name: str, column: Any, values: list[Any]) -> Any:
        """``column`` ready to compare with the literals ``values``, or None when it holds only nulls
        (nothing matches).

        A literal of the wrong kind for the column's type is a usage error: a cast would turn a
        number into text that matches nothing, or text into a number that matches rows it should
        not. Dictionary columns are decoded; an integer column compared with a fraction is cast
        to float64.
        """
        dtype = column.type
        if pa.types.is_dictionary(dtype):
            column, dtype = pc.cast(column, dtype.value_type), dtype.value_type
        if pa.types.is_null(dtype):
            return None
        kind = _literal_kind(dtype)
        if kind is None:
            raise UsageError(f"--where {self.text!r}: column {name!r} has type {dtype}, which a filter cannot "
                             "compare", hint="filter on columns of text, numbers, true/false or dates")
        holds, want, fits = kind
        for value in values:
            if not isinstance(value, fits) or (isinstance(value, bool) and bool not in fits):
                raise UsageError(f"--where {self.text!r}: cannot compare column {name!r}, which holds {holds} "
                                 f"({dtype}), with {_spell(value)}; compare it with {want}")
        if pa.types.is_integer(dtype) and any(isinstance(v, float) for v in values):
            column = pc.cast(column, pa.float64())
        return column

    def column(self, name: str) -> Any:
        if name not in self.table.column_names:
            names = [n for n in self.table.column_names]
            raise UsageError(f"--where: no column {name!r}; columns: {', '.join(names)}")
        return self.table[name]

    def literal(self) -> Any:
        kind, value = self.take()
        if kind == "num":
            return float(value) if any(c in value for c in ".eE") else int(value)
        if kind == "str":
            return value[1:-1].replace(value[0] * 2, value[0])
        if kind == "word" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if kind == "word" and value.lower() == "null":
            raise UsageError(f"--where {self.text!r}: a comparison with NULL is never true",
                             hint="write 'COLUMN is null' or 'COLUMN is not null'")
        raise UsageError(f"--where {self.text!r}: expected a value, found {value!r}")


def _literal_kind(dtype: Any) -> tuple[str, str, tuple[type, ...]] | None:
    """What a column of Arrow type ``dtype`` holds, the literal to compare it with, and the Python
    types such a literal may have; ``None`` for types a filter cannot compare (lists, structs)."""
    types = pa.types
    if types.is_string(dtype) or types.is_large_string(dtype) or types.is_string_view(dtype):
        return "text", "quoted text, e.g. 'abc'", (str,)
    if types.is_boolean(dtype):
        return "true/false", "true or false", (bool,)
    if types.is_integer(dtype) or types.is_floating(dtype) or types.is_decimal(dtype):
        return "numbers", "an unquoted number", (int, float)
    if types.is_temporal(dtype):
        return "dates/times", "a quoted date or time, e.g. '2024-01-31'", (str,)
    if types.is_binary(dtype) or types.is_large_binary(dtype) or types.is_fixed_size_binary(dtype):
        return "bytes", "quoted text", (str,)
    return None


def _spell(value: Any) -> str:
    """A literal as it is written in a filter."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _unquote(token: str) -> str:
    """The column name a backquoted identifier names."""
    return token[1:-1].replace("``", "`")


def columns_of(text: str) -> list[str]:
    """Column names a filter mentions (to read only those)."""
    keywords = {"and", "or", "not", "in", "is", "null", "true", "false", "like", "ilike", "between"}
    return sorted({v for k, v in tokenize(text) if k == "word" and v.lower() not in keywords}
                  | {_unquote(v) for k, v in tokenize(text) if k == "quoted"})


def evaluate(text: str, table: Any) -> Any:
    """Boolean numpy mask of the rows of ``table`` matching the filter (null counts as no match)."""
    mask = _Parser(text, table).parse()
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool)


def mask(text: str, names: list[str], read: Any, where: str) -> Any:
    """The boolean mask a filter lets through over rows with an ``id`` and the payload columns
    ``names``, read (``read(columns)``: a table of them) from only the columns it mentions; a
    column that is not there is a :class:`UsageError` naming ``where`` and the columns there are."""
    mentioned = columns_of(text)
    for name in mentioned:
        if name not in names and name != "id":
            raise UsageError(f"--where: no column {name!r} in {where}; columns: {', '.join(['id', *names])}")
    return evaluate(text, read(mentioned or ["id"]))

