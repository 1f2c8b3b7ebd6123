"""``vecx bench``: figures checked against independent brute force, exit codes, nothing left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import make_vectors, run_vecx, run_vecx_process

N, D, NQ, K = 1500, 32, 40, 10
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def exact_rows(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Brute-force cosine top-k rows (numpy only, not vecx's truth code)."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.argsort(-(qn @ xn.T), axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K]) & set(t[:K])) / K for f, t in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("bench")
    x, q = make_vectors(N, D, seed=5), make_vectors(NQ, D, seed=6)
    np.save(d / "base.npy", x)
    np.save(d / "queries.npy", q)
    np.save(d / "gt.npy", exact_rows(x, q, 20).astype(np.int32))
    (d / "tmp").mkdir()
    return {"dir": d, "x": x, "q": q, "env": {"TMPDIR": str(d / "tmp")}}


def bench(data: dict, *args: str, env: dict | None = None, runner=run_vecx):
    return runner("bench", data["dir"] / "base.npy", "--queries", data["dir"] / "queries.npy", *args,
                  cwd=data["dir"], env={**data["env"], **(env or {})})


def assert_clean(data: dict) -> None:
    assert os.listdir(data["dir"] / "tmp") == [], "bench left files in its temporary directory"
    stray = {p.name for p in data["dir"].iterdir()} - {"base.npy", "queries.npy", "gt.npy", "tmp", "gt.parquet",
                                                      "pareto.png", "report.md", "fakes"}
    assert not stray, f"bench left files behind: {stray}"


@pytest.fixture(scope="module")
def report(data: dict) -> dict:
    """One run with two specs, peers, a plot and a Markdown file (a deterministic graph)."""
    r = bench(data, "--spec", "f16", "--spec", "binarize:mode=sign", "--oversample", "4",
                 "--oversample", "150",
              "--index-option", "deterministic=true", "--index-option", f"expansion_search={N}", "--peers",
              "--plot", "pareto.png", "--out", "report.md", "--repeat", "1", "--json")
    assert r.code == 0, r.stderr
    return json.loads(r.out)


def rows_of(report: dict, system: str) -> dict[str, dict]:
    return {row["name"]: row for row in report["rows"] if row["system"] == system}


def test_recall_matches_brute_force(data: dict, report: dict) -> None:
    vecx = rows_of(report, "vecx")
    truth = exact_rows(data["x"], data["q"], K)
    # f16 codes searched exactly give this recall; a graph searched with expansion = rows is exact too.
    x16, q16 = data["x"].astype(np.float16).astype(np.float32), data["q"].astype(np.float16).astype(np.float32)
    assert report["index"]["expansion_search"] == N
    assert abs(vecx["f16"]["recall"]["x1"] - recall(exact_rows(x16, q16, K), truth)) <= 0.005
    # x150 with k=10 rescores every row of the base exactly: the truth itself.
    assert vecx["binarize:mode=sign"]["recall"]["x150"] == 1.0
    # Sign bits alone are far from exact on this data (so the x1 figure is not rescored by mistake).
    assert vecx["binarize:mode=sign"]["recall"]["x1"] < 0.9
    assert_clean(data)


def test_bytes_per_vector_are_the_specs(report: dict) -> None:
    vecx = rows_of(report, "vecx")
    assert vecx["f16"]["bytes_per_vector"] == 2 * D
    assert vecx["binarize:mode=sign"]["bytes_per_vector"] == D // 8
    assert vecx["f16"]["spec"] == "f16" and "mode=sign" in vecx["binarize:mode=sign"]["spec"]


def test_peers_rows_at_the_same_bytes(data: dict, report: dict) -> None:
    faiss, usearch = rows_of(report, "faiss"), rows_of(report, "usearch")
    assert {"BFlat", "HNSW16,Flat"} <= set(faiss) and {"b1", "f16"} <= set(usearch)
    assert faiss["BFlat"]["bytes_per_vector"] == usearch["b1"]["bytes_per_vector"] == D // 8
    assert usearch["f16"]["bytes_per_vector"] == 2 * D
    for row in [*faiss.values(), *usearch.values()]:
        assert set(row["recall"]) == {"x1", "x4", "x150"}
        assert all(0.0 <= v <= 1.0 for v in row["recall"].values())
        assert row["recall"]["x150"] >= 0.97  # all rows asked for: a graph may still miss an unreachable node
    assert faiss["BFlat"]["recall"]["x150"] == 1.0  # an exhaustive scan returns every row: exact
    # faiss BFlat is an exact Hamming scan of the sign bits: its recall lies between the brute-force
    # bounds (rows strictly nearer than the k-th distance are certain, rows at it are tie-broken).
    bx, bq = (np.unpackbits(np.packbits(a > 0, axis=1), axis=1).astype(np.int32) for a in (data["x"], data["q"]))
    dist = bq.sum(1)[:, None] + bx.sum(1)[None, :] - 2 * bq @ bx.T
    truth = exact_rows(data["x"], data["q"], K)
    low = high = 0.0
    for i in range(NQ):
        kth = np.sort(dist[i])[K - 1]
        certain, possible = np.flatnonzero(dist[i] < kth), np.flatnonzero(dist[i] <= kth)
        hits_certain = len(set(truth[i]) & set(certain))
        hits_tied = len(set(truth[i]) & (set(possible) - set(certain)))
        low += hits_certain / K / NQ
        high += (hits_certain + min(hits_tied, K - len(certain))) / K / NQ
    assert low - 1e-4 <= faiss["BFlat"]["recall"]["x1"] <= high + 1e-4


def test_pareto_and_order(report: dict) -> None:
    rows = report["rows"]
    assert [r["bytes_per_vector"] for r in rows] == sorted(r["bytes_per_vector"] for r in rows)
    for row in rows:
        best = max(row["recall"].values())
        dominated = any(o is not row and o["bytes_per_vector"] <= row["bytes_per_vector"]
                        and max(o["recall"].values()) >= best
                        and (o["bytes_per_vector"] < row["bytes_per_vector"] or max(o["recall"].values()) > best)
                        for o in rows)
        assert row["pareto"] == (not dominated)


def test_plot_and_markdown(data: dict, report: dict) -> None:
    png = (data["dir"] / "pareto.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    md = (data["dir"] / "report.md").read_text()
    assert "Command: `vecx bench " in md and "| vecx | f16 | 64 |" in md and "| faiss | BFlat | 4 |" in md


def test_truth_files_give_the_same_figures(data: dict, report: dict) -> None:
    """Truth computed on the fly, from a .npy of rows, and from a 'vecx truth' table agree; wrong truth does not."""
    gt = run_vecx("truth", data["dir"] / "base.npy", "--queries", data["dir"] / "queries.npy",
                  "-o", data["dir"] / "gt.parquet", "-k", "10")
    assert gt.code == 0, gt.stderr
    common = ("--spec", "binarize:mode=sign", "--oversample", "4", "--oversample", "150", "--index-option",
              "deterministic=true", "--index-option", f"expansion_search={N}", "--repeat", "1", "--json")
    want = rows_of(report, "vecx")["binarize:mode=sign"]["recall"]
    for truth in ("gt.npy", "gt.parquet"):
        r = bench(data, *common, "--truth", truth)
        assert r.code == 0, r.stderr
        assert json.loads(r.out)["rows"][0]["recall"] == want
    shuffled = np.load(data["dir"] / "gt.npy")[::-1].copy()  # each query gets another query's truth
    np.save(data["dir"] / "tmp" / "wrong.npy", shuffled)
    r = bench(data, *common, "--truth", str(data["dir"] / "tmp" / "wrong.npy"))
    os.unlink(data["dir"] / "tmp" / "wrong.npy")
    assert r.code == 0, r.stderr
    assert json.loads(r.out)["rows"][0]["recall"]["x150"] < 0.5
    assert_clean(data)


@pytest.mark.parametrize("args, code, words", [
    (("--spec", "nosuch"), 2, "unknown codec"),
    (("--spec", "f16", "--spec", "pca:0"), 2, "pca"),
    (("--spec", "f16", "--oversample", "1"), 2, "--oversample 1"),
    (("--spec", "f16", "--index-option", "nosuch=3"), 2, "nosuch"),
    (("--spec", "f16", "--truth", "missing.npy"), 3, "missing.npy"),
    (("--spec", "f16", "--truth", "queries.npy"), 3, "row numbers"),
])
def test_bad_input_exit_codes(data: dict, args: tuple, code: int, words: str) -> None:
    r = bench(data, *args)
    assert r.code == code, r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr
    assert_clean(data)


def test_queries_of_the_wrong_dimension(data: dict, tmp_path: Path) -> None:
    np.save(tmp_path / "q7.npy", make_vectors(5, 7))
    r = run_vecx("bench", data["dir"] / "base.npy", "--queries", tmp_path / "q7.npy", "--spec", "f16", env=data["env"])
    assert r.code == 4 and "7 dimensions" in r.stderr
    r = run_vecx("bench", tmp_path / "missing.npy", "--queries", data["dir"] / "queries.npy", "--spec", "f16",
                 env=data["env"])
    assert r.code == 3 and "missing.npy" in r.stderr
    assert_clean(data)


def test_peers_without_faiss_is_a_one_line_usage_error(data: dict) -> None:
    fakes = data["dir"] / "fakes"
    fakes.mkdir(exist_ok=True)
    (fakes / "faiss.py").write_text("raise ImportError('faiss hidden by the test')\n")
    pythonpath = os.pathsep.join([str(fakes), os.environ.get("PYTHONPATH", "")])
    # A process of its own: PYTHONPATH is read at start-up, and this one has imported faiss already.
    r = bench(data, "--spec", "f16", "--peers", env={"PYTHONPATH": pythonpath}, runner=run_vecx_process)
    assert r.code == 2
    lines = r.stderr.strip().splitlines()  # the error, and the hint naming what to install
    assert len(lines) == 2 and lines[1].startswith("vecx: hint: pip install faiss-cpu")
    assert_clean(data)


def test_vecx_tables_as_inputs(data: dict, report: dict, tmp_path: Path) -> None:
    """An imported base table and a Parquet query file give the figures the .npy files gave."""
    base, queries = tmp_path / "base.parquet", tmp_path / "queries.parquet"
    assert run_vecx("import", data["dir"] / "base.npy", "-o", base).code == 0
    assert run_vecx("import", data["dir"] / "queries.npy", "-o", queries).code == 0
    r = run_vecx("bench", base, "--queries", queries, "--spec", "binarize:mode=sign", "--oversample", "4",
                 "--oversample", "150",
                 "--index-option", "deterministic=true", "--index-option", f"expansion_search={N}",
                 "--repeat", "1", "--json", env=data["env"])
    assert r.code == 0, r.stderr
    assert json.loads(r.out)["rows"][0]["recall"] == rows_of(report, "vecx")["binarize:mode=sign"]["recall"]
    assert_clean(data)


def test_plot_adds_a_panel_for_the_high_recall_region(tmp_path: Path) -> None:
    """Rescored rows crowd near recall 1: the plot gets a zoomed panel below (a taller figure) when
    at least two rows reach the high-recall region, and stays one panel otherwise."""
    import struct

    pytest.importorskip("matplotlib")
    from vecx.bench.plot import draw

    def report(after: list[float]) -> dict:
        rows = [{"system": "vecx", "name": f"c{i}", "bytes_per_vector": 8 * (i + 1), "pareto": i == 0,
                 "recall": {"x1": 0.4, "x10": value}} for i, value in enumerate(after)]
        return {"k": 10, "rescore": [10], "rows": rows,
                "base": {"path": str(tmp_path / "base.npy"), "rows": 100, "dim": 8, "metric": "cosine"}}

    def height(path: Path) -> int:
        return struct.unpack(">II", path.read_bytes()[16:24])[1]  # the PNG header's IHDR width, height

    draw(report([0.97, 0.99, 0.6]), str(tmp_path / "zoom.png"))
    draw(report([0.5, 0.6]), str(tmp_path / "flat.png"))
    assert height(tmp_path / "zoom.png") == 9 * 120 and height(tmp_path / "flat.png") == 7 * 120


def test_a_faiss_peer_that_needs_no_training_and_a_multi_bit_rabitq_peer(data: dict) -> None:
    """A peer index that is trained from the start (``Flat``) times its encode as trained ones do,
    and ``bits=B`` RaBitQ chains are paired with faiss's RaBitQ of B bits."""
    r = bench(data, "--spec", "binarize:mode=rabitq:bits=2", "--peer", "Flat", "--peers", "--repeat", "1", "--json")
    assert r.code == 0, r.stderr
    faiss = rows_of(json.loads(r.out), "faiss")
    assert {"Flat", "RaBitQ2"} <= set(faiss)
    assert faiss["Flat"]["encode_mb_s"] > 0 and faiss["RaBitQ2"]["encode_mb_s"] > 0
    assert faiss["RaBitQ2"]["bytes_per_vector"] > D // 8 * 2  # two planes plus faiss's factors
    assert_clean(data)


def test_a_rescoring_stage_in_memory_counts_its_bytes_and_its_own_recall(data: dict, tmp_path: Path) -> None:
    """``SPEC@rescore=SPEC2``: the row's bytes are both codes; its in-memory recall is SPEC2's codes
    ranking every row (x150 with k = 10 asks for all), which the codec computes here independently."""
    from conftest import ok, stored

    staged = "binarize:mode=rabitq@rescore=binarize:mode=rabitq:bits=4"
    r = bench(data, "--spec", "binarize:mode=rabitq", "--spec", staged, "--oversample", "150", "--repeat", "1",
              "--out", "report.md", "--json")
    assert r.code == 0, r.stderr
    got = json.loads(r.out)
    rows = rows_of(got, "vecx")
    plain, two = rows["binarize:mode=rabitq"], rows[staged]
    assert two["stage"] == "binarize:mode=rabitq:bits=4" and two["stage_bytes_per_vector"] == 4 * D // 8 + 8
    assert two["bytes_per_vector"] == plain["bytes_per_vector"] + two["stage_bytes_per_vector"]
    assert two["recall"]["x1"] == plain["recall"]["x1"]  # the same first stage
    ok("import", data["dir"] / "base.npy", "-o", tmp_path / "base.parquet")
    ok("encode", tmp_path / "base.parquet", "--spec", "binarize:mode=rabitq:bits=4", "-o", tmp_path / "rq4.parquet")
    chain, codes = stored(tmp_path / "rq4.parquet")
    estimate = chain.stages[-1].score(chain.stages[-1].prepare_queries(chain.encode_query(data["q"])), codes)
    truth = exact_rows(data["x"], data["q"], K)
    assert two["memory_recall"] == pytest.approx(recall(np.argsort(-estimate, axis=1)[:, :K], truth), abs=0.005)
    assert plain["recall"]["x1"] < two["memory_recall"] <= two["recall"]["x150"]
    assert "memory_recall" not in plain and two["pareto_memory"] is True
    table = (data["dir"] / "report.md").read_text()
    assert "| in memory |" in table and "pareto (memory)" in table
    (data["dir"] / "report.md").unlink()
    assert_clean(data)
