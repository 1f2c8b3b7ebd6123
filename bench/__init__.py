"""``vecx bench``: run codec chains end to end (fit, encode, index, query, rescore) beside peers.

- :mod:`vecx.bench.run` runs every chain through the public library path and measures it;
- :mod:`vecx.bench.peers` runs faiss-cpu and raw usearch equivalents on the same data;
- :mod:`vecx.bench.report` sorts rows, flags the Pareto front and renders Markdown;
- :mod:`vecx.bench.plot` draws recall against bytes per vector (matplotlib, optional).
"""

from __future__ import annotations

from vecx.bench.run import BenchOptions, run

__all__ = ["BenchOptions", "run"]
