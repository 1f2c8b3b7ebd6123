"""vecx from Python: chains on arrays, indexes from arrays, searches returning arrays, and the
file-to-file functions taking arrays; the README's example runs as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, ok, run_vecx

import vecx
from vecx.errors import SpecError, UsageError
from vecx.indexes.truth import exact_topk

README = Path(__file__).resolve().parents[1] / "README.md"


def stored_codes(path: Path) -> np.ndarray:
    """The bytes of a table's code column, row after row (fixed-size binary PQ codes)."""
    return np.frombuffer(b"".join(pq.read_table(path)["vector"].to_pylist()), dtype=np.uint8)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return make_vectors(1500, 32, seed=41)


def test_import_vecx_loads_neither_numpy_nor_pyarrow() -> None:
    code = ("import sys, vecx; heavy = [m for m in ('numpy', 'pyarrow') if m in sys.modules]; "
            "print(heavy); vecx.Chain; print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert out[0] == "[]"


def test_a_chain_fitted_on_an_array_encodes_as_the_command_line_does(x: np.ndarray, tmp_path: Path) -> None:
    chain = vecx.Chain.from_spec("pca:16,pq:4x8", seed=3)
    assert not chain.is_fitted and repr(chain).endswith("unfitted)")
    with pytest.raises(UsageError, match="not fitted"):
        chain.encode(x)
    assert chain.fit(x) is chain and chain.is_fitted and chain.dim == 32
    codes = chain.encode(x)
    assert codes.shape == (len(x), 4) and codes.dtype == np.uint8
    # The same rows through the command line: the same fitted state, the same codes.
    np.save(tmp_path / "x.npy", x)
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    ok("encode", tmp_path / "x.parquet", "--spec", "pca:16,pq:4x8", "--seed", "3", "-o", tmp_path / "cli.parquet")
    cli = stored_codes(tmp_path / "cli.parquet")
    np.testing.assert_array_equal(codes.ravel(), cli)
    # Its saved state feeds 'vecx encode --state', and loads back.
    chain.save_state(str(tmp_path / "pq.state"))
    ok("encode", tmp_path / "x.parquet", "--state", tmp_path / "pq.state", "-o", tmp_path / "st.parquet")
    st = stored_codes(tmp_path / "st.parquet")
    np.testing.assert_array_equal(st, cli)
    loaded = vecx.Chain.load_state(str(tmp_path / "pq.state"))
    np.testing.assert_array_equal(loaded.encode(x[:10]), codes[:10])
    assert loaded.spec == chain.spec and loaded.output == {"dim": 4, "dtype": "codes", "bytes_per_vector": 4}


def test_bad_specs_and_arrays_are_refused_at_once(x: np.ndarray) -> None:
    for bad in ("nosuchcodec", "int8:mode=fancy", "truncate:0"):
        with pytest.raises(SpecError):
            vecx.Chain.from_spec(bad)
    with pytest.raises(UsageError, match="metric"):
        vecx.Chain.from_spec("int8", metric="manhattan")
    bad = x[:100].copy()
    bad[7, 3] = np.nan
    with pytest.raises(vecx.DataError, match="row 7"):
        vecx.Chain.from_spec("int8").fit(bad)


def test_an_index_built_from_an_array_answers_python_and_the_command_line(x: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "docs.vecx"
    index = vecx.build_index(x, str(path), spec="int8:mode=global", rescore=True, expansion_search=128)
    q = make_vectors(20, 32, seed=42)
    with index:
        assert len(index) == len(x) and index.dim == 32 and index.spec.startswith("int8:mode=global")
        hits = index.search(q, k=10)
        assert hits.ids.shape == hits.scores.shape == (20, 10) and hits.ids.dtype == np.int64
        assert hits.found.all() and (np.diff(hits.scores, axis=1) <= 1e-6).all()
        top, _ = exact_topk(q, iter([(0, x)]), 10, "cosine")
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits.ids.tolist(), top.tolist(), strict=True)])
        assert recall >= 0.95
        ids, scores = index.search(q[0], k=3)  # one vector; a result unpacks as (ids, scores)
        assert ids.shape == (1, 3)
        like = index.like([5], k=4)
        assert 5 not in like.ids[0].tolist()
    # The command line reads the same index and returns the same neighbours.
    np.save(tmp_path / "q.npy", q)
    out = ok("query", path, "--vector", tmp_path / "q.npy", "-k", 10)
    cli = [[r["id"] for r in json.loads(line)["results"]] for line in out.splitlines()]
    assert cli == hits.ids.tolist()


def test_a_table_with_string_ids_and_payload_filters_like_the_command_line(x: np.ndarray, tmp_path: Path) -> None:
    lang = ["en" if i % 4 else "de" for i in range(len(x))]
    table = pa.table({"id": [f"doc{i}" for i in range(len(x))],
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1]), "lang": lang})
    index = vecx.build_index(table, str(tmp_path / "t.vecx"))
    try:
        assert index.columns == ["lang"]
        hits = index.search(x[:5], k=6, where="lang = 'de'")
        assert hits.ids.dtype == object and hits.found.all()
        for row in index.lookup(hits.ids.ravel().tolist(), ["lang"]):
            assert row["lang"] == "de"
        few = index.search(x[:2], k=6, where="id = 'doc8' or id = 'doc12'")  # two rows match: k is 2
        assert few.ids.shape == (2, 2) and [set(row) for row in few.ids.tolist()] == [{"doc8", "doc12"}] * 2
    finally:
        index.close()
    with pytest.raises(UsageError, match="ids="):
        vecx.build_index(table, str(tmp_path / "u.vecx"), ids=list(range(len(x))))
    with pytest.raises(UsageError, match="connectivty"):
        vecx.build_index(x, str(tmp_path / "v.vecx"), connectivty=8)
    assert not (tmp_path / "v.vecx").exists()


def test_file_functions_take_arrays(x: np.ndarray, tmp_path: Path) -> None:
    """query(vector=ndarray) failed with 'truth value of an array is ambiguous'."""
    from vecx import api

    path = str(tmp_path / "a.vecx")
    vecx.build_index(x, path, rescore=True).close()
    q = x[:4] + 0.001
    result = vecx.query(path, vector=q, k=3)
    assert [entry["results"][0]["id"] for entry in result.to_json()["queries"]] == [0, 1, 2, 3]
    report = vecx.evaluate(path, q, k=3)
    assert report.to_json()["stages"][-1]["recall@3"] == 1.0
    truth = vecx.truth(x, q, str(tmp_path / "truth.parquet"), k=3)
    assert truth.to_json()["queries"] == 4
    assert pq.read_table(tmp_path / "truth.parquet")["ids"].to_pylist()[0][0] == 0
    encoded = api.encode_file(x, str(tmp_path / "i8.parquet"), "int8")
    assert encoded.rows == len(x) and not list(tmp_path.glob("vecx-arrays-*"))
    # Ground truth as row numbers (an ndarray here, a .npy on the command line), as 'vecx bench' takes it.
    top, _ = exact_topk(q, iter([(0, x)]), 3, "cosine")
    assert vecx.evaluate(path, q, truth_path=top, k=3).to_json()["stages"][0]["recall@3"] == 1.0
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "t.npy", top)
    out = json.loads(ok("eval", path, "--queries", tmp_path / "q.npy", "--truth", tmp_path / "t.npy", "-k", 3,
                        "--json"))
    assert out["truth"].endswith("t.npy") and out["stages"][0]["recall@3"] == 1.0
    np.save(tmp_path / "bad.npy", top + len(x))
    r = run_vecx("eval", path, "--queries", tmp_path / "q.npy", "--truth", tmp_path / "bad.npy", "-k", 3)
    assert r.code == 4 and "names base row" in r.stderr


def test_the_readme_example_runs(tmp_path: Path) -> None:
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "README: the Python example is missing"
    code = block.group(1)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.splitlines()
    # What the example's comments say it prints is what it prints.
    shown = [c.strip() for c in re.findall(r"print\(.*?\)\s+#(.*)", code)]
    assert out == shown


def test_query_reads_stdin_as_import_does(x: np.ndarray, tmp_path: Path) -> None:
    """``--vector -`` takes JSONL, and also a .npy, an Arrow stream (vecx's own -o -) and CSV."""
    import io

    path = str(tmp_path / "s.vecx")
    vecx.build_index(x, path, rescore=True).close()
    q = x[:3] + 0.001
    buffer = io.BytesIO()
    np.save(buffer, q)
    np.save(tmp_path / "q.npy", q)
    arrow = run_vecx("import", tmp_path / "q.npy", "-o", "-").stdout
    forms = {"npy": buffer.getvalue(), "arrow": arrow,
             "jsonl": "".join(json.dumps(row) + "\n" for row in q.tolist()).encode(),
             "csv": "".join(",".join(map(repr, row)) + "\n" for row in q.tolist()).encode()}
    for name, data in forms.items():
        r = run_vecx("query", path, "--vector", "-", "-k", 1, stdin=data)
        assert r.code == 0, (name, r.stderr)
        assert [json.loads(line)["results"][0]["id"] for line in r.out.splitlines()] == [0, 1, 2], name


def test_search_options_are_checked(x: np.ndarray, tmp_path: Path) -> None:
    with vecx.build_index(x[:200], str(tmp_path / "c.vecx")) as index:
        for call in (lambda: index.search(x[:1], k=0), lambda: index.like([1], k=0),
                     lambda: index.search(x[:1], oversample=0), lambda: index.search(x[:1, :5])):
            with pytest.raises(vecx.VecxError):
                call()


def test_reports_print_and_compare_as_dataclasses_do() -> None:
    """Every report shares its base's __repr__ and __eq__ (generated ones cost each command's start):
    the same text and equality as the dataclass's own would give, and unhashable like it."""
    import dataclasses

    from vecx import api

    reports = [kind for kind in vars(api).values()
               if isinstance(kind, type) and issubclass(kind, api.Report) and kind is not api.Report]
    assert len(reports) >= 13
    for kind in reports:
        fields = dataclasses.fields(kind)
        twin = dataclasses.make_dataclass(kind.__name__, [(f.name, object) for f in fields])
        values = {f.name: [f.name, len(f.name)] if i % 2 else f"{f.name}'s" for i, f in enumerate(fields)}
        got = kind(**values)
        assert repr(got) == repr(twin(**values))
        assert got == kind(**values)
        assert got != kind(**{**values, fields[-1].name: None})
        assert got != twin(**values)  # a report equals only its own kind
        nan = float("nan")  # fields compared as tuples are: the same object is equal to itself
        assert kind(**{**values, fields[0].name: nan}) == kind(**{**values, fields[0].name: nan})
        with pytest.raises(TypeError):
            hash(got)
