"""Foundation benchmark: vecx I/O, memory, ground truth and startup against peers.

Every figure is a ratio against a peer measured in the same run (the machine is shared
and noisy), and every timing is the best of ``--repeat`` runs. All commands, vecx and
peers alike, run as subprocesses so both pay interpreter start-up; each runs inside a
fresh wrapper process that reports its wall time, its peak RSS (``ru_maxrss`` of
RUSAGE_CHILDREN, which for a fresh wrapper is exactly that one child) and a sampled
peak of anonymous RSS (``RssAnon``: excludes memory-mapped file pages).

  1. ``vecx import`` / ``vecx truncate --dim 64`` vs bare pyarrow writing / re-writing
     the same table (target <= 1.3x).
  2. Peak RSS of those commands at --rows and --rows-large (target < 1 GB, flat in rows).
  3. ``vecx truth -k 100`` for 1,000 queries vs faiss IndexFlatIP, both including
     loading the data (target <= 1.2x), plus recall of vecx's rows against faiss.
  4. ``vecx --help`` and ``vecx info`` wall time (target < 0.3 s).

Data: float32, dim 384, numpy default_rng(0) standard normal, rows L2-normalized (.npy).

    python tests/benchmarks/bench_foundation.py --quick
    python tests/benchmarks/bench_foundation.py --out bench.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pyarrow.parquet as pq
from _harness import NCPU, PY, VECX, command_line, interleaved, log, machine, table, verdict

DIM, NQ, K, BATCH = 384, 1000, 100, 16384

BARE_IMPORT = r"""
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq
src, dst, batch, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
x = np.load(src, mmap_mode="r")
schema = pa.schema([pa.field("id", pa.int64(), nullable=False),
                    pa.field("vector", pa.list_(pa.float32(), x.shape[1]), nullable=False)])
kw = {} if mode == "defaults" else {"use_dictionary": ["id"], "write_statistics": ["id"]}
with pq.ParquetWriter(dst, schema, compression="snappy", **kw) as w:
    for s in range(0, len(x), batch):
        c = np.ascontiguousarray(x[s:s + batch])
        vec = pa.FixedSizeListArray.from_arrays(pa.array(c.reshape(-1)), x.shape[1])
        w.write_batch(pa.record_batch([pa.array(np.arange(s, s + len(c))), vec], schema=schema))
"""

BARE_REWRITE = r"""
import sys, pyarrow.parquet as pq
src, dst, batch, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
f = pq.ParquetFile(src) if mode == "defaults" else pq.ParquetFile(src, pre_buffer=False)
kw = {} if mode == "defaults" else {"use_dictionary": ["id"], "write_statistics": ["id"]}
with pq.ParquetWriter(dst, f.schema_arrow, compression="snappy", **kw) as w:
    for b in f.iter_batches(batch_size=batch):
        w.write_batch(b)
"""

FAISS_TRUTH = r"""
import json, sys, time, numpy as np, faiss
base, queries, k, nthreads, out_i, out_t = sys.argv[1:7]
faiss.omp_set_num_threads(int(nthreads))
x = np.load(base); q = np.load(queries)
index = faiss.IndexFlatIP(x.shape[1]); index.add(x)
t = time.perf_counter(); D, I = index.search(q, int(k)); search = time.perf_counter() - t
np.save(out_i, I); open(out_t, "a").write(f"{search}\n")
"""


def make_matrix(path: str, rows: int, seed: int) -> None:
    """Unit-norm float32 standard normal rows, written in chunks (memory stays small)."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, DIM))
    for s in range(0, rows, 65536):
        x = rng.standard_normal((min(65536, rows - s), DIM), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:s + len(x)] = x
    out.flush()
    del out


def io_round(rows: int, repeat: int, work: str, defaults: bool) -> dict[str, dict]:
    """Figure 1 (and the memory of figure 2) at one size: import and truncate, vecx vs bare.

    Peers: bare pyarrow with vecx's own writer options (no dictionary/statistics on the
    vector column; Parquet read without pre-buffering), and, if ``defaults``, with pyarrow's defaults.
    """
    x, xp, xt = (os.path.join(work, f"x{rows}{ext}") for ext in (".npy", ".parquet", ".t64.parquet"))
    bp, bt = os.path.join(work, f"bare{rows}.parquet"), os.path.join(work, f"bare{rows}.t.parquet")
    log(f"generating {rows:,} x {DIM} base")
    make_matrix(x, rows, 0)
    imp = {"vecx import": ([*VECX, "import", x, "-o", xp, "-q"], xp),
           "bare import": ([PY, "-c", BARE_IMPORT, x, bp, str(BATCH), "vecx-options"], bp)}
    trunc = {"vecx truncate": ([*VECX, "truncate", xp, "-o", xt, "--dim", "64", "-q"], xt),
             "bare rewrite": ([PY, "-c", BARE_REWRITE, xp, bt, str(BATCH), "vecx-options"], bt)}
    if defaults:
        imp["bare import (defaults)"] = ([PY, "-c", BARE_IMPORT, x, bp, str(BATCH), "defaults"], bp)
        trunc["bare rewrite (defaults)"] = ([PY, "-c", BARE_REWRITE, xp, bt, str(BATCH), "defaults"], bt)
    log(f"import at {rows:,} rows")
    out = interleaved(imp, repeat, work)
    log(f"truncate at {rows:,} rows")
    out.update(interleaved(trunc, repeat, work))
    for path in (xp, xt, bp, bt):
        if os.path.exists(path):
            out.setdefault("_bytes", {})[os.path.basename(path)] = os.path.getsize(path) / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rows-large", type=int, default=4_000_000, help="second size for the RSS check; 0 disables")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke test: 100000 rows, no large run, repeat 1")
    ap.add_argument("--work", help="work directory (default: a temporary directory, removed at the end)")
    ap.add_argument("--out", help="write the Markdown section here (default: stdout)")
    ap.add_argument("--startup-only", action="store_true", help="only figure 4 (start-up), on a 1,000-row table")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.rows_large, args.repeat = 100_000, 0, 1
    cmdline = command_line()
    work = args.work or tempfile.mkdtemp(prefix="vecx-bench-", dir="/tmp")
    os.makedirs(work, exist_ok=True)
    made = set(os.listdir(work))
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")
    try:
        if args.startup_only:
            x, xp = os.path.join(work, "small.npy"), os.path.join(work, "small.parquet")
            make_matrix(x, 1000, 0)
            subprocess.run([*VECX, "import", x, "-o", xp, "-q"], check=True)
            md = "\n".join([f"Command: `{cmdline}`", "", machine(), "", *startup_section(startup(xp, work))])
        else:
            md = run(args, work, cmdline)
    finally:
        for name in set(os.listdir(work)) - made:
            path = os.path.join(work, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(md)
        log(f"wrote {args.out}")
    else:
        print(md)


def run(args: argparse.Namespace, work: str, cmdline: str) -> str:
    n, rep = args.rows, args.repeat
    small = io_round(n, rep, work, defaults=True)
    large = None
    if args.rows_large:
        large = io_round(args.rows_large, 1, work, defaults=False)
        for f in os.listdir(work):
            if f.startswith((f"x{args.rows_large}.", f"bare{args.rows_large}.")):
                os.unlink(os.path.join(work, f))

    log(f"truth: {NQ} queries x {n:,} base, k={K}")
    base, qs = os.path.join(work, f"x{n}.npy"), os.path.join(work, "queries.npy")
    make_matrix(qs, NQ, 1)
    gt, fi, ft = (os.path.join(work, p) for p in ("gt.parquet", "faiss_I.npy", "faiss_t.txt"))
    tr = interleaved({"vecx truth": ([*VECX, "truth", base, "--queries", qs, "-o", gt, "-k", str(K), "-q"], gt),
                      "faiss": ([PY, "-c", FAISS_TRUTH, base, qs, str(K), str(NCPU), fi, ft], fi)}, rep, work)
    with open(ft) as f:
        faiss_search = min(float(line) for line in f)
    got = np.asarray(pq.read_table(gt, columns=["rows"]).column("rows").combine_chunks().flatten()).reshape(-1, K)
    want = np.load(fi)
    recall = np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(got, want, strict=True)])

    st = startup(os.path.join(work, f"x{n}.parquet"), work)

    out = ["## Reading, writing, ground truth and start-up", "", f"Command: `{cmdline}`", "",
           f"Data: {n:,} x {DIM} float32 unit-norm rows (default_rng(0) standard normal); "
           f"best of {rep} runs, each a subprocess (interpreter start included).", "", machine(), ""]

    out += ["### 1. Import and truncate vs bare pyarrow", "",
            f"Bare import: np.load(mmap) -> FixedSizeListArray (+ int64 id column) in {BATCH}-row batches -> "
            "ParquetWriter(snappy). Bare rewrite: ParquetFile.iter_batches -> ParquetWriter(snappy) of the "
            "full 384-d table (no transform). The target is judged against the bare peer given vecx's own "
            "writer options (dictionary and statistics only on `id`; reads with pre_buffer=False); "
            "pyarrow's defaults (dictionary attempted on the float column, pre-buffered reads) are shown "
            "for reference. Every output is deleted and `sync`ed before each run.", ""]
    rows = []
    for v, b, what in (("vecx import", "bare import", "import .npy -> .parquet"),
                       ("vecx truncate", "bare rewrite", "truncate --dim 64 vs read+write")):
        r, d = small[v]["s"] / small[b]["s"], small[f"{b} (defaults)"]["s"]
        rows.append([what, f"{small[v]['s']:.2f}", f"{small[b]['s']:.2f}", f"{r:.2f}x",
                     f"{d:.2f}", f"{small[v]['s'] / d:.2f}x", "<= 1.3x", verdict(r <= 1.3)])
    out += [table(["step", "vecx (s)", "bare, vecx options (s)", "vecx / bare", "bare, pyarrow defaults (s)",
                   "vecx / defaults", "target", "result"], rows), ""]
    sizes = ", ".join(f"{k} {v:.0f} MB" for k, v in small["_bytes"].items() if k.startswith("x"))
    out += [f"vecx output sizes: {sizes}.", ""]

    out += ["### 2. Peak RSS", "",
            "Peak RSS = ru_maxrss of the child (includes resident pages of memory-mapped input files); "
            "anon = sampled peak RssAnon (heap only, every 20 ms).", ""]
    rows = []
    for v, b in (("vecx import", "bare import"), ("vecx truncate", "bare rewrite")):
        for size, res in ((n, small), (args.rows_large, large)):
            if not res:
                continue
            flat = large is None or large[v]["rss"] <= 1.25 * small[v]["rss"] + 64
            ok = res[v]["rss"] < 1024 and flat
            rows.append([v, f"{size:,}", f"{res[v]['rss']:.0f}", f"{res[v]['anon']:.0f}",
                         f"{res[b]['rss']:.0f}", f"{res[b]['anon']:.0f}", f"{res[v]['s']:.2f}",
                         "< 1024 MB" + (", flat" if large else ""), verdict(ok)])
    out += [table(["command", "rows", "vecx peak RSS (MB)", "vecx anon (MB)", "bare peak RSS (MB)",
                   "bare anon (MB)", "vecx time (s)", "target", "result"], rows), ""]
    if not large:
        out += ["(--rows-large 0: growth with rows not checked.)", ""]

    r = tr["vecx truth"]["s"] / tr["faiss"]["s"]
    out += ["### 3. Ground truth vs faiss", "",
            f"{NQ} queries (default_rng(1), unit-norm) x {n:,} base, k={K}, cosine; faiss IndexFlatIP with "
            f"omp_set_num_threads({NCPU}); faiss time includes np.load of both files and index.add.", "",
            table(["vecx truth (s)", "faiss load+add+search (s)", "faiss search only (s)", "vecx / faiss",
                   "target", "result", f"recall@{K} of vecx rows vs faiss I"],
                  [[f"{tr['vecx truth']['s']:.2f}", f"{tr['faiss']['s']:.2f}", f"{faiss_search:.2f}",
                    f"{r:.2f}x", "<= 1.2x", verdict(r <= 1.2), f"{recall:.4f}"]]),
            "", f"Peak RSS: vecx truth {tr['vecx truth']['rss']:.0f} MB, faiss {tr['faiss']['rss']:.0f} MB.", ""]

    out += startup_section(st)
    return "\n".join(out)


def startup(table_path: str, work: str) -> dict[str, dict]:
    """Figure 4: wall time of ``vecx --help`` and ``vecx info TABLE``, beside bare interpreters."""
    log("startup: --help and info (best of 5)")
    return interleaved({"vecx --help": ([*VECX, "--help"], None), "vecx info": ([*VECX, "info", table_path], None),
                        "python -c pass": ([PY, "-c", "pass"], None),
                        "python -c 'import pyarrow.parquet'": ([PY, "-c", "import pyarrow.parquet"], None)}, 5, work)


def startup_section(st: dict[str, dict]) -> list[str]:
    base_s = st["python -c pass"]["s"]
    return ["### 4. Start-up latency (best of 5)", "",
            "Bytecode caching on (PYTHONPYCACHEPREFIX in the work directory), as for an installed package: "
            "with PYTHONDONTWRITEBYTECODE set, an editable install would recompile vecx on every start.", "",
            table(["command", "wall (s)", "vs `python -c pass`", "target", "result"],
                  [[f"`{c}`", f"{st[c]['s']:.3f}", f"{st[c]['s'] / base_s:.2f}x",
                    "< 0.3 s" if c.startswith("vecx") else "(peer)",
                    verdict(st[c]["s"] < 0.3) if c.startswith("vecx") else ""] for c in st]), ""]


if __name__ == "__main__":
    main()
