"""Exhaustive code scans, vecx against faiss as the rows (30k, 300k, 1M) and the threads (1, 2) grow,
and against this machine's limits.

For each thread count a child process is pinned to that many cores (``sched_setaffinity``; faiss's
OpenMP and BLAS get the same count), and for each row count it builds a vecx index (the library path
of ``vecx encode`` + ``vecx index --scan exhaustive``) and the faiss index of the same codes
(``IndexPQ`` / ``IndexRaBitQ``, trained on the same 30,000 rows), then times, for both: 1,000
queries in one call (best of 3; of 2 at 1M rows) and 200 single queries at k = 10 and k = 100
(median). vecx searches through ``Searcher.search`` (what ``vecx query`` and the Python API run).

Rows past the 30,000 of debian-minilm-30k are its rows again with seeded Gaussian noise (sigma 0.02
per dimension, then unit norm): the speed of a scan does not depend on where the vectors lie.

The limits, measured in the same child: memory read bandwidth (numpy sums over 1 GiB, on all the
child's cores), float32 matrix-product speed (BLAS, 2048 x 384 x 4096), the rate of a compiled
scalar loop that only sums table entries for 8-byte words of 24-byte codes, pq:24x8's (what a
look-up-table scan does per code byte, without the heap or the scores), and the rate of a loop that
only counts 384-bit rows against a query of 4 bit planes (vecx.adc's ``plane_counts``, what the
scan of rounded queries does per row): a scan's fraction of its loop is its overhead.

    python tests/benchmarks/bench_scan.py --out /tmp/bench-scan.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "debian-minilm-30k")
#: (vecx spec, faiss index, code positions, vecx --query-bits): faiss's RaBitQ rounds its queries to
#: 4 bits (its default qb) in both RaBitQ rows; vecx's first keeps the float query, the second rounds.
SPECS = [("pq:24x8", "PQ24x8np", 24, 0), ("binarize:mode=rabitq", "RaBitQ", 384, 0),
         ("binarize:mode=rabitq", "RaBitQ", 384, 4)]


def grown(rows: int) -> Any:
    """``rows`` unit vectors: debian-minilm-30k's own rows, then noisy copies of them (seeded)."""
    import numpy as np

    base = np.load(os.path.join(DATA, "base.npy")).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    if rows <= len(base):
        return base[:rows]
    rng = np.random.default_rng(0)
    out = np.empty((rows, base.shape[1]), dtype=np.float32)
    out[: len(base)] = base
    for lo in range(len(base), rows, len(base)):
        hi = min(rows, lo + len(base))
        part = base[: hi - lo] + rng.normal(0, 0.02, (hi - lo, base.shape[1])).astype(np.float32)
        out[lo:hi] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def timed(search: Any, queries: int, repeat: int) -> dict[str, float]:
    """Batch QPS (best of ``repeat``) and median single-query ms at k = 10 and k = 100."""
    search(slice(0, queries), 10)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        search(slice(0, queries), 10)
        best = min(best, time.perf_counter() - start)
    out = {"qps": queries / best}
    for k in (10, 100):
        times = []
        for i in range(200):
            start = time.perf_counter()
            search(slice(i, i + 1), k)
            times.append(time.perf_counter() - start)
        out[f"p50_k{k}"] = statistics.median(times) * 1000
    return out


def limits(threads: int) -> dict[str, float]:
    """Memory read GB/s, BLAS GFLOPS and the table-sum loop's look-ups per second, on ``threads`` cores."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from numba import njit

    big = np.ones(1 << 27, dtype=np.uint64)  # 1 GiB
    chunks = np.array_split(big, threads)
    with ThreadPoolExecutor(threads) as pool:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            list(pool.map(np.sum, chunks))
            best = min(best, time.perf_counter() - start)
    bandwidth = big.nbytes / best / 1e9
    del big, chunks
    a = np.random.default_rng(0).random((2048, 384), dtype=np.float32)
    b = np.random.default_rng(1).random((384, 4096), dtype=np.float32)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    gflops = 10 * 2 * 2048 * 384 * 4096 / (time.perf_counter() - start) / 1e9

    @njit(nogil=True)
    def table_sums(words: Any, table: Any, out: Any) -> None:  # pragma: no cover
        for j in range(words.shape[0]):
            s0 = s1 = s2 = s3 = np.float32(0)
            for w in range(words.shape[1]):
                x = words[j, w]
                b = w * 2048
                s0 += table[b + (x & 255)]
                s1 += table[b + 256 + ((x >> 8) & 255)]
                s2 += table[b + 512 + ((x >> 16) & 255)]
                s3 += table[b + 768 + ((x >> 24) & 255)]
                s0 += table[b + 1024 + ((x >> 32) & 255)]
                s1 += table[b + 1280 + ((x >> 40) & 255)]
                s2 += table[b + 1536 + ((x >> 48) & 255)]
                s3 += table[b + 1792 + (x >> 56)]
            out[j] = (s0 + s1) + (s2 + s3)

    # The PQ codes' shape (24 bytes, a 24 KB table): a wider table spills out of the L1 cache, and its
    # look-ups are slower than the 24-byte scan's own.
    words = np.random.default_rng(2).integers(0, 2**63, (200_000, 3), dtype=np.uint64)
    table = np.random.default_rng(3).random(24 * 256, dtype=np.float32)
    out = np.zeros(len(words), dtype=np.float32)
    best = split_best(lambda lo, hi: table_sums(words[lo:hi], table, out[lo:hi]), len(words), threads)
    return {"read_gbs": bandwidth, "gemm_gflops": gflops, "lookups_gs": words.size * 8 / best / 1e9,
            "counts_gs": count_rate(threads)}


def split_best(loop: Any, rows: int, threads: int) -> float:
    """Best of 5 seconds for ``loop(lo, hi)`` over ``rows`` rows cut in ``threads`` parts run together
    (after one small untimed call, which compiles it)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    loop(0, 10)
    cuts = [(int(p[0]), int(p[-1]) + 1) for p in np.array_split(np.arange(rows), threads)]
    with ThreadPoolExecutor(threads) as pool:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            list(pool.map(lambda cut: loop(*cut), cuts))
            best = min(best, time.perf_counter() - start)
    return best


def count_rate(threads: int) -> float:
    """Rows counted per second (G) by a loop of vecx.adc's ``plane_counts`` alone: 384-bit rows, a
    query of 4 bit planes, no heap or scores."""
    import numpy as np
    from numba import njit

    from vecx import adc

    counts = adc.plane_counts(4)

    @njit(nogil=True)
    def count_rows(words: Any, planes: Any, out: Any) -> None:  # pragma: no cover
        for j in range(np.uint64(0), np.uint64(words.shape[0])):
            weighted, ones = counts(words, planes, j, 0, words.shape[1])
            out[j] = weighted + ones

    words = np.random.default_rng(4).integers(0, 2**63, (200_000, 6), dtype=np.uint64)
    planes = np.random.default_rng(5).integers(0, 2**63, (4, 6), dtype=np.uint64)
    out = np.zeros(len(words), dtype=np.uint64)
    return len(words) / split_best(lambda lo, hi: count_rows(words[lo:hi], planes, out[lo:hi]), len(words),
                                   threads) / 1e9


def child(threads: int, rows_list: list[int], queries: int) -> None:
    """One thread count: every row count and codec, vecx and faiss; JSON lines on stdout."""
    import faiss
    import numpy as np

    from vecx import api
    from vecx.formats.readers import ReadOptions
    from vecx.indexes.build import BuildOptions
    from vecx.indexes.search import Searcher

    faiss.omp_set_num_threads(threads)
    print(json.dumps({"threads": threads, "limits": limits(threads)}), flush=True)
    q = np.load(os.path.join(DATA, "queries.npy")).astype(np.float32)[:queries]
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    for rows in rows_list:
        x = grown(rows)
        with tempfile.TemporaryDirectory(prefix="bench-scan-") as work:
            base = os.path.join(work, "base.npy")
            np.save(base, x)
            for spec, key, positions, bits in SPECS:
                codes, index_dir = os.path.join(work, "codes.parquet"), os.path.join(work, "index.vecx")
                api.encode_file(base, codes, f"{spec}:sample=30000", read=ReadOptions(metric="cosine"))
                api.build_index(codes, index_dir, options=BuildOptions(scan="exhaustive", query_bits=bits))
                searcher = Searcher(index_dir)
                searcher.use_compiled_scans()
                qq = searcher.check_queries(q, "queries")
                repeat = 2 if rows >= 1_000_000 else 3
                v = timed(lambda sl, k, s=searcher, qq=qq: s.search(qq[sl], k, oversample=1, rescore=False),
                          queries, repeat)
                searcher.close()
                index = faiss.index_factory(x.shape[1], key, faiss.METRIC_INNER_PRODUCT)
                index.train(x[:30_000])
                index.add(x)
                f = timed(lambda sl, k, ix=index: ix.search(qn[sl], k), queries, repeat)
                del index
                named = f"{spec} --query-bits {bits}" if bits else spec
                print(json.dumps({"threads": threads, "rows": rows, "spec": named, "peer": key,
                                  "positions": positions, "bytes": searcher_bytes(spec, positions),
                                  "vecx": v, "faiss": f}), flush=True)


def searcher_bytes(spec: str, positions: int) -> int:
    """Code bytes per row the scan reads (PQ: one per sub-space; RaBitQ: the bits and two factors)."""
    return positions if spec.startswith("pq") else positions // 8 + 4


def report(lines: list[dict[str, Any]], cmdline: str) -> str:
    """The Markdown section: the scaling table, then each scan against the limits."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _harness import machine, table

    lim = {r["threads"]: r["limits"] for r in lines if "limits" in r}
    runs = [r for r in lines if "rows" in r]
    scaling = []
    fractions = []
    for r in runs:
        v, f, t = r["vecx"], r["faiss"], r["threads"]
        scaling.append([f"{r['rows']:,}", t, r["spec"], r["peer"], f"{v['qps']:,.0f}", f"{f['qps']:,.0f}",
                        f"{v['qps'] / f['qps']:.2f}x", f"{v['p50_k10']:.3f}", f"{f['p50_k10']:.3f}",
                        f"{f['p50_k10'] / v['p50_k10']:.2f}x", f"{v['p50_k100']:.3f}", f"{f['p50_k100']:.3f}",
                        f"{f['p50_k100'] / v['p50_k100']:.2f}x"])
        pairs = r["rows"] * v["qps"]  # query x row pairs scored per second, batch
        if r["spec"].startswith("pq"):
            achieved = pairs * r["positions"] / 1e9
            limit, what = lim[t]["lookups_gs"], "G table look-ups/s"
        elif "--query-bits" in r["spec"]:
            achieved = pairs / 1e9
            limit, what = lim[t]["counts_gs"], "G rows counted/s"
        else:
            achieved = pairs * r["positions"] * 2 / 1e9
            limit, what = lim[t]["gemm_gflops"], "GFLOPS (products)"
        bandwidth = r["rows"] * r["bytes"] * v["qps"] / 1e9
        digits = 3 if "--query-bits" in r["spec"] else 1  # rows counted: fractions of a G
        fractions.append([f"{r['rows']:,}", t, r["spec"], f"{achieved:,.{digits}f} {what}", f"{limit:,.{digits}f}",
                          f"{achieved / limit:.0%}", f"{bandwidth:,.1f}", f"{lim[t]['read_gbs']:,.1f}",
                          f"{bandwidth / lim[t]['read_gbs']:.0%}"])
    limits_rows = [[t, f"{m['read_gbs']:.1f}", f"{m['gemm_gflops']:.0f}", f"{m['lookups_gs']:.2f}",
                    f"{m['counts_gs']:.3f}"] for t, m in sorted(lim.items())]
    return "\n\n".join([
        f"Command: `{cmdline}`", machine(),
        table(["threads", "memory read GB/s", "BLAS GFLOPS", "table-sum loop G look-ups/s",
               "count loop G rows/s (384 bits, 4 planes)"], limits_rows),
        table(["rows", "threads", "vecx spec", "faiss", "vecx QPS", "faiss QPS", "QPS ratio", "vecx p50 ms k=10",
               "faiss p50 ms k=10", "p50 ratio (faiss / vecx)", "vecx p50 ms k=100", "faiss p50 ms k=100",
               "p50 ratio k=100"], scaling),
        table(["rows", "threads", "vecx spec", "vecx batch rate", "limit", "fraction", "codes read GB/s",
               "memory GB/s", "fraction of bandwidth"], fractions)]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="30000,300000,1000000", help="row counts, comma-separated")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--out", help="write the Markdown section here (default: stdout)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    rows = [int(v) for v in args.rows.split(",")]
    if args.child:
        child(args.child, rows, args.queries)
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _harness import command_line, log, publish

    cmdline = command_line()
    lines: list[dict[str, Any]] = []
    cores = sorted(os.sched_getaffinity(0))
    for threads in (int(v) for v in args.threads.split(",")):
        log(f"{threads} thread(s)")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads)}
        argv = [sys.executable, os.path.abspath(__file__), "--child", str(threads), "--rows", args.rows,
                "--queries", str(args.queries)]
        proc = subprocess.Popen(["taskset", "-c", ",".join(map(str, cores[:threads])), *argv], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))
            log(line.strip()[:200])
        if proc.wait():
            raise SystemExit(f"child for {threads} thread(s) failed")
    text = report(lines, cmdline)
    publish(text, args.out)


if __name__ == "__main__":
    main()
