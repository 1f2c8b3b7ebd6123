"""Every input format reads to the same vectors; payload passes through; outputs are byte-reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, run_vecx, with_edited_metadata

from vecx.formats import metadata


def read_vectors(path: Path) -> tuple[list, np.ndarray, dict, pa.Table]:
    table = pq.read_table(path)
    meta = json.loads(pq.ParquetFile(path).metadata.metadata[metadata.KEY])
    vectors = np.stack(table["vector"].to_numpy(zero_copy_only=False))
    return table["id"].to_pylist(), vectors, meta, table


def write_vecs(path: Path, x: np.ndarray, dtype: str) -> None:
    with open(path, "wb") as f:
        for row in x:
            f.write(np.int32(len(row)).tobytes())
            f.write(row.astype(dtype).tobytes())


X = make_vectors(50, 6)


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    """The same 50 x 6 vectors in every format vecx reads."""
    x = X
    paths = {}
    paths["npy"] = tmp_path / "x.npy"
    np.save(paths["npy"], x)
    paths["fvecs"] = tmp_path / "x.fvecs"
    write_vecs(paths["fvecs"], x, "<f4")
    vec_col = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 6)
    paths["parquet-fixed"] = tmp_path / "fixed.parquet"
    pq.write_table(pa.table({"embedding": vec_col}), paths["parquet-fixed"])
    paths["parquet-list"] = tmp_path / "list.parquet"
    pq.write_table(pa.table({"emb": pa.array([list(map(float, r)) for r in x], pa.list_(pa.float64()))}),
                   paths["parquet-list"])
    paths["arrow"] = tmp_path / "x.arrow"
    with pa.ipc.new_file(paths["arrow"], pa.schema([("vector", vec_col.type)])) as w:
        w.write_table(pa.table({"vector": vec_col}))
    paths["jsonl"] = tmp_path / "x.jsonl"
    paths["jsonl"].write_text("".join(json.dumps({"vector": [float(v) for v in r]}) + "\n" for r in x))
    paths["csv"] = tmp_path / "x.csv"
    paths["csv"].write_text("".join(",".join(repr(float(v)) for v in r) + "\n" for r in x))
    return paths


@pytest.mark.parametrize("kind", ["npy", "fvecs", "parquet-fixed", "parquet-list", "arrow", "jsonl", "csv"])
def test_every_format_imports_the_same_vectors(tmp_path: Path, sources: dict, kind: str) -> None:
    out = tmp_path / f"{kind}.out.parquet"
    r = run_vecx("import", sources[kind], "-o", out)
    assert r.code == 0, r.stderr
    ids, vectors, meta, _ = read_vectors(out)
    assert ids == list(range(50))
    np.testing.assert_allclose(vectors, X, rtol=1e-6)
    assert meta["rows"] == 50 and meta["vector"]["dim"] == 6 and meta["spec"] == ""
    # The source fingerprint hashes content, not the container: all formats agree.
    reference = tmp_path / "ref.parquet"
    if not reference.exists():
        assert run_vecx("import", sources["npy"], "-o", reference).code == 0
    assert meta["source"]["fingerprint"] == read_vectors(reference)[2]["source"]["fingerprint"]


@pytest.mark.parametrize("kind", ["parquet-fixed", "parquet-list", "arrow"])
def test_batches_smaller_than_a_record_batch_hold_their_own_rows(sources: dict, kind: str) -> None:
    """Batches cut out of one larger record batch (the Arrow file holds a single one) start at an
    offset into its vector column; each must hold its own rows, not the column's first."""
    from vecx.formats.readers import open_source
    from vecx.formats.source import ReadOptions

    batches = list(open_source(str(sources[kind]), ReadOptions(batch_rows=7)).batches())
    assert [b.offset for b in batches] == list(range(0, 50, 7))
    np.testing.assert_allclose(np.concatenate([b.vectors for b in batches]), X, rtol=1e-6)


@pytest.mark.parametrize("kind, ext", [("npy", ".npy"), ("parquet-fixed", ".parquet"), ("jsonl", ".jsonl"),
                                       ("csv", ".csv"), ("arrow", ".arrow")])
def test_stdin_is_sniffed(tmp_path: Path, sources: dict, kind: str, ext: str) -> None:
    out = tmp_path / "stdin.parquet"
    r = run_vecx("import", "-", "-o", out, stdin=sources[kind].read_bytes())
    assert r.code == 0, r.stderr
    np.testing.assert_allclose(read_vectors(out)[1], X, rtol=1e-6)


def test_ivecs_and_bvecs(tmp_path: Path) -> None:
    ints = (np.arange(30).reshape(10, 3) % 200).astype(np.float32)
    for ext, dtype in ((".ivecs", "<i4"), (".bvecs", "u1")):
        src = tmp_path / f"x{ext}"
        write_vecs(src, ints, dtype)
        out = tmp_path / f"x{ext}.parquet"
        r = run_vecx("import", src, "-o", out)
        assert r.code == 0, r.stderr
        assert np.array_equal(read_vectors(out)[1], ints)


def test_payload_and_ids_pass_through_every_step(tmp_path: Path) -> None:
    x = make_vectors(40, 8)
    src = tmp_path / "docs.parquet"
    pq.write_table(pa.table({
        "doc_id": [f"d{i}" for i in range(40)],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 8),
        "lang": ["en", "de"] * 20, "year": list(range(1980, 2020)),
    }), src)
    out = tmp_path / "docs.i8.parquet"
    r = run_vecx("encode", src, "-o", out, "--spec", "truncate:4,int8", "--id-column", "doc_id")
    assert r.code == 0, r.stderr
    ids, _, meta, table = read_vectors(out)
    assert ids == [f"d{i}" for i in range(40)]
    assert table.column_names == ["id", "vector", "lang", "year"]
    assert table["lang"].to_pylist() == ["en", "de"] * 20
    assert table["year"].to_pylist() == list(range(1980, 2020))
    assert meta["id"]["type"] == "string"


def test_jsonl_payload_ids_and_field_choice(tmp_path: Path) -> None:
    src = tmp_path / "recs.jsonl"
    src.write_text('{"key": 7, "v": [1, 2], "w": [0, 0], "title": "a"}\n\n'
                   '{"key": 9, "v": [3, 4], "w": [1, 1], "title": "b"}\n')
    out = tmp_path / "recs.parquet"
    r = run_vecx("import", src, "-o", out, "--column", "v", "--id-column", "key")
    assert r.code == 0, r.stderr
    ids, vectors, _, table = read_vectors(out)
    assert ids == [7, 9] and vectors.tolist() == [[1, 2], [3, 4]]
    assert table["title"].to_pylist() == ["a", "b"]
    r = run_vecx("import", src, "-o", tmp_path / "amb.parquet")
    assert r.code == 3 and "use --column" in r.stderr


def test_csv_with_header_and_ids(tmp_path: Path) -> None:
    src = tmp_path / "x.csv"
    src.write_text("id,a,b,c\nx,1,2,3\ny,4,5,6\n")
    out = tmp_path / "x.parquet"
    r = run_vecx("import", src, "-o", out)
    assert r.code == 0, r.stderr
    ids, vectors, _, _ = read_vectors(out)
    assert ids == ["x", "y"] and vectors.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_float16_and_int8_columns_survive_parquet(tmp_path: Path, base_table: Path) -> None:
    for spec, dtype in (("f16", np.float16), ("int8", np.int8)):
        out = tmp_path / f"{spec}.parquet"
        assert run_vecx("encode", base_table, "-o", out, "--spec", spec).code == 0
        table = pq.read_table(out)
        assert table.schema.field("vector").type.value_type == pa.from_numpy_dtype(dtype)
        assert table.schema.field("vector").type.list_size == 48


def test_same_inputs_give_identical_bytes(tmp_path: Path, base_npy: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for out in (a, b):
        assert run_vecx("encode", base_npy, "-o", out, "--spec", "truncate:16,int8:sample=500").code == 0
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.parquet"
    assert run_vecx("encode", base_npy, "-o", c, "--spec", "truncate:16,int8:sample=500", "--seed", "1").code == 0
    assert c.read_bytes() != a.read_bytes()  # the seed picks another calibration sample


def test_unknown_metadata_keys_are_ignored(tmp_path: Path, base_table: Path) -> None:
    edited = with_edited_metadata(base_table, tmp_path / "edited.parquet",
                                  lambda meta: meta.update(some_future_field={"x": 1}))
    r = run_vecx("info", edited, "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["vecx"]["some_future_field"] == {"x": 1}
