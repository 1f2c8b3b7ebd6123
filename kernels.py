"""Numeric building blocks shared by the codecs and the exact search: row norms, thread pools
over row blocks, BLAS thread limits, and the seeded Haar-orthogonal rotations.

Everything here is deterministic: results never depend on the number of threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")


def one_blas_thread() -> Any:
    """A context holding BLAS/LAPACK to one thread: for the small factorizations of fits (QR of a
    rotation, eigh of a covariance). Threaded OpenBLAS makes such small factorizations many times
    slower on a busy machine; on one thread they take the same short time whatever the load."""
    global _blas_controller
    if _blas_controller is None:
        import numpy  # noqa: F401  (its BLAS must be loaded before the controller looks for libraries)
        from threadpoolctl import ThreadpoolController

        # One controller for the process: finding the loaded libraries costs ~25x what the limit does.
        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


_blas_controller: Any = None


def row_norms(x: Any) -> Any:
    """L2 norms of the rows of ``x`` (rows x 1, in ``x``'s float type).

    A float32 sum of squares overflows for rows near float32's range and underflows for tiny
    ones: such rows (an infinite or zero norm) are recomputed in float64, so that re-normalizing
    them gives unit vectors, not zeros. Other rows keep their float32 norms (the same bytes).
    """
    import numpy as np

    with np.errstate(over="ignore", under="ignore"):  # such rows are redone below
        norms = np.linalg.norm(x, axis=1, keepdims=True)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
    if bad.any():  # usually none: no index of them is built then (a single query notices that cost)
        redo = np.flatnonzero(bad)
        norms = norms.copy()
        norms[redo] = np.linalg.norm(np.asarray(x[redo], dtype=np.float64), axis=1, keepdims=True)
    return norms


def unit_rows(x: Any, norms: Any = None) -> Any:
    """Rows of ``x`` divided by their L2 norms (``norms``, rows x 1, when known); a zero row stays zero."""
    import numpy as np

    norms = row_norms(x) if norms is None else norms
    if (norms > 0).all():
        return x / norms  # the same quotients, without the cost of the masked division
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def compiled(fn: Any, cache: bool = True, **options: Any) -> Any:
    """``fn`` compiled by numba (``nogil``, so that threads run it in parallel), its machine code
    cached on disk beside the module or in the user's cache directory (``NUMBA_CACHE_DIR``); where
    neither can be written, numba refuses to cache and each process compiles it again instead (as
    ``cache=False`` asks)."""
    import os

    from numba import njit

    from vecx._lazy import LazyModule

    os.environ.setdefault("NUMBA_DISABLE_PERFORMANCE_WARNINGS", "1")
    for name, value in list(fn.__globals__.items()):  # numba reads globals as it compiles: real modules
        if isinstance(value, LazyModule):
            fn.__globals__[name] = value._load()
    if cache:
        try:
            return njit(nogil=True, cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            pass
    return njit(nogil=True, cache=False, **options)(fn)


def cores() -> int:
    """The cores this process may use."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def map_threads(fn: Any, items: list[Any]) -> list[Any]:
    """``[fn(i) for i in items]`` on a thread pool (one per core), BLAS held to one thread per task.

    For codec work that numpy runs with the GIL released (products, reductions, element-wise
    passes); the results do not depend on the number of threads.
    """
    workers = max(1, min(cores(), len(items)))
    with one_blas_thread():
        if workers == 1:
            return [fn(item) for item in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vecx-codec") as pool:
            return list(pool.map(fn, items))


def in_row_blocks(fn: Any, x: Any, rows: int, fixed: bool = False) -> Any:
    """``fn(x)`` for a row-wise ``fn``, computed on blocks of ``rows`` rows on all cores and stacked.

    Blocks start at fixed multiples of ``rows``, so the result does not depend on the threads.
    ``fixed``: every block is ``rows`` rows (the last one padded with copies of its last row), so
    that BLAS multiplies every row with the same kernel, whatever the rows around it. A
    :class:`~vecx.errors.RowError` names the row of ``x``, not of its block.
    """
    import numpy as np

    from vecx.errors import RowError

    n = len(x)

    def block(start: int) -> Any:
        part = x[start: start + rows]
        real = len(part)
        if fixed and real < rows:
            part = np.concatenate([part, np.repeat(part[real - 1: real], rows - real, axis=0)])
        try:
            out = fn(part)
        except RowError as exc:  # a padding row is a copy of the last real one, which failed first
            raise RowError(exc.row + start, exc.detail, hint=exc.hint) from None
        return out[:real]

    if n <= rows:
        return block(0) if n else fn(x)
    return np.concatenate(map_threads(block, list(range(0, n, rows))), axis=0)


def haar_orthogonal(dim: int, rng: Any) -> Any:
    """A ``dim x dim`` orthogonal matrix drawn uniformly (Haar measure) from the generator ``rng``,
    float32: the QR of a Gaussian matrix, with the sign fix that makes the distribution uniform.
    ``rng`` is an ``int`` seed or a ``numpy.random.Generator`` (consecutive draws for several blocks)."""
    if not isinstance(rng, np.random.Generator):
        rng = np.random.Generator(np.random.PCG64(rng))
    with one_blas_thread():
        q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (q * np.sign(np.diag(r))[None, :]).astype(np.float32)


def apply_blocks(x: Any, blocks: Any, transpose: bool = False) -> Any:
    """``x @ Q`` (``x @ Q^T`` with ``transpose``) for the block-diagonal ``Q`` whose blocks are
    ``blocks`` (``nb x b x b``), rows of ``x`` being ``nb * b`` wide; one GEMM per block, float32."""
    nb, b, _ = blocks.shape
    if nb == 1:
        return x @ (blocks[0].T if transpose else blocks[0])
    out = np.empty((len(x), nb * b), dtype=np.float32)
    for i in range(nb):
        out[:, i * b:(i + 1) * b] = np.ascontiguousarray(x[:, i * b:(i + 1) * b]) @ (
            blocks[i].T if transpose else blocks[i])
    return out


def cast(x: Any, dtype: Any) -> Any:
    """``x`` as ``dtype``; float32 <-> float16 by numkong's SIMD kernels (a few percent of numpy's
    time for these two), which round as numpy does (to nearest, ties to even): the same bytes.

    Other casts, and byte orders numkong does not read, are numpy's ``astype``. An array already
    of ``dtype`` is returned as it is.
    """
    x = np.asarray(x)
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    target = _NUMKONG_FLOATS.get(dtype.char)
    if target is not None and x.dtype.char in _NUMKONG_FLOATS and x.dtype.isnative:
        import numkong

        out = np.empty(x.shape, dtype)
        if out.size:
            numkong.astype(x, target, out=out)
        return out
    return x.astype(dtype)


#: The float types :func:`cast` hands to numkong, by their one-letter codes (``dtype.name`` costs a
#: single query's cast more than the cast itself), with numkong's names for them.
_NUMKONG_FLOATS: dict[str, Any] = {"e": "float16", "f": "float32"}


def top_k(keys: Any, scores: Any, k: int, lower_is_better: bool) -> tuple[Any, Any]:
    """Each row's best ``k`` (keys, scores), best first; ties go to the lower key; ``-1`` keys last."""
    if len(keys) == 1 and keys.shape[1] <= _LIST_SORT_WIDTH:  # one query: a list sort costs a third
        row_keys, row_scores = keys[0].tolist(), scores[0].tolist()
        sign = 1.0 if lower_is_better else -1.0
        # Missing keys last, in their own order (as the stable sort below leaves them).
        picked = sorted(range(len(row_keys)), key=lambda j: (1, 0.0, 0) if row_keys[j] < 0
                        else (0, sign * row_scores[j], row_keys[j]))[:k]
        if picked == list(range(len(picked))):  # a graph's answer, usually: in order already
            return keys[:, :k], scores[:, :k]
        return keys[:, picked], scores[:, picked]
    order_key = scores if lower_is_better else -scores
    if (keys >= 0).all() and (order_key[:, 1:] > order_key[:, :-1]).all():  # best first already, no ties
        return keys[:, :k], scores[:, :k]  # a graph's answer, usually: no sort needed
    order_key = np.where(keys >= 0, order_key, np.inf)
    order = np.lexsort((keys, order_key), axis=1)[:, :k]
    rows = np.arange(len(keys))[:, None]  # plain indexing: take_along_axis costs a single query ~10 us more
    return keys[rows, order], scores[rows, order]


#: Up to this many candidates, :func:`top_k` orders a single query's in a Python list: less per call
#: than numpy's passes over so few.
_LIST_SORT_WIDTH = 32


#: The largest squared L2 norm a row may have: every float32 computation on it (norms, inner
#: products, cosine) then stays finite.
MAX_SQ_NORM = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max


def too_large_rows(v: Any) -> tuple[Any, Any]:
    """Rows of ``v`` whose squared L2 norm, summed in float64, exceeds :data:`MAX_SQ_NORM`, and the
    float64 squared norms of all rows (the same check for imported rows, tokens and queries)."""
    wide = np.asarray(v, dtype=np.float64)
    exact = np.einsum("ij,ij->i", wide, wide)
    return np.flatnonzero(exact > MAX_SQ_NORM), exact
