"""``vecx bench``: vecx's chains measured end to end beside faiss-cpu and raw usearch.

A product on top of the library, not part of it: it drives :mod:`vecx.api` and the index
layer exactly as users do, so what it measures is what they get. :func:`run` is its front door.
"""

from vecx.bench.runner import BenchOptions, run

__all__ = ["BenchOptions", "run"]
