"""Shared numeric helpers of vecx/kernels.py, against plain Python references."""

from __future__ import annotations

import numpy as np
import pytest

from vecx.kernels import top_k


def reference_top_k(keys: np.ndarray, scores: np.ndarray, k: int, lower: bool) -> tuple[list, list]:
    out_keys, out_scores = [], []
    for row_keys, row_scores in zip(keys.tolist(), scores.tolist(), strict=True):
        pairs = sorted(zip(row_keys, row_scores, strict=True),  # stable: missing keys keep their order
                       key=lambda p: (1, 0.0, 0) if p[0] < 0 else (0, p[1] if lower else -p[1], p[0]))[:k]
        out_keys.append([p[0] for p in pairs])
        out_scores.append([p[1] for p in pairs])
    return out_keys, out_scores


@pytest.mark.parametrize("n", [1, 6])  # one query: a path of its own
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("case", ["sorted", "ties", "shuffled", "missing"])
def test_top_k_orders_by_score_then_key_with_missing_keys_last(case: str, lower: bool, n: int) -> None:
    rng = np.random.default_rng(len(case) + lower)
    width, k = 12, 5
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
        keys[:, 0] = keys[:, 3] = -1
        k = width - 1
    got_keys, got_scores = top_k(keys, scores, k, lower_is_better=lower)
    want_keys, want_scores = reference_top_k(keys, scores, k, lower)
    assert got_keys.tolist() == want_keys
    assert got_scores.tolist() == want_scores


def test_cast_gives_numpys_bytes_for_every_half_and_every_tie() -> None:
    """The SIMD casts round exactly as numpy does: every float16 value to float32, and float32
    values at, just above and just below each midpoint of two float16 values (ties to even),
    beyond the largest (to infinity), and non-contiguous, empty and non-native inputs."""
    from vecx.kernels import cast

    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    wide = cast(halves, np.float32)
    assert wide.dtype == np.float32 and np.array_equal(np.isnan(wide), np.isnan(halves))
    finite = ~np.isnan(halves)
    assert np.array_equal(wide[finite].view(np.uint32), halves[finite].astype(np.float32).view(np.uint32))
    values = np.unique(halves[np.isfinite(halves)].astype(np.float64))
    ties = ((values[1:] + values[:-1]) / 2).astype(np.float32)
    edges = np.array([65504, 65519.99, 65520, 1e10, -1e10, 6e-8, 3e-8, -2.9e-8, 0.0, -0.0], dtype=np.float32)
    for x in (ties, np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf)), edges):
        with np.errstate(over="ignore"):
            expected = x.astype(np.float16)
        assert np.array_equal(cast(x, np.float16).view(np.uint16), expected.view(np.uint16))
    strided = np.random.default_rng(3).standard_normal((50, 40)).astype(np.float32)[:, ::3]
    assert np.array_equal(cast(strided, np.float16).view(np.uint16), strided.astype(np.float16).view(np.uint16))
    assert cast(np.zeros((0, 4), np.float32), np.float16).shape == (0, 4)
    swapped = np.arange(6, dtype=">f4").reshape(2, 3)
    assert np.array_equal(cast(swapped, np.float16), swapped.astype(np.float16))
    same = np.ones(3, np.float32)
    assert cast(same, np.float32) is same
