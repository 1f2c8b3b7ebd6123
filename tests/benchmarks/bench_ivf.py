"""Coarse lists, vecx against faiss across nprobe: recall@10, batch QPS and single-query p50 at each
number of lists probed, and the comparison at equal recall.

``vecx bench`` compares both at one nprobe (16), where the two reach different recall: vecx's
residual codes lose less, and its lists are probed in L2 order. The fair speed comparison is at
equal recall, so this script sweeps nprobe for a vecx index (``pq:...:ivf=N``, built by the same
library path as ``vecx encode`` + ``vecx index``) and a faiss ``index_factory`` string trained on
the same rows, and for each faiss row reports the vecx row with the fewest lists probed that
reaches at least its recall. Both search all 1,000 queries in one call (best of 3) and 300
single queries one by one; vecx through ``Searcher.search`` (what ``vecx query`` and the Python API
run), faiss through ``index.search``.

    python tests/benchmarks/bench_ivf.py --set debian-minilm-30k:pq:24x8:opq=true:ivf=512:OPQ24_168,IVF512,PQ24x8
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _harness import command_line, log, machine, publish, table

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
K = 10
SINGLE = 300
DEFAULT_SETS = [
    "debian-minilm-30k:pq:24x8:opq=true:ivf=512:OPQ24_168,IVF512,PQ24x8:8,16,32,64,128,512",
    "debian-minilm-30k:pq:48x8:opq=true:ivf=512:OPQ48_336,IVF512,PQ48x8:8,16,32,64,128,512",
    "glove50-100k:pq:16x8:opq=true:ivf=1024:OPQ16_64,IVF1024,PQ16x8:8,16,32,64,128,256,1024",
]


def measure(search: Callable[[slice], Any], queries: int, truth: np.ndarray) -> tuple[float, float, float]:
    """(recall@10, batch QPS best of 3, median single-query ms) of ``search(rows of the queries)``."""
    search(slice(0, queries))
    best, found = float("inf"), None
    for _ in range(3):
        start = time.perf_counter()
        found = search(slice(0, queries))
        best = min(best, time.perf_counter() - start)
    times = []
    for i in range(min(SINGLE, queries)):
        start = time.perf_counter()
        search(slice(i, i + 1))
        times.append(time.perf_counter() - start)
    hits = np.mean([len(set(a[:K].tolist()) & set(b.tolist())) / K for a, b in zip(found, truth, strict=True)])
    return float(hits), queries / best, statistics.median(times) * 1000


def parse(item: str) -> tuple[str, str, str, list[int]]:
    """NAME:SPEC:FAISS_KEY:NPROBES (the spec holds colons; the faiss key and the list of nprobes do not)."""
    name, rest = item.split(":", 1)
    spec_and_key, nprobes = rest.rsplit(":", 1)
    spec, key = spec_and_key.rsplit(":", 1)
    return name, spec, key, [int(v) for v in nprobes.split(",")]


def vecx_index(base: str, spec: str, metric: str, work: str) -> Any:
    """The encoded, indexed base (library path of the CLI), opened for search."""
    from vecx import api
    from vecx.formats.readers import ReadOptions
    from vecx.indexes.search import Searcher

    codes, index = os.path.join(work, "codes.parquet"), os.path.join(work, "index.vecx")
    start = time.perf_counter()
    api.encode_file(base, codes, spec, read=ReadOptions(metric=metric))
    api.build_index(codes, index)
    log(f"vecx {spec}: encoded and indexed in {time.perf_counter() - start:.1f} s")
    searcher = Searcher(index)
    searcher.use_compiled_scans()
    return searcher


def run_set(item: str) -> list[list[object]]:
    import faiss

    name, spec, key, nprobes = parse(item)
    base = os.path.join(DATA, name, "base.npy")
    x = np.load(base).astype(np.float32)
    q = np.load(os.path.join(DATA, name, "queries.npy")).astype(np.float32)
    truth = np.load(os.path.join(DATA, name, "gt.npy"))[:, :K]
    xn, qn = x / np.linalg.norm(x, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory(prefix="bench-ivf-") as work:
        searcher = vecx_index(base, spec, "cosine", work)
        qq = searcher.check_queries(q, "queries")
        start = time.perf_counter()
        index = faiss.index_factory(x.shape[1], key, faiss.METRIC_INNER_PRODUCT)
        index.train(xn)
        index.add(xn)
        log(f"faiss {key}: trained and filled in {time.perf_counter() - start:.1f} s")
        space = faiss.ParameterSpace()
        found: dict[str, dict[int, tuple[float, float, float]]] = {"vecx": {}, "faiss": {}}
        for nprobe in nprobes:
            searcher.nprobe = nprobe
            found["vecx"][nprobe] = measure(lambda rows: searcher.search(qq[rows], K, oversample=1, rescore=False)[0],
                                            len(q), truth)
            space.set_index_parameter(index, "nprobe", nprobe)
            found["faiss"][nprobe] = measure(lambda rows: index.search(qn[rows], K)[1], len(q), truth)
            log(f"{name} nprobe {nprobe}: vecx {found['vecx'][nprobe]}, faiss {found['faiss'][nprobe]}")
        searcher.close()
    rows = []
    for nprobe in nprobes:
        v, f = found["vecx"][nprobe], found["faiss"][nprobe]
        # vecx's fewest lists reaching faiss's recall at this nprobe (none: vecx never reaches it)
        match = next((p for p in nprobes if found["vecx"][p][0] >= f[0]), None)
        m = found["vecx"][match] if match is not None else None
        rows.append([name, spec, key, nprobe, f"{v[0]:.4f}", f"{v[1]:,.0f}", f"{v[2]:.3f}", f"{f[0]:.4f}",
                     f"{f[1]:,.0f}", f"{f[2]:.3f}", "-" if m is None else match,
                     "-" if m is None else f"{m[1] / f[1]:.2f}x", "-" if m is None else f"{f[2] / m[2]:.2f}x"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", dest="sets", metavar="NAME:SPEC:FAISS_KEY:NPROBES",
                    help="data set, vecx spec, faiss index_factory string, nprobes (default: three pairs)")
    ap.add_argument("--out", help="write the Markdown section here (default: stdout)")
    args = ap.parse_args()
    cmdline = command_line()
    rows = [row for item in (args.sets or DEFAULT_SETS) for row in run_set(item)]
    text = "\n\n".join([
        f"Command: `{cmdline}`", machine(),
        table(["set", "vecx spec", "faiss", "nprobe", "vecx recall@10", "vecx QPS", "vecx p50 ms", "faiss recall@10",
               "faiss QPS", "faiss p50 ms", "vecx nprobe at faiss's recall", "QPS ratio there",
               "p50 ratio there (faiss / vecx)"], rows)]) + "\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
