"""Rows that rescore candidates: float vectors compared exactly, or codes scored by their codec.

An index may keep several such sets, one per rescoring stage (``vecx index --rescore-vectors A
--rescore-vectors B``): each stage ranks the candidates the one before kept and keeps fewer,
so that a cheap stage held in memory (4-bit codes) narrows the candidates before an exact one
(float vectors, read from disk only for the few that are left).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.adc import in_parallel
from vecx.chain import Chain
from vecx.errors import DataError, UsageError
from vecx.indexes.segments import random_access, stacked
from vecx.kernels import cast

if TYPE_CHECKING:  # the real module for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

#: Oversampling factors as searches take them: one (the first stage's), one per stage, or the index's.
Factors = int | tuple[int, ...] | None
#: Rescoring stages before the last an index may keep (``refine1`` ... in the manifest's ``refine`` list).
MAX_REFINE = 3
#: Candidates (x k) the first rescoring stage ranks when there is one stage.
DEFAULT_OVERSAMPLE = 4
#: The default factors with several stages: a wide first stage, as an in-memory codes stage is
#: cheap, and few candidates left for each later one (the last reads float rows, maybe from disk).
MULTI_STAGE_FIRST, MULTI_STAGE_LATER = 10, 2


def default_factors(stages: int) -> tuple[int, ...]:
    """The default oversampling factors of an index with ``stages`` rescoring stages."""
    if stages <= 1:
        return (DEFAULT_OVERSAMPLE,)
    return (MULTI_STAGE_FIRST,) + (MULTI_STAGE_LATER,) * (stages - 1)


def refine_name(number: int) -> str:
    """The file stem of the ``number``-th (from 1) rescoring stage before the last."""
    return f"refine{number}"


class RescoreRows:
    """One rescoring stage: the stored rows (memory-mapped, keyed by the index's global rows), the
    chain that made them, and the metric they are compared in."""

    def __init__(self, stored: Any, chain: Chain, metric: str, encoded: bool, where: str) -> None:
        self.stored, self.chain, self.metric, self.encoded = stored, chain, metric, encoded
        last = chain.stages[-1] if chain.stages else None
        if encoded and not (last and (last.scores_codes or last.can_decode)):
            raise DataError(f"{where}: the rescoring codes' chain can neither score nor decode them (damaged)",
                            hint="rebuild the index")

    @classmethod
    def open(cls, version: Any, info: dict[str, Any], segments: list[Any], chain: Chain, where: str) -> RescoreRows:
        """The stage a manifest section describes, one memory-mapped file per segment."""
        parts = []
        for seg in segments:
            part = random_access(np.load(version.file(seg.name(info["file"])), mmap_mode="r"))
            if part.shape != (seg.rows, info["dim"]):
                raise DataError(f"{where}: {seg.name(info['file'])} holds {part.shape} values, the manifest "
                                f"says {seg.rows} x {info['dim']} (damaged)", hint="rebuild the index")
            parts.append(part)
        return cls(stacked(parts), chain, info["metric"], bool(info.get("encoded")), where)

    @property
    def lower_is_better(self) -> bool:
        """Whether lower scores rank first (L2 distances), not similarities."""
        return self.metric == "l2"

    @property
    def bytes_per_row(self) -> int:
        """Bytes one row takes (what keeping the stage in memory costs per vector)."""
        return int(self.stored.shape[1]) * int(np.dtype(self.stored.dtype).itemsize)

    def queries(self, raw: Any) -> Any:
        """What :meth:`scores` takes for raw (input-space) queries: the raw queries for codes (their
        codec encodes them), the queries encoded like the float rows otherwise."""
        if self.encoded:
            return np.asarray(raw, dtype=np.float32)
        return self.chain.encode_query(raw)

    def rows_as_input(self, rows: Any) -> Any:
        """Stored rows standing for input-space queries (``None``: these rows do not decode back)."""
        if not self.chain.stages:
            return np.asarray(self.stored[rows], dtype=np.float32)
        if not self.chain.decodes_to_input:
            return None
        return np.asarray(self.chain.decode(np.asarray(self.stored[rows])), dtype=np.float32)

    def _decoded_width(self) -> int:
        """Coordinates of a row once decoded (what scoring it may build per candidate)."""
        return int(self.stored.shape[1]) if not self.encoded else self.chain.decoded_space.dim

    def scores(self, q: Any, keys: Any) -> Any:
        """Scores of candidates (queries x candidates row numbers, -1 for none) against the stored
        rows (only those rows are read): exact for float vectors, the codec's for codes. Missing
        candidates score worst.

        Queries go in chunks so the gathered candidate vectors stay around 64 MiB.
        """
        chunk = max(1, (64 << 20) // max(1, keys.shape[1] * self._decoded_width() * 4))
        if len(keys) > chunk:
            return np.concatenate([self.scores(q[i: i + chunk], keys[i: i + chunk])
                                   for i in range(0, len(keys), chunk)])
        stored = self.stored
        valid = keys >= 0
        if isinstance(stored, np.ndarray):  # one segment: its rows are gathered where they lie
            source, position = stored, np.where(valid, keys, 0)
        else:  # a stacked view over segments: each distinct row read once, then gathered from the copy
            flat = np.unique(keys[valid])
            source = np.asarray(stored[flat])
            position = np.searchsorted(flat, np.where(valid, keys, flat[0] if len(flat) else 0))
        worst = np.inf if self.lower_is_better else -np.inf
        if self.encoded:
            chain = self.chain
            stage = chain.stages[-1]
            if stage.scores_codes:  # the codec's estimate, each query against its own candidates' codes
                return np.where(valid, self._codec_scores(stage, q, source, position), worst)
            # Decodable codes: the candidates decoded once each, then scored exactly like float vectors.
            rows = np.unique(position[valid])
            if not len(rows):
                return np.full(keys.shape, worst, dtype=np.float32)
            source = np.asarray(chain.decode(np.asarray(source[rows])), dtype=np.float32)
            position, q = np.searchsorted(rows, np.where(valid, position, rows[0])), chain.query_to_decoded(q)
        return np.where(valid, exact_scores(q, source, position, self.metric), worst)

    def _codec_scores(self, stage: Any, q: Any, source: Any, position: Any) -> Any:
        """The codec's estimates of each query against its own candidates' codes."""
        prepared = stage.prepare_queries(np.asarray(self.chain.encode_query(q), dtype=np.float32))
        gathered = np.asarray(source)[position]  # queries x candidates x bytes
        scores = np.empty(position.shape, dtype=np.float32)
        # A few queries at a time (about 1 MiB of their candidates decoded), on all cores.
        per_block = max(1, (1 << 20) // max(1, position.shape[1] * self._decoded_width() * 4))

        def block(lo: int) -> None:
            part = {name: value[lo: lo + per_block] for name, value in prepared.items()}
            scores[lo: lo + per_block] = stage.score_candidates(part, gathered[lo: lo + per_block])

        in_parallel(block, list(range(0, len(position), per_block)), one_blas=True)
        return scores


def exact_scores(q: Any, source: Any, position: Any, metric: str) -> Any:
    """Exact scores of each query against the rows ``source[position[i]]`` (queries x candidates)."""
    q = np.asarray(q, dtype=np.float32)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-30)
    scores = np.empty(position.shape, dtype=np.float32)
    # A few queries' candidate vectors at a time (about 1 MiB: they stay in the core's cache
    # from the gather to the products), the blocks shared by the cores: numpy's gathers and
    # products release the GIL.
    per_block = max(1, (1 << 20) // max(1, position.shape[1] * source.shape[1] * 4))

    def block(lo: int) -> None:
        hi = lo + per_block
        rows = position[lo:hi]
        # np.take and BLAS products per query: faster than fancy indexing and einsum on these
        # small shapes.
        cand = cast(np.take(source, rows.ravel(), axis=0).reshape(*rows.shape, -1), np.float32)
        if metric == "l2":
            cand -= q[lo:hi, None, :]
            scores[lo:hi] = _squared_norms(cand)
            return
        scores[lo:hi] = np.matmul(cand, q[lo:hi, :, None])[..., 0]
        if metric == "cosine":
            scores[lo:hi] /= np.maximum(np.sqrt(_squared_norms(cand)), 1e-30)

    in_parallel(block, list(range(0, len(position), per_block)), one_blas=True)
    return scores


def _squared_norms(rows: Any) -> Any:
    """``|v|^2`` of each vector of a queries x candidates x d block, as a batch of one-row products."""
    return np.matmul(rows[..., None, :], rows[..., :, None])[..., 0, 0]


def stage_factors(given: Any, defaults: tuple[int, ...]) -> tuple[int, ...]:
    """Oversampling factors, one per rescoring stage: the first stage's candidates are ``k x f[0]``,
    and stage ``i`` keeps ``k x f[i]`` of them for the next. ``given`` (an int, a sequence, or
    ``None``) overrides the first factors; the rest come from ``defaults``, never above the factor
    before them. Factors must be at least 1 and must not grow."""
    if given is None:
        given = ()
    elif isinstance(given, int):
        given = (given,)
    given = tuple(int(f) for f in given)
    if len(given) > len(defaults):
        raise UsageError(f"--oversample {','.join(map(str, given))}: the index rescores in {len(defaults)} "
                         f"stage{'s' if len(defaults) > 1 else ''}; give at most {len(defaults)} factor"
                         f"{'s' if len(defaults) > 1 else ''}")
    if any(f < 1 for f in given) or any(b > a for a, b in zip(given, given[1:], strict=False)):
        raise UsageError(f"--oversample {','.join(map(str, given))}: factors must be at least 1 and must not "
                         "grow from one stage to the next", hint="e.g. --oversample 20,4")
    out = list(given)
    for default in defaults[len(given):]:
        out.append(max(1, min(default, out[-1])) if out else max(1, default))
    return tuple(out)


class StagedQueries:
    """Queries for an index with several rescoring stages: the last stage's queries (``final``), the
    raw queries the earlier stages encode (``raw``, ``None``: they are skipped), and how many
    candidates (``k x keep[i]``) each earlier stage keeps."""

    def __init__(self, final: Any, raw: Any, keep: tuple[int, ...] = ()) -> None:
        self.final, self.raw, self.keep = final, raw, keep

    def __getitem__(self, rows: Any) -> StagedQueries:
        return StagedQueries(np.asarray(self.final)[rows], None if self.raw is None else np.asarray(self.raw)[rows],
                             self.keep)

    def narrow(self, stages: list[RescoreRows], keys: Any, k: int, extra: int) -> Any:
        """The candidates each of ``stages`` (the first earlier stages, or all) keeps, best first:
        ``k x keep[i] + extra`` per query."""
        from vecx.kernels import top_k

        if self.raw is None:
            return keys
        for stage, factor in zip(stages, self.keep[: len(stages)], strict=True):
            wanted = k * factor + extra
            if keys.shape[1] <= wanted:
                continue
            scores = stage.scores(stage.queries(self.raw), keys)
            keys, _ = top_k(keys, scores, wanted, lower_is_better=stage.lower_is_better)
        return keys
