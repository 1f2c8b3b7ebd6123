"""Rescoring in stages: 1-bit RaBitQ candidates, 4-bit RaBitQ codes in memory, float32 from disk.

For each set, three rescorings of the same 1-bit RaBitQ first stage (an exhaustive scan, and a
Hamming graph over the sign bits: ``--scan graph``), and fewer of 2-bit and 4-bit extended
RaBitQ first stages (exhaustive scans):

- float32 vectors alone (the usual setup: ``k x F`` rows read from the float file per query);
- 4-bit extended RaBitQ codes alone (an index that fits in memory, nothing read from disk);
- both, as two stages (``--rescore-vectors 4bit --rescore-vectors float``): the 4-bit codes rank
  ``k x F1`` candidates and keep ``k x F2`` for the float vectors.

Each setting is searched by ``Searcher.search`` for the set's 1,000 queries in one batch (QPS:
the best of three, every file in the page cache), and for 50 single queries with the float file
dropped from the page cache before each (cold p50/p90: ``posix_fadvise(DONTNEED)``, checked with
``fincore``, on a freshly opened index whose codes are in memory and whose stages have been used
once: every float row a query reads comes from the disk, with the kernel's read-around). Bytes
in memory count the first stage's codes (and graph links, for the graph) and the 4-bit codes;
float rows read per query is what the last stage reads. ``eval --target-recall`` finds the
smallest factors reaching 0.99 for the float-only and the staged index.

    python tests/benchmarks/bench_rescore_stages.py --out /tmp/bench-rescore-stages.md
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
from _harness import begin, finish, log, shared_set, table

SETS = [("debian-minilm-30k", "cosine"), ("glove50-100k", "cosine")]
STAGE = "binarize:mode=rabitq:bits=4"
#: (rescoring, factors) of every measured setting.
SETTINGS = [("float32", (4,)), ("float32", (10,)), ("float32", (20,)),
            ("4-bit", (10,)), ("4-bit", (20,)),
            ("4-bit + float32", (10, 2)), ("4-bit + float32", (20, 2)), ("4-bit + float32", (20, 4)),
            ("4-bit + float32", (40, 2))]
#: First stages: name, spec, scans, settings. Two more bits per dimension in the first stage
#: find the true neighbours among fewer candidates on low-dimensional sets (glove: 50-d).
FIRST_STAGES = [
    ("1-bit RaBitQ", "binarize:mode=rabitq", ("exhaustive", "graph"), SETTINGS),
    ("2-bit RaBitQ", "binarize:mode=rabitq:bits=2", ("exhaustive",),
     [("float32", (10,)), ("4-bit + float32", (10, 2)), ("4-bit + float32", (20, 2))]),
    ("4-bit RaBitQ", STAGE, ("exhaustive",), [("float32", (2,)), ("float32", (4,))]),
]
TARGET = 0.99
#: Batches per figure (the best is kept: the machine is shared).
REPEAT = 3
#: Single queries timed with a cold float file.
COLD_QUERIES = 50


def drop_cache(path: str) -> None:
    """Evict a file's pages from the page cache (written back first; the searchers that mapped it
    are collected first, as mapped pages stay), and check with ``fincore`` that none is left."""
    gc.collect()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # a file just written has dirty pages, which are not dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    if shutil.which("fincore"):
        resident = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path], check=True,
                                  capture_output=True, text=True).stdout.split()
        if resident and int(resident[0]) > 1 << 20:
            raise SystemExit(f"{path}: {resident[0]} bytes still in the page cache after POSIX_FADV_DONTNEED")


def timed(index: str, q: np.ndarray, factors: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """The best of REPEAT batch searches of all queries, the index's files in the page cache."""
    from vecx.indexes.search import Searcher

    searcher = Searcher(index)
    searcher.use_compiled_scans()
    qq = searcher.check_queries(q, "queries")
    searcher.search(qq, 10, oversample=factors)  # warms the files and the kernels
    best: tuple[np.ndarray, float] | None = None
    for _ in range(REPEAT):
        start = time.perf_counter()
        found, _ = searcher.search(qq, 10, oversample=factors)
        seconds = time.perf_counter() - start
        if best is None or seconds < best[1]:
            best = (found, seconds)
    searcher.close()
    assert best is not None
    return best


def cold_latency(index: str, q: np.ndarray, factors: tuple[int, ...], float_file: str | None) -> tuple[float, float]:
    """p50 and p90 milliseconds of single queries, each by a freshly opened index with the float file
    (``None``: the index reads none) dropped from the page cache just before."""
    from vecx.indexes.search import Searcher

    times = []
    for i in range(COLD_QUERIES):
        searcher = Searcher(index)
        searcher.use_compiled_scans()
        one = searcher.check_queries(q[i: i + 1], "queries")
        searcher.search(one, 10, oversample=1, rescore=False)  # the codes in memory, the kernels loaded
        # Every stage's first use (its chain's tables), on the first row only: a float file page the
        # searcher maps stays in the cache.
        first_row = np.zeros((1, 1), dtype=np.int64)
        for stage in searcher.refine:
            stage.scores(stage.queries(one), first_row)
        if float_file is None:
            searcher.final.scores(searcher.final.queries(one), first_row)
        else:
            searcher.final.queries(one)
            drop_cache(float_file)
        start = time.perf_counter()
        searcher.search(one, 10, oversample=factors)
        times.append(time.perf_counter() - start)
        searcher.close()
        del searcher
    return float(np.percentile(times, 50)) * 1000, float(np.percentile(times, 90)) * 1000


def run_set(name: str, metric: str, work: str) -> tuple[list[list[object]], list[list[object]]]:
    from vecx import api

    q, truth, imported = shared_set(name, metric, work)
    four = os.path.join(work, f"{name}.rq4.parquet")
    api.encode_file(imported, four, STAGE)
    tables = {"float32": [imported], "4-bit": [four], "4-bit + float32": [four, imported]}
    rows: list[list[object]] = []
    tuned: list[list[object]] = []
    for first_name, spec, scans, settings in FIRST_STAGES:
        first = four if spec == STAGE else os.path.join(work, f"{name}.{len(rows)}.parquet")
        if spec != STAGE:
            api.encode_file(imported, first, spec)
        for scan in scans:
            labels = list(dict.fromkeys(label for label, _ in settings))
            indexes = {label: _build(first, tables[label], scan, label, os.path.join(work, f"{name}.{i}.vecx"))
                       for i, label in enumerate(labels)}
            for label, factors in settings:
                row = _measure(indexes[label], label, factors, q, truth)
                log(f"{name} {first_name} {scan} {label} {factors}: {row}")
                rows.append([name, f"{first_name}, {scan}", label, ",".join(map(str, factors)), *row])
            for label in labels:
                if label != "4-bit":  # the smallest factors that reach the target, where the float vectors come last
                    tuned.append([name, f"{first_name}, {scan}", label, *_tuned(indexes[label], q, truth)])
                    log(f"{name} {first_name} {scan} {label} tuned: {tuned[-1]}")
    return rows, tuned


def _build(first: str, rescore: list[str], scan: str, label: str, index: str) -> tuple[str, float]:
    """An index of the first stage's codes rescored by ``rescore``; its path and bytes per vector in memory."""
    from vecx import api
    from vecx.indexes.build import BuildOptions

    manifest = api.build_index(first, index, rescore=rescore, options=BuildOptions(scan=scan)).manifest
    files, n = manifest["files"], manifest["rows"]
    memory = files["codes.bin"]["bytes"] + (files["graph.usearch"]["bytes"] if scan == "graph" else 0)
    memory += files["refine1.npy"]["bytes"] if label == "4-bit + float32" else 0
    memory += files["rescore.npy"]["bytes"] if label == "4-bit" else 0
    return index, memory / n


def _measure(built: tuple[str, float], label: str, factors: tuple[int, ...], q: np.ndarray,
             truth: np.ndarray) -> list[object]:
    """Bytes in memory, float rows read per query, recall@10, QPS and the cold latencies of one setting."""
    from vecx.indexes.evaluate import recall_at

    index, memory = built
    found, warm = timed(index, q, factors)
    float_file = None if label == "4-bit" else os.path.join(os.path.realpath(index), "rescore.npy")
    p50, p90 = cold_latency(index, q, factors, float_file)
    reads = 0 if label == "4-bit" else 10 * factors[-1]
    return [f"{memory:,.0f}", reads, f"{recall_at(found, truth, 10):.4f}", f"{len(q) / warm:,.0f}", f"{p50:.2f}",
            f"{p90:.2f}"]


def _tuned(built: tuple[str, float], q: np.ndarray, truth: np.ndarray) -> list[object]:
    """``eval --target-recall TARGET``'s factors for an index, and their figures (as :func:`_measure`)."""
    from vecx.indexes.evaluate import tune
    from vecx.indexes.search import Searcher

    index, memory = built
    searcher = Searcher(index)
    searcher.use_compiled_scans()
    found = tune(searcher, searcher.check_queries(q, "queries"), truth, 10, TARGET)
    searcher.close()
    del searcher
    if not found["reached"]:
        best = max(found["tried"], key=lambda t: t["recall@10"])
        return [f"not reached (best {best['recall@10']:.4f})", "", "", "", "", "", ""]
    factors = tuple(found["oversample"]) if isinstance(found["oversample"], list) else (found["oversample"],)
    _, warm = timed(index, q, factors)
    p50, p90 = cold_latency(index, q, factors, os.path.join(os.path.realpath(index), "rescore.npy"))
    setting = ",".join(map(str, factors)) + (f", expansion {found['expansion']}" if "expansion" in found else "")
    return [setting, f"{memory:,.0f}", 10 * factors[-1], f"{found['recall@10']:.4f}", f"{len(q) / warm:,.0f}",
            f"{p50:.2f}", f"{p90:.2f}"]


def main() -> None:
    out, cmdline, start = begin(__doc__)
    rows, tuned = [], []
    with tempfile.TemporaryDirectory(prefix="bench-rescore-stages-", dir=os.environ.get("TMPDIR")) as work:
        for name, metric in SETS:
            got, tuned_rows = run_set(name, metric, work)
            rows += got
            tuned += tuned_rows
    header = ["set", "first stage", "rescored by", "factors", "bytes/vector in memory", "float rows read/query",
              "recall@10", "QPS (warm)", "cold p50 ms", "cold p90 ms"]
    tuned_header = ["set", "first stage", "rescored by", f"smallest factors for recall@10 >= {TARGET}",
                    "bytes/vector in memory", "float rows read/query", "recall@10", "QPS (warm)", "cold p50 ms",
                    "cold p90 ms"]
    finish(out, cmdline, start, table(header, rows), table(tuned_header, tuned))


if __name__ == "__main__":
    main()
