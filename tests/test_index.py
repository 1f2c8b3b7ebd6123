"""Index and query: building, searching through the chain, rescoring, filters, and every bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, ok, run_vecx, stored

from vecx.indexes.truth import exact_topk


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """5,000 x 32 clustered vectors with payload, imported, plus encodings and queries."""
    tmp = tmp_path_factory.mktemp("corpus")
    x = make_vectors(5000, 32, seed=11)
    rng = np.random.default_rng(5)
    lang = np.where(rng.random(5000) < 0.002, "rare", np.where(rng.random(5000) < 0.5, "en", "de"))
    src = tmp / "src.parquet"
    pq.write_table(pa.table({"id": [f"doc{i}" for i in range(5000)],
                             "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 32),
                             "lang": lang, "year": rng.integers(1950, 2020, 5000)}), src)
    base = tmp / "base.parquet"
    assert run_vecx("import", src, "-o", base).code == 0
    for spec, name in (("f16", "f16"), ("int8:mode=global", "i8g"), ("int8", "i8p"), ("truncate:16", "t16"),
                       ("binarize", "b1"), ("pca:12", "pca")):
        r = run_vecx("encode", base, "-o", tmp / f"{name}.parquet", "--spec", spec)
        assert r.code == 0, r.stderr
    q = make_vectors(40, 32, seed=12)
    np.save(tmp / "q.npy", q)
    return {"dir": tmp, "x": x, "q": q, "lang": lang, "base": base}


def exact(x: np.ndarray, q: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
    subset = x if rows is None else x[rows]
    top, _ = exact_topk(q, iter([(0, subset)]), k, "cosine")
    return top if rows is None else rows[top]


def results(r) -> list[dict]:
    assert r.code == 0, r.stderr
    return [json.loads(line) for line in r.out.splitlines()]


def recall(found: list[dict], truth: np.ndarray, k: int) -> float:
    hits = [len({int(x["id"][3:]) for x in q["results"][:k]} & set(truth[i][:k].tolist())) for i, q in enumerate(found)]
    return sum(hits) / (k * len(found))


def usearch_recall(x: np.ndarray, q: np.ndarray, k: int, expansion: int) -> float:
    """Recall@k of raw usearch (f32, cosine) with vecx's default graph parameters, built single-threaded
    in row order (as vecx --deterministic): the peer's figure on the same graph construction."""
    from usearch.index import Index

    index = Index(ndim=x.shape[1], metric="cos", dtype="f32", connectivity=16, expansion_add=128,
                  expansion_search=expansion)
    index.add(np.arange(len(x)), x, threads=1)
    found = index.search(q, k).keys
    truth = exact(x, q, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth, strict=True)]))


@pytest.mark.parametrize("table, rescore, slack", [
    ("base", False, 0.02), ("f16", False, 0.03), ("i8g", False, 0.10), ("i8g", True, 0.02),
])
def test_build_and_query_recall(corpus: dict, tmp_path: Path, table: str, rescore: bool, slack: float) -> None:
    d = corpus["dir"]
    index = tmp_path / "docs.vecx"
    args = ["index", d / f"{table}.parquet", "-o", index, "--deterministic"]
    args += ["--rescore-vectors", corpus["base"]] if rescore else []
    r = run_vecx(*args)
    assert r.code == 0, r.stderr
    found = results(run_vecx("query", index, "--vector", d / "q.npy", "-k", "10", "--expansion", "128"))
    assert len(found) == 40 and all(len(q["results"]) == 10 for q in found)
    peer = usearch_recall(corpus["x"], corpus["q"], 10, 128)
    assert recall(found, exact(corpus["x"], corpus["q"], 10), 10) >= peer - slack
    scores = [x["score"] for x in found[0]["results"]]
    assert scores == sorted(scores, reverse=True)


def test_binary_codes_search_by_hamming_and_rescore(corpus: dict, tmp_path: Path) -> None:
    d = corpus["dir"]
    index = tmp_path / "b.vecx"
    assert run_vecx("index", d / "b1.parquet", "-o", index, "--rescore-vectors", corpus["base"],
                    "--deterministic").code == 0
    info = json.loads(run_vecx("info", index, "--json").stdout)["vecx"]
    assert (info["graph"]["dtype"], info["graph"]["metric"], info["bytes_per_vector"]) == ("b1", "hamming", 4)
    truth = exact(corpus["x"], corpus["q"], 10)
    plain = results(run_vecx("query", index, "--vector", d / "q.npy", "-k", "10", "--oversample", "1"))
    rescored = results(run_vecx("query", index, "--vector", d / "q.npy", "-k", "10", "--oversample", "10"))
    assert recall(rescored, truth, 10) > recall(plain, truth, 10)
    hamming = [x["score"] for x in plain[0]["results"]]
    assert hamming == sorted(hamming) and all(float(h).is_integer() for h in hamming)
    # A selective filter on a binary index scans the codes exactly by Hamming distance.
    filtered = results(run_vecx("query", index, "--vector", d / "q.npy", "-k", "3", "--oversample", "1",
                                "--where", "lang = 'rare'"))
    assert all(len(q["results"]) == 3 for q in filtered)


def test_pca_index_searches_by_inner_product_with_uncentred_queries(corpus: dict, tmp_path: Path) -> None:
    d = corpus["dir"]
    index = tmp_path / "p.vecx"
    assert run_vecx("index", d / "pca.parquet", "-o", index, "--rescore-vectors", corpus["base"]).code == 0
    assert json.loads(run_vecx("info", index, "--json").stdout)["vecx"]["graph"]["metric"] == "ip"
    chain, codes = stored(d / "pca.parquet")
    code_top, _ = exact_topk(chain.encode_query(corpus["q"]), iter([(0, codes)]), 10, "ip")
    truth = exact(corpus["x"], corpus["q"], 10)
    exact_codes = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(code_top, truth, strict=True)]))
    rescored = results(run_vecx("query", index, "--vector", d / "q.npy", "-k", "10", "--oversample", "10",
                                "--expansion", "256"))
    assert recall(rescored, truth, 10) >= exact_codes


def test_rescoring_scores_are_exact(corpus: dict, tmp_path: Path) -> None:
    d = corpus["dir"]
    index = tmp_path / "docs.vecx"
    assert run_vecx("index", d / "i8g.parquet", "-o", index, "--rescore-vectors", corpus["base"]).code == 0
    found = results(run_vecx("query", index, "--vector", d / "q.npy", "-k", "5", "--oversample", "10"))
    x, q = corpus["x"], corpus["q"]
    for i, qr in enumerate(found):
        for hit in qr["results"]:
            v = x[int(hit["id"][3:])]
            assert hit["score"] == pytest.approx(float(v @ q[i] / np.linalg.norm(v) / np.linalg.norm(q[i])), abs=1e-5)


def test_perdim_int8_codes_index_by_the_decoded_metric(corpus: dict, tmp_path: Path) -> None:
    """The default 'vecx int8' then 'vecx index': the codec scores its codes (float queries against the
    decoded rows), every code by default, a pool of an i8 graph's candidates with --scan graph."""
    from vecx.chain import Chain
    from vecx.formats.readers import open_source

    table = corpus["dir"] / "i8p.parquet"
    source = open_source(str(table))
    chain = Chain.from_source(source)
    codes = np.concatenate([b.vectors for b in source.batches()])
    decoded = chain.decode(codes)
    q = corpus["q"]
    want = exact(decoded, q, 10)  # the exact top-10 by cosine over the decoded rows
    for scan in ("exhaustive", "graph"):
        index = tmp_path / f"{scan}.vecx"
        # Single-threaded: a multi-threaded graph differs from build to build, and its recall with it.
        ok("index", table, "-o", index, "--scan", scan, "--rescore-vectors", corpus["base"], "--expansion-search", 200,
           "--deterministic")
        info = json.loads(ok("info", index, "--json"))["vecx"]
        assert info["codes"]["codec"] == "int8" and (info["graph"]["file"] is not None) == (scan == "graph")
        found = results(run_vecx("query", index, "--vector", corpus["dir"] / "q.npy", "-k", 10, "--oversample", "1"))
        rows = [[int(h["id"][3:]) for h in r["results"]] for r in found]
        hits = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, want.tolist(), strict=True)])
        assert hits == 1.0 if scan == "exhaustive" else hits >= 0.9, (scan, hits)
        if scan == "exhaustive":  # scores are the decoded rows' cosine with the float query
            for i, r in enumerate(found[:5]):
                v = decoded[int(r["results"][0]["id"][3:])]
                assert r["results"][0]["score"] == pytest.approx(
                    float(v @ q[i] / np.linalg.norm(v) / np.linalg.norm(q[i])), abs=1e-5)
        ev = json.loads(ok("eval", index, "--queries", corpus["dir"] / "q.npy", "--json"))
        assert ev["stages"][0]["recall@10"] >= 0.9 and ev["stages"][-1]["recall@10"] >= 0.95
        liked = results(run_vecx("query", index, "--like", "doc7", "-k", 3, "--oversample", "1"))[0]["results"]
        assert "doc7" not in [h["id"] for h in liked] and len(liked) == 3
        # The item's own decoded row is the query: its nearest decoded rows, itself left out.
        nearest = exact(decoded, decoded[7:8], 4)[0].tolist()
        assert [int(h["id"][3:]) for h in liked] == [r for r in nearest if r != 7][:3] or scan == "graph"
        assert int(liked[0]["id"][3:]) == [r for r in nearest if r != 7][0], scan


def test_rescore_table_from_other_data_is_refused(corpus: dict, tmp_path: Path) -> None:
    other = tmp_path / "other.npy"
    np.save(other, make_vectors(5000, 32, seed=99))
    other_table = tmp_path / "other.parquet"
    assert run_vecx("import", other, "-o", other_table).code == 0
    r = run_vecx("index", corpus["dir"] / "f16.parquet", "-o", tmp_path / "x.vecx", "--rescore-vectors", other_table)
    assert r.code == 4 and "other data" in r.stderr


@pytest.fixture(scope="module")
def index(corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("idx") / "docs.vecx"
    r = run_vecx("index", corpus["dir"] / "i8g.parquet", "-o", path, "--rescore-vectors", corpus["base"])
    assert r.code == 0, r.stderr
    return path


def test_like_excludes_the_item_and_matches_a_vector_query(corpus: dict, index: Path, tmp_path: Path) -> None:
    found = results(run_vecx("query", index, "--like", "doc42", "-k", "5", "--fields", "lang"))
    assert found[0]["like"] == "doc42"
    ids = [x["id"] for x in found[0]["results"]]
    assert "doc42" not in ids and len(ids) == 5 and "lang" in found[0]["results"][0]
    np.save(tmp_path / "one.npy", corpus["x"][42])
    by_vector = results(run_vecx("query", index, "--vector", tmp_path / "one.npy", "-k", "6"))
    assert [x["id"] for x in by_vector[0]["results"]][1:] == ids
    r = run_vecx("query", index, "--like", "nope")
    assert r.code == 3 and "no item with id 'nope'" in r.stderr


def test_batch_from_stdin_and_formats(corpus: dict, index: Path) -> None:
    q = corpus["q"][:3]
    lines = [json.dumps({"id": "a", "vector": q[0].tolist()}), json.dumps(q[1].tolist()), "",
             json.dumps({"vector": q[2].tolist()})]
    found = results(run_vecx("query", index, "-k", "3", stdin=("\n".join(lines) + "\n").encode()))
    assert [f["query"] for f in found] == [0, 1, 2] and found[0]["query_id"] == "a"
    by_file = results(run_vecx("query", index, "--vector", corpus["dir"] / "q.npy", "-k", "3"))
    assert [f["results"] for f in found] == [f["results"] for f in by_file[:3]]
    r = run_vecx("query", index, "--vector", corpus["dir"] / "q.npy", "-k", "2", "--format", "csv")
    rows = r.out.strip().splitlines()
    assert rows[0] == "query,rank,id,score" and len(rows) == 1 + 40 * 2
    # Queries with ids (or --like) carry them in CSV too.
    r = run_vecx("query", index, "-k", "1", "--format", "csv", stdin=(lines[0] + "\n").encode())
    assert r.out.splitlines()[0] == "query,query_id,rank,id,score" and r.out.splitlines()[1].startswith("0,a,1,")
    r = run_vecx("query", index, "--vector", corpus["dir"] / "q.npy", "-k", "2", "--format", "json")
    assert len(json.loads(r.stdout)) == 40


def test_malformed_batch_line_names_the_line_and_runs_nothing(index: Path, corpus: dict) -> None:
    good = json.dumps(corpus["q"][0].tolist())
    r = run_vecx("query", index, stdin=f"{good}\n{{not json\n{good}\n".encode())
    assert r.code == 3 and "line 2" in r.stderr and "no query was run" in r.stderr
    assert r.stdout == b""
    r = run_vecx("query", index, stdin=f"{good}\n[1, 2, 3]\n".encode())
    assert r.code == 4 and "line 2: query has 3 dimensions, the index takes 32" in r.stderr


def test_wrong_dimension_query(index: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "q.npy", make_vectors(2, 16))
    r = run_vecx("query", index, "--vector", tmp_path / "q.npy")
    assert r.code == 4 and "query has 16 dimensions, this index takes 32" in r.stderr


def test_queries_go_through_the_chain(corpus: dict, tmp_path: Path) -> None:
    # A truncate:16 index takes 32-d queries (the input space) and truncates them itself.
    index = tmp_path / "t.vecx"
    assert run_vecx("index", corpus["dir"] / "t16.parquet", "-o", index, "--deterministic").code == 0
    found = results(run_vecx("query", index, "--vector", corpus["dir"] / "q.npy", "-k", "10"))
    t = corpus["x"][:, :16] / np.linalg.norm(corpus["x"][:, :16], axis=1, keepdims=True)
    q = np.ascontiguousarray(corpus["q"][:, :16])
    assert recall(found, exact(t, q, 10), 10) >= usearch_recall(t.astype(np.float32), q, 10, 64) - 0.01


def test_k_larger_than_the_index_returns_everything(corpus: dict, tmp_path: Path) -> None:
    small = tmp_path / "small.npy"
    np.save(small, corpus["x"][:7])
    table = tmp_path / "small.parquet"
    assert run_vecx("import", small, "-o", table).code == 0
    assert run_vecx("index", table, "-o", tmp_path / "s.vecx").code == 0
    np.save(tmp_path / "q.npy", corpus["q"][:1])
    found = results(run_vecx("query", tmp_path / "s.vecx", "--vector", tmp_path / "q.npy", "-k", "50"))
    assert sorted(int(x["id"]) for x in found[0]["results"]) == list(range(7))


def test_filters_are_exact_even_when_selective(corpus: dict, index: Path) -> None:
    lang = corpus["lang"]
    for expr, value, k in (("lang = 'rare'", "rare", 5), ("lang = 'en'", "en", 10)):
        found = results(run_vecx("query", index, "--vector", corpus["dir"] / "q.npy", "-k", str(k),
                                 "--where", expr, "--fields", "lang"))
        rows = np.flatnonzero(lang == value)
        truth = exact(corpus["x"], corpus["q"], k, rows)
        assert all(x["lang"] == value for q in found for x in q["results"])
        assert all(len(q["results"]) == min(k, len(rows)) for q in found)
        assert recall(found, truth, min(k, len(rows))) >= (1.0 if value == "rare" else 0.95)


def test_filter_errors(index: Path, corpus: dict) -> None:
    r = run_vecx("query", index, "--vector", corpus["dir"] / "q.npy", "--where", "country = 'x'")
    assert r.code == 2 and "no column 'country'" in r.stderr
    r = run_vecx("query", index, "--vector", corpus["dir"] / "q.npy", "--where", "year >= 'abc'")
    assert r.code == 2 and "cannot compare" in r.stderr
    r = run_vecx("query", index, "--vector", corpus["dir"] / "q.npy", "--where", "lang = 'none'")
    assert r.code == 0 and all(q["results"] == [] for q in results(r))


def test_info_on_an_index(index: Path) -> None:
    r = run_vecx("info", index)
    assert r.code == 0, r.stderr
    assert "usearch HNSW, 32 x i8, metric cos" in r.out and "oversample 4x" in r.out
    data = json.loads(run_vecx("info", index, "--json").stdout)["vecx"]
    assert data["graph"]["connectivity"] == 16 and data["rows"] == 5000


def copy_index(index: Path, tmp_path: Path) -> Path:
    """A private copy of an index (its current version, as a plain symlink structure)."""
    target = tmp_path / "copy.vecx"
    real = Path(os.path.realpath(index))
    versions = tmp_path / ".copy.vecx.d"
    versions.mkdir()
    shutil.copytree(real, versions / real.name)
    os.symlink(f".copy.vecx.d/{real.name}", target)
    return target


@pytest.mark.parametrize("damage, code, message", [
    ("remove_graph", 3, "graph.usearch is missing"),
    ("truncate_rows", 3, "rows.parquet has"),
    ("flip_state", 3, "checksum of state.npz does not match"),
    ("truncate_ids", 3, "ids.utf8 has"),
    ("future", 4, "index format version 9"),
    ("no_manifest", 3, "not a vecx index"),
])
def test_damaged_index_is_refused(index: Path, tmp_path: Path, corpus: dict, damage: str, code: int,
                                  message: str) -> None:
    copy = copy_index(index, tmp_path)
    real = Path(os.path.realpath(copy))
    if damage == "remove_graph":
        (real / "graph.usearch").unlink()
    elif damage == "truncate_rows":
        data = (real / "rows.parquet").read_bytes()
        (real / "rows.parquet").write_bytes(data[:-10])
    elif damage == "flip_state":
        data = bytearray((real / "state.npz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (real / "state.npz").write_bytes(bytes(data))
    elif damage == "truncate_ids":
        data = (real / "ids.utf8").read_bytes()
        (real / "ids.utf8").write_bytes(data[:-8])
    elif damage == "future":
        manifest = json.loads((real / "manifest.json").read_text())
        manifest["format_version"] = 9
        (real / "manifest.json").write_text(json.dumps(manifest))
    else:
        (real / "manifest.json").unlink()
    r = run_vecx("query", copy, "--vector", corpus["dir"] / "q.npy")
    assert r.code == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_missing_index(tmp_path: Path, corpus: dict) -> None:
    r = run_vecx("query", tmp_path / "nope.vecx", "--vector", corpus["dir"] / "q.npy")
    assert r.code == 3 and "no such index" in r.stderr


def test_empty_table_cannot_be_indexed(corpus: dict, tmp_path: Path) -> None:
    # vecx never writes an empty table (import refuses), so make one by hand from a real one.
    f = pq.ParquetFile(corpus["base"])
    empty = tmp_path / "empty.parquet"
    writer = pq.ParquetWriter(empty, f.schema_arrow)
    writer.write_table(f.read().slice(0, 0))
    writer.add_key_value_metadata(f.metadata.metadata)
    writer.close()
    r = run_vecx("index", empty, "-o", tmp_path / "e.vecx")
    assert r.code == 3 and "empty" in r.stderr
    assert not (tmp_path / "e.vecx").exists()


@pytest.mark.parametrize("fail_in", ["graph", "rescore"])
def test_a_build_failing_on_either_thread_leaves_nothing(corpus: dict, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, fail_in: str) -> None:
    """The rescoring copy runs on its own thread: an error on either side ends the build cleanly."""
    import threading

    import usearch.index

    from vecx.errors import DataError
    from vecx.indexes import build as index_build

    out = tmp_path / "x.vecx"
    index_build.build(str(corpus["dir"] / "i8g.parquet"), str(out), rescore=str(corpus["base"]))
    # The rescoring file's checksum, taken on the copying thread, is the file's.
    from vecx.indexes import store

    _, manifest = store.open_version(str(out), verify=True)
    assert manifest["files"]["rescore.npy"]["sha256"] == store.sha256_file(
        os.path.join(os.path.realpath(out), "rescore.npy"))
    before = (Path(os.path.realpath(out)) / "graph.usearch").read_bytes()
    copied = threading.Event()
    real_write = index_build._write_rescore

    def write_then_maybe_fail(*args, **kwargs):
        if fail_in == "rescore":
            raise DataError("rescore copy failed")
        info = real_write(*args, **kwargs)
        copied.set()
        return info

    def add_then_maybe_fail(self, *args, **kwargs):
        if fail_in == "graph":
            # The copy runs alongside the graph build: it has written into the version by now, and
            # the abort must still remove it.
            assert copied.wait(30), "the rescoring copy did not run alongside the graph build"
            raise DataError("graph add failed")
        return real_add(self, *args, **kwargs)

    real_add = usearch.index.Index.add
    monkeypatch.setattr(index_build, "_write_rescore", write_then_maybe_fail)
    monkeypatch.setattr(usearch.index.Index, "add", add_then_maybe_fail)
    with pytest.raises(DataError, match=f"{fail_in} .* failed"):
        index_build.build(str(corpus["dir"] / "i8g.parquet"), str(out), rescore=str(corpus["base"]))
    assert not [t for t in threading.enumerate() if t.name == "vecx-rescore"]
    versions = Path(os.path.realpath(out)).parent
    assert sorted(p.name for p in versions.iterdir()) == [Path(os.path.realpath(out)).name]  # no leftover version
    assert (Path(os.path.realpath(out)) / "graph.usearch").read_bytes() == before
    monkeypatch.undo()  # the query below runs in this process: without the failures planted above
    assert run_vecx("query", out, "--vector", corpus["dir"] / "q.npy", "-k", "3").code == 0


def test_deterministic_builds_are_identical(corpus: dict, tmp_path: Path) -> None:
    a, b = tmp_path / "a.vecx", tmp_path / "b.vecx"
    for out in (a, b):
        assert run_vecx("index", corpus["dir"] / "f16.parquet", "-o", out, "--deterministic").code == 0
    ga = (Path(os.path.realpath(a)) / "graph.usearch").read_bytes()
    gb = (Path(os.path.realpath(b)) / "graph.usearch").read_bytes()
    assert ga == gb
    assert json.loads(run_vecx("info", a, "--json").stdout)["vecx"]["graph"]["deterministic"] is True


def test_small_add_batches_build_the_same_index(corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph is fed in small batches (so it starts before the table is decoded) and rows.parquet is
    regrouped: the same graph, ids and rows as one batch, in row groups of the table's own size."""
    import usearch.index

    from vecx.formats import source as source_module
    from vecx.indexes import build as index_build

    whole = tmp_path / "whole.vecx"
    index_build.build(str(corpus["dir"] / "f16.parquet"), str(whole),
                      options=index_build.BuildOptions(deterministic=True))
    calls: list[int] = []
    real_add = usearch.index.Index.add

    def counting_add(self, keys, vectors, **kwargs):
        calls.append(len(keys))
        return real_add(self, keys, vectors, **kwargs)

    monkeypatch.setattr("usearch.index.Index.add", counting_add)
    monkeypatch.setattr(index_build, "add_batch_rows", lambda row_bytes: 7)
    monkeypatch.setattr(source_module, "batch_rows_for", lambda row_bytes: 64)
    small = tmp_path / "small.vecx"
    index_build.build(str(corpus["dir"] / "f16.parquet"), str(small),
                      options=index_build.BuildOptions(deterministic=True))
    assert calls == [7] * (5000 // 7) + [5000 % 7]
    a, b = Path(os.path.realpath(whole)), Path(os.path.realpath(small))
    assert (a / "graph.usearch").read_bytes() == (b / "graph.usearch").read_bytes()
    assert (a / "ids.utf8").read_bytes() == (b / "ids.utf8").read_bytes()
    meta = pq.ParquetFile(b / "rows.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [64] * (5000 // 64) + [5000 % 64]
    assert pq.read_table(b / "rows.parquet").equals(pq.read_table(a / "rows.parquet"))
    monkeypatch.undo()  # the query below runs in this process: with vecx's own batch sizes
    assert run_vecx("query", small, "--like", "doc17", "-k", "3").code == 0


@pytest.mark.slow
def test_rebuild_is_atomic_for_concurrent_readers(corpus: dict, tmp_path: Path) -> None:
    index = tmp_path / "live.vecx"
    d = corpus["dir"]
    assert run_vecx("index", d / "f16.parquet", "-o", index).code == 0
    reader = subprocess.Popen(
        [sys.executable, "-c", READER_LOOP, str(index), str(d / "q.npy")], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    # The rebuilds (in this process: quick) start once the reader has read the index once.
    first = reader.stdout.readline()
    for table in ("base", "i8g", "f16", "base"):
        r = run_vecx("index", d / f"{table}.parquet", "-o", index)
        assert r.code == 0, r.stderr
    reader.send_signal(signal.SIGTERM)
    out, err = reader.communicate(timeout=60)
    out = first + out
    assert "FAIL" not in out, out + err
    assert int(out.split()[-1]) >= 3  # the reader kept going through the rebuilds
    assert len(list((tmp_path / ".live.vecx.d").iterdir())) <= 2  # old versions are pruned


READER_LOOP = """
import signal, sys
from vecx.indexes.search import Searcher
import numpy as np
stop = False
def handler(*a):
    global stop
    stop = True
signal.signal(signal.SIGTERM, handler)
q = np.load(sys.argv[2])[:5]
n = 0
while not stop:
    try:
        s = Searcher(sys.argv[1])
        rows, _ = s.search(q, 5)
        assert (rows >= 0).all() and rows.shape == (5, 5)
        s.rows_table(["id"])
        n += 1
        if n == 1:
            print("reading", flush=True)
    except Exception as exc:
        print("FAIL", type(exc).__name__, exc, flush=True)
print("reads", n, flush=True)
"""


@pytest.mark.slow
def test_killed_build_leaves_the_previous_index(corpus: dict, tmp_path: Path) -> None:
    index = tmp_path / "k.vecx"
    d = corpus["dir"]
    assert run_vecx("index", d / "f16.parquet", "-o", index).code == 0
    before = os.path.realpath(index)
    proc = subprocess.Popen([sys.executable, "-m", "vecx", "index", str(d / "base.parquet"), "-o", str(index),
                             "--expansion-add", "400", "--deterministic"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    versions = tmp_path / ".k.vecx.d"
    deadline = time.monotonic() + 60
    while not any(p.name.startswith("tmp-") for p in versions.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert os.path.realpath(index) == before
    assert results(run_vecx("query", index, "--vector", d / "q.npy", "-k", "3"))
    # The next build cleans the dead build's leftovers.
    assert run_vecx("index", d / "f16.parquet", "-o", index).code == 0
    assert not any(p.name.startswith("tmp-") for p in versions.iterdir())


def test_eval_separates_the_losses(corpus: dict, tmp_path: Path) -> None:
    d = corpus["dir"]
    index = tmp_path / "e.vecx"
    assert run_vecx("index", d / "i8g.parquet", "-o", index, "--rescore-vectors", corpus["base"],
                    "--deterministic").code == 0
    r = run_vecx("eval", index, "--queries", d / "q.npy", "--json")
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)
    stages = {s["stage"]: s for s in data["stages"]}
    assert set(stages) == {"codes, exact", "graph", "graph + rescore x4"}
    # Reference figures computed here, independently of vecx: exact top-10 over the floats,
    # and the int8 codes searched exhaustively by cosine.
    x, q = corpus["x"], corpus["q"]
    truth = exact(x, q, 10)
    chain, codes = stored(d / "i8g.parquet")
    codes = codes.astype(np.float32)
    q_codes = chain.encode_query(q).astype(np.float32)
    code_top = exact(codes, q_codes, 10)
    expected = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(code_top, truth, strict=True)])
    assert stages["codes, exact"]["recall@10"] == pytest.approx(expected, abs=0.011)
    assert stages["graph + rescore x4"]["recall@10"] >= stages["graph"]["recall@10"]
    assert stages["graph"]["qps"] > 0 and stages["graph"]["p99_ms"] >= stages["graph"]["p50_ms"]
    # The same evaluation against an explicit truth file from vecx truth.
    gt = tmp_path / "gt.parquet"
    assert run_vecx("truth", corpus["base"], "--queries", d / "q.npy", "-o", gt, "-k", "100").code == 0
    with_file = json.loads(run_vecx("eval", index, "--queries", d / "q.npy", "--truth", gt, "--json").stdout)
    assert with_file["stages"][0]["recall@10"] == stages["codes, exact"]["recall@10"]


def test_eval_target_recall_tunes_and_saves(corpus: dict, tmp_path: Path) -> None:
    d = corpus["dir"]
    index = tmp_path / "t.vecx"
    assert run_vecx("index", d / "i8g.parquet", "-o", index, "--rescore-vectors", corpus["base"],
                    "--deterministic").code == 0
    r = run_vecx("eval", index, "--queries", d / "q.npy", "--target-recall", "0.99", "--save", "--json")
    assert r.code == 0, r.stderr
    tuning = json.loads(r.stdout)["tuning"]
    assert tuning["reached"] and tuning["saved"]
    # It is the smallest factor in the grid that reaches the target: every smaller one was tried and missed.
    misses = [t for t in tuning["tried"] if t["oversample"] < tuning["oversample"]]
    assert all(t["recall@10"] < 0.99 for t in misses)
    manifest = json.loads(run_vecx("info", index, "--json").stdout)["vecx"]
    assert manifest["search"]["oversample"] == tuning["oversample"]
    assert manifest["graph"]["expansion_search"] == tuning["expansion"]
    # The saved defaults give the recall the tuning promised.
    again = json.loads(run_vecx("eval", index, "--queries", d / "q.npy", "--json").stdout)
    rescored = [s for s in again["stages"] if s["stage"].startswith("graph + rescore")]
    if tuning["oversample"] > 1:
        assert rescored[0]["recall@10"] >= 0.99
    r = run_vecx("eval", index, "--queries", d / "q.npy", "--save")
    assert r.code == 2 and "--target-recall" in r.stderr


def test_eval_needs_truth_without_float_rescoring(corpus: dict, tmp_path: Path) -> None:
    index = tmp_path / "n.vecx"
    assert run_vecx("index", corpus["dir"] / "f16.parquet", "-o", index).code == 0
    r = run_vecx("eval", index, "--queries", corpus["dir"] / "q.npy")
    assert r.code == 2 and "--truth" in r.stderr


def test_table_format_and_all_fields(index: Path, corpus: dict) -> None:
    r = run_vecx("query", index, "--like", "doc1", "-k", "2", "--format", "table", "--fields", "all")
    assert r.code == 0, r.stderr
    assert "query 0 (like doc1)" in r.out and "lang" in r.out and "year" in r.out
    found = results(run_vecx("query", index, "--like", "doc1", "-k", "2", "--fields", "all"))
    assert set(found[0]["results"][0]) == {"rank", "id", "score", "lang", "year"}
    r = run_vecx("query", index, "--like", "doc1", "--fields", "nope")
    assert r.code == 2 and "no column 'nope'" in r.stderr
    r = run_vecx("query", index, "--like", "doc1", "--format", "xml")
    assert r.code == 2


def test_plain_query_reads_no_parquet(corpus: dict, tmp_path: Path) -> None:
    """A query that asks for ids only answers from the memory-mapped id files: pyarrow is never imported
    (its import costs more than the search); asking for a payload field does read rows.parquet."""
    index = tmp_path / "docs.vecx"
    assert run_vecx("index", corpus["dir"] / "i8g.parquet", "-o", index, "--rescore-vectors", corpus["base"]).code == 0
    env = {**os.environ, "VECX_NO_PROGRESS": "1"}
    plain = subprocess.run([sys.executable, "-X", "importtime", "-m", "vecx", "query", str(index), "--vector",
                            str(corpus["dir"] / "q.npy"), "-k", "3"],
                           capture_output=True, env=env, timeout=120)
    assert plain.returncode == 0, plain.stderr.decode()
    assert b"pyarrow" not in plain.stderr
    like = subprocess.run([sys.executable, "-X", "importtime", "-m", "vecx", "query", str(index), "--like", "doc7",
                           "-k", "3"], capture_output=True, env=env, timeout=120)
    assert like.returncode == 0 and b"pyarrow" not in like.stderr
    fields = run_vecx("query", index, "--like", "doc7", "-k", "3", "--fields", "lang")
    found = results(fields)[0]["results"]
    assert [r["lang"] for r in found] == [corpus["lang"][int(r["id"][3:])] for r in found]


def test_integer_ids_answer_from_the_id_file(tmp_path: Path) -> None:
    """Row-number ids (a .npy import) go to ids.npy; --like finds them, results match brute force."""
    x = make_vectors(800, 16, seed=3)
    np.save(tmp_path / "x.npy", x)
    assert run_vecx("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet").code == 0
    index = tmp_path / "x.vecx"
    assert run_vecx("index", tmp_path / "x.parquet", "-o", index, "--deterministic",
                    "--expansion-search", "800").code == 0
    assert (Path(os.path.realpath(index)) / "ids.npy").exists()
    got = results(run_vecx("query", index, "--like", "123", "-k", "5"))[0]["results"]
    truth = exact(x, x[123:124], 6)[0]
    assert [r["id"] for r in got] == [int(t) for t in truth if t != 123][:5]
    missing = run_vecx("query", index, "--like", "5000")
    assert missing.code == 3 and "no item with id '5000'" in missing.stderr


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_a_rescored_batch_is_the_exact_top_k(tmp_path: Path, metric: str) -> None:
    """Hundreds of queries rescored at once (blocks of queries on every core; one segment's rows read
    where they lie, two segments' through a copy of their distinct rows): with every row a
    candidate, each query gets the exact float top-k and its exact scores."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import vecx

    x, q = make_vectors(400, 16, seed=3), make_vectors(300, 16, seed=4)
    for name, rows in (("x", slice(0, 300)), ("more", slice(300, 400))):
        part = x[rows]
        pq.write_table(pa.table({"id": list(range(400))[rows], "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(part.ravel()), 16)}), tmp_path / f"{name}.src.parquet")
        ok("import", tmp_path / f"{name}.src.parquet", "-o", tmp_path / f"{name}.parquet", "--metric", metric)
        if name == "x" and metric != "ip":  # int8 has no inner-product graph kernel: f16 codes there
            ok("fit", tmp_path / "x.parquet", "--spec", "int8:mode=global", "-o", tmp_path / "i8.state")
        ok("encode", tmp_path / f"{name}.parquet", *(("--spec", "f16") if metric == "ip" else
                                                      ("--state", tmp_path / "i8.state")),
           "-o", tmp_path / f"{name}.i8.parquet")
    index = tmp_path / "c.vecx"
    ok("index", tmp_path / "x.i8.parquet", "-o", index, "--rescore-vectors", tmp_path / "x.parquet")
    for rows in (300, 400):
        if rows == 400:  # a second segment: rescoring reads across both
            ok("index", tmp_path / "more.i8.parquet", "-o", index, "--append", "--rescore-vectors",
               tmp_path / "more.parquet")
        found = vecx.open_index(index).search(q, k=10, oversample=50)
        xs = x[:rows]
        if metric == "l2":
            want = ((q[:, None, :] - xs[None, :, :]) ** 2).sum(-1)
        elif metric == "cosine":
            want = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (xs / np.linalg.norm(xs, axis=1, keepdims=True)).T
        else:
            want = q @ xs.T
        order = np.argsort(want if metric == "l2" else -want, axis=1, kind="stable")[:, :10]
        ids = np.asarray(found.ids).astype(np.int64)
        np.testing.assert_allclose(np.asarray(found.scores), np.take_along_axis(want, ids, axis=1), rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(np.take_along_axis(want, ids, axis=1), np.take_along_axis(want, order, axis=1),
                                   rtol=1e-4, atol=1e-4)


def test_one_rescored_query_starts_no_thread_pool_and_loads_no_kernel(tmp_path: Path) -> None:
    """What one ``vecx query`` pays for: a single query's search and rescoring run on the calling
    thread, without importing numba, threadpoolctl or a thread pool (only many queries share the
    cores), and give the same rows as when it is one of a batch."""
    x = make_vectors(3000, 32, seed=11)
    np.save(tmp_path / "x.npy", x)
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    ok("encode", tmp_path / "x.parquet", "-o", tmp_path / "c.parquet", "--spec", "int8:mode=global")
    ok("index", tmp_path / "c.parquet", "-o", tmp_path / "c.vecx", "--rescore-vectors", tmp_path / "x.parquet")
    script = f"""
import sys, numpy as np, vecx
index = vecx.open_index({str(tmp_path / "c.vecx")!r})
q = np.load({str(tmp_path / "x.npy")!r})[:2000] + 0.01
one = index.search(q[:1], k=10, oversample=10)
print(*(name in sys.modules for name in ("numba", "threadpoolctl", "concurrent.futures")))
many = index.search(q, k=10, oversample=10)  # blocks of queries on every core
assert (many.ids[:1] == one.ids).all() and np.allclose(many.scores[:1], one.scores, rtol=1e-5)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]
