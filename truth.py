"""Exact top-k ground truth, blocked so memory stays bounded whatever the base size.

The base is streamed in blocks; each block is scored against all queries with one
matrix product (multi-threaded BLAS), and only scores that beat a query's current
k-th best are merged into its running top-k (the same early rejection a heap gives
faiss). Scores are cosine similarity, inner product, or squared L2 distance
(ascending) by the base's metric. Ties go to the lower base row.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from vecx._lazy import lazy

np = lazy("numpy")

SCORE_NAMES = {"cosine": "cosine similarity", "ip": "inner product", "l2": "squared L2 distance"}


def _normalize(x: Any) -> Any:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class TopK:
    """Running exact top-k for ``nq`` queries over blocks of base vectors."""

    def __init__(self, queries: Any, k: int, metric: str) -> None:
        self.metric = metric
        self.k = k
        q = np.ascontiguousarray(queries, dtype=np.float32)
        self.q = _normalize(q) if metric == "cosine" else q
        self.q_sq = np.einsum("ij,ij->i", q, q) if metric == "l2" else None
        nq = len(q)
        self.scores = np.full((nq, k), -np.inf, dtype=np.float32)
        self.rows = np.full((nq, k), -1, dtype=np.int64)
        self.seen = 0

    def add(self, block: Any, first_row: int) -> None:
        """Score one block of base vectors (rows ``first_row`` ...)."""
        x = np.ascontiguousarray(block, dtype=np.float32)
        if self.metric == "cosine":
            x = _normalize(x)
        s = self.q @ x.T  # higher is better in every metric below
        if self.metric == "l2":
            s *= 2.0
            s -= np.einsum("ij,ij->i", x, x)[None, :]
        if self.seen < self.k:
            self._merge_dense(s, first_row)
        else:
            self._merge_sparse(s, first_row)
        self.seen += len(x)

    def _merge_dense(self, s: Any, first_row: int) -> None:
        rows = np.broadcast_to(np.arange(first_row, first_row + s.shape[1], dtype=np.int64), s.shape)
        all_s = np.concatenate([self.scores, s], axis=1)
        all_r = np.concatenate([self.rows, rows], axis=1)
        keep = self._best(all_s, all_r)
        self.scores = np.take_along_axis(all_s, keep, axis=1)
        self.rows = np.take_along_axis(all_r, keep, axis=1)

    def _best(self, s: Any, r: Any) -> Any:
        """Indices of the k best per row, ordered by score desc then row asc."""
        if s.shape[1] > self.k:
            part = np.argpartition(-s, self.k - 1, axis=1)[:, : self.k]
        else:
            part = np.broadcast_to(np.arange(s.shape[1]), s.shape)
        ps, pr = np.take_along_axis(s, part, axis=1), np.take_along_axis(r, part, axis=1)
        order = np.lexsort((pr, -ps), axis=1)
        return np.take_along_axis(part, order, axis=1)

    def _merge_sparse(self, s: Any, first_row: int) -> None:
        threshold = self.scores[:, -1]
        qi, cj = np.nonzero(s > threshold[:, None])  # strictly better: ties keep the earlier row
        if not len(qi):
            return
        touched = np.unique(qi)
        # Candidate lists: each touched query's current top-k plus its new hits.
        old_q = np.repeat(touched, self.k)
        q_all = np.concatenate([old_q, qi])
        s_all = np.concatenate([self.scores[touched].ravel(), s[qi, cj]])
        r_all = np.concatenate([self.rows[touched].ravel(), cj.astype(np.int64) + first_row])
        order = np.lexsort((r_all, -s_all, q_all))
        q_sorted = q_all[order]
        starts = np.searchsorted(q_sorted, touched)
        take = (starts[:, None] + np.arange(self.k)[None, :]).ravel()
        self.scores[touched] = s_all[order][take].reshape(-1, self.k)
        self.rows[touched] = r_all[order][take].reshape(-1, self.k)

    def result(self) -> tuple[Any, Any]:
        """(rows, scores); L2 scores are converted to squared distances (ascending)."""
        if self.metric == "l2":
            return self.rows, np.maximum(self.q_sq[:, None] - self.scores, 0.0).astype(np.float32)
        return self.rows, self.scores


def exact_topk(queries: Any, blocks: Iterator[tuple[int, Any]], k: int, metric: str,
               on_block: Callable[[int], None] | None = None) -> tuple[Any, Any]:
    """Exact top-k rows and scores of ``queries`` over base ``blocks`` of (first_row, vectors)."""
    top = TopK(queries, k, metric)
    for first_row, block in blocks:
        top.add(block, first_row)
        if on_block is not None:
            on_block(len(block))
    return top.result()
