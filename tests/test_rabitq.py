"""binarize:mode=rabitq (RaBitQ codes, unbiased estimator, residual levels) and indexes of codes
scored by their codec (exhaustive scan, Hamming-graph candidates ranked by the estimator)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_vectors, run_vecx
from test_hadamard import reference

from vecx.chain import Chain
from vecx.indexes.truth import exact_topk
from vecx.space import CODES, VectorSpec

D = 64


def embeddings(n: int, seed: int, mix_seed: int = 0) -> np.ndarray:
    """Unit vectors with embedding-like structure: a 12-d latent space mixed into D dims, plus a shared offset."""
    mix = np.random.default_rng(mix_seed).standard_normal((12, D)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12)).astype(np.float32) @ mix + 0.3 * rng.standard_normal((n, D)).astype(np.float32)
    x += 2.0 * mix[0]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fitted(spec: str, x: np.ndarray, metric: str = "cosine") -> Chain:
    unit = bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4))
    chain = Chain.from_spec(spec, VectorSpec(x.shape[1], "float32", metric, unit))
    chain.fit(lambda stage: x)
    return chain


def scores(chain: Chain, q: np.ndarray, codes: np.ndarray) -> np.ndarray:
    stage = chain.stages[-1]
    return stage.score(stage.prepare_queries(chain.encode_query(q)), codes)


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) for f, t in zip(found, truth, strict=True)])) / k


@pytest.mark.parametrize("rotation", ["fast", "haar"])
def test_layout_bits_and_factors_follow_the_definition(rotation: str) -> None:
    x = make_vectors(2000, D, normalize=True)
    chain = fitted(f"binarize:mode=rabitq:seed=5:rotation={rotation}", x)
    stage = chain.stages[0]
    out = chain.output
    assert (out.dtype, out.dim, out.metric, out.metric_on) == (CODES, D // 8 + 4, "ip", "scorer")
    assert stage.query_encoding == "asymmetric"
    codes = chain.encode(x)
    assert codes.shape == (2000, D // 8 + 4) and codes.dtype == np.uint8
    # Independently: o' = P^T (x - c) / |x - c| with P the stored Haar block, or the structured
    # rotation built from its stored signs by its definition; bits = o' >= 0.
    c = x.mean(axis=0)
    if rotation == "haar":
        matrix = stage.state()["rotation"][0]
    else:
        assert "rotation" not in stage.state()
        matrix = reference(stage.state()["signs"])
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(D), atol=1e-5)
    y = (x - c) @ matrix
    bits = np.unpackbits(codes[:, : D // 8], axis=1)
    near_zero = np.abs(y) < 1e-5  # float rounding may put a sign either way there
    assert np.array_equal(bits[~near_zero], (y >= 0).astype(np.uint8)[~near_zero])
    # Factors (float16, divided by the fitted mean distance): <x - c, c> / (s |c|) and |x - c| / |o'|_1.
    s = float(np.linalg.norm(x - c, axis=1).mean())
    factors = codes[:, D // 8:].copy().view("<f2").astype(np.float64)
    r = np.linalg.norm(y, axis=1)
    np.testing.assert_allclose(factors[:, 0], (x - c) @ c / (s * np.linalg.norm(c)), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(factors[:, 1], r / (np.abs(y / r[:, None]).sum(axis=1) * s), rtol=2e-3)


def seed_errors(spec: str, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Estimates minus true inner products (queries x rows) over the rotations of ``seeds`` seeds,
    and the true ones, for 500 unit rows and 5 unit queries."""
    x = make_vectors(500, D, normalize=True)
    q = make_vectors(5, D, seed=7, normalize=True)
    true = q @ x.T
    errors = np.stack([scores(chain, q, chain.encode(x)) - true
                       for chain in (fitted(f"{spec}:seed={seed}", x) for seed in range(seeds))])
    return errors, true


def test_estimator_is_unbiased_and_tracks_inner_products() -> None:
    # Unbiased over the random rotation: for each pair, the mean error over 100 seeds is close to 0
    # (about 0.08 sigma for an unbiased estimator; a biased one, such as scaling by a fixed factor, is not).
    errors, true = seed_errors("binarize:mode=rabitq", 100)
    sigma = errors.std()
    assert np.mean(np.abs(errors.mean(axis=0))) < 0.2 * sigma
    assert sigma < 0.12  # O(1/sqrt(D)) on centred unit vectors (|x - c| < 1 here)
    one, averaged = errors[0] + true, errors.mean(axis=0) + true
    assert np.corrcoef(one.ravel(), true.ravel())[0, 1] > 0.75  # one rotation, D = 64
    assert np.corrcoef(averaged.ravel(), true.ravel())[0, 1] > 0.99  # the errors average out


def test_estimator_ranks_far_better_than_hamming() -> None:
    x, q = embeddings(5000, seed=1), embeddings(50, seed=2)
    truth, _ = exact_topk(q, iter([(0, x)]), 10, "cosine")
    rq = fitted("binarize:mode=rabitq", x)
    est_top = np.argsort(-scores(rq, q, rq.encode(x)), axis=1, kind="stable")[:, :10]
    ham = fitted("binarize", x)
    qb, xb = np.unpackbits(ham.encode_query(q), axis=1), np.unpackbits(ham.encode(x), axis=1)
    hamming = qb.sum(1)[:, None] + xb.sum(1)[None, :] - 2 * qb.astype(np.int64) @ xb.T.astype(np.int64)
    ham_top = np.argsort(hamming, axis=1, kind="stable")[:, :10]
    assert recall(est_top, truth, 10) > recall(ham_top, truth, 10) + 0.1


def test_residual_levels_shrink_the_error() -> None:
    x = make_vectors(3000, D, normalize=True)
    q = make_vectors(20, D, seed=8, normalize=True)
    true = q @ x.T
    errors = []
    for levels in (1, 2, 3):
        chain = fitted(f"binarize:mode=rabitq:levels={levels}", x)
        assert chain.output.bytes_per_vector == levels * D // 8 + 2 * (levels + 1)
        errors.append(float(np.sqrt(np.mean((scores(chain, q, chain.encode(x)) - true) ** 2))))
    assert errors[1] < 0.6 * errors[0] and errors[2] < 0.8 * errors[1]


def test_l2_scores_estimate_squared_distances() -> None:
    x = np.abs(embeddings(3000, seed=3)) * 100  # non-negative, like SIFT
    q = np.abs(embeddings(10, seed=4)) * 100
    chain = fitted("binarize:mode=rabitq", x, metric="l2")
    assert chain.output.metric == "l2"
    est = scores(chain, q, chain.encode(x))
    true = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    assert abs(np.mean(est - true)) < 0.02 * np.mean(true)
    assert np.corrcoef(est.ravel(), true.ravel())[0, 1] > 0.9


def test_candidate_scores_equal_full_scores_and_decode_matches() -> None:
    x = make_vectors(1000, D, normalize=True)
    q = make_vectors(5, D, seed=2, normalize=True)
    chain = fitted("binarize:mode=rabitq:levels=2", x)
    stage = chain.stages[0]
    codes = chain.encode(x)
    prepared = stage.prepare_queries(chain.encode_query(q))
    full = stage.score(prepared, codes)
    pick = np.random.default_rng(0).integers(0, 1000, (5, 30))
    np.testing.assert_allclose(stage.score_candidates(prepared, codes[pick]), np.take_along_axis(full, pick, 1),
                               rtol=1e-5, atol=1e-5)
    # The decoded vector's centred inner product with the centred query is the estimator's term.
    c = stage.mean_
    decoded = stage.decode(codes)
    add = (decoded - c) @ (q - c).T  # rows x queries
    const = q @ c
    stored_add = full - add.T - const[:, None]
    np.testing.assert_allclose(stored_add, np.broadcast_to(((x - c) @ c)[None, :], full.shape), atol=5e-3)


def test_same_seed_same_bytes_and_wide_inputs_use_blocks() -> None:
    x = make_vectors(600, D)
    a, b = fitted("binarize:mode=rabitq:seed=1", x), fitted("binarize:mode=rabitq:seed=1", x)
    assert a.encode(x).tobytes() == b.encode(x).tobytes()
    assert fitted("binarize:mode=rabitq:seed=2", x).encode(x).tobytes() != a.encode(x).tobytes()
    wide = make_vectors(300, 1500)
    chain = fitted("binarize:mode=rabitq:rotation=haar", wide)
    rotation = chain.stages[0].state()["rotation"]
    assert rotation.shape == (2, 752, 752)  # two Haar blocks of ceil(1500 / 2) rounded up to 8
    assert chain.output.bytes_per_vector == 1504 // 8 + 4
    for block in rotation:
        np.testing.assert_allclose(block @ block.T, np.eye(752), atol=1e-4)
    fast = fitted("binarize:mode=rabitq", wide)  # one transform over all 1,504 coordinates
    assert fast.stages[0].state()["signs"].shape == (4, 1504)
    assert fast.output.bytes_per_vector == 1504 // 8 + 4


@pytest.mark.slow
@pytest.mark.parametrize(("levels", "width"), [(1, D), (2, D), (1, 384)])
def test_codes_of_a_row_do_not_depend_on_the_rows_encoded_with_it(levels: int, width: int) -> None:
    """Encoding runs in row blocks on all cores: any split of the input gives the same bytes, and a
    bad row is named by its row in the input, not in its block. (384 dimensions: the compiled
    transform; 64: the dense product of the same rotation.)"""
    from vecx.errors import RowError

    x = embeddings(2600, seed=4) if width == D else make_vectors(2600, width, seed=4, normalize=True)
    chain = fitted(f"binarize:mode=rabitq:levels={levels}", x)
    whole = chain.encode(x)
    one_by_one = np.concatenate([chain.encode(x[i: i + 1]) for i in range(0, len(x), 97)] +
                                [chain.encode(x[i: i + 1]) for i in range(len(x)) if i % 97])
    order = np.concatenate([np.arange(0, len(x), 97), [i for i in range(len(x)) if i % 97]])
    assert one_by_one.tobytes() == whole[order].tobytes()
    assert np.concatenate([chain.encode(x[:1500]), chain.encode(x[1500:])]).tobytes() == whole.tobytes()
    far = x.copy()
    far[2345] = 1e6  # farther from the mean than float16 factors can say
    with pytest.raises(RowError, match="row 2345: vector is too far"):
        fitted(f"binarize:mode=rabitq:levels={levels}", x).stages[0].encode(far)


@pytest.mark.parametrize("bits", [2, 3, 5])
def test_extended_codes_follow_the_definition(bits: int) -> None:
    """Extended RaBitQ: B bit planes, the sign plane first, then the additive term and one weight.
    Read back independently, each coordinate's code ``x_u`` stands for ``o_bar_i = x_u - (2^B - 1) / 2``:
    of the sign of the rotated coordinate, of magnitude ``k + 1/2`` with ``k`` a floor of ``|o_i| t``
    capped at ``2^(B-1) - 1`` for one scale ``t`` per vector, the best of all scales; the weight is
    ``|y| / <o_bar, o>``."""
    x = make_vectors(300, D, normalize=True)
    chain = fitted(f"binarize:mode=rabitq:bits={bits}:seed=3", x)
    stage = chain.stages[0]
    assert chain.output.bytes_per_vector == bits * D // 8 + 8
    codes = chain.encode(x)
    planes = [np.unpackbits(codes[:, b * D // 8:(b + 1) * D // 8], axis=1) for b in range(bits)]
    x_u = sum(plane.astype(np.int64) << (bits - 1 - b) for b, plane in enumerate(planes))
    o_bar = x_u - (2**bits - 1) / 2
    y = (x - x.mean(axis=0)) @ reference(stage.state()["signs"])
    r = np.linalg.norm(y, axis=1)
    o = y / r[:, None]
    clear = np.abs(o) > 1e-5
    assert (np.sign(o_bar) == np.sign(o))[clear].all()
    half = 2 ** (bits - 1)
    for i in range(0, 300, 37):  # one scale explains the row, and no other scale fits it better
        a = np.abs(o[i])
        k = np.abs(o_bar[i]) - 0.5
        grid = np.linspace(0.01, 4 * half / a.max(), 4000)
        fits = [(np.minimum(np.floor(a * t), half - 1) + 0.5) for t in grid]
        best = max(float(a @ f / np.linalg.norm(f)) for f in fits)
        got = float(a @ (k + 0.5) / np.linalg.norm(k + 0.5))
        assert got >= best - 1e-6
        assert any(np.array_equal(np.minimum(np.floor(a * t), half - 1), k) for t in grid)
    factors = codes[:, bits * D // 8:].copy().view("<f2").astype(np.float64) * float(stage.norm_scale_[0])
    np.testing.assert_allclose(factors[:, 1], r / (np.abs(o_bar) * np.abs(o)).sum(axis=1), rtol=2e-3)
    # Then the sign code's own weight |y|^2 / sum |y_i| and error term |y| sqrt(1 - c^2) / c,
    # c = <sign(o) / sqrt(D), o>: what an incremental scan estimates and bounds a row by first.
    c = np.abs(o).sum(axis=1) / np.sqrt(D)
    np.testing.assert_allclose(factors[:, 2], r * r / np.abs(y).sum(axis=1), rtol=2e-3)
    np.testing.assert_allclose(factors[:, 3], r * np.sqrt(1 - c * c) / c, rtol=2e-3)


def test_incremental_scans_give_the_full_scans_results_and_the_bound_holds() -> None:
    """A scan that reads the ex-code only for rows whose sign-bit estimate and error bound leave them
    a chance returns what reading every plane of every row returns; the bound holds for nearly
    every row (the estimate's error over the bound's unit is about a normal variable's)."""
    from vecx import adc
    from vecx.codecs import binarize
    from vecx.indexes.codescan import CodeScan

    x = make_vectors(3000, D, normalize=True, seed=41)
    q = make_vectors(40, D, normalize=True, seed=42)
    full = fitted("binarize:mode=rabitq:bits=4:incremental=false:seed=5", x)
    incremental = fitted("binarize:mode=rabitq:bits=4:seed=5", x)
    a, b = full.encode(x), incremental.encode(x)
    assert b.shape[1] == a.shape[1] + 4 and np.array_equal(a[:, :-4], b[:, :-8])  # the same planes
    for chain, codes in ((full, a), (incremental, b)):
        scan = CodeScan(codes, chain.stages[-1])
        scan.compiled = True
        if chain is full:
            want = [scan.exhaustive(q[i: i + 1], 10) for i in range(len(q))]
        else:
            got = [scan.exhaustive(q[i: i + 1], 10) for i in range(len(q))]
    for (rows_a, scores_a), (rows_b, scores_b) in zip(want, got, strict=True):
        assert rows_a.tolist() == rows_b.tolist()
        np.testing.assert_allclose(scores_a, scores_b, rtol=1e-5, atol=1e-5)
    assert adc.loaded()
    # The bound itself: |<y, q'> - w1 <s, q'>| <= EPSILON |q'| / sqrt(D - 1) x the row's error term.
    stage = incremental.stages[-1]
    prepared = stage.prepare_queries(incremental.encode_query(q))
    bounds = stage._sign_bounds(b)
    planes, factors = stage._split(b)
    signs = np.unpackbits(planes[0], axis=1).astype(np.float64) * 2 - 1
    rotated = prepared["rotated"].astype(np.float64)
    estimate = (rotated @ signs.T) * bounds[:, 0][None, :]
    centred = x - stage.mean_
    exact = rotated @ stage._rotate(centred).astype(np.float64).T
    unit = binarize.EPSILON * np.linalg.norm(rotated, axis=1, keepdims=True) / np.sqrt(D - 1) * bounds[:, 1][None, :]
    outside = np.abs(exact - estimate) > unit
    assert outside.mean() < 0.01
    assert (np.abs(exact - estimate) > unit / binarize.EPSILON).mean() > 0.1  # one deviation is often passed


def test_extended_tables_of_codec_version_2_load_without_the_bounds(tmp_path: Path) -> None:
    """Extended codes written before the sign-code bounds (codec version 2) load as
    ``incremental=false``: the same width, the same scores, and their spec as it was."""
    from vecx.formats.readers import open_source

    x = make_vectors(400, D, seed=43)
    np.save(tmp_path / "x.npy", x)
    assert run_vecx("encode", str(tmp_path / "x.npy"), "--spec", "binarize:mode=rabitq:bits=3:incremental=false",
                    "-o", str(tmp_path / "old.parquet")).code == 0
    source = open_source(str(tmp_path / "old.parquet"))
    meta = json.loads(json.dumps(source.meta))
    record = meta["stages"][-1]
    assert record["version"] == 3 and ":incremental=false" in record["spec"]
    record["version"], record["spec"] = 2, record["spec"].replace(":incremental=false", "")
    chain = Chain.from_table(meta, source.state_blob, "old.parquet")
    stage = chain.stages[-1]
    assert stage.version == 2 and stage.values["incremental"] is False and not stage.incremental_
    assert stage.spec == record["spec"] and chain.output.bytes_per_vector == 3 * D // 8 + 4
    codes = np.concatenate([batch.vectors for batch in source.batches()])
    q = make_vectors(5, D, seed=44)
    new = fitted("binarize:mode=rabitq:bits=3:incremental=false", x)
    np.testing.assert_allclose(stage.score(stage.prepare_queries(chain.encode_query(q)), codes),
                               new.stages[-1].score(new.stages[-1].prepare_queries(new.encode_query(q)), codes),
                               rtol=1e-5, atol=1e-5)


def test_extended_estimator_is_unbiased_and_more_bits_shrink_its_error() -> None:
    errors, _ = seed_errors("binarize:mode=rabitq:bits=3", 60)
    assert np.mean(np.abs(errors.mean(axis=0))) < 0.2 * errors.std()
    rmse = {bits: float(np.sqrt(np.mean(seed_errors(f"binarize:mode=rabitq:bits={bits}", 1)[0] ** 2)))
            for bits in (1, 2, 4, 6)}
    # The error bound halves with each bit; allow some slack on 500 rows.
    assert rmse[2] < 0.7 * rmse[1] and rmse[4] < 0.35 * rmse[2] and rmse[6] < 0.4 * rmse[4]


def test_extended_codes_are_refused_with_levels_or_without_rabitq() -> None:
    from vecx.errors import SpecError

    with pytest.raises(SpecError, match="choose one"):
        Chain.from_spec("binarize:mode=rabitq:bits=2:levels=2", VectorSpec(D, "float32", "cosine"))
    with pytest.raises(SpecError, match="bits > 1 needs mode=rabitq"):
        Chain.from_spec("binarize:bits=2", VectorSpec(D, "float32", "cosine"))


def test_levels_need_rabitq() -> None:
    from vecx.errors import SpecError

    with pytest.raises(SpecError, match="levels > 1 needs mode=rabitq"):
        Chain.from_spec("binarize:levels=2", VectorSpec(D, "float32", "cosine"))


# ---- indexes of scored codes -----------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("rabitq")
    x = embeddings(4000, seed=21)
    np.save(tmp / "x.npy", x)
    q = embeddings(30, seed=22)
    np.save(tmp / "q.npy", q)
    lang = np.array(["rare" if i % 97 == 0 else "en" for i in range(4000)])
    (tmp / "langs.jsonl").write_text("".join(json.dumps({"vector": v.tolist(), "lang": str(tag)}) + "\n"
                                             for v, tag in zip(x, lang, strict=True)))
    for args in (("import", tmp / "langs.jsonl", "-o", tmp / "base.parquet"),
                 ("binarize", tmp / "base.parquet", "-o", tmp / "rq.parquet", "--mode", "rabitq"),
                 ("index", tmp / "rq.parquet", "-o", tmp / "rq.vecx", "--rescore-vectors", tmp / "base.parquet"),
                 ("index", tmp / "rq.parquet", "-o", tmp / "rqg.vecx", "--scan", "graph", "--rescore-vectors",
                  tmp / "base.parquet", "--deterministic")):
        r = run_vecx(*args)
        assert r.code == 0, r.stderr
    return {"dir": tmp, "x": x, "q": q, "lang": lang}


def query(index: Path, *args: str) -> list[dict]:
    r = run_vecx("query", index, *args, "--format", "jsonl")
    assert r.code == 0, r.stderr
    return [json.loads(line) for line in r.out.splitlines()]


def test_exhaustive_scan_returns_the_estimators_exact_top_k(corpus: dict, monkeypatch) -> None:
    from vecx.indexes import codescan
    from vecx.indexes.search import Searcher

    monkeypatch.setattr(codescan, "_BLOCK_BYTES", 4096)  # many blocks: the running top-k merge is exercised
    searcher = Searcher(str(corpus["dir"] / "rq.vecx"))
    assert not searcher.graphs and searcher.scan_mode == "exhaustive"
    rows, got = searcher.search(corpus["q"], 10, rescore=False)
    chain, codes = searcher.chain, np.asarray(searcher.scan.codes)
    full = scores(chain, corpus["q"], codes)
    order = np.lexsort((np.broadcast_to(np.arange(4000), full.shape), -full), axis=1)[:, :10]
    assert np.array_equal(rows, order)
    np.testing.assert_allclose(got, np.take_along_axis(full, order, 1), rtol=1e-6)


def test_rescoring_and_graph_scan(corpus: dict) -> None:
    x, q = corpus["x"], corpus["q"]
    truth, _ = exact_topk(q, iter([(0, x)]), 10, "cosine")
    found = {}
    for name, index, args in (("plain", "rq.vecx", ("--oversample", "1")), ("x10", "rq.vecx", ("--oversample", "10")),
                              ("graph", "rqg.vecx", ("--oversample", "10")),
                              ("graph-exhaustive", "rqg.vecx", ("--oversample", "10", "--scan", "exhaustive"))):
        res = query(corpus["dir"] / index, "--vector", corpus["dir"] / "q.npy", "-k", "10", *args)
        found[name] = np.array([[int(r["id"]) for r in e["results"]] for e in res])
    assert recall(found["x10"], truth, 10) >= 0.97
    assert recall(found["x10"], truth, 10) > recall(found["plain"], truth, 10) + 0.05
    assert np.array_equal(found["graph-exhaustive"], found["x10"])  # same codes, same exhaustive search
    assert recall(found["graph"], truth, 10) >= recall(found["x10"], truth, 10) - 0.1


def test_like_and_filter_on_scored_codes(corpus: dict) -> None:
    res = query(corpus["dir"] / "rq.vecx", "--like", "7", "-k", "5")
    ids = [r["id"] for r in res[0]["results"]]
    assert "7" not in ids and len(ids) == 5
    res = query(corpus["dir"] / "rq.vecx", "--vector", corpus["dir"] / "q.npy", "-k", "5", "--oversample", "1",
                "--where", "lang = 'rare'", "--fields", "lang")
    rare = np.flatnonzero(corpus["lang"] == "rare")
    from vecx.indexes.search import Searcher

    searcher = Searcher(str(corpus["dir"] / "rq.vecx"))
    full = scores(searcher.chain, corpus["q"], np.asarray(searcher.scan.codes)[rare])
    for i, entry in enumerate(res):
        assert all(r["lang"] == "rare" for r in entry["results"]) and len(entry["results"]) == 5
        expect = rare[np.argsort(-full[i], kind="stable")[:5]]
        assert [int(r["id"]) for r in entry["results"]] == expect.tolist()


def test_eval_names_the_scan_and_info_describes_it(corpus: dict) -> None:
    r = run_vecx("eval", corpus["dir"] / "rq.vecx", "--queries", corpus["dir"] / "q.npy", "--json")
    assert r.code == 0, r.stderr
    data = json.loads(r.out)
    stages = {s["stage"]: s for s in data["stages"]}
    assert data["scan"] == "exhaustive" and set(stages) == {"codes, exact", "scan", "scan + rescore x4"}
    assert stages["codes, exact"]["recall@10"] == stages["scan"]["recall@10"]
    assert stages["scan + rescore x4"]["recall@10"] > stages["scan"]["recall@10"]
    info = run_vecx("info", corpus["dir"] / "rqg.vecx")
    assert info.code == 0 and "scored by the codec" in info.out and "b1" in info.out


def test_scan_choices_that_cannot_apply_are_usage_errors(corpus: dict, tmp_path: Path) -> None:
    r = run_vecx("query", corpus["dir"] / "rq.vecx", "--vector", corpus["dir"] / "q.npy", "--scan", "graph")
    assert r.code == 2 and "no navigation graph" in r.stderr
    r = run_vecx("query", corpus["dir"] / "rq.vecx", "--vector", corpus["dir"] / "q.npy", "--scan", "sideways")
    assert r.code == 2 and "--scan must be one of" in r.stderr
    r = run_vecx("index", corpus["dir"] / "rq.parquet", "-o", tmp_path / "g.vecx", "--scan", "sideways")
    assert r.code == 2 and "--scan must be one of" in r.stderr
    assert not (tmp_path / "g.vecx").exists()


def test_exhaustive_search_of_float_codes_is_exact(corpus: dict, tmp_path: Path) -> None:
    x, q = corpus["x"], corpus["q"]
    truth, _ = exact_topk(q, iter([(0, x)]), 10, "cosine")
    assert run_vecx("index", corpus["dir"] / "base.parquet", "-o", tmp_path / "f.vecx", "-q",
                    "--rescore-vectors", corpus["dir"] / "base.parquet", "--expansion-search", "10",
                    "--connectivity", "4").code == 0
    exhaustive = query(tmp_path / "f.vecx", "--vector", corpus["dir"] / "q.npy", "--scan", "exhaustive",
                       "--oversample", "1")
    assert [[int(r["id"]) for r in e["results"]] for e in exhaustive] == truth.tolist()
    r = run_vecx("eval", tmp_path / "f.vecx", "--queries", corpus["dir"] / "q.npy", "--scan", "exhaustive", "--json")
    data = json.loads(r.out)
    assert data["scan"] == "exhaustive" and [s["stage"] for s in data["stages"]][1] == "scan"
    assert data["stages"][1]["recall@10"] == 1.0


def test_damaged_codes_file_is_refused(corpus: dict, tmp_path: Path) -> None:
    import os
    import shutil

    real = Path(os.path.realpath(corpus["dir"] / "rq.vecx"))
    (tmp_path / ".copy.vecx.d").mkdir()
    shutil.copytree(real, tmp_path / ".copy.vecx.d" / real.name)
    os.symlink(f".copy.vecx.d/{real.name}", tmp_path / "copy.vecx")
    codes = tmp_path / ".copy.vecx.d" / real.name / "codes.bin"
    codes.write_bytes(codes.read_bytes()[:-52])
    r = run_vecx("query", tmp_path / "copy.vecx", "--vector", corpus["dir"] / "q.npy")
    assert r.code == 3 and "codes.bin" in r.stderr, r.stderr


def test_lookup_tables_and_unpacked_bits_give_the_same_dots(monkeypatch) -> None:
    import vecx.codecs.binarize as binarize

    rng = np.random.default_rng(0)
    q = rng.standard_normal((5, 100)).astype(np.float32)
    packed = rng.integers(0, 256, (999, 13), dtype=np.uint8)  # 100 bits in 13 bytes: padding bits ignored
    tables = binarize._bit_dots(q, packed, 100)
    monkeypatch.setattr(binarize, "LUT_QUERIES", 0)
    unpacked = binarize._bit_dots(q, packed, 100)
    exact = q @ np.unpackbits(packed, axis=1, count=100).astype(np.float32).T
    np.testing.assert_allclose(tables, exact, atol=1e-4)
    np.testing.assert_allclose(unpacked, exact, atol=1e-4)


FIXTURES = Path(__file__).parent / "data" / "rabitq-v1"


@pytest.mark.parametrize("name", ["rq.parquet", "rqi.parquet"])
def test_version_1_tables_keep_their_dense_rotation(name: str, tmp_path: Path) -> None:
    """Tables written before the fast rotation (codec version 1, a dense Haar matrix, no rotation
    parameter in their spec) load as what they are: new rows encode to the same codes, the records
    they would write are unchanged (so appends still match), and an index of them answers queries."""
    import pyarrow.parquet as pq

    from vecx.formats.readers import open_source

    source = open_source(str(FIXTURES / name))
    recorded = source.meta["stages"][0]
    assert recorded["version"] == 1 and "rotation" not in recorded["spec"]
    chain = Chain.from_table(source.meta, source.state_blob, name)
    stage = chain.stages[0]
    assert (stage.version, stage.values["rotation"], stage.spec) == (1, "haar", recorded["spec"])
    record = chain.records(None)[0]
    assert (record["version"], record["spec"]) == (1, recorded["spec"])
    assert record["state_sha256"] == recorded["state_sha256"]
    x = make_vectors(300, 64, seed=21)  # the rows the fixtures were made from (see the README there)
    stored = np.stack(pq.read_table(FIXTURES / name).column("vector").to_numpy(zero_copy_only=False))
    stored = np.frombuffer(b"".join(stored), dtype=np.uint8).reshape(300, -1)
    again = chain.encode(x)
    assert np.mean(again == stored) > 0.999  # (BLAS of another CPU may round a float16 factor otherwise)
    # The version-2 rotation of the same seed gives other codes: the test above can tell them apart.
    assert np.mean(fitted(recorded["spec"], x).encode(x) == stored) < 0.9
    q = make_vectors(3, 64, seed=22)
    ok_index = run_vecx("index", FIXTURES / name, "-o", tmp_path / "old.vecx")
    assert ok_index.code == 0, ok_index.stderr
    info = run_vecx("info", FIXTURES / name)
    assert info.code == 0 and "codec version 1, read as rotation=haar" in info.out, info.out
    np.save(tmp_path / "q.npy", q)
    got = [[hit["id"] for hit in line["results"]]
           for line in query(tmp_path / "old.vecx", "--vector", str(tmp_path / "q.npy"), "-k", "5")]
    best = np.argsort(-scores(chain, q, stored), axis=1, kind="stable")[:, :5]
    assert got == best.tolist()  # the queries rotated as the rows were (ids are row numbers here)


def test_a_codec_version_this_vecx_cannot_read_is_refused() -> None:
    from vecx.errors import MismatchError
    from vecx.formats.readers import open_source

    source = open_source(str(FIXTURES / "rq.parquet"))
    meta = json.loads(json.dumps(source.meta))
    meta["stages"][0]["version"] = 7
    with pytest.raises(MismatchError, match="codec version 7, this vecx reads version 3, 1, 2"):
        Chain.from_table(meta, source.state_blob, "rq.parquet")


def test_wide_queries_rotate_by_hadamard_products_as_the_definition_does() -> None:
    """From 1024 coordinates queries are rotated by products of small Hadamard factors, not the dense
    matrix: the rotated queries are the definition's (its stored signs), and the scores rank the
    codes as scores from the definition's rotation do."""
    from vecx.codecs import binarize

    width = 1040  # padded to itself; half-mixing butterflies, a 1024-point transform
    assert width >= binarize.PRODUCTS_WIDTH
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1500, width)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((20, width)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    chain = fitted("binarize:mode=rabitq:seed=3", x)
    stage = chain.stages[0]
    prepared = stage.prepare_queries(chain.encode_query(q))
    centred = chain.encode_query(q).astype(np.float64) - stage.state()["mean"]
    definition = centred @ reference(stage.state()["signs"])
    np.testing.assert_allclose(prepared["rotated"], definition, atol=2e-6)
    codes = chain.encode(x)
    found = stage.score(prepared, codes)
    exact = stage.score({**prepared, "rotated": definition.astype(np.float32),
                         "sum": definition.sum(axis=1).astype(np.float32)}, codes)
    np.testing.assert_allclose(found, exact, atol=1e-5)
    assert np.array_equal(np.argsort(-found, axis=1)[:, :10], np.argsort(-exact, axis=1)[:, :10])
