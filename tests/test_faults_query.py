"""Faults in codec fits and query input: each must end in a clean error with its documented exit code.

PCA on wide samples (fewer rows than dimensions), random projections wider than their input,
``--where`` filters nested too deep or comparing a column with a literal of the wrong type, zero
queries on cosine indexes, garbage ``.npy`` query files and search options below 1.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, run_vecx, run_vecx_in_process

DIM = 16


def clean(r, code: int) -> None:
    """The run ended with ``code`` and a clean message: no traceback, no internal error."""
    assert r.code == code, (r.code, r.stderr)
    assert "Traceback" not in r.stderr
    assert "internal error" not in r.stderr
    assert r.stderr.startswith("vecx: error: ") or "Error: Invalid value" in r.stderr, r.stderr


def vectors_of(path: Path) -> np.ndarray:
    column = pq.read_table(path, columns=["vector"])["vector"].combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)


@pytest.fixture(scope="module")
def idx(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A cosine index over 400 x 16 vectors with payload columns of several types, and an L2 one."""
    tmp = tmp_path_factory.mktemp("faults")
    n = 400
    x = make_vectors(n, DIM, seed=21)
    rng = np.random.default_rng(4)
    src = tmp / "src.parquet"
    pq.write_table(pa.table({
        "id": [f"d{i}" for i in range(n)],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM),
        "section": [f"s{i % 7}" for i in range(n)],
        "year": rng.integers(1950, 2020, n),
        "rating": rng.random(n),
        "flag": [bool(i % 2) for i in range(n)],
        "maybe": [None if i % 3 == 0 else i for i in range(n)],
    }), src)
    base = tmp / "base.parquet"
    assert run_vecx("import", src, "-o", base).code == 0
    index = tmp / "idx.vecx"
    r = run_vecx("index", base, "-o", index, "--rescore-vectors", base)
    assert r.code == 0, r.stderr
    l2_base, l2_index = tmp / "l2.parquet", tmp / "l2.vecx"
    np.save(tmp / "x.npy", x)
    assert run_vecx("import", tmp / "x.npy", "-o", l2_base, "--metric", "l2").code == 0
    assert run_vecx("index", l2_base, "-o", l2_index).code == 0
    np.save(tmp / "q.npy", x[:3])
    return {"dir": tmp, "index": index, "l2": l2_index, "x": x, "q": tmp / "q.npy"}


# ---- 1. pca ---------------------------------------------------------------------------------
def test_pca_on_fewer_rows_than_dimensions_fits_through_the_gram_matrix(tmp_path: Path) -> None:
    """10 x 20,000: the covariance would be 20,000 x 20,000 (GBs, minutes of eigh); the Gram matrix is 10 x 10."""
    src = tmp_path / "wide.npy"
    np.save(src, np.random.default_rng(0).standard_normal((10, 20_000)).astype(np.float32))
    out = tmp_path / "wide.pca.parquet"
    r = run_vecx("pca", src, "--dim", "8", "-o", out)
    assert r.code == 0, r.stderr
    y = vectors_of(out)
    assert y.shape == (10, 8)
    assert np.isfinite(y).all()


def test_pca_gram_path_agrees_with_the_covariance_path(tmp_path: Path) -> None:
    """20 x 64 fits through the Gram matrix; the same rows repeated 4 times (80 x 64, same mean and
    components) through the covariance: the projections agree, signs included."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((20, 64)) * np.linspace(3.0, 0.2, 64)).astype(np.float32)
    np.save(tmp_path / "few.npy", x)
    np.save(tmp_path / "many.npy", np.concatenate([x] * 4))
    for name in ("few", "many"):
        r = run_vecx("pca", tmp_path / f"{name}.npy", "--dim", "8", "-o", tmp_path / f"{name}.parquet")
        assert r.code == 0, r.stderr
    gram, cov = vectors_of(tmp_path / "few.parquet"), vectors_of(tmp_path / "many.parquet")[:20]
    for j in range(8):
        corr = np.corrcoef(gram[:, j], cov[:, j])[0, 1]
        assert abs(corr) > 0.999, (j, corr)
    np.testing.assert_allclose(gram, cov, atol=1e-4)


def test_pca_dim_beyond_the_sample_rank_is_a_usage_error(tmp_path: Path) -> None:
    src = tmp_path / "ten.npy"
    np.save(src, make_vectors(10, 50))
    out = tmp_path / "out.parquet"
    r = run_vecx("pca", src, "--dim", "10", "-o", out)
    clean(r, 2)
    assert "at least 11 rows" in r.stderr and "10" in r.stderr
    assert not out.exists()


def test_pca_on_repeated_rows_spanning_too_few_directions_is_a_data_error(tmp_path: Path) -> None:
    src = tmp_path / "repeated.npy"
    rows = np.random.default_rng(1).standard_normal((3, 100)).astype(np.float32)
    np.save(src, np.repeat(rows, 4, axis=0))  # 12 rows, 2 directions after centring
    r = run_vecx("pca", src, "--dim", "5", "-o", tmp_path / "out.parquet")
    clean(r, 3)
    assert "spans only 2 directions" in r.stderr


def test_pca_refuses_a_covariance_over_the_memory_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound is lowered for the test (a real 4 GiB matrix needs 23,171 dimensions)."""
    import vecx.codecs.pca

    src = tmp_path / "x.npy"
    np.save(src, make_vectors(300, 200))
    out = tmp_path / "out.parquet"
    monkeypatch.setattr(vecx.codecs.pca, "MAX_MATRIX_BYTES", 1 << 16)
    r = run_vecx_in_process("pca", src, "--dim", "8", "-o", out)  # in this process: it sees the lowered bound
    assert r.code == 2, r.stderr
    assert r.stderr.startswith("vecx: error: ") and "Traceback" not in r.stderr
    assert "200 x 200 float64 matrix" in r.stderr and "rp" in r.stderr
    assert not out.exists()


# ---- 2. rp ------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["command", "explain"])
def test_rp_wider_than_its_input_is_refused(how: str, base_npy: Path, tmp_path: Path) -> None:
    out = tmp_path / "rp.parquet"
    if how == "command":
        r = run_vecx("rp", base_npy, "--dim", "64", "-o", out)  # the input is 48-d
    else:
        r = run_vecx("spec", "explain", "rp:64", "--dim", "32")
    clean(r, 2)
    assert "rp:64" in r.stderr and "larger than the input dimension" in r.stderr
    assert not out.exists()


# ---- 3. --where -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["parentheses", "not"])
def test_deeply_nested_where_is_a_usage_error(shape: str, idx: dict) -> None:
    deep = "(" * 5000 + "year > 3" + ")" * 5000 if shape == "parentheses" else "not " * 5000 + "year > 3"
    r = run_vecx("query", idx["index"], "--vector", idx["q"], "--where", deep)
    clean(r, 2)
    assert "nest more than 64" in r.stderr
    assert len(r.stderr) < 500  # the filter itself is not echoed back
    ok = run_vecx("query", idx["index"], "--vector", idx["q"], "-k", "2",
                  "--where", "(" * 60 + "not not year > 3" + ")" * 60)
    assert ok.code == 0, ok.stderr


@pytest.mark.parametrize("expr, column, dtype", [
    ("section > 5", "section", "string"),
    ("section = 5", "section", "string"),
    ("section in (1, 2)", "section", "string"),
    ("section = true", "section", "string"),
    ("id > 5", "id", "string"),
    ("year > '1990'", "year", "int64"),
    ("year = true", "year", "int64"),
    ("year in ('a', 'b')", "year", "int64"),
    ("year in (1990, 'x')", "year", "int64"),
    ("rating >= true", "rating", "double"),
    ("flag = 1", "flag", "bool"),
    ("flag in (0, 1)", "flag", "bool"),
    ("maybe > '3'", "maybe", "int64"),
    ("year > 2000 and (section = 3 or flag = true)", "section", "string"),
])
def test_where_literal_of_the_wrong_type_is_a_usage_error(expr: str, column: str, dtype: str, idx: dict) -> None:
    r = run_vecx("query", idx["index"], "--vector", idx["q"], "--where", expr)
    clean(r, 2)
    assert f"cannot compare column {column!r}, which holds" in r.stderr and f"({dtype})" in r.stderr
    assert r.stdout == b""


def test_where_integer_column_against_a_fraction_compares_as_numbers(idx: dict) -> None:
    r = run_vecx("query", idx["index"], "--vector", idx["q"], "-k", "50", "--fields", "year",
                 "--where", "year > 2017.5 or year in (1950.0)")
    assert r.code == 0, r.stderr
    years = {x["year"] for line in r.out.splitlines() for x in json.loads(line)["results"]}
    assert years and years <= {1950, 2018, 2019}


def test_where_comparison_with_null_points_to_is_null(idx: dict) -> None:
    r = run_vecx("query", idx["index"], "--vector", idx["q"], "--where", "maybe = null")
    clean(r, 2)
    assert "is null" in r.stderr


# ---- 4. zero queries --------------------------------------------------------------------------
def test_zero_query_on_a_cosine_index_is_a_data_error(idx: dict, tmp_path: Path) -> None:
    q = tmp_path / "zero.npy"
    np.save(q, np.stack([idx["x"][0], np.zeros(DIM, np.float32)]))
    r = run_vecx("query", idx["index"], "--vector", q)
    clean(r, 3)
    assert "query 1 is all zeros; cosine similarity is undefined" in r.stderr
    assert r.stdout == b""
    stdin = run_vecx("query", idx["index"], stdin=(json.dumps([0.0] * DIM) + "\n").encode())
    clean(stdin, 3)
    assert "query 0 is all zeros" in stdin.stderr
    ev = run_vecx("eval", idx["index"], "--queries", q)
    clean(ev, 3)
    # --like and indexes of other metrics are unaffected
    assert run_vecx("query", idx["index"], "--like", "d3", "-k", "2").code == 0
    assert run_vecx("query", idx["l2"], "--vector", q, "-k", "2").code == 0


# ---- 5. garbage .npy query files ---------------------------------------------------------------
class _Boom:
    """Unpickling it would create the marker file: it must never happen."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _garbage(kind: str, path: Path) -> None:
    if kind == "random-bytes":
        path.write_bytes(np.random.default_rng(1).bytes(4000))
    elif kind == "empty-file":
        path.write_bytes(b"")
    elif kind == "object-pickle":
        np.save(path, np.array([_Boom(str(path) + ".unpickled"), 1.0], dtype=object), allow_pickle=True)
    elif kind == "raw-pickle":
        path.write_bytes(pickle.dumps(_Boom(str(path) + ".unpickled")))
    elif kind == "truncated":
        np.save(path, np.ones((50, DIM), np.float32))
        path.write_bytes(path.read_bytes()[:-100])
    elif kind == "damaged-header":
        path.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'   \n")
    elif kind == "3-d":
        np.save(path, np.ones((2, 2, DIM), np.float32))
    elif kind == "strings":
        np.save(path, np.array(["a" * DIM, "b"]))


KINDS = ["random-bytes", "empty-file", "object-pickle", "raw-pickle", "truncated", "damaged-header", "3-d", "strings"]


@pytest.mark.parametrize("command", ["query", "eval"])
@pytest.mark.parametrize("kind", KINDS)
def test_garbage_npy_queries_are_a_data_error(kind: str, command: str, idx: dict, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.npy"
    _garbage(kind, path)
    if command == "query":
        r = run_vecx("query", idx["index"], "--vector", path)
    else:
        r = run_vecx("eval", idx["index"], "--queries", path)
    clean(r, 3)
    assert f"{path}: " in r.stderr
    assert "allow_pickle" not in r.stderr and "pickle.load" not in r.stderr
    assert "vecx: hint: " in r.stderr  # says what to do
    assert not Path(str(path) + ".unpickled").exists()


# ---- 6. search and build options below their minimum --------------------------------------------
@pytest.mark.parametrize("args", [
    ("query", "--oversample", "0"), ("query", "--oversample", "-1"), ("query", "--expansion", "0"),
    ("query", "--expansion", "-5"),
    ("eval", "--oversample", "0"), ("eval", "--oversample", "-2"), ("eval", "-k", "0"), ("eval", "--expansion", "0"),
    ("index", "--connectivity", "0"), ("index", "--connectivity", "1"), ("index", "--oversample", "0"),
    ("index", "--expansion-add", "0"), ("index", "--expansion-search", "-3"), ("index", "--pool", "0"),
], ids=lambda a: " ".join(a))
def test_options_below_their_minimum_are_a_usage_error(args: tuple, idx: dict, tmp_path: Path) -> None:
    command, option, value = args
    out = tmp_path / "new.vecx"
    if command == "query":
        r = run_vecx("query", idx["index"], "--vector", idx["q"], option, value)
    elif command == "eval":
        r = run_vecx("eval", idx["index"], "--queries", idx["q"], option, value)
    else:
        r = run_vecx("index", idx["dir"] / "base.parquet", "-o", out, option, value)
    clean(r, 2)
    assert option in r.stderr
    assert r.stdout == b""
    assert not out.exists()
