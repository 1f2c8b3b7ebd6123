"""faiss's IndexRaBitQ at each query precision (``qb``) beside vecx's RaBitQ scan, on debian-minilm-30k.

faiss's RaBitQ quantizes each (rotated) query to ``qb`` bits before scanning (4 by default, 0 for
the float query); vecx keeps the float query unless asked (``--query-bits B``, the same rounding).
This puts both, at each precision, side by side on the same
rows: recall@10 against the set's exact neighbours, the median time of 200 single queries (k = 10)
and the batch QPS of 1,000 queries (best of 3), on the machine's cores.

    python tests/benchmarks/bench_faiss_qb.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from bench_wide import timings  # this directory's: the same timings as the wide-code scans

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "debian-minilm-30k")


def recall(found: Any, truth: Any) -> float:
    return sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)) / truth.size


def main() -> None:
    import faiss
    import numpy as np

    from vecx import api
    from vecx.formats.readers import ReadOptions
    from vecx.indexes.build import BuildOptions
    from vecx.indexes.search import Searcher

    x = np.load(os.path.join(DATA, "base.npy")).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = np.load(os.path.join(DATA, "queries.npy")).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    truth = np.load(os.path.join(DATA, "gt.npy"))[:, :10]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-qb-") as work:
        base, codes, index = (os.path.join(work, n) for n in ("base.npy", "codes.parquet", "index.vecx"))
        np.save(base, x)
        api.encode_file(base, codes, "binarize:mode=rabitq", read=ReadOptions(metric="cosine"))
        api.build_index(codes, index, options=BuildOptions(scan="exhaustive"))
        searcher = Searcher(index)
        searcher.use_compiled_scans()
        checked = searcher.check_queries(q, "queries")

        def vecx_search(sl: slice) -> Any:
            return searcher.search(checked[sl], 10, oversample=1, rescore=False)[0]

        for bits in (0, 4, 8):  # vecx's --query-bits (0: the float query)
            searcher.scan.query_bits = bits
            name = f"--query-bits {bits}" if bits else "float query"
            rows.append((f"vecx `binarize:mode=rabitq` ({name})", recall(vecx_search(slice(None)), truth),
                         *timings(vecx_search)))
        searcher.close()
    for qb in (0, 4, 8):
        peer = faiss.index_factory(x.shape[1], "RaBitQ", faiss.METRIC_INNER_PRODUCT)
        peer.qb = qb
        peer.train(x)
        peer.add(x)

        def faiss_search(sl: slice, index: Any = peer) -> Any:
            return index.search(q[sl], 10)[1]

        rows.append((f"faiss IndexRaBitQ qb={qb}{' (default)' if qb == 4 else ''}",
                     recall(faiss_search(slice(None)), truth), *timings(faiss_search)))
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| scan | recall@10 | p50 ms (one query) | batch QPS |\n|---|---|---|---|")
    for name, rec, p50, qps in rows:
        print(f"| {name} | {rec:.4f} | {p50:.3f} | {qps:,.0f} |")
    print(f"\n`python {' '.join(sys.argv)}`")


if __name__ == "__main__":
    main()
