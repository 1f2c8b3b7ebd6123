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
- ``ivf``: codes in coarse lists (``pq:...:ivf=N``: each row's list number heads its code) are
  scored only in the ``nprobe`` lists first in the codec's probe order (``probe_order``: the
  centroids nearest the query; faiss ``IndexIVFPQ``); the lists (row numbers grouped by list) are
  gathered from the codes when the index is opened. The default for such codes; ``nprobe`` is
  stored with the index.

PQ and RaBitQ codes are scored by the compiled table scan (:mod:`vecx.adc`) when a search's work
repays loading it, else by the numpy paths here (the same results, to float rounding).

RaBitQ queries may be rounded to a few bits per coordinate (``--query-bits B``, faiss's ``qb``):
every score of the search is then of the rounded query, and the compiled scan counts bits instead of
summing tables (:meth:`vecx.codecs.base.ScoresCodes.quantize_queries`). ``vecx index --query-bits``
stores it as the index's default.

``vecx index --scan auto`` (the default) builds the graph only when the codec offers one and the
table holds more than :data:`AUTO_GRAPH_ROWS` rows; the manifest records the default scan, and
``vecx query --scan`` picks another for one search. Either way the float vectors, if the index
keeps them, rescore the final shortlist.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, UsageError
from vecx.kernels import cores, one_blas_thread, top_k

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

CODES_FILE = "codes.bin"
SCANS = ("auto", "exhaustive", "graph", "ivf")
#: Lists an ``ivf`` scan probes by default (``vecx index --nprobe``; ``vecx query --nprobe`` for one search).
DEFAULT_NPROBE = 16
#: From this many queries on, a probe scores list by list (decoded rows times the queries, BLAS).
_BY_LIST_QUERIES = 32
#: ``auto`` navigates a graph (when the codec offers one) only above this many rows.
AUTO_GRAPH_ROWS = 200_000
#: The graph returns this many times the candidates wanted, for the estimator to rank.
DEFAULT_POOL = 4
#: Table look-ups (queries x codes scanned x code bytes) from which a search loads the compiled scan
#: (numba's import and the cached kernel take ~0.3 s, the numpy scan's time for about this many).
_KERNEL_WORK = 60_000_000
#: Queries whose distance tables are built at a time for the compiled table scan (queries x M x K floats).
_TABLE_QUERIES = 256
#: Scratch budget of one exhaustive block (queries x rows scores, plus the codec's own).
_BLOCK_BYTES = 64 << 20


#: The most bits a query can be rounded to per coordinate (``--query-bits``; 0: not rounded).
MAX_QUERY_BITS = 8


def check_query_bits(bits: int, scorer: Any) -> None:
    """Validate a ``--query-bits`` choice for codes of ``scorer`` (``None``: no scored codes)."""
    if not 0 <= bits <= MAX_QUERY_BITS:
        raise UsageError(f"--query-bits must be 0 (queries not rounded) to {MAX_QUERY_BITS}, not {bits}")
    if bits and (scorer is None or not scorer.takes_query_bits):
        raise UsageError("--query-bits: queries are rounded to bits for RaBitQ codes (binarize:mode=rabitq) only, "
                         "and these are " + ("not codes a codec scores" if scorer is None else f"{scorer.name} codes"),
                         hint="leave out --query-bits")


def check_scan(name: str | None) -> str | None:
    """Validate a ``--scan`` choice (``None``: the index's default)."""
    if name is not None and name not in SCANS:
        raise UsageError(f"--scan must be one of {', '.join(SCANS)}, not {name!r}")
    return name


def resolve_scan(name: str | None, default: str, has_graph: bool, has_lists: bool = False) -> str:
    """The scan a search uses: the asked one (``None``/``auto``: the index's default), if possible."""
    name = default if name in (None, "auto") else name
    if name == "ivf" and not has_lists:
        raise UsageError("--scan ivf: this index's codes are not in coarse lists",
                         hint="encode with a list count, e.g. pq:24x8:ivf=512, or use --scan exhaustive")
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
        #: The score of no result (ranked after every real one).
        self.worse = np.inf if self.lower_is_better else -np.inf
        #: Coarse lists: how many, and (once gathered) row numbers grouped by list with list offsets.
        self.list_count = int(getattr(scorer, "lists", 0) or 0)
        self._lists: tuple[Any, Any] | None = None
        #: Row numbers the scans keep (grouped by list): int32 while they fit, 4 bytes per row, not 8.
        self._row_type = np.int32 if self.rows < 2**31 else np.int64
        #: The compiled table scan's view of the codes (see :meth:`_table_codes`), once built.
        self._table: tuple[Any, Any, Any] | None = None
        #: Whether the codec scores its codes by summed table entries (PQ, RaBitQ): the compiled scan serves.
        self.has_tables = hasattr(scorer, "table_queries")
        #: Whether searches use the compiled table scan: ``None`` decides per search (when the kernel is
        #: loaded already, or the search's work repays loading it), ``True`` always (eval and bench
        #: measure the steady state), ``False`` never (numpy only).
        self.compiled: bool | None = None
        #: Bits each query is rounded to per coordinate (0: not rounded; see :func:`check_query_bits`).
        self.query_bits = 0

    def _best_by_list(self, prepared: dict[str, Any], order: Any, starts: Any, picked: Any,
                      count: int) -> tuple[Any, Any]:
        """Each query's best ``count`` rows (keys, scores) among its picked lists, list by list: each
        probed list's rows decoded once and scored against every query that probes it in one matrix
        product (BLAS), where gathering table entries per query and row would cost M lookups per
        pair; only each list's best ``count`` per query are kept for the final selection."""
        n, nprobe = picked.shape
        keys = np.full((n, nprobe * count), -1, dtype=np.int64)
        scores = np.full((n, nprobe * count), self.worse, dtype=np.float32)
        flat = picked.ravel()
        by_list = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[by_list], np.arange(self.list_count + 1))
        for lst in np.unique(flat).tolist():
            rows = order[starts[lst]: starts[lst + 1]]
            if not len(rows):
                continue
            pairs = by_list[bounds[lst]: bounds[lst + 1]]
            queries, slots = pairs // nprobe, pairs % nprobe
            part = np.asarray(self.scorer.score_rows(prepared, queries, self.scorer.scoring_rows(
                np.asarray(self.codes[rows]))), dtype=np.float32)
            kept = min(count, len(rows))
            if len(rows) > kept:
                best = np.argpartition(part if self.lower_is_better else -part, kept - 1, axis=1)[:, :kept]
                part = np.take_along_axis(part, best, axis=1)
                found = rows[best]
            else:
                found = np.broadcast_to(rows, part.shape)
            cols = (slots * count)[:, None] + np.arange(kept)[None, :]
            keys[queries[:, None], cols] = found
            scores[queries[:, None], cols] = part
        return keys, scores

    def _scores_per_query(self, block: Any, keys: Any) -> Any:
        """Scores of a few queries' candidates (-1: none), one query at a time: its candidates' codes
        are gathered and scored by the codec's own path for single queries (PQ tables, RaBitQ's
        per-byte tables), faster than unpacking every candidate for every query."""
        scores = np.full(keys.shape, self.worse, dtype=np.float32)
        for i in range(len(block)):
            valid = keys[i] >= 0
            rows = keys[i][valid]
            if len(rows):
                prepared = self.prepare(block[i: i + 1])
                scores[i, valid] = np.asarray(self.scorer.score(prepared, np.asarray(self.codes[rows])))[0]
        return scores

    def _grouped_codes(self, rows: Any) -> tuple[Any, ...]:
        """The codes of ``rows`` (in that order) as the table scan reads them: the codec's arrays."""
        step = 1 << 20  # rows read at a time (a memory map, or a stacked view over segments)
        parts = [self.scorer.table_codes(np.asarray(self.codes[rows[lo: lo + step]]))
                 for lo in range(0, len(rows), step)] or \
            [self.scorer.table_codes(np.zeros((0, self.codes.shape[1]), dtype=np.uint8))]
        return tuple(np.concatenate(arrays) if len(parts) > 1 else arrays[0] for arrays in zip(*parts, strict=True))

    def _table_codes(self, rows: Any = None) -> tuple[Any, Any, Any]:
        """The codes of every row (or of ``rows``, a filter's subset) grouped by coarse list (stable),
        as the table scan reads them: (:class:`vecx.adc.Codes`, their row numbers, list offsets). Every
        row's are read once and kept (the codes' bytes padded to whole 8-byte words, and per-row
        factors)."""
        if rows is None and self._table is not None:
            return self._table
        if self.list_count:
            if rows is None:
                order, starts = self.lists()
            else:
                by_list, starts = self._grouped(self.scorer.list_of(np.asarray(self.codes[rows])))
                order = rows[by_list]
        else:
            order = np.arange(self.rows, dtype=np.int64) if rows is None else rows
            starts = np.array([0, len(order)], dtype=np.int64)
        from vecx import adc

        order = order.astype(self._row_type, copy=False)  # one row type: one compiled kernel per codec
        found = (adc.Codes.arrange(self._grouped_codes(order)), order, starts)
        if rows is None:
            self._table = found
        return found

    def _wants_kernel(self, q: Any, nprobe: int, subset: Any) -> bool:
        """Whether this search uses the compiled table scan (see :attr:`compiled`)."""
        if not self.has_tables or self.compiled is False:
            return False
        from vecx import adc

        if self.compiled or adc.loaded():
            return True
        return len(q) * self._scanned(nprobe, subset) * self.codes.shape[1] >= _KERNEL_WORK  # else numpy answers

    def _scanned(self, nprobe: int, subset: Any) -> float:
        """About how many rows a query's scan of ``nprobe`` lists (of ``subset``, if given) reads."""
        return (self.rows if subset is None else len(subset)) * min(1.0, nprobe / max(1, self.list_count))

    def _table_scan(self, q: Any, count: int, nprobe: int, rows: Any = None) -> tuple[Any, Any] | None:
        """Top ``count`` rows of the ``nprobe`` best lists (all lists: an exhaustive scan; only ``rows``,
        if given) by the compiled table scan, best first; ``None`` where it does not serve (the codec
        has no tables, or the search is too small to repay loading the kernel: numpy answers)."""
        subset = None if rows is None else np.asarray(rows, dtype=np.int64)
        if not self._wants_kernel(q, nprobe, subset):
            return None
        from vecx import adc

        arranged, row_numbers, starts = self._table_codes(subset)
        lists = max(1, self.list_count)
        # A search of fewer queries than cores splits each query's rows between the cores when they are
        # many (adc.scan): BLAS threads that the query's own products (its rotation) wake would then spin
        # on the cores the parts need. Those products run on one BLAS thread then (wide codes: one
        # 1536-d query's scan 2.4 -> 1.5 ms). The tables' positions are the codes' padded ones here.
        split = adc.split_parts(len(q), self._scanned(nprobe, subset), arranged.positions) > 1

        def block(lo: int) -> tuple[Any, Any] | None:
            with one_blas_thread() if split else contextlib.nullcontext():
                prepared = self.prepare(q[lo: lo + per_task])
                found = self.scorer.table_queries(prepared, counted=arranged.countable)
            if found is None:
                return None
            base = found["base"]
            picked = self._picked(prepared, len(base), nprobe, lists)
            if self._by_products(found, arranged, len(base)):
                keys, scores = adc.scan_products(arranged, row_numbers, found, count, self.lower_is_better)
            else:
                keys, scores = adc.scan_codes(arranged, row_numbers, starts, found, picked, count,
                                              self.lower_is_better)
            if self.lower_is_better:  # squared distances summed from tables can round below zero
                np.maximum(scores, 0.0, out=scores)
            return keys, scores

        # Blocks of queries (each builds its own tables) shared by the cores, at most _TABLE_QUERIES each.
        per_task = max(1, min(_TABLE_QUERIES, -(-len(q) // cores())))
        blocks = list(range(0, len(q), per_task))
        found = adc.in_parallel(block, blocks, one_blas=True)
        parts = [part for part in found if part is not None]
        if len(parts) < len(found):
            self.has_tables, self._table = False, None  # this codec's tables would be too large: numpy scans
            return None
        if not parts:
            return np.zeros((0, count), np.int64), np.zeros((0, count), np.float32)
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts])

    def _picked(self, prepared: dict[str, Any], queries: int, nprobe: int, lists: int) -> Any:
        """Each query's lists to scan (queries x nprobe list numbers): the ``nprobe`` best, or all."""
        if lists == 1:
            return np.zeros((queries, 1), dtype=np.int64)
        if nprobe >= lists:
            return np.broadcast_to(np.arange(lists, dtype=np.int64), (queries, lists))
        return np.argpartition(self.scorer.probe_order(prepared), nprobe - 1, axis=1)[:, :nprobe]

    def _by_products(self, found: dict[str, Any], arranged: Any, queries: int) -> bool:
        """Whether a block of queries scans every row by matrix products (:func:`vecx.adc.scan_products`):
        bit codes without lists, and enough queries to fill a product; not queries rounded to bits that
        the kernel counts (:meth:`vecx.adc.Codes.counts`), faster than BLAS multiplies."""
        from vecx import adc

        return ("vectors" in found and not self.list_count and arranged.factors is not None
                and queries >= adc.PRODUCT_QUERIES and not arranged.counts(found.get("planes")))

    def _grouped(self, labels: Any) -> tuple[Any, Any]:
        """Positions of ``labels`` grouped by list (stable: in order within a list) and each list's start."""
        order = np.argsort(labels, kind="stable")
        return order, np.searchsorted(labels[order], np.arange(self.list_count + 1)).astype(np.int64)

    def lists(self) -> tuple[Any, Any]:
        """Row numbers grouped by coarse list (stable: row order within a list) and each list's start."""
        if self._lists is None:
            step = 1 << 20  # rows read at a time (a memory map, or a stacked view over segments)
            labels = np.concatenate([self.scorer.list_of(self.codes[start: start + step])
                                     for start in range(0, self.rows, step)]) if self.rows else \
                np.zeros(0, dtype=np.intp)
            order, starts = self._grouped(labels)
            self._lists = (order.astype(self._row_type), starts)
        return self._lists

    def probe(self, q: Any, count: int, nprobe: int) -> tuple[Any, Any]:
        """Top ``count`` rows by the codec's scores among the rows of each query's ``nprobe`` best lists."""
        nprobe = max(1, min(nprobe, self.list_count))
        found = self._table_scan(q, count, nprobe)
        if found is not None:
            return found
        order, starts = self.lists()
        keys_out, scores_out = [], []
        # Queries per block: as many as keep the block's candidates within the scratch budget (a list
        # scored by BLAS is decoded once per block, so the more queries share it the better).
        sizes = np.diff(starts)
        widest = min(int(np.sort(sizes)[-nprobe:].sum()) if len(sizes) else 1, nprobe * count)
        per_block = max(_BY_LIST_QUERIES, min(len(q), _BLOCK_BYTES // max(1, 12 * widest)))
        for lo in range(0, len(q), per_block):
            block = np.asarray(q[lo: lo + per_block], dtype=np.float32)
            by_list = len(block) >= _BY_LIST_QUERIES and hasattr(self.scorer, "scoring_rows")
            # The probe order (and a list-by-list scan) need the queries, not PQ's distance tables.
            prepared = self._rounded(self.scorer.prepare_queries(block, tables=False))
            rank = np.asarray(self.scorer.probe_order(prepared))
            picked = np.argpartition(rank, nprobe - 1, axis=1)[:, :nprobe] if nprobe < self.list_count else \
                np.broadcast_to(np.arange(self.list_count), rank.shape)
            if by_list:
                keys, scores = self._best_by_list(prepared, order, starts, picked, count)
            else:
                keys = _list_rows(order, starts, picked)
                scores = self._scores_per_query(block, keys)
            k, sc = _select(keys, scores, min(count, keys.shape[1]), self.lower_is_better)
            keys_out.append(k)
            scores_out.append(sc)
        width = max(k.shape[1] for k in keys_out) if keys_out else 0
        return (np.concatenate([_pad(k, width, -1) for k in keys_out]) if keys_out else np.zeros((0, 0), np.int64),
                np.concatenate([_pad(s, width, self.worse) for s in scores_out]) if scores_out else
                np.zeros((0, 0), np.float32))

    def prepare(self, q: Any) -> dict[str, Any]:
        """Per-query state for scoring (queries as the chain's ``encode_query`` returns them)."""
        return self._rounded(self.scorer.prepare_queries(np.asarray(q, dtype=np.float32)))

    def _rounded(self, prepared: dict[str, Any]) -> dict[str, Any]:
        """Prepared queries rounded to :attr:`query_bits` (if set), for every score of the search."""
        return self.scorer.quantize_queries(prepared, self.query_bits) if self.query_bits else prepared

    def query_of_rows(self, rows: Any) -> Any:
        """Float queries standing for stored rows (``--like``): their decoded codes, query-encoded."""
        return self.scorer.encode_query(self.scorer.decode(np.asarray(self.codes[np.asarray(rows)])))

    def exhaustive(self, q: Any, count: int, rows: Any = None) -> tuple[Any, Any]:
        """Top ``count`` rows (all rows, or only ``rows``) by the codec's scores: keys, scores."""
        subset = None if rows is None else np.asarray(rows, dtype=np.int64)
        total = self.rows if subset is None else len(subset)
        count = min(count, total)
        found = self._table_scan(q, count, max(1, self.list_count), subset)
        if found is not None:
            return found
        prepared = self.prepare(q)
        n = len(q)
        best_keys = np.full((n, 0), -1, dtype=np.int64)
        best_scores = np.full((n, 0), self.worse, dtype=np.float32)
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
        scores = np.where(valid, scores, self.worse)
        return _select(keys, scores, count, self.lower_is_better)


def _list_rows(order: Any, starts: Any, picked: Any) -> Any:
    """Queries x candidates: the rows of each query's picked lists, padded with -1 to the longest."""
    n = len(picked)
    lo, hi = starts[picked], starts[picked + 1]  # n x nprobe
    sizes = (hi - lo).ravel()
    per_query = (hi - lo).sum(axis=1)
    width = int(per_query.max()) if n else 0
    out = np.full((n, width), -1, dtype=np.int64)
    total = int(sizes.sum())
    if not total:
        return out
    # Position in ``order`` of every candidate: each list's start, then counting up within it.
    seg_first = np.cumsum(sizes) - sizes
    within = np.arange(total) - np.repeat(seg_first, sizes)
    positions = np.repeat(lo.ravel(), sizes) + within
    query = np.repeat(np.arange(n), per_query)
    column = np.arange(total) - np.repeat(np.cumsum(per_query) - per_query, per_query)
    out[query, column] = order[positions]
    return out


def _pad(a: Any, width: int, fill: Any) -> Any:
    """``a`` widened to ``width`` columns with ``fill``."""
    if a.shape[1] == width:
        return a
    out = np.full((len(a), width), fill, dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out


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
