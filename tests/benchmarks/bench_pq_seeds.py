"""PQ recall over codebook seeds: vecx ``pq:MxB:seed=s`` against faiss ``IndexPQ`` with ``cp.seed``.

One ``vecx bench`` run compares one codebook of each; the recall of a PQ codebook moves by a few
thousandths from one k-means seed to the next (one standard error over 1,000 queries is about
0.005), so a cell where one side leads by 0.003 says little. This script trains both on the same
rows with ``--seeds`` seeds each and reports the mean and standard deviation of recall@10 from an
exhaustive ADC scan (x1) and with 40 / 100 candidates rescored in float32 (x4 / x10).

    python tests/benchmarks/bench_pq_seeds.py --set sift128-images-30k:8 --set glove50-100k:10 --out pq_seeds.md
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial

import numpy as np
from _harness import command_line, log, machine, table
from bench_index import K, recall, rescore

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
METRICS = {"debian-minilm-30k": "cosine", "glove50-100k": "cosine", "sift128-images-30k": "l2"}
FAISS_DEFAULT_SEED = 1234  # ClusteringParameters.seed; seed s here is 1234 + s


def recalls(order: np.ndarray, x: np.ndarray, q: np.ndarray, truth: np.ndarray, metric: str) -> list[float]:
    return [recall(order[:, :K], truth)] + [recall(rescore(x, q, order[:, :K * f], metric), truth) for f in (4, 10)]


def vecx_order(x: np.ndarray, q: np.ndarray, m: int, bits: int, seed: int, metric: str) -> tuple[np.ndarray, float]:
    """Top-100 rows per query by the fitted codec's own ADC scores (exhaustive), and the fit time."""
    from vecx.chain import Chain
    from vecx.space import VectorSpec

    chain = Chain.from_spec(f"pq:{m}x{bits}:seed={seed}", VectorSpec(x.shape[1], "float32", metric, False))
    start = time.perf_counter()
    chain.fit(lambda stage: x)
    fit = time.perf_counter() - start
    codes, stage = chain.encode(x), chain.stages[-1]
    prepared = chain.encode_query(q)
    out = []
    for i in range(0, len(q), 100):
        scores = stage.score(stage.prepare_queries(prepared[i:i + 100]), codes)
        scores = scores if metric == "l2" else -scores  # l2: distances; ip: similarities
        part = np.argpartition(scores, K * 10, axis=1)[:, :K * 10]
        order = np.argsort(np.take_along_axis(scores, part, 1), axis=1, kind="stable")
        out.append(np.take_along_axis(part, order, 1))
    return np.vstack(out), fit


def faiss_order(x: np.ndarray, q: np.ndarray, m: int, bits: int, seed: int, metric: str) -> tuple[np.ndarray, float]:
    import faiss

    index = faiss.IndexPQ(x.shape[1], m, bits, faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
    index.pq.cp.seed = FAISS_DEFAULT_SEED + seed
    start = time.perf_counter()
    index.train(x)
    fit = time.perf_counter() - start
    index.add(x)
    return index.search(q, K * 10)[1], fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", dest="sets", metavar="NAME:M[xB]",
                    help="data set and PQ shape (default: sift128-images-30k:8, glove50-100k:10)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", help="write the Markdown section here (default: stdout)")
    args = ap.parse_args()
    sets = args.sets or ["sift128-images-30k:8", "glove50-100k:10"]
    cmdline = command_line()
    rows = []
    for item in sets:
        name, _, shape = item.partition(":")
        m, _, bits = shape.partition("x")
        m, bits = int(m), int(bits or 8)
        metric = METRICS[name]
        x = np.load(os.path.join(DATA, name, "base.npy")).astype(np.float32)
        q = np.load(os.path.join(DATA, name, "queries.npy")).astype(np.float32)
        truth = np.load(os.path.join(DATA, name, "gt.npy"))[:, :K]
        # The peers see what vecx's codec sees: cosine rows normalized (vecx normalizes them itself).
        xs, qs = (x, q) if metric == "l2" else (x / np.linalg.norm(x, axis=1, keepdims=True),
                                                q / np.linalg.norm(q, axis=1, keepdims=True))
        found: dict[str, list[list[float]]] = {"vecx": [], "faiss": []}
        fits: dict[str, list[float]] = {"vecx": [], "faiss": []}
        for seed in range(args.seeds):
            for system, run in (("vecx", partial(vecx_order, x, q, m, bits, seed, metric)),
                                ("faiss", partial(faiss_order, xs, qs, m, bits, seed, metric))):
                order, fit = run()
                found[system].append(recalls(order, xs, qs, truth, metric))
                fits[system].append(fit)
                log(f"{name} pq {m}x{bits} seed {seed} {system}: "
                    + " / ".join(f"{r:.4f}" for r in found[system][-1]))
        for system in ("vecx", "faiss"):
            a = np.array(found[system])
            rows.append([name, f"{m}x{bits}", system,
                         *(f"{mu:.4f} ± {sd:.4f}" for mu, sd in zip(a.mean(0), a.std(0, ddof=1), strict=True)),
                         f"{np.median(fits[system]):.2f}"])
        diff = np.array(found["vecx"]).mean(0) - np.array(found["faiss"]).mean(0)
        se = np.sqrt(np.array(found["vecx"]).var(0, ddof=1) / args.seeds
                     + np.array(found["faiss"]).var(0, ddof=1) / args.seeds)
        rows.append([name, f"{m}x{bits}", "vecx - faiss (SE)",
                     *(f"{d:+.4f} ({s:.4f})" for d, s in zip(diff, se, strict=True)), ""])
    md = "\n".join(["### PQ recall over codebook seeds", "", f"Command: `{cmdline}`", "",
                    (f"{args.seeds} seeds each: vecx `pq:MxB:seed=s` (s = 0..{args.seeds - 1}) and faiss "
                     f"`IndexPQ` with `pq.cp.seed = {FAISS_DEFAULT_SEED} + s`, trained on every base row; "
                     "recall@10 of an exhaustive ADC scan (x1) and of 40 / 100 candidates rescored in float32 "
                     "(x4 / x10); mean ± standard deviation over the seeds; SE = standard error of the "
                     "difference of the means; fit s: median."),
                    "", machine(), "",
                    table(["data set", "shape", "system", "recall@10 (x1)", "x4", "x10", "fit s"], rows)])
    if args.out:
        with open(args.out, "w") as f:
            f.write(md + "\n")
    else:
        print(md)


if __name__ == "__main__":
    main()
