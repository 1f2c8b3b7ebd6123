"""Index benchmark: vecx index / query / eval against raw usearch and faiss.

The machine is shared and noisy: every figure is a ratio to a peer measured in the same run,
timings are the best of ``--repeat`` runs with vecx and peer runs alternating.

  1. ``vecx index`` (CLI) vs a script running usearch ``add`` + ``save`` on the same codes (<= 1.1x).
  2. Batch QPS in one process: ``Searcher.search(rescore=False)`` vs usearch on the same graph file (>= 0.9x).
  3. One ``vecx query`` (CLI) vs a script that restores the same graph and searches once (<= 1.3x).
  4. Recall@10 of f32 / f16 / int8:mode=global / binarize (b1) indexes, rescored x1 / x4 / x10, beside faiss
     IndexHNSWFlat and IndexBinaryFlat on sign bits, and ``vecx eval``'s per-stage recall.

Data: ../shared/data/{debian-minilm-30k, glove50-100k, sift128-images-30k} and a synthetic
N x 384 unit-norm set shaped like text embeddings (clusters with a decaying spectrum, see
``synthetic_rows``; queries from the same model, truth from ``vecx truth``).

    python tests/benchmarks/bench_index.py --quick
    python tests/benchmarks/bench_index.py --out bench-index.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from statistics import median

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _harness import (
    PY,
    VECX,
    command_line,
    drop_caches,
    interleaved,
    log,
    machine,
    paired_ratios,
    remove,
    table,
    verdict,
)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
SETS = {"debian-minilm-30k": "cosine", "glove50-100k": "cosine", "sift128-images-30k": "l2"}
# name -> vecx encode spec; the name is the usearch dtype. b1: sign bits after centring, Hamming graph.
ENCODINGS = {"f32": None, "f16": "f16", "i8": "int8:mode=global", "b1": "binarize"}
K, DIM, NQ = 10, 384, 1000
#: Rounds of the --rescore build, a side figure (the target is on the plain build, paired with usearch).
RESCORE_BUILD_ROUNDS = 3

# The peers: "build CODES.npy METRIC DTYPE OUT" (add + save) or "one GRAPH QUERY.npy" (restore a view, search once).
PEER = r"""
import sys, numpy as np
from usearch.index import Index
if sys.argv[1] == "build":
    x = np.load(sys.argv[2])
    ndim = x.shape[1] * (8 if sys.argv[4] == "b1" else 1)  # b1 codes are packed bytes
    g = Index(ndim=ndim, metric=sys.argv[3], dtype=sys.argv[4], connectivity=16, expansion_add=128,
              expansion_search=64)
    g.add(np.arange(len(x), dtype=np.uint64), x)
    g.save(sys.argv[5])
else:
    print(Index.restore(sys.argv[2], view=True).search(np.load(sys.argv[3]), 10).keys)
"""


def vecx(*args: str) -> str:
    """Run a vecx command (set-up, not timed) and return its stdout."""
    return subprocess.run([*VECX, *args], check=True, stdout=subprocess.PIPE, text=True).stdout


def synthetic_rows(path: str, rows: int, seed: int) -> None:
    """Unit-norm float32 rows shaped like text embeddings, written in chunks.

    Isotropic Gaussian rows in 384 dimensions are the worst case of every graph index (recall
    about 0.26 at 20k rows, with builds ten times slower) and like no real embedding. These rows
    are a mixture of 1,024 clusters whose spread decays with the dimension (scale i^-0.75 on a
    random basis), fixed by default_rng(0); ``seed`` draws the members (0: base, 1: queries).
    """
    model = np.random.default_rng(0)
    spectrum = (np.arange(1, DIM + 1) ** -0.75).astype(np.float32)
    basis = np.linalg.qr(model.standard_normal((DIM, DIM)))[0].astype(np.float32)
    centres = (model.standard_normal((1024, DIM)).astype(np.float32) * spectrum) @ basis.T
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, DIM))
    for s in range(0, rows, 65536):
        m = min(65536, rows - s)
        x = centres[rng.integers(0, 1024, m)]
        x += 0.5 * (rng.standard_normal((m, DIM)).astype(np.float32) * spectrum) @ basis.T
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()


def list_column(path: str, column: str) -> np.ndarray:
    """A fixed-size-list Parquet column as a 2-D array."""
    col = pq.read_table(path, columns=[column]).column(column).combine_chunks()
    if pa.types.is_fixed_size_binary(col.type):  # packed bits
        width = col.type.byte_width
        data = np.frombuffer(col.buffers()[1], dtype=np.uint8)[col.offset * width:(col.offset + len(col)) * width]
        return data.reshape(len(col), width)
    return col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1)


def prepare(name: str, metric: str, work: str, rows: int, encodings: list[str]) -> dict:
    """Import, encode, save each encoding's codes as .npy, and load the truth, in ``work/name``."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    base, queries = (os.path.join(d if rows else os.path.join(DATA, name), f) for f in ("base.npy", "queries.npy"))
    if rows:
        log(f"{name}: generating {rows:,} x {DIM} base and {NQ} queries")
        synthetic_rows(base, rows, 0)
        synthetic_rows(queries, NQ, 1)
    log(f"{name}: import, encode, truth")
    f32 = os.path.join(d, "f32.parquet")
    vecx("import", base, "-o", f32, "--metric", metric, "-q")
    for enc in encodings:
        spec = ENCODINGS[enc]
        if spec:
            vecx("encode", f32, "-o", os.path.join(d, f"{enc}.parquet"), "--spec", spec, "-q")
        np.save(os.path.join(d, f"{enc}.codes.npy"), list_column(os.path.join(d, f"{enc}.parquet"), "vector"))
    if rows:
        vecx("truth", f32, "--queries", queries, "-o", os.path.join(d, "gt.parquet"), "-k", str(K), "-q")
        truth = list_column(os.path.join(d, "gt.parquet"), "rows")[:, :K]
    else:
        truth = np.load(os.path.join(DATA, name, "gt.npy"))[:, :K]
    return {"name": name, "metric": metric, "dir": d, "base": base, "queries": queries, "truth": truth,
            "encodings": encodings}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f[:K], t[:K])) / K for f, t in zip(found, truth, strict=True)]))


def rescore(x: np.ndarray, q: np.ndarray, cand: np.ndarray, metric: str) -> np.ndarray:
    """Top-K of the candidate rows re-ranked by float32 cosine (x, q normalized) or squared L2."""
    v = x[cand]  # nq x m x d
    score = -((v - q[:, None, :]) ** 2).sum(-1) if metric == "l2" else np.einsum("nmd,nd->nm", v, q)
    return np.take_along_axis(cand, np.argsort(-score, axis=1, kind="stable")[:, :K], axis=1)


def faiss_recalls(ds: dict) -> list[list[object]]:
    """faiss IndexHNSWFlat on the float vectors and IndexBinaryFlat on sign bits, raw and rescored x4 / x10."""
    import faiss
    x, q = np.load(ds["base"]), np.load(ds["queries"])
    cos = ds["metric"] == "cosine"
    if cos:
        x, q = (a / np.linalg.norm(a, axis=1, keepdims=True) for a in (x, q))
    hnsw = faiss.IndexHNSWFlat(x.shape[1], 16, faiss.METRIC_INNER_PRODUCT if cos else faiss.METRIC_L2)
    hnsw.hnsw.efConstruction = 128
    hnsw.add(x)
    xbits, qbits = np.packbits(x > 0, axis=1), np.packbits(q > 0, axis=1)  # zero-padded to whole bytes
    binary = faiss.IndexBinaryFlat(8 * xbits.shape[1])
    binary.add(xbits)
    out = []
    for label, index, qq, nbytes in (("faiss IndexHNSWFlat", hnsw, q, 4 * x.shape[1]),
                                     ("faiss IndexBinaryFlat, sign bits", binary, qbits, xbits.shape[1])):
        row: list[object] = [label, nbytes]
        for factor in (1, 4, 10):
            if index is hnsw:
                hnsw.hnsw.efSearch = max(64, K * factor)  # as vecx: the expansion is never below the count
            cand = index.search(qq, K * factor)[1]
            row.append(f"{recall(cand if factor == 1 else rescore(x, q, cand, ds['metric']), ds['truth']):.4f}")
        out.append(row)
    return out


def vecx_recall(index: str, queries: str, factor: int, truth: np.ndarray) -> float:
    """Recall@K of ``vecx query --oversample factor`` (CLI, JSONL; the ids are row numbers)."""
    lines = vecx("query", index, "--vector", queries, "-k", str(K), "--oversample", str(factor), "--format", "jsonl",
                 "-q")
    return recall(np.array([[r["id"] for r in json.loads(line)["results"]] for line in lines.splitlines()]), truth)


def qps(index: str, queries: str, rounds: int) -> dict[str, float]:
    """Figure 2: batch QPS, vecx Searcher vs raw usearch on the same graph file and codes, in this process.

    Rounds alternate which of the two runs first; ``paired`` is the median over rounds of
    vecx QPS / usearch QPS within a round (the verdict, like figure 1's), QPS the best round.
    """
    from usearch.index import Index

    from vecx.indexes.search import Searcher
    s = Searcher(index)
    raw = Index.restore(os.path.join(os.path.realpath(index), "graph.usearch"), view=True)
    raw.expansion_search = 64
    q = np.load(queries)
    codes = np.ascontiguousarray(s.chain.encode_query(q))
    mine, theirs = s.search(q, K, rescore=False)[0], raw.search(codes, K).keys.astype(np.int64)  # warm-up
    calls = [("vecx", lambda: s.search(q, K, rescore=False)), ("usearch", lambda: raw.search(codes, K))]
    times: dict[str, dict[str, list[float]]] = {"vecx": {"runs": []}, "usearch": {"runs": []}}  # as interleaved()'s
    for r in range(rounds):
        for name, call in (calls if r % 2 == 0 else calls[::-1]):
            t = time.perf_counter()
            call()
            times[name]["runs"].append(time.perf_counter() - t)
    return {"vecx": len(q) / min(times["vecx"]["runs"]), "usearch": len(q) / min(times["usearch"]["runs"]),
            # vecx QPS / usearch QPS within a round = usearch seconds / vecx seconds
            "paired": median(paired_ratios(times["usearch"], times["vecx"])),
            "same": float(np.mean(np.sort(mine, 1) == np.sort(theirs, 1)))}


def bench_set(ds: dict, repeat: int, work: str, build_repeat: int, budget: float = 0.0, max_repeat: int = 0) -> dict:
    """Figures 1, 2 and 4 on one data set; leaves the vecx indexes in place."""
    d, res = ds["dir"], {"build": {}, "qps": {}, "recall": {}, "eval": {}}
    for enc in ds["encodings"]:
        metric = "hamming" if enc == "b1" else {"cosine": "cos", "l2": "l2sq"}[ds["metric"]]
        log(f"{ds['name']} {enc}: build (figure 1)")
        index, raw = os.path.join(d, f"{enc}.vecx"), os.path.join(d, f"{enc}.raw.usearch")
        plain = os.path.join(d, f"{enc}.plain.vecx")
        res["build"][enc] = interleaved({
            "vecx": ([*VECX, "index", os.path.join(d, f"{enc}.parquet"), "-o", index, "--rescore-vectors",
                      os.path.join(d, "f32.parquet"), "-q"], index, min(RESCORE_BUILD_ROUNDS, build_repeat)),
            # The same graph without the float rescoring copy: what raw usearch builds and writes.
            "plain": ([*VECX, "index", os.path.join(d, f"{enc}.parquet"), "-o", plain, "-q"], plain),
            "usearch": ([PY, "-c", PEER, "build", os.path.join(d, f"{enc}.codes.npy"), metric, enc, raw], raw)},
            build_repeat, work, budget=budget, max_repeat=max_repeat)
        remove(plain)
        with open(os.path.join(index, "manifest.json")) as f:
            graph = json.load(f)["graph"]
        assert (graph["metric"], graph["dtype"]) == (metric, enc), graph  # both built the same kind of graph
        res["build"][enc]["MB"] = (sum(os.path.getsize(os.path.join(index, n)) for n in os.listdir(index)) / 2**20,
                                   os.path.getsize(raw) / 2**20)
        remove(raw)
        log(f"{ds['name']} {enc}: batch QPS (figure 2), recall and eval (figure 4)")
        res["qps"][enc] = qps(index, ds["queries"], 5 * repeat)
        res["recall"][enc] = [vecx_recall(index, ds["queries"], f, ds["truth"]) for f in (1, 4, 10)]
        report = json.loads(vecx("eval", index, "--queries", ds["queries"], "--json", "-q"))
        res["eval"][enc] = [report["bytes_per_vector"], *(f"{s['recall@10']:.4f}" for s in report["stages"])]
    if ds.get("faiss", True):
        log(f"{ds['name']}: faiss peers (figure 4)")
    res["faiss"] = faiss_recalls(ds) if ds.get("faiss", True) else []
    return res


def single_query(ds: dict, repeat: int, work: str) -> dict:
    """Figure 3: one query through the CLI vs a bare usearch script, warm and (if permitted) cold."""
    from vecx.indexes.search import Searcher
    q = np.load(ds["queries"])[0]
    one = os.path.join(ds["dir"], "one.npy")
    np.save(one, q)
    out = {}
    for enc in [e for e in ds["encodings"] if e != "f32"]:
        index, codes = os.path.join(ds["dir"], f"{enc}.vecx"), os.path.join(ds["dir"], f"one.{enc}.npy")
        np.save(codes, Searcher(index).chain.encode_query(q.reshape(1, -1))[0])
        graph = os.path.join(os.path.realpath(index), "graph.usearch")
        cmds = {"vecx": ([*VECX, "query", index, "--vector", one, "-k", str(K), "--oversample", "1"], None),
                "usearch": ([PY, "-c", PEER, "one", graph, codes], None),
                "imports": ([PY, "-c", "import numpy, usearch.index, pyarrow.parquet"], None)}
        log(f"{ds['name']} {enc}: single query, warm (figure 3)")
        interleaved(cmds, 1, work)  # warm the page cache
        out[enc] = {"warm": interleaved(cmds, 5, work)}
        if drop_caches():
            log(f"{ds['name']} {enc}: single query, cold")
            out[enc]["cold"] = interleaved(cmds, repeat, work, cold=True)
    return out


def render(args: argparse.Namespace, cmdline: str, sets: list[dict], res: dict, single: dict | None) -> str:
    rep = args.repeat
    out = ["## Index build and query vs usearch and faiss", "", f"Command: `{cmdline}`", "",
           ("Data sets: " + ", ".join(f"{d['name']} ({d['metric']})" for d in sets) + ". Encodings: f32 (the imported "
            "table), `f16`, `int8:mode=global` (i8), `binarize` (b1: sign bits after centring, Hamming); "
            "graphs: connectivity 16, expansion add 128, search 64. "
            "Subprocesses run with bytecode caching on (PYTHONPYCACHEPREFIX), as an installed package would. "
            "The synthetic set is a seeded mixture of 1,024 clusters in 384-d with spread decaying as i^-0.75 "
            "(isotropic Gaussian rows would be the worst case of any graph and unlike any embedding); "
            f"encodings there: {args.synthetic_encodings}."),
           "", machine(), "", "### 1. Build: `vecx index` vs raw usearch", "",
           ("vecx --rescore: `vecx index X.parquet -o X.vecx --rescore f32.parquet -q` (reads Parquet; writes graph, "
            "rows, and rescore.npy, a float32 copy of every vector that usearch does not make). vecx: the same "
            "without --rescore, the like-for-like figure the target applies to. usearch: a script that np.loads the "
            "same codes (X.parquet's `vector` column), `add`s and "
            f"`save`s. Both threads=0; at least {args.build_repeat} rounds ({args.synthetic_build_repeat} on the "
            f"synthetic set, with none added), then more while the cell's rounds took under {args.build_budget:.0f} s "
            "in all, up to "
            f"{args.build_max_repeat} (column 'rounds': short builds are the noisiest, and elapsed time alone "
            "decides), "
            "each running the commands one after another (vecx --rescore only in the first "
            f"{RESCORE_BUILD_ROUNDS}), outputs deleted and `sync`ed before each run. "
            "Seconds are the best of the rounds. The verdict uses the median over rounds of vecx / usearch "
            "within a round: the two ran seconds apart, so a slow spell of this shared machine hits both, "
            "while the best-of ratio pairs runs that may be minutes apart (both shown; range in brackets). "
            "CPU s: user + system seconds of all threads, the work done whatever the wall clock did."), ""]
    rows = []
    for n, r in res.items():
        for enc, b in r["build"].items():
            within = paired_ratios(b["plain"], b["usearch"])
            mid, cpu = median(within), median(paired_ratios(b["plain"], b["usearch"], "cpu_runs"))
            rows.append([n, enc, len(within), f"{b['vecx']['s']:.2f}", f"{b['plain']['s']:.2f}",
                         f"{b['usearch']['s']:.2f}",
                         f"{b['vecx']['s'] / b['usearch']['s']:.2f}x", f"{b['plain']['s'] / b['usearch']['s']:.2f}x",
                         f"{mid:.2f}x ({min(within):.2f}-{max(within):.2f})", f"{cpu:.2f}x", "<= 1.1x",
                         verdict(mid <= 1.1), f"{b['vecx']['rss']:.0f} / {b['usearch']['rss']:.0f}",
                         "{:.0f} / {:.0f}".format(*b["MB"])])
    out += [table(["data set", "enc", "rounds", "vecx --rescore (s)", "vecx (s)", "usearch (s)",
                   "--rescore / usearch (best)", "vecx / usearch (best)", "vecx / usearch (median within rounds)",
                   "CPU s vecx / usearch (median)", "target", "result",
                   "peak RSS MB vecx --rescore / usearch", "output MB vecx --rescore / usearch"], rows), "",
            "### 2. Batch query throughput (library, one process)", "",
            (f"{NQ} queries, k={K}, one call each, {5 * rep} rounds, each timing both calls in alternating order: "
             "`Searcher(X.vecx).search(q, 10, rescore=False)` (encodes, searches, ranks) vs "
             "`Index.restore(graph.usearch, view=True).search(codes, 10)` on the same file and codes, expansion 64. "
             "QPS: the best round. The verdict uses the median over rounds of the within-round ratio, as in figure 1 "
             "(the best-of ratio is shown too). 'same' = fraction of identical result rows."), ""]
    rows = [[n, enc, f"{v['vecx']:,.0f}", f"{v['usearch']:,.0f}", f"{v['vecx'] / v['usearch']:.2f}x",
             f"{v['paired']:.2f}x", ">= 0.9x", verdict(v["paired"] >= 0.9), f"{v['same']:.4f}"]
            for n, r in res.items() for enc, v in r["qps"].items()]
    out += [table(["data set", "enc", "vecx QPS", "usearch QPS", "vecx / usearch (best)",
                   "vecx / usearch (median within rounds)", "target", "result", "same"], rows),
            "", "### 3. One query from the command line", ""]
    if single is None:
        out += ["(Skipped: it runs on the synthetic index, and this run built none.)", ""]
    else:
        rows = [[enc, "warm, best of 5" if mode == "warm" else f"cold, best of {rep}", f"{m['vecx']['s']:.3f}",
                 f"{m['usearch']['s']:.3f}", f"{m['vecx']['s'] / m['usearch']['s']:.2f}x", "<= 1.3x",
                 verdict(m["vecx"]["s"] <= 1.3 * m["usearch"]["s"]), f"{m['imports']['s']:.3f}"]
                for enc, s in single.items() for mode, m in s.items()]
        out += [(f"Synthetic {args.synthetic_rows:,}-row index: `vecx query X.vecx --vector one.npy -k 10 --rescore 1` "
                 "vs a `python -c` script (numpy + usearch) that restores graph.usearch as a view and searches the "
                 "pre-encoded query once; subprocess wall time. Warm: after one untimed run; cold: `sync; echo 3 > "
                 "/proc/sys/vm/drop_caches` before every run. Last column: `import numpy, usearch.index, "
                 "pyarrow.parquet` alone."), "",
                table(["enc", "page cache", "vecx (s)", "bare usearch (s)", "vecx / usearch", "target", "result",
                       "imports only (s)"], rows), ""]
        if not any("cold" in s for s in single.values()):
            out += ["Cold cache: not measured — writing /proc/sys/vm/drop_caches is not permitted here.", ""]
    out += ["### 4. Recall@10", "",
            ("vecx x1 / x4 / x10: `vecx query X.vecx --vector queries.npy -k 10 --rescore R` (CLI JSONL; ids are row "
             "numbers). eval: `vecx eval X.vecx --queries queries.npy --json` (own exact truth; rescored at the "
             "index's default x4; each recall@10 from a search for 10, expansion max(64, candidates)). faiss: "
             "IndexHNSWFlat (M 16, efConstruction 128, efSearch max(64, candidates)) on the float vectors "
             "(normalized + inner product for cosine) and IndexBinaryFlat on `packbits(x > 0)`; x4 / x10 = 40 / 100 "
             "candidates rescored in float32, top 10 kept. Truth: gt.npy[:, :10] or `vecx truth -k 10` (synthetic). "
             "bytes/vec: codes only."), ""]
    for ds in sets:
        r = res[ds["name"]]
        rows = [[f"vecx {enc}", r["eval"][enc][0], *(f"{x:.4f}" for x in rec), *r["eval"][enc][1:]]
                for enc, rec in r["recall"].items()]
        out += [f"**{ds['name']}** ({ds['metric']})", "",
                table(["system", "bytes/vec", "recall@10 (x1)", "x4", "x10", "eval: codes exact", "eval: graph",
                       "eval: graph + rescore x4"], rows + [[*f, "", "", ""] for f in r["faiss"]]), ""]
        if not ds.get("faiss", True):
            out += ["(faiss peers not run on this set: --no-synthetic-faiss.)", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(SETS), help="comma-separated, from: " + ", ".join(SETS))
    ap.add_argument("--synthetic-rows", type=int, default=1_000_000, help="synthetic 384-d rows; 0 disables")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--synthetic-encodings", default=",".join(ENCODINGS),
                    help="encodings on the synthetic set, from: " + ", ".join(ENCODINGS) +
                         " ('' = none: only the faiss recall peers run there)")
    ap.add_argument("--no-synthetic-faiss", action="store_true",
                    help="skip the faiss recall peers on the synthetic set (an HNSW build of minutes at 1M rows)")
    ap.add_argument("--build-repeat", type=int, default=7,
                    help="build rounds on the real sets (figure 1; seconds each, and the noisiest figure)")
    ap.add_argument("--build-budget", type=float, default=90.0,
                    help="on the real sets, more build rounds while a cell's rounds took under this many seconds")
    ap.add_argument("--build-max-repeat", type=int, default=21, help="at most this many build rounds (real sets)")
    ap.add_argument("--synthetic-build-repeat", type=int, default=1,
                    help="build runs on the synthetic set (minutes each at 1M rows; default 1)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: debian-minilm-30k, 100,000 synthetic rows, repeat 1")
    ap.add_argument("--work", help="parent of the temporary work directory (default /tmp)")
    ap.add_argument("--out", help="write the Markdown section here (default: stdout)")
    args = ap.parse_args()
    if args.quick:
        args.datasets, args.synthetic_rows, args.repeat, args.build_repeat = "debian-minilm-30k", 100_000, 1, 1
        args.build_budget = 0.0
    names = [n for n in args.datasets.split(",") if n]
    if set(names) - set(SETS):
        ap.error(f"unknown data set(s) {', '.join(sorted(set(names) - set(SETS)))}; choose from {', '.join(SETS)}")
    if {e for e in args.synthetic_encodings.split(",") if e} - set(ENCODINGS):
        ap.error(f"--synthetic-encodings: choose from {', '.join(ENCODINGS)}")
    cmdline = command_line()
    work = tempfile.mkdtemp(prefix="vecx-bench-index-", dir=args.work or "/tmp")  # removed at the end
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # vecx (editable) would otherwise recompile on every start
    os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")
    try:
        sets, results, single = [], {}, None
        todo = [(n, SETS[n], 0, list(ENCODINGS)) for n in names]
        if args.synthetic_rows:
            todo.append((f"synthetic-{args.synthetic_rows:,}", "cosine", args.synthetic_rows,
                         [e for e in args.synthetic_encodings.split(",") if e]))
        for name, metric, rows, encodings in todo:
            sets.append(prepare(name, metric, work, rows, encodings))
            sets[-1]["faiss"] = not (rows and args.no_synthetic_faiss)
            results[name] = bench_set(sets[-1], args.repeat, work,
                                      build_repeat=args.synthetic_build_repeat if rows else args.build_repeat,
                                      budget=0.0 if rows else args.build_budget,
                                      max_repeat=0 if rows else args.build_max_repeat)
            if rows and sets[-1]["encodings"]:
                single = single_query(sets[-1], args.repeat, work)
            shutil.rmtree(sets[-1]["dir"])
            md = render(args, cmdline, sets, results, single)
            if args.out:  # after every set: a long run cut short keeps what it measured
                with open(args.out, "w") as f:
                    f.write(md + "\n")
                log(f"wrote {args.out} ({len(sets)} of {len(todo)} sets)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.out:
        print(md)


if __name__ == "__main__":
    main()
