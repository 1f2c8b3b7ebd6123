"""``vecx plan``: candidates measured on a sample, a pick within the budget, commands that build it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import make_vectors, ok, run_vecx

from vecx.bench.plan import _memory_bytes, candidates, parse_budget
from vecx.errors import UsageError


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
