"""vecx from Python: chains fitted on arrays, indexes built from arrays, searches returning arrays.

For notebooks, scripts and other libraries. Everything here runs the same code as the command
line (same fitted states, same index files), so an index built from a notebook answers
``vecx query`` and the other way round::

    import numpy as np
    import vecx

    x = np.load("docs.npy")                                  # n x d float32
    chain = vecx.Chain.from_spec("pq:24x8").fit(x)           # fitted on a seeded sample of x
    codes = chain.encode(x)                                  # n x 24 uint8
    chain.save_state("pq.state")                             # what 'vecx fit' writes

    index = vecx.build_index(x, "docs.vecx", spec="int8:mode=global", rescore=True)
    hits = index.search(x[:5], k=10)                         # hits.ids, hits.scores: 5 x 10
    hits = index.search(x[:5], k=10, where="lang = 'en'")
    index.close()
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, UsageError

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa

    from vecx.chain import Chain as _Chain
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")


def _numbers(x: Any, where: str) -> Any:
    """``x`` as a 2-D float32 array (one vector: one row); a :class:`UsageError` for anything else."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.dtype.kind not in "fiu" or not x.size:
        raise UsageError(f"{where}: give a 2-D array of vectors (rows x dimensions), not {x.ndim}-D {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _vectors(x: Any, where: str) -> Any:
    """``x`` as a 2-D float32 array of finite rows (a :class:`DataError` naming the bad row)."""
    x = _numbers(x, where)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise DataError(f"{where}: row {int(bad[0])} holds NaN or Inf")
    return x


class Chain:
    """A chain of codecs (a spec such as ``"pca:96,int8"``) for vectors held in memory.

    :meth:`fit` learns the stages' state on a seeded sample of an array, exactly as ``vecx fit``
    does on the same rows saved as a file; :meth:`save_state` writes what ``vecx fit`` writes,
    so ``vecx encode --state`` and :meth:`load_state` take it back.
    """

    def __init__(self, spec: str, *, metric: str = "cosine", seed: int | None = None,
                 fitted: _Chain | None = None) -> None:
        self.spec_text, self.metric, self.seed = spec, metric, seed
        self._chain = fitted

    @classmethod
    def from_spec(cls, spec: str, *, metric: str = "cosine", seed: int | None = None) -> Chain:
        """An unfitted chain; the spec is checked now (``metric``: the vectors' similarity,
        ``cosine``, ``ip`` or ``l2``)."""
        from vecx import spec as spec_mod
        from vecx.codecs import resolve_stage

        for number, stage in enumerate(spec_mod.parse(spec), start=1):  # a SpecError now, not at fit
            resolve_stage(stage, f"spec {spec.strip()!r}: stage {number}", seed)
        from vecx.space import canonical_metric

        return cls(spec, metric=canonical_metric(metric, "metric"), seed=seed)

    @classmethod
    def load_state(cls, path: str) -> Chain:
        """A fitted chain from a state file (``vecx fit``, ``--save-state``, :meth:`save_state`)."""
        from vecx.chain import Chain as _Chain

        fitted = _Chain.from_state_file(os.fspath(path), None)
        return cls(fitted.spec, metric=fitted.input.metric, fitted=fitted)

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`encode` can run (every stage has its state)."""
        return self._chain is not None and not self._chain.needs_fit

    @property
    def spec(self) -> str:
        """The canonical spec (defaults filled in once fitted)."""
        return self._chain.spec if self._chain is not None else self.spec_text

    @property
    def dim(self) -> int | None:
        """Dimensions of the vectors the chain takes (None before :meth:`fit`)."""
        return self._chain.input.dim if self._chain is not None else None

    @property
    def output(self) -> dict[str, Any] | None:
        """What :meth:`encode` returns per row: dim, dtype, bytes (None before :meth:`fit`)."""
        if self._chain is None:
            return None
        out = self._chain.output
        return {"dim": out.dim, "dtype": out.dtype, "bytes_per_vector": out.bytes_per_vector}

    def fit(self, x: Any) -> Chain:
        """Fit every stage on a seeded sample of the rows of ``x`` (n x d); returns this chain."""
        from vecx.chain import Chain as _Chain
        from vecx.formats.source import unit_norm
        from vecx.sampling import stage_sample_rows
        from vecx.space import VectorSpec

        x = _vectors(x, "fit")
        space = VectorSpec(x.shape[1], "float32", self.metric, unit_norm(np.einsum("ij,ij->i", x, x)))
        chain = _Chain.from_spec(self.spec_text, space, self.seed)
        chain.fit(lambda stage: x[stage_sample_rows(stage, len(x))])
        self._chain = chain
        return self

    def _fitted(self) -> _Chain:
        if self._chain is None or self._chain.needs_fit:
            raise UsageError(f"chain {self.spec!r} is not fitted", hint="call .fit(x) first, or Chain.load_state")
        return self._chain

    def encode(self, x: Any) -> Any:
        """The codes of the rows of ``x`` (an ndarray: rows x code width)."""
        chain = self._fitted()
        x = _vectors(x, "encode")
        if x.shape[1] != chain.input.dim:
            raise UsageError(f"encode: rows have {x.shape[1]} dimensions, the chain was fitted on {chain.input.dim}")
        return np.asarray(chain.encode(x))

    def decode(self, codes: Any) -> Any:
        """Approximate float vectors back from codes (for the stages that can decode)."""
        return np.asarray(self._fitted().decode(np.asarray(codes)))

    def save_state(self, path: str) -> str:
        """Write the fitted state (what ``vecx fit`` writes), atomically; returns ``path``."""
        from vecx.formats.tempfiles import check_output, write_bytes_atomic

        check_output(path)
        write_bytes_atomic(path, self._fitted().state_container(None))
        return path

    def __repr__(self) -> str:
        return f"vecx.Chain({self.spec!r}{'' if self.is_fitted else ', unfitted'})"


@dataclass
class SearchResult:
    """Results of :meth:`Index.search`: ``ids`` and ``scores`` are (queries x k) arrays, best first.

    ``found`` marks the places that hold a result (a filter may match fewer than k rows); ids
    there are -1 (integer ids) or None (string ids), scores NaN.
    """

    ids: Any
    scores: Any
    rows: Any

    @property
    def found(self) -> Any:
        """Where a result is (queries x k booleans)."""
        return self.rows >= 0

    def __iter__(self) -> Any:  # ids, scores = index.search(...)
        return iter((self.ids, self.scores))


class Index:
    """An opened index: search it with arrays. Keeps its version while open (a rebuild does not
    pull it away); close it, or use it in a ``with`` block."""

    def __init__(self, path: str) -> None:
        from vecx.indexes.search import Searcher

        self.path = os.fspath(path)
        self._searcher = Searcher(self.path)

    def __len__(self) -> int:
        return self._searcher.live_rows

    @property
    def spec(self) -> str:
        """The chain that encoded the indexed vectors."""
        return self._searcher.chain.spec

    @property
    def dim(self) -> int:
        """Dimensions of the query vectors the index takes."""
        return self._searcher.input_dim

    @property
    def columns(self) -> list[str]:
        """Payload columns (what ``where`` filters on and :meth:`lookup` returns)."""
        return self._searcher.payload_names()

    def search(self, queries: Any, k: int = 10, *, oversample: int | tuple[int, ...] | None = None,
               expansion: int | None = None,
               where: str | None = None, nprobe: int | None = None, query_bits: int | None = None) -> SearchResult:
        """The ``k`` nearest rows of each query (n x dim, or one vector).

        ``oversample``: rescoring factor (1: no rescoring; default: the index's), or one per
        rescoring stage; ``expansion``:
        the graph's search expansion; ``where``: a filter on payload columns (``vecx query --where``);
        ``nprobe``: codes in coarse lists, the lists scanned per query (default: the index's);
        ``query_bits``: RaBitQ codes, the bits each query is rounded to per coordinate (0: not
        rounded; default: the index's).
        """
        from vecx.api import _check_search_options, _choose_scan, _filter_rows

        _check_search_options(k, oversample, expansion)
        searcher = self._searcher
        byte_codes = isinstance(queries, np.ndarray) and queries.dtype in (np.uint8, np.int8)
        # Finite rows of the index's dimensions (or its own codes, as bytes).
        q = searcher.check_queries(queries if byte_codes else _numbers(queries, "search"), "search")
        allowed = _filter_rows(searcher, where, searcher.payload_names(), self.path)
        stored_nprobe, stored_bits = searcher.nprobe, 0 if searcher.scan is None else searcher.scan.query_bits
        try:
            _choose_scan(searcher, None, nprobe, query_bits)
            rows, scores = searcher.search(q, k, oversample=oversample, expansion=expansion, allowed=allowed,
                                           rescore=oversample != 1)
        finally:  # for this search only
            searcher.nprobe = stored_nprobe
            if searcher.scan is not None:
                searcher.scan.query_bits = stored_bits
        return self._result(rows, scores)

    def like(self, ids: list[Any], k: int = 10, *, oversample: int | tuple[int, ...] | None = None) -> SearchResult:
        """The ``k`` nearest rows of items already in the index (each item itself left out)."""
        from vecx.api import _check_search_options

        _check_search_options(k, oversample, None)
        searcher = self._searcher
        rows, scores = searcher.like(searcher.row_of(list(ids)), k, oversample=oversample, rescore=oversample != 1)
        return self._result(rows, scores)

    def lookup(self, ids: list[Any], columns: list[str] | None = None) -> list[dict[str, Any]]:
        """The payload of items by id (every column, or those asked for)."""
        searcher = self._searcher
        return searcher.lookup(searcher.row_of(list(ids)), ["id", *(columns or self.columns)])

    def _result(self, rows: Any, scores: Any) -> SearchResult:
        found = rows >= 0
        values = self._searcher.lookup(rows[found], ["id"])
        ids = [value["id"] for value in values]
        if all(isinstance(i, int) for i in ids):
            out = np.full(rows.shape, -1, dtype=np.int64)
        else:
            out = np.full(rows.shape, None, dtype=object)
        out[found] = ids
        return SearchResult(out, np.where(found, scores, np.nan).astype(np.float32), rows)

    def close(self) -> None:
        """Let the index version go."""
        self._searcher.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"vecx.Index({self.path!r}, {len(self):,} rows, spec {self.spec or '(float)'!r})"


def open_index(path: str) -> Index:
    """Open an index directory for searching (see :class:`Index`)."""
    return Index(path)


def build_index(data: Any, path: str, *, spec: str | None = None, ids: Any = None, rescore: bool = False,
                metric: str = "cosine", seed: int | None = None, **graph_params: Any) -> Index:
    """Build an index from an ndarray (n x d), an Arrow table (an ``id`` and a ``vector`` column,
    payload columns beside them) or a path, and open it.

    ``spec``: the chain encoding the vectors before indexing (fitted on ``data``; default: the
    float32 vectors themselves). ``ids``: one per row of an ndarray (default: row numbers).
    ``rescore``: keep the float vectors for rescoring. ``graph_params``: the build options of
    ``vecx index`` (``connectivity``, ``expansion_add``, ``expansion_search``, ``oversample``,
    ``deterministic``, ``scan``, ``pool``, ``nprobe``, ``query_bits``).
    """
    from vecx import api
    from vecx.formats.inmemory import is_in_memory
    from vecx.formats.readers import ReadOptions
    from vecx.indexes.build import BuildOptions

    try:
        options = BuildOptions(**graph_params)
    except TypeError as exc:
        raise UsageError(f"build_index: {exc}") from None
    parent = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix=".vecx-build-", dir=parent) as work:
        source: Any = data
        if isinstance(data, np.ndarray):
            x = _vectors(data, "build_index")
            row_ids = np.arange(len(x), dtype=np.int64) if ids is None else np.asarray(ids)
            if len(row_ids) != len(x):
                raise UsageError(f"build_index: {len(row_ids)} ids for {len(x)} rows")
            source = pa.table({"id": row_ids, "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(x.ravel()), x.shape[1])})
        elif ids is not None:
            raise UsageError("build_index: ids= goes with an ndarray; a table or a file carries its own ids")
        imported = os.path.join(work, "imported.parquet")
        if is_in_memory(source) or not _is_vecx_table(source):
            api.encode_file(source, imported, read=ReadOptions(metric=metric))
        else:
            imported = os.fspath(source)
        table = imported
        if spec:
            table = os.path.join(work, "encoded.parquet")
            api.encode_file(imported, table, spec, seed=seed)
        api.build_index(table, path, rescore=imported if rescore else None, options=options)
    return Index(path)


def _is_vecx_table(path: Any) -> bool:
    """Whether a path is a table vecx wrote (imported or encoded), not raw input to import."""
    from vecx.formats.readers import open_source

    try:
        return open_source(os.fspath(path)).meta is not None
    except (DataError, UsageError):
        return False
