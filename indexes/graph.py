"""The usearch adapter: which graph can hold which codes, and opening, searching and saving graphs.

Codes and metric must fit together: float32/float16 codes search by cosine, inner product or
squared L2; ``int8`` codes only where the metric holds on the codes themselves
(``int8:mode=global``), by cosine or L2 (usearch's ``i8`` inner product is not trusted:
unum-cloud/usearch#405); packed bits by Hamming distance. Everything vecx asks of usearch goes
through here, so that its quirks (a file it trusts, errors without an errno, a ``Matches`` for a
single query) are handled once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, UsageError, WriteError
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

USEARCH_DTYPES = {"float32": "f32", "float16": "f16", "int8": "i8", "bits": "b1"}
GRAPH_FILE = "graph.usearch"


def graph_metric(space: VectorSpec, source_normalized: bool) -> str:
    """The usearch metric for codes of ``space``, or a :class:`UsageError` saying why they cannot be indexed."""
    if space.dtype == "bits":
        return "hamming"
    if space.metric_on != "codes":
        raise UsageError(f"{space.dtype} codes of this chain support {space.metric} only after decoding, "
                         "and no stage scores them; a graph cannot search them directly",
                         hint="use int8:mode=global for an i8 graph, or index the float vectors")
    if space.dtype == "int8":
        if space.metric == "cosine" or (space.metric == "ip" and source_normalized):
            return "cos"
        if space.metric == "l2":
            return "l2sq"
        raise UsageError("int8 codes with the inner-product metric are not supported by usearch's i8 "
                         "kernels (unum-cloud/usearch#405)", hint="normalize the vectors and use cosine")
    return {"cosine": "cos", "ip": "ip", "l2": "l2sq"}[space.metric]


def add_batch_rows(row_bytes: int) -> int:
    """Rows per graph ``add`` call: about 512 KiB of codes, a power of two from 1,024 to 65,536.

    Smaller than the tables' 32 MiB batches because the graph cannot start before the first
    batch is decoded, and Parquet decodes fixed-size lists slowly (int8 codes are even widened
    to INT32 in the file): a table-sized first batch would keep the graph waiting after usearch
    has imported, a small one is ready first. Later batches are decoded on the prefetch thread
    while usearch adds the previous one, so the loop adds little to each ``add``.
    """
    from vecx.formats.source import batch_rows_for

    return batch_rows_for(row_bytes, 512 << 10)


def new_graph(ndim: int, metric: str, dtype: str, options: Any) -> Any:
    """An empty usearch graph with the build options' connectivity and expansions."""
    from usearch.index import Index

    return Index(ndim=ndim, metric=metric, dtype=dtype, connectivity=options.connectivity,
                 expansion_add=options.expansion_add, expansion_search=options.expansion_search)


def save_graph(graph: Any, directory: str, where: str, name: str = GRAPH_FILE) -> None:
    """Write ``graph`` as ``directory/name``; a failure is a :class:`WriteError` naming ``where``."""
    try:
        graph.save(os.path.join(directory, name))
    except RuntimeError as exc:  # usearch reports a failed write without an errno
        raise WriteError(f"{where}: cannot write {name} ({_save_failure(directory, graph, exc)})",
                         hint="nothing was changed; free space or fix permissions, then rerun") from None


def _save_failure(directory: str, graph: Any, exc: Exception) -> str:
    """Why usearch could not save a graph: a full disk if the free space says so, else its own words."""
    try:
        free = os.statvfs(directory)
        if free.f_bavail * free.f_frsize < max(graph.serialized_length, 1 << 16):
            return "no space left on device"
    except (OSError, AttributeError):
        pass
    return str(exc)


#: usearch's names of the graph scalar kinds, as the manifest records them.
_GRAPH_KINDS = {"f32": "F32", "f16": "F16", "i8": "I8", "b1": "B1"}


def open_graph(graph_file: str, where: str, rows: int, ndim: int, dtype: str) -> Any:
    """Open a graph as a memory-mapped view after checking its header against the manifest.

    usearch trusts its file: a damaged header or tail can make it allocate without bound or
    read past the map, so the header's counts, dimensions and scalar kind are checked first.
    """
    from usearch.index import Index

    try:
        head = Index.metadata(graph_file)
    except Exception as exc:  # noqa: BLE001 - usearch raises plain RuntimeError/ValueError
        raise DataError(f"{where}: graph.usearch has a damaged header ({exc})", hint="rebuild the index") from None
    kind = getattr(head.get("kind_scalar") if head else None, "name", None)
    if not head or head.get("count_present") != rows or head.get("dimensions") != ndim \
            or head.get("count_deleted") or kind != _GRAPH_KINDS.get(dtype, kind):
        raise DataError(f"{where}: graph.usearch does not match the manifest ({rows} rows of {ndim}-d {dtype}): "
                        "damaged or replaced", hint="rebuild the index")
    try:
        graph = Index.restore(graph_file, view=True)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{where}: graph.usearch cannot be opened ({exc})", hint="rebuild the index") from None
    if graph is None or len(graph) != rows:
        raise DataError(f"{where}: graph.usearch is damaged or holds a different number of rows",
                        hint="rebuild the index")
    return graph


class GraphSet:
    """Several graphs (an index's segments, keyed by the index's row numbers) searched as one: usearch's
    ``Indexes`` runs the searches in parallel in one call and merges their results by distance.

    Offers what :func:`search_graph` uses of a graph: ``expansion_search`` (set on every member),
    ``search``, ``ndim`` and ``len``.
    """

    def __init__(self, graphs: list[Any]) -> None:
        from usearch.index import Indexes

        self.graphs = graphs
        self.merged = Indexes(graphs)
        self.ndim = graphs[0].ndim

    @property
    def expansion_search(self) -> int:
        """The members' search expansion (they share one)."""
        return int(self.graphs[0].expansion_search)

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        for graph in self.graphs:
            graph.expansion_search = value

    def search(self, queries: Any, count: int, threads: int = 0, exact: bool = False) -> Any:
        """The best ``count`` of every member for each query: one usearch ``Matches``/``BatchMatches``
        (on all cores whatever ``threads`` says: they search the members side by side)."""
        return self.merged.search(queries, count, threads=0, exact=exact)

    def __len__(self) -> int:
        return sum(len(graph) for graph in self.graphs)


def search_graph(graph: Any, queries: Any, count: int, expansion: int | None, rows: int,
                 exact: bool = False) -> tuple[Any, Any]:
    """One usearch search: keys (row numbers, -1 where fewer found) and distances, queries x count.

    ``expansion`` overrides the graph's search expansion for this call (never below ``count``);
    ``exact`` compares every stored vector instead of walking the graph.
    """
    queries = np.ascontiguousarray(queries)
    saved = graph.expansion_search
    wanted = max(expansion or saved, count)
    if wanted != saved:
        graph.expansion_search = wanted
    try:
        # Asked for every row: an exact scan, since HNSW does not promise to reach them all. One
        # query runs on the calling thread (usearch starts threads per call otherwise).
        matches = graph.search(queries, count, threads=1 if len(queries) == 1 else 0, exact=exact or count >= rows)
    except RuntimeError as exc:  # usearch trusts its file: damage in a node shows up only here
        raise DataError(f"the index graph is damaged (usearch: {exc})",
                        hint="check it with 'vecx verify INDEX', then rebuild it") from None
    finally:
        if wanted != saved:
            graph.expansion_search = saved
    keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(queries), -1)
    dist = np.asarray(matches.distances, dtype=np.float32).reshape(len(queries), -1)
    counts = getattr(matches, "counts", None)  # one query: Matches, its keys only those found
    if counts is None:
        return keys, dist
    found = np.asarray(counts).reshape(-1, 1) > np.arange(keys.shape[1])[None, :]
    return np.where(found, keys, -1), dist


