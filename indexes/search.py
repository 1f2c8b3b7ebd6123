"""Search an index: encode queries through its chain, find candidates in the graph or by scanning
the codes, rescore them exactly with the stored float vectors, and look up the rows' ids and payload.

Queries arrive in the *input* space and are encoded through the index's own chain; rescoring
compares the raw query with higher-precision vectors of the same source, read from a
memory-mapped file only for the candidates.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.chain import Chain
from vecx.errors import DataError, MismatchError
from vecx.indexes import codescan, rowids, store
from vecx.indexes.graph import GRAPH_FILE, GraphSet, open_graph, search_graph
from vecx.indexes.rescoring import Factors, RescoreRows, StagedQueries, refine_name, stage_factors
from vecx.indexes.segments import StackedIds, live_mask, segments_of, stacked
from vecx.kernels import top_k

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")

#: A filter keeping at most this many rows is answered by an exact scan over them.
EXACT_SCAN_ROWS = 20_000


def _load_chain(version: Any, meta_name: str, state_name: str, where: str) -> Chain:
    """The fitted chain of an index file pair (metadata JSON + state .npz, or the older state .arrow)."""
    from vecx.formats import state

    meta = read_json(version, meta_name)
    if version.has(state_name + ".npz"):
        return Chain.from_table(meta, None, where, arrays=state.read_npz(version.file(state_name + ".npz"), where))
    return Chain.from_table(meta, _read(version, state_name + ".arrow"), where)


def _read(version: Any, name: str) -> bytes | None:
    """A file of an index version, if its manifest lists it (only listed files are ever opened)."""
    if not version.has(name):
        return None
    with open(version.file(name), "rb") as handle:
        return handle.read()


def read_json(version: Any, name: str) -> dict[str, Any]:
    """A JSON object file of an index version (empty if not listed); anything else is damage."""
    data = _read(version, name)
    if data is None:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise DataError(f"{version.path}: {name} is not a JSON object (damaged)", hint="rebuild the index")
    return value


class Searcher:
    """An opened index: encodes queries through its chain, searches the graph, rescores, looks up rows."""

    def __init__(self, path: str, *, verify: bool = False) -> None:
        self.path = path
        # Held while this searcher lives: no rebuild removes the version under it.
        self.version = store.open_reader(path, verify=verify)
        self.directory, self.manifest = self.version.directory, self.version.manifest
        self.chain = _load_chain(self.version, "table.json", "state", path)
        self.segments = segments_of(self.manifest)
        self.rows = int(self.manifest["rows"])
        #: Sorted global rows that are deleted or superseded (``None``: none are).
        self.deleted = self._tombstones()
        self._live: Any = None
        self.ids = self._open_ids()
        self.scan = None  # codes scored by their codec (PQ, RaBitQ: indexes/codescan.py)
        #: ``exhaustive``, ``graph`` or ``ivf`` for scored codes (``None``: the index's default).
        self.scan_choice: str | None = None
        #: Lists an ``ivf`` scan probes (``None``: the index's default).
        self.nprobe: int | None = None
        codes_info = self.manifest.get("codes")
        if codes_info:
            if not self.chain.stages or not self.chain.stages[-1].scores_codes:
                raise DataError(f"{path}: the index holds scored codes but its chain has no stage to score them",
                                hint="rebuild the index")
            self.scan = codescan.CodeScan(stacked([
                codescan.open_codes(self.version.file(seg.name(codes_info["file"])), int(codes_info["bytes"]),
                                    seg.rows, path) for seg in self.segments]), self.chain.stages[-1])
        self._default_query_bits(path)
        #: One graph per segment (none: scored codes without a navigation graph), keyed by global rows.
        self.graphs: list[Any] = []
        self._graph_set: Any = None
        self._own_factors: tuple[int, ...] | None = None
        graph_name = self.manifest["graph"].get("file", GRAPH_FILE)
        g = self.manifest["graph"]
        if graph_name:
            for seg in self.segments:
                graph = open_graph(self.version.file(seg.name(graph_name)), path, seg.rows, g["ndim"], g["dtype"])
                graph.expansion_search = int(g["expansion_search"])
                self.graphs.append(graph)
        self.expansion_search = int(g["expansion_search"])
        self.rescore_vectors = None
        #: Encoded rescoring rows (codes their chain scores or decodes), instead of float vectors.
        self.rescore_codes = None
        self.rescore_chain: Chain | None = None
        self.multi_rescore = None  # token vectors for exact MaxSim (indexes/multivector.py)
        #: The last rescoring stage's rows (float vectors or codes), and the stages that narrow the
        #: candidates before it (indexes/rescoring.py).
        self.final: RescoreRows | None = None
        self.refine: list[RescoreRows] = []
        #: Rescoring stages a search runs (``None``: all): eval measures each stage's share of the recall.
        self.stage_limit: int | None = None
        self.first_stage = "fde"
        self._open_rescore(self.manifest.get("rescore"), path)

    def _default_query_bits(self, path: str) -> None:
        """The bits the manifest rounds queries to (``search.query_bits``), for codes that take them."""
        bits = int(self.manifest["search"].get("query_bits") or 0)
        if bits and (self.scan is None or not self.scan.scorer.takes_query_bits):
            raise DataError(f"{path}: the manifest's search.query_bits rounds queries of RaBitQ codes, and this "
                            "index holds none (damaged)", hint="rebuild the index")
        if self.scan is not None:
            self.scan.query_bits = bits

    def _open_rescore(self, info: dict[str, Any] | None, path: str) -> None:
        """The rescoring rows the manifest lists: token sets, float vectors or codes, and their chain."""
        if info and info.get("multi"):
            from vecx.indexes.multivector import MultiRescore, stacked_multi

            parts = [MultiRescore(self.version, info, self.expansion_search, seg) for seg in self.segments]
            if sum(len(part.tokens) for part in parts) != info["tokens"]:
                raise DataError(f"{path}: the stored token vectors do not match the manifest (damaged)",
                                hint="rebuild the index")
            self.multi_rescore = stacked_multi(parts, self.segments)
            self.rescore_chain = Chain.from_table(read_json(self.version, "rescore.json"), None, path)
            self.rescore_metric = "maxsim"
        elif info:
            chain = _load_chain(self.version, "rescore.json", "rescore.state", path)
            self.final = RescoreRows.open(self.version, info, self.segments, chain, path)
            if self.final.encoded:
                self.rescore_codes = self.final.stored
            else:
                self.rescore_vectors = self.final.stored
            self.rescore_chain, self.rescore_metric = chain, info["metric"]
            for number, stage in enumerate(self.manifest.get("refine") or (), start=1):
                name = refine_name(number)
                self.refine.append(RescoreRows.open(self.version, stage, self.segments,
                                                    _load_chain(self.version, name + ".json", name + ".state", path),
                                                    path))

    def _tombstones(self) -> Any:
        """The deleted rows the manifest lists (sorted, unique, in range), or ``None``."""
        deleted = self.manifest.get("deleted")
        if not deleted:
            return None
        rows = np.load(self.version.file(deleted["file"]))
        if rows.ndim != 1 or len(rows) != deleted["rows"] or rows.dtype != np.int64 or (
                len(rows) and (rows[0] < 0 or rows[-1] >= self.rows or (np.diff(rows) <= 0).any())):
            raise DataError(f"{self.path}: {deleted['file']} is not the sorted list of {deleted['rows']} deleted rows "
                            "the manifest says (damaged)", hint="rebuild the index")
        return rows if len(rows) else None

    @property
    def live(self) -> Any:
        """Boolean mask over the rows, false for deleted rows (``None`` when nothing is deleted)."""
        if self.deleted is None:
            return None
        if self._live is None:
            self._live = live_mask(self.rows, self.deleted)
        return self._live

    @property
    def live_rows(self) -> int:
        """Rows a search can return (all rows but the deleted ones)."""
        return self.rows - (0 if self.deleted is None else len(self.deleted))

    def _open_ids(self) -> Any:
        """The id files of every segment as one reader by global row (``None`` for an index without them)."""
        readers = [rowids.open_ids(self.version, seg) for seg in self.segments]
        if any(r is None for r in readers):
            return None
        return StackedIds(readers, self.segments, self.deleted)

    def close(self) -> None:
        """Let the index version go (a later rebuild may then remove it)."""
        self.version.close()

    @property
    def input_dim(self) -> int:
        """Dimension of the vectors queries must have (the chain's input)."""
        return self.chain.input.dim

    def check_queries(self, q: Any, where: str) -> Any:
        """Validate query vectors: 2-D float, the input dimension, finite, not too large, and not all
        zeros when the index's input metric is cosine (sets of vectors for multi-vector indexes)."""
        from vecx.formats.multi import MultiVectors, check_query_sets
        from vecx.kernels import too_large_rows

        if self.chain.input.multi:
            return check_query_sets(q, self.input_dim, where)
        if isinstance(q, MultiVectors):
            raise MismatchError(f"{where}: this index holds one vector per row; a query is one vector, "
                                "not a set of vectors", hint="give --vector FILE")
        q = np.asarray(q)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.dtype in (np.uint8, np.int8):
            q = self._decoded_codes(q, where)
        q = np.asarray(q, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.input_dim:
            got = q.shape[-1] if q.ndim else 0
            raise MismatchError(f"{where}: query has {got} dimensions, this index takes {self.input_dim}",
                                hint=f"queries are raw vectors in the input space ({self.input_dim}-d)")
        bad = np.flatnonzero(~np.isfinite(q).all(axis=1))
        if len(bad):
            raise DataError(f"{where}: query {int(bad[0])} holds NaN or Inf")
        # As at import: a row whose squares overflow float32 would score as 0 or inf (float64 only
        # when the float32 sums say there may be one).
        huge = [] if np.isfinite(np.einsum("ij,ij->i", q, q)).all() else too_large_rows(q)[0]
        if len(huge):
            raise DataError(f"{where}: query {int(huge[0])} is too large (its squared norm overflows float32)",
                            hint="rescale the queries as the data was scaled")
        if self.chain.input.metric == "cosine":  # a zero vector has no direction: every row would tie
            zero = np.flatnonzero(~q.any(axis=1))
            if len(zero):
                raise DataError(f"{where}: query {int(zero[0])} is all zeros; cosine similarity is undefined",
                                hint="remove that query or give a non-zero vector")
        return q

    def _decoded_codes(self, q: Any, where: str) -> Any:
        """Byte queries that are this index's own codes (pre-quantized queries from the tool that made
        imported codes: packed sign bits as uint8, or as int8 shifted by -128; int8 levels, or uint8
        ones for ``int8:rounding=floor``), decoded
        into the input space, where they encode back to themselves; other byte rows are numbers."""
        from vecx.formats.codes import as_vecx_bytes

        out = self.chain.output
        if out.dtype == "bits" and q.shape[1] == out.bytes_per_vector and q.shape[1] != self.input_dim:
            precision = "ubinary" if q.dtype == np.uint8 else "binary"
        elif out.dtype == "int8" and q.dtype == np.int8 and q.shape[1] == out.dim:
            precision = "int8"
        elif (out.dtype == "int8" and q.dtype == np.uint8 and q.shape[1] == out.dim
              and self.chain.stages[-1].values.get("rounding") == "floor"):  # sentence-transformers' uint8
            precision = "uint8"
        else:
            return q
        codes = as_vecx_bytes(q, precision)
        if self.chain.decoded_space != self.chain.input:
            raise MismatchError(f"{where}: the queries look like this index's codes ({q.shape[1]} x {q.dtype}), but "
                                "its chain cannot decode codes back to its input space",
                                hint=f"give float query vectors ({self.input_dim}-d)")
        return self.chain.decode(codes)

    def search(self, q: Any, k: int, *, oversample: Factors = None, expansion: int | None = None,
               allowed: Any = None, rescore: bool = True) -> tuple[Any, Any]:
        """Top-k rows and scores for raw queries (n x input dim). Missing results are row -1.

        ``allowed``: a boolean mask over the rows (a filter); results come only from those rows.
        Deleted rows never come back. ``rescore=False`` ranks by the graph's own distances even
        when rescoring vectors exist.
        """
        codes = self.chain.encode_query(q)
        rescore_q = None
        if rescore and self.multi_rescore is not None:
            rescore_q = self.rescore_chain.encode_query(q)
        elif rescore and self.final is not None:
            rescore_q = self.final.queries(q)
            if self.refine:  # the earlier stages encode the raw queries
                rescore_q = StagedQueries(rescore_q, np.asarray(q, dtype=np.float32))
        if self.first_stage != "fde":  # candidates from the mean-vector graph too
            from vecx.indexes.multivector import search_first_stage

            return search_first_stage(self, q, codes, rescore_q, k, oversample, expansion, self._with_live(allowed))
        return self._search(codes, rescore_q, k, oversample, expansion, None, allowed)

    def _with_live(self, allowed: Any) -> Any:
        """A filter mask narrowed to the rows that are not deleted (``None``: no filter, nothing deleted)."""
        live = self.live
        if live is None or allowed is None:
            return allowed if live is None else live
        return allowed & live

    def like(self, rows: Any, k: int, *, oversample: Factors = None, expansion: int | None = None,
             allowed: Any = None, rescore: bool = True) -> tuple[Any, Any]:
        """Neighbours of rows already in the index (each row itself excluded)."""
        rows = np.asarray(rows, dtype=np.int64)
        # Scored codes take float queries: the rows' decoded codes stand for them.
        codes = self.scan.query_of_rows(rows) if self.scan is not None else self.codes_of(rows)
        if self.multi_rescore is not None:  # the rows' own token sets
            rescore_q = self.multi_rescore.sets_of(rows) if rescore else None
            return self._search(codes, rescore_q, k, oversample, expansion, rows, allowed)
        return self._search(codes, self._rows_as_rescore_queries(rows) if rescore else None, k, oversample,
                            expansion, rows, allowed)

    def _rows_as_rescore_queries(self, rows: Any) -> Any:
        """Stored rows as rescoring queries: their float rescoring vectors, or their rescoring codes
        decoded (``None``: no rescoring; codes that do not decode back to the input space). With
        several stages, the earlier ones take the rows as the first stage that decodes them."""
        final = self.final
        if final is None:
            return None
        if not final.encoded:
            rescore_q: Any = np.asarray(final.stored[rows], dtype=np.float32)
        else:
            rescore_q = final.rows_as_input(rows)
            if rescore_q is None:
                return None
        if not self.refine:
            return rescore_q
        raw = next((got for got in (stage.rows_as_input(rows) for stage in (final, *self.refine))
                    if got is not None), None)
        return StagedQueries(rescore_q, raw)

    @property
    def rescorable(self) -> bool:
        """Whether the index keeps rows to rescore candidates with (float vectors, codes, token sets)."""
        return self.final is not None or self.multi_rescore is not None

    @property
    def default_factors(self) -> tuple[int, ...]:
        """The index's oversampling factors, one per rescoring stage (:func:`rescoring.stage_factors`;
        the manifest check holds them to one per stage)."""
        value = self.manifest["search"]["oversample"]
        return tuple(value) if isinstance(value, list) else (int(value),)

    def factors(self, oversample: Any) -> tuple[int, ...]:
        """The factors a search uses: ``oversample`` (an int or one per stage) over the index's."""
        if oversample is None:  # the index's own, checked once (a single query's search asks each time)
            if self._own_factors is None:
                self._own_factors = stage_factors(None, self.default_factors)
            return self._own_factors
        return stage_factors(oversample, self.default_factors)

    def codes_of(self, rows: Any) -> Any:
        """The stored codes of some rows."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.scan is not None:
            return np.asarray(self.scan.codes[rows])
        assert self.graphs, "an index without scored codes has a graph (check_manifest)"
        if not len(rows):
            return np.empty((0, self.graphs[0].ndim))
        out = None
        for graph, seg in zip(self.graphs, self.segments, strict=True):
            mask = (rows >= seg.start) & (rows < seg.stop)
            if not mask.any():
                continue
            got = graph.get(rows[mask].astype(np.uint64))  # a tuple of vectors for many keys
            got = np.stack(got) if isinstance(got, tuple) else np.atleast_2d(got)
            if out is None:
                out = np.empty((len(rows), got.shape[1]), dtype=got.dtype)
            out[mask] = got
        return out

    def _search(self, codes: Any, rescore_q: Any, k: int, oversample: Factors, expansion: int | None,
                exclude: Any, allowed: Any = None) -> tuple[Any, Any]:
        k = min(k, self.rows - (1 if exclude is not None else 0))
        factors = self.factors(oversample)
        factor = factors[0] if rescore_q is not None else 1
        if isinstance(rescore_q, StagedQueries):
            rescore_q = StagedQueries(rescore_q.final, rescore_q.raw, factors[1:])
        if allowed is not None or self.deleted is not None:
            return self._filtered(codes, rescore_q, k, factor, expansion, exclude, allowed)
        count = min(self.rows, k * factor + (1 if exclude is not None else 0))
        return self._candidates(codes, rescore_q, k, count, expansion, exclude, None)

    def _candidates(self, codes: Any, rescore_q: Any, k: int, count: int, expansion: int | None, exclude: Any,
                    allowed: Any) -> tuple[Any, Any]:
        """The best ``k`` of ``count`` candidates from the graph or the codes (only ``allowed`` rows, not
        the ``exclude`` row of each query), rescored when there are rescoring queries."""
        keys, dist = self._graph_search(codes, count, expansion)
        if rescore_q is None and allowed is None and exclude is None and self.scan is not None:
            return keys[:, :k], self._graph_scores(dist)[:, :k]  # scans return their best first already
        if allowed is not None:
            keys = np.where((keys >= 0) & allowed[np.maximum(keys, 0)], keys, -1)
        if exclude is not None:
            keys = np.where(keys == np.asarray(exclude)[:, None], -1, keys)
        if isinstance(rescore_q, StagedQueries):  # the earlier stages keep fewer for the last
            extra = 1 if exclude is not None else 0
            limit = self.stage_limit
            if limit is not None and limit <= len(self.refine) and rescore_q.raw is not None:
                last = self.refine[limit - 1]  # stop at an earlier stage: it ranks the k results
                keys = rescore_q.narrow(self.refine[: limit - 1], keys, k, extra)
                return top_k(keys, last.scores(last.queries(rescore_q.raw), keys), k,
                             lower_is_better=last.lower_is_better)
            keys = rescore_q.narrow(self.refine, keys, k, extra)
        scores = self._rescore(rescore_q, keys) if rescore_q is not None else self._graph_scores(dist)
        return top_k(keys, scores, k, lower_is_better=self._lower_is_better(rescore_q is not None))

    def _filtered(self, codes: Any, rescore_q: Any, k: int, factor: int, expansion: int | None,
                  exclude: Any, allowed: Any) -> tuple[Any, Any]:
        """Search restricted to ``allowed`` rows and to rows not deleted.

        A filter that keeps many rows, and deletions, are answered by the graph asked for more
        candidates; a filter that keeps few by an exact scan over the matching rows. Queries for
        which the graph found fewer than k matching rows (matches or deletions dense around them)
        look further, then scan exactly: a selective filter never returns too few.
        """
        user_filter = allowed is not None
        allowed = self._with_live(allowed)
        matching = np.flatnonzero(allowed)
        k = min(k, len(matching) - (1 if exclude is not None else 0))
        n = len(codes)
        if k <= 0:
            return np.full((n, 0), -1, dtype=np.int64), np.zeros((n, 0), dtype=np.float32)
        selectivity = len(matching) / self.rows
        if selectivity < 0.05 or (user_filter and len(matching) <= EXACT_SCAN_ROWS):
            return self._exact(codes, rescore_q, matching, k, exclude)
        # A filter's matches fall unevenly: twice what its selectivity asks; deletions: what they take away.
        wanted = k * factor + (1 if exclude is not None else 0)
        margin = (2, 0) if user_filter else (1, k)
        count = min(self.rows, int(np.ceil(wanted / selectivity * margin[0])) + margin[1])
        rows, top_scores = self._candidates(codes, rescore_q, k, count, expansion, exclude, allowed)
        for widen in (8, 0):
            short = np.flatnonzero((rows < 0).any(axis=1))
            if not len(short):
                break
            sub_ex = None if exclude is None else np.asarray(exclude)[short]
            sub_rq = None if rescore_q is None else (rescore_q[short] if self.multi_rescore is not None
                                                     or isinstance(rescore_q, StagedQueries)
                                                     else np.asarray(rescore_q)[short])
            sub_codes = np.asarray(codes)[short]
            if widen and count * widen < self.rows:
                count *= widen
                rows[short], top_scores[short] = self._candidates(sub_codes, sub_rq, k, count, expansion, sub_ex,
                                                                  allowed)
            else:
                rows[short], top_scores[short] = self._exact(sub_codes, sub_rq, matching, k, sub_ex)
        return rows, top_scores

    def _exact(self, codes: Any, rescore_q: Any, matching: Any, k: int, exclude: Any) -> tuple[Any, Any]:
        """Exact top-k over the given rows: with the rescoring vectors if there are any, else the codes."""
        keys = np.broadcast_to(matching, (len(codes), len(matching))).copy()
        if exclude is not None:
            keys = np.where(keys == np.asarray(exclude)[:, None], -1, keys)
        if rescore_q is not None:
            scores = self._rescore(rescore_q, keys)
        elif self.scan is not None:  # the codec's own scores over the matching rows
            rows, top_scores = self.scan.exhaustive(codes, k + (1 if exclude is not None else 0), matching)
            if exclude is not None:
                rows = np.where(rows == np.asarray(exclude)[:, None], -1, rows)
            return top_k(rows, top_scores, k, lower_is_better=self.scan.lower_is_better)
        else:
            stored = np.asarray(self.codes_of(matching), dtype=np.float32)
            q = np.asarray(codes, dtype=np.float32)
            metric = self.manifest["graph"]["metric"]
            if metric == "hamming":
                stored_bits = np.unpackbits(np.asarray(self.codes_of(matching), dtype=np.uint8), axis=1)
                q_bits = np.unpackbits(np.asarray(codes, dtype=np.uint8), axis=1).astype(np.float32)
                s_bits = stored_bits.astype(np.float32)
                scores = q_bits.sum(1)[:, None] + s_bits.sum(1)[None, :] - 2 * q_bits @ s_bits.T
                scores = np.where(keys >= 0, scores, np.inf)
                return top_k(keys, scores, k, lower_is_better=True)
            if metric == "l2sq":
                scores = (q * q).sum(1)[:, None] - 2 * q @ stored.T + (stored * stored).sum(1)[None, :]
            else:
                if metric == "cos":
                    stored = stored / np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-30)
                    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
                scores = q @ stored.T
            scores = np.where(keys >= 0, scores, np.inf if metric == "l2sq" else -np.inf)
        return top_k(keys, scores, k, lower_is_better=self._lower_is_better(rescore_q is not None))

    def _each_graph(self, q: Any, count: int, expansion: int | None, exact: bool = False) -> tuple[Any, Any]:
        """Every segment's graph searched for ``count`` rows (keys are the index's row numbers), merged by
        distance: usearch searches the segments in parallel."""
        if self._graph_set is None:
            self._graph_set = self.graphs[0] if len(self.graphs) == 1 else GraphSet(self.graphs)
        return search_graph(self._graph_set, q, count, expansion, self.rows, exact=exact)

    def _graph_search(self, codes: Any, count: int, expansion: int | None) -> tuple[Any, Any]:
        """Raw graph search: keys (row numbers, -1 where fewer found) and usearch distances.

        ``expansion`` overrides the index's search expansion for this call (never below ``count``).
        Indexes of scored codes return the codec's scores instead of distances: an exhaustive scan,
        or a pool of ``pool x count`` graph candidates ranked by the codec.
        """
        if self.scan is not None:
            return self._scan_search(self.scan, codes, count, expansion)
        return self._each_graph(codes, count, expansion, exact=self.scan_mode == "exhaustive")

    @property
    def scan_mode(self) -> str:
        """How candidates are found: ``graph`` (HNSW), or ``exhaustive`` (every code: usearch's exact
        search over graph codes, the codec's scores over scored codes)."""
        default = "exhaustive" if self.scan is not None else "graph"
        return codescan.resolve_scan(self.scan_choice, self.manifest["search"].get("scan", default),
                                     bool(self.graphs), self.scan is not None and self.scan.list_count > 0)

    def use_compiled_scans(self) -> None:
        """Scans of scored codes use the compiled kernels from the first search, whatever its size
        (eval and bench measure the steady state a long-running process reaches)."""
        if self.scan is not None:
            self.scan.compiled = True

    @property
    def probed_lists(self) -> int:
        """Lists an ``ivf`` scan probes per query: this search's choice, else the index's default."""
        return self.nprobe or int(self.manifest["search"].get("nprobe", codescan.DEFAULT_NPROBE))

    def _scan_search(self, scan: codescan.CodeScan, q: Any, count: int, expansion: int | None) -> tuple[Any, Any]:
        """Candidates among scored codes: every code scored, or a graph pool ranked by the codec."""
        mode = self.scan_mode
        if mode == "exhaustive":
            return scan.exhaustive(q, count)
        if mode == "ivf":
            return scan.probe(q, count, self.probed_lists)
        pool = min(self.rows, count * max(1, int(self.manifest["search"].get("pool", codescan.DEFAULT_POOL))))
        nav = scan.scorer.navigation(scan.scorer.encode(q))[2]  # the queries' own sign bits
        keys, _ = self._each_graph(nav, pool, expansion)
        return scan.rank(q, keys, count)

    def exact_codes(self, codes: Any, k: int) -> tuple[Any, Any]:
        """Rows of the exact top-k over the codes (no graph), what the encoding alone allows, and their
        scores: the graph's distances, or the codec's scores for scored codes."""
        live = self.live
        if self.scan is not None:
            return self.scan.exhaustive(codes, k, None if live is None else np.flatnonzero(live))
        extra = 0 if self.deleted is None else len(self.deleted)  # the deleted rows may be among the nearest
        keys, dist = self._each_graph(codes, min(self.rows, k + extra), None, exact=True)
        if live is None:
            return keys, dist
        keys = np.where((keys >= 0) & live[np.maximum(keys, 0)], keys, -1)
        return top_k(keys, dist, k, lower_is_better=True)

    def _graph_scores(self, dist: Any) -> Any:
        """Scores from usearch distances: similarity for cos/ip, the distance itself for l2sq/hamming."""
        if self.scan is not None:  # already the codec's scores
            return dist
        return dist if self.manifest["graph"]["metric"] in ("l2sq", "hamming") else 1.0 - dist

    def _lower_is_better(self, rescored: bool) -> bool:
        """Whether lower scores rank first: distances (L2, Hamming, an L2 codec's estimate), not similarities."""
        if not rescored and self.scan is not None:
            return self.scan.lower_is_better
        metric = self.rescore_metric if rescored else self.manifest["graph"]["metric"]
        return metric in ("l2", "l2sq", "hamming")

    def _rescore(self, q: Any, keys: Any) -> Any:
        """Scores of candidates against the last rescoring stage's rows (only those rows are read)."""
        if self.multi_rescore is not None:  # exact MaxSim over the stored token vectors
            return self.multi_rescore.scores(q, keys)
        assert self.final is not None, "rescoring queries exist only for an index with rescoring rows"
        return self.final.scores(q.final if isinstance(q, StagedQueries) else q, keys)

    def row_of(self, ids: list[Any]) -> Any:
        """Row numbers of ids (a :class:`DataError` for an id not in the index, or deleted)."""
        if self.ids is not None:
            found = [self.ids.row_of(value) for value in ids]
            for value, index in zip(ids, found, strict=True):
                if index < 0:
                    raise DataError(f"{self.path}: no item with id {value!r}")
            return np.asarray(found, dtype=np.int64)
        import pyarrow.compute as pc

        column = self.rows_table(["id"])["id"].combine_chunks()
        live = self.live
        out = []
        for value in ids:
            try:
                as_is = not isinstance(value, str) or pa.types.is_string(column.type)
                scalar = pa.scalar(value, column.type) if as_is else pa.scalar(int(value), column.type)
            except (ValueError, pa.ArrowInvalid, pa.ArrowTypeError):
                raise DataError(f"{self.path}: no item with id {value!r}") from None
            hits = np.flatnonzero(np.asarray(pc.equal(column, scalar).fill_null(False)))
            if live is not None:
                hits = hits[live[hits]]
            if not len(hits):
                raise DataError(f"{self.path}: no item with id {value!r}")
            out.append(int(hits[-1]))  # the newest row of an id
        return np.asarray(out, dtype=np.int64)

    def _rows_file(self, segment: Any) -> str:
        return self.version.file(segment.name("rows.parquet"))

    def rows_table(self, columns: list[str] | None = None) -> Any:
        """The id and payload columns (only those asked for) of every row, deleted ones included."""
        tables = [pq.read_table(self._rows_file(seg), columns=columns) for seg in self.segments]
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def lookup(self, rows: Any, columns: list[str]) -> list[dict[str, Any]]:
        """The given columns of some rows, reading only the row groups that hold them."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return []
        if columns == ["id"] and self.ids is not None:
            return [{"id": value} for value in self.ids.ids(rows)]
        out: list[dict[str, Any]] = [{} for _ in rows]
        for seg in self.segments:
            picked = np.flatnonzero((rows >= seg.start) & (rows < seg.stop))
            if len(picked):
                for i, record in zip(picked.tolist(), _lookup(self._rows_file(seg), rows[picked] - seg.start, columns),
                                     strict=True):
                    out[i] = record
        return out

    def payload_names(self) -> list[str]:
        """Names of the payload columns."""
        if "columns" in self.manifest:
            return list(self.manifest["columns"])
        return [n for n in pq.read_schema(self._rows_file(self.segments[0])).names if n != "id"]


def _lookup(path: str, rows: Any, columns: list[str]) -> list[dict[str, Any]]:
    """The given columns of some rows of one rows.parquet, reading only the row groups that hold them."""
    parquet = pq.ParquetFile(path)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    groups = sorted(set(np.searchsorted(starts, rows, side="right") - 1))
    table = parquet.read_row_groups(groups, columns=columns)
    # Row numbers inside the concatenation of the groups read.
    offset_of = {}
    position = 0
    for g in groups:
        offset_of[g] = position - starts[g]
        position += sizes[g]
    local = [int(r + offset_of[int(np.searchsorted(starts, r, side="right") - 1)]) for r in rows]
    return table.take(pa.array(local)).to_pylist()
