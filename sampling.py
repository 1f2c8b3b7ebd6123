"""Seeded row samples that do not depend on batching, numpy's RNG algorithms or the input format.

Each row number gets a 64-bit key from a SplitMix64 hash of (seed, row); the sample
is the ``size`` rows with the smallest keys, returned in row order. The same seed and
row count always select the same rows, so a chain fitted in one command sees the
same sample as the same stages run one file at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

_CHUNK = 1 << 18  # keys are computed 262,144 rows at a time: bounded scratch memory


def _splitmix64(x: Any) -> Any:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_rows(n_rows: int, size: int, seed: int) -> Any:
    """Sorted row numbers of a seeded sample of ``min(size, n_rows)`` rows out of ``n_rows``."""
    if size >= n_rows:
        return np.arange(n_rows, dtype=np.int64)
    salt = _splitmix64(np.array([seed], dtype=np.uint64))[0]
    best_keys = np.empty(0, dtype=np.uint64)
    best_rows = np.empty(0, dtype=np.int64)
    with np.errstate(over="ignore"):
        for start in range(0, n_rows, _CHUNK):
            rows = np.arange(start, min(n_rows, start + _CHUNK), dtype=np.int64)
            keys = _splitmix64(rows.astype(np.uint64) ^ salt)
            keys = np.concatenate([best_keys, keys])
            rows = np.concatenate([best_rows, rows])
            if len(keys) > size:
                # Ties between 64-bit keys are broken by row number, so the choice is exact.
                order = np.lexsort((rows, keys))[:size]
                keys, rows = keys[order], rows[order]
            best_keys, best_rows = keys, rows
    return np.sort(best_rows)


def stage_sample_rows(stage: Any, n_rows: int) -> Any:
    """The rows a fitting stage learns from: its seeded sample (its ``sample`` and ``seed`` values) of
    ``n_rows``, recorded as the stage's ``fit_rows_``. One rule for files (``vecx fit``) and arrays."""
    rows = sample_rows(n_rows, int(stage.values.get("sample", n_rows)), int(stage.values.get("seed") or 0))
    stage.fit_rows_ = len(rows)
    return rows
