"""vecx: build and query compressed embedding indexes, one reproducible file-to-file step at a time.

From Python (see :mod:`vecx.objects`)::

    chain = vecx.Chain.from_spec("pq:24x8").fit(x)       # x: an n x d ndarray
    index = vecx.build_index(x, "docs.vecx", spec="int8:mode=global", rescore=True)
    hits = vecx.open_index("docs.vecx").search(q, k=10)  # hits.ids, hits.scores

The file-to-file functions of :mod:`vecx.api` (``encode_file``, ``truth``, ``evaluate``, ...)
are here too, and take arrays where they take files. The command line is :mod:`vecx.cli`.
Importing this package is cheap on purpose: the names below, numpy and pyarrow load on first use.
"""

from typing import Any

__version__ = "0.1.0"

#: Version of the vector-table metadata this vecx writes and the newest it reads.
FORMAT_VERSION = 1

#: Public names and the module each comes from (imported when first used).
_EXPORTS = {
    "Chain": "vecx.objects", "Index": "vecx.objects", "SearchResult": "vecx.objects",
    "build_index": "vecx.objects", "open_index": "vecx.objects",
    "encode_file": "vecx.api", "fit_file": "vecx.api", "truth": "vecx.api", "evaluate": "vecx.api",
    "query": "vecx.api", "info": "vecx.api", "verify": "vecx.api", "append_index": "vecx.api",
    "delete_rows": "vecx.api", "compact_index": "vecx.api",
    "VecxError": "vecx.errors", "UsageError": "vecx.errors", "DataError": "vecx.errors",
}

__all__ = ["FORMAT_VERSION", "__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vecx' has no attribute {name!r}")
