"""Shared numeric helpers of vecx/kernels.py, against plain Python references."""

from __future__ import annotations

import numpy as np
import pytest

from vecx.kernels import top_k


def reference_top_k(keys: np.ndarray, scores: np.ndarray, k: int, lower: bool) -> tuple[list, list]:
    out_keys, out_scores = [], []
    for row_keys, row_scores in zip(keys.tolist(), scores.tolist(), strict=True):
        pairs = sorted(zip(row_keys, row_scores, strict=True),
                       key=lambda p: (p[0] < 0, p[1] if lower else -p[1], p[0]))[:k]
        out_keys.append([p[0] for p in pairs])
        out_scores.append([p[1] for p in pairs])
    return out_keys, out_scores


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("case", ["sorted", "ties", "shuffled", "missing"])
def test_top_k_orders_by_score_then_key_with_missing_keys_last(case: str, lower: bool) -> None:
    rng = np.random.default_rng(len(case) + lower)
    n, width, k = 6, 12, 5
    scores = np.sort(rng.random((n, width)).astype(np.float32), axis=1)
    if not lower:
        scores = scores[:, ::-1].copy()
    keys = rng.permutation(100)[:n * width].reshape(n, width).astype(np.int64)
    if case == "ties":  # sorted, but equal scores whose keys are out of order
        scores[:, 1] = scores[:, 2]
        keys[:, 1], keys[:, 2] = np.maximum(keys[:, 1], keys[:, 2]), np.minimum(keys[:, 1], keys[:, 2])
    elif case == "shuffled":
        order = rng.permuted(np.tile(np.arange(width), (n, 1)), axis=1)
        scores, keys = np.take_along_axis(scores, order, 1), np.take_along_axis(keys, order, 1)
    elif case == "missing":
        keys[:, 0] = -1
    got_keys, got_scores = top_k(keys, scores, k, lower_is_better=lower)
    want_keys, want_scores = reference_top_k(keys, scores, k, lower)
    assert got_keys.tolist() == want_keys
    assert got_scores.tolist() == want_scores
