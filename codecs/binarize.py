"""Binarize: one bit per dimension, packed 8 per byte (most significant bit first), searched by Hamming.

``mode=center`` (default) subtracts the per-dimension mean of a seeded sample before taking
signs — essential when values are not centred at zero (SIFT descriptors are non-negative, so
plain sign bits carry almost nothing there); ``mode=sign`` takes ``x > 0`` as is (what
usearch ``b1`` and sentence-transformers' ``ubinary`` do). Decoding gives the best per-dimension
reconstruction from a bit, ``mean ± mean|x - mean|``, so exact search over decoded codes
(``vecx truth``) and rescoring work in the original space. Queries are binarized the same way
(symmetric); asymmetric estimators and multi-bit codes are planned on top of this codec.
"""

from __future__ import annotations

from typing import Any

from vecx._lazy import lazy
from vecx.codecs.base import BITS, Codec, Param, VectorSpec, sample_params

np = lazy("numpy")


class Binarize(Codec):
    """Sign bits (after centring on a fitted mean, by default), packed; Hamming distance."""

    name = "binarize"
    summary = "1 bit per dimension (sign after centring), packed; Hamming search"
    help = (
        "Keep one bit per dimension: whether the value is above the dimension's mean (mode=center, "
        "means fitted on a seeded sample) or above zero (mode=sign). Bits are packed 8 per byte, "
        "most significant first, in a fixed-size-binary column; indexes search them by Hamming "
        "distance and rescore with float vectors. Queries are binarized the same way."
    )
    params = (
        Param("mode", str, default="center", choices=("center", "sign"),
              help="center: sign of x - mean; sign: sign of x"),
        *sample_params("fits the means"),
    )
    needs_fit = True

    def plan(self, input: VectorSpec) -> VectorSpec:
        self.require_float(input)
        return VectorSpec(input.dim, BITS, "hamming", False, "codes")

    def fit(self, sample: Any) -> None:
        x = np.asarray(sample, dtype=np.float32)
        self.mean_ = x.mean(axis=0).astype(np.float32) if self.values["mode"] == "center" \
            else np.zeros(x.shape[1], dtype=np.float32)
        spread = np.abs(x - self.mean_).mean(axis=0).astype(np.float32)
        self.scale_ = np.where(spread > 0, spread, 1.0).astype(np.float32)
        self.is_fitted = True

    def encode(self, x: Any) -> Any:
        return np.packbits(np.asarray(x, dtype=np.float32) > self.mean_, axis=1)

    def decode(self, codes: Any) -> Any:
        bits = np.unpackbits(np.asarray(codes, dtype=np.uint8), axis=1, count=self.input.dim)
        return self.mean_ + (bits.astype(np.float32) * 2.0 - 1.0) * self.scale_

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean_, "scale": self.scale_}

    def load_state(self, arrays: dict[str, Any]) -> None:
        self._check_state(arrays, {"mean": (self.input.dim,), "scale": (self.input.dim,)})
        self.mean_ = arrays["mean"].astype(np.float32)
        self.scale_ = arrays["scale"].astype(np.float32)
        self.is_fitted = True
