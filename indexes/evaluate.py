"""``vecx eval``: where recall goes — quantization, graph, rescoring — and how fast, measured honestly.

Three recalls against exact ground truth, each isolating one loss:

- ``codes, exact``: the codes searched exhaustively in the graph's metric (no graph): what the
  encoding alone loses (quantization loss);
- ``graph``: the HNSW search over the codes, no rescoring (quantization + graph loss);
- ``graph + rescore``: k x oversample candidates re-ranked with the float vectors (or codes).
  An index with several rescoring stages gets one row per stage: the first stage alone ranking
  the k results, then the first two, and so on, so that each stage's gain shows.

An exhaustive search (``--scan exhaustive``, the default for PQ/RaBitQ codes) names its stages
``scan`` (``codes, exact`` is then the same search). Each recall@n comes from a search for n results.

Latency percentiles come from one query at a time; QPS from the whole batch in one call.
``target_recall`` searches for the smallest oversampling factor, then the smallest search
expansion, that reach the target on these queries; with several rescoring stages, then the
smallest factor each later stage keeps.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import UsageError
from vecx.indexes import order

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

FACTORS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)
EXPANSIONS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
NPROBES = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096)


def recall_at(found: Any, truth: Any, k: int) -> float:
    """Mean fraction of the true top-k found in the first k results."""
    k = min(k, truth.shape[1], found.shape[1])
    return float(np.mean(hits_at(found, truth, k))) / k


def hits_at(found: Any, truth: Any, k: int) -> Any:
    """For each query, how many of its true top-k are in its first k results."""
    return np.array([len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)])


def _recalls(found: Any, truth: Any, ks: tuple[int, ...]) -> dict[str, float]:
    return {f"recall@{k}": round(recall_at(found, truth, k), 4) for k in ks if k <= truth.shape[1]}


def run(searcher: Any, q: Any, truth: Any, k: int, *, oversample: Any = None,
        expansion: int | None = None, latency_queries: int = 200) -> dict[str, Any]:
    """Evaluate an opened index on queries ``q`` (input space) against truth rows."""
    ks = tuple(sorted({1, 10, 100, k}))
    kmax = min(max(ks), truth.shape[1], searcher.live_rows)
    out: dict[str, Any] = {"queries": int(len(q)), "k": k, "rows": searcher.live_rows,
                           "bytes_per_vector": searcher.manifest["bytes_per_vector"],
                           "graph": searcher.manifest["graph"], "stages": []}
    codes = searcher.chain.encode_query(q)
    exact_rows, exact_dist = searcher.exact_codes(codes, kmax)
    out["stages"].append({"stage": "codes, exact", **_recalls(exact_rows, truth, ks)})
    query_lid = _query_lid(searcher, exact_rows, exact_dist)
    out["lid"] = {"data": searcher.manifest["graph"].get("lid"),
                  "queries": None if query_lid is None else order.summary(
                      query_lid, searcher.live_rows, min(order.LID_NEIGHBOURS, exact_dist.shape[1]))}
    out["scan"], out["scored"] = searcher.scan_mode, searcher.scan is not None
    # "scan": every code compared, no graph loss; "ivf": the codes of the lists probed.
    first = {"graph": "graph", "ivf": "ivf"}.get(searcher.scan_mode, "scan")
    if searcher.scan_mode == "ivf":
        out["nprobe"] = searcher.probed_lists
        out["lists"] = searcher.scan.list_count
    if searcher.scan is not None and searcher.scan.query_bits:
        out["query_bits"] = searcher.scan.query_bits
    configs: list[tuple[str, Any, bool, int | None]] = [(first, 1, False, None)]
    if searcher.rescorable:
        configs += _rescore_configs(searcher, first, oversample)
    for name, factor, rescore, limit in configs:
        searcher.stage_limit = limit
        # Each recall@n comes from a search for n results (k x factor candidates for k = n), as a user
        # running 'vecx query -k n' gets them; QPS from the search for the given k.
        recalls: dict[str, Any] = {}
        batch_seconds: float | None = None
        for n in ks:
            if n > truth.shape[1]:
                continue
            start = time.perf_counter()
            rows, _ = searcher.search(q, min(n, kmax), oversample=factor, expansion=expansion, rescore=rescore)
            seconds = time.perf_counter() - start
            recalls[f"recall@{n}"] = round(recall_at(rows, truth, n), 4)
            if n == k and query_lid is not None:
                recalls["by_lid"] = _recall_by_lid(rows, truth, k, query_lid)
            if n == k or batch_seconds is None:
                batch_seconds = seconds
        assert batch_seconds is not None, "ks holds 1, and truth has at least one column"
        latencies = []
        for i in range(min(latency_queries, len(q))):
            t0 = time.perf_counter()
            searcher.search(q[i: i + 1], k, oversample=factor, expansion=expansion, rescore=rescore)
            latencies.append(time.perf_counter() - t0)
        out["stages"].append({
            "stage": name, **recalls, "qps": round(len(q) / batch_seconds, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 3),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 3)})
    searcher.stage_limit = None
    return out


def _rescore_configs(searcher: Any, first: str, oversample: Any) -> list[tuple[str, Any, bool, int | None]]:
    """The rescored rows of the report: one per rescoring stage (each adding one stage to the ones
    before), named by the factors and what each stage compares (codes or float vectors)."""
    factors = searcher.factors(oversample)
    if not searcher.refine:
        by = " (codes)" if searcher.rescore_codes is not None else ""
        return [(f"{first} + rescore x{factors[0]}{by}", factors[0], True, None)]
    configs: list[tuple[str, Any, bool, int | None]] = []
    name = f"{first} + rescore"
    stages = [*searcher.refine, searcher.final]
    for number, (stage, factor) in enumerate(zip(stages, factors, strict=True), start=1):
        name += f"{' +' if number > 1 else ''} x{factor} ({'codes' if stage.encoded else 'float'})"
        configs.append((name, factors, True, number if number < len(stages) else None))
    return configs


def _query_lid(searcher: Any, rows: Any, dist: Any) -> Any:
    """Each query's LID (indexes/order.py) from its exact nearest codes, where the graph's distances are
    Euclidean ones or map onto them (cosine: 2 x the distance of unit vectors); else ``None``."""
    metric = searcher.manifest["graph"]["metric"]
    if searcher.scan is not None or metric not in ("cos", "l2sq", "hamming"):
        return None
    squared = np.where(rows >= 0, np.asarray(dist, dtype=np.float64) * (2.0 if metric == "cos" else 1.0), np.inf)
    squared = squared[:, :order.LID_NEIGHBOURS]
    scale = np.nanmax(np.where(np.isfinite(squared), squared, np.nan), axis=1, keepdims=True)
    squared = np.where(squared <= 1e-6 * np.nan_to_num(scale), np.inf, squared)  # the query itself, in the base
    return order.mle(np.sort(squared, axis=1))


def _recall_by_lid(rows: Any, truth: Any, k: int, lid: Any) -> dict[str, float | None]:
    """Recall@k of the queries at or below the median LID, and of those above it."""
    k = min(k, truth.shape[1], rows.shape[1])
    hits = hits_at(rows, truth, k) / k
    known = ~np.isnan(lid)
    median = np.median(lid[known]) if known.any() else np.nan
    low, high = known & (lid <= median), known & (lid > median)
    return {"low": round(float(hits[low].mean()), 4) if low.any() else None,
            "high": round(float(hits[high].mean()), 4) if high.any() else None}


def tune(searcher: Any, q: Any, truth: Any, k: int, target: float) -> dict[str, Any]:
    """Smallest oversampling factor, then the smallest search effort (the graph's expansion, or the
    lists an ``ivf`` scan probes: ``nprobe``), reaching ``target`` recall@k; with several rescoring
    stages, the first stage's factor is found with every later stage keeping all its candidates,
    then each later factor is lowered as far as the target allows."""
    if not 0 < target <= 1:
        raise UsageError(f"--target-recall must be in (0, 1], not {target}")
    factors = FACTORS if searcher.rescorable else (1,)
    stages = 1 + len(searcher.refine)
    knob: str | None
    values: list[Any]
    if searcher.scan_mode == "ivf":
        lists = searcher.scan.list_count
        knob, values = "nprobe", [n for n in NPROBES if n < lists] + [lists]
    elif searcher.scan_mode == "exhaustive":  # every code compared: only the oversampling matters
        knob, values = None, [None]
    else:
        knob, values = "expansion", list(EXPANSIONS)
    tried: list[dict[str, Any]] = []

    def attempt(setting: dict[str, Any]) -> float:
        factor = setting["oversample"]
        given = tuple(factor) if isinstance(factor, list) else factor
        rescore = bool(factor != 1)
        if knob == "nprobe":
            searcher.nprobe = setting[knob]
            rows, _ = searcher.search(q, k, oversample=given, rescore=rescore)
        else:
            rows, _ = searcher.search(q, k, oversample=given, expansion=setting.get(knob) if knob else None,
                                      rescore=rescore)
        reached = recall_at(rows, truth, k)
        tried.append({**setting, f"recall@{k}": round(reached, 4)})
        return reached

    for factor in factors:
        for value in values:
            setting = {"oversample": factor if stages == 1 else [factor] * stages, **({knob: value} if knob else {})}
            reached = attempt(setting)
            if reached >= target:
                if stages > 1:
                    setting, reached = _narrow_later(setting, reached, target, attempt)
                return {"target": target, "reached": True, **setting, f"recall@{k}": round(reached, 4),
                        "tried": tried}
    return {"target": target, "reached": False, "tried": tried}


def _narrow_later(setting: dict[str, Any], reached: float, target: float, attempt: Any) -> tuple[dict[str, Any], float]:
    """The later stages' factors lowered in turn, each to the smallest that still reaches ``target``."""
    factors = list(setting["oversample"])
    for i in range(1, len(factors)):
        for smaller in [f for f in FACTORS if f < factors[i]]:
            trial = factors[:i] + [smaller] * (len(factors) - i)
            got = attempt({**setting, "oversample": trial})
            if got >= target:
                factors, reached = trial, got
                break
    return {**setting, "oversample": factors}, reached
