"""Graph recall by insertion order (``vecx index --order``), on the shared sets, and what the LID estimate costs.

For each set, encoding and graph setting (vecx's default, connectivity 16 / expansion_add 128,
and the sparse connectivity 8 / expansion_add 64 where order matters most), indexes are built
with ``--order input``, ``random`` and ``lid``, and from a copy of the table grouped by cluster
(rows sorted by their nearest of 32 seeded centroids: the adversarial order of data appended
category by category) with ``--order input``. Each is built ``--builds`` times (multi-threaded,
as users build), searched with the graph alone (no rescoring, expansion 64) for the 1,000
queries. Graph recall@10 is against the exact top-10 of the same codes (the graph's own loss,
what the order can change; a row as near as the 10th counts, for Hamming ties), as mean and
range over builds; recall@10 against the set's float ground truth is beside it, with the build's
wall time; the LID estimate's share is the difference between
``lid`` and ``input``.

    python tests/benchmarks/bench_order.py --out /tmp/bench-order.md
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import numpy as np
from _harness import command_line, log, machine, publish, table

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
SETS = [("debian-minilm-30k", "cosine"), ("glove50-100k", "cosine"), ("sift128-images-30k", "l2")]
ENCODINGS = [(None, "f32"), ("int8:mode=global", "i8"), ("binarize", "b1")]
SETTINGS = [(16, 128), (8, 64)]
ORDERS = ["input", "random", "lid", "grouped"]
CLUSTERS = 32


def grouped_permutation(x: Any, metric: str) -> Any:
    """Rows sorted by their nearest of 32 seeded centroids (stable: input order within a cluster)."""
    rng = np.random.default_rng(7)
    v = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    centroids = v[rng.choice(len(v), CLUSTERS, replace=False)]
    d = (centroids * centroids).sum(1)[None, :] - 2.0 * v @ centroids.T
    return np.argsort(d.argmin(axis=1), kind="stable")


def graph_recall(searcher: Any, q: Any) -> tuple[float, Any]:
    """Recall@10 of the graph search against the exact top-10 of the same codes (ties counted: a row
    as near as the 10th is a hit), and the graph's own search result rows."""
    codes = searcher.chain.encode_query(searcher.check_queries(q, "queries"))
    keys, dist = searcher._each_graph(codes, 10, None)
    _, exact = searcher._each_graph(codes, 10, None, exact=True)
    hits = (dist <= exact[:, 9:10] + 1e-6) & (keys >= 0)
    return float(hits.mean()), keys


def run_set(name: str, metric: str, builds: int, work: str, graphs: list[str], orders: list[str]) -> list[list[object]]:
    from vecx import api
    from vecx.formats.readers import ReadOptions
    from vecx.indexes.build import BuildOptions
    from vecx.indexes.evaluate import recall_at
    from vecx.indexes.search import Searcher

    x = np.load(os.path.join(DATA, name, "base.npy")).astype(np.float32)
    q = np.load(os.path.join(DATA, name, "queries.npy")).astype(np.float32)
    truth = np.load(os.path.join(DATA, name, "gt.npy"))[:, :10]
    perm = grouped_permutation(x, metric)
    paths = {"as given": os.path.join(work, f"{name}.npy"), "grouped": os.path.join(work, f"{name}.grouped.npy")}
    np.save(paths["as given"], x)
    np.save(paths["grouped"], x[perm])
    out = []
    for spec, dtype in [(spec, dtype) for spec, dtype in ENCODINGS if dtype in graphs]:
        tables = {}
        for variant, path in paths.items():
            tables[variant] = os.path.join(work, f"{name}.{variant.replace(' ', '')}.{dtype}.parquet")
            api.encode_file(path, tables[variant], spec, read=ReadOptions(metric=metric))
        for connectivity, expansion_add in SETTINGS:
            for order in orders:
                variant = "grouped" if order == "grouped" else "as given"
                recalls, truth_recalls, seconds, lid = [], [], [], None
                for b in range(builds):
                    index = os.path.join(work, f"index-{b}.vecx")
                    options = BuildOptions(connectivity=connectivity, expansion_add=expansion_add,
                                           order="input" if order == "grouped" else order)
                    start = time.perf_counter()
                    manifest = api.build_index(tables[variant], index, options=options).manifest
                    seconds.append(time.perf_counter() - start)
                    lid = manifest["graph"].get("lid")
                    searcher = Searcher(index)
                    found, rows = graph_recall(searcher, q)
                    searcher.close()
                    if order == "grouped":
                        rows = np.where(rows >= 0, perm[np.maximum(rows, 0)], -1)
                    recalls.append(found)
                    truth_recalls.append(recall_at(rows, truth, 10))
                log(f"{name} {dtype} M={connectivity} efa={expansion_add} {order}: {recalls} {truth_recalls} "
                    f"build {np.mean(seconds):.1f}s lid {lid}")
                out.append([name, dtype, f"{connectivity} / {expansion_add}", order, f"{np.mean(recalls):.4f}",
                            f"{min(recalls):.4f}-{max(recalls):.4f}", f"{np.mean(truth_recalls):.4f}",
                            f"{np.mean(seconds):.1f}",
                            "" if lid is None or order != "lid" else
                            f"{lid['mean']} / {lid['median']} ({lid['p10']}-{lid['p90']})"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builds", type=int, default=3)
    ap.add_argument("--sets", nargs="*", default=[name for name, _ in SETS])
    ap.add_argument("--graphs", nargs="*", default=[dtype for _, dtype in ENCODINGS])
    ap.add_argument("--orders", nargs="*", default=ORDERS)
    ap.add_argument("--out", help="write the Markdown section here (default: stdout)")
    args = ap.parse_args()
    cmdline = command_line()
    start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-order-") as work:
        rows = [row for name, metric in SETS if name in args.sets
                for row in run_set(name, metric, args.builds, work, args.graphs, args.orders)]
    text = "\n\n".join([f"Command: `{cmdline}`", machine() + f" Load average {start:.2f} before, "
                        f"{os.getloadavg()[0]:.2f} after.", table(
        ["set", "graph", "M / ef_add", "order", "graph recall@10 (mean)", "range over builds",
         "recall@10 vs float truth", "build s",
         "LID mean / median (p10-p90)"], rows)]) + "\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
