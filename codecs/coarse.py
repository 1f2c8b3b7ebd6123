"""Coarse k-means centroids shared by the codecs that code vectors relative to a list (``ivf=N``).

Not a codec: PQ codes a vector's residual from its nearest centroid, RaBitQ centres it there;
both fit the centroids the same way (PQ's seeded, over-relaxed k-means on at most 256 rows per
centroid) and assign rows to their nearest one (squared L2, lowest index on ties).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")

#: k-means iterations of the coarse centroids.
ITERATIONS = 20


def fit_centroids(x: Any, lists: int, seed: int) -> Any:
    """``lists`` centroids (lists x D float32) of the rows of ``x`` (a seeded subset of at most 256 per list)."""
    from vecx.codecs.pq import MAX_POINTS_PER_CENTROID, _kmeans, _mix
    from vecx.sampling import sample_rows

    n = len(x)
    if n < lists:
        raise DataError(f"k-means needs at least {lists} training rows for {lists} coarse lists, the sample "
                        f"holds {n}", hint="give more rows, or fewer lists")
    limit = MAX_POINTS_PER_CENTROID * lists
    train = x if n <= limit else x[sample_rows(n, limit, _mix(seed, 1 << 22))]
    return _kmeans(np.ascontiguousarray(train, dtype=np.float32), lists, ITERATIONS, _mix(seed, 1 << 23))


def nearest(x: Any, centroids: Any) -> Any:
    """The nearest centroid of every row of ``x`` (intp)."""
    from vecx.codecs.pq import _augmented, _nearest

    labels = np.empty(len(x), dtype=np.intp)
    _nearest(np.ascontiguousarray(x, dtype=np.float32), _augmented(centroids), labels)
    return labels
