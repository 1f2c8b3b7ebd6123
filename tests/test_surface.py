"""The user surface: the embedding model recorded with the vectors, live progress, the package's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import make_vectors, ok, run_vecx

ROOT = Path(__file__).resolve().parents[1]
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def test_the_model_travels_from_import_to_the_index(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", make_vectors(300, 16, seed=7))
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "plain.parquet")
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet", "--model", MODEL)
    info = json.loads(ok("info", tmp_path / "x.parquet", "--json"))["vecx"]
    plain = json.loads(ok("info", tmp_path / "plain.parquet", "--json"))["vecx"]
    assert info["source"]["model"] == MODEL and "model" not in plain["source"]
    assert info["fingerprint"] == plain["fingerprint"]  # the same vectors, whoever names their model
    ok("encode", tmp_path / "x.parquet", "--spec", "int8:mode=global", "-o", tmp_path / "i8.parquet")
    assert json.loads(ok("info", tmp_path / "i8.parquet", "--json"))["vecx"]["source"]["model"] == MODEL
    assert f"model        {MODEL}" in ok("info", tmp_path / "i8.parquet")
    ok("index", tmp_path / "i8.parquet", "-o", tmp_path / "docs.vecx")
    assert json.loads(ok("info", tmp_path / "docs.vecx", "--json"))["vecx"]["table"]["model"] == MODEL
    assert MODEL in ok("info", tmp_path / "docs.vecx")
    # A table made by one model is not relabelled as another's.
    r = run_vecx("encode", tmp_path / "x.parquet", "--spec", "int8", "-o", tmp_path / "o.parquet", "--model", "other")
    assert r.code == 4 and MODEL in r.stderr and not (tmp_path / "o.parquet").exists()
    # Naming the model a table does not name yet is recorded from then on.
    ok("encode", tmp_path / "plain.parquet", "--spec", "int8", "-o", tmp_path / "p8.parquet", "--model", "m2")
    assert json.loads(ok("info", tmp_path / "p8.parquet", "--json"))["vecx"]["source"]["model"] == "m2"


def test_the_package_carries_its_license_changelog_and_one_version() -> None:
    import os
    import sys

    import pytest

    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    import vecx

    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "vecx.__version__"}
    assert vecx.__version__.count(".") == 2
    man = project["tool"]["setuptools"]["data-files"]["share/man/man1"]
    assert man == ["man/*.1"] and list((ROOT / "man").glob("*.1"))
    if "site-packages" in vecx.__file__:  # installed (make test installs it): 'man vecx-index' finds its page
        assert os.path.isfile(os.path.join(sys.prefix, "share", "man", "man1", "vecx-index.1"))


def test_a_step_without_a_row_count_shows_its_running_time(monkeypatch) -> None:
    """A fit (minutes for OPQ) ticks its clock on the terminal instead of showing '0 rows' frozen."""
    import io
    import re
    import sys
    import time

    from vecx.cli.common import Bar

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = Bar(quiet=False)
    bar.enabled = True  # as on a terminal
    bar.start(None, "fitting pq on 100,000 rows")
    time.sleep(1.3)
    bar.close()
    shown = err.getvalue()
    assert "vecx: fitting pq on 100,000 rows ... 00:01" in shown
    assert not re.search(r"(?<![\d,])0 rows", shown)  # no count stuck at zero
    settled = len(err.getvalue())
    time.sleep(0.7)
    assert len(err.getvalue()) == settled  # the clock stopped with the step


def test_where_takes_like_between_not_in_and_quoted_names() -> None:
    import fnmatch

    import pyarrow as pa
    import pytest

    from vecx.errors import UsageError
    from vecx.indexes.where import columns_of, evaluate

    titles = ["The Road", "the end", "Theory", "A Tale", None, "The_X"]
    table = pa.table({"id": list(range(6)), "title": titles, "year": [1990, 1995, 1999, 2000, 1985, 1999],
                      "first name": ["Marie", "Pierre", "Marie", "Ada", "Lise", "Ada"]})

    def rows(expr: str) -> list[int]:
        return np.flatnonzero(evaluate(expr, table)).tolist()

    def like(pattern: str, ignore_case: bool = False) -> list[int]:  # SQL LIKE as a reference
        glob = pattern.replace("*", "[*]").replace("?", "[?]").replace("%", "*").replace("_", "?")
        return [i for i, t in enumerate(titles) if t is not None and
                fnmatch.fnmatchcase(t.lower() if ignore_case else t, glob.lower() if ignore_case else glob)]

    assert rows("title like 'The %'") == like("The %") == [0]
    assert rows("title ilike 'the%'") == like("the%", True) == [0, 1, 2, 5]
    assert rows("title not like 'The%'") == [1, 3]  # a null title matches neither
    assert rows("year between 1990 and 1999") == [0, 1, 2, 5]
    assert rows("year not between 1990 and 1999 and year > 1980") == [3, 4]
    assert rows("year not in (1999, 1990)") == [1, 3, 4]
    assert rows("`first name` = 'Ada' and year between 1999 and 2000") == [3, 5]
    assert columns_of("`first name` = 'Ada' and title like 'x%' or year between 1 and 2") == \
        ["first name", "title", "year"]
    for bad, message in (("year like '19%'", "LIKE compares text"), ("title between 1 and 2", "cannot compare"),
                         ("year between 1990 or 1999", "expected AND"), ("year not = 3", "after 'year' NOT"),
                         ("title like 3", "quoted pattern")):
        with pytest.raises(UsageError, match=message):
            evaluate(bad, table)


def test_old_option_names_still_work_and_say_the_new_ones(tmp_path: Path) -> None:
    """One name per meaning: --rescore-vectors TABLE (index), --oversample X (query, eval, bench),
    --record (query records), -o (bench's Markdown); the old names are hidden aliases that warn."""
    x = make_vectors(400, 16, seed=8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", x[:3])
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    r = run_vecx("index", tmp_path / "x.parquet", "-o", tmp_path / "old.vecx", "--rescore", tmp_path / "x.parquet")
    assert r.code == 0 and "--rescore is now --rescore-vectors" in r.stderr
    new = run_vecx("index", tmp_path / "x.parquet", "-o", tmp_path / "new.vecx", "--rescore-vectors",
                   tmp_path / "x.parquet")
    assert new.code == 0 and new.stderr == ""
    for index in ("old.vecx", "new.vecx"):
        assert json.loads(ok("info", tmp_path / index, "--json"))["vecx"]["rescore"] is not None
    old_q = run_vecx("query", tmp_path / "new.vecx", "--vector", tmp_path / "q.npy", "--rescore", "4")
    new_q = run_vecx("query", tmp_path / "new.vecx", "--vector", tmp_path / "q.npy", "--oversample", "4")
    assert old_q.out == new_q.out and "--rescore is now --oversample" in old_q.stderr and new_q.stderr == ""
    both = run_vecx("query", tmp_path / "new.vecx", "--vector", tmp_path / "q.npy", "--oversample", "4",
                    "--rescore", "4")
    assert both.code == 2 and "not both" in both.stderr
    r = run_vecx("eval", tmp_path / "new.vecx", "--queries", tmp_path / "q.npy", "--rescore", "2", "--json")
    assert r.code == 0 and "--rescore is now --oversample" in r.stderr
    help_text = run_vecx("query", "--help").out
    assert "--oversample" in help_text and "--record" in help_text and "--rescore " not in help_text


def test_json_is_format_json_everywhere_and_queries_are_one_option(tmp_path: Path) -> None:
    """--json prints JSON on stdout in every command (in query and vsa explain, short for --format
    json); the old ``--json RECORD`` still queries by the record, with a note. The query set of
    truth, bench and eval is --queries FILE; truth's and bench's old second argument still works."""
    x = make_vectors(300, 16, seed=21)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", x[:4])
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    ok("index", tmp_path / "x.parquet", "-o", tmp_path / "x.vecx")
    as_json = json.loads(ok("query", tmp_path / "x.vecx", "--vector", tmp_path / "q.npy", "-k", "3", "--json"))
    assert as_json == json.loads(ok("query", tmp_path / "x.vecx", "--vector", tmp_path / "q.npy", "-k", "3",
                                    "--format", "json"))
    assert [q["results"][0]["id"] for q in as_json] == [0, 1, 2, 3]
    r = run_vecx("query", tmp_path / "x.vecx", "--vector", tmp_path / "q.npy", "--json", "--format", "csv")
    assert r.code == 2 and "--json is short for --format json" in r.stderr
    records = ROOT / "tests" / "data" / "nobel-300" / "records.jsonl"
    ok("vsa", records, "-o", tmp_path / "n.parquet", "--dim", "256")
    ok("index", tmp_path / "n.parquet", "-o", tmp_path / "n.vecx")
    record = '{"gender": "female"}'
    new = run_vecx("query", tmp_path / "n.vecx", "--record", record, "--json")
    old = run_vecx("query", tmp_path / "n.vecx", "--json", record, "--format", "json")
    assert new.code == old.code == 0 and new.stderr == "" and "--json RECORD is now --record RECORD" in old.stderr
    assert json.loads(new.out) == json.loads(old.out)
    explained = json.loads(ok("vsa", "explain", tmp_path / "n.vecx", "--like", "6", "--record", record, "--json"))
    assert explained[0]["like"] == "6" or explained[0]["like"] == 6
    # Queries: --queries in truth, bench and eval; the old positional spelling warns and agrees.
    ok("truth", tmp_path / "x.parquet", "--queries", tmp_path / "q.npy", "-o", tmp_path / "gt.parquet", "-k", "5")
    r = run_vecx("truth", tmp_path / "x.parquet", tmp_path / "q.npy", "-o", tmp_path / "gt_old.parquet", "-k", "5")
    assert r.code == 0 and "now --queries FILE" in r.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "gt.parquet").equals(pq.read_table(tmp_path / "gt_old.parquet"))
    r = run_vecx("truth", tmp_path / "x.parquet", tmp_path / "q.npy", "--queries", tmp_path / "q.npy",
                 "-o", tmp_path / "gt2.parquet")
    assert r.code == 2 and "give the queries once" in r.stderr and not (tmp_path / "gt2.parquet").exists()
    r = run_vecx("truth", tmp_path / "x.parquet", "-o", tmp_path / "gt2.parquet")
    assert r.code == 2 and "no queries: give --queries FILE" in r.stderr
    bench = json.loads(ok("bench", tmp_path / "x.parquet", "--queries", tmp_path / "q.npy", "--spec", "f16",
                          "--truth", tmp_path / "gt.parquet", "-k", "5", "--json", "-q"))
    assert bench["queries"]["rows"] == 4 and bench["rows"][0]["recall"]["x1"] == 1.0


def test_info_describes_a_state_file_and_a_records_index_says_what_it_takes(tmp_path: Path) -> None:
    x = make_vectors(500, 16, seed=9)
    np.save(tmp_path / "x.npy", x)
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    ok("fit", tmp_path / "x.parquet", "--spec", "pca:8,int8", "-o", tmp_path / "p.state")
    text = ok("info", tmp_path / "p.state")
    assert "fitted state" in text and "16 x float32 cosine" in text and "1. pca:8" in text and "2. int8" in text
    meta = json.loads(ok("info", tmp_path / "p.state", "--json"))
    assert meta["format"] == "state" and meta["vecx"]["spec"].startswith("pca:8")
    records = ROOT / "tests" / "data" / "nobel-300" / "records.jsonl"
    ok("vsa", records, "-o", tmp_path / "n.parquet", "--dim", "256")
    ok("index", tmp_path / "n.parquet", "-o", tmp_path / "n.vecx")
    np.save(tmp_path / "q.npy", np.ones((1, 256), dtype=np.float32))
    r = run_vecx("query", tmp_path / "n.vecx", "--vector", tmp_path / "q.npy")
    assert r.code == 2 and "index of JSON records" in r.stderr and "--record" in r.stderr


def test_an_ann_benchmarks_hdf5_file_feeds_import_eval_and_bench(tmp_path: Path) -> None:
    h5py = __import__("pytest").importorskip("h5py", reason="h5py reads HDF5 (the test extra installs it)")
    from vecx.indexes.truth import exact_topk

    train, test = make_vectors(600, 16, seed=12), make_vectors(25, 16, seed=13)
    neighbors, _ = exact_topk(test, iter([(0, train)]), 20, "cosine")
    path = tmp_path / "set-angular.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs["distance"] = "angular"
        f.create_dataset("train", data=train)
        f.create_dataset("test", data=test)
        f.create_dataset("neighbors", data=neighbors.astype(np.int32))
        f.create_dataset("distances", data=np.zeros(neighbors.shape, dtype=np.float32))
    info = json.loads(ok("import", path, "-o", tmp_path / "train.parquet", "--json"))
    assert info["rows"] == 600 and info["dim"] == 16
    meta = json.loads(ok("info", tmp_path / "train.parquet", "--json"))["vecx"]
    assert meta["source"]["metric"] == "cosine"  # from the file's distance attribute
    assert json.loads(ok("import", path, "-o", tmp_path / "test.parquet", "--column", "test", "--json"))["rows"] == 25
    ok("index", tmp_path / "train.parquet", "-o", tmp_path / "h.vecx", "--rescore-vectors", tmp_path / "train.parquet")
    ev = json.loads(ok("eval", tmp_path / "h.vecx", "--queries", path, "--truth", path, "--json"))
    assert ev["queries"] == 25 and ev["truth"] == str(path) and ev["stages"][-1]["recall@10"] >= 0.95
    bench = json.loads(ok("bench", path, "--spec", "f16", "--json", "-q"))
    assert bench["queries"]["rows"] == 25 and bench["base"]["rows"] == 600 and bench["truth"] == str(path)
    r = run_vecx("import", path, "-o", tmp_path / "x.parquet", "--column", "nope")
    assert r.code == 3 and "no dataset 'nope'" in r.stderr and "train" in r.stderr


def _st_quantize(x: np.ndarray, precision: str, ranges: np.ndarray) -> np.ndarray:
    """sentence-transformers' quantize_embeddings, as its documentation and source define it."""
    if precision == "ubinary":
        return np.packbits(x > 0, axis=1)
    if precision == "binary":
        return (np.packbits(x > 0, axis=1).astype(np.int16) - 128).astype(np.int8)
    starts, steps = ranges[0, :], (ranges[1, :] - ranges[0, :]) / 255
    if precision == "uint8":
        return ((x - starts) / steps).astype(np.uint8)
    return ((x - starts) / steps - 128).astype(np.int8)


def test_pre_quantized_embeddings_import_as_codes_and_answer_code_queries(tmp_path: Path) -> None:
    """Codes made elsewhere import as the vecx codec that writes the same bytes; queries given as
    such codes find what float queries find; plain 8-bit numbers are not silently taken as floats."""
    import pyarrow.parquet as pq

    import vecx

    x = make_vectors(1500, 64, seed=31)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ranges = np.vstack((x.min(axis=0), x.max(axis=0)))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "ranges.npy", ranges)
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    same_bytes = {"ubinary": "binarize:mode=sign", "binary": "binarize:mode=sign",
                  "int8": "int8:rounding=truncate", "uint8": "int8:rounding=floor"}
    for precision, spec in same_bytes.items():
        codes = _st_quantize(x, precision, ranges)
        np.save(tmp_path / f"{precision}.npy", codes)
        extra = ["--ranges", tmp_path / "ranges.npy"] if precision in ("int8", "uint8") else []
        report = json.loads(ok("import", tmp_path / f"{precision}.npy", "-o", tmp_path / f"{precision}.parquet",
                               "--codes", precision, *extra, "--json"))
        assert report["dim"] == 64 and "notes" not in report
        ok("encode", tmp_path / "x.parquet", "--spec", spec, "-o", tmp_path / f"{precision}.enc.parquet")
        imported = pq.read_table(tmp_path / f"{precision}.parquet").column("vector")
        assert imported.equals(pq.read_table(tmp_path / f"{precision}.enc.parquet").column("vector")), precision
        if precision == "uint8":  # stored shifted by -128, as int8
            stored = np.asarray(imported.combine_chunks().flatten(), dtype=np.int16).reshape(codes.shape)
            np.testing.assert_array_equal(stored + 128, codes)
        assert f"(imported as {precision} codes)" in ok("info", tmp_path / f"{precision}.parquet")
        ok("index", tmp_path / f"{precision}.parquet", "-o", tmp_path / f"{precision}.vecx")
        np.save(tmp_path / "qc.npy", codes[:6])
        np.save(tmp_path / "qf.npy", x[:6])
        by_codes = json.loads(ok("query", tmp_path / f"{precision}.vecx", "--vector", tmp_path / "qc.npy", "--json"))
        by_floats = json.loads(ok("query", tmp_path / f"{precision}.vecx", "--vector", tmp_path / "qf.npy", "--json"))
        assert [q["results"][0]["id"] for q in by_codes] == list(range(6)), precision
        ids_codes = [[r["id"] for r in q["results"]] for q in by_codes]
        ids_floats = [[r["id"] for r in q["results"]] for q in by_floats]
        if "binary" in precision:  # sign bits: a query's code is exactly what the float query encodes to
            assert ids_codes == ids_floats
        else:  # scalar codes: the decoded level stands for the float query (ties of near rows may swap)
            assert all(len(set(a) & set(b)) >= 8 for a, b in zip(ids_codes, ids_floats, strict=True)), precision
        if precision == "ubinary":  # the Python API takes the code rows too
            found = vecx.open_index(tmp_path / f"{precision}.vecx").search(codes[:6], k=1)
            assert found.ids[:, 0].tolist() == list(range(6))
    # What cannot be codes, or lacks what decoding them needs, is refused before anything is written.
    for args, message in ((["int8.npy", "--codes", "int8"], "need the ranges"),
                          (["ubinary.npy", "--codes", "ubinary", "--dim", "50"], "hold 57..64 dimensions"),
                          (["x.npy", "--codes", "ubinary"], "values must be whole numbers in 0..255"),
                          (["ubinary.npy", "--ranges", "ranges.npy"], "give --codes PRECISION too"),
                          (["ubinary.npy", "--codes", "bits"], "not a kind of code")):
        r = run_vecx("import", tmp_path / args[0], *[tmp_path / a if a.endswith(".npy") else a for a in args[1:]],
                     "-o", tmp_path / "bad.parquet")
        assert r.code in (2, 3) and message in r.stderr and not (tmp_path / "bad.parquet").exists(), args
    # Plain 8-bit numbers still import as numbers, with a note that says how to import codes.
    r = run_vecx("import", tmp_path / "ubinary.npy", "-o", tmp_path / "numbers.parquet")
    assert r.code == 0 and "--codes ubinary|binary|int8|uint8" in r.stderr
    assert json.loads(ok("info", tmp_path / "numbers.parquet", "--json"))["vecx"]["vector"]["dim"] == 8
