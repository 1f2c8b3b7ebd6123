"""Segmented index benchmark: append against a full rebuild, compact, and queries over segments.

On the synthetic N-row set of bench_index.py (384-d, text-embedding-like, seeded) plus 10% more
rows from the same model:

  1. ``vecx index NEW -o I --append`` of the 10% (the imported float vectors, encoded by the
     index's int8 chain on the way in and kept as rescoring vectors) vs ``vecx index ALL``, the
     full rebuild of the same rows (target: append <= 15% of the rebuild's time).
  2. recall@10 of the appended (2-segment) index vs the rebuilt one, from ``vecx eval`` on the same
     1,000 queries (target: within 0.005), and after ``vecx compact`` (target: equal).
  3. A 4-segment index of the same rows (the N-row base and the 10% appended in three parts,
     ``--no-auto-merge``) vs the one-segment rebuild: single-query latency in one process
     (``Searcher.search`` of one query, 300 queries, the indexes alternating in rounds; target
     <= 1.5x) and recall@10 (target: within 0.01). The same three appends with the default
     merge policy give a 3-segment index, measured beside it.

    python tests/benchmarks/bench_segments.py --rows 1000000 --out /tmp/bench/segments.md
    python tests/benchmarks/bench_segments.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from statistics import median

import numpy as np
from _harness import VECX, command_line, log, machine, measure, publish, table, verdict
from bench_index import synthetic_rows

NQ, K = 1000, 10
SPEC = "int8:mode=global"


def vecx(*args: str) -> str:
    """Run a vecx command (not timed) and return its stdout."""
    return subprocess.run([*VECX, *args], check=True, stdout=subprocess.PIPE, text=True).stdout


def timed(*args: str, work: str) -> dict[str, float]:
    """Run a vecx command once in a fresh wrapper process: wall seconds and peak memory."""
    os.sync()
    return measure([*VECX, *args], work)


def recall(index: str, queries: str) -> dict[str, float]:
    """recall@10 of the graph and of the graph rescored x4, from ``vecx eval`` (its own exact truth)."""
    stages = json.loads(vecx("eval", index, "--queries", queries, "-k", str(K), "--json"))["stages"]
    return {s["stage"]: s[f"recall@{K}"] for s in stages}


def split(base: str, rows: int, extra: int, work: str) -> dict[str, str]:
    """The N base rows and the extra rows as .npy files: all of them, the base, the extra, and the
    extra in three parts, each with integer ids from its global row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.load(base, mmap_mode="r")
    out = {}
    parts = {"all": (0, rows + extra), "base": (0, rows), "new": (rows, rows + extra)}
    third = extra // 3
    for i in range(3):
        parts[f"new{i}"] = (rows + i * third, rows + extra if i == 2 else rows + (i + 1) * third)
    for name, (lo, hi) in parts.items():
        src = os.path.join(work, f"{name}.src.parquet")
        writer = None
        for s in range(lo, hi, 65536):
            e = min(hi, s + 65536)
            block = np.ascontiguousarray(x[s:e])
            table_ = pa.table({"id": np.arange(s, e, dtype=np.int64),
                               "vector": pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), block.shape[1])})
            if writer is None:
                writer = pq.ParquetWriter(src, table_.schema)
            writer.write_table(table_)
        assert writer is not None
        writer.close()
        out[name] = os.path.join(work, f"{name}.parquet")
        vecx("import", src, "-o", out[name], "-q")
        os.remove(src)
    return out


def latency(paths: dict[str, str], q: np.ndarray, rounds: int) -> dict[str, dict[str, float]]:
    """Per-query ms of one-query searches, the indexes alternating round by round (median per round)."""
    from vecx.indexes.search import Searcher

    searchers = {name: Searcher(path) for name, path in paths.items()}
    per: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for s in searchers.values():  # warm: the pages of the graphs and vectors the queries touch
            for i in range(len(q)):
                s.search(q[i: i + 1], K)
        for r in range(rounds):
            order = list(searchers.items()) if r % 2 == 0 else list(searchers.items())[::-1]
            for name, s in order:
                times = []
                for i in range(len(q)):
                    t = time.perf_counter()
                    s.search(q[i: i + 1], K)
                    times.append(time.perf_counter() - t)
                per[name].append(median(times) * 1e3)
    finally:
        for s in searchers.values():
            s.close()
    return {name: {"ms": min(v), "runs": v} for name, v in per.items()}


def run(args: argparse.Namespace, work: str) -> str:
    rows, extra = args.rows, args.rows // 10
    log(f"generating {rows + extra:,} x 384 rows and {NQ} queries")
    base, queries = os.path.join(work, "x.npy"), os.path.join(work, "q.npy")
    synthetic_rows(base, rows + extra, 0)
    synthetic_rows(queries, NQ, 1)
    tables = split(base, rows, extra, work)
    os.remove(base)
    log("fitting the int8 state on the base rows, encoding")
    state = os.path.join(work, "i8.state")
    vecx("fit", tables["base"], "--spec", SPEC, "-o", state, "-q")
    for name in ("all", "base"):
        vecx("encode", tables[name], "--state", state, "-o", tables[name].replace(".parquet", ".i8.parquet"), "-q")
    idx = {name: os.path.join(work, f"{name}.vecx") for name in ("full", "grown", "four", "auto")}
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    log("full build of every row")
    full = timed("index", tables["all"].replace(".parquet", ".i8.parquet"), "-o", idx["full"], "--rescore-vectors",
                 tables["all"], "-q", work=work)
    log(f"  {full['s']:.1f} s; base build")
    base_build = timed("index", tables["base"].replace(".parquet", ".i8.parquet"), "-o", idx["grown"],
                       "--rescore-vectors", tables["base"], "-q", work=work)
    for copy in ("four", "auto"):
        subprocess.run(["cp", "-a", idx["grown"], idx[copy]], check=True)
        subprocess.run(["cp", "-a", os.path.join(work, ".grown.vecx.d"), os.path.join(work, f".{copy}.vecx.d")],
                       check=True)
        os.remove(idx[copy])
        os.symlink(os.path.join(f".{copy}.vecx.d", os.path.basename(os.readlink(idx["grown"]))), idx[copy])
    log(f"  {base_build['s']:.1f} s; append of the 10%")
    append = timed("index", tables["new"], "-o", idx["grown"], "--append", "-q", work=work)
    log(f"  {append['s']:.1f} s; three appends, with and without merging")
    appends = [timed("index", tables[f"new{i}"], "-o", idx["four"], "--append", "--no-auto-merge", "-q", work=work)
               for i in range(3)]
    merged_appends = [timed("index", tables[f"new{i}"], "-o", idx["auto"], "--append", "-q", work=work)
                      for i in range(3)]
    auto_segments = [s["rows"] for s in json.loads(vecx("info", idx["auto"], "--json"))["vecx"]["segments"]]
    uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    log("recall")
    r_full, r_grown, r_four, r_auto = (recall(idx[n], queries) for n in ("full", "grown", "four", "auto"))
    log("latency")
    q = np.load(queries)[: args.latency_queries]
    lat = latency({"full": idx["full"], "four": idx["four"], "auto": idx["auto"]}, q, args.rounds)
    ratios = [a / b for a, b in zip(lat["four"]["runs"], lat["full"]["runs"], strict=True)]
    auto_ratios = [a / b for a, b in zip(lat["auto"]["runs"], lat["full"]["runs"], strict=True)]
    log("compact")
    compact = timed("compact", idx["grown"], "-q", work=work)
    r_compact = recall(idx["grown"], queries)
    uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    rescored, graph = "graph + rescore x4", "graph"
    app_ratio = append["s"] / full["s"]
    loads = " / ".join(u.split("load average:")[-1].strip() for u in uptime)
    out = [f"Rows: {rows:,} base + {extra:,} appended (synthetic, 384-d, cosine); chain `{SPEC}` fitted on the base "
           "rows, float32 rescoring vectors.", "", machine(), "",
           f"Load (`uptime`) before, after the builds, at the end: {loads}", ""]
    def mem(m: dict[str, float]) -> str:
        return f"{m['rss']:.0f} / {m['anon']:.0f}"

    out += [table(["step", "seconds", "peak RSS / anon MB", "ratio to the full rebuild", "target", "verdict"], [
        ["full rebuild (`vecx index ALL --rescore ALL`)", f"{full['s']:.1f}", mem(full), "1", "", ""],
        ["base build (`vecx index BASE`)", f"{base_build['s']:.1f}", mem(base_build),
         f"{base_build['s'] / full['s']:.2f}", "", ""],
        [f"append {extra:,} rows (`vecx index NEW --append`)", f"{append['s']:.1f}", mem(append),
         f"{app_ratio:.3f}", "<= 0.15", verdict(app_ratio <= 0.15)],
        ["three appends of a third each (`--no-auto-merge`)", " + ".join(f"{a['s']:.1f}" for a in appends),
         mem(max(appends, key=lambda a: a["rss"])), f"{sum(a['s'] for a in appends) / full['s']:.3f}", "", ""],
        ["the same, merged as appends merge by default", " + ".join(f"{a['s']:.1f}" for a in merged_appends),
         mem(max(merged_appends, key=lambda a: a["rss"])),
         f"{sum(a['s'] for a in merged_appends) / full['s']:.3f}", "", ""],
        ["compact the appended index", f"{compact['s']:.1f}", mem(compact), f"{compact['s'] / full['s']:.2f}", "", ""],
    ]), "", "Peak RSS counts the memory-mapped pages of the graph and rescoring files a step reads; anon "
        "(RssAnon, sampled) is the memory the process itself holds.", ""]
    rows_ = []
    for name, r in (("full rebuild (1 segment)", r_full), ("appended (2 segments)", r_grown),
                    ("appended, compacted (1 segment)", r_compact), ("4 segments", r_four),
                    (f"{len(auto_segments)} segments (default merging)", r_auto)):
        d_graph, d_rescored = r[graph] - r_full[graph], r[rescored] - r_full[rescored]
        rows_.append([name, f"{r[graph]:.4f}", f"{r[rescored]:.4f}", f"{d_graph:+.4f}", f"{d_rescored:+.4f}"])
    header = ["index", f"recall@{K} graph", f"recall@{K} rescored x4", "vs rebuild, graph", "vs rebuild, rescored"]
    out += [table(header, rows_), ""]
    ok_grown = abs(r_grown[rescored] - r_full[rescored]) <= 0.005
    ok_compact = abs(r_compact[rescored] - r_full[rescored]) <= 0.005
    ok_four = abs(r_four[rescored] - r_full[rescored]) <= 0.01
    lat_ratio = median(ratios)
    out += [f"Recall targets: appended within 0.005 of the rebuild (rescored): {verdict(ok_grown)}; compacted: "
            f"{verdict(ok_compact)} (multi-threaded builds: a graph differs run to run; `--deterministic` "
            "compaction gives the rebuild's bytes, tested in tests/test_segments.py); 4 segments within 0.01: "
            f"{verdict(ok_four)}.", ""]
    out += [table(["index", "one query, ms (best round's median)", "ratio, median of rounds [range]", "target",
                   "verdict"], [
        ["1 segment", f"{lat['full']['ms']:.3f}", "1", "", ""],
        ["4 segments", f"{lat['four']['ms']:.3f}", f"{lat_ratio:.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]",
         "<= 1.5x", verdict(lat_ratio <= 1.5)],
        [f"{len(auto_segments)} segments (default merging: {' + '.join(f'{n:,}' for n in auto_segments)} rows)",
         f"{lat['auto']['ms']:.3f}",
         f"{median(auto_ratios):.2f}x [{min(auto_ratios):.2f}-{max(auto_ratios):.2f}]", "", ""],
    ]), ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="base rows (10%% more are appended)")
    ap.add_argument("--rounds", type=int, default=5, help="latency rounds")
    ap.add_argument("--latency-queries", type=int, default=300)
    ap.add_argument("--work", help="scratch directory (default: a temporary one)")
    ap.add_argument("--out", help="write the Markdown here")
    ap.add_argument("--quick", action="store_true", help="smoke test: 50,000 rows, 2 rounds")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.rounds, args.latency_queries = 50_000, 2, 100
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        text = run(args, work)
    publish(f"{text}\n\nCommand: `{command_line()}`\n", args.out)


if __name__ == "__main__":
    main()
