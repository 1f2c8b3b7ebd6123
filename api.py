"""The vecx library API: the one front door. The CLI makes one call here per command; none of
these functions prints.

Long-running functions take an optional ``progress`` (:class:`vecx.progress.Progress`; the CLI
passes a bar on stderr). Every function returns a report: a dataclass whose ``to_json()`` is what
``--json`` prints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from vecx._lazy import lazy
from vecx._prefetch import prefetch
from vecx.chain import Chain
from vecx.errors import DataError, MismatchError, RowError, UsageError, where
from vecx.formats import metadata, state
from vecx.formats.inmemory import accepts_arrays
from vecx.formats.readers import ReadOptions, Source, open_source, spool_source
from vecx.formats.source import check_payload_names
from vecx.formats.tempfiles import write_bytes_atomic
from vecx.progress import SILENT, Progress
from vecx.sampling import stage_sample_rows
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa

    from vecx.indexes.search import Searcher
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")


# --------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------
class Report:
    """Base of every report: ``to_json()`` is a plain dict of the fields (optional ones only when set)."""

    #: Fields left out of :meth:`to_json` while they are None.
    optional: ClassVar[tuple[str, ...]] = ()
    if TYPE_CHECKING:  # every report is a dataclass: what asdict() takes
        __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """Plain dict (what ``--json`` prints)."""
        out = asdict(self)
        return {k: v for k, v in out.items() if not (v is None and k in self.optional)}

    # One __repr__ and __eq__ for every report: a dataclass generating its own for each costs the
    # import of this module (and so every command's start) a few milliseconds.
    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        compared = [f.name for f in fields(self) if f.compare]  # as tuples, as a dataclass compares them
        return tuple(getattr(self, name) for name in compared) == tuple(getattr(other, name) for name in compared)

    # Unhashable, as a dataclass comparing its fields is (its fields may change).
    __hash__ = None  # type: ignore[assignment]


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class EncodeReport(Report):
    """What :func:`encode_file` wrote."""

    optional: ClassVar[tuple[str, ...]] = ("notes",)

    output: str
    rows: int
    spec: str
    dim: int
    dtype: str
    bytes_per_vector: int
    fingerprint: str | None
    seconds: float
    state_file: str | None = None
    #: Things the user may not expect (e.g. 8-bit integers imported as numbers), one line each.
    notes: list[str] | None = None


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class FitReport(Report):
    """What :func:`fit_file` wrote: a state container for ``spec``, fitted on ``input``-shaped data."""

    output: str
    spec: str
    input: dict[str, Any]
    stages: list[dict[str, Any]]
    bytes: int


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class AlignReport(Report):
    """What :func:`align_fit` wrote: a one-stage ``align`` state container, the pairs it was fitted
    on, and cross-model retrieval on held-out pairs (never fitted), mapped and not."""

    output: str
    spec: str
    pairs: int
    fitted: int
    held_out: int
    #: Held-out pairs: recall@1 / recall@10 of each mapped old vector's own new vector among all
    #: held-out new vectors (cosine), and the same without a map (``None``: the dimensions differ).
    held_out_recall: dict[str, float]
    identity_recall: dict[str, float] | None
    bytes: int


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class ExplainReport(Report):
    """What a chain would make of its input, stage by stage (:func:`explain`)."""

    spec: str
    stages: list[dict[str, Any]]
    compression: float


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class CodecInfo(Report):
    """One codec a spec can use, with its parameters (:func:`list_codecs`)."""

    codec: str
    summary: str
    primary: str | None
    fit: bool
    query_encoding: str
    params: list[dict[str, Any]]
    #: Each parameter's default as a spec string spells it ("required" for required ones); not in JSON.
    spelled_defaults: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain dict of the fields, without ``spelled_defaults`` (a display aid of the command line)."""
        out = super().to_json()
        del out["spelled_defaults"]
        return out


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class InfoReport(Report):
    """What a file or index holds (:func:`info`): its ``vecx`` metadata, or the layout of a raw input."""

    optional: ClassVar[tuple[str, ...]] = ("version", "file_bytes", "raw", "columns")
    path: str
    format: str
    vecx: dict[str, Any] | None
    version: str | None = None
    file_bytes: int | None = None
    raw: dict[str, Any] | None = None
    #: Payload columns of a vector table (what ``--fields`` and ``--where`` name, beside ``id``).
    columns: list[str] | None = None


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class TruthReport(Report):
    """What :func:`truth` wrote."""

    output: str
    queries: int
    base_rows: int
    k: int
    metric: str
    score: str


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class IndexReport(Report):
    """The index :func:`build_index` committed: its path and manifest (``to_json`` is the manifest).

    ``action`` is ``built``, or for ``--append`` / ``--if-changed`` what happened (``appended``,
    ``unchanged``); ``change`` then holds the counts (see :class:`ChangeReport`).
    """

    path: str
    manifest: dict[str, Any]
    action: str = "built"
    change: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The manifest itself (what ``vecx index --json`` prints), plus ``change`` for an append or a skip."""
        return self.manifest if self.change is None else {**self.manifest, "change": self.change}


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class ChangeReport(Report):
    """What an append, delete or compact did to an index (:func:`append_index`, :func:`delete_rows`,
    :func:`compact_index`): the action, the counts, and the index as it now is."""

    path: str
    #: ``appended``, ``built``, ``deleted``, ``compacted`` or ``unchanged``.
    action: str
    rows: int
    live_rows: int
    segments: int
    rows_added: int = 0
    rows_deleted: int = 0
    missing: list[Any] = field(default_factory=list)
    merged: int = 0
    note: str | None = None


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class QueryResult(Report):
    """Per query its results (rank, id, score and the payload fields asked for), from :func:`query`.

    ``k`` is the number of results per query actually returned: fewer than asked when the index is
    smaller (``clamped``); with a filter, ``matching_rows`` rows match.
    """

    queries: list[dict[str, Any]]
    k: int
    clamped: bool
    matching_rows: int | None


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class EvalReport(Report):
    """Recall by stage, QPS and latency of an index (:func:`evaluate`), and the tuning if asked for."""

    optional: ClassVar[tuple[str, ...]] = ("tuning", "nprobe", "lists", "lid", "query_bits")
    queries: int
    k: int
    rows: int
    bytes_per_vector: int
    graph: dict[str, Any]
    stages: list[dict[str, Any]]
    scan: str
    scored: bool
    truth: str
    tuning: dict[str, Any] | None = None
    #: An ``ivf`` scan: the lists probed per query, of how many.
    nprobe: int | None = None
    lists: int | None = None
    #: RaBitQ codes: the bits each query was rounded to per coordinate (``None``: not rounded).
    query_bits: int | None = None
    #: Local intrinsic dimensionality: the set's estimate made at build (``data``) and the queries'
    #: from their exact nearest codes (``queries``), each ``None`` where not known.
    lid: dict[str, Any] | None = None


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class VerifyReport(Report):
    """An intact file or index (:func:`verify`; damage raises instead)."""

    optional: ClassVar[tuple[str, ...]] = ("version", "rows", "files", "bytes", "spec", "stages")
    path: str
    kind: str
    version: str | None = None
    rows: int | None = None
    files: int | None = None
    bytes: int | None = None
    spec: str | None = None
    stages: int | None = None
    ok: bool = True


@dataclass(repr=False, eq=False)  # the base's __repr__ and __eq__ (see Report)
class Explanation(Report):
    """One item against a JSON record (:func:`vsa_explain`): the cosine and each key path's share of it."""

    query: str
    like: Any
    cosine: float
    approximate: bool
    fields: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------
def fit_chain(source: Source, chain: Chain, progress: Progress) -> Source:
    """Fit every unfitted stage on its own seeded sample of the source (returns a re-readable source)."""
    if not chain.needs_fit:
        return source
    source = spool_source(source)
    n_rows = source.count_rows()

    def sample_for(stage: Any) -> Any:
        rows = stage_sample_rows(stage, n_rows)
        progress.start(None, f"fitting {stage.name} on {len(rows):,} rows")
        sample = source.take(rows)
        progress.close()
        return sample

    chain.fit(sample_for)
    return source


# --------------------------------------------------------------------------------------
# Encoding (import is encoding with an empty chain)
# --------------------------------------------------------------------------------------
@accepts_arrays("input")
def encode_file(input: str | list[str], output: str, spec: str | None = None, *, seed: int | None = None,
                state_file: str | None = None, save_state: str | None = None,
                read: ReadOptions | None = None, progress: Progress | None = None, engine: str = "local",
                scheduler: str | None = None) -> EncodeReport:
    """Read vectors, apply a chain of codecs, write a vector table (Parquet, or Arrow stream for ``-``).

    Args:
        input: any supported input path, ``-`` for stdin, or several Parquet inputs read as one dataset.
        output: ``.parquet`` path, ``-`` for an Arrow IPC stream on stdout, or ``DIR/`` (a dataset input):
            one part per input part and a ``_vecx.json`` describing them, swapped in as a whole.
        spec: the chain to apply (``None`` or ``""``: just import).
        seed: fills the seed of stages that were not given one.
        state_file: use a fitted state (from ``vecx fit`` / ``--save-state``) instead of fitting.
        save_state: also write the new stages' fitted state to this path.
        read: how to find vectors and ids in raw inputs.
        progress: progress reporter.
        engine, scheduler: where the parts of a ``DIR/`` output are encoded (:mod:`vecx.engines`).
    """
    from vecx.formats.tempfiles import check_output, is_dataset_output

    started = time.perf_counter()
    progress = progress or SILENT
    parts_output = is_dataset_output(output)
    if not parts_output:
        check_output(output)
    if save_state is not None:
        if save_state == "-":
            raise UsageError("--save-state -: standard output carries the table (or nothing); give a file",
                             hint="write the state alone to stdout with 'vecx fit ... -o -'")
        check_output(save_state)
    source = open_source(input, _records_if_needed(read, spec, state_file))
    check_payload_names(source)  # every table is written here: the one gate for payload columns
    if read is not None and read.codes:
        return _import_codes(source, read, spec, state_file, output, parts_output, progress, started)
    prior = Chain.from_source(source)
    if state_file:
        new = Chain.from_state_file(state_file, source.space, spec, seed)
    else:
        new = Chain.from_spec(spec, source.space, seed) if spec else Chain(source.space)
    source = fit_chain(source, new, progress)
    if parts_output:
        return _encode_parts(source, new, output, progress, started, save_state, engine, scheduler)
    if engine != "local":
        raise UsageError("--engine applies to a dataset encoded part by part: give -o DIR/")
    rows, meta, new = _write_table(source, prior, new, output, progress)
    if save_state:
        write_bytes_atomic(save_state, new.state_container(meta["source"]["fingerprint"]))
    notes = [f"{source.path}: the vectors are {source.byte_values} numbers, imported as {source.dim}-d floats; "
             "if they are codes (packed bits, quantized embeddings), import them with --codes "
             "ubinary|binary|int8|uint8"] if source.byte_values and not spec and not state_file else None
    return EncodeReport(output=output, rows=rows, spec=meta["spec"], dim=new.output.dim,
                        dtype=new.output.dtype, bytes_per_vector=new.output.bytes_per_vector,
                        fingerprint=meta["fingerprint"], seconds=round(time.perf_counter() - started, 3),
                        state_file=save_state, notes=notes)


def _import_codes(source: Source, read: ReadOptions, spec: str | None, state_file: str | None, output: str,
                  parts_output: bool, progress: Progress, started: float) -> EncodeReport:
    """``import --codes``: codes made elsewhere, written as the vecx codec that makes the same bytes."""
    from vecx.formats.codes import open_codes, read_ranges

    if spec or state_file:
        raise UsageError("--codes imports the codes as they are: no --spec or --state",
                         hint="encode the imported table afterwards (e.g. 'vecx index' it)")
    if parts_output:
        raise UsageError("--codes writes one table: give -o FILE.parquet")
    ranges = read.ranges
    if isinstance(ranges, str):
        ranges = read_ranges(ranges)
    assert read.codes is not None
    codes, spec, arrays = open_codes(source, read.codes, read.codes_dim, ranges, read.metric)
    chain = Chain.from_spec(spec, codes.space)
    chain.stages[0].load_state(arrays)
    rows, meta, chain = _write_table(codes, Chain(codes.space), chain, output, progress, encoded=True)
    return EncodeReport(output=output, rows=rows, spec=meta["spec"], dim=chain.output.dim,
                        dtype=chain.output.dtype, bytes_per_vector=chain.output.bytes_per_vector,
                        fingerprint=meta["fingerprint"], seconds=round(time.perf_counter() - started, 3))


def _write_table(source: Source, prior: Chain, new: Chain, output: str, progress: Progress,
                 on_batch: Any = None, encoded: bool = False) -> tuple[int, dict[str, Any], Chain]:
    """Encode every row of ``source`` by ``new`` into the table ``output`` (atomically): its rows,
    metadata and the chain as recorded (its input's norms known only after a raw input's last row).
    ``encoded``: the source's rows are ``new``'s codes already (``import --codes``)."""
    from vecx.formats.writer import TableWriter

    writer = None
    try:
        writer = TableWriter(output, dtype=new.output.dtype, dim=new.output.dim, id_type=source.id_type,
                             payload_fields=source.payload_fields,
                             initial_metadata=_table_metadata(source, prior, new, source.rows),
                             multi=new.output.multi)
        progress.start(source.rows, "encoding" if new.stages else "importing")
        for batch in prefetch(source.batches()):
            try:
                codes = batch.vectors if encoded else new.encode(batch.vectors)
            except RowError as exc:
                raise DataError(f"{where(source.path, batch.offset + exc.row)}: {exc.detail}",
                                hint=exc.hint) from None
            writer.write(batch, codes)
            if on_batch is not None:
                on_batch(batch)
            progress.advance(len(batch))
        progress.close()
        if not source.is_vecx or getattr(source, "is_stream", False):
            # Norms are known now (a vecx stream states them only in its trailer, read by now).
            prior = Chain.from_source(source) if source.is_vecx else prior
            new = new.with_input(source.space)
        final = _table_metadata(source, prior, new, writer.rows, writer.tokens)
        meta = metadata.loads(final[metadata.KEY], output)  # checked before the output exists
        writer.commit(final)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return writer.rows, meta, new


@dataclass(frozen=True)
class _PartTask:
    """One part of a dataset to encode into ``output`` (what an engine's worker needs)."""

    source: Any
    number: int
    chain: Chain
    output: str


def _encode_part(task: _PartTask, progress: Progress = SILENT) -> tuple[dict[str, Any], dict[str, Any], Chain, list]:
    """Encodes one part (on whichever engine runs it): its ``_vecx.json`` entry, metadata, chain as
    recorded, and its ids when they must be checked across parts."""
    part = task.source.part(task.number)
    ids: list[Any] = []
    rows, meta, chain = _write_table(part, Chain.from_source(part), task.chain, task.output, progress,
                                     on_batch=(lambda b: ids.append(b.ids)) if part.ids_given else None)
    entry = {"path": os.path.basename(task.output), "rows": rows, "fingerprint": meta["fingerprint"],
             "source_fingerprint": (meta.get("source") or {}).get("fingerprint")}
    return entry, meta, chain, ids


def _encode_parts(source: Source, new: Chain, output: str, progress: Progress, started: float,
                  save_state: str | None, engine: str = "local", scheduler: str | None = None) -> EncodeReport:
    """``-o DIR/``: one output part per input part (``part-00000.parquet`` ..., each with its own full
    metadata) and ``_vecx.json`` describing the dataset, swapped in as a whole.

    The chain was fitted on the whole dataset, so each part's codes are exactly those the
    concatenation would get. Raw parts are validated one by one, and their ids across parts.
    ``engine`` ``dask`` encodes the parts as tasks on a Dask cluster (:mod:`vecx.engines`).
    """
    from vecx.formats.dataset import DATASET_FILE, DatasetSource, combined_fingerprint
    from vecx.formats.tempfiles import dataset_dir

    if not isinstance(source, DatasetSource):
        raise UsageError(f"{output}: -o DIR/ writes one part per input part; {source.path} is one file",
                         hint="give -o FILE.parquet, or a folder, glob or URI of parts as the input")
    from vecx import engines

    engines.check_engine(engine)
    with dataset_dir(output) as tmp:
        tasks = [_PartTask(source, number, new, os.path.join(tmp, f"part-{number:05d}.parquet"))
                 for number in range(len(source.parts))]
        if engine == "local":
            done = [_encode_part(task, progress) for task in tasks]
        else:
            done = engines.run(_encode_part, tasks, engine, scheduler)
        entries = [entry for entry, _, _, _ in done]
        meta, last = done[-1][1], done[-1][2]
        ids = [chunk for _, _, _, part_ids in done for chunk in part_ids]
        if ids and not source.is_vecx:
            from vecx.formats.source import check_unique

            check_unique(source, ids)
        description = {**metadata.header(), "kind": "dataset", "rows": sum(e["rows"] for e in entries),
                       "spec": meta["spec"], "parts": entries,
                       "fingerprint": combined_fingerprint("table", [e["fingerprint"] for e in entries])}
        with open(os.path.join(tmp, DATASET_FILE), "wb") as handle:
            handle.write(metadata.dumps(description))
    if save_state:
        write_bytes_atomic(save_state, last.state_container(description["fingerprint"]))
    return EncodeReport(output=output, rows=description["rows"], spec=meta["spec"], dim=new.output.dim,
                        dtype=new.output.dtype, bytes_per_vector=new.output.bytes_per_vector,
                        fingerprint=description["fingerprint"], seconds=round(time.perf_counter() - started, 3),
                        state_file=save_state)


def _records_if_needed(read: ReadOptions | None, spec: str | None, state_file: str | None) -> ReadOptions:
    """Read options that ask for parsed JSON records when the chain starts with a JSON codec (vsa)."""
    from dataclasses import replace

    from vecx.chain import reads_records

    read = read or ReadOptions()
    return replace(read, records=True) if reads_records(spec, state_file) else read


def _table_metadata(source: Source, prior: Chain, new: Chain, rows: int | None,
                    tokens: int | None = None) -> dict[bytes, bytes]:
    """Schema metadata for an output table: provenance JSON and the embedded fitted state
    (``tokens``: the vectors a multi-vector output holds in all, once written)."""
    full = prior + new if prior.stages else new
    block = source.source_block()
    source_fp = block.get("fingerprint") if block else None
    records = full.records(source_fp)
    out: dict[bytes, bytes] = {}
    meta: dict[str, Any] = {
        **metadata.header(), "kind": "vectors", "rows": rows,
        "id": {"column": "id", "type": "int64" if pa.types.is_integer(source.id_type) else "string"},
        "vector": {"column": "vector", **full.output.to_json(),
                   **({"tokens": tokens} if full.output.multi and full.stages and tokens is not None else {})},
        "source": block, "spec": full.spec, "stages": records,
        "fingerprint": records[-1]["fingerprint"] if records else source_fp, "state": None,
    }
    if any(s.state() for s in full.stages):
        blob = full.state_container(source_fp)
        meta["state"] = {"key": metadata.STATE_KEY.decode(), "bytes": len(blob)}
        out[metadata.STATE_KEY] = state.encode_blob(blob)
    out[metadata.KEY] = metadata.dumps(meta)
    return out


@accepts_arrays("input")
def fit_file(input: str | list[str], output: str, spec: str, *, seed: int | None = None,
             read: ReadOptions | None = None, progress: Progress | None = None) -> FitReport:
    """Fit a chain on (a seeded sample of) an input and write only its state container to ``output``."""
    progress = progress or SILENT
    source = open_source(input, _records_if_needed(read, spec, None))
    chain = Chain.from_spec(spec, source.space, seed)
    if not chain.needs_fit:
        raise UsageError(f"spec {chain.spec!r} has nothing to fit", hint="encode directly with vecx encode")
    source = fit_chain(source, chain, progress)
    block = source.source_block()
    blob = chain.state_container(block.get("fingerprint") if block else None)
    write_bytes_atomic(output, blob)
    return FitReport(output=output, spec=chain.spec, input=chain.input.to_json(),
                     stages=[{"spec": s.spec, "state_sha256": state.arrays_sha256(s.state())} for s in chain.stages],
                     bytes=len(blob))


#: Pairs an align fit uses at most (a seeded sample of them), and the held-out pairs it reports on.
ALIGN_PAIRS, ALIGN_HELD_OUT = 200_000, 5_000


@accepts_arrays("old", "new")
def align_fit(old: str, new: str, output: str, *, kind: str = "orthogonal", ridge: float = 0.01,
              held_out: float = 0.1, seed: int = 0) -> AlignReport:
    """Fit a map from ``old``'s vector space into ``new``'s on the items both tables hold (paired by
    id) and write it as a state container (``vecx align fit``).

    A seeded ``held_out`` share of the pairs (at most :data:`ALIGN_HELD_OUT`) is never fitted: the
    report's cross-model recall comes from them. The rest (at most :data:`ALIGN_PAIRS`, a seeded
    sample) fit the map.
    """
    if not 0 <= held_out < 1:
        raise UsageError(f"--held-out must be in [0, 1), not {held_out}")
    old_source, new_source = open_source(old), open_source(new)
    if old_source.multi or new_source.multi:
        raise UsageError("align maps one vector per row; these tables hold sets of vectors (multi-vector)")
    left, right = _paired_rows(_all_ids(old_source), _all_ids(new_source), old, new)
    rng = np.random.Generator(np.random.PCG64(seed))
    order = rng.permutation(len(left))
    held = min(ALIGN_HELD_OUT, int(len(left) * held_out))
    test, train = order[:held], order[held:][:ALIGN_PAIRS]
    if len(train) < 2:
        raise DataError(f"{old} and {new}: {len(left)} items in common leave {len(train)} to fit a map on",
                        hint="give tables of the same items (the same ids), e.g. two imports of one corpus")
    # Only the sampled pairs' vectors are read (a pass over each table, one batch in memory at a time).
    chosen = np.concatenate([test, train])
    x, y = _float_rows(old_source, left[chosen]), _float_rows(new_source, right[chosen])
    x_test, y_test, x_train, y_train = x[:held], y[:held], x[held:], y[held:]
    space = VectorSpec(x.shape[1], "float32", old_source.space.metric, old_source.space.normalized)
    chain = Chain.from_spec(f"align:kind={kind}:dim={y.shape[1]}" + (f":ridge={ridge}" if kind == "linear" else ""),
                            space)
    stage: Any = chain.stages[0]  # the align codec (fit_pairs: two tables, not one)
    stage.fit_pairs(x_train, y_train)
    stage.fit_rows_ = int(len(train))
    models = {"from_model": _model_of(old_source), "to_model": _model_of(new_source)}
    stage.notes_ = {key: name for key, name in models.items() if name} or None
    block = old_source.source_block()
    blob = chain.state_container(block.get("fingerprint") if block else None)
    write_bytes_atomic(output, blob)
    mapped_recall = identity = None
    if held:
        a, b = x_test, y_test
        mapped_recall = _own_pair_recall(stage.encode(a), b)
        identity = _own_pair_recall(a, b) if a.shape[1] == b.shape[1] else None
    return AlignReport(output=output, spec=chain.spec, pairs=int(len(left)), fitted=int(len(train)),
                       held_out=int(held), held_out_recall=mapped_recall or {}, identity_recall=identity,
                       bytes=len(blob))


def _all_ids(source: Source) -> Any:
    """Every id of a table, in row order (its vectors are read batch by batch and dropped)."""
    return pa.chunked_array([batch.ids for batch in source.batches()]).combine_chunks()


def _float_rows(source: Source, rows: Any) -> Any:
    """The float32 vectors of the given row numbers (any order, as given), read in one pass."""
    order = np.argsort(rows, kind="stable")
    taken = source.take(rows[order], Chain.from_source(source).float_view(source.space, source.path))
    out = np.empty_like(taken)
    out[order] = taken
    return out


def _model_of(source: Source) -> str | None:
    """The embedding model a vecx table's vectors came from, where its import recorded one."""
    return ((source.meta or {}).get("source") or {}).get("model") if source.is_vecx else None


def _paired_rows(old_ids: Any, new_ids: Any, old: str, new: str) -> tuple[Any, Any]:
    """Row numbers of the items both tables hold (by id), in the old table's order."""
    import pyarrow.compute as pc

    if old_ids.type != new_ids.type:
        raise MismatchError(f"{old}: ids are {old_ids.type}, {new}'s {new_ids.type}: items cannot be paired",
                            hint="import both tables with the same ids")
    position = pc.index_in(old_ids, value_set=new_ids)
    found = np.asarray(position.is_valid())
    if not found.any():
        raise DataError(f"{old} and {new}: no id in common, nothing to pair",
                        hint="give tables of the same items (the same ids)")
    return np.flatnonzero(found), np.asarray(position.drop_null(), dtype=np.int64)


def _own_pair_recall(a: Any, b: Any) -> dict[str, float]:
    """For each row of ``a``, whether row ``i`` of ``b`` is among its 1 / 10 nearest rows of ``b`` (cosine)."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
    own = np.einsum("ij,ij->i", a, b)
    rank = np.zeros(len(a), dtype=np.int64)
    for lo in range(0, len(a), 1024):  # how many other rows of b beat the item's own pair
        beats = (a[lo: lo + 1024] @ b.T) > own[lo: lo + 1024, None]
        # The own pair's entry of the product may round above its einsum score: it never counts.
        beats[np.arange(len(beats)), np.arange(lo, lo + len(beats))] = False
        rank[lo: lo + 1024] = beats.sum(axis=1)
    return {"recall@1": round(float(np.mean(rank < 1)), 4), "recall@10": round(float(np.mean(rank < 10)), 4)}


# --------------------------------------------------------------------------------------
# Inspecting
# --------------------------------------------------------------------------------------
def explain(spec: str, dim: int, *, dtype: str = "float32", metric: str = "cosine",
            normalized: bool = False, seed: int | None = None, multi: bool = False) -> ExplainReport:
    """What a chain would produce on ``dim``-d input (sets of vectors if ``multi``), stage by stage,
    without running it."""
    from vecx.space import canonical_metric

    chain = Chain.from_spec(spec, VectorSpec(dim, dtype, canonical_metric(metric), normalized, multi=multi), seed)
    rows = chain.explain()
    return ExplainReport(spec=chain.spec, stages=rows,
                         compression=round(rows[0]["bytes_per_vector"] / rows[-1]["bytes_per_vector"], 3))


def list_codecs() -> list[CodecInfo]:
    """The codecs a spec can use, in name order, with their parameters and defaults."""
    from vecx.codecs import registry

    return [CodecInfo(codec=name, summary=cls.summary, primary=cls.primary, fit=cls.needs_fit,
                      query_encoding=cls.listed_query_encoding(),
                      params=[{"name": p.name, "type": p.type.__name__, "required": p.required,
                               "default": None if p.required else p.default, "help": p.help,
                               **({"choices": list(p.choices)} if p.choices else {})} for p in cls.params],
                      spelled_defaults={p.name: "required" if p.required else f"default {p.format(p.default)}"
                                        for p in cls.params})
            for name, cls in registry().items()]


def info(path: str, read: ReadOptions | None = None) -> InfoReport:
    """Describe a vector table: provenance for vecx files, detected layout for raw inputs.

    Other vecx Parquet files (ground truth from :func:`truth`) are described by their metadata.
    """
    from vecx.formats.dataset import is_dataset

    if os.path.isdir(path) and (os.path.islink(path) or os.path.exists(os.path.join(path, "manifest.json"))):
        from vecx.indexes import store

        directory, manifest = store.open_version(path)
        return InfoReport(path=path, format="index", version=os.path.basename(directory),
                          file_bytes=sum(f["bytes"] for f in manifest["files"].values()), vecx=manifest)
    from vecx.formats.footer import table_metadata
    from vecx.formats.truthfile import other_kind_metadata

    if is_dataset(path):
        return _dataset_info(path, read)
    fast = table_metadata(path) if read is None or read == ReadOptions() else None
    if fast is not None:  # a vecx Parquet file: everything info reports is in its footer
        from vecx.formats.footer import column_names

        vector_column = (fast.get("vector") or {}).get("column", "vector")
        names = column_names(path)
        payload = None if names is None else [n for n in names if n not in ("id", vector_column)]
        return InfoReport(path=path, format="parquet", file_bytes=os.path.getsize(path), vecx=fast, columns=payload)
    other = other_kind_metadata(path)
    if other is not None:
        return InfoReport(path=path, format="parquet", file_bytes=os.path.getsize(path), vecx=other)
    fitted = _state_file_metadata(path)
    if fitted is not None:
        return InfoReport(path=path, format="state", file_bytes=os.path.getsize(path), vecx=fitted)
    source = open_source(path, read)
    if getattr(source, "is_stream", False) or not source.seekable:
        for _ in source.batches():  # a stream's final metadata comes at its end
            pass
    report = InfoReport(path=path, format=source.kind, vecx=source.meta,
                        file_bytes=os.path.getsize(path) if path != "-" and os.path.exists(path) else None,
                        columns=[f.name for f in source.payload_fields] if source.meta is not None else None)
    if source.meta is None:
        report.raw = _raw_layout(source)
    return report



# --------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------
def _state_file_metadata(path: str) -> dict[str, Any] | None:
    """The metadata of a fitted state file (``vecx fit``, ``--save-state``), checked as ``--state``
    checks it; None for any other file."""
    if path == "-" or not os.path.isfile(path):
        return None
    with open(path, "rb") as handle:
        if handle.read(6) != b"ARROW1":  # state files are Arrow IPC files
            return None
    try:  # the schema's metadata says what the file is; only a (small) state file is read whole
        raw = (pa.ipc.open_file(pa.memory_map(path)).schema.metadata or {}).get(metadata.KEY)
    except (pa.ArrowInvalid, OSError):
        return None
    if raw is None or metadata.loads(raw, path).get("kind") != "state":
        return None  # an Arrow table, read as such
    with open(path, "rb") as handle:
        meta, _ = state.unpack(handle.read(), path)
    metadata.complete_state(meta, path)
    return meta


def _dataset_info(path: str, read: ReadOptions | None) -> InfoReport:
    """:func:`info` of a dataset (parts in a folder, a glob or an object store)."""
    source = open_source(path, read)
    parts = len(getattr(source, "parts", [])) or 1
    report = InfoReport(path=path, format=f"dataset, {parts:,} part{'s' if parts != 1 else ''}", vecx=source.meta)
    if source.meta is None:
        report.raw = {**_raw_layout(source), "parts": parts}
    return report


def _raw_layout(source: Source) -> dict[str, Any]:
    """What :func:`info` reports of a raw input: rows, dimension, payload, and where it found vectors and ids."""
    return {"rows": source.rows, "dim": source.dim, "payload": [f.name for f in source.payload_fields],
            "vector_column": getattr(source, "vector_column", getattr(source, "vector_field", None)),
            "id_column": getattr(source, "id_column", getattr(source, "id_field", None))}


def read_queries(path: str, read: ReadOptions | None) -> tuple[Source, Any, Any]:
    """All query vectors (float32) and ids of a (small) query file (of an ann-benchmarks HDF5 file:
    its ``test`` dataset)."""
    from vecx.formats import hdf5

    if hdf5.is_hdf5(path) and (read is None or read.column is None):
        from dataclasses import replace

        read = replace(read or ReadOptions(), column=hdf5.QUERIES)
    source = open_source(path, read)
    if source.multi:  # sets of vectors (multi-vector data)
        from vecx.formats.multi import read_all

        ids, sets = read_all(source)
        return source, ids, sets
    to_float = Chain.from_source(source).float_view(source.space, source.path)
    ids, vectors = [], []
    for batch in source.batches():
        ids.append(batch.ids)
        vectors.append(to_float(batch.vectors))
    return source, pa.chunked_array(ids).combine_chunks(), np.concatenate(vectors)


@accepts_arrays("base", "queries")
def truth(base: str, queries: str, output: str, k: int = 100, *, read_base: ReadOptions | None = None,
          read_queries_options: ReadOptions | None = None, progress: Progress | None = None,
          maxsim: bool = False) -> TruthReport:
    """Exact top-``k`` of every query over the base by the base's metric; writes a Parquet table.

    Output columns: ``query_id``, ``ids`` and ``rows`` (fixed-size lists of the k nearest base ids
    and row numbers) and ``scores`` (cosine similarity or inner product, descending; squared L2
    distance, ascending). Encoded bases are compared after decoding (int8 codes back to floats);
    float queries are not quantized. Queries given in the chain's original input space are first
    mapped through the stages decoding cannot undo (e.g. truncation).
    """
    from vecx.formats.tempfiles import check_output
    from vecx.indexes.truth import SCORE_NAMES, exact_topk

    progress = progress or SILENT
    if k < 1:
        raise UsageError(f"-k must be at least 1, not {k}")
    check_output(output)
    base_src = open_source(base, read_base)
    if maxsim or base_src.multi:
        return _truth_maxsim(base_src, queries, output, k, read_queries_options, progress, maxsim)
    base_chain = Chain.from_source(base_src)
    q_src, q_ids, q = read_queries(queries, read_queries_options)
    # Float codes are compared as they are; other codes after decoding (int8 to floats, bits to
    # +-deviations), in the space and by the metric decoding lands in.
    decoding = base_src.space.dtype not in ("float32", "float16") or base_src.space.metric_on != "codes"
    space = base_chain.decoded_space if decoding else base_src.space
    q = _queries_in_space(q, q_src.multi, base_chain, space, decoding, queries, base)
    if base_src.rows is not None and k > base_src.rows:
        raise UsageError(f"-k {k} is larger than the base ({base_src.rows} rows)")
    metric = space.metric
    base_ids: list[Any] = []

    def blocks() -> Any:
        # About 4M scores (1 << 22) per block keeps the score matrix at a cache-friendly size.
        block_rows = max(1024, min(65536, (1 << 22) // max(1, len(q))))
        for batch in base_src.batches():
            base_ids.append(batch.ids)
            vectors = to_float(batch.vectors)
            # The norms validation computed hold for these vectors only if they were not converted.
            sq = batch.sq_norms if vectors is batch.vectors else None
            for start in range(0, len(batch), block_rows):
                stop = start + block_rows
                yield (batch.offset + start, vectors[start:stop]) + (() if sq is None else (sq[start:stop],))

    progress.start(base_src.rows, f"exact top-{k} for {len(q):,} queries")
    # Decoded int8 vectors are not unit-norm even when the stage input was.
    unit = base_src.space.normalized and base_src.space.dtype in ("float32", "float16")
    to_float = base_chain.float_view(base_src.space, base_src.path)
    rows, scores = exact_topk(q, blocks(), k, metric, progress.advance, base_normalized=unit)
    progress.close()
    return _write_truth(output, base_src, q_src, q_ids, base_ids, rows, scores, k, metric, SCORE_NAMES[metric])


def _queries_in_space(q: Any, multi: bool, chain: Chain, space: VectorSpec, decoding: bool, queries: str,
                      base: str) -> Any:
    """The queries of :func:`truth` as rows of ``space``, the space the base's vectors are compared in.

    Queries already in that space stay as they are. Queries in the chain's input space, and sets of
    vectors (only through a chain that starts from sets, e.g. muvera), are mapped through the chain:
    into the decoded space when the base is compared after decoding, else by its query encoding.
    Anything else is a :class:`MismatchError` naming both files.
    """
    if multi:
        if not (chain.stages and chain.input.multi):
            raise MismatchError(f"{queries}: holds a set of vectors per query; {base} one vector per row",
                                hint="give one vector per query (or a multi-vector base with --maxsim)")
        q = _mapped_queries(chain, q, decoding)
    if q.shape[1] != space.dim:
        if chain.stages and q.shape[1] == chain.input.dim:
            q = _mapped_queries(chain, q, decoding)
        else:
            raise MismatchError(f"{queries}: queries have {q.shape[1]} dimensions, {base} has {space.dim}",
                                hint="give queries in the base's space (or its chain's input space)")
    return q


def _mapped_queries(chain: Chain, q: Any, decoding: bool) -> Any:
    """Input-space queries mapped through ``chain`` as float32: into its decoded space when the base
    is compared after decoding, else through every stage's query encoding."""
    return np.asarray(chain.query_to_decoded(q) if decoding else chain.encode_query(q), dtype=np.float32)


# ---- multi-vector ground truth --------------------------------------------------
def _truth_maxsim(base_src: Source, queries: str, output: str, k: int, read: ReadOptions | None,
                  progress: Progress, asked: bool) -> TruthReport:
    """Exact MaxSim (Chamfer) top-``k`` of query sets over a multi-vector base (``truth --maxsim``).

    Same output table as :func:`truth`; the metadata says ``metric: "maxsim"``. Memory holds the
    query sets, one block of documents and the running top-k.
    """
    from vecx.formats.multi import check_query_sets
    from vecx.indexes import maxsim

    if not base_src.multi:
        raise UsageError(f"{base_src.path}: --maxsim needs multi-vector data (a set of vectors per row)",
                         hint="import token vectors with 'vecx import --multi'")
    if not asked:
        raise UsageError(f"{base_src.path}: holds multi-vector data; exact search over it is by MaxSim",
                         hint="add --maxsim")
    if base_src.space.dtype not in ("float32", "float16"):
        raise UsageError(f"{base_src.path}: MaxSim needs float vectors, not {base_src.space.dtype}")
    q_src, q_ids, q = read_queries(queries, read)
    q = check_query_sets(q, base_src.dim, queries)
    if base_src.rows is not None and k > base_src.rows:
        raise UsageError(f"-k {k} is larger than the base ({base_src.rows} rows)")
    base_ids: list[Any] = []

    def batches() -> Any:
        for batch in base_src.batches():
            base_ids.append(batch.ids)
            yield batch.offset, batch.vectors

    progress.start(base_src.rows, f"exact MaxSim top-{k} for {len(q):,} queries")
    rows, scores = maxsim.exact_topk(q, batches(), k, progress.advance)
    progress.close()
    return _write_truth(output, base_src, q_src, q_ids, base_ids, rows, scores, k, "maxsim", "MaxSim (Chamfer)")


def _write_truth(output: str, base_src: Source, q_src: Source, q_ids: Any, base_ids: list[Any], rows: Any,
                 scores: Any, k: int, metric: str, score: str) -> TruthReport:
    """Write a ground-truth table with the provenance of its base and queries (the one truth writer)."""
    from vecx.formats.truthfile import write_truth

    n_base = sum(len(c) for c in base_ids)
    if k > n_base:
        raise UsageError(f"-k {k} is larger than the base ({n_base} rows)")
    base_block, q_block = base_src.source_block(), q_src.source_block()
    write_truth(output, q_ids, pa.chunked_array(base_ids).combine_chunks(), rows, scores, k, {
        "k": k, "metric": metric, "score": score,
        "base": {"rows": n_base, "fingerprint": (base_src.meta or {}).get("fingerprint") or
                 (base_block or {}).get("fingerprint"), "spec": (base_src.meta or {}).get("spec", ""),
                 "source_fingerprint": (base_block or {}).get("fingerprint")},
        "queries": {"rows": len(rows), "fingerprint": (q_src.meta or {}).get("fingerprint") or
                    (q_block or {}).get("fingerprint")},
    })
    return TruthReport(output=output, queries=len(rows), base_rows=n_base, k=k, metric=metric, score=score)


# --------------------------------------------------------------------------------------
# Building and querying an index
# --------------------------------------------------------------------------------------
@accepts_arrays("table", "rescore")
def build_index(table: str, output: str, *, rescore: str | Sequence[str] | None = None, options: Any = None,
                progress: Progress | None = None, wait: bool = True, on_wait: Any = None,
                if_changed: bool = False, shards: int = 1, engine: str = "local",
                scheduler: str | None = None) -> IndexReport:
    """Build the index directory ``output`` from an encoded vector table, and optionally a float table
    of the same rows for exact rescoring (see :func:`vecx.indexes.build.build`). ``rescore`` may
    list several tables of the same rows, one per rescoring stage, cheapest first: each stage ranks
    the candidates the one before kept (``options.oversample``: one factor per stage).

    ``options`` is a :class:`vecx.indexes.build.BuildOptions` (graph parameters, default search
    settings). Concurrent builds of one index take turns (``wait=False``: a BusyError instead);
    ``on_wait(pid)`` is called once if this one waits. ``if_changed``: do nothing when the index
    is one segment, without deletions, built from tables of the same fingerprints. ``shards``: build
    that many segments, on ``engine`` (``local``, or ``dask`` on the cluster at ``scheduler``; see
    :mod:`vecx.indexes.shards`).
    """
    from vecx.indexes.build import BuildOptions, build

    rescore, refine = _stages(rescore)
    if if_changed:
        unchanged = _unchanged(table, output, rescore, refine)
        if unchanged is not None:
            return IndexReport(path=output, manifest=unchanged, action="unchanged", change=_change(ChangeReport(
                output, "unchanged", 0, 0, 0, note=f"{output} was built from {table} as it is now; nothing to do")))
    if shards > 1 or engine != "local":
        from vecx.indexes import shards as shards_mod

        manifest = shards_mod.build(table, output, rescore=rescore, options=options or BuildOptions(), shards=shards,
                                    engine=engine, scheduler=scheduler, wait=wait, on_wait=on_wait, refine=refine)
        return IndexReport(path=output, manifest=manifest)
    manifest = build(table, output, rescore=rescore, refine=refine, options=options, progress=progress, wait=wait,
                     on_wait=on_wait)
    return IndexReport(path=output, manifest=manifest)


def _stages(rescore: str | Sequence[str] | None) -> tuple[str | None, tuple[str, ...]]:
    """The last rescoring table and those of the stages before it, from one table or a list of them."""
    if rescore is None or isinstance(rescore, str):
        return rescore, ()
    tables = [str(path) for path in rescore]
    return (tables[-1], tuple(tables[:-1])) if tables else (None, ())


def _change(report: ChangeReport) -> dict[str, Any]:
    """The ``change`` object of an index report: a change report without the index-wide fields."""
    return {k: v for k, v in report.to_json().items() if k in ("action", "rows_added", "rows_deleted", "merged",
                                                               "note")}


def _unchanged(table: str, output: str, rescore: str | None, refine: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The index's manifest if it was built, as one segment without deletions, from ``table`` (and
    the rescoring tables) as they are now; else ``None``."""
    from vecx.formats.readers import open_source
    from vecx.indexes import store

    if not os.path.islink(output):
        return None
    try:
        _, manifest = store.open_version(output)
    except DataError:
        return None  # damaged or not an index: the build says what is wrong, or replaces it
    if len(manifest.get("segments") or [None]) != 1 or manifest.get("deleted"):
        return None
    fingerprint = (open_source(table).meta or {}).get("fingerprint")
    given = [(open_source(path).meta or {}).get("fingerprint") for path in (*refine, *([rescore] if rescore else []))]
    built = [stage.get("fingerprint") for stage in (*(manifest.get("refine") or ()),
                                                    *([manifest["rescore"]] if manifest.get("rescore") else []))]
    if fingerprint is None or fingerprint != manifest["table"].get("fingerprint") or given != built:
        return None
    return manifest


def _change_report(path: str, change: Any) -> ChangeReport:
    from vecx.indexes.segments import segments_of

    manifest = change.manifest
    rows = int(manifest["rows"])
    return ChangeReport(path=path, action=change.action, rows=rows,
                        live_rows=rows - int((manifest.get("deleted") or {}).get("rows", 0)),
                        segments=len(segments_of(manifest)), rows_added=change.rows_added,
                        rows_deleted=change.rows_deleted, missing=change.missing, merged=change.merged,
                        note=change.note)


@accepts_arrays("table", "rescore")
def append_index(table: str, output: str, *, rescore: str | Sequence[str] | None = None, options: Any = None,
                 max_segments: int | None = None, auto_merge: bool = True, progress: Progress | None = None,
                 wait: bool = True, on_wait: Any = None) -> IndexReport:
    """Add a table's rows to an index as a new segment; rows with ids already in it replace the old
    ones. A table encoded by the index's chain is added as it is; a table earlier in the chain (the
    imported vectors) is encoded on the way in. The newest segments are then merged as
    ``auto_merge`` and ``max_segments`` ask. See :func:`vecx.indexes.update.append`."""
    from vecx.indexes import update

    rescore, refine = _stages(rescore)
    change = update.append(table, output, rescore=rescore, refine=refine, options=options, max_segments=max_segments,
                           auto_merge=auto_merge, progress=progress, wait=wait, on_wait=on_wait)
    return IndexReport(path=output, manifest=change.manifest, action=change.action,
                       change=_change(_change_report(output, change)))


def delete_rows(index: str, *, ids: list[Any] | None = None, where: str | None = None, wait: bool = True,
                on_wait: Any = None) -> ChangeReport:
    """Delete rows of an index by id or by a ``--where`` filter (tombstones; :func:`compact_index` drops them)."""
    from vecx.indexes import update

    return _change_report(index, update.delete(index, ids=ids, where=where, wait=wait, on_wait=on_wait))


def compact_index(index: str, *, max_segments: int = 1, progress: Progress | None = None, wait: bool = True,
                  on_wait: Any = None) -> ChangeReport:
    """Merge an index's newest segments into one, without deleted rows, leaving at most ``max_segments``."""
    from vecx.indexes import update

    return _change_report(index, update.compact(index, max_segments=max_segments, progress=progress, wait=wait,
                                                on_wait=on_wait))


def _query_vectors(path: str, expected_dim: int) -> tuple[Any, list[Any] | None]:
    """Query vectors from a file or stdin (``-``): JSONL lines (a list or {"vector": [...]} each), or
    what ``vecx import -`` reads (a ``.npy``, an Arrow stream such as ``vecx ... -o -`` writes, CSV)."""
    from vecx.formats.queries import is_npy, read_jsonl_vectors, read_plain_npy

    if path == "-":
        import sys

        stream = sys.stdin.buffer
        head = stream.peek(64)[:64] if hasattr(stream, "peek") else b"["
        if head.lstrip()[:1] in (b"[", b"{") or not head:
            return read_jsonl_vectors(stream, expected_dim)
    if is_npy(path):
        q = read_plain_npy(path)
        if q is not None:
            return q, None
    source, q_ids, q = read_queries(path, None)
    return q, q_ids.to_pylist() if source.ids_given else None


def _query_sets(path: str) -> tuple[Any, list[Any] | None]:
    """Query token sets: a 2-D ``.npy`` is one query's vectors; a multi-vector table or JSONL a batch."""
    from vecx.formats.multi import MultiVectors
    from vecx.formats.queries import is_npy, read_npy_token_set

    if is_npy(path):
        tokens = read_npy_token_set(path)
        return MultiVectors(tokens, [0, len(tokens)]), None
    source, ids, sets = read_queries(path, None)
    if not source.multi:
        raise DataError(f"{path}: --multi-vector needs a set of vectors per query (a 2-D .npy for one query, "
                        "or a multi-vector table / JSONL of lists)")
    return sets, ids.to_pylist() if source.ids_given else None


@accepts_arrays("vector")
def query(index: str, *, vector: str | None = None, like: list[Any] | None = None, k: int = 10,
          oversample: int | tuple[int, ...] | None = None, expansion: int | None = None,
          fields: list[str] | None = None, where: str | None = None,
          multi_vector: str | None = None, first_stage: str | None = None,
          json: str | None = None, scan: str | None = None, nprobe: int | None = None,
          align: str | None = None, model: str | None = None, query_bits: int | None = None) -> QueryResult:
    """Search an index; returns per query its results (rank, id, score and the asked payload fields).

    ``align``: a map's state file (``vecx align fit``): query vectors of another model, mapped
    through it into the space the index's vectors come from. ``model``: the model query vectors
    come from (as named at import); for an index whose first stage mapped its rows into another
    model's space (``align``), that model's queries are pulled back through the map
    (:meth:`~vecx.codecs.align.Align.pull_back`); a model the index cannot take is refused.

    ``json``: query records for an index of JSON records (``vsa``): an object literal, ``@FILE``
    (JSONL) or ``-`` (JSONL on stdin); such an index reads ``vector``/stdin as records too.

    ``where`` filters on payload columns (see :mod:`vecx.indexes.where`); a selective filter is
    answered by an exact scan over the matching rows, so it never returns fewer than it should.
    ``multi_vector``: query token sets (a 2-D ``.npy`` is one query; a multi-vector table or
    JSONL of lists a batch) for indexes over sets; ``first_stage``: ``fde``, ``mean`` or ``both``
    (see :mod:`vecx.indexes.multivector`). ``scan``: ``exhaustive``, ``graph`` or ``ivf`` for indexes
    of codes scored by their codec, ``nprobe`` the lists an ``ivf`` scan probes, ``query_bits`` the
    bits RaBitQ queries are rounded to (0: not rounded; default: the index's; see
    :mod:`vecx.indexes.codescan`).
    """
    from vecx.indexes.search import Searcher

    _check_search_options(k, oversample, expansion)
    searcher = Searcher(index)
    try:  # the searcher holds its index version until closed
        _choose_scan(searcher, scan, nprobe, query_bits)
        if first_stage is not None or multi_vector is not None:
            from vecx.indexes.multivector import check_first_stage

            searcher.first_stage = check_first_stage(first_stage, searcher)
        names = searcher.payload_names()
        fields = _result_fields(fields, names, index)
        allowed = _filter_rows(searcher, where, names, index)
        rows, scores, query_ids = _search_queries(searcher, k, oversample, expansion, allowed, like=like,
                                                  multi_vector=multi_vector, json=json, vector=vector,
                                                  align=align, model=model)
        taken = searcher.lookup(rows[rows >= 0], ["id", *fields])
        live = searcher.live  # deleted rows match no filter
        matching = None if allowed is None else int((allowed if live is None else allowed & live).sum())
    finally:
        searcher.close()
    out = _query_entries(rows, scores, taken, fields, like, query_ids)
    return QueryResult(queries=out, k=int(rows.shape[1]), clamped=rows.shape[1] < k and allowed is None,
                       matching_rows=matching)


def _result_fields(fields: list[str] | None, names: list[str], index: str) -> list[str]:
    """The payload columns each result of :func:`query` carries: ``fields`` (``["all"]``: every
    one of ``names``) without ``id``, which every result carries already; a name the index does not
    have is a usage error."""
    if fields == ["all"]:
        fields = names
    fields = [name for name in fields or [] if name != "id"]
    for name in fields:
        if name not in names:
            raise UsageError(f"--fields: no column {name!r} in {index}; columns: {', '.join(names) or 'none'}")
    return fields


def _filter_rows(searcher: Searcher, where: str | None, names: list[str], index: str) -> Any:
    """The boolean mask over the index's rows that a ``--where`` filter lets through (None without
    one), read from only the columns it mentions; a column the index does not have is a usage error."""
    if not where:
        return None
    from vecx.indexes import where as where_mod

    return where_mod.mask(where, names, searcher.rows_table, index)


def _search_queries(searcher: Searcher, k: int, oversample: int | tuple[int, ...] | None, expansion: int | None,
                    allowed: Any, *, like: list[Any] | None, multi_vector: str | None, json: str | None,
                    vector: str | None, align: str | None = None,
                    model: str | None = None) -> tuple[Any, Any, list[Any] | None]:
    """Rows and scores of the results of every query (row -1: no result), and the queries' ids.

    The queries are, in this order of precedence: the indexed items ``like`` (ids), token sets from
    ``multi_vector``, JSON records (``json``, or ``vector``/stdin for an index of records), or
    vectors from ``vector`` (stdin when None). Ids are None where the queries have none.
    Rescoring is off only when ``oversample`` is 1.
    """
    rescore = oversample != 1
    query_ids: list[Any] | None
    if like:
        rows_of = searcher.row_of(list(like))
        rows, scores = searcher.like(rows_of, k, oversample=oversample, expansion=expansion, allowed=allowed,
                                     rescore=rescore)
        return rows, scores, list(like)
    if multi_vector is not None:
        q, query_ids = _query_sets(multi_vector)
        q = searcher.check_queries(q, multi_vector)
    elif json is not None or searcher.chain.input.dtype == "json":
        from vecx.formats.records import query_records_for

        q, query_ids = query_records_for(searcher, json, vector)
    elif align is not None:
        mapping = _align_chain(align, searcher)
        q, query_ids = _query_vectors(vector or "-", mapping.input.dim)
        if q.ndim != 2 or q.shape[1] != mapping.input.dim:
            raise MismatchError(f"{vector or '<stdin>'}: {q.shape[-1]}-d query vectors; --align {align} maps "
                                f"{mapping.input.dim}-d vectors of the model it was fitted --from")
        q = searcher.check_queries(mapping.encode(q), vector or "<stdin>")
    elif model is not None and _mapped_model(searcher, model):
        first: Any = searcher.chain.stages[0]  # the align map (see _mapped_model)
        q, query_ids = _query_vectors(vector or "-", first.output.dim)
        if q.ndim != 2 or q.shape[1] != first.output.dim:
            raise MismatchError(f"{vector or '<stdin>'}: {q.shape[-1]}-d query vectors; {model} vectors are "
                                f"{first.output.dim}-d")
        q = searcher.check_queries(first.pull_back(q), vector or "<stdin>")
    else:
        q, query_ids = _query_vectors(vector or "-", searcher.input_dim)
        q = searcher.check_queries(q, vector or "<stdin>")
    rows, scores = searcher.search(q, k, oversample=oversample, expansion=expansion, allowed=allowed,
                                   rescore=rescore)
    return rows, scores, query_ids


def _query_entries(rows: Any, scores: Any, taken: list[dict[str, Any]], fields: list[str],
                   like: list[Any] | None, query_ids: list[Any] | None) -> list[dict[str, Any]]:
    """Per query: its number, its results and the item (``like``) or id it was, as :func:`query`
    reports them.

    A result's rank is its slot among the ``k``; slots without a result (row -1) are left out.
    ``taken`` holds the id and ``fields`` of every found row, in the order of ``rows``.
    """
    out, position = [], 0
    for i in range(len(rows)):
        results = []
        for rank, (row, score) in enumerate(zip(rows[i], scores[i], strict=True), start=1):
            if row < 0:
                continue
            results.append({"rank": rank, "id": taken[position]["id"], "score": round(float(score), 6),
                            **{f: taken[position][f] for f in fields}})
            position += 1
        entry: dict[str, Any] = {"query": i, "results": results}
        if like:
            entry["like"] = like[i]
        elif query_ids is not None:
            entry["query_id"] = query_ids[i]
        out.append(entry)
    return out


def _mapped_model(searcher: Searcher, model: str) -> bool:
    """Whether queries of ``model`` enter ``searcher``'s index through the map its first stage is
    (``False``: the model its rows came from, queried as usual); any other model is refused."""
    table = searcher.manifest["table"]
    source, space = table.get("model"), table.get("space_model")
    if source is None and space is None:
        raise UsageError(f"--model {model}: {searcher.path} records no model",
                         hint="name the model at import (vecx import --model NAME), or leave --model out")
    if model == space:
        first = searcher.chain.stages[0] if searcher.chain.stages else None
        if first is None or not hasattr(first, "pull_back") or (first.notes_ or {}).get("to_model") != model:
            raise UsageError(f"--model {model}: {searcher.path} was mapped into the space of {model} by a stage "
                             "after its first; queries of that model cannot enter there",
                             hint="index the output of 'vecx align' before other stages, or use --align")
        return True
    if model == source:
        return False
    where = f" (in the space of {space})" if space else ""
    raise MismatchError(f"--model {model}: {searcher.path} holds vectors of {source or 'an unnamed model'}{where}",
                        hint=f"map the queries with --align, a map from 'vecx align fit --from {model}-table "
                             f"--to {space or source}-table'")


def _align_chain(path: str, searcher: Searcher) -> Chain:
    """The fitted ``align`` chain of a state file, checked to map into the index's input space."""
    chain = Chain.from_state_file(path, None)
    if not chain.stages or chain.stages[-1].name != "align":
        raise UsageError(f"--align {path}: holds the state of {chain.spec!r}, not a map from 'vecx align fit'")
    if chain.output.dim != searcher.input_dim:
        raise MismatchError(f"--align {path}: maps into {chain.output.dim}-d vectors; {searcher.path} takes "
                            f"{searcher.input_dim}-d queries",
                            hint="fit the map --to the model this index was built from")
    target = (chain.stages[-1].notes_ or {}).get("to_model")
    table = searcher.manifest["table"]
    model = table.get("space_model") or table.get("model")
    if target and model and target != model:
        raise MismatchError(f"--align {path}: maps into the space of {target!r}; {searcher.path} holds vectors "
                            f"of {model!r}", hint="fit the map --to a table of the model this index was built from")
    return chain


def _check_search_options(k: int, oversample: int | tuple[int, ...] | None, expansion: int | None) -> None:
    """Refuse search options below 1 (a factor or size of 0 would silently mean something else)."""
    for flag, value in (("-k", k), ("--oversample", oversample), ("--expansion", expansion)):
        for one in value if isinstance(value, (tuple, list)) else (value,):
            if one is not None and one < 1:
                raise UsageError(f"{flag} must be at least 1, not {one}")


def _choose_scan(searcher: Any, scan: str | None, nprobe: int | None = None, query_bits: int | None = None) -> None:
    """Apply ``--scan``, ``--nprobe`` and ``--query-bits`` choices to an opened index (a usage error
    where they cannot apply)."""
    from vecx.indexes.codescan import check_query_bits, check_scan

    if query_bits is not None:
        check_query_bits(query_bits, None if searcher.scan is None else searcher.scan.scorer)
        if searcher.scan is not None:  # (0 on an index of other vectors: nothing to round)
            searcher.scan.query_bits = query_bits

    if nprobe is not None:
        if nprobe < 1:
            raise UsageError(f"--nprobe must be at least 1, not {nprobe}")
        if searcher.scan is None or not searcher.scan.list_count:
            raise UsageError("--nprobe: this index's codes are not in coarse lists",
                             hint="encode with a list count, e.g. pq:24x8:ivf=512")
        searcher.nprobe = nprobe
    if check_scan(scan) is None:
        return
    searcher.scan_choice = scan
    _ = searcher.scan_mode  # a usage error now if this index cannot scan that way


@accepts_arrays("queries", "truth_path")
def evaluate(index: str, queries: str, *, truth_path: str | None = None, k: int = 10,
             oversample: int | tuple[int, ...] | None = None, expansion: int | None = None,
             target_recall: float | None = None, save: bool = False,
             first_stage: str | None = None, scan: str | None = None, nprobe: int | None = None,
             query_bits: int | None = None) -> EvalReport:
    """Recall by stage (codes exact / graph / rescored), QPS and latency; optionally tune and save defaults.

    Ground truth comes from ``truth_path`` (a ``vecx truth`` file over the same source) or, if the
    index keeps float rescoring vectors of the original space, is computed exactly on the fly.
    """
    from vecx.formats.truthfile import read_truth_file, read_truth_meta, row_numbers_only
    from vecx.indexes import evaluate as ev
    from vecx.indexes import store
    from vecx.indexes.search import Searcher, read_json

    _check_search_options(k, oversample, expansion)
    searcher = Searcher(index)
    searcher.use_compiled_scans()
    _choose_scan(searcher, scan, nprobe, query_bits)
    if first_stage is not None:
        from vecx.indexes.multivector import check_first_stage

        searcher.first_stage = check_first_stage(first_stage, searcher)
    _, q_ids, q = read_queries(queries, None)
    q = searcher.check_queries(q, queries)
    source_fp = (read_json(searcher.version, "table.json").get("source") or {}).get("fingerprint")
    if truth_path:
        if not row_numbers_only(truth_path):  # bare row numbers carry no provenance to check
            meta = read_truth_meta(truth_path)
            truth_fp = meta.get("base", {}).get("source_fingerprint")
            if truth_fp and source_fp and truth_fp != source_fp:
                raise MismatchError(f"{truth_path}: ground truth was computed on other data than {index}",
                                    hint="compute it with 'vecx truth' on the table this index was built from")
        truth = read_truth_file(truth_path, searcher.rows)
        if len(truth) != len(q):
            raise MismatchError(f"{truth_path}: has {len(truth)} queries, {queries} has {len(q)}")
        truth_source = truth_path
    else:
        truth, truth_source = _computed_truth(searcher, q)
    result = EvalReport(**ev.run(searcher, q, truth, k, oversample=oversample, expansion=expansion),
                        truth=truth_source)
    if target_recall is not None:
        result.tuning = ev.tune(searcher, q, truth, k, target_recall)
        if save and result.tuning["reached"]:
            store.update_manifest(index, _tuned_defaults(result.tuning), expected=searcher.directory)
            result.tuning["saved"] = True
    elif save:
        raise UsageError("--save stores what --target-recall finds; give --target-recall too")
    return result


def _tuned_defaults(tuned: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest changes that make ``eval --target-recall``'s finding the index's defaults."""
    changes: dict[str, dict[str, Any]] = {"search": {"oversample": tuned["oversample"]}}
    if "nprobe" in tuned:
        changes["search"]["nprobe"] = tuned["nprobe"]
    if "expansion" in tuned:
        changes["graph"] = {"expansion_search": tuned["expansion"]}
    return changes


def _computed_truth(searcher: Searcher, q: Any) -> tuple[Any, str]:
    """Exact top-100 rows of the queries over the index's live rows, from its stored float vectors
    (token sets: exact MaxSim), and where it came from; a :class:`UsageError` if it keeps none."""
    from vecx.indexes.truth import exact_topk

    deleted = searcher.deleted
    # Deleted rows may be among the nearest: ask for as many more, then drop them.
    k = min(100, searcher.live_rows) + (0 if deleted is None else len(deleted))
    if searcher.multi_rescore is not None:  # exact MaxSim over the stored token vectors
        from vecx.indexes import maxsim

        truth, _ = maxsim.exact_topk(q, searcher.multi_rescore.all_rows(), k)
        source = "computed (exact MaxSim, from the stored token vectors)"
    else:
        vectors = searcher.rescore_vectors
        if vectors is None or searcher.rescore_chain is None or searcher.rescore_chain.stages:
            raise UsageError("no ground truth: give --truth FILE (from 'vecx truth'), or build the index "
                             "with --rescore-vectors on the imported float vectors")
        blocks = ((s, np.asarray(vectors[s: s + 65536], dtype=np.float32)) for s in range(0, searcher.rows, 65536))
        truth, _ = exact_topk(q, blocks, k, searcher.rescore_metric)
        source = "computed (exact, from the rescoring vectors)"
    if deleted is not None:
        live = searcher.live
        truth = np.stack([row[live[row]][: k - len(deleted)] for row in truth])
    return truth, source


def vsa_explain(index: str, *, like: list[Any], record: dict[str, Any] | None = None,
                records_file: str | None = None) -> list[Explanation]:
    """Per key path contributions to the cosine between a JSON record and items of a ``vsa`` index.

    With ``record``: the record against every ``like`` item. Without: the first ``like`` item's
    record (looked up by id in ``records_file``, since the index keeps vectors, not records)
    against each further ``like`` item. See :mod:`vecx.codecs.vsa.explain`.
    """
    from vecx.codecs.vsa import Vsa
    from vecx.codecs.vsa.explain import contributions
    from vecx.formats.records import find_record
    from vecx.indexes.search import Searcher

    searcher = Searcher(index)
    try:
        if not searcher.chain.stages or not isinstance(searcher.chain.stages[0], Vsa):
            raise UsageError(f"{index}: not an index of JSON records (its chain does not start with vsa)",
                             hint="build it from a 'vecx vsa' table")
        vsa = searcher.chain.stages[0]
        if not like:
            raise UsageError("give --like ID (the indexed item to compare with)")
        if record is None:
            if len(like) < 2 or not records_file:
                raise UsageError("give --json RECORD and --like ID, or --like A --like B --records FILE.jsonl "
                                 "(the index keeps vectors, not records: A's record is read from FILE)")
            record = find_record(records_file, like[0])
            targets, query_label = like[1:], f"{like[0]} (from {records_file})"
        else:
            targets, query_label = like, "--record"
        vectors, approximate = _vsa_vectors(searcher, vsa, searcher.row_of(list(targets)))
        return [Explanation(query=query_label, like=target, cosine=found["cosine"], approximate=approximate,
                            fields=found["fields"])
                for target, found in zip(targets, contributions(vsa, record, vectors), strict=True)]
    finally:
        searcher.close()


def _vsa_vectors(searcher: Any, vsa: Any, rows: Any) -> tuple[Any, bool]:
    """The vsa vectors of indexed rows: stored floats, rescoring floats, or decoded codes (approximate)."""
    chain = searcher.chain
    if len(chain.stages) == 1:
        return np.asarray(searcher.codes_of(rows), dtype=np.float32), False
    rescore = searcher.rescore_chain
    if searcher.rescore_vectors is not None and rescore is not None and len(rescore.stages) == 1 \
            and rescore.stages[0].spec == vsa.spec:
        return np.asarray(searcher.rescore_vectors[rows], dtype=np.float32), False
    if chain.decoded_space.dim == vsa.output.dim and chain._first_decoded() == 1:
        return np.asarray(chain.decode(searcher.codes_of(rows)), dtype=np.float32), True
    raise UsageError(f"{searcher.path}: the vsa vectors cannot be recovered from this index's codes",
                     hint="build the index with --rescore-vectors on the float 'vecx vsa' table")


# --------------------------------------------------------------------------------------
# Verifying
# --------------------------------------------------------------------------------------
def verify(path: str) -> VerifyReport:
    """Check every byte of an index, a vector table, a ground-truth file or a state file.

    An index: the sha256 of every file against its manifest, then its structure (graph header,
    ids, rescoring vectors, chain state, every row of ``rows.parquet``). A table: its metadata,
    its chain's state hashes, and every page decoded (with the page checksums vecx writes),
    the row count against the metadata. A state file: its arrays against their hashes.
    Returns a report; damage raises :class:`DataError` (exit 3), naming the file and what.
    """
    if os.path.isdir(path):
        return _verify_index(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file or index")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"ARROW1"):  # a state container (vecx fit, --save-state)
        return _verify_state(path)
    if not head.startswith(b"PAR1"):
        raise DataError(f"{path}: not a vecx index, table or state file", hint="vecx verify checks what vecx wrote")
    return _verify_parquet(path)


def _verify_index(path: str) -> VerifyReport:
    """An index checked by :func:`verify`: every file hashed against the manifest while it is opened
    as a query would open it, then every row of ``rows.parquet`` read and counted."""
    from vecx.formats.tables import verify_parquet_rows
    from vecx.indexes.search import Searcher

    searcher = Searcher(path, verify=True)  # every file hashed, then opened as a query would
    try:
        version = searcher.version
        for segment in searcher.segments:
            name = segment.name("rows.parquet")
            rows = verify_parquet_rows(version.file(name), f"{path}: {name}")
            if rows != segment.rows:
                raise DataError(f"{path}: {name} holds {rows:,} rows, the manifest says {segment.rows:,}",
                                hint="rebuild the index")
        files = searcher.manifest["files"]
        return VerifyReport(path=path, kind="index", version=os.path.basename(version.directory),
                            rows=searcher.rows, files=len(files), bytes=sum(f["bytes"] for f in files.values()))
    finally:
        searcher.close()


def _verify_state(path: str) -> VerifyReport:
    """A state container checked by :func:`verify`: its arrays against their hashes, by rebuilding
    the fitted chain it records (damaged metadata is a :class:`DataError` too)."""
    with open(path, "rb") as handle:
        blob = handle.read()
    meta, arrays = state.unpack(blob, path)
    try:
        first = VectorSpec.from_json(meta["input"])
        chain = Chain.from_records(first, meta["stages"], arrays, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: fitted state metadata is damaged ({type(exc).__name__}: {exc})") from None
    return VerifyReport(path=path, kind="state", spec=chain.spec, stages=len(chain.stages))


def _verify_parquet(path: str) -> VerifyReport:
    """A vecx Parquet file checked by :func:`verify`: every page decoded and the rows counted against
    the metadata; for a vector table, its chain's state hashes too."""
    from vecx.formats.tables import verify_parquet_rows
    from vecx.formats.truthfile import other_kind_metadata

    other = other_kind_metadata(path)
    if other is not None:  # ground truth, which has no vector column
        rows = verify_parquet_rows(path, path)
        if isinstance(other.get("queries"), dict) and other["queries"].get("rows") not in (None, rows):
            raise DataError(f"{path}: holds {rows:,} rows, its metadata says {other['queries']['rows']:,}")
        return VerifyReport(path=path, kind=str(other.get("kind")), rows=rows)
    source = open_source(path)
    if source.meta is None:
        raise DataError(f"{path}: not written by vecx (no 'vecx' metadata); nothing to verify against",
                        hint="vecx import validates and fingerprints it")
    chain = Chain.from_source(source)
    count = sum(len(batch) for batch in source.batches())
    if source.meta.get("rows") is not None and count != source.meta["rows"]:
        raise DataError(f"{path}: holds {count:,} rows, its metadata says {source.meta['rows']:,}",
                        hint="the file was edited or truncated; re-create it")
    return VerifyReport(path=path, kind="vectors", rows=count, spec=chain.spec)
