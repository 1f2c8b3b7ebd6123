"""``vecx eval``: where recall goes — quantization, graph, rescoring — and how fast, measured honestly.

Three recalls against exact ground truth, each isolating one loss:

- ``codes, exact``: the codes searched exhaustively in the graph's metric (no graph): what the
  encoding alone loses (quantization loss);
- ``graph``: the HNSW search over the codes, no rescoring (quantization + graph loss);
- ``graph + rescore``: k x oversample candidates re-ranked with the float vectors.

An exhaustive search (``--scan exhaustive``, the default for PQ/RaBitQ codes) names its stages
``scan`` (``codes, exact`` is then the same search). Each recall@n comes from a search for n results.

Latency percentiles come from one query at a time; QPS from the whole batch in one call.
``target_recall`` searches for the smallest oversampling factor, then the smallest search
expansion, that reach the target on these queries.
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


def run(searcher: Any, q: Any, truth: Any, k: int, *, oversample: int | None = None,
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
    configs = [(first, 1, False)]
    if searcher.rescorable:
        factor = oversample if oversample is not None else int(searcher.manifest["search"]["oversample"])
        by = " (codes)" if searcher.rescore_codes is not None else ""
        configs.append((f"{first} + rescore x{factor}{by}", factor, True))
    for name, factor, rescore in configs:
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
    return out


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
    lists an ``ivf`` scan probes: ``nprobe``), reaching ``target`` recall@k."""
    if not 0 < target <= 1:
        raise UsageError(f"--target-recall must be in (0, 1], not {target}")
    factors = FACTORS if searcher.rescorable else (1,)
    knob: str | None
    values: list[Any]
    if searcher.scan_mode == "ivf":
        lists = searcher.scan.list_count
        knob, values = "nprobe", [n for n in NPROBES if n < lists] + [lists]
    elif searcher.scan_mode == "exhaustive":  # every code compared: only the oversampling matters
        knob, values = None, [None]
    else:
        knob, values = "expansion", list(EXPANSIONS)
    tried = []
    for factor in factors:
        for value in values:
            if knob == "nprobe":
                searcher.nprobe = value
                rows, _ = searcher.search(q, k, oversample=factor, rescore=factor > 1)
            else:
                rows, _ = searcher.search(q, k, oversample=factor, expansion=value, rescore=factor > 1)
            reached = recall_at(rows, truth, k)
            setting = {"oversample": factor, **({knob: value} if knob else {})}
            tried.append({**setting, f"recall@{k}": round(reached, 4)})
            if reached >= target:
                return {"target": target, "reached": True, **setting, f"recall@{k}": round(reached, 4),
                        "tried": tried}
    return {"target": target, "reached": False, "tried": tried}
