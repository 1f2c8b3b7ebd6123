"""Faulty input of every kind ends in one clear error and a documented exit code, never an internal error.

Covers JSON payload schemas (unified over the whole input), payload names that would collide with
query result fields, values too large for float32 arithmetic, tampered ``vecx`` metadata, damaged
fitted state, empty vectors, binary garbage on stdin and a ground-truth file of the wrong kind.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, run_vecx, with_edited_metadata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def refused(r, code: int, out: Path | None, *messages: str) -> None:
    """A clean refusal: the exit code, the messages, no traceback or internal error, no output left."""
    assert r.code == code, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    for message in messages:
        assert message in r.stderr, r.stderr
    if out is not None:
        assert not out.exists()
        assert not list(out.parent.glob(f".{out.name}.tmp-*"))


def clean(r) -> None:
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr


def read(path: Path) -> pa.Table:
    return pq.read_table(path)


# ---- 1. JSON payload: one schema over the whole input ------------------------------------------
JSONL = (
    '{"id": 1, "vector": [1, 0], "tag": null, "n": 1, "obj": {"b": 2, "a": 1}}\n'
    '{"id": 2, "vector": [0, 1], "tag": "x", "n": 2.5, "late": 7, "obj": [1, 2]}\n'
    '{"id": 3, "vector": [1, 1], "never": null}\n'
)


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_jsonl_payload_schema_is_unified_over_every_line(tmp_path: Path, via: str) -> None:
    src = tmp_path / "x.jsonl"
    src.write_text(JSONL)
    out = tmp_path / "x.parquet"
    r = (run_vecx("import", src, "-o", out) if via == "file"
         else run_vecx("import", "-", "-o", out, stdin=JSONL.encode()))
    assert r.code == 0, r.stderr
    table = read(out)
    assert table["tag"].to_pylist() == [None, "x", None]  # null on line 1: kept, not dropped
    assert table["n"].to_pylist() == [1.0, 2.5, None]  # 2.5 after 1: a float column, not 2
    assert table.schema.field("n").type == pa.float64()
    assert table["late"].to_pylist() == [None, 7, None]  # first seen on line 2: kept
    assert table["obj"].to_pylist() == ['{"a":1,"b":2}', "[1,2]", None]
    assert table["never"].null_count == 3
    assert table.column_names[:2] == ["id", "vector"]


@pytest.mark.parametrize("second, kinds", [
    ('"two"', "is a string ('two'), but a number on line 1"),
    ('{"a": 1}', "is an object or array ({'a': 1}), but a number on line 1"),
    ("true", "is a boolean (True), but a number on line 1"),
])
@pytest.mark.parametrize("via", ["file", "stdin"])
def test_jsonl_payload_type_conflict_is_refused_naming_line_and_field(tmp_path: Path, second: str, kinds: str,
                                                                      via: str) -> None:
    text = ('{"vector": [1, 0], "f": 1}\n{"vector": [0, 1], "f": null}\n'
            f'{{"vector": [0, 1]}}\n{{"vector": [1, 1], "f": {second}}}\n')
    src = tmp_path / "x.jsonl"
    src.write_text(text)
    out = tmp_path / "x.parquet"
    r = (run_vecx("import", src, "-o", out) if via == "file"
         else run_vecx("import", "-", "-o", out, stdin=text.encode()))
    refused(r, 3, out, "x.jsonl" if via == "file" else "<stdin>", "line 4", "field 'f'", kinds)


def test_vsa_keep_fields_are_unified_and_conflicts_refused(tmp_path: Path) -> None:
    records = ['{"id": "a", "year": 1903, "note": null}', '{"id": "b", "year": 1911.5, "note": {"k": 1}}',
               '{"id": "c", "note": "x"}']
    src = tmp_path / "r.jsonl"
    src.write_text("\n".join(records[:2]) + "\n" + '{"id": "c"}\n')
    out = tmp_path / "r.parquet"
    r = run_vecx("vsa", src, "-o", out, "--dim", "64", "--keep", "year,note")
    assert r.code == 0, r.stderr
    table = read(out)
    assert table["year"].to_pylist() == [1903.0, 1911.5, None]
    assert table["note"].to_pylist() == [None, '{"k":1}', None]
    src.write_text("\n".join(records) + "\n")
    out.unlink()
    r = run_vecx("vsa", "-", "-o", out, "--dim", "64", "--keep", "note", stdin=src.read_bytes())
    refused(r, 3, out, "<stdin>", "line 3", "field 'note'")


# ---- 2. payload names that collide with query result fields -------------------------------------
@pytest.mark.parametrize("name", ["score", "rank", "query", "like", "query_id"])
@pytest.mark.parametrize("fmt", ["parquet", "arrow", "jsonl", "vsa-keep"])
def test_payload_column_named_like_a_result_field_is_refused(tmp_path: Path, name: str, fmt: str) -> None:
    out = tmp_path / "out.parquet"
    if fmt in ("parquet", "arrow"):
        table = pa.table({"vector": [[1.0, 0.0], [0.0, 1.0]], name: [1, 2]})
        src = tmp_path / f"x.{fmt}"
        if fmt == "parquet":
            pq.write_table(table, src)
        else:
            with ipc.new_file(src, table.schema) as writer:
                writer.write_table(table)
        r = run_vecx("import", src, "-o", out)
    elif fmt == "jsonl":
        src = tmp_path / "x.jsonl"
        src.write_text(f'{{"vector": [1, 0]}}\n{{"vector": [0, 1], "{name}": 0.5}}\n')
        r = run_vecx("import", src, "-o", out)
    else:
        src = tmp_path / "x.jsonl"
        src.write_text(f'{{"a": 1, "{name}": "x"}}\n{{"a": 2, "{name}": "y"}}\n')
        r = run_vecx("vsa", src, "-o", out, "--dim", "64", "--keep", name)
    refused(r, 3, out, src.name, f"payload column {name!r}", "rename")


def test_payload_column_named_id_beside_another_id_column_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "x.parquet"
    pq.write_table(pa.table({"vector": [[1.0, 0.0], [0.0, 1.0]], "key": [7, 9], "id": ["a", "b"]}), src)
    out = tmp_path / "out.parquet"
    refused(run_vecx("import", src, "-o", out, "--id-column", "key"), 3, out, "payload column 'id'", "rename")


# ---- 3. values too large for float32 arithmetic --------------------------------------------------
def test_values_whose_squared_norm_overflows_float32_are_refused(tmp_path: Path) -> None:
    x = make_vectors(50, 8)
    x[17] *= 1e30  # finite, but |x|^2 is far beyond float32's 3.4e38
    src = tmp_path / "x.npy"
    np.save(src, x)
    out = tmp_path / "out.parquet"
    r = run_vecx("import", src, "-o", out)
    refused(r, 3, out, "x.npy: row 17", "too large", "e+30", "rescale")
    refused(run_vecx("encode", src, "-o", out, "--spec", "truncate:4"), 3, out, "row 17")
    tokens = tmp_path / "m.parquet"  # multi-vector data: the same check per token vector
    pq.write_table(pa.table({"vector": pa.array([[[1.0, 2.0]], [[1.0, 1.0], [3e30, 1.0]]],
                                                type=pa.list_(pa.list_(pa.float32())))}), tokens)
    refused(run_vecx("import", tokens, "-o", out), 3, out, "m.parquet: row 1", "too large")


def test_large_values_within_float32_survive_truncate_and_truth(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    base = rng.standard_normal((200, 16))
    cases = {"1e18": base * 1e18,  # values around 1e18: squared norms near 1e37
             "edge": base / np.linalg.norm(base, axis=1, keepdims=True) * np.sqrt(3.3e38)}  # just under the bound
    for name, x in cases.items():
        x = x.astype(np.float32)
        src, queries = tmp_path / f"{name}.npy", tmp_path / f"{name}.q.npy"
        np.save(src, x)
        np.save(queries, x[:5])
        for metric in ("cosine", "ip", "l2"):
            table = tmp_path / f"{name}.{metric}.parquet"
            assert run_vecx("import", src, "-o", table, "--metric", metric).code == 0
            if metric != "l2":
                cut = tmp_path / f"{name}.{metric}.t.parquet"
                r = run_vecx("truncate", table, "-o", cut, "--dim", "8")
                assert r.code == 0, r.stderr
                v = np.stack(read(cut)["vector"].to_numpy(zero_copy_only=False))
                assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5), (name, metric)
            gt = tmp_path / f"{name}.{metric}.gt.parquet"
            r = run_vecx("truth", table, "--queries", queries, "-o", gt, "-k", "3")
            assert r.code == 0, r.stderr
            truth = read(gt).to_pylist()
            scores = np.array([t["scores"] for t in truth])
            assert [t["rows"][0] for t in truth] == list(range(5)), (name, metric)  # each query finds itself
            assert np.isfinite(scores).all(), (name, metric)
            if metric == "l2":  # distances to other rows are large, never 0
                assert (scores[:, 1:] > 1e30).all(), (name, scores)
            else:
                assert (np.abs(scores[:, 0]) > 0).all(), (name, metric)


# ---- 4. tampered metadata, damaged state, empty vectors, garbage, truth files -------------------
@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    """A plain imported table and one with a chain and embedded fitted state (rotate, truncate)."""
    d = tmp_path_factory.mktemp("tables")
    np.save(d / "base.npy", make_vectors(300, 16))
    np.save(d / "q.npy", make_vectors(5, 16, seed=3))
    plain, chained = d / "plain.parquet", d / "chained.parquet"
    assert run_vecx("import", d / "base.npy", "-o", plain).code == 0
    assert run_vecx("encode", plain, "-o", chained, "--spec", "rotate,truncate:12").code == 0
    assert run_vecx("fit", plain, "-o", d / "int8.state", "-s", "int8").code == 0
    return {"plain": plain, "chained": chained, "queries": d / "q.npy", "state": d / "int8.state"}


def setting(path: tuple, value=KeyError):
    """An edit of the metadata: set (or, with KeyError, delete) the value at ``path``."""
    def edit(meta: dict) -> None:
        node = meta
        for key in path[:-1]:
            node = node[key]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return edit


TAMPERED = {
    "dtype float64": (("vector", "dtype"), "float64"),
    "dtype bogus": (("vector", "dtype"), "bogus"),
    "dim a string": (("vector", "dim"), "sixteen"),
    "dim negative": (("vector", "dim"), -3),
    "dim null": (("vector", "dim"), None),
    "vector column name missing": (("vector", "column"), KeyError),
    "vector block null": (("vector",), None),
    "metric bogus": (("vector", "metric"), "bogus"),
    "id column name missing": (("id", "column"), KeyError),
    "id column not in the file": (("id", "column"), "nope"),
    "id block null": (("id",), None),
    "stages a string": (("stages",), "x"),
    "rows a string": (("rows",), "x"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_vector_and_id_metadata_is_refused_by_every_command(tmp_path: Path, tables: dict, case: str) -> None:
    path, value = TAMPERED[case]
    src = with_edited_metadata(tables["plain"], tmp_path / "t.parquet", setting(path, value))
    out = tmp_path / "out.parquet"
    for args in (["encode", src, "-o", out, "--spec", "int8"], ["truncate", src, "-o", out, "--dim", "4"],
                 ["truth", src, "--queries", tables["queries"], "-o", out, "-k", "3"]):
        refused(run_vecx(*args), 3, out, "t.parquet")
    index = tmp_path / "out.vecx"
    refused(run_vecx("index", src, "-o", index), 3, None, "t.parquet")
    assert not index.exists()
    if case != "id column not in the file":  # info reads only the metadata, which is fine there
        refused(run_vecx("info", src), 3, None, "t.parquet", "metadata")


@pytest.mark.parametrize("kind", ["index", "truth", "bogus", 5, ["vectors"], None])
def test_info_on_a_table_with_a_tampered_kind(tmp_path: Path, tables: dict, kind) -> None:
    src = with_edited_metadata(tables["plain"], tmp_path / "t.parquet", setting(("kind",), kind))
    what = "field 'k' is missing" if kind == "truth" else "field 'kind'"  # read as a truth file, it lacks k
    refused(run_vecx("info", src), 3, None, "t.parquet", "'vecx' metadata is damaged", what)
    refused(run_vecx("info", src, "--json"), 3, None, what)


def test_chain_that_disagrees_with_the_stored_vectors_is_refused(tmp_path: Path, tables: dict) -> None:
    def edit(meta: dict) -> None:  # the stage says truncate:8, the column holds 12 dimensions
        meta["stages"][1]["spec"] = "truncate:8:renorm=true"
    src = with_edited_metadata(tables["chained"], tmp_path / "t.parquet", edit)
    out = tmp_path / "out.parquet"
    r = run_vecx("truncate", src, "-o", out, "--dim", "4")
    refused(r, 4, out, "t.parquet", "12 x float32")


def _state_with(src: Path, dst: Path, column: str, value) -> Path:
    table = ipc.open_file(pa.OSFile(str(src))).read_all()
    rows = table.to_pylist()
    for row in rows:
        row[column] = value
    with ipc.new_file(dst, table.schema) as writer:
        writer.write_table(pa.Table.from_pylist(rows, schema=table.schema))
    return dst


@pytest.mark.parametrize("column, value, message", [
    ("dtype", "O", "not a plain numeric type"),
    ("dtype", "bogus", "not a plain numeric type"),
    ("shape", [10**12, 10**12], "needs 4,000,000,000,000,000,000,000,000 bytes"),
    ("shape", [-1, 16], "not a list of non-negative sizes"),
    ("shape", [3, 3], "needs 36 bytes"),
])
def test_damaged_fitted_state_is_refused(tmp_path: Path, tables: dict, column: str, value, message: str) -> None:
    state = _state_with(tables["state"], tmp_path / "bad.state", column, value)
    out = tmp_path / "out.parquet"
    refused(run_vecx("encode", tables["plain"], "-o", out, "--state", state), 3, out, "bad.state", message)


@pytest.mark.parametrize("vectors, message", [
    (pa.array([[], [], []], type=pa.list_(pa.float32())), "row 0: vector is empty"),
    (pa.array([[[]], [[]]], type=pa.list_(pa.list_(pa.float32()))), "row 0: token vector is empty"),
])
def test_parquet_of_empty_vectors_is_refused(tmp_path: Path, vectors, message: str) -> None:
    src = tmp_path / "x.parquet"
    pq.write_table(pa.table({"vector": vectors}), src)
    out = tmp_path / "out.parquet"
    refused(run_vecx("import", src, "-o", out), 3, out, f"x.parquet: {message}")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_garbage_on_stdin_is_refused(tmp_path: Path, seed: int) -> None:
    garbage = np.random.default_rng(seed).bytes(4096)
    out = tmp_path / "out.parquet"
    refused(run_vecx("import", "-", "-o", out, stdin=garbage), 3, out, "<stdin>")


def test_eval_refuses_a_truth_file_that_is_not_from_vecx_truth(tmp_path: Path, tables: dict) -> None:
    index = tmp_path / "x.vecx"
    r = run_vecx("index", tables["plain"], "-o", index, "--rescore-vectors", tables["plain"])
    assert r.code == 0, r.stderr
    gt = tmp_path / "gt.parquet"
    pq.write_table(pa.table({"rows": [[0, 1, 2]] * 5}), gt)
    refused(run_vecx("eval", index, "--queries", tables["queries"], "--truth", gt), 2, None,
            "gt.parquet", "vecx truth")
    # A .npy of row numbers is taken (as ann-benchmarks gives them), and checked like a table.
    np.save(tmp_path / "gt.npy", np.zeros((7, 10), dtype=np.int64))  # the query file has 5
    refused(run_vecx("eval", index, "--queries", tables["queries"], "--truth", tmp_path / "gt.npy"), 4, None,
            "gt.npy: has 7 queries")
    np.save(tmp_path / "gt3.npy", np.zeros((5, 2, 2), dtype=np.int64))
    refused(run_vecx("eval", index, "--queries", tables["queries"], "--truth", tmp_path / "gt3.npy"), 3, None,
            "2-D array of row numbers")
    refused(run_vecx("eval", index, "--queries", tables["queries"], "--truth", tmp_path / "none.parquet"), 2, None,
            "no such file")


# ---- 5. random tampering of the metadata ---------------------------------------------------------
def _paths(value, at: tuple = ()) -> list[tuple]:
    """Every position inside a JSON value (keys of objects, indexes of arrays), at any depth."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    out = []
    for key, child in items:
        out.append(at + (key,))
        out.extend(_paths(child, at + (key,)))
    return out


REPLACEMENTS = st.one_of(
    st.none(), st.integers(-3, 40), st.just(-1), st.just(10**30), st.booleans(), st.text(max_size=6),
    st.sampled_from(["float16", "int8", "bits", "codes", "json", "l2", "truth", "@/etc/passwd", "vector"]),
    st.floats(allow_nan=False, allow_infinity=False), st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["dim", "column", "a"]), st.integers(0, 3), max_size=2),
)


# CI runs a fixed set of examples (derandomized); VECX_FAULT_EXAMPLES=N draws N fresh random ones.
@settings(max_examples=int(os.environ.get("VECX_FAULT_EXAMPLES", 25)), deadline=None,
          derandomize="VECX_FAULT_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_randomly_tampered_metadata_never_crashes(tmp_path: Path, tables: dict, data) -> None:
    src = tables[data.draw(st.sampled_from(["plain", "chained"]), label="table")]
    meta = json.loads(pq.ParquetFile(src).metadata.metadata[b"vecx"])
    path = data.draw(st.sampled_from(_paths(meta)), label="path")
    value = data.draw(st.one_of(st.just(KeyError), REPLACEMENTS), label="value (KeyError: delete)")
    name = uuid.uuid4().hex[:8]
    tampered = with_edited_metadata(src, tmp_path / f"{name}.parquet", setting(path, value))
    out = tmp_path / f"{name}.out.parquet"
    for args in (["info", tampered], ["truncate", tampered, "-o", out, "--dim", "4"]):
        r = run_vecx(*args)
        assert r.code in (0, 2, 3, 4), r.stderr
        clean(r)
        if r.code:
            assert not out.exists() and not list(tmp_path.glob(f".{out.name}.tmp-*"))
    tampered.unlink()
    out.unlink(missing_ok=True)
