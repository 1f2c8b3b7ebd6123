"""Multi-vector pruning benchmark: CRISP centroids against the full token vectors, MUVERA and mean pooling.

Data: ../shared/data/debian-minilm-30k ``mv_*`` (1,000 documents, 82,906 float16 token vectors of
384 dims; 300 queries; ``mv_gt.npy`` the exact MaxSim top-100 over the full token vectors).

Two tables, every recall@10 against ``mv_gt.npy``:

1. **One stage.** Each setting scores every document for every query, with no rerank: exact MaxSim
   over the document's kept vectors (``crisp:C`` centroids, the ``k-means++`` seeds alone
   (``iters=0``: C of the document's own tokens), its first C tokens), the inner product of MUVERA
   encodings (of the full tokens, and of ``crisp`` centroids), and the cosine of mean-pooled vectors.
   Bytes per document: what the setting stores (float16 vectors as imported; FDEs as float32).
   Encode rate: documents/s of the chain on the sets already in memory, best of ``--repeat``.
2. **Candidates + rerank.** N = 20, 50, 100 candidates per query from a first stage (exact top-N by
   the mean-pooled cosine, or by the FDE inner product), reranked by exact MaxSim over the full token
   vectors or over ``crisp:C`` centroids. Bytes per document: the rerank store plus the first stage's.

The chains run through :class:`vecx.chain.Chain` exactly as ``vecx encode --spec`` runs them.

    python tests/benchmarks/bench_crisp.py            # prints a Markdown section
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import DATA, log  # noqa: E402

CRISP = ["crisp:4", "crisp:8", "crisp:16", "crisp:32", "crisp:64", "crisp:ratio=0.25", "crisp:ratio=0.5",
         "crisp:8:normalize=false", "crisp:16:normalize=false", "crisp:16:iters=0", "crisp:32:iters=0"]
FIRST_TOKENS = (16, 32, 64)
FDE = ["muvera:20x5x16", "crisp:16,muvera:20x5x16", "crisp:32,muvera:20x5x16"]
RERANK = ["full", "crisp:32", "crisp:64", "crisp:ratio=0.5"]
FIRST_STAGES = ["mean", "muvera:20x5x16", "crisp:32,muvera:20x5x16"]
COUNTS = (20, 50, 100)


def recall10(scores: np.ndarray, truth: np.ndarray) -> float:
    """recall@10 of the top 10 by ``scores`` (ties to the lower row) against the true top 10."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return float(np.mean([len(set(a.tolist()) & set(t[:10].tolist())) / 10 for a, t in zip(top, truth, strict=True)]))


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def load(data: str) -> tuple:
    """The documents' and queries' token-vector sets (float16, as stored) and the exact MaxSim top-100."""
    import pyarrow.parquet as pq

    from vecx.formats.multi import MultiVectors

    def sets(name: str) -> MultiVectors:
        column = pq.read_table(os.path.join(data, name), columns=["tokens"])["tokens"].combine_chunks()
        values = column.flatten().flatten().to_numpy().reshape(-1, 384)
        return MultiVectors(values, column.offsets.to_numpy())

    return sets("mv_docs.parquet"), sets("mv_queries.parquet"), np.load(os.path.join(data, "mv_gt.npy"))


def one_stage(docs, queries, truth: np.ndarray, repeat: int, chain) -> tuple[list, dict, dict]:
    """The rows of the one-stage table, the pruned sets by spec, and the first stages' scores by name."""
    from vecx.formats.multi import MultiVectors
    from vecx.indexes import maxsim
    from vecx.kernels import unit_rows

    q32 = queries.astype(np.float32)
    pruned = {"full": docs}
    rows: list[tuple] = [("exact MaxSim, all token vectors", docs.values.nbytes / len(docs),
                          recall10(maxsim.scores(q32, docs), truth), None)]
    for spec in CRISP:
        c = chain(spec)
        seconds = best_time(lambda c=c: c.encode(docs), repeat)
        pruned[spec] = out = c.encode(docs)
        rows.append((f"`{spec}` then exact MaxSim", out.values.nbytes / len(docs),
                     recall10(maxsim.scores(q32, out), truth), len(docs) / seconds))
        log(f"{spec}: {rows[-1]}")
    for count in FIRST_TOKENS:
        first = MultiVectors.from_list([docs.row(i)[:count] for i in range(len(docs))], dtype=np.float16)
        rows.append((f"first {count} tokens then exact MaxSim", first.values.nbytes / len(docs),
                     recall10(maxsim.scores(q32, first), truth), None))
    scores = {"mean": unit_rows(queries.mean()) @ unit_rows(docs.mean()).T}
    rows.append(("mean pooling, cosine", 384 * 4, recall10(scores["mean"], truth), None))
    for spec in FDE:
        c = chain(spec)
        seconds = best_time(lambda c=c: c.encode(docs), repeat)
        encoded = c.encode(docs)
        scores[spec] = c.encode_query(queries) @ encoded.T
        rows.append((f"`{spec}` FDE inner product", encoded.nbytes / len(docs), recall10(scores[spec], truth),
                     len(docs) / seconds))
        log(f"{spec}: {rows[-1]}")
    return rows, pruned, scores


def rerank_rows(queries, truth: np.ndarray, pruned: dict, scores: dict) -> list[str]:
    """Markdown rows of the candidates + rerank table."""
    from vecx.indexes import maxsim

    q32 = queries.astype(np.float32)
    lines = []
    for stage in FIRST_STAGES:
        order = np.argsort(-scores[stage], axis=1, kind="stable")
        first_bytes = 384 * 4 if stage == "mean" else 40960
        for spec in RERANK:
            store = pruned[spec]
            exact = maxsim.scores(q32, store)
            recalls = []
            for n in COUNTS:
                keep = np.full_like(exact, -np.inf)
                cand = order[:, :n]
                np.put_along_axis(keep, cand, np.take_along_axis(exact, cand, axis=1), axis=1)
                recalls.append(recall10(keep, truth))
            size = store.values.nbytes / len(store) + first_bytes
            label = "all token vectors" if spec == "full" else f"`{spec}` centroids"
            lines.append(f"| {stage if stage == 'mean' else f'`{stage}`'} | {label} | {size:,.0f} | "
                         + " | ".join(f"{r:.4f}" for r in recalls) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from vecx.chain import Chain
    from vecx.space import VectorSpec

    docs, queries, truth = load(os.path.join(DATA, "debian-minilm-30k"))
    space = VectorSpec(384, "float16", "cosine", True, multi=True)
    log(f"{len(docs)} documents ({len(docs.values):,} vectors), {len(queries)} queries")
    rows, pruned, scores = one_stage(docs, queries, truth, args.repeat, lambda spec: Chain.from_spec(spec, space))
    for spec in RERANK:
        if spec not in pruned:
            pruned[spec] = Chain.from_spec(spec, space).encode(docs)

    print("### One stage: MaxSim over the kept vectors, or one vector per document\n")
    print("| setting | bytes/doc | recall@10 | encode docs/s |")
    print("|---|---:|---:|---:|")
    for name, size, recall, rate in rows:
        print(f"| {name} | {size:,.0f} | {recall:.4f} | {'-' if rate is None else f'{rate:,.0f}'} |")
    print("\n### Candidates + exact MaxSim rerank (N candidates per query, exact top-N of the first stage)\n")
    print("| first stage | rerank over | bytes/doc | " + " | ".join(f"recall@10 from {n}" for n in COUNTS) + " |")
    print("|---|---|---:|" + "---:|" * len(COUNTS))
    print("\n".join(rerank_rows(queries, truth, pruned, scores)))
    print(f"\nCommand: `python tests/benchmarks/bench_crisp.py --repeat {args.repeat}`")


if __name__ == "__main__":
    main()
