"""Multi-vector indexes: exact MaxSim rescoring over stored token vectors, and first-stage choice.

An index built from single vectors that encode sets (e.g. ``muvera`` FDEs) with
``--rescore-vectors docs.mv.parquet`` keeps the original token vectors:

- ``rescore_tokens.npy``: every document's vectors, one flat ``tokens x d`` matrix (float16 or
  float32, as imported), memory-mapped at query time; only candidates' rows are read;
- ``rescore_offsets.npy``: ``rows + 1`` int64 offsets (document ``i`` owns rows
  ``offsets[i]:offsets[i+1]``);
- ``mean.usearch``: an HNSW graph (f32, cosine) over each document's *mean* vector, built
  automatically: a second first stage for token models trained for mean pooling, where it finds
  more of the true MaxSim top-k than the FDE (see BENCHMARKS.md). It costs ``d`` floats per
  document, small next to the token vectors themselves.

Queries are sets of vectors. ``first_stage`` picks where the candidates come from: ``fde`` (the
main graph over the encodings), ``mean`` (the mean-vector graph), or ``both`` (the union); the
candidates are then reranked by exact MaxSim against the stored token vectors.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import MismatchError, UsageError
from vecx.indexes.graph import new_graph, open_graph, save_graph, search_graph
from vecx.kernels import top_k

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

FIRST_STAGES = ("fde", "mean", "both")
TOKENS_FILE = "rescore_tokens.npy"
OFFSETS_FILE = "rescore_offsets.npy"
MEAN_GRAPH = "mean.usearch"


def write_rescore(src: Any, version: str, rows: int, options: Any, first_key: int = 0) -> dict[str, Any]:
    """Stream a multi-vector table into the flat token matrix, offsets and the mean-vector graph
    (keyed from ``first_key``: the index's row number of the first row)."""
    import json

    # The source's count, or for sets a stage changed (crisp) the count that stage recorded.
    tokens = (src.meta["vector"].get("tokens") if src.meta.get("stages")
              else (src.meta.get("source") or {}).get("tokens"))
    if tokens is None:  # not recorded: count in one pass
        tokens = sum(len(b.vectors.values) for b in src.batches())
    from vecx.formats.npyfile import NpyWriter

    dtype = np.float16 if src.space.dtype == "float16" else np.float32
    store = NpyWriter(os.path.join(version, TOKENS_FILE), dtype, (int(tokens), src.dim))
    offsets = np.empty(rows + 1, dtype=np.int64)
    offsets[0] = 0
    mean_graph = new_graph(src.dim, "cos", "f32", options)
    threads = 1 if options.deterministic else 0
    filled, position = 0, 0
    for batch in src.batches():
        sets = batch.vectors
        if batch.offset + len(batch) > rows:
            raise MismatchError(f"{src.path}: has more rows than the codes ({rows})")
        n_tok = len(sets.values)
        if position + n_tok > tokens:
            raise MismatchError(f"{src.path}: holds more token vectors than its metadata says")
        store.write(sets.values)
        offsets[batch.offset + 1: batch.offset + len(batch) + 1] = position + sets.offsets[1:]
        position += n_tok
        keys = np.arange(first_key + batch.offset, first_key + batch.offset + len(batch), dtype=np.uint64)
        mean_graph.add(keys, np.ascontiguousarray(sets.mean(), dtype=np.float32), threads=threads)
        filled += len(batch)
    if store.close() != tokens:
        raise MismatchError(f"{src.path}: holds fewer token vectors than its metadata says ({tokens})")
    if filled != rows:
        raise MismatchError(f"{src.path}: has {filled} rows, the codes {rows}")
    np.save(os.path.join(version, OFFSETS_FILE), offsets)
    save_graph(mean_graph, version, src.path, MEAN_GRAPH)
    with open(os.path.join(version, "rescore.json"), "w", encoding="utf-8") as handle:
        json.dump(src.meta, handle, sort_keys=True)
    return {"file": TOKENS_FILE, "offsets": OFFSETS_FILE, "multi": True, "tokens": int(tokens),
            "dtype": src.space.dtype, "dim": src.dim, "metric": "maxsim", "mean_graph": MEAN_GRAPH,
            "spec": src.meta.get("spec"), "fingerprint": src.meta.get("fingerprint")}


class MultiRescore:
    """The stored token vectors of an index (memory-mapped) and its mean-vector graph."""

    def __init__(self, version: Any, info: dict[str, Any], expansion_search: int, segment: Any) -> None:
        from vecx.errors import DataError

        rows = segment.rows
        from vecx.indexes.segments import random_access

        self.tokens = random_access(np.load(version.file(segment.name(info["file"])), mmap_mode="r"))
        self.offsets = np.load(version.file(segment.name(info["offsets"])))
        self.dim = int(info["dim"])
        # The manifest counts the tokens of every segment; the caller checks the sum.
        if self.tokens.ndim != 2 or self.tokens.shape[1] != self.dim or self.offsets.shape != (rows + 1,) \
                or (rows and (self.offsets[0] != 0 or self.offsets[-1] != len(self.tokens)
                              or (np.diff(self.offsets) < 0).any())):
            raise DataError(f"{version.path}: the stored token vectors do not match the manifest (damaged)",
                            hint="rebuild the index")
        self.mean_graph = None
        if info.get("mean_graph"):
            self.mean_graph = open_graph(version.file(segment.name(info["mean_graph"])), version.path, rows, self.dim,
                                         "f32")
            self.mean_graph.expansion_search = expansion_search

    def scores(self, q: Any, keys: Any) -> Any:
        """Exact MaxSim of each query set against its candidate rows (-inf where key < 0)."""
        from vecx.indexes import maxsim

        return maxsim.candidate_scores(q, self.tokens, self.offsets, keys)

    def mean_candidates(self, q: Any, count: int, expansion: int | None) -> tuple[Any, Any]:
        """Rows nearest to each query's mean vector in the mean graph (-1 where fewer), and their distances."""
        if self.mean_graph is None:
            raise UsageError("this index has no mean-vector graph; rebuild it with a multi-vector "
                             "--rescore-vectors table")
        means = np.ascontiguousarray(q.mean(), dtype=np.float32)
        return search_graph(self.mean_graph, means, count, expansion, len(self.mean_graph))

    def sets_of(self, rows: Any) -> Any:
        """The stored token sets of some rows (float32)."""
        from vecx.formats.multi import MultiVectors

        rows = np.asarray(rows, dtype=np.int64)
        counts = self.offsets[rows + 1] - self.offsets[rows]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        index = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - self.offsets[rows], counts)
        return MultiVectors(np.asarray(self.tokens[index], dtype=np.float32), offsets)

    def all_rows(self) -> Any:
        """The document sets of every row, in blocks (for exact ground truth)."""
        from vecx.formats.multi import MultiVectors

        rows = len(self.offsets) - 1
        step = 4096
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            lo, hi = self.offsets[start], self.offsets[stop]
            yield start, MultiVectors(np.asarray(self.tokens[lo:hi]), self.offsets[start: stop + 1] - lo)


class StackedMulti:
    """The token vectors and mean graphs of several segments, addressed by global rows."""

    def __init__(self, parts: list[MultiRescore], segments: list[Any]) -> None:
        self.parts, self.segments = parts, segments
        self.starts = np.asarray([s.start for s in segments], dtype=np.int64)

    def _local(self, keys: Any, s: int) -> Any:
        """``keys`` as rows of segment ``s`` (-1 for rows of other segments)."""
        seg = self.segments[s]
        return np.where((keys >= seg.start) & (keys < seg.stop), keys - seg.start, -1)

    def scores(self, q: Any, keys: Any) -> Any:
        """Exact MaxSim of each query set against its candidate rows (-inf where key < 0)."""
        out = np.full(keys.shape, -np.inf, dtype=np.float32)
        for s, part in enumerate(self.parts):
            local = self._local(keys, s)
            if (local >= 0).any():
                out = np.where(local >= 0, part.scores(q, local), out)
        return out

    def mean_candidates(self, q: Any, count: int, expansion: int | None) -> tuple[Any, Any]:
        """Every segment's mean-graph candidates (keyed by global rows), merged by distance."""
        found = [part.mean_candidates(q, min(count, seg.rows), expansion)
                 for part, seg in zip(self.parts, self.segments, strict=True)]
        return top_k(np.concatenate([k for k, _ in found], axis=1), np.concatenate([d for _, d in found], axis=1),
                     count, lower_is_better=True)

    def sets_of(self, rows: Any) -> Any:
        """The stored token sets of some global rows (float32), in the order asked."""
        from vecx.formats.multi import MultiVectors

        rows = np.asarray(rows, dtype=np.int64)
        where = np.searchsorted(self.starts, rows, side="right") - 1
        sets = [self.parts[s].sets_of(rows[i: i + 1] - self.starts[s]) for i, s in enumerate(where.tolist())]
        counts = np.asarray([len(one.values) for one in sets], dtype=np.int64)
        values = np.concatenate([one.values for one in sets]) if sets else np.zeros((0, self.parts[0].dim), np.float32)
        return MultiVectors(values, np.concatenate([[0], np.cumsum(counts)]))

    def all_rows(self) -> Any:
        """The document sets of every row, in blocks of global rows (for exact ground truth)."""
        for part, seg in zip(self.parts, self.segments, strict=True):
            for start, sets in part.all_rows():
                yield seg.start + start, sets


def stacked_multi(parts: list[MultiRescore], segments: list[Any]) -> Any:
    """One segment's token vectors as they are, several as a :class:`StackedMulti`."""
    return parts[0] if len(parts) == 1 else StackedMulti(parts, segments)


def union(first: Any, second: Any) -> Any:
    """Per query, the rows of ``first`` then those of ``second`` not already in it (-1 padded)."""
    both = np.concatenate([first, second], axis=1)
    out = np.full(both.shape, -1, dtype=np.int64)
    for i, row in enumerate(both):
        valid = row[row >= 0]
        _, first_seen = np.unique(valid, return_index=True)
        keep = valid[np.sort(first_seen)]
        out[i, : len(keep)] = keep
    return out


def search_first_stage(searcher: Any, q: Any, codes: Any, rescore_q: Any, k: int, oversample: Any,
                       expansion: int | None, allowed: Any) -> tuple[Any, Any]:
    """Search with candidates from the mean-vector graph (``mean``) or the union with the FDE graph
    (``both``), reranked by exact MaxSim; ``k x oversample`` candidates from each graph."""
    rescorer = searcher.multi_rescore
    k = min(k, searcher.rows)
    factor = searcher.factors(oversample)[0]
    count = min(searcher.rows, k * factor)
    keys, _ = rescorer.mean_candidates(q, count, expansion)
    if searcher.first_stage == "both":
        fde_keys, _ = searcher._graph_search(codes, count, expansion)
        keys = union(fde_keys, keys)
    if allowed is not None:
        keys = np.where((keys >= 0) & allowed[np.maximum(keys, 0)], keys, -1)
    if rescore_q is None:  # no rescoring asked: keep the first stage's order
        order = np.where(keys >= 0, np.arange(keys.shape[1])[None, :], keys.shape[1]).astype(np.float32)
        rows, _ = top_k(keys, order, k, lower_is_better=True)
        return rows, np.zeros(rows.shape, dtype=np.float32)
    return top_k(keys, rescorer.scores(rescore_q, keys), k, lower_is_better=False)


def check_first_stage(name: str | None, searcher: Any) -> str:
    """Validate a ``--first-stage`` choice against an index."""
    name = name or "fde"
    if name not in FIRST_STAGES:
        raise UsageError(f"--first-stage must be one of {', '.join(FIRST_STAGES)}, not {name!r}")
    if name != "fde" and getattr(searcher, "multi_rescore", None) is None:
        raise UsageError(f"--first-stage {name} needs an index built with --rescore-vectors on a multi-vector table")
    return name
