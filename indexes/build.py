"""Build an index: a usearch graph (or a file of scored codes) over an encoded vector table,
the rows' ids and payload, and optionally the float vectors that rescore candidates exactly.

The index is a versioned directory (:mod:`vecx.indexes.store`): a build writes a new version
beside the current one and commits it with one rename, so readers never see half an index.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx._prefetch import prefetch
from vecx.chain import Chain
from vecx.errors import DataError, MismatchError, UsageError
from vecx.formats.tempfiles import write_failure
from vecx.indexes import codescan, rowids, store
from vecx.indexes.graph import USEARCH_DTYPES, add_batch_rows, graph_metric, new_graph, save_graph
from vecx.space import CODES

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")

DEFAULT_OVERSAMPLE = 4


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
            graph = None
            if scorer is None or nav is not None:
                graph_dtype, graph_dim = (USEARCH_DTYPES[nav[0]], nav[1]) if nav else (USEARCH_DTYPES[space.dtype], space.dim)
                graph = new_graph(graph_dim, metric, graph_dtype, options)
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
                save_graph(graph, version, output)
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


