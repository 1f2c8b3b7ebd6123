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
        raise UsageError("--plot needs matplotlib, which is not installed: pip install 'vecx[plot]'") from None


def draw(report: dict[str, Any], path: str) -> None:
    """Write the Pareto plot as PNG to ``path`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k, factors = report["k"], report["rescore"]
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=120)
    placed: list[tuple[float, float]] = []
    for row in report["rows"]:
        color = COLORS.get(row["system"], "#555555")
        b = row["bytes_per_vector"]
        before = row["recall"]["x1"]
        after = max(row["recall"].values())
        ax.plot([b, b], [before, after], color=color, alpha=0.35, linewidth=1.2, zorder=1)
        ax.scatter([b], [before], facecolors="white", edgecolors=color, s=38, linewidths=1.5, zorder=2)
        ax.scatter([b], [after], color=color, s=46, marker="o" if row["system"] == "vecx" else "s", zorder=3)
        label = row["name"] if row["system"] == "vecx" else f"{row['system']} {row['name']}"
        dy = _free_offset(placed, b, after)
        ax.annotate(label, (b, after), textcoords="offset points", xytext=(6, dy), fontsize=8, color=color,
                    fontweight="bold" if row["pareto"] else "normal")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per vector (codes only, log scale)")
    ax.set_ylabel(f"recall@{k}")
    top = f"x{factors[-1]}" if factors else "x1"
    b = report["base"]
    ax.set_title(f"{os.path.basename(os.path.dirname(os.path.abspath(b['path']))) or b['path']}: "
                 f"{b['rows']:,} x {b['dim']} {b['metric']} — recall@{k} before (hollow) and after "
                 f"best rescoring up to {top} (filled)", fontsize=10)
    ax.set_ylim(max(0.0, min(r["recall"]["x1"] for r in report["rows"]) - 0.05), 1.01)
    ax.grid(True, which="both", alpha=0.25)
    handles = [plt.Line2D([], [], color=c, marker="o" if s == "vecx" else "s", linestyle="", label=s)
               for s, c in COLORS.items() if any(r["system"] == s for r in report["rows"])]
    ax.legend(handles=handles, loc="lower right", fontsize=9)
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _free_offset(placed: list[tuple[float, float]], x: float, y: float) -> int:
    """A vertical label offset (points) that keeps labels at the same x from overlapping."""
    near = sum(1 for px, py in placed if abs(px - x) / max(x, 1) < 0.15 and abs(py - y) < 0.03)
    placed.append((x, y))
    return -4 + 10 * near * (1 if near % 2 else -1)
