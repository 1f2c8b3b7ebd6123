"""``vecx bench``: run codec chains end to end through the public library path and measure every step.

Beside it: :mod:`vecx.bench.peers` (faiss-cpu and raw usearch equivalents on the same data),
:mod:`vecx.bench.report` (ordering, the Pareto flag, Markdown), :mod:`vecx.bench.plot` (recall
against bytes per vector; matplotlib, optional) and :mod:`vecx.bench.timing`.

For each spec: fit (in memory, on the same seeded sample rows ``vecx encode`` would take,
so the time compares with a peer's ``train``), apply (the fitted chain's ``encode`` over the
whole base in memory: the encode throughput), ``encode_file`` (file to file, with the
fitted state), ``indexes.build.build`` with the imported base as rescoring vectors, then
``Searcher.search`` on all queries at once, without rescoring and at each rescoring factor.
Nothing in here knows a codec by name: any spec the registry understands runs, and the
index options are handed to :class:`vecx.indexes.build.BuildOptions` by field name.

Everything is written in one temporary directory that is removed at the end, whatever
happens. The base (as float32) and the queries are held in memory: bench is for data sets
that fit, like the shared benchmark sets.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.bench.timing import best_encode_time, best_fit_time, best_time, single_query_ms
from vecx.chain import Chain
from vecx.errors import DataError, MismatchError, UsageError, VecxError
from vecx.formats.tempfiles import write_bytes_atomic
from vecx.progress import SILENT

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np

    from vecx.bench.peers import PeerContext
else:
    np = lazy("numpy")

#: Rows per block when applying a chain or scanning the base in memory.
BLOCK = 65536
#: Training sample size when no --sample is given (the codecs' own default).
DEFAULT_SAMPLE = 100_000


@dataclass
class BenchOptions:
    """What to measure and how. ``rescore`` holds the oversampling factors (> 1) to measure."""

    k: int = 10
    rescore: tuple[int, ...] = (4, 10)
    truth: str | None = None
    peers: bool = False
    peer_names: tuple[str, ...] = ()
    index_options: dict[str, str] = field(default_factory=dict)
    sample: int | None = None
    seed: int = 0
    metric: str | None = None
    repeat: int = 2
    #: Draw recall against bytes per vector to this PNG.
    plot: str | None = None
    #: Write the table as Markdown to this file, headed by ``command`` (the command line that ran).
    markdown: str | None = None
    command: str | None = None


def run(base: str, queries: str, specs: list[str], options: BenchOptions | None = None,
        progress: Any = None) -> dict[str, Any]:
    """Benchmark every spec (and, if asked, the peers) on ``base`` and ``queries``; returns the report.

    Raises the usual vecx errors before doing any work for bad options, specs, files or query
    dimensions; an error while running a chain names the spec.
    """
    from vecx import api
    from vecx.bench import peers as peers_mod
    from vecx.bench import report as report_mod
    from vecx.formats.readers import ReadOptions, open_source

    options = options or BenchOptions()
    progress = progress or SILENT
    _check_options(options, specs)
    _check_outputs(options)
    want_peers = options.peers or bool(options.peer_names)
    if want_peers:
        peers_mod.require_faiss()
    peer_keys = [peers_mod.normalize_name(n) for n in options.peer_names]
    read = ReadOptions(metric=options.metric)
    source = open_source(base, read)
    _check_base(source, base)
    # "SPEC@key=value@..." sets index options for that spec only (e.g. binarize:mode=rabitq@scan=graph).
    split = [_split_spec(given) for given in specs]
    # "@rescore=SPEC2": a rescoring stage of SPEC2 codes, kept in memory, before the float vectors.
    stage_specs = [extra.pop("rescore", None) for _, extra in split]
    planned = [_plan(spec, source.space, options) for spec, _ in split]  # spec errors before any work
    for stage_spec in stage_specs:
        if stage_spec:
            _plan(stage_spec, source.space, options)
    build_options = index_build_options(options.index_options)
    spec_build_options = [index_build_options({**options.index_options, **extra}) for _, extra in split]
    q = _read_bench_queries(queries, base, source.dim)

    work = tempfile.mkdtemp(prefix="vecx-bench-")
    try:
        imported = os.path.join(work, "base.parquet")
        api.encode_file(base, imported, None, read=read, progress=progress)
        space = open_source(imported).space
        _, _, x = api.read_queries(imported, None)
        truth, truth_source = load_truth(options.truth, x, q, space.metric, options.k)
        if options.k > len(x):
            raise UsageError(f"-k {options.k} is larger than the base ({len(x)} rows)")
        chains = [Chain.from_spec(c.spec, space) for c in planned]  # re-planned on the imported (refined) space
        for given, chain, chain_options in zip(specs, chains, spec_build_options, strict=True):
            _check_indexable(given, chain, chain_options, bool(space.normalized))
        rows = _run_chains(specs, chains, spec_build_options, stage_specs, imported, x, q, truth, options, work,
                           progress)
        train_rows = _train_rows(len(x), options)
        if want_peers:
            keys = peers_mod.auto_peers(planned, source.dim, build_options) if options.peers else []
            keys = list(dict.fromkeys(keys + peer_keys))
            ctx = peers_mod.PeerContext(x=x, q=q, metric=space.metric, train_rows=train_rows, truth=truth,
                                        k=options.k, factors=(1, *options.rescore), graph=build_options,
                                        repeat=options.repeat)
            rows += _run_peers(keys, ctx, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = report_mod.finish({
        "base": {"path": base, "rows": int(len(x)), "dim": int(x.shape[1]), "metric": space.metric},
        "queries": {"path": queries, "rows": int(len(q))},
        "k": options.k, "rescore": list(options.rescore), "truth": truth_source,
        "seed": options.seed, "train_sample": {"rows": int(len(train_rows)), "seed": options.seed},
        "index": dataclasses.asdict(build_options),
        "versions": _versions(want_peers), "rows": rows,
    })
    _save(report, options)
    return report


def _check_base(source: Any, base: str) -> None:
    """Refuse a base that is not float vectors of their original space: the chains start from raw
    vectors, and recall is measured against exact search on them."""
    if source.space.dtype not in ("float32", "float16") or source.space.metric_on != "codes":
        raise UsageError(f"{base}: bench needs float vectors, not {source.space.dtype} codes",
                         hint="give the raw vectors or the imported float table")
    if Chain.from_source(source).input.dim != source.dim:
        raise UsageError(f"{base}: holds vectors of a dimension-changing chain; give the raw vectors")


def _read_bench_queries(queries: str, base: str, dim: int) -> Any:
    """The query vectors (float32), refused before any work unless they are finite rows of the base's
    ``dim`` dimensions."""
    from vecx import api

    _, _, q = api.read_queries(queries, None)
    if q.shape[1] != dim:
        raise MismatchError(f"{queries}: queries have {q.shape[1]} dimensions, {base} has {dim}",
                            hint="queries must be raw vectors of the base's space")
    bad = np.flatnonzero(~np.isfinite(q).all(axis=1))
    if len(bad):
        raise DataError(f"{queries}: query {int(bad[0])} holds NaN or Inf")
    return q


def _run_chains(specs: list[str], chains: list[Any], build_options: list[Any], stage_specs: list[str | None],
                imported: str, x: Any, q: Any, truth: Any, options: BenchOptions, work: str,
                progress: Any) -> list[dict[str, Any]]:
    """The report's row of every chain, run one after the other with files under ``work``; a vecx error
    while one runs is re-raised with its message prefixed by the spec as given."""
    rows = []
    for number, (given, chain, chain_options, stage_spec) in enumerate(zip(specs, chains, build_options, stage_specs,
                                                                           strict=True)):
        try:
            rows.append(_run_chain(given, chain, imported, x, q, truth, options, chain_options,
                                   os.path.join(work, str(number)), progress, stage_spec))
        except VecxError as exc:
            exc.message = f"spec {given!r}: {exc.message}"
            exc.args = (exc.message,)
            raise
    return rows


def _run_peers(keys: list[str], ctx: PeerContext, progress: Any) -> list[dict[str, Any]]:
    """The report's row of every peer, in order, each run as one progress step."""
    from vecx.bench import peers as peers_mod

    rows = []
    for key in keys:
        progress.start(None, f"peer {key}")
        rows.append(peers_mod.run_peer(key, ctx))
        progress.close()
    return rows


def _check_outputs(options: BenchOptions) -> None:
    """Refuse unwritable report files (and a plot without matplotlib) before any work."""
    from vecx.formats.tempfiles import check_output

    for name, path in (("--plot", options.plot), ("--out", options.markdown)):
        if path == "-":
            raise UsageError(f"{name} -: the report already goes to standard output; give a file")
        if path:
            check_output(path)
    if options.plot:
        from vecx.bench.plot import require_matplotlib

        require_matplotlib()


def _save(report: dict[str, Any], options: BenchOptions) -> None:
    """Draw the plot and write the Markdown table that the options ask for (each written atomically)."""
    if options.plot:
        from vecx.bench.plot import draw

        draw(report, options.plot)
    if options.markdown:
        from vecx.bench.report import markdown
        write_bytes_atomic(options.markdown, markdown(report, options.command).encode())


def _check_options(options: BenchOptions, specs: list[str]) -> None:
    if not specs:
        raise UsageError("give at least one --spec")
    if options.k < 1:
        raise UsageError(f"-k must be at least 1, not {options.k}")
    for factor in options.rescore:
        if factor < 2:
            raise UsageError(f"--oversample {factor}: a rescoring factor must be at least 2 "
                             "(recall without rescoring is always measured)")
    if options.sample is not None and options.sample < 1:
        raise UsageError(f"--sample must be at least 1, not {options.sample}")
    if options.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, not {options.repeat}")


def _split_spec(given: str) -> tuple[str, dict[str, str]]:
    """A ``--spec`` value: the chain spec, and the index options after ``@`` (``key=value``, ``@``-separated)."""
    spec, *extras = given.split("@")
    out = {}
    for item in extras:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--spec {given!r}: write index options as SPEC@key=value, e.g. "
                             "binarize:mode=rabitq@scan=graph")
        out[key.strip()] = value.strip()
    return spec, out


def _plan(spec: str, space: Any, options: BenchOptions) -> Any:
    """The chain of a spec; ``--sample`` sets the sample of every fitting stage that has none."""
    from vecx import spec as spec_mod
    from vecx.chain import Chain

    chain = Chain.from_spec(spec, space, options.seed)
    if options.sample is not None:
        for stage, parsed in zip(chain.stages, spec_mod.parse(spec), strict=True):
            if "sample" in stage.values and "sample" not in dict(parsed.options):
                stage.values["sample"] = options.sample
    return chain


def _train_rows(n: int, options: BenchOptions) -> Any:
    """The rows the codecs fit on (for a stage without its own sample/seed): peers train on them too."""
    from vecx.sampling import sample_rows

    return sample_rows(n, options.sample or DEFAULT_SAMPLE, options.seed)


def index_build_options(raw: dict[str, str]) -> Any:
    """:class:`BuildOptions` from ``key=value`` strings, converted by each field's default type."""
    from vecx.indexes.build import BuildOptions

    defaults = BuildOptions()
    known = {f.name for f in dataclasses.fields(BuildOptions)}
    values: dict[str, Any] = {}
    for key, text in raw.items():
        if key not in known:
            raise UsageError(f"--index-option {key}={text}: no such index option; known: {', '.join(sorted(known))}")
        kind = type(getattr(defaults, key))
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                values[key] = text.lower() in ("true", "1", "yes")
            else:
                values[key] = kind(text)
        except ValueError:
            raise UsageError(f"--index-option {key}={text}: not a valid {kind.__name__}") from None
    return BuildOptions(**values)


def load_truth(path: str | None, x: Any, q: Any, metric: str, k: int) -> tuple[Any, str]:
    """Truth rows (queries x >= k): a ``vecx truth`` table, a .npy of row numbers, or computed exactly."""
    from vecx.indexes.truth import exact_topk

    if path is None:
        blocks = ((s, x[s: s + BLOCK]) for s in range(0, len(x), BLOCK))
        rows, _ = exact_topk(q, blocks, min(k, len(x)), metric)
        return rows, "computed exactly"
    from vecx.formats.truthfile import read_truth_file, read_truth_meta, row_numbers_only

    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file", hint="give a 'vecx truth' table or a .npy of row numbers")
    if not row_numbers_only(path):
        read_truth_meta(path, "--truth")
    truth = read_truth_file(path, len(x))
    if len(truth) != len(q):
        raise MismatchError(f"{path}: has truth for {len(truth)} queries, the query file has {len(q)}")
    if truth.shape[1] < k:
        raise MismatchError(f"{path}: holds {truth.shape[1]} neighbours per query; -k {k} needs at least {k}")
    truth = np.asarray(truth[:, :k], dtype=np.int64)
    if truth.min() < 0 or truth.max() >= len(x):
        raise MismatchError(f"{path}: row numbers outside the base (0..{len(x) - 1}): truth of other data?")
    return truth, path


def _check_indexable(given: str, chain: Any, build_options: Any, normalized: bool) -> None:
    """Fail before any chain runs if the default graph cannot search a chain's codes.

    Only for codes a usearch graph takes and the default index kind: other kinds decide in ``build``.
    """
    from vecx.indexes.graph import USEARCH_DTYPES, graph_metric

    if getattr(build_options, "kind", "hnsw") != "hnsw" or chain.output.dtype not in USEARCH_DTYPES:
        return
    if chain.stages and chain.stages[-1].scores_codes:  # the codec scores its codes (per-dimension int8)
        return
    try:
        graph_metric(chain.output, normalized)
    except VecxError as exc:
        exc.message = f"spec {given!r}: {exc.message}"
        exc.args = (exc.message,)
        raise


def _sample_for(x: Any) -> Callable[[Any], Any]:
    """Each fitting stage's seeded sample of the rows of ``x`` (as ``vecx fit`` draws it from a file)."""
    from vecx.sampling import stage_sample_rows

    return lambda stage: x[stage_sample_rows(stage, len(x))]


def _run_chain(given: str, chain: Any, imported: str, x: Any, q: Any, truth: Any, options: BenchOptions,
               build_options: Any, prefix: str, progress: Any, stage_spec: str | None = None) -> dict[str, Any]:
    """Fit, apply, encode, index and search one chain; the row of the report.

    ``stage_spec``: the index rescores in two stages, codes of this spec (in memory: counted in the
    row's bytes) and then the float vectors for the best ``k x 2`` of them (or fewer). The row's
    ``memory_recall`` is the codes stage alone at the largest factor: no float vector read.
    """
    from vecx import api
    from vecx.indexes.build import build
    from vecx.indexes.evaluate import recall_at
    from vecx.indexes.rescoring import MULTI_STAGE_LATER
    from vecx.indexes.search import Searcher

    fit_s, state_file = 0.0, None
    if chain.needs_fit:
        progress.start(None, f"{given}: fitting")
        fit_s = best_fit_time(lambda: chain.fit(_sample_for(x), refit=True), options.repeat)
        progress.close()
        state_file = prefix + ".state"
        write_bytes_atomic(state_file, chain.state_container(None))
    progress.start(None, f"{given}: applying in memory")
    chain.encode(x[:1024])  # first use (a compiled kernel's load) is the build's cost, not throughput
    apply_s = best_encode_time(lambda: [chain.encode(x[s: s + BLOCK]) for s in range(0, len(x), BLOCK)], options.repeat)
    progress.close()
    codes = prefix + ".parquet"
    started = time.perf_counter()
    api.encode_file(imported, codes, chain.spec, state_file=state_file, progress=progress)
    encode_s = time.perf_counter() - started
    refine: tuple[str, ...] = ()
    if stage_spec:
        refine = (prefix + ".stage.parquet",)
        started = time.perf_counter()
        api.encode_file(imported, refine[0], stage_spec, progress=progress)  # fitted on its own seeded sample
        encode_s += time.perf_counter() - started
    index = prefix + ".vecx"
    started = time.perf_counter()
    manifest = build(codes, index, rescore=imported, refine=refine, options=build_options, progress=progress)
    build_s = time.perf_counter() - started
    os.unlink(codes)
    searcher = Searcher(index)
    searcher.use_compiled_scans()
    qq = searcher.check_queries(q, "queries")
    recall, qps = {}, {}
    for factor in (1, *options.rescore):
        progress.start(None, f"{given}: searching x{factor}")
        factors: int | tuple[int, ...] = (factor, min(factor, MULTI_STAGE_LATER)) if refine else factor
        (found, _), seconds = best_time(
            partial(searcher.search, qq, options.k, oversample=factors, rescore=factor > 1), options.repeat)
        progress.close()
        recall[f"x{factor}"] = round(recall_at(found, truth, options.k), 4)
        qps[f"x{factor}"] = round(len(qq) / seconds, 1)
    memory: dict[str, Any] = {}
    if refine:  # the codes stage ranks the k results: nothing read from the float vectors
        searcher.stage_limit = 1
        top = max(options.rescore, default=1)
        found, _ = searcher.search(qq, options.k, oversample=(top, top))
        searcher.stage_limit = None
        memory = {"stage": stage_spec, "stage_bytes_per_vector": searcher.refine[0].bytes_per_row,
                  "memory_recall": round(recall_at(found, truth, options.k), 4), "memory_factor": top}
    p50_ms = single_query_ms(lambda i: searcher.search(qq[i: i + 1], options.k, oversample=1, rescore=False), len(qq))
    return {"system": "vecx", "name": given, "spec": chain.spec, **memory,
            "bytes_per_vector": int(chain.output.bytes_per_vector) + memory.get("stage_bytes_per_vector", 0),
            "index_bytes_per_vector": int(manifest["bytes_per_vector"]),
            "graph": {"metric": manifest["graph"]["metric"], "dtype": manifest["graph"]["dtype"],
                      **({"scan": searcher.scan_mode} if searcher.scan is not None else {})},
            "recall": recall, "qps": qps, "p50_ms": p50_ms, "fit_s": round(fit_s, 3), "encode_s": round(encode_s, 3),
            "encode_mb_s": round(x.nbytes / 2**20 / max(apply_s, 1e-9), 1), "build_s": round(build_s, 3)}


def _versions(with_peers: bool) -> dict[str, str]:
    import platform

    import usearch

    from vecx import __version__

    out = {"vecx": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "usearch": usearch.__version__}
    if with_peers:
        import faiss

        out["faiss"] = faiss.__version__
    return out
