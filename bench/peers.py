"""Peers of ``vecx bench``: faiss-cpu indexes and raw usearch graphs on the same data, same truth.

A peer is named ``usearch:DTYPE`` (f32, f16, i8, b1: a raw ``usearch.index.Index`` with the
graph parameters of the vecx indexes; b1 holds the sign bits ``x > 0``) or by a faiss
``index_factory`` string, optionally written ``faiss:KEY`` (``PQ24x8``, ``OPQ24,PQ24x8``,
``PCA96,Flat``, ``HNSW16,Flat`` ...). A key starting with ``B`` goes to faiss's binary
factory over the packed sign bits (``BFlat`` is ``IndexBinaryFlat``).

Trained peers train on the rows the codecs fit on; cosine data is normalized and searched
by inner product. Every peer's candidates are rescored with the same float vectors and
the same exact scores as vecx's. Bytes per vector count the codes only (not graph links).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import UsageError

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

USEARCH_DTYPES = ("f32", "f16", "i8", "b1")
_CODE_DTYPES = {"float32": "f32", "float16": "f16", "int8": "i8"}
#: faiss codes for a vecx output dtype (after a dimension-reducing stage).
_FAISS_CODES = {"float32": "Flat", "float16": "SQfp16", "int8": "SQ8"}


def require_faiss() -> None:
    """A one-line usage error (exit 2) when faiss-cpu is missing."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        raise UsageError("--peers needs faiss-cpu, which is not installed",
                         hint="pip install faiss-cpu (the 'bench' extra of vecx)") from None


def normalize_name(name: str) -> str:
    """Canonical peer name: ``usearch:DTYPE`` or ``faiss:KEY``."""
    name = name.strip()
    if name.startswith("usearch:"):
        dtype = name.split(":", 1)[1]
        if dtype not in USEARCH_DTYPES:
            raise UsageError(f"--peer {name}: usearch dtype must be one of {', '.join(USEARCH_DTYPES)}")
        return name
    key = name[len("faiss:"):] if name.startswith("faiss:") else name
    if not key:
        raise UsageError(f"--peer {name!r}: give a faiss index_factory string (e.g. PQ24x8) or usearch:i8")
    return f"faiss:{key}"


@dataclass
class PeerContext:
    """The data and settings every peer runs with (the same as the vecx chains had)."""

    x: Any
    q: Any
    metric: str
    train_rows: Any
    truth: Any
    k: int
    factors: tuple[int, ...]
    graph: Any
    repeat: int


# --------------------------------------------------------------------------------------
# Which peers match a chain
# --------------------------------------------------------------------------------------
def auto_peers(chains: list[Any], dim: int, graph: Any) -> list[str]:
    """Peers at the bytes per vector of the given chains, in order, without repeats."""
    out: list[str] = []
    for chain in chains:
        out += peers_for_chain(chain, dim, int(getattr(graph, "connectivity", 16)))
    return list(dict.fromkeys(out))


def peers_for_chain(chain: Any, dim: int, connectivity: int) -> list[str]:
    """Equivalent peers of one chain, matched on what it produces and its bytes per vector.

    Sign bits of every dimension: IndexBinaryFlat and usearch b1. RaBitQ codes: faiss IndexRaBitQ
    (of as many bits per dimension), the sign-bit peers (one bit) and PQ at the same bytes. A ``pq`` stage (shape read
    from its parameters): PQ and OPQ+PQ (after PCA if the chain has one). Float/int8 codes of the
    full dimension: usearch with that dtype and faiss IndexHNSWFlat. Fewer dimensions: PCA to
    the same dimension, stored like the chain stores them. Anything else: PQ at the same bytes.
    """
    space = chain.output
    nbytes = space.bytes_per_vector
    pca = next((s for s in chain.stages if s.name == "pca"), None)
    pq = next((s for s in chain.stages if s.name == "pq"), None)
    prefix = f"PCA{'W' if pca.values.get('whiten') else ''}{pca.output.dim}," if pca is not None else ""
    binarize = next((s for s in chain.stages if s.name == "binarize"), None)
    if binarize is not None and binarize.values.get("mode") == "rabitq" and chain.stages[-1] is binarize:
        # RaBitQ codes: faiss's own IndexRaBitQ, the plain sign bits they improve on, and PQ at the same bytes.
        # Extended RaBitQ (bits=B): faiss's multi-bit RaBitQ of the same bits.
        bits = binarize.values.get("bits", 1)
        sign = ["faiss:BFlat", "usearch:b1"] if binarize.input.dim == dim and bits == 1 else []
        lists = f"IVF{binarize.values['ivf']}," if binarize.values.get("ivf") else ""
        return [f"faiss:{prefix.replace(',', '') + ',' if prefix else ''}{lists}RaBitQ{bits if bits > 1 else ''}",
                *sign, *_pq_same_bytes(nbytes, dim)]
    if space.dtype == "bits" and pq is None:
        if space.dim == dim:
            out = ["faiss:BFlat", "usearch:b1"]
            return out if nbytes == (dim + 7) // 8 else out + _pq_same_bytes(nbytes, dim)
        return _pq_same_bytes(nbytes, dim)
    if pq is not None:
        shape = _pq_shape(pq)
        if shape is None:
            return _pq_same_bytes(nbytes, dim)
        m, b = shape
        # "np": no polysemous training (index_factory's default for PQ), which costs minutes and changes
        # nothing for an ADC scan; vecx's fit time is compared with the training an ADC search needs.
        lists = f"IVF{pq.values['ivf']}," if pq.values.get("ivf") else ""
        return [f"faiss:{prefix}{lists}PQ{m}x{b}np", f"faiss:{prefix}OPQ{m},{lists}PQ{m}x{b}np"]
    if space.dim == dim and space.dtype in _CODE_DTYPES and space.metric_on == "codes":
        return [f"usearch:{_CODE_DTYPES[space.dtype]}", f"faiss:HNSW{connectivity},Flat"]
    if space.dtype in _FAISS_CODES and space.dim < dim:
        head = prefix or f"PCA{space.dim},"
        return [f"faiss:{head}{_FAISS_CODES[space.dtype]}"]
    return _pq_same_bytes(nbytes, dim)


def _pq_shape(stage: Any) -> tuple[int, int] | None:
    """(M, bits) of a product-quantization stage, from an ``MxB`` value or m/bits parameters."""
    for value in stage.values.values():
        found = re.fullmatch(r"(\d+)x(\d+)", str(value))
        if found:
            return int(found.group(1)), int(found.group(2))
    m = next((stage.values[n] for n in ("m", "M", "subspaces", "subquantizers") if n in stage.values), None)
    b = next((stage.values[n] for n in ("bits", "nbits", "b") if n in stage.values), 8)
    return (int(m), int(b)) if m else None


def _pq_same_bytes(nbytes: int, dim: int) -> list[str]:
    """Faiss PQ with 8-bit codes at (at most) ``nbytes`` bytes: the most sub-spaces dividing ``dim``."""
    m = next((m for m in range(min(nbytes, dim), 0, -1) if dim % m == 0), None)
    return [f"faiss:PQ{m}x8np"] if m else []


# --------------------------------------------------------------------------------------
# Running a peer
# --------------------------------------------------------------------------------------
def run_peer(key: str, ctx: PeerContext) -> dict[str, Any]:
    """Build, train and search one peer; the row of the report (same fields as a vecx row)."""
    from vecx.bench.timing import best_time, single_query_ms
    from vecx.indexes.evaluate import recall_at

    system, name = key.split(":", 1)
    x, q = ctx.x, ctx.q
    if ctx.metric == "cosine":
        x, q = _unit(x), _unit(q)
    peer = _usearch(name, x, q, ctx) if system == "usearch" else _faiss(name, x, q, ctx)
    recall, qps = {}, {}
    for factor in ctx.factors:
        answer = partial(_answer, peer["search"], min(len(x), ctx.k * factor), factor, x, q, ctx)
        found, seconds = best_time(answer, ctx.repeat)
        recall[f"x{factor}"] = round(recall_at(found, ctx.truth, ctx.k), 4)
        qps[f"x{factor}"] = round(len(q) / seconds, 1)
    p50_ms = single_query_ms(lambda i: peer["search"](ctx.k, slice(i, i + 1)), len(q))
    apply_s = peer["apply_s"]
    return {"system": system, "name": name, "spec": key, "bytes_per_vector": int(peer["bytes"]),
            "recall": recall, "qps": qps, "p50_ms": p50_ms, "fit_s": round(peer["fit_s"], 3), "encode_s": None,
            "encode_mb_s": None if apply_s is None else round(ctx.x.nbytes / 2**20 / max(apply_s, 1e-9), 1),
            "build_s": round(peer["build_s"], 3)}


def _answer(search: Callable[..., Any], count: int, factor: int, x: Any, q: Any, ctx: PeerContext) -> Any:
    """A peer's answer to all queries at one rescoring factor: its ``count`` candidates per query, rescored
    with the float vectors to the best ``k`` unless ``factor`` is 1 (the timed call of :func:`run_peer`)."""
    cand = search(count)
    return cand if factor == 1 else rescore(x, q, cand, ctx.metric, ctx.k)


def rescore(x: Any, q: Any, cand: Any, metric: str, k: int) -> Any:
    """Top-k of candidate rows (-1 = none) by exact float scores (x, q already unit for cosine)."""
    out = np.full((len(q), k), -1, dtype=np.int64)
    chunk = max(1, (64 << 20) // max(1, cand.shape[1] * x.shape[1] * 4))
    for s in range(0, len(q), chunk):
        c = cand[s: s + chunk]
        v = x[np.maximum(c, 0)]
        qs = q[s: s + chunk]
        if metric == "l2":
            score = -((v - qs[:, None, :]) ** 2).sum(-1)
        else:
            score = np.einsum("nmd,nd->nm", v, qs)
        score = np.where(c >= 0, score, -np.inf)
        order = np.lexsort((c, -score), axis=1)[:, :k]
        out[s: s + chunk, : order.shape[1]] = np.take_along_axis(c, order, axis=1)
    return out


def _unit(a: Any) -> Any:
    from vecx.kernels import unit_rows

    return unit_rows(a).astype(np.float32)


def _usearch(dtype: str, x: Any, q: Any, ctx: PeerContext) -> dict[str, Any]:
    from usearch.index import Index

    d = x.shape[1]
    if dtype == "b1":
        data, queries, metric = np.packbits(x > 0, axis=1), np.packbits(q > 0, axis=1), "hamming"
        nbytes = data.shape[1]
    else:
        data, queries = x, q
        metric = {"cosine": "cos", "ip": "ip", "l2": "l2sq"}[ctx.metric]
        nbytes = d * {"f32": 4, "f16": 2, "i8": 1}[dtype]
    g = ctx.graph
    ef_search = int(getattr(g, "expansion_search", 64))
    index = Index(ndim=d, metric=metric, dtype=dtype, connectivity=int(getattr(g, "connectivity", 16)),
                  expansion_add=int(getattr(g, "expansion_add", 128)), expansion_search=ef_search)
    started = time.perf_counter()
    threads = 1 if getattr(g, "deterministic", False) else 0  # as vecx's deterministic build
    index.add(np.arange(len(data), dtype=np.uint64), np.ascontiguousarray(data), threads=threads)
    build_s = time.perf_counter() - started

    def search(count: int, which: slice = slice(None)) -> Any:
        # usearch defines this property's setter apart from its getter, which mypy takes for read-only.
        index.expansion_search = max(ef_search, count)  # type: ignore[misc]  # as vecx: never below the count
        asked = np.ascontiguousarray(queries[which])
        matches = index.search(asked, count, threads=0)
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(asked), -1)
        # For a single query usearch returns a Matches, which has no counts: all its keys were found.
        counts = np.asarray(getattr(matches, "counts", [len(matches.keys)])).reshape(-1, 1)
        return np.where(counts > np.arange(keys.shape[1])[None, :], keys, -1)

    return {"search": search, "bytes": nbytes, "fit_s": 0.0, "apply_s": None, "build_s": build_s}


def _faiss(key: str, x: Any, q: Any, ctx: PeerContext) -> dict[str, Any]:
    import faiss

    from vecx.bench.timing import best_encode_time, best_fit_time

    d = x.shape[1]
    train = x[ctx.train_rows]
    g = ctx.graph
    ef_search = int(getattr(g, "expansion_search", 64))
    fit_s = 0.0
    apply_s: float | None = 0.0  # None: the index has no standalone codes to time
    if key.startswith("B"):
        started = time.perf_counter()
        data = np.packbits(x > 0, axis=1)
        apply_s = time.perf_counter() - started
        queries = np.packbits(q > 0, axis=1)
        index = _factory(lambda: faiss.index_binary_factory(8 * data.shape[1], key), key)
        nbytes = index.code_size
        if not index.is_trained:
            started = time.perf_counter()
            index.train(data[ctx.train_rows])
            fit_s = time.perf_counter() - started
    else:
        metric = faiss.METRIC_L2 if ctx.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        index = _factory(lambda: faiss.index_factory(d, key, metric), key)
        data, queries = x, q
        if not index.is_trained:

            def train_fresh() -> None:  # a new index each time: train() on a trained one may do nothing
                nonlocal index
                index = _factory(lambda: faiss.index_factory(d, key, metric), key)
                index.train(np.ascontiguousarray(train))

            fit_s = best_fit_time(train_fresh, ctx.repeat)
        # Set on the index that will be filled (training makes a new one); it only matters to add().
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
        if hasattr(inner, "hnsw"):
            inner.hnsw.efConstruction = int(getattr(g, "expansion_add", 128))
        try:
            nbytes = index.sa_code_size()
            index.sa_encode(data[:1024])  # untimed, as vecx's first encode is (thread start-up)
            # The apply step alone (PCAMatrix.apply, ProductQuantizer.compute_codes ...), best of the runs.
            apply_s = best_encode_time(lambda: index.sa_encode(data), ctx.repeat)
        except RuntimeError:  # not every index has standalone codes
            nbytes, apply_s = 4 * d, None
    started = time.perf_counter()
    index.add(np.ascontiguousarray(data))
    build_s = time.perf_counter() - started
    space = faiss.ParameterSpace()

    if "IVF" in key:  # the lists probed per query: as many as vecx's scan of coarse lists probes
        space.set_index_parameter(index, "nprobe", int(getattr(g, "nprobe", 16)))

    def search(count: int, which: slice = slice(None)) -> Any:
        if not key.startswith("B") and "HNSW" in key:
            space.set_index_parameter(index, "efSearch", max(ef_search, count))
        return np.asarray(index.search(np.ascontiguousarray(queries[which]), count)[1], dtype=np.int64)

    return {"search": search, "bytes": nbytes, "fit_s": fit_s, "apply_s": apply_s, "build_s": build_s}


def _factory(make: Any, key: str) -> Any:
    try:
        return make()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--peer {key}: faiss cannot build this index ({first})",
                         hint="give a faiss index_factory string such as PQ24x8, OPQ24,PQ24x8 or PCA96,Flat") from None
