"""One ``vecx query`` from the command line against a bare usearch script on the same graph.

The guard of the start-up target (within 1.05x of the bare script on a 1M-row index): both are
fresh processes, timed wall to wall in alternating rounds (``_harness.interleaved``, as
bench_index.py's single-query figure) after one untimed round (the page cache warm), best of the
rounds. The bare script (bench_index.py's peer) imports numpy and usearch, opens the index's graph
file as a view and searches the query vector the vecx chain encodes (saved once, untimed); vecx (the
console script) reads the float query, encodes it, searches and prints the results (``--oversample
1``). ``--old DIR`` adds the same ``vecx query`` run with ``PYTHONPATH=DIR`` (another checkout's
parent directory: the before of a before/after). ``imports`` is a process that only imports numpy,
usearch and pyarrow.

    python tests/benchmarks/bench_cli_query.py INDEX.vecx QUERY.npy [--rounds 9] [--old DIR]

The 1M-row index of BENCHMARKS.md is bench_index.py's synthetic set (``--synthetic-rows 1000000
--synthetic-encodings i8``), rebuilt by the commands in its section.
"""

from __future__ import annotations

import argparse
import os
import tempfile

#: The console script of a checkout: ``vecx.cli.run`` where it exists, else the older ``main``.
OLD_ENTRY = """import sys
try:
    from vecx.cli import run
except ImportError:
    from vecx.cli.main import main as run
sys.argv[0] = "vecx"
sys.exit(run())
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("index")
    ap.add_argument("query", help="one float query vector (.npy, 1-D)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--old", help="the parent directory of another vecx checkout, timed as 'old'")
    args = ap.parse_args()

    import numpy as np
    from _harness import PY, VECX, interleaved
    from bench_index import PEER

    from vecx.indexes.search import Searcher

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # every process reads its modules' bytecode, as users' do
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as work:
        encoded = os.path.join(work, "query.codes.npy")
        searcher = Searcher(args.index)
        np.save(encoded, searcher.chain.encode_query(np.load(args.query).reshape(1, -1))[0])
        searcher.close()
        graph = os.path.join(os.path.realpath(args.index), "graph.usearch")
        query = [*VECX, "query", args.index, "--vector", args.query, "-k", "10", "--oversample", "1"]
        cmds = {"vecx": (query, None), "bare": ([PY, "-c", PEER, "one", graph, encoded], None),
                "imports": ([PY, "-c", "import numpy, usearch.index, pyarrow.parquet"], None)}
        if args.old:  # the other checkout's own entry point, as its console script would call it
            entry = os.path.join(work, "old_vecx.py")
            with open(entry, "w") as f:
                f.write(OLD_ENTRY)
            cmds["old"] = (["env", f"PYTHONPATH={args.old}", PY, entry, *query[1:]], None)
        load = [os.getloadavg()[0]]
        interleaved(cmds, 1, work)  # warms the page cache
        best = {name: found["s"] for name, found in interleaved(cmds, args.rounds, work).items()}
        load.append(os.getloadavg()[0])
    shown = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in best.items())
    ratios = f"vecx / bare {best['vecx'] / best['bare']:.3f}x"
    if args.old:
        ratios += f", old / bare {best['old'] / best['bare']:.3f}x"
    print(f"{shown}; {ratios} (best of {args.rounds}; load {load[0]:.1f} -> {load[1]:.1f})")


if __name__ == "__main__":
    main()
