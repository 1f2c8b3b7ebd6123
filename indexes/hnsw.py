"""Build and search an index: a usearch HNSW graph over encoded vectors, with exact rescoring.

Codes and metric must fit together: float32/float16 codes search by cosine, inner product or
squared L2; ``int8`` codes only where the metric holds on the codes themselves
(``int8:mode=global``), by cosine or L2 (usearch's ``i8`` inner product is not trusted:
unum-cloud/usearch#405). Queries arrive in the *input* space and are encoded through the
index's own chain; rescoring compares the raw query with higher-precision vectors of the same
source, read from a memory-mapped file only for the candidates.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from vecx._lazy import lazy
from vecx._prefetch import prefetch
from vecx.chain import Chain
from vecx.codecs.base import CODES, VectorSpec
from vecx.errors import DataError, MismatchError, UsageError, WriteError
from vecx.formats.tempfiles import write_failure
from vecx.indexes import codescan, rowids, store

np = lazy("numpy")
pa = lazy("pyarrow")
pq = lazy("pyarrow.parquet")

USEARCH_DTYPES = {"float32": "f32", "float16": "f16", "int8": "i8", "bits": "b1"}
DEFAULT_OVERSAMPLE = 4
#: A filter keeping at most this many rows is answered by an exact scan over them.
EXACT_SCAN_ROWS = 20_000


def graph_metric(space: VectorSpec, source_normalized: bool) -> str:
    """The usearch metric for codes of ``space``, or a :class:`UsageError` saying why they cannot be indexed."""
    if space.dtype == "bits":
        return "hamming"
    if space.metric_on != "codes":
        raise UsageError(f"{space.dtype} codes of this chain support {space.metric} only after decoding "
                         "(e.g. int8:mode=perdim); a graph cannot search them directly",
                         hint="use int8:mode=global for an i8 graph, or index the float vectors")
    if space.dtype == "int8":
        if space.metric == "cosine" or (space.metric == "ip" and source_normalized):
            return "cos"
        if space.metric == "l2":
            return "l2sq"
        raise UsageError("int8 codes with the inner-product metric are not supported by usearch's i8 "
                         "kernels (unum-cloud/usearch#405)", hint="normalize the vectors and use cosine")
    return {"cosine": "cos", "ip": "ip", "l2": "l2sq"}[space.metric]


@dataclass
class BuildOptions:
    """Graph parameters (usearch names; the HNSW paper's M is ``connectivity``)."""

    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 64
    oversample: int = DEFAULT_OVERSAMPLE
    deterministic: bool = False
    #: Codes scored by their codec (PQ, RaBitQ): ``auto``, ``exhaustive`` or ``graph`` (indexes/codescan.py).
    scan: str = "auto"
    #: ``graph`` scan: candidates the graph returns per candidate kept, for the estimator to rank.
    pool: int = codescan.DEFAULT_POOL


def add_batch_rows(row_bytes: int) -> int:
    """Rows per graph ``add`` call: about 512 KiB of codes, a power of two from 1,024 to 65,536.

    Smaller than the tables' 32 MiB batches because the graph cannot start before the first
    batch is decoded: Parquet decodes fixed-size lists at 50-150 MB/s on this machine. SIFT's
    int8 codes (128 bytes a row, widened to INT32 in the file) took 0.1-0.15 s for a 2 MiB
    first batch, longer than usearch takes to import (about 0.07 s), and 0.02-0.03 s for
    512 KiB, which is then ready first. Later batches are decoded on the prefetch thread while
    usearch adds the previous one; a batch costs the loop about 1 ms besides its ``add``.
    """
    from vecx.formats.source import batch_rows_for

    return batch_rows_for(row_bytes, 512 << 10)


def _open_table(path: str) -> Any:
    from vecx.formats.readers import open_source

    source = open_source(path)
    if not source.is_vecx:
        raise UsageError(f"{path}: not a vecx table; run 'vecx import' (or a codec) on it first")
    return source


class _RowsWriter:
    """rows.parquet (id + payload), written in row groups of the table's own batch size
    however small the batches it is handed."""

    def __init__(self, path: str, schema: Any, group_rows: int) -> None:
        self.writer = pq.ParquetWriter(path, schema, compression="snappy", write_page_checksum=True)
        self.schema, self.group_rows = schema, group_rows
        self.pending: list[Any] = []
        self.rows = 0

    def add(self, columns: list[Any]) -> None:
        self.pending.append(pa.Table.from_arrays(columns, schema=self.schema))
        self.rows += len(columns[0])
        if self.rows >= self.group_rows:
            self._flush(self.rows - self.rows % self.group_rows)

    def _flush(self, rows: int) -> None:
        """Write the first ``rows`` pending rows; the rest stay pending."""
        pending = pa.concat_tables(self.pending)
        if rows:
            self.writer.write_table(pending.slice(0, rows), row_group_size=self.group_rows)
        self.pending, self.rows = [pending.slice(rows)], self.rows - rows

    def close(self) -> None:
        if self.rows:
            self._flush(self.rows)
        self.writer.close()


def _scorer(chain: Chain, source: Any, where: str) -> Any:
    """The fitted last stage of a table whose codes only their codec can score (PQ, RaBitQ)."""
    stage = chain.stages[-1] if chain.stages else None
    if stage is None or not stage.scores_codes:
        raise MismatchError(f"{where}: holds {source.space.dtype} codes but no stage that can score them")
    return stage


def build(table: str, output: str, *, rescore: str | None = None, options: BuildOptions | None = None,
          progress: Any = None, wait: bool = True, on_wait: Any = None) -> dict[str, Any]:
    """Build the index directory ``output`` from an encoded vector table (and optional rescoring table).

    The table's chain and fitted state are checked (as ``encode`` checks them) before anything
    is written. Concurrent builds of one index take turns on its writer lock (``wait=False``:
    a :class:`~vecx.errors.BusyError` instead); ``on_wait(pid)`` is called once if this one waits.
    """
    from dataclasses import replace

    from vecx.formats import metadata as md
    from vecx.formats.source import batch_rows_for, check_payload_names

    options = options or BuildOptions()
    source = _open_table(table)
    space = source.space
    if space.multi:  # issue 6
        raise UsageError(f"{table}: holds a set of vectors per row; a graph indexes one vector per row",
                         hint="encode it first, e.g. 'vecx muvera' (then --rescore with this table)")
    # Read in add-sized batches (the option is read when batches() starts).
    source.options = replace(source.options, batch_rows=add_batch_rows(max(1, space.bytes_per_vector)))
    source_block = source.meta.get("source") or {}
    check_payload_names(source)  # a table from before the names were reserved: its payload would overwrite results
    # Checked as encode checks it (known stages, state hashes, an output that matches the stored
    # vectors): a table that would make an index no query can use is refused before any write.
    chain = Chain.from_table(source.meta, source.state_blob, table)
    scorer = _scorer(chain, source, table) if space.dtype == CODES else None
    nav = scorer.navigation(np.zeros((1, space.bytes_per_vector), dtype=np.uint8)) if scorer else None
    if scorer is not None:
        codescan.check_scan(options.scan)
        if options.scan == "graph" and nav is None:
            raise UsageError(f"{table}: --scan graph: {scorer.name} codes offer nothing a graph can navigate",
                             hint="use --scan exhaustive (the default for these codes)")
        # auto: a navigation graph only where scoring every code per query would cost too much.
        if options.scan == "exhaustive" or (options.scan == "auto" and source.rows is not None
                                            and source.rows <= codescan.AUTO_GRAPH_ROWS):
            nav = None
        metric = "hamming" if nav is not None else scorer.output.metric
    else:
        metric = graph_metric(space, bool(source_block.get("normalized")))
    rescore_src = _check_rescore(rescore, source) if rescore else None
    with store.Writer(output, wait=wait, on_wait=on_wait) as writer:
        version = writer.path
        codes_writer = None
        # The float rescoring copy is read and written on its own thread while the graph is built:
        # usearch's add releases the GIL, and Parquet decoding and page writes then fill its idle time.
        copier = (_RescoreCopier(rescore_src, version, source.rows)
                  if rescore_src is not None and not rescore_src.multi and source.rows else None)
        batches = None
        try:
            if copier is not None:
                copier.start()
            # Decoding starts now and the next batch is decoded while this one is added (depth 1:
            # one batch of memory); the first is ready by the time usearch has imported (0.2 s).
            batches = prefetch(source.batches(), depth=1)
            from usearch.index import Index

            graph = None
            if scorer is None or nav is not None:
                graph_dtype, graph_dim = (USEARCH_DTYPES[nav[0]], nav[1]) if nav else (USEARCH_DTYPES[space.dtype], space.dim)
                graph = Index(ndim=graph_dim, metric=metric, dtype=graph_dtype,
                              connectivity=options.connectivity, expansion_add=options.expansion_add,
                              expansion_search=options.expansion_search)
            codes_writer = codescan.CodesWriter(version, space.bytes_per_vector) if scorer else None
            rows_schema = pa.schema([pa.field("id", source.id_type, nullable=False), *source.payload_fields])
            rows_writer = _RowsWriter(os.path.join(version, "rows.parquet"), rows_schema,
                                      batch_rows_for(max(1, space.bytes_per_vector)))
            id_writer = rowids.IdWriter(version, source.id_type)
            threads = 1 if options.deterministic else 0
            if progress:
                progress.start(source.rows, "indexing")
            count = 0
            for batch in batches:
                keys = np.arange(batch.offset, batch.offset + len(batch), dtype=np.uint64)
                if codes_writer is not None:
                    codes_writer.add(batch.vectors)
                if nav is not None:
                    graph.add(keys, scorer.navigation(batch.vectors)[2], threads=threads)
                elif graph is not None:
                    graph.add(keys, np.ascontiguousarray(batch.vectors), threads=threads)
                columns = [batch.ids] + [batch.payload[f.name] for f in source.payload_fields]
                rows_writer.add(columns)
                id_writer.add(batch.ids)
                count += len(batch)
                if progress:
                    progress.advance(len(batch))
            rows_writer.close()
            id_writer.close()
            if progress:
                progress.close()
            if count == 0:
                raise DataError(f"{table}: no vectors to index (empty table)")
            if graph is not None:
                try:
                    graph.save(os.path.join(version, "graph.usearch"))
                except RuntimeError as exc:  # usearch reports a failed write without an errno
                    raise WriteError(f"{output}: cannot write graph.usearch ({_save_failure(version, graph, exc)})",
                                     hint="nothing was changed; free space or fix permissions, then rerun") from None
            codes_info = codes_writer.close() if codes_writer is not None else None
            with open(os.path.join(version, "table.json"), "wb") as handle:
                handle.write(md.dumps(source.meta))
            if source.state_blob:
                _write_state(source.state_blob, os.path.join(version, "state.npz"), table)
            if rescore_src is not None and rescore_src.multi:  # token vectors for exact MaxSim (issue 6)
                from vecx.indexes import multivector

                rescore_info = multivector.write_rescore(rescore_src, version, count, options)
            elif copier is not None:
                rescore_info = copier.finish(count)
            else:
                rescore_info = _write_rescore(rescore_src, version, count) if rescore_src else None
            writer.commit({
                "rows": count, "columns": [f.name for f in source.payload_fields], "ids": id_writer.kind,
                "table": {"fingerprint": source.meta.get("fingerprint"), "spec": source.meta.get("spec")},
                "graph": {"file": "graph.usearch" if graph is not None else None, "metric": metric,
                          "dtype": graph_dtype if graph is not None else CODES,
                          "ndim": graph_dim if graph is not None else space.dim, "connectivity": options.connectivity,
                          "expansion_add": options.expansion_add, "expansion_search": options.expansion_search,
                          "deterministic": options.deterministic, "threads": "1" if options.deterministic else "all"},
                "bytes_per_vector": space.bytes_per_vector,
                "rescore": rescore_info,
                "codes": None if codes_info is None else {
                    **codes_info, "codec": scorer.name, "spec": scorer.spec, "metric": scorer.output.metric,
                    "navigation": nav is not None},
                "search": {"oversample": options.oversample if rescore_info else 1,
                           **({"scan": "graph" if nav is not None else "exhaustive", "pool": options.pool}
                              if scorer is not None else
                              {"scan": "exhaustive" if options.scan == "exhaustive" else "graph"})},
            }, known={"rescore.npy": copier.checksum} if copier is not None and copier.checksum else None)
        except BaseException as exc:
            if batches is not None:
                batches.close()
            if copier is not None:
                copier.cancel()
            if codes_writer is not None:
                codes_writer.handle.close()
            if isinstance(exc, OSError):
                raise write_failure(output, exc) from None
            if isinstance(exc, RuntimeError) and "terminated" in str(exc):
                raise KeyboardInterrupt from None  # usearch's own word for an add stopped by a signal
            raise
    _, manifest = store.open_version(output)
    return manifest


def _save_failure(directory: str, graph: Any, exc: Exception) -> str:
    """Why usearch could not save a graph: a full disk if the free space says so, else its own words."""
    try:
        free = os.statvfs(directory)
        if free.f_bavail * free.f_frsize < max(graph.serialized_length, 1 << 16):
            return "no space left on device"
    except (OSError, AttributeError):
        pass
    return str(exc)


def _check_rescore(path: str, codes: Any) -> Any:
    """Open the rescoring table and check it holds the same rows (same source) in float."""
    src = _open_table(path)
    Chain.from_table(src.meta, src.state_blob, path)
    mine, theirs = (codes.meta.get("source") or {}), (src.meta.get("source") or {})
    if mine.get("fingerprint") != theirs.get("fingerprint"):
        raise MismatchError(f"{path}: rescoring vectors come from other data (source fingerprint "
                            f"{str(theirs.get('fingerprint'))[:12]} vs {str(mine.get('fingerprint'))[:12]})",
                            hint="give the table the codes were made from (or any float encoding of it)")
    if src.space.dtype not in ("float32", "float16") or src.space.metric_on != "codes":
        raise UsageError(f"{path}: rescoring needs float32/float16 vectors, not {src.space.dtype}")
    return src


class _RescoreCopier:
    """:func:`_write_rescore` on a thread of its own; :meth:`finish` joins it and re-raises its error."""

    def __init__(self, src: Any, version: str, rows: int) -> None:
        import threading

        self.src, self.version, self.rows = src, version, rows
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.info: dict[str, Any] | None = None
        self.checksum: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._run, name="vecx-rescore", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            self.info = _write_rescore(self.src, self.version, self.rows, self.stop)
            if self.info is not None:  # the manifest's checksum too, while the graph is still building
                path = os.path.join(self.version, "rescore.npy")
                self.checksum = {"bytes": os.path.getsize(path), "sha256": store.sha256_file(path)}
        except BaseException as exc:  # handed to the building thread by finish()
            self.error = exc

    def finish(self, count: int) -> dict[str, Any] | None:
        self.thread.join()
        if self.error is not None:
            raise self.error
        if count != self.rows:  # the codes table held other rows than its metadata said (damaged)
            raise MismatchError(f"the codes table holds {count} rows but its metadata says {self.rows}; "
                                f"rescoring vectors for {self.rows} were copied from {self.src.path}",
                                hint="re-create the codes table")
        return self.info

    def cancel(self) -> None:
        """Stop after the current batch and wait, so that nothing writes into an aborted version."""
        self.stop.set()
        self.thread.join()


def _write_rescore(src: Any, version: str, rows: int, stop: Any = None) -> dict[str, Any] | None:
    """Stream the rescoring vectors into ``rescore.npy`` (memory-mappable) and describe them."""
    from vecx.formats.npyfile import NpyWriter

    dtype = np.float16 if src.space.dtype == "float16" else np.float32
    out = NpyWriter(os.path.join(version, "rescore.npy"), dtype, (rows, src.dim))
    filled = 0
    try:
        for batch in src.batches():
            if stop is not None and stop.is_set():
                return None
            filled += len(batch)
            if filled > rows:
                break  # more rows than the codes
            out.write(batch.vectors)
    finally:
        out.close()
    if filled != rows:
        raise MismatchError(f"{src.path}: has {'more' if filled > rows else filled} rows, the codes {rows}")
    with open(os.path.join(version, "rescore.json"), "w", encoding="utf-8") as handle:
        json.dump(src.meta, handle, sort_keys=True)
    if src.state_blob:
        _write_state(src.state_blob, os.path.join(version, "rescore.state.npz"), src.path)
    return {"file": "rescore.npy", "dtype": src.space.dtype, "dim": src.dim, "metric": src.space.metric,
            "spec": src.meta.get("spec"), "fingerprint": src.meta.get("fingerprint")}


def _write_state(blob: bytes, path: str, where: str) -> None:
    """Store a table's fitted chain state in the index as .npz, which queries load without pyarrow."""
    from vecx.formats import state

    state.write_npz(path, state.unpack(blob, where)[1])


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


#: usearch's names of the graph scalar kinds, as the manifest records them.
_GRAPH_KINDS = {"f32": "F32", "f16": "F16", "i8": "I8", "b1": "B1"}


def open_graph(graph_file: str, where: str, rows: int, ndim: int, dtype: str) -> Any:
    """Open a graph as a memory-mapped view after checking its header against the manifest.

    usearch trusts its file: a damaged header or tail can make it allocate without bound or
    read past the map, so the header's counts, dimensions and scalar kind are checked first.
    """
    from usearch.index import Index

    try:
        head = Index.metadata(graph_file)
    except Exception as exc:  # noqa: BLE001 - usearch raises plain RuntimeError/ValueError
        raise DataError(f"{where}: graph.usearch has a damaged header ({exc})", hint="rebuild the index") from None
    kind = getattr(head.get("kind_scalar") if head else None, "name", None)
    if not head or head.get("count_present") != rows or head.get("dimensions") != ndim \
            or head.get("count_deleted") or kind != _GRAPH_KINDS.get(dtype, kind):
        raise DataError(f"{where}: graph.usearch does not match the manifest ({rows} rows of {ndim}-d {dtype}): "
                        "damaged or replaced", hint="rebuild the index")
    try:
        graph = Index.restore(graph_file, view=True)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{where}: graph.usearch cannot be opened ({exc})", hint="rebuild the index") from None
    if graph is None or len(graph) != rows:
        raise DataError(f"{where}: graph.usearch is damaged or holds a different number of rows",
                        hint="rebuild the index")
    return graph


class Searcher:
    """An opened index: encodes queries through its chain, searches the graph, rescores, looks up rows."""

    def __init__(self, path: str, *, verify: bool = False) -> None:
        self.path = path
        # Held while this searcher lives: no rebuild removes the version under it.
        self.version = store.open_reader(path, verify=verify)
        self.directory, self.manifest = self.version.directory, self.version.manifest
        self.chain = _load_chain(self.version, "table.json", "state", path)
        self.ids = rowids.open_ids(self.version)
        self.rows = int(self.manifest["rows"])
        self.scan = None  # codes scored by their codec (PQ, RaBitQ: indexes/codescan.py)
        #: ``exhaustive`` or ``graph`` for scored codes (``None``: the index's default).
        self.scan_choice: str | None = None
        codes_info = self.manifest.get("codes")
        if codes_info:
            if not self.chain.stages or not self.chain.stages[-1].scores_codes:
                raise DataError(f"{path}: the index holds scored codes but its chain has no stage to score them",
                                hint="rebuild the index")
            self.scan = codescan.CodeScan(self.directory, codes_info, self.chain.stages[-1], self.rows, path)
        self.graph = None
        graph_name = self.manifest["graph"].get("file", "graph.usearch")
        if graph_name:
            g = self.manifest["graph"]
            self.graph = open_graph(self.version.file(graph_name), path, self.rows, g["ndim"], g["dtype"])
            self.graph.expansion_search = int(g["expansion_search"])
        self.expansion_search = int(self.manifest["graph"]["expansion_search"])
        self.rescore_vectors = None
        self.rescore_chain: Chain | None = None
        self.multi_rescore = None  # token vectors for exact MaxSim (issue 6, indexes/multivector.py)
        self.first_stage = "fde"
        info = self.manifest.get("rescore")
        if info and info.get("multi"):
            from vecx.indexes.multivector import MultiRescore

            self.multi_rescore = MultiRescore(self.version, info, self.expansion_search)
            self.rescore_chain = Chain.from_table(read_json(self.version, "rescore.json"), None, path)
            self.rescore_metric = "maxsim"
        elif info:
            self.rescore_vectors = np.load(self.version.file(info["file"]), mmap_mode="r")
            if self.rescore_vectors.shape != (self.rows, info["dim"]):
                raise DataError(f"{path}: {info['file']} holds {self.rescore_vectors.shape} values, the manifest "
                                f"says {self.rows} x {info['dim']} (damaged)", hint="rebuild the index")
            self.rescore_chain = _load_chain(self.version, "rescore.json", "rescore.state", path)
            self.rescore_metric = info["metric"]

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
        from vecx.formats.source import too_large_rows

        if self.chain.input.multi:
            return check_query_sets(q, self.input_dim, where)
        if isinstance(q, MultiVectors):
            raise MismatchError(f"{where}: this index holds one vector per row; a query is one vector, "
                                "not a set of vectors", hint="give --vector FILE")
        q = np.asarray(q, dtype=np.float32)
        if q.ndim == 1:
            q = q.reshape(1, -1)
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

    def search(self, q: Any, k: int, *, oversample: int | None = None, expansion: int | None = None,
               allowed: Any = None, rescore: bool = True) -> tuple[Any, Any]:
        """Top-k rows and scores for raw queries (n x input dim). Missing results are row -1.

        ``allowed``: a boolean mask over the rows (a filter); results come only from those rows.
        ``rescore=False`` ranks by the graph's own distances even when rescoring vectors exist.
        """
        codes = self.chain.encode_query(q)
        use_rescore = rescore and self.rescore_chain is not None
        rescore_q = self.rescore_chain.encode_query(q) if use_rescore else None
        if self.first_stage != "fde":  # candidates from the mean-vector graph too (issue 6)
            from vecx.indexes.multivector import search_first_stage

            return search_first_stage(self, q, codes, rescore_q, k, oversample, expansion, allowed)
        return self._search(codes, rescore_q, k, oversample, expansion, None, allowed)

    def like(self, rows: Any, k: int, *, oversample: int | None = None, expansion: int | None = None,
             allowed: Any = None, rescore: bool = True) -> tuple[Any, Any]:
        """Neighbours of rows already in the index (each row itself excluded)."""
        rows = np.asarray(rows, dtype=np.int64)
        # Scored codes take float queries: the rows' decoded codes stand for them.
        codes = self.scan.query_of_rows(rows) if self.scan is not None else self.codes_of(rows)
        if self.multi_rescore is not None:  # the rows' own token sets (issue 6)
            rescore_q = self.multi_rescore.sets_of(rows) if rescore else None
            return self._search(codes, rescore_q, k, oversample, expansion, rows, allowed)
        use_rescore = rescore and self.rescore_vectors is not None
        rescore_q = np.asarray(self.rescore_vectors[rows], dtype=np.float32) if use_rescore else None
        return self._search(codes, rescore_q, k, oversample, expansion, rows, allowed)

    def codes_of(self, rows: Any) -> Any:
        """The stored codes of some rows."""
        if self.scan is not None:
            return np.asarray(self.scan.codes[np.asarray(rows, dtype=np.int64)])
        if not len(rows):
            return np.empty((0, self.graph.ndim))
        got = self.graph.get(np.asarray(rows, dtype=np.uint64))  # a tuple of vectors for many keys
        return np.stack(got) if isinstance(got, tuple) else np.atleast_2d(got)

    def _search(self, codes: Any, rescore_q: Any, k: int, oversample: int | None, expansion: int | None,
                exclude: Any, allowed: Any = None) -> tuple[Any, Any]:
        k = min(k, self.rows - (1 if exclude is not None else 0))
        factor = max(1, oversample if oversample is not None else int(self.manifest["search"]["oversample"]))
        if rescore_q is None:
            factor = 1
        extra = 1 if exclude is not None else 0
        if allowed is not None:
            return self._filtered(codes, rescore_q, k, factor, expansion, exclude, allowed)
        count = min(self.rows, k * factor + extra)
        keys, dist = self._graph_search(codes, count, expansion)
        if exclude is not None:
            keys = np.where(keys == np.asarray(exclude)[:, None], -1, keys)
        scores = self._rescore(rescore_q, keys) if rescore_q is not None else self._graph_scores(dist)
        return _top(keys, scores, k, lower_is_better=self._lower_is_better(rescore_q is not None))

    def _filtered(self, codes: Any, rescore_q: Any, k: int, factor: int, expansion: int | None,
                  exclude: Any, allowed: Any) -> tuple[Any, Any]:
        """Search restricted to ``allowed`` rows: the graph with extra oversampling when the filter
        keeps many rows, an exact scan over the matching rows when it keeps few, or when the graph
        returned fewer than k matching rows for a query (so a selective filter never returns too few)."""
        matching = np.flatnonzero(allowed)
        k = min(k, len(matching) - (1 if exclude is not None else 0))
        n = len(codes)
        if k <= 0:
            return np.full((n, 0), -1, dtype=np.int64), np.zeros((n, 0), dtype=np.float32)
        selectivity = len(matching) / self.rows
        if len(matching) <= EXACT_SCAN_ROWS or selectivity < 0.05:
            return self._exact(codes, rescore_q, matching, k, exclude)
        count = min(self.rows, int(np.ceil(k * factor / selectivity * 2)) + 1)
        keys, dist = self._graph_search(codes, count, expansion)
        keys = np.where((keys >= 0) & allowed[np.maximum(keys, 0)], keys, -1)
        if exclude is not None:
            keys = np.where(keys == np.asarray(exclude)[:, None], -1, keys)
        scores = self._rescore(rescore_q, keys) if rescore_q is not None else self._graph_scores(dist)
        rows, top_scores = _top(keys, scores, k, lower_is_better=self._lower_is_better(rescore_q is not None))
        short = np.flatnonzero((rows < 0).any(axis=1))
        if len(short):  # the graph found too few matching rows for these queries: scan them exactly
            sub_ex = None if exclude is None else np.asarray(exclude)[short]
            sub_rq = None if rescore_q is None else (rescore_q[short] if self.multi_rescore is not None
                                                     else np.asarray(rescore_q)[short])
            rows[short], top_scores[short] = self._exact(np.asarray(codes)[short], sub_rq, matching, k, sub_ex)
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
            return _top(rows, top_scores, k, lower_is_better=self.scan.lower_is_better)
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
                return _top(keys, scores, k, lower_is_better=True)
            if metric == "l2sq":
                scores = (q * q).sum(1)[:, None] - 2 * q @ stored.T + (stored * stored).sum(1)[None, :]
            else:
                if metric == "cos":
                    stored = stored / np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-30)
                    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
                scores = q @ stored.T
            scores = np.where(keys >= 0, scores, np.inf if metric == "l2sq" else -np.inf)
        return _top(keys, scores, k, lower_is_better=self._lower_is_better(rescore_q is not None))

    def _graph_search(self, codes: Any, count: int, expansion: int | None) -> tuple[Any, Any]:
        """Raw graph search: keys (row numbers, -1 where fewer found) and usearch distances.

        ``expansion`` overrides the index's search expansion for this call (never below ``count``).
        Indexes of scored codes return the codec's scores instead of distances: an exhaustive scan,
        or a pool of ``pool x count`` graph candidates ranked by the codec.
        """
        if self.scan is not None:
            return self._scan_search(codes, count, expansion)
        return _usearch(self.graph, codes, count, expansion, self.rows, exact=self.scan_mode == "exhaustive")

    @property
    def scan_mode(self) -> str:
        """How candidates are found: ``graph`` (HNSW), or ``exhaustive`` (every code: usearch's exact
        search over graph codes, the codec's scores over scored codes)."""
        default = "exhaustive" if self.scan is not None else "graph"
        return codescan.resolve_scan(self.scan_choice, self.manifest["search"].get("scan", default),
                                     self.graph is not None)

    def _scan_search(self, q: Any, count: int, expansion: int | None) -> tuple[Any, Any]:
        if self.scan_mode == "exhaustive":
            return self.scan.exhaustive(q, count)
        pool = min(self.rows, count * max(1, int(self.manifest["search"].get("pool", codescan.DEFAULT_POOL))))
        nav = self.scan.scorer.navigation(self.scan.scorer.encode(q))[2]  # the queries' own sign bits
        keys, _ = _usearch(self.graph, nav, pool, expansion, self.rows)
        return self.scan.rank(q, keys, count)

    def exact_codes(self, codes: Any, k: int) -> Any:
        """Rows of the exact top-k over the codes (no graph): what the encoding alone allows."""
        if self.scan is not None:
            return self.scan.exhaustive(codes, k)[0]
        return _usearch(self.graph, codes, k, None, self.rows, exact=True)[0]

    def _graph_scores(self, dist: Any) -> Any:
        """Scores from usearch distances: similarity for cos/ip, the distance itself for l2sq/hamming."""
        if self.scan is not None:  # already the codec's scores
            return dist
        return dist if self.manifest["graph"]["metric"] in ("l2sq", "hamming") else 1.0 - dist

    def _lower_is_better(self, rescored: bool) -> bool:
        if not rescored and self.scan is not None:
            return self.scan.lower_is_better
        metric = self.rescore_metric if rescored else self.manifest["graph"]["metric"]
        return metric in ("l2", "l2sq", "hamming")

    def _rescore(self, q: Any, keys: Any) -> Any:
        """Exact scores of candidates against the rescoring vectors (only those rows are read).

        Queries go in chunks so the gathered candidate vectors stay around 64 MiB.
        """
        if self.multi_rescore is not None:  # exact MaxSim over the stored token vectors (issue 6)
            return self.multi_rescore.scores(q, keys)
        chunk = max(1, (64 << 20) // max(1, keys.shape[1] * self.rescore_vectors.shape[1] * 4))
        if len(keys) > chunk:
            return np.concatenate([self._rescore(q[i: i + chunk], keys[i: i + chunk])
                                   for i in range(0, len(keys), chunk)])
        valid = keys >= 0
        flat = np.unique(keys[valid])
        vectors = np.asarray(self.rescore_vectors[flat], dtype=np.float32)
        position = np.searchsorted(flat, np.where(valid, keys, flat[0] if len(flat) else 0))
        cand = vectors[position]  # n x m x d
        q = np.asarray(q, dtype=np.float32)
        if self.rescore_metric == "l2":
            scores = ((cand - q[:, None, :]) ** 2).sum(-1)
            return np.where(valid, scores, np.inf)
        if self.rescore_metric == "cosine":
            cand = cand / np.maximum(np.linalg.norm(cand, axis=-1, keepdims=True), 1e-30)
            q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-30)
        scores = np.einsum("nmd,nd->nm", cand, q)
        return np.where(valid, scores, -np.inf)

    def row_of(self, ids: list[Any]) -> Any:
        """Row numbers of ids (a :class:`DataError` for an id not in the index)."""
        if self.ids is not None:
            found = [self.ids.row_of(value) for value in ids]
            for value, index in zip(ids, found):
                if index < 0:
                    raise DataError(f"{self.path}: no item with id {value!r}")
            return np.asarray(found, dtype=np.int64)
        table = self.rows_table(["id"])
        column = table["id"].combine_chunks()
        out = []
        for value in ids:
            try:
                scalar = pa.scalar(value, column.type) if not isinstance(value, str) or pa.types.is_string(column.type) \
                    else pa.scalar(int(value), column.type)
            except (ValueError, pa.ArrowInvalid, pa.ArrowTypeError):
                raise DataError(f"{self.path}: no item with id {value!r}") from None
            index = pa.compute.index(column, scalar).as_py()
            if index < 0:
                raise DataError(f"{self.path}: no item with id {value!r}")
            out.append(index)
        return np.asarray(out, dtype=np.int64)

    def rows_table(self, columns: list[str] | None = None) -> Any:
        """The id and payload columns (only those asked for)."""
        import pyarrow.compute  # noqa: F401 - registers pa.compute

        return pq.read_table(os.path.join(self.directory, "rows.parquet"), columns=columns)

    def lookup(self, rows: Any, columns: list[str]) -> list[dict[str, Any]]:
        """The given columns of some rows, reading only the row groups that hold them."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return []
        if columns == ["id"] and self.ids is not None:
            return [{"id": value} for value in self.ids.ids(rows)]
        parquet = pq.ParquetFile(os.path.join(self.directory, "rows.parquet"))
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

    def payload_names(self) -> list[str]:
        """Names of the payload columns."""
        if "columns" in self.manifest:
            return list(self.manifest["columns"])
        return [n for n in pq.read_schema(os.path.join(self.directory, "rows.parquet")).names if n != "id"]


def _usearch(graph: Any, queries: Any, count: int, expansion: int | None, rows: int,
             exact: bool = False) -> tuple[Any, Any]:
    """One usearch search: keys (row numbers, -1 where fewer found) and distances, queries x count.

    ``expansion`` overrides the graph's search expansion for this call (never below ``count``);
    ``exact`` compares every stored vector instead of walking the graph.
    """
    saved = graph.expansion_search
    graph.expansion_search = max(expansion or saved, count)
    # Asked for every row: an exact scan, since HNSW does not promise to reach them all.
    try:
        matches = graph.search(np.ascontiguousarray(queries), count, threads=0, exact=exact or count >= rows)
    except RuntimeError as exc:  # usearch trusts its file: damage in a node shows up only here
        raise DataError(f"the index graph is damaged (usearch: {exc})",
                        hint="check it with 'vecx verify INDEX', then rebuild it") from None
    finally:
        graph.expansion_search = saved
    keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(queries), -1)
    dist = np.asarray(matches.distances, dtype=np.float32).reshape(len(queries), -1)
    counts = np.asarray(getattr(matches, "counts", [len(matches.keys)])).reshape(-1, 1)  # one query: Matches
    found = counts > np.arange(keys.shape[1])[None, :]
    return np.where(found, keys, -1), dist


def _top(keys: Any, scores: Any, k: int, lower_is_better: bool) -> tuple[Any, Any]:
    order_key = scores if lower_is_better else -scores
    order_key = np.where(keys >= 0, order_key, np.inf)
    order = np.lexsort((keys, order_key), axis=1)[:, :k]
    return np.take_along_axis(keys, order, axis=1), np.take_along_axis(scores, order, axis=1)
