"""Build an index: a usearch graph (or a file of scored codes) over an encoded vector table,
the rows' ids and payload, and optionally the float vectors that rescore candidates exactly.

The index is a versioned directory (:mod:`vecx.indexes.store`): a build writes a new version
beside the current one and commits it with one rename, so readers never see half an index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx._prefetch import prefetch
from vecx.chain import Chain, space_model
from vecx.errors import DataError, MismatchError, UsageError
from vecx.formats.tempfiles import write_failure
from vecx.indexes import codescan, order, rowids, store
from vecx.indexes.graph import GRAPH_FILE, USEARCH_DTYPES, add_batch_rows, graph_metric, new_graph, save_graph
from vecx.indexes.rescoring import MAX_REFINE, default_factors, refine_name, stage_factors
from vecx.space import CODES, VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")


@dataclass
class BuildOptions:
    """Graph parameters (usearch names; the HNSW paper's M is ``connectivity``)."""

    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 64
    #: Default rescoring factors: one for every rescoring stage (indexes/rescoring.py), or the first
    #: stages' (``None``: :func:`vecx.indexes.rescoring.default_factors` of the stage count).
    oversample: int | tuple[int, ...] | None = None
    deterministic: bool = False
    #: Codes scored by their codec (PQ, RaBitQ): ``auto``, ``exhaustive`` or ``graph`` (indexes/codescan.py).
    scan: str = "auto"
    #: ``graph`` scan: candidates the graph returns per candidate kept, for the estimator to rank.
    pool: int = codescan.DEFAULT_POOL
    #: ``ivf`` scan (codes in coarse lists): lists probed per query by default.
    nprobe: int = codescan.DEFAULT_NPROBE
    #: Bits each query of RaBitQ codes is rounded to per coordinate by default (0: not rounded).
    query_bits: int = 0
    #: The order rows enter the graph: ``auto``, ``input``, ``random`` or ``lid`` (indexes/order.py).
    order: str = "auto"


def open_table(path: str) -> Any:
    """An encoded vector table (a :class:`UsageError` for anything vecx did not write)."""
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


def build(table: str, output: str, *, rescore: str | None = None, refine: Sequence[str] = (),
          options: BuildOptions | None = None, progress: Any = None, wait: bool = True, on_wait: Any = None,
          before_commit: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build the index directory ``output`` from an encoded vector table (and optional rescoring table).

    The table's chain and fitted state are checked (as ``encode`` checks them) before anything
    is written. ``refine``: rescoring tables applied before ``rescore``, each narrowing the
    candidates for the next (:mod:`vecx.indexes.rescoring`). Concurrent builds of one index take
    turns on its writer lock (``wait=False``: a :class:`~vecx.errors.BusyError` instead);
    ``on_wait(pid)`` is called once if this one waits.
    ``before_commit(version_dir)`` sees the written files before they become the index: an error it
    raises leaves the previous index as it was (``vecx index --budget`` checks the memory there).
    """
    options = options or BuildOptions()
    plan = plan_build(table, rescore, options, refine)
    with store.Writer(output, wait=wait, on_wait=on_wait) as writer:
        version = writer.path
        assert version is not None, "the writer's version directory exists inside its with block"
        manifest, known = Build(plan, version, output, options).written(progress)
        if before_commit is not None:
            before_commit(version)
        writer.commit(manifest, known=known)
    _, manifest = store.open_version(output)
    return manifest


@dataclass
class Plan:
    """What a build makes of a table, decided (and checked) before anything is written."""

    #: The table's path, as the user gave it (for messages).
    table: str
    #: The opened table (a vecx table, read in batches of :func:`add_batch_rows` rows).
    source: Any
    space: VectorSpec
    #: The fitted last stage that scores the codes (PQ, RaBitQ), or ``None``: a graph searches the codes.
    scorer: Any
    #: Scored codes' navigable part, as ``Codec.navigation`` describes it for a sample row ``(dtype, dim,
    #: array)``, when a graph is built over it; else ``None``.
    nav: tuple[str, int, Any] | None
    #: The graph's metric (for scored codes without a graph: the codec's own metric).
    metric: str
    #: The opened rescoring table, if any.
    rescore_src: Any
    #: The opened rescoring tables of the stages before ``rescore_src``, in the order they run.
    refine_srcs: tuple[Any, ...] = ()

    @property
    def graph_shape(self) -> tuple[str, int] | None:
        """The usearch scalar kind and dimension of the graph to build; ``None`` when the codes are only scanned."""
        if self.scorer is not None and self.nav is None:
            return None
        if self.nav:
            return USEARCH_DTYPES[self.nav[0]], self.nav[1]
        return USEARCH_DTYPES[self.space.dtype], self.space.dim


def plan_build(table: str, rescore: str | None, options: BuildOptions, refine: Sequence[str] = ()) -> Plan:
    """Opens and checks the table (and rescoring table), and chooses the scorer, navigation graph and metric.

    Everything that can refuse a build happens here, before the index's writer lock is taken.
    """
    from dataclasses import replace

    from vecx.formats.source import check_payload_names

    source = open_table(table)
    space = source.space
    if space.multi:
        raise UsageError(f"{table}: holds a set of vectors per row; a graph indexes one vector per row",
                         hint="encode it first, e.g. 'vecx muvera' (then --rescore-vectors with this table)")
    # Read in add-sized batches (the option is read when batches() starts).
    source.options = replace(source.options, batch_rows=add_batch_rows(max(1, space.bytes_per_vector)))
    source_block = source.meta.get("source") or {}
    check_payload_names(source)  # a table from before the names were reserved: its payload would overwrite results
    # Checked as encode checks it (known stages, state hashes, an output that matches the stored
    # vectors): a table that would make an index no query can use is refused before any write.
    chain = Chain.from_table(source.meta, source.state_blob, table)
    scores = space.dtype == CODES or bool(chain.stages and chain.stages[-1].scores_codes)
    scorer = _scorer(chain, source, table) if scores else None
    nav = scorer.navigation(np.zeros((1, space.bytes_per_vector), dtype=np.uint8)) if scorer else None
    codescan.check_query_bits(options.query_bits, scorer)
    if scorer is not None:
        nav = _navigation(scorer, nav, source.rows, options, table)
        metric = scorer.navigation_metric if nav is not None else scorer.output.metric
    else:
        metric = graph_metric(space, bool(source_block.get("normalized")))
    rescore_src = check_rescore(rescore, source) if rescore else None
    plan = Plan(table, source, space, scorer, nav, metric, rescore_src, check_refine(refine, rescore_src, source))
    stage_factors(options.oversample, default_factors(1 + len(refine)))  # one factor per stage at most
    if order.check_order(options.order) not in ("auto", "input") and plan.graph_shape is None:
        raise UsageError(f"--order {options.order}: {table}'s codes are scanned, not inserted into a graph",
                         hint="leave out --order, or build a graph over them with --scan graph")
    return plan


def _navigation(scorer: Any, nav: tuple[str, int, Any] | None, rows: int | None, options: BuildOptions,
                table: str) -> tuple[str, int, Any] | None:
    """The navigable part of scored codes to build a graph over, as ``--scan`` asks; ``None``: scan only.

    ``auto`` builds a navigation graph only where scoring every code per query would cost too
    much (more than the codec's ``scan_rows``: :data:`~vecx.indexes.codescan.AUTO_GRAPH_ROWS` rows of
    PQ or RaBitQ codes, fewer of the wider int8 codes).
    """
    codescan.check_scan(options.scan)
    if options.scan == "ivf":
        if not getattr(scorer, "lists", 0):
            raise UsageError(f"{table}: --scan ivf: these {scorer.name} codes are not in coarse lists",
                             hint="encode them with a list count, e.g. --spec pq:24x8:ivf=512")
        return None
    if options.scan == "graph" and nav is None:
        raise UsageError(f"{table}: --scan graph: {scorer.name} codes offer nothing a graph can navigate",
                         hint="use --scan exhaustive (the default for these codes)")
    if options.scan == "exhaustive" or (options.scan == "auto" and rows is not None
                                        and rows <= getattr(scorer, "scan_rows", codescan.AUTO_GRAPH_ROWS)):
        return None
    return nav


class Build:
    """Writing one planned index into a new version directory: the add loop, the side files, the manifest.

    Keeps the threads and open files it starts, so that :meth:`stop` can end them all when the
    build fails and the version is thrown away.
    """

    def __init__(self, plan: Plan, version: str, output: str, options: BuildOptions, first_key: int = 0) -> None:
        self.plan, self.version, self.output, self.options = plan, version, output, options
        #: The graph key of the first row: a segment's graphs are keyed by the index's row numbers.
        self.first_key = first_key
        rescore_src, rows = plan.rescore_src, plan.source.rows
        # The float rescoring copy is read and written on its own thread while the graph is built:
        # usearch's add releases the GIL, and Parquet decoding and page writes then fill its idle time.
        self.copier = (_RescoreCopier(rescore_src, version, rows)
                       if rescore_src is not None and not rescore_src.multi and rows else None)
        self.batches: Any = None
        self.codes_writer: codescan.CodesWriter | None = None
        #: The graph's vectors kept for ordering them or estimating their LID (see :meth:`_keep`).
        self.kept: list[Any] = []
        #: The rows kept when only a sample is (``None``: every row).
        self.keep_rows: Any = None
        #: The set's LID estimate, for the manifest's ``graph`` section.
        self.lid: dict[str, Any] | None = None
        shape = plan.graph_shape
        #: The order rows enter the graph (``auto`` resolved); ``input`` when there is none.
        self.order = "input" if shape is None else order.resolve(options.order, shape[0], options.deterministic)

    def write(self, progress: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]] | None]:
        """Writes every file of the version; returns the manifest to commit and the checksums already known."""
        plan = self.plan
        if self.copier is not None:
            self.copier.start()
        # Decoding starts now and the next batch is decoded while this one is added (depth 1:
        # one batch of memory); the first is ready by the time usearch has imported.
        self.batches = prefetch(plan.source.batches(), depth=1)
        shape = plan.graph_shape
        graph = None if shape is None else new_graph(shape[1], plan.metric, shape[0], self.options)
        self.codes_writer = codescan.CodesWriter(self.version, plan.space.bytes_per_vector) if plan.scorer else None
        count, id_kind = self._add_rows(graph, progress)
        if count == 0:
            raise DataError(f"{plan.table}: no vectors to index (empty table)")
        if graph is not None:
            self._finish_graph(graph, count, progress)
            save_graph(graph, self.version, self.output)
        codes_info = self.codes_writer.close() if self.codes_writer is not None else None
        rescore_info = self._write_side_files(count)
        refine_info = [_write_rescore(src, self.version, count, name=refine_name(number))
                       for number, src in enumerate(plan.refine_srcs, start=1)]
        table = {"fingerprint": plan.source.meta.get("fingerprint"), "spec": plan.source.meta.get("spec")}
        model = (plan.source.meta.get("source") or {}).get("model")
        if model:  # the embedding model named at import (vecx import --model)
            table["model"] = model
        target = space_model(model, plan.source.meta.get("stages") or [])
        if target and target != model:  # an align stage mapped the vectors into another model's space
            table["space_model"] = target
        manifest = {
            "rows": count, "columns": [f.name for f in plan.source.payload_fields], "ids": id_kind,
            "table": table,
            "graph": self._graph_section(),
            "bytes_per_vector": plan.space.bytes_per_vector,
            "rescore": rescore_info,
            **({"refine": refine_info} if refine_info else {}),
            "codes": self._codes_section(codes_info),
            "search": self._search_section(rescore_info),
        }
        copier = self.copier
        return manifest, {"rescore.npy": copier.checksum} if copier is not None and copier.checksum else None

    def written(self, progress: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]] | None]:
        """:meth:`write`; after a failure, :meth:`stop` first, and the error as users get it: an OS error
        as a write failure naming the index, usearch's stop on a signal as the interrupt it was."""
        try:
            return self.write(progress)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, OSError):
                raise write_failure(self.output, exc) from None
            if isinstance(exc, RuntimeError) and "terminated" in str(exc):
                raise KeyboardInterrupt from None  # usearch's own word for an add stopped by a signal
            raise

    def _add_rows(self, graph: Any, progress: Any) -> tuple[int, str | None]:
        """Feeds every batch to the graph (or the codes file), rows.parquet and the id files.

        Returns the number of rows and the kind of id files written (see :class:`~vecx.indexes.rowids.IdWriter`).
        """
        from vecx.formats.source import batch_rows_for

        source, space = self.plan.source, self.plan.space
        rows_schema = pa.schema([pa.field("id", source.id_type, nullable=False), *source.payload_fields])
        rows_writer = _RowsWriter(os.path.join(self.version, "rows.parquet"), rows_schema,
                                  batch_rows_for(max(1, space.bytes_per_vector)))
        id_writer = rowids.IdWriter(self.version, source.id_type)
        threads = 1 if self.options.deterministic else 0
        shape = self.plan.graph_shape
        if shape is not None and self.order == "input" and source.rows:
            # Only the LID estimate's sample is kept; the rows go into the graph as they come.
            self.keep_rows = order.estimate_rows(source.rows, shape[1])
        if progress:
            progress.start(source.rows, "indexing" if self.order == "input" or shape is None else "reading")
        count = 0
        for batch in self.batches:
            self._add_vectors(batch, graph, threads)
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
        if source.rows is not None and count != source.rows:
            raise MismatchError(f"{self.plan.table}: holds {count:,} rows, its metadata says {source.rows:,}",
                                hint="re-create it with vecx")
        return count, id_writer.kind

    def _add_vectors(self, batch: Any, graph: Any, threads: int) -> None:
        """One batch's codes into the codes file (scored codes) and its vectors into the graph, if any.

        The graph over scored codes holds their navigable part (RaBitQ: the sign bits).
        """
        start = self.first_key + batch.offset
        keys = np.arange(start, start + len(batch), dtype=np.uint64)
        if self.codes_writer is not None:
            self.codes_writer.add(batch.vectors)
        if graph is not None:
            vectors = (self.plan.scorer.navigation(batch.vectors)[2] if self.plan.nav is not None
                       else np.ascontiguousarray(batch.vectors))
            self._keep(batch.offset, vectors)
            if self.order == "input":
                graph.add(keys, vectors, threads=threads)

    def _keep(self, offset: int, vectors: Any) -> None:
        """Keep a batch's graph vectors: all of them for another order than the input's (in one array of
        the table's rows, when their number is known: no second copy to join), else the rows of the
        LID estimate's sample (none when the table's row count was not known in advance)."""
        rows = self.plan.source.rows
        if self.order != "input":
            if not rows or offset + len(vectors) > rows:  # rows unknown, or more than the metadata said
                self.kept.append(vectors.copy())
                return
            if not self.kept:
                self.kept.append(np.empty((rows, vectors.shape[1]), dtype=vectors.dtype))
            self.kept[0][offset: offset + len(vectors)] = vectors
        elif self.keep_rows is not None:
            lo, hi = np.searchsorted(self.keep_rows, [offset, offset + len(vectors)])
            if hi > lo:
                self.kept.append(vectors[self.keep_rows[lo:hi] - offset])

    def _finish_graph(self, graph: Any, count: int, progress: Any) -> None:
        """The LID estimate; for another order than the input's, every row into the graph in that order."""
        metric, threads = self.plan.metric, 1 if self.options.deterministic else 0
        if self.order == "input":
            if self.keep_rows is not None and self.kept and count == self.plan.source.rows:
                self.lid = order.sampled_summary(np.concatenate(self.kept), count, metric)
            return
        vectors = self.kept[0] if len(self.kept) == 1 else np.concatenate(self.kept)
        self.kept = []
        rows, self.lid = order.insertion_order(self.order, vectors, metric)
        step = add_batch_rows(max(1, vectors.shape[1] * vectors.itemsize))
        if progress:
            progress.start(count, "indexing")
        for lo in range(0, count, step):
            part = rows[lo: lo + step]
            # In order, batch after batch: only the rows of one batch are added side by side.
            graph.add((part + self.first_key).astype(np.uint64), vectors[part], threads=threads)
            if progress:
                progress.advance(len(part))
        if progress:
            progress.close()

    def _write_side_files(self, count: int) -> dict[str, Any] | None:
        """table.json, the fitted state and the rescoring vectors; the manifest's ``rescore`` section."""
        from vecx.formats import metadata as md

        source, rescore_src = self.plan.source, self.plan.rescore_src
        with open(os.path.join(self.version, "table.json"), "wb") as handle:
            handle.write(md.dumps(source.meta))
        if source.state_blob:
            _write_state(source.state_blob, os.path.join(self.version, "state.npz"), self.plan.table)
        if rescore_src is not None and rescore_src.multi:  # token vectors for exact MaxSim
            from vecx.indexes import multivector

            return multivector.write_rescore(rescore_src, self.version, count, self.options, self.first_key)
        if self.copier is not None:
            return self.copier.finish(count)
        return _write_rescore(rescore_src, self.version, count) if rescore_src else None

    def _graph_section(self) -> dict[str, Any]:
        """The manifest's ``graph`` section: the graph file and the parameters it was built with."""
        shape, options = self.plan.graph_shape, self.options
        return {"file": GRAPH_FILE if shape is not None else None, "metric": self.plan.metric,
                "dtype": shape[0] if shape is not None else CODES,
                "ndim": shape[1] if shape is not None else self.plan.space.dim,
                "connectivity": options.connectivity,
                "expansion_add": options.expansion_add, "expansion_search": options.expansion_search,
                "deterministic": options.deterministic, "threads": "1" if options.deterministic else "all",
                **({"order": self.order} if shape is not None else {}),
                **({"lid": self.lid} if self.lid else {})}

    def _codes_section(self, codes_info: dict[str, Any] | None) -> dict[str, Any] | None:
        """The manifest's ``codes`` section (scored codes only): the codes file and the codec that scores it."""
        scorer = self.plan.scorer
        return None if codes_info is None else {
            **codes_info, "codec": scorer.name, "spec": scorer.spec, "metric": scorer.output.metric,
            "navigation": self.plan.nav is not None}

    def _search_section(self, rescore_info: dict[str, Any] | None) -> dict[str, Any]:
        """The manifest's ``search`` section: default oversampling and how candidates are found."""
        options, nav, scorer = self.options, self.plan.nav, self.plan.scorer
        lists = int(getattr(scorer, "lists", 0) or 0)
        if scorer is not None and lists and nav is None and options.scan != "exhaustive":
            scan: dict[str, Any] = {"scan": "ivf", "nprobe": min(options.nprobe, lists)}
        elif scorer is not None:
            scan = {"scan": "graph" if nav is not None else "exhaustive", "pool": options.pool}
        else:
            scan = {"scan": "exhaustive" if options.scan == "exhaustive" else "graph"}
        if options.query_bits:
            scan["query_bits"] = options.query_bits
        if not rescore_info:
            return {"oversample": 1, **scan}
        factors = stage_factors(options.oversample, default_factors(1 + len(self.plan.refine_srcs)))
        return {"oversample": list(factors) if len(factors) > 1 else factors[0], **scan}

    def stop(self) -> None:
        """After a failure: stops decoding, stops the rescoring copy and closes the codes file."""
        if self.batches is not None:
            self.batches.close()
        if self.copier is not None:
            self.copier.cancel()
        if self.codes_writer is not None:
            self.codes_writer.handle.close()


def check_rescore(path: str, codes: Any) -> Any:
    """Open the rescoring table and check it holds the same rows (same source): float vectors, or codes
    its chain scores (PQ, RaBitQ, per-dimension int8) or decodes (global int8)."""
    src = open_table(path)
    chain = Chain.from_table(src.meta, src.state_blob, path)
    mine, theirs = (codes.meta.get("source") or {}), (src.meta.get("source") or {})
    if mine.get("fingerprint") != theirs.get("fingerprint"):
        raise MismatchError(f"{path}: rescoring vectors come from other data (source fingerprint "
                            f"{str(theirs.get('fingerprint'))[:12]} vs {str(mine.get('fingerprint'))[:12]})",
                            hint="give the table the codes were made from (or any float encoding of it)")
    if not is_float_rescore(src.space) and not (chain.stages and (chain.stages[-1].scores_codes
                                                                  or chain.stages[-1].can_decode)):
        raise UsageError(f"{path}: rescoring needs float32/float16 vectors or codes a codec scores or decodes, "
                         f"not {src.space.dtype} codes of {src.meta.get('spec') or 'this chain'}")
    return src


def check_refine(paths: Sequence[str], final: Any, codes: Any) -> tuple[Any, ...]:
    """Opens and checks the rescoring tables of the stages before the last (as :func:`check_rescore`)."""
    if not paths:
        return ()
    if final is None:
        raise UsageError("several rescoring stages need a last one: give --rescore-vectors once per stage")
    if len(paths) > MAX_REFINE:
        raise UsageError(f"--rescore-vectors: at most {MAX_REFINE + 1} rescoring stages, not {len(paths) + 1}")
    srcs = tuple(check_rescore(path, codes) for path in paths)
    if final.multi or any(src.multi for src in srcs):
        raise UsageError("--rescore-vectors: a multi-vector (MaxSim) table rescores alone, as the only stage",
                         hint="give the token vectors once, without other rescoring tables")
    return srcs


def is_float_rescore(space: VectorSpec) -> bool:
    """Whether rescoring vectors of ``space`` are compared as they are stored (float, not codes)."""
    return space.dtype in ("float32", "float16") and space.metric_on == "codes"


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


def _write_rescore(src: Any, version: str, rows: int, stop: Any = None, name: str = "rescore") -> dict[str, Any] | None:
    """Stream the rescoring vectors into ``NAME.npy`` (memory-mappable), their table's metadata and
    state beside them (``NAME.json``, ``NAME.state.npz``), and describe them."""
    from vecx.formats.npyfile import NpyWriter

    dtype = np.dtype({"float32": np.float32, "float16": np.float16, "int8": np.int8}.get(src.space.dtype, np.uint8))
    # Codes are stored as the table holds them: a row of bytes (packed bits, PQ or RaBitQ codes), or int8 values.
    width = src.dim if src.space.dtype in ("float32", "float16") else src.space.bytes_per_vector // dtype.itemsize
    out = NpyWriter(os.path.join(version, name + ".npy"), dtype, (rows, width))
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
    with open(os.path.join(version, name + ".json"), "w", encoding="utf-8") as handle:
        json.dump(src.meta, handle, sort_keys=True)
    if src.state_blob:
        _write_state(src.state_blob, os.path.join(version, name + ".state.npz"), src.path)
    return {"file": name + ".npy", "dtype": src.space.dtype, "dim": width, "metric": src.space.metric,
            "spec": src.meta.get("spec"), "fingerprint": src.meta.get("fingerprint"),
            **({} if is_float_rescore(src.space) else {"encoded": True})}


def _write_state(blob: bytes, path: str, where: str) -> None:
    """Store a table's fitted chain state in the index as .npz, which queries load without pyarrow."""
    from vecx.formats import state

    state.write_npz(path, state.unpack(blob, where)[1])


