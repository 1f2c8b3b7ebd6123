"""Read vectors from every input vecx accepts, as a stream of validated batches.

Inputs: ``.npy``; ``.fvecs`` / ``.ivecs`` / ``.bvecs``; Parquet, Arrow IPC files
(``.arrow``/``.feather``) and streams, with a fixed- or variable-size list column;
JSONL (one object per line with a list field); CSV (an optional id column plus one
numeric column per dimension); ``-`` for standard input (format sniffed from its
first bytes). Every source yields :class:`Batch` objects of at most ``batch_rows``
rows, so memory does not grow with the input.

*Raw* inputs (anything not written by vecx) are validated as they stream: equal
dimensions, finite values, unique ids; their ids and vectors are hashed into the
source fingerprint, and whether every vector has unit norm is recorded.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from vecx._lazy import lazy
from vecx.codecs.base import METRICS, VectorSpec
from vecx.errors import DataError, MismatchError, UsageError, where
from vecx.formats import metadata, state

np = lazy("numpy")
pa = lazy("pyarrow")
pq = lazy("pyarrow.parquet")
pc = lazy("pyarrow.compute")
orjson = lazy("orjson")

VECTOR_NAMES = ("vector", "embedding", "embeddings", "emb", "vec")
NUMPY_TO_SPACE = {"float32": "float32", "float16": "float16", "int8": "int8"}
NORM_TOLERANCE = 1e-3


@dataclass
class ReadOptions:
    """How to find vectors and ids in a raw input (ignored for vecx tables where noted)."""

    column: str | None = None  # vector column / JSON field
    id_column: str | None = None  # id column / JSON field
    metric: str | None = None  # declared metric of raw vectors (default cosine)
    ids_file: str | None = None  # one id per line, replaces ids
    batch_rows: int | None = None


@dataclass
class Batch:
    """A slice of rows: ids, vectors as a 2-D numpy array, payload columns."""

    offset: int
    ids: Any
    vectors: Any
    payload: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.vectors)


def batch_rows_for(row_bytes: int) -> int:
    """Rows per batch (and Parquet row group): about 32 MiB of vectors, a power of two."""
    rows = 1024
    while rows < 65536 and rows * 2 * row_bytes <= 32 << 20:
        rows *= 2
    return rows


# --------------------------------------------------------------------------------------
# Source: shared streaming, validation and fingerprinting
# --------------------------------------------------------------------------------------
class Source:
    """An opened input. Subclasses implement :meth:`_raw_batches`."""

    kind = "?"
    #: Whether ids come from the data (else they are row numbers, unique by construction).
    ids_from_data = True

    def __init__(self, path: str, options: ReadOptions) -> None:
        self.path = path  # as the user named it (messages); "-" for stdin
        self.file = path  # what to open (a spool file for stdin)
        self.options = options
        self.meta: dict[str, Any] | None = None  # vecx metadata (tables written by vecx)
        self.state_blob: bytes | None = None
        self.rows: int | None = None
        self.dim = 0
        self.dtype = "float32"
        self.id_type: Any = None
        self.payload_fields: list[Any] = []
        self.seekable = True
        self._source_block: dict[str, Any] | None = None

    # -- to be provided by subclasses --
    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        raise NotImplementedError

    # -- public --
    @property
    def ids_given(self) -> bool:
        """Whether ids come from the input or an ids file (and so must be checked for duplicates)."""
        return self.ids_from_data or bool(self.options.ids_file)

    @property
    def is_vecx(self) -> bool:
        """Whether the input was written by vecx (carries provenance)."""
        return self.meta is not None

    @property
    def space(self) -> VectorSpec:
        """The vector space of the input (for raw inputs ``normalized`` is known after a full pass)."""
        if self.meta is not None:
            return VectorSpec.from_json(self.meta["vector"])
        metric = self.options.metric or "cosine"
        normalized = bool(self._source_block and self._source_block["normalized"])
        return VectorSpec(self.dim, "float32", metric, normalized)

    def batch_rows(self) -> int:
        """Rows per batch for this input (the same rule as the writer's row groups)."""
        width = self.space.bytes_per_vector if self.meta is not None else self.dim * 4
        return self.options.batch_rows or batch_rows_for(max(1, width))

    def prime(self) -> None:
        """Read one batch ahead when the format only reveals the dimension (and fields) in the data."""
        if self.dim:
            return
        rest = self.batches()
        first = next(rest, None)
        if first is None:
            raise self.fail("no vectors found (empty input)")
        self._pending = (first, rest)

    def batches(self) -> Iterator[Batch]:
        """Stream every row once; raw inputs are validated and fingerprinted on the way."""
        pending = getattr(self, "_pending", None)
        if pending is not None:
            self._pending = None
            yield pending[0]
            yield from pending[1]
            return
        if self.meta is not None:
            yield from self._raw_batches(self.batch_rows())
            return
        yield from self._validated(self._with_ids_file(self._raw_batches(self.batch_rows())))

    def source_block(self) -> dict[str, Any] | None:
        """Provenance of the data as imported; for raw inputs available after :meth:`batches` ran."""
        if self.meta is not None:
            return self.meta.get("source")
        return self._source_block

    def chain_records(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], VectorSpec]:
        """Stage records, their fitted arrays and the chain's input space, from the metadata."""
        if self.meta is None:
            return [], [], self.space
        records = self.meta.get("stages", [])
        arrays: list[dict[str, Any]] = [{} for _ in records]
        if self.state_blob is not None:
            _, arrays = state.unpack(self.state_blob, self.path)
        if len(arrays) != len(records):
            raise MismatchError(f"{self.path}: fitted state holds {len(arrays)} stages, "
                                f"the metadata lists {len(records)}")
        first = VectorSpec.from_json(records[0]["input"]) if records else self.space
        return records, arrays, first

    def take(self, rows: Any) -> Any:
        """Vectors of the given sorted row numbers, as float32 (for fitting samples)."""
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        filled = 0
        for batch in self.batches():
            lo = np.searchsorted(rows, batch.offset)
            hi = np.searchsorted(rows, batch.offset + len(batch))
            if hi > lo:
                out[filled: filled + hi - lo] = batch.vectors[rows[lo:hi] - batch.offset]
                filled += hi - lo
        return out

    def count_rows(self) -> int:
        """Number of rows (a pass over the data if the format does not say)."""
        if self.rows is None:
            self.rows = sum(len(b) for b in self.batches())
        return self.rows

    # -- helpers for subclasses --
    def fail(self, message: str, row: int | None = None, hint: str | None = None) -> DataError:
        """A :class:`DataError` located at this input (and row)."""
        return DataError(f"{where(self.path, row)}: {message}", hint=hint)

    def _with_ids_file(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        if not self.options.ids_file:
            yield from batches
            return
        ids_path = self.options.ids_file
        try:
            with open(ids_path, encoding="utf-8") as handle:
                ids = [line.rstrip("\r\n") for line in handle]
        except OSError as exc:
            raise DataError(f"{ids_path}: cannot read ids file ({exc.strerror})") from None
        if ids and ids[-1] == "":
            ids.pop()
        used = 0
        for batch in batches:
            if batch.offset + len(batch) > len(ids):
                raise DataError(f"{ids_path}: has {len(ids)} ids but {self.path} has more rows",
                                hint="give exactly one id per line, one line per vector")
            batch.ids = pa.array(ids[batch.offset: batch.offset + len(batch)], type=pa.string())
            used = batch.offset + len(batch)
            yield batch
        if used != len(ids):
            raise DataError(f"{ids_path}: has {len(ids)} ids but {self.path} has {used} rows",
                            hint="give exactly one id per line, one line per vector")

    def _validated(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """Check finiteness and dimensions, hash ids and vectors, track norms and unique ids.

        Hashing runs on a second thread (hashlib releases the GIL), one batch behind, so it
        overlaps with encoding and writing instead of adding to them.
        """
        from concurrent.futures import ThreadPoolExecutor

        hashers = (hashlib.sha256(), hashlib.sha256(), hashlib.sha256())  # vectors, id lengths, id bytes
        all_ids: list[Any] = []
        normalized = True
        total = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vecx-hash") as pool:
            pending = None
            for batch in batches:
                v = batch.vectors = np.ascontiguousarray(batch.vectors, dtype=np.float32)
                sq = np.einsum("ij,ij->i", v, v)
                if not np.isfinite(sq).all():  # NaN/Inf, or squares overflowing float32: look closer
                    bad = np.flatnonzero(~np.isfinite(v).all(axis=1))
                    if len(bad):
                        raise self.fail("vector holds NaN or Inf", batch.offset + int(bad[0]),
                                        hint="clean or drop that row; vecx refuses non-finite values")
                if normalized and len(sq) and np.abs(np.sqrt(sq) - 1.0).max() > NORM_TOLERANCE:
                    normalized = False
                if batch.ids.null_count:
                    nulls = batch.ids.is_null().to_numpy(zero_copy_only=False)
                    raise self.fail("id is missing (null)", batch.offset + int(np.flatnonzero(nulls)[0]))
                if pending is not None:
                    pending.result()
                pending = pool.submit(_hash_batch, hashers, v, batch.ids)
                all_ids.append(batch.ids)
                total += len(batch)
                yield batch
            if pending is not None:
                pending.result()
        if total == 0:
            raise self.fail("no vectors found (empty input)", hint="check the file and --column")
        if self.ids_given:
            _check_unique(self, all_ids)
        self.rows = total
        block = {
            "rows": total, "dim": self.dim, "dtype": "float32",
            "metric": self.options.metric or "cosine", "normalized": normalized,
            "ids_sha256": hashlib.sha256(
                (hashers[1].hexdigest() + hashers[2].hexdigest()).encode()).hexdigest(),
            "vectors_sha256": hashers[0].hexdigest(),
        }
        block["fingerprint"] = metadata.source_fingerprint(block)
        self._source_block = block


def _hash_batch(hashers: tuple[Any, Any, Any], vectors: Any, ids: Any) -> None:
    hashers[0].update(memoryview(vectors).cast("B"))
    _hash_ids(ids, hashers[1], hashers[2])


def _hash_ids(ids: Any, lengths: Any, data: Any) -> None:
    """Hash ids independently of batch boundaries: int64 values, or string lengths + bytes."""
    if pa.types.is_integer(ids.type):
        lengths.update(ids.cast(pa.int64()).to_numpy(zero_copy_only=False).astype("<i8").tobytes())
        return
    ids = ids.cast(pa.large_string())
    offsets = np.frombuffer(ids.buffers()[1], dtype="<i8")[ids.offset: ids.offset + len(ids) + 1]
    lengths.update(np.diff(offsets).astype("<i8").tobytes())
    data.update(memoryview(ids.buffers()[2])[offsets[0]: offsets[-1]])


def _check_unique(source: Source, chunks: list[Any]) -> None:
    """Refuse duplicate ids, naming a duplicate and both rows.

    Sort-based, so the extra memory is the ids themselves plus 8 bytes per row
    (a hash table over millions of ids costs far more).
    """
    ids = pa.chunked_array(chunks, type=chunks[0].type).combine_chunks()
    if pa.types.is_integer(ids.type):
        values = ids.to_numpy(zero_copy_only=False)
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        dup = np.flatnonzero(ordered[1:] == ordered[:-1])
    else:
        order = pc.sort_indices(ids).to_numpy()
        ordered = ids.take(pa.array(order))
        dup = np.flatnonzero(pc.equal(ordered.slice(1), ordered.slice(0, len(ordered) - 1))
                             .to_numpy(zero_copy_only=False))
    if len(dup):
        first = int(dup[0])
        value = ordered[first].as_py() if not isinstance(ordered, np.ndarray) else ordered[first].item()
        rows = sorted((int(order[first]), int(order[first + 1])))
        raise source.fail(f"duplicate id {value!r} (rows {rows[0]} and {rows[1]})",
                          hint="ids must be unique; drop duplicates or import without --id-column")


# --------------------------------------------------------------------------------------
# numpy and *vecs
# --------------------------------------------------------------------------------------
class NpySource(Source):
    """A 2-D ``.npy`` array, read one batch at a time with plain reads.

    Not memory-mapped: mapped pages count towards the process's resident memory,
    which would then grow with the file.
    """

    kind = "npy"
    ids_from_data = False

    def __init__(self, path: str, options: ReadOptions) -> None:
        super().__init__(path, options)
        try:
            header = np.load(path, mmap_mode="r", allow_pickle=False)  # parses the header only
            shape, dtype, self.data_offset = header.shape, header.dtype, header.offset
            fortran = header.flags.f_contiguous and not header.flags.c_contiguous
            del header
        except (ValueError, OSError, EOFError) as exc:
            raise self.fail(f"not a readable .npy file ({exc})") from None
        if len(shape) == 1:
            shape = (1, shape[0])
        if len(shape) != 2 or dtype.kind not in "fiu" or fortran and shape[0] > 1:
            raise self.fail(f"expected a 2-D C-order numeric array, got shape {shape} dtype {dtype}"
                            f"{' (Fortran order)' if fortran else ''}")
        self.file_dtype = dtype
        self.rows, self.dim = (int(n) for n in shape)
        expected = self.data_offset + self.rows * self.dim * dtype.itemsize
        if os.path.getsize(path) < expected:
            raise self.fail(f"file is truncated: the header promises {self.rows} x {self.dim} values")
        self.id_type = pa.int64()

    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        with open(self.file, "rb") as handle:
            handle.seek(self.data_offset)
            for start in range(0, self.rows or 0, batch_rows):
                n = min(batch_rows, (self.rows or 0) - start)
                chunk = np.fromfile(handle, dtype=self.file_dtype, count=n * self.dim).reshape(n, self.dim)
                ids = pa.array(np.arange(start, start + n, dtype=np.int64))
                yield Batch(start, ids, chunk if chunk.dtype == np.float32 else chunk.astype(np.float32))


class VecsSource(Source):
    """``.fvecs`` (float32), ``.ivecs`` (int32) or ``.bvecs`` (uint8): each record is ``int32 d`` + d values."""

    kind = "vecs"
    ids_from_data = False
    ELEMENT = {".fvecs": "<f4", ".ivecs": "<i4", ".bvecs": "u1"}

    def __init__(self, path: str, options: ReadOptions) -> None:
        super().__init__(path, options)
        element = np.dtype(self.ELEMENT[os.path.splitext(path)[1].lower()])
        size = os.path.getsize(path)
        if size < 4:
            raise self.fail("no vectors found (empty input)")
        with open(path, "rb") as handle:
            self.dim = int(np.frombuffer(handle.read(4), dtype="<i4")[0])
        if self.dim <= 0:
            raise self.fail(f"first record declares dimension {self.dim}; not a *vecs file?")
        record = 4 + self.dim * element.itemsize
        if size % record:
            raise self.fail(f"size {size} is not a multiple of the record size {record} for dimension "
                            f"{self.dim}: truncated file or mixed dimensions")
        self.rows = size // record
        self.record_dtype = np.dtype([("d", "<i4"), ("v", element, (self.dim,))])
        self.id_type = pa.int64()

    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        with open(self.file, "rb") as handle:
            for start in range(0, self.rows or 0, batch_rows):
                chunk = np.fromfile(handle, dtype=self.record_dtype, count=min(batch_rows, (self.rows or 0) - start))
                bad = np.flatnonzero(chunk["d"] != self.dim)
                if len(bad):
                    raise self.fail(f"record declares dimension {int(chunk['d'][bad[0]])}, "
                                    f"earlier records {self.dim} (mixed dimensions)", start + int(bad[0]))
                vectors = np.asarray(chunk["v"], dtype=np.float32)
                yield Batch(start, pa.array(np.arange(start, start + len(vectors), dtype=np.int64)), vectors)


# --------------------------------------------------------------------------------------
# Arrow-based tables: Parquet, IPC file, IPC stream
# --------------------------------------------------------------------------------------
class TableSource(Source):
    """Shared logic for Arrow record-batch inputs: find the vector, id and payload columns."""

    def _setup(self, schema: Any, raw_meta: bytes | None, raw_state: bytes | None) -> None:
        if raw_meta is not None:
            self.meta = metadata.loads(raw_meta, self.path)
            if self.meta.get("kind", "vectors") != "vectors":
                raise self.fail(f"this is a vecx {self.meta.get('kind')} file, not a vector table")
            if raw_state is not None:
                self.state_blob = state.decode_blob(raw_state, self.path)
            if self.options.ids_file:
                raise UsageError("--ids applies to raw inputs; this table already has ids")
            self.vector_column = self.meta["vector"]["column"]
            self.id_column: str | None = self.meta["id"]["column"]
            self.dim = int(self.meta["vector"]["dim"])
            self.dtype = self.meta["vector"]["dtype"]
            if self.vector_column not in schema.names:
                raise self.fail(f"vector column {self.vector_column!r} named in the metadata is missing")
        else:
            self.vector_column = self._find_vector_column(schema)
            self.id_column = self.options.id_column or ("id" if "id" in schema.names else None)
            if self.id_column is not None and self.id_column not in schema.names:
                raise self.fail(f"no id column {self.id_column!r}; columns are {', '.join(schema.names)}")
            vtype = schema.field(self.vector_column).type
            self.dim = vtype.list_size if pa.types.is_fixed_size_list(vtype) else 0
        if self.id_column is not None:
            id_type = schema.field(self.id_column).type
            if pa.types.is_integer(id_type):
                self.id_type = pa.int64()
            elif pa.types.is_string(id_type) or pa.types.is_large_string(id_type):
                self.id_type = pa.string()
            else:
                raise self.fail(f"id column {self.id_column!r} has type {id_type}; ids must be integers or strings")
        else:
            self.id_type = pa.int64()
        self.ids_from_data = self.id_column is not None
        skip = {self.vector_column, self.id_column}
        self.payload_fields = [f for f in schema if f.name not in skip]

    def _find_vector_column(self, schema: Any) -> str:
        def is_vector(t: Any) -> bool:
            return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and (
                pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type))

        if self.options.column is not None:
            if self.options.column not in schema.names:
                raise self.fail(f"no column {self.options.column!r}; columns are {', '.join(schema.names)}")
            if not is_vector(schema.field(self.options.column).type):
                raise self.fail(f"column {self.options.column!r} is {schema.field(self.options.column).type}, "
                                "not a list of numbers")
            return self.options.column
        candidates = [f.name for f in schema if is_vector(f.type)]
        for name in VECTOR_NAMES:
            if name in candidates:
                return name
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise self.fail(f"no vector column (a list of numbers) among {', '.join(schema.names) or 'no columns'}",
                            hint="store vectors as a list<float> column, or name it with --column")
        raise self.fail(f"several list columns ({', '.join(candidates)}); pick one with --column")

    def _convert(self, rb: Any, offset: int) -> Batch:
        col = rb.column(self.vector_column)
        if col.null_count:
            bad = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise self.fail(f"vector is missing (null) in column {self.vector_column!r}", offset + bad)
        if pa.types.is_fixed_size_binary(col.type):  # packed codes (vecx tables only)
            width = col.type.byte_width
            data = np.frombuffer(col.buffers()[1], dtype=np.uint8)
            vectors = data[col.offset * width: (col.offset + len(col)) * width].reshape(len(col), width)
        elif pa.types.is_fixed_size_list(col.type):
            width = col.type.list_size
        else:
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            width = int(lengths[0]) if len(lengths) else self.dim
            if self.dim == 0:
                self.dim = width
            bad = np.flatnonzero(lengths != self.dim)
            if len(bad):
                raise self.fail(f"vector has {int(lengths[bad[0]])} dimensions, earlier rows "
                                f"{self.dim} (mixed dimensions)", offset + int(bad[0]))
        if not pa.types.is_fixed_size_binary(col.type):
            values = col.flatten()
            if values.null_count:
                bad_row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0]) // max(1, width)
                raise self.fail("vector holds a null value", offset + bad_row)
            vectors = values.to_numpy(zero_copy_only=False).reshape(len(rb), width)
        if self.meta is None and vectors.dtype != np.float32:
            vectors = vectors.astype(np.float32)
        if self.id_column is not None:
            ids = rb.column(self.id_column)
            ids = ids.cast(self.id_type) if ids.type != self.id_type else ids
        else:
            ids = pa.array(np.arange(offset, offset + len(rb), dtype=np.int64))
        payload = {f.name: rb.column(f.name) for f in self.payload_fields}
        return Batch(offset, ids, vectors, payload)

    def _convert_all(self, record_batches: Iterator[Any], batch_rows: int) -> Iterator[Batch]:
        offset = 0
        for rb in record_batches:
            for start in range(0, rb.num_rows, batch_rows):
                piece = rb.slice(start, batch_rows)
                yield self._convert(piece, offset)
                offset += piece.num_rows


class ParquetSource(TableSource):
    """A Parquet file (read in record batches, never whole)."""

    kind = "parquet"

    def __init__(self, path: str, options: ReadOptions) -> None:
        super().__init__(path, options)
        try:
            # Neither memory-mapped nor pre-buffered: both keep pages resident, so memory would grow with the file.
            self.file = pq.ParquetFile(path, memory_map=False, pre_buffer=False, buffer_size=1 << 20)
            schema = self.file.schema_arrow
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            raise self.fail(f"not a readable Parquet file ({_short(exc)})",
                            hint="the file may be truncated or corrupt; re-create it") from None
        kv = self.file.metadata.metadata or {}
        self._setup(schema, kv.get(metadata.KEY), kv.get(metadata.STATE_KEY))
        self.rows = self.file.metadata.num_rows
        if self.dim == 0 and self.rows:
            first = self.file.read_row_group(0, columns=[self.vector_column]).column(0)
            self.dim = len(first[0]) if len(first) and first[0].is_valid else 0

    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        try:
            yield from self._convert_all(self.file.iter_batches(batch_size=batch_rows), batch_rows)
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            raise self.fail(f"cannot read Parquet data ({_short(exc)})",
                            hint="the file may be truncated or corrupt; re-create it") from None


class IpcSource(TableSource):
    """An Arrow IPC file (Feather v2) or stream; a vecx stream ends with a metadata trailer."""

    kind = "arrow"

    def __init__(self, path: str, options: ReadOptions, handle: Any = None) -> None:
        super().__init__(path, options)
        self.trailer: dict[str, Any] | None = None
        try:
            if handle is not None:  # a stream (stdin)
                self.reader = pa.ipc.open_stream(handle)
                self.is_stream = True
                self.seekable = False
            else:
                source = pa.OSFile(path)
                try:
                    self.reader = pa.ipc.open_file(source)
                    self.is_stream = False
                except pa.ArrowInvalid:
                    source.seek(0)
                    self.reader = pa.ipc.open_stream(source)
                    self.is_stream = True
            schema = self.reader.schema
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            raise self.fail(f"not readable Arrow IPC data ({_short(exc)})") from None
        kv = schema.metadata or {}
        self._setup(schema, kv.get(metadata.KEY), kv.get(metadata.STATE_KEY))
        if not self.is_stream:
            self.rows = sum(self.reader.get_batch(i).num_rows for i in range(self.reader.num_record_batches))
        elif self.meta is not None:
            self.rows = self.meta.get("rows")
        self._consumed = False

    def _record_batches(self) -> Iterator[Any]:
        if not self.is_stream:
            for i in range(self.reader.num_record_batches):
                yield self.reader.get_batch(i)
            return
        if self._consumed:
            raise RuntimeError("an Arrow stream can be read only once (spool it first)")
        self._consumed = True
        while True:
            try:
                rb, custom = self.reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                return
            if custom is not None and metadata.KEY in custom and rb.num_rows == 0:
                self.trailer = metadata.loads(custom[metadata.KEY], self.path)
                continue
            yield rb

    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        try:
            yield from self._convert_all(self._record_batches(), batch_rows)
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            raise self.fail(f"cannot read Arrow data ({_short(exc)})") from None
        if self.trailer is not None:
            self.meta = self.trailer  # late fields (rows, source hash, fingerprints) are final now
            self.rows = self.trailer.get("rows")


# --------------------------------------------------------------------------------------
# Text: JSONL and CSV
# --------------------------------------------------------------------------------------
class JsonlSource(Source):
    """One JSON object per line: a list field holds the vector, scalar fields become payload."""

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

    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        records: list[tuple[int, dict[str, Any]]] = []
        offset = 0
        for number, line in self._lines():
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"{where(self.path)}: line {number}: not valid JSON ({exc})",
                                hint="fix or remove that line; nothing was written") from None
            if not isinstance(obj, dict):
                raise DataError(f"{where(self.path)}: line {number}: expected a JSON object, "
                                f"got {type(obj).__name__}")
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
        if self.id_field is not None:
            raw_ids = [obj.get(self.id_field) for _, obj in records]
            ids = _id_array(raw_ids, self, records)
        else:
            ids = pa.array(np.arange(offset, offset + len(records), dtype=np.int64))
        payload = {}
        for name, ptype in (self._payload_types or {}).items():
            values = [obj.get(name) for _, obj in records]
            try:
                payload[name] = pa.array(values, type=ptype)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                raise DataError(f"{where(self.path)}: field {name!r} changes type after line "
                                f"{records[0][0]} (first lines had {ptype})") from None
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
            raise DataError(f"{where(self.path)}: line {number}: field {self.vector_field!r} is not a non-empty list")
        self.dim = len(vector)
        self.id_field = self.options.id_column or ("id" if "id" in first else None)
        self.ids_from_data = self.id_field is not None
        if self.id_field is not None and self.id_field not in first:
            raise DataError(f"{where(self.path)}: line {number}: no id field {self.id_field!r}")
        if self.id_field is not None:
            self.id_type = pa.int64() if isinstance(first[self.id_field], int) else pa.string()
        types = {}
        for key, value in first.items():
            if key in (self.vector_field, self.id_field) or isinstance(value, (list, dict)) or value is None:
                continue
            types[key] = pa.array([value]).type
        self._payload_types = types
        self.payload_fields = [pa.field(k, t) for k, t in types.items()]


def _id_array(raw_ids: list[Any], source: Source, records: list[tuple[int, Any]]) -> Any:
    wanted = int if pa.types.is_integer(source.id_type) else str
    for value, (number, _) in zip(raw_ids, records):
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise DataError(f"{where(source.path)}: line {number}: id {value!r} is not "
                            f"{'an integer' if wanted is int else 'a string'} like the first line's")
    return pa.array(raw_ids, type=source.id_type)


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
        try:
            dialect = "excel-tab" if self.path.endswith(".tsv") else "excel"
            for number, row in enumerate(csv.reader(text, dialect), start=1):
                if row:
                    yield number, row
        finally:
            if self.handle is None:
                text.close()

    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        rows = self._rows()
        try:
            number, first = next(rows)
        except StopIteration:
            raise self.fail("no vectors found (empty input)") from None
        header = not _all_numeric(first[1:]) or self.options.id_column is not None
        id_index: int | None = None
        if header:
            id_name = self.options.id_column or ("id" if "id" in first else None)
            if id_name is not None:
                if id_name not in first:
                    raise self.fail(f"no id column {id_name!r} in the header")
                id_index = first.index(id_name)
            pending: list[tuple[int, list[str]]] = []
        else:
            pending = [(number, first)]
        self.ids_from_data = id_index is not None
        width = None
        offset = 0

        def flush(block: list[tuple[int, list[str]]]) -> Batch:
            nonlocal width
            ids_raw = [r[id_index] for _, r in block] if id_index is not None else None
            cells = [[c for j, c in enumerate(r) if j != id_index] for _, r in block]
            if width is None:
                width = len(cells[0])
                self.dim = width
            for (line, _), row in zip(block, cells):
                if len(row) != width:
                    raise DataError(f"{where(self.path)}: line {line}: {len(row)} values, "
                                    f"earlier lines {width} (mixed dimensions)")
            try:
                vectors = np.array(cells, dtype=np.float32)
            except ValueError:
                for (line, _), row in zip(block, cells):
                    for col, cell in enumerate(row):
                        try:
                            float(cell)
                        except ValueError:
                            raise DataError(f"{where(self.path)}: line {line}: column {col + 1}: "
                                            f"{cell!r} is not a number") from None
                raise
            if ids_raw is not None:
                if all(_is_int(x) for x in ids_raw) and pa.types.is_integer(self.id_type):
                    ids = pa.array([int(x) for x in ids_raw], type=pa.int64())
                else:
                    self.id_type = pa.string()
                    ids = pa.array(ids_raw, type=pa.string())
            else:
                ids = pa.array(np.arange(offset, offset + len(block), dtype=np.int64))
            return Batch(offset, ids, vectors)

        for item in rows:
            pending.append(item)
            if len(pending) >= batch_rows:
                batch = flush(pending)
                offset += len(batch)
                pending = []
                yield batch
        if pending:
            yield flush(pending)


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


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --------------------------------------------------------------------------------------
# Opening: by extension, or by sniffing (stdin)
# --------------------------------------------------------------------------------------
EXTENSIONS = {
    ".npy": NpySource, ".fvecs": VecsSource, ".ivecs": VecsSource, ".bvecs": VecsSource,
    ".parquet": ParquetSource, ".pq": ParquetSource,
    ".arrow": IpcSource, ".feather": IpcSource, ".ipc": IpcSource, ".arrows": IpcSource,
    ".jsonl": JsonlSource, ".ndjson": JsonlSource, ".json": JsonlSource,
    ".csv": CsvSource, ".tsv": CsvSource,
}


class _Prefixed(io.RawIOBase):
    """Stdin with the sniffed bytes put back in front."""

    def __init__(self, prefix: bytes, rest: Any) -> None:
        self.prefix = prefix
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        data = self.rest.read1(len(buffer)) if hasattr(self.rest, "read1") else self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_source(path: str, options: ReadOptions | None = None) -> Source:
    """Open any supported input. ``-`` reads standard input."""
    options = options or ReadOptions()
    if options.metric is not None and options.metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)}, not {options.metric!r}")
    if path == "-":
        return _open_stdin(options)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file", hint="check the path")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a vector file")
    ext = os.path.splitext(path)[1].lower()
    cls = EXTENSIONS.get(ext) or _sniff_file(path)
    return _with_id_type(cls(path, options))


def _with_id_type(source: Source) -> Source:
    """Final touches: an ids file makes ids strings; text formats reveal their dimension in the data."""
    if source.options.ids_file:
        source.id_type = pa.string()
    source.prime()
    return source


def _sniff(head: bytes) -> type[Source] | None:
    if head.startswith(b"PAR1"):
        return ParquetSource
    if head.startswith(b"ARROW1") or head.startswith(b"\xff\xff\xff\xff"):
        return IpcSource
    if head.startswith(b"\x93NUMPY"):
        return NpySource
    if head.lstrip().startswith(b"{"):
        return JsonlSource
    return None


def _sniff_file(path: str) -> type[Source]:
    with open(path, "rb") as handle:
        head = handle.read(16)
    cls = _sniff(head)
    if cls is None:
        raise DataError(f"{path}: unknown format (extension {os.path.splitext(path)[1] or 'none'})",
                        hint="use .npy, .fvecs/.ivecs/.bvecs, .parquet, .arrow, .jsonl or .csv")
    return cls


def _open_stdin(options: ReadOptions) -> Source:
    stream = sys.stdin.buffer
    head = b""
    while len(head) < 8:
        chunk = stream.read1(8 - len(head)) if hasattr(stream, "read1") else stream.read(8 - len(head))
        if not chunk:
            break
        head += chunk
    if not head:
        raise DataError("<stdin>: no input (empty stream)", hint="pipe vectors in, or give a file")
    cls = _sniff(head) or CsvSource
    handle = io.BufferedReader(_Prefixed(head, stream), buffer_size=1 << 20)
    if cls is IpcSource and not head.startswith(b"ARROW1"):  # a stream; the file format needs seeking
        return _with_id_type(IpcSource("-", options, handle=pa.PythonFile(handle, mode="r")))
    if cls in (JsonlSource, CsvSource):
        return _with_id_type(cls("-", options, handle=handle))
    return _with_id_type(spool(handle, cls, options))


def spool(handle: Any, cls: type[Source], options: ReadOptions) -> Source:
    """Copy a stream to a temporary file and open that (for formats that need seeking)."""
    import atexit

    tmp = tempfile.NamedTemporaryFile(prefix="vecx-stdin-", suffix=".spool", delete=False)
    atexit.register(lambda: os.path.exists(tmp.name) and os.unlink(tmp.name))
    with tmp:
        shutil.copyfileobj(handle, tmp, 1 << 20)
    source = cls(tmp.name, options)
    source.path = "-"
    source.spool_path = tmp.name  # type: ignore[attr-defined]
    return source


def spool_source(source: Source) -> Source:
    """Make a non-seekable source (a stream) re-readable by copying it to a temporary Parquet file.

    Used when a chain must fit before encoding (two passes). The copy is written by
    vecx itself, so it keeps the stream's metadata; the temporary file is removed at exit.
    """
    if source.seekable:
        return source
    from vecx.formats.writer import spool_to_parquet

    tmp_path = spool_to_parquet(source)
    reopened = ParquetSource(tmp_path, replace(source.options, ids_file=None))
    reopened.path = source.path
    return reopened
