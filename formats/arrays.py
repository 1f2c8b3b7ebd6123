"""Binary array inputs: ``.npy`` and ``.fvecs`` / ``.ivecs`` / ``.bvecs``, read with plain reads."""

from __future__ import annotations

import os
from typing import Iterator

from vecx._lazy import lazy
from vecx.formats.source import Batch, ReadOptions, Source

np = lazy("numpy")
pa = lazy("pyarrow")


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
