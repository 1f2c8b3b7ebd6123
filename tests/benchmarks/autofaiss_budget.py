"""autofaiss's pick for a memory budget on a shared set: its index string and parameters, its real
size, recall@10, batch QPS, single-query p50 and build time, one JSON line per budget.

autofaiss pins old libraries (pyarrow < 15 with numpy 1.x; faiss-cpu 1.8: it fails on 1.15's
``OPQMatrix``), so it runs in a venv of its own, not vecx's:

    python3 -m venv /tmp/afenv && /tmp/afenv/bin/pip install autofaiss "pyarrow<15" "faiss-cpu==1.8.0"
    /tmp/afenv/bin/python tests/benchmarks/autofaiss_budget.py ../shared/data/debian-minilm-30k 1MB,2MB,4MB

BENCHMARKS.md ("Planner") sets these beside ``vecx index --budget`` at the same budgets.
"""

from __future__ import annotations

import json
import sys
import time

import faiss
import numpy as np
from autofaiss import build_index


def main() -> None:
    data, budgets = sys.argv[1], sys.argv[2].split(",")
    x = np.load(f"{data}/base.npy").astype(np.float32)
    q = np.load(f"{data}/queries.npy").astype(np.float32)
    truth = np.load(f"{data}/gt.npy")[:, :10]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for budget in budgets:
        start = time.perf_counter()
        index, infos = build_index(embeddings=x, save_on_disk=False, max_index_memory_usage=budget,
                                   current_memory_available="8G", metric_type="ip", verbose=40)
        build_s = time.perf_counter() - start
        index.search(q, 10)
        start = time.perf_counter()
        _, found = index.search(q, 10)
        qps = len(q) / (time.perf_counter() - start)
        latencies = []
        for i in range(200):
            start = time.perf_counter()
            index.search(q[i:i + 1], 10)
            latencies.append(time.perf_counter() - start)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))
        row = {"budget": budget, "index_key": infos.get("index_key"), "index_param": infos.get("index_param"),
               "bytes": faiss.serialize_index(index).nbytes, "recall@10": round(recall, 4), "qps": round(qps),
               "p50_ms": round(float(np.median(latencies)) * 1e3, 3), "build_s": round(build_s, 1)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
