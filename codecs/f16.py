"""Half precision: store float32 vectors as IEEE float16 (2 bytes per dimension).

float16 keeps about 3 significant decimal digits, which for embeddings costs
almost no recall; values beyond +-65504 do not fit and are refused, not turned
into infinities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.codecs.base import Codec
from vecx.errors import RowError
from vecx.kernels import cast
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

F16_MAX = 65504.0


class F16(Codec):
    """Cast float32 vectors to float16; decoding casts back."""

    name = "f16"
    summary = "half precision: float32 -> float16, 2 bytes per dimension"
    example = "f16"
    help = (
        "Store vectors as float16 (half the bytes of float32). Queries are cast the same way. "
        "A value outside float16's range (|x| > 65504) is an error naming the row."
    )

    def plan(self, input: VectorSpec) -> VectorSpec:
        if input.dtype != "float32":
            raise self.fail(f"needs float32 vectors, got {input.dtype}")
        return VectorSpec(input.dim, "float16", input.metric, input.normalized)

    def encode(self, x: Any) -> Any:
        too_big = np.abs(x) > F16_MAX
        if too_big.any():
            row = int(np.flatnonzero(too_big.any(axis=1))[0])
            raise RowError(row, f"value out of float16 range (|x| > {F16_MAX:g})",
                           hint="scale the vectors or keep float32")
        return cast(x, np.float16)

    def decode(self, codes: Any) -> Any:
        return cast(codes, np.float32)
