"""Model upgrades without re-embedding: ``vecx align fit`` between the static "old" model and MiniLM.

The shared pair ``debian-static-384`` / ``debian-minilm-30k`` holds the same 30,000 texts and
1,000 queries by both models, row for row. As in that data set's README, maps are fitted on
base rows 0-19,999 only (``--held-out 0``: all of them; the queries are never fitted), and each
setup is an exact inner-product search over the full 30,000 rows, recall@10 against MiniLM's
ground truth: static queries mapped into the MiniLM index, and MiniLM queries mapped by the
reverse fit into the static index. Maps are fitted by the command line (``vecx align fit``),
then read from their state files.

    python tests/benchmarks/bench_align.py --out /tmp/bench-align.md
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

import numpy as np
from _harness import DATA, VECX, begin, finish, log, table

FIT_ROWS = 20_000


def recall(q: np.ndarray, base: np.ndarray, truth: np.ndarray) -> float:
    top = np.argsort(-(q @ base.T), axis=1, kind="stable")[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, truth, strict=True)]))


def main() -> None:
    out, cmdline, start = begin(__doc__)
    from vecx.chain import Chain

    static, minilm = os.path.join(DATA, "debian-static-384"), os.path.join(DATA, "debian-minilm-30k")
    s, m = np.load(os.path.join(static, "base.npy")), np.load(os.path.join(minilm, "base.npy"))
    sq, mq = np.load(os.path.join(static, "queries.npy")), np.load(os.path.join(minilm, "queries.npy"))
    truth = np.load(os.path.join(minilm, "gt.npy"))[:, :10]
    rows = [["static, no map", "MiniLM", "", f"{recall(sq, m, truth):.4f}", ""]]
    with tempfile.TemporaryDirectory(prefix="bench-align-") as work:
        for name, x in (("static", s), ("minilm", m)):
            np.save(os.path.join(work, f"{name}.npy"), x[:FIT_ROWS])
            subprocess.run([*VECX, "import", os.path.join(work, f"{name}.npy"), "-o",
                            os.path.join(work, f"{name}.parquet")], check=True)
        for kind in ("orthogonal", "linear"):
            for source, target, q, base in (("static", "minilm", sq, m), ("minilm", "static", mq, s)):
                state = os.path.join(work, f"{source}-{target}-{kind}.state")
                started = time.perf_counter()
                subprocess.run([*VECX, "align", "fit", "--from", os.path.join(work, f"{source}.parquet"), "--to",
                                os.path.join(work, f"{target}.parquet"), "-o", state, "--kind", kind,
                                "--held-out", "0"], check=True)
                seconds = time.perf_counter() - started
                w = Chain.from_state_file(state, None).stages[0].state()["matrix"]
                found = recall(q @ w, base, truth)
                log(f"{source} -> {target} {kind}: {found:.4f}")
                rows.append([f"{source} queries, {kind} map", "MiniLM" if target == "minilm" else "static",
                             kind, f"{found:.4f}", f"{seconds:.1f}"])
    header = ["queries", "index searched", "map", "recall@10 vs MiniLM truth", "fit s (CLI)"]
    finish(out, cmdline, start, table(header, rows))


if __name__ == "__main__":
    main()
