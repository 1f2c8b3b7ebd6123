"""Indexes over codes that only their codec can score: PQ codes, RaBitQ-style binary codes.

A chain ending in such a codec (output dtype ``codes``, ``metric_on="scorer"``) has no metric a
usearch graph could compute on the codes, so the index keeps the codes themselves in
``codes.bin`` (``rows x bytes`` uint8, row-major, memory-mapped at query time) and asks the codec
to score them against each float query (PQ: asymmetric distance tables; RaBitQ: the unbiased
inner-product estimator). Two ways to find candidates:

- ``exhaustive``: every code is scored, in blocks of rows so scratch memory stays bounded; exact
  for the estimator (what faiss ``IndexPQ`` / ``IndexBinaryFlat`` do);
- ``graph``: where the codec offers a navigable part of its codes (RaBitQ: the packed sign bits),
  a usearch graph over it (Hamming) returns a pool of ``pool x`` the candidates wanted, the
  estimator ranks the pool and keeps the best. For large indexes, where scoring every code per
  query costs too much.

``vecx index --scan auto`` (the default) builds the graph only when the codec offers one and the
table holds more than :data:`AUTO_GRAPH_ROWS` rows; the manifest records the default scan, and
``vecx query --scan`` picks another for one search. Either way the float vectors, if the index
keeps them, rescore the final shortlist.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, UsageError
from vecx.kernels import top_k

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

CODES_FILE = "codes.bin"
SCANS = ("auto", "exhaustive", "graph")
#: ``auto`` navigates a graph (when the codec offers one) only above this many rows.
AUTO_GRAPH_ROWS = 200_000
#: The graph returns this many times the candidates wanted, for the estimator to rank.
DEFAULT_POOL = 4
#: Scratch budget of one exhaustive block (queries x rows scores, plus the codec's own).
_BLOCK_BYTES = 64 << 20


def check_scan(name: str | None) -> str | None:
    """Validate a ``--scan`` choice (``None``: the index's default)."""
    if name is not None and name not in SCANS:
        raise UsageError(f"--scan must be one of {', '.join(SCANS)}, not {name!r}")
    return name


def resolve_scan(name: str | None, default: str, has_graph: bool) -> str:
    """The scan a search uses: the asked one (``None``/``auto``: the index's default), if possible."""
    name = default if name in (None, "auto") else name
    if name == "graph" and not has_graph:
        raise UsageError("--scan graph: this index has no navigation graph (its codec offers none, or it was "
                         "built with --scan exhaustive or too few rows for auto)",
                         hint="rebuild it with 'vecx index --scan graph', or use --scan exhaustive")
    return name


class CodesWriter:
    """Appends code rows to ``codes.bin`` during a build."""

    def __init__(self, version: str, nbytes: int) -> None:
        self.path = os.path.join(version, CODES_FILE)
        self.nbytes = nbytes
        self.handle = open(self.path, "wb")

    def add(self, codes: Any) -> None:
        """Appends a batch of code rows (rows x bytes); rows of another width are a :class:`DataError`."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.ndim != 2 or codes.shape[1] != self.nbytes:
            raise DataError(f"codes of {codes.shape[-1]} bytes, the table says {self.nbytes}")
        self.handle.write(codes.tobytes())

    def close(self) -> dict[str, Any]:
        """Closes ``codes.bin``; returns the manifest's description of it (file, bytes per row, layout)."""
        self.handle.close()
        return {"file": CODES_FILE, "bytes": self.nbytes, "layout": "uint8, rows x bytes, row-major"}


def open_codes(path: str, nbytes: int, rows: int, where: str) -> Any:
    """A codes file (``rows x nbytes`` uint8), memory-mapped, after checking its size."""
    size = os.path.getsize(path) if os.path.exists(path) else -1
    if size != rows * nbytes:
        raise DataError(f"{where}: {os.path.basename(path)} holds {max(size, 0):,} bytes, expected {rows * nbytes:,}",
                        hint="rebuild the index")
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(rows, nbytes)) if rows else \
        np.zeros((0, nbytes), dtype=np.uint8)


class CodeScan:
    """The codes of an index (``rows x bytes``: a memory map, or a stacked view over segments) and the
    codec that scores them."""

    def __init__(self, codes: Any, scorer: Any) -> None:
        self.codes = codes
        self.scorer = scorer
        self.rows = len(codes)
        self.lower_is_better = scorer.output.metric == "l2"

    def prepare(self, q: Any) -> dict[str, Any]:
        """Per-query state for scoring (queries as the chain's ``encode_query`` returns them)."""
        return self.scorer.prepare_queries(np.asarray(q, dtype=np.float32))

    def query_of_rows(self, rows: Any) -> Any:
        """Float queries standing for stored rows (``--like``): their decoded codes, query-encoded."""
        return self.scorer.encode_query(self.scorer.decode(np.asarray(self.codes[np.asarray(rows)])))

    def exhaustive(self, q: Any, count: int, rows: Any = None) -> tuple[Any, Any]:
        """Top ``count`` rows (all rows, or only ``rows``) by the codec's scores: keys, scores."""
        prepared = self.prepare(q)
        n = len(q)
        subset = None if rows is None else np.asarray(rows, dtype=np.int64)
        total = self.rows if subset is None else len(subset)
        count = min(count, total)
        worse = np.inf if self.lower_is_better else -np.inf
        best_keys = np.full((n, 0), -1, dtype=np.int64)
        best_scores = np.full((n, 0), worse, dtype=np.float32)
        block = max(1024, _BLOCK_BYTES // max(1, 4 * n))
        for start in range(0, total, block):
            stop = min(total, start + block)
            keys = np.arange(start, stop, dtype=np.int64) if subset is None else subset[start:stop]
            codes = self.codes[start:stop] if subset is None else self.codes[keys]
            scores = np.asarray(self.scorer.score(prepared, np.asarray(codes)), dtype=np.float32)
            if scores.shape[1] > count:  # this block's best first (all its keys are valid), then merge
                part = np.argpartition(scores if self.lower_is_better else -scores, count - 1, axis=1)[:, :count]
                block_keys, scores = keys[part], np.take_along_axis(scores, part, axis=1)
            else:
                block_keys = np.broadcast_to(keys, scores.shape)
            best_keys, best_scores = _merge(best_keys, best_scores, block_keys, scores, count, self.lower_is_better)
        return best_keys, best_scores

    def rank(self, q: Any, keys: Any, count: int) -> tuple[Any, Any]:
        """Score each query's candidate rows (-1 = none) and keep its best ``count``."""
        prepared = self.prepare(q)
        valid = keys >= 0
        codes = np.asarray(self.codes[np.where(valid, keys, 0)])  # queries x candidates x bytes
        scores = np.asarray(self.scorer.score_candidates(prepared, codes), dtype=np.float32)
        scores = np.where(valid, scores, np.inf if self.lower_is_better else -np.inf)
        return _select(keys, scores, count, self.lower_is_better)


def _select(keys: Any, scores: Any, count: int, lower_is_better: bool) -> tuple[Any, Any]:
    """Each row's best ``count`` (keys, scores), best first; ties go to the lower key; -1 keys last."""
    order_key = np.where(keys >= 0, scores if lower_is_better else -scores, np.inf)
    if keys.shape[1] > count:  # partition first: a full sort of every row's candidates is not needed
        part = np.argpartition(order_key, count - 1, axis=1)[:, :count]
        keys, scores = (np.take_along_axis(a, part, axis=1) for a in (keys, scores))
    return top_k(keys, scores, count, lower_is_better)


def _merge(keys: Any, scores: Any, new_keys: Any, new_scores: Any, count: int,
           lower_is_better: bool) -> tuple[Any, Any]:
    """The best ``count`` of a running top list and a new block of rows."""
    both_keys = np.concatenate([keys, new_keys], axis=1)
    both_scores = np.concatenate([scores, new_scores], axis=1)
    return _select(both_keys, both_scores, count, lower_is_better)
