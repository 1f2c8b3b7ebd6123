"""Binarize: one bit per dimension, packed 8 per byte (most significant bit first).

Three modes:

- ``mode=center`` (default) subtracts the per-dimension mean of a seeded sample before taking
  signs — essential when values are not centred at zero (SIFT descriptors are non-negative, so
  plain sign bits carry almost nothing there). Searched by Hamming distance, queries binarized
  the same way (symmetric).
- ``mode=sign`` takes ``x > 0`` as is (what usearch ``b1`` and sentence-transformers'
  ``ubinary`` do). Hamming, symmetric.
- ``mode=rabitq``: the RaBitQ code (Gao & Long, SIGMOD 2024). Centre on the fitted mean ``c``,
  rotate by a seeded random orthogonal matrix ``P``, keep the sign bits ``s`` of the unit vector
  ``o' = P^T (x - c) / |x - c|`` and two per-vector factors. ``P`` is a fast structured rotation
  (``rotation=fast``: random signs and Walsh-Hadamard transforms, ``O(D log D)`` per vector, see
  :mod:`vecx.hadamard`) or a dense Haar matrix (``rotation=haar``, ``D^2``; the only kind before
  codec version 2, whose files load as such). Queries stay float (asymmetric):
  with ``q' = P^T (q - c)``, ``<x - c, q - c>`` is estimated without bias by
  ``w <s, q'>`` with ``w = |x - c| / |o'|_1``, the estimator's per-vector correction (without
  it the score falls back to plain Hamming). The second factor is the additive term:
  ``<x - c, c>`` for inner product, ``|x - c|^2`` for L2. ``levels=T`` > 1 adds BEBR-style
  residual bit planes (training-free): level ``t`` takes the signs of what the earlier levels left
  of ``o'``, scaled by ``|residual|_1 / D``; the estimator uses their sum, rescaled so that it stays
  unbiased (each level has its own ``w_t``). T levels cost ``T x D`` bits. ``bits=B`` > 1 makes
  extended RaBitQ codes (Gao et al., SIGMOD 2025) instead: each rotated coordinate gets ``B`` bits,
  ``x_u = sign(o_i) (k_i + 1/2) + (2^B - 1) / 2`` with ``k_i = min(floor(|o_i| t), 2^(B-1) - 1)``
  and the per-vector scale ``t`` that brings ``o_bar`` (the vector the codes stand for) closest in
  angle to ``o``; its most significant bit is the sign bit of one-bit RaBitQ. Stored as ``B`` bit
  planes (the sign plane first), then two float16 factors: the additive term and ``w = |y| / <o_bar,
  o>``, so that ``w <o_bar, q'>`` is unbiased; plane ``b`` weighs ``w 2^(B-2-b)`` in the estimator,
  which scores these codes as it scores residual levels. For ``D`` = 384, ``bits=4`` takes 196 bytes.

  Layout of a ``mode=rabitq`` code (dtype ``codes``): T bit planes of ``P/8`` bytes each (``P``
  is ``D`` rounded up to the rotation's blocks, a multiple of 8), then ``T + 1`` float16 factors
  (the additive term, then ``w_1 .. w_T``), little-endian, each divided by a scale fitted on the
  sample (the mean ``|x - c|``) so that float16 holds them at full relative precision. For
  ``D`` = 384, one level takes 48 + 4 = 52 bytes. The fast rotation spans all ``P`` coordinates
  (``D`` rounded up to 8); the Haar one is one block for ``D <= 1024``, else block-diagonal
  blocks of at most 1024 (FDE-sized inputs stay cheap).
  Indexes score these codes with the estimator, exhaustively or over the candidates a Hamming
  graph on the first bit plane returns (``vecx index --scan``); the float vectors rescore the
  shortlist.

With ``ivf=N`` (coarse lists) each vector is centred on the nearest of N k-means centroids instead
of the mean; its list number heads the code (2 bytes, little-endian). The estimator being linear
in the query, ``est(q - c) = est(q) - est(c)``, and ``est(c)`` for the row's own centroid is
folded into the additive factor at encoding: a query is rotated once (``P^T q``), and the
index adds its exact score against each row's centroid (``<q, c>``, or ``|q - c|^2`` for L2).

Decoding gives the best reconstruction the bits allow: ``mean ± mean|x - mean|`` per dimension
(center/sign), and ``c + P (sum_t w_t s_t)`` for rabitq, whose inner products with a query equal
the estimator's; exact search over decoded codes (``vecx truth``) and rescoring work in the
original space.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param, ScoresCodes, sample_params
from vecx.codecs.kmeans import LIST_BYTES, MAX_LISTS, fit_centroids, list_header, list_numbers, nearest
from vecx.errors import MismatchError, RowError
from vecx.hadamard import ROUNDS, draw_signs, rotate_rows, rotation_matrix, transform, transform_products
from vecx.kernels import apply_blocks, haar_orthogonal, in_row_blocks, unit_rows
from vecx.space import BITS, CODES, VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

#: Up to this many queries, ``<bits, q'>`` comes from per-byte lookup tables instead of unpacked bits.
LUT_QUERIES = 16
#: Bits of every byte value, MSB first (256 x 8), for the lookup tables.
_BYTE_BITS = None
#: Float32 bytes per block of rabitq encoding: the temporaries stay in cache, and narrow rows come
#: in blocks large enough that numpy's per-call costs (under the GIL) do not keep the cores waiting.
_ENCODE_BYTES = 3 << 19
#: Width of the Haar blocks of the rabitq rotation.
MAX_BLOCK = 1024
#: Up to this width, queries and decoding apply the fast rotation as a dense matrix (16 MiB at most).
MATRIX_WIDTH = 2048
#: From this width, encoding applies the fast rotation by its compiled transform (below, the dense
#: matrix's product costs less).
KERNEL_WIDTH = 256
#: From this width, queries apply the fast rotation as products with small Hadamard factors: the
#: dense matrix (4 MiB and more) costs more, and more again once a scan has pushed it out of the cache.
PRODUCTS_WIDTH = 1024
F16_MAX = 65504.0
#: Deviations of the sign code's estimate that an incremental scan allows before it gives a row up
#: (``binarize:...:incremental=true``): measured against the full scan's results (BENCHMARKS.md).
EPSILON = 3.0


class Binarize(Codec, ScoresCodes):
    """Sign bits (after centring on a fitted mean, by default), packed; Hamming or the RaBitQ estimator."""

    name = "binarize"
    version = 3
    # Version 1 had only the dense rotation; extended codes of versions 1-2 had no sign-code bounds.
    older_versions = {1: {"rotation": "haar", "incremental": False}, 2: {"incremental": False}}
    summary = "1 bit per dimension (sign after centring, or RaBitQ codes with an unbiased estimator), packed"
    example = "binarize"
    help = (
        "Keep one bit per dimension: whether the value is above the dimension's mean (mode=center, "
        "means fitted on a seeded sample) or above zero (mode=sign), packed 8 per byte in a "
        "fixed-size-binary column; indexes search them by Hamming distance (queries binarized the same "
        "way) and rescore with float vectors. mode=rabitq stores RaBitQ codes: sign bits of the "
        "centred, randomly rotated vector plus two float16 factors per vector, scored against float "
        "queries by an unbiased inner-product estimator (far better ranking than Hamming at the same "
        "bits); levels=2.. adds residual bit planes, bits=2..8 makes extended RaBitQ codes (B bits per "
        "dimension on a per-vector scale, 4 factors: scans read the ex-code only for rows whose sign "
        "bits leave them a chance). Example: "
        "vecx binarize docs.parquet -o docs.bin.parquet --mode rabitq"
    )
    params = (
        Param("mode", str, default="center", choices=("center", "sign", "rabitq"),
              help="center: sign of x - mean; sign: sign of x; rabitq: rotated signs + estimator factors"),
        Param("levels", int, default=1, minimum=1, maximum=8,
              help="mode=rabitq: bit planes per dimension (residual levels)"),
        Param("bits", int, default=1, minimum=1, maximum=8, omit_default=True,
              help="mode=rabitq: bits per dimension of extended RaBitQ: the sign bit plus a (bits-1)-bit "
                   "ex-code on a per-vector scale chosen to fit the vector best, 2 float16 factors (4 with "
                   "incremental)"),
        Param("incremental", bool, default=True, omit_default=True,
              help="mode=rabitq, bits > 1: also store the sign code's own estimator weight and error bound "
                   "(2 more float16 factors), so that a scan estimates each row from its sign bits first "
                   "and reads the ex-code only for rows whose bound can still make the top k (false: "
                   "4 bytes less per vector, every plane read for every row)"),
        Param("rotation", str, default="fast", choices=("fast", "haar"), omit_default=True,
              help="mode=rabitq: fast = seeded random signs and Walsh-Hadamard transforms (O(D log D) per "
                   "vector, as the RaBitQ library does); haar = a dense random orthogonal matrix (D^2 per "
                   "vector; what files of codec version 1 use)"),
        Param("ivf", int, default=0, minimum=0, maximum=MAX_LISTS, omit_default=True,
              help="mode=rabitq: coarse lists (as LanceDB's IVF_RQ): each vector is coded relative to the "
                   "nearest of this many k-means centroids, whose number takes 2 more bytes; an index then "
                   "scans only the --nprobe lists nearest each query (0 = one global mean)"),
        *sample_params("fits the means"),
    )
    needs_fit = True

    @property
    def symmetric_queries(self) -> bool:
        """Sign codes: queries are binarized like data; RaBitQ: the estimator takes float queries."""
        return self.values["mode"] != "rabitq"

    def plan(self, input: VectorSpec) -> VectorSpec:
        self.require_float(input)
        mode, levels, bits = self.values["mode"], self.values["levels"], self.values["bits"]
        self.lists = self.values["ivf"]
        self.prefix = LIST_BYTES if self.lists else 0
        if mode != "rabitq":
            if levels != 1:
                raise self.fail("levels > 1 needs mode=rabitq (residual planes are scored by its estimator)")
            if bits != 1:
                raise self.fail("bits > 1 needs mode=rabitq (extended RaBitQ codes are scored by its estimator)")
            if self.lists:
                raise self.fail("ivf (coarse lists) needs mode=rabitq (the estimator scores codes relative to a list)")
            if self.values["rotation"] != "fast":
                raise self.fail("rotation applies to mode=rabitq (sign codes of other modes are not rotated)")
            return VectorSpec(input.dim, BITS, "hamming", False, "codes")
        if self.lists and self.values["sample"] < self.lists:
            raise self.fail(f"sample={self.values['sample']} rows cannot train {self.lists} coarse centroids")
        if bits > 1 and levels > 1:
            raise self.fail("bits > 1 (extended RaBitQ) and levels > 1 (residual planes) are two ways to spend "
                            "more bits: choose one")
        #: Extended codes with the sign code's own weight and error term after their two factors (a
        #: 1-bit code is its sign bits alone: nothing to add).
        self.incremental_ = bool(self.values["incremental"]) and bits > 1
        #: Bit planes of a code, and float16 factors after them (extended RaBitQ: the additive term and
        #: one weight, each plane's weight being that weight times its power of two).
        self.planes_ = bits if bits > 1 else levels
        self.stored_factors_ = (4 if self.incremental_ else 2) if bits > 1 else levels + 1
        self.fast_ = self.values["rotation"] == "fast"
        self.blocks_ = 1 if self.fast_ else -(-input.dim // MAX_BLOCK)
        per_block = -(-input.dim // self.blocks_)  # ceil(D / blocks)
        self.block_ = -(-per_block // 8) * 8  # rounded up to 8
        self.padded_ = self.blocks_ * self.block_
        metric = "l2" if input.metric == "l2" else "ip"
        if not hasattr(self, "coarse_"):  # re-planning (Chain.with_input) keeps the fitted state
            self.coarse_: Any = None
            self.rotation_: Any = None
            self.signs_: Any = None
        self._coarse_rotated: Any = None
        self._matrix: Any = None
        return VectorSpec(self.prefix + self.planes_ * self.padded_ // 8 + 2 * self.stored_factors_, CODES, metric,
                          False, "scorer")

    # ---- shared -----------------------------------------------------------------------
    def _prepare(self, x: Any) -> Any:
        return self.unit_if_cosine(x) if self.values["mode"] == "rabitq" else np.asarray(x, dtype=np.float32)

    def fit(self, sample: Any) -> None:
        x = self._prepare(sample)
        mode = self.values["mode"]
        self.mean_ = x.mean(axis=0).astype(np.float32) if mode != "sign" else np.zeros(x.shape[1], dtype=np.float32)
        if mode != "rabitq":  # the per-dimension decoding scale of plain sign bits
            spread = np.abs(x - self.mean_).mean(axis=0).astype(np.float32)
            self.scale_ = np.where(spread > 0, spread, 1.0).astype(np.float32)
        else:
            rng = np.random.Generator(np.random.PCG64(self.values["seed"]))
            if self.fast_:
                self.signs_ = draw_signs(self.padded_, rng)
            else:
                self.rotation_ = np.stack([haar_orthogonal(self.block_, rng) for _ in range(self.blocks_)])
            self._matrix = None
            if self.lists:  # centred on each vector's list centroid instead of one mean
                self.coarse_ = fit_centroids(x, self.lists, self.values["seed"])
                self.mean_ = np.zeros(x.shape[1], dtype=np.float32)
                self._coarse_rotated = None
                norms = np.linalg.norm(x - self.coarse_[nearest(x, self.coarse_)], axis=1)
            else:
                norms = np.linalg.norm(x - self.mean_, axis=1)
            self.norm_scale_ = np.array([norms.mean() if norms.mean() > 0 else 1.0], dtype=np.float32)
        self.is_fitted = True

    def encode(self, x: Any) -> Any:
        if self.values["mode"] == "rabitq":
            # Blocks that stay in cache through the rotation and the element-wise passes, on all cores;
            # every block has the same row count, so a row's code does not depend on its neighbours
            # (BLAS rounds the tail rows of other shapes differently, which can flip a sign bit near 0).
            # Rows are scaled to unit norm (cosine) in their block too: a pass of one thread over all
            # rows first would keep the other cores waiting.
            return in_row_blocks(lambda part: self._encode_rabitq(self._prepare(part)), np.asarray(x),
                                 self._encode_rows(), fixed=True)
        return np.packbits(np.asarray(x, dtype=np.float32) > self.mean_, axis=1)

    def _encode_rows(self) -> int:
        """Rows per block of rabitq encoding: a power of two from 1,024 to 8,192, about
        :data:`_ENCODE_BYTES` of rotated rows."""
        rows = _ENCODE_BYTES // (4 * self.padded_)
        return 1 << max(10, min(13, rows.bit_length() - 1))

    def decode(self, codes: Any) -> Any:
        codes = np.asarray(codes, dtype=np.uint8)
        if self.values["mode"] == "rabitq":
            y = self._estimate_rows(*self._split(codes))
            centre = self.coarse_[self.list_of(codes)] if self.lists else self.mean_
            return (centre + self._unrotate(y)).astype(np.float32)
        bits = np.unpackbits(codes, axis=1, count=self.input.dim)
        return self.mean_ + (bits.astype(np.float32) * 2.0 - 1.0) * self.scale_

    # ---- rabitq -----------------------------------------------------------------------
    def _rotate(self, centred: Any) -> Any:
        """``P^T (x - c)`` for rows: zero-padded to the blocks, each block multiplied by its matrix.
        The fast rotation is applied as a dense matrix up to :data:`MATRIX_WIDTH` (one product costs
        less than loading the compiled transform), by numpy passes beyond; encoding uses the compiled
        transform (see :meth:`_encode_rabitq`), wide queries Hadamard products (:meth:`_rotate_queries`)."""
        if self.fast_ and self.padded_ <= MATRIX_WIDTH:
            return np.asarray(centred, dtype=np.float32) @ self._fast_matrix()[:centred.shape[1]]
        padded = self._padded(centred)
        return transform(padded, self.signs_) if self.fast_ else apply_blocks(padded, self.rotation_)

    def _rotate_queries(self, centred: Any) -> Any:
        """:meth:`_rotate` for queries; wide fast rotations (:data:`PRODUCTS_WIDTH`) by the products of
        :func:`vecx.hadamard.transform_products`, each row on its own."""
        if not self.fast_ or self.padded_ < PRODUCTS_WIDTH:
            return self._rotate(centred)
        return transform_products(self._padded(centred), self.signs_)

    def _padded(self, rows: Any) -> Any:
        """``rows`` as float32, zero-padded to the rotation's width."""
        n, d = rows.shape
        if d == self.padded_:
            return np.ascontiguousarray(rows, dtype=np.float32)
        padded = np.zeros((n, self.padded_), dtype=np.float32)
        padded[:, :d] = rows
        return padded

    def _unrotate(self, y: Any) -> Any:
        if not self.fast_:
            out = apply_blocks(y, self.rotation_, transpose=True)
        elif self.padded_ <= MATRIX_WIDTH:
            out = y @ self._fast_matrix().T
        else:
            out = transform(np.asarray(y, dtype=np.float32), self.signs_, inverse=True)
        return out[:, : self.input.dim]

    def _fast_matrix(self) -> Any:
        if self._matrix is None:
            self._matrix = rotation_matrix(self.signs_)
        return self._matrix

    def _signs(self, plane: Any) -> Any:
        return np.unpackbits(plane, axis=-1, count=self.padded_).astype(np.float32) * 2.0 - 1.0

    def _split(self, codes: Any) -> tuple[list[Any], Any]:
        """Bit planes and float32 factors (add, w_1..w_T: one weight per plane; scale undone) of codes
        (rows x bytes)."""
        count, width, head = self.planes_, self.padded_ // 8, self.prefix
        planes = [codes[..., head + t * width: head + (t + 1) * width] for t in range(count)]
        raw = np.ascontiguousarray(codes[..., head + count * width:]).view("<f2").astype(np.float32)
        s = float(self.norm_scale_[0])
        raw[..., 0] *= self._add_scale()
        raw[..., 1:] *= s
        if self.values["bits"] > 1:  # one stored weight: each plane's is it times the plane's power of two
            raw = np.concatenate([raw[..., :1], raw[..., 1:2] * self._plane_powers()], axis=-1)
        return planes, raw

    def _sign_bounds(self, codes: Any) -> Any:
        """Incremental codes: each row's sign-code weight and error term (rows x 2, scale undone)."""
        raw = np.ascontiguousarray(codes[..., -4:]).view("<f2").astype(np.float32)
        return raw * float(self.norm_scale_[0])

    def _plane_powers(self) -> Any:
        """Extended RaBitQ: what each bit plane's weight is the stored weight ``w`` times, the sign
        plane first: ``2^(B-2), ..., 1/2`` (``o_bar = sum_b 2^(b-1) s_b``, see :meth:`_extended`)."""
        return np.exp2(np.arange(self.planes_ - 2, -2, -1, dtype=np.float32))

    def _add_scale(self) -> float:
        """What the additive factor is divided by before float16: |x - c|^2 (l2) or |x - c| |c| (ip)
        at the sample's mean distance (and the centroids' mean norm, with coarse lists)."""
        s = float(self.norm_scale_[0])
        if self.lists:  # the term holds the centroid's estimate too: |x - c| |c| in both metrics
            return s * max(float(np.linalg.norm(self.coarse_, axis=1).mean()), s)
        return s * s if self.output.metric == "l2" else s * float(np.linalg.norm(self.mean_))

    def list_of(self, codes: Any) -> Any:
        """The list number of each stored code row."""
        return list_numbers(codes)

    def _estimate_rows(self, planes: list[Any], factors: Any) -> Any:
        """``sum_t w_t s_t`` of code rows (rotated space): the estimator is an inner product with it."""
        return sum(factors[:, 1 + t, None] * self._signs(planes[t]) for t in range(len(planes)))

    def _rotated_centroids(self) -> Any:
        """``P^T c`` of every coarse centroid (lists x padded)."""
        if self._coarse_rotated is None:
            self._coarse_rotated = self._rotate(self.coarse_)
        return self._coarse_rotated

    def probe_order(self, prepared: dict[str, Any]) -> Any:
        """Queries x lists, lower first: the order in which a search probes the lists, by the query's
        score against each centroid. Unlike PQ, ranking by L2 distance for inner-product scores lost
        recall here: lists are few and large, and a centroid's score is a fair guess of its rows'."""
        return prepared["coarse"] if self.output.metric == "l2" else -prepared["coarse"]

    def _encode_rabitq(self, x: Any) -> Any:
        levels, n = self.values["levels"], len(x)
        if self.lists:
            labels = nearest(x, self.coarse_)
            centred = x - self.coarse_[labels]
        else:
            centred = x - self.mean_
        # Wide rows take the fast rotation's compiled transform (narrow ones its dense matrix, a
        # cheaper product there); either way a row's result does not depend on the other rows.
        y = rotate_rows(centred, self.signs_) if self.fast_ and self.padded_ >= KERNEL_WIDTH else self._rotate(centred)
        if self.values["bits"] > 1:
            r, planes, weight = self._extended(y)
            # Each plane's weight (the estimator, est(c) below), and the one stored: the rest follow.
            weights = [weight * power for power in self._plane_powers()]
            stored_weights = [weight, *(self._sign_bound(y, r) if self.incremental_ else [])]
        elif levels == 1:
            r, planes, weights = self._one_level(y)
            stored_weights = weights
        else:
            r = np.linalg.norm(y, axis=1)
            planes, weights = self._levels(y, r, levels)
            stored_weights = weights
        scale = float(self.norm_scale_[0])
        c_norm = float(np.linalg.norm(self.mean_))
        factors = np.zeros((n, self.stored_factors_), dtype=np.float32)
        if self.lists:
            # The estimator is linear in the query: est(q - c) = est(q) - est(c), and est(c) for the
            # row's own centroid is known now. Scores then need only P^T q (no per-list query) plus
            # the query's exact score against the centroid (the index's coarse scores).
            centre = self.coarse_[labels]
            est_c = sum(w * (np.einsum("np,np->n", self._rotated_centroids()[labels], self._signs(p)))
                        for w, p in zip(weights, planes, strict=True))
            add = (r * r + 2.0 * est_c if self.output.metric == "l2"
                   else np.einsum("nd,nd->n", centred, centre) - est_c)
            factors[:, 0] = add / self._add_scale()
        elif self.output.metric == "l2":
            factors[:, 0] = (r / scale) ** 2
        elif c_norm > 0:
            factors[:, 0] = (centred @ self.mean_) / (scale * c_norm)
        for t, w in enumerate(stored_weights):
            factors[:, 1 + t] = w / scale
        if (np.abs(factors) > F16_MAX).any():
            row = int(np.flatnonzero((np.abs(factors) > F16_MAX).any(axis=1))[0])
            raise RowError(row, "vector is too far from the fitted mean for float16 factors "
                                f"(|x - mean| > {F16_MAX:g} x the sample's mean distance)",
                           hint="fit on a sample that contains such vectors, or scale the data")
        head = [list_header(labels)] if self.lists else []
        return np.concatenate([*head, *planes, factors.astype("<f2").view(np.uint8)], axis=1)

    def _one_level(self, y: Any) -> tuple[Any, list[Any], list[Any]]:
        """``|y|`` and :meth:`_levels` for one level, in four passes over the rotated rows instead of
        ten: with ``o = y / |y|``, the code is the signs of ``y``, and its weight ``|y| a / <a s, o>``
        (``a`` the mean ``|o_i|``) is ``|y|^2 / sum |y_i|``."""
        squares = np.einsum("ij,ij->i", y, y)
        total = np.abs(y) @ np.ones(y.shape[1], dtype=np.float32)  # sums along short rows crawl in numpy
        weight = np.divide(squares, total, out=np.zeros(len(y), dtype=np.float32), where=total > 0)
        return np.sqrt(squares), [_pack_rows(y >= 0)], [weight]  # ties (zeros) go to +1

    def _extended(self, y: Any) -> tuple[Any, list[Any], Any]:
        """``|y|``, the bit planes (most significant first: the sign plane) and the weight ``w`` of
        extended RaBitQ codes of the rotated rows ``y``.

        With ``o = y / |y|``, each coordinate is coded as ``x_u = 2^(B-1) + k`` (``o_i >= 0``) or
        ``2^(B-1) - 1 - k`` (``o_i < 0``), ``k = min(floor(|o_i| t), 2^(B-1) - 1)``, so that
        ``x_u - (2^B - 1) / 2 = sign(o_i) (k + 1/2)``: the vector ``o_bar`` the code stands for,
        ``sum_b 2^(b-1) s_b`` over its bit planes ``s_b = ±1``. The scale ``t`` is the one per vector
        that maximizes ``<o_bar, o> / |o_bar|`` (see :func:`_ex_scales`), and ``w = |y| / <o_bar, o>``
        makes ``w <o_bar, q'>`` an unbiased estimate of ``<y, q'>``.
        """
        bits = self.values["bits"]
        r = np.sqrt(np.einsum("ij,ij->i", y, y))
        magnitude = np.ascontiguousarray(np.abs(unit_rows(y, r[:, None])), dtype=np.float32)
        levels = np.empty(magnitude.shape, dtype=np.uint8)
        fit = np.empty(len(y), dtype=np.float32)
        _compiled_ex()(magnitude, 1 << (bits - 1), EX_WINDOW[0] if bits <= 5 else EX_WINDOW[1], levels, fit)
        half = np.uint8(1 << (bits - 1))
        codes = np.where(y >= 0, half + levels, half - np.uint8(1) - levels)  # ties (zeros) go to +
        planes = [_pack_rows((codes >> b) & 1) for b in range(bits - 1, -1, -1)]
        weight = np.divide(r, fit, out=np.zeros(len(y), dtype=np.float32), where=fit > 0)
        return r, planes, weight

    def _sign_bound(self, y: Any, r: Any) -> list[Any]:
        """The sign code's own estimator weight ``w1 = |y|^2 / sum |y_i|`` (as :meth:`_one_level`) and
        error term ``|y| sqrt(1 - c^2) / c``, ``c = <o_bar, o> = sum |y_i| / (sqrt(D) |y|)``: with
        probability about that of a normal variable within ``EPSILON`` deviations, ``<y, q'>`` is
        within ``EPSILON |q'| / sqrt(D - 1)`` times that term of ``w1 <s, q'>`` (Gao & Long 2024)."""
        squares = r * r
        total = np.abs(y) @ np.ones(y.shape[1], dtype=np.float32)
        weight = np.divide(squares, total, out=np.zeros(len(y), dtype=np.float32), where=total > 0)
        c = np.divide(total, np.sqrt(np.float32(self.padded_)) * r, out=np.ones(len(y), dtype=np.float32),
                      where=r > 0)
        error = r * np.sqrt(np.maximum(0.0, 1.0 - c * c)) / np.maximum(c, 1e-6)
        return [weight, error.astype(np.float32)]

    def _levels(self, y: Any, r: Any, levels: int) -> tuple[list[Any], list[Any]]:
        """Each level's bit plane (the signs of what the levels before left) and its weight in the
        estimator: ``|y| a_t / <o_bar, o>``, with ``o = y / |y|``, ``a_t`` the level's step and
        ``o_bar`` the levels' sum (the estimator's correction)."""
        o = unit_rows(y, r[:, None])
        residual, total = o, np.zeros_like(o)
        planes, steps = [], []
        for _ in range(levels):
            s = np.where(residual >= 0, 1.0, -1.0).astype(np.float32)  # ties go to +1
            a = np.abs(residual).sum(axis=1) / self.padded_
            total += a[:, None] * s
            residual = residual - a[:, None] * s
            planes.append(np.packbits(s > 0, axis=1))
            steps.append(a)
        f = (total * o).sum(axis=1)
        ok = f > 0
        return planes, [np.divide(r * a, f, out=np.zeros(len(y), dtype=np.float32), where=ok) for a in steps]

    def encode_query(self, q: Any) -> Any:
        if self.values["mode"] != "rabitq":
            return self.encode(q)
        return self._prepare(q)

    def prepare_queries(self, q: Any, tables: bool = True) -> dict[str, Any]:
        """Per-query state: the rotated (centred) queries, their sums, the additive constant, and with
        coarse lists the queries' scores against the centroids. ``tables`` is accepted for the
        scorers' common signature: this codec has none."""
        q = np.asarray(q, dtype=np.float32)
        centred = q - self.mean_
        rotated = self._rotate_queries(centred)
        if self.lists:  # the centroid's part comes per list: <q, c> (ip) or |q - c|^2 (l2)
            dots = q @ self.coarse_.T
            coarse = (np.einsum("nd,nd->n", q, q)[:, None] - 2.0 * dots
                      + np.einsum("ld,ld->l", self.coarse_, self.coarse_)[None, :]) if self.output.metric == "l2" \
                else dots
            return {"rotated": rotated, "sum": rotated.sum(axis=1), "const": np.zeros(len(q), dtype=np.float32),
                    "coarse": coarse.astype(np.float32)}
        if self.output.metric == "l2":
            const = (centred * centred).sum(axis=1)
        else:
            const = q @ self.mean_  # <q, c>; the data side adds <x - c, c>
        return {"rotated": rotated, "sum": rotated.sum(axis=1), "const": const.astype(np.float32)}

    @property
    def takes_query_bits(self) -> bool:
        return self.values["mode"] == "rabitq"

    def quantize_queries(self, prepared: dict[str, Any], bits: int) -> dict[str, Any]:
        """The rotated queries rounded to ``bits`` bits per coordinate, each between its own lowest and
        highest value (``q_hat = low + delta * level``, to the nearest level: deterministic), as the
        RaBitQ paper's scan and faiss's ``qb`` round them; every score of these prepared queries is
        then of ``q_hat``. The levels are kept for the compiled scan, which counts bits against them
        (:meth:`table_queries`)."""
        rotated = np.asarray(prepared["rotated"], dtype=np.float32)
        low = rotated.min(axis=1)
        top = (1 << bits) - 1
        delta = rotated.max(axis=1) - low
        delta /= np.float32(top)
        delta[~(delta > 0)] = 1.0  # a constant query: one level
        rounded = rotated - low[:, None]  # in place from here: few numpy calls for a single query
        rounded /= delta[:, None]
        np.rint(rounded, out=rounded)
        np.clip(rounded, 0, top, out=rounded)
        levels = rounded.astype(np.uint8)
        rounded *= delta[:, None]
        rounded += low[:, None]
        return {**prepared, "rotated": rounded, "sum": rounded.sum(axis=1), "levels": levels, "low": low,
                "delta": delta, "query_bits": np.full(len(rounded), bits, dtype=np.uint8)}

    def _combine(self, prepared: dict[str, Any], dots: list[Any], factors: Any) -> Any:
        """Scores from ``<bits_t, q'>`` per level: similarity (ip) or squared distance (l2).

        ``<s_t, q'> = 2 <bits_t, q'> - sum(q')``; in place, because these are queries x rows arrays.
        """
        sign = -2.0 if self.output.metric == "l2" else 1.0
        out = None
        for t, dot in enumerate(dots):
            dot *= 2.0
            dot -= prepared["sum"][:, None]
            dot *= sign * factors[..., 1 + t]
            out = dot if out is None else np.add(out, dot, out=out)
        out += factors[..., 0]
        out += prepared["const"][:, None]
        return out

    def scoring_rows(self, codes: Any) -> tuple[Any, Any, Any]:
        """Code rows as what :meth:`score_rows` multiplies: ``sum_t w_t s_t`` (rotated space), the
        additive factor, and the rows' lists (the estimator is an inner product with the first)."""
        codes = np.asarray(codes, dtype=np.uint8)
        planes, factors = self._split(codes)
        return self._estimate_rows(planes, factors), factors[:, 0], self.list_of(codes) if self.lists else None

    def score_rows(self, prepared: dict[str, Any], queries: Any, rows: tuple[Any, Any, Any]) -> Any:
        """Scores of the prepared queries numbered ``queries`` against :meth:`scoring_rows` rows (BLAS)."""
        y, add, lists = rows
        dots = prepared["rotated"][queries] @ y.T
        if self.output.metric == "l2":
            dots *= -2.0
        dots += add[None, :]
        dots += prepared["const"][queries][:, None]
        if lists is not None:
            dots += prepared["coarse"][queries[:, None], lists[None, :]]
        return dots

    def score(self, prepared: dict[str, Any], codes: Any) -> Any:
        codes = np.asarray(codes, dtype=np.uint8)
        planes, factors = self._split(codes)
        dots = [_bit_dots(prepared["rotated"], plane, self.padded_) for plane in planes]
        out = self._combine(prepared, dots, factors[None, :, :])
        if self.lists:
            out += np.take(prepared["coarse"], self.list_of(codes), axis=1)
        return out

    def score_candidates(self, prepared: dict[str, Any], codes: Any) -> Any:
        planes, factors = self._split(np.asarray(codes, dtype=np.uint8))
        rotated = prepared["rotated"]
        dots = [np.einsum("nmp,np->nm", np.unpackbits(p, axis=-1, count=self.padded_).astype(np.float32), rotated)
                for p in planes]
        out = self._combine(prepared, dots, factors)
        if self.lists:
            out += np.take_along_axis(prepared["coarse"], self.list_of(codes), axis=1)
        return out

    def table_codes(self, codes: Any) -> tuple[Any, ...]:
        """Stored code rows as the compiled table scan reads them: the bit planes' bytes (rows x
        levels x bytes) and the float32 factors (scale undone)."""
        codes = np.asarray(codes, dtype=np.uint8)
        planes, factors = self._split(codes)
        arrays = (np.ascontiguousarray(np.concatenate(planes, axis=1)), np.ascontiguousarray(factors))
        return (*arrays, np.ascontiguousarray(self._sign_bounds(codes))) if self.incremental_ else arrays

    def table_queries(self, prepared: dict[str, Any], counted: bool = False) -> dict[str, Any] | None:
        """What the compiled table scan sums (:func:`vecx.adc.scan_codes`): per query, a table of
        each byte position's 256 partial sums of the rotated query (``<bits_t, q'>`` is a sum over
        the bytes; or, by :func:`vecx.adc.scan_products`, a product with the rotated query itself, the
        ``vectors``), the affine map of such a sum to ``w``'s multiplier (see :meth:`_combine`), and
        the constant and centroid terms per list.

        Queries rounded to bits (``--query-bits``) against codes the scan counts (``counted``:
        :attr:`vecx.adc.Codes.countable`) give their levels' bit planes instead of tables, which
        that scan does not read (empty tables: no entries per position)."""
        if self.values["mode"] != "rabitq":
            return None
        rotated = prepared["rotated"]
        n = len(rotated)
        sign = -2.0 if self.output.metric == "l2" else 1.0
        base = prepared["const"][:, None] + prepared["coarse"] if self.lists else prepared["const"][:, None]
        planes = counted and "levels" in prepared
        tables = np.zeros((n, self.padded_ // 8, 0), dtype=np.float32) if planes else \
            _byte_tables(rotated, self.padded_ // 8)
        out = {"kind": "weighted", "tables": tables, "vectors": rotated,
               "scale": np.full(n, 2.0 * sign, dtype=np.float32), "shift": -sign * prepared["sum"],
               "base": np.ascontiguousarray(base, dtype=np.float32)}
        if planes:  # rounded queries: their levels' bit planes, packed as the codes' planes
            levels, bits = prepared["levels"], int(prepared["query_bits"][0]) if n else 1
            shifts = np.arange(bits, dtype=np.uint8)[None, :, None]
            out["planes"] = np.packbits((levels[:, None, :] >> shifts) & 1, axis=2)
            out["low"], out["delta"] = prepared["low"], prepared["delta"]
        if self.incremental_:  # what a row's error term is multiplied by for this query (see _sign_bound)
            out["bound"] = (abs(sign) * EPSILON / np.sqrt(self.padded_ - 1)
                            * np.linalg.norm(rotated, axis=1)).astype(np.float32)
        return out

    def navigation(self, codes: Any) -> tuple[str, int, Any] | None:
        if self.values["mode"] != "rabitq":
            return None
        head = self.prefix
        first_plane = np.asarray(codes, dtype=np.uint8)[:, head: head + self.padded_ // 8]
        return BITS, self.padded_, np.ascontiguousarray(first_plane)

    # ---- state ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        if self.values["mode"] == "rabitq":
            turn = {"signs": self.signs_} if self.fast_ else {"rotation": self.rotation_}
            out = {"mean": self.mean_, **turn, "norm_scale": self.norm_scale_}
            return {**out, "coarse": self.coarse_} if self.lists else out
        return {"mean": self.mean_, "scale": self.scale_}

    def load_state(self, arrays: dict[str, Any]) -> None:
        d = self.input.dim
        rabitq = self.values["mode"] == "rabitq"
        shapes: dict[str, tuple[int, ...]] = {"mean": (d,), "scale": (d,)}
        if rabitq:
            turn = {"signs": (ROUNDS, self.padded_)} if self.fast_ else {
                "rotation": (self.blocks_, self.block_, self.block_)}
            shapes = {"mean": (d,), **turn, "norm_scale": (1,), **({"coarse": (self.lists, d)} if self.lists else {})}
        self._check_state(arrays, shapes)
        self.coarse_ = np.ascontiguousarray(arrays["coarse"], dtype=np.float32) if rabitq and self.lists else None
        self._coarse_rotated = None
        self.mean_ = arrays["mean"].astype(np.float32)
        if rabitq and self.fast_:
            signs = np.asarray(arrays["signs"])
            if not np.isin(signs, (-1, 1)).all():
                raise MismatchError(f"{self.spec}: fitted state 'signs' holds values other than -1 and 1")
            self.signs_ = signs.astype(np.int8)
            self._matrix = None
        if rabitq:
            if not self.fast_:
                self.rotation_ = np.ascontiguousarray(arrays["rotation"], dtype=np.float32)
            self.norm_scale_ = arrays["norm_scale"].astype(np.float32)
        else:
            self.scale_ = arrays["scale"].astype(np.float32)
        self.is_fitted = True


def _pack_rows(bits: Any) -> Any:
    """``numpy.packbits(bits, axis=1)`` for rows of a whole number of bytes, packed as one flat run
    (packing along short rows crawls in numpy)."""
    return np.packbits(np.ascontiguousarray(bits).ravel()).reshape(len(bits), -1)


def _ex_scales(magnitude: Any, half: int, window: int, levels: Any, fit: Any) -> None:  # pragma: no cover
    """Per row of ``magnitude`` (``|o_i|`` of a unit vector), the codes of its best ex-code scale.

    The scale ``t`` is the one whose codes ``k_i = min(floor(|o_i| t), half - 1)`` give the vector
    ``sign(o_i) (k_i + 1/2)`` closest in angle to ``o`` (largest ``<o_bar, o> / |o_bar|``). The codes
    change only where ``|o_i| t`` crosses an integer ``m`` (``t = m / |o_i|``), each crossing moving
    one code up by one. A geometric grid of :data:`EX_GRID` scales (1/4 to 4 times the one that just
    saturates the largest coordinate) finds the best region; then every crossing within
    ``window`` grid steps of the best grid scale is visited in order, the sums updated, not
    recomputed, and the best state is kept. Writes the ``k_i`` to ``levels`` and ``<o_bar, o>`` to
    ``fit``.
    """
    n, width = magnitude.shape
    top = np.float32(half - 1)
    step = np.float32(16.0 ** (1.0 / (EX_GRID - 1)))
    times = np.empty(width * half, dtype=np.float32)
    coords = np.empty(width * half, dtype=np.int64)
    current = np.empty(width, dtype=np.float32)
    for row in range(n):
        a = magnitude[row]
        largest = a.max()
        low = np.float32(0.0)
        if largest > 0:
            low = _ex_grid(a, top, np.float32(half) / largest / np.float32(4.0), step) / step**window
        high = low * step ** (2 * window)
        dot = np.float32(0.0)
        squares = np.float32(0.0)
        count = 0
        for i in range(width):
            current[i] = min(np.floor(a[i] * low), top)
            levels[row, i] = np.uint8(current[i])
            dot += a[i] * (current[i] + np.float32(0.5))
            squares += (current[i] + np.float32(0.5)) ** 2
            m = current[i] + np.float32(1.0)
            while m <= top and m <= a[i] * high:  # the crossings inside (low, high]
                times[count] = m / a[i]
                coords[count] = i
                count += 1
                m += np.float32(1.0)
        order = np.argsort(times[:count])
        best, best_cos = -1, dot / np.sqrt(squares)
        for e in range(count):
            i = coords[order[e]]
            dot += a[i]
            squares += np.float32(2.0) * (current[i] + np.float32(1.0))  # (k + 3/2)^2 - (k + 1/2)^2
            current[i] += np.float32(1.0)
            cos = dot / np.sqrt(squares)
            if cos > best_cos:
                best, best_cos = e, cos
        for e in range(best + 1):  # replay the crossings up to the best one
            levels[row, coords[order[e]]] += 1
        total = np.float32(0.0)
        for i in range(width):
            total += a[i] * (np.float32(levels[row, i]) + np.float32(0.5))
        fit[row] = total


def _ex_grid_search(a: Any, top: Any, first: Any, ratio: Any) -> Any:  # pragma: no cover
    """The best of :data:`EX_GRID` scales ``first * ratio^j`` for the row ``a`` (see :func:`_ex_scales`;
    compiled with ``fastmath={"reassoc"}``: its sums may be reordered into SIMD lanes)."""
    best_t, best_cos = first, np.float32(-1.0)
    t = first
    for _ in range(EX_GRID):
        dot = np.float32(0.0)
        squares = np.float32(0.0)
        for i in range(len(a)):
            k = min(np.floor(a[i] * t), top) + np.float32(0.5)
            dot += a[i] * k
            squares += k * k
        cos = dot / np.sqrt(squares)
        if cos > best_cos:
            best_cos, best_t = cos, t
        t *= ratio
    return best_t


#: Scales of extended RaBitQ's grid (a ratio of 16 between the first and the last), and how many of
#: its steps on each side of the best one the visit of crossings covers, by bits (up to 5 bits, and
#: more: many codes make the fit smoother and the crossings dense).
EX_GRID = 32
EX_WINDOW = (3, 1)
_ex_kernel: Any = None
_ex_grid: Any = None


def _compiled_ex() -> Any:
    """Extended RaBitQ's quantizer, compiled (its grid search first, by the name it is called by)."""
    global _ex_kernel, _ex_grid
    if _ex_kernel is None:
        from vecx.kernels import compiled

        _ex_grid = compiled(_ex_grid_search, fastmath={"reassoc"})
        _ex_kernel = compiled(_ex_scales)
    return _ex_kernel


def _byte_tables(q: Any, nbytes: int) -> Any:
    """Queries x bytes x 256: for each byte position of a packed bit row (most significant bit first,
    as ``numpy.packbits`` packs) and each byte value, the sum of the query's values under its set
    bits, so that ``<bits, q>`` is a sum of one entry per byte."""
    global _BYTE_BITS
    if _BYTE_BITS is None:
        _BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)
    padded = np.zeros((len(q), nbytes * 8), dtype=np.float32)
    padded[:, : q.shape[1]] = q
    return padded.reshape(len(q), nbytes, 8) @ _BYTE_BITS.T


def _bit_dots(q: Any, packed: Any, nbits: int) -> Any:
    """``<bits, q>`` for every query (rows of ``q``) and every packed bit row: queries x rows float32.

    Many queries: unpack the bits once and multiply (BLAS). Few queries: a 256-entry table per byte
    position and query (the partial sums of its 8 query values), then one gather per byte position —
    the unpacking would cost more than the product for a single query.
    """
    if len(q) > LUT_QUERIES:
        return q @ np.unpackbits(packed, axis=1, count=nbits).astype(np.float32).T
    nbytes = packed.shape[1]
    tables = _byte_tables(q, nbytes)
    columns = np.ascontiguousarray(packed.T)  # one contiguous row of bytes per position: cheap gathers
    out = np.zeros((len(q), len(packed)), dtype=np.float32)
    for i in range(len(q)):
        row = out[i]
        for j in range(nbytes):
            row += tables[i, j].take(columns[j])
    return out
