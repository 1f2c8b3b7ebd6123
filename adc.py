"""Compiled look-up-table scans (asymmetric distance computation) of PQ and RaBitQ codes.

A PQ code scores against a query as a sum of ``M`` table entries, one per sub-space, picked by the
code's bytes: numpy can only gather those entries for every (query, row) pair through index
arrays, at a few hundred MB/s, or decode the rows and multiply. The kernel here walks the codes
once per query, sums the entries in registers and keeps the best ``k`` in a heap, as faiss's
scalar ADC does; it is compiled by numba on first use (and cached on disk, so later processes
load it in milliseconds), and it releases the GIL so query blocks run on all cores
(:func:`in_parallel`).

Rows are visited list by list: ``starts`` delimits each coarse list's rows in ``codes`` (the codes
of a list stored contiguously, eight one-byte codes to a 64-bit word: :class:`Codes`) and ``rows``
gives each code's row number; a scan without lists is one list of every row. A query's score of a row of list ``l`` is
``base[q, l] + sum_m tables[q, m, code[m]] (+ sum_m extra[l, m, code[m]])``: the coarse
centroid's term, the query's tables and, for L2 distances to residuals, the list's own tables.
RaBitQ codes are the same sums over the bytes of their bit planes (a 256-entry table per byte
position holds the sums of the query's 8 values there), weighted by each row's stored factors.
With a query rounded to a few bits per coordinate (the codec's query bits), one-byte bit planes
are scored by counting instead: each plane's ``<bits, q_hat>`` from AND-popcounts of the row's words
with the query's bit planes (:func:`plane_counts`), no table look-ups.
Ties between equal scores go to the lower row number, as everywhere in vecx.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.kernels import compiled, cores, one_blas_thread

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

_threads: Any = None
_THREAD_NAME = "vecx-adc"


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

        _threads = ThreadPoolExecutor(max_workers=cores(), thread_name_prefix=_THREAD_NAME)
    return _threads


def loaded() -> bool:
    """Whether this process has the compiled scans already (later scans cost no load time)."""
    return _kernel is not None


#: Table bytes (float32 entries) above which a scan sums its rows span by span (:func:`_block_sums`)
#: rather than a row at a time; the bytes of table one span covers (about the L1 data cache); and the
#: rows summed at a time.
WIDE_TABLE = 48 * 1024
SPAN_BYTES = 24 * 1024
BLOCK_ROWS = 1024

_kernel: Any = None
#: The helpers the kernels call (numba-compiled, by these names, when they are).
_push: Any = None
_down: Any = None
_sort: Any = None
_add_words: Any = None
_add_tail: Any = None
_range: Any = None
_pq_rows: Any = None
_weighted: Any = None
_many: Any = None
_one: Any = None
_sums: Any = None
_wide: Any = None
_blocks: Any = None
_offer: Any = None
_counts: Any = None
_counts4: Any = None
_counts8: Any = None
_plane_counts: Any = None
_dot: Any = None
_count_one: Any = None
_finish: Any = None
_merge: Any = None


def _compiled() -> Any:
    """The numba-compiled scan (compiled, or loaded from numba's on-disk cache, on first call; see
    :func:`vecx.kernels.compiled`)."""
    if _kernel is None:
        _compile()
    return _kernel


def _compile(cache: bool = True) -> None:
    """Compile the kernel and its helpers, each under the global name the others call it by."""
    global _push, _down, _sort, _add_words, _add_tail, _pq_rows, _range, _weighted, _many, _one, _offer, _finish, _merge
    global _sums, _wide, _blocks, _counts, _counts4, _counts8, _plane_counts, _dot, _count_one
    global _kernel
    _counts, _counts4, _counts8 = plane_counts(), plane_counts(4), plane_counts(8)
    _down = compiled(_sift_down, cache)
    _push = compiled(_heap_push, cache, inline="always")
    _sort = compiled(_heap_sort, cache)
    _add_words = compiled(_words_sum, cache, inline="always")
    _add_tail = compiled(_tail_sum, cache, inline="always")
    _pq_rows = compiled(_rows_range, cache, inline="always")
    _sums = compiled(_block_sums, cache, inline="always")
    _wide = compiled(_wide_table, cache, inline="always")
    _blocks = compiled(_blocked_range, cache, inline="always")
    _range = compiled(_scan_range, cache)
    _many = compiled(_planes_range, cache, inline="always")
    _one = compiled(_one_plane_range, cache)
    _weighted = compiled(_weighted_range, cache)
    _plane_counts = compiled(_counts_of, cache, inline="always")
    _count_one = compiled(_counted_one, cache, inline="always")
    _dot = compiled(_plane_dot, cache, inline="always")
    _offer = compiled(_offer_products, cache)
    _finish = compiled(_sort_heaps, cache)
    _merge = compiled(_merge_parts, cache)
    _kernel = compiled(_scan_lists, cache)


# ---- AND-popcounts in vector registers -------------------------------------------------------
# A query rounded to ``B`` bits per coordinate (``q_hat = low + delta * u``, ``u`` in ``0..2^B - 1``)
# has an inner product with a row of bits that is integer counting: ``<bits, q_hat> = delta * sum_t
# 2^t popcount(bits & plane_t(u)) + low * popcount(bits)``, ``plane_t(u)`` the ``t``-th bits of ``u``
# packed as the codes are. numba compiles a popcount loop to one scalar ``popcnt`` per word; this
# intrinsic is written in LLVM IR instead, 8 words at a time as ``<8 x i64>`` vectors
# (``llvm.ctpop.v8i64``: one ``VPOPCNTQ`` with AVX-512 VPOPCNTDQ; a few instructions per word on
# older x86 and other machines, which LLVM lowers it to), then 4, 2 and 1 word for a row's last
# words, so that the code rows need no padding beyond whole words. It lives in this module because
# numba's on-disk cache of the scans is keyed on this file alone: a change here recompiles them.

#: The widths (in 64-bit words) a row is read in: whole vectors of 8 words, then the rest 4, 2, 1.
_LANES = (8, 4, 2, 1)


def plane_counts(planes_fixed: int | None = None) -> Any:
    """A numba intrinsic ``(words, planes, j, first, count) -> (weighted, ones)``: over words
    ``first..first + count`` of code row ``j`` (``words``: rows x W uint64), ``weighted = sum_t 2^t
    popcount(row & planes[t])`` and ``ones = popcount(row)`` (``planes``: B x ``count`` uint64, a
    C-contiguous query's bit planes, plane ``t`` the ``t``-th bit of each coordinate's level).

    ``planes_fixed``: the number of planes if known when compiling (their loop unrolled: about a
    third faster for 384-bit rows and 4 planes), else read from ``planes`` at run time."""
    from numba import types
    from numba.extending import intrinsic

    def typer(typingctx: Any, words: Any, planes: Any, j: Any, first: Any, count: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return _RowCounts(context, builder, signature, args, planes_fixed).emit()

        return types.UniTuple(types.uint64, 2)(words, planes, j, first, count), codegen

    typer.__name__ = f"plane_counts_{planes_fixed or 'any'}"
    return intrinsic(typer)


class _RowCounts:
    """The IR of one :func:`plane_counts` call: the row's and the query's pointers, the two running
    counts, and the code that adds a run of the row's words to them."""

    def __init__(self, context: Any, builder: Any, signature: Any, args: Any, planes_fixed: int | None) -> None:
        from llvmlite import ir
        from numba import types
        from numba.core import cgutils

        self.ir, self.cgutils, self.builder, self.context = ir, cgutils, builder, context
        self.result = signature.return_type  # a tuple, in numba's own layout of it
        self.i64, self.intp = ir.IntType(64), context.get_value_type(types.intp)
        rows = context.make_array(signature.args[0])(context, builder, args[0])
        query = context.make_array(signature.args[1])(context, builder, args[1])
        row, start, self.width = (context.cast(builder, args[i], signature.args[i], types.intp) for i in (2, 3, 4))
        self.query, self.planes_fixed = query.data, planes_fixed
        self.plane_count = builder.extract_value(query.shape, 0)
        self.stride = builder.extract_value(query.shape, 1)
        self.row = cgutils.get_item_pointer(context, builder, signature.args[0], rows, [row, start], wraparound=False)
        self.weighted = cgutils.alloca_once_value(builder, ir.Constant(self.i64, 0))
        self.ones = cgutils.alloca_once_value(builder, ir.Constant(self.i64, 0))

    def emit(self) -> Any:
        """Every word of the row: whole vectors of 8 words, then the rest's 4, 2 and 1; the two counts."""
        ir, b, intp = self.ir, self.builder, self.intp
        whole = b.and_(self.width, ir.Constant(intp, -_LANES[0]))
        with self.cgutils.for_range_slice(b, ir.Constant(intp, 0), whole, ir.Constant(intp, _LANES[0])) as (w, _):
            self.add_words(w, _LANES[0])
        at = self.cgutils.alloca_once_value(b, whole)
        rest = b.sub(self.width, whole)
        for lanes in _LANES[1:]:  # the rest's binary digits
            with b.if_then(b.icmp_unsigned("!=", b.and_(rest, ir.Constant(intp, lanes)), ir.Constant(intp, 0))):
                w = b.load(at)
                self.add_words(w, lanes)
                b.store(b.add(w, ir.Constant(intp, lanes)), at)
        return self.context.make_tuple(b, self.result, [b.load(self.weighted), b.load(self.ones)])

    def _function(self, name: str, result: Any, kind: Any) -> Any:
        return self.cgutils.get_or_insert_function(self.builder.module, self.ir.FunctionType(result, [kind]), name)

    def add_words(self, w: Any, lanes: int) -> None:
        """Add words ``w..w + lanes`` of the row (one vector of ``lanes`` words) to the two counts."""
        ir, b = self.ir, self.builder
        kind = ir.VectorType(self.i64, lanes) if lanes > 1 else self.i64
        suffix = f"v{lanes}i64" if lanes > 1 else "i64"
        ctpop = self._function(f"llvm.ctpop.{suffix}", kind, kind)

        def total(v: Any) -> Any:
            return v if lanes == 1 else b.call(self._function(f"llvm.vector.reduce.add.{suffix}", self.i64, kind), [v])

        def load(pointer: Any, at: Any) -> Any:
            return b.load(b.bitcast(b.gep(pointer, [at]), kind.as_pointer()), align=8)

        x = load(self.row, w)
        acc = self.cgutils.alloca_once_value(b, ir.Constant(kind, None))

        def plane(t: Any) -> None:
            # Each plane's count shifted by its place and added: independent counts, no chain but the sum.
            count = b.call(ctpop, [b.and_(x, load(self.query, b.add(b.mul(t, self.stride), w)))])
            shift = t if self.intp.width == 64 else b.zext(t, self.i64)
            if lanes > 1:  # the same shift in every lane
                one = b.insert_element(ir.Constant(kind, ir.Undefined), shift, ir.Constant(ir.IntType(32), 0))
                shift = b.shuffle_vector(one, ir.Constant(kind, ir.Undefined),
                                         ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))
            b.store(b.add(b.load(acc), b.shl(count, shift)), acc)

        if self.planes_fixed is None:
            with self.cgutils.for_range(b, self.plane_count) as loop:
                plane(loop.index)
        else:
            for t in range(self.planes_fixed):
                plane(ir.Constant(self.intp, t))
        b.store(b.add(b.load(self.weighted), total(b.load(acc))), self.weighted)
        b.store(b.add(b.load(self.ones), total(b.call(ctpop, [x]))), self.ones)


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


def _words_sum(table: Any, k: int, words: Any, j: int, lo: int, hi: int, origin: int) -> Any:  # pragma: no cover
    """``sum table[p * k + code_p]`` over the codes packed in ``words[j, lo:hi]`` (eight one-byte
    codes per word, the first in the low byte; word ``origin`` holds table positions 0-7), in four
    running sums: one 8-byte load per eight codes instead of eight 1-byte loads (the scan is bound
    by loads), and independent additions that overlap in the CPU."""
    s0 = table[0] - table[0]  # a zero of the table's type
    s1 = s0
    s2 = s0
    s3 = s0
    byte = np.uint64(255)
    for w in range(lo, hi):
        # Word and table positions unsigned: numba wraps a signed index that could be negative (a step
        # per look-up that LLVM removes only where it can prove the index is not).
        x = words[j, np.uint64(w)]
        b = np.uint64((w - origin) * 8 * k)
        s0 += table[b + (x & byte)]
        s1 += table[b + np.uint64(k) + ((x >> np.uint64(8)) & byte)]
        s2 += table[b + np.uint64(2 * k) + ((x >> np.uint64(16)) & byte)]
        s3 += table[b + np.uint64(3 * k) + ((x >> np.uint64(24)) & byte)]
        s0 += table[b + np.uint64(4 * k) + ((x >> np.uint64(32)) & byte)]
        s1 += table[b + np.uint64(5 * k) + ((x >> np.uint64(40)) & byte)]
        s2 += table[b + np.uint64(6 * k) + ((x >> np.uint64(48)) & byte)]
        s3 += table[b + np.uint64(7 * k) + (x >> np.uint64(56))]
    return (s0 + s1) + (s2 + s3)


def _tail_sum(table: Any, k: int, tail: Any, j: int, lo: int, hi: int, first: int) -> Any:  # pragma: no cover
    """``sum table[p * k + code_p]`` over the codes ``tail[j, lo:hi]`` one by one (codes wider than a
    byte, or any code on a big-endian machine), code ``i`` at table position ``first + i``."""
    s0 = table[0] - table[0]
    s1 = s0
    i = lo
    while i + 2 <= hi:
        s0 += table[(first + i) * k + tail[j, i]]
        s1 += table[(first + i + 1) * k + tail[j, i + 1]]
        i += 2
    if i < hi:
        s0 += table[(first + i) * k + tail[j, i]]
    return s0 + s1


def _heap_sort(heap_s: Any, heap_r: Any, size: int) -> None:  # pragma: no cover
    """Order a heap of :func:`_heap_push` best first (ascending score, then row), in place."""
    for end in range(size - 1, 0, -1):
        s, row = heap_s[end], heap_r[end]  # the root (worst) goes to the end; the last pair sifts down
        heap_s[end], heap_r[end] = heap_s[0], heap_r[0]
        _down(heap_s, heap_r, end, s, row)


def _scan_range(words: Any, tail: Any, rows: Any, lo: int, hi: int, table: Any, extra: Any, k: int, b: Any,
                sign: Any, heap_s: Any, heap_r: Any, size: int) -> int:  # pragma: no cover
    """Offer codes ``lo..hi`` of one list to a query's heap (see :func:`_scan_lists`); returns its size.
    ``extra`` is the list's own tables, or ``None`` (numba compiles that case without the branch).
    Tables of 256 entries (8-bit codes) get a loop of their own with the stride a constant, which LLVM
    folds into the addresses (with the stride a variable, every address costs a multiplication).
    Codes one by one (``tail``: wider than a byte, or a big-endian machine) are the rare case; the
    usual call passes ``None`` for them, compiled without their test in the loop."""
    if tail.shape[1]:
        return _pq_rows(words, tail, rows, lo, hi, table, extra, k, b, sign, heap_s, heap_r, size)
    if k == 256:
        if _wide(words, 256):
            return _blocks(words, None, rows, lo, hi, table, extra, 256, b, b, b, sign, heap_s, heap_r, size)
        return _pq_rows(words, None, rows, lo, hi, table, extra, 256, b, sign, heap_s, heap_r, size)
    if _wide(words, k):  # (a and c, unused without factors, take b's type)
        return _blocks(words, None, rows, lo, hi, table, extra, k, b, b, b, sign, heap_s, heap_r, size)
    return _pq_rows(words, None, rows, lo, hi, table, extra, k, b, sign, heap_s, heap_r, size)


def _rows_range(words: Any, tail: Any, rows: Any, lo: int, hi: int, table: Any, extra: Any, k: int, b: Any,
                sign: Any, heap_s: Any, heap_r: Any, size: int) -> int:  # pragma: no cover
    """The loop of :func:`_scan_range` (inlined there, once per kind of stride)."""
    nw = words.shape[1]
    top = len(heap_s)
    for j in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wrap-around per access
        # Only one of words and tail holds codes (see Codes); with tail None numba drops its branch.
        s = _add_words(table, k, words, j, 0, nw, 0)
        if tail is not None:
            s += _add_tail(table, k, tail, j, 0, tail.shape[1], 8 * nw)
        if extra is not None:
            s += _add_words(extra, k, words, j, 0, nw, 0)
            if tail is not None:
                s += _add_tail(extra, k, tail, j, 0, tail.shape[1], 8 * nw)
        v = sign * (s + b)
        if size < top or v <= heap_s[0]:  # else no better than the worst kept: skip the call
            size = _push(heap_s, heap_r, size, v, rows[j])
    return size


def _block_sums(table: Any, k: int, words: Any, lo: int, hi: int, out: Any) -> None:  # pragma: no cover
    """``out[i] += sum table[p * k + code_p]`` over the codes of row ``lo + i`` (``lo..hi``), summed
    span by span of code words: each span's table entries (about :data:`SPAN_BYTES`) stay in the L1
    cache while every row of the block is read, where a row at a time would cycle through a table
    larger than that cache on every row. A row's sum does not depend on the block it is in."""
    nw = words.shape[1]
    span = max(1, SPAN_BYTES // (32 * k))
    for w0 in range(0, nw, span):
        w1 = min(nw, w0 + span)
        for i in range(hi - lo):
            out[i] += _add_words(table, k, words, np.uint64(lo + i), w0, w1, 0)


def _wide_table(words: Any, k: int) -> bool:  # pragma: no cover
    """Whether a query's tables for these code words (``k`` float32 entries per code byte) are larger
    than :data:`WIDE_TABLE`: then a scan sums its rows by blocks (:func:`_blocked_range`)."""
    return words.shape[1] * 32 * k > WIDE_TABLE


def _blocked_range(words: Any, factors: Any, rows: Any, lo: int, hi: int, table: Any, extra: Any, k: int,
                   a: Any, c: Any, b: Any, sign: Any, heap_s: Any, heap_r: Any,
                   size: int) -> int:  # pragma: no cover
    """:func:`_rows_range` (``factors`` None: PQ codes, with the list's ``extra`` tables or None) or
    :func:`_one_plane_range` (one-plane RaBitQ-style codes and their factors) for tables larger than
    :data:`WIDE_TABLE`: the rows' sums by blocks of :data:`BLOCK_ROWS` rows (:func:`_block_sums`),
    then scored and offered to the heap as those scans score them."""
    top = len(heap_s)
    part = np.empty(BLOCK_ROWS, dtype=table.dtype)
    for start in range(lo, hi, BLOCK_ROWS):
        end = min(hi, start + BLOCK_ROWS)
        part[:] = 0
        _sums(table, k, words, start, end, part)
        if extra is not None:
            _sums(extra, k, words, start, end, part)
        for i in range(end - start):
            j = np.uint64(start + i)
            if factors is None:
                v = sign * (part[i] + b)
            else:
                v = sign * (factors[j, 0] + factors[j, 1] * (a * part[i] + c) + b)
            if size < top or v <= heap_s[0]:
                size = _push(heap_s, heap_r, size, v, rows[j])
    return size


def _weighted_range(words: Any, tail: Any, factors: Any, bounds: Any, rows: Any, lo: int, hi: int, table: Any,
                    a: Any, c: Any, b: Any, qb: Any, sign: Any, heap_s: Any, heap_r: Any, size: int,
                    planes: Any, low: Any, delta: Any) -> int:  # pragma: no cover
    """:func:`_scan_range` for RaBitQ-style codes: ``T`` bit planes per row (``T = factors.shape[1] -
    1``), each plane's ``<bits, q>`` a sum of one 256-entry table entry per byte (the same table for
    every plane), and a row's score ``factors[r, 0] + sum_t factors[r, 1 + t] * (a * dot_t + c) + b``.
    Each plane's bytes are whole words, zero-padded (``words``; on a big-endian machine all bytes are
    in ``tail``). One plane (the usual code) has a loop of its own.

    ``bounds`` (rows x 2, or rows x 0) holds each row's sign-code weight and error term: once the
    heap is full, a row whose sign-bit estimate, plus its error term times ``qb``, cannot beat the
    worst kept score is given up before its other planes are read (incremental estimation).

    A query rounded to few bits gives its levels' bit planes (``planes``: B x W words; ``low`` and
    ``delta`` its rounding; else ``None``): each plane's ``<bits, q_hat>`` is then counted
    (:func:`_counts_of`) instead of summed from the table, the score the same; the codes are in
    words then."""
    if planes is not None:
        fixed = planes.shape[0] if planes.shape[0] in (4, 8) else 0  # the usual query bits: unrolled
        if factors.shape[1] == 2:
            return _count_one(words, factors, rows, lo, hi, planes, low, delta, a, c, b, sign, heap_s, heap_r, size,
                              fixed)
        return _many(words, None, factors, bounds, rows, lo, hi, table, a, c, b, qb, sign, heap_s, heap_r, size,
                     planes, low, delta, fixed)
    if factors.shape[1] == 2:
        if tail.shape[1]:
            return _one(words, tail, factors, rows, lo, hi, table, a, c, b, sign, heap_s, heap_r, size)
        return _one(words, None, factors, rows, lo, hi, table, a, c, b, sign, heap_s, heap_r, size)
    if tail.shape[1]:
        return _many(words, tail, factors, bounds, rows, lo, hi, table, a, c, b, qb, sign, heap_s, heap_r, size,
                     None, low, delta, 0)
    return _many(words, None, factors, bounds, rows, lo, hi, table, a, c, b, qb, sign, heap_s, heap_r, size,
                 None, low, delta, 0)


def _one_plane_range(words: Any, tail: Any, factors: Any, rows: Any, lo: int, hi: int, table: Any,
                     a: Any, c: Any, b: Any, sign: Any, heap_s: Any, heap_r: Any, size: int) -> int:  # pragma: no cover
    """:func:`_weighted_range` for codes of one plane (the usual code): a function of its own, which
    LLVM compiles to a tighter loop than the same loop beside the several planes' one. Tables larger
    than :data:`WIDE_TABLE` (wide vectors) are summed by blocks of rows (:func:`_blocked_range`)."""
    if tail is None and _wide(words, 256):
        return _blocks(words, factors, rows, lo, hi, table, None, 256, a, c, b, sign, heap_s, heap_r, size)
    nw = words.shape[1]
    top = len(heap_s)
    for j in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wrap-around per access
        dot = _add_words(table, 256, words, j, 0, nw, 0)
        if tail is not None:  # codes past the words (numba compiles the usual call, tail None, without it)
            dot += _add_tail(table, 256, tail, j, 0, tail.shape[1], 8 * nw)
        v = sign * (factors[j, 0] + factors[j, 1] * (a * dot + c) + b)
        if size < top or v <= heap_s[0]:  # else no better than the worst kept: skip the call
            size = _push(heap_s, heap_r, size, v, rows[j])
    return size


def _plane_dot(words: Any, tail: Any, table: Any, planes: Any, low: Any, delta: Any, fixed: int, j: Any, t: int,
               pw: int, code_planes: int) -> Any:  # pragma: no cover
    """``<bits_t, q>`` of plane ``t`` of row ``j`` (``pw`` words per plane of ``code_planes``): counted
    against a rounded query's bit planes (``planes``), else summed from the query's table (with the
    plane's codes past the words, ``tail``)."""
    if planes is not None:
        weighted, ones = _plane_counts(words, planes, j, t * pw, pw, fixed)
        return delta * np.float32(weighted) + low * np.float32(ones)
    dot = _add_words(table, 256, words, j, t * pw, (t + 1) * pw, t * pw)
    if tail is not None:
        pt = tail.shape[1] // code_planes
        dot += _add_tail(table, 256, tail, j, t * pt, (t + 1) * pt, -t * pt)
    return dot


def _planes_range(words: Any, tail: Any, factors: Any, bounds: Any, rows: Any, lo: int, hi: int, table: Any,
                  a: Any, c: Any, b: Any, qb: Any, sign: Any, heap_s: Any, heap_r: Any, size: int, planes: Any,
                  low: Any, delta: Any, fixed: int) -> int:  # pragma: no cover
    """:func:`_weighted_range` for codes of several planes (the sign plane first), from tables or
    counted (:func:`_plane_dot`)."""
    code_planes = factors.shape[1] - 1
    prune = bounds.shape[1] > 0
    top = len(heap_s)
    pw = words.shape[1] // code_planes
    for j in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wrap-around per access
        s = factors[j, 0]
        first = 0
        if prune and size == top:  # the sign plane first: can the row still make the heap?
            dot = _dot(words, tail, table, planes, low, delta, fixed, j, 0, pw, code_planes)
            if sign * (s + bounds[j, 0] * (a * dot + c) + b) - bounds[j, 1] * qb > heap_s[0]:
                continue
            s += factors[j, 1] * (a * dot + c)
            first = 1
        for t in range(first, code_planes):
            s += factors[j, 1 + t] * (a * _dot(words, tail, table, planes, low, delta, fixed, j, t, pw, code_planes)
                                      + c)
        v = sign * (s + b)
        if size < top or v <= heap_s[0]:
            size = _push(heap_s, heap_r, size, v, rows[j])
    return size


def _counts_of(words: Any, planes: Any, j: Any, first: int, count: int, fixed: int) -> Any:  # pragma: no cover
    """:func:`plane_counts` of words ``first..first + count`` of row ``j``, its loop over the query's
    planes unrolled for 4 or 8 of them (``fixed``, the usual query bits; 0: any). The branch is the
    same for every row: the processor predicts it."""
    if fixed == 4:
        return _counts4(words, planes, j, first, count)
    if fixed == 8:
        return _counts8(words, planes, j, first, count)
    return _counts(words, planes, j, first, count)


def _counted_one(words: Any, factors: Any, rows: Any, lo: int, hi: int, planes: Any, low: Any, delta: Any, a: Any,
                 c: Any, b: Any, sign: Any, heap_s: Any, heap_r: Any, size: int, fixed: int) -> int:  # pragma: no cover
    """:func:`_weighted_range` for codes of one plane counted against a rounded query (the usual
    code): a loop of its own, with the rounding folded into the score's factors."""
    nw = words.shape[1]
    top = len(heap_s)
    scale, offset = a * delta, a * low
    for j in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wrap-around per access
        weighted, ones = _plane_counts(words, planes, j, 0, nw, fixed)
        v = sign * (factors[j, 0] + factors[j, 1] * (scale * np.float32(weighted) + offset * np.float32(ones) + c) + b)
        if size < top or v <= heap_s[0]:  # else no better than the worst kept: skip the call
            size = _push(heap_s, heap_r, size, v, rows[j])
    return size


def _scan_lists(words: Any, tail: Any, factors: Any, bounds: Any, rows: Any, starts: Any, tables: Any, k: int,
                scale: Any, shift: Any, qbound: Any, planes: Any, low: Any, delta: Any, base: Any, extra: Any,
                picked: Any, sign: Any, out_rows: Any, out_scores: Any) -> None:  # pragma: no cover
    """Each query's best rows of its picked lists into ``out_rows``/``out_scores``, best first
    (``sign * score`` ascending, ties by row; -1 rows where fewer rows were seen). ``tables`` are flat
    (queries x positions * ``k``). Compiled by numba, once for PQ codes (``factors`` is ``None``:
    :func:`_scan_range`), once for RaBitQ-style codes (:func:`_weighted_range`) and once for those
    codes counted against queries of few bits (``planes``: queries x B x W words, else ``None``);
    numba drops the other branches from each."""
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
            if planes is not None:
                size = _weighted(words, tail, factors, bounds, rows, lo, hi, table, scale[q], shift[q], b,
                                 qbound[q], sign, heap_s, heap_r, size, planes[q], low[q], delta[q])
            elif factors is not None:
                size = _weighted(words, tail, factors, bounds, rows, lo, hi, table, scale[q], shift[q], b,
                                 qbound[q], sign, heap_s, heap_r, size, None, low[q], delta[q])
            elif with_extra:
                size = _range(words, tail, rows, lo, hi, table, extra[lst], k, b, sign, heap_s, heap_r, size)
            else:
                size = _range(words, tail, rows, lo, hi, table, None, k, b, sign, heap_s, heap_r, size)
        _sort(heap_s, heap_r, size)


def _offer_products(dots: Any, factors: Any, rows: Any, lo: int, scale: Any, shift: Any, base: Any, sign: Any,
                    out_rows: Any, out_scores: Any, sizes: Any) -> None:  # pragma: no cover
    """Offer a block of rows, scored by products (``dots``: queries x rows ``<bits, q>``, rows ``lo..``
    of ``factors``/``rows``), to each query's heap (``sizes`` kept between blocks); the score is
    :func:`_weighted_range`'s."""
    for q in range(dots.shape[0]):
        size = sizes[q]
        heap_s = out_scores[q]
        heap_r = out_rows[q]
        top = len(heap_s)
        a, c, b = scale[q], shift[q], base[q, 0]
        for j in range(dots.shape[1]):
            r = np.uint64(lo + j)  # unsigned: no negative-index wrap-around per access
            v = sign * (factors[r, 0] + factors[r, 1] * (a * dots[q, j] + c) + b)
            if size < top or v <= heap_s[0]:
                size = _push(heap_s, heap_r, size, v, rows[r])
        sizes[q] = size


def _merge_parts(part_rows: Any, part_scores: Any, out_rows: Any, out_scores: Any) -> None:  # pragma: no cover
    """Each query's best of several parts' best lists (parts x queries x count, ``sign * score``
    ascending, -1 rows unused) into ``out_rows``/``out_scores``: best first, ties to the lower row."""
    for q in range(out_rows.shape[0]):
        size = 0
        heap_s = out_scores[q]
        heap_r = out_rows[q]
        top = len(heap_s)
        for p in range(part_rows.shape[0]):
            for i in range(part_rows.shape[2]):
                row = part_rows[p, q, i]
                if row < 0:
                    break
                size = _push(heap_s, heap_r, size, part_scores[p, q, i], row)
                if size == top and part_scores[p, q, i] > heap_s[0]:
                    break  # this part's later pairs are no better
        _sort(heap_s, heap_r, size)


def _sort_heaps(out_rows: Any, out_scores: Any, sizes: Any) -> None:  # pragma: no cover
    """Order each query's heap best first (see :func:`_heap_sort`)."""
    for q in range(len(sizes)):
        _sort(out_scores[q], out_rows[q], sizes[q])


def in_parallel(fn: Any, items: list[Any], one_blas: bool = False) -> list[Any]:
    """``[fn(i) for i in items]``, on the process's scan threads when there is more than one item.

    For tasks that call the kernel (which holds no GIL) and small numpy products. ``one_blas``: the
    tasks call BLAS, which is held to one thread while there are several (idle BLAS threads would
    spin beside the pool's); a single item runs on the calling thread with BLAS as it is.
    """
    if len(items) <= 1:
        return [fn(item) for item in items]
    if one_blas:
        with one_blas_thread():
            return _several(fn, items)
    return _several(fn, items)


def _several(fn: Any, items: list[Any]) -> list[Any]:
    """:func:`in_parallel` of two or more items: on the pool, unless there is one core or this is a
    pool thread already (one waiting on its own pool could wait forever)."""
    if cores() == 1 or threading.current_thread().name.startswith(_THREAD_NAME):
        return [fn(item) for item in items]
    # The calling thread takes the first item itself: handing it over and waiting would cost a
    # thread's wake-up (tens of microseconds), which a single query's split scan notices.
    others = [_pool().submit(fn, item) for item in items[1:]]
    first = fn(items[0])
    return [first, *(f.result() for f in others)]


class Codes:
    """Code rows as the kernel reads them: one-byte codes in 8-byte words (``words``, rows x W
    uint64), each bit plane (or a PQ code) zero-padded to whole words; codes wider than a byte, or
    all codes on a big-endian machine, one by one (``tail``, rows x R); and a RaBitQ-style code's
    per-row factors (rows x (T + 1) float32, else ``None``). ``positions``: the table positions
    each plane's words span (a multiple of 8); the padding bytes pick zero entries that
    :func:`scan` appends to the tables."""

    def __init__(self, words: Any, tail: Any, factors: Any, positions: int, bounds: Any = None) -> None:
        self.words, self.tail, self.factors, self.positions = words, tail, factors, positions
        #: Per-row sign-code weight and error term (rows x 2) for incremental estimation, or rows x 0.
        self.bounds = bounds if bounds is not None else np.zeros((len(tail), 0), dtype=np.float32)
        self._extra: tuple[Any, Any] | None = None

    @classmethod
    def arrange(cls, arrays: tuple[Any, ...]) -> Codes:
        """The kernel's layout of a codec's :meth:`table_codes` arrays: (codes,), (codes, factors) or
        (codes, factors, bounds).

        Padding each plane to whole words costs up to 7 bytes per row and plane in this copy, and
        saves time: a padded word is eight look-ups for one load, where codes past the last word,
        read one by one in a loop of their own, cost more than the words before them."""
        import sys

        codes = np.ascontiguousarray(arrays[0])
        factors = np.ascontiguousarray(arrays[1], dtype=np.float32) if len(arrays) > 1 else None
        bounds = np.ascontiguousarray(arrays[2], dtype=np.float32) if len(arrays) > 2 else None
        planes = 1 if factors is None else factors.shape[1] - 1
        n, width = codes.shape
        if codes.dtype != np.uint8 or sys.byteorder != "little":
            return cls(np.zeros((n, 0), dtype=np.uint64), codes, factors, width // planes, bounds)
        per_plane = width // planes
        positions = -(-per_plane // 8) * 8
        if positions != per_plane:
            padded = np.zeros((n, planes, positions), dtype=np.uint8)
            padded[:, :, :per_plane] = codes.reshape(n, planes, per_plane)
            codes = padded.reshape(n, planes * positions)
        return cls(codes.view(np.uint64), np.zeros((n, 0), dtype=np.uint8), factors, positions, bounds)

    def __len__(self) -> int:
        return len(self.tail)

    def byte_rows(self, lo: int, hi: int) -> Any:
        """Rows ``lo..hi`` of the codes as bytes again (rows x bytes uint8, each plane's padding included)."""
        return self.words[lo:hi].view(np.uint8) if self.words.shape[1] else self.tail[lo:hi]

    def padded(self, tables: Any) -> Any:
        """``tables`` (... x positions x K) with zero entries for the padding positions."""
        if not self.words.shape[1] or tables.shape[-2] >= self.positions:
            return tables
        out = np.zeros((*tables.shape[:-2], self.positions, tables.shape[-1]), dtype=np.float32)
        out[..., : tables.shape[-2], :] = tables
        return out

    @property
    def countable(self) -> bool:
        """Whether queries rounded to bits are counted against these codes rather than summed from
        tables: codes in words of at least :data:`COUNT_BYTES` per plane (narrower rows are summed
        from tables as fast; codes one by one have no words)."""
        return self.words.shape[1] > 0 and self.positions >= COUNT_BYTES

    def counts(self, planes: Any) -> bool:
        """Whether a scan counts bits against queries rounded to these bit planes (``None``: not
        rounded), rather than summing their tables (see :attr:`countable`)."""
        return planes is not None and self.countable

    def query_words(self, planes: Any) -> Any:
        """Queries' bit planes (queries x B x bytes) as the counted scan reads them: each plane's bytes
        zero-padded to the codes' positions, in 64-bit words (queries x B x positions / 8)."""
        n, count, width = planes.shape
        out = np.zeros((n, count, self.positions), dtype=np.uint8)
        out[:, :, :width] = planes
        return out.view(np.uint64)

    def padded_extra(self, extra: Any) -> Any:
        """:meth:`padded` for a codec's per-list tables, kept while the codec keeps the same array."""
        if self._extra is None or self._extra[0] is not extra:
            self._extra = (extra, self.padded(extra))
        return self._extra[1]


#: Bytes per bit plane from which rows are counted against rounded queries (:meth:`Codes.counts`):
#: below, a row's few table look-ups cost as little as the counts and their per-row overhead.
COUNT_BYTES = 32

#: Look-ups (rows x code positions) from which a search of fewer queries than cores splits each
#: query's rows between the cores (below it, handing work to a thread costs more than it saves).
SPLIT_WORK = 2_000_000


def split_parts(queries: int, scanned: float, positions: int) -> int:
    """The parts :func:`scan` cuts each query's rows into by default: the cores, for fewer queries than
    cores over ``scanned`` rows of ``positions`` table look-ups each that add up to :data:`SPLIT_WORK`;
    else 1, and always 1 on a scan thread (the pool's threads are all busy with a batch's blocks)."""
    if threading.current_thread().name.startswith(_THREAD_NAME):
        return 1
    return cores() if queries < cores() and scanned * positions >= SPLIT_WORK else 1


def scan(codes: Codes, rows: Any, starts: Any, tables: Any, base: Any, picked: Any, count: int,
         lower_is_better: bool, extra: Any = None, scale: Any = None, shift: Any = None,
         parts: int | None = None, bound: Any = None, planes: Any = None, low: Any = None,
         delta: Any = None) -> tuple[Any, Any]:
    """Each query's best ``count`` rows among its picked lists: (rows, scores), best first (ties: the
    lower row), then -1 rows (and the no-result score) where its lists hold fewer.

    ``codes``: list-grouped code rows (:class:`Codes`); ``rows``: their row numbers (R, int32 or
    int64); ``starts``: list offsets (L + 1); ``tables``: queries x positions x K; ``base``: queries x
    L; ``picked``: queries x P list numbers (-1: none); ``extra``: L x positions x K, or ``None``.
    RaBitQ-style codes give ``scale``/``shift`` per query (see :func:`_weighted_range`), and codes
    with per-row bounds (incremental estimation) what each query multiplies them by (``bound``).
    Queries rounded to few bits give their levels' bit planes as well (``planes``: queries x B x
    bytes, packed as the codes' planes; ``low``, ``delta``: the rounding), and codes in words are
    then counted against them (:func:`_weighted_range`) rather than summed from the tables.

    ``parts`` splits each query's rows into that many parts scanned on the scan threads, their best
    merged after (default: the cores, for fewer queries than cores and enough work; else one part,
    in the calling thread): a single query's latency, not only a batch's, gains from every core.
    """
    n = len(tables)
    if not (count and n):
        return np.full((n, count), -1, dtype=np.int64), np.full((n, count), np.inf if lower_is_better else -np.inf,
                                                                dtype=np.float32)
    if parts is None:
        scanned = int(starts[-1] - starts[0]) * min(1.0, picked.shape[1] / max(1, len(starts) - 1))
        parts = split_parts(n, scanned, tables.shape[1])
    kernel = _compiled()
    none = np.zeros(n, dtype=np.float32)
    # Every argument is ready before any part starts: a part's thread then only calls the kernel,
    # and need not wait for the GIL (held by the others' preparations) to start.
    shared = (codes.words, codes.tail, codes.factors, codes.bounds, np.ascontiguousarray(rows))
    counted = codes.counts(planes)
    if not counted and not tables.shape[-1]:
        raise ValueError("queries without tables need bit planes and codes that count them")
    tables = codes.padded(tables)
    query_side = (np.ascontiguousarray(tables, dtype=np.float32).reshape(n, -1), tables.shape[2],
                  none if scale is None else np.ascontiguousarray(scale, dtype=np.float32),
                  none if shift is None else np.ascontiguousarray(shift, dtype=np.float32),
                  none if bound is None else np.ascontiguousarray(bound, dtype=np.float32),
                  codes.query_words(planes) if counted else None,
                  np.ascontiguousarray(low, dtype=np.float32) if counted else none,
                  np.ascontiguousarray(delta, dtype=np.float32) if counted else none)
    flat_extra = np.zeros((0, 1), dtype=np.float32) if extra is None else np.ascontiguousarray(
        codes.padded_extra(extra), dtype=np.float32).reshape(len(extra), -1)
    sign = np.float32(1.0 if lower_is_better else -1.0)
    pieces = _pieces(starts, base, picked, parts) if parts > 1 else [(starts, base, picked)]
    part_rows = np.full((len(pieces), n, count), -1, dtype=np.int64)
    part_scores = np.full((len(pieces), n, count), np.inf, dtype=np.float32)
    calls = [(*shared, np.ascontiguousarray(part_starts, dtype=np.int64), *query_side,
              np.ascontiguousarray(part_base, dtype=np.float32), flat_extra,
              np.ascontiguousarray(part_picked, dtype=np.int64), sign, part_rows[i], part_scores[i])
             for i, (part_starts, part_base, part_picked) in enumerate(pieces)]
    if len(calls) == 1:
        kernel(*calls[0])
    else:
        in_parallel(lambda args: kernel(*args), calls)
    if len(pieces) == 1:
        out_rows, out_scores = part_rows[0], part_scores[0]
    else:
        out_rows = np.full((n, count), -1, dtype=np.int64)
        out_scores = np.full((n, count), np.inf, dtype=np.float32)
        _merge(part_rows, part_scores, out_rows, out_scores)
    if not lower_is_better:
        np.negative(out_scores, out=out_scores)
    return out_rows, out_scores


def _pieces(starts: Any, base: Any, picked: Any, parts: int) -> list[tuple[Any, Any, Any]]:
    """A scan's work in ``parts`` pieces of about equal rows, each as (starts, base, picked): a single
    list (an exhaustive scan) is cut into row ranges, standing as lists of their own; several picked
    lists are dealt out in turn."""
    if len(starts) == 2:  # one list: its rows cut in parts, each a list with the list's base term
        lo, hi = int(starts[0]), int(starts[1])
        cuts = np.array([lo + (hi - lo) * i // parts for i in range(parts + 1)], dtype=np.int64)
        spread = np.repeat(np.asarray(base)[:, :1], parts, axis=1)
        return [(cuts, spread, np.full((len(base), 1), i, dtype=np.int64)) for i in range(parts)]
    return [(starts, base, picked[:, i::parts]) for i in range(parts) if picked[:, i::parts].size]


#: Queries from which an exhaustive scan of bit codes (no lists) scores them by matrix products.
PRODUCT_QUERIES = 32
#: Rows unpacked and multiplied at a time (rows x bits floats, and queries x rows products).
_PRODUCT_ROWS = 2048


def scan_products(codes: Codes, rows: Any, queries: dict[str, Any], count: int,
                  lower_is_better: bool) -> tuple[Any, Any]:
    """:func:`scan` of every row of bit codes (``queries["kind"] == "weighted"``), with each
    ``<bits, q>`` from a matrix product of the unpacked bits and ``queries["vectors"]`` (BLAS) instead
    of a table entry per byte. For a block of queries: a product does a pair's 8 bits in about as
    many instructions as the tables do one of its bytes. Codes of several planes (weights ``w_t``
    per row) are one product too: of the rows' ``sum_t (w_t / W) bits_t``, ``W = sum_t w_t`` taking
    the place of the one plane's weight (the score is linear in each plane's sum)."""
    vectors = np.ascontiguousarray(queries["vectors"], dtype=np.float32)
    n, width = len(vectors), vectors.shape[1]
    out_rows = np.full((n, count), -1, dtype=np.int64)
    out_scores = np.full((n, count), np.inf, dtype=np.float32)
    if not (count and n):
        return out_rows, out_scores
    _compiled()
    sizes = np.zeros(n, dtype=np.int64)
    scale = np.ascontiguousarray(queries["scale"], dtype=np.float32)
    shift = np.ascontiguousarray(queries["shift"], dtype=np.float32)
    base = np.ascontiguousarray(queries["base"], dtype=np.float32)
    sign = np.float32(1.0 if lower_is_better else -1.0)
    rows = np.ascontiguousarray(rows)
    planes = codes.factors.shape[1] - 1
    for lo in range(0, len(codes), _PRODUCT_ROWS):
        raw = codes.byte_rows(lo, lo + _PRODUCT_ROWS)
        if planes == 1:
            bits = np.unpackbits(raw, axis=1, count=width).astype(np.float32)
            _offer(vectors @ bits.T, codes.factors, rows, lo, scale, shift, base, sign, out_rows, out_scores, sizes)
            continue
        factors = codes.factors[lo: lo + _PRODUCT_ROWS]
        total = factors[:, 1:].sum(axis=1)
        share = np.divide(factors[:, 1:], total[:, None], out=np.zeros_like(factors[:, 1:]),
                          where=total[:, None] != 0)
        each = np.unpackbits(raw, axis=1).reshape(len(raw), planes, -1)[:, :, :width].astype(np.float32)
        combined = np.einsum("rtp,rt->rp", each, share)
        merged = np.ascontiguousarray(np.stack([factors[:, 0], total], axis=1))
        _offer(vectors @ combined.T, merged, rows[lo: lo + _PRODUCT_ROWS], 0, scale, shift, base, sign,
               out_rows, out_scores, sizes)
    _finish(out_rows, out_scores, sizes)
    if not lower_is_better:
        np.negative(out_scores, out=out_scores)
    return out_rows, out_scores


def scan_codes(codes: Codes, rows: Any, starts: Any, queries: dict[str, Any], picked: Any, count: int,
               lower_is_better: bool, parts: int | None = None) -> tuple[Any, Any]:
    """:func:`scan`, as the codec's query state says (``queries["kind"]``: "tables" or "weighted")."""
    if queries["kind"] == "weighted":
        return scan(codes, rows, starts, queries["tables"], queries["base"], picked, count, lower_is_better,
                    scale=queries["scale"], shift=queries["shift"], parts=parts, bound=queries.get("bound"),
                    planes=queries.get("planes"), low=queries.get("low"), delta=queries.get("delta"))
    return scan(codes, rows, starts, queries["tables"], queries["base"], picked, count, lower_is_better,
                queries.get("extra"), parts=parts)
