"""Write vector tables atomically: Parquet files, or an Arrow IPC stream on standard output.

Files are written to a temporary name in the target directory and renamed over
the target only when complete, so an interrupted or failed run leaves the old
file (or none) in place, never half of one. Rows are re-chunked into row groups
of a size fixed by the row width, so the same rows always give the same bytes
however they were batched on the way in.

Metadata that depends on having seen every row (row count, source hash,
fingerprints) is final only at the end: Parquet gets it in the footer; a stream
repeats the metadata, now complete, in a trailing zero-row batch's custom
metadata, which vecx readers pick up and other Arrow readers ignore.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.formats.source import Batch, Source, batch_rows_for
from vecx.formats.tempfiles import atomic_path, check_output, sibling_tmp, spool_path, write_failure
from vecx.space import is_packed, row_bytes

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")

ARROW_TYPES = {"float32": "float32", "float16": "float16", "int8": "int8"}


def vector_type(dtype: str, dim: int) -> Any:
    """Arrow type of a vector column: ``fixed_size_list<dtype>[dim]``, or ``fixed_size_binary`` for bits and codes."""
    if is_packed(dtype):
        return pa.binary(row_bytes(dim, dtype))
    return pa.list_(pa.field("item", getattr(pa, ARROW_TYPES[dtype])()), dim)


def vector_array(codes: Any, dtype: str) -> Any:
    """Wrap a 2-D numpy array as a fixed-size-list (or fixed-size-binary) Arrow array, zero copy."""
    if is_packed(dtype):
        packed = np.ascontiguousarray(codes, dtype=np.uint8)
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(packed.shape[1]), len(packed),
                                                    [None, pa.py_buffer(packed)])
    flat = np.ascontiguousarray(codes).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=getattr(pa, ARROW_TYPES[dtype])()), codes.shape[1])


class TableWriter:
    """Writes ``id``, ``vector`` and payload columns; call :meth:`commit` or :meth:`abort`."""

    def __init__(self, path: str, *, dtype: str, dim: int, id_type: Any, payload_fields: list[Any],
                 initial_metadata: dict[bytes, bytes], multi: bool = False) -> None:
        from vecx.formats import multi as multi_mod

        self.path = path
        self.dtype = dtype
        self.multi = multi  # a set of vectors per row: list<fixed_size_list> (vecx.formats.multi)
        column_type = multi_mod.arrow_type(dtype, dim) if multi else vector_type(dtype, dim)
        self.schema = pa.schema([pa.field("id", id_type, nullable=False),
                                 pa.field("vector", column_type, nullable=False), *payload_fields])
        self.row_group_rows = (multi_mod.batch_rows(dim, dtype) if multi
                               else batch_rows_for(row_bytes(dim, dtype)))
        self.rows = 0
        self.tokens = 0  # vectors written in all (multi-vector tables)
        self._buffer: list[Any] = []
        self._buffered = 0
        if path == "-":
            check_output(path)
            self.tmp_path = None
            self._sink = sys.stdout.buffer
            self._writer = pa.ipc.new_stream(self._sink, self.schema.with_metadata(initial_metadata))
        else:
            check_output(path)
            self.tmp_path = sibling_tmp(path)
            no_dict = {"vector"}
            try:
                self._writer = pq.ParquetWriter(
                    self.tmp_path, self.schema, compression="snappy", write_page_checksum=True,
                    use_dictionary=[f.name for f in self.schema if f.name not in no_dict],
                    write_statistics=[f.name for f in self.schema if f.name not in no_dict],
                )
            except BaseException:  # e.g. interrupted right after the file was created
                if os.path.exists(self.tmp_path):
                    os.unlink(self.tmp_path)
                raise

    def write(self, batch: Batch, codes: Any) -> None:
        """Append one batch of encoded rows (ids and payload from ``batch``)."""
        try:
            self._write(batch, codes)
        except OSError as exc:
            if self.tmp_path is None:
                raise  # standard output: a closed pipe is the CLI's to report
            self.abort()
            raise write_failure(self.path, exc) from None

    def _write(self, batch: Batch, codes: Any) -> None:
        if self.multi:
            from vecx.formats.multi import to_arrow

            columns = [batch.ids, to_arrow(codes, self.dtype)]
            self.tokens += len(codes.values)
        else:
            columns = [batch.ids, vector_array(codes, self.dtype)]
        columns += [batch.payload[f.name] for f in self.schema if f.name not in ("id", "vector")]
        rb = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        self.rows += rb.num_rows
        if self.tmp_path is None:
            self._writer.write_batch(rb)
            return
        self._buffer.append(rb)
        self._buffered += rb.num_rows
        if self._buffered >= self.row_group_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        full = len(table) if final else (len(table) // self.row_group_rows) * self.row_group_rows
        for start in range(0, full, self.row_group_rows):
            piece = table.slice(start, min(self.row_group_rows, full - start)).combine_chunks()
            self._writer.write_table(piece, row_group_size=self.row_group_rows)
        rest = table.slice(full)
        self._buffer = rest.to_batches() if len(rest) else []
        self._buffered = len(rest)

    def commit(self, final_metadata: dict[bytes, bytes]) -> None:
        """Finish the file with its complete metadata and move it into place."""
        if self.tmp_path is None:
            empty = pa.RecordBatch.from_pylist([], schema=self.schema)
            self._writer.write_batch(empty, custom_metadata=final_metadata)
            self._writer.close()
            self._sink.flush()
            return
        try:
            if self._buffered:
                self._flush(final=True)
            self._writer.add_key_value_metadata(final_metadata)
            self._writer.close()
            os.replace(self.tmp_path, self.path)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise write_failure(self.path, exc) from None
            raise

    def abort(self) -> None:
        """Drop the partial output (the target, if it existed, is untouched)."""
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - closing a broken writer may fail; the file goes anyway
            pass
        finally:
            if self.tmp_path is not None and os.path.exists(self.tmp_path):
                os.unlink(self.tmp_path)


def spool_to_parquet(source: Source) -> str:
    """Copy a stream source to a temporary Parquet file (keeping its vecx metadata); return the path."""
    from vecx.formats import metadata, state

    tmp_path = spool_path("spool", ".parquet")
    writer = None
    try:
        for batch in source.batches():
            if writer is None:
                writer = TableWriter(tmp_path, dtype=source.dtype, dim=source.dim, id_type=source.id_type,
                                     payload_fields=source.payload_fields, initial_metadata={},
                                     multi=source.multi)
            writer.write(batch, batch.vectors)
        if writer is None:
            raise source.fail("no vectors found (empty input)")
        final: dict[bytes, bytes] = {}
        if source.meta is not None:
            final[metadata.KEY] = metadata.dumps(source.meta)
            if source.state_blob is not None:
                final[metadata.STATE_KEY] = state.encode_blob(source.state_blob)
        writer.commit(final)
    except BaseException:
        if writer is not None:
            writer.abort()
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
    return tmp_path


def write_table_atomic(path: str, table: Any, file_metadata: dict[bytes, bytes]) -> None:
    """Write a small in-memory table to Parquet atomically, with footer key-value metadata.

    ``-`` writes it to standard output as an Arrow IPC stream, the metadata on its schema.
    """
    check_output(path)
    if path == "-":
        schema = table.schema.with_metadata({**(table.schema.metadata or {}), **file_metadata})
        with pa.ipc.new_stream(sys.stdout.buffer, schema) as stream:
            stream.write_table(table.replace_schema_metadata(schema.metadata))
        sys.stdout.buffer.flush()
        return
    with atomic_path(path) as tmp_path:
        writer = pq.ParquetWriter(tmp_path, table.schema, compression="snappy", write_page_checksum=True)
        writer.write_table(table)
        writer.add_key_value_metadata(file_metadata)
        writer.close()
