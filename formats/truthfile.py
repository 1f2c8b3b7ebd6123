"""Ground-truth files (``vecx truth``): one Parquet table, written once and read by ``eval`` and ``bench``.

Columns: ``query_id``; ``ids`` and ``rows``, fixed-size lists of the ``k`` nearest base ids and
row numbers; ``scores``, the same shape. The ``vecx`` metadata says ``kind: "truth"``, the metric
and score, and which base and queries it was computed on (their fingerprints), so that ``eval``
can refuse a truth file of other data.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, MismatchError, UsageError
from vecx.formats import metadata

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")

HOW = "make one with 'vecx truth TABLE --queries Q -o gt.parquet'"


def write_truth(output: str, query_ids: Any, base_ids: Any, rows: Any, scores: Any, k: int,
                meta: dict[str, Any]) -> None:
    """Write the table atomically: ``rows`` and ``scores`` are queries x k, ``base_ids`` every base id."""
    from vecx.formats.writer import write_table_atomic

    table = pa.table({
        "query_id": query_ids,
        "ids": pa.FixedSizeListArray.from_arrays(base_ids.take(pa.array(rows.ravel())), k),
        "rows": pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), k),
        "scores": pa.FixedSizeListArray.from_arrays(pa.array(scores.ravel()), k),
    })
    write_table_atomic(output, table, {metadata.KEY: metadata.dumps({**metadata.header(), "kind": "truth", **meta})})


def _raw_metadata(path: str) -> bytes | None:
    """The raw ``vecx`` key of a Parquet file's footer; None if the file has none or is no Parquet file."""
    try:
        return (pq.ParquetFile(path).metadata.metadata or {}).get(metadata.KEY)
    except (pa.ArrowInvalid, OSError):
        return None


def other_kind_metadata(path: str) -> dict[str, Any] | None:
    """The metadata of a vecx Parquet file that is not a vector table (ground truth), else None."""
    if path == "-" or not path.endswith(".parquet") or not os.path.isfile(path):
        return None
    raw = _raw_metadata(path)
    if raw is None:
        return None  # the vector-table reader reports any problem
    meta = metadata.loads(raw, path)
    return meta if meta.get("kind", "vectors") != "vectors" else None


def read_truth_meta(path: str, flag: str = "--truth") -> dict[str, Any]:
    """The metadata of a ground-truth file, refusing anything that is not one (``flag`` names the option)."""
    if not os.path.isfile(path):
        raise UsageError(f"{flag} {path}: no such file", hint=HOW)
    raw = _raw_metadata(path)
    if raw is None:
        raise UsageError(f"{flag} {path}: not a ground-truth file from 'vecx truth' (a Parquet file whose "
                         "metadata names the data it was computed on)", hint=HOW)
    meta = metadata.loads(raw, path)
    if meta.get("kind") != "truth":
        raise UsageError(f"{path}: not a vecx truth file ({HOW})")
    return meta


def read_truth_rows(path: str, n_rows: int) -> Any:
    """The ``rows`` column (queries x k base row numbers, int64), checked against a base of ``n_rows``."""
    try:
        column = pq.read_table(path, columns=["rows"])["rows"]
    except (pa.ArrowInvalid, KeyError, OSError) as exc:
        raise DataError(f"{path}: cannot read the 'rows' column of the ground truth ({exc})",
                        hint="re-create it with 'vecx truth'") from None
    if not (pa.types.is_fixed_size_list(column.type) and pa.types.is_integer(column.type.value_type)) \
            or column.null_count or not len(column):
        raise DataError(f"{path}: the ground truth's 'rows' column is {column.type} with {len(column)} rows, "
                        "not lists of row numbers", hint="re-create it with 'vecx truth'")
    return _within_base(path, np.stack(column.to_numpy(zero_copy_only=False)).astype(np.int64), n_rows)


def _within_base(path: str, truth: Any, n_rows: int) -> Any:
    """``truth``, or a :class:`MismatchError` if it names a row past a base of ``n_rows``."""
    if truth.min() < 0 or truth.max() >= n_rows:
        raise MismatchError(f"{path}: names base row {int(truth.max() if truth.max() >= n_rows else truth.min())}; "
                            f"the base has {n_rows:,} rows",
                            hint="compute the truth with 'vecx truth' on the table this was built from")
    return truth


def read_truth_npy(path: str) -> Any:
    """Ground truth as a ``.npy`` of base row numbers (queries x k, integers), memory-mapped."""
    try:
        truth = np.load(path, mmap_mode="r")
    except ValueError as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    if truth.ndim != 2 or truth.dtype.kind not in "iu":
        raise DataError(f"{path}: expected a 2-D array of row numbers, got {truth.ndim}-D {truth.dtype}")
    return truth


def row_numbers_only(path: str) -> bool:
    """Whether a ground-truth file is bare row numbers (a ``.npy``, an ann-benchmarks HDF5 file), with
    no ``vecx truth`` metadata to check it against."""
    from vecx.formats import hdf5

    return path.endswith(".npy") or hdf5.is_hdf5(path)


def read_truth_file(path: str, n_rows: int) -> Any:
    """Ground truth rows (queries x k, int64) from a ``vecx truth`` table, a ``.npy`` of row numbers
    (faiss's ``I``), or an ann-benchmarks HDF5 file (its ``neighbors``), checked against a base of
    ``n_rows``."""
    from vecx.formats import hdf5

    if hdf5.is_hdf5(path):
        truth = hdf5.read_truth(path)
    elif path.endswith(".npy"):
        truth = np.asarray(read_truth_npy(path), dtype=np.int64)
    else:
        return read_truth_rows(path, n_rows)
    if not truth.size:
        raise DataError(f"{path}: the ground truth is empty")
    return _within_base(path, truth, n_rows)
