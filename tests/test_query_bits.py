"""Queries rounded to a few bits per coordinate (``--query-bits``, faiss's ``qb``) for RaBitQ codes:
the rounding, the compiled scan that counts bits against the rounded query (the same results as
every other path scoring that query), and the option from the index's default to one search."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_vectors, ok, run_vecx
from test_adc import _both, _same_results, _scan

from vecx import adc


@pytest.mark.parametrize("bits", [1, 2, 4, 7, 8])
def test_a_rounded_query_is_the_nearest_point_of_its_grid(bits: int) -> None:
    scan, q, _ = _scan("binarize:mode=rabitq", "cosine", rows=500, dim=40, queries=20)
    plain = scan.scorer.prepare_queries(q)
    rounded = scan.scorer.quantize_queries(plain, bits)
    r = plain["rotated"].astype(np.float64)
    low, high = r.min(axis=1, keepdims=True), r.max(axis=1, keepdims=True)
    step = (high - low) / (2**bits - 1)
    levels = rounded["levels"].astype(np.float64)
    assert levels.min() == 0 and levels.max() == 2**bits - 1
    assert (levels.min(axis=1) == 0).all() and (levels.max(axis=1) == 2**bits - 1).all()  # each query's own range
    np.testing.assert_allclose(rounded["rotated"], low + step * levels, rtol=1e-5, atol=1e-6)
    assert (np.abs(rounded["rotated"] - r) <= step / 2 * (1 + 1e-4) + 1e-6).all()  # the nearest level
    np.testing.assert_allclose(rounded["sum"], (low + step * levels).sum(axis=1), rtol=1e-4, atol=1e-5)
    assert plain["rotated"] is not rounded["rotated"] and np.array_equal(plain["rotated"], r)  # not changed in place


def test_a_constant_query_rounds_to_itself() -> None:
    scan, _, _ = _scan("binarize:mode=rabitq", "l2", rows=500, dim=40)
    prepared = {"rotated": np.full((2, 64), 0.25, dtype=np.float32)}
    rounded = scan.scorer.quantize_queries(prepared, 4)
    assert np.array_equal(rounded["rotated"], prepared["rotated"]) and not rounded["levels"].any()


def _dot_codes(rows: int, dim: int, seed: int) -> tuple[adc.Codes, np.ndarray]:
    """Random bit rows in the kernel's layout with factors (0, 1): a row's score is ``<bits, q_hat>``."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (rows, dim)).astype(np.uint8)
    factors = np.tile(np.array([0.0, 1.0], dtype=np.float32), (rows, 1))
    return adc.Codes.arrange((np.packbits(bits, axis=1), factors)), bits


# Row widths in 64-bit words: 4, 5 (4 + 1), 6 (4 + 2; 380 bits, padded), 7 (4 + 2 + 1), 8, 16 and 25 (3 x 8 + 1):
# the counts read a row 8 words at a time, then 4, 2 and 1.
@pytest.mark.parametrize("dim", [256, 320, 380, 448, 512, 1000, 1600])
@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_counted_scores_are_the_dot_products_with_the_rounded_query(dim: int, bits: int) -> None:
    rows, count = 700, 25
    codes, raw = _dot_codes(rows, dim, seed=dim + bits)
    rng = np.random.default_rng(bits)
    n = 3
    low = rng.standard_normal(n).astype(np.float32)
    delta = rng.uniform(0.01, 0.2, n).astype(np.float32)
    levels = rng.integers(0, 2**bits, (n, dim)).astype(np.uint8)
    planes = np.packbits((levels[:, None, :] >> np.arange(bits, dtype=np.uint8)[None, :, None]) & 1, axis=2)
    exact = raw.astype(np.float64) @ (low[:, None] + delta[:, None] * levels.astype(np.float64)).T  # rows x n
    # The tables are zeros: a scan that summed them instead of counting would score every row 0.
    tables = np.zeros((n, codes.positions, 256), dtype=np.float32)
    one = np.ones(n, dtype=np.float32)
    for parts in (1, 2):
        found, scores = adc.scan(codes, np.arange(rows), np.array([0, rows]), tables, np.zeros((n, 1), np.float32),
                                 np.zeros((n, 1), np.int64), count, False, scale=one, shift=0 * one, parts=parts,
                                 planes=planes, low=low, delta=delta)
        for i in range(n):
            np.testing.assert_allclose(scores[i], exact[found[i], i], rtol=1e-5, atol=1e-4)
            kth = np.sort(exact[:, i])[-count]
            assert scores[i][-1] >= kth - 1e-5 * max(1.0, abs(kth))  # the best count rows
            assert (np.diff(scores[i]) <= 0).all()


def test_rows_narrower_than_the_counts_pay_for_are_summed_from_tables() -> None:
    planes = np.zeros((1, 4, 13), dtype=np.uint8)
    narrow, _ = _dot_codes(100, 100, seed=1)
    wide, _ = _dot_codes(100, 256, seed=1)
    assert narrow.positions < adc.COUNT_BYTES <= wide.positions
    assert not narrow.counts(planes) and wide.counts(planes) and not wide.counts(None)


# Extended codes without incremental estimation: its pruning is by a probabilistic bound (about 3
# standard deviations), so it may give up a row the full scan keeps (tested apart, below).
RABITQ = ["binarize:mode=rabitq", "binarize:mode=rabitq:ivf=8", "binarize:mode=rabitq:levels=2",
          "binarize:mode=rabitq:bits=3:ivf=8:incremental=false"]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("spec", RABITQ)
@pytest.mark.parametrize(("bits", "dim"), [(2, 300), (4, 300), (8, 300), (4, 50)])
def test_the_counted_scan_finds_what_numpy_finds_for_the_rounded_query(spec: str, metric: str, bits: int,
                                                                       dim: int) -> None:
    """300 dimensions: counted (40 bytes per plane); 50: summed from the tables, the rounded query's."""
    scan, q, _ = _scan(spec, metric, rows=3000, dim=dim)
    assert scan._table_codes()[0].counts(np.zeros(1)) == (dim == 300)
    scan.query_bits = bits
    for n in (1, 40):
        for count in (10, 100):
            _same_results(*_both(scan, "exhaustive", q[:n], count), scan.lower_is_better)
        _same_results(*_both(scan, "exhaustive", q[:n], 10, np.arange(5, 3000, 7)), scan.lower_is_better)
        if scan.list_count:
            _same_results(*_both(scan, "probe", q[:n], 10, 3), scan.lower_is_better)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_incremental_estimation_of_rounded_queries_keeps_the_rows_it_should(metric: str) -> None:
    """Extended codes pruned by the sign plane's bound: every row returned has the rounded query's
    full score, and nearly every row the full scan keeps is kept."""
    scan, q, codes = _scan("binarize:mode=rabitq:bits=3:ivf=8", metric, rows=3000, dim=300)
    scan.query_bits = 4
    (full_rows, _), (rows, scores) = _both(scan, "exhaustive", q, 10)
    prepared = scan.prepare(q)
    for i in range(len(q)):
        exact = scan.scorer.score(scan._rounded(scan.scorer.prepare_queries(q[i: i + 1])), np.asarray(codes[rows[i]]))
        np.testing.assert_allclose(scores[i], exact[0], rtol=1e-5, atol=1e-5)
    kept = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(full_rows, rows, strict=True)])
    assert kept >= 0.99, kept
    assert prepared["levels"].max() == 15


def test_rounding_changes_the_scores_and_zero_bits_do_not_round() -> None:
    scan, q, _ = _scan("binarize:mode=rabitq", "cosine", rows=3000, dim=50)
    scan.compiled = True
    plain = scan.exhaustive(q[:5], 10)
    scan.query_bits = 2
    rounded = scan.exhaustive(q[:5], 10)
    assert not np.allclose(plain[1], rounded[1], atol=1e-4)  # two bits: visibly other scores
    scan.query_bits = 0
    again = scan.exhaustive(q[:5], 10)
    assert np.array_equal(plain[0], again[0]) and np.array_equal(plain[1], again[1])


def test_batches_and_codes_read_byte_by_byte_score_the_rounded_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch (counted too: faster than products for rounded queries), and the byte-by-byte layout
    of a big-endian machine (single queries summed from tables, batches by products): the same
    results as single counted queries."""
    scan, q, _ = _scan("binarize:mode=rabitq", "l2", rows=3000, dim=300, queries=600)
    scan.query_bits = 4
    scan.compiled = True
    counted = [scan.exhaustive(q[i: i + 1], 10) for i in range(3)]
    arranged = scan._table_codes()[0]
    assert arranged.countable
    found = scan.scorer.table_queries(scan.prepare(q[:100]), counted=True)
    assert found["tables"].shape[-1] == 0 and found["planes"].shape[:2] == (100, 4)  # planes, no tables
    assert not scan._by_products(found, arranged, 100)
    batch = scan.exhaustive(q, 10)
    monkeypatch.setattr(sys, "byteorder", "big")
    bytewise, _, _ = _scan("binarize:mode=rabitq", "l2", rows=3000, dim=300)
    bytewise.query_bits, bytewise.compiled = 4, True
    assert bytewise._table_codes()[0].words.shape[1] == 0 and not bytewise._table_codes()[0].countable
    summed = bytewise.scorer.table_queries(bytewise.prepare(q[:100]), counted=False)
    assert summed["tables"].shape[-1] == 256 and "planes" not in summed  # tables, no planes
    assert bytewise._by_products(summed, bytewise._table_codes()[0], 100)
    from vecx import adc

    with pytest.raises(ValueError, match="bit planes"):  # tables left out, but the codes cannot count
        adc.scan_codes(bytewise._table_codes()[0], bytewise._table_codes()[1], bytewise._table_codes()[2],
                       found, np.zeros((100, 1), dtype=np.int64), 10, bytewise.lower_is_better)
    by_products = bytewise.exhaustive(q, 10)
    for i in range(3):
        _same_results(counted[i], (batch[0][i: i + 1], batch[1][i: i + 1]), scan.lower_is_better)
        _same_results(counted[i], (by_products[0][i: i + 1], by_products[1][i: i + 1]), scan.lower_is_better)
        _same_results(counted[i], bytewise.exhaustive(q[i: i + 1], 10), scan.lower_is_better)


# ---- the option ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("qbits")
    np.save(tmp / "x.npy", make_vectors(3000, 48, seed=3, normalize=True))
    np.save(tmp / "q.npy", make_vectors(8, 48, seed=4, normalize=True))
    ok("encode", tmp / "x.npy", "--spec", "binarize:mode=rabitq", "-o", tmp / "rq.parquet", "-q")
    ok("encode", tmp / "x.npy", "--spec", "pq:6x8", "-o", tmp / "pq.parquet", "-q")
    ok("index", tmp / "rq.parquet", "-o", tmp / "plain.vecx", "-q")
    ok("index", tmp / "rq.parquet", "-o", tmp / "four.vecx", "--query-bits", "4", "-q")
    ok("index", tmp / "pq.parquet", "-o", tmp / "pq.vecx", "-q")
    ok("truth", tmp / "x.npy", "--queries", tmp / "q.npy", "-k", "10", "-o", tmp / "truth.parquet", "-q")
    return tmp


def _ids(index: Path, *args: object) -> list[list[str]]:
    out = ok("query", index, "--vector", index.parent / "q.npy", "-k", "10", "--format", "jsonl", *args)
    return [[r["id"] for r in json.loads(line)["results"]] for line in out.splitlines()]


def _scores(index: Path, *args: object) -> np.ndarray:
    out = ok("query", index, "--vector", index.parent / "q.npy", "-k", "10", "--format", "jsonl", *args)
    return np.array([[r["score"] for r in json.loads(line)["results"]] for line in out.splitlines()])


def test_the_index_default_and_one_searchs_choice_give_the_same_results(tables: Path) -> None:
    from vecx.indexes.search import Searcher

    searcher = Searcher(str(tables / "four.vecx"))
    assert searcher.manifest["search"]["query_bits"] == 4 and searcher.scan.query_bits == 4
    searcher.close()
    four = _scores(tables / "four.vecx")
    assert np.array_equal(four, _scores(tables / "plain.vecx", "--query-bits", "4"))
    assert _ids(tables / "four.vecx") == _ids(tables / "plain.vecx", "--query-bits", "4")
    plain = _scores(tables / "plain.vecx")
    assert np.array_equal(plain, _scores(tables / "four.vecx", "--query-bits", "0"))  # 0: not rounded
    assert not np.allclose(plain, four, atol=1e-5)
    assert "queries rounded to 4 bits" in ok("info", tables / "four.vecx")
    truth = ("--queries", tables / "q.npy", "--truth", tables / "truth.parquet")
    assert json.loads(ok("eval", tables / "plain.vecx", *truth, "--query-bits", "4", "--json"))["query_bits"] == 4
    assert "query_bits" not in json.loads(ok("eval", tables / "plain.vecx", *truth, "--json"))
    assert "queries rounded to 4 bits" in ok("eval", tables / "four.vecx", *truth)


def test_a_graph_search_ranks_its_candidates_by_the_rounded_query(tables: Path, tmp_path: Path) -> None:
    from vecx.indexes.search import Searcher

    ok("index", tables / "rq.parquet", "-o", tmp_path / "g.vecx", "--scan", "graph", "--query-bits", "4", "-q")
    searcher = Searcher(str(tmp_path / "g.vecx"))
    assert searcher.scan_mode == "graph" and searcher.scan.query_bits == 4
    q = np.load(tables / "q.npy")
    rows, scores = searcher.search(q, 10, rescore=False)
    codes = np.asarray(searcher.scan.codes)
    for i in range(len(q)):
        prepared = searcher.scan.prepare(searcher.chain.encode_query(q[i: i + 1]))
        assert prepared["levels"].max() == 15  # the candidates' scores are the rounded query's
        np.testing.assert_allclose(scores[i], searcher.scan.scorer.score(prepared, codes[rows[i]])[0],
                                   rtol=1e-5, atol=1e-6)
    searcher.close()


def test_the_python_index_rounds_for_one_search_only(tables: Path) -> None:
    import vecx

    index = vecx.open_index(str(tables / "plain.vecx"))
    q = np.load(tables / "q.npy")
    rounded = index.search(q, 10, query_bits=4)
    plain = index.search(q, 10)
    assert np.allclose(np.asarray(rounded.scores), _scores(tables / "four.vecx"), atol=1e-6)
    assert np.allclose(np.asarray(plain.scores), _scores(tables / "plain.vecx"), atol=1e-6)


def test_query_bits_that_cannot_apply_are_usage_errors(tables: Path, tmp_path: Path) -> None:
    for index in (tables / "pq.vecx",):
        r = run_vecx("query", index, "--vector", tables / "q.npy", "--query-bits", "4")
        assert r.code == 2 and "--query-bits" in r.stderr and "pq codes" in r.stderr and len(r.stderr.splitlines()) <= 2
    r = run_vecx("query", tables / "plain.vecx", "--vector", tables / "q.npy", "--query-bits", "9")
    assert r.code == 2 and "--query-bits" in r.stderr
    r = run_vecx("index", tables / "pq.parquet", "-o", tmp_path / "bad.vecx", "--query-bits", "4")
    assert r.code == 2 and "--query-bits" in r.stderr and not (tmp_path / "bad.vecx").exists()
    ok("import", tables / "x.npy", "-o", tmp_path / "floats.parquet", "-q")
    r = run_vecx("index", tmp_path / "floats.parquet", "-o", tmp_path / "f.vecx", "--query-bits", "4")
    assert r.code == 2 and "--query-bits" in r.stderr and not (tmp_path / "f.vecx").exists()
    # 0 (not rounded) is every index's way already: taken by one of float vectors, by the CLI and Python
    ok("index", tmp_path / "floats.parquet", "-o", tmp_path / "f.vecx", "--query-bits", "0", "-q")
    (tmp_path / "q.npy").write_bytes((tables / "q.npy").read_bytes())  # beside the index, as _ids reads it
    assert _ids(tmp_path / "f.vecx", "--query-bits", "0") == _ids(tmp_path / "f.vecx")
    r = run_vecx("query", tmp_path / "f.vecx", "--vector", tables / "q.npy", "--query-bits", "4")
    assert r.code == 2 and "not codes a codec scores" in r.stderr
    import vecx

    with vecx.open_index(str(tmp_path / "f.vecx")) as index:
        assert np.array_equal(index.search(np.load(tables / "q.npy"), 5, query_bits=0).ids,
                              index.search(np.load(tables / "q.npy"), 5).ids)


@pytest.mark.parametrize(("index", "bits"), [("four.vecx", 99), ("four.vecx", -1), ("pq.vecx", 4)])
def test_a_manifest_with_impossible_query_bits_is_refused(tables: Path, tmp_path: Path, index: str, bits: int) -> None:
    import shutil

    copy = tmp_path / "copy.vecx"
    shutil.copytree(tables / index, copy)
    manifests = list(copy.rglob("manifest.json"))
    assert manifests
    for path in manifests:
        data = json.loads(path.read_text())
        data["search"]["query_bits"] = bits
        path.write_text(json.dumps(data))
    r = run_vecx("query", copy, "--vector", tables / "q.npy")
    assert r.code == 3 and "search.query_bits" in r.stderr and len(r.stderr.splitlines()) <= 2, r.stderr
