"""Rescoring in stages: 1-bit RaBitQ candidates, 4-bit RaBitQ codes in memory, float32 from disk.

For each set, three rescorings of the same 1-bit RaBitQ first stage (an exhaustive scan, and a
Hamming graph over the sign bits: ``--scan graph``):

- float32 vectors alone (the usual setup: ``k x F`` rows read from the float file per query);
- 4-bit extended RaBitQ codes alone (an index that fits in memory, nothing read from disk);
- both, as two stages (``--rescore-vectors 4bit --rescore-vectors float``): the 4-bit codes rank
  ``k x F1`` candidates and keep ``k x F2`` for the float vectors.

Each setting is searched by ``Searcher.search`` for the set's 1,000 queries in one batch, with
the float file's pages in the page cache (warm) and dropped from it before the batch (cold:
``posix_fadvise(DONTNEED)`` on a freshly opened index, so every float row read comes from the
disk). Bytes in memory count the first stage's codes (and graph links, for the graph) and the
4-bit codes; float rows read per query is what the last stage reads. ``eval --target-recall``
finds the smallest factors reaching 0.99 for the float-only and the staged index.

    python tests/benchmarks/bench_rescore_stages.py --out /tmp/bench-rescore-stages.md
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from _harness import command_line, log, machine, publish, table

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
SETS = [("debian-minilm-30k", "cosine"), ("glove50-100k", "cosine")]
STAGE = "binarize:mode=rabitq:bits=4"
#: (rescoring, factors) of every measured setting.
SETTINGS = [("float32", (4,)), ("float32", (10,)), ("float32", (20,)),
            ("4-bit", (10,)), ("4-bit", (20,)),
            ("4-bit + float32", (10, 2)), ("4-bit + float32", (20, 2)), ("4-bit + float32", (20, 4)),
            ("4-bit + float32", (40, 2))]
TARGET = 0.99


def drop_cache(path: str) -> None:
    """Evict a file's pages from the page cache (clean pages not mapped by any process)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(index: str, q: np.ndarray, factors: tuple[int, ...], cold: bool) -> tuple[np.ndarray, float]:
    """One batch search of a freshly opened index (the float file dropped from the cache first if cold)."""
    from vecx.indexes.search import Searcher

    if cold:
        drop_cache(os.path.join(os.path.realpath(index), "rescore.npy"))
    searcher = Searcher(index)
    searcher.use_compiled_scans()
    qq = searcher.check_queries(q, "queries")
    if not cold:
        searcher.search(qq, 10, oversample=factors)  # warms the float file and the kernels
    else:
        searcher.search(qq[:1], 10, oversample=1, rescore=False)  # the kernels only
    start = time.perf_counter()
    found, _ = searcher.search(qq, 10, oversample=factors)
    seconds = time.perf_counter() - start
    searcher.close()
    return found, seconds


def run_set(name: str, metric: str, work: str) -> tuple[list[list[object]], list[list[object]]]:
    from vecx import api
    from vecx.formats.readers import ReadOptions
    from vecx.indexes.build import BuildOptions
    from vecx.indexes.evaluate import recall_at, tune
    from vecx.indexes.search import Searcher

    base = os.path.join(DATA, name, "base.npy")
    q = np.load(os.path.join(DATA, name, "queries.npy")).astype(np.float32)
    truth = np.load(os.path.join(DATA, name, "gt.npy"))[:, :10]
    imported = os.path.join(work, f"{name}.parquet")
    api.encode_file(base, imported, None, read=ReadOptions(metric=metric))
    first = os.path.join(work, f"{name}.rq.parquet")
    api.encode_file(imported, first, "binarize:mode=rabitq")
    four = os.path.join(work, f"{name}.rq4.parquet")
    api.encode_file(imported, four, STAGE)
    tables = {"float32": [imported], "4-bit": [four], "4-bit + float32": [four, imported]}
    rows, tuned = [], []
    for scan in ("exhaustive", "graph"):
        indexes = {}
        for label, rescore in tables.items():
            index = os.path.join(work, f"{name}.{scan}.{len(indexes)}.vecx")
            manifest = api.build_index(first, index, rescore=rescore, options=BuildOptions(scan=scan)).manifest
            files, n = manifest["files"], manifest["rows"]
            memory = files["codes.bin"]["bytes"] + (files["graph.usearch"]["bytes"] if scan == "graph" else 0)
            memory += files["refine1.npy"]["bytes"] if label == "4-bit + float32" else 0
            memory += files["rescore.npy"]["bytes"] if label == "4-bit" else 0
            indexes[label] = (index, memory / n)
        for label, factors in SETTINGS:
            index, memory = indexes[label]
            found, warm = timed(index, q, factors, cold=False)
            _, cold = timed(index, q, factors, cold=True)
            reads = 0 if label == "4-bit" else 10 * factors[-1]
            cells = [f"{recall_at(found, truth, 10):.4f}", f"{len(q) / warm:,.0f}", f"{len(q) / cold:,.0f}"]
            log(f"{name} {scan} {label} {factors}: {cells}")
            rows.append([name, f"1-bit RaBitQ, {scan}", label, ",".join(map(str, factors)), f"{memory:,.0f}",
                         reads, *cells])
        for label in ("float32", "4-bit + float32"):
            index, memory = indexes[label]
            searcher = Searcher(index)
            searcher.use_compiled_scans()
            found = tune(searcher, searcher.check_queries(q, "queries"), truth, 10, TARGET)
            searcher.close()
            if not found["reached"]:
                tuned.append([name, scan, label, "not reached", "", "", "", ""])
                continue
            factors = tuple(found["oversample"]) if isinstance(found["oversample"], list) else (found["oversample"],)
            _, warm = timed(index, q, factors, cold=False)
            _, cold = timed(index, q, factors, cold=True)
            setting = ",".join(map(str, factors)) + (f", expansion {found['expansion']}" if "expansion" in found else "")
            tuned.append([name, scan, label, setting, f"{found['recall@10']:.4f}", 10 * factors[-1],
                          f"{len(q) / warm:,.0f}", f"{len(q) / cold:,.0f}"])
            log(f"{name} {scan} {label} tuned: {tuned[-1]}")
    return rows, tuned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the Markdown section here (default: stdout)")
    args = ap.parse_args()
    cmdline = command_line()
    start = os.getloadavg()[0]
    rows, tuned = [], []
    with tempfile.TemporaryDirectory(prefix="bench-rescore-stages-", dir=os.environ.get("TMPDIR")) as work:
        for name, metric in SETS:
            got, tuned_rows = run_set(name, metric, work)
            rows += got
            tuned += tuned_rows
    header = ["set", "first stage", "rescored by", "factors", "bytes/vector in memory", "float rows read/query",
              "recall@10", "QPS warm", "QPS cold"]
    tuned_header = ["set", "first stage", "rescored by", f"smallest factors for recall@10 >= {TARGET}", "recall@10",
                    "float rows read/query", "QPS warm", "QPS cold"]
    text = "\n\n".join([f"Command: `{cmdline}`", machine() + f" Load average {start:.2f} before, "
                        f"{os.getloadavg()[0]:.2f} after.", table(header, rows), table(tuned_header, tuned)]) + "\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
