"""Exact top-k ground truth, blocked so memory stays bounded whatever the base size.

The base is streamed in blocks; each block is scored against all queries with one
matrix product (multi-threaded BLAS), and only scores that beat a query's current
k-th best are merged into its running top-k (the same early rejection a heap gives
faiss). Scores are cosine similarity, inner product, or squared L2 distance
(ascending) by the base's metric. Ties go to the lower base row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.kernels import unit_rows

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

SCORE_NAMES = {"cosine": "cosine similarity", "ip": "inner product", "l2": "squared L2 distance"}
#: Rows whose squared norms are this close to 1 are unit-norm to float32 rounding: dividing them by
#: their norms would change no score beyond rounding, and costs a pass over the block.
_UNIT_SQ = 1e-6


class TopK:
    """Running exact top-k for ``nq`` queries over blocks of base vectors."""

    def __init__(self, queries: Any, k: int, metric: str, base_normalized: bool = False) -> None:
        self.metric = metric
        self.base_normalized = base_normalized
        self.k = k
        q = np.ascontiguousarray(queries, dtype=np.float32)
        self.q = unit_rows(q) if metric == "cosine" else q
        self.q_sq = np.einsum("ij,ij->i", q, q) if metric == "l2" else None
        nq = len(q)
        self.scores = np.full((nq, k), -np.inf, dtype=np.float32)
        self.rows = np.full((nq, k), -1, dtype=np.int64)
        self.threshold = np.full(nq, -np.inf, dtype=np.float32)
        self.seen = 0

    def add(self, block: Any, first_row: int, sq_norms: Any = None) -> None:
        """Score one block of base vectors (rows ``first_row`` ...).

        ``sq_norms``: the rows' squared L2 norms when the reader has computed them already
        (validating the input), which saves a pass over the block.
        """
        x = np.ascontiguousarray(block, dtype=np.float32)
        if self.metric == "cosine" and not self.base_normalized:
            if sq_norms is None:
                x = unit_rows(x)
            elif len(sq_norms) and np.abs(sq_norms - 1.0).max() > _UNIT_SQ:  # unit rows stay as they are
                x = unit_rows(x, np.sqrt(sq_norms, dtype=np.float32)[:, None])
        s = self.q @ x.T  # higher is better in every metric below
        if self.metric == "l2":
            # Half of 2 q.x - |x|^2 (the same ranking): 2 q.x itself may overflow float32 for
            # vectors near its range, which would rank far rows first at distance 0.
            s -= 0.5 * (np.einsum("ij,ij->i", x, x) if sq_norms is None else sq_norms)[None, :]
        self.add_scores(s, first_row)

    def add_scores(self, s: Any, first_row: int) -> None:
        """Merge a block of precomputed scores (queries x block rows; higher is better)."""
        if self.seen < self.k:
            self._merge_dense(s, first_row)
        else:
            self._merge_sparse(s, first_row)
        self.seen += s.shape[1]

    def _merge_dense(self, s: Any, first_row: int) -> None:
        """Merge a block while fewer than k rows are known: keep everything at or above the k-th score."""
        rows = np.broadcast_to(np.arange(first_row, first_row + s.shape[1], dtype=np.int64), s.shape)
        all_s = np.concatenate([self.scores, s], axis=1)
        all_r = np.concatenate([self.rows, rows], axis=1)
        kth = -np.partition(-all_s, self.k - 1, axis=1)[:, self.k - 1]
        qi, cj = np.nonzero(all_s >= kth[:, None])
        self._keep_best(np.arange(len(all_s)), qi, all_s[qi, cj], all_r[qi, cj])
        self.threshold = self.scores[:, -1].copy()

    def _merge_sparse(self, s: Any, first_row: int) -> None:
        """Merge a block once k rows are known: only scores beating the current k-th can enter.

        The running lists are kept unsorted (a partition per touched query); :meth:`result` sorts.
        """
        width = s.shape[1]
        flat = np.flatnonzero(s > self.threshold[:, None])  # strictly better: ties keep the earlier row
        if not len(flat):
            return
        qi, cj = np.divmod(flat, width)  # row-major order: grouped by query
        touched, starts, counts = np.unique(qi, return_index=True, return_counts=True)
        slot = np.arange(len(qi)) - np.repeat(starts, counts)
        group = np.repeat(np.arange(len(touched)), counts)
        pad_s = np.full((len(touched), self.k + int(counts.max())), -np.inf, dtype=np.float32)
        pad_r = np.full(pad_s.shape, -1, dtype=np.int64)
        pad_s[:, : self.k] = self.scores[touched]
        pad_r[:, : self.k] = self.rows[touched]
        pad_s[group, self.k + slot] = s.ravel()[flat]
        pad_r[group, self.k + slot] = cj + first_row
        keep = np.argpartition(-pad_s, self.k - 1, axis=1)[:, : self.k]
        self.scores[touched] = np.take_along_axis(pad_s, keep, axis=1)
        self.rows[touched] = np.take_along_axis(pad_r, keep, axis=1)
        self.threshold[touched] = self.scores[touched].min(axis=1)

    def _keep_best(self, touched: Any, q_all: Any, s_all: Any, r_all: Any) -> None:
        """For each touched query (at least k candidates each), keep the k best by score, then lower row."""
        order = np.lexsort((r_all, -s_all, q_all))
        starts = np.searchsorted(q_all[order], touched)
        take = order[(starts[:, None] + np.arange(self.k)[None, :]).ravel()]
        self.scores[touched] = s_all[take].reshape(-1, self.k)
        self.rows[touched] = r_all[take].reshape(-1, self.k)

    def result(self) -> tuple[Any, Any]:
        """(rows, scores) sorted best first, ties by lower row; L2 scores become squared distances."""
        order = np.lexsort((self.rows, -self.scores), axis=1)
        self.scores = np.take_along_axis(self.scores, order, axis=1)
        self.rows = np.take_along_axis(self.rows, order, axis=1)
        if self.metric == "l2" and self.q_sq is not None:  # the queries' squared norms exist for l2
            return self.rows, np.maximum(self.q_sq[:, None] - 2.0 * self.scores, 0.0).astype(np.float32)
        return self.rows, self.scores


def exact_topk(queries: Any, blocks: Iterator[tuple[Any, ...]], k: int, metric: str,
               on_block: Callable[[int], None] | None = None, base_normalized: bool = False) -> tuple[Any, Any]:
    """Exact top-k rows and scores of ``queries`` over base ``blocks`` of (first_row, vectors).

    A block may carry a third item, the rows' squared norms (see :meth:`TopK.add`).
    ``base_normalized`` skips re-normalizing base vectors known to be unit-norm (cosine).
    """
    top = TopK(queries, k, metric, base_normalized)
    for first_row, block, *sq_norms in blocks:
        top.add(block, first_row, *sq_norms)
        if on_block is not None:
            on_block(len(block))
    return top.result()
