"""RaBitQ encoding speed and quality: vecx ``binarize:mode=rabitq`` with its fast structured rotation
(the default) and with the dense Haar rotation of codec version 1, against faiss ``RaBitQ`` (which
does not rotate: its quantizer expects the caller to) and ``RR{d},RaBitQ`` (faiss's random rotation
first, what the method needs), on the shared sets.

Encoding: float32 MB/s of input through the fitted encode in memory (vecx: the chain's ``encode``
over 65,536-row blocks, as ``vecx bench`` times it; faiss: ``sa_encode``), both on all cores, best
of 5. Quality: recall@10 of the estimator's exhaustive ranking (no rescoring) for the two vecx
rotations, mean and spread over three seeds.

    python tests/benchmarks/bench_encode.py [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np
from _harness import best, command_line, machine, publish, table

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
SETS = [("debian-minilm-30k", "cosine"), ("glove50-100k", "cosine"), ("sift128-images-30k", "l2")]
BLOCK = 65536


def recall(chain: Any, x: np.ndarray, q: np.ndarray, truth: np.ndarray) -> float:
    stage = chain.stages[-1]
    scores = stage.score(stage.prepare_queries(chain.encode_query(q)), chain.encode(x))
    top = np.argsort(-scores if stage.output.metric == "ip" else scores, axis=1, kind="stable")[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, truth[:, :10], strict=True)]))


def fitted(spec: str, x: np.ndarray, metric: str) -> Any:
    from vecx.chain import Chain
    from vecx.space import VectorSpec

    chain = Chain.from_spec(spec, VectorSpec(x.shape[1], "float32", metric, False))
    chain.fit(lambda stage: x)
    return chain


def measure(name: str, metric: str) -> tuple[list[object], list[list[object]]]:
    """One set's speed row and quality rows."""
    import faiss

    x = np.load(os.path.join(DATA, name, "base.npy")).astype(np.float32)
    q = np.load(os.path.join(DATA, name, "queries.npy")).astype(np.float32)
    truth = np.load(os.path.join(DATA, name, "gt.npy"))
    d, mb = x.shape[1], x.nbytes / 2**20
    rates, quality = {}, []
    for rotation in ("fast", "haar"):
        chain = fitted(f"binarize:mode=rabitq:rotation={rotation}", x, metric)
        rates[rotation] = mb / best(lambda c=chain: [c.encode(x[s: s + BLOCK]) for s in range(0, len(x), BLOCK)], 5)
        found = [recall(fitted(f"binarize:mode=rabitq:rotation={rotation}:seed={seed}", x, metric), x, q, truth)
                 for seed in range(3)]
        quality.append([name, rotation, f"{np.mean(found):.4f}", f"{np.std(found):.4f}"])
    unit = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    for key in ("RaBitQ", f"RR{d},RaBitQ"):
        index = faiss.index_factory(d, key, faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
        index.train(unit)
        rates[key] = mb / best(lambda i=index: i.sa_encode(unit), 5)
    rotated = rates[f"RR{d},RaBitQ"]
    speed = [name, f"{rates['fast']:,.0f}", f"{rates['haar']:,.0f}", f"{rates['RaBitQ']:,.0f}", f"{rotated:,.0f}",
             f"{rates['fast'] / rates['RaBitQ']:.2f}x", f"{rates['fast'] / rotated:.2f}x"]
    return speed, quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="also write the Markdown here")
    args = parser.parse_args()
    speed_rows, quality_rows = [], []
    for name, metric in SETS:
        speed, quality = measure(name, metric)
        speed_rows.append(speed)
        quality_rows.extend(quality)
        print(speed, file=sys.stderr, flush=True)
    publish("\n\n".join([
        f"Command: `{command_line()}`", machine(),
        table(["set", "vecx fast MB/s", "vecx haar MB/s", "faiss RaBitQ", "faiss RR{d},RaBitQ", "fast / RaBitQ",
               "fast / RR,RaBitQ"], speed_rows),
        table(["set", "rotation", "recall@10 (3 seeds)", "spread"], quality_rows)]) + "\n", args.out)


if __name__ == "__main__":
    main()
