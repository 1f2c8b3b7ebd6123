"""The compiled table scan (vecx/adc.py) of PQ and RaBitQ codes: the same results as the numpy scan,
ties to the lower row, padding where lists hold fewer rows, and loaded only when a search repays it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_vectors, ok

from vecx.chain import Chain
from vecx.indexes.codescan import CodeScan
from vecx.space import VectorSpec

SPECS = ["pq:6x8", "pq:6x8:ivf=16", "pq:6x8:opq=true:ivf=16", "pq:5x4", "pq:4x6:ivf=8",
         "binarize:mode=rabitq", "binarize:mode=rabitq:levels=2:ivf=16", "binarize:mode=rabitq:bits=3"]


def _scan(spec: str, metric: str, rows: int = 3000, dim: int = 24,
          queries: int = 40) -> tuple[CodeScan, np.ndarray, np.ndarray]:
    x = make_vectors(rows, dim, seed=5)
    chain = Chain.from_spec(spec, VectorSpec(dim, "float32", metric, False))
    chain.fit(lambda stage: x)
    codes = np.asarray(chain.encode(x))
    q = chain.encode_query(make_vectors(queries, dim, seed=6))
    return CodeScan(codes, chain.stages[-1]), q, codes


def _both(scan: CodeScan, search: str, *args: object) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    out = []
    for compiled in (False, True):
        scan.compiled = compiled
        out.append(getattr(scan, search)(*args))
    return tuple(out)


def _same_results(numpy_found: tuple[np.ndarray, np.ndarray], compiled: tuple[np.ndarray, np.ndarray],
                  lower_is_better: bool) -> None:
    """Equal scores (float rounding), and the same rows except where a row's score ties, within
    rounding, with the last one kept (then either row is a right answer)."""
    (k1, s1), (k2, s2) = numpy_found, compiled
    assert k1.shape == k2.shape
    np.testing.assert_allclose(s2, s1, rtol=1e-5, atol=1e-5)
    for i in range(len(k1)):
        differ = set(k1[i].tolist()) ^ set(k2[i].tolist())
        if differ:
            last = s1[i][k1[i] >= 0][-1]
            at_edge = np.abs(s1[i] - last) <= 1e-5 * max(1.0, abs(float(last)))
            assert differ <= set(k1[i][at_edge].tolist()) | set(k2[i][at_edge].tolist()), (i, k1[i], k2[i])
    order = s2 if lower_is_better else -s2  # best first
    assert (np.diff(np.where(k2 >= 0, order, np.inf), axis=1) >= 0).all()


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("spec", SPECS)
def test_compiled_scan_equals_numpy_scan(spec: str, metric: str) -> None:
    scan, q, _ = _scan(spec, metric)
    assert scan.has_tables
    for n in (1, 40):  # numpy's single-query tables and its batch (BLAS) path
        _same_results(*_both(scan, "exhaustive", q[:n], 10), scan.lower_is_better)
        subset = np.arange(5, 3000, 7)
        _same_results(*_both(scan, "exhaustive", q[:n], 10, subset), scan.lower_is_better)
        if scan.list_count:
            _same_results(*_both(scan, "probe", q[:n], 10, 3), scan.lower_is_better)
            _same_results(*_both(scan, "probe", q[:n], 10, scan.list_count), scan.lower_is_better)


# Code layouts the kernel reads differently: 8-bit PQ codes in two whole words, in one word and four
# bytes (zero-padded to two words, the tables with zero entries), 10-bit codes (two bytes each, read one
# by one), RaBitQ bit planes of whole words (64 dims) and of 7 bytes (50 dims: each plane padded apart),
# and tables larger than the kernel's WIDE_TABLE (72 PQ positions, 600 bits: summed span by span over
# blocks of rows, the 2,000 rows two blocks).
LAYOUTS = [("pq:16x8", 32), ("pq:12x8:ivf=8", 24), ("pq:4x10", 16), ("binarize:mode=rabitq:levels=2", 64),
           ("binarize:mode=rabitq:levels=2:ivf=8", 50), ("binarize:mode=rabitq", 50),
           ("binarize:mode=rabitq:bits=4:ivf=8", 50), ("pq:72x8", 144), ("pq:72x8:ivf=8", 144),
           ("binarize:mode=rabitq", 600), ("binarize:mode=rabitq:ivf=8", 600)]


@pytest.mark.parametrize(("spec", "dim"), LAYOUTS)
def test_every_code_layout_scans_as_numpy_does(spec: str, dim: int) -> None:
    from vecx import adc

    scan, q, _ = _scan(spec, "l2", rows=2000, dim=dim)
    assert (dim >= 144) == adc._wide_table(scan._table_codes()[0].words, 256)
    for n in (1, 40):
        _same_results(*_both(scan, "exhaustive", q[:n], 10), scan.lower_is_better)
        if scan.list_count:
            _same_results(*_both(scan, "probe", q[:n], 10, 3), scan.lower_is_better)


@pytest.mark.parametrize("spec", ["pq:6x8", "pq:6x8:ivf=8", "binarize:mode=rabitq",
                                  "binarize:mode=rabitq:bits=3:ivf=8"])
def test_codes_read_byte_by_byte_scan_as_the_words_do(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a big-endian machine the kernel reads every code byte by byte (the ``tail`` layout, a
    loop of its own): the same rows and scores as the words' layout, with the kernel compiled for it."""
    scan, q, _ = _scan(spec, "l2", rows=1500, dim=40)
    scan.compiled = True
    words = [scan.exhaustive(q[:n], 10) for n in (1, 5)]
    probed = scan.probe(q[:1], 10, 3) if scan.list_count else None
    monkeypatch.setattr(sys, "byteorder", "big")
    bytewise, _, _ = _scan(spec, "l2", rows=1500, dim=40)
    bytewise.compiled = True
    arranged = bytewise._table_codes()[0]
    assert arranged.words.shape[1] == 0 and arranged.tail.shape[1] > 0  # the byte-by-byte layout
    for n, found in zip((1, 5), words, strict=True):
        _same_results(found, bytewise.exhaustive(q[:n], 10), scan.lower_is_better)
    if probed is not None:
        _same_results(probed, bytewise.probe(q[:1], 10, 3), scan.lower_is_better)


@pytest.mark.parametrize(("spec", "metric"), [("binarize:mode=rabitq", "cosine"), ("binarize:mode=rabitq", "l2"),
                                             ("binarize:mode=rabitq:bits=3", "cosine"),
                                             ("binarize:mode=rabitq:levels=2", "l2")])
def test_a_batch_of_bit_codes_scanned_by_products_equals_the_numpy_scan(spec: str, metric: str) -> None:
    """Hundreds of queries over RaBitQ codes of one plane or several (extended, residual levels): the
    products path (vecx.adc.scan_products)."""
    from vecx import adc

    scan, q, _ = _scan(spec, metric, rows=5000, dim=40, queries=600)
    assert len(q) // 2 >= adc.PRODUCT_QUERIES  # each core's block of queries takes the products path
    for count in (10, 100):
        _same_results(*_both(scan, "exhaustive", q, count), scan.lower_is_better)
    _same_results(*_both(scan, "exhaustive", q, 10, np.arange(3, 5000, 3)), scan.lower_is_better)


@pytest.mark.parametrize(("spec", "metric"), [("pq:6x8", "cosine"), ("pq:6x8:ivf=16", "l2"),
                                             ("binarize:mode=rabitq:ivf=16", "cosine")])
def test_one_query_split_between_threads_finds_what_one_thread_finds(spec: str, metric: str) -> None:
    """A single query's rows cut between the cores (one list cut in ranges, or the probed lists dealt
    out), their best merged: the same rows and scores as one thread's scan (ties across parts: the
    merge test below)."""
    from vecx import adc

    scan, q, _ = _scan(spec, metric)
    scan.compiled = True
    arranged, rows, starts = scan._table_codes()
    for i in range(3):
        prepared = scan.prepare(q[i: i + 1])
        found = scan.scorer.table_queries(prepared)
        picked = np.argsort(np.asarray(scan.scorer.probe_order(prepared)), axis=1)[:, :5] if scan.list_count else \
            np.zeros((1, 1), dtype=np.int64)
        one = adc.scan_codes(arranged, rows, starts, found, picked, 30, scan.lower_is_better, parts=1)
        for parts in (2, 3):
            split = adc.scan_codes(arranged, rows, starts, found, picked, 30, scan.lower_is_better, parts=parts)
            np.testing.assert_array_equal(split[0], one[0])
            np.testing.assert_allclose(split[1], one[1], rtol=1e-6)


def test_parts_merge_by_score_then_row_with_empty_slots_last() -> None:
    """Probed lists dealt out to parts can give the later part the lower row of a tie."""
    from vecx import adc

    adc._compiled()
    rows = np.array([[[5, 9, -1]], [[3, 7, 8]]])  # parts x queries x count, each part best first
    scores = np.array([[[1.0, 2.0, np.inf]], [[1.0, 1.5, 2.0]]], dtype=np.float32)
    for count, want in ((5, [3, 5, 7, 8, 9]), (6, [3, 5, 7, 8, 9, -1]), (2, [3, 5])):
        out_rows, out_scores = np.full((1, count), -1), np.full((1, count), np.inf, dtype=np.float32)
        adc._merge(rows, scores, out_rows, out_scores)
        assert out_rows.tolist() == [want]
        assert out_scores[0, 0] == 1.0 and (np.diff(out_scores[0]) >= 0).all()


@pytest.mark.parametrize("spec", ["pq:6x8:ivf=16", "binarize:mode=rabitq:ivf=16"])
def test_compiled_scores_are_the_codecs_scores_of_the_returned_rows(spec: str) -> None:
    """Independent of the numpy scan: each returned row's score is what the codec's own scorer gives
    that row, and no row outside the result scores better than the last one kept."""
    scan, q, codes = _scan(spec, "l2")
    scan.compiled = True
    keys, scores = scan.exhaustive(q, 20)
    full = np.asarray(scan.scorer.score(scan.prepare(q[:3]), codes))  # tables path, 3 queries
    for i in range(3):
        np.testing.assert_allclose(scores[i], full[i, keys[i]], rtol=1e-5, atol=1e-4)
        assert np.sort(full[i])[19] >= scores[i][-1] - 1e-4


def test_ties_go_to_the_lower_row_and_short_lists_pad_with_minus_one() -> None:
    x = make_vectors(400, 16, seed=8)
    x[300:] = x[0]  # 100 copies of row 0: identical codes, identical scores
    chain = Chain.from_spec("pq:4x8:ivf=4", VectorSpec(16, "float32", "l2", False))
    chain.fit(lambda stage: x)
    codes = np.asarray(chain.encode(x))
    scan = CodeScan(codes, chain.stages[-1])
    scan.compiled = True
    q = chain.encode_query(x[:1])
    keys, scores = scan.probe(q, 50, 1)
    copies = keys[0][np.isclose(scores[0], scores[0][0])]
    assert copies[:5].tolist() == [0, 300, 301, 302, 303]  # equal scores: lower rows first
    # More results than the probed list holds: the rest is -1 with the no-result score.
    size = int(np.sum(scan.scorer.list_of(codes) == scan.scorer.list_of(codes[:1])[0]))
    keys, scores = scan.probe(q, size + 5, 1)
    assert (keys[0][size:] == -1).all() and np.isinf(scores[0][size:]).all()
    assert (keys[0][:size] >= 0).all()


def test_small_searches_do_not_load_the_kernel_and_large_ones_do(tmp_path: Path) -> None:
    """One query from the command line must not pay numba's load time; a large batch does, once."""
    x = make_vectors(4000, 32, seed=2)
    np.save(tmp_path / "x.npy", x)
    ok("encode", tmp_path / "x.npy", "-o", tmp_path / "c.parquet", "--spec", "pq:8x8")
    ok("index", tmp_path / "c.parquet", "-o", tmp_path / "c.vecx")
    script = f"""
import sys, numpy as np, vecx
index = vecx.open_index({str(tmp_path / "c.vecx")!r})
q = np.load({str(tmp_path / "x.npy")!r})
one = index.search(q[:1], k=5)
print("numba" in sys.modules)
many = index.search(q[:2000], k=5)
print("numba" in sys.modules)
assert (many.ids[:1] == one.ids).all()
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_a_forked_child_scans_with_a_pool_of_its_own(tmp_path: Path) -> None:
    """The scan's thread pool is the process's: a child forked after a batch scan must not wait on the
    parent's threads (which do not exist in the child), and the kernel also runs compiled without numba's
    cache (where no cache directory can be written)."""
    script = """
import os, sys, numpy as np
from vecx import adc
from vecx.chain import Chain
from vecx.indexes.codescan import CodeScan
from vecx.space import VectorSpec
x = np.random.default_rng(1).standard_normal((3000, 16)).astype(np.float32)
chain = Chain.from_spec("pq:4x8:ivf=8", VectorSpec(16, "float32", "l2", False))
chain.fit(lambda stage: x)
scan = CodeScan(np.asarray(chain.encode(x)), chain.stages[-1])
scan.compiled = True
adc._compile(cache=False)
q = chain.encode_query(x[:600])
before = scan.probe(q, 5, 2)[0]
pid = os.fork()
if pid == 0:
    os._exit(0 if (scan.probe(q, 5, 2)[0] == before).all() else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
