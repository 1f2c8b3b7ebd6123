"""Sharded builds: N segments built here or as tasks on a real Dask LocalCluster (two worker processes),
the same index whichever engine ran them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, ok, run_vecx

from vecx.indexes.truth import exact_topk

N, D = 6000, 32



@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """N rows as a three-part raw dataset, imported into vecx parts and encoded (int8 and pq) per part."""
    tmp = tmp_path_factory.mktemp("shards")
    x = make_vectors(N, D, seed=41)
    (tmp / "raw").mkdir()
    for number, (lo, hi) in enumerate([(0, 2500), (2500, 4000), (4000, N)]):
        pq.write_table(pa.table({"id": np.arange(lo, hi), "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(x[lo:hi].ravel()), D), "group": [f"g{i % 5}" for i in range(lo, hi)]}),
            tmp / "raw" / f"part-{number}.parquet")
    ok("import", tmp / "raw", "-o", f"{tmp}/imported/")
    ok("encode", tmp / "imported", "--spec", "int8:mode=global", "-o", f"{tmp}/i8/")
    ok("encode", tmp / "imported", "--spec", "pq:8x8", "-o", f"{tmp}/pq/")
    q = make_vectors(60, D, seed=42)
    np.save(tmp / "q.npy", q)
    return {"dir": tmp, "x": x, "q": q}


@pytest.fixture(scope="module")
def cluster():
    """A distributed.LocalCluster with two worker processes, for the test run."""
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is in the test extra")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c:
        yield c.scheduler_address


def manifest(index: Path) -> dict:
    return json.loads((index / "manifest.json").read_text())


def ids(index: Path, q: Path, k: int = 10, *extra: str) -> list[list[int]]:
    return [[r["id"] for r in json.loads(line)["results"]]
            for line in ok("query", index, "--vector", q, "-k", k, *extra).splitlines()]


def test_dask_and_local_shards_are_the_same_index(data: dict, cluster: str, tmp_path: Path) -> None:
    d = data["dir"]
    local, remote = tmp_path / "local.vecx", tmp_path / "remote.vecx"
    ok("index", d / "i8", "-o", local, "--rescore-vectors", d / "imported", "--shards", 3, "--deterministic")
    ok("index", d / "i8", "-o", remote, "--rescore-vectors", d / "imported", "--shards", 3, "--deterministic",
       "--engine", "dask", "--scheduler", cluster)
    a, b = manifest(local), manifest(remote)
    assert a["files"] == b["files"]  # every file, byte for byte (sizes and sha256)
    assert [s["rows"] for s in a["segments"]] == [2000, 2000, 2000]
    assert sorted(a["files"]) == sorted({*a["files"]}) and "seg2-graph.usearch" in a["files"]
    # Recall at equal search parameters: within 0.01 of one graph over the same rows.
    one = tmp_path / "one.vecx"
    ok("index", d / "i8", "-o", one, "--rescore-vectors", d / "imported", "--deterministic")
    top, _ = exact_topk(data["q"], iter([(0, data["x"])]), 10, "cosine")
    truth = [set(t.tolist()) for t in top]

    def recall(found: list[list[int]]) -> float:
        return sum(len(set(f) & t) for f, t in zip(found, truth, strict=True)) / (10 * len(truth))

    assert recall(ids(local, d / "q.npy")) >= recall(ids(one, d / "q.npy")) - 0.01
    assert ok("verify", remote).startswith(f"{remote}: ok")
    # A sharded index grows and compacts like any other.
    ok("delete", remote, "--where", "group = 'g3'")
    ok("compact", remote, "--max-segments", "2")
    assert len(manifest(remote)["segments"]) == 2 and manifest(remote)["rows"] == 2000 + 4000 * 4 // 5
    found = ok("query", remote, "--vector", d / "q.npy", "-k", 10, "--fields", "group")
    assert all(r["group"] != "g3" for line in found.splitlines() for r in json.loads(line)["results"])


def test_sharded_scored_codes_scan_exactly_as_one_segment(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    ok("index", d / "pq", "-o", tmp_path / "one.vecx")
    ok("index", d / "pq", "-o", tmp_path / "four.vecx", "--shards", 4)
    a = ok("query", tmp_path / "one.vecx", "--vector", d / "q.npy", "-k", 10)
    b = ok("query", tmp_path / "four.vecx", "--vector", d / "q.npy", "-k", 10)
    assert [[r["id"] for r in json.loads(x)["results"]] for x in a.splitlines()] == \
        [[r["id"] for r in json.loads(x)["results"]] for x in b.splitlines()]


def test_engine_dask_without_dask_says_how_to_install_it(data: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    r = run_vecx("index", str(data["dir"] / "i8"), "-o", str(tmp_path / "x.vecx"), "--shards", "2",
                 "--engine", "dask")
    assert r.code == 2 and "pip install 'dask[distributed]'" in r.stderr and not (tmp_path / "x.vecx").exists()
    r = run_vecx("index", str(data["dir"] / "i8"), "-o", str(tmp_path / "x.vecx"), "--engine", "spark")
    assert r.code == 2 and "--engine must be one of local, dask" in r.stderr


def test_a_dataset_encoded_part_by_part_on_dask_equals_the_local_encoding(data: dict, cluster: str,
                                                                          tmp_path: Path) -> None:
    d = data["dir"]
    ok("encode", d / "imported", "--spec", "pca:12,int8", "-o", f"{tmp_path}/local/")
    ok("encode", d / "imported", "--spec", "pca:12,int8", "-o", f"{tmp_path}/remote/", "--engine", "dask",
       "--scheduler", cluster)
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "remote").iterdir()) and len(names) == 4
    for name in names:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes(), name
    r = run_vecx("encode", str(d / "imported"), "--spec", "f16", "-o", str(tmp_path / "one.parquet"),
                 "--engine", "dask")
    assert r.code == 2 and "-o DIR/" in r.stderr
