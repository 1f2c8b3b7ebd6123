"""Seeded k-means: PQ's codebooks, and the coarse centroids of the codecs that code vectors
relative to a list (``ivf=N``: PQ codes a vector's residual from its nearest centroid, RaBitQ
centres it there).

Not a codec. Over-relaxed Lloyd iterations from ``k`` distinct rows picked by the seeded hash of
:mod:`vecx.sampling` (see :func:`_kmeans`); assignments use float32 BLAS products
(``|c|^2 - 2 <x, c>``), in blocks of rows, lowest index on ties.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError
from vecx.sampling import _splitmix64, sample_rows

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

#: k-means uses at most this many sample rows per centroid (faiss's ``max_points_per_centroid``).
MAX_POINTS_PER_CENTROID = 256
#: faiss warns below this many training rows per centroid.
MIN_POINTS_PER_CENTROID = 39
#: Relative nudge that splits a large cluster's centroid in two (faiss's ``EPS``).
_SPLIT_EPS = 1.0 / 1024
#: k-means over-relaxation: each step moves a centroid this far along its Lloyd step (1 = Lloyd),
#: from step :data:`_RELAX_FROM` on (the first steps move centroids far; extrapolating them overshoots).
_RELAX = 1.8
_RELAX_FROM = 3
#: Scratch bytes of one assignment block (rows x K float32 distances): small enough to stay in cache.
_BLOCK_BYTES = 2 << 20
#: k-means iterations of the coarse centroids.
COARSE_ITERATIONS = 20
#: Coarse lists: at most this many; a code row's list number heads it, little-endian, in LIST_BYTES bytes.
MAX_LISTS = 65535
LIST_BYTES = 2


def _mix(seed: int, index: int) -> int:
    """A 63-bit seed for sub-task ``index`` of a stage seeded ``seed``."""
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([seed], dtype=np.uint64))[0] ^ np.uint64(index)
        return int(_splitmix64(np.array([key], dtype=np.uint64))[0] >> np.uint64(1))


def _augmented(centroids: Any) -> Any:
    """``(w + 1) x K``: ``-2 C^T`` over ``|c|^2``, so that ``[x, 1] @ A = |c|^2 - 2 <x, c>``."""
    k, w = centroids.shape
    out = np.empty((w + 1, k), dtype=np.float32)
    out[:w] = -2.0 * centroids.T
    out[w] = np.einsum("kw,kw->k", centroids, centroids, dtype=np.float64)
    return out


def _nearest(x: Any, augmented: Any, out: Any, xa: Any = None) -> None:
    """Nearest centroid (lowest index on ties) of every row of ``x`` (rows x w) into ``out`` (intp).

    ``xa`` is ``x`` with a column of ones already appended (the k-means loop builds it once).
    """
    n = len(x) if xa is None else len(xa)
    w1, k = augmented.shape
    block = max(16, min(n, _BLOCK_BYTES // (4 * k)))
    scratch = np.empty((block, k), dtype=np.float32)
    if xa is None:
        rows = np.empty((block, w1), dtype=np.float32)
        rows[:, w1 - 1] = 1.0
    for start in range(0, n, block):
        stop = min(n, start + block)
        if xa is None:
            part = rows[: stop - start]
            part[:, : w1 - 1] = x[start:stop]
        else:
            part = xa[start:stop]
        np.matmul(part, augmented, out=scratch[: stop - start]).argmin(axis=1, out=out[start:stop])


def _uniform(seed: int, count: int) -> Any:
    """``count`` floats in [-1, 1) from the seeded hash (no RNG algorithm involved)."""
    with np.errstate(over="ignore"):
        salt = _splitmix64(np.array([seed], dtype=np.uint64))[0]
        keys = _splitmix64(np.arange(count, dtype=np.uint64) ^ salt)
    return (keys >> np.uint64(11)).astype(np.float64) * 2.0 ** -52 - 1.0


def _kmeans(x: Any, k: int, iters: int, seed: int, init: Any = None, labels_out: Any = None) -> Any:
    """Over-relaxed Lloyd's k-means of ``x`` (rows x w float32) into ``k`` centroids (float32), deterministic.

    Starts from ``init`` or from ``k`` distinct rows chosen by the seeded hash. Each step assigns
    the rows to their nearest centroids, then moves every centroid past the mean of its rows,
    ``c + alpha (mean - c)``: Lloyd's steps shrink geometrically near a solution, and
    over-relaxation (:data:`_RELAX`, from the :data:`_RELAX_FROM`-th step) covers the same way in
    fewer of them. When a step raises the objective, ``alpha`` halves its excess over 1 (a plain
    Lloyd step never raises it). The result is the means of the last assignment (a Lloyd point).
    Stops early when an assignment repeats (a fixed point). An empty cluster takes half of the
    largest one: both centroids move apart by a small seeded nudge (so that no two are equal).
    ``labels_out`` (``n`` integers), when given, receives that last assignment.
    """
    n, w = x.shape
    xa = np.empty((n, w + 1), dtype=np.float32)
    xa[:, :w] = x
    xa[:, w] = 1.0
    centroids = (x[sample_rows(n, k, seed)] if init is None else init).astype(np.float32)
    floor = None
    labels = np.empty(n, dtype=np.intp)
    previous = means = None
    alpha, last_objective = _RELAX, np.inf
    for step in range(iters):
        _nearest(x, _augmented(centroids), labels, xa)
        if previous is not None and np.array_equal(labels, previous):
            break  # the means of this assignment are those of the last one
        previous = labels.copy()
        counts = np.bincount(labels, minlength=k)
        sums = np.empty((k, w), dtype=np.float64)
        for j in range(w):
            sums[:, j] = np.bincount(labels, weights=x[:, j], minlength=k)
        filled = counts > 0
        used = centroids.astype(np.float64)
        # The objective sum |x - c|^2 of this assignment, less the constant sum |x|^2, from the
        # cluster sums: sum_j n_j |c_j|^2 - 2 <S_j, c_j>.
        objective = float(counts @ np.einsum("kw,kw->k", used, used) - 2.0 * np.einsum("kw,kw->", sums, used))
        means = used.copy()
        means[filled] = sums[filled] / counts[filled, None]
        for empty in np.flatnonzero(~filled):
            if floor is None:
                # The nudge is EPS of the centroid's own size, at least EPS of the data's spread
                # (a zero centroid must move too); warm starts rarely need it, so it is lazy.
                floor = float(np.sqrt(np.mean(np.var(x, axis=0, dtype=np.float64)))) or 1.0
            big = int(np.argmax(counts))
            nudge = _uniform(_mix(seed, step * k + int(empty)), w)
            delta = _SPLIT_EPS * np.maximum(np.abs(means[big]), floor) * np.where(nudge < 0, nudge - 0.5, nudge + 0.5)
            means[empty] = means[big] + delta
            means[big] = means[big] - delta
            counts[empty] = counts[big] // 2
            counts[big] -= counts[empty]
            filled[empty] = filled[big] = False  # split centroids are placed, not extrapolated
        if objective > last_objective:
            alpha = 1.0 + (alpha - 1.0) / 2
        last_objective = objective
        if step + 1 < _RELAX_FROM or step + 1 == iters:
            centroids = means.astype(np.float32)
        else:
            relaxed = means.copy()
            relaxed[filled] += (alpha - 1.0) * (means[filled] - used[filled])
            centroids = relaxed.astype(np.float32)
    if labels_out is not None and previous is not None:
        labels_out[:] = previous
    return (centroids if means is None else means).astype(np.float32)


def fit_centroids(x: Any, lists: int, seed: int) -> Any:
    """``lists`` centroids (lists x D float32) of the rows of ``x`` (a seeded subset of at most 256 per list)."""
    n = len(x)
    if n < lists:
        raise DataError(f"k-means needs at least {lists} training rows for {lists} coarse lists, the sample "
                        f"holds {n}", hint="give more rows, or fewer lists")
    limit = MAX_POINTS_PER_CENTROID * lists
    train = x if n <= limit else x[sample_rows(n, limit, _mix(seed, 1 << 22))]
    return _kmeans(np.ascontiguousarray(train, dtype=np.float32), lists, COARSE_ITERATIONS, _mix(seed, 1 << 23))


def probe_order(dots: Any, squared_norms: Any) -> Any:
    """Queries x lists, lower first: ``|c|^2 - 2 <q, c>`` from the queries' inner products with the
    centroids and the centroids' squared norms, their squared L2 distance up to the query's own
    norm. Rows are assigned to their nearest centroid by L2, so PQ probes lists in that order for
    inner-product scores too: ranking by ``<q, c>`` alone favours long centroids, whose rows are no
    nearer the query (it found 0.3-0.7% fewer of the true neighbours at 16 lists probed)."""
    return squared_norms[None, :] - 2.0 * np.asarray(dots)


def list_header(labels: Any) -> Any:
    """Rows x :data:`LIST_BYTES`: each row's list number as the bytes that head its code."""
    return np.asarray(labels).astype("<u2").view(np.uint8).reshape(len(labels), LIST_BYTES)


def list_numbers(codes: Any) -> Any:
    """The list number of each stored code row (any leading axes): its first bytes, little-endian."""
    head = np.ascontiguousarray(np.asarray(codes)[..., :LIST_BYTES], dtype=np.uint8)
    return head.view("<u2")[..., 0].astype(np.intp)


def nearest(x: Any, centroids: Any) -> Any:
    """The nearest centroid of every row of ``x`` (intp)."""
    labels = np.empty(len(x), dtype=np.intp)
    _nearest(np.ascontiguousarray(x, dtype=np.float32), _augmented(centroids), labels)
    return labels
