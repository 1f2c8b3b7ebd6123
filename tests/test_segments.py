"""Indexes that grow: append (upsert), delete, compact, --if-changed, and search across segments."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, ok, run_vecx

from vecx.indexes.truth import exact_topk

N, D, SPLIT = 3000, 32, 2400


def write_source(path: Path, x: np.ndarray, ids: list, lang: list[str]) -> Path:
    pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1]),
                             "lang": lang}), path)
    return path



@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """N clustered vectors with integer ids and a payload column: the whole set, its first SPLIT rows
    (base) and the rest (new), each imported; an int8 state fitted on the base, the encodings by it."""
    tmp = tmp_path_factory.mktemp("segments")
    x = make_vectors(N, D, seed=21)
    lang = ["en" if i % 3 else "de" for i in range(N)]
    ids = list(range(N))
    for name, rows in (("all", slice(0, N)), ("base", slice(0, SPLIT)), ("new", slice(SPLIT, N))):
        write_source(tmp / f"{name}.src.parquet", x[rows], ids[rows], lang[rows])
        ok("import", tmp / f"{name}.src.parquet", "-o", tmp / f"{name}.parquet")
    ok("fit", tmp / "base.parquet", "--spec", "int8:mode=global", "-o", tmp / "i8.state")
    for name in ("all", "base", "new"):
        ok("encode", tmp / f"{name}.parquet", "--state", tmp / "i8.state", "-o", tmp / f"{name}.i8.parquet")
    q = make_vectors(50, D, seed=22)
    np.save(tmp / "q.npy", q)
    return {"dir": tmp, "x": x, "q": q}


def query_ids(index: Path, q: Path, k: int = 10, *extra: str) -> list[list[int]]:
    out = ok("query", index, "--vector", q, "-k", k, *extra)
    return [[r["id"] for r in json.loads(line)["results"]] for line in out.splitlines()]


def truth(x: np.ndarray, q: np.ndarray, k: int, live: np.ndarray | None = None) -> list[set[int]]:
    rows = np.arange(len(x)) if live is None else np.flatnonzero(live)
    top, _ = exact_topk(q, iter([(0, x[rows])]), k, "cosine")
    return [set(rows[t].tolist()) for t in top]


def recall(found: list[list[int]], expected: list[set[int]]) -> float:
    return sum(len(set(f) & e) for f, e in zip(found, expected, strict=True)) / sum(len(e) for e in expected)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(index: Path) -> dict:
    return json.loads((index / "manifest.json").read_text())


def test_append_searches_both_segments_and_compact_equals_a_full_build(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    full, grown = tmp_path / "full.vecx", tmp_path / "grown.vecx"
    ok("index", d / "all.i8.parquet", "-o", full, "--rescore-vectors", d / "all.parquet", "--deterministic")
    ok("index", d / "base.i8.parquet", "-o", grown, "--rescore-vectors", d / "base.parquet", "--deterministic")
    # The imported vectors are appended: encoded by the index's chain, and kept as its rescoring vectors.
    r = run_vecx("index", d / "new.parquet", "-o", grown, "--append", "--json")
    assert r.code == 0, r.stderr
    report = json.loads(r.out)
    assert report["change"]["action"] == "appended" and report["change"]["rows_added"] == N - SPLIT
    assert [s["rows"] for s in report["segments"]] == [SPLIT, N - SPLIT] and report["rows"] == N
    assert report["format_version"] == 2
    expected = truth(data["x"], data["q"], 10)
    got_full, got_grown = query_ids(full, d / "q.npy"), query_ids(grown, d / "q.npy")
    assert recall(got_grown, expected) >= recall(got_full, expected) - 0.01
    assert any(i >= SPLIT for row in got_grown for i in row)  # the new segment answers
    # Codes of the appended rows are what encoding them by the index's state gives.
    from vecx.indexes.search import Searcher

    one, two = Searcher(str(full)), Searcher(str(grown))
    try:
        rows = np.arange(SPLIT - 5, SPLIT + 5)
        np.testing.assert_array_equal(one.codes_of(rows), two.codes_of(rows))
        np.testing.assert_array_equal(np.asarray(one.rescore_vectors[rows]), np.asarray(two.rescore_vectors[rows]))
    finally:
        one.close()
        two.close()
    # Compacting gives the bytes a deterministic full build of the same rows gives.
    r = run_vecx("compact", grown, "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.out)["segments"] == 1 and json.loads(r.out)["merged"] == 2
    for name in ("graph.usearch", "ids.npy", "rescore.npy", "rows.parquet"):
        assert sha(grown / name) == sha(full / name), name
    assert query_ids(grown, d / "q.npy") == got_full
    assert manifest(grown)["format_version"] == 1
    assert ok("verify", grown).startswith(f"{grown}: ok")


def test_upsert_replaces_rows_and_delete_hides_them(data: dict, tmp_path: Path) -> None:
    d, x = data["dir"], data["x"]
    index = tmp_path / "docs.vecx"
    # Deterministic (and so its appends): the recall checks below then test the tombstones, not graph luck.
    ok("index", d / "base.parquet", "-o", index, "--rescore-vectors", d / "base.parquet", "--deterministic")
    # Ten rows come back with new vectors (those of rows 2400..2409) and a new payload.
    moved = list(range(10))
    upd = write_source(tmp_path / "upd.src.parquet", x[SPLIT: SPLIT + 10], moved, ["xx"] * 10)
    ok("import", upd, "-o", tmp_path / "upd.parquet")
    r = run_vecx("index", tmp_path / "upd.parquet", "-o", index, "--append", "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.out)["change"]["rows_deleted"] == 10
    np.save(tmp_path / "moved.npy", x[SPLIT: SPLIT + 10])
    # (Wide searches throughout: a multi-threaded build's graph differs run to run, and what it misses
    # must not be mistaken for what the tombstones do.)
    out = ok("query", index, "--vector", tmp_path / "moved.npy", "-k", 1, "--fields", "id,lang", "--expansion", "300")
    firsts = [json.loads(line)["results"][0] for line in out.splitlines()]
    assert [(f["id"], f["lang"]) for f in firsts] == [(i, "xx") for i in moved]
    # The old rows are gone: an id comes back once, with its new payload.
    out = ok("query", index, "--vector", tmp_path / "moved.npy", "-k", 50, "--fields", "lang")
    for line in out.splitlines():
        ids = [r["id"] for r in json.loads(line)["results"]]
        assert len(ids) == len(set(ids))
    np.save(tmp_path / "old.npy", x[:10])
    out = ok("query", index, "--vector", tmp_path / "old.npy", "-k", 20, "--fields", "lang")
    for line in out.splitlines():
        assert all(r["lang"] == "xx" for r in json.loads(line)["results"] if r["id"] in moved)

    # Delete by id (a file, and --id) and by filter: never returned again, by vector, --like or --where.
    (tmp_path / "gone.txt").write_text("100\n101\n\n999999\nnot-a-number\n")
    r = run_vecx("delete", index, "--ids", tmp_path / "gone.txt", "--id", "102", "--json")
    assert r.code == 0, r.stderr
    report = json.loads(r.out)
    assert report["rows_deleted"] == 3 and sorted(map(str, report["missing"])) == ["999999", "not-a-number"]
    r = run_vecx("delete", index, "--where", "lang = 'de' and id < 300", "--json")
    assert r.code == 0, r.stderr
    deleted_de = [i for i in range(10, 300) if i % 3 == 0 and i not in (100, 101, 102)]
    assert json.loads(r.out)["rows_deleted"] == len(deleted_de)
    gone = {100, 101, 102, *deleted_de}
    np.save(tmp_path / "gone.npy", x[sorted(gone)])
    for found in query_ids(index, tmp_path / "gone.npy", 10):
        assert not gone & set(found)
    for found in query_ids(index, tmp_path / "gone.npy", 10, "--where", "id < 400", "--expansion", "300"):
        assert not gone & set(found) and len(found) == 10
    assert run_vecx("query", index, "--like", "100").code == 3
    from vecx import api

    assert api.query(str(index), like=[98], where="id < 400", k=5).matching_rows == 400 - len(gone)
    liked = json.loads(ok("query", index, "--like", "98", "-k", 30).splitlines()[0])["results"]
    assert not gone & {r["id"] for r in liked} and 98 not in {r["id"] for r in liked}
    # Recall over the live rows, against their exact truth (the moved rows hold their new vectors).
    live_x = x[:SPLIT].copy()
    live_x[moved] = x[SPLIT: SPLIT + 10]
    live = np.ones(SPLIT, dtype=bool)
    live[sorted(gone)] = False
    expected = truth(live_x, data["q"], 10, live)
    # A wide search, so that what the graph misses does not hide what the tombstones do.
    assert recall(query_ids(index, d / "q.npy", 10, "--expansion", "300"), expected) >= 0.99
    ev = json.loads(ok("eval", index, "--queries", d / "q.npy", "--expansion", "300", "--json"))
    assert ev["rows"] == SPLIT - len(gone) and ev["stages"][-1]["recall@10"] >= 0.99
    # Deleting again changes nothing; compact drops the tombstones and keeps the answers.
    before = os.readlink(index)
    r = run_vecx("delete", index, "--id", "100", "--json")
    assert r.code == 0 and json.loads(r.out)["action"] == "unchanged" and os.readlink(index) == before
    r = run_vecx("compact", index, "--json")
    assert r.code == 0, r.stderr
    compacted = json.loads(r.out)
    assert compacted["rows"] == compacted["live_rows"] == SPLIT - len(gone) and compacted["segments"] == 1
    assert "deleted" not in manifest(index) and "tombstones.npy" not in os.listdir(index)
    assert recall(query_ids(index, d / "q.npy", 10, "--expansion", "300"), expected) >= 0.99
    rows_line = next(line for line in ok("info", index).splitlines() if line.startswith("rows"))
    assert rows_line.split() == ["rows", f"{SPLIT - len(gone):,}"]


def test_append_is_refused_for_other_chains_columns_and_missing_rescoring(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    index = tmp_path / "docs.vecx"
    ok("index", d / "base.i8.parquet", "-o", index, "--rescore-vectors", d / "base.parquet")
    before = os.readlink(index)
    # Another fitted state (fitted on other rows): other codes for the same vectors.
    ok("fit", d / "new.parquet", "--spec", "int8:mode=global", "-o", tmp_path / "other.state")
    ok("encode", d / "new.parquet", "--state", tmp_path / "other.state", "-o", tmp_path / "other.i8.parquet")
    r = run_vecx("index", tmp_path / "other.i8.parquet", "-o", index, "--append", "--rescore-vectors",
                 d / "new.parquet")
    assert r.code == 4 and "not by this index's chain" in r.stderr
    # Codes without the rescoring vectors the index keeps.
    r = run_vecx("index", d / "new.i8.parquet", "-o", index, "--append")
    assert r.code == 2 and "--rescore" in r.stderr
    # Other payload columns.
    other = write_source(tmp_path / "cols.src.parquet", data["x"][:5], [9001, 9002, 9003, 9004, 9005], ["en"] * 5)
    pq.write_table(pq.read_table(other).rename_columns(["id", "vector", "language"]), other)
    ok("import", other, "-o", tmp_path / "cols.parquet")
    r = run_vecx("index", tmp_path / "cols.parquet", "-o", index, "--append")
    assert r.code == 4 and "payload columns" in r.stderr
    assert os.readlink(index) == before
    assert sorted(os.listdir(index.parent / ".docs.vecx.d")) == [os.path.basename(before)]
    # Appending codes with their rescoring table works, and a second time is a no-op.
    r = run_vecx("index", d / "new.i8.parquet", "-o", index, "--append", "--rescore-vectors", d / "new.parquet")
    assert r.code == 0, r.stderr
    after = os.readlink(index)
    r = run_vecx("index", d / "new.i8.parquet", "-o", index, "--append", "--rescore-vectors", d / "new.parquet")
    assert r.code == 0 and "already in" in r.stderr and os.readlink(index) == after


def test_if_changed_skips_a_rebuild_from_the_same_input(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    index = tmp_path / "docs.vecx"
    ok("index", d / "base.i8.parquet", "-o", index, "--rescore-vectors", d / "base.parquet", "--if-changed")
    first = os.readlink(index)
    r = run_vecx("index", d / "base.i8.parquet", "-o", index, "--rescore-vectors", d / "base.parquet", "--if-changed")
    assert r.code == 0 and "nothing to do" in r.stderr and os.readlink(index) == first
    r = run_vecx("index", d / "all.i8.parquet", "-o", index, "--rescore-vectors", d / "all.parquet",
                 "--if-changed", "--json")
    assert r.code == 0 and os.readlink(index) != first and json.loads(r.out)["rows"] == N
    # After a delete the index no longer is what the input builds: it is rebuilt.
    ok("delete", index, "--id", "5")
    deleted = os.readlink(index)
    ok("index", d / "all.i8.parquet", "-o", index, "--rescore-vectors", d / "all.parquet", "--if-changed")
    assert os.readlink(index) != deleted and "deleted" not in manifest(index)


@pytest.mark.parametrize("spec,scan", [("pq:8x8", "exhaustive"), ("binarize:mode=rabitq", "graph")])
def test_scored_codes_across_segments_match_one_segment(data: dict, tmp_path: Path, spec: str, scan: str) -> None:
    d = data["dir"]
    state = tmp_path / "s.state"
    ok("fit", d / "base.parquet", "--spec", spec, "-o", state)
    for name in ("all", "base", "new"):
        ok("encode", d / f"{name}.parquet", "--state", state, "-o", tmp_path / f"{name}.c.parquet")
    one, grown = tmp_path / "one.vecx", tmp_path / "grown.vecx"
    ok("index", tmp_path / "all.c.parquet", "-o", one, "--scan", scan, "--deterministic")
    ok("index", tmp_path / "base.c.parquet", "-o", grown, "--scan", scan, "--deterministic")
    ok("index", d / "new.parquet", "-o", grown, "--append")  # the imported vectors, encoded on the way in
    # An exhaustive scan over the codes is exact: the same answers, segments or not.
    a = ok("query", one, "--vector", d / "q.npy", "-k", 10, "--scan", "exhaustive")
    b = ok("query", grown, "--vector", d / "q.npy", "-k", 10, "--scan", "exhaustive")
    for x, y in zip(a.splitlines(), b.splitlines(), strict=True):
        rx, ry = json.loads(x)["results"], json.loads(y)["results"]
        assert [r["id"] for r in rx] == [r["id"] for r in ry]
        np.testing.assert_allclose([r["score"] for r in rx], [r["score"] for r in ry], rtol=1e-5, atol=1e-6)
    if scan == "graph":
        expected = truth(data["x"], data["q"], 10)
        assert recall(query_ids(grown, d / "q.npy"), expected) >= recall(query_ids(one, d / "q.npy"), expected) - 0.03
    ok("compact", grown)
    c = ok("query", grown, "--vector", d / "q.npy", "-k", 10, "--scan", "exhaustive")
    assert [[r["id"] for r in json.loads(x)["results"]] for x in c.splitlines()] == \
        [[r["id"] for r in json.loads(x)["results"]] for x in a.splitlines()]


def test_max_segments_merges_the_newest(data: dict, tmp_path: Path) -> None:
    d, x = data["dir"], data["x"]
    index = tmp_path / "docs.vecx"
    ok("index", d / "base.parquet", "-o", index, "--deterministic")
    for part in range(4):
        rows = slice(SPLIT + 150 * part, SPLIT + 150 * (part + 1))
        src = write_source(tmp_path / f"p{part}.src.parquet", x[rows], list(range(N))[rows], ["en"] * 150)
        ok("import", src, "-o", tmp_path / f"p{part}.parquet")
        r = run_vecx("index", tmp_path / f"p{part}.parquet", "-o", index, "--append", "--max-segments", "3",
                     "--no-auto-merge", "--json")
        assert r.code == 0, r.stderr
    segments = manifest(index)["segments"]
    assert len(segments) == 3 and segments[0]["rows"] == SPLIT and sum(s["rows"] for s in segments) == N
    assert segments[0]["prefix"] == "" and all(s["prefix"].startswith("seg") for s in segments[1:])
    # Every appended table is remembered: appending one again is a no-op.
    r = run_vecx("index", tmp_path / "p0.parquet", "-o", index, "--append")
    assert r.code == 0 and "already in" in r.stderr
    expected = truth(x, data["q"], 10)
    assert recall(query_ids(index, d / "q.npy", 10, "--expansion", "300"), expected) >= 0.99


def test_appends_merge_the_newest_segments_as_a_binary_counter(data: dict, tmp_path: Path) -> None:
    """Equal appends: segments pair up as the digits of a binary counter; the first segment is merged
    only once the appended rows outnumber it; --no-auto-merge keeps every append."""
    from vecx.indexes.segments import merge_run

    assert merge_run([1000]) == 0 and merge_run([1000, 10]) == 0
    assert merge_run([1000, 10, 10]) == 2 and merge_run([1000, 20, 10, 10]) == 3
    assert merge_run([1000, 20, 10]) == 0 and merge_run([30, 20, 10, 10]) == 4
    d, x = data["dir"], data["x"]
    merged, kept = tmp_path / "merged.vecx", tmp_path / "kept.vecx"
    for index in (merged, kept):
        ok("index", d / "base.parquet", "-o", index, "--deterministic")
    sizes = []
    for part in range(4):
        rows = slice(SPLIT + 150 * part, SPLIT + 150 * (part + 1))
        src = write_source(tmp_path / f"p{part}.src.parquet", x[rows], list(range(N))[rows], ["en"] * 150)
        ok("import", src, "-o", tmp_path / f"p{part}.parquet")
        ok("index", tmp_path / f"p{part}.parquet", "-o", merged, "--append")
        ok("index", tmp_path / f"p{part}.parquet", "-o", kept, "--append", "--no-auto-merge")
        sizes.append([s["rows"] for s in manifest(merged)["segments"]])
    assert sizes == [[SPLIT, 150], [SPLIT, 300], [SPLIT, 300, 150], [SPLIT, 600]]
    assert [s["rows"] for s in manifest(kept)["segments"]] == [SPLIT] + [150] * 4
    expected = truth(x, data["q"], 10)
    for index in (merged, kept):
        assert recall(query_ids(index, d / "q.npy", 10, "--expansion", "300"), expected) >= 0.99
    r = run_vecx("index", d / "base.parquet", "-o", tmp_path / "x.vecx", "--no-auto-merge")
    assert r.code == 2 and "--append" in r.stderr


def test_string_ids_multi_vector_rescoring_and_first_stages(tmp_path: Path) -> None:
    """Token-set indexes (muvera codes + exact MaxSim over stored tokens) grow and shrink too."""
    rng = np.random.default_rng(3)
    docs = []
    for i in range(400):
        n = int(rng.integers(2, 6))
        docs.append({"id": f"d{i}", "vector": rng.standard_normal((n, 16)).round(4).tolist()})
    for name, part in (("base", docs[:300]), ("new", docs[300:])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in part))
        ok("import", tmp_path / f"{name}.jsonl", "--multi", "-o", tmp_path / f"{name}.mv.parquet")
    ok("encode", tmp_path / "base.mv.parquet", "--spec", "muvera:ksim=3:reps=4", "-o", tmp_path / "base.fde.parquet")
    index = tmp_path / "mv.vecx"
    ok("index", tmp_path / "base.fde.parquet", "-o", index, "--rescore-vectors", tmp_path / "base.mv.parquet")
    ok("index", tmp_path / "new.mv.parquet", "-o", index, "--append")  # token sets: encoded and stored as they come
    ok("delete", index, "--id", "d301")
    query = np.asarray(docs[350]["vector"], dtype=np.float32)
    np.save(tmp_path / "q.npy", query)
    for stage in ("fde", "mean", "both"):
        out = ok("query", index, "--multi-vector", tmp_path / "q.npy", "-k", 5, "--first-stage", stage,
                 "--oversample", "40")
        results = json.loads(out)["results"]
        assert results[0]["id"] == "d350" and "d301" not in {r["id"] for r in results}
    liked = json.loads(ok("query", index, "--like", "d350", "-k", 5))["results"]
    assert "d350" not in {r["id"] for r in liked} and "d301" not in {r["id"] for r in liked}
    ok("compact", index)
    out = ok("query", index, "--multi-vector", tmp_path / "q.npy", "-k", 5, "--oversample", "40")
    assert json.loads(out)["results"][0]["id"] == "d350"


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["segments"][1].update(prefix="../x-"), "segments[1].prefix"),
    (lambda m: m["segments"][1].update(rows=m["segments"][1]["rows"] + 1), "add up"),
    (lambda m: m.update(deleted={"file": "rows.parquet", "rows": 1}), "deleted.file"),
    (lambda m: m["deleted"].update(rows=10 ** 9), "deleted.rows"),
])
def test_damaged_segment_manifests_are_refused(data: dict, tmp_path: Path, edit, message: str) -> None:
    d = data["dir"]
    index = tmp_path / "docs.vecx"
    ok("index", d / "base.parquet", "-o", index)
    ok("index", d / "new.parquet", "-o", index, "--append")
    ok("delete", index, "--id", "3")
    path = index / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))
    r = run_vecx("query", index, "--like", "4")
    assert r.code == 3 and message in r.stderr


def test_a_reader_keeps_its_version_while_the_index_changes(data: dict, tmp_path: Path) -> None:
    from vecx.indexes.search import Searcher

    d = data["dir"]
    index = tmp_path / "docs.vecx"
    ok("index", d / "base.parquet", "-o", index)
    old = Searcher(str(index))
    try:
        ok("index", d / "new.parquet", "-o", index, "--append")
        ok("delete", index, "--id", "7")
        ok("compact", index)
        row = old.row_of([7])  # the version this reader opened: id 7 is there, the appended rows are not
        assert old.rows == SPLIT and old.ids.ids(row) == [7]
        new = Searcher(str(index))
        try:
            assert new.rows == N - 1
            with pytest.raises(Exception, match="no item with id 7"):
                new.row_of([7])
        finally:
            new.close()
    finally:
        old.close()


def test_concatenated_parts_under_one_parts_metadata_are_refused(data: dict, tmp_path: Path) -> None:
    """Encoded parts glued together with pyarrow keep the first part's vecx metadata, which then
    describes other rows than the file holds: every command refuses the file instead of trusting it."""
    d = data["dir"]
    footer = pq.ParquetFile(d / "base.i8.parquet").metadata.metadata
    glued = pa.concat_tables([pq.read_table(d / "base.i8.parquet"), pq.read_table(d / "new.i8.parquet")])
    pq.write_table(glued.replace_schema_metadata({k: v for k, v in footer.items() if k.startswith(b"vecx")}),
                   tmp_path / "glued.parquet")
    for args in (("index", tmp_path / "glued.parquet", "-o", tmp_path / "glued.vecx"),
                 ("encode", tmp_path / "glued.parquet", "-o", tmp_path / "x.parquet", "--spec", "f16"),
                 ("info", tmp_path / "glued.parquet")):
        r = run_vecx(*map(str, args))
        assert r.code == 3 and f"holds {N:,} rows, its vecx metadata says {SPLIT:,}" in r.stderr
    assert not (tmp_path / "glued.vecx").exists() and not (tmp_path / "x.parquet").exists()


def test_stacked_views_read_what_the_concatenation_holds() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from vecx.indexes.segments import Stacked

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.data())
    def check(sizes: list[int], data) -> None:
        rng = np.random.default_rng(sum(sizes))
        parts = [rng.standard_normal((n, 3)).astype(np.float32) for n in sizes]
        whole, view = np.concatenate(parts), Stacked(parts)
        total = len(whole)
        rows = np.asarray(data.draw(st.lists(st.integers(0, total - 1), max_size=12)), dtype=np.int64)
        np.testing.assert_array_equal(view[rows], whole[rows])
        np.testing.assert_array_equal(view[np.sort(rows)], whole[np.sort(rows)])
        if len(rows) >= 2:
            np.testing.assert_array_equal(view[rows[: len(rows) // 2 * 2].reshape(2, -1)],
                                          whole[rows[: len(rows) // 2 * 2].reshape(2, -1)])
        lo, hi = sorted(data.draw(st.lists(st.integers(0, total + 2), min_size=2, max_size=2)))
        np.testing.assert_array_equal(view[lo:hi], whole[lo:hi])

    check()


def test_segment_search_merges_by_distance_whatever_segment_holds_the_nearest_rows() -> None:
    """A small segment that holds all of a query's nearest rows gives them all, single query and batch."""
    from usearch.index import Index

    from vecx.indexes.graph import GraphSet, search_graph

    rng = np.random.default_rng(5)
    big = rng.standard_normal((4000, 16)).astype(np.float32)
    centre = rng.standard_normal(16).astype(np.float32)
    small = centre + 0.01 * rng.standard_normal((200, 16)).astype(np.float32)  # all near the first query
    q = np.stack([centre, big[7] + 0.01]).astype(np.float32)
    graphs = []
    for start, x in ((0, big), (len(big), small)):
        g = Index(ndim=16, metric="l2sq", dtype="f32")
        g.add(np.arange(start, start + len(x)), x)
        graphs.append(g)
    both, count = np.concatenate([big, small]), 20
    exact = np.argsort(((both[None, :, :] - q[:, None, :]) ** 2).sum(-1), axis=1, kind="stable")[:, :count]
    for which in ([0], [1], [0, 1]):
        keys, dist = search_graph(GraphSet(graphs), q[which], count, None, len(both))
        for found, expected in zip(keys, exact[which], strict=True):
            assert len(set(found.tolist()) & set(expected.tolist())) >= count - 1
        assert (np.diff(dist, axis=1) >= 0).all()  # merged nearest first
    keys, _ = search_graph(GraphSet(graphs), q[:1], count, None, len(both))
    assert (keys[0] >= len(big)).all()


