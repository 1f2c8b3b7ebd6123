"""Very sparse random projection (Li, Hastie & Church, KDD 2006): a data-oblivious reducer.

``y = x R / sqrt(dim)`` with ``R`` (input dim x ``dim``) entries ``sqrt(s) * {+1, 0, -1}`` with
probabilities ``1/(2s), 1 - 1/s, 1/(2s)``; ``s = sqrt(input dim)`` by default. Inner products
and squared distances are preserved in expectation (Johnson-Lindenstrauss), so the metric is
handed on (cosine becomes an approximation: vectors are no longer unit-norm). Nothing is
fitted; the sparse matrix, drawn from the seed, is stored with the data. Worse than PCA at
equal dimension on anisotropic embeddings, but free to fit and safe on streams.

``dim`` may not exceed the input dimension: a projection up adds no information and only
makes the vectors larger, so it is refused when the chain is planned, like ``truncate``/``pca``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")


class RandomProjection(Codec):
    """Project to ``dim`` dimensions with a seeded very sparse random matrix."""

    name = "rp"
    summary = "very sparse random projection to DIM dimensions (seeded, nothing to fit)"
    example = "rp:32"
    help = (
        "Project onto DIM random directions with a very sparse +-1 matrix (Li et al. 2006; "
        "density 1/s, s = sqrt(input dim) unless given), scaled so that inner products and "
        "distances are preserved in expectation. Data-independent: nothing to fit; the matrix is "
        "drawn from the seed and stored in the output. DIM may not exceed the input dimension."
    )
    params = (
        Param("dim", int, required=True, minimum=1, help="output dimension"),
        Param("s", float, default=0.0, minimum=0.0,
              help="sparsity: 1/s of the entries are non-zero (0 = sqrt of the input dimension)"),
        Param("seed", int, default=0, minimum=0, help="seed of the projection"),
    )
    primary = "dim"

    def plan(self, input: VectorSpec) -> VectorSpec:
        self.require_float(input)
        self.require_at_most(self.values["dim"], input)
        s = self.values["s"] or math.sqrt(input.dim)
        if s < 1:
            raise self.fail(f"s={s:g} must be at least 1")
        self.density = 1.0 / s
        self.matrix_: Any = None
        return VectorSpec(self.values["dim"], "float32", input.metric, False)

    def _matrix(self) -> Any:
        if self.matrix_ is None:
            rng = np.random.Generator(np.random.PCG64(self.values["seed"]))
            u = rng.random((self.input.dim, self.values["dim"]))
            signs = np.where(u < self.density / 2, 1.0, np.where(u < self.density, -1.0, 0.0))
            scale = math.sqrt(1.0 / self.density) / math.sqrt(self.values["dim"])
            self.matrix_ = (signs * scale).astype(np.float32)
        return self.matrix_

    def encode(self, x: Any) -> Any:
        return np.asarray(x, dtype=np.float32) @ self._matrix()

    def state(self) -> dict[str, Any]:
        return {"matrix": self._matrix()}

    def load_state(self, arrays: dict[str, Any]) -> None:
        self._check_state(arrays, {"matrix": (self.input.dim, self.values["dim"])})
        self.matrix_ = np.ascontiguousarray(arrays["matrix"], dtype=np.float32)
        self.is_fitted = True
