"""MUVERA fixed dimensional encodings (Dhulipala et al. 2024): a set of vectors -> one vector.

The inner product of a query FDE and a document FDE approximates the Chamfer (MaxSim)
similarity ``sum over query vectors q of max over document vectors p of <q, p>``
(ALGOS.md section 6). Per repetition ``r``:

1. SimHash: the ``ksim`` sign bits of ``x @ S_r`` (``S_r``: ``d x ksim`` Gaussian) pick one of
   ``B = 2**ksim`` buckets. Bits are appended Gray-code style,
   ``index = (index << 1) + (bit XOR (index & 1))``, so neighbouring buckets differ in one bit;
   the bit pattern of bucket ``b`` is ``b XOR (b >> 1)``.
2. Inner projection (``proj > 0``): an AMS sketch to ``proj`` dimensions, each input coordinate
   added with a random sign to one random output coordinate. ``proj=0`` keeps all ``d``.
3. Aggregation, asymmetric: a query bucket holds the *sum* of its projected vectors, a
   document bucket their *average*. With ``fill=true`` an empty document bucket takes the
   projected vector of the document's vector whose SimHash bits are nearest (Hamming) to the
   bucket's bit pattern (lowest vector index on ties). Query buckets are never filled.
4. The ``reps x B x proj`` blocks are concatenated (repetition, then bucket, then coordinate).
5. Optional final projection (``final > 0``): a count sketch to ``final`` dimensions, each
   coordinate added with a random sign to one random target.

Every random matrix comes from ``(seed, purpose, repetition)`` hashed with blake2b into a PCG64
generator (ALGOS.md section 0) and is stored in the codec state, so queries are encoded with
the very matrices the documents were. Output: float32, metric ``ip``, not normalized (the
Chamfer estimate is an unnormalized dot product). Work is batched per repetition over all
vectors of a batch: no Python loop per vector or per row.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, ClassVar

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param
from vecx.errors import MismatchError, SpecError
from vecx.space import VectorSpec
from vecx.spec import StageSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

#: Widest FDE allowed (floats); 10,240 is the paper's setting.
MAX_DIM = 1 << 22
#: Scratch budget (elements) for the per-bucket nearest-vector search of the empty-bucket fill.
_FILL_CHUNK = 1 << 22


def generator(seed: int, purpose: str, index: int) -> Any:
    """A numpy generator seeded from ``(seed, purpose, index)`` (blake2b, 64 bits, PCG64)."""
    digest = hashlib.blake2b(f"{seed}\x00{purpose}\x00{index}".encode(), digest_size=8).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "little")))


def gray_bucket(bits: Any) -> Any:
    """Bucket index of each row of sign bits (rows x ksim, bool), bits appended Gray-code style."""
    index = np.zeros(len(bits), dtype=np.int64)
    for j in range(bits.shape[1]):
        index = (index << 1) + (bits[:, j].astype(np.int64) ^ (index & 1))
    return index


def bit_pattern(bits: Any) -> Any:
    """The sign bits of each row as an integer, first bit most significant."""
    code = np.zeros(len(bits), dtype=np.int64)
    for j in range(bits.shape[1]):
        code = (code << 1) | bits[:, j].astype(np.int64)
    return code


class Muvera(Codec):
    """Fixed dimensional encoding of a set of vectors (MUVERA); queries and documents differ."""

    name = "muvera"
    summary = "set of vectors (multi-vector) -> one fixed-dimensional encoding (MUVERA FDE), metric ip"
    example = "muvera:3x2x4"
    help = (
        "Turn each row's set of vectors (e.g. per-token embeddings, imported with 'vecx import --multi') "
        "into one vector whose inner product with a query's encoding approximates the Chamfer/MaxSim "
        "similarity. Per repetition: SimHash into 2^ksim buckets (Gray code), an AMS sketch to proj "
        "dimensions, documents average each bucket (empty ones filled from the nearest vector by "
        "SimHash Hamming distance), queries sum it. Output: reps * 2^ksim * proj floats (or final), "
        "metric ip. Spec: muvera:REPSxKSIMxPROJ, e.g. muvera:20x5x16 (10,240 dims). Index the result "
        "with --rescore-vectors on the multi-vector table for exact MaxSim reranking."
    )
    params = (
        Param("reps", int, default=20, minimum=1, maximum=4096, help="independent repetitions (R)"),
        Param("ksim", int, default=5, minimum=0, maximum=20, help="SimHash bits per repetition: 2^ksim buckets"),
        Param("proj", int, default=16, minimum=0, help="inner AMS-sketch dimension per bucket (0: none, keep d)"),
        Param("final", int, default=0, minimum=0, help="final count-sketch dimension (0: none)"),
        Param("fill", bool, default=True, help="fill empty document buckets from the nearest vector"),
        Param("seed", int, default=0, minimum=0, help="seed of every random matrix"),
    )
    takes_multi = True
    #: The epilog of ``vecx muvera --help``.
    examples: ClassVar[tuple[str, ...]] = (
        "vecx import tokens.parquet -o docs.mv.parquet --multi",
        "vecx muvera docs.mv.parquet -o docs.fde.parquet --reps 20 --ksim 5 --proj 16 --seed 1",
        "vecx encode docs.mv.parquet -o docs.fde.bin.parquet --spec muvera:20x5x16,binarize",
        "vecx index docs.fde.parquet -o docs.vecx --rescore-vectors docs.mv.parquet",
    )

    # ---- spec spelling: muvera:20x5x16 ------------------------------------------------
    @classmethod
    def resolve(cls, stage: StageSpec, where: str, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """Accept the bare ``REPSxKSIMxPROJ`` (or ``REPSxKSIM``, ``REPS``) besides key=value."""
        if stage.positional is not None:
            parts = stage.positional.split("x")
            if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
                raise SpecError(f"{where}: muvera:{stage.positional} is not REPSxKSIMxPROJ, e.g. muvera:20x5x16")
            options = dict(stage.options)
            for key, value in zip(("reps", "ksim", "proj"), parts, strict=False):  # PROJ and KSIM may be left out
                if key in options:
                    raise SpecError(f"{where}: {key} given both in {stage.positional!r} and as {key}=")
                options[key] = value
            stage = StageSpec(stage.name, None, tuple(sorted(options.items())))
        return super().resolve(stage, where, defaults)

    @classmethod
    def token(cls, values: dict[str, Any], implied: dict[str, Any] | None = None) -> str:
        """Canonical token, e.g. ``muvera:20x5x16:fill=true:final=0:seed=0`` (every parameter spelled
        out: ``implied`` has nothing to omit)."""
        fill = cls.param("fill").format(values["fill"])
        return (f"muvera:{values['reps']}x{values['ksim']}x{values['proj']}:fill={fill}"
                f":final={values['final']}:seed={values['seed']}")

    # ---- spaces ---------------------------------------------------------------------
    @property
    def buckets(self) -> int:
        return 1 << int(self.values["ksim"])

    @property
    def proj_dim(self) -> int:
        return int(self.values["proj"]) or self.input.dim

    @property
    def fde_dim(self) -> int:
        """Width before the final projection."""
        return int(self.values["reps"]) * self.buckets * self.proj_dim

    def plan(self, input: VectorSpec) -> VectorSpec:
        if not input.multi:
            raise self.fail("needs multi-vector input (a set of vectors per row); import it with 'vecx import --multi'")
        if input.dtype not in ("float32", "float16"):
            raise self.fail(f"needs float token vectors, got {input.dtype}")
        width = int(self.values["reps"]) * (1 << int(self.values["ksim"])) * (int(self.values["proj"]) or input.dim)
        if width > MAX_DIM:
            raise self.fail(f"the encoding would have {width:,} dimensions (reps x 2^ksim x proj); "
                            f"at most {MAX_DIM:,}: lower ksim or proj")
        final = int(self.values["final"])
        return VectorSpec(final or width, "float32", "ip", False, "codes")

    # ---- random matrices (stored in the state) ---------------------------------------
    def _generate(self) -> dict[str, Any]:
        seed, reps, ksim, proj = (int(self.values[k]) for k in ("seed", "reps", "ksim", "proj"))
        d = self.input.dim
        arrays: dict[str, Any] = {
            "simhash": np.stack([generator(seed, "muvera-simhash", r).standard_normal((d, ksim), dtype=np.float32)
                                 for r in range(reps)])}
        if proj:
            index, sign = [], []
            for r in range(reps):
                rng = generator(seed, "muvera-ams", r)
                index.append(rng.integers(0, proj, d, dtype=np.int32))
                sign.append((rng.integers(0, 2, d, dtype=np.int8) * 2 - 1).astype(np.int8))
            arrays["ams_index"], arrays["ams_sign"] = np.stack(index), np.stack(sign)
        final = int(self.values["final"])
        if final:
            rng = generator(seed, "muvera-final", 0)
            arrays["final_index"] = rng.integers(0, final, self.fde_dim, dtype=np.int32)
            arrays["final_sign"] = (rng.integers(0, 2, self.fde_dim, dtype=np.int8) * 2 - 1).astype(np.int8)
        return arrays

    def _arrays(self) -> dict[str, Any]:
        if getattr(self, "arrays_", None) is None:
            self.arrays_ = self._generate()
        return self.arrays_

    def state(self) -> dict[str, Any]:
        return dict(self._arrays())

    def load_state(self, arrays: dict[str, Any]) -> None:
        reps, ksim, proj, d = (int(self.values["reps"]), int(self.values["ksim"]), int(self.values["proj"]),
                               self.input.dim)
        shapes: dict[str, tuple[int, ...]] = {"simhash": (reps, d, ksim)}
        if proj:
            shapes.update(ams_index=(reps, d), ams_sign=(reps, d))
        if int(self.values["final"]):
            shapes.update(final_index=(self.fde_dim,), final_sign=(self.fde_dim,))
        self._check_state(arrays, shapes)
        limits = {"ams_index": proj, "final_index": int(self.values["final"])}
        for key, limit in limits.items():
            if key in arrays and len(arrays[key]) and (arrays[key].min() < 0 or arrays[key].max() >= limit):
                raise MismatchError(f"{self.spec}: fitted state {key!r} points outside 0..{limit - 1}")
        self.arrays_ = {k: np.asarray(v) for k, v in arrays.items()}
        self.combined_: Any = None
        self.is_fitted = True

    def _combined(self) -> Any:
        """``d x (reps*ksim + reps*proj)``: every SimHash matrix, then every AMS sketch as a dense
        matrix (one +-1 per input coordinate and repetition)."""
        if getattr(self, "combined_", None) is None:
            arrays = self._arrays()
            reps, d = int(self.values["reps"]), self.input.dim
            parts = [arrays["simhash"][r] for r in range(reps)]
            if self.values["proj"]:
                for r in range(reps):
                    sketch = np.zeros((d, self.proj_dim), dtype=np.float32)
                    sketch[np.arange(d), arrays["ams_index"][r]] = arrays["ams_sign"][r]
                    parts.append(sketch)
            self.combined_ = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
        return self.combined_

    # ---- encoding -------------------------------------------------------------------
    def encode(self, x: Any) -> Any:
        """Document encodings: bucket averages, empty buckets filled (if ``fill``)."""
        return self._encode(x, document=True)

    def encode_query(self, q: Any) -> Any:
        """Query encodings: bucket sums, no filling."""
        return self._encode(q, document=False)

    def _encode(self, sets: Any, document: bool) -> Any:
        from vecx.formats.multi import stage_input_counts

        stage_input_counts(sets, self.input.dim, self.spec, "encodes")
        x = np.asarray(sets.values, dtype=np.float32)
        n, tokens, buckets, p = len(sets), len(x), self.buckets, self.proj_dim
        reps, ksim = int(self.values["reps"]), int(self.values["ksim"])
        row = sets.row_of_token
        # One matrix product gives every repetition's SimHash projections and AMS sketches
        # (thin products one repetition at a time are several times slower in BLAS).
        both = x @ self._combined()
        out = np.empty((n, self.fde_dim), dtype=np.float32)
        width = buckets * p
        for r in range(reps):
            bits = both[:, r * ksim: (r + 1) * ksim] > 0
            bucket = gray_bucket(bits)
            projected = both[:, reps * ksim + r * p: reps * ksim + (r + 1) * p] if self.values["proj"] else x
            cell = row * buckets + bucket  # (row, bucket) of every vector
            sums = np.bincount((cell[:, None] * p + np.arange(p)[None, :]).ravel(),
                               weights=projected.ravel(), minlength=n * width).reshape(n, buckets, p)
            if document:
                filled = np.bincount(cell, minlength=n * buckets).reshape(n, buckets)
                block: Any = sums / np.maximum(filled, 1)[:, :, None]
                if self.values["fill"] and (filled == 0).any():
                    self._fill(block, filled == 0, bits, projected, sets.offsets, tokens)
            else:
                block = sums
            out[:, r * width: (r + 1) * width] = block.reshape(n, width)
        if int(self.values["final"]):
            out = self._final(out)
        return out

    def _fill(self, block: Any, empty: Any, bits: Any, projected: Any, offsets: Any, tokens: int) -> None:
        """Give each empty (row, bucket) the projected vector nearest by SimHash bit pattern."""
        code = bit_pattern(bits)
        buckets = block.shape[1]
        pattern = np.arange(buckets, dtype=np.int64)
        pattern ^= pattern >> 1  # the bit pattern of each bucket (Gray code of its index)
        position = np.arange(tokens, dtype=np.int64)
        step = max(1, _FILL_CHUNK // max(1, tokens))
        for lo in range(0, buckets, step):
            hi = min(buckets, lo + step)
            if not empty[:, lo:hi].any():
                continue
            distance = np.bitwise_count(code[:, None] ^ pattern[None, lo:hi]).astype(np.int64)
            # Smallest distance first, then the lowest vector index: one integer key, one reduction per row.
            best = np.minimum.reduceat((distance << 40) | position[:, None], offsets[:-1], axis=0)
            nearest = best & ((1 << 40) - 1)
            rows, cols = np.nonzero(empty[:, lo:hi])
            block[rows, lo + cols] = projected[nearest[rows, cols]]

    def _final(self, fde: Any) -> Any:
        """The count sketch of every row: coordinates added with their sign into their target."""
        arrays = self._arrays()
        target, sign = arrays["final_index"], arrays["final_sign"].astype(np.float32)
        order = np.argsort(target, kind="stable")
        present, starts = np.unique(target[order], return_index=True)
        out = np.zeros((len(fde), int(self.values["final"])), dtype=np.float32)
        out[:, present] = np.add.reduceat(fde[:, order] * sign[order], starts, axis=1)
        return out
