"""Probe: how fast an AND-popcount scan of one-bit codes runs with AVX-512 vector popcounts.

Not vecx code yet: the measured route for a query-bits search option (as faiss's ``qb``). The query is
rounded to B bits (``q_hat = low + delta * q_u``, ``q_u`` in 0..2^B - 1), and ``<bits, q_hat> = delta *
sum_t 2^t popcount(bits & plane_t(q_u)) + low * popcount(bits)``: integer counts, exact for the rounded
query. numba does not emit vector popcounts from a loop (a scalar ``ctpop`` loop ran 9.4 ns per 384-bit
row at B = 4, against the look-up tables' 10.7), so the row's dot is an LLVM IR intrinsic here: 8
words at a time as ``<8 x i64>`` (``llvm.ctpop.v8i64``: VPOPCNTQ with AVX-512 VPOPCNTDQ), the code
rows zero-padded to a multiple of 8 words. Prints ns per row on 30,000 random rows, and the largest
difference from the float64 dot with the rounded query.

    python tests/benchmarks/probe_popcount.py
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


def make_scan(planes_count: int) -> Any:
    """A compiled scan writing each row's ``<bits, q_hat>`` for ``planes_count`` query bits."""

    @intrinsic
    def row_counts(typingctx: Any, words: Any, planes: Any, j: Any) -> Any:
        """(sum_t 2^t popcount(row & plane_t), popcount(row)) of row ``j``: words rows x W, planes
        planes_count x W uint64, W a multiple of 8."""
        sig = types.UniTuple(types.uint64, 2)(words, planes, j)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            i64, intp = ir.IntType(64), context.get_value_type(types.intp)
            v8 = ir.VectorType(i64, 8)
            rows = context.make_array(signature.args[0])(context, builder, args[0])
            bits = context.make_array(signature.args[1])(context, builder, args[1])
            row = context.cast(builder, args[2], signature.args[2], types.intp)
            width = builder.extract_value(rows.shape, 1)
            start = cgutils.get_item_pointer(context, builder, signature.args[0], rows,
                                             [row, ir.Constant(intp, 0)], wraparound=False)
            ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v8, [v8]), "llvm.ctpop.v8i64")
            total = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [v8]),
                                                   "llvm.vector.reduce.add.v8i64")
            weighted = cgutils.alloca_once_value(builder, ir.Constant(v8, None))
            ones = cgutils.alloca_once_value(builder, ir.Constant(v8, None))
            with cgutils.for_range_slice(builder, ir.Constant(intp, 0), width, ir.Constant(intp, 8)) as (w, _):
                x = builder.load(builder.bitcast(builder.gep(start, [w]), v8.as_pointer()), align=8)
                builder.store(builder.add(builder.load(ones), builder.call(ctpop, [x])), ones)
                acc = builder.load(weighted)
                for t in range(planes_count):
                    at = builder.add(builder.mul(ir.Constant(intp, t), width), w)
                    plane = builder.load(builder.bitcast(builder.gep(bits.data, [at]), v8.as_pointer()), align=8)
                    count = builder.call(ctpop, [builder.and_(x, plane)])
                    acc = builder.add(acc, builder.shl(count, ir.Constant(v8, [t] * 8)))
                builder.store(acc, weighted)
            return cgutils.make_anonymous_struct(builder, [builder.call(total, [builder.load(weighted)]),
                                                           builder.call(total, [builder.load(ones)])])

        return sig, codegen

    @njit(nogil=True)
    def scan(words: Any, planes: Any, delta: float, low: float, out: Any) -> None:  # pragma: no cover
        for j in range(np.uint64(0), np.uint64(words.shape[0])):
            counted, set_bits = row_counts(words, planes, j)
            out[j] = np.float32(delta) * np.float32(counted) + np.float32(low) * np.float32(set_bits)

    return scan


def main() -> None:
    rng = np.random.default_rng(0)
    rows = 30_000
    for dim in (384, 768, 1536):
        bits = rng.integers(0, 2, (rows, dim)).astype(np.uint8)
        packed = np.packbits(bits, axis=1)
        width = -(-packed.shape[1] // 64) * 8  # words, a multiple of 8
        padded = np.zeros((rows, width * 8), dtype=np.uint8)
        padded[:, : packed.shape[1]] = packed
        words = padded.view(np.uint64)
        q = rng.standard_normal(dim).astype(np.float32)
        for planes_count in (4, 8):
            low, delta = float(q.min()), float(q.max() - q.min()) / (2**planes_count - 1)
            levels = np.clip(np.rint((q - low) / delta), 0, 2**planes_count - 1).astype(np.uint8)
            planes = np.zeros((planes_count, width * 8), dtype=np.uint8)
            for t in range(planes_count):
                plane = np.packbits((levels >> t) & 1)
                planes[t, : len(plane)] = plane
            planes64 = np.ascontiguousarray(planes).view(np.uint64)
            exact = bits.astype(np.float64) @ (low + delta * levels.astype(np.float64))
            scan, out = make_scan(planes_count), np.zeros(rows, dtype=np.float32)
            scan(words, planes64, delta, low, out)
            best = float("inf")
            for _ in range(30):
                started = time.perf_counter()
                scan(words, planes64, delta, low, out)
                best = min(best, time.perf_counter() - started)
            print(f"{dim}-d, {planes_count} query bits: {best / rows * 1e9:.2f} ns per row, "
                  f"largest difference {np.abs(out - exact).max():.2e}")


if __name__ == "__main__":
    main()
