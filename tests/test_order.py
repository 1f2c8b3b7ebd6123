"""Insertion order (``vecx index --order``) and the LID estimate it can be chosen by."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import make_vectors, ok, run_vecx

from vecx.indexes import order


def subspace_points(n: int, intrinsic: int, ambient: int, seed: int) -> np.ndarray:
    """``n`` points uniform in a unit cube of ``intrinsic`` dimensions, rotated into ``ambient`` ones."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, intrinsic)))
    return (rng.random((n, intrinsic)) @ basis.T).astype(np.float32)


@pytest.mark.parametrize("intrinsic", [3, 8])
def test_lid_estimates_the_dimension_of_a_subspace(intrinsic: int) -> None:
    # Uniform data of known dimension inside a wider space: the estimate finds the dimension, not the
    # ambient 64 (the MLE is biased low at the cube's edges, hence the band).
    x = subspace_points(4000, intrinsic, 64, seed=intrinsic)
    _, stats = order.insertion_order("lid", x, "l2sq")
    assert intrinsic * 0.7 <= stats["median"] <= intrinsic * 1.3, stats
    assert stats["rows"] == 4000 and stats["p10"] <= stats["median"] <= stats["p90"]


def test_mle_is_the_levina_bickel_formula() -> None:
    rng = np.random.default_rng(3)
    distances = np.sort(rng.random((5, 20)) + 0.1, axis=1)
    expected = [-1.0 / (sum(math.log(r / row[-1]) for r in row) / len(row)) for row in distances.tolist()]
    np.testing.assert_allclose(order.mle(distances ** 2), expected, rtol=1e-12)
    # Neighbours all equally far: an infinite LID; fewer than two neighbours: no estimate.
    ties = np.array([[4.0, 4.0, 4.0], [1.0, np.inf, np.inf]])
    out = order.mle(ties)
    assert np.isinf(out[0]) and np.isnan(out[1])


def test_the_row_itself_and_its_duplicates_are_not_neighbours() -> None:
    x = subspace_points(600, 5, 32, seed=1)
    doubled = np.concatenate([x, x])  # every row twice: a zero distance for each, rounding aside
    values = order.lid(doubled, "l2sq", order.euclidean_view(doubled, "l2sq"), np.arange(len(doubled)))
    single = order.lid(x, "l2sq", order.euclidean_view(x, "l2sq"), np.arange(len(x)))
    assert np.isfinite(values).all()
    # With the duplicate left out, a row's neighbours are the same as without it (each twice).
    assert np.median(values) == pytest.approx(np.median(single), rel=0.35)


def test_the_views_distances_are_the_graph_metric() -> None:
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 256, (30, 8), dtype=np.uint8)
    view = order.euclidean_view(bits, "hamming")
    hamming = np.unpackbits(bits[:, None, :] ^ bits[None, :, :], axis=2).sum(axis=2)
    np.testing.assert_array_equal(((view[:, None, :] - view[None, :, :]) ** 2).sum(axis=2), hamming)
    x = rng.standard_normal((30, 12)).astype(np.float32)
    unit = order.euclidean_view(x, "cos")
    cos = (x @ x.T) / np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(x, axis=1))
    np.testing.assert_allclose(((unit[:, None, :] - unit[None, :, :]) ** 2).sum(axis=2), 2 - 2 * cos, atol=1e-5)


def test_lid_order_is_descending_with_ties_by_row_and_other_orders_permute() -> None:
    # Two groups of different dimension: the higher-dimensional rows come first.
    x = np.concatenate([subspace_points(500, 2, 16, seed=1), subspace_points(500, 10, 16, seed=2)])
    rows, stats = order.insertion_order("lid", x, "l2sq")
    values = order.lid(x, "l2sq", order.euclidean_view(x[order.reference_sample(len(x), 16)], "l2sq"),
                       _reference_of(len(x), 16))
    key = np.round(values, 3)
    assert sorted(rows.tolist()) == list(range(len(x)))
    assert all(key[a] > key[b] or (key[a] == key[b] and a < b) for a, b in zip(rows[:-1], rows[1:], strict=True))
    assert np.mean(rows[:500] >= 500) > 0.9  # the 10-d group first
    shuffled, _ = order.insertion_order("random", x, "l2sq")
    again, _ = order.insertion_order("random", x, "l2sq")
    assert sorted(shuffled.tolist()) == list(range(len(x))) and (shuffled == again).all()
    assert not (shuffled == np.arange(len(x))).all()
    assert (order.insertion_order("input", x, "l2sq")[0] == np.arange(len(x))).all()


def _reference_of(rows: int, dim: int) -> np.ndarray:
    ref = order.reference_sample(rows, dim)
    out = np.full(rows, -1)
    out[ref] = np.arange(len(ref))
    return out


def test_reference_sample_is_bounded_for_large_sets() -> None:
    assert order.reference_rows(500, 64) == 500
    assert order.reference_rows(30_000, 384) == order.MAX_REFERENCE_ROWS
    assert order.reference_rows(10_000_000, 768) == order.MIN_REFERENCE_ROWS


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("order")
    np.save(tmp / "x.npy", make_vectors(2500, 24, seed=4))
    ok("import", tmp / "x.npy", "-o", tmp / "x.parquet", "--metric", "l2")
    return tmp / "x.parquet"


def manifest(index: Path) -> dict:
    return json.loads(run_vecx("info", index, "--json").stdout)["vecx"]


def test_the_graph_is_built_in_the_order_computed(table: Path, tmp_path: Path) -> None:
    # A single-threaded build is a function of the order rows are added in: usearch adding the rows in
    # the order insertion_order gives, in vecx's batches, writes the same graph bytes.
    from usearch.index import Index

    from vecx.indexes.graph import add_batch_rows

    ok("index", table, "-o", tmp_path / "lid.vecx", "--order", "lid", "--deterministic")
    x = make_vectors(2500, 24, seed=4)
    rows, _ = order.insertion_order("lid", x, "l2sq")
    graph = Index(ndim=24, metric="l2sq", dtype="f32", connectivity=16, expansion_add=128, expansion_search=64)
    step = add_batch_rows(24 * 4)
    for lo in range(0, len(rows), step):
        part = rows[lo: lo + step]
        graph.add(part.astype(np.uint64), x[part], threads=1)
    graph.save(str(tmp_path / "expected.usearch"))
    built = (tmp_path / "lid.vecx" / "graph.usearch").read_bytes()
    assert built == (tmp_path / "expected.usearch").read_bytes()
    ok("index", table, "-o", tmp_path / "input.vecx", "--order", "input", "--deterministic")
    assert (tmp_path / "input.vecx" / "graph.usearch").read_bytes() != built


def test_orders_are_recorded_reproducible_and_search_alike(table: Path, tmp_path: Path) -> None:
    q = make_vectors(50, 24, seed=9)
    np.save(tmp_path / "q.npy", q)
    found = {}
    for name in ("input", "random", "lid"):
        for copy in ("a", "b"):
            ok("index", table, "-o", tmp_path / f"{name}{copy}.vecx", "--order", name, "--deterministic")
        a, b = (tmp_path / f"{name}{c}.vecx" / "graph.usearch" for c in "ab")
        assert a.read_bytes() == b.read_bytes(), name
        g = manifest(tmp_path / f"{name}a.vecx")["graph"]
        assert g["order"] == name and g["lid"]["median"] > 0
        assert g["lid"]["rows"] == (2500 if name == "lid" else order.SUMMARY_ROWS)
        out = json.loads(ok("query", tmp_path / f"{name}a.vecx", "--vector", tmp_path / "q.npy", "-k", "5", "--json"))
        found[name] = [[r["id"] for r in item["results"]] for item in out]
    # The same rows, keyed as in the table, whatever the order they entered the graph in.
    exact = np.argsort(((q[:, None, :] - make_vectors(2500, 24, seed=4)[None]) ** 2).sum(-1), axis=1)[:, :5]
    for name, ids in found.items():
        assert np.mean([len(set(a) & set(b.tolist())) / 5 for a, b in zip(ids, exact, strict=True)]) > 0.9, name
    text = ok("info", tmp_path / "lida.vecx")
    assert "insertion order lid" in text and "LID median" in text


def test_an_append_keeps_the_index_order(tmp_path: Path) -> None:
    x = make_vectors(1500, 16, seed=2)
    np.save(tmp_path / "a.npy", x[:1000])
    np.save(tmp_path / "b.npy", x[1000:])
    for name, ids in (("a", range(1000)), ("b", range(1000, 1500))):
        (tmp_path / f"{name}.ids").write_text("".join(f"r{i}\n" for i in ids))
        ok("import", tmp_path / f"{name}.npy", "-o", tmp_path / f"{name}.parquet", "--ids", tmp_path / f"{name}.ids")
    ok("index", tmp_path / "a.parquet", "-o", tmp_path / "i.vecx", "--order", "lid")
    ok("index", tmp_path / "b.parquet", "-o", tmp_path / "i.vecx", "--append")
    assert manifest(tmp_path / "i.vecx")["graph"]["order"] == "lid"


def test_auto_orders_multithreaded_float_and_int8_graphs_by_lid(table: Path, tmp_path: Path) -> None:
    ok("encode", table, "--spec", "int8:mode=global", "-o", tmp_path / "i8.parquet")
    ok("encode", table, "--spec", "binarize", "-o", tmp_path / "b1.parquet")
    for name, expected in (("i8", "lid"), ("b1", "input")):
        ok("index", tmp_path / f"{name}.parquet", "-o", tmp_path / f"{name}.vecx")
        assert manifest(tmp_path / f"{name}.vecx")["graph"]["order"] == expected, name
    ok("index", table, "-o", tmp_path / "f32.vecx")
    assert manifest(tmp_path / "f32.vecx")["graph"]["order"] == "lid"
    ok("index", table, "-o", tmp_path / "one.vecx", "--deterministic")  # single-threaded: no order won
    assert manifest(tmp_path / "one.vecx")["graph"]["order"] == "input"


def test_order_errors(table: Path, tmp_path: Path) -> None:
    bad = run_vecx("index", table, "-o", tmp_path / "x.vecx", "--order", "sideways")
    assert bad.code == 2 and "--order sideways" in bad.stderr and "lid" in bad.stderr
    assert not (tmp_path / "x.vecx").exists()
    ok("encode", table, "--spec", "pq:4x8", "-o", tmp_path / "pq.parquet")
    scan = run_vecx("index", tmp_path / "pq.parquet", "-o", tmp_path / "pq.vecx", "--order", "lid")
    assert scan.code == 2 and "not inserted into a graph" in scan.stderr


def test_eval_reports_lid_and_recall_by_query_lid(table: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "q.npy", make_vectors(100, 24, seed=11))
    ok("index", table, "-o", tmp_path / "i.vecx", "--connectivity", "4", "--expansion-search", "12",
       "--rescore-vectors", table)
    report = json.loads(ok("eval", tmp_path / "i.vecx", "--queries", tmp_path / "q.npy", "--json"))
    assert report["lid"]["data"]["median"] > 0 and report["lid"]["queries"]["rows"] == 100
    graph = next(s for s in report["stages"] if s["stage"] == "graph")
    low, high = graph["by_lid"]["low"], graph["by_lid"]["high"]
    # The two halves' mean is the whole batch's recall@10 (50 queries each).
    assert (low + high) / 2 == pytest.approx(graph["recall@10"], abs=1e-3)
    text = ok("eval", tmp_path / "i.vecx", "--queries", tmp_path / "q.npy")
    assert "queries LID median" in text and "at or below / above the median LID: graph" in text
