"""Recall against bytes per vector: one point before rescoring, one after the best rescoring, per row.

matplotlib is optional (the ``plot`` extra) and imported only here, only when a plot is asked for.
"""

from __future__ import annotations

import os
from typing import Any

from vecx.errors import UsageError

COLORS = {"vecx": "#1f5fbf", "faiss": "#d9730d", "usearch": "#2e8b57"}


def require_matplotlib() -> None:
    """A one-line usage error (exit 2) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed",
                         hint="pip install matplotlib (the 'plot' extra of vecx)") from None


def draw(report: dict[str, Any], path: str) -> None:
    """Write the Pareto plot as PNG to ``path`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k, factors = report["k"], report["rescore"]
    rows = report["rows"]
    low = max(0.0, min(r["recall"]["x1"] for r in rows) - 0.05)
    fig = plt.figure(figsize=(12, 7), dpi=120)
    ax = fig.add_axes((0.07, 0.09, 0.6, 0.83))
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["bytes_per_vector"], []).append(row)
    number = {id(row): i for i, row in enumerate(rows, start=1)}
    for b, members in groups.items():
        members = sorted(members, key=lambda r: -max(r["recall"].values()))
        for i, row in enumerate(members):
            color = COLORS.get(row["system"], "#555555")
            x = b * 1.07 ** (i - (len(members) - 1) / 2)  # rows at the same bytes side by side
            before, after = row["recall"]["x1"], max(row["recall"].values())
            ax.plot([x, x], [before, after], color=color, alpha=0.4, linewidth=1.2, zorder=1)
            ax.scatter([x], [before], facecolors="white", edgecolors=color, s=34, linewidths=1.4, zorder=2)
            ax.scatter([x], [after], color=color, s=44, marker="o" if row["system"] == "vecx" else "s", zorder=3)
            ax.annotate(str(number[id(row)]), (x, after), xytext=(0, 6), textcoords="offset points", fontsize=7,
                        color=color, ha="center", fontweight="bold" if row["pareto"] else "normal")
    # The key: one line per numbered point (bold: on the Pareto front).
    top = f"x{factors[-1]}" if factors else "x1"
    fig.text(0.69, 0.92, f"#  bytes  recall@{k} x1 -> best   (* Pareto)", fontsize=8, family="monospace",
             color="#333333")
    step = min(0.035, 0.8 / max(1, len(rows)))
    for i, row in enumerate(rows, start=1):
        label = row["name"] if row["system"] == "vecx" else f"{row['system']} {row['name']}"
        text = (f"{i:<2} {row['bytes_per_vector']:>5}  {row['recall']['x1']:.3f} -> {max(row['recall'].values()):.3f}"
                f"{' *' if row['pareto'] else '  '} {label}")
        fig.text(0.69, 0.92 - i * step, text, fontsize=8, family="monospace",
                 color=COLORS.get(row["system"], "#555555"), fontweight="bold" if row["pareto"] else "normal")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per vector (codes only, log scale)")
    ax.set_ylabel(f"recall@{k}")
    b = report["base"]
    name = os.path.basename(os.path.dirname(os.path.abspath(b["path"]))) or b["path"]
    ax.set_title(f"{name}: {b['rows']:,} x {b['dim']}, {b['metric']}\nrecall@{k} before rescoring (hollow) and "
                 f"after the best rescoring up to {top} (filled)", fontsize=10, pad=10)
    ax.set_ylim(low, 1.045)
    ticks: list[int] = []
    for value in sorted(groups):  # a tick per byte size, unless it would print over the previous one
        if not ticks or value / ticks[-1] >= 1.2:
            ticks.append(value)
    ax.set_xlim(min(groups) / 1.4, max(groups) * 1.4)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.grid(True, alpha=0.25)
    handles = [plt.Line2D([], [], color=c, marker="o" if s == "vecx" else "s", linestyle="", label=s)
               for s, c in COLORS.items() if any(r["system"] == s for r in report["rows"])]
    handles.append(plt.Line2D([], [], color="#777777", marker="o", markerfacecolor="white", linestyle="",
                              label="before rescoring"))
    ax.legend(handles=handles, loc="lower right", fontsize=9)
    from vecx.formats.tempfiles import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)

