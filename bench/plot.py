"""Recall against bytes per vector: one point before rescoring, one after the best rescoring, per row.

matplotlib is optional (the ``plot`` extra) and imported only here, only when a plot is asked for.
"""

from __future__ import annotations

import os
from typing import Any

from vecx.bench.report import memory_recall, staged
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
    low = max(0.0, min(min(r["recall"]["x1"], memory_recall(r)) for r in rows) - 0.05)
    best = [max(r["recall"].values()) for r in rows]
    # The high-recall region, where the rescored rows crowd: a panel of its own below the whole view.
    zoom_low = max(low, min((b for b in best if b >= 0.8), default=1.0) - 0.01)
    zoomed = zoom_low < 0.995 and sum(b >= zoom_low for b in best) >= 2
    fig = plt.figure(figsize=(12, 9 if zoomed else 7), dpi=120)
    ax = fig.add_axes((0.07, 0.42, 0.6, 0.52) if zoomed else (0.07, 0.09, 0.6, 0.83))
    axes = [ax]
    if zoomed:
        axes.append(fig.add_axes((0.07, 0.06, 0.6, 0.28)))
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["bytes_per_vector"], []).append(row)
    _points(axes, rows, groups)
    # The key: one line per numbered point (bold: on the Pareto front).
    top = f"x{factors[-1]}" if factors else "x1"
    before = "mem" if staged(report) else "x1"
    fig.text(0.69, 0.92, f"#  bytes  recall@{k} {before} -> best   (* Pareto)", fontsize=8, family="monospace",
             color="#333333")
    step = min(0.035, 0.8 / max(1, len(rows)))
    for i, row in enumerate(rows, start=1):
        label = row["name"] if row["system"] == "vecx" else f"{row['system']} {row['name']}"
        text = (f"{i:<2} {row['bytes_per_vector']:>5}  {memory_recall(row):.3f} -> {max(row['recall'].values()):.3f}"
                f"{' *' if row['pareto'] else '  '} {label}")
        fig.text(0.69, 0.92 - i * step, text, fontsize=8, family="monospace",
                 color=COLORS.get(row["system"], "#555555"), fontweight="bold" if row["pareto"] else "normal")
    for panel in axes:
        panel.set_xscale("log")
        panel.set_ylabel(f"recall@{k}")
    axes[-1].set_xlabel("bytes per vector in memory (codes" + (", and codes stages" if staged(report) else " only")
                        + ", log scale)")
    b = report["base"]
    name = os.path.basename(os.path.dirname(os.path.abspath(b["path"]))) or b["path"]
    hollow = "from memory alone (hollow)" if staged(report) else "before rescoring (hollow)"
    ax.set_title(f"{name}: {b['rows']:,} x {b['dim']}, {b['metric']}\nrecall@{k} {hollow} and "
                 f"after the best rescoring up to {top} (filled)", fontsize=10, pad=10)
    ax.set_ylim(low, 1.045)
    if zoomed:
        axes[1].set_ylim(zoom_low, 1.0 + (1.0 - zoom_low) * 0.12)
        axes[1].set_title(f"zoom: recall@{k} >= {zoom_low:.2f}", fontsize=9, loc="left")
        ax.axhspan(zoom_low, 1.0, color="#999999", alpha=0.08, zorder=0)
    _bytes_axis(axes, sorted(groups))
    handles = [plt.Line2D([], [], color=c, marker="o" if s == "vecx" else "s", linestyle="", label=s)
               for s, c in COLORS.items() if any(r["system"] == s for r in report["rows"])]
    handles.append(plt.Line2D([], [], color="#777777", marker="o", markerfacecolor="white", linestyle="",
                              label="from memory alone" if staged(report) else "before rescoring"))
    ax.legend(handles=handles, loc="lower right", fontsize=9)
    from vecx.formats.tempfiles import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)



def _points(axes: list[Any], rows: list[dict[str, Any]], groups: dict[int, list[dict[str, Any]]]) -> None:
    """Each row's recall before (hollow) and after the best rescoring (filled, numbered as in the key),
    in every panel; rows of the same bytes per vector side by side."""
    number = {id(row): i for i, row in enumerate(rows, start=1)}
    for b, members in groups.items():
        members = sorted(members, key=lambda r: -max(r["recall"].values()))
        for i, row in enumerate(members):
            color = COLORS.get(row["system"], "#555555")
            x = b * 1.07 ** (i - (len(members) - 1) / 2)
            before, after = memory_recall(row), max(row["recall"].values())
            for panel in axes:
                panel.plot([x, x], [before, after], color=color, alpha=0.4, linewidth=1.2, zorder=1)
                panel.scatter([x], [before], facecolors="white", edgecolors=color, s=34, linewidths=1.4, zorder=2)
                panel.scatter([x], [after], color=color, s=44, marker="o" if row["system"] == "vecx" else "s",
                              zorder=3)
                panel.annotate(str(number[id(row)]), (x, after), xytext=(0, 6), textcoords="offset points",
                               fontsize=7, color=color, ha="center", annotation_clip=True,
                               fontweight="bold" if row["pareto"] else "normal")


def _bytes_axis(axes: list[Any], sizes: list[int]) -> None:
    """A log bytes axis with a tick per byte size (unless it would print over the previous one)."""
    ticks: list[int] = []
    for value in sizes:
        if not ticks or value / ticks[-1] >= 1.2:
            ticks.append(value)
    for panel in axes:
        panel.set_xlim(sizes[0] / 1.4, sizes[-1] * 1.4)
        panel.set_xticks(ticks)
        panel.set_xticklabels([str(t) for t in ticks])
        panel.minorticks_off()
        panel.grid(True, alpha=0.25)
