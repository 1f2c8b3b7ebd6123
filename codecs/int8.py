"""Calibrated int8 scalar quantization (1 byte per dimension).

``mode=perdim`` (default) maps each dimension's calibrated range ``[lo, hi]``
affinely onto the 256 int8 levels (the sentence-transformers ``int8`` scheme), which
reconstructs best; the metric then holds only after decoding, so indexes rescore
or decode. ``mode=global`` uses one symmetric scale for all dimensions
(``code = round(x / s)``, ``|code| <= 127``): codes are proportional to the vectors,
so cosine and inner product can be computed on the codes directly (what usearch's
``i8`` expects). Ranges come from a seeded sample of at most ``sample`` rows and are
saved with the data: a single query vector is encoded with the same ranges, never
re-calibrated on itself (the bug in sentence-transformers#2837).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param, sample_params
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")


class Int8(Codec):
    """Per-dimension (or global) calibrated int8 codes; ranges fitted on a seeded sample."""

    name = "int8"
    summary = "calibrated int8 scalar quantization, 1 byte per dimension"
    example = "int8"
    help = (
        "Quantize each dimension to 8 bits using ranges calibrated on a seeded sample "
        "(quantile..1-quantile, or min..max with quantile=1.0). The ranges are stored in the "
        "output file and reused for every query. mode=perdim maps each dimension's range onto "
        "-128..127; mode=global uses one symmetric scale so codes stay proportional to the vectors."
    )
    params = (
        Param("mode", str, default="perdim", choices=("perdim", "global"),
              help="perdim: affine range per dimension; global: one symmetric scale"),
        Param("quantile", float, default=1.0, minimum=0.5, maximum=1.0,
              help="calibration quantile; values beyond it are clipped (1.0 = min/max)"),
        *sample_params("calibrates the ranges"),
    )
    needs_fit = True

    def plan(self, input: VectorSpec) -> VectorSpec:
        self.require_float(input)
        metric_on = "codes" if self.values["mode"] == "global" else "decoded"
        return VectorSpec(input.dim, "int8", input.metric, False, metric_on)

    def fit(self, sample: Any) -> None:
        x = np.asarray(sample, dtype=np.float32)
        q = self.values["quantile"]
        if self.values["mode"] == "global":
            top = float(np.abs(x).max()) if q == 1.0 else float(np.quantile(np.abs(x), q))
            self.scale_ = np.array([top / 127.0 if top > 0 else 1.0], dtype=np.float32)
            self.lo_ = np.zeros(1, dtype=np.float32)
        else:
            if q == 1.0:
                lo, hi = x.min(axis=0), x.max(axis=0)
            else:
                lo, hi = np.quantile(x, [1.0 - q, q], axis=0)
            width = (hi - lo).astype(np.float32)
            self.lo_ = lo.astype(np.float32)
            # A constant dimension gets scale 1 so that it encodes to one level and decodes exactly.
            self.scale_ = np.where(width > 0, width / 255.0, 1.0).astype(np.float32)
        self.is_fitted = True

    def encode(self, x: Any) -> Any:
        if self.values["mode"] == "global":
            levels = np.rint(x.astype(np.float32) / self.scale_)
            return np.clip(levels, -127, 127).astype(np.int8)
        levels = np.rint((x.astype(np.float32) - self.lo_) / self.scale_) - 128.0
        return np.clip(levels, -128, 127).astype(np.int8)

    def decode(self, codes: Any) -> Any:
        if self.values["mode"] == "global":
            return codes.astype(np.float32) * self.scale_
        return (codes.astype(np.float32) + 128.0) * self.scale_ + self.lo_

    def state(self) -> dict[str, Any]:
        return {"lo": self.lo_, "scale": self.scale_}

    def load_state(self, arrays: dict[str, Any]) -> None:
        n = 1 if self.values["mode"] == "global" else self.input.dim
        self._check_state(arrays, {"lo": (n,), "scale": (n,)})
        self.lo_ = arrays["lo"].astype(np.float32)
        self.scale_ = arrays["scale"].astype(np.float32)
        self.is_fitted = True
