"""Text inputs: JSONL (one object per line) and CSV (one numeric column per dimension)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, where
from vecx.formats.source import Batch, ReadOptions, Source
from vecx.formats.tables import VECTOR_NAMES

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import orjson
    import pyarrow as pa
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    orjson = lazy("orjson")


class JsonlSource(Source):
    """One JSON object per line: a list field holds the vector, the other fields become payload.

    The payload columns' types are decided over every line before the first row is written
    (:mod:`vecx.formats.payload`), so the input is read twice; standard input is first copied
    to a temporary file.
    """

    kind = "jsonl"

    def __init__(self, path: str, options: ReadOptions, handle: Any = None) -> None:
        super().__init__(path, options)
        self.handle = handle
        self.seekable = handle is None
        self.id_type = pa.int64()
        self._payload_types: dict[str, Any] | None = None

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        handle = self.handle if self.handle is not None else open(self.file, "rb")
        try:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
        finally:
            if self.handle is None:
                handle.close()

    def _records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for number, line in self._lines():
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"{where(self.path)}: line {number}: not valid JSON ({exc})",
                                hint="fix or remove that line; nothing was written") from None
            if not isinstance(obj, dict):
                raise DataError(f"{where(self.path)}: line {number}: expected a JSON object, "
                                f"got {type(obj).__name__}")
            yield number, obj

    def prime(self) -> None:
        """Pick the vector and id fields from the first line and learn the payload schema from all of them."""
        from vecx.formats.payload import PayloadSchema

        if self.handle is not None:  # standard input: keep a copy to read twice
            import shutil

            from vecx.formats.tempfiles import spool_path

            tmp = spool_path("stdin", ".jsonl")
            with open(tmp, "wb") as out:
                shutil.copyfileobj(self.handle, out, 1 << 20)
            self.file, self.handle, self.seekable = tmp, None, True
        schema = PayloadSchema(self.path)
        count = 0
        for number, obj in self._records():
            if not count:
                self._pick_fields(obj, number)
            count += 1
            for key, value in obj.items():
                if key != self.vector_field and key != self.id_field:
                    schema.observe(number, key, value)
        self.payload_fields = schema.fields()
        self._payload_types = {f.name: f.type for f in self.payload_fields}
        self.rows = count or None
        super().prime()

    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        records: list[tuple[int, dict[str, Any]]] = []
        offset = 0
        for number, obj in self._records():
            records.append((number, obj))
            if len(records) >= batch_rows:
                yield self._make_batch(records, offset)
                offset += len(records)
                records = []
        if records:
            yield self._make_batch(records, offset)

    def _make_batch(self, records: list[tuple[int, dict[str, Any]]], offset: int) -> Batch:
        first = records[0][1]
        if self.dim == 0:
            self._pick_fields(first, records[0][0])
        if self.multi:
            from vecx.formats import multi

            sets = multi.from_json_rows([(n, obj.get(self.vector_field)) for n, obj in records],
                                        self.path, self.vector_field, self.dim)
            return self._finish_batch(records, offset, sets)
        vectors = np.empty((len(records), self.dim), dtype=np.float32)
        for i, (number, obj) in enumerate(records):
            value = obj.get(self.vector_field)
            if not isinstance(value, list):
                raise DataError(f"{where(self.path)}: line {number}: field {self.vector_field!r} "
                                "is missing or not a list")
            if len(value) != self.dim:
                raise DataError(f"{where(self.path)}: line {number}: vector has {len(value)} dimensions, "
                                f"earlier lines {self.dim} (mixed dimensions)")
            try:
                vectors[i] = value
            except (TypeError, ValueError):
                raise DataError(f"{where(self.path)}: line {number}: vector holds a non-number") from None
        return self._finish_batch(records, offset, vectors)

    def _finish_batch(self, records: list[tuple[int, dict[str, Any]]], offset: int, vectors: Any) -> Batch:
        if self.id_field is not None:
            raw_ids = [obj.get(self.id_field) for _, obj in records]
            ids = _id_array(raw_ids, self, records)
        else:
            ids = pa.array(np.arange(offset, offset + len(records), dtype=np.int64))
        from vecx.formats.payload import column

        payload = {f.name: column([obj.get(f.name) for _, obj in records], f) for f in self.payload_fields}
        return Batch(offset, ids, vectors, payload)

    def _pick_fields(self, first: dict[str, Any], number: int) -> None:
        lists = [k for k, v in first.items() if isinstance(v, list)]
        if self.options.column is not None:
            if self.options.column not in first:
                raise DataError(f"{where(self.path)}: line {number}: no field {self.options.column!r}")
            self.vector_field = self.options.column
        else:
            named = [n for n in VECTOR_NAMES if n in lists]
            if named:
                self.vector_field = named[0]
            elif len(lists) == 1:
                self.vector_field = lists[0]
            else:
                raise DataError(f"{where(self.path)}: line {number}: cannot tell which field holds the "
                                f"vector (list fields: {', '.join(lists) or 'none'}); use --column")
        vector = first[self.vector_field]
        if not isinstance(vector, list) or not vector:
            raise DataError(f"{where(self.path)}: line {number}: field {self.vector_field!r} "
                            "is not a non-empty list")
        self.dim = len(vector)
        if isinstance(vector[0], list):  # a list of vectors: multi-vector data
            self.multi = True
            self.dim = len(vector[0])
            if not self.dim:
                raise DataError(f"{where(self.path)}: line {number}: field {self.vector_field!r} "
                                "holds an empty vector")
        self.id_field = self.options.id_column or ("id" if "id" in first else None)
        self.ids_from_data = self.id_field is not None
        if self.id_field is not None and self.id_field not in first:
            raise DataError(f"{where(self.path)}: line {number}: no id field {self.id_field!r}")
        if self.id_field is not None:
            self.id_type = pa.int64() if isinstance(first[self.id_field], int) else pa.string()


def _id_array(raw_ids: list[Any], source: Source, records: list[tuple[int, Any]]) -> Any:
    wanted = int if pa.types.is_integer(source.id_type) else str
    for value, (number, _) in zip(raw_ids, records, strict=True):
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise DataError(f"{where(source.path)}: line {number}: id {value!r} is not "
                            f"{'an integer' if wanted is int else 'a string'} like the first line's")
    return pa.array(raw_ids, type=source.id_type)


#: What a CSV input that cannot be read is told to be instead.
_CSV_HINT = "vecx reads .npy, .fvecs/.ivecs/.bvecs, Parquet, Arrow, JSONL and UTF-8 CSV"


class CsvSource(Source):
    """CSV: optional header; an ``id`` column (or ``--id-column``) and one numeric column per dimension."""

    kind = "csv"

    def __init__(self, path: str, options: ReadOptions, handle: Any = None) -> None:
        super().__init__(path, options)
        self.handle = handle
        self.seekable = handle is None
        self.id_type = pa.int64()

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        text = (io.TextIOWrapper(self.handle, encoding="utf-8", newline="") if self.handle is not None
                else open(self.file, encoding="utf-8", newline=""))
        reader = csv.reader(text, "excel-tab" if self.path.endswith(".tsv") else "excel")
        try:
            for number, row in enumerate(reader, start=1):
                if row:
                    yield number, row
        except UnicodeDecodeError:
            at = f"after line {reader.line_num}" if reader.line_num else "at the start"
            raise DataError(f"{where(self.path)}: not UTF-8 text (invalid bytes {at}); is this a CSV file?",
                            hint=_CSV_HINT) from None
        except csv.Error as exc:
            raise DataError(f"{where(self.path)}: line {reader.line_num}: not readable as CSV ({exc})",
                            hint=_CSV_HINT) from None
        finally:
            if self.handle is None:
                text.close()

    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        rows = self._rows()
        try:
            number, first = next(rows)
        except StopIteration:
            raise self.fail("no vectors found (empty input)") from None
        id_index, pending = self._read_header(number, first)
        self.ids_from_data = id_index is not None
        blocks = _CsvBlocks(self, id_index)
        for item in rows:
            pending.append(item)
            if len(pending) >= batch_rows:
                batch = blocks.batch(pending)
                pending = []
                yield batch
        if pending:
            yield blocks.batch(pending)

    def _read_header(self, number: int, first: list[str]) -> tuple[int | None, list[tuple[int, list[str]]]]:
        """The id column's position (``None``: ids are row numbers) and the rows still to convert.

        The first row is a header when its cells after the first are not all numbers, or when
        ``--id-column`` names a column; otherwise it is the first row of data.
        """
        header = not _all_numeric(first[1:]) or self.options.id_column is not None
        if not header:
            return None, [(number, first)]
        id_name = self.options.id_column or ("id" if "id" in first else None)
        if id_name is None:
            return None, []
        if id_name not in first:
            raise self.fail(f"no id column {id_name!r} in the header")
        return first.index(id_name), []


class _CsvBlocks:
    """Turns blocks of CSV rows into batches, for one pass over a :class:`CsvSource`.

    The pass's first row fixes the number of values per row (and the source's dimension);
    ids are integers while every id so far is one, else strings.
    """

    def __init__(self, source: CsvSource, id_index: int | None) -> None:
        self.source = source
        self.id_index = id_index
        self.width: int | None = None
        self.offset = 0

    def batch(self, block: list[tuple[int, list[str]]]) -> Batch:
        """The batch of these rows (line number, cells), which follow the rows of earlier batches."""
        id_index = self.id_index
        ids_raw = [r[id_index] for _, r in block] if id_index is not None else None
        cells = [[c for j, c in enumerate(r) if j != id_index] for _, r in block]
        if self.width is None:
            self.width = len(cells[0])
            self.source.dim = self.width
        self._check_widths(block, cells, self.width)
        vectors = self._floats(block, cells)
        batch = Batch(self.offset, self._ids(ids_raw, len(block)), vectors)
        self.offset += len(block)
        return batch

    def _check_widths(self, block: list[tuple[int, list[str]]], cells: list[list[str]], width: int) -> None:
        """Refuses a row with another number of values than the first row's, naming its line."""
        for (line, _), row in zip(block, cells, strict=True):
            if len(row) != width:
                raise DataError(f"{where(self.source.path)}: line {line}: {len(row)} values, "
                                f"earlier lines {width} (mixed dimensions)")

    def _floats(self, block: list[tuple[int, list[str]]], cells: list[list[str]]) -> Any:
        """The rows' values as float32; a cell that is not a number is an error naming its line and column."""
        try:
            return np.array(cells, dtype=np.float32)
        except ValueError:
            for (line, _), row in zip(block, cells, strict=True):
                for col, cell in enumerate(row):
                    try:
                        float(cell)
                    except ValueError:
                        raise DataError(f"{where(self.source.path)}: line {line}: column {col + 1}: "
                                        f"{cell!r} is not a number") from None
            raise

    def _ids(self, ids_raw: list[str] | None, rows: int) -> Any:
        """The ids of a block: its id cells (integers, or strings from the first non-integer on), else
        row numbers."""
        source = self.source
        if ids_raw is None:
            return pa.array(np.arange(self.offset, self.offset + rows, dtype=np.int64))
        if all(_is_int(x) for x in ids_raw) and pa.types.is_integer(source.id_type):
            return pa.array([int(x) for x in ids_raw], type=pa.int64())
        source.id_type = pa.string()
        return pa.array(ids_raw, type=pa.string())


def _all_numeric(cells: list[str]) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
