"""Rescored scans against faiss's own refinement: vecx's ``--oversample 10`` (100 candidates per query
re-scored with the float vectors, read from the index's memory-mapped file) against faiss
``IndexRefineFlat`` (``k_factor`` 10, the float vectors in memory) over the same kind of codes.

``vecx bench`` rescores every peer's candidates with one numpy routine, the same for all peers;
this script compares against the refinement faiss users run. Batch of 1,000 queries, best of 3.

    python tests/benchmarks/bench_refine.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
from _harness import VECX, best, command_line, machine, table

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
CASES = [("debian-minilm-30k", "cosine", "pq:24x8", "PQ24x8np"),
         ("debian-minilm-30k", "cosine", "binarize:mode=rabitq", "RaBitQ"),
         ("sift128-images-30k", "l2", "pq:16x8", "PQ16x8np")]


def main() -> None:
    import faiss

    from vecx import api
    from vecx.indexes.search import Searcher

    rows = []
    for name, metric, spec, key in CASES:
        x = np.load(os.path.join(DATA, name, "base.npy")).astype(np.float32)
        q = np.load(os.path.join(DATA, name, "queries.npy")).astype(np.float32)
        if metric == "cosine":
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            q /= np.linalg.norm(q, axis=1, keepdims=True)
        with tempfile.TemporaryDirectory(prefix="bench-refine-") as work:
            np.save(os.path.join(work, "x.npy"), x)
            floats, codes, index = (os.path.join(work, f) for f in ("x.parquet", "c.parquet", "i.vecx"))
            subprocess.run([*VECX, "import", os.path.join(work, "x.npy"), "-o", floats, "--metric", metric, "-q"],
                           check=True)
            api.encode_file(floats, codes, spec)
            api.build_index(codes, index, rescore=floats)
            searcher = Searcher(index)
            searcher.use_compiled_scans()
            qq = searcher.check_queries(q, "queries")
            base = faiss.index_factory(x.shape[1], key, faiss.METRIC_L2 if metric == "l2" else
                                       faiss.METRIC_INNER_PRODUCT)
            base.train(x)
            refine = faiss.IndexRefineFlat(base)
            refine.add(x)
            refine.k_factor = 10
            mine = best(lambda s=searcher, qq=qq: s.search(qq, 10, oversample=10, rescore=True))
            theirs = best(lambda r=refine, q=q: r.search(q, 10))
            searcher.close()
        rows.append([name, spec, f"{len(q) / mine:,.0f}", f"IndexRefineFlat({key}), k_factor 10",
                     f"{len(q) / theirs:,.0f}", f"{theirs / mine:.2f}x"])
        print(rows[-1], file=sys.stderr, flush=True)
    print("\n\n".join([f"Command: `{command_line()}`", machine(), table(
        ["set", "vecx codes (x10)", "vecx QPS", "faiss", "faiss QPS", "ratio"], rows)]))


if __name__ == "__main__":
    main()
