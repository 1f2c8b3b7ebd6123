"""Exact MaxSim (Chamfer) similarity between sets of vectors, blocked so memory stays bounded.

``MaxSim(Q, D) = sum over query vectors q of max over document vectors p of <q, p>`` (ColBERT's
late interaction; the Chamfer similarity MUVERA approximates). Scores are computed in float32
with one matrix product per block of query and document vectors, then a maximum over each
document's vectors and a sum over each query's vectors (segment reductions, no Python loop
per vector or per document).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

#: Elements of the token-by-token score matrix computed at once (~64 MiB of float32).
BLOCK_ELEMENTS = 1 << 24


def scores(queries: Any, docs: Any) -> Any:
    """MaxSim of every query set against every document set (``len(queries) x len(docs)``, float32)."""
    from vecx.formats.multi import iter_blocks

    out = np.empty((len(queries), len(docs)), dtype=np.float32)
    q_tokens = max(1, len(queries.values))
    d_budget = max(1, BLOCK_ELEMENTS // q_tokens)
    q_budget = max(1, BLOCK_ELEMENTS // max(1, min(len(docs.values), d_budget)))
    for q_start, q_block in iter_blocks(queries, q_budget):
        qv = np.asarray(q_block.values, dtype=np.float32)
        for d_start, d_block in iter_blocks(docs, d_budget):
            token_scores = qv @ np.asarray(d_block.values, dtype=np.float32).T
            best = np.maximum.reduceat(token_scores, d_block.offsets[:-1], axis=1)  # q tokens x docs
            out[q_start: q_start + len(q_block), d_start: d_start + len(d_block)] = \
                np.add.reduceat(best, q_block.offsets[:-1], axis=0)
    return out


def candidate_scores(queries: Any, token_store: Any, offsets: Any, keys: Any) -> Any:
    """MaxSim of query ``i`` against the documents ``keys[i]`` (row numbers; -1 = none -> -inf).

    ``token_store``/``offsets`` are the flat token matrix and row offsets of all documents
    (memory-mapped): only the candidates' vectors are read.
    """
    from vecx.formats.multi import MultiVectors

    out = np.full(keys.shape, -np.inf, dtype=np.float32)
    for i in range(len(keys)):
        valid = np.flatnonzero(keys[i] >= 0)
        if not len(valid):
            continue
        rows = keys[i, valid]
        starts, stops = offsets[rows], offsets[rows + 1]
        counts = stops - starts
        cand_offsets = np.concatenate([[0], np.cumsum(counts)])
        index = np.arange(cand_offsets[-1], dtype=np.int64) - np.repeat(cand_offsets[:-1] - starts, counts)
        order = np.argsort(index, kind="stable")  # read the mapped file in ascending order
        values = np.empty((len(index), token_store.shape[1]), dtype=np.float32)
        values[order] = token_store[index[order]]
        out[i, valid] = scores(queries[i: i + 1], MultiVectors(values, cand_offsets))[0]
    return out


def exact_topk(queries: Any, doc_batches: Iterator[tuple[int, Any]], k: int,
               on_block: Callable[[int], None] | None = None) -> tuple[Any, Any]:
    """Exact MaxSim top-k rows and scores of query sets over batches of (first_row, document sets)."""
    from vecx.formats.multi import iter_blocks
    from vecx.indexes.truth import TopK

    top = TopK(np.zeros((len(queries), 1), dtype=np.float32), k, "ip")
    budget = max(1, BLOCK_ELEMENTS // max(1, len(queries.values)))
    for first_row, docs in doc_batches:
        for start, block in iter_blocks(docs, max(budget, 1024)):
            top.add_scores(scores(queries, block), first_row + start)
        if on_block is not None:
            on_block(len(docs))
    return top.result()
