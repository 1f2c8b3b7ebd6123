"""Product quantization (PQ) with asymmetric distance computation (ADC), optionally after an OPQ rotation.

``pq:MxB`` splits each vector into ``M`` sub-vectors and replaces each by the index of its nearest
centroid among ``K = 2^B`` learned for that sub-space (Jegou, Douze & Schmid, TPAMI 2011): ``M x B``
bits per vector. The codebooks are learned by k-means on a seeded sample, one sub-space at a time:
``K`` distinct sample rows as the initial centroids (picked by the seeded hash of
:mod:`vecx.sampling`, so the choice depends on no RNG algorithm), then ``iters`` over-relaxed Lloyd
iterations (each centroid moves 1.8 times its Lloyd step, see :func:`_kmeans`; stopping early at a
fixed point), which reach a lower quantization error in fewer iterations than plain Lloyd
(the comparison with faiss is in BENCHMARKS.md). An empty cluster is re-seeded by splitting
the largest one (its centroid, nudged both ways), as faiss does. Like faiss, k-means uses at most
``256 x K`` rows of the sample (a seeded subset). The same sample and seed give byte-identical
codebooks; assignments use float32 BLAS products (``|c|^2 - 2 <x, c>``), in blocks of rows, on all cores.

``opq=true`` first learns an orthogonal rotation ``R`` (Ge et al., CVPR 2013, non-parametric OPQ) that
lowers the quantization error. It starts from the identity or a seeded random rotation, whichever
quantizes the sample better after a first k-means (a random rotation balances the variance of the
sub-spaces of embeddings; SIFT-like data, already balanced and structured, keeps its axes), then
alternates the orthogonal Procrustes update ``R = U V^T`` of ``svd(X^T Xhat)`` with a few
warm-started k-means iterations (``Xhat`` is the reconstruction of their last assignment), up to
``opq_iters`` times: it stops earlier once five updates in a row lowered the quantization error by
less than 0.1% in all. The codebooks are then trained on ``X R`` (warm-started too). The rotation is
stored (``D x D``, ``y = x R``).

The metric contract: l2 input stays l2 (scores are squared L2 distances, lower is better); inner
product input gives ``ip`` (similarities); cosine input is normalized first (data and queries alike,
unless the input is already unit-norm) and gives ``ip``. The codes have no metric of their own
(``metric_on="scorer"``): queries stay float (asymmetric, ``encode_query`` returns them normalized
and rotated into the codebooks' space) and the codec scores them against the codes with per-query
tables, ``T[m, k] = |q_m - c_mk|^2`` (l2) or ``<q_m, c_mk>`` (ip), summed over the ``M`` codes of a row
(the exact L2 / inner product between the query and the decoded row, up to float rounding).

Storage (dtype ``codes``, ``ceil(M x B / 8)`` bytes per row): for ``B = 8`` one byte per sub-space, in
sub-space order; for any other ``B`` the ``M`` codes are bit-packed across the whole row, most
significant bit first, the padding bits at the end of the row zero. ``decode`` returns the
reconstruction in the stage's input space (rotated back); ``encode(decode(codes))`` gives the codes
back, except for cosine input that is not unit-norm (re-normalizing a reconstruction can move it).

``D % M != 0`` is allowed: the first ``D % M`` sub-spaces are one dimension wider than the others. The
stored codebooks (``M x K x ceil(D/M)``) zero-pad the narrower sub-spaces, which changes no L2
distance or inner product.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param, ScoresCodes, sample_params
from vecx.codecs.kmeans import (
    LIST_BYTES,
    MAX_LISTS,
    MAX_POINTS_PER_CENTROID,
    MIN_POINTS_PER_CENTROID,
    _augmented,
    _kmeans,
    _mix,
    _nearest,
    fit_centroids,
    list_header,
    list_numbers,
    nearest,
    probe_order,
)
from vecx.errors import DataError, MismatchError
from vecx.kernels import haar_orthogonal, map_threads
from vecx.sampling import sample_rows
from vecx.space import CODES, VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

#: Rows encoded per task (tasks run on all cores).
_ENCODE_ROWS = 4096
#: From this many queries on, :meth:`PQ.score` decodes the codes and multiplies (BLAS) instead of
#: gathering from the distance tables.
GEMM_QUERIES = 32
#: Scratch budget of one scoring block (queries x rows float32, twice).
_SCORE_BYTES = 16 << 20
#: The largest per-list tables (L2 distances to residuals) a table scan precomputes.
_LIST_TABLE_BYTES = 256 << 20
#: k-means iterations of OPQ's first codebooks, then between two rotation updates (warm-started).
_OPQ_FIRST_ITERS = 10
_OPQ_STEP_ITERS = 4
#: OPQ stops before ``opq_iters`` updates once the last :data:`_OPQ_WINDOW` of them lowered the
#: quantization error by less than this fraction in all: some data sets stop gaining early, others
#: keep improving (or improve again after a plateau) up to the last update, so the window is long.
_OPQ_WINDOW = 5
_OPQ_TOLERANCE = 1e-3
_SHAPE = re.compile(r"([0-9]+)x([0-9]+)\Z")


def _pack(codes: Any, bits: int, nbytes: int) -> Any:
    """Rows x M codes -> rows x nbytes, bit-packed MSB first across the row (B = 8: the bytes)."""
    codes = np.asarray(codes)
    n, m = codes.shape
    if bits == 8:
        return codes.astype(np.uint8)
    if bits == 4:
        padded = np.zeros((n, 2 * nbytes), dtype=np.uint8)
        padded[:, :m] = codes
        return (padded[:, 0::2] << 4) | padded[:, 1::2]
    if bits < 8:
        planes = np.unpackbits(codes.astype(np.uint8)[:, :, None], axis=2)[:, :, 8 - bits:]
    else:
        wide = codes.astype(">u2").view(np.uint8).reshape(n, m, 2)
        planes = np.unpackbits(wide, axis=2)[:, :, 16 - bits:]
    return np.packbits(planes.reshape(n, m * bits), axis=1)


def _unpack(packed: Any, bits: int, m: int) -> Any:
    """Inverse of :func:`_pack`: rows x M codes (uint8 for B <= 8, else uint16)."""
    packed = np.asarray(packed, dtype=np.uint8)
    n = len(packed)
    if bits == 8:
        return packed
    if bits == 4:
        out = np.empty((n, 2 * packed.shape[1]), dtype=np.uint8)
        out[:, 0::2] = packed >> 4
        out[:, 1::2] = packed & 15
        return out[:, :m]
    planes = np.unpackbits(packed, axis=1, count=m * bits).reshape(n, m, bits)
    width = 8 if bits < 8 else 16
    full = np.zeros((n, m, width), dtype=np.uint8)
    full[:, :, width - bits:] = planes
    joined = np.packbits(full, axis=2)
    return joined[:, :, 0] if width == 8 else joined.view(">u2")[:, :, 0].astype(np.uint16)


class PQ(Codec, ScoresCodes):
    """Product quantization: M sub-space codes of B bits, scored against float queries with ADC tables."""

    name = "pq"
    summary = "product quantization: M codes of B bits per vector, asymmetric (ADC) scoring; optional OPQ"
    example = "pq:8x8"
    help = (
        "Split each vector into M sub-vectors and store, for each, the index of its nearest of 2^B "
        "centroids learned by k-means on a seeded sample (M x B bits per vector; pq:48x8 turns "
        "384-d float32 into 48 bytes). opq=true first learns an orthogonal rotation that balances "
        "the sub-spaces and lowers the error. Queries stay float: indexes score them against the "
        "codes with per-query distance tables (asymmetric distance computation, like faiss "
        "IndexPQ). L2 data is scored by squared L2; cosine data is normalized and, like inner "
        "product data, scored by inner product. M need not divide the dimension. Example: "
        "vecx pq docs.parquet -o docs.pq.parquet --shape 48x8"
    )
    params = (
        Param("shape", str, required=True, help="MxB: M sub-spaces, B bits per code"),
        Param("opq", bool, default=False, help="learn an OPQ rotation before quantizing"),
        Param("iters", int, default=18, minimum=1,
              help="k-means iterations per sub-space (over-relaxed Lloyd: 18 get below the error of faiss's 25)"),
        Param("opq_iters", int, default=50, minimum=1,
              help="OPQ rotation updates at most (each after a few warm-started k-means iterations; "
                   "stops earlier once 5 updates gained < 0.1%)"),
        Param("ivf", int, default=0, minimum=0, maximum=MAX_LISTS, omit_default=True,
              help="coarse lists (faiss IVF...,PQ...): each vector is encoded as its residual from the "
                   "nearest of this many k-means centroids, whose number takes 2 more bytes; an index "
                   "then scans only the --nprobe lists nearest each query (0 = none)"),
        *sample_params("trains the codebooks"),
    )
    #: The epilog of ``vecx pq --help``.
    examples: ClassVar[tuple[str, ...]] = (
        "vecx pq docs.parquet -o docs.pq.parquet --shape 48x8",
        "vecx encode docs.parquet -o docs.opq.parquet --spec pq:24x8:opq=true",
        "vecx index docs.pq.parquet -o docs.vecx",
        "vecx pq more.parquet -o more.pq.parquet --state pq.state",
    )
    primary = "shape"
    needs_fit = True

    # ---- planning -----------------------------------------------------------------------
    def _shape(self) -> tuple[int, int]:
        text = self.values["shape"]
        match = _SHAPE.match(text)
        if not match:
            raise self.fail(f"shape {text!r} must be MxB (M sub-spaces, B bits per code), e.g. 16x8")
        m, b = int(match.group(1)), int(match.group(2))
        if f"{m}x{b}" != text:
            raise self.fail(f"shape {text!r}: write it {m}x{b}")
        if m < 1:
            raise self.fail(f"shape {text!r}: M must be at least 1")
        if not 1 <= b <= 12:
            raise self.fail(f"shape {text!r}: B must be 1..12 bits per code (2 to 4096 centroids)")
        return m, b

    def plan(self, input: VectorSpec) -> VectorSpec:
        self.require_float(input)
        m, b = self._shape()
        if m > input.dim:
            raise self.fail(f"M={m} sub-spaces is more than the input dimension {input.dim}")
        k = 1 << b
        if self.values["sample"] < k:
            raise self.fail(f"sample={self.values['sample']} rows cannot train {k} centroids per sub-space; "
                            f"use sample>={k} (at least {MIN_POINTS_PER_CENTROID * k} is better)")
        self.m, self.bits, self.k = m, b, k
        d = input.dim
        narrow, wider = divmod(d, m)
        self.widths = [narrow + 1] * wider + [narrow] * (m - wider)
        self.offsets = [sum(self.widths[:i]) for i in range(m)]
        self.width = self.widths[0]
        self._slots: Any = None  # built by _split on first use (planning needs no numpy)
        self.nbytes = (m * b + 7) // 8
        self.lists = self.values["ivf"]
        if self.lists and self.values["sample"] < self.lists:
            raise self.fail(f"sample={self.values['sample']} rows cannot train {self.lists} coarse centroids")
        self.prefix = LIST_BYTES if self.lists else 0  # the list number, before the codes
        if not hasattr(self, "codebooks_"):  # re-planning (Chain.with_input) keeps the fitted state
            self.codebooks_: Any = None
            self.rotation_: Any = None
            self.coarse_: Any = None
        self._augmented_cache: Any = None
        self._coarse_cache: Any = None
        self._coarse_sq: Any = None
        self._list_tables: Any = None
        return VectorSpec(self.prefix + self.nbytes, CODES, "l2" if input.metric == "l2" else "ip", False, "scorer")

    # ---- helpers ------------------------------------------------------------------------
    def _rotate(self, x: Any) -> Any:
        return x if self.rotation_ is None else x @ self.rotation_

    def _split(self, x: Any) -> Any:
        """Rows x D -> rows x M x width, the narrower sub-spaces zero-padded."""
        n = len(x)
        if self.m * self.width == self.input.dim:
            return x.reshape(n, self.m, self.width)
        # One gather instead of a copy per sub-space: a single query's tables wait on this. Each
        # slot names its input column; a narrower sub-space's padding slot the zero appended to x.
        if self._slots is None:
            self._slots = np.full((self.m, self.width), self.input.dim, dtype=np.intp)
            for i, (off, w) in enumerate(zip(self.offsets, self.widths, strict=True)):
                self._slots[i, :w] = np.arange(off, off + w)
        extended = np.zeros((n, self.input.dim + 1), dtype=np.float32)
        extended[:, : self.input.dim] = x
        return extended[:, self._slots]

    def _join(self, parts: Any) -> Any:
        """Inverse of :meth:`_split`: rows x M x width -> rows x D."""
        n = len(parts)
        if self.m * self.width == self.input.dim:
            return parts.reshape(n, self.input.dim)
        return np.concatenate([parts[:, i, :w] for i, w in enumerate(self.widths)], axis=1)

    def _augmented(self) -> list[Any]:
        if self._augmented_cache is None:
            self._augmented_cache = [_augmented(self.codebooks_[i, :, :w]) for i, w in enumerate(self.widths)]
        return self._augmented_cache

    def _assign(self, y: Any) -> Any:
        """Rows x M nearest-centroid codes (intp) of rows in the codebooks' space."""
        y = np.asarray(y, dtype=np.float32)
        n = len(y)
        codes = np.empty((n, self.m), dtype=np.uint8 if self.bits <= 8 else np.uint16)
        augmented = self._augmented()

        def task(start: int) -> None:
            stop = min(n, start + _ENCODE_ROWS)
            labels = np.empty(stop - start, dtype=np.intp)
            chunk = y[start:stop]
            for i, (off, w) in enumerate(zip(self.offsets, self.widths, strict=True)):
                _nearest(chunk[:, off: off + w], augmented[i], labels)
                codes[start:stop, i] = labels

        map_threads(task, list(range(0, n, _ENCODE_ROWS)))
        return codes

    def _train(self, y: Any, iters: int, init: Any = None, codes: Any = None) -> Any:
        """Codebooks (M x K x width, zero-padded) by k-means per sub-space of ``y``.

        ``codes`` (rows x M integers), when given, receives the last assignment of every sub-space.
        """
        seed = self.values["seed"]

        def task(i: int) -> Any:
            off, w = self.offsets[i], self.widths[i]
            start = None if init is None else init[i, :, :w]
            labels = None if codes is None else np.empty(len(y), dtype=np.intp)
            centroids = _kmeans(np.ascontiguousarray(y[:, off: off + w]), self.k, iters, _mix(seed, i), start, labels)
            if codes is not None:
                codes[:, i] = labels
            return centroids

        books = np.zeros((self.m, self.k, self.width), dtype=np.float32)
        for i, centroids in enumerate(map_threads(task, list(range(self.m)))):
            books[i, :, : self.widths[i]] = centroids
        return books

    def _reconstruct(self, codes: Any) -> Any:
        """Rows x M codes -> rows x D in the codebooks' space."""
        parts = self.codebooks_[np.arange(self.m)[None, :], np.asarray(codes, dtype=np.intp)]
        return self._join(parts)

    # ---- fitting ------------------------------------------------------------------------
    def fit(self, sample: Any) -> None:
        x = self.unit_if_cosine(sample)
        n, k = len(x), self.k
        if n < k:
            raise DataError(f"{self.spec}: k-means needs at least {k} training rows for 2^{self.bits} "
                            f"centroids per sub-space, the sample holds {n}",
                            hint=f"give more rows, or fewer bits (at least {MIN_POINTS_PER_CENTROID * k} "
                                 "rows are better)")
        self.coarse_ = self._coarse_cache = self._coarse_sq = self._list_tables = None
        if self.lists:
            x = self._fit_lists(x)
        limit = MAX_POINTS_PER_CENTROID * k
        if n > limit:
            x = x[sample_rows(n, limit, _mix(self.values["seed"], 1 << 20))]
        self.rotation_ = None
        self._augmented_cache = None
        if self.values["opq"]:
            self.rotation_, init = self._fit_opq(x)
        else:
            init = None
        self.codebooks_ = self._train(self._rotate(x), self.values["iters"], init)
        self._augmented_cache = None
        self.is_fitted = True

    def _fit_lists(self, x: Any) -> Any:
        """Fits the coarse centroids on (a seeded subset of) ``x``; returns ``x``'s residuals from them."""
        self.coarse_ = fit_centroids(x, self.lists, self.values["seed"])
        return x - self.coarse_[nearest(x, self.coarse_)]

    def list_of(self, codes: Any) -> Any:
        """The list number of each stored code row."""
        return list_numbers(codes)

    def _rotated_coarse(self) -> Any:
        """The coarse centroids in the codebooks' (rotated) space, where queries arrive."""
        if self._coarse_cache is None:
            self._coarse_cache = np.ascontiguousarray(self._rotate(self.coarse_), dtype=np.float32)
        return self._coarse_cache

    def _fit_opq(self, x: Any) -> tuple[Any, Any]:
        """Alternate warm-started k-means and orthogonal Procrustes; returns the rotation and codebooks.

        The start is whichever of the identity and a seeded random rotation quantizes the sample
        better after a first k-means (a random rotation balances the sub-spaces' variance; data whose
        dimensions are already balanced and structured, like SIFT, is better left as it is).
        """
        codes = np.empty((len(x), self.m), dtype=np.intp)
        best: tuple[float, Any, Any, Any] | None = None
        for start in (np.eye(self.input.dim, dtype=np.float32),
                      haar_orthogonal(self.input.dim, _mix(self.values["seed"], 1 << 21) % (1 << 32))):
            y = x @ start
            books = self._train(y, _OPQ_FIRST_ITERS, codes=codes)
            recon = self._reconstruct_from(books, codes)
            error = float(((y - recon) ** 2).sum())
            if best is None or error < best[0]:
                best = (error, start, books, recon)
        assert best is not None  # two starts were tried
        errors = [best[0]]
        _, rotation, books, recon = best
        for _ in range(self.values["opq_iters"]):
            # Procrustes: the orthogonal R minimizing |x R - recon| is U V^T from svd(x^T recon).
            u, _, vt = np.linalg.svd((x.T @ recon).astype(np.float64))
            rotation = (u @ vt).astype(np.float32)
            y = x @ rotation
            # The reconstruction for the next update is the last k-means assignment's (the codes
            # and means of one Lloyd step), not a fresh assignment: that one would cost a fifth of
            # each update and lower the error by far less than the next update does.
            books = self._train(y, _OPQ_STEP_ITERS, books, codes)
            recon = self._reconstruct_from(books, codes)
            errors.append(float(((y - recon) ** 2).sum()))
            if len(errors) > _OPQ_WINDOW and errors[-1] > errors[-1 - _OPQ_WINDOW] * (1.0 - _OPQ_TOLERANCE):
                break  # converged: the last updates lowered the error by less than the tolerance
        return rotation, books

    def _reconstruct_from(self, books: Any, codes: Any) -> Any:
        """Rows x D reconstruction of ``codes`` by ``books`` (codebooks' space)."""
        self.codebooks_, self._augmented_cache = books, None
        return self._reconstruct(codes)

    # ---- encoding -----------------------------------------------------------------------
    def encode(self, x: Any) -> Any:
        x = self.unit_if_cosine(x)
        if not self.lists:
            return _pack(self._assign(self._rotate(x)), self.bits, self.nbytes)
        labels = nearest(x, self.coarse_)
        codes = _pack(self._assign(self._rotate(x - self.coarse_[labels])), self.bits, self.nbytes)
        return np.concatenate([list_header(labels), codes], axis=1)

    def encode_query(self, q: Any) -> Any:
        return np.ascontiguousarray(self._rotate(self.unit_if_cosine(q)), dtype=np.float32)

    def decode(self, codes: Any) -> Any:
        y = self._reconstructed(codes)
        if self.rotation_ is not None:
            y = y @ self.rotation_.T
        return np.ascontiguousarray(y, dtype=np.float32)

    def _reconstructed(self, codes: Any) -> Any:
        """Stored code rows (list number first, with coarse lists) -> rows x D in the codebooks' space."""
        codes = np.asarray(codes, dtype=np.uint8)
        y = self._reconstruct(_unpack(codes[:, self.prefix:], self.bits, self.m))
        if self.lists:
            y += self._rotated_coarse()[self.list_of(codes)]
        return y

    def scoring_rows(self, codes: Any) -> Any:
        """Stored code rows as float rows in the space of the prepared queries (decoded, not rotated back)."""
        return self._reconstructed(codes)

    def score_rows(self, prepared: dict[str, Any], queries: Any, rows: Any) -> Any:
        """Scores of the prepared queries numbered ``queries`` against :meth:`scoring_rows` rows."""
        dots = prepared["queries"][queries] @ rows.T
        if self.output.metric != "l2":
            return dots
        return np.maximum(prepared["norms"][queries][:, None] - 2.0 * dots
                          + np.einsum("rd,rd->r", rows, rows)[None, :], 0.0)

    def _coarse_norms(self) -> Any:
        """Squared norms of the coarse centroids (rotation keeps them), kept while the centroids are."""
        if self._coarse_sq is None:
            books = self._rotated_coarse()
            self._coarse_sq = np.einsum("ld,ld->l", books, books)
        return self._coarse_sq

    def _coarse_dots(self, prepared: dict[str, Any]) -> Any:
        """Queries x lists ``<q, c>``: :meth:`prepare_queries`' when it made them, else computed."""
        dots = prepared.get("coarse_dots")
        return prepared["queries"] @ self._rotated_coarse().T if dots is None else dots

    def coarse_scores(self, prepared: dict[str, Any]) -> Any:
        """Queries x lists: each query's score against each coarse centroid (the codec's metric)."""
        dots = self._coarse_dots(prepared)
        if self.output.metric != "l2":
            return dots
        return prepared["norms"][:, None] - 2.0 * dots + self._coarse_norms()[None, :]

    def probe_order(self, prepared: dict[str, Any]) -> Any:
        """Queries x lists, lower first: the order in which a search probes the lists (see
        :func:`vecx.codecs.kmeans.probe_order`)."""
        return probe_order(self._coarse_dots(prepared), self._coarse_norms())

    # ---- asymmetric scoring -------------------------------------------------------------
    def prepare_queries(self, q: Any, tables: bool = True) -> dict[str, Any]:
        """Per-query state: distance tables (unless ``tables`` is false: a scan of decoded rows needs
        only the queries and their norms), and the queries' inner products with the coarse centroids.

        The tables (queries x M x K) hold each sub-space's score: ``<q_m, b>`` for inner products,
        ``|q_m - b|^2`` for L2; for L2 with coarse lists, ``-2 <q_m, b>``, the query's part of
        ``|q - c - b|^2`` (:meth:`table_queries` adds each list's own part; numpy scores such codes
        decoded)."""
        if not tables:
            q = np.asarray(q, dtype=np.float32)
            return {"queries": q, "norms": np.einsum("nd,nd->n", q, q)}
        parts = self._split(np.asarray(q, dtype=np.float32))  # n x M x width
        books_t, sq_books = self._books_t()
        by_query = np.empty((len(parts), self.m, self.k), dtype=np.float32)  # the scans read n x M x K
        dots = np.matmul(parts.transpose(1, 0, 2), books_t, out=by_query.transpose(1, 0, 2))  # M x n x K view
        if self.output.metric == "l2":
            dots *= -2.0
            if not self.lists:
                dots += sq_books[:, None, :]
                dots += np.einsum("nmw,nmw->mn", parts, parts)[:, :, None]
                np.maximum(dots, 0.0, out=dots)
        q = np.asarray(q, dtype=np.float32)
        out = {"tables": by_query, "queries": q, "norms": np.einsum("nd,nd->n", q, q)}
        if self.lists:
            out["coarse_dots"] = q @ self._rotated_coarse().T
            if self.output.metric != "l2":  # <q, c + r> = <q, c> + the tables' <q, r>
                out["coarse"] = out["coarse_dots"]
        return out

    def table_codes(self, codes: Any) -> tuple[Any, ...]:
        """Stored code rows as the compiled table scan reads them: one byte (or uint16) per sub-space."""
        return (np.ascontiguousarray(_unpack(np.asarray(codes, dtype=np.uint8)[:, self.prefix:], self.bits, self.m)),)

    def table_queries(self, prepared: dict[str, Any], counted: bool = False) -> dict[str, Any] | None:
        """What the compiled table scan sums, from :meth:`prepare_queries`' state: the queries' tables
        (queries x M x K), each list's coarse term (queries x lists; one zero list without lists)
        and, for L2 distances to residuals, each list's own tables (lists x M x K: ``|b|^2 + 2<c, b>``
        of codeword ``b`` against centroid ``c``, so that ``|q - c - b|^2`` is a sum of entries).
        ``None`` where those list tables would take more than :data:`_LIST_TABLE_BYTES`. PQ codes
        are never counted (``counted``: see the RaBitQ codec)."""
        q = prepared["queries"]
        if not self.lists:
            return {"kind": "tables", "tables": prepared["tables"], "base": np.zeros((len(q), 1), dtype=np.float32)}
        if self.output.metric != "l2":
            return {"kind": "tables", "tables": prepared["tables"], "base": prepared["coarse"]}
        if self.lists * self.m * self.k * 4 > _LIST_TABLE_BYTES:
            return None
        if self._list_tables is None:
            books_t, sq_books = self._books_t()  # M x width x K, M x K
            cents = self._split(self._rotated_coarse())  # lists x M x width
            cross = np.matmul(cents.transpose(1, 0, 2), books_t)  # M x lists x K
            self._list_tables = np.ascontiguousarray(
                (sq_books[:, None, :] + 2.0 * cross).transpose(1, 0, 2), dtype=np.float32)
        return {"kind": "tables", "tables": prepared["tables"], "base": self.coarse_scores(prepared),
                "extra": self._list_tables}

    def _books_t(self) -> tuple[Any, Any]:
        """The codebooks as M x width x K (contiguous: the tables' products run twice as fast on them
        as on a transposed view) and their squared norms (M x K), kept while the codebooks are."""
        cached = getattr(self, "_books_t_cache", None)
        if cached is None or cached[0] is not self.codebooks_:
            books = self.codebooks_
            cached = self._books_t_cache = (books, np.ascontiguousarray(books.transpose(0, 2, 1)),
                                            np.einsum("mkw,mkw->mk", books, books))
        return cached[1], cached[2]

    def score(self, prepared: dict[str, Any], codes: Any) -> Any:
        tables = prepared["tables"]
        n = len(tables)
        codes = np.asarray(codes, dtype=np.uint8)
        rows = len(codes)
        if n >= GEMM_QUERIES:
            # Many queries: decode the block once and let BLAS take the inner products. The same sums
            # as the tables' (<q, decoded row>), at a fraction of the gathers' cost (M lookups per query
            # and row).
            out = np.empty((n, rows), dtype=np.float32)
            step = max(256, _SCORE_BYTES // (4 * self.input.dim))  # decoded rows per block
            for start in range(0, rows, step):
                recon = self._reconstructed(codes[start: start + step])
                part = np.matmul(prepared["queries"], recon.T, out=out[:, start: start + len(recon)])
                if self.output.metric == "l2":
                    part *= -2.0
                    part += prepared["norms"][:, None]
                    part += np.einsum("rd,rd->r", recon, recon)[None, :]
                    np.maximum(part, 0.0, out=part)
            return out
        if self.lists and self.output.metric == "l2":  # per-list tables: decode instead (few queries)
            return self.score_rows(prepared, np.arange(n), self._reconstructed(codes))
        out = np.empty((n, rows), dtype=np.float32)
        block = max(256, _SCORE_BYTES // max(1, 8 * n))
        for start in range(0, rows, block):
            stop = min(rows, start + block)
            unpacked = _unpack(codes[start:stop, self.prefix:], self.bits, self.m)
            acc = out[:, start:stop]
            for i in range(self.m):
                part = np.take(tables[:, i, :], unpacked[:, i].astype(np.intp), axis=1)
                if i == 0:
                    acc[...] = part
                else:
                    acc += part
            if self.lists:
                acc += np.take(prepared["coarse"], self.list_of(codes[start:stop]), axis=1)
        return out

    def score_candidates(self, prepared: dict[str, Any], codes: Any) -> Any:
        tables = prepared["tables"]
        codes = np.asarray(codes, dtype=np.uint8)
        n, cand = codes.shape[:2]
        flat = codes.reshape(n * cand, codes.shape[2])
        if self.lists and self.output.metric == "l2":
            recon = self._reconstructed(flat).reshape(n, cand, -1)
            return ((recon - prepared["queries"][:, None, :]) ** 2).sum(-1)
        unpacked = _unpack(flat[:, self.prefix:], self.bits, self.m).reshape(n, cand, self.m)
        out = np.empty((n, cand), dtype=np.float32)
        for i in range(self.m):
            part = np.take_along_axis(tables[:, i, :], unpacked[:, :, i].astype(np.intp), axis=1)
            if i == 0:
                out[...] = part
            else:
                out += part
        if self.lists:
            out += np.take_along_axis(prepared["coarse"], self.list_of(flat).reshape(n, cand), axis=1)
        return out

    # ---- state --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        out = {"codebooks": self.codebooks_}
        if self.values["opq"]:
            out["rotation"] = self.rotation_
        if self.lists:
            out["coarse"] = self.coarse_
        return out

    def load_state(self, arrays: dict[str, Any]) -> None:
        shapes: dict[str, tuple[int, ...]] = {"codebooks": (self.m, self.k, self.width)}
        if self.values["opq"]:
            shapes["rotation"] = (self.input.dim, self.input.dim)
        if self.lists:
            shapes["coarse"] = (self.lists, self.input.dim)
        self._check_state(arrays, shapes)
        books = np.ascontiguousarray(arrays["codebooks"], dtype=np.float32)
        for i, w in enumerate(self.widths):
            if w < self.width and np.any(books[i, :, w:]):
                raise MismatchError(f"{self.spec}: fitted state 'codebooks' has non-zero padding in "
                                    f"sub-space {i} (state made for other data?)")
        self.codebooks_ = books
        self.rotation_ = np.ascontiguousarray(arrays["rotation"], dtype=np.float32) if self.values["opq"] else None
        self.coarse_ = np.ascontiguousarray(arrays["coarse"], dtype=np.float32) if self.lists else None
        self._augmented_cache = self._coarse_cache = self._coarse_sq = self._list_tables = None
        self.is_fitted = True
