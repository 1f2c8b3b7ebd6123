"""Scale on one machine: a 10M-row dataset through import, RaBitQ, a sharded index and queries.

A seeded N x 128 float32 set (a mixture of 4,096 clusters with a decaying spectrum, like the
index benchmark's synthetic rows but 128-d), written as 16 raw Parquet parts (not committed;
generated here), then, each step a ``vecx`` command timed in a fresh wrapper process (wall
time, peak RSS, sampled peak anonymous RSS):

  1. ``vecx import raw/ -o imported/``       one vecx part per raw part
  2. ``vecx binarize imported -o rq/ --mode rabitq``   fitted once, encoded per part
  3. ``vecx truth imported q.npy -o gt.parquet -k 10``  exact truth, streamed
  4. ``vecx index rq -o scale.vecx --shards 4 --rescore imported``
  5. ``vecx query scale.vecx --vector q.npy -k 10`` (1,000 queries, rescored x4) and one query

Target: every step's peak RSS under 4 GB.

    python tests/benchmarks/bench_scale.py --rows 10000000 --work /tmp/scale --out /tmp/scale/scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess

import numpy as np
from _harness import VECX, command_line, log, machine, measure, publish, table, verdict

DIM, NQ, PARTS = 128, 1000, 16


def generate(work: str, rows: int) -> None:
    """The raw parts and the queries (seeded: the same files every run)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    model = np.random.default_rng(0)
    spectrum = (np.arange(1, DIM + 1) ** -0.6).astype(np.float32)
    basis = np.linalg.qr(model.standard_normal((DIM, DIM)))[0].astype(np.float32)
    centres = (model.standard_normal((4096, DIM)).astype(np.float32) * spectrum) @ basis.T

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        x = centres[rng.integers(0, 4096, n)]
        x += 0.4 * (rng.standard_normal((n, DIM)).astype(np.float32) * spectrum) @ basis.T
        return x

    os.makedirs(os.path.join(work, "raw"), exist_ok=True)
    per = -(-rows // PARTS)
    for part in range(PARTS):
        lo, hi = part * per, min(rows, (part + 1) * per)
        rng = np.random.default_rng(1000 + part)
        path = os.path.join(work, "raw", f"part-{part:05d}.parquet")
        with pq.ParquetWriter(path, pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), DIM))])) as w:
            for s in range(lo, hi, 262144):
                e = min(hi, s + 262144)
                x = draw(rng, e - s)
                w.write_table(pa.table({"id": np.arange(s, e, dtype=np.int64),
                                        "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM)}))
    np.save(os.path.join(work, "q.npy"), draw(np.random.default_rng(7), NQ))


def run(args: argparse.Namespace, work: str) -> str:
    log(f"generating {args.rows:,} x {DIM} rows in {PARTS} parts")
    generate(work, args.rows)
    p = lambda name: os.path.join(work, name)  # noqa: E731
    steps = [
        ("import", ["import", p("raw"), "-o", p("imported") + "/", "-q"]),
        ("binarize (rabitq)", ["binarize", p("imported"), "-o", p("rq") + "/", "--mode", "rabitq", "-q"]),
        ("truth (exact, k=10)", ["truth", p("imported"), "--queries", p("q.npy"), "-o", p("gt.parquet"),
                                 "-k", "10", "-q"]),
        (f"index, {args.shards} shards", ["index", p("rq"), "-o", p("scale.vecx"), "--shards", str(args.shards),
                                          "--rescore-vectors", p("imported"), "-q"]),
        ("query, 1,000 queries (rescored x4)", ["query", p("scale.vecx"), "--vector", p("q.npy"), "-k", "10",
                                                "--format", "jsonl"]),
    ]
    np.save(p("one.npy"), np.load(p("q.npy"))[:1])
    steps.append(("query, one query", ["query", p("scale.vecx"), "--vector", p("one.npy"), "-k", "10"]))
    results = []
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    for name, argv in steps:
        log(name)
        os.sync()
        results.append((name, argv, measure([*VECX, *argv], work)))
        log(f"  {results[-1][2]['s']:.1f} s, {results[-1][2]['rss']:.0f} MB")
    uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    out = subprocess.run([*VECX, "query", p("scale.vecx"), "--vector", p("q.npy"), "-k", "10", "--format", "jsonl"],
                         check=True, capture_output=True, text=True).stdout
    import pyarrow.parquet as pq

    truth = pq.read_table(p("gt.parquet"), columns=["ids"])["ids"].to_pylist()
    found = [[r["id"] for r in json.loads(line)["results"]] for line in out.splitlines()]
    recall = sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=True)) / (10 * len(truth))
    sizes = {name: sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(p(name)) for f in fs)
             for name in ("raw", "imported", "rq")}
    index_bytes = sum(os.path.getsize(os.path.join(os.path.realpath(p("scale.vecx")), f))
                      for f in os.listdir(os.path.realpath(p("scale.vecx"))))
    rows = [[name, f"`vecx {shlex.join(a[:1])} …`", f"{m['s']:.1f}", f"{m['rss']:.0f}", f"{m['anon']:.0f}",
             verdict(m["rss"] < 4096)] for name, a, m in results]
    loads = " / ".join(u.split("load average:")[-1].strip() for u in uptime)
    text = [f"{args.rows:,} x {DIM} float32 rows in {PARTS} raw Parquet parts (seeded; {sizes['raw'] / 1e9:.2f} GB); "
            f"imported {sizes['imported'] / 1e9:.2f} GB, RaBitQ codes {sizes['rq'] / 1e9:.2f} GB, index "
            f"{index_bytes / 1e9:.2f} GB (graphs, codes, rows, float32 rescoring vectors).", "", machine(), "",
            f"Load before / after: {loads}", "",
            table(["step", "command", "seconds", "peak RSS MB", "peak anon MB", "< 4 GB"], rows), "",
            f"recall@10 of the 1,000 queries (rescored x4, against `vecx truth`): {recall:.4f}", ""]
    return "\n".join(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--work", required=True, help="scratch directory (about 1.3 KB per row of free space)")
    ap.add_argument("--out", help="write the Markdown here")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    publish(f"{run(args, args.work)}\nCommand: `{command_line()}`\n", args.out)


if __name__ == "__main__":
    main()
