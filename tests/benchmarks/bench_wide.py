"""Exhaustive scans of wide codes (384- to 1536-d vectors), vecx against faiss, single queries and batches.

A look-up-table scan reads one table entry per code byte; a query's tables grow with the vector's
width (RaBitQ: 1 KB per 8 dimensions; PQ: 1 KB per sub-space) and pass the L1 data cache from about
400 dimensions. This measures what that costs at the widths of today's embedding models, on
30,000 seeded Gaussian rows per width (the speed of a scan does not depend on where the vectors
lie): ``binarize:mode=rabitq`` against faiss ``IndexRaBitQ`` and ``pq:{D/8}x8`` against faiss
``IndexPQ`` (``PQ{D/8}x8np``), both trained on the same 5,000 rows, cosine. faiss's ``IndexRaBitQ``
quantizes each query to ``qb`` = 4 bits by default (its scan then counts bits); vecx's estimator
keeps the float query unless asked. The RaBitQ rows also time faiss at ``qb`` = 8, and vecx with
its queries rounded the same way (``--query-bits`` 4 and 8), in a table of their own.

For each: the median time of 200 single queries (k = 10; vecx through ``Searcher.search``, as
``vecx query`` and the Python API run it) and the best of 3 batches of 1,000 queries. Runs on the
machine's cores; the ratio is faiss ms / vecx ms (above 1: vecx is faster).

    python tests/benchmarks/bench_wide.py [--dims 384,768,1024,1536] [--out FILE.md]

With ``PYTHONPATH`` pointing at another vecx checkout's parent, it measures that version instead
(the before/after figures of BENCHMARKS.md: the same script, run for both, alternating).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

ROWS = 30_000
TRAIN = 5_000


def timings(search: Any) -> tuple[float, float]:
    """The median ms of ``search(slice)`` for one query at a time (200, ``vecx bench``'s single-query
    latency) and the QPS of 1,000 queries in one call (best of 3)."""
    from vecx.bench.timing import best_time, single_query_ms

    single = single_query_ms(lambda i: search(slice(i, i + 1)), 200)
    return single, 1000 / best_time(lambda: search(slice(0, 1000)), 3)[1]


def measure(dim: int, work: str) -> list[dict[str, Any]]:
    import faiss
    import numpy as np

    from vecx import api
    from vecx.bench.timing import single_query_ms
    from vecx.formats.readers import ReadOptions
    from vecx.indexes.build import BuildOptions
    from vecx.indexes.search import Searcher

    rng = np.random.default_rng(dim)
    x = rng.standard_normal((ROWS, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((1000, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    base = os.path.join(work, f"base{dim}.npy")
    np.save(base, x)
    out = []
    for spec, key in (("binarize:mode=rabitq", "RaBitQ"), (f"pq:{dim // 8}x8", f"PQ{dim // 8}x8np")):
        codes, index = os.path.join(work, "codes.parquet"), os.path.join(work, f"{dim}.vecx")
        api.encode_file(base, codes, f"{spec}:sample={TRAIN}", read=ReadOptions(metric="cosine"))
        api.build_index(codes, index, options=BuildOptions(scan="exhaustive"))
        searcher = Searcher(index)
        searcher.use_compiled_scans()
        checked = searcher.check_queries(q, "queries")
        def vecx_search(sl: slice, s: Any = searcher, qq: Any = checked) -> Any:
            return s.search(qq[sl], 10, oversample=1, rescore=False)

        mine = timings(vecx_search)
        rounded: dict[int, tuple[float, float]] = {}
        if key == "RaBitQ":  # vecx's queries rounded as faiss's are (--query-bits)
            for bits in (4, 8):
                searcher.scan.query_bits = bits
                rounded[bits] = timings(vecx_search)
        searcher.close()
        peer = faiss.index_factory(dim, key, faiss.METRIC_INNER_PRODUCT)
        peer.train(x[:TRAIN])
        peer.add(x)
        def faiss_search(sl: slice, index: Any = peer) -> Any:
            return index.search(q[sl], 10)

        theirs = timings(faiss_search)
        eight = None
        if key == "RaBitQ":  # faiss's default quantizes the query to 4 bits (qb); at 8 bits as well
            peer.qb = 8
            eight = single_query_ms(lambda i: faiss_search(slice(i, i + 1)), 200)
        out.append({"dim": dim, "spec": spec, "peer": key, "table_kb": dim // 8,  # 256 float32 entries per code byte
                    "vecx_ms": mine[0], "faiss_ms": theirs[0], "vecx_qps": mine[1], "faiss_qps": theirs[1],
                    "faiss_qb8_ms": eight, "vecx_qb4": rounded.get(4), "vecx_qb8": rounded.get(8)})
        print(f"{dim} {spec}: vecx {mine[0]:.3f} ms, {mine[1]:,.0f} QPS; faiss {theirs[0]:.3f} ms, "
              f"{theirs[1]:,.0f} QPS", file=sys.stderr, flush=True)
    return out


def report(rows: list[dict[str, Any]], cmdline: str) -> str:
    import vecx

    lines = [f"vecx {vecx.__file__}; load average {os.getloadavg()[0]:.1f} at the end", "",
             "| dim | vecx spec | faiss | table KB per query | vecx p50 ms | faiss p50 ms | p50 ratio (faiss / vecx) "
             "| vecx QPS | faiss QPS | QPS ratio | faiss qb=8 p50 ms | ratio |", "|---" * 12 + "|"]
    rounded = ["", "Queries rounded as faiss's are (vecx `--query-bits B`, faiss `qb` = B), RaBitQ rows:", "",
               "| dim | B | vecx p50 ms | faiss p50 ms | p50 ratio (faiss / vecx) | vecx QPS | faiss QPS | QPS ratio |",
               "|---" * 8 + "|"]
    for r in rows:
        lines.append(f"| {r['dim']} | `{r['spec']}` | {r['peer']} | {r['table_kb']} | {r['vecx_ms']:.3f} | "
                     f"{r['faiss_ms']:.3f} | {r['faiss_ms'] / r['vecx_ms']:.2f}x | {r['vecx_qps']:,.0f} | "
                     f"{r['faiss_qps']:,.0f} | {r['vecx_qps'] / r['faiss_qps']:.2f}x | "
                     + (f"{r['faiss_qb8_ms']:.3f} | {r['faiss_qb8_ms'] / r['vecx_ms']:.2f}x |"
                        if r["faiss_qb8_ms"] else "| |"))
        if r["vecx_qb4"]:
            (ms4, qps4), ms8 = r["vecx_qb4"], r["vecx_qb8"][0]
            rounded.append(f"| {r['dim']} | 4 | {ms4:.3f} | {r['faiss_ms']:.3f} | {r['faiss_ms'] / ms4:.2f}x | "
                           f"{qps4:,.0f} | {r['faiss_qps']:,.0f} | {qps4 / r['faiss_qps']:.2f}x |")
            rounded.append(f"| {r['dim']} | 8 | {ms8:.3f} | {r['faiss_qb8_ms']:.3f} | {r['faiss_qb8_ms'] / ms8:.2f}x "
                           "| | | |")
    return "\n".join([*lines, *rounded, "", f"`{cmdline}`", ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="384,768,1024,1536", help="vector widths, comma-separated")
    ap.add_argument("--out", help="also write the Markdown table here")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-wide-") as work:
        for dim in (int(d) for d in args.dims.split(",")):
            rows.extend(measure(dim, work))
    text = report(rows, "python " + " ".join(sys.argv))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
