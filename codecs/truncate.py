"""Matryoshka truncation: keep the first ``dim`` coordinates and re-normalize.

Kusupati et al. 2022 (arXiv 2205.13147) train embeddings whose prefixes are good
embeddings themselves; a truncated unit vector is no longer unit, so vecx
re-normalizes by default (then cosine and inner product rank alike). Data from a
model not trained with MRL loses information roughly in proportion to the
dropped dimensions: measure before you rely on it (``vecx truth``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param
from vecx.kernels import row_norms
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")


class Truncate(Codec):
    """Keep the first ``dim`` dimensions (Matryoshka), re-normalized to unit length."""

    name = "truncate"
    summary = "Matryoshka truncation: keep the first DIM dimensions, re-normalized"
    example = "truncate:32"
    help = (
        "Keep the first DIM dimensions of every vector and re-normalize it to unit length "
        "(Matryoshka truncation). Queries are truncated the same way. Rows whose prefix is "
        "all zeros stay zero. Refused on L2 data unless renorm=false, because re-normalizing "
        "changes L2 distances."
    )
    params = (
        Param("dim", int, required=True, minimum=1, help="number of leading dimensions to keep"),
        Param("renorm", bool, default=True, help="re-normalize each truncated vector to unit length"),
    )
    primary = "dim"

    def plan(self, input: VectorSpec) -> VectorSpec:
        dim, renorm = self.values["dim"], self.values["renorm"]
        self.require_float(input, "; put truncate before quantizing stages")
        self.require_at_most(dim, input)
        if renorm and input.metric == "l2":
            raise self.fail("the input metric is l2 and re-normalizing would change distances; "
                            "use renorm=false (or --no-renorm) for L2 data")
        return VectorSpec(
            dim=dim,
            dtype=input.dtype,
            metric="cosine" if renorm else input.metric,
            normalized=renorm or (input.normalized and dim == input.dim),
        )

    def encode(self, x: Any) -> Any:
        out = np.array(x[:, : self.values["dim"]], dtype=np.float32, copy=True)
        if self.values["renorm"]:
            norms = row_norms(out)
            np.divide(out, norms, out=out, where=norms > 0)
        return out.astype(self.input.dtype, copy=False)
