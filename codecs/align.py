"""A learned map from one embedding model's space into another's: queries of a new model against an
old model's index (or the reverse) without re-embedding the documents.

The map is a matrix ``W`` (input dim x output dim) fitted on vectors of the same items from both
models (``vecx align fit --from OLD --to NEW``, :func:`fit_pairs`): ``orthogonal`` (the default)
is the Procrustes solution ``W = U V^T`` of ``svd(X^T Y)``, which keeps the old space's angles and
distances (Schönemann 1966; the seed papers on backward-compatible representations); ``linear`` is
ridge least squares ``(X^T X + ridge I)^-1 X^T Y``, which fits better and keeps no geometry;
``identity`` maps nothing (the dimensions in common, the rest zero): the baseline every map is
measured against, and the only kind fitted from one table. Encoding is ``x W``; an orthogonal map
of equal dimensions decodes by ``W^T``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real module for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

KINDS = ("orthogonal", "linear", "identity")


class Align(Codec):
    """Multiply by a matrix fitted on pairs of vectors of the same items from two models."""

    name = "align"
    summary = "learned map from one embedding model's space to another's (orthogonal Procrustes or ridge)"
    example = "align:kind=identity"
    help = (
        "Map vectors of one embedding model into another model's space, so that an index of either "
        "can be searched with the other's queries. The map is fitted on vectors of the same items "
        "from both models with 'vecx align fit --from OLD --to NEW -o map.state' (orthogonal "
        "Procrustes by default, which keeps the old space's geometry; kind=linear: ridge least "
        "squares); 'vecx align OLD.parquet -o mapped.parquet --state map.state' then maps a table, "
        "and 'vecx query INDEX --vector q.npy --align map.state' maps queries. kind=identity maps "
        "nothing (the baseline). Example: vecx align fit --from static.parquet --to minilm.parquet "
        "-o map.state"
    )
    params = (
        Param("kind", str, default="orthogonal", choices=KINDS,
              help="orthogonal: Procrustes (keeps angles); linear: ridge least squares; identity: no map"),
        Param("dim", int, default=0, minimum=0, omit_default=True,
              help="dimension of the target model's vectors (0: the input's)"),
        Param("ridge", float, default=0.01, minimum=0.0, omit_default=True,
              help="kind=linear: the ridge penalty (times the identity added to X^T X)"),
    )
    needs_fit = True

    def plan(self, input: VectorSpec) -> VectorSpec:
        self.require_float(input)
        self.out_dim_ = self.values["dim"] or input.dim
        if not hasattr(self, "matrix_"):  # re-planning (Chain.with_input) keeps the fitted map
            self.matrix_: Any = None
        kind = self.values["kind"]
        normalized = input.normalized and kind == "orthogonal" and self.out_dim_ == input.dim
        return VectorSpec(self.out_dim_, "float32", input.metric, normalized)

    def fit(self, sample: Any) -> None:
        """Only ``identity`` fits from one table; the other kinds need pairs (:meth:`fit_pairs`)."""
        if self.values["kind"] != "identity":
            raise self.fail(f"kind={self.values['kind']} is fitted on vectors of the same items from two models: "
                            "vecx align fit --from OLD.parquet --to NEW.parquet -o map.state")
        self.matrix_ = np.eye(self.input.dim, self.out_dim_, dtype=np.float32)
        self.is_fitted = True

    def fit_pairs(self, old: Any, new: Any) -> None:
        """Fit the map on row-paired vectors of the two models (old: rows x input dim, new: rows x dim)."""
        x = np.asarray(old, dtype=np.float64)
        y = np.asarray(new, dtype=np.float64)
        if x.shape[1] != self.input.dim or y.shape[1] != self.out_dim_ or len(x) != len(y):
            raise self.fail(f"pairs of {x.shape[1]}-d and {y.shape[1]}-d vectors; this map takes "
                            f"{self.input.dim}-d to {self.out_dim_}-d")
        kind = self.values["kind"]
        if kind == "identity":
            self.matrix_ = np.eye(self.input.dim, self.out_dim_, dtype=np.float32)
        elif kind == "orthogonal":
            # Procrustes: the orthogonal W (semi-orthogonal for unequal dimensions) minimising |x W - y|.
            u, _, vt = np.linalg.svd(x.T @ y, full_matrices=False)
            self.matrix_ = (u @ vt).astype(np.float32)
        else:
            gram = x.T @ x + self.values["ridge"] * np.eye(x.shape[1])
            self.matrix_ = np.linalg.solve(gram, x.T @ y).astype(np.float32)
        self.is_fitted = True

    def encode(self, x: Any) -> Any:
        return np.asarray(x, dtype=np.float32) @ self.matrix_

    @property
    def can_decode(self) -> bool:
        """An orthogonal map of equal dimensions is undone by its transpose."""
        return self.values["kind"] in ("orthogonal", "identity") and self.out_dim_ == self.input.dim

    def decode(self, codes: Any) -> Any:
        if not self.can_decode:
            raise self.fail("only an orthogonal map of equal dimensions decodes (by its transpose); "
                            "fit the reverse map with vecx align fit --from NEW --to OLD")
        return np.asarray(codes, dtype=np.float32) @ self.matrix_.T

    def pull_back(self, q: Any) -> Any:
        """Input-space stand-ins for queries already in the output space: ``q M^T``, whose inner
        product with any input row ``x`` is the query's with the mapped row ``x M`` — so a query of
        the target model searches an index of mapped rows through the whole chain, rescoring by the
        unmapped rows included (for an orthogonal map, cosines too: ``|x M| = |x|``)."""
        return np.asarray(q, dtype=np.float32) @ self.matrix_.T

    def state(self) -> dict[str, Any]:
        return {"matrix": self.matrix_}

    def load_state(self, arrays: dict[str, Any]) -> None:
        self._check_state(arrays, {"matrix": (self.input.dim, self.out_dim_)})
        self.matrix_ = np.ascontiguousarray(arrays["matrix"], dtype=np.float32)
        self.is_fitted = True
