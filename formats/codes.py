"""Pre-quantized embeddings in: codes made elsewhere, imported as the vecx codec that makes the same bytes.

Embedding APIs and sentence-transformers' ``quantize_embeddings`` hand out codes rather than
floats: ``ubinary`` (sign bits packed eight to a byte, ``np.packbits(x > 0)``), ``binary`` (the
same bytes shifted by -128 into int8), ``int8`` and ``uint8`` (per-dimension ranges mapped onto
256 levels). Imported as plain numbers they would become 48-dimensional float vectors; here
they become a table of ``binarize:mode=sign`` or ``int8:rounding=truncate|floor`` codes with the
state that reproduces them, so that queries encoded by vecx (and rows appended later) get the
very bytes the original tool would have written. Scalar codes need the ranges they were made
with (sentence-transformers' ``ranges``: the per-dimension minimum and maximum, 2 x D).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, UsageError
from vecx.formats import metadata
from vecx.formats.source import Batch, Source
from vecx.space import VectorSpec

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")


@dataclass(frozen=True)
class Precision:
    """How one kind of code is stored outside vecx, and the vecx stage that writes the same bytes."""

    spec: str
    lo: int  # the range of the values as stored elsewhere
    hi: int
    shift: int  # added to a stored value to get vecx's byte
    packed: bool  # eight dimensions to a byte


PRECISIONS = {
    "ubinary": Precision("binarize:mode=sign", 0, 255, 0, True),
    "binary": Precision("binarize:mode=sign", -128, 127, 128, True),
    "int8": Precision("int8:rounding=truncate", -128, 127, 0, False),
    "uint8": Precision("int8:rounding=floor", 0, 255, -128, False),
}


def precision_of(name: str) -> Precision:
    """The precision named by ``--codes`` (a :class:`UsageError` for another name)."""
    if name not in PRECISIONS:
        raise UsageError(f"--codes {name!r}: not a kind of code vecx imports",
                         hint=f"give one of {', '.join(PRECISIONS)} (sentence-transformers' quantize_embeddings names)")
    return PRECISIONS[name]


def as_vecx_bytes(values: Any, name: str) -> Any:
    """Codes of precision ``name`` (as stored elsewhere, any integer or float dtype holding whole
    numbers in range) as the bytes vecx stores: uint8 packed bits, or int8 levels."""
    p = precision_of(name)
    return (np.asarray(values).astype(np.int16) + p.shift).astype(np.uint8 if p.packed else np.int8)


class CodesSource(Source):
    """A raw input whose numbers are codes: validated and fingerprinted as read, handed on as vecx's bytes."""

    kind = "codes"

    def __init__(self, inner: Source, name: str, dim: int, metric: str) -> None:
        super().__init__(inner.path, inner.options)
        self.inner, self.name, self.precision = inner, name, precision_of(name)
        self.code_width = inner.dim
        self.dim, self.rows, self.id_type = dim, inner.rows, inner.id_type
        self.payload_fields, self.metric = inner.payload_fields, metric
        self.ids_from_data = inner.ids_from_data

    @property
    def space(self) -> VectorSpec:
        """The float space the codes were made from (its norms are unknown: only codes are here)."""
        return VectorSpec(self.dim, "float32", self.metric, False)

    def batches(self) -> Iterator[Batch]:
        """The inner input's batches (validated and hashed as numbers), each row checked to be a code
        of this precision and turned into vecx's bytes."""
        p = self.precision
        for batch in self.inner.batches():
            v = batch.vectors
            bad = np.flatnonzero(((v < p.lo) | (v > p.hi) | (v != np.floor(v))).any(axis=1))
            if len(bad):
                raise self.fail(f"--codes {self.name}: values must be whole numbers in {p.lo}..{p.hi}",
                                batch.offset + int(bad[0]),
                                hint="give the codes as they were written (or drop --codes)")
            batch.vectors = as_vecx_bytes(v, self.name)
            batch.sq_norms = None
            yield batch

    def source_block(self) -> dict[str, Any] | None:
        """The inner input's provenance, for the vectors' dimension, marked as codes (its own fingerprint)."""
        inner = self.inner.source_block()
        if inner is None:
            return None
        block = {**inner, "dim": self.dim, "normalized": False, "codes": self.name}
        block.pop("fingerprint", None)
        block["fingerprint"] = metadata.source_fingerprint(block)
        return block


def open_codes(inner: Source, name: str, dim: int | None, ranges: Any | None,
               metric: str | None) -> tuple[CodesSource, str, dict[str, Any]]:
    """The codes of ``inner`` as a source in vecx's bytes, with the spec of the stage that writes them
    and that stage's state: ``dim`` is the dimension of the vectors the codes were made from
    (packed bits: at most 8 x the bytes per row, which is the default); ``ranges`` (2 x dim)
    those of scalar codes."""
    p = precision_of(name)
    if inner.multi or inner.is_vecx:
        raise UsageError(f"{inner.path}: --codes imports raw codes (one row of numbers per vector), not "
                         f"{'sets of vectors' if inner.multi else 'a vecx table'}")
    width = inner.dim
    if p.packed:
        dim = dim or 8 * width
        if -(-dim // 8) != width:
            raise UsageError(f"--dim {dim}: {name} codes of {width} bytes hold {8 * width - 7}..{8 * width} dimensions")
        if ranges is not None:
            raise UsageError(f"--ranges applies to scalar codes (int8, uint8), not to {name} bits")
        # Sign bits of x > 0, decoded as +-1: the magnitudes are not in the codes.
        arrays = {"mean": np.zeros(dim, np.float32), "scale": np.ones(dim, np.float32)}
    else:
        if ranges is None:
            raise UsageError(f"--codes {name}: scalar codes need the ranges they were made with",
                             hint="give --ranges R.npy: the per-dimension minimum and maximum (2 x D), as "
                                  "sentence-transformers' quantize_embeddings took or computed them")
        if dim not in (None, width):
            raise UsageError(f"--dim {dim}: {name} codes have one byte per dimension ({width})")
        dim = width
        arrays = _scalar_state(ranges, dim)
    return CodesSource(inner, name, dim, metric or "cosine"), p.spec, arrays


def _scalar_state(ranges: Any, dim: int) -> dict[str, Any]:
    """The int8 codec's state from sentence-transformers' ranges: ``lo`` and the step ``(hi - lo) / 255``."""
    r = np.asarray(ranges)
    if r.ndim != 2 or r.shape != (2, dim) or r.dtype.kind != "f":
        raise DataError(f"--ranges: expected a 2 x {dim} float array (minimum and maximum per dimension), "
                        f"got {r.dtype} {r.shape}")
    r = r.astype(np.float32)
    if not np.isfinite(r).all() or (r[1] < r[0]).any():
        raise DataError("--ranges: needs finite values with each maximum at least its minimum")
    width = r[1] - r[0]
    return {"lo": r[0], "scale": np.where(width > 0, width / 255.0, 1.0).astype(np.float32)}


def read_ranges(path: str) -> Any:
    """A ``--ranges`` file: a ``.npy`` of 2 x D floats."""
    from vecx.formats.arrays import read_npy_header

    read_npy_header(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
