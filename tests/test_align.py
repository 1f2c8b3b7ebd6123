"""``vecx align``: a map from one embedding model's space into another's, fitted on the same items
by both models (paired by id), applied to tables and to queries (``vecx query --align``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, ok, run_vecx, shared, stored

from vecx.chain import Chain

N, D_OLD, D_NEW = 1200, 16, 24


def table(path: Path, ids: list, x: np.ndarray) -> Path:
    """An imported vecx table of rows ``x`` with ``ids``."""
    raw = path.parent / "raw" / path.name  # beside the imported tables, not among them
    raw.parent.mkdir(exist_ok=True)
    pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])}),
                   raw)
    ok("import", raw, "-o", path)
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same N items by an "old" model (16-d) and a "new" one: a rotation of the old vectors plus
    noise (new_same, 16-d), and a 24-d linear image of them plus noise (new_wide); the new tables
    hold the items shuffled, with 100 items of their own and without 100 of the old ones."""
    tmp = tmp_path_factory.mktemp("align")
    rng = np.random.default_rng(7)
    old = make_vectors(N, D_OLD, seed=8)
    rotation = np.linalg.qr(rng.standard_normal((D_OLD, D_OLD)))[0]
    wide = rng.standard_normal((D_OLD, D_NEW)) / np.sqrt(D_OLD)
    same = old @ rotation + 0.01 * rng.standard_normal((N, D_OLD))
    widened = old @ wide + 0.01 * rng.standard_normal((N, D_NEW))
    ids = list(range(N))
    keep = rng.permutation(np.arange(100, N))  # the new tables lack items 0-99, in another order
    extra = list(range(N, N + 100))
    out = {"dir": tmp, "old": old, "rotation": rotation, "same": same, "wide": widened,
           "old_table": table(tmp / "old.parquet", ids, old)}
    for name, y in (("same", same), ("wide", widened)):
        rows = np.concatenate([y[keep], rng.standard_normal((100, y.shape[1])).astype(np.float32)])
        out[f"{name}_table"] = table(tmp / f"{name}.parquet", [ids[i] for i in keep] + extra, rows.astype(np.float32))
    return out


def matrix(state: Path) -> np.ndarray:
    return Chain.from_state_file(str(state), None).stages[0].state()["matrix"]


def test_procrustes_finds_the_rotation_between_two_models(pair: dict, tmp_path: Path) -> None:
    report = json.loads(ok("align", "fit", "--from", pair["old_table"], "--to", pair["same_table"],
                           "-o", tmp_path / "map.state", "--json"))
    # Items 100.. are in both tables (the new tables' own 100 are left out); 10% held out.
    assert report["pairs"] == N - 100 and report["held_out"] == (N - 100) // 10
    assert report["fitted"] == report["pairs"] - report["held_out"]
    assert report["spec"] == "align:dim=16:kind=orthogonal"
    w = matrix(tmp_path / "map.state")
    np.testing.assert_allclose(w @ w.T, np.eye(D_OLD), atol=1e-5)  # orthogonal
    np.testing.assert_allclose(w, pair["rotation"], atol=0.02)  # the rotation, found from unordered pairs
    # Held-out items find their own new vector (among clustered neighbours) far more often mapped.
    assert report["held_out_recall"]["recall@10"] >= 0.95
    assert report["held_out_recall"]["recall@1"] > report["identity_recall"]["recall@1"] + 0.3


def test_ridge_maps_into_another_dimension(pair: dict, tmp_path: Path) -> None:
    report = json.loads(ok("align", "fit", "--from", pair["old_table"], "--to", pair["wide_table"], "-o",
                           tmp_path / "map.state", "--kind", "linear", "--ridge", "0.5", "--held-out", "0", "--json"))
    assert report["spec"] == "align:dim=24:kind=linear:ridge=0.5" and report["held_out"] == 0
    assert report["identity_recall"] is None  # 16-d and 24-d vectors: no map is no baseline
    x, y = pair["old"][100:].astype(np.float64), pair["wide"][100:].astype(np.float64)
    want = np.linalg.solve(x.T @ x + 0.5 * np.eye(D_OLD), x.T @ y)  # every common item fitted (no held-out)
    np.testing.assert_allclose(matrix(tmp_path / "map.state"), want, rtol=1e-4, atol=1e-5)
    # A table mapped through it (the group's default subcommand): its rows times the matrix.
    ok("align", pair["old_table"], "-o", tmp_path / "mapped.parquet", "--state", tmp_path / "map.state")
    chain, mapped = stored(tmp_path / "mapped.parquet")
    assert chain.output.dim == D_NEW
    np.testing.assert_allclose(mapped, pair["old"] @ matrix(tmp_path / "map.state"), rtol=1e-5, atol=1e-5)


def test_queries_of_one_model_search_the_other_models_index(pair: dict, tmp_path: Path) -> None:
    state, index = tmp_path / "map.state", tmp_path / "new.vecx"
    ok("align", "fit", "--from", pair["old_table"], "--to", pair["wide_table"], "-o", state, "--kind", "linear")
    ok("index", pair["wide_table"], "-o", index, "--deterministic")
    q = pair["old"][:20]
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "mapped.npy", (q @ matrix(state)).astype(np.float32))
    args = ("-k", "5", "--scan", "exhaustive", "--format", "jsonl")
    aligned = ok("query", index, "--vector", tmp_path / "q.npy", "--align", state, *args)
    assert aligned == ok("query", index, "--vector", tmp_path / "mapped.npy", *args)
    # Wrong directions and misuse: one line each, documented codes.
    wrong = run_vecx("query", index, "--vector", tmp_path / "mapped.npy", "--align", state)
    assert wrong.code == 4 and "24-d query vectors" in wrong.stderr and "16-d" in wrong.stderr, wrong.stderr
    like = run_vecx("query", index, "--like", "200", "--align", state)
    assert like.code == 2 and "--align" in like.stderr
    ok("fit", pair["old_table"], "--spec", "pca:4", "-o", tmp_path / "pca.state")
    other = run_vecx("query", index, "--vector", tmp_path / "q.npy", "--align", tmp_path / "pca.state")
    assert other.code == 2 and "not a map" in other.stderr


def test_tables_without_common_items_or_with_other_ids_are_refused(pair: dict, tmp_path: Path) -> None:
    lonely = table(tmp_path / "lonely.parquet", list(range(5000, 5000 + 50)), make_vectors(50, D_NEW, seed=9))
    r = run_vecx("align", "fit", "--from", pair["old_table"], "--to", lonely, "-o", tmp_path / "x.state")
    assert r.code == 3 and "no id in common" in r.stderr and not (tmp_path / "x.state").exists()
    named = table(tmp_path / "named.parquet", [f"d{i}" for i in range(N)], pair["wide"].astype(np.float32))
    r = run_vecx("align", "fit", "--from", pair["old_table"], "--to", named, "-o", tmp_path / "x.state")
    assert r.code == 4 and "ids" in r.stderr
    r = run_vecx("fit", pair["old_table"], "--spec", "align", "-o", tmp_path / "x.state")
    assert r.code == 2 and "vecx align fit" in r.stderr  # a map needs two models' vectors


def test_static_queries_search_the_minilm_index_better_than_unmapped(tmp_path: Path) -> None:
    """The shared old/new pair: maps fitted on rows 0-19,999 only; static-model queries (never
    fitted) searched exactly in the MiniLM base, recall@10 against MiniLM's own ground truth. The
    data set's README gives 0.115 without a map, 0.417 for Procrustes and 0.452 for ridge."""
    static, minilm = shared("debian-static-384"), shared("debian-minilm-30k")
    s, m = np.load(static / "base.npy"), np.load(minilm / "base.npy")
    ids = list(range(20_000))
    old, new = table(tmp_path / "s.parquet", ids, s[:20_000]), table(tmp_path / "m.parquet", ids, m[:20_000])
    q, truth = np.load(static / "queries.npy"), np.load(minilm / "gt.npy")[:, :10]

    def recall(mapped: np.ndarray) -> float:
        top = np.argsort(-(mapped @ m.T), axis=1, kind="stable")[:, :10]
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, truth, strict=True)]))

    found = {}
    for kind in ("orthogonal", "linear"):
        ok("align", "fit", "--from", old, "--to", new, "-o", tmp_path / f"{kind}.state", "--kind", kind)
        found[kind] = recall(q @ matrix(tmp_path / f"{kind}.state"))
    assert recall(q) == pytest.approx(0.115, abs=0.005)
    assert found["orthogonal"] == pytest.approx(0.417, abs=0.01)  # fitted on 90% of those rows here
    assert found["linear"] > found["orthogonal"] + 0.02 and found["linear"] == pytest.approx(0.452, abs=0.01)


def test_the_readmes_backfill_makefile_upgrades_an_index_shard_by_shard(pair: dict, tmp_path: Path) -> None:
    """The README's Makefile, run as given: new-model queries go to the old index through the map
    while shards arrive, each ``make backfill`` appends what is new (and skips what is in), and
    once every shard is in, queries go to the new index."""
    import os
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    makefile = re.search(r"<!-- backfill\.mk -->\n```make\n(.*?)```", readme, re.S).group(1)
    assert "\tvecx align fit" in makefile  # recipes indented by tabs, as make wants
    (tmp_path / "Makefile").write_text(makefile)
    old, new, ids = pair["old"], pair["wide"], list(range(N))
    table(tmp_path / "old.parquet", ids, old)
    ok("index", tmp_path / "old.parquet", "-o", tmp_path / "old.vecx", "--deterministic")
    table(tmp_path / "sample.old.parquet", ids[:400], old[:400])
    table(tmp_path / "sample.new.parquet", ids[:400], new[:400].astype(np.float32))
    (tmp_path / "new").mkdir()
    np.save(tmp_path / "q.npy", new[:3].astype(np.float32))
    scripts = os.path.dirname(sys.executable)  # this interpreter's vecx (its environment's console script)
    assert os.path.exists(os.path.join(scripts, "vecx")), "the vecx console script is installed beside python"
    env = {name: value for name, value in os.environ.items() if name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(PATH=scripts + os.pathsep + os.environ["PATH"], VECX_NO_PROGRESS="1")  # not the outer make's

    def make(*args: str) -> str:
        done = subprocess.run(["make", "-s", "SHARDS=2", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def answered_by(index: str, *extra: str) -> str:
        return ok("query", tmp_path / index, "--vector", tmp_path / "q.npy", "-k", "5", *extra)

    half = N // 2
    table(tmp_path / "new" / "part-0.parquet", ids[:half], new[:half].astype(np.float32))
    make("backfill")
    assert not (tmp_path / "new.vecx.complete").exists()
    assert make("query", "Q=q.npy") == answered_by("old.vecx", "--align", tmp_path / "new2old.state")
    table(tmp_path / "new" / "part-1.parquet", ids[half:], new[half:].astype(np.float32))
    make("backfill")  # part-0 is skipped (already in), part-1 appended
    assert json.loads(ok("info", tmp_path / "new.vecx", "--json"))["vecx"]["rows"] == N
    assert make("query", "Q=q.npy") == answered_by("new.vecx")


def test_a_map_records_both_models_and_refuses_an_index_of_a_third(tmp_path: Path) -> None:
    """The models named at import travel with the map: info shows them for the map, for a table it
    mapped and for an index of that table; a map into one model's space is refused by an index of
    another (exit 4), before any query is answered."""
    rng = np.random.default_rng(3)
    old = make_vectors(300, 8, seed=4)
    rotation = np.linalg.qr(rng.standard_normal((8, 8)))[0]
    for name, x, model in (("old", old, "model-a"), ("new", old @ rotation, "model-b"), ("third", old, "model-c")):
        np.save(tmp_path / f"{name}.npy", x.astype(np.float32))
        ok("import", tmp_path / f"{name}.npy", "-o", tmp_path / f"{name}.parquet", "--model", model)
    ok("align", "fit", "--from", tmp_path / "old.parquet", "--to", tmp_path / "new.parquet", "-o", tmp_path / "m.state")
    assert "maps model-a into model-b" in ok("info", tmp_path / "m.state")
    ok("align", tmp_path / "old.parquet", "-o", tmp_path / "mapped.parquet", "--state", tmp_path / "m.state")
    assert "model-a, mapped into the space of model-b" in ok("info", tmp_path / "mapped.parquet")
    ok("index", tmp_path / "mapped.parquet", "-o", tmp_path / "mapped.vecx")
    assert "model-a, mapped into the space of model-b" in ok("info", tmp_path / "mapped.vecx")
    np.save(tmp_path / "q.npy", old[:3].astype(np.float32))
    for index in ("new", "third"):
        ok("index", tmp_path / f"{index}.parquet", "-o", tmp_path / f"{index}.vecx")
    found = json.loads(ok("query", tmp_path / "new.vecx", "--vector", tmp_path / "q.npy", "--align",
                          tmp_path / "m.state", "-k", "1", "--format", "jsonl").splitlines()[0])
    assert found["results"][0]["id"] == 0  # row 0 of the old model, mapped, is row 0 of the new
    r = run_vecx("query", tmp_path / "third.vecx", "--vector", tmp_path / "q.npy", "--align", tmp_path / "m.state")
    assert r.code == 4 and "model-b" in r.stderr and "model-c" in r.stderr and not r.out


def test_an_index_of_mapped_rows_takes_queries_of_both_models(tmp_path: Path) -> None:
    """An index built on 'vecx align' output (old rows mapped into the new space), rescored by the old
    float rows: old-model queries go through the map, new-model queries (--model) are pulled back
    through it; both rank by the cosine in the new space, computed here from the fitted matrix."""
    rng = np.random.default_rng(5)
    old = make_vectors(400, 8, seed=6)
    new = old @ np.linalg.qr(rng.standard_normal((8, 8)))[0] + 0.05 * rng.standard_normal((400, 8))
    for name, x, model in (("old", old, "model-a"), ("new", new, "model-b")):
        np.save(tmp_path / f"{name}.npy", x.astype(np.float32))
        ok("import", tmp_path / f"{name}.npy", "-o", tmp_path / f"{name}.parquet", "--model", model)
    ok("align", "fit", "--from", tmp_path / "old.parquet", "--to", tmp_path / "new.parquet", "-o", tmp_path / "m.state")
    ok("align", tmp_path / "old.parquet", "-o", tmp_path / "mapped.parquet", "--state", tmp_path / "m.state")
    ok("index", tmp_path / "mapped.parquet", "-o", tmp_path / "mapped.vecx", "--rescore-vectors",
       tmp_path / "old.parquet", "--scan", "exhaustive")
    mapped = old @ matrix(tmp_path / "m.state")
    unit = mapped / np.linalg.norm(mapped, axis=1, keepdims=True)
    for model, queries, into_new in (("model-a", old[:20], matrix(tmp_path / "m.state")), ("model-b", new[:20], None)):
        np.save(tmp_path / "q.npy", queries.astype(np.float32))
        lines = ok("query", tmp_path / "mapped.vecx", "--vector", tmp_path / "q.npy", "--model", model, "-k", "3",
                   "--format", "jsonl").splitlines()
        q = queries @ into_new if into_new is not None else queries
        want = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ unit.T
        for i, line in enumerate(lines):
            hits = json.loads(line)["results"]
            assert [h["id"] for h in hits] == np.argsort(-want[i], kind="stable")[:3].tolist(), (model, i)
            assert np.allclose([h["score"] for h in hits], np.sort(want[i])[::-1][:3], atol=1e-4)
    r = run_vecx("query", tmp_path / "mapped.vecx", "--vector", tmp_path / "q.npy", "--model", "model-z")
    assert r.code == 4 and "model-a" in r.stderr and "model-b" in r.stderr


def test_an_exact_rotation_finds_every_held_out_item_first(tmp_path: Path) -> None:
    """Items of the new model that are an exact rotation of the old: every held-out item's mapped
    vector has its own pair first (an own pair never counts as beating itself by a rounding)."""
    rng = np.random.default_rng(12)
    old = rng.standard_normal((3000, 128)).astype(np.float32)
    new = old @ np.linalg.qr(rng.standard_normal((128, 128)))[0].astype(np.float32)
    for name, x in (("old", old), ("new", new)):
        np.save(tmp_path / f"{name}.npy", x)
        ok("import", tmp_path / f"{name}.npy", "-o", tmp_path / f"{name}.parquet")
    report = json.loads(ok("align", "fit", "--from", tmp_path / "old.parquet", "--to", tmp_path / "new.parquet",
                           "-o", tmp_path / "m.state", "--held-out", "0.5", "--json"))
    assert report["held_out"] == 1500 and report["held_out_recall"] == {"recall@1": 1.0, "recall@10": 1.0}
