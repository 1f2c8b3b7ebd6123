"""Multi-vector benchmark: MUVERA FDE first stages vs mean pooling, with exact MaxSim rerank.

Data: ../shared/data/debian-minilm-30k ``mv_*`` (1,000 documents, 82,906 float16 token vectors of
384 dims; 300 queries; ``mv_gt.npy`` the exact MaxSim top-100). For every setting it runs the
library functions behind ``vecx import --multi``, ``vecx encode --spec muvera:...[,binarize|pca]``
and ``vecx index --rescore docs.mv.parquet``, then per query:

- candidate recall: the fraction of the true MaxSim top-10 among the first N = 20, 50, 100
  candidates of the first stage (the FDE graph; the mean-vector graph; or both, N from each);
- recall@10 after the exact MaxSim rerank of those candidates (``vecx query --rescore N/10``);

plus encoding throughput (documents/s, best of ``--repeat`` encodes, the chain alone on batches
already in memory, and the whole ``encode_file`` from Parquet to Parquet), and the correlation
between the FDE inner product and the exact MaxSim score over all 300 x 1,000 pairs (Pearson,
overall and the median per query), beside the same for the mean-pooled cosine.

    python tests/benchmarks/bench_muvera.py            # prints a Markdown section
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data",
                    "debian-minilm-30k")
SETTINGS = [
    "muvera:20x5x16",
    "muvera:20x5x16,binarize",
    "muvera:20x5x16,binarize:mode=sign",
    "muvera:20x5x16,binarize:mode=rabitq",
    "muvera:20x5x16,binarize:mode=rabitq:levels=2",
    "muvera:20x5x16,pq:1280x8",
    "muvera:20x5x16:final=2048,pca:256",
    "muvera:20x2x128",
]
COUNTS = (20, 50, 100)


def candidate_recall(cands: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(c[c >= 0].tolist()) & set(t[:10].tolist())) / 10
                          for c, t in zip(cands, truth, strict=True)]))


def recall10(rows: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(r[:10].tolist()) & set(t[:10].tolist())) / 10
                          for r, t in zip(rows, truth, strict=True)]))


def correlation(approx: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """Pearson r of a first-stage score with exact MaxSim: over all pairs, and the median per query."""
    overall = float(np.corrcoef(approx.ravel(), exact.ravel())[0, 1])
    per_query = float(np.median([np.corrcoef(a, e)[0, 1] for a, e in zip(approx, exact, strict=True)]))
    return overall, per_query


def first_stage_rows(searcher, q, codes, stage: str, n: int) -> np.ndarray:
    from vecx.indexes.multivector import union

    if stage == "half":  # N/2 from each graph: the same candidate budget as one first stage
        return union(searcher._graph_search(codes, n // 2, None)[0],
                     searcher.multi_rescore.mean_candidates(q, n // 2, None)[0])
    fde, _ = searcher._graph_search(codes, n, None)
    if stage == "fde":
        return fde
    mean = searcher.multi_rescore.mean_candidates(q, n, None)[0]
    return mean if stage == "mean" else union(fde, mean)


def load_sets(tmp: str) -> tuple[str, np.ndarray, object, object]:
    """Import the documents and queries as ``vecx import --multi`` does, into ``tmp``: the documents'
    Parquet path, the query token vectors (float32), the documents' source and their token-vector sets."""
    from vecx import api
    from vecx.formats.multi import MultiVectors, read_all
    from vecx.formats.readers import open_source

    docs = os.path.join(tmp, "docs.mv.parquet")
    queries = os.path.join(tmp, "q.mv.parquet")
    api.encode_file(os.path.join(DATA, "mv_docs.parquet"), docs, None)
    api.encode_file(os.path.join(DATA, "mv_queries.parquet"), queries, None)
    _, q = read_all(open_source(queries))
    q = q.astype(np.float32)
    source = open_source(docs)
    doc_sets = MultiVectors.concat([b.vectors for b in source.batches()])
    return docs, q, source, doc_sets


def encode_and_index(spec: str, tmp: str, docs: str, source, doc_sets, repeat: int) -> tuple[object, float, float]:
    """Fit and time the chain ``spec`` (best of ``repeat``: the chain alone on the token-vector sets in
    memory, then ``encode_file`` from Parquet to Parquet), and index the FDEs with ``--rescore docs``:
    the index's searcher and the two best encode times (seconds)."""
    from vecx import api
    from vecx.chain import Chain
    from vecx.indexes.build import BuildOptions, build
    from vecx.indexes.search import Searcher
    from vecx.progress import SILENT

    fde_path = os.path.join(tmp, "fde.parquet")
    chain = Chain.from_spec(spec, source.space, None)
    if chain.needs_fit:
        api.fit_chain(source, chain, SILENT)
    best_chain = min(_timed(partial(chain.encode, doc_sets)) for _ in range(repeat))
    best_file = min(_timed(partial(api.encode_file, docs, fde_path, spec)) for _ in range(repeat))
    index = os.path.join(tmp, "docs.vecx")
    build(fde_path, index, rescore=docs, options=BuildOptions())
    return Searcher(index), best_chain, best_file


def first_stage_scores(searcher, codes) -> np.ndarray:
    """The first-stage score of every query against every document (FDE inner product; Hamming for bits)."""
    stored = searcher.codes_of(np.arange(searcher.rows))
    if searcher.scan is not None:  # PQ / RaBitQ codes: the codec's asymmetric score
        return searcher.scan.scorer.score(searcher.scan.prepare(codes), stored)
    if searcher.chain.output.dtype == "bits":
        a = np.unpackbits(np.asarray(codes, np.uint8), axis=1).astype(np.float32) * 2 - 1
        b = np.unpackbits(np.asarray(stored, np.uint8), axis=1).astype(np.float32) * 2 - 1
        return a @ b.T
    return np.asarray(codes, np.float32) @ np.asarray(stored, np.float32).T


def half_rerank(searcher, q, codes, truth: np.ndarray) -> list[float]:
    """recall@10 after the exact MaxSim rerank of the "half" candidates, for each N in COUNTS. The library
    has no such stage: the candidates are reranked here, as it would."""
    rer = []
    for n in COUNTS:
        keys = first_stage_rows(searcher, q, codes, "half", n)
        scores = searcher.multi_rescore.scores(q, keys)
        order = np.lexsort((keys, np.where(keys >= 0, -scores, np.inf)), axis=1)[:, :10]
        rer.append(recall10(np.take_along_axis(keys, order, axis=1), truth))
    return rer


def library_rerank(searcher, q, codes, truth: np.ndarray, stage: str) -> tuple[list[float], float | None]:
    """recall@10 after ``Searcher.search`` with the first stage ``stage`` reranks N candidates, for each
    N in COUNTS, and (except for "both") the recall@10 of the first 10 candidates without a rerank."""
    searcher.first_stage = stage
    rer = [recall10(searcher.search(q, 10, oversample=n // 10)[0], truth) for n in COUNTS]
    alone = recall10(first_stage_rows(searcher, q, codes, stage, 10), truth) if stage != "both" else None
    searcher.first_stage = "fde"
    return rer, alone


def extra_row(label: str, sizes: list[float], figures: list[float]) -> str:
    """A row of the two-graph stages ("both", "half"): its label with the mean candidate counts, and its recalls."""
    return (f"| {label} (avg. candidates for N = 20/50/100: {' / '.join(f'{s:.1f}' for s in sizes)}) | | | | | | "
            + " | ".join(f"{x:.4f}" for x in figures) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="encode timings: best of this many")
    parser.add_argument("--settings", nargs="*", default=SETTINGS)
    args = parser.parse_args()

    from vecx.indexes import maxsim

    truth = np.load(os.path.join(DATA, "mv_gt.npy"))
    tmp = tempfile.mkdtemp(prefix="bench-muvera-")
    docs, q, source, doc_sets = load_sets(tmp)
    exact = maxsim.scores(q, doc_sets)  # 300 x 1000 exact MaxSim
    assert (np.argsort(-exact, axis=1, kind="stable")[:, :10] == truth[:, :10]).mean() > 0.99

    dm, qm = doc_sets.mean(), q.mean()
    mean_corr = correlation((qm / np.linalg.norm(qm, axis=1, keepdims=True))
                            @ (dm / np.linalg.norm(dm, axis=1, keepdims=True)).T, exact)

    lines = ["## Multi-vector (MUVERA)", ""]
    lines.append(f"Run: `{' '.join(['python', 'tests/benchmarks/bench_muvera.py', *sys.argv[1:]])}` on "
                 f"{os.cpu_count()} shared cores. Data: debian-minilm-30k `mv_*` (1,000 documents, "
                 f"{len(doc_sets.values):,} token vectors, 300 queries), truth `mv_gt.npy` (recomputed here by "
                 "`vecx.indexes.maxsim`: same top-10). Candidates come from HNSW graphs built by `vecx index` "
                 "(connectivity 16, expansion add 128, search max(64, N)); `both` takes N from each graph "
                 "(up to 2N candidates; the mean number is given). Rerank = exact MaxSim over the stored token "
                 "vectors (`Searcher.search`, i.e. `vecx query --multi-vector ... --rescore N/10`).")
    lines.append("")
    header = ("| first stage | dims x dtype | bytes/doc | encode docs/s (chain / file) "
              "| corr FDE-MaxSim (all / median per query) "
              "| recall@10, no rerank | cand@20 | cand@50 | cand@100 | rerank@10 from 20 | from 50 | from 100 |")
    lines += [header, "|" + "---|" * 12]
    mean_done = False
    both_rows = []
    for spec in args.settings:
        searcher, best_chain, best_file = encode_and_index(spec, tmp, docs, source, doc_sets, args.repeat)
        codes = searcher.chain.encode_query(q)
        # Correlation of the first-stage score with MaxSim (FDE inner product; Hamming for bits).
        c_all, c_med = correlation(first_stage_scores(searcher, codes), exact)
        out = searcher.chain.output
        stages = ["fde"] if mean_done else ["mean", "fde"]
        for stage in stages + ["both", "half"]:
            cand = [candidate_recall(first_stage_rows(searcher, q, codes, stage, n), truth) for n in COUNTS]
            sizes = [float(np.mean((first_stage_rows(searcher, q, codes, stage, n) >= 0).sum(1))) for n in COUNTS]
            if stage == "half":
                rer = half_rerank(searcher, q, codes, truth)
                both_rows.append(extra_row(f"half: N/2 from `{spec}` + N/2 from mean", sizes, cand + rer))
                continue
            rer, alone = library_rerank(searcher, q, codes, truth, stage)
            cand = ([alone] if alone is not None else []) + cand
            if stage == "mean":
                lines.append(f"| mean pooling (cosine of mean token vectors) | 384 x float32 | 1536 | - | "
                             f"{mean_corr[0]:.3f} / {mean_corr[1]:.3f} | "
                             + " | ".join(f"{x:.4f}" for x in cand + rer) + " |")
                mean_done = True
            elif stage == "both":
                both_rows.append(extra_row(f"both: `{spec}` + mean", sizes, cand + rer))
            else:
                lines.append(f"| `{spec}` | {out.dim} x {out.dtype} | {out.bytes_per_vector} | "
                             f"{len(doc_sets) / best_chain:,.0f} / {len(doc_sets) / best_file:,.0f} | "
                             f"{c_all:.3f} / {c_med:.3f} | " + " | ".join(f"{x:.4f}" for x in cand + rer) + " |")
        print(f"done {spec}", file=sys.stderr, flush=True)
    lines += both_rows
    lines += ["", "cand@N: fraction of the true MaxSim top-10 among the first N candidates. rerank@10 from N: "
              "recall@10 after the exact MaxSim rerank of those N candidates, equal to cand@N by "
              "construction (an exact rerank puts every true top-10 candidate on top): a check of the path. "
              "Correlations: Pearson r between the first-stage score (FDE inner product; +-1 bit agreement "
              "for bits; the codec's estimate for rabitq/pq codes; cosine of means for mean pooling) and exact "
              "MaxSim over all 300 x 1,000 pairs, and the median of the per-query r."]
    print("\n".join(lines))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
