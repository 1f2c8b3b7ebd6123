"""JSON records as input: a JSONL source whose batches hold parsed objects instead of vectors.

Used when the first stage of a chain reads JSON (``vsa``). Each non-blank line must be one JSON
object; ``Batch.vectors`` is the list of parsed dicts, ids come from ``--id-column`` (default the
``id`` field if the first record has one, else row numbers; the id field is not encoded), and the
fields named by ``--keep`` become payload columns (one type per field over every record, see
:mod:`vecx.formats.payload`; objects and arrays are kept as JSON text). Errors are all-or-nothing: a line that is not
JSON (this includes NaN and Infinity, which JSON does not have, and numbers too large for a
double), is not an object, or has a missing or duplicate id stops the run with the line number,
and no output file is written.

The source fingerprint hashes the ids and the raw bytes of every record line.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, UsageError, where
from vecx.formats import metadata
from vecx.formats.source import Batch, ReadOptions, Source, check_unique
from vecx.space import JSON, VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import orjson
    import pyarrow as pa
else:
    pa = lazy("pyarrow")
    orjson = lazy("orjson")

RECORD_BATCH_ROWS = 4096
RECORD_EXTENSIONS = (".jsonl", ".ndjson", ".json")


@dataclass
class _RecordBatch(Batch):
    """A :class:`Batch` of parsed records that keeps each record's line too (stripped raw bytes):
    the source fingerprint hashes them, and spooling standard input copies them."""

    lines: list[bytes] = field(default_factory=list)


class JsonRecordsSource(Source):
    """One JSON object per line, handed to the chain as parsed records."""

    kind = "jsonl-records"

    def __init__(self, path: str, options: ReadOptions, handle: Any = None) -> None:
        super().__init__(path, options)
        self.handle = handle
        self.seekable = handle is None
        self.id_type = pa.int64()
        self.id_field: str | None = None
        self._payload_types: dict[str, Any] | None = None
        self._line_of: dict[int, int] = {}

    @property
    def space(self) -> VectorSpec:
        """The input space of JSON records: dtype ``json``, no dimension (the JSON codec makes the vectors)."""
        return VectorSpec(0, JSON, "cosine", False)

    def batch_rows(self) -> int:
        """Records per batch: ``--batch-rows``, else :data:`RECORD_BATCH_ROWS`."""
        return self.options.batch_rows or RECORD_BATCH_ROWS

    def prime(self) -> None:
        """Read the first batch: it decides the id field. With ``--keep``, a first pass over every
        line decides the payload column types (:mod:`vecx.formats.payload`)."""
        if self.options.keep:
            self._scan_kept()
        rest = self.batches()
        first = next(rest, None)
        if first is None:
            raise self.fail("no records found (empty input)", hint="give a .jsonl file with one JSON object per line")
        self._pending = (first, rest)

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        handle = self.handle if self.handle is not None else open(self.file, "rb")
        try:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
        finally:
            if self.handle is None:
                handle.close()

    def _records(self) -> Iterator[tuple[int, bytes, Any]]:
        for number, line in self._lines():
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"{where(self.path)}: line {number}: not valid JSON ({exc})",
                                hint="fix or remove that line (NaN/Infinity are not JSON); "
                                     "nothing was written") from None
            if not isinstance(obj, dict):
                raise DataError(f"{where(self.path)}: line {number}: expected a JSON object, got "
                                f"{_json_type(obj)}", hint="each line must be one object; nothing was written")
            yield number, line, obj

    def _scan_kept(self) -> None:
        """The types of the ``--keep`` fields, unified over every record (standard input is copied first)."""
        from vecx.formats.payload import PayloadSchema, arrow_type

        if self.handle is not None:
            import shutil

            from vecx.formats.tempfiles import spool_path

            tmp = spool_path("records", ".jsonl")
            with open(tmp, "wb") as out:
                shutil.copyfileobj(self.handle, out, 1 << 20)
            self.file, self.handle, self.seekable = tmp, None, True
        schema = PayloadSchema(self.path)
        id_field: str | None = None
        for count, (number, _, obj) in enumerate(self._records()):
            if not count:
                id_field = self._id_field_of(obj, number)
            for name in self.options.keep or ():
                if name in obj and name != id_field:
                    schema.observe(number, name, obj[name])
        kept = [name for name in self.options.keep or () if name != id_field]
        for name in kept:
            if name not in schema.kinds:
                raise DataError(f"{where(self.path)}: --keep {name}: no record has this field",
                                hint="check the field name")
        self._kept_fields = [pa.field(name, arrow_type(schema.kinds[name])) for name in kept]

    def _raw_batches(self, batch_rows: int) -> Iterator[_RecordBatch]:
        pending: list[tuple[int, bytes, Any]] = []
        offset = 0
        for number, line, obj in self._records():
            pending.append((number, line.strip(), obj))
            if len(pending) >= batch_rows:
                yield self._make_batch(pending, offset)
                offset += len(pending)
                pending = []
        if pending:
            yield self._make_batch(pending, offset)

    def _make_batch(self, pending: list[tuple[int, bytes, Any]], offset: int) -> _RecordBatch:
        if self._payload_types is None:
            self._pick_fields(pending)
        records = [obj for _, _, obj in pending]
        if self.id_field is not None:
            wanted = int if pa.types.is_integer(self.id_type) else str
            for number, _, obj in pending:
                value = obj.get(self.id_field)
                if value is None:
                    raise DataError(f"{where(self.path)}: line {number}: no id field {self.id_field!r}",
                                    hint="every record needs an id, or use --id-column to pick another field")
                if not isinstance(value, wanted) or isinstance(value, bool):
                    raise DataError(f"{where(self.path)}: line {number}: id {value!r} is not "
                                    f"{'an integer' if wanted is int else 'a string'} like the first record's")
            ids = pa.array([obj[self.id_field] for obj in records], type=self.id_type)
        else:
            ids = pa.array(range(offset, offset + len(records)), type=pa.int64())
        from vecx.formats.payload import column

        payload = {f.name: column([obj.get(f.name) for obj in records], f) for f in self.payload_fields}
        if self.id_field is not None:  # the id names the record; it is not part of its content
            records = [{k: v for k, v in obj.items() if k != self.id_field} for obj in records]
        return _RecordBatch(offset, ids, records, payload, lines=[line for _, line, _ in pending])

    def _id_field_of(self, first: dict[str, Any], number: int) -> str | None:
        """The id field, decided by the first record: ``--id-column``, else ``id`` if it holds an integer or string."""
        if self.options.id_column is not None:
            if self.options.id_column not in first:
                raise DataError(f"{where(self.path)}: line {number}: no id field {self.options.id_column!r}")
            return self.options.id_column
        return "id" if isinstance(first.get("id"), (int, str)) and not isinstance(first.get("id"), bool) else None

    def _pick_fields(self, pending: list[tuple[int, bytes, Any]]) -> None:
        number, _, first = pending[0]
        self.id_field = self._id_field_of(first, number)
        self.ids_from_data = self.id_field is not None
        if self.id_field is not None:
            self.id_type = pa.int64() if isinstance(first[self.id_field], int) else pa.string()
        self.payload_fields = getattr(self, "_kept_fields", [])
        self._payload_types = {f.name: f.type for f in self.payload_fields}

    def batches(self) -> Iterator[Batch]:
        """Every record once, in batches; ids and record bytes are hashed on the way (see
        :meth:`_validated_records`)."""
        pending = getattr(self, "_pending", None)
        if pending is not None:
            self._pending = None
            yield pending[0]
            yield from pending[1]
            return
        yield from self._validated_records(self._raw_batches(self.batch_rows()))

    def _validated_records(self, batches: Iterator[_RecordBatch]) -> Iterator[Batch]:
        """Hash ids and record bytes, check ids are unique; the source block is ready at the end."""
        from vecx.formats.source import _hash_ids

        hashers = (hashlib.sha256(), hashlib.sha256(), hashlib.sha256())  # records, id lengths, id bytes
        all_ids: list[Any] = []
        total = 0
        for batch in batches:
            for line in batch.lines:
                hashers[0].update(len(line).to_bytes(8, "little"))
                hashers[0].update(line)
            _hash_ids(batch.ids, hashers[1], hashers[2])
            all_ids.append(batch.ids)
            total += len(batch)
            yield batch
        if total == 0:
            raise self.fail("no records found (empty input)")
        if self.ids_given:
            check_unique(self, all_ids)
        self.rows = total
        block = {
            "rows": total, "dim": 0, "dtype": JSON, "metric": "cosine", "normalized": False,
            "ids_sha256": hashlib.sha256((hashers[1].hexdigest() + hashers[2].hexdigest()).encode()).hexdigest(),
            "vectors_sha256": hashers[0].hexdigest(),
        }
        block["fingerprint"] = metadata.source_fingerprint(block)
        self._source_block = block

    def take(self, rows: Any, convert: Any = None) -> list[Any]:
        """The parsed records of the given sorted row numbers (the fitting sample; records are not
        converted, ``convert`` is for vectors)."""
        import numpy as np

        out: list[Any] = []
        for batch in self.batches():
            lo = np.searchsorted(rows, batch.offset)
            hi = np.searchsorted(rows, batch.offset + len(batch))
            out.extend(batch.vectors[int(r) - batch.offset] for r in rows[lo:hi])
        return out

    def spooled(self) -> Source:
        """A re-readable copy of a stdin source (raw bytes in a temporary file, removed at exit)."""
        if self.seekable:
            return self
        import shutil

        from vecx.formats.tempfiles import spool_path

        tmp = spool_path("records", ".jsonl")
        with open(tmp, "wb") as out:
            pending = getattr(self, "_pending", None)
            if pending is not None:  # the primed first batch was consumed from the stream already
                for line in pending[0].lines:
                    out.write(line + b"\n")
                self._pending = None
            shutil.copyfileobj(self.handle, out, 1 << 20)
        copy = JsonRecordsSource(tmp, self.options)
        copy.path = self.path
        copy.prime()
        return copy


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def open_records(path: str, options: ReadOptions) -> Source:
    """Open a JSONL file (or ``-``: stdin) of records for a chain that starts with a JSON codec."""
    if path == "-":
        import sys

        source = JsonRecordsSource("-", options, handle=sys.stdin.buffer)
    else:
        if not os.path.exists(path):
            raise DataError(f"{path}: no such file", hint="check the path")
        if os.path.isdir(path):
            raise DataError(f"{path}: is a directory, not a JSONL file")
        if not path.lower().endswith(RECORD_EXTENSIONS):
            raise UsageError(f"{path}: this chain starts with a JSON codec (vsa), which reads JSON records "
                             "from a .jsonl file (one object per line)")
        source = JsonRecordsSource(path, options)
    source.prime()
    return source


def query_records_for(searcher: Any, json_arg: str | None, vector: str | None) -> tuple[list[Any], list[Any] | None]:
    """Query records for an index: ``--record``, else a records file given as ``--vector``, else stdin."""
    if searcher.chain.input.dtype != JSON:
        raise UsageError(f"{searcher.path}: --record queries need an index of JSON records (made by vecx vsa); "
                         "this one takes vectors", hint="use --vector FILE or --like ID")
    if json_arg is None:
        if vector not in (None, "-") and os.path.splitext(vector)[1].lower() not in (".jsonl", ".json", ".ndjson", ""):
            raise UsageError(f"{vector}: {searcher.path} is an index of JSON records (made by vecx vsa); its "
                             "queries are records, not vectors",
                             hint="give --record '{\"field\": \"value\"}', --record @FILE.jsonl, or JSONL records "
                                  "on stdin (--vector FILE.jsonl reads them too)")
        json_arg = "-" if vector in (None, "-") else "@" + vector
    return read_query_records(json_arg)


def read_query_records(text: str) -> tuple[list[Any], list[Any] | None]:
    """Query records from ``--record``: a JSON object literal, ``@FILE`` (JSONL) or ``-`` (JSONL on stdin).

    Every record must be an object; a bad line fails the whole batch (nothing is searched).
    Records may be partial (any subset of fields). An ``id`` field is not encoded (like the data's
    id field) but reported back as the query id.
    """
    import sys

    if text == "-" or text.startswith("@"):
        name = "<stdin>" if text == "-" else text[1:]
        try:
            data = sys.stdin.buffer.read() if text == "-" else open(text[1:], "rb").read()
        except OSError as exc:
            raise UsageError(f"--record {text}: cannot read {name} ({exc.strerror})") from None
        lines = [(n, line) for n, line in enumerate(data.splitlines(), start=1) if line.strip()]
    else:
        name, lines = "--record", [(1, text.encode())]
    records = []
    for number, line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            at = f"{name}: line {number}" if name != "--record" else "--record"
            raise DataError(f"{at}: not valid JSON ({exc}); no query was run",
                            hint="give one JSON object, e.g. --record '{\"category\": \"physics\"}'") from None
        if not isinstance(obj, dict):
            at = f"{name}: line {number}" if name != "--record" else "--record"
            raise DataError(f"{at}: expected a JSON object, got {_json_type(obj)}; no query was run")
        records.append(obj)
    if not records:
        raise DataError(f"{name}: no query records")
    ids = [r.get("id") for r in records]
    records = [{k: v for k, v in r.items() if k != "id"} for r in records]
    return records, ids if any(i is not None for i in ids) else None


def find_record(path: str, item_id: Any) -> dict[str, Any]:
    """The first JSON object of a JSONL file whose ``id`` is ``item_id`` (compared as text)."""
    import orjson

    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"--records {path}: cannot read ({exc.strerror})") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise DataError(f"{path}: line {number}: not valid JSON") from None
            if isinstance(obj, dict) and str(obj.get("id")) == str(item_id):
                return obj
    raise DataError(f"{path}: no record with id {item_id!r}")
