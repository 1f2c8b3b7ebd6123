"""CRISP multi-vector pruning (Veneroso et al. 2025): each row's set of vectors -> its k-means centroids.

A document's token vectors are clustered into ``C`` centroids, and only the centroids are kept:
fewer vectors to store and to compare (MaxSim costs query tokens x document vectors), and
averaging nearby tokens smooths out the noisy ones. The output is still a set of vectors per
row, so the stage chains before ``muvera`` (encodings of fewer, cleaner vectors) and its table
serves as the token vectors of an exact MaxSim rerank. Queries are not clustered: a query keeps
every token (they are few, and each one is a term of the MaxSim sum).

Per row with ``n`` vectors: ``C = c`` (``crisp:8``), or ``ceil(ratio * n)`` (``crisp:ratio=0.25``,
at most ``c`` when both are given); a row with ``n <= C`` keeps its vectors as they are.
Clustering is k-means++ seeding then Lloyd iterations by squared L2 (on unit token vectors
that is the cosine). The seeding's random draws come from the seed and a digest of the row
itself, and rows are clustered in groups of equal padded shape, so a row's centroids do not
depend on which batch or file it arrives in. Centroids that end up with no vector are dropped
(a row of many repeated vectors may keep fewer than ``C``); kept centroids are in seeding order,
scaled to unit length unless ``normalize=false``: a mean of many vectors is shorter than they are,
and MaxSim would otherwise favour rows whose clusters happen to be tight.
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

#: Padded rows are clustered in groups of about this many float32 elements (rows x tokens x max(d, C)).
GROUP_ELEMENTS = 1 << 22
#: Rows are padded to a multiple of this many vectors (rows of one group share one padded shape).
PAD = 16
_MASK64 = (1 << 64) - 1


def _splitmix(keys: Any, step: int) -> Any:
    """Uniform numbers in [0, 1) from 64-bit keys and a step (SplitMix64 finaliser; numpy wraps uint64)."""
    with np.errstate(over="ignore"):
        z = keys + np.uint64((0x9E3779B97F4A7C15 * (step + 1)) & _MASK64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class Crisp(Codec):
    """Per-row k-means of a set of vectors: keeps ``C`` centroids per row (CRISP pruning)."""

    name = "crisp"
    summary = "set of vectors (multi-vector) -> its k-means centroids, C per row (CRISP pruning)"
    example = "crisp:4"
    help = (
        "Cluster each row's set of vectors (e.g. per-token embeddings) into C centroids with seeded "
        "k-means and keep only the centroids: storage and MaxSim cost shrink by n/C, and averaging "
        "near-duplicate tokens removes noise. C is fixed (crisp:8) or proportional to the row's length "
        "(crisp:ratio=0.25, rounded up, at most c if given too); rows with at most C vectors keep them. "
        "Queries keep all their vectors. The output is still multi-vector: chain muvera after it "
        "(crisp:16,muvera:20x5x16), or rerank with its table (--rescore-vectors docs.crisp.parquet)."
    )
    params = (
        Param("c", int, default=8, minimum=0, maximum=4096,
              help="centroids per row (with ratio: the most a row gets; 0 = no cap)"),
        Param("ratio", float, default=0.0, minimum=0.0, maximum=1.0, omit_default=True,
              help="centroids per row as a fraction of its vectors, rounded up (0: a fixed c)"),
        Param("iters", int, default=10, minimum=0, maximum=1000, help="k-means (Lloyd) iterations after seeding"),
        Param("normalize", bool, default=True,
              help="scale every centroid to unit length (false: the plain mean of its vectors)"),
        Param("seed", int, default=0, minimum=0, help="seed of the k-means++ seeding"),
    )
    primary = "c"
    takes_multi = True
    examples: ClassVar[tuple[str, ...]] = (
        "vecx crisp docs.mv.parquet -o docs.crisp.parquet --c 16",
        "vecx encode docs.mv.parquet -o docs.fde.parquet --spec crisp:16,muvera:20x5x16",
        "vecx index docs.fde.parquet -o docs.vecx --rescore-vectors docs.crisp.parquet",
    )

    @classmethod
    def resolve(cls, stage: StageSpec, where: str, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """``crisp:ratio=r`` alone means no cap (c=0); ``c`` and ``ratio`` both 0 is refused."""
        given = dict(stage.options)
        if "ratio" in given and stage.positional is None and "c" not in given:
            given["c"] = "0"
            stage = StageSpec(stage.name, None, tuple(sorted(given.items())))
        values = super().resolve(stage, where, defaults)
        if values["c"] == 0 and values["ratio"] == 0:
            raise SpecError(f"{where}: crisp needs c > 0 (centroids per row) or ratio > 0")
        return values

    @classmethod
    def token(cls, values: dict[str, Any], implied: dict[str, Any] | None = None) -> str:
        """``crisp:8:iters=10:seed=0``, or ``crisp:ratio=0.25:...`` when ratio alone sets the count."""
        text = super().token(values, implied)
        if values["c"] == 0:
            text = text.replace("crisp:0", "crisp", 1)
        return text

    def plan(self, input: VectorSpec) -> VectorSpec:
        if not input.multi:
            raise self.fail("needs multi-vector input (a set of vectors per row); import it with 'vecx import --multi'")
        if input.dtype not in ("float32", "float16"):
            raise self.fail(f"needs float vectors, got {input.dtype}")
        normalized = bool(self.values["normalize"])
        return VectorSpec(input.dim, input.dtype, input.metric, normalized, "codes", multi=True)

    # ---- encoding -------------------------------------------------------------------
    def centroids_per_row(self, counts: Any) -> Any:
        """How many centroids each row gets (before empty clusters are dropped)."""
        c, ratio = int(self.values["c"]), float(self.values["ratio"])
        wanted = np.ceil(counts * ratio).astype(np.int64) if ratio else np.full(len(counts), c, dtype=np.int64)
        if ratio and c:
            wanted = np.minimum(wanted, c)
        return np.clip(wanted, 1, counts)

    def encode(self, sets: Any) -> Any:
        """Each row's centroids, as a set of vectors of the input's dtype."""
        from vecx.formats.multi import MultiVectors, stage_input_counts

        counts = stage_input_counts(sets, self.input.dim, self.spec, "clusters")
        wanted = self.centroids_per_row(counts)
        parts: list[Any] = [None] * len(sets)
        kept = wanted == counts
        for row in np.flatnonzero(kept):  # nothing to cluster: the row's vectors as they are
            parts[row] = sets.row(int(row))
        padded = -(-counts // PAD) * PAD
        clustered = np.flatnonzero(~kept)
        # Rows of one padded shape are clustered together, in groups of bounded size.
        shapes = np.stack([padded[clustered], wanted[clustered]], axis=1) if len(clustered) else np.empty((0, 2))
        for shape in np.unique(shapes, axis=0):
            rows = clustered[(shapes == shape).all(axis=1)]
            tokens, k = int(shape[0]), int(shape[1])
            step = max(1, GROUP_ELEMENTS // (tokens * max(sets.dim, k)))
            for lo in range(0, len(rows), step):
                group = rows[lo: lo + step]
                for row, centroids in zip(group.tolist(), self._cluster(sets, group, tokens, k), strict=True):
                    parts[row] = centroids
        return MultiVectors.from_list(parts, dtype=np.dtype(self.output.dtype)) if parts else \
            MultiVectors(np.empty((0, sets.dim), dtype=self.output.dtype), [0])

    def encode_query(self, q: Any) -> Any:
        """Queries keep all their vectors, as they are: each query vector is a term of the MaxSim sum."""
        from vecx.formats.multi import MultiVectors

        if not isinstance(q, MultiVectors):
            raise MismatchError("crisp takes sets of vectors (multi-vector queries), got one vector per row")
        return q

    def _row_keys(self, sets: Any, rows: Any) -> Any:
        """A 64-bit key per row from the seed and the row's own vectors (count, first and last vector)."""
        keys = np.empty(len(rows), dtype=np.uint64)
        seed = int(self.values["seed"]).to_bytes(8, "little")
        for i, row in enumerate(rows.tolist()):
            vectors = np.ascontiguousarray(sets.row(row), dtype=np.float32)
            digest = hashlib.blake2b(seed + len(vectors).to_bytes(8, "little") + vectors[0].tobytes()
                                     + vectors[-1].tobytes(), digest_size=8).digest()
            keys[i] = int.from_bytes(digest, "little")
        return keys

    def _cluster(self, sets: Any, rows: Any, tokens: int, k: int) -> list[Any]:
        """k-means of each of ``rows`` (all with ``k`` centroids, padded to ``tokens`` vectors)."""
        counts = sets.counts[rows]
        m, d = len(rows), sets.dim
        x = np.zeros((m, tokens, d), dtype=np.float32)
        valid = np.arange(tokens)[None, :] < counts[:, None]
        x[valid] = np.asarray(sets[rows].values, dtype=np.float32)
        norms = np.einsum("mtd,mtd->mt", x, x)
        centroids = self._seed(x, norms, valid, counts, self._row_keys(sets, rows), k)
        assign = np.full((m, tokens), -1, dtype=np.int64)
        iters = int(self.values["iters"])
        for step in range(iters + 1):
            # Squared L2 to every centroid, less the vector's own norm (the same for all its centroids).
            lengths = np.einsum("mkd,mkd->mk", centroids, centroids)
            distance = lengths[:, None, :] - 2 * (x @ centroids.transpose(0, 2, 1))
            nearest = np.where(valid, distance.argmin(axis=2), -1)
            if step == iters or np.array_equal(nearest, assign):
                assign = nearest
                break
            assign = nearest
            members = (assign[:, :, None] == np.arange(k)[None, None, :]).astype(np.float32)
            sizes = members.sum(axis=1)
            sums = members.transpose(0, 2, 1) @ x
            centroids = np.where(sizes[:, :, None] > 0, sums / np.maximum(sizes, 1)[:, :, None], centroids)
        used = (assign[:, :, None] == np.arange(k)[None, None, :]).any(axis=1)
        if self.values["normalize"]:
            centroids = centroids / np.maximum(np.linalg.norm(centroids, axis=2, keepdims=True), np.float32(1e-12))
        return [centroids[i][used[i]] for i in range(m)]

    @staticmethod
    def _seed(x: Any, norms: Any, valid: Any, counts: Any, keys: Any, k: int) -> Any:
        """k-means++ seeding: each next centroid a vector drawn with probability proportional to its
        squared distance from the nearest centroid so far (the first uniformly)."""
        m, tokens, d = x.shape
        ids = np.arange(m)
        centroids = np.empty((m, k, d), dtype=np.float32)
        first = np.minimum((_splitmix(keys, 0) * counts).astype(np.int64), counts - 1)
        centroids[:, 0] = x[ids, first]

        def distance_to(picked: Any) -> Any:  # squared L2 from every vector to each row's picked vector
            between = np.einsum("mtd,md->mt", x, x[ids, picked])
            return np.where(valid, norms - 2 * between + norms[ids, picked][:, None], 0)

        gap = distance_to(first)
        for j in range(1, k):
            gap = np.maximum(gap, 0)
            cumulative = np.cumsum(gap, axis=1)
            total = cumulative[:, -1]
            target = _splitmix(keys, j) * total
            pick = np.minimum((cumulative <= target[:, None]).sum(axis=1), counts - 1)
            pick = np.where(total > 0, pick, 0)  # every vector already a centroid: a repeat, dropped later
            centroids[:, j] = x[ids, pick]
            gap = np.minimum(gap, distance_to(pick))
        return centroids
