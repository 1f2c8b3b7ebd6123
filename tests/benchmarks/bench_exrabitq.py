"""Extended RaBitQ's quantizer against an exhaustive search of its scale: for rows of
debian-minilm-30k, the fit ``<o_bar, o> / |o_bar|`` vecx's codes reach (a grid of scales, then every
crossing near the best one) against the best over every crossing of every coordinate (the exact
optimum: codes change only there), by bits per dimension.

    python tests/benchmarks/bench_exrabitq.py [--rows 500] [--out FILE]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from _harness import command_line, machine, publish, table

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")


def exhaustive_fit(row: np.ndarray, half: int) -> float:
    """The best ``<o_bar, o> / |o_bar|`` over every scale: every crossing ``m / |o_i|`` in order."""
    times = [(m / a, i) for i, a in enumerate(row) if a > 0 for m in range(1, half)]
    times.sort()
    k = np.zeros(len(row))
    dot, squares = 0.5 * row.sum(), 0.25 * len(row)
    best = dot / np.sqrt(squares)
    for _, i in times:
        dot += row[i]
        squares += 2 * (k[i] + 1)
        k[i] += 1
        best = max(best, dot / np.sqrt(squares))
    return float(best)


def main() -> None:
    from vecx.chain import Chain
    from vecx.space import VectorSpec

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--out", help="also write the Markdown here")
    args = parser.parse_args()
    x = np.load(os.path.join(DATA, "debian-minilm-30k", "base.npy")).astype(np.float32)
    sample = x[np.random.default_rng(1).choice(len(x), args.rows, replace=False)]
    rows = []
    for bits in (2, 3, 4, 5, 6, 8):
        chain = Chain.from_spec(f"binarize:mode=rabitq:bits={bits}", VectorSpec(x.shape[1], "float32", "cosine", False))
        chain.fit(lambda stage: x)
        stage = chain.stages[0]
        y = stage._rotate(stage._prepare(sample) - stage.mean_)
        planes = stage._extended(y)[1]
        x_u = sum(np.unpackbits(p, axis=1).astype(np.int64) << (bits - 1 - b) for b, p in enumerate(planes))
        o_bar = np.abs(x_u - (2**bits - 1) / 2)
        o = np.abs(y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float64)
        got = (o * o_bar).sum(axis=1) / np.linalg.norm(o_bar, axis=1)
        best = np.array([exhaustive_fit(row, 1 << (bits - 1)) for row in o.astype(np.float32).astype(np.float64)])
        gap = best - got
        rows.append([bits, f"{got.mean():.6f}", f"{best.mean():.6f}", f"{int((gap > 1e-6).sum())} of {len(gap)}",
                     f"{gap.max():.1e}"])
        print(rows[-1], flush=True)
    publish("\n\n".join([f"Command: `{command_line()}`", machine(), table(
        ["bits", "mean fit, vecx", "mean fit, exhaustive", "rows > 1e-6 below", "largest gap"], rows)]) + "\n",
        args.out)


if __name__ == "__main__":
    main()
