"""Binary array inputs: ``.npy`` and ``.fvecs`` / ``.ivecs`` / ``.bvecs``, read with plain reads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.formats.source import Batch, ReadOptions, Source

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")


def read_npy_header(path: str) -> tuple[tuple[int, ...], bool, Any, int]:
    """``(shape, fortran_order, dtype, data_offset)`` of a ``.npy`` file, from its header alone.

    Never unpickles: a file without the NumPy magic string, with a malformed header, an object
    dtype (pickled Python objects) or a format version vecx does not read is a
    :class:`~vecx.errors.DataError` naming the file and saying what to save instead.
    """
    from numpy.lib import format as npy_format

    from vecx.errors import DataError

    save = "save a numeric array with numpy.save (e.g. float32)"
    try:
        with open(path, "rb") as handle:
            if handle.read(len(npy_format.MAGIC_PREFIX)) != npy_format.MAGIC_PREFIX:
                raise DataError(f"{path}: not a .npy file (it does not start with the NumPy header)", hint=save)
            handle.seek(0)
            version = npy_format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                raise DataError(f"{path}: .npy format version {version[0]}.{version[1]} is not supported "
                                "(vecx reads versions 1.0 and 2.0)", hint=save)
            read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            try:
                shape, fortran, dtype = read(handle)
            except Exception as exc:  # noqa: BLE001 - numpy's header parser raises assorted types
                # (ValueError, EOFError, tokenize and syntax errors) on malformed headers.
                raise DataError(f"{path}: not a readable .npy file (damaged header: {exc})", hint=save) from None
            offset = handle.tell()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects (dtype {dtype}), which vecx does not load", hint=save)
    if any(n < 0 for n in shape):
        raise DataError(f"{path}: not a readable .npy file (negative shape {shape} in its header)", hint=save)
    return shape, fortran, dtype, offset


class NpySource(Source):
    """A 2-D ``.npy`` array, read one batch at a time with plain reads.

    Not memory-mapped: mapped pages count towards the process's resident memory,
    which would then grow with the file.
    """

    kind = "npy"
    ids_from_data = False

    def __init__(self, path: str, options: ReadOptions) -> None:
        super().__init__(path, options)
        shape, fortran, dtype, self.data_offset = read_npy_header(path)
        fortran = fortran and sum(n > 1 for n in shape) > 1  # else Fortran and C order are the same bytes
        if len(shape) == 1:
            shape = (1, shape[0])
        if len(shape) != 2 or dtype.kind not in "fiu" or fortran and shape[0] > 1:
            raise self.fail(f"expected a 2-D C-order numeric array, got shape {shape} dtype {dtype}"
                            f"{' (Fortran order)' if fortran else ''}",
                            hint="save a rows x dimensions array of numbers (e.g. float32) with numpy.save")
        self.file_dtype = dtype
        self.byte_values = str(dtype) if dtype in (np.int8, np.uint8) else None
        self.rows, self.dim = (int(n) for n in shape)
        expected = self.data_offset + self.rows * self.dim * dtype.itemsize
        if os.path.getsize(path) < expected:
            raise self.fail(f"file is truncated: the header promises {self.rows} x {self.dim} values",
                            hint="the file was cut short; write it again")
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
