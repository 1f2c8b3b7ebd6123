"""Distributed steps: a 16-part dataset encoded part by part and indexed in 4 shards, in one process
(``--engine local``) and as tasks on a Dask LocalCluster of 2 worker processes (``--engine dask``).

Data: the index benchmark's synthetic 384-d rows (seeded), written as 16 raw parts, imported per
part. Steps, each a ``vecx`` command (wall time of the command; peak RSS of the client process,
and of each Dask worker, read from the workers after the step, which are restarted before it;
the page cache is dropped before every step):

  1. ``vecx encode imported --state pq.state -o pq/`` (``pq:48x8`` fitted once, on the whole dataset)
  2. ``vecx index pq -o docs.vecx --shards 4 --rescore-vectors imported --deterministic``

Then the outputs of the two engines are compared file by file (they must be identical).

    python tests/benchmarks/bench_distributed.py --rows 4000000 --work /tmp/dist --out /tmp/dist/dist.md
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import time

import numpy as np
from _harness import VECX, command_line, drop_caches, log, machine, measure, publish, table, verdict
from bench_index import synthetic_rows

PARTS = 16


def reset_peak() -> None:
    """Reset this process's peak RSS (VmHWM; run on each worker before a step)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5\n")


def peak_rss_mb() -> float:
    """This process's peak RSS since :func:`reset_peak` (run on each worker after a step)."""
    with open("/proc/self/status") as f:
        return max(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def vecx(*args: str) -> None:
    subprocess.run([*VECX, *args], check=True, stdout=subprocess.DEVNULL)


def prepare(work: str, rows: int) -> None:
    """16 raw Parquet parts of synthetic rows, imported part by part; a PQ state fitted on the whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = os.path.join(work, "x.npy")
    synthetic_rows(base, rows, 0)
    x = np.load(base, mmap_mode="r")
    os.makedirs(os.path.join(work, "raw"), exist_ok=True)
    per = -(-rows // PARTS)
    for part in range(PARTS):
        lo, hi = part * per, min(rows, (part + 1) * per)
        with pq.ParquetWriter(os.path.join(work, "raw", f"part-{part:05d}.parquet"),
                              pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), x.shape[1]))])) as w:
            for s in range(lo, hi, 131072):
                e = min(hi, s + 131072)
                block = np.ascontiguousarray(x[s:e])
                vectors = pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), block.shape[1])
                w.write_table(pa.table({"id": np.arange(s, e, dtype=np.int64), "vector": vectors}))
    os.remove(base)
    vecx("import", os.path.join(work, "raw"), "-o", os.path.join(work, "imported") + "/", "-q")
    vecx("fit", os.path.join(work, "imported"), "--spec", "pq:48x8", "-o", os.path.join(work, "pq.state"), "-q")


def same_tree(a: str, b: str) -> bool:
    names = sorted(os.listdir(a))
    if names != sorted(os.listdir(b)):
        return False
    return all(filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False) for n in names)


def run(args: argparse.Namespace, work: str) -> str:
    from distributed import Client, LocalCluster

    if not os.path.exists(os.path.join(work, "pq.state")):  # a rerun in the same work directory reuses the data
        log(f"preparing {args.rows:,} rows in {PARTS} parts")
        prepare(work, args.rows)
    p = lambda name: os.path.join(work, name)  # noqa: E731
    results: dict[str, dict[str, dict[str, float]]] = {}
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        for engine in ("local", "dask"):
            extra = ["--engine", "dask", "--scheduler", cluster.scheduler_address] if engine == "dask" else []
            steps = {
                "encode pq:48x8, per part": ["encode", p("imported"), "--state", p("pq.state"), "-o",
                                             p(f"pq-{engine}") + "/", "-q", *extra],
                "index, 4 shards": ["index", p(f"pq-{engine}"), "-o", p(f"docs-{engine}.vecx"), "--shards", "4",
                                    "--rescore-vectors", p("imported"), "--deterministic", "-q", *extra],
            }
            for step, argv in steps.items():
                client.restart()  # fresh workers, their peak RSS reset: what they hold is this step's
                client.run(reset_peak)
                log(f"{engine}: {step}")
                drop_caches()  # every step reads its inputs from disk, whichever engine ran before
                m = measure([*VECX, *argv], work)
                workers = client.run(peak_rss_mb)
                m["workers"] = max(workers.values())
                results.setdefault(step, {})[engine] = m
                log(f"  {m['s']:.1f} s, client {m['rss']:.0f} MB, workers {m['workers']:.0f} MB")
    uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    same_codes = same_tree(p("pq-local"), p("pq-dask"))
    a = json.load(open(os.path.join(p("docs-local.vecx"), "manifest.json")))
    b = json.load(open(os.path.join(p("docs-dask.vecx"), "manifest.json")))
    same_index = a["files"] == b["files"]
    rows = []
    for step, by in results.items():
        local, dask = by["local"], by["dask"]
        rows.append([step, f"{local['s']:.1f}", f"{local['rss']:.0f}", f"{dask['s']:.1f}", f"{dask['rss']:.0f}",
                     f"{dask['workers']:.0f}", f"{dask['s'] / local['s']:.2f}x"])
    loads = " / ".join(u.split("load average:")[-1].strip() for u in uptime)
    return "\n".join([
        f"{args.rows:,} x 384 synthetic rows, {PARTS} parts; Dask LocalCluster of 2 worker processes, 1 thread each.",
        "", machine(), "", f"Load before / after: {loads}", "",
        table(["step", "local s", "local peak RSS MB", "dask s", "dask client peak RSS MB",
               "dask peak RSS per worker MB", "dask / local"], rows), "",
        f"Identical outputs: encoded parts {verdict(same_codes)}, index files (--deterministic) {verdict(same_index)}.",
        ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    started = time.time()
    text = run(args, args.work)
    publish(f"{text}\nCommand: `{command_line()}` ({time.time() - started:.0f} s in all)\n", args.out)


if __name__ == "__main__":
    main()
