"""ann-benchmarks HDF5 files: ``train`` (the base vectors), ``test`` (the queries), ``neighbors``
(the exact top-k row numbers of each query) and the ``distance`` attribute naming the metric.

Read with h5py, an optional dependency (``pip install h5py``): ``vecx import glove.hdf5`` imports
``train`` (``--column test`` another dataset), a query option given the same file reads ``test``,
and ``--truth glove.hdf5`` reads ``neighbors``, so one file feeds ``vecx bench`` and ``vecx eval``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, UsageError
from vecx.formats.source import Batch, ReadOptions, Source

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")

EXTENSIONS = (".hdf5", ".h5")
#: ann-benchmarks' ``distance`` attribute, as the vecx metric.
METRICS = {"angular": "cosine", "cosine": "cosine", "euclidean": "l2", "l2": "l2", "dot": "ip", "ip": "ip"}
BASE, QUERIES, TRUTH = "train", "test", "neighbors"


def is_hdf5(path: str) -> bool:
    """Whether a path names an HDF5 file (by its extension)."""
    return path.lower().endswith(EXTENSIONS)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise UsageError("reading HDF5 files needs h5py, which is not installed",
                         hint="pip install h5py (or install vecx with its 'hdf5' extra)") from None
    return h5py


def _open(path: str) -> Any:
    try:
        return _h5py().File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None


class Hdf5Source(Source):
    """One 2-D numeric dataset of an HDF5 file (``train`` unless ``--column`` names another), read
    in batches; ids are row numbers, and the file's ``distance`` attribute gives the metric unless
    ``--metric`` does."""

    kind = "hdf5"
    ids_from_data = False

    def __init__(self, path: str, options: ReadOptions) -> None:
        super().__init__(path, options)
        self.dataset = options.column or BASE
        with _open(path) as handle:
            if self.dataset not in handle:
                names = ", ".join(sorted(handle)) or "none"
                raise self.fail(f"no dataset {self.dataset!r} (it holds: {names})",
                                hint="--column NAME picks the dataset to read")
            data = handle[self.dataset]
            if len(data.shape) != 2 or data.dtype.kind not in "fiu":
                raise self.fail(f"dataset {self.dataset!r} is {data.shape} of {data.dtype}, not rows x dimensions "
                                "of numbers")
            self.rows, self.dim = (int(n) for n in data.shape)
            distance = handle.attrs.get("distance")
        if isinstance(distance, bytes):
            distance = distance.decode()
        if options.metric is None and distance is not None:
            if str(distance) not in METRICS:
                raise self.fail(f"distance {distance!r} is not a metric vecx reads (cosine, inner product, L2)")
            self.options = replace(options, metric=METRICS[str(distance)])
        self.id_type = pa.int64()

    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        with _open(self.file) as handle:
            data = handle[self.dataset]
            for start in range(0, self.rows or 0, batch_rows):
                chunk = np.asarray(data[start: start + batch_rows], dtype=np.float32)
                ids = pa.array(np.arange(start, start + len(chunk), dtype=np.int64))
                yield Batch(start, ids, chunk)


def read_truth(path: str) -> Any:
    """The ``neighbors`` dataset of an ann-benchmarks file: queries x k base row numbers (int64)."""
    with _open(path) as handle:
        if TRUTH not in handle:
            raise DataError(f"{path}: no {TRUTH!r} dataset to take as ground truth (it holds: "
                            f"{', '.join(sorted(handle)) or 'none'})")
        truth = np.asarray(handle[TRUTH][:])
    if truth.ndim != 2 or truth.dtype.kind not in "iu":
        raise DataError(f"{path}: {TRUTH!r} is {truth.shape} of {truth.dtype}, not queries x k row numbers")
    return truth.astype(np.int64)
