"""PCA: centre and project onto the top ``dim`` principal components, fitted on a seeded sample.

Fit: mean of the sample in float64, covariance from a float32 Gram product, ``numpy.linalg.eigh`` (exact and
deterministic for the dimensions embeddings have), components sorted by variance, each
with its sign fixed so that its largest-magnitude entry is positive (refits agree).

The metric contract, because centring changes inner products:

- L2 input: ``y = W^T (x - mu)`` for data and queries alike; L2 between projections
  approximates L2 between the originals (differences are preserved).
- cosine / inner-product input: data is centred, queries are *not*
  (``y_q = W^T q``, asymmetric). Then ``<y_x, y_q> = <x - mu, q>`` on the kept subspace,
  which ranks exactly like ``<x, q>`` for a given query (the ``-<mu, q>`` term is the same for
  every row), so the output metric is inner product. Cosine input that is not unit-norm is
  normalized first, so inner product ranks like cosine.

``whiten=true`` divides each component by its standard deviation (BERT-whitening style):
off by default, because it inflates low-variance, noisy directions.
"""

from __future__ import annotations

from typing import Any

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param, VectorSpec, one_blas_thread, sample_params

np = lazy("numpy")


class PCA(Codec):
    """Project onto the top principal components of a seeded sample."""

    name = "pca"
    summary = "project onto the top DIM principal components (fitted on a seeded sample)"
    help = (
        "Centre the vectors and project them onto the DIM directions of largest variance, fitted "
        "on a seeded sample (mean, components and variances are saved and reused for queries; "
        "'vecx fit -s pca:D' writes them as a reusable state file). L2 data stays L2; for cosine or "
        "inner-product data queries are projected without centring, so inner product on the "
        "output ranks like the original similarity."
    )
    params = (
        Param("dim", int, required=True, minimum=1, help="number of principal components to keep"),
        Param("whiten", bool, default=False, help="scale each component to unit variance"),
        *sample_params("fits the components"),
    )
    primary = "dim"
    needs_fit = True

    def plan(self, input: VectorSpec) -> VectorSpec:
        self.require_float(input)
        self.require_at_most(self.values["dim"], input)
        self.query_encoding = "symmetric" if input.metric == "l2" else "asymmetric"
        return VectorSpec(self.values["dim"], "float32", "l2" if input.metric == "l2" else "ip", False)

    def fit(self, sample: Any) -> None:
        x = self.unit_if_cosine(sample)
        mean = x.mean(axis=0, dtype=np.float64)
        # float32 centring and Gram product (numpy hands ``c.T @ c`` to BLAS syrk: half the work of a
        # general product, and float32 is twice as fast again); the mean and the eigensolver stay float64.
        centred = x - mean.astype(np.float32)
        cov = (centred.T @ centred).astype(np.float64) / max(1, len(x) - 1)
        with one_blas_thread():
            values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1][: self.values["dim"]]
        components = vectors[:, order].T  # dim x d_in
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
        components *= np.where(signs == 0, 1.0, signs)[:, None]
        self.mean_ = mean.astype(np.float32)
        self.components_ = np.ascontiguousarray(components, dtype=np.float32)
        self.variance_ = np.maximum(values[order], 0.0).astype(np.float32)
        self.is_fitted = True

    def _scale(self) -> Any:
        return 1.0 / np.sqrt(np.maximum(self.variance_, 1e-12)) if self.values["whiten"] else None

    def encode(self, x: Any) -> Any:
        y = (self.unit_if_cosine(x) - self.mean_) @ self.components_.T
        scale = self._scale()
        return (y * scale if scale is not None else y).astype(np.float32)

    def encode_query(self, q: Any) -> Any:
        if self.query_encoding == "symmetric":
            return self.encode(q)
        y = self.unit_if_cosine(q) @ self.components_.T
        scale = self._scale()
        return (y * scale if scale is not None else y).astype(np.float32)

    def decode(self, codes: Any) -> Any:
        y = np.asarray(codes, dtype=np.float32)
        if self.values["whiten"]:
            y = y * np.sqrt(np.maximum(self.variance_, 1e-12))
        return y @ self.components_ + self.mean_

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean_, "components": self.components_, "variance": self.variance_}

    def load_state(self, arrays: dict[str, Any]) -> None:
        d, k = self.input.dim, self.values["dim"]
        self._check_state(arrays, {"mean": (d,), "components": (k, d), "variance": (k,)})
        self.mean_ = arrays["mean"].astype(np.float32)
        self.components_ = np.ascontiguousarray(arrays["components"], dtype=np.float32)
        self.variance_ = arrays["variance"].astype(np.float32)
        self.is_fitted = True
