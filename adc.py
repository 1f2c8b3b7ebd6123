"""Compiled look-up-table scans (asymmetric distance computation) of PQ and RaBitQ codes.

A PQ code scores against a query as a sum of ``M`` table entries, one per sub-space, picked by the
code's bytes: numpy can only gather those entries for every (query, row) pair through index
arrays, at a few hundred MB/s, or decode the rows and multiply. The kernel here walks the codes
once per query, sums the entries in registers and keeps the best ``k`` in a heap, as faiss's
scalar ADC does; it is compiled by numba on first use (and cached on disk, so later processes
load it in milliseconds), and it releases the GIL so query blocks run on all cores
(:func:`in_parallel`).

Rows are visited list by list: ``starts`` delimits each coarse list's rows in ``codes`` (the codes
of a list stored contiguously) and ``rows`` gives each code's row number; a scan without lists is
one list of every row. A query's score of a row of list ``l`` is
``base[q, l] + sum_m tables[q, m, code[m]] (+ sum_m extra[l, m, code[m]])``: the coarse
centroid's term, the query's tables and, for L2 distances to residuals, the list's own tables.
RaBitQ codes are the same sums over the bytes of their bit planes (a 256-entry table per byte
position holds the sums of the query's 8 values there), weighted by each row's stored factors.
Ties between equal scores go to the lower row number, as everywhere in vecx.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.kernels import cores

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

_threads: Any = None


def _forget_pool() -> None:
    """In a forked child the parent's pool threads do not exist: start a new pool when one is needed."""
    global _threads
    _threads = None


os.register_at_fork(after_in_child=_forget_pool)


def _pool() -> Any:
    """One thread per core, kept for the process: a batch's query blocks run on it (the kernel holds
    no GIL and calls no BLAS, so neither a pool per call nor BLAS thread limits are needed)."""
    global _threads
    if _threads is None:
        from concurrent.futures import ThreadPoolExecutor

        _threads = ThreadPoolExecutor(max_workers=cores(), thread_name_prefix="vecx-adc")
    return _threads


def loaded() -> bool:
    """Whether this process has the compiled scans already (later scans cost no load time)."""
    return _kernel is not None


_kernel: Any = None
#: The helpers the kernels call (numba-compiled, by these names, when they are).
_push: Any = None
_down: Any = None
_sort: Any = None
_sum_entries: Any = None
_range: Any = None
_weighted: Any = None


def _compiled() -> Any:
    """The numba-compiled scan (compiled, or loaded from numba's on-disk cache, on first call)."""
    if _kernel is None:
        # numba caches the machine code beside this file or, where that is read-only, in the user's
        # cache directory (NUMBA_CACHE_DIR overrides both); where neither can be written, numba
        # refuses to cache, and each process compiles the kernel again (a few seconds) instead.
        os.environ.setdefault("NUMBA_DISABLE_PERFORMANCE_WARNINGS", "1")
        try:
            _compile(cache=True)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            _compile(cache=False)
    return _kernel


def _compile(cache: bool) -> None:
    """Compile the kernel and its helpers, each under the global name the others call it by."""
    global _push, _down, _sort, _sum_entries, _range, _weighted, _kernel
    from numba import njit

    _down = njit(nogil=True, cache=cache)(_sift_down)
    _push = njit(nogil=True, cache=cache, inline="always")(_heap_push)
    _sort = njit(nogil=True, cache=cache)(_heap_sort)
    _sum_entries = njit(nogil=True, cache=cache, inline="always")(_table_sum)
    _range = njit(nogil=True, cache=cache)(_scan_range)
    _weighted = njit(nogil=True, cache=cache)(_weighted_range)
    _kernel = njit(nogil=True, cache=cache)(_scan_lists)


def _heap_push(heap_s: Any, heap_r: Any, size: int, s: Any, row: Any) -> int:  # pragma: no cover
    """Offer (score ``s``, ``row``) to a max-heap of the lowest pairs (ties: lower row kept), whose
    root is the worst kept pair and which holds ``size`` of its ``len(heap_s)`` slots; returns the
    new size."""
    k = len(heap_s)
    if size < k:  # not full: sift the new pair up
        i = size
        while i > 0:
            parent = (i - 1) >> 1
            if heap_s[parent] > s or (heap_s[parent] == s and heap_r[parent] > row):
                break
            heap_s[i] = heap_s[parent]
            heap_r[i] = heap_r[parent]
            i = parent
        heap_s[i] = s
        heap_r[i] = row
        return size + 1
    if s > heap_s[0] or (s == heap_s[0] and row > heap_r[0]):
        return size  # no better than the worst kept
    _down(heap_s, heap_r, k, s, row)
    return size


def _sift_down(heap_s: Any, heap_r: Any, end: int, s: Any, row: Any) -> None:  # pragma: no cover
    """Put (``s``, ``row``) at the root of the heap ``heap[:end]`` (replacing the root) and sift it
    down to its place."""
    i = 0
    while True:
        child = 2 * i + 1
        if child >= end:
            break
        right = child + 1
        if right < end and (heap_s[right] > heap_s[child] or
                            (heap_s[right] == heap_s[child] and heap_r[right] > heap_r[child])):
            child = right
        if heap_s[child] < s or (heap_s[child] == s and heap_r[child] < row):
            break
        heap_s[i] = heap_s[child]
        heap_r[i] = heap_r[child]
        i = child
    heap_s[i] = s
    heap_r[i] = row


def _table_sum(table: Any, code: Any, offset: int, count: int) -> Any:  # pragma: no cover
    """``sum_m table[m, code[offset + m]]`` for m < ``count``, in four running sums (independent
    additions overlap in the CPU; one running sum waits on each addition in turn)."""
    s0 = table[0, code[offset]] - table[0, code[offset]]  # a zero of the table's type
    s1 = s0
    s2 = s0
    s3 = s0
    m = 0
    while m + 4 <= count:
        s0 += table[m, code[offset + m]]
        s1 += table[m + 1, code[offset + m + 1]]
        s2 += table[m + 2, code[offset + m + 2]]
        s3 += table[m + 3, code[offset + m + 3]]
        m += 4
    while m < count:
        s0 += table[m, code[offset + m]]
        m += 1
    return (s0 + s1) + (s2 + s3)


def _heap_sort(heap_s: Any, heap_r: Any, size: int) -> None:  # pragma: no cover
    """Order a heap of :func:`_heap_push` best first (ascending score, then row), in place."""
    for end in range(size - 1, 0, -1):
        s, row = heap_s[end], heap_r[end]  # the root (worst) goes to the end; the last pair sifts down
        heap_s[end], heap_r[end] = heap_s[0], heap_r[0]
        _down(heap_s, heap_r, end, s, row)


def _scan_range(codes: Any, rows: Any, lo: int, hi: int, table: Any, extra: Any, b: Any, sign: Any,
                heap_s: Any, heap_r: Any, size: int) -> int:  # pragma: no cover
    """Offer codes ``lo..hi`` of one list to a query's heap (see :func:`_scan_lists`); returns its size.
    ``extra`` is the list's own tables, or ``None`` (numba compiles that case without the branch)."""
    m_count = codes.shape[1]
    k = len(heap_s)
    for j in range(lo, hi):
        code = codes[j]
        s = _sum_entries(table, code, 0, m_count)
        if extra is not None:
            s += _sum_entries(extra, code, 0, m_count)
        v = sign * (s + b)
        if size < k or v <= heap_s[0]:  # else no better than the worst kept: skip the call
            size = _push(heap_s, heap_r, size, v, rows[j])
    return size


def _weighted_range(codes: Any, factors: Any, rows: Any, lo: int, hi: int, table: Any, a: Any, c: Any, b: Any,
                    sign: Any, heap_s: Any, heap_r: Any, size: int) -> int:  # pragma: no cover
    """:func:`_scan_range` for RaBitQ-style codes: ``T`` bit planes of ``W`` bytes per row, each
    plane's ``<bits, q>`` a sum of ``W`` per-byte table entries, and a row's score
    ``factors[r, 0] + sum_t factors[r, 1 + t] * (a * dot_t + c) + b``. One bit plane (the usual
    code) has a loop of its own: the general loop over planes, with its computed offsets, costs as
    much again per row."""
    width = table.shape[0]
    planes = codes.shape[1] // width
    k = len(heap_s)
    if planes == 1:
        for j in range(lo, hi):
            v = sign * (factors[j, 0] + factors[j, 1] * (a * _sum_entries(table, codes[j], 0, width) + c) + b)
            if size < k or v <= heap_s[0]:  # else no better than the worst kept: skip the call
                size = _push(heap_s, heap_r, size, v, rows[j])
        return size
    for j in range(lo, hi):
        code = codes[j]
        s = factors[j, 0]
        for t in range(planes):
            s += factors[j, 1 + t] * (a * _sum_entries(table, code, t * width, width) + c)
        v = sign * (s + b)
        if size < k or v <= heap_s[0]:
            size = _push(heap_s, heap_r, size, v, rows[j])
    return size


def _scan_lists(codes: Any, factors: Any, rows: Any, starts: Any, tables: Any, scale: Any, shift: Any, base: Any,
                extra: Any, picked: Any, sign: Any, out_rows: Any, out_scores: Any) -> None:  # pragma: no cover
    """Each query's best rows of its picked lists into ``out_rows``/``out_scores``, best first
    (``sign * score`` ascending, ties by row; -1 rows where fewer rows were seen). Compiled by numba,
    once for PQ codes (``factors`` is ``None``: :func:`_scan_range`) and once for RaBitQ-style codes
    (:func:`_weighted_range`); numba drops the other branch from each."""
    with_extra = extra.shape[0] > 0
    for q in range(len(tables)):
        size = 0
        table = tables[q]
        heap_s = out_scores[q]
        heap_r = out_rows[q]
        for p in range(picked.shape[1]):
            lst = picked[q, p]
            if lst < 0:
                continue
            lo, hi, b = starts[lst], starts[lst + 1], base[q, lst]
            if factors is not None:
                size = _weighted(codes, factors, rows, lo, hi, table, scale[q], shift[q], b, sign, heap_s, heap_r,
                                 size)
            elif with_extra:
                size = _range(codes, rows, lo, hi, table, extra[lst], b, sign, heap_s, heap_r, size)
            else:
                size = _range(codes, rows, lo, hi, table, None, b, sign, heap_s, heap_r, size)
        _sort(heap_s, heap_r, size)


def in_parallel(fn: Any, items: list[Any]) -> list[Any]:
    """``[fn(i) for i in items]``, on the process's scan threads when there is more than one item.

    For tasks that call the kernel (which holds no GIL) and small numpy products: the caller holds
    BLAS to one thread (idle BLAS threads would spin beside these).
    """
    if len(items) <= 1 or cores() == 1:
        return [fn(item) for item in items]
    return list(_pool().map(fn, items))


def scan(codes: Any, rows: Any, starts: Any, tables: Any, base: Any, picked: Any, count: int,
         lower_is_better: bool, extra: Any = None, factors: Any = None, scale: Any = None,
         shift: Any = None) -> tuple[Any, Any]:
    """Each query's best ``count`` rows among its picked lists: (rows, scores), best first (ties: the
    lower row), then -1 rows (and the no-result score) where its lists hold fewer. Runs in the
    calling thread.

    ``codes``: list-grouped code bytes (R x M, uint8 or uint16); ``rows``: their row numbers (R,
    int32 or int64);
    ``starts``: list offsets (L + 1); ``tables``: queries x M x K; ``base``: queries x L;
    ``picked``: queries x P list numbers (-1: none); ``extra``: L x M x K, or ``None``.
    RaBitQ-style codes (bit planes of W bytes, tables queries x W x 256) give ``factors`` (R x
    (T + 1)) and ``scale``/``shift`` per query (see :func:`_weighted_range`).
    """
    n = len(tables)
    out_rows = np.full((n, count), -1, dtype=np.int64)
    out_scores = np.full((n, count), np.inf, dtype=np.float32)
    if count and n:
        none = np.zeros(n, dtype=np.float32)
        _compiled()(np.ascontiguousarray(codes), None if factors is None else np.ascontiguousarray(
                        factors, dtype=np.float32), np.ascontiguousarray(rows),
                    np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(tables, dtype=np.float32),
                    none if scale is None else np.ascontiguousarray(scale, dtype=np.float32),
                    none if shift is None else np.ascontiguousarray(shift, dtype=np.float32),
                    np.ascontiguousarray(base, dtype=np.float32),
                    np.zeros((0, 1, 1), dtype=np.float32) if extra is None else np.ascontiguousarray(
                        extra, dtype=np.float32),
                    np.ascontiguousarray(picked, dtype=np.int64), np.float32(1.0 if lower_is_better else -1.0),
                    out_rows, out_scores)
    if not lower_is_better:
        np.negative(out_scores, out=out_scores)
    return out_rows, out_scores


def scan_codes(arrays: tuple[Any, ...], rows: Any, starts: Any, queries: dict[str, Any], picked: Any, count: int,
               lower_is_better: bool) -> tuple[Any, Any]:
    """:func:`scan`, as the codec's query state says (``queries["kind"]``): ``arrays`` are the codec's
    per-row arrays (codes, and factors for ``weighted``)."""
    if queries["kind"] == "weighted":
        codes, factors = arrays
        return scan(codes, rows, starts, queries["tables"], queries["base"], picked, count, lower_is_better,
                    factors=factors, scale=queries["scale"], shift=queries["shift"])
    (codes,) = arrays
    return scan(codes, rows, starts, queries["tables"], queries["base"], picked, count, lower_is_better,
                queries.get("extra"))
