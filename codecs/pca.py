"""PCA: centre and project onto the top ``dim`` principal components, fitted on a seeded sample.

Fit: mean of the sample in float64, covariance from a float32 Gram product, ``numpy.linalg.eigh`` (exact and
deterministic for the dimensions embeddings have), components sorted by variance, each
with its sign fixed so that its largest-magnitude entry is positive (refits agree).

Limits of a fit on ``n`` sample rows of dimension ``D``:

- ``dim`` must be at most ``n - 1``: a centred sample of ``n`` rows spans at most ``n - 1``
  directions, and components beyond them would be arbitrary (a usage error, exit 2; the
  sample rows are those of the ``sample`` parameter or the whole input if it is smaller).
- With fewer rows than dimensions (``n < D``) the components come from the ``n x n`` Gram
  matrix of the centred sample instead of the ``D x D`` covariance: the same components and
  variances (same order and signs, up to float error) without a matrix that grows with ``D``.
  A sample that spans fewer than ``dim`` directions (repeated rows) is bad data (exit 3).
- The eigen-decomposed matrix (``min(n, D)`` squared, float64) may take at most 4 GiB; a larger
  fit is refused: reduce the dimension first (``rp``, ``truncate``) or fit on fewer rows.

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

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param, sample_params
from vecx.errors import DataError, UsageError
from vecx.kernels import one_blas_thread
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

#: Largest eigen-decomposed matrix a fit may build (the D x D covariance, or the n x n Gram matrix
#: when the sample has fewer rows than dimensions), in float64 bytes.
MAX_MATRIX_BYTES = 4 << 30


class PCA(Codec):
    """Project onto the top principal components of a seeded sample."""

    name = "pca"
    summary = "project onto the top DIM principal components (fitted on a seeded sample)"
    example = "pca:32"
    help = (
        "Centre the vectors and project them onto the DIM directions of largest variance, fitted "
        "on a seeded sample (mean, components and variances are saved and reused for queries; "
        "'vecx fit -s pca:D' writes them as a reusable state file). L2 data stays L2; for cosine or "
        "inner-product data queries are projected without centring, so inner product on the "
        "output ranks like the original similarity. DIM must be below the number of sample rows "
        "(a centred sample of N rows spans N-1 directions); with fewer rows than dimensions the "
        "fit uses the rows' Gram matrix; a fit needing a matrix over 4 GiB is refused (reduce the "
        "dimension first with rp or truncate)."
    )
    params = (
        Param("dim", int, required=True, minimum=1, help="number of principal components to keep"),
        Param("whiten", bool, default=False, help="scale each component to unit variance"),
        *sample_params("fits the components"),
    )
    primary = "dim"
    needs_fit = True

    @property
    def symmetric_queries(self) -> bool:
        """L2: queries are centred like data. Inner product and cosine: queries are projected without
        centring, which keeps ``<q, x>`` ranking of the centred data (a constant per query drops out)."""
        return self.input.metric == "l2"

    def plan(self, input: VectorSpec) -> VectorSpec:
        self.require_float(input)
        self.require_at_most(self.values["dim"], input)
        return VectorSpec(self.values["dim"], "float32", "l2" if input.metric == "l2" else "ip", False)

    def fit(self, sample: Any) -> None:
        x = self.unit_if_cosine(sample)
        n, d, k = len(x), x.shape[1], self.values["dim"]
        if k > n - 1:
            raise UsageError(
                f"{self.spec}: dim {k} needs a sample of at least {k + 1} rows, the sample holds {n}; a "
                f"centred sample of {n} rows spans at most {max(0, n - 1)} directions, and components "
                "beyond that are arbitrary",
                hint=f"give more rows (sample=N), or a dim of at most {max(1, n - 1)}")
        side = min(n, d)
        if side * side * 8 > MAX_MATRIX_BYTES:
            raise UsageError(
                f"{self.spec}: fitting {d}-d vectors on {n:,} rows needs a {side:,} x {side:,} float64 matrix "
                f"({side * side * 8 / 2**30:.1f} GiB), more than the {MAX_MATRIX_BYTES >> 30} GiB pca allows",
                hint="reduce the dimension first (e.g. 'rp:4096,pca:...' or 'truncate:4096,pca:...'), "
                     "or fit on fewer rows than dimensions (sample=N)")
        mean = x.mean(axis=0, dtype=np.float64)
        # float32 centring and Gram product (numpy hands ``c.T @ c`` to BLAS syrk: half the work of a
        # general product, and float32 is twice as fast again); the mean and the eigensolver stay float64.
        centred = x - mean.astype(np.float32)
        if n < d:
            values, components = self._fit_gram(centred)
        else:
            cov = (centred.T @ centred).astype(np.float64) / max(1, n - 1)
            with one_blas_thread():
                values, vectors = np.linalg.eigh(cov)
            order = np.argsort(values)[::-1][:k]
            values, components = values[order], vectors[:, order].T  # dim x d_in
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
        components *= np.where(signs == 0, 1.0, signs)[:, None]
        self.mean_ = mean.astype(np.float32)
        self.components_ = np.ascontiguousarray(components, dtype=np.float32)
        self.variance_ = np.maximum(values, 0.0).astype(np.float32)
        self.is_fitted = True

    def _fit_gram(self, centred: Any) -> tuple[Any, Any]:
        """Top components of a sample with fewer rows than dimensions, from its n x n Gram matrix.

        The covariance ``C^T C / (n-1)`` of the centred sample ``C`` and its Gram matrix
        ``C C^T / (n-1)`` share their non-zero eigenvalues, and an eigenvector ``u`` of the Gram matrix
        gives the component ``C^T u`` (normalized): the same components as the covariance path, in
        n x n memory instead of D x D.
        Returns the variances and the ``dim x D`` components, largest variance first.
        """
        n, k = len(centred), self.values["dim"]
        gram = (centred @ centred.T).astype(np.float64) / max(1, n - 1)
        with one_blas_thread():
            values, vectors = np.linalg.eigh(gram)
        order = np.argsort(values)[::-1][:k]
        values = values[order]
        floor = max(float(values[0]), 0.0) * n * np.finfo(np.float32).eps
        flat = np.flatnonzero(values <= floor)
        if len(flat):
            raise DataError(
                f"{self.spec}: the sample spans only {int(flat[0])} directions (repeated or collinear rows), "
                f"fewer than dim {k}; components beyond that are arbitrary",
                hint=f"give a dim of at most {max(1, int(flat[0]))}, or more varied rows")
        components = (vectors[:, order].T.astype(np.float32) @ centred).astype(np.float64)  # dim x d_in
        components /= np.linalg.norm(components, axis=1, keepdims=True)
        return values, components

    def _scale(self) -> Any:
        return 1.0 / np.sqrt(np.maximum(self.variance_, 1e-12)) if self.values["whiten"] else None

    def encode(self, x: Any) -> Any:
        y = (self.unit_if_cosine(x) - self.mean_) @ self.components_.T
        scale = self._scale()
        return (y * scale if scale is not None else y).astype(np.float32)

    def encode_query(self, q: Any) -> Any:
        if self.symmetric_queries:
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
