"""The one table renderer of the command line: a rich table on a terminal, plain aligned columns
otherwise (what pipes and scripts get, stable enough to cut and grep).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any, Optional


def table(rows: Sequence[Sequence[str]], *, header: bool = True, right: Iterable[int] = (),
          title: Optional[str] = None, note: Optional[str] = None, indent: int = 0,
          styles: Optional[Sequence[Optional[str]]] = None) -> None:
    """Print ``rows`` of cells on stdout; the first row is the header when ``header``.

    ``right``: indexes of right-aligned columns; ``title``: a line above; ``note``: a paragraph
    before the rows in plain text, the caption under the table on a terminal; ``indent``: spaces
    before every plain-text row; ``styles``: a rich style per body row (terminal only).
    """
    right = set(right)
    if sys.stdout.isatty():
        _rich(rows, header, right, title, note, styles)
        return
    if title:
        sys.stdout.write(title + "\n")
    if note:
        sys.stdout.write(note + "\n\n")
    if rows:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [cell.rjust(w) if i in right else cell.ljust(w)
                     for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
            sys.stdout.write(" " * indent + "  ".join(cells).rstrip() + "\n")


def _rich(rows: Sequence[Sequence[str]], header: bool, right: set[int], title: Optional[str],
          caption: Optional[str], styles: Optional[Sequence[Optional[str]]]) -> None:
    from rich.console import Console
    from rich.table import Table

    width = len(rows[0]) if rows else 0
    plain: dict[str, Any] = {} if header else {"box": None, "pad_edge": False}  # no frame for a headless grid
    grid = Table(title=title, caption=caption, caption_justify="left", show_header=header, **plain)
    for i in range(width):
        grid.add_column(rows[0][i] if header else "", justify="right" if i in right else "left")
    body = rows[1:] if header else rows
    for n, row in enumerate(body):
        grid.add_row(*row, style=styles[n] if styles else None)
    Console().print(grid)
