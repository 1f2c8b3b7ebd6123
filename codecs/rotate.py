"""A seeded random rotation (Haar-distributed orthogonal matrix): spreads energy evenly over dimensions.

``Q`` comes from the QR decomposition of a seeded Gaussian matrix with the sign fix
``Q <- Q diag(sign(diag(R)))`` (without it the distribution is not uniform). Rotation keeps
every distance and inner product, so the metric is handed on unchanged; it is used before
sign bits or product quantization so that no dimension carries more than its share. The
matrix is stored with the data (regenerating it from the seed is not promised to give the
same bits across numpy versions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param
from vecx.kernels import haar_orthogonal
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")


class Rotate(Codec):
    """Multiply by a seeded random orthogonal matrix (distances and inner products unchanged)."""

    name = "rotate"
    summary = "seeded random orthogonal rotation (keeps distances; spreads energy over dimensions)"
    example = "rotate"
    help = (
        "Rotate every vector by a random orthogonal matrix drawn from the seed (QR of a Gaussian "
        "matrix, sign-fixed). Distances and inner products are unchanged, so the metric passes "
        "through; used before binarize or pq so that every dimension carries a similar share. "
        "The matrix is stored in the output (dim x dim float32)."
    )
    params = (Param("seed", int, default=0, minimum=0, help="seed of the rotation"),)

    def plan(self, input: VectorSpec) -> VectorSpec:
        self.require_float(input)
        self.matrix_: Any = None
        return VectorSpec(input.dim, "float32", input.metric, input.normalized)

    def _matrix(self) -> Any:
        if self.matrix_ is None:
            self.matrix_ = haar_orthogonal(self.input.dim, self.values["seed"])
        return self.matrix_

    def encode(self, x: Any) -> Any:
        return np.asarray(x, dtype=np.float32) @ self._matrix().T

    def decode(self, codes: Any) -> Any:
        return np.asarray(codes, dtype=np.float32) @ self._matrix()

    def state(self) -> dict[str, Any]:
        return {"matrix": self._matrix()}

    def load_state(self, arrays: dict[str, Any]) -> None:
        self._check_state(arrays, {"matrix": (self.input.dim, self.input.dim)})
        self.matrix_ = np.ascontiguousarray(arrays["matrix"], dtype=np.float32)
        self.is_fitted = True
