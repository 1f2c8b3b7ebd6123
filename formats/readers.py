"""Read vectors from every input vecx accepts, as a stream of validated batches.

Inputs: ``.npy``; ``.fvecs`` / ``.ivecs`` / ``.bvecs``; Parquet, Arrow IPC files
(``.arrow``/``.feather``) and streams, with a fixed- or variable-size list column;
JSONL (one object per line with a list field); CSV (an optional id column plus one
numeric column per dimension); ``-`` for standard input (format sniffed from its
first bytes). Every source yields :class:`Batch` objects of at most ``batch_rows``
rows, so memory does not grow with the input.

This module opens an input by extension or, for stdin, by sniffing its first bytes;
the readers themselves live in :mod:`~vecx.formats.arrays`, :mod:`~vecx.formats.tables`
and :mod:`~vecx.formats.text`, on the shared :mod:`~vecx.formats.source`.
"""
from __future__ import annotations

import io
import os
import shutil
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError
from vecx.formats import hdf5
from vecx.formats.arrays import NpySource, VecsSource
from vecx.formats.source import Batch, ReadOptions, Source, batch_rows_for  # noqa: F401 - re-exported
from vecx.formats.tables import IpcSource, ParquetSource
from vecx.formats.text import CsvSource, JsonlSource
from vecx.space import METRICS, canonical_metric

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import pyarrow as pa
else:
    pa = lazy("pyarrow")

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


def open_source(path: str | list[str], options: ReadOptions | None = None) -> Source:
    """Open any supported input. ``-`` reads standard input; several paths are read as one dataset
    of Parquet parts, in the order given (see :mod:`vecx.formats.dataset`)."""
    options = options or ReadOptions()
    if not isinstance(path, str):
        if len(path) != 1:
            from vecx.formats import dataset

            return _with_id_type(dataset.open_dataset(list(path), options))
        path = path[0]
    if options.metric is not None and options.metric not in METRICS:
        options = replace(options, metric=canonical_metric(options.metric))
    if options.records:  # a chain that starts with a JSON codec (vsa) reads parsed records
        from vecx.formats.records import open_records

        return open_records(path, options)
    if path == "-":
        return _open_stdin(options)
    from vecx.formats import dataset

    if dataset.is_dataset(path):
        return _with_id_type(dataset.open_dataset(path, options))
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file", hint="check the path")
    ext = os.path.splitext(path)[1].lower()
    if ext in hdf5.EXTENSIONS:
        return _with_id_type(hdf5.Hdf5Source(path, options))
    cls = EXTENSIONS.get(ext) or _sniff_file(path)
    return _with_id_type(cls(path, options))


def _with_id_type(source: Source) -> Source:
    """Final touches: an ids file makes ids strings; text formats reveal their dimension in the data."""
    if source.options.ids_file:
        source.id_type = pa.string()
    source.prime()
    if source.options.multi and not source.multi:
        raise DataError(f"{source.path}: --multi: no multi-vector column (a list of vectors per row) found",
                        hint="store each row's vectors as list<list<float>> (Parquet/Arrow) or a list of lists (JSONL)")
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
    from vecx.formats.tempfiles import spool_path

    tmp_name = spool_path("stdin", ".spool")
    with open(tmp_name, "wb") as tmp:
        shutil.copyfileobj(handle, tmp, 1 << 20)
    source = cls(tmp_name, options)
    source.path = "-"
    source.spool_path = tmp_name
    return source


def spool_source(source: Source) -> Source:
    """Make a non-seekable source (a stream) re-readable by copying it to a temporary Parquet file.

    Used when a chain must fit before encoding (two passes). The copy is written by
    vecx itself, so it keeps the stream's metadata; the temporary file is removed at exit.
    """
    if source.seekable:
        return source
    if hasattr(source, "spooled"):  # JSON records: the raw lines are copied instead
        return source.spooled()
    from vecx.formats.writer import spool_to_parquet

    tmp_path = spool_to_parquet(source)
    reopened = ParquetSource(tmp_path, replace(source.options, ids_file=None))
    reopened.path = source.path
    return reopened
