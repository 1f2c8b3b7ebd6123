"""Calibrated int8 scalar quantization (1 byte per dimension).

``mode=perdim`` (default) maps each dimension's calibrated range ``[lo, hi]``
affinely onto the 256 int8 levels (the sentence-transformers ``int8`` scheme), which
reconstructs best; the metric then holds only after decoding, so an index scores these
codes through the codec (:class:`~vecx.codecs.base.ScoresCodes`: float queries against the
decoded rows, exactly) and, past the scan's row limit, navigates an i8 graph over the decoded
rows on one scale before scoring a pool of its candidates. ``mode=global`` uses one
symmetric scale for all dimensions (``code = round(x / s)``, ``|code| <= 127``): codes are proportional to the vectors,
so cosine and inner product can be computed on the codes directly (what usearch's
``i8`` expects). Ranges come from a seeded sample of at most ``sample`` rows and are
saved with the data: a single query vector is encoded with the same ranges, never
re-calibrated on itself (the bug in sentence-transformers#2837).

``rounding`` picks the level of a value between two: ``nearest`` (the most accurate) or, for
per-dimension codes with sentence-transformers' bytes, ``truncate`` (its ``int8``:
``trunc((x - lo) / s - 128)``) and ``floor`` (its ``uint8``, ``floor((x - lo) / s)``, stored
shifted by -128 as int8). Values outside the calibrated range are clipped, where
sentence-transformers' cast wraps them around.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param, ScoresCodes, sample_params
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")


class Int8(ScoresCodes, Codec):
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
        Param("rounding", str, default="nearest", choices=("nearest", "truncate", "floor"), omit_default=True,
              help="mode=perdim: level of a value between two; truncate and floor give the bytes of "
                   "sentence-transformers' int8 and uint8 (the latter shifted by -128)"),
        *sample_params("calibrates the ranges"),
    )
    needs_fit = True

    def plan(self, input: VectorSpec) -> VectorSpec:
        self.require_float(input)
        if self.values["mode"] == "global" and self.values["rounding"] != "nearest":
            raise self.fail("rounding applies to mode=perdim (global codes round to the nearest level)")
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
        steps = (x.astype(np.float32) - self.lo_) / self.scale_
        rounding = self.values["rounding"]
        # truncate: sentence-transformers' int8 arithmetic to the last float32 operation.
        if rounding == "truncate":
            levels = np.trunc(steps - 128.0)
        else:
            levels = (np.floor(steps) if rounding == "floor" else np.rint(steps)) - 128.0
        return np.clip(levels, -128, 127).astype(np.int8)

    def decode(self, codes: Any) -> Any:
        codes = np.asarray(codes)
        if codes.dtype == np.uint8:  # the bytes an index keeps for scored codes
            codes = codes.view(np.int8)
        if self.values["mode"] == "global":
            return codes.astype(np.float32) * self.scale_
        return (codes.astype(np.float32) + 128.0) * self.scale_ + self.lo_

    # ---- scoring per-dimension codes (an index of them: see the module) ----------------------
    @property
    def scores_codes(self) -> bool:
        """Per-dimension codes hold the metric only once decoded: the codec scores them."""
        return self.values["mode"] == "perdim"

    def encode_query(self, q: Any) -> Any:
        """Per-dimension codes are scored against the float queries themselves (asymmetric);
        global codes take the queries quantized alike."""
        if self.values["mode"] == "perdim":
            return np.asarray(q, dtype=np.float32)
        return self.encode(q)

    @property
    def symmetric_queries(self) -> bool:
        """Global codes take queries quantized alike; per-dimension codes take them as floats."""
        return self.values["mode"] == "global"

    def prepare_queries(self, q: Any) -> dict[str, Any]:
        q = np.asarray(q, dtype=np.float32)
        if self.output.metric == "cosine":
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
        # q . decoded(c) = q . (lo + 128 scale) + (q * scale) . c: one product with the raw codes.
        offset = (self.lo_ + 128.0 * self.scale_).astype(np.float32)
        return {"q": q, "sq": np.einsum("ij,ij->i", q, q), "qs": q * self.scale_, "q0": q @ offset}


    def score(self, prepared: dict[str, Any], codes: Any) -> Any:
        c = np.asarray(codes).view(np.int8).astype(np.float32)
        dots = prepared["q0"][:, None] + prepared["qs"] @ c.T  # queries . decoded rows
        metric = self.output.metric
        if metric == "ip":
            return dots
        # The decoded rows' squared norms, from the codes too: |lo + 128 s|^2 + 2 (s (lo + 128 s)) . c + (s^2) . c^2.
        offset = self.lo_ + 128.0 * self.scale_
        sq = float(offset @ offset) + c @ (2.0 * self.scale_ * offset) + (c * c) @ (self.scale_ * self.scale_)
        if metric == "l2":
            return prepared["sq"][:, None] - 2.0 * dots + sq[None, :]
        return dots / np.sqrt(np.maximum(sq, 1e-30))[None, :]

    def score_candidates(self, prepared: dict[str, Any], codes: Any) -> Any:
        x = self.decode(codes)  # queries x candidates x dim
        q = prepared["q"]
        metric = self.output.metric
        if metric == "l2":
            return ((x - q[:, None, :]) ** 2).sum(-1)
        if metric == "cosine":
            x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-30)
        return np.einsum("nmd,nd->nm", x, q)

    def navigation(self, codes: Any) -> tuple[str, int, Any] | None:
        """The decoded rows again in int8, on one symmetric scale (codes proportional to the vectors,
        as ``mode=global`` makes them): a graph's metric then holds on them, which it does not on
        per-dimension codes (each dimension shifted and scaled on its own)."""
        if self.values["mode"] != "perdim":
            return None
        top = float(np.maximum(np.abs(self.lo_), np.abs(self.lo_ + 255.0 * self.scale_)).max())
        scale = top / 127.0 if top > 0 else 1.0
        levels = np.rint(self.decode(codes) / scale)
        return "int8", self.input.dim, np.ascontiguousarray(np.clip(levels, -127, 127).astype(np.int8))

    @property
    def scan_rows(self) -> int:
        """Rows up to which an index scores every code by default (``--scan auto``): about 8 MB of
        codes, 20,000 rows of 384-d (PQ and RaBitQ codes, a tenth as wide, scan 200,000)."""
        return max(1_000, 8_000_000 // max(1, self.input.dim))

    @property
    def navigation_metric(self) -> str:  # type: ignore[override]
        """Cosine, or squared L2 for L2 vectors (usearch's i8 inner product is not trusted: #405)."""
        return "l2sq" if self.output.metric == "l2" else "cos"

    def state(self) -> dict[str, Any]:
        return {"lo": self.lo_, "scale": self.scale_}

    def load_state(self, arrays: dict[str, Any]) -> None:
        n = 1 if self.values["mode"] == "global" else self.input.dim
        self._check_state(arrays, {"lo": (n,), "scale": (n,)})
        self.lo_ = arrays["lo"].astype(np.float32)
        self.scale_ = arrays["scale"].astype(np.float32)
        self.is_fitted = True
