"""Probe: how fast vecx's AND-popcount of one-bit codes (``--query-bits``) runs per row, alone.

A query rounded to B bits (``q_hat = low + delta * q_u``, ``q_u`` in 0..2^B - 1) has ``<bits, q_hat> =
delta * sum_t 2^t popcount(bits & plane_t(q_u)) + low * popcount(bits)``: integer counts, exact for
the rounded query. vecx.adc's ``plane_counts`` computes them in LLVM IR, 8 words at a time as ``<8 x
i64>`` vectors (``llvm.ctpop.v8i64``: VPOPCNTQ with AVX-512 VPOPCNTDQ), then 4, 2 and 1 (numba does
not emit vector popcounts from a loop: a scalar ``ctpop`` loop ran 9.4 ns per 384-bit row at B = 4,
against the look-up tables' 10.7). This times that count alone, its plane loop unrolled (B fixed
when compiled) and not, on 30,000 random rows per width, without the scan's heap and factors: the
limit the scan's counted loop approaches. Prints ns per row and the largest difference from the
float64 dot with the rounded query.

    python tests/benchmarks/probe_popcount.py
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numba import njit

from vecx import adc


def make_scan(planes_fixed: int | None) -> Any:
    """A compiled scan writing each row's ``<bits, q_hat>`` (``planes_fixed``: B known when compiling)."""
    counts = adc.plane_counts(planes_fixed)

    @njit(nogil=True)
    def scan(words: Any, planes: Any, delta: float, low: float, out: Any) -> None:  # pragma: no cover
        width = words.shape[1]
        for j in range(np.uint64(0), np.uint64(words.shape[0])):
            counted, set_bits = counts(words, planes, j, 0, width)
            out[j] = np.float32(delta) * np.float32(counted) + np.float32(low) * np.float32(set_bits)

    return scan


def main() -> None:
    rng = np.random.default_rng(0)
    rows = 30_000
    for dim in (384, 768, 1536):
        bits = rng.integers(0, 2, (rows, dim)).astype(np.uint8)
        words = np.packbits(bits, axis=1).view(np.uint64)  # whole words, as vecx lays out the codes
        q = rng.standard_normal(dim).astype(np.float32)
        for planes_count in (4, 8):
            low, delta = float(q.min()), float(q.max() - q.min()) / (2**planes_count - 1)
            levels = np.clip(np.rint((q - low) / delta), 0, 2**planes_count - 1).astype(np.uint8)
            planes = np.ascontiguousarray(np.packbits((levels[None, :] >> np.arange(planes_count, dtype=np.uint8)
                                                       [:, None]) & 1, axis=1)).view(np.uint64)
            exact = bits.astype(np.float64) @ (low + delta * levels.astype(np.float64))
            for fixed in (planes_count, None):
                scan, out = make_scan(fixed), np.zeros(rows, dtype=np.float32)
                scan(words, planes, delta, low, out)
                best = float("inf")
                for _ in range(30):
                    started = time.perf_counter()
                    scan(words, planes, delta, low, out)
                    best = min(best, time.perf_counter() - started)
                print(f"{dim}-d, {planes_count} query bits ({'unrolled' if fixed else 'a loop'}): "
                      f"{best / rows * 1e9:.2f} ns per row, largest difference {np.abs(out - exact).max():.2e}")


if __name__ == "__main__":
    main()
