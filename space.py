"""The vector-space data model: what a vector column holds and which similarity it supports.

Every layer speaks it: the file formats record a :class:`VectorSpec` in their metadata, codecs
turn one into another (:meth:`vecx.codecs.base.Codec.plan`), indexes pick their metric from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DTYPE_BYTES = {"float32": 4, "float16": 2, "int8": 1}
#: Packed bits (``dtype="bits"``): ``dim`` counts bits, stored 8 per byte, most significant first.
BITS = "bits"
#: Opaque fixed-size byte codes (product-quantization codes, RaBitQ-style codes): ``dim`` counts
#: bytes. The metric holds only through the codec's own scorer between a float query and the codes
#: (``metric_on="scorer"``, see :meth:`Codec.prepare_queries` / :meth:`Codec.score`).
CODES = "codes"
#: Parsed JSON records (the input of ``vsa``): not vectors, so ``dim`` is 0 and a row takes no vector bytes.
JSON = "json"
METRICS = ("cosine", "ip", "l2")
#: Other names the ecosystem uses for them (ann-benchmarks, faiss, usearch, sentence-transformers).
METRIC_ALIASES = {"angular": "cosine", "cos": "cosine", "dot": "ip", "inner_product": "ip", "euclidean": "l2",
                  "l2sq": "l2", "sqeuclidean": "l2"}


def canonical_metric(name: str, option: str = "--metric") -> str:
    """The vecx name of a metric (``angular`` is ``cosine``, ``euclidean`` ``l2``, ``dot`` ``ip``); a
    :class:`~vecx.errors.UsageError` for a name it does not know."""
    from vecx.errors import UsageError

    lowered = name.strip().lower()
    if lowered in METRICS:
        return lowered
    if lowered in METRIC_ALIASES:
        return METRIC_ALIASES[lowered]
    known = ", ".join(METRICS) + " (or " + ", ".join(METRIC_ALIASES) + ")"
    raise UsageError(f"{option} must be one of {known}, not {name!r}")


def row_bytes(dim: int, dtype: str) -> int:
    """Bytes one vector of ``dim`` values of ``dtype`` takes (bits are packed)."""
    if dtype == JSON:
        return 0
    if dtype == CODES:
        return dim
    return (dim + 7) // 8 if dtype == BITS else dim * DTYPE_BYTES[dtype]


def is_packed(dtype: str) -> bool:
    """Whether vectors of ``dtype`` are stored as bytes (a fixed-size-binary column): bits and codes."""
    return dtype in (BITS, CODES)


@dataclass(frozen=True)
class VectorSpec:
    """What a vector column holds and what similarity it supports (the *metric contract*).

    ``metric`` is the similarity the vectors are meant for; ``normalized`` says every
    vector has unit L2 norm (then cosine, IP and L2 rank alike); ``metric_on`` says
    whether the metric can be computed on the stored values directly (``"codes"``),
    only after decoding them (``"decoded"``, e.g. per-dimension affine int8 codes), or only by
    the codec's asymmetric scorer between a float query and the codes (``"scorer"``: PQ's
    distance tables, the RaBitQ estimator; dtype :data:`CODES`).
    """

    dim: int
    dtype: str = "float32"
    metric: str = "cosine"
    normalized: bool = False
    metric_on: str = "codes"
    #: A *set* of ``dim``-d vectors per row (multi-vector data, see :mod:`vecx.formats.multi`);
    #: ``bytes_per_vector`` then counts one token vector.
    multi: bool = False

    @property
    def bytes_per_vector(self) -> int:
        """Bytes one encoded vector takes in the vector column."""
        return row_bytes(self.dim, self.dtype)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the file metadata (``multi`` only when set, so single-vector files keep their bytes)."""
        out = asdict(self)
        if not self.multi:
            del out["multi"]
        out["bytes_per_vector"] = self.bytes_per_vector
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VectorSpec:
        """Inverse of :meth:`to_json` (extra keys are ignored)."""
        return cls(
            dim=int(data["dim"]),
            dtype=str(data["dtype"]),
            metric=str(data["metric"]),
            normalized=bool(data["normalized"]),
            metric_on=str(data.get("metric_on", "codes")),
            multi=bool(data.get("multi", False)),
        )
