"""Datasets in: folders of parts, globs, hive partitions, object stores (a real S3 server on loopback),
and per-part outputs whose codes are exactly those of the concatenation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, ok, run_vecx

N, D = 1200, 16



def table(x: np.ndarray, ids: np.ndarray, **payload) -> pa.Table:
    return pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1]),
                     **payload})


def vectors(path: Path) -> np.ndarray:
    col = pq.read_table(path, columns=["vector"])["vector"].combine_chunks()
    if pa.types.is_fixed_size_binary(col.type):
        return np.frombuffer(col.buffers()[1], dtype=np.uint8).reshape(len(col), -1)
    return col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1)


def footer(path: Path) -> dict:
    return json.loads(pq.ParquetFile(path).metadata.metadata[b"vecx"])


@pytest.fixture
def parts(tmp_path: Path) -> dict:
    """N rows written as three hive-partitioned raw parts (plus Spark's marker files), and as one file."""
    x = make_vectors(N, D, seed=31)
    ids = np.arange(N, dtype=np.int64) * 7
    root = tmp_path / "raw"
    bounds = [(0, 500, "de"), (500, 900, "en"), (900, N, "fr")]
    for number, (lo, hi, lang) in enumerate(bounds):
        (root / f"lang={lang}").mkdir(parents=True)
        pq.write_table(table(x[lo:hi], ids[lo:hi]), root / f"lang={lang}" / f"part-{number:05d}.snappy.parquet")
    (root / "_SUCCESS").write_text("")
    (root / "lang=de" / ".part-00000.snappy.parquet.crc").write_text("x")
    lang = np.concatenate([np.full(hi - lo, lang) for lo, hi, lang in bounds])
    pq.write_table(table(x, ids, lang=lang), tmp_path / "all.src.parquet")
    return {"dir": tmp_path, "root": root, "x": x, "ids": ids, "lang": lang}


def test_a_folder_a_glob_and_the_concatenation_import_alike(parts: dict) -> None:
    d = parts["dir"]
    ok("import", parts["root"], "-o", d / "folder.parquet")
    ok("import", f"{parts['root']}/*/*.parquet", "-o", d / "glob.parquet")
    ok("import", d / "all.src.parquet", "-o", d / "all.parquet")
    fps = {footer(d / f"{name}.parquet")["source"]["fingerprint"] for name in ("folder", "glob", "all")}
    assert len(fps) == 1  # the ids and vectors, in path order, whatever holds them
    got = pq.read_table(d / "folder.parquet")
    np.testing.assert_array_equal(vectors(d / "folder.parquet"), parts["x"])
    assert got["id"].to_pylist() == parts["ids"].tolist() and got["lang"].to_pylist() == parts["lang"].tolist()
    info = ok("info", parts["root"])
    assert "dataset, 3 parts" in info and "lang" in info


def test_fit_and_encode_over_a_dataset_do_not_depend_on_the_split(parts: dict) -> None:
    d = parts["dir"]
    ok("import", d / "all.src.parquet", "-o", d / "all.parquet")
    ok("import", parts["root"], "-o", f"{d}/imported/")  # one vecx part per raw part
    assert sorted(os.listdir(d / "imported")) == ["_vecx.json", "part-00000.parquet", "part-00001.parquet",
                                                  "part-00002.parquet"]
    for spec in ("pq:4x6:sample=500", "pca:8,int8"):
        ok("encode", d / "all.parquet", "--spec", spec, "-o", d / "whole.parquet")
        ok("encode", d / "imported", "--spec", spec, "-o", f"{d}/codes/")
        stitched = np.concatenate([vectors(d / "codes" / f"part-{i:05d}.parquet") for i in range(3)])
        np.testing.assert_array_equal(stitched, vectors(d / "whole.parquet"))
        assert footer(d / "codes" / "part-00000.parquet")["stages"][0]["state_sha256"] == \
            footer(d / "whole.parquet")["stages"][0]["state_sha256"]
    description = json.loads((d / "codes" / "_vecx.json").read_text())
    assert description["rows"] == N and [p["rows"] for p in description["parts"]] == [500, 400, 300]
    info = json.loads(ok("info", d / "codes", "--json"))
    assert info["vecx"]["rows"] == N and info["vecx"]["fingerprint"] == description["fingerprint"]


def test_an_index_from_datasets_and_the_provenance_of_parts(parts: dict) -> None:
    d = parts["dir"]
    ok("import", parts["root"], "-o", f"{d}/imported/")
    ok("encode", d / "imported", "--spec", "int8:mode=global", "-o", f"{d}/codes/")
    ok("index", d / "codes", "-o", d / "docs.vecx", "--rescore-vectors", d / "imported")
    out = json.loads(ok("query", d / "docs.vecx", "--like", "7", "-k", 3, "--fields", "lang"))
    assert len(out["results"]) == 3 and {r["lang"] for r in out["results"]} <= {"de", "en", "fr"}
    first = os.readlink(d / "docs.vecx")
    r = run_vecx("index", str(d / "codes"), "-o", str(d / "docs.vecx"), "--rescore-vectors", str(d / "imported"),
                 "--if-changed")
    assert r.code == 0 and "nothing to do" in r.stderr and os.readlink(d / "docs.vecx") == first
    # A dataset's fingerprint is over its parts in order: drop a part and it is other data.
    os.remove(d / "codes" / "part-00002.parquet")
    r = run_vecx("index", str(d / "codes"), "-o", str(d / "docs.vecx"), "--rescore-vectors", str(d / "imported"))
    assert r.code == 4 and "other data" in r.stderr
    r = run_vecx("index", str(d / "codes"), "-o", str(d / "docs.vecx"), "--if-changed")
    assert r.code == 0 and os.readlink(d / "docs.vecx") != first


def test_bad_datasets_are_refused_naming_the_part(parts: dict, tmp_path: Path) -> None:
    d, root = parts["dir"], parts["root"]
    (tmp_path / "empty").mkdir()
    r = run_vecx("import", str(tmp_path / "empty"), "-o", str(d / "x.parquet"))
    assert r.code == 3 and "no Parquet part files" in r.stderr
    odd = root / "lang=fr" / "part-00009.parquet"
    pq.write_table(pa.table({"id": [1], "vector": pa.array([[1.0] * D], pa.list_(pa.float64()))}), odd)
    r = run_vecx("import", str(root), "-o", str(d / "x.parquet"))
    assert r.code == 3 and "part lang=fr/part-00009.parquet has columns" in r.stderr
    odd.unlink()
    # Ids unique across parts, even when each part is written on its own; nothing is left behind.
    pq.write_table(table(parts["x"][:2], parts["ids"][:2]), root / "lang=fr" / "part-00010.parquet")
    r = run_vecx("import", str(root), "-o", str(d / "out/"))
    assert r.code == 3 and "duplicate id 0" in r.stderr
    assert not (d / "out").exists() and not [n for n in os.listdir(d) if ".tmp-" in n]
    (root / "lang=fr" / "part-00010.parquet").unlink()
    # Raw and vecx parts do not mix; a folder vecx did not write is not replaced.
    ok("import", root / "lang=de" / "part-00000.snappy.parquet", "-o", root / "lang=en" / "z.parquet")
    r = run_vecx("import", str(root), "-o", str(d / "x.parquet"))
    assert r.code == 3 and "not written by vecx" in r.stderr
    (root / "lang=en" / "z.parquet").unlink()
    (d / "mine").mkdir()
    (d / "mine" / "notes.txt").write_text("keep me")
    r = run_vecx("import", str(root), "-o", str(d / "mine/"))
    assert r.code == 2 and (d / "mine" / "notes.txt").read_text() == "keep me"


@pytest.fixture(scope="module")
def s3() -> dict:
    """A real S3-compatible server (moto's server mode) on loopback, started and stopped here."""
    pytest.importorskip("moto", reason="moto is in the test extra: pip install '.[test]'")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(access_key="test", secret_key="test", region="us-east-1", scheme="http",
                               endpoint_override=f"127.0.0.1:{port}", allow_bucket_creation=True)
        fs.create_dir("vecx-test")
        yield {"env": env, "fs": fs}
    finally:
        server.terminate()
        server.wait(timeout=10)


def upload(fs, local: Path, key: str) -> None:
    with fs.open_output_stream(key) as out:
        out.write(local.read_bytes())


def test_datasets_on_s3(parts: dict, s3: dict) -> None:
    d, fs, env = parts["dir"], s3["fs"], s3["env"]
    for part in sorted(parts["root"].rglob("*.parquet")):
        upload(fs, part, f"vecx-test/raw/{part.relative_to(parts['root'])}")
    upload(fs, parts["root"] / "_SUCCESS", "vecx-test/raw/_SUCCESS")
    ok("import", "s3://vecx-test/raw/", "-o", d / "from_s3.parquet", env=env)
    ok("import", parts["root"], "-o", d / "local.parquet")
    assert footer(d / "from_s3.parquet")["fingerprint"] == footer(d / "local.parquet")["fingerprint"]
    assert pq.read_table(d / "from_s3.parquet").equals(pq.read_table(d / "local.parquet"))
    # Encoded parts on S3 are indexed, as one object or as a prefix of parts.
    ok("encode", d / "local.parquet", "--spec", "f16", "-o", d / "f16.parquet")
    upload(fs, d / "f16.parquet", "vecx-test/codes/f16.parquet")
    upload(fs, d / "local.parquet", "vecx-test/imported/part-0.parquet")
    ok("index", "s3://vecx-test/codes/f16.parquet", "-o", d / "s3.vecx", "--rescore-vectors", "s3://vecx-test/imported/",
       env=env)
    out = json.loads(ok("query", d / "s3.vecx", "--like", "7", "-k", 3))
    assert out["results"][0]["id"] != 7 and len(out["results"]) == 3
    assert "dataset, 1 part" in ok("info", "s3://vecx-test/codes/", env=env)
    r = run_vecx("import", "s3://vecx-test/nothing-here/", "-o", str(d / "x.parquet"), env=env)
    assert r.code == 3 and "no such file or directory" in r.stderr


def test_several_inputs_are_one_dataset_in_the_order_given(parts: dict) -> None:
    d, root = parts["dir"], parts["root"]
    # Given out of path order: the order given is the order read.
    ok("import", root / "lang=en", root / "lang=de" / "part-00000.snappy.parquet", f"{root}/lang=fr/*.parquet",
       "-o", d / "several.parquet")
    got = pq.read_table(d / "several.parquet")
    order = np.r_[500:900, 0:500, 900:N]
    assert got["id"].to_pylist() == parts["ids"][order].tolist()
    np.testing.assert_array_equal(vectors(d / "several.parquet"), parts["x"][order])
    assert got["lang"].to_pylist() == parts["lang"][order].tolist()
    # vecx parts written by different runs: their ids are checked together, and nothing is written.
    ok("import", root / "lang=de", "-o", d / "de.parquet")
    ok("import", root / "lang=de", "-o", d / "de-again.parquet")
    r = run_vecx("encode", str(d / "de.parquet"), str(d / "de-again.parquet"), "--spec", "f16", "-o",
                 str(d / "twice.parquet"))
    assert r.code == 3 and "duplicate id 0" in r.stderr and not (d / "twice.parquet").exists()
    r = run_vecx("import", str(d / "de.parquet"), "-", "-o", str(d / "x.parquet"))
    assert r.code == 2 and "standard input" in r.stderr
