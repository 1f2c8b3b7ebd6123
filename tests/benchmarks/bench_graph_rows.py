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


def run_set(name: str, metric: str, count: int) -> list[list[object]]:
    from usearch.index import Index

    from vecx import api
    from vecx.formats.readers import ReadOptions
    from vecx.indexes.search import Searcher

    base = os.path.join(DATA, name, "base.npy")
    x = np.load(base).astype(np.float32)
    q = np.load(os.path.join(DATA, name, "queries.npy")).astype(np.float32)
    out = []
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
            searcher.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", help="write the Markdown section here (default: stdout)")
    args = ap.parse_args()
    cmdline = command_line()
    rows = [row for name, metric in SETS for row in run_set(name, metric, args.rounds)]
    text = "\n\n".join([f"Command: `{cmdline}`", machine(), table(
        ["set", "vecx spec", "usearch dtype", "vecx QPS", "same graph QPS", "ratio (median of rounds)",
         "usearch's own graph QPS", "ratio (median of rounds)"], rows)]) + "\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
