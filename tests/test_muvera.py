"""Multi-vector data: import --multi, the muvera FDE codec, MaxSim truth, rescoring, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_vecx, shared


# ---------------------------------------------------------------------------------------------
# Helpers, computed independently of vecx
# ---------------------------------------------------------------------------------------------
def clustered_sets(n: int, d: int, seed: int, lo: int, hi: int, centers: np.ndarray | None = None) -> list[np.ndarray]:
    """Sets of unit vectors drawn around shared cluster centres (topics), ``lo..hi`` vectors each."""
    rng = np.random.default_rng(seed)
    if centers is None:
        centers = np.random.default_rng(99).standard_normal((12, d))
    sets = []
    for _ in range(n):
        topics = rng.choice(len(centers), size=3, replace=False)
        count = int(rng.integers(lo, hi + 1))
        x = centers[rng.choice(topics, size=count)] + 0.6 * rng.standard_normal((count, d))
        sets.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return sets


def chamfer(q: np.ndarray, doc: np.ndarray) -> float:
    """Sum over query vectors of the best inner product with any document vector (plain loops)."""
    return float(sum(max(float(np.dot(a, b)) for b in doc) for a in q))


def write_sets(path: Path, sets: list[np.ndarray], ids: list | None = None, dtype: str = "float32") -> Path:
    """A raw Parquet file with a list<fixed_size_list<float, d>> column named 'tokens'."""
    d = sets[0].shape[1] if sets and len(sets[0]) else 4
    flat = np.concatenate([s.reshape(-1, d) for s in sets]).astype(dtype) if sets else np.zeros((0, d), dtype)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int32)
    tokens = pa.ListArray.from_arrays(pa.array(offsets),
                                      pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), d))
    columns = {"tokens": tokens, "title": [f"t{i}" for i in range(len(sets))]}
    if ids is not None:
        columns = {"id": ids, **columns}
    pq.write_table(pa.table(columns), path)
    return path


def ok(result):
    assert result.code == 0, result.stderr
    return result


def fde_of(codec, sets: list[np.ndarray], query: bool) -> np.ndarray:
    from vecx.formats.multi import MultiVectors

    mv = MultiVectors.from_list(sets, np.float32)
    return codec.encode_query(mv) if query else codec.encode(mv)


def make_codec(spec: str, d: int):
    from vecx.chain import Chain
    from vecx.space import VectorSpec

    return Chain.from_spec(spec, VectorSpec(d, "float32", "cosine", True, multi=True)).stages[0]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """300 documents (8-40 vectors of 24 dims) and 12 queries (3-8 vectors), imported."""
    tmp = tmp_path_factory.mktemp("mv")
    docs = clustered_sets(300, 24, seed=1, lo=8, hi=40)
    queries = clustered_sets(12, 24, seed=2, lo=3, hi=8)
    raw = write_sets(tmp / "raw.parquet", docs, ids=[f"d{i}" for i in range(300)])
    ok(run_vecx("import", raw, "-o", tmp / "docs.mv.parquet", "--multi"))
    write_sets(tmp / "q.raw.parquet", queries)
    ok(run_vecx("import", tmp / "q.raw.parquet", "-o", tmp / "q.mv.parquet", "--multi"))
    return {"dir": tmp, "docs": docs, "queries": queries}


# ---------------------------------------------------------------------------------------------
# The encoding
# ---------------------------------------------------------------------------------------------
def test_fde_inner_product_tracks_chamfer() -> None:
    docs = clustered_sets(150, 32, seed=3, lo=10, hi=50)
    queries = clustered_sets(20, 32, seed=4, lo=4, hi=12)
    codec = make_codec("muvera:20x4x16:seed=7", 32)
    approx = fde_of(codec, queries, True) @ fde_of(codec, docs, False).T
    exact = np.array([[chamfer(q, d) for d in docs] for q in queries])
    corr = np.corrcoef(approx.ravel(), exact.ravel())[0, 1]
    assert corr > 0.85, corr
    # Per query too: the FDE ranks documents in Chamfer order more often than not.
    per_query = [np.corrcoef(a, e)[0, 1] for a, e in zip(approx, exact, strict=True)]
    assert np.median(per_query) > 0.8, per_query


def test_query_sums_document_averages_and_fills_hand_case() -> None:
    """ksim=1, no projection, SimHash = sign of the first coordinate: bucket 1 <=> x0 > 0."""
    codec = make_codec("muvera:1x1x0:seed=0", 2)
    codec.load_state({"simhash": np.array([[[1.0], [0.0]]], dtype=np.float32)})
    doc = [np.array([[1.0, 0.0], [3.0, 2.0]], dtype=np.float32)]  # both in bucket 1
    query = [np.array([[1.0, 1.0], [2.0, 0.0], [-1.0, 4.0]], dtype=np.float32)]  # two in 1, one in 0
    # Document: bucket 1 = average (2, 1); bucket 0 empty -> filled with the nearest vector by
    # SimHash bits: both are 1 bit away, the first wins: (1, 0).
    assert fde_of(codec, doc, False).tolist() == [[1.0, 0.0, 2.0, 1.0]]
    # Query: sums, never filled.
    assert fde_of(codec, query, True).tolist() == [[-1.0, 4.0, 3.0, 1.0]]
    assert fde_of(codec, doc, True).tolist() == [[0.0, 0.0, 4.0, 2.0]]
    no_fill = make_codec("muvera:1x1x0:fill=false", 2)
    no_fill.load_state({"simhash": np.array([[[1.0], [0.0]]], dtype=np.float32)})
    assert fde_of(no_fill, doc, False).tolist() == [[0.0, 0.0, 2.0, 1.0]]


def test_fill_takes_the_nearest_bit_pattern_in_gray_order() -> None:
    """ksim=2 with SimHash = signs of (x0, x1); buckets are Gray-decoded: bits 00->0, 01->1, 11->2, 10->3."""
    from vecx.codecs.muvera import gray_bucket

    bits = np.array([[0, 0], [0, 1], [1, 1], [1, 0]], dtype=bool)
    assert gray_bucket(bits).tolist() == [0, 1, 2, 3]
    codec = make_codec("muvera:1x2x0", 2)
    codec.load_state({"simhash": np.eye(2, dtype=np.float32)[None]})
    doc = [np.array([[1.0, 1.0]], dtype=np.float32)]  # bits 11 -> bucket 2
    fde = fde_of(codec, doc, False).reshape(4, 2)
    # Every bucket is at Hamming distance <= 2 from bits 11; the only vector fills them all.
    assert fde.tolist() == [[1.0, 1.0]] * 4
    two = [np.array([[1.0, 1.0], [-1.0, -2.0]], dtype=np.float32)]  # bits 11 (bucket 2) and 00 (bucket 0)
    fde = fde_of(codec, two, False).reshape(4, 2)
    # bucket 1 = bits 01: 1 bit from both -> the first vector; bucket 3 = bits 10: likewise.
    assert fde.tolist() == [[-1.0, -2.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]


def test_projection_and_final_sketch_shapes_and_linearity() -> None:
    sets = clustered_sets(6, 16, seed=5, lo=2, hi=9)
    codec = make_codec("muvera:3x2x4:final=20:seed=2", 16)
    assert codec.output.dim == 20 and codec.output.metric == "ip"
    full = make_codec("muvera:3x2x4:seed=2", 16)
    q_full, q_final = fde_of(full, sets, True), fde_of(codec, sets, True)
    arrays = codec.state()
    expected = np.zeros((len(sets), 20), dtype=np.float64)
    for j in range(q_full.shape[1]):
        expected[:, arrays["final_index"][j]] += arrays["final_sign"][j] * q_full[:, j]
    assert np.allclose(q_final, expected, atol=1e-4)


def test_random_matrices_are_stored_and_regenerated_bit_exactly() -> None:
    from vecx.codecs.muvera import generator

    codec = make_codec("muvera:4x3x8:final=64:seed=11", 10)
    arrays = codec.state()
    assert arrays["simhash"].shape == (4, 10, 3) and arrays["ams_index"].shape == (4, 10)
    again = make_codec("muvera:4x3x8:final=64:seed=11", 10).state()
    for key in arrays:
        assert arrays[key].tobytes() == again[key].tobytes(), key
    expected = generator(11, "muvera-simhash", 2).standard_normal((10, 3), dtype=np.float32)
    assert arrays["simhash"][2].tobytes() == expected.tobytes()
    other = make_codec("muvera:4x3x8:final=64:seed=12", 10).state()
    assert arrays["simhash"].tobytes() != other["simhash"].tobytes()


def test_spec_spelling_round_trips() -> None:
    codec = make_codec("muvera:20x5x16", 8)
    assert codec.spec == "muvera:20x5x16:fill=true:final=0:seed=0"
    assert make_codec(codec.spec, 8).spec == codec.spec
    assert make_codec("muvera:reps=20:ksim=5:proj=16", 8).spec == codec.spec
    assert make_codec("muvera", 8).spec == codec.spec  # the defaults are the paper's setting
    assert codec.output.dim == 20 * 32 * 16


# ---------------------------------------------------------------------------------------------
# Files and commands
# ---------------------------------------------------------------------------------------------
def test_import_multi_keeps_sets_ids_and_payload(small: dict) -> None:
    from vecx.formats.readers import open_source

    source = open_source(str(small["dir"] / "docs.mv.parquet"))
    assert source.multi and source.meta["vector"]["multi"] is True
    t = pq.read_table(small["dir"] / "docs.mv.parquet")
    assert t.schema.field("vector").type == pa.list_(pa.field("item", pa.list_(pa.field("item", pa.float32()), 24)))
    assert t["id"].to_pylist()[:2] == ["d0", "d1"] and t["title"].to_pylist()[5] == "t5"
    got = t["vector"].to_pylist()
    for i in (0, 17, 299):
        assert np.array_equal(np.asarray(got[i], dtype=np.float32), small["docs"][i])


def test_jsonl_of_lists_imports_like_parquet(tmp_path: Path, small: dict) -> None:
    lines = [json.dumps({"id": f"d{i}", "tokens": s.tolist(), "title": f"t{i}"})
             for i, s in enumerate(small["docs"][:30])]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    ok(run_vecx("import", tmp_path / "t.jsonl", "-o", tmp_path / "j.parquet", "--multi"))
    got = pq.read_table(tmp_path / "j.parquet")["vector"].to_pylist()
    assert all(np.array_equal(np.asarray(got[i], np.float32), small["docs"][i]) for i in range(30))


def test_muvera_command_and_spec_give_the_same_bytes(small: dict) -> None:
    tmp = small["dir"]
    ok(run_vecx("muvera", tmp / "docs.mv.parquet", "-o", tmp / "a.parquet", "--reps", "6", "--ksim", "3",
                "--proj", "8", "--seed", "1"))
    ok(run_vecx("encode", tmp / "docs.mv.parquet", "-o", tmp / "b.parquet", "--spec", "muvera:6x3x8", "--seed", "1"))
    ok(run_vecx("muvera", tmp / "docs.mv.parquet", "-o", tmp / "c.parquet", "--reps", "6", "--ksim", "3",
                "--proj", "8", "--seed", "1"))
    assert (tmp / "a.parquet").read_bytes() == (tmp / "b.parquet").read_bytes() == (tmp / "c.parquet").read_bytes()
    # The stored codes are the codec's document encodings.
    codes = np.stack(pq.read_table(tmp / "a.parquet")["vector"].to_numpy(zero_copy_only=False))
    expected = fde_of(make_codec("muvera:6x3x8:seed=1", 24), small["docs"], False)
    assert np.array_equal(codes.astype(np.float32), expected)


def test_chaining_into_binarize_equals_stage_by_stage(small: dict) -> None:
    tmp = small["dir"]
    ok(run_vecx("encode", tmp / "docs.mv.parquet", "-o", tmp / "fde.parquet", "--spec", "muvera:4x2x8:seed=3"))
    ok(run_vecx("binarize", tmp / "fde.parquet", "-o", tmp / "two.parquet"))
    ok(run_vecx("encode", tmp / "docs.mv.parquet", "-o", tmp / "one.parquet", "--spec", "muvera:4x2x8:seed=3,binarize"))
    assert (tmp / "one.parquet").read_bytes() == (tmp / "two.parquet").read_bytes()
    info = json.loads(ok(run_vecx("info", tmp / "one.parquet", "--json")).out)["vecx"]
    assert info["vector"]["dtype"] == "bits" and info["vector"]["dim"] == 4 * 4 * 8
    ok(run_vecx("encode", tmp / "docs.mv.parquet", "-o", tmp / "pca.parquet", "--spec", "muvera:4x2x8:seed=3,pca:16"))


def test_truth_maxsim_matches_brute_force(small: dict) -> None:
    tmp = small["dir"]
    ok(run_vecx("truth", tmp / "docs.mv.parquet", "--queries", tmp / "q.mv.parquet", "-o", tmp / "gt.parquet",
                "--maxsim", "-k", "10"))
    t = pq.read_table(tmp / "gt.parquet")
    rows = np.stack(t["rows"].to_numpy(zero_copy_only=False))
    scores = np.stack(t["scores"].to_numpy(zero_copy_only=False))
    for i, q in enumerate(small["queries"]):
        exact = np.array([chamfer(q, d) for d in small["docs"]])
        order = np.lexsort((np.arange(len(exact)), -exact))[:10]
        assert np.allclose(scores[i], exact[order], atol=1e-4)
        assert set(rows[i].tolist()) == set(order.tolist())
    assert t["ids"].to_pylist()[0][0] == f"d{rows[0][0]}"


@pytest.mark.slow
def test_truth_maxsim_matches_the_shared_ground_truth(tmp_path: Path) -> None:
    data = shared("debian-minilm-30k")
    ok(run_vecx("truth", data / "mv_docs.parquet", data / "mv_queries.parquet", "-o", tmp_path / "gt.parquet",
                "--maxsim", "-k", "100"))
    rows = np.stack(pq.read_table(tmp_path / "gt.parquet")["rows"].to_numpy(zero_copy_only=False))
    truth = np.load(data / "mv_gt.npy")
    top10 = np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(rows, truth, strict=True)])
    assert top10 == 1.0 and (rows == truth).mean() > 0.999


def test_rescoring_returns_the_exact_maxsim_top_k(small: dict) -> None:
    tmp = small["dir"]
    ok(run_vecx("encode", tmp / "docs.mv.parquet", "-o", tmp / "fde2.parquet", "--spec", "muvera:4x2x8"))
    ok(run_vecx("index", tmp / "fde2.parquet", "-o", tmp / "docs.vecx", "--rescore-vectors", tmp / "docs.mv.parquet"))
    for stage in ("fde", "mean", "both"):
        # 300 candidates per query = every document: the rerank alone decides.
        r = ok(run_vecx("query", tmp / "docs.vecx", "--multi-vector", tmp / "q.mv.parquet", "-k", "5",
                        "--oversample", "60", "--first-stage", stage, "--format", "jsonl"))
        found = [json.loads(line) for line in r.out.splitlines()]
        for i, q in enumerate(small["queries"]):
            exact = np.array([chamfer(q, d) for d in small["docs"]])
            order = np.lexsort((np.arange(len(exact)), -exact))[:5]
            assert [x["id"] for x in found[i]["results"]] == [f"d{j}" for j in order], (stage, i)
            assert np.allclose([x["score"] for x in found[i]["results"]], exact[order], atol=1e-4)
    # A 2-D .npy is one query's token set.
    np.save(tmp / "q3.npy", small["queries"][3])
    r = ok(run_vecx("query", tmp / "docs.vecx", "--multi-vector", tmp / "q3.npy", "-k", "3", "--oversample", "100"))
    exact = np.array([chamfer(small["queries"][3], d) for d in small["docs"]])
    assert [x["id"] for x in json.loads(r.out)["results"]] == [f"d{j}" for j in np.argsort(-exact, kind="stable")[:3]]


def test_eval_reports_recall_before_and_after_maxsim(small: dict) -> None:
    tmp = small["dir"]
    if not (tmp / "docs.vecx").exists():
        ok(run_vecx("encode", tmp / "docs.mv.parquet", "-o", tmp / "fde2.parquet", "--spec", "muvera:4x2x8"))
        ok(run_vecx("index", tmp / "fde2.parquet", "-o", tmp / "docs.vecx", "--rescore-vectors",
                    tmp / "docs.mv.parquet"))
    r = ok(run_vecx("eval", tmp / "docs.vecx", "--queries", tmp / "q.mv.parquet", "--json", "--oversample", "30"))
    stages = {s["stage"]: s for s in json.loads(r.out)["stages"]}
    assert stages["graph + rescore x30"]["recall@10"] == 1.0  # 300 candidates cover every document
    assert stages["codes, exact"]["recall@10"] < 1.0


# ---------------------------------------------------------------------------------------------
# Bad input: one clear line, exit code, no output
# ---------------------------------------------------------------------------------------------
def test_row_with_no_vectors_is_refused(tmp_path: Path) -> None:
    sets = clustered_sets(5, 8, seed=6, lo=2, hi=4)
    sets[3] = np.zeros((0, 8), dtype=np.float32)
    write_sets(tmp_path / "e.parquet", sets)
    r = run_vecx("import", tmp_path / "e.parquet", "-o", tmp_path / "out.parquet", "--multi")
    assert r.code == 3 and "row 3" in r.stderr and "no vectors" in r.stderr, r.stderr
    assert not (tmp_path / "out.parquet").exists()


def test_mixed_token_dimensions_name_the_row(tmp_path: Path) -> None:
    tokens = pa.array([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 0.0]], [[1.0, 2.0], [1.0, 2.0, 3.0]]],
                      type=pa.list_(pa.list_(pa.float32())))
    pq.write_table(pa.table({"tokens": tokens}), tmp_path / "m.parquet")
    r = run_vecx("import", tmp_path / "m.parquet", "-o", tmp_path / "out.parquet", "--multi")
    assert r.code == 3 and "row 2" in r.stderr and "mixed token dimensions" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2 and not (tmp_path / "out.parquet").exists()


def test_ragged_jsonl_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_text('{"tokens": [[1, 2], [3, 4]]}\n{"tokens": [[1, 2], [3]]}\n')
    r = run_vecx("import", tmp_path / "r.jsonl", "-o", tmp_path / "out.parquet", "--multi")
    assert r.code == 3 and "line 2" in r.stderr and "ragged" in r.stderr, r.stderr
    (tmp_path / "e.jsonl").write_text('{"tokens": [[1, 2]]}\n{"tokens": []}\n')
    r = run_vecx("import", tmp_path / "e.jsonl", "-o", tmp_path / "out.parquet", "--multi")
    assert r.code == 3 and "line 2" in r.stderr and "no vectors" in r.stderr, r.stderr
    assert not (tmp_path / "out.parquet").exists()


def test_nan_in_a_token_names_the_row(tmp_path: Path) -> None:
    sets = clustered_sets(6, 8, seed=7, lo=2, hi=5)
    sets[4][1, 2] = np.nan
    write_sets(tmp_path / "n.parquet", sets)
    r = run_vecx("import", tmp_path / "n.parquet", "-o", tmp_path / "out.parquet", "--multi")
    assert r.code == 3 and "row 4" in r.stderr and "NaN" in r.stderr, r.stderr
    r = run_vecx("muvera", tmp_path / "n.parquet", "-o", tmp_path / "out.parquet")
    assert r.code == 3 and "row 4" in r.stderr, r.stderr
    assert not (tmp_path / "out.parquet").exists()


def test_wrong_kind_of_input_or_query_is_a_clear_error(tmp_path: Path, small: dict, base_table: Path) -> None:
    tmp = small["dir"]
    r = run_vecx("muvera", base_table, "-o", tmp_path / "x.parquet")
    assert r.code == 2 and "multi-vector" in r.stderr, r.stderr
    r = run_vecx("encode", tmp / "docs.mv.parquet", "-o", tmp_path / "x.parquet", "--spec", "binarize")
    assert r.code == 2 and "set of vectors" in r.stderr, r.stderr
    r = run_vecx("import", base_table, "-o", tmp_path / "x.parquet", "--multi")
    assert r.code == 3 and "--multi" in r.stderr, r.stderr
    r = run_vecx("index", tmp / "docs.mv.parquet", "-o", tmp_path / "x.vecx")
    assert r.code == 2 and "muvera" in r.stderr, r.stderr
    if not (tmp / "docs.vecx").exists():
        ok(run_vecx("encode", tmp / "docs.mv.parquet", "-o", tmp / "fde2.parquet", "--spec", "muvera:4x2x8"))
        ok(run_vecx("index", tmp / "fde2.parquet", "-o", tmp / "docs.vecx", "--rescore-vectors",
                    tmp / "docs.mv.parquet"))
    np.save(tmp_path / "one.npy", np.ones(24, dtype=np.float32))
    r = run_vecx("query", tmp / "docs.vecx", "--vector", tmp_path / "one.npy")
    assert r.code == 4 and "set of token vectors" in r.stderr, r.stderr
    np.save(tmp_path / "wrong.npy", np.ones((3, 7), dtype=np.float32))
    r = run_vecx("query", tmp / "docs.vecx", "--multi-vector", tmp_path / "wrong.npy")
    assert r.code == 4 and "7 dimensions" in r.stderr, r.stderr
    r = run_vecx("query", tmp / "docs.vecx", "--multi-vector", tmp_path / "one.npy")
    assert r.code == 3, r.stderr
    r = run_vecx("query", tmp / "docs.vecx", "--multi-vector", tmp / "q3.npy" if (tmp / "q3.npy").exists()
                 else tmp / "q.mv.parquet", "--first-stage", "centroid")
    assert r.code == 2 and "--first-stage" in r.stderr, r.stderr
    # A set-of-vectors query to a single-vector index.
    ok(run_vecx("index", base_table, "-o", tmp_path / "single.vecx"))
    np.save(tmp_path / "set48.npy", np.ones((3, 48), dtype=np.float32))
    r = run_vecx("query", tmp_path / "single.vecx", "--multi-vector", tmp_path / "set48.npy")
    assert r.code == 4 and "one vector per row" in r.stderr, r.stderr


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------
def _peak_rss_of_muvera(tmp_path: Path, groups: int) -> tuple[int, int]:
    """Write ``groups`` x 2,000 rows of 40-79 random 64-d vectors; encode them; (peak RSS, input bytes)."""
    import subprocess
    import sys
    import time

    import psutil

    d = 64
    path = tmp_path / f"big{groups}.parquet"
    rng = np.random.default_rng(8)
    writer, tokens = None, 0
    for _ in range(groups):
        counts = rng.integers(40, 80, 2000)
        values = rng.standard_normal((int(counts.sum()), d)).astype(np.float32)
        tokens += len(values)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        table = pa.table({"tokens": pa.ListArray.from_arrays(
            pa.array(offsets), pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), d))})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    out = tmp_path / f"f{groups}.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "vecx", "muvera", str(path), "-o", str(out),
                             "--reps", "4", "--ksim", "3", "--proj", "8", "-q"], stderr=subprocess.PIPE)
    peak = 0
    handle = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            # Anonymous memory (resident minus file-backed pages): what streaming keeps bounded. Pages of
            # the input and output files mapped by the page cache come and go with the kernel's choices.
            info = handle.memory_info()
            peak = max(peak, info.rss - info.shared)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    assert proc.returncode == 0, proc.stderr.read().decode()
    assert pq.ParquetFile(out).metadata.num_rows == groups * 2000
    return peak, tokens * d * 4


@pytest.mark.slow
@pytest.mark.alone  # the peak memory of a process: measured while no other test runs
def test_encoding_memory_stays_bounded(tmp_path: Path) -> None:
    """Tripling ~120 MB of token vectors to ~370 MB barely moves the peak memory (streamed batches)."""
    # The lower of two runs per size: a peak sampled every 20 ms catches transient allocations by chance.
    small_peak, small_bytes = min(_peak_rss_of_muvera(tmp_path, 4) for _ in range(2))
    large_peak, large_bytes = min(_peak_rss_of_muvera(tmp_path, 12) for _ in range(2))
    assert large_peak < large_bytes, (large_peak, large_bytes)
    # An encoder holding its input would grow by all of the extra data; a streaming one by the noise of
    # the allocator and the sampling, which reaches a fifth of it: a third separates the two.
    assert large_peak - small_peak < (large_bytes - small_bytes) / 3, (small_peak, large_peak)


def test_truth_over_fde_codes_encodes_query_sets_with_the_query_rule(small: dict) -> None:
    tmp = small["dir"]
    ok(run_vecx("encode", tmp / "docs.mv.parquet", "-o", tmp / "fde3.parquet", "--spec", "muvera:5x2x8:seed=4"))
    ok(run_vecx("truth", tmp / "fde3.parquet", tmp / "q.mv.parquet", "-o", tmp / "gt3.parquet", "-k", "5"))
    rows = np.stack(pq.read_table(tmp / "gt3.parquet")["rows"].to_numpy(zero_copy_only=False))
    codec = make_codec("muvera:5x2x8:seed=4", 24)
    scores = fde_of(codec, small["queries"], True) @ fde_of(codec, small["docs"], False).T
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    assert (rows == expected).mean() > 0.95  # float32 sums in another order may swap near-ties


def test_multi_vector_tables_stream_through_pipes(tmp_path: Path, small: dict) -> None:
    lines = [json.dumps({"id": f"d{i}", "tokens": s.tolist()}) for i, s in enumerate(small["docs"][:40])]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    stream = ok(run_vecx("import", "-", "-o", "-", "--multi", stdin=(tmp_path / "t.jsonl").read_bytes())).stdout
    ok(run_vecx("muvera", "-", "-o", tmp_path / "pipe.parquet", "--reps", "3", "--ksim", "2", "--proj", "4",
                stdin=stream))
    ok(run_vecx("import", tmp_path / "t.jsonl", "-o", tmp_path / "t.mv.parquet", "--multi"))
    ok(run_vecx("muvera", tmp_path / "t.mv.parquet", "-o", tmp_path / "file.parquet", "--reps", "3", "--ksim", "2",
                "--proj", "4"))
    assert (tmp_path / "pipe.parquet").read_bytes() == (tmp_path / "file.parquet").read_bytes()


@pytest.mark.parametrize("codec", ["pq:16x8", "binarize:mode=rabitq"])
def test_fdes_chain_into_scored_codes_and_rerank_exactly(small: dict, codec: str) -> None:
    tmp = small["dir"]
    name = codec.split(":")[0]
    table = tmp / f"fde.{name}.parquet"
    ok(run_vecx("encode", tmp / "docs.mv.parquet", "-o", table, "--spec", f"muvera:4x2x8:seed=3,{codec}"))
    index = tmp / f"docs.{name}.vecx"
    ok(run_vecx("index", table, "-o", index, "--rescore-vectors", tmp / "docs.mv.parquet"))
    # The codec scores the query FDEs against the codes; every document as candidate: the rerank decides.
    r = ok(run_vecx("query", index, "--multi-vector", tmp / "q.mv.parquet", "-k", "5", "--oversample", "60",
                    "--format", "jsonl"))
    found = [json.loads(line) for line in r.out.splitlines()]
    for i, q in enumerate(small["queries"][:5]):
        exact = np.array([chamfer(q, d) for d in small["docs"]])
        order = np.lexsort((np.arange(len(exact)), -exact))[:5]
        assert [x["id"] for x in found[i]["results"]] == [f"d{j}" for j in order], i
    # Without the rerank, the codec's ranking of the codes finds about as many of the true top 10
    # among 20 candidates as the float FDE does (symmetric sign bits lose almost all: BENCHMARKS.md).
    ok(run_vecx("encode", tmp / "docs.mv.parquet", "-o", tmp / "fde3.parquet", "--spec", "muvera:4x2x8:seed=3"))
    ok(run_vecx("index", tmp / "fde3.parquet", "-o", tmp / "docs.fde3.vecx", "--scan", "exhaustive"))

    def candidate_recall(path: Path) -> float:
        r = ok(run_vecx("query", path, "--multi-vector", tmp / "q.mv.parquet", "-k", "20", "--oversample", "1",
                        "--format", "jsonl"))
        first = [json.loads(line) for line in r.out.splitlines()]
        hits = []
        for i, q in enumerate(small["queries"]):
            exact = np.array([chamfer(q, d) for d in small["docs"]])
            top = {f"d{j}" for j in np.argsort(-exact, kind="stable")[:10]}
            hits.append(len(top & {x["id"] for x in first[i]["results"]}) / 10)
        return float(np.mean(hits))

    codes, floats = candidate_recall(index), candidate_recall(tmp / "docs.fde3.vecx")
    assert codes >= floats - 0.1, (codes, floats)
