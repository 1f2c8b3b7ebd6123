"""Exact ground truth: agrees with brute force for every metric, on raw and encoded tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, run_vecx, shared, stored

from vecx.formats import metadata
from vecx.indexes.truth import exact_topk


def brute(q: np.ndarray, x: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)  # a zero row scores 0
    if metric == "l2":
        d = ((q[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
        s = -d
    else:
        s = q.astype(np.float64) @ x.T.astype(np.float64)
    order = np.lexsort((np.broadcast_to(np.arange(len(x)), s.shape), -s), axis=1)[:, :k]
    scores = np.take_along_axis(s, order, axis=1)
    return order, (-scores if metric == "l2" else scores)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("block", [7, 100, 5000])
def test_blocked_topk_matches_brute_force(metric: str, block: int) -> None:
    x = make_vectors(1200, 16, seed=3)
    q = make_vectors(30, 16, seed=4)
    rows, scores = exact_topk(q, ((i, x[i: i + block]) for i in range(0, len(x), block)), 10, metric)
    ref_rows, ref_scores = brute(q, x, 10, metric)
    assert np.array_equal(rows, ref_rows)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_blocks_carrying_their_norms_rank_as_brute_force(metric: str) -> None:
    x = make_vectors(900, 16, seed=5)
    x[:450] /= np.linalg.norm(x[:450], axis=1, keepdims=True)  # unit rows (skipped) and others (scaled)
    x[450] *= 0.0  # a zero row has no direction: cosine 0, as without norms
    q = make_vectors(25, 16, seed=6)
    sq = np.einsum("ij,ij->i", x, x)
    blocks = ((i, x[i: i + 128], sq[i: i + 128]) for i in range(0, len(x), 128))
    rows, scores = exact_topk(q, blocks, 10, metric)
    plain_rows, plain_scores = exact_topk(q, ((i, x[i: i + 128]) for i in range(0, len(x), 128)), 10, metric)
    ref_rows, ref_scores = brute(q, x, 10, metric)
    assert np.array_equal(rows, ref_rows) and np.array_equal(rows, plain_rows)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(scores, plain_scores, rtol=1e-5, atol=1e-5)


def test_ties_go_to_the_lower_row() -> None:
    x = np.ones((50, 4), dtype=np.float32)
    rows, _ = exact_topk(np.ones((1, 4), dtype=np.float32), ((i, x[i: i + 8]) for i in range(0, 50, 8)), 5, "ip")
    assert rows[0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_truth_cli_matches_shared_ground_truth(tmp_path: Path) -> None:
    data = shared("sift128-images-30k")
    out = tmp_path / "gt.parquet"
    r = run_vecx("truth", data / "base.npy", "--queries", data / "queries.npy", "-o", out, "-k", "100",
                 "--metric", "l2", "--json")
    assert r.code == 0, r.stderr
    table = pq.read_table(out)
    rows = np.stack(table["rows"].to_numpy(zero_copy_only=False))
    gt = np.load(data / "gt.npy")
    # The shared truth was computed independently (float64); allow near-ties to swap.
    assert (rows[:, :10] == gt[:, :10]).mean() > 0.999
    assert np.all(np.diff(np.stack(table["scores"].to_numpy(zero_copy_only=False)), axis=1) >= 0)
    meta = json.loads(pq.ParquetFile(out).metadata.metadata[metadata.KEY])
    assert meta["kind"] == "truth" and meta["score"] == "squared L2 distance" and meta["k"] == 100


def test_truth_on_encoded_table_uses_decoded_vectors(tmp_path: Path, base_table: Path, base_npy: Path) -> None:
    enc = tmp_path / "i8.parquet"
    assert run_vecx("encode", base_table, "-o", enc, "--spec", "int8").code == 0
    queries = tmp_path / "q.npy"
    q = make_vectors(20, 48, seed=77)
    np.save(queries, q)
    out = tmp_path / "gt.parquet"
    r = run_vecx("truth", enc, "--queries", queries, "-o", out, "-k", "5")
    assert r.code == 0, r.stderr
    table = pq.read_table(out)
    # Reference: decode the stored codes ourselves with the stored ranges.
    chain, codes = stored(enc)
    decoded = chain.decode(codes)
    ref_rows, _ = brute(q, decoded, 5, "cosine")
    assert np.array_equal(np.stack(table["rows"].to_numpy(zero_copy_only=False)), ref_rows)
    ids = np.stack(table["ids"].to_numpy(zero_copy_only=False))
    assert ids[0, 0] == f"w{ref_rows[0, 0]}"
    # Queries in the original 48-d space of a truncated table are truncated first.
    trunc = tmp_path / "t.parquet"
    assert run_vecx("encode", base_table, "-o", trunc, "--spec", "truncate:12,int8").code == 0
    r = run_vecx("truth", trunc, "--queries", queries, "-o", out, "-k", "5")
    assert r.code == 0, r.stderr
    chain, codes = stored(trunc)
    decoded = chain.decode(codes)
    q12 = q[:, :12] / np.linalg.norm(q[:, :12], axis=1, keepdims=True)
    ref_rows, _ = brute(q12, decoded, 5, "cosine")
    assert np.array_equal(np.stack(pq.read_table(out)["rows"].to_numpy(zero_copy_only=False)), ref_rows)


def test_truth_errors(tmp_path: Path, base_table: Path) -> None:
    q = tmp_path / "q.npy"
    np.save(q, make_vectors(3, 7))
    r = run_vecx("truth", base_table, "--queries", q, "-o", tmp_path / "gt.parquet")
    assert r.code == 4 and "queries have 7 dimensions" in r.stderr
    np.save(q, make_vectors(3, 48))
    r = run_vecx("truth", base_table, "--queries", q, "-o", tmp_path / "gt.parquet", "-k", "5000")
    assert r.code == 2 and "larger than the base (3000 rows)" in r.stderr
    assert not (tmp_path / "gt.parquet").exists()


def test_truth_on_a_pca_table_ranks_by_its_metric(tmp_path: Path, base_table: Path) -> None:
    enc = tmp_path / "pca.parquet"
    assert run_vecx("encode", base_table, "-o", enc, "--spec", "pca:16").code == 0
    queries = tmp_path / "q.npy"
    q = make_vectors(10, 48, seed=5)
    np.save(queries, q)
    out = tmp_path / "gt.parquet"
    r = run_vecx("truth", enc, "--queries", queries, "-o", out, "-k", "5", "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["metric"] == "ip"
    chain, codes = stored(enc)
    ref_rows, _ = brute(chain.encode_query(q), codes, 5, "ip")
    assert np.array_equal(np.stack(pq.read_table(out)["rows"].to_numpy(zero_copy_only=False)), ref_rows)
