"""``vecx plan``: an index for a memory budget, chosen by measuring candidates rather than by formulas.

Given a base table and a budget (``2MB`` for the whole index, or ``64B/vector``), the planner
lists a small, explained set of chains that can fit (float16 and int8 graphs, PCA then int8,
sign bits, RaBitQ with and without coarse lists, PQ with OPQ, with and without coarse lists),
builds each on a seeded sample of the base (``sample`` rows; the queries are ``queries`` other
sampled rows unless a query file is given) and measures recall@k (codes alone, and rescored with
the float vectors, which stay on disk) and batch QPS. What an index keeps in memory is what its
searches read whole: the graph and the codes (``graph.usearch``, ``codes.bin``) and the fitted
state; the rescoring vectors and the payload are memory-mapped and read only for the rows a
query needs. That is measured on each built sample index, per row, and extrapolated to the base's
rows. Candidates over the budget are dropped. With ``target_recall``, each candidate's least
search effort reaching it is found as ``vecx eval --target-recall`` finds it (the oversampling
factor, then the graph's expansion or the lists probed) and its QPS measured there; the pick is
the fastest of those that reach it, else the one with the best recall.
The report gives the Pareto set (recall against bytes in memory) and the ``vecx`` commands that
build the pick on the whole base.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")

#: Index files a search reads whole (kept in memory); the rest is memory-mapped and read by rows.
MEMORY_FILES = re.compile(r"(^|-)(graph\.usearch|codes\.bin|state\.npz)$")
_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
          "tib": 1 << 40}
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]i?b|b)(/vector)?\s*$", re.IGNORECASE)


@dataclass
class PlanOptions:
    """What ``vecx plan`` measures: the budget, the target, the sample and the queries."""

    budget: str
    target_recall: float | None = None
    queries: str | None = None
    truth: str | None = None
    k: int = 10
    sample: int = 20_000
    query_count: int = 200
    seed: int = 0
    oversample: int = 4


def parse_budget(text: str, rows: int) -> tuple[float, float]:
    """A budget as (bytes for the whole index, bytes per vector): ``2MB``, ``1.5GiB``, ``64B/vector``."""
    match = _BUDGET.match(text)
    if not match:
        raise UsageError(f"--budget {text!r}: give a size such as 2MB, 500KiB or 1.5GB for the whole index, "
                         "or 64B/vector per vector")
    amount = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if amount <= 0:
        raise UsageError(f"--budget {text!r} must be more than zero")
    if match.group(3):
        return amount * rows, amount
    return amount, amount / rows


def candidates(dim: int, per_vector: float, rows: int) -> list[tuple[str, dict[str, Any], str]]:
    """The chains worth measuring: (spec, index options, why). A chain whose codes alone take more
    than ``per_vector`` bytes cannot fit and is left out (a lower bound: graphs and state add to it);
    of PQ, the two largest sizes the budget allows (smaller codes only lose recall)."""
    lists = int(min(4096, max(16, 2 ** round(np.log2(max(1.0, 4 * np.sqrt(rows)))))))
    rabitq = dim // 8 + 4
    out: list[tuple[str, dict[str, Any], str, float]] = [
        ("f16", {}, "float16 graph: nearly exact, 2 bytes per dimension", 2 * dim),
        ("int8", {}, "per-dimension int8: 1 byte per dimension, scored by its codec", dim),
        ("binarize", {}, "sign bits after centring, Hamming graph", dim / 8),
        ("binarize:mode=rabitq", {}, "RaBitQ: sign bits and 2 factors, scored by the unbiased estimator", rabitq),
        (f"binarize:mode=rabitq:ivf={lists}", {}, f"RaBitQ in {lists} coarse lists: scans only the nearest lists",
         rabitq + 2),
    ]
    for part in (dim // 2, dim // 4):
        if part >= 8:
            out.append((f"pca:{part},int8:mode=global", {}, f"PCA to {part} dimensions, then int8 on a graph", part))
    sizes = [m for m in (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256) if m <= min(dim, per_vector)]
    for m in sizes[-2:]:
        out.append((f"pq:{m}x8", {}, f"PQ, {m} bytes: scans every code", m))
        if dim <= 1024:  # the OPQ rotation is D x D floats
            out.append((f"pq:{m}x8:opq=true", {}, f"OPQ + PQ, {m} bytes: scans every code", m))
        if 2 * m <= dim:
            out.append((f"pq:{2 * m}x4", {}, f"PQ with 16 centroids per sub-space (small codebooks), {m} bytes", m))
        out.append((f"pq:{m}x8:opq=true:ivf={lists}" if dim <= 1024 else f"pq:{m}x8:ivf={lists}", {},
                    f"PQ in {lists} coarse lists, {m} + 2 bytes: scans only the nearest lists", m + 2))
    return [(spec, options, why) for spec, options, why, least in out if least <= per_vector]


def run(base: str, options: PlanOptions, progress: Any = None) -> dict[str, Any]:
    """Measure the candidates on a sample of ``base``; the report (see the module)."""
    from vecx import api
    from vecx.formats.readers import ReadOptions, open_source
    from vecx.indexes.build import BuildOptions
    from vecx.indexes.truth import exact_topk
    from vecx.sampling import sample_rows

    source = open_source(base)
    if source.multi or source.space.dtype not in ("float32", "float16"):
        raise UsageError(f"{base}: vecx plan takes float vectors (one per row): give the imported table")
    rows = source.count_rows()
    total, per_vector = parse_budget(options.budget, rows)
    space = source.space
    want = min(rows, options.sample + (0 if options.queries is not None else options.query_count))
    picked = sample_rows(rows, want, options.seed)
    x = np.asarray(source.take(np.sort(picked)), dtype=np.float32)
    if options.queries is not None:
        _, _, q = api.read_queries(options.queries, None)
        q = np.asarray(q, dtype=np.float32)[: options.query_count]
    else:
        order = np.random.Generator(np.random.PCG64(options.seed)).permutation(len(x))
        q, x = x[order[: options.query_count]], x[np.sort(order[options.query_count:])]
    if len(x) < 2 * options.k:
        raise UsageError(f"{base}: {len(x)} sample rows are too few to plan with (k = {options.k})")
    truth, _ = exact_topk(q, iter([(0, x)]), options.k, space.metric)
    work = tempfile.mkdtemp(prefix="vecx-plan-")
    measured: list[dict[str, Any]] = []
    try:
        imported, q_file, truth_file, x_file = (os.path.join(work, name)
                                                for name in ("sample.parquet", "q.npy", "gt.npy", "x.npy"))
        np.save(x_file, x)
        api.encode_file(x_file, imported, read=ReadOptions(metric=space.metric))
        np.save(q_file, q)
        np.save(truth_file, truth)
        # Coarse lists sized for the sample the candidates are measured on (about 4 sqrt(rows)).
        for spec, index_options, why in candidates(space.dim, per_vector, len(x)):
            if progress is not None:
                progress.start(None, f"measuring {spec}")
            path, encoded = os.path.join(work, "candidate.vecx"), os.path.join(work, "candidate.parquet")
            try:
                api.encode_file(imported, encoded, spec, seed=options.seed)
                api.build_index(encoded, path, rescore=imported, options=BuildOptions(**index_options))
            except UsageError:
                continue  # the chain does not fit this data (e.g. too few rows for its lists)
            report = api.evaluate(path, q_file, truth_path=truth_file, k=options.k, oversample=options.oversample,
                                  target_recall=options.target_recall)
            tuned = _tuned(api, path, q_file, truth_file, options.k, report.tuning)
            memory = _memory_bytes(path)
            fixed = memory["fixed"]
            est = fixed + memory["per_row"] * rows
            first, rescored = report.stages[1], report.stages[-1]
            measured.append({
                "spec": spec, "why": why, "scan": report.scan, "bytes_per_vector": round(memory["per_row"], 1),
                "memory_bytes": int(est), "fits": est <= total,
                f"recall@{options.k}": first[f"recall@{options.k}"],
                f"recall@{options.k}_rescored": rescored[f"recall@{options.k}"],
                "qps": first.get("qps"), "qps_rescored": rescored.get("qps"), "tuned": tuned,
            })
            if progress is not None:
                progress.close()
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(os.path.join(work, ".candidate.vecx.d"), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _report(base, rows, options, total, per_vector, measured, len(x), len(q))


def build_for_budget(base: str, output: str, options: PlanOptions, *, progress: Any = None, wait: bool = True,
                     on_wait: Any = None, connectivity: int = 16, expansion_add: int = 128,
                     deterministic: bool = False) -> dict[str, Any]:
    """``vecx index BASE --budget``: plan (:func:`run`), then encode the whole base with the pick's chain
    and build the index with its settings (rescoring, oversampling, lists probed, expansion). What the
    built index keeps in memory (see the module) is checked before it replaces ``output``: over the
    budget, a :class:`UsageError` says by how much and the previous index stays as it was.
    Returns the plan, the index's manifest and its memory."""
    from vecx import api
    from vecx.indexes.build import BuildOptions, build
    from vecx.indexes.codescan import DEFAULT_NPROBE

    report = run(base, options, progress)
    pick, total = report["pick"], report["budget"]["bytes"]
    settings = pick["settings"]
    measured = next(c for c in report["candidates"] if c["spec"] == pick["spec"])
    build_options = BuildOptions(
        connectivity=connectivity, expansion_add=expansion_add, deterministic=deterministic,
        expansion_search=int(settings.get("expansion", BuildOptions.expansion_search)),
        oversample=int(settings["oversample"]) if pick["rescore"] else BuildOptions.oversample,
        nprobe=int(settings.get("nprobe", DEFAULT_NPROBE)),
        # the scan measured (a sample is smaller than the base: auto could choose another there)
        scan=measured["scan"] if measured["scan"] in ("exhaustive", "graph", "ivf") else "auto")
    memory: dict[str, int] = {}

    def within_budget(version: str) -> None:
        memory["bytes"] = used = memory_in(version)
        if used > total:
            raise UsageError(f"--budget {options.budget}: the index built with {pick['spec']} keeps {used:,} bytes in "
                             f"memory, over the budget ({total:,}); {output} was not changed",
                             hint=f"give a budget of at least {used:,} bytes, or build a smaller chain with "
                                  "'vecx plan' and 'vecx index'")

    # The codes go beside the output (same file system), and are removed whatever happens.
    work = tempfile.mkdtemp(prefix=".vecx-budget-", dir=os.path.dirname(os.path.abspath(output)))
    try:
        codes = os.path.join(work, "codes.parquet")
        if progress is not None:
            progress.start(None, f"encoding {base} with {pick['spec']}")
        api.encode_file(base, codes, pick["spec"], seed=options.seed)
        if progress is not None:
            progress.close()
        manifest = build(codes, output, rescore=base if pick["rescore"] else None, options=build_options,
                         progress=progress, wait=wait, on_wait=on_wait, before_commit=within_budget)
        tuning = None
        if options.target_recall is not None:
            tuning = _tune_built(api, base, output, options, work, progress)
            from vecx.indexes import store

            manifest = store.open_version(output)[1]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"plan": report, "index": output, "memory_bytes": memory["bytes"], "manifest": manifest,
            "tuning": tuning}


def _tune_built(api: Any, base: str, output: str, options: PlanOptions, work: str, progress: Any) -> dict[str, Any]:
    """The least search effort reaching the target on the whole index, saved as its defaults (as
    ``vecx eval --target-recall --save``): the sample's settings can fall short on more rows, where
    neighbours are closer together. The queries are ``options.queries``, else ``query_count``
    seeded rows of the base, each of which finds itself (one of its k true neighbours); the truth
    is exact over the whole base."""
    from vecx.sampling import sample_rows

    queries = options.queries
    if queries is None:
        from vecx.formats.readers import open_source

        source = open_source(base)
        rows = source.count_rows()
        picked = np.sort(sample_rows(rows, min(rows, options.query_count), options.seed + 1))
        queries = os.path.join(work, "tune-queries.npy")
        np.save(queries, np.asarray(source.take(picked), dtype=np.float32))
    truth = os.path.join(work, "tune-truth.parquet")
    if progress is not None:
        progress.start(None, f"tuning {output} for recall@{options.k} >= {options.target_recall}")
    api.truth(base, queries, truth, k=options.k)
    report = api.evaluate(output, queries, truth_path=truth, k=options.k, target_recall=options.target_recall,
                          save=True)
    if progress is not None:
        progress.close()
    return report.tuning or {}


def memory_in(version: str) -> int:
    """Bytes an index version directory keeps in memory when searched: its :data:`MEMORY_FILES`."""
    return sum(os.path.getsize(os.path.join(version, name)) for name in os.listdir(version)
               if MEMORY_FILES.search(name))


def _tuned(api: Any, path: str, q_file: str, truth_file: str, k: int, tuning: dict[str, Any] | None) -> Any:
    """The least search effort reaching the target (``eval --target-recall``: the oversampling factor,
    then the graph's expansion or the lists probed) and the QPS at it; None when out of reach."""
    if not tuning or not tuning["reached"]:
        return None
    knobs = {knob: tuning[knob] for knob in ("nprobe", "expansion") if knob in tuning}
    at = api.evaluate(path, q_file, truth_path=truth_file, k=k, oversample=tuning["oversample"], **knobs)
    stage = at.stages[-1] if tuning["oversample"] > 1 else at.stages[1]
    return {"oversample": tuning["oversample"], **knobs, f"recall@{k}": tuning[f"recall@{k}"],
            "qps": stage.get("qps")}


def _memory_bytes(index: str) -> dict[str, float]:
    """What an index keeps in memory (see the module): per row, and fixed (the fitted state)."""
    from vecx.indexes import store

    version = store.open_reader(index)
    try:
        manifest = version.manifest
        files = manifest.get("files", {})
        state = sum(int(f["bytes"]) for name, f in files.items() if name.endswith("state.npz"))
        per = sum(int(f["bytes"]) for name, f in files.items() if MEMORY_FILES.search(name)) - state
        return {"per_row": per / max(1, int(manifest["rows"])), "fixed": float(state)}
    finally:
        version.close()


def _report(base: str, rows: int, options: PlanOptions, total: float, per_vector: float,
            measured: list[dict[str, Any]], sample: int, queries: int) -> dict[str, Any]:
    """The plan: every candidate measured, the Pareto set, the pick and its commands."""
    k = options.k
    fitting = [m for m in measured if m["fits"]]

    def best_recall(m: dict[str, Any]) -> float:
        return max(m[f"recall@{k}"], m[f"recall@{k}_rescored"])

    for m in measured:
        m["pareto"] = m["fits"] and not any(
            o is not m and o["fits"] and o["memory_bytes"] <= m["memory_bytes"] and best_recall(o) > best_recall(m)
            for o in measured)
    if not fitting:
        smallest = min((m["memory_bytes"] for m in measured), default=None)
        raise UsageError(f"--budget {options.budget}: no candidate fits ({total:,.0f} bytes for {rows:,} rows)",
                         hint="give a larger budget" + (f": the smallest measured index takes {smallest:,} bytes"
                                                        if smallest is not None else ""))
    reaching = [m for m in fitting if m.get("tuned")]
    if reaching:  # the fastest at the settings that reach the target
        m = max(reaching, key=lambda c: c["tuned"]["qps"] or 0)
        settings = m["tuned"]
    else:  # no target, or none reaches it: the best recall, at the measured settings
        m = max(fitting, key=best_recall)
        rescored = m[f"recall@{k}_rescored"] > m[f"recall@{k}"]
        settings = {"oversample": options.oversample if rescored else 1}
    pick = {"spec": m["spec"], "rescore": settings["oversample"] > 1,
            "reaches_target": bool(reaching) or options.target_recall is None,
            "settings": settings, "memory_bytes": m["memory_bytes"],
            "commands": _commands(base, m["spec"], settings)}
    return {"base": base, "rows": rows, "budget": {"given": options.budget, "bytes": int(total),
                                                   "bytes_per_vector": round(per_vector, 1)},
            "target_recall": options.target_recall, "k": k, "sample_rows": sample, "queries": queries,
            "oversample": options.oversample, "candidates": measured, "pick": pick}


def _commands(base: str, spec: str, settings: dict[str, Any]) -> list[str]:
    """The commands that build the pick on the whole base, with the search settings it was measured at."""
    stem = os.path.splitext(os.path.basename(base.rstrip("/")))[0] or "docs"
    codes = f"{stem}.codes.parquet"
    index = f"{stem}.vecx"
    build = f"vecx index {codes} -o {index}"
    if settings["oversample"] > 1:
        build += f" --rescore-vectors {base} --oversample {settings['oversample']}"
    if "nprobe" in settings:
        build += f" --nprobe {settings['nprobe']}"
    if "expansion" in settings:
        build += f" --expansion-search {settings['expansion']}"
    return [f"vecx encode {base} -o {codes} --spec {spec}", build]
