"""How long-running library calls report progress, without printing: the library never prints.

A call takes an optional ``progress`` with ``start(total, desc)``, ``advance(n)`` and ``close()``;
the command line passes a bar on standard error (:class:`vecx.cli.common.Bar`), everything else
gets :data:`SILENT`.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """What long-running functions report to."""

    def start(self, total: int | None, desc: str) -> None:
        """A new step begins (``total`` rows, or None when unknown)."""

    def advance(self, n: int) -> None:
        """``n`` more rows are done."""

    def close(self) -> None:
        """The step is over."""


class Silent:
    """A :class:`Progress` that reports nothing."""

    def start(self, total: int | None, desc: str) -> None:
        """Nothing: a silent step begins unannounced."""

    def advance(self, n: int) -> None:
        """Nothing: done rows are not counted."""

    def close(self) -> None:
        """Nothing: there is no display to take down."""


SILENT = Silent()
