"""Arrow record-batch inputs: Parquet files, Arrow IPC files and streams (vecx tables among them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, UsageError
from vecx.formats import metadata, state
from vecx.formats.source import Batch, ReadOptions, Source, short_error

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from vecx.formats.multi import MultiVectors
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")
    pc = lazy("pyarrow.compute")

VECTOR_NAMES = ("vector", "embedding", "embeddings", "emb", "vec")


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
            self.multi = bool(self.meta["vector"].get("multi"))
            self._check_stored(schema, self.meta)
        else:
            self.vector_column = self._find_vector_column(schema)
            self.id_column = self.options.id_column or ("id" if "id" in schema.names else None)
            if self.id_column is not None and self.id_column not in schema.names:
                raise self.fail(f"no id column {self.id_column!r}; columns are {', '.join(schema.names)}")
            self._raw_vector_type(schema.field(self.vector_column).type)
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

    def _raw_vector_type(self, vtype: Any) -> None:
        """What a raw input's vector column type tells: the dimension of fixed-size lists, 8-bit
        integer values (perhaps codes), and whether each row holds a set of vectors."""
        from vecx.formats import multi

        self.dim = vtype.list_size if pa.types.is_fixed_size_list(vtype) else 0
        value_type = getattr(vtype, "value_type", None)
        if value_type is not None and (pa.types.is_int8(value_type) or pa.types.is_uint8(value_type)):
            self.byte_values = str(value_type)
        if multi.is_multi_type(vtype):  # a set of vectors per row
            self.multi = True
            inner = vtype.value_type
            self.dtype = "float16" if pa.types.is_float16(inner.value_type) else "float32"
            self.dim = inner.list_size if pa.types.is_fixed_size_list(inner) else 0

    def _check_stored(self, schema: Any, meta: dict[str, Any]) -> None:
        """A vecx table's columns must be what its (validated) metadata ``meta`` says they are."""
        from vecx.space import is_packed, row_bytes

        for role, name in (("vector", self.vector_column), ("id", self.id_column)):
            if schema.names.count(name) != 1:
                raise self.fail(f"{role} column {name!r} named in the metadata is "
                                f"{'missing' if name not in schema.names else 'there more than once'}",
                                hint="the file was edited or corrupted; re-create it with vecx")
        vtype = schema.field(self.vector_column).type
        if self.multi:
            token = vtype.value_type if pa.types.is_list(vtype) or pa.types.is_large_list(vtype) else None
            ok = (token is not None and pa.types.is_fixed_size_list(token) and token.list_size == self.dim
                  and str(token.value_type) == {"float32": "float", "float16": "halffloat"}.get(self.dtype))
        elif is_packed(self.dtype):
            ok = pa.types.is_fixed_size_binary(vtype) and vtype.byte_width == row_bytes(self.dim, self.dtype)
        else:
            value_types = {"float32": "float", "float16": "halffloat", "int8": "int8"}
            ok = (pa.types.is_fixed_size_list(vtype) and vtype.list_size == self.dim
                  and str(vtype.value_type) == value_types[self.dtype])
        if not ok:
            what = f"sets of {self.dim} x {self.dtype}" if self.multi else f"{self.dim} x {self.dtype}"
            raise self.fail(f"vector column {self.vector_column!r} is {vtype}, but the metadata says {what}",
                            hint="the file was edited or corrupted; re-create it with vecx")
        id_type = schema.field(self.id_column).type
        wanted = pa.types.is_integer if meta["id"]["type"] == "int64" else pa.types.is_string
        if not wanted(id_type):
            raise self.fail(f"id column {self.id_column!r} is {id_type}, but the metadata says "
                            f"{meta['id']['type']}", hint="the file was edited or corrupted; re-create it with vecx")

    def _find_vector_column(self, schema: Any) -> str:
        from vecx.formats.multi import is_multi_type

        def is_vector(t: Any) -> bool:
            is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
            return is_multi_type(t) or is_list and (
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
        """One Arrow record batch as a :class:`Batch`: vectors as numpy (or :class:`MultiVectors`), ids, payload."""
        col = rb.column(self.vector_column)
        vectors = self._multi_vectors(col, offset) if self.multi else self._plain_vectors(col, offset)
        if self.id_column is not None:
            ids = rb.column(self.id_column)
            ids = ids.cast(self.id_type) if ids.type != self.id_type else ids
        else:
            ids = pa.array(np.arange(offset, offset + len(rb), dtype=np.int64))
        payload = {f.name: rb.column(f.name) for f in self.payload_fields}
        return Batch(offset, ids, vectors, payload)

    def _multi_vectors(self, col: Any, offset: int) -> MultiVectors:
        """The vector sets of a multi-vector column (the token dimension is learnt from the first)."""
        from vecx.formats import multi

        vectors, self.dim = multi.from_arrow(col, self.path, offset, self.dim, self.vector_column)
        return vectors

    def _plain_vectors(self, col: Any, offset: int) -> Any:
        """One vector per row as a rows x width array: packed codes as uint8 bytes, lists as their values.

        A missing vector is an error naming its row; raw inputs become float32.
        """
        if col.null_count:
            bad = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise self.fail(f"vector is missing (null) in column {self.vector_column!r}", offset + bad)
        if pa.types.is_fixed_size_binary(col.type):  # packed codes (vecx tables only)
            width = col.type.byte_width
            data = np.frombuffer(col.buffers()[1], dtype=np.uint8)
            vectors = data[col.offset * width: (col.offset + len(col)) * width].reshape(len(col), width)
        else:
            vectors = self._list_values(col, offset)
        if self.meta is None and vectors.dtype != np.float32:
            vectors = vectors.astype(np.float32)
        return vectors

    def _list_values(self, col: Any, offset: int) -> Any:
        """The numbers of a list column as a rows x width array; a null inside a vector names its row.

        A fixed-size list's values are its child array, sliced: ``flatten()`` would import
        pyarrow.compute, a noticeable cost on the way to the first batch of every build.
        """
        if pa.types.is_fixed_size_list(col.type):
            width = col.type.list_size
            values = col.values.slice(col.offset * width, len(col) * width)
        else:
            width = self._list_width(col, offset)
            values = col.flatten()
        if values.null_count:
            bad_row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0]) // max(1, width)
            raise self.fail("vector holds a null value", offset + bad_row)
        return values.to_numpy(zero_copy_only=False).reshape(len(col), width)

    def _list_width(self, col: Any, offset: int) -> int:
        """The length of every vector of a variable-size list column, which must equal the dimension.

        The first vector of the input sets the dimension; one of another length is an error naming its row.
        """
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        width = int(lengths[0]) if len(lengths) else self.dim
        if self.dim == 0:
            self.dim = width
        bad = np.flatnonzero(lengths != self.dim)
        if len(bad):
            raise self.fail(f"vector has {int(lengths[bad[0]])} dimensions, earlier rows "
                            f"{self.dim} (mixed dimensions)", offset + int(bad[0]))
        return width

    def _convert_all(self, record_batches: Iterator[Any], batch_rows: int, offset: int = 0) -> Iterator[Batch]:
        for rb in record_batches:
            for start in range(0, rb.num_rows, batch_rows):
                piece = rb.slice(start, batch_rows)
                yield self._convert(piece, offset)
                offset += piece.num_rows


class ParquetSource(TableSource):
    """A Parquet file (read in record batches, never whole)."""

    kind = "parquet"

    def batches_from(self, row: int) -> Iterator[Batch]:
        """The rows of a vecx table from the row group holding ``row`` on (earlier groups are not read)."""
        assert self.meta is not None, "row ranges are read from vecx tables only"
        start = 0
        for group in range(self.parquet.num_row_groups):
            size = self.parquet.metadata.row_group(group).num_rows
            if start + size > row:
                yield from self._raw_batches(self.batch_rows(), group, start)
                return
            start += size

    def __init__(self, path: str, options: ReadOptions) -> None:
        super().__init__(path, options)
        try:
            # Neither memory-mapped nor pre-buffered: both keep pages resident, so memory would grow with the file.
            # Page checksums (vecx writes them) are verified as pages are read: bit rot is an error.
            self.parquet = pq.ParquetFile(path, memory_map=False, pre_buffer=False, buffer_size=1 << 20,
                                          page_checksum_verification=True)
            schema = self.parquet.schema_arrow
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            raise self.fail(f"not a readable Parquet file ({short_error(exc)})",
                            hint="the file may be truncated or corrupt; re-create it") from None
        kv = self.parquet.metadata.metadata or {}
        self._setup(schema, kv.get(metadata.KEY), kv.get(metadata.STATE_KEY))
        self.rows = self.parquet.metadata.num_rows
        recorded = (self.meta or {}).get("rows")
        if recorded is not None and recorded != self.rows:
            # e.g. encoded parts concatenated with pyarrow under the first part's metadata: the
            # provenance describes other rows than the file holds, so nothing built on it is trusted.
            raise self.fail(f"holds {self.rows:,} rows, its vecx metadata says {recorded:,}: rows were added or "
                            "removed outside vecx, so its provenance does not describe them",
                            hint="re-create it with vecx: import the combined raw data, then encode it")
        if self.dim == 0 and self.rows:
            try:
                first = self.parquet.read_row_group(0, columns=[self.vector_column]).column(0)
            except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
                raise self.fail(f"cannot read Parquet data ({short_error(exc)})",
                                hint="the file may be truncated or corrupt; re-create it") from None
            self.dim = len(first[0]) if len(first) and first[0].is_valid else 0
            if self.multi:  # the first token's length (a bad first row is reported by the batch reader)
                self.dim = len(first[0][0]) if self.dim and first[0][0].is_valid else 0

    def _raw_batches(self, batch_rows: int, first_group: int = 0, offset: int = 0) -> Iterator[Batch]:
        groups = range(first_group, self.parquet.num_row_groups)
        try:
            yield from self._convert_all(self.parquet.iter_batches(batch_size=batch_rows, row_groups=groups),
                                         batch_rows, offset)
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            raise self.fail(f"cannot read Parquet data ({short_error(exc)})",
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
            raise self.fail(f"not readable Arrow IPC data ({short_error(exc)})") from None
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
            raise self.fail(f"cannot read Arrow data ({short_error(exc)})") from None
        if self.trailer is not None:
            self.meta = self.trailer  # late fields (rows, source hash, fingerprints) are final now
            self.rows = self.trailer.get("rows")


def verify_parquet_rows(path: str, where: str) -> int:
    """Decode every page of a Parquet file, checking the page checksums vecx writes; its row count."""
    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
        return sum(batch.num_rows for batch in parquet.iter_batches(batch_size=65536))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{where}: cannot be read ({exc})", hint="the file is damaged; re-create it") from None
