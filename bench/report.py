"""The bench report: order, Pareto flags, and the table as cells or Markdown.

Rows are sorted by bytes per vector, then by the best recall. A row is on the Pareto front
when no other row (vecx or peer) has at most its bytes per vector and at least its best
recall@k (the highest over the measured rescoring factors), one of the two strictly.

Rows with an in-memory rescoring stage (``SPEC@rescore=SPEC2``) count both codes in their bytes,
and add a second front: recall without reading any float vector (their codes stage ranking the
results; every other row: its codes alone, x1), against bytes in memory.
"""

from __future__ import annotations

from typing import Any


def best_recall(row: dict[str, Any]) -> float:
    """The row's highest recall over the measured factors (x1 included)."""
    return max(row["recall"].values())


def memory_recall(row: dict[str, Any]) -> float:
    """The row's recall with nothing read but what it keeps in memory (its codes, and codes stage)."""
    return row.get("memory_recall", row["recall"]["x1"])


def staged(report: dict[str, Any]) -> bool:
    """Whether a row keeps an in-memory rescoring stage (and the report shows the in-memory front)."""
    return any(row.get("stage") for row in report["rows"])


def _front(rows: list[dict[str, Any]], recall: Any, flag: str) -> None:
    """Flag ``flag`` on rows no other row beats on bytes and ``recall`` (one of the two strictly)."""
    for row in rows:
        b, r = row["bytes_per_vector"], recall(row)
        row[flag] = not any(
            o is not row and o["bytes_per_vector"] <= b and recall(o) >= r
            and (o["bytes_per_vector"] < b or recall(o) > r) for o in rows)


def finish(report: dict[str, Any]) -> dict[str, Any]:
    """Flag the Pareto fronts and sort the rows."""
    rows = report["rows"]
    _front(rows, best_recall, "pareto")
    if staged(report):
        _front(rows, memory_recall, "pareto_memory")
    rows.sort(key=lambda row: (row["bytes_per_vector"], -best_recall(row), row["system"] != "vecx", row["name"]))
    return report


def header(report: dict[str, Any]) -> list[str]:
    """Column titles of the table."""
    k, factors = report["k"], report["rescore"]
    top = f"x{factors[-1]}" if factors else "x1"
    memory = ["in memory"] if staged(report) else []
    return ["system", "spec / peer", "bytes/vec", f"recall@{k}", *[f"x{f}" for f in factors], *memory, "fit s",
            "encode MB/s", "build s", "QPS", *([f"QPS {top}"] if factors else []), "p50 ms", "pareto",
            *(["pareto (memory)"] if memory else [])]


def cells(report: dict[str, Any]) -> list[list[str]]:
    """One list of strings per row, matching :func:`header`."""
    factors = report["rescore"]
    out = []
    with_memory = staged(report)
    for row in report["rows"]:
        rec, qps = row["recall"], row["qps"]
        out.append([
            row["system"], row["name"], str(row["bytes_per_vector"]), f"{rec['x1']:.4f}",
            *[f"{rec[f'x{f}']:.4f}" for f in factors], *([f"{memory_recall(row):.4f}"] if with_memory else []),
            f"{row['fit_s']:.2f}", "" if row["encode_mb_s"] is None else f"{row['encode_mb_s']:,.0f}",
            f"{row['build_s'] + (row['encode_s'] or 0):.2f}", f"{qps['x1']:,.0f}",
            *([f"{qps[f'x{factors[-1]}']:,.0f}"] if factors else []),
            f"{row['p50_ms']:.3f}" if row.get("p50_ms") is not None else "", "*" if row["pareto"] else "",
            *(["*" if row["pareto_memory"] else ""] if with_memory else [])])
    return out


def description(report: dict[str, Any]) -> str:
    """One paragraph saying what was measured, for the Markdown and plain outputs."""
    b, q = report["base"], report["queries"]
    factors = ", ".join(f"x{f}" for f in report["rescore"]) or "none"
    g = report["index"]
    return (f"Base {b['path']} ({b['rows']:,} x {b['dim']}, {b['metric']}); {q['rows']:,} queries from {q['path']}; "
            f"truth: {report['truth']}. recall@{report['k']} without rescoring, then rescored with the float "
            f"vectors at {factors} (k x factor candidates). Graphs: connectivity {g.get('connectivity')}, "
            f"expansion add {g.get('expansion_add')}, search {g.get('expansion_search')} (never below the "
            f"candidate count); coarse lists (vecx ivf=N, faiss IVF) probed per query: {g.get('nprobe') or 16}. "
            f"Fits and faiss training use the same {report['train_sample']['rows']:,} seeded "
            f"sample rows (seed {report['train_sample']['seed']}). bytes/vec: codes only. fit s: codec fit or "
            "faiss train; encode MB/s: float input per second through the fitted chain's encode (faiss: "
            "sa_encode) in memory, the best of runs adding up to a second or more, after one untimed encode of "
            "1,024 rows (first-use costs, "
            "such as loading a compiled kernel, count in build s instead); build s: vecx encode (file to "
            "file) + index build, peers add. "
            "QPS: all queries in one call, best of the runs; p50 ms: median time of one query searched "
            "alone (the first 200, no rescoring). "
            "pareto *: no other row has fewer or equal bytes and higher or equal best recall."
            + (" Rows SPEC@rescore=SPEC2 rescore in two stages: SPEC2's codes (kept in memory, counted in "
               "bytes/vec) rank the k x factor candidates, the float vectors the best k x 2 of them; in memory: "
               "recall with no float vector read (SPEC2's codes ranking the results, at the largest factor; "
               "other rows: their codes alone), and pareto (memory) its front against bytes/vec."
               if staged(report) else "")
            + (" faiss RaBitQ rounds each query to 4 bits (its default qb) and counts bits; vecx's RaBitQ rows "
               "keep the float query unless SPEC@query_bits=B rounds it the same way."
               if any(row["system"] == "faiss" and "RaBitQ" in row["name"] for row in report["rows"]) else ""))


def markdown(report: dict[str, Any], command: str | None = None) -> str:
    """The report as Markdown: command, description, versions and the table."""
    lines = []
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [description(report), ""]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    lines += [f"Versions: {versions}.", ""]
    head = header(report)
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|")
    for row in cells(report):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines) + "\n"
