"""Rescoring from compressed codes: ``--rescore-vectors`` given codes their codec scores (extended
RaBitQ) or decodes (per-dimension int8), so that an index and its rescoring rows fit in memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, ok, run_vecx, stored

N, D, SPLIT = 2000, 32, 1600


def recall(found: list[dict], truth: np.ndarray) -> float:
    return float(np.mean([len({r["id"] for r in item["results"]} & set(t.tolist())) / truth.shape[1]
                          for item, t in zip(found, truth, strict=True)]))


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """N clustered vectors with integer ids (the first SPLIT, the rest, and all), imported; states for
    1-bit RaBitQ, 4-bit RaBitQ, global int8 (codes no codec scores: decoded) and per-dimension int8
    (scored by the codec) fitted on the first SPLIT, every table encoded by them."""
    tmp = tmp_path_factory.mktemp("rescore-codes")
    x = make_vectors(N, D, seed=31)
    for name, rows in (("base", slice(0, SPLIT)), ("new", slice(SPLIT, N)), ("all", slice(0, N))):
        pq.write_table(pa.table({"id": list(range(N))[rows],
                                 "vector": pa.FixedSizeListArray.from_arrays(pa.array(x[rows].ravel()), D)}),
                       tmp / f"{name}.src.parquet")
        ok("import", tmp / f"{name}.src.parquet", "-o", tmp / f"{name}.parquet")
    specs = {"rq": "binarize:mode=rabitq", "rq4": "binarize:mode=rabitq:bits=4", "i8": "int8:mode=global",
             "i8p": "int8"}
    for key, spec in specs.items():
        ok("fit", tmp / "base.parquet", "--spec", spec, "-o", tmp / f"{key}.state")
        for name in ("base", "new", "all"):
            ok("encode", tmp / f"{name}.parquet", "--state", tmp / f"{key}.state", "-o", tmp / f"{name}.{key}.parquet")
    q = make_vectors(40, D, seed=32)
    np.save(tmp / "q.npy", q)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    truth = np.argsort(-(q / np.linalg.norm(q, axis=1, keepdims=True)) @ unit.T, axis=1, kind="stable")[:, :10]
    return {"dir": tmp, "x": x, "q": q, "truth": truth}


def test_codes_a_codec_scores_rescore_with_its_estimator(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    index = tmp_path / "rq.vecx"
    ok("index", d / "all.rq.parquet", "-o", index, "--rescore-vectors", d / "all.rq4.parquet")
    info = json.loads(ok("info", index, "--json"))["vecx"]["rescore"]
    assert info["encoded"] is True and info["dtype"] == "codes" and info["dim"] == 4 * D // 8 + 8
    assert "scored by their codec" in ok("info", index)
    found = lines(ok("query", index, "--vector", d / "q.npy", "-k", "10", "--oversample", "10"))
    plain = lines(ok("query", index, "--vector", d / "q.npy", "-k", "10", "--oversample", "1"))
    # The scores are the 4-bit codes' own estimates, computed here from the stored table.
    chain, codes = stored(d / "all.rq4.parquet")
    stage = chain.stages[-1]
    prepared = stage.prepare_queries(chain.encode_query(data["q"]))
    estimate = stage.score(prepared, codes)
    for i, item in enumerate(found):
        rows = [r["id"] for r in item["results"]]
        np.testing.assert_allclose([r["score"] for r in item["results"]], estimate[i, rows], rtol=1e-5, atol=1e-5)
    assert recall(found, data["truth"]) > recall(plain, data["truth"]) + 0.05


@pytest.mark.parametrize("key", ["i8", "i8p"])
def test_int8_codes_rescore_exactly_after_decoding(data: dict, tmp_path: Path, key: str) -> None:
    # Global int8 codes are decoded by their chain, per-dimension ones scored by their codec: both are
    # the exact cosine of the query and the decoded row.
    d = data["dir"]
    index = tmp_path / "b.vecx"
    ok("index", d / "all.rq.parquet", "-o", index, "--rescore-vectors", d / f"all.{key}.parquet")
    found = lines(ok("query", index, "--vector", d / "q.npy", "-k", "5", "--oversample", "8"))
    chain, codes = stored(d / f"all.{key}.parquet")
    decoded = chain.decode(codes).astype(np.float64)
    decoded /= np.linalg.norm(decoded, axis=1, keepdims=True)
    q = data["q"] / np.linalg.norm(data["q"], axis=1, keepdims=True)
    for i, item in enumerate(found):
        rows = [r["id"] for r in item["results"]]
        np.testing.assert_allclose([r["score"] for r in item["results"]], decoded[rows] @ q[i], atol=2e-5)
    # Rows as queries (--like) are rescored by their decoded codes, themselves excluded.
    like = lines(ok("query", index, "--like", "7", "-k", "5"))
    assert len(like[0]["results"]) == 5 and 7 not in [r["id"] for r in like[0]["results"]]
    assert like[0]["results"][0]["score"] == pytest.approx(float(decoded[like[0]["results"][0]["id"]] @ decoded[7]),
                                                           abs=2e-5)


def test_append_and_compact_keep_the_rescoring_codes(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    index = tmp_path / "grow.vecx"
    ok("index", d / "base.rq.parquet", "-o", index, "--rescore-vectors", d / "base.rq4.parquet")
    refused = run_vecx("index", d / "new.rq.parquet", "-o", index, "--append")
    assert refused.code == 2 and "--rescore-vectors" in refused.stderr
    wrong = run_vecx("index", d / "new.rq.parquet", "-o", index, "--append", "--rescore-vectors", d / "new.i8.parquet")
    assert wrong.code == 4
    ok("index", d / "new.rq.parquet", "-o", index, "--append", "--rescore-vectors", d / "new.rq4.parquet")
    whole = tmp_path / "whole.vecx"
    ok("index", d / "all.rq.parquet", "-o", whole, "--rescore-vectors", d / "all.rq4.parquet")
    args = ("--vector", d / "q.npy", "-k", "10", "--oversample", "10")
    grown = lines(ok("query", index, *args))
    assert grown == lines(ok("query", whole, *args))  # exhaustive scans: the same rows and scores
    ok("compact", index)
    assert lines(ok("query", index, *args)) == grown


def test_rescoring_codes_must_come_from_the_same_source(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    other = run_vecx("index", d / "all.rq.parquet", "-o", tmp_path / "x.vecx",
                     "--rescore-vectors", d / "new.rq4.parquet")
    assert other.code == 4 and "other data" in other.stderr
    assert not (tmp_path / "x.vecx").exists()


def test_eval_names_the_codes_stage(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    index = tmp_path / "rq.vecx"
    ok("index", d / "all.rq.parquet", "-o", index, "--rescore-vectors", d / "all.rq4.parquet")
    np.save(tmp_path / "gt.npy", data["truth"].astype(np.int32))
    no_truth = run_vecx("eval", index, "--queries", d / "q.npy")
    assert no_truth.code == 2 and "--truth" in no_truth.stderr  # codes give no exact truth
    report = json.loads(ok("eval", index, "--queries", d / "q.npy", "--truth", tmp_path / "gt.npy",
                           "--oversample", "10", "--json"))
    names = [s["stage"] for s in report["stages"]]
    assert names[-1] == "scan + rescore x10 (codes)"
    assert report["stages"][-1]["recall@10"] > report["stages"][1]["recall@10"]


def staged_index(data: dict, tmp_path: Path, *extra: object, name: str = "all") -> Path:
    """A 1-bit RaBitQ scan rescored in two stages: 4-bit RaBitQ codes, then the float vectors."""
    d = data["dir"]
    index = tmp_path / f"{name}-staged.vecx"
    ok("index", d / f"{name}.rq.parquet", "-o", index, "--rescore-vectors", d / f"{name}.rq4.parquet",
       "--rescore-vectors", d / f"{name}.parquet", *extra)
    return index


def test_stages_narrow_then_rank_exactly(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    index = staged_index(data, tmp_path)
    meta = json.loads(ok("info", index, "--json"))["vecx"]
    assert meta["search"]["oversample"] == [10, 2] and meta["format_version"] == 3
    assert [s["file"] for s in meta["refine"]] == ["refine1.npy"] and meta["refine"][0]["encoded"] is True
    shown = ok("info", index)
    assert "stage 1: binarize:bits=4" in shown and "stage 2: 32 x float32" in shown and "oversample 10,2" in shown
    k, f1, f2 = 5, 12, 3
    found = lines(ok("query", index, "--vector", d / "q.npy", "-k", k, "--oversample", f"{f1},{f2}"))
    # The same three steps computed here: the 1-bit scan's k x f1 (the index's own, unrescored), the
    # 4-bit estimator's best k x f2 of those, the exact cosine's best k of these.
    first = lines(ok("query", index, "--vector", d / "q.npy", "-k", k * f1, "--oversample", "1"))
    chain, codes = stored(d / "all.rq4.parquet")
    stage = chain.stages[-1]
    estimate = stage.score(stage.prepare_queries(chain.encode_query(data["q"])), codes)
    x = data["x"] / np.linalg.norm(data["x"], axis=1, keepdims=True)
    for i, item in enumerate(found):
        candidates = np.array([r["id"] for r in first[i]["results"]])
        kept = candidates[np.argsort(-estimate[i, candidates], kind="stable")[: k * f2]]
        q = data["q"][i] / np.linalg.norm(data["q"][i])
        best = kept[np.argsort(-(x[kept] @ q), kind="stable")[:k]]
        assert [r["id"] for r in item["results"]] == best.tolist()
        np.testing.assert_allclose([r["score"] for r in item["results"]], x[best] @ q, atol=2e-5)


def test_stages_keeping_every_candidate_give_the_exact_top_k(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    index = staged_index(data, tmp_path)
    everything = f"{N // 10},{N // 10}"  # every row a candidate, and the 4-bit stage drops none
    found = lines(ok("query", index, "--vector", d / "q.npy", "-k", "10", "--oversample", everything))
    assert [[r["id"] for r in item["results"]] for item in found] == data["truth"].tolist()
    narrowed = lines(ok("query", index, "--vector", d / "q.npy", "-k", "10", "--oversample", "10,1"))
    codes_only = lines(ok("query", index, "--vector", d / "q.npy", "-k", "10", "--oversample", "1"))
    assert recall(found, data["truth"]) == 1.0 > recall(narrowed, data["truth"]) > recall(codes_only, data["truth"])


def test_eval_splits_the_recall_per_stage_and_tunes_every_factor(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    index = staged_index(data, tmp_path)
    np.save(tmp_path / "gt.npy", data["truth"].astype(np.int32))
    args = ("--queries", d / "q.npy", "--truth", tmp_path / "gt.npy")
    report = json.loads(ok("eval", index, *args, "--oversample", "20,3", "--json"))
    stages = {s["stage"]: s["recall@10"] for s in report["stages"]}
    assert list(stages)[2:] == ["scan + rescore x20 (codes)", "scan + rescore x20 (codes) + x3 (float)"]
    scan, codes, both = stages["scan"], stages["scan + rescore x20 (codes)"], stages[list(stages)[3]]
    assert scan < codes < both
    tuned = json.loads(ok("eval", index, *args, "--target-recall", "0.98", "--save", "--json"))["tuning"]
    assert tuned["reached"] and tuned["recall@10"] >= 0.98 and tuned.get("saved")
    first, later = tuned["oversample"]
    assert later <= first
    # The smallest first factor: one step lower (every later stage keeping all) misses the target.
    lower = [t for t in tuned["tried"] if t["oversample"][0] < first]
    assert lower and all(t["recall@10"] < 0.98 for t in lower if t["oversample"][1] == t["oversample"][0])
    assert json.loads(ok("info", index, "--json"))["vecx"]["search"]["oversample"] == [first, later]


def test_stages_survive_append_and_compact(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    index = staged_index(data, tmp_path, name="base")
    one = run_vecx("index", d / "new.rq.parquet", "-o", index, "--append", "--rescore-vectors", d / "new.parquet")
    assert one.code == 2 and "2 stages" in one.stderr
    ok("index", d / "new.rq.parquet", "-o", index, "--append", "--rescore-vectors", d / "new.rq4.parquet",
       "--rescore-vectors", d / "new.parquet")
    whole = staged_index(data, tmp_path)
    args = ("--vector", d / "q.npy", "-k", "10", "--oversample", "10,2")
    grown = lines(ok("query", index, *args))
    assert grown == lines(ok("query", whole, *args))
    ok("compact", index)
    assert lines(ok("query", index, *args)) == grown
    like = lines(ok("query", index, "--like", "7", "-k", "5"))
    assert len(like[0]["results"]) == 5 and 7 not in [r["id"] for r in like[0]["results"]]


def test_stage_factors_are_checked(data: dict, tmp_path: Path) -> None:
    d = data["dir"]
    index = staged_index(data, tmp_path)
    for bad in ("2,4", "10,2,1", "0", "x"):
        r = run_vecx("query", index, "--vector", d / "q.npy", "--oversample", bad)
        assert r.code == 2 and "--oversample" in r.stderr and "Traceback" not in r.stderr, (bad, r.stderr)
    # One factor: the later ones are the index's (2), never above it.
    def query(factors: str) -> list[dict]:
        return lines(ok("query", index, "--vector", d / "q.npy", "--oversample", factors))

    assert query("6") == query("6,2") != query("6,1")
    assert query("2") == query("2,2") and query("1") != query("1,1")  # 1 alone: no rescoring
    single = tmp_path / "single.vecx"
    r = run_vecx("index", d / "all.rq.parquet", "-o", single, "--rescore-vectors", d / "all.parquet",
                 "--oversample", "10,2")
    assert r.code == 2 and "1 stage" in r.stderr and not single.exists()


@pytest.mark.parametrize("edit", ["file", "oversample", "grows", "multi_last", "unlisted_json"])
def test_a_damaged_stage_list_is_refused(data: dict, tmp_path: Path, edit: str) -> None:
    """The manifest's stages are untrusted input: a stage file outside its name, factors that do not
    match the stages, or a stage whose chain is not listed make the index refused (exit 3), with
    nothing read from the named files."""
    import os

    d = data["dir"]
    index = staged_index(data, tmp_path)
    path = Path(os.path.realpath(index)) / "manifest.json"
    manifest = json.loads(path.read_text())
    if edit == "file":
        manifest["refine"][0]["file"] = "rescore.npy"
    elif edit == "oversample":
        manifest["search"]["oversample"] = 10
    elif edit == "grows":
        manifest["search"]["oversample"] = [2, 10]
    elif edit == "multi_last":
        manifest["rescore"]["multi"] = True
    else:
        del manifest["files"]["refine1.json"]
    path.write_text(json.dumps(manifest))
    r = run_vecx("query", index, "--vector", d / "q.npy", "-k", "3")
    assert r.code == 3 and "Traceback" not in r.stderr, r.stderr
    assert "manifest" in r.stderr or "refine" in r.stderr or "oversample" in r.stderr, r.stderr
