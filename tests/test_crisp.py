"""The crisp stage: per-row k-means of multi-vector sets, checked against independent computations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_vecx, shared
from test_muvera import chamfer, clustered_sets, ok, write_sets

from vecx.chain import Chain
from vecx.errors import SpecError
from vecx.formats.multi import MultiVectors
from vecx.space import VectorSpec

SPACE = VectorSpec(24, "float32", "cosine", True, multi=True)


def crisp(spec: str, sets: list[np.ndarray]) -> list[np.ndarray]:
    out = Chain.from_spec(spec, SPACE).encode(MultiVectors.from_list(sets, np.float32))
    return [out.row(i) for i in range(len(out))]


@pytest.fixture(scope="module")
def docs() -> list[np.ndarray]:
    return clustered_sets(120, 24, seed=4, lo=3, hi=60)


def test_converged_centroids_are_the_means_of_their_nearest_vectors(docs: list[np.ndarray]) -> None:
    """Lloyd's fixed point, checked from scratch: every kept centroid is the mean of the vectors nearer
    to it than to any other kept centroid, and every kept centroid has such vectors."""
    for doc, centroids in zip(docs, crisp("crisp:6:iters=200:normalize=false", docs), strict=True):
        if len(doc) <= 6:
            continue
        distance = ((doc[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        nearest = distance.argmin(axis=1)
        assert sorted(set(nearest.tolist())) == list(range(len(centroids)))
        for j, centroid in enumerate(centroids):
            assert np.allclose(doc[nearest == j].mean(axis=0), centroid, atol=1e-5)


def test_counts_short_rows_and_normalization(docs: list[np.ndarray]) -> None:
    fixed = crisp("crisp:8", docs)
    by_ratio = crisp("crisp:ratio=0.3", docs)
    capped = crisp("crisp:5:ratio=0.3", docs)
    for doc, a, b, c in zip(docs, fixed, by_ratio, capped, strict=True):
        if len(doc) <= 8:  # nothing to cluster: the row's own vectors, exactly
            assert np.array_equal(a, doc)
        else:  # clustered vectors are random draws around a few centres: no repeats, no empty cluster
            assert len(a) == 8 and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
        assert len(b) == min(len(doc), math.ceil(0.3 * len(doc)))
        assert len(c) == min(len(doc), 5, math.ceil(0.3 * len(doc)))


def test_repeated_vectors_keep_no_empty_centroid() -> None:
    """A row of 3 distinct vectors repeated 10 times asked for 8 centroids keeps exactly those 3."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((3, 24)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    row = np.repeat(base, 10, axis=0)
    (out,) = crisp("crisp:8", [row])
    assert len(out) == 3 and sorted(map(tuple, out.round(5))) == sorted(map(tuple, base.round(5)))


def test_a_rows_centroids_do_not_depend_on_its_batch(docs: list[np.ndarray]) -> None:
    """The same row gives the same bytes alone, in another order and beside other rows."""
    together = crisp("crisp:ratio=0.25", docs)
    order = np.random.default_rng(8).permutation(len(docs))
    shuffled = crisp("crisp:ratio=0.25", [docs[i] for i in order])
    for position, i in enumerate(order):
        assert shuffled[position].tobytes() == together[i].tobytes()
    for i in (0, 17, 99):
        assert crisp("crisp:ratio=0.25", [docs[i]])[0].tobytes() == together[i].tobytes()
    other_seed = crisp("crisp:ratio=0.25:seed=5", docs)
    assert any(a.tobytes() != b.tobytes() for a, b in zip(together, other_seed, strict=True))


def test_spec_spelling_and_refusals() -> None:
    assert Chain.from_spec("crisp:ratio=0.5", SPACE).spec == "crisp:iters=10:normalize=true:ratio=0.5:seed=0"
    assert Chain.from_spec("crisp", SPACE).spec == "crisp:8:iters=10:normalize=true:seed=0"
    for bad, message in (("crisp:0", "c > 0"), ("crisp:ratio=2", "at most"), ("crisp:c=-1", "at least")):
        with pytest.raises(SpecError, match=message):
            Chain.from_spec(bad, SPACE)
    with pytest.raises(SpecError, match="multi-vector"):
        Chain.from_spec("crisp:4", VectorSpec(24, "float32", "cosine", True))
    assert Chain.from_spec("crisp:4,muvera:2x2x4", SPACE).output.dim == 2 * 4 * 4


def test_crisp_table_is_a_rerank_store_and_chains_into_muvera(tmp_path: Path, docs: list[np.ndarray]) -> None:
    """vecx crisp writes the centroids; muvera on top equals the one-spec chain; an index reranking by
    the centroid table returns the exact MaxSim top-k over the centroids (computed here by loops)."""
    queries = clustered_sets(6, 24, seed=5, lo=3, hi=8)
    raw = write_sets(tmp_path / "raw.parquet", docs, ids=[f"d{i}" for i in range(len(docs))])
    ok(run_vecx("import", raw, "-o", tmp_path / "docs.mv.parquet", "--multi"))
    write_sets(tmp_path / "q.raw.parquet", queries)
    ok(run_vecx("import", tmp_path / "q.raw.parquet", "-o", tmp_path / "q.mv.parquet", "--multi"))
    ok(run_vecx("crisp", tmp_path / "docs.mv.parquet", "-o", tmp_path / "c.parquet", "--c", "6"))
    stored = pq.read_table(tmp_path / "c.parquet")
    centroids = [np.asarray(v, np.float32) for v in stored["vector"].to_pylist()]
    assert all(np.array_equal(a, b) for a, b in zip(centroids, crisp("crisp:6", docs), strict=True))
    assert stored["title"].to_pylist() == [f"t{i}" for i in range(len(docs))]  # payload carried along
    info = json.loads(ok(run_vecx("info", tmp_path / "c.parquet", "--json")).out)["vecx"]
    assert info["vector"]["tokens"] == sum(len(c) for c in centroids)
    assert info["source"]["tokens"] == sum(len(d) for d in docs)

    ok(run_vecx("muvera", tmp_path / "c.parquet", "-o", tmp_path / "fde.parquet", "--reps", "4", "--ksim", "2",
                "--proj", "8"))
    ok(run_vecx("encode", tmp_path / "docs.mv.parquet", "-o", tmp_path / "fde1.parquet",
                "--spec", "crisp:6,muvera:4x2x8"))
    assert pq.read_table(tmp_path / "fde.parquet")["vector"].equals(pq.read_table(tmp_path / "fde1.parquet")["vector"])

    ok(run_vecx("index", tmp_path / "fde.parquet", "-o", tmp_path / "docs.vecx",
                "--rescore-vectors", tmp_path / "c.parquet"))
    r = ok(run_vecx("query", tmp_path / "docs.vecx", "--multi-vector", tmp_path / "q.mv.parquet", "-k", "5",
                    "--oversample", "30", "--format", "jsonl"))
    for q, line in zip(queries, r.out.splitlines(), strict=True):
        exact = np.array([chamfer(q, c) for c in centroids])
        order = np.lexsort((np.arange(len(exact)), -exact))[:5]
        found = json.loads(line)["results"]
        assert [h["id"] for h in found] == [f"d{j}" for j in order]
        assert np.allclose([h["score"] for h in found], exact[order], atol=1e-4)


def test_single_vector_table_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32))
    r = run_vecx("crisp", tmp_path / "x.npy", "-o", tmp_path / "y.parquet")
    assert r.code == 2 and "multi-vector" in r.stderr and not (tmp_path / "y.parquet").exists()


def test_shared_tokens_more_centroids_come_closer_to_full_maxsim(tmp_path: Path) -> None:
    """On the MiniLM token vectors: MaxSim over crisp:64 centroids finds more of the exact top-10 than
    crisp:16, and beats keeping the first 64 tokens (the figures in BENCHMARKS.md)."""
    from vecx.indexes import maxsim

    data = shared("debian-minilm-30k")
    column = pq.read_table(data / "mv_docs.parquet", columns=["tokens"])["tokens"].combine_chunks()
    docs = MultiVectors(column.flatten().flatten().to_numpy().reshape(-1, 384), column.offsets.to_numpy())
    qcol = pq.read_table(data / "mv_queries.parquet", columns=["tokens"])["tokens"].combine_chunks()
    q = MultiVectors(qcol.flatten().flatten().to_numpy().reshape(-1, 384), qcol.offsets.to_numpy()).astype(np.float32)
    truth = np.load(data / "mv_gt.npy")[:, :10]
    space = VectorSpec(384, "float16", "cosine", True, multi=True)

    def recall(sets: MultiVectors) -> float:
        top = np.argsort(-maxsim.scores(q, sets), axis=1, kind="stable")[:, :10]
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top.tolist(), truth.tolist(), strict=True)]))

    r16, r64 = (recall(Chain.from_spec(f"crisp:{c}", space).encode(docs)) for c in (16, 64))
    first64 = MultiVectors.from_list([docs.row(i)[:64] for i in range(len(docs))], np.float16)
    assert r16 < r64 and r64 > recall(first64) + 0.05, (r16, r64)


def test_crisp_over_a_dataset_of_parts_counts_every_parts_vectors(tmp_path: Path, docs: list[np.ndarray]) -> None:
    """Parts keep their own vector counts; the dataset adds them up, and an index reranks over it."""
    (tmp_path / "raw").mkdir()
    for i, lo in enumerate((0, 50, 90)):
        chunk = docs[lo: (50, 90, 120)[i]]
        write_sets(tmp_path / "raw" / f"p{i}.parquet", chunk, ids=[f"d{j}" for j in range(lo, lo + len(chunk))])
    ok(run_vecx("import", tmp_path / "raw", "-o", str(tmp_path / "mv") + "/", "--multi"))
    ok(run_vecx("crisp", str(tmp_path / "mv") + "/", "-o", str(tmp_path / "c") + "/", "--c", "5"))
    info = json.loads(ok(run_vecx("info", str(tmp_path / "c") + "/", "--json")).out)["vecx"]
    assert info["vector"]["tokens"] == sum(len(c) for c in crisp("crisp:5", docs))
    ok(run_vecx("encode", str(tmp_path / "c") + "/", "-o", tmp_path / "fde.parquet", "--spec", "muvera:4x2x8"))
    ok(run_vecx("index", tmp_path / "fde.parquet", "-o", tmp_path / "x.vecx", "--rescore-vectors",
                str(tmp_path / "c") + "/"))
    assert json.loads(ok(run_vecx("info", tmp_path / "x.vecx", "--json")).out)["vecx"]["rescore"]["tokens"] == \
        info["vector"]["tokens"]
