"""The vecx library API. The CLI is a thin layer over these functions; none of them prints.

Long-running functions take an optional ``progress`` object with ``start(total, desc)``,
``advance(n)`` and ``close()`` (the CLI passes a tqdm bar on stderr).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

from vecx._lazy import lazy
from vecx._prefetch import prefetch
from vecx.chain import Chain
from vecx.space import VectorSpec
from vecx.errors import DataError, MismatchError, RowError, UsageError, where
from vecx.formats import metadata, state
from vecx.formats.readers import ReadOptions, Source, open_source, spool_source
from vecx.formats.source import check_payload_names
from vecx.sampling import sample_rows

np = lazy("numpy")
pa = lazy("pyarrow")


class Progress(Protocol):
    """What long-running functions report to (all optional for callers: pass ``None``)."""

    def start(self, total: int | None, desc: str) -> None: ...
    def advance(self, n: int) -> None: ...
    def close(self) -> None: ...


class _NoProgress:
    def start(self, total: int | None, desc: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class EncodeReport:
    """What :func:`encode_file` did."""

    output: str
    rows: int
    spec: str
    dim: int
    dtype: str
    bytes_per_vector: int
    fingerprint: str | None
    seconds: float
    state_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain dict (for ``--json``)."""
        return dict(self.__dict__)


# --------------------------------------------------------------------------------------
# Chains from files
# --------------------------------------------------------------------------------------
def prior_chain(source: Source) -> Chain:
    """The fitted chain recorded in a vecx table (empty for raw inputs)."""
    if source.meta is None:
        return Chain(source.space)
    return Chain.from_table(source.meta, source.state_blob, source.path)


def load_state_file(path: str, input: VectorSpec, spec: str | None = None, seed: int | None = None) -> Chain:
    """A fitted chain from a state file, checked against the data it will be applied to."""
    try:
        with open(path, "rb") as handle:
            blob = handle.read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read state file ({exc.strerror})") from None
    meta, arrays = state.unpack(blob, path)
    metadata.complete_state(meta, path)
    fitted_for = VectorSpec.from_json(meta["input"])
    if (fitted_for.dim, fitted_for.dtype, fitted_for.metric) != (input.dim, input.dtype, input.metric):
        raise MismatchError(
            f"{path}: state was fitted on {fitted_for.dim}-d {fitted_for.dtype} {fitted_for.metric} vectors; "
            f"this input is {input.dim}-d {input.dtype} {input.metric}",
            hint="fit a state on data like this input (vecx fit), or drop --state")
    chain = Chain.from_records(input, meta["stages"], arrays, path)
    if spec:
        wanted = Chain.from_spec(spec, input, seed).spec
        if wanted != chain.spec:
            raise MismatchError(f"{path}: state is for spec {chain.spec!r}, not {wanted!r}",
                                hint="drop --spec to use the state's own spec")
    return chain


def state_container(chain: Chain, fitted_on: str | None) -> bytes:
    """The state container for a chain's stages (what ``vecx fit`` writes and tables embed)."""
    records = [{"codec": s.name, "version": s.version, "spec": s.spec, "fit_rows": getattr(s, "fit_rows_", None),
                "state_sha256": state.arrays_sha256(s.state())} for s in chain.stages]
    meta = {"spec": chain.spec, "input": chain.input.to_json(), "stages": records, "fitted_on": fitted_on}
    return state.pack(meta, chain.state_arrays())


def fit_chain(source: Source, chain: Chain, progress: Progress) -> Source:
    """Fit every unfitted stage on its own seeded sample of the source (returns a re-readable source)."""
    if not chain.needs_fit:
        return source
    source = spool_source(source)
    n_rows = source.count_rows()

    def sample_for(stage: Any) -> Any:
        size = int(stage.values.get("sample", n_rows))
        rows = sample_rows(n_rows, size, int(stage.values.get("seed") or 0))
        progress.start(None, f"fitting {stage.name} on {len(rows):,} rows")
        sample = source.take(rows)
        stage.fit_rows_ = len(rows)
        progress.close()
        return sample

    chain.fit(sample_for)
    return source


# --------------------------------------------------------------------------------------
# Encoding (import is encoding with an empty chain)
# --------------------------------------------------------------------------------------
def encode_file(input: str, output: str, spec: str | None = None, *, seed: int | None = None,
                state_file: str | None = None, save_state: str | None = None,
                read: ReadOptions | None = None, progress: Progress | None = None) -> EncodeReport:
    """Read vectors, apply a chain of codecs, write a vector table (Parquet, or Arrow stream for ``-``).

    Args:
        input: any supported input path, or ``-`` for stdin.
        output: ``.parquet`` path, or ``-`` for an Arrow IPC stream on stdout.
        spec: the chain to apply (``None`` or ``""``: just import).
        seed: fills the seed of stages that were not given one.
        state_file: use a fitted state (from ``vecx fit`` / ``--save-state``) instead of fitting.
        save_state: also write the new stages' fitted state to this path.
        read: how to find vectors and ids in raw inputs.
        progress: progress reporter.
    """
    from vecx.formats.tempfiles import check_output
    from vecx.formats.writer import TableWriter

    started = time.perf_counter()
    progress = progress or _NoProgress()
    check_output(output)
    if save_state is not None:
        if save_state == "-":
            raise UsageError("--save-state -: standard output carries the table (or nothing); give a file",
                             hint="write the state alone to stdout with 'vecx fit ... -o -'")
        check_output(save_state)
    source = open_source(input, _records_if_needed(read, spec, state_file))
    check_payload_names(source)  # every table is written here: the one gate for payload columns
    prior = prior_chain(source)
    if state_file:
        new = load_state_file(state_file, source.space, spec, seed)
    else:
        new = Chain.from_spec(spec, source.space, seed) if spec else Chain(source.space)
    source = fit_chain(source, new, progress)
    writer = None
    try:
        writer = TableWriter(output, dtype=new.output.dtype, dim=new.output.dim, id_type=source.id_type,
                             payload_fields=source.payload_fields,
                             initial_metadata=_table_metadata(source, prior, new, source.rows),
                             multi=new.output.multi)
        progress.start(source.rows, "encoding" if new.stages else "importing")
        for batch in prefetch(source.batches()):
            try:
                codes = new.encode(batch.vectors)
            except RowError as exc:
                raise DataError(f"{where(source.path, batch.offset + exc.row)}: {exc.detail}",
                                hint=exc.hint) from None
            writer.write(batch, codes)
            progress.advance(len(batch))
        progress.close()
        if not source.is_vecx or getattr(source, "is_stream", False):
            # Norms are known now (a vecx stream states them only in its trailer, read by now).
            prior = prior_chain(source) if source.is_vecx else prior
            new = new.with_input(source.space)
        final = _table_metadata(source, prior, new, writer.rows)
        meta = metadata.loads(final[metadata.KEY], output)  # checked before the output exists
        writer.commit(final)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if save_state:
        write_bytes_atomic(save_state, state_container(new, meta["source"]["fingerprint"]))
    return EncodeReport(output=output, rows=writer.rows, spec=meta["spec"], dim=new.output.dim,
                        dtype=new.output.dtype, bytes_per_vector=new.output.bytes_per_vector,
                        fingerprint=meta["fingerprint"], seconds=round(time.perf_counter() - started, 3),
                        state_file=save_state)


def _records_if_needed(read: ReadOptions | None, spec: str | None, state_file: str | None) -> ReadOptions:
    """Read options that ask for parsed JSON records when the chain starts with a JSON codec (vsa)."""
    from dataclasses import replace

    from vecx.chain import reads_records

    read = read or ReadOptions()
    return replace(read, records=True) if reads_records(spec, state_file) else read


def _table_metadata(source: Source, prior: Chain, new: Chain, rows: int | None) -> dict[bytes, bytes]:
    """Schema metadata for an output table: provenance JSON and the embedded fitted state."""
    full = prior + new if prior.stages else new
    block = source.source_block()
    source_fp = block.get("fingerprint") if block else None
    records = full.records(source_fp)
    out: dict[bytes, bytes] = {}
    meta: dict[str, Any] = {
        **metadata.header(), "kind": "vectors", "rows": rows,
        "id": {"column": "id", "type": "int64" if pa.types.is_integer(source.id_type) else "string"},
        "vector": {"column": "vector", **full.output.to_json()},
        "source": block, "spec": full.spec, "stages": records,
        "fingerprint": records[-1]["fingerprint"] if records else source_fp, "state": None,
    }
    if any(s.state() for s in full.stages):
        blob = state_container(full, source_fp)
        meta["state"] = {"key": metadata.STATE_KEY.decode(), "bytes": len(blob)}
        out[metadata.STATE_KEY] = state.encode_blob(blob)
    out[metadata.KEY] = metadata.dumps(meta)
    return out


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write a small file atomically (temp file in the same directory, then rename); ``-`` is stdout."""
    from vecx.formats.tempfiles import write_bytes_atomic as write

    write(path, data)


def fit_file(input: str, output: str, spec: str, *, seed: int | None = None,
             read: ReadOptions | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Fit a chain on (a seeded sample of) an input and write only its state container to ``output``."""
    progress = progress or _NoProgress()
    source = open_source(input, _records_if_needed(read, spec, None))
    chain = Chain.from_spec(spec, source.space, seed)
    if not chain.needs_fit:
        raise UsageError(f"spec {chain.spec!r} has nothing to fit", hint="encode directly with vecx encode")
    source = fit_chain(source, chain, progress)
    block = source.source_block()
    blob = state_container(chain, block.get("fingerprint") if block else None)
    write_bytes_atomic(output, blob)
    return {"output": output, "spec": chain.spec, "input": chain.input.to_json(),
            "stages": [{"spec": s.spec, "state_sha256": state.arrays_sha256(s.state())} for s in chain.stages],
            "bytes": len(blob)}


# --------------------------------------------------------------------------------------
# Inspecting
# --------------------------------------------------------------------------------------
def explain(spec: str, dim: int, *, dtype: str = "float32", metric: str = "cosine",
            normalized: bool = False, seed: int | None = None, multi: bool = False) -> dict[str, Any]:
    """What a chain would produce on ``dim``-d input (sets of vectors if ``multi``), stage by stage, without running it."""
    chain = Chain.from_spec(spec, VectorSpec(dim, dtype, metric, normalized, multi=multi), seed)
    rows = chain.explain()
    return {"spec": chain.spec, "stages": rows,
            "compression": round(rows[0]["bytes_per_vector"] / rows[-1]["bytes_per_vector"], 3)}


def info(path: str, read: ReadOptions | None = None) -> dict[str, Any]:
    """Describe a vector table: provenance for vecx files, detected layout for raw inputs.

    Other vecx Parquet files (ground truth from :func:`truth`) are described by their metadata.
    """
    if os.path.isdir(path):
        from vecx.indexes import store

        directory, manifest = store.open_version(path)
        return {"path": path, "format": "index", "version": os.path.basename(directory),
                "file_bytes": sum(f["bytes"] for f in manifest["files"].values()), "vecx": manifest}
    fast = _parquet_meta(path) if read is None or read == ReadOptions() else None
    if fast is not None:  # a vecx Parquet file: everything info reports is in its footer
        return {"path": path, "format": "parquet", "file_bytes": os.path.getsize(path), "vecx": fast}
    other = _other_kind(path)
    if other is not None:
        return {"path": path, "format": "parquet", "file_bytes": os.path.getsize(path), "vecx": other}
    source = open_source(path, read)
    if getattr(source, "is_stream", False) or not source.seekable:
        for _ in source.batches():  # a stream's final metadata comes at its end
            pass
    out: dict[str, Any] = {"path": path, "format": source.kind}
    if path != "-" and os.path.exists(path):
        out["file_bytes"] = os.path.getsize(path)
    if source.meta is not None:
        out["vecx"] = source.meta
        return out
    out["vecx"] = None
    out["raw"] = {"rows": source.rows, "dim": source.dim, "payload": [f.name for f in source.payload_fields],
                  "vector_column": getattr(source, "vector_column", getattr(source, "vector_field", None)),
                  "id_column": getattr(source, "id_column", getattr(source, "id_field", None))}
    return out



def _parquet_meta(path: str) -> dict[str, Any] | None:
    """The vecx metadata of a vecx Parquet file, read from its footer without pyarrow (else None).

    Only trusted when the footer's row count agrees with the metadata; anything unusual goes
    the slow way, through pyarrow, which reports damage precisely.
    """
    if path == "-" or not path.endswith(".parquet") or not os.path.isfile(path):
        return None
    from vecx.formats.footer import vecx_metadata

    found = vecx_metadata(path)
    if found is None:
        return None
    rows, raw = found
    meta = metadata.loads(raw, path)
    if meta.get("kind", "vectors") == "vectors" and meta.get("rows") != rows:
        return None
    return meta


def _other_kind(path: str) -> dict[str, Any] | None:
    """The metadata of a vecx Parquet file that is not a vector table (e.g. ground truth), else None."""
    if path == "-" or not path.endswith(".parquet") or not os.path.isfile(path):
        return None
    import pyarrow.parquet as pq

    try:
        raw = (pq.ParquetFile(path).metadata.metadata or {}).get(metadata.KEY)
    except (pa.ArrowInvalid, OSError):
        return None  # open_source reports the problem
    if raw is None:
        return None
    meta = metadata.loads(raw, path)
    return meta if meta.get("kind", "vectors") != "vectors" else None


# --------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------
def float_view(source: Source, chain: Chain) -> Any:
    """A function turning a batch's stored vectors into float32 in the table's metric space."""
    if source.space.dtype in ("float32", "float16"):
        return lambda v: np.asarray(v, dtype=np.float32)
    from vecx.space import is_packed

    packed = is_packed(source.space.dtype)
    probe = chain.decode(np.zeros((1, source.space.bytes_per_vector if packed else source.dim),
                                  dtype=np.uint8 if packed else source.space.dtype))
    if probe.dtype.kind != "f":
        raise UsageError(f"{source.path}: {source.space.dtype} codes cannot be decoded to floats")
    return lambda v: np.asarray(chain.decode(v), dtype=np.float32)


def read_queries(path: str, read: ReadOptions | None) -> tuple[Source, Any, Any]:
    """All query vectors (float32) and ids of a (small) query file."""
    source = open_source(path, read)
    if source.multi:  # sets of vectors (multi-vector data)
        from vecx.formats.multi import read_all

        ids, sets = read_all(source)
        return source, ids, sets
    chain = prior_chain(source)
    to_float = float_view(source, chain)
    ids, vectors = [], []
    for batch in source.batches():
        ids.append(batch.ids)
        vectors.append(to_float(batch.vectors))
    return source, pa.chunked_array(ids).combine_chunks(), np.concatenate(vectors)


def truth(base: str, queries: str, output: str, k: int = 100, *, read_base: ReadOptions | None = None,
          read_queries_options: ReadOptions | None = None, progress: Progress | None = None,
          maxsim: bool = False) -> dict[str, Any]:
    """Exact top-``k`` of every query over the base by the base's metric; writes a Parquet table.

    Output columns: ``query_id``, ``ids`` and ``rows`` (fixed-size lists of the k nearest base ids
    and row numbers) and ``scores`` (cosine similarity or inner product, descending; squared L2
    distance, ascending). Encoded bases are compared after decoding (int8 codes back to floats);
    float queries are not quantized. Queries given in the chain's original input space are first
    mapped through the stages decoding cannot undo (e.g. truncation).
    """
    from vecx.formats.tempfiles import check_output
    from vecx.formats.writer import write_table_atomic
    from vecx.indexes.truth import SCORE_NAMES, exact_topk

    progress = progress or _NoProgress()
    if k < 1:
        raise UsageError(f"-k must be at least 1, not {k}")
    check_output(output)
    base_src = open_source(base, read_base)
    if maxsim or base_src.multi:
        return truth_maxsim(base_src, queries, output, k, read_queries_options, progress, maxsim)
    base_chain = prior_chain(base_src)
    q_src, q_ids, q = read_queries(queries, read_queries_options)
    # Float codes are compared as they are; other codes after decoding (int8 to floats, bits to
    # +-deviations), in the space and by the metric decoding lands in.
    decoding = base_src.space.dtype not in ("float32", "float16") or base_src.space.metric_on != "codes"
    space = base_chain.decoded_space if decoding else base_src.space
    if q_src.multi:  # sets of vectors: only through a chain that starts from sets, e.g. muvera (issue 6)
        if not (base_chain.stages and base_chain.input.multi):
            raise MismatchError(f"{queries}: holds a set of vectors per query; {base} one vector per row",
                                hint="give one vector per query (or a multi-vector base with --maxsim)")
        q = np.asarray(base_chain.query_to_decoded(q) if decoding else base_chain.encode_query(q), dtype=np.float32)
    if q.shape[1] != space.dim:
        if base_chain.stages and q.shape[1] == base_chain.input.dim:
            mapped = base_chain.query_to_decoded(q) if decoding else base_chain.encode_query(q)
            q = np.asarray(mapped, dtype=np.float32)
        else:
            raise MismatchError(f"{queries}: queries have {q.shape[1]} dimensions, {base} has {space.dim}",
                                hint="give queries in the base's space (or its chain's input space)")
    if base_src.rows is not None and k > base_src.rows:
        raise UsageError(f"-k {k} is larger than the base ({base_src.rows} rows)")
    metric = space.metric
    base_ids: list[Any] = []

    def blocks() -> Any:
        # ~4M scores per block keeps the score matrix in cache-friendly size (measured fastest here).
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
    to_float = float_view(base_src, base_chain)
    rows, scores = exact_topk(q, blocks(), k, metric, progress.advance, base_normalized=unit)
    progress.close()
    n_base = sum(len(c) for c in base_ids)
    if k > n_base:
        raise UsageError(f"-k {k} is larger than the base ({n_base} rows)")
    all_ids = pa.chunked_array(base_ids).combine_chunks()
    nq = len(q)
    table = pa.table({
        "query_id": q_ids,
        "ids": pa.FixedSizeListArray.from_arrays(all_ids.take(pa.array(rows.ravel())), k),
        "rows": pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), k),
        "scores": pa.FixedSizeListArray.from_arrays(pa.array(scores.ravel()), k),
    })
    base_block, q_block = base_src.source_block(), q_src.source_block()
    meta = {
        **metadata.header(), "kind": "truth", "k": k, "metric": metric, "score": SCORE_NAMES[metric],
        "base": {"rows": n_base, "fingerprint": (base_src.meta or {}).get("fingerprint") or
                 (base_block or {}).get("fingerprint"), "spec": (base_src.meta or {}).get("spec", ""),
                 "source_fingerprint": (base_block or {}).get("fingerprint")},
        "queries": {"rows": nq, "fingerprint": (q_src.meta or {}).get("fingerprint") or
                    (q_block or {}).get("fingerprint")},
    }
    write_table_atomic(output, table, {metadata.KEY: metadata.dumps(meta)})
    return {"output": output, "queries": nq, "base_rows": n_base, "k": k, "metric": metric,
            "score": SCORE_NAMES[metric]}


# ---- multi-vector ground truth (issue 6) --------------------------------------------------
def truth_maxsim(base_src: Source, queries: str, output: str, k: int, read: ReadOptions | None,
                 progress: Progress, asked: bool) -> dict[str, Any]:
    """Exact MaxSim (Chamfer) top-``k`` of query sets over a multi-vector base (``truth --maxsim``).

    Same output table as :func:`truth`; the metadata says ``metric: "maxsim"``. Memory holds the
    query sets, one block of documents and the running top-k.
    """
    from vecx.indexes import maxsim
    from vecx.formats.writer import write_table_atomic

    if not base_src.multi:
        raise UsageError(f"{base_src.path}: --maxsim needs multi-vector data (a set of vectors per row)",
                         hint="import token vectors with 'vecx import --multi'")
    if not asked:
        raise UsageError(f"{base_src.path}: holds multi-vector data; exact search over it is by MaxSim",
                         hint="add --maxsim")
    if base_src.space.dtype not in ("float32", "float16"):
        raise UsageError(f"{base_src.path}: MaxSim needs float vectors, not {base_src.space.dtype}")
    q_src, q_ids, q = read_queries(queries, read)
    from vecx.formats.multi import check_query_sets

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
    n_base = sum(len(c) for c in base_ids)
    if k > n_base:
        raise UsageError(f"-k {k} is larger than the base ({n_base} rows)")
    all_ids = pa.chunked_array(base_ids).combine_chunks()
    table = pa.table({
        "query_id": q_ids,
        "ids": pa.FixedSizeListArray.from_arrays(all_ids.take(pa.array(rows.ravel())), k),
        "rows": pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), k),
        "scores": pa.FixedSizeListArray.from_arrays(pa.array(scores.ravel()), k),
    })
    base_block, q_block = base_src.source_block(), q_src.source_block()
    meta = {
        **metadata.header(), "kind": "truth", "k": k, "metric": "maxsim", "score": "MaxSim (Chamfer)",
        "base": {"rows": n_base, "fingerprint": (base_src.meta or {}).get("fingerprint") or
                 (base_block or {}).get("fingerprint"), "spec": (base_src.meta or {}).get("spec", ""),
                 "source_fingerprint": (base_block or {}).get("fingerprint")},
        "queries": {"rows": len(q), "fingerprint": (q_src.meta or {}).get("fingerprint") or
                    (q_block or {}).get("fingerprint")},
    }
    write_table_atomic(output, table, {metadata.KEY: metadata.dumps(meta)})
    return {"output": output, "queries": len(q), "base_rows": n_base, "k": k, "metric": "maxsim",
            "score": "MaxSim (Chamfer)"}


# --------------------------------------------------------------------------------------
# Querying an index
# --------------------------------------------------------------------------------------
def read_query_vectors(path: str, expected_dim: int) -> tuple[Any, list[Any] | None]:
    """Query vectors from a file or stdin (``-``: JSONL lines, a list or {"vector": [...]} each).

    A malformed line fails the whole batch with an error naming the line: nothing is searched.
    """
    import sys

    if path == "-":
        import orjson

        vectors, ids = [], []
        for number, line in enumerate(sys.stdin.buffer, start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"<stdin>: line {number}: not valid JSON ({exc}); no query was run",
                                hint="fix that line; a batch is searched only when every line is valid") from None
            vec = obj.get("vector") if isinstance(obj, dict) else obj
            if not isinstance(vec, list) or not all(isinstance(v, (int, float)) for v in vec):
                raise DataError(f"<stdin>: line {number}: expected a list of numbers or "
                                "{\"vector\": [...]}; no query was run")
            if len(vec) != expected_dim:
                raise MismatchError(f"<stdin>: line {number}: query has {len(vec)} dimensions, the index "
                                    f"takes {expected_dim}; no query was run")
            vectors.append(vec)
            ids.append(obj.get("id") if isinstance(obj, dict) else None)
        if not vectors:
            raise DataError("<stdin>: no query vectors")
        return np.asarray(vectors, dtype=np.float32), ids if any(i is not None for i in ids) else None
    if path.endswith(".npy") and os.path.isfile(path):
        q = _npy_queries(path)
        if q is not None:
            return q, None
    source, q_ids, q = read_queries(path, None)
    return q, q_ids.to_pylist() if source.ids_given else None


def _npy_queries(path: str) -> Any:
    """Float vectors of a small, plain .npy query file, read with numpy alone (else None: the general reader
    handles it and reports any problem). A file that is no plain .npy at all is a DataError naming it."""
    from vecx.formats.arrays import read_npy_header

    read_npy_header(path)
    try:
        q = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if q.dtype.kind != "f" or q.ndim not in (1, 2) or q.size == 0:
        return None
    return np.asarray(q, dtype=np.float32)


def read_query_sets(path: str) -> tuple[Any, list[Any] | None]:
    """Query token sets: a 2-D ``.npy`` is one query's vectors; a multi-vector table or JSONL a batch."""
    from vecx.formats.multi import MultiVectors

    if path.endswith(".npy") and os.path.isfile(path):
        from vecx.formats.arrays import read_npy_header

        read_npy_header(path)
        try:
            tokens = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: not a readable .npy file ({exc})") from None
        if tokens.ndim != 2 or tokens.dtype.kind not in "fiu" or not len(tokens):
            raise DataError(f"{path}: one query's vectors must be a non-empty 2-D array, got shape "
                            f"{tokens.shape} dtype {tokens.dtype}")
        return MultiVectors(np.asarray(tokens, dtype=np.float32), [0, len(tokens)]), None
    source, ids, sets = read_queries(path, None)
    if not source.multi:
        raise DataError(f"{path}: --multi-vector needs a set of vectors per query (a 2-D .npy for one query, "
                        "or a multi-vector table / JSONL of lists)")
    return sets, ids.to_pylist() if source.ids_given else None


def query(index: str, *, vector: str | None = None, like: list[Any] | None = None, k: int = 10,
          oversample: int | None = None, expansion: int | None = None,
          fields: list[str] | None = None, where: str | None = None,
          multi_vector: str | None = None, first_stage: str | None = None,
          json: str | None = None, scan: str | None = None) -> dict[str, Any]:
    """Search an index; returns per query its results (rank, id, score and the asked payload fields).

    ``json``: query records for an index of JSON records (``vsa``): an object literal, ``@FILE``
    (JSONL) or ``-`` (JSONL on stdin); such an index reads ``vector``/stdin as records too.

    ``where`` filters on payload columns (see :mod:`vecx.indexes.where`); a selective filter is
    answered by an exact scan over the matching rows, so it never returns fewer than it should.
    ``multi_vector``: query token sets (a 2-D ``.npy`` is one query; a multi-vector table or
    JSONL of lists a batch) for indexes over sets; ``first_stage``: ``fde``, ``mean`` or ``both``
    (see :mod:`vecx.indexes.multivector`). ``scan``: ``exhaustive`` or ``graph`` for indexes of
    codes scored by their codec (see :mod:`vecx.indexes.codescan`).
    """
    from vecx.indexes import where as where_mod
    from vecx.indexes.search import Searcher

    _check_search_options(k, oversample, expansion)
    searcher = Searcher(index)
    _choose_scan(searcher, scan)
    if first_stage is not None or multi_vector is not None:  # issue 6
        from vecx.indexes.multivector import check_first_stage

        searcher.first_stage = check_first_stage(first_stage, searcher)
    names = searcher.payload_names()
    if fields == ["all"]:
        fields = names
    fields = [name for name in fields or [] if name != "id"]  # every result carries its id already
    for name in fields:
        if name not in names:
            raise UsageError(f"--fields: no column {name!r} in {index}; columns: {', '.join(names) or 'none'}")
    allowed = None
    if where:
        mentioned = where_mod.columns_of(where)
        for name in mentioned:
            if name not in names and name != "id":
                raise UsageError(f"--where: no column {name!r} in {index}; columns: {', '.join(['id', *names])}")
        allowed = where_mod.evaluate(where, searcher.rows_table(mentioned or ["id"]))
    query_ids: list[Any] | None = None
    if like:
        rows_of = searcher.row_of(list(like))
        rows, scores = searcher.like(rows_of, k, oversample=oversample, expansion=expansion, allowed=allowed,
                                     rescore=oversample != 1)
        query_ids = list(like)
    elif multi_vector is not None:
        q, query_ids = read_query_sets(multi_vector)
        q = searcher.check_queries(q, multi_vector)
        rows, scores = searcher.search(q, k, oversample=oversample, expansion=expansion, allowed=allowed,
                                       rescore=oversample != 1)
    elif json is not None or searcher.chain.input.dtype == "json":
        from vecx.formats.records import query_records_for

        records, query_ids = query_records_for(searcher, json, vector)
        rows, scores = searcher.search(records, k, oversample=oversample, expansion=expansion, allowed=allowed,
                                       rescore=oversample != 1)
    else:
        q, query_ids = read_query_vectors(vector or "-", searcher.input_dim)
        q = searcher.check_queries(q, vector or "<stdin>")
        rows, scores = searcher.search(q, k, oversample=oversample, expansion=expansion, allowed=allowed,
                                       rescore=oversample != 1)
    taken = searcher.lookup(rows[rows >= 0], ["id", *(fields or [])])
    out, position = [], 0
    for i in range(len(rows)):
        results = []
        for rank, (row, score) in enumerate(zip(rows[i], scores[i]), start=1):
            if row < 0:
                continue
            results.append({"rank": rank, "id": taken[position]["id"], "score": round(float(score), 6),
                            **{f: taken[position][f] for f in fields or []}})
            position += 1
        entry: dict[str, Any] = {"query": i, "results": results}
        if like:
            entry["like"] = like[i]
        elif query_ids is not None:
            entry["query_id"] = query_ids[i]
        out.append(entry)
    return {"queries": out, "k": int(rows.shape[1]), "clamped": rows.shape[1] < k and allowed is None,
            "matching_rows": None if allowed is None else int(allowed.sum())}


def _check_search_options(k: int, oversample: int | None, expansion: int | None) -> None:
    """Refuse search options below 1 (a factor or size of 0 would silently mean something else)."""
    for flag, value in (("-k", k), ("--rescore", oversample), ("--expansion", expansion)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, not {value}")


def _choose_scan(searcher: Any, scan: str | None) -> None:
    """Apply a ``--scan`` choice to an opened index (a usage error where it cannot apply)."""
    from vecx.indexes.codescan import check_scan

    if check_scan(scan) is None:
        return
    searcher.scan_choice = scan
    _ = searcher.scan_mode  # a usage error now if this index cannot scan that way


def _truth_meta(path: str) -> dict[str, Any]:
    """The metadata of a ground-truth file given to ``eval --truth``: a Parquet file from ``vecx truth``."""
    import pyarrow.parquet as pq

    how = "make one with 'vecx truth TABLE QUERIES -o gt.parquet'"
    if not os.path.isfile(path):
        raise UsageError(f"--truth {path}: no such file", hint=how)
    try:
        raw = (pq.ParquetFile(path).metadata.metadata or {}).get(metadata.KEY)
    except (pa.ArrowInvalid, OSError):
        raw = None
    if raw is None:
        raise UsageError(f"--truth {path}: not a ground-truth file from 'vecx truth' (a Parquet file whose "
                         "metadata names the data it was computed on)", hint=how)
    return metadata.loads(raw, path)


def _truth_rows(path: str, n_rows: int) -> Any:
    """The ``rows`` column of a ground-truth file (queries x k base rows), checked against the index size."""
    import pyarrow.parquet as pq

    try:
        column = pq.read_table(path, columns=["rows"])["rows"]
    except (pa.ArrowInvalid, KeyError, OSError) as exc:
        raise DataError(f"{path}: cannot read the 'rows' column of the ground truth ({exc})",
                        hint="re-create it with 'vecx truth'") from None
    if not (pa.types.is_fixed_size_list(column.type) and pa.types.is_integer(column.type.value_type)) \
            or column.null_count or not len(column):
        raise DataError(f"{path}: the ground truth's 'rows' column is {column.type} with {len(column)} rows, "
                        "not lists of row numbers", hint="re-create it with 'vecx truth'")
    truth = np.stack(column.to_numpy(zero_copy_only=False)).astype(np.int64)
    if truth.min() < 0 or truth.max() >= n_rows:
        raise MismatchError(f"{path}: names base row {int(truth.max() if truth.max() >= n_rows else truth.min())}; "
                            f"the index has {n_rows:,} rows",
                            hint="compute the truth with 'vecx truth' on the table this index was built from")
    return truth


def evaluate(index: str, queries: str, *, truth_path: str | None = None, k: int = 10,
             oversample: int | None = None, expansion: int | None = None,
             target_recall: float | None = None, save: bool = False,
             first_stage: str | None = None, scan: str | None = None) -> dict[str, Any]:
    """Recall by stage (codes exact / graph / rescored), QPS and latency; optionally tune and save defaults.

    Ground truth comes from ``truth_path`` (a ``vecx truth`` file over the same source) or, if the
    index keeps float rescoring vectors of the original space, is computed exactly on the fly.
    """
    from vecx.indexes import evaluate as ev
    from vecx.indexes import store
    from vecx.indexes.search import read_json, Searcher
    from vecx.indexes.truth import exact_topk

    _check_search_options(k, oversample, expansion)
    searcher = Searcher(index)
    _choose_scan(searcher, scan)
    if first_stage is not None:  # issue 6
        from vecx.indexes.multivector import check_first_stage

        searcher.first_stage = check_first_stage(first_stage, searcher)
    _, q_ids, q = read_queries(queries, None)
    q = searcher.check_queries(q, queries)
    source_fp = (read_json(searcher.version, "table.json").get("source") or {}).get("fingerprint")
    if truth_path:
        meta = _truth_meta(truth_path)
        truth_fp = meta.get("base", {}).get("source_fingerprint")
        if meta.get("kind") != "truth":
            raise UsageError(f"{truth_path}: not a vecx truth file (make one with 'vecx truth')")
        if truth_fp and source_fp and truth_fp != source_fp:
            raise MismatchError(f"{truth_path}: ground truth was computed on other data than {index}",
                                hint="compute it with 'vecx truth' on the table this index was built from")
        truth = _truth_rows(truth_path, searcher.rows)
        if len(truth) != len(q):
            raise MismatchError(f"{truth_path}: has {len(truth)} queries, {queries} has {len(q)}")
        truth_source = truth_path
    elif searcher.multi_rescore is not None:  # exact MaxSim over the stored token vectors (issue 6)
        from vecx.indexes import maxsim

        truth, _ = maxsim.exact_topk(q, searcher.multi_rescore.all_rows(), min(100, searcher.rows))
        truth_source = "computed (exact MaxSim, from the stored token vectors)"
    else:
        if searcher.rescore_vectors is None or searcher.rescore_chain is None or searcher.rescore_chain.stages:
            raise UsageError("no ground truth: give --truth FILE (from 'vecx truth'), or build the index "
                             "with --rescore on the imported float vectors")
        blocks = ((s, np.asarray(searcher.rescore_vectors[s: s + 65536], dtype=np.float32))
                  for s in range(0, searcher.rows, 65536))
        truth, _ = exact_topk(q, blocks, min(100, searcher.rows), searcher.rescore_metric)
        truth_source = "computed (exact, from the rescoring vectors)"
    result = ev.run(searcher, q, truth, k, oversample=oversample, expansion=expansion)
    result["truth"] = truth_source
    if target_recall is not None:
        result["tuning"] = ev.tune(searcher, q, truth, k, target_recall)
        if save and result["tuning"]["reached"]:
            store.update_manifest(index, {"search": {"oversample": result["tuning"]["oversample"]},
                                          "graph": {"expansion_search": result["tuning"]["expansion"]}},
                                  expected=searcher.directory)
            result["tuning"]["saved"] = True
    elif save:
        raise UsageError("--save stores what --target-recall finds; give --target-recall too")
    return result


def vsa_explain(index: str, *, like: list[Any], record: dict[str, Any] | None = None,
                records_file: str | None = None) -> list[dict[str, Any]]:
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
            targets, query_label = like, "--json"
        vectors, approximate = _vsa_vectors(searcher, vsa, searcher.row_of(list(targets)))
        return [{"query": query_label, "like": target, "cosine": found["cosine"], "approximate": approximate,
                 "fields": found["fields"]}
                for target, found in zip(targets, contributions(vsa, record, vectors))]
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
                     hint="build the index with --rescore on the float 'vecx vsa' table")


# --------------------------------------------------------------------------------------
# Verifying
# --------------------------------------------------------------------------------------
def verify(path: str) -> dict[str, Any]:
    """Check every byte of an index, a vector table, a ground-truth file or a state file.

    An index: the sha256 of every file against its manifest, then its structure (graph header,
    ids, rescoring vectors, chain state, every row of ``rows.parquet``). A table: its metadata,
    its chain's state hashes, and every page decoded (with the page checksums vecx writes),
    the row count against the metadata. A state file: its arrays against their hashes.
    Returns a report; damage raises :class:`DataError` (exit 3), naming the file and what.
    """
    if os.path.isdir(path):
        from vecx.indexes.search import Searcher

        searcher = Searcher(path, verify=True)  # every file hashed, then opened as a query would
        try:
            version = searcher.version
            rows = _verify_parquet_rows(version.file("rows.parquet"), f"{path}: rows.parquet")
            if rows != searcher.rows:
                raise DataError(f"{path}: rows.parquet holds {rows:,} rows, the manifest says {searcher.rows:,}",
                                hint="rebuild the index")
            files = searcher.manifest["files"]
            return {"path": path, "kind": "index", "version": os.path.basename(version.directory),
                    "rows": searcher.rows, "files": len(files), "bytes": sum(f["bytes"] for f in files.values()),
                    "ok": True}
        finally:
            searcher.close()
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file or index")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"ARROW1"):  # a state container (vecx fit, --save-state)
        with open(path, "rb") as handle:
            blob = handle.read()
        meta, arrays = state.unpack(blob, path)
        try:
            first = VectorSpec.from_json(meta["input"])
            chain = Chain.from_records(first, meta["stages"], arrays, path)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: fitted state metadata is damaged ({type(exc).__name__}: {exc})") from None
        return {"path": path, "kind": "state", "spec": chain.spec, "stages": len(chain.stages), "ok": True}
    if not head.startswith(b"PAR1"):
        raise DataError(f"{path}: not a vecx index, table or state file", hint="vecx verify checks what vecx wrote")
    other = _other_kind(path)
    if other is not None:  # ground truth, which has no vector column
        rows = _verify_parquet_rows(path, path)
        if isinstance(other.get("queries"), dict) and other["queries"].get("rows") not in (None, rows):
            raise DataError(f"{path}: holds {rows:,} rows, its metadata says {other['queries']['rows']:,}")
        return {"path": path, "kind": other.get("kind"), "rows": rows, "ok": True}
    source = open_source(path)
    if source.meta is None:
        raise DataError(f"{path}: not written by vecx (no 'vecx' metadata); nothing to verify against",
                        hint="vecx import validates and fingerprints it")
    chain = prior_chain(source)
    count = sum(len(batch) for batch in source.batches())
    if source.meta.get("rows") is not None and count != source.meta["rows"]:
        raise DataError(f"{path}: holds {count:,} rows, its metadata says {source.meta['rows']:,}",
                        hint="the file was edited or truncated; re-create it")
    return {"path": path, "kind": "vectors", "rows": count, "spec": chain.spec, "ok": True}


def _verify_parquet_rows(path: str, where: str) -> int:
    """Decode every page of a Parquet file (checking page checksums); its row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
        return sum(batch.num_rows for batch in parquet.iter_batches(batch_size=65536))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{where}: cannot be read ({exc})", hint="the file is damaged; re-create it") from None

