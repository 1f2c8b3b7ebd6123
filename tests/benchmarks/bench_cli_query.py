"""One ``vecx query`` from the command line against a bare usearch script on the same graph.

The guard of the start-up target (within 1.05x of the bare script on a 1M-row index): both are
fresh processes, timed wall to wall, in alternating rounds after one untimed round (the page cache
warm), best of the rounds. The bare script imports numpy and usearch, opens the index's graph file
as a view and searches the query vector the vecx chain encodes (saved once, untimed); vecx reads the
float query, encodes it, searches and prints the results (``--oversample 1``). ``--old DIR`` adds
the same ``vecx query`` run with ``PYTHONPATH=DIR`` (another checkout's parent directory: the
before of a before/after). ``imports`` is a process that only imports numpy, usearch and pyarrow.

    python tests/benchmarks/bench_cli_query.py INDEX.vecx QUERY.npy [--rounds 9] [--old DIR]

The 1M-row index of BENCHMARKS.md is bench_index.py's synthetic set (``--synthetic-rows 1000000
--synthetic-encodings i8``), rebuilt by the commands in its section.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

BARE = ("import sys, numpy as np\nfrom usearch.index import Index\n"
        "print(Index.restore(sys.argv[1], view=True).search(np.load(sys.argv[2]), 10).keys)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("index")
    ap.add_argument("query", help="one float query vector (.npy, 1-D)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--old", help="the parent directory of another vecx checkout, timed as 'old'")
    args = ap.parse_args()

    import numpy as np

    from vecx.indexes.search import Searcher

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as work:
        encoded = os.path.join(work, "query.codes.npy")
        searcher = Searcher(args.index)
        np.save(encoded, searcher.chain.encode_query(np.load(args.query).reshape(1, -1))[0])
        searcher.close()
        graph = os.path.join(os.path.realpath(args.index), "graph.usearch")
        query = [sys.executable, "-m", "vecx", "query", args.index, "--vector", args.query, "-k", "10",
                 "--oversample", "1"]
        runs = {"vecx": (query, env), "bare": ([sys.executable, "-c", BARE, graph, encoded], env),
                "imports": ([sys.executable, "-c", "import numpy, usearch.index, pyarrow.parquet"], env)}
        if args.old:
            runs["old"] = (query, {**env, "PYTHONPATH": args.old})
        best = dict.fromkeys(runs, float("inf"))
        load = [os.getloadavg()[0]]
        for round_ in range(args.rounds + 1):
            for name, (cmd, run_env) in runs.items():
                started = time.perf_counter()
                subprocess.run(cmd, env=run_env, stdout=subprocess.DEVNULL, check=True)
                if round_:  # the first round warms the page cache
                    best[name] = min(best[name], time.perf_counter() - started)
        load.append(os.getloadavg()[0])
    shown = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in best.items())
    ratios = f"vecx / bare {best['vecx'] / best['bare']:.3f}x"
    if args.old:
        ratios += f", old / bare {best['old'] / best['bare']:.3f}x"
    print(f"{shown}; {ratios} (best of {args.rounds}; load {load[0]:.1f} -> {load[1]:.1f})")


if __name__ == "__main__":
    main()
