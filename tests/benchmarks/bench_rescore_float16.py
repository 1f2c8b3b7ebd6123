"""Rescoring from float16 vectors: an int8 graph of debian-minilm-30k rescored x1 / x4 / x10 from the
set's float16 vectors, 1,000 queries in one batch, QPS the best of 7 (one process, one index).

Run it once per checkout (``PYTHONPATH=OTHER`` for the other) and alternate: the before/after of a
change to the float16 gather and cast.

    python tests/benchmarks/bench_rescore_float16.py [WORKDIR]
"""

from __future__ import annotations

import os
import sys
from functools import partial

import numpy as np
from _harness import DATA, VECX, best

SET = "debian-minilm-30k"


def main() -> None:
    import subprocess

    from vecx.indexes.search import Searcher

    work = sys.argv[1] if len(sys.argv) > 1 else "/tmp/bench-rescore-float16"
    os.makedirs(work, exist_ok=True)
    base, index = os.path.join(DATA, SET, "base.npy"), os.path.join(work, "i8.f16.vecx")
    if not os.path.exists(index):  # built once, by whichever checkout runs first (the same bytes)
        for spec, name in (("int8:mode=global", "i8"), ("f16", "f16")):
            subprocess.run([*VECX, "encode", base, "-o", os.path.join(work, f"{name}.parquet"), "--spec", spec,
                            "--metric", "cosine", "-q"], check=True)
        subprocess.run([*VECX, "index", os.path.join(work, "i8.parquet"), "-o", index, "--rescore-vectors",
                        os.path.join(work, "f16.parquet"), "-q"], check=True)
    q = np.load(os.path.join(DATA, SET, "queries.npy")).astype(np.float32)
    searcher = Searcher(index)
    qq = searcher.check_queries(q, "queries")
    cells = [f"x{factor} {len(q) / best(partial(searcher.search, qq, 10, oversample=factor), 7):,.0f} QPS"
             for factor in (1, 4, 10)]
    print(f"{', '.join(cells)} (best of 7; load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
