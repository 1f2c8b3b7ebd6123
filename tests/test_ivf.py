"""Coarse lists (IVF) for PQ codes: residual encoding, list-probing scans, and the spellings that name them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_vectors, ok, run_vecx

from vecx.chain import Chain
from vecx.errors import SpecError
from vecx.space import VectorSpec


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_ivf_pq_scores_are_the_decoded_rows_scores(metric: str) -> None:
    """Every scoring path (distance tables for few queries, BLAS for many, per-candidate) gives the
    metric between the query and the decoded row: the list's centroid plus the residual's codes."""
    x = make_vectors(3000, 24, seed=3)
    chain = Chain.from_spec("pq:6x8:ivf=16", VectorSpec(24, "float32", metric, False))
    chain.fit(lambda stage: x)
    stage = chain.stages[-1]
    codes = np.asarray(chain.encode(x))
    assert codes.shape == (3000, 2 + 6)
    lists = stage.list_of(codes)
    assert sorted(set(lists.tolist())) == list(range(16))  # every list used, numbered in the first 2 bytes
    decoded = stage.decode(codes)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    assert np.mean((decoded - unit) ** 2) < 0.5 * np.mean((unit - unit.mean(0)) ** 2)
    q_raw = make_vectors(40, 24, seed=4)
    q = chain.encode_query(q_raw)
    qd = q_raw / np.linalg.norm(q_raw, axis=1, keepdims=True) if metric == "cosine" else q_raw
    want = (((qd[:, None, :] - decoded[None, :, :]) ** 2).sum(-1) if metric == "l2" else qd @ decoded.T)
    for n in (3, 40):  # tables, then decoded blocks times the queries
        got = stage.score(stage.prepare_queries(q[:n]), codes)
        np.testing.assert_allclose(got, want[:n], rtol=1e-4, atol=1e-3)
    cand = np.stack([np.arange(i, 3000, 97)[:30] for i in range(40)])
    got = stage.score_candidates(stage.prepare_queries(q), codes[cand])
    np.testing.assert_allclose(got, np.take_along_axis(want, cand, axis=1), rtol=1e-4, atol=1e-3)
    # The coarse scores rank the lists as the centroids do.
    coarse = stage.coarse_scores(stage.prepare_queries(q))
    centroids = stage.coarse_
    ref = ((qd[:, None, :] - centroids[None]) ** 2).sum(-1) if metric == "l2" else qd @ centroids.T
    np.testing.assert_allclose(coarse, ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("levels", [1, 2])
def test_rabitq_with_lists_scores_alike_on_every_path_and_errs_less(metric: str, levels: int) -> None:
    """RaBitQ relative to each vector's list centroid: the per-byte tables, the unpacked-bit product, the
    per-candidate and the list-by-list paths give the same estimates, which are closer to the exact
    scores than those relative to one global mean."""
    x = make_vectors(3000, 40, seed=12)
    q = make_vectors(50, 40, seed=13)
    errors = {}
    for spec in (f"binarize:mode=rabitq:levels={levels}", f"binarize:mode=rabitq:levels={levels}:ivf=16"):
        chain = Chain.from_spec(spec, VectorSpec(40, "float32", metric, False))
        chain.fit(lambda stage: x)
        stage, codes = chain.stages[-1], np.asarray(chain.encode(x))
        qq = chain.encode_query(q)
        prepared = stage.prepare_queries(qq)
        many = stage.score(prepared, codes)
        np.testing.assert_allclose(stage.score(stage.prepare_queries(qq[:5]), codes), many[:5], atol=1e-3)
        np.testing.assert_allclose(stage.score_rows(prepared, np.arange(50), stage.scoring_rows(codes)), many,
                                   atol=1e-3)
        cand = np.tile(np.arange(100), (50, 1))
        np.testing.assert_allclose(stage.score_candidates(prepared, codes[cand]), many[:, :100], atol=1e-3)
        xu, qu = (x, q) if metric == "l2" else (x / np.linalg.norm(x, axis=1, keepdims=True),
                                                 q / np.linalg.norm(q, axis=1, keepdims=True))
        exact = ((qu[:, None] - xu[None]) ** 2).sum(-1) if metric == "l2" else qu @ xu.T
        errors[spec] = float(np.abs(many - exact).mean())
    plain, lists = errors.values()
    assert lists < 0.8 * plain, errors


def test_ivf_lists_lower_the_error_of_the_same_codes() -> None:
    x = make_vectors(4000, 32, seed=5)
    errors = {}
    for spec in ("pq:8x4", "pq:8x4:ivf=32"):
        chain = Chain.from_spec(spec, VectorSpec(32, "float32", "l2", False))
        chain.fit(lambda stage: x)
        errors[spec] = float(np.mean((chain.decode(chain.encode(x)) - x) ** 2))
    assert errors["pq:8x4:ivf=32"] < 0.9 * errors["pq:8x4"], errors


def test_spellings_of_coarse_lists() -> None:
    space = VectorSpec(64, "float32", "cosine", False)
    want = Chain.from_spec("pq:16x8:ivf=128", space).spec
    for text in ("IVF128,PQ16x8", "IVF128,PQ16x8np", "ivf:128,pq:16x8", "ivf:lists=128,pq:16x8"):
        assert Chain.from_spec(text, space).spec == want, text
    assert Chain.from_spec("OPQ16,IVF128,PQ16", space).spec == Chain.from_spec("pq:16x8:opq=true:ivf=128",
                                                                               space).spec
    assert "ivf" not in Chain.from_spec("pq:16x8", space).spec  # files from before the parameter keep their spec
    for bad, message in (("ivf:64", "right before a pq stage"), ("ivf:64,int8", "right before a pq stage"),
                         ("IVF64,SQ8", "right before a PQ stage"), ("ivf:64,ivf:32,pq:8x8", "two ivf stages"),
                         ("pq:8x8:ivf=70000", "at most"), ("binarize:mode=sign:ivf=4", "needs mode=rabitq")):
        with pytest.raises(SpecError, match=message):
            Chain.from_spec(bad, space)


def _ids(out: str) -> list[list[int]]:
    return [[r["id"] for r in json.loads(line)["results"]] for line in out.splitlines()]


@pytest.mark.parametrize("spec", ["IVF16,PQ8x8", "binarize:mode=rabitq:ivf=16"])
def test_an_ivf_index_probes_lists_and_all_lists_equal_the_exhaustive_scan(tmp_path: Path, spec: str) -> None:
    x = make_vectors(3000, 32, seed=6)
    np.save(tmp_path / "x.npy", x[:2500])
    np.save(tmp_path / "q.npy", make_vectors(30, 32, seed=7))
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    ok("encode", tmp_path / "x.parquet", "--spec", spec, "-o", tmp_path / "c.parquet",
       "--save-state", tmp_path / "c.state")
    ok("index", tmp_path / "c.parquet", "-o", tmp_path / "c.vecx", "--nprobe", "4", "--rescore-vectors",
       tmp_path / "x.parquet")
    info = json.loads(ok("info", tmp_path / "c.vecx", "--json"))["vecx"]
    assert info["search"]["scan"] == "ivf" and info["search"]["nprobe"] == 4
    assert "default scan ivf, 4 lists per query" in ok("info", tmp_path / "c.vecx")

    def query(*args: str) -> list[list[int]]:
        r = run_vecx("query", tmp_path / "c.vecx", "--vector", tmp_path / "q.npy", "-k", "10", "--oversample", "1",
                     *args)
        assert r.code == 0, r.stderr
        return _ids(r.out)

    exhaustive = query("--scan", "exhaustive")
    assert query("--nprobe", "16") == exhaustive  # every list probed: every code scored
    overlap = {n: np.mean([len(set(a) & set(b)) for a, b in zip(query("--nprobe", str(n)), exhaustive, strict=True)])
               for n in (1, 4, 16)}
    assert overlap[1] <= overlap[4] <= overlap[16] == 10.0 and overlap[1] < 10.0, overlap
    assert query() == query("--nprobe", "4")  # the stored default
    import vecx

    with vecx.open_index(tmp_path / "c.vecx") as index:  # the Python API probes as the command line does
        q30 = np.load(tmp_path / "q.npy")
        assert index.search(q30, k=10, oversample=1, nprobe=16).ids.tolist() == exhaustive
        assert index.search(q30, k=10, oversample=1).ids.tolist() == query("--nprobe", "4")
    # A batch is scored list by list (decoded rows times the queries): the same top-10 as the codes' tables.
    np.save(tmp_path / "q40.npy", make_vectors(40, 32, seed=11))
    by_list = run_vecx("query", tmp_path / "c.vecx", "--vector", tmp_path / "q40.npy", "-k", "10", "--oversample",
                       "1", "--nprobe", "16")
    tables = run_vecx("query", tmp_path / "c.vecx", "--vector", tmp_path / "q40.npy", "-k", "10", "--oversample",
                      "1", "--scan", "exhaustive")
    same = [len(set(a) & set(b)) for a, b in zip(_ids(by_list.out), _ids(tables.out), strict=True)]
    assert np.mean(same) >= 9.9, same  # ties between near-equal scores may order apart
    ev = json.loads(ok("eval", tmp_path / "c.vecx", "--queries", tmp_path / "q.npy", "--json", "--nprobe", "16"))
    assert ev["scan"] == "ivf" and ev["nprobe"] == 16 and ev["lists"] == 16
    assert ev["stages"][0]["recall@10"] == ev["stages"][1]["recall@10"]
    # --target-recall tunes the lists probed (not a graph's expansion) and --save stores them.
    tuned = json.loads(ok("eval", tmp_path / "c.vecx", "--queries", tmp_path / "q.npy", "--json",
                          "--target-recall", "0.99", "--oversample", "1", "--save"))["tuning"]
    assert tuned["reached"] and tuned["saved"] and "expansion" not in tuned and 1 <= tuned["nprobe"] <= 16
    assert json.loads(ok("info", tmp_path / "c.vecx", "--json"))["vecx"]["search"]["nprobe"] == tuned["nprobe"]
    # An appended segment's rows are in the lists too.
    import pyarrow as pa
    import pyarrow.parquet as pq

    more = x[2500:]
    pq.write_table(pa.table({"id": np.arange(2500, 3000), "vector": pa.FixedSizeListArray.from_arrays(
        more.ravel(), 32)}), tmp_path / "more.raw.parquet")
    ok("import", tmp_path / "more.raw.parquet", "-o", tmp_path / "more.parquet")
    ok("encode", tmp_path / "more.parquet", "--state", tmp_path / "c.state", "-o", tmp_path / "more.c.parquet")
    r = run_vecx("index", tmp_path / "more.c.parquet", "-o", tmp_path / "c.vecx", "--append", "--no-auto-merge",
                 "--rescore-vectors", tmp_path / "more.parquet")
    assert r.code == 0, r.stderr
    after = query("--nprobe", "16")
    assert after == query("--scan", "exhaustive") and any(i >= 2500 for row in after for i in row)


def test_ivf_options_on_indexes_without_lists_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", make_vectors(600, 16, seed=8))
    np.save(tmp_path / "q.npy", make_vectors(2, 16, seed=9))
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    ok("encode", tmp_path / "x.parquet", "--spec", "pq:4x4", "-o", tmp_path / "p.parquet")
    ok("index", tmp_path / "p.parquet", "-o", tmp_path / "p.vecx")
    for args, message in ((["--nprobe", "4"], "not in coarse lists"), (["--scan", "ivf"], "not in coarse lists")):
        r = run_vecx("query", tmp_path / "p.vecx", "--vector", tmp_path / "q.npy", *args)
        assert r.code == 2 and message in r.stderr, r.stderr
    r = run_vecx("index", tmp_path / "p.parquet", "-o", tmp_path / "p2.vecx", "--scan", "ivf")
    assert r.code == 2 and "ivf=" in r.stderr and not (tmp_path / "p2.vecx").exists()
    # An exhaustive scan has no search effort to tune: --target-recall tunes the oversampling alone.
    ok("index", tmp_path / "p.parquet", "-o", tmp_path / "r.vecx", "--rescore-vectors", tmp_path / "x.parquet")
    tuned = json.loads(ok("eval", tmp_path / "r.vecx", "--queries", tmp_path / "q.npy", "--target-recall", "0.5",
                          "--json"))["tuning"]
    assert tuned["reached"] and "expansion" not in tuned and "nprobe" not in tuned
    text = ok("eval", tmp_path / "r.vecx", "--queries", tmp_path / "q.npy", "--target-recall", "0.5")
    assert f"oversample {tuned['oversample']} (recall@10" in text


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_pq_probes_the_lists_whose_centroids_are_nearest_by_l2(metric: str) -> None:
    """Rows go to their nearest centroid by L2, so the lists probed first are those of the centroids
    nearest the query by L2, for inner-product (cosine) scores too, not those of the largest <q, c>."""
    x = make_vectors(3000, 24, seed=31)
    x[:1500] *= 3.0  # centroids of very different lengths: the two orders differ
    chain = Chain.from_spec("pq:6x8:ivf=32", VectorSpec(24, "float32", metric, False))
    chain.fit(lambda stage: x)
    stage = chain.stages[-1]
    q = chain.encode_query(make_vectors(50, 24, seed=32))
    order = np.argsort(stage.probe_order(stage.prepare_queries(q)), axis=1, kind="stable")
    centroids = stage._rotated_coarse()
    l2 = ((q[:, None, :] - centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(order[:, :4], np.argsort(l2, axis=1, kind="stable")[:, :4])
    if metric == "cosine":  # and that is not the order of the inner products
        assert (order[:, :4] != np.argsort(-(q @ centroids.T), axis=1, kind="stable")[:, :4]).any()
