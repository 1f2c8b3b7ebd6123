"""Multi-vector data: a *set* of token vectors per row (ColBERT-style), stored and streamed in batches.

Stored layout (vecx tables): the ``vector`` column is ``list<fixed_size_list<float32|float16, d>>``,
one list of ``d``-dimensional token vectors per row, and the metadata's vector block says
``"multi": true`` (its ``dim`` is the token dimension, ``bytes_per_vector`` the bytes of one
token). Raw inputs: a Parquet/Arrow column of ``list<fixed_size_list<float>>`` or
``list<list<float>>``, or a JSONL field holding a list of lists. float16 token vectors stay
float16 (what the model emitted is kept exactly); anything else becomes float32.

In memory a batch of rows is one :class:`MultiVectors`: a flat ``tokens x d`` array and row
offsets, so every operation works on all tokens of a batch at once (no Python loop per token).
Every row must hold at least one vector, every vector the same dimension, only finite values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, MismatchError, RowError, where

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

#: Tokens per row assumed when sizing batches and row groups (a fixed rule, so bytes do not
#: depend on the data: the same rows always give the same row groups).
TOKENS_PER_ROW = 64


class MultiVectors:
    """A batch of vector sets: ``values`` (tokens x d, float32 or float16) and ``offsets`` (rows + 1).

    Row ``i`` holds ``values[offsets[i]:offsets[i + 1]]``. Indexing with a slice, an integer
    array or a boolean mask gives another :class:`MultiVectors`.
    """

    __slots__ = ("values", "offsets")

    def __init__(self, values: Any, offsets: Any) -> None:
        self.values = values
        self.offsets = np.asarray(offsets, dtype=np.int64)

    @classmethod
    def from_list(cls, sets: list[Any], dtype: Any = None) -> MultiVectors:
        """From a list of 2-D arrays (one per row)."""
        arrays = [np.asarray(s, dtype=dtype) for s in sets]
        counts = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        dim = arrays[0].shape[1] if arrays else 0
        values = np.concatenate(arrays) if arrays else np.empty((0, dim), dtype=dtype or np.float32)
        return cls(values, offsets)

    @classmethod
    def concat(cls, parts: list[MultiVectors]) -> MultiVectors:
        """Rows of several batches, in order."""
        values = np.concatenate([p.values for p in parts])
        counts = np.concatenate([p.counts for p in parts])
        return cls(values, np.concatenate([[0], np.cumsum(counts)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def dim(self) -> int:
        """Dimension of the token vectors."""
        return int(self.values.shape[1])

    @property
    def counts(self) -> Any:
        """Vectors per row."""
        return np.diff(self.offsets)

    @property
    def row_of_token(self) -> Any:
        """For every token, the row (within this batch) it belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.counts)

    def row(self, i: int) -> Any:
        """The token vectors of row ``i``."""
        return self.values[self.offsets[i]: self.offsets[i + 1]]

    def __getitem__(self, key: Any) -> MultiVectors:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                stop = max(start, stop)
                lo, hi = self.offsets[start], self.offsets[stop]
                return MultiVectors(self.values[lo:hi], self.offsets[start: stop + 1] - lo)
            key = np.arange(start, stop, step)
        rows = np.asarray(key)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64).reshape(-1)
        counts = self.counts[rows]
        starts = self.offsets[rows]
        # Token indices of the chosen rows, built without a Python loop.
        offsets = np.concatenate([[0], np.cumsum(counts)])
        index = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - starts, counts)
        return MultiVectors(self.values[index], offsets)

    def astype(self, dtype: Any) -> MultiVectors:
        """The same sets with values of another dtype."""
        return MultiVectors(np.asarray(self.values, dtype=dtype), self.offsets)

    def mean(self) -> Any:
        """Mean of each row's vectors (rows x d, float32)."""
        sums = np.add.reduceat(np.asarray(self.values, dtype=np.float32), self.offsets[:-1], axis=0)
        return sums / self.counts[:, None].astype(np.float32)


def is_multi_type(t: Any) -> bool:
    """Whether an Arrow type is a list of number vectors (a multi-vector column)."""
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return False
    inner = t.value_type
    return (pa.types.is_list(inner) or pa.types.is_large_list(inner) or pa.types.is_fixed_size_list(inner)) and (
        pa.types.is_floating(inner.value_type) or pa.types.is_integer(inner.value_type))


def arrow_type(dtype: str, dim: int) -> Any:
    """Arrow type of a stored multi-vector column."""
    return pa.list_(pa.field("item", pa.list_(pa.field("item", getattr(pa, dtype)()), dim)))


def to_arrow(mv: MultiVectors, dtype: str) -> Any:
    """A :class:`MultiVectors` batch as a ``list<fixed_size_list>`` Arrow array (values copied once)."""
    flat = np.ascontiguousarray(mv.values, dtype=dtype).reshape(-1)
    tokens = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=getattr(pa, dtype)()), mv.dim)
    return pa.ListArray.from_arrays(pa.array(mv.offsets.astype(np.int32)), tokens)


def from_arrow(col: Any, path: str, offset: int, dim: int, column: str) -> tuple[MultiVectors, int]:
    """Parse one Arrow chunk of a multi-vector column; returns the batch and the token dimension.

    Errors name the row: a missing value, a row with no vectors, token vectors of another
    dimension than earlier ones (``dim``; 0 = not known yet), a null inside a vector.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    counts = _row_counts(col, path, offset, column)
    tokens = col.flatten()
    if tokens.null_count:
        bad_token = int(np.flatnonzero(tokens.is_null().to_numpy(zero_copy_only=False))[0])
        row = int(np.searchsorted(np.cumsum(counts), bad_token, side="right"))
        raise DataError(f"{where(path, offset + row)}: a token vector is missing (null)")
    dim = _token_dim(tokens, counts, path, offset, dim, column)
    values = tokens.flatten()
    if values.null_count:
        bad_value = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        row = int(np.searchsorted(np.cumsum(counts), bad_value // max(1, dim), side="right"))
        raise DataError(f"{where(path, offset + row)}: a token vector holds a null value")
    array = values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    if array.dtype not in (np.float32, np.float16):
        array = array.astype(np.float32)
    return MultiVectors(array, np.concatenate([[0], np.cumsum(counts)])), dim


def _row_counts(col: Any, path: str, offset: int, column: str) -> npt.NDArray[np.int64]:
    """Vectors per row of a multi-vector Arrow array; a missing (null) or empty row is a :class:`DataError`."""
    if col.null_count:
        bad = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{where(path, offset + bad)}: vectors missing (null) in column {column!r}")
    counts = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise DataError(f"{where(path, offset + int(empty[0]))}: row holds no vectors in column {column!r}",
                        hint="every row of a multi-vector table needs at least one vector; drop empty rows")
    return counts


def _token_dim(tokens: Any, counts: npt.NDArray[np.int64], path: str, offset: int, dim: int, column: str) -> int:
    """The dimension every token vector of the chunk has: ``dim``, or the first token's when ``dim`` is 0.

    A token of another dimension is a :class:`DataError` naming its row (found from the rows'
    vector ``counts``); so is an empty first token vector.
    """
    if pa.types.is_fixed_size_list(tokens.type):
        widths = np.full(len(tokens), tokens.type.list_size, dtype=np.int64)
    else:
        widths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False).astype(np.int64)
    if dim == 0 and len(widths):
        dim = int(widths[0])
        if dim == 0:
            raise DataError(f"{where(path, offset)}: token vector is empty (0 dimensions) in column {column!r}",
                            hint="every token vector needs at least one number")
    bad = np.flatnonzero(widths != dim)
    if len(bad):
        row = int(np.searchsorted(np.cumsum(counts), int(bad[0]), side="right"))
        raise DataError(f"{where(path, offset + row)}: token vector of {int(widths[bad[0]])} dimensions, "
                        f"earlier ones have {dim} (mixed token dimensions)",
                        hint="every token vector must have the same dimension")
    return dim


def from_json_rows(rows: list[tuple[int, Any]], path: str, field: str, dim: int) -> MultiVectors:
    """A batch from JSONL values (line number, list of lists); errors name the line."""
    counts = np.empty(len(rows), dtype=np.int64)
    flat: list[Any] = []
    for i, (number, value) in enumerate(rows):
        if not isinstance(value, list) or not value:
            raise DataError(f"{where(path)}: line {number}: field {field!r} is missing, not a list, "
                            "or holds no vectors", hint="every row of multi-vector data needs at least one vector")
        for token in value:
            if not isinstance(token, list) or len(token) != dim:
                got = f"{len(token)} dimensions" if isinstance(token, list) else type(token).__name__
                raise DataError(f"{where(path)}: line {number}: field {field!r} holds a vector of {got}, "
                                f"earlier ones have {dim} (ragged or mixed token dimensions)")
        counts[i] = len(value)
        flat.extend(value)
    try:
        values = np.array(flat, dtype=np.float32)
    except (TypeError, ValueError):
        for number, value in rows:
            try:
                np.array(value, dtype=np.float32)
            except (TypeError, ValueError):
                raise DataError(f"{where(path)}: line {number}: a vector holds a non-number") from None
        raise
    return MultiVectors(values.reshape(-1, dim), np.concatenate([[0], np.cumsum(counts)]))


def batch_rows(dim: int, dtype: str, given: int | None = None) -> int:
    """Rows per batch (and row group) of a multi-vector table: about 8 MiB at TOKENS_PER_ROW tokens a row.

    Smaller than single-vector batches: decoding nested Parquet lists takes several times the
    batch in scratch memory.
    """
    if given:
        return given
    per_row = TOKENS_PER_ROW * max(1, dim) * (2 if dtype == "float16" else 4)
    rows = 16
    while rows < 65536 and rows * 2 * per_row <= 8 << 20:
        rows *= 2
    return rows


class Validator:
    """Checks raw multi-vector batches as they stream and hashes them for the source fingerprint."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.values = hashlib.sha256()
        self.counts = hashlib.sha256()
        self.normalized = True
        self.tokens = 0

    def check(self, batch: Any) -> None:
        """Finite values (NaN/Inf name the row); hash values and per-row counts; track token norms."""
        mv: MultiVectors = batch.vectors
        v = mv.values
        finite = np.isfinite(v).all(axis=1)
        if not finite.all():
            token = int(np.flatnonzero(~finite)[0])
            row = int(np.searchsorted(mv.offsets, token, side="right") - 1)
            raise self.source.fail("a token vector holds NaN or Inf", batch.offset + row,
                                   hint="clean or drop that row; vecx refuses non-finite values")
        if v.dtype == np.float32 and len(v):  # float16 values cannot overflow a float32 norm
            sq = np.einsum("ij,ij->i", v, v)
            if not np.isfinite(sq).all():
                from vecx.kernels import MAX_SQ_NORM, too_large_rows

                too_large, exact = too_large_rows(v)
                if len(too_large):
                    token = int(too_large[0])
                    row = int(np.searchsorted(mv.offsets, token, side="right") - 1)
                    raise self.source.fail(
                        f"a token vector is too large for float32 arithmetic: its squared L2 norm is "
                        f"{exact[token]:.3g} (largest value {np.abs(v[token]).max():.3g}), beyond {MAX_SQ_NORM:.3g}",
                        batch.offset + row, hint="rescale the vectors (e.g. divide them all by a constant such "
                        "as 1e20) before importing; cosine similarity does not change")
        if self.normalized and len(v):
            f = np.asarray(v, dtype=np.float32)
            norms = np.sqrt(np.einsum("ij,ij->i", f, f))
            # float16 tokens are only unit-norm to about 1e-3 (their own precision).
            tolerance = 2e-3 if v.dtype == np.float16 else 1e-3
            if np.abs(norms - 1.0).max() > tolerance:
                self.normalized = False
        self.values.update(np.ascontiguousarray(v).view(np.uint8).reshape(-1).data)
        self.counts.update(mv.counts.astype("<i8").tobytes())
        self.tokens += len(v)

    def block_fields(self) -> dict[str, Any]:
        """What the source block records about multi-vector data."""
        return {"multi": True, "tokens": self.tokens,
                "vectors_sha256": hashlib.sha256((self.values.hexdigest() + self.counts.hexdigest()).encode())
                .hexdigest()}


def take(source: Any, rows: Any) -> MultiVectors:
    """The vector sets of the given sorted row numbers (a fitting sample)."""
    parts = []
    for batch in source.batches():
        lo = np.searchsorted(rows, batch.offset)
        hi = np.searchsorted(rows, batch.offset + len(batch))
        if hi > lo:
            parts.append(batch.vectors[rows[lo:hi] - batch.offset])
    return MultiVectors.concat(parts)


def read_all(source: Any) -> tuple[Any, MultiVectors]:
    """All ids and vector sets of a (small) multi-vector source, e.g. queries."""
    ids, parts = [], []
    for batch in source.batches():
        ids.append(batch.ids)
        parts.append(batch.vectors)
    return pa.chunked_array(ids).combine_chunks(), MultiVectors.concat(parts)


def stage_input_counts(sets: Any, dim: int, stage: str, action: str) -> Any:
    """The vectors per row of a codec stage's input, checked: sets of vectors (``action`` says what the
    stage does with them), of the stage's dimension, none empty (a :class:`RowError`)."""
    if not isinstance(sets, MultiVectors):
        raise MismatchError(f"{stage.split(':')[0]} {action} sets of vectors (multi-vector data), "
                            "got one vector per row")
    if sets.dim != dim:
        raise MismatchError(f"{stage}: vectors have {sets.dim} dimensions, this stage takes {dim}")
    counts = sets.counts
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise RowError(int(empty[0]), "holds no vectors")
    return counts


def check_query_sets(q: Any, dim: int, where_: str) -> MultiVectors:
    """Validate query token sets: dimension, at least one vector per query, finite values."""
    if not isinstance(q, MultiVectors):
        raise MismatchError(f"{where_}: this index holds multi-vector data; a query is a set of token vectors",
                            hint="give --multi-vector FILE (a 2-D .npy is one query's tokens)")
    if q.dim != dim:
        raise MismatchError(f"{where_}: query token vectors have {q.dim} dimensions, this index takes {dim}")
    empty = np.flatnonzero(q.counts == 0)
    if len(empty):
        raise DataError(f"{where_}: query {int(empty[0])} has no vectors")
    finite = np.isfinite(q.values).all(axis=1)
    if not finite.all():
        token = int(np.flatnonzero(~finite)[0])
        raise DataError(f"{where_}: query {int(np.searchsorted(q.offsets, token, side='right') - 1)} "
                        "holds NaN or Inf")
    return q.astype(np.float32)


def iter_blocks(mv: MultiVectors, max_tokens: int) -> Iterator[tuple[int, MultiVectors]]:
    """Consecutive row blocks of at most ``max_tokens`` tokens (at least one row each)."""
    start = 0
    n = len(mv)
    while start < n:
        stop = int(np.searchsorted(mv.offsets, mv.offsets[start] + max_tokens, side="right")) - 1
        stop = min(n, max(start + 1, stop))
        yield start, mv[start:stop]
        start = stop
