"""The order rows enter a graph, and the local intrinsic dimensionality (LID) it can be chosen by.

HNSW's recall at fixed parameters depends on the order of insertion: nodes added early become
the graph's hubs. Elliott & Clark (2024) found inserting in descending order of pointwise LID
best, and inserting grouped by category worst. ``--order`` offers:

- ``input``: the table's row order;
- ``random``: a seeded shuffle (undoes any grouping of the input, reproducibly);
- ``lid``: descending LID, ties by row;
- ``auto`` (the default): ``lid`` for graphs of floats and int8 codes built multi-threaded, else ``input``.

LID is the maximum-likelihood estimate of Levina & Bickel (as Amsaleg et al. 2015 write it) from
a row's k nearest-neighbour distances ``r_1 <= ... <= r_k``:
``LID = -1 / mean_i ln(r_i / r_k)``. It is estimated on the vectors the graph holds (the codes,
not the raw input), as Euclidean distances in a float view where they equal the graph's metric:
unit rows for cosine, 0/1 bits for Hamming (squared L2 = Hamming distance), the values as they are
otherwise. Each row's neighbours are sought among a seeded sample of reference rows, all rows when
there are few; distances of (near) zero, the row itself and its duplicates, are left out.

The set's estimate (mean, the harmonic mean that rows of huge LID cannot dominate, median and
the 10th/90th percentiles) is recorded in the manifest at every graph build, from a sample of
rows when the order does not need every row's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import UsageError

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

ORDERS = ("auto", "input", "random", "lid")
#: Graph scalar kinds (usearch's names) that ``auto`` orders by LID when built multi-threaded: where
#: that raised recall on the shared sets. Sign bits, and single-threaded builds, showed no order
#: better than another consistently, so they keep the input order.
LID_KINDS = ("f32", "f16", "i8")
#: Neighbours per row in the LID estimate (the estimator's usual range is 20-100).
LID_NEIGHBOURS = 20
#: Reference rows the neighbours are sought among: at most this many...
MAX_REFERENCE_ROWS = 2_000
#: ...and fewer for large sets, so that rows x reference x dimensions stays near this budget...
REFERENCE_WORK = 10**11
#: ...but never fewer than this.
MIN_REFERENCE_ROWS = 1_000
#: Rows whose LID makes the set's estimate when the order needs none of the others'.
SUMMARY_ROWS = 1_000
#: Seed of the shuffle, of the reference sample and of the summary's rows.
SEED = 0x1D
#: Query rows per block of distances (each block is one BLAS product against the reference).
BLOCK_ROWS = 512


def check_order(order: str) -> str:
    """``order`` if it is one of :data:`ORDERS`, else a :class:`UsageError` listing them."""
    if order not in ORDERS:
        raise UsageError(f"--order {order}: not an insertion order", hint="use one of: " + ", ".join(ORDERS))
    return order


def resolve(order: str, graph_dtype: str, deterministic: bool) -> str:
    """The order a graph of ``graph_dtype`` (usearch's scalar kind) is built in when ``order`` is asked for."""
    if check_order(order) != "auto":
        return order
    return "lid" if graph_dtype in LID_KINDS and not deterministic else "input"


def reference_rows(rows: int, dim: int) -> int:
    """How many reference rows the neighbours of ``rows`` rows of ``dim`` coordinates are sought among."""
    budget = REFERENCE_WORK // max(1, rows * dim)
    return min(rows, MAX_REFERENCE_ROWS, max(MIN_REFERENCE_ROWS, budget))


def reference_sample(rows: int, dim: int) -> Any:
    """The sorted row numbers of the reference sample (all rows when there are few)."""
    size = reference_rows(rows, dim)
    if size >= rows:
        return np.arange(rows, dtype=np.int64)
    return np.sort(np.random.default_rng(SEED).choice(rows, size, replace=False)).astype(np.int64)


def summary_sample(rows: int) -> Any:
    """The sorted row numbers whose LID makes the set's estimate (all rows when there are few)."""
    if rows <= SUMMARY_ROWS:
        return np.arange(rows, dtype=np.int64)
    return np.sort(np.random.default_rng(SEED + 1).choice(rows, SUMMARY_ROWS, replace=False)).astype(np.int64)


def euclidean_view(vectors: Any, metric: str) -> Any:
    """Float32 rows whose squared Euclidean distances are the graph's metric (see the module docstring)."""
    from vecx.kernels import unit_rows

    if metric == "hamming":
        return np.unpackbits(np.asarray(vectors, dtype=np.uint8), axis=1).astype(np.float32)
    x = np.asarray(vectors, dtype=np.float32)
    return unit_rows(x) if metric == "cos" else x


def lid(vectors: Any, metric: str, reference: Any, reference_of: Any = None, k: int = LID_NEIGHBOURS) -> Any:
    """The LID of each row of ``vectors`` (the graph's) from its ``k`` nearest rows of ``reference``
    (their :func:`euclidean_view`).

    ``reference_of[i]``: the reference row that is row ``i`` itself, or -1; it is never its own
    neighbour even when rounding puts it at a small distance. Other rows at (near) zero distance are
    duplicates, left out too. A row with fewer than two neighbours left has no estimate (NaN); one
    whose neighbours are all equally far (Hamming ties) has an infinite LID. Rows are viewed as
    floats a block at a time (bits unpacked), so the whole set is never held in that form.
    """
    from vecx.kernels import in_row_blocks

    reference = np.ascontiguousarray(reference, dtype=np.float32)
    ref_sq = np.einsum("ij,ij->i", reference, reference)
    own = np.full(len(vectors), -1, dtype=np.int64) if reference_of is None else np.asarray(reference_of)
    count = min(k, max(1, len(reference) - 1))

    def block(index: Any) -> Any:
        index = index[:, 0]
        x = euclidean_view(vectors[index], metric)
        x_sq = np.einsum("ij,ij->i", x, x)
        d = x_sq[:, None] + ref_sq[None, :] - 2.0 * (x @ reference.T)
        # What rounding leaves of a zero distance: a duplicate (or the row itself).
        d[d <= 1e-6 * (x_sq[:, None] + ref_sq[None, :])] = np.inf
        mine = own[index]
        inside = mine >= 0
        d[np.flatnonzero(inside), mine[inside]] = np.inf
        near = np.sort(np.partition(d, count - 1, axis=1)[:, :count], axis=1).astype(np.float64)
        return mle(near)[:, None]

    # Blocks of row numbers: every block the same size (padded), so each row's distances come from
    # the same BLAS kernel whatever the number of rows or threads.
    return in_row_blocks(block, np.arange(len(vectors), dtype=np.int64)[:, None], BLOCK_ROWS, fixed=True)[:, 0]


def mle(squared: Any) -> Any:
    """The MLE from each row's sorted squared distances (inf where there was no neighbour)."""
    finite = np.isfinite(squared)
    found = finite.sum(axis=1)
    last = np.take_along_axis(squared, np.maximum(found - 1, 0)[:, None], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # ln(r_i / r_k) = ln(d_i / d_k) / 2 for squared distances d.
        logs = np.where(finite, 0.5 * np.log(squared / last), 0.0)
        mean = logs.sum(axis=1) / np.maximum(found, 1)
        out = np.where(mean < 0, -1.0 / mean, np.inf)
    return np.where(found >= 2, out, np.nan)


def summary(values: Any, reference: int, k: int = LID_NEIGHBOURS) -> dict[str, Any]:
    """The set's estimate from rows' LIDs: what the manifest records and ``vecx info`` shows."""
    values = np.asarray(values, dtype=np.float64)
    known = values[~np.isnan(values)]
    out: dict[str, Any] = {"k": k, "rows": int(len(known)), "reference_rows": int(reference)}
    if not len(known):
        return out
    finite = known[np.isfinite(known)]
    p10, median, p90 = np.percentile(known, [10, 50, 90])
    out.update({"mean": _round(finite.mean()) if len(finite) else None,
                "harmonic": _round(1.0 / np.mean(1.0 / known)),
                "median": _round(median), "p10": _round(p10), "p90": _round(p90)})
    return out


def _round(value: float) -> float | None:
    return round(float(value), 2) if np.isfinite(value) else None


def estimate_rows(rows: int, dim: int) -> Any:
    """The sorted rows :func:`sampled_summary` reads: the reference sample and the summary's rows."""
    return np.union1d(reference_sample(rows, dim), summary_sample(rows))


def sampled_summary(vectors: Any, rows: int, metric: str) -> dict[str, Any]:
    """The set's LID estimate from the summary's rows, given the graph's vectors of :func:`estimate_rows`."""
    dim = _view_dim(vectors, metric)
    wanted, ref_rows, picked = estimate_rows(rows, dim), reference_sample(rows, dim), summary_sample(rows)
    reference = euclidean_view(vectors[np.searchsorted(wanted, ref_rows)], metric)
    values = lid(vectors[np.searchsorted(wanted, picked)], metric, reference, _positions(picked, ref_rows))
    return summary(values, len(ref_rows))


def insertion_order(order: str, vectors: Any, metric: str) -> tuple[Any, dict[str, Any]]:
    """The rows of ``vectors`` (all the graph's) in the order to insert them, and the set's LID estimate.

    ``lid``: descending LID, rows without an estimate last, ties by row; its estimate covers every row.
    """
    rows = len(vectors)
    if order != "lid":
        stats = sampled_summary(vectors[estimate_rows(rows, _view_dim(vectors, metric))], rows, metric)
        if order == "random":
            return np.random.default_rng(SEED).permutation(rows), stats
        return np.arange(rows, dtype=np.int64), stats
    ref_rows = reference_sample(rows, _view_dim(vectors, metric))
    values = lid(vectors, metric, euclidean_view(vectors[ref_rows], metric),
                 _positions(np.arange(rows, dtype=np.int64), ref_rows))
    # Rounded first, so that float noise in the last bits cannot swap two rows between machines.
    key = np.nan_to_num(np.round(values, 3), nan=-1.0, posinf=np.finfo(np.float64).max)
    return np.lexsort((np.arange(rows), -key)), summary(values, len(ref_rows))


def _positions(rows: Any, ref_rows: Any) -> Any:
    """For each of ``rows``, its index in the sorted ``ref_rows``, or -1 (what :func:`lid` calls ``reference_of``)."""
    where = np.searchsorted(ref_rows, rows)
    inside = (where < len(ref_rows)) & (ref_rows[np.minimum(where, len(ref_rows) - 1)] == rows)
    return np.where(inside, where, -1)


def _view_dim(vectors: Any, metric: str) -> int:
    """Coordinates of :func:`euclidean_view` of ``vectors`` (a bit per coordinate for Hamming)."""
    return int(vectors.shape[1]) * (8 if metric == "hamming" else 1)
