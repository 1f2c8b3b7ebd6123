"""Index benchmark (issue 3): vecx index / query / eval against raw usearch and faiss.

Every figure is a ratio against a peer measured in the same run (the machine is shared and
noisy), every timing the best of ``--repeat`` runs, vecx and peer runs alternating.

  1. ``vecx index X.parquet --rescore base.parquet`` (CLI subprocess, reads Parquet, writes the
     whole index) vs a bare script that np.loads the same codes and runs usearch
     ``Index(...).add`` + ``save`` (target <= 1.1x).
  2. Batch QPS of all queries in one process: ``Searcher.search(q, 10, rescore=False)`` vs
     ``Index.restore(graph, view=True).search(codes, 10)`` on the same graph file with the same
     codes (target >= 0.9x).
  3. One query: ``vecx query X.vecx --vector one.npy -k 10 --rescore 1`` vs a bare script that
     imports usearch, restores the same graph as a view and searches once; warm page cache,
     best of 5, and cold (caches dropped) if permitted (target <= 1.3x).
  4. Recall@10 of f32 / f16 / int8:mode=global indexes, without and with rescoring x4 / x10,
     next to faiss IndexHNSWFlat and IndexBinaryFlat on sign bits, plus ``vecx eval``'s stages.

Data: ../shared/data/{debian-minilm-30k, glove50-100k, sift128-images-30k} and a synthetic
N x 384 unit-norm set (default_rng(0); queries default_rng(1); truth from ``vecx truth``).

    python tests/benchmarks/bench_index.py --quick
    python tests/benchmarks/bench_index.py --out bench-index.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq

PY = sys.executable
_SCRIPT = os.path.join(os.path.dirname(PY), "vecx")  # the console script of this interpreter's venv
VECX = [_SCRIPT] if os.path.exists(_SCRIPT) else [PY, "-m", "vecx"]
NCPU = len(os.sched_getaffinity(0))
DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data"))
SETS = {"debian-minilm-30k": "cosine", "glove50-100k": "cosine", "sift128-images-30k": "l2"}
ENCODINGS = {"f32": None, "f16": "f16", "i8": "int8:mode=global"}  # name -> vecx encode spec
USEARCH = {"f32": "f32", "f16": "f16", "i8": "i8"}
GRAPH = dict(connectivity=16, expansion_add=128, expansion_search=64)
K, DIM, NQ = 10, 384, 1000

# Runs argv[2:] (stdout discarded), writes [returncode, wall seconds, ru_maxrss KiB] to argv[1].
WRAPPER = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter(); rc = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL)
wall = time.perf_counter() - t
json.dump([rc, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss], open(sys.argv[1], "w"))
"""

USEARCH_BUILD = r"""
import sys, numpy as np
from usearch.index import Index
codes, metric, dtype, out = sys.argv[1:5]
x = np.load(codes)
g = Index(ndim=x.shape[1], metric=metric, dtype=dtype, connectivity=16, expansion_add=128, expansion_search=64)
g.add(np.arange(len(x), dtype=np.uint64), x)
g.save(out)
"""

USEARCH_ONE = r"""
import sys, numpy as np
from usearch.index import Index
g = Index.restore(sys.argv[1], view=True)
print(g.search(np.load(sys.argv[2]), 10).keys)
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def vecx(*args: str, capture: bool = False) -> str:
    """Run a vecx command (setup, not timed); its stdout if ``capture``."""
    done = subprocess.run([*VECX, *args], check=True, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          text=True)
    return done.stdout if capture else ""


def remove(path: str) -> None:
    """Delete a file, or an index (its link and its hidden version directory)."""
    hidden = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.d")
    for p in (path, hidden):
        if os.path.islink(p) or os.path.isfile(p):
            os.unlink(p)
        elif os.path.isdir(p):
            shutil.rmtree(p)


def drop_caches() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def measure(argv: list[str], work: str) -> dict[str, float]:
    """Run argv once in a fresh wrapper process: wall seconds and peak RSS (MB)."""
    report = os.path.join(work, "wrapper.json")
    subprocess.run([PY, "-c", WRAPPER, report, *argv], check=True)
    with open(report) as f:
        rc, wall, rss = json.load(f)
    if rc != 0:
        raise SystemExit(f"command failed ({rc}): {shlex.join(argv)}")
    return {"s": wall, "rss": rss / 1024}


def interleaved(cmds: dict[str, tuple[list[str], str | None]], repeat: int, work: str,
                cold: bool = False) -> dict[str, dict[str, float]]:
    """Best of ``repeat`` runs of each (argv, output), alternating; outputs removed and synced
    (caches dropped if ``cold``) before each run."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cmds}
    for r in range(repeat):
        for name, (argv, output) in cmds.items():
            if output:
                remove(output)
            drop_caches() if cold else os.sync()
            runs[name].append(measure(argv, work))
            log(f"  {name} run {r + 1}/{repeat}: {runs[name][-1]['s']:.3f} s")
    return {n: {"s": min(x["s"] for x in rs), "rss": max(x["rss"] for x in rs)} for n, rs in runs.items()}


def unit_rows(path: str, rows: int, seed: int) -> None:
    """Unit-norm float32 standard normal rows, written in chunks."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, DIM))
    for s in range(0, rows, 65536):
        x = rng.standard_normal((min(65536, rows - s), DIM), dtype=np.float32)
        out[s:s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()


def codes_of(table: str, out: str) -> None:
    """The "vector" column of a vecx table as a 2-D .npy (what vecx indexes)."""
    col = pq.read_table(table, columns=["vector"]).column("vector").combine_chunks()
    np.save(out, col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1))


def prepare(name: str, metric: str, work: str, synthetic_rows: int) -> dict:
    """Import, truth (synthetic only), encodings and their codes as .npy, in ``work/name``."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    p = lambda f: os.path.join(d, f)  # noqa: E731
    if synthetic_rows:
        log(f"{name}: generating {synthetic_rows:,} x {DIM} base and {NQ} queries")
        base, queries = p("base.npy"), p("queries.npy")
        unit_rows(base, synthetic_rows, 0)
        unit_rows(queries, NQ, 1)
    else:
        base, queries = os.path.join(DATA, name, "base.npy"), os.path.join(DATA, name, "queries.npy")
    log(f"{name}: import and encode")
    vecx("import", base, "-o", p("f32.parquet"), "--metric", metric, "-q")
    for enc, spec in ENCODINGS.items():
        if spec:
            vecx("encode", p("f32.parquet"), "-o", p(f"{enc}.parquet"), "--spec", spec, "-q")
        codes_of(p(f"{enc}.parquet"), p(f"{enc}.codes.npy"))
    if synthetic_rows:
        vecx("truth", p("f32.parquet"), queries, "-o", p("gt.parquet"), "-k", str(K), "-q")
        col = pq.read_table(p("gt.parquet"), columns=["rows"]).column("rows").combine_chunks()
        truth = col.values.to_numpy().reshape(len(col), -1)[:, :K]
    else:
        truth = np.load(os.path.join(DATA, name, "gt.npy"))[:, :K]
    return {"name": name, "metric": metric, "dir": d, "base": base, "queries": queries, "truth": truth}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f[:K], t[:K])) / K for f, t in zip(found, truth)]))


def rescore(x: np.ndarray, q: np.ndarray, cand: np.ndarray, metric: str) -> np.ndarray:
    """Top-K of candidate rows re-ranked by float32 similarity (cosine) or squared L2."""
    v = x[cand]  # nq x m x d
    if metric == "l2":
        score = -((v - q[:, None, :]) ** 2).sum(-1)
    else:
        score = np.einsum("nmd,nd->nm", v / np.linalg.norm(v, axis=-1, keepdims=True), q)
    return np.take_along_axis(cand, np.argsort(-score, axis=1, kind="stable")[:, :K], axis=1)


def faiss_recalls(ds: dict) -> list[list[object]]:
    """faiss IndexHNSWFlat on the float vectors and IndexBinaryFlat on sign bits, raw and rescored x4 / x10."""
    import faiss
    x, q = np.load(ds["base"]), np.load(ds["queries"])
    cos = ds["metric"] == "cosine"
    if cos:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    d, out = x.shape[1], []
    hnsw = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT if cos else faiss.METRIC_L2)
    hnsw.hnsw.efConstruction = 128
    t = time.perf_counter()
    hnsw.add(x)
    log(f"  faiss HNSW build {time.perf_counter() - t:.1f} s")
    xbits, qbits = np.packbits(x > 0, axis=1), np.packbits(q > 0, axis=1)  # zero-padded to whole bytes
    binary = faiss.IndexBinaryFlat(8 * xbits.shape[1])
    binary.add(xbits)
    for label, index, qq, nbytes in (("faiss IndexHNSWFlat (M 16, efC 128, ef 64)", hnsw, q, 4 * d),
                                     ("faiss IndexBinaryFlat, sign bits", binary, qbits, xbits.shape[1])):
        row: list[object] = [label, nbytes]
        for factor in (1, 4, 10):
            if index is hnsw:
                hnsw.hnsw.efSearch = max(64, K * factor)  # as vecx: the expansion is never below the count
            _, cand = index.search(qq, K * factor)
            row.append(f"{recall(cand if factor == 1 else rescore(x, q, cand, ds['metric']), ds['truth']):.4f}")
        out.append(row)
    return out


def vecx_recall(index: str, queries: str, factor: int, truth: np.ndarray) -> float:
    """Recall@K of ``vecx query --rescore factor`` (CLI, JSONL; ids are row numbers)."""
    lines = vecx("query", index, "--vector", queries, "-k", str(K), "--rescore", str(factor), "--format", "jsonl",
                 "-q", capture=True).splitlines()
    found = np.array([[r["id"] for r in json.loads(line)["results"]] for line in lines])
    return recall(found, truth)


def qps(index: str, queries: str, rounds: int) -> dict[str, float]:
    """Figure 2: batch QPS, vecx Searcher vs raw usearch on the same graph and codes, in this process."""
    from usearch.index import Index
    from vecx.indexes.hnsw import Searcher
    s = Searcher(index)
    raw = Index.restore(os.path.join(os.path.realpath(index), "graph.usearch"), view=True)
    raw.expansion_search = GRAPH["expansion_search"]
    q = np.load(queries)
    codes = np.ascontiguousarray(s.chain.encode_query(q))
    mine, theirs = s.search(q, K, rescore=False)[0], raw.search(codes, K).keys  # warm-up, and same answers?
    best = {"vecx": float("inf"), "usearch": float("inf")}
    for _ in range(rounds):
        t = time.perf_counter()
        s.search(q, K, rescore=False)
        best["vecx"] = min(best["vecx"], time.perf_counter() - t)
        t = time.perf_counter()
        raw.search(codes, K)
        best["usearch"] = min(best["usearch"], time.perf_counter() - t)
    return {"vecx": len(q) / best["vecx"], "usearch": len(q) / best["usearch"],
            "same": float(np.mean(np.sort(mine, 1) == np.sort(theirs.astype(np.int64), 1)))}


def bench_set(ds: dict, repeat: int, work: str) -> dict:
    """Figures 1, 2 and 4 on one data set; leaves the vecx indexes in place."""
    d, res = ds["dir"], {"build": {}, "qps": {}, "recall": {}, "eval": {}}
    metric = {"cosine": "cos", "l2": "l2sq"}[ds["metric"]]
    for enc in ENCODINGS:
        log(f"{ds['name']} {enc}: build (figure 1)")
        index, raw = os.path.join(d, f"{enc}.vecx"), os.path.join(d, f"{enc}.raw.usearch")
        res["build"][enc] = interleaved({
            "vecx": ([*VECX, "index", os.path.join(d, f"{enc}.parquet"), "-o", index, "--rescore",
                      os.path.join(d, "f32.parquet"), "-q"], index),
            "usearch": ([PY, "-c", USEARCH_BUILD, os.path.join(d, f"{enc}.codes.npy"), metric, USEARCH[enc], raw],
                        raw)}, repeat, work)
        with open(os.path.join(index, "manifest.json")) as f:
            graph = json.load(f)["graph"]
        assert (graph["metric"], graph["dtype"]) == (metric, USEARCH[enc]), graph
        res["build"][enc]["bytes"] = {"vecx": sum(os.path.getsize(os.path.join(index, n)) for n in os.listdir(index)),
                                      "usearch": os.path.getsize(raw)}
        remove(raw)
        log(f"{ds['name']} {enc}: batch QPS (figure 2), recall (figure 4)")
        res["qps"][enc] = qps(index, ds["queries"], 5 * repeat)
        res["recall"][enc] = [vecx_recall(index, ds["queries"], f, ds["truth"]) for f in (1, 4, 10)]
        report = json.loads(vecx("eval", index, "--queries", ds["queries"], "--json", "-q", capture=True))
        res["eval"][enc] = {"bytes": report["bytes_per_vector"],
                            **{s["stage"]: s.get("recall@10") for s in report["stages"]}}
    log(f"{ds['name']}: faiss peers (figure 4)")
    res["faiss"] = faiss_recalls(ds)
    return res


def single_query(ds: dict, repeat: int, work: str) -> dict:
    """Figure 3 on the synthetic set: one query through the CLI vs a bare usearch script, warm and cold."""
    q = np.load(ds["queries"])[0]
    one = os.path.join(ds["dir"], "one.npy")
    np.save(one, q)
    from vecx.indexes.hnsw import Searcher
    out = {}
    for enc in ("i8", "f16"):
        index = os.path.join(ds["dir"], f"{enc}.vecx")
        codes = os.path.join(ds["dir"], f"one.{enc}.npy")
        np.save(codes, Searcher(index).chain.encode_query(q.reshape(1, -1))[0])
        cmds = {"vecx": ([*VECX, "query", index, "--vector", one, "-k", str(K), "--rescore", "1"], None),
                "usearch": ([PY, "-c", USEARCH_ONE, os.path.join(os.path.realpath(index), "graph.usearch"), codes],
                            None)}
        log(f"{ds['name']} {enc}: single query, warm (figure 3)")
        interleaved(cmds, 1, work)  # warm the page cache
        out[enc] = {"warm": interleaved(cmds, 5, work)}
        if drop_caches():
            log(f"{ds['name']} {enc}: single query, cold")
            out[enc]["cold"] = interleaved(cmds, repeat, work, cold=True)
    return out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def machine() -> str:
    import faiss
    import usearch
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return table(["nproc", "CPU", "RAM", "load avg (1/5/15 min)", "python", "numpy", "usearch", "faiss"],
                 [[NCPU, cpu, f"{mem:.0f} GiB", " / ".join(f"{v:.1f}" for v in os.getloadavg()),
                   platform.python_version(), np.__version__, usearch.__version__, faiss.__version__]])


def render(args: argparse.Namespace, cmdline: str, sets: list[dict], results: dict, single: dict | None) -> str:
    rep = args.repeat
    out = ["## Index, query and eval (issue 3)", "", f"Command: `{cmdline}`", "",
           "Data sets: " + ", ".join(f"{d['name']} ({d['metric']})" for d in sets) + ". Encodings: f32 (the imported "
           "table), `f16`, `int8:mode=global` (i8). Graphs: connectivity 16, expansion add 128, search 64. "
           f"Timings are the best of {rep} alternating vecx / peer runs unless stated.", "", machine(), ""]

    rows = []
    for name, res in results.items():
        for enc, b in res["build"].items():
            r = b["vecx"]["s"] / b["usearch"]["s"]
            rows.append([name, enc, f"{b['vecx']['s']:.2f}", f"{b['usearch']['s']:.2f}", f"{r:.2f}x", "<= 1.1x",
                         verdict(r <= 1.1), f"{b['vecx']['rss']:.0f} / {b['usearch']['rss']:.0f}",
                         f"{b['bytes']['vecx'] / 2**20:.0f} / {b['bytes']['usearch'] / 2**20:.0f}"])
    out += ["### 1. Build: `vecx index` vs raw usearch", "",
            "vecx: `vecx index X.parquet -o X.vecx --rescore f32.parquet -q` (CLI subprocess: reads Parquet, "
            "writes graph, rows.parquet, rescore.npy, manifest). usearch: a subprocess that np.loads the same "
            "codes (the table's `vector` column saved as .npy) and runs `Index(...).add(keys, codes)` + `save`. "
            "Both multi-threaded (threads=0); outputs deleted and `sync`ed before each run.", "",
            table(["data set", "enc", "vecx (s)", "usearch (s)", "vecx / usearch", "target", "result",
                   "peak RSS MB vecx / usearch", "output MB vecx / usearch"], rows), ""]

    rows = []
    for name, res in results.items():
        for enc, v in res["qps"].items():
            r = v["vecx"] / v["usearch"]
            rows.append([name, enc, f"{v['vecx']:,.0f}", f"{v['usearch']:,.0f}", f"{r:.2f}x", ">= 0.9x",
                         verdict(r >= 0.9), f"{v['same']:.4f}"])
    out += ["### 2. Batch query throughput (library, one process)", "",
            f"{NQ} queries, k={K}, one call each, best of {5 * rep} alternating rounds (each round is short). "
            "vecx: `Searcher(X.vecx).search(q, 10, rescore=False)` (includes encoding the raw queries through "
            "the chain and ranking). usearch: `Index.restore(graph.usearch, view=True).search(codes, 10)` on the "
            "same file with the codes vecx's chain produced (expansion_search 64). 'same' = fraction of "
            "identical result rows.", "",
            table(["data set", "enc", "vecx QPS", "usearch QPS", "vecx / usearch", "target", "result", "same"],
                  rows), ""]

    out += ["### 3. One query from the command line", ""]
    if single is None:
        out += ["(--synthetic-rows 0: skipped; it needs the synthetic index.)", ""]
    else:
        rows, cold_missing = [], False
        for enc, s in single.items():
            for mode in ("warm", "cold"):
                if mode not in s:
                    cold_missing = True
                    continue
                v, u = s[mode]["vecx"]["s"], s[mode]["usearch"]["s"]
                runs = "best of 5" if mode == "warm" else f"best of {rep}, caches dropped before each run"
                rows.append([enc, f"{mode} ({runs})", f"{v:.3f}", f"{u:.3f}", f"{v / u:.2f}x", "<= 1.3x",
                             verdict(v / u <= 1.3)])
        out += [f"Synthetic {args.synthetic_rows:,}-row index. vecx: `vecx query X.vecx --vector one.npy -k 10 "
                "--rescore 1` (one 1-D query). Peer: `python -c` importing usearch + numpy, "
                "`Index.restore(graph.usearch, view=True)`, one search with the pre-encoded query. Wall time "
                "of each subprocess; warm = after one untimed run of each.", "",
                table(["enc", "page cache", "vecx (s)", "bare usearch (s)", "vecx / usearch", "target", "result"],
                      rows), ""]
        if cold_missing:
            out += ["Cold cache: not measured — writing /proc/sys/vm/drop_caches is not permitted here.", ""]

    out += ["### 4. Recall@10", "",
            "vecx: recall of `vecx query X.vecx --vector queries.npy -k 10 --rescore R` (CLI JSONL output; ids are "
            "row numbers) for R = 1 (no rescoring), 4, 10. eval columns: `vecx eval X.vecx --queries queries.npy "
            "--json` (its own exact truth from the rescoring vectors; rescored stage at the index default x4). "
            "faiss: IndexHNSWFlat(M 16, efConstruction 128, efSearch max(64, candidates)) on the float vectors "
            "(normalized, inner product, for cosine sets) and IndexBinaryFlat on `packbits(x > 0)`; x4 / x10 = take "
            "40 / 100 candidates, rescore with float32 by the set's metric, keep 10. Truth: first 10 columns of "
            "gt.npy, or `vecx truth -k 10` for the synthetic set. bytes/vec counts the codes only.", ""]
    for ds in sets:
        res = results[ds["name"]]
        rows = []
        for enc, (r1, r4, r10) in res["recall"].items():
            e = res["eval"][enc]
            stage = next((v for s, v in e.items() if s.startswith("graph + rescore")), "")
            rows.append([f"vecx {enc}", e["bytes"], f"{r1:.4f}", f"{r4:.4f}", f"{r10:.4f}",
                         e.get("codes, exact", ""), e.get("graph", ""), stage])
        rows += [[*r, "", "", ""] for r in res["faiss"]]
        out += [f"**{ds['name']}** ({ds['metric']})", "",
                table(["system", "bytes/vec", "recall@10", "rescored x4", "rescored x10", "eval: codes exact",
                       "eval: graph", "eval: graph + rescore x4"], rows), ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(SETS), help="comma-separated, from: " + ", ".join(SETS))
    ap.add_argument("--synthetic-rows", type=int, default=1_000_000, help="synthetic 384-d rows; 0 disables")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke test: debian-minilm-30k, 100000 synthetic rows, repeat 1")
    ap.add_argument("--work", help="work directory (default: a temporary directory, removed at the end)")
    ap.add_argument("--out", help="write the Markdown section here (default: stdout)")
    args = ap.parse_args()
    if args.quick:
        args.datasets, args.synthetic_rows, args.repeat = "debian-minilm-30k", 100_000, 1
    names = [n for n in args.datasets.split(",") if n]
    for n in names:
        if n not in SETS:
            ap.error(f"unknown data set {n!r}; choose from {', '.join(SETS)}")
    cmdline = "python " + shlex.join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    work = args.work or tempfile.mkdtemp(prefix="vecx-bench-index-", dir="/tmp")
    os.makedirs(work, exist_ok=True)
    made = set(os.listdir(work))
    try:
        sets, results, single = [], {}, None
        todo = [(n, SETS[n], 0) for n in names]
        if args.synthetic_rows:
            todo.append((f"synthetic-{args.synthetic_rows:,}", "cosine", args.synthetic_rows))
        for name, metric, rows in todo:
            ds = prepare(name, metric, work, rows)
            sets.append(ds)
            results[name] = bench_set(ds, args.repeat, work)
            if rows:
                single = single_query(ds, args.repeat, work)
            shutil.rmtree(ds["dir"])
        md = render(args, cmdline, sets, results, single)
    finally:
        for name in set(os.listdir(work)) - made:
            path = os.path.join(work, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(md + "\n")
        log(f"wrote {args.out}")
    else:
        print(md)


if __name__ == "__main__":
    main()
