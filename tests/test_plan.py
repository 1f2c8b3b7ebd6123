"""``vecx plan``: candidates measured on a sample, a pick within the budget, commands that build it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import make_vectors, ok, run_vecx, shared

from vecx.bench.plan import _memory_bytes, candidates, parse_budget
from vecx.chain import Chain
from vecx.errors import UsageError
from vecx.space import VectorSpec


def test_budgets_read_as_sizes_or_per_vector() -> None:
    assert parse_budget("2MB", 1000) == (2e6, 2000.0)
    assert parse_budget("1.5 KiB", 3) == (1536.0, 512.0)
    assert parse_budget("64B/vector", 1000) == (64000.0, 64.0)
    for bad in ("2", "lots", "-1MB", "0MB", "64B/row"):
        with pytest.raises(UsageError, match="--budget"):
            parse_budget(bad, 1000)


def test_candidates_whose_codes_alone_exceed_the_budget_are_left_out() -> None:
    specs = [spec for spec, _, _ in candidates(384, 50.0, 30000)]
    assert "f16" not in specs and "int8" not in specs and "binarize" in specs  # 768 and 384 bytes > 50; 48 fits
    assert "binarize:mode=rabitq" not in specs  # 52 bytes: over
    # the two largest PQ sizes under 50 bytes, plain, OPQ, 4-bit and in coarse lists
    assert {"pq:48x8", "pq:32x8", "pq:48x8:opq=true", "pq:96x4"} <= set(specs) and "pq:64x8" not in specs


def test_the_pick_fits_the_budget_once_built_on_the_whole_base(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", make_vectors(4000, 32, seed=21))
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    budget = 48 * 4000  # 48 bytes per vector, the whole index
    report = json.loads(ok("plan", tmp_path / "x.parquet", "--budget", f"{budget}B", "--sample", "2000",
                           "--target-recall", "0.9", "--json", "-q"))
    measured = report["candidates"]
    assert report["budget"]["bytes"] == budget and len(measured) >= 5
    for c in measured:
        assert c["fits"] == (c["memory_bytes"] <= budget), c
        assert 0 <= c["recall@10"] <= c["recall@10_rescored"] + 0.05 and c["recall@10_rescored"] <= 1.0
    pareto = [c for c in measured if c["pareto"]]
    assert pareto and all(c["fits"] for c in pareto)
    pick = report["pick"]
    chosen = next(c for c in measured if c["spec"] == pick["spec"])
    assert chosen["fits"] and pick["reaches_target"] and chosen["tuned"]["recall@10"] >= 0.9
    assert pick["settings"] == chosen["tuned"]  # the least effort reaching the target, which the commands set
    fastest = max((c for c in measured if c["fits"] and c["tuned"]), key=lambda c: c["tuned"]["qps"])
    assert fastest is chosen
    if pick["settings"]["oversample"] > 1:
        assert f"--oversample {pick['settings']['oversample']}" in pick["commands"][1]
    # The commands build it on the whole base; what it keeps in memory is within the budget.
    for command in pick["commands"]:
        words = shlex.split(command)
        assert words[0] == "vecx"
        r = run_vecx(*words[1:], cwd=tmp_path)
        assert r.code == 0, (command, r.stderr)
    built = _memory_bytes(str(tmp_path / "x.vecx"))
    assert built["fixed"] + built["per_row"] * 4000 <= budget


def test_a_budget_nothing_fits_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", make_vectors(1000, 16, seed=22))
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    r = run_vecx("plan", tmp_path / "x.parquet", "--budget", "3B/vector", "--sample", "500")
    assert r.code == 2 and "no candidate fits" in r.stderr
    r = run_vecx("plan", tmp_path / "x.parquet", "--budget", "lots")
    assert r.code == 2 and "--budget" in r.stderr


def test_index_budget_builds_the_plans_pick_within_the_budget(tmp_path: Path) -> None:
    x = make_vectors(3000, 32, seed=23)
    np.save(tmp_path / "x.npy", x)
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    budget = 40 * 3000
    report = json.loads(ok("index", tmp_path / "x.parquet", "-o", tmp_path / "x.vecx", "--budget", "40B/vector",
                           "--target-recall", "0.9", "--json", "-q"))
    pick = report["plan"]["pick"]
    # The pick is the plan's: a candidate that fits and reaches the target (which one is fastest may
    # vary between runs on a busy machine; the build follows whichever the plan picked).
    chosen = next(c for c in report["plan"]["candidates"] if c["spec"] == pick["spec"])
    assert chosen["fits"] and chosen["tuned"] and pick["reaches_target"]
    manifest = report["manifest"]
    assert manifest["table"]["spec"] == Chain.from_spec(pick["spec"], VectorSpec(32, "float32", "l2", False)).spec
    assert bool(manifest["rescore"]) == pick["rescore"]
    # The target was then sought on the whole index, and the settings reaching it saved as its defaults.
    tuning = report["tuning"]
    settings = tuning if tuning["reached"] else pick["settings"]
    assert tuning["reached"] and tuning["recall@10"] >= 0.9
    if pick["rescore"]:
        assert manifest["search"]["oversample"] == settings["oversample"]
    if "nprobe" in settings:
        assert manifest["search"]["nprobe"] == settings["nprobe"]
    # What it keeps in memory, measured on the files, is within the budget and is what the report says.
    built = _memory_bytes(str(tmp_path / "x.vecx"))
    assert report["memory_bytes"] == built["fixed"] + built["per_row"] * 3000 <= budget
    # It answers queries at the recall the plan promised (the base's own rows as queries here).
    # A pick without rescoring keeps no float vectors, so the exact neighbours come from 'vecx truth'.
    ok("truth", tmp_path / "x.parquet", "--queries", tmp_path / "x.npy", "-o", tmp_path / "truth.parquet", "-q")
    found = json.loads(ok("eval", tmp_path / "x.vecx", "--queries", tmp_path / "x.npy",
                          "--truth", tmp_path / "truth.parquet", "--json", "-q"))
    assert found["stages"][-1]["recall@10"] >= 0.85
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".vecx-budget-")]  # the codes were removed


def test_index_budget_options_that_conflict_are_refused(tmp_path: Path) -> None:
    for extra in (["--append"], ["--scan", "graph"], ["--rescore-vectors", "x.parquet"], ["--shards", "2"]):
        r = run_vecx("index", "x.parquet", "-o", "x.vecx", "--budget", "2MB", *extra, cwd=tmp_path)
        assert r.code == 2 and "--budget" in r.stderr, extra
    r = run_vecx("index", "x.parquet", "-o", "x.vecx", "--target-recall", "0.9", cwd=tmp_path)
    assert r.code == 2 and "--budget" in r.stderr


def test_a_build_refused_before_commit_leaves_the_previous_index(tmp_path: Path) -> None:
    """The memory check of --budget runs on the written files before they replace the index: a refusal
    there (over the budget) leaves the previous index answering as before, and no half version."""
    from vecx.bench.plan import memory_in
    from vecx.indexes.build import build

    np.save(tmp_path / "x.npy", make_vectors(2000, 16, seed=24))
    ok("import", tmp_path / "x.npy", "-o", tmp_path / "x.parquet")
    ok("encode", tmp_path / "x.parquet", "-o", tmp_path / "pq.parquet", "--spec", "pq:4x8")
    ok("index", tmp_path / "x.parquet", "-o", tmp_path / "x.vecx")
    before = ok("query", tmp_path / "x.vecx", "--like", "3", "-k", "5", "--format", "jsonl")
    seen: list[int] = []

    def over_budget(version: str) -> None:
        seen.append(memory_in(version))
        raise UsageError("over the budget")

    with pytest.raises(UsageError, match="over the budget"):
        build(str(tmp_path / "pq.parquet"), str(tmp_path / "x.vecx"), before_commit=over_budget)
    assert seen and seen[0] >= 2000 * 4  # the PQ codes were written, and measured, before the refusal
    assert ok("query", tmp_path / "x.vecx", "--like", "3", "-k", "5", "--format", "jsonl") == before
    info = json.loads(ok("info", tmp_path / "x.vecx", "--json"))
    assert "pq" not in json.dumps(info.get("chain", info))
    leftovers = [p for p in tmp_path.rglob("*") if "tmp" in p.name or p.name.startswith(".new")]
    assert not leftovers, leftovers


@pytest.mark.slow
def test_index_budget_on_a_shared_set_respects_the_budget_and_reaches_the_target(tmp_path: Path) -> None:
    """debian-minilm-30k, 2 MB, target 0.9, planned on a 5,000-row sample and tuned on half the set's
    queries: the built index keeps at most 2 MB in memory, and on the other half of the queries (exact
    truth over the whole base) its recall@10 is at the target, within the halves' difference."""
    from vecx.bench.plan import PlanOptions, build_for_budget

    data = shared("debian-minilm-30k")
    ok("import", data / "base.npy", "-o", tmp_path / "docs.parquet", "--metric", "cosine")
    q, gt = np.load(data / "queries.npy"), np.load(data / "gt.npy")
    np.save(tmp_path / "tune.npy", q[:500])
    np.save(tmp_path / "held.npy", q[500:])
    np.save(tmp_path / "held-gt.npy", gt[500:])
    report = build_for_budget(str(tmp_path / "docs.parquet"), str(tmp_path / "docs.vecx"),
                              PlanOptions(budget="2MB", target_recall=0.9, sample=5000,
                                          queries=str(tmp_path / "tune.npy")))
    assert report["memory_bytes"] <= 2_000_000 and report["plan"]["pick"]["reaches_target"]
    assert report["tuning"]["reached"], report["tuning"]
    built = _memory_bytes(str(tmp_path / "docs.vecx"))
    assert built["fixed"] + built["per_row"] * 30_000 == report["memory_bytes"]
    found = json.loads(ok("eval", tmp_path / "docs.vecx", "--queries", tmp_path / "held.npy", "--truth",
                          tmp_path / "held-gt.npy", "--json", "-q"))
    assert found["stages"][-1]["recall@10"] >= 0.89, (report["tuning"], found["stages"])
