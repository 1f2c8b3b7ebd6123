"""Graph indexes (f16, int8, sign bits) against raw usearch, batch QPS as the median of paired rounds.

``vecx bench`` compares each graph row with a usearch index that usearch builds and quantizes
itself: a different graph, so a single run mixes the two graphs' costs with the machine's noise.
This script separates them, per shared set and encoding, in one process:

- ``same graph``: vecx's ``Searcher.search`` (what ``vecx query`` and ``Index.search`` run:
  query encoding, search, ordering) against ``usearch.Index.restore`` of vecx's own graph file
  searched with the same codes: what vecx adds to usearch;
- ``usearch's own``: against a usearch index of the float vectors with that dtype (the peer
  ``vecx bench`` shows): both graphs, as users would build them.

Seven rounds; each round times one batch of 1,000 queries of each system, the order alternating;
the ratio is the median over rounds of vecx QPS / peer QPS within the round.

A second table compares them at equal recall (ann-benchmarks' way): both graphs searched at
expansions 10 to 128, recall@10 against the set's ground truth. The peer's recall at its default
expansion (64) is the target; vecx's QPS there is read off its own recall/QPS curve (linear between
the two expansions around it; at its lowest expansion when even that has more recall); and
the reverse, the peer's QPS at vecx's default recall, where the peer reaches it.

A third table times single queries: the median of 500 searches of one query each (alternating
vecx's ``Searcher.search`` and usearch's call on vecx's own graph file), what vecx's Python per
call adds to usearch's.

    python tests/benchmarks/bench_graph_rows.py --out /tmp/bench-graph-rows.md
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from statistics import median
from typing import Any

import numpy as np
from _harness import command_line, log, machine, publish, table

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
SETS = [("debian-minilm-30k", "cosine"), ("glove50-100k", "cosine"), ("sift128-images-30k", "l2")]
ENCODINGS = [("f16", "f16"), ("int8:mode=global", "i8"), ("binarize", "b1")]
K = 10
EXPANSIONS = (10, 16, 24, 32, 48, 64, 96, 128)
DEFAULT_EXPANSION = 64


def rounds(calls: dict[str, Any], count: int) -> dict[str, list[float]]:
    """Seconds per call and round, the calls' order alternating between rounds."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(count):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times


def recall_at_k(keys: Any, truth: Any) -> float:
    """Mean share of each query's true top K among its K results."""
    return float(np.mean([len(set(found.tolist()) & set(true.tolist())) / K
                          for found, true in zip(keys, truth[:, :K], strict=True)]))


def qps_at_recall(curve: list[tuple[float, float]], target: float) -> tuple[float | None, str]:
    """QPS at recall ``target`` on a (recall, QPS) curve ordered by expansion: interpolated between
    the two points around it, the first point's QPS (marked ">=") when that already has more recall,
    ``None`` when no point reaches it."""
    if curve[0][0] >= target:
        return curve[0][1], ">="
    for (r0, q0), (r1, q1) in zip(curve, curve[1:], strict=False):
        if r0 < target <= r1:
            return q0 + (q1 - q0) * (target - r0) / (r1 - r0), ""
    return None, ""


def sweep(vecx_search: Any, own_search: Any, own: Any, truth: Any, count: int) -> dict[str, list[tuple[float, float]]]:
    """(recall@K, QPS) of both systems at each of EXPANSIONS, the QPS best of ``count`` paired rounds."""
    curves: dict[str, list[tuple[float, float]]] = {"vecx": [], "own": []}
    for ef in EXPANSIONS:
        own.expansion_search = ef
        calls = {"vecx": lambda ef=ef: vecx_search(ef), "own": own_search}
        found = {key: call() for key, call in calls.items()}
        times = rounds(calls, count)
        for key in calls:
            curves[key].append((recall_at_k(found[key], truth), len(truth) / min(times[key])))
    own.expansion_search = DEFAULT_EXPANSION
    return curves


def equal_recall_row(name: str, dtype: str, curves: dict[str, list[tuple[float, float]]]) -> list[object]:
    """One row of the equal-recall table: each side's QPS at the other's default recall."""
    at = EXPANSIONS.index(DEFAULT_EXPANSION)
    own_recall, own_qps = curves["own"][at]
    vecx_recall, vecx_qps = curves["vecx"][at]
    vecx_there, bound = qps_at_recall(curves["vecx"], own_recall)
    own_there, _ = qps_at_recall(curves["own"], vecx_recall)
    return [name, dtype, f"{own_recall:.4f}", f"{own_qps:,.0f}",
            "not reached" if vecx_there is None else f"{bound}{vecx_there:,.0f}",
            "-" if vecx_there is None else f"{bound}{vecx_there / own_qps:.2f}x",
            f"{vecx_recall:.4f}", f"{vecx_qps:,.0f}",
            "not reached" if own_there is None else f"{own_there:,.0f}"]


def single_queries(vecx_one: Any, same_one: Any, queries: int) -> tuple[float, float]:
    """Median microseconds of one query's search, vecx and usearch alternating, over ``queries`` queries."""
    times: dict[str, list[float]] = {"vecx": [], "same": []}
    for i in range(queries):
        for key, call in (("vecx", vecx_one), ("same", same_one)) if i % 2 == 0 else (("same", same_one),
                                                                                        ("vecx", vecx_one)):
            start = time.perf_counter()
            call(i)
            times[key].append(time.perf_counter() - start)
    return 1e6 * median(times["vecx"]), 1e6 * median(times["same"])


def run_set(name: str, metric: str, count: int) -> tuple[list[list[object]], ...]:
    from usearch.index import Index

    from vecx import api
    from vecx.formats.readers import ReadOptions
    from vecx.indexes.search import Searcher

    base = os.path.join(DATA, name, "base.npy")
    x = np.load(base).astype(np.float32)
    q = np.load(os.path.join(DATA, name, "queries.npy")).astype(np.float32)
    truth = np.load(os.path.join(DATA, name, "gt.npy"))
    out, matched, single = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-graph-rows-") as work:
        for spec, dtype in ENCODINGS:
            codes, index_dir = os.path.join(work, f"{dtype}.parquet"), os.path.join(work, f"{dtype}.vecx")
            api.encode_file(base, codes, spec, read=ReadOptions(metric=metric))
            api.build_index(codes, index_dir)
            searcher = Searcher(index_dir)
            qq = searcher.check_queries(q, "queries")
            same = Index.restore(os.path.join(os.path.realpath(index_dir), "graph.usearch"), view=True)
            same.expansion_search = 64
            q_codes = np.ascontiguousarray(searcher.chain.encode_query(qq))
            if dtype == "b1":
                own_data, own_q, own_metric = np.packbits(x > 0, axis=1), np.packbits(q > 0, axis=1), "hamming"
            else:
                own_data, own_q, own_metric = x, q, {"cosine": "cos", "l2": "l2sq"}[metric]
            own = Index(ndim=x.shape[1], metric=own_metric, dtype=dtype, connectivity=16, expansion_add=128,
                        expansion_search=64)
            own.add(np.arange(len(x), dtype=np.uint64), np.ascontiguousarray(own_data))
            calls = {"vecx": lambda s=searcher, qq=qq: s.search(qq, K, rescore=False),
                     "same": lambda g=same, c=q_codes: g.search(c, K, threads=0),
                     "own": lambda g=own, c=own_q: g.search(c, K, threads=0)}
            for call in calls.values():
                call()  # warm-up
            times = rounds(calls, count)
            qps = {key: len(q) / min(v) for key, v in times.items()}
            ratio = {key: median(t / v for t, v in zip(times[key], times["vecx"], strict=True))
                     for key in ("same", "own")}
            log(f"{name} {dtype}: {qps}, ratios {ratio}")
            out.append([name, spec, dtype, f"{qps['vecx']:,.0f}", f"{qps['same']:,.0f}", f"{ratio['same']:.2f}x",
                        f"{qps['own']:,.0f}", f"{ratio['own']:.2f}x"])
            curves = sweep(lambda ef, s=searcher, qq=qq: s.search(qq, K, rescore=False, expansion=ef)[0],
                           lambda g=own, c=own_q: g.search(c, K, threads=0).keys, own, truth, count)
            log(f"{name} {dtype} curves: {curves}")
            matched.append(equal_recall_row(name, dtype, curves))
            rows = [qq[i: i + 1] for i in range(len(qq))]
            def vecx_one(i: int, s: Any = searcher, r: Any = rows) -> Any:
                return s.search(r[i % len(r)], K, rescore=False)

            def usearch_one(i: int, g: Any = same, c: Any = q_codes) -> Any:
                return g.search(c[i % len(c): i % len(c) + 1], K, threads=1)

            single_queries(vecx_one, usearch_one, 50)  # warm-up
            mine, theirs = single_queries(vecx_one, usearch_one, 500)
            single.append([name, dtype, f"{mine:.0f}", f"{theirs:.0f}", f"{mine - theirs:.0f}",
                           f"{theirs / mine:.2f}x"])
            searcher.close()
    return out, matched, single


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", help="write the Markdown section here (default: stdout)")
    args = ap.parse_args()
    cmdline = command_line()
    results = [run_set(name, metric, args.rounds) for name, metric in SETS]
    rows = [row for found, _, _ in results for row in found]
    matched = [row for _, found, _ in results for row in found]
    single = [row for _, _, found in results for row in found]
    text = "\n\n".join([f"Command: `{cmdline}`", machine(), table(
        ["set", "vecx spec", "usearch dtype", "vecx QPS", "same graph QPS", "ratio (median of rounds)",
         "usearch's own graph QPS", "ratio (median of rounds)"], rows),
        f"At equal recall@{K} (expansions {', '.join(map(str, EXPANSIONS))}; QPS best of the rounds):",
        table(["set", "usearch dtype", f"usearch recall (ef {DEFAULT_EXPANSION})", "usearch QPS",
               "vecx QPS at that recall", "ratio", f"vecx recall (ef {DEFAULT_EXPANSION})", "vecx QPS",
               "usearch QPS at that recall"], matched),
        "Single queries (median of 500, one query a call, alternating; usearch on vecx's graph file):",
        table(["set", "usearch dtype", "vecx us", "usearch us", "vecx's own us", "ratio"], single)]) + "\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
