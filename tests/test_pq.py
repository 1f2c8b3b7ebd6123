"""Product quantization (``pq``): nearest-centroid codes, ADC scoring, packing, OPQ, state and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_vectors, run_vecx

from vecx.chain import Chain
from vecx.codecs.pq import _pack, _unpack
from vecx.errors import DataError, MismatchError, SpecError
from vecx.formats import state
from vecx.space import CODES, VectorSpec

DIM = 48


def fitted(spec: str, x: np.ndarray, metric: str = "l2", normalized: bool | None = None) -> Chain:
    unit = bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)) if normalized is None else normalized
    chain = Chain.from_spec(spec, VectorSpec(x.shape[1], "float32", metric, unit))
    chain.fit(lambda stage: x[: stage.values.get("sample", len(x))])
    return chain


def unpacked(chain: Chain, codes: np.ndarray) -> np.ndarray:
    stage = chain.stages[-1]
    return _unpack(codes, stage.bits, stage.m).astype(np.int64)


def brute_force_codes(stage, y: np.ndarray) -> np.ndarray:
    """Nearest centroid per sub-space in float64, lowest index on ties (independent of the codec's BLAS path)."""
    out = np.empty((len(y), stage.m), dtype=np.int64)
    for i, (off, w) in enumerate(zip(stage.offsets, stage.widths, strict=True)):
        books = stage.codebooks_[i, :, :w].astype(np.float64)
        sub = y[:, off: off + w].astype(np.float64)
        dist = ((sub[:, None, :] - books[None, :, :]) ** 2).sum(axis=2)
        out[:, i] = dist.argmin(axis=1)
    return out


def test_plan_output_and_sub_space_widths() -> None:
    chain = Chain.from_spec("pq:5x8", VectorSpec(23, "float32", "l2"))
    stage = chain.stages[0]
    assert chain.output == VectorSpec(5, CODES, "l2", False, "scorer")
    assert stage.widths == [5, 5, 5, 4, 4] and stage.offsets == [0, 5, 10, 15, 19]
    assert Chain.from_spec("pq:7x5", VectorSpec(48, "float32", "cosine")).output == \
        VectorSpec(5, CODES, "ip", False, "scorer")  # ceil(35 / 8) bytes; cosine -> ip
    assert Chain.from_spec("pq:4x8", VectorSpec(48, "float32", "ip")).output.metric == "ip"
    assert stage.query_encoding == "asymmetric" and stage.scores_codes and stage.navigation(None) is None


def test_canonical_token_round_trips() -> None:
    chain = Chain.from_spec("pq:6x4:opq=true:seed=3", VectorSpec(DIM, "float32", "l2"))
    token = chain.spec
    assert token.startswith("pq:6x4:") and "opq=true" in token and "seed=3" in token
    assert Chain.from_spec(token, VectorSpec(DIM, "float32", "l2")).spec == token


@pytest.mark.parametrize("shape, message", [
    ("8", "must be MxB"), ("8x", "must be MxB"), ("x8", "must be MxB"), ("8x8x8", "must be MxB"),
    ("0x8", "M must be at least 1"), ("8x0", "B must be 1..12"), ("8x13", "B must be 1..12"),
    ("49x8", "more than the input dimension 48"), ("08x8", "write it 8x8"),
])
def test_bad_shape_is_a_clear_spec_error(shape: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Chain.from_spec(f"pq:{shape}", VectorSpec(DIM, "float32", "l2"))


def test_shape_is_required_and_float_input_only() -> None:
    with pytest.raises(SpecError, match="needs shape"):
        Chain.from_spec("pq", VectorSpec(DIM, "float32", "l2"))
    with pytest.raises(SpecError, match="needs float vectors"):
        Chain.from_spec("int8,pq:4x8", VectorSpec(DIM, "float32", "l2"))


def test_too_small_sample_is_a_clear_error() -> None:
    with pytest.raises(SpecError, match="sample=100 rows cannot train 256 centroids"):
        Chain.from_spec("pq:4x8:sample=100", VectorSpec(DIM, "float32", "l2"))
    x = make_vectors(200, DIM)  # the sample asks for more rows than the data has
    with pytest.raises(DataError, match="needs at least 256 training rows .* the sample holds 200"):
        fitted("pq:4x8", x)


@pytest.mark.parametrize("shape", ["8x8", "5x6", "7x4", "6x10"])
def test_encode_is_the_nearest_centroid_per_sub_space(shape: str) -> None:
    x = make_vectors(1500, DIM)
    chain = fitted(f"pq:{shape}:sample=1500", x)
    stage = chain.stages[0]
    codes = unpacked(chain, chain.encode(x))
    expected = brute_force_codes(stage, x)
    # float32 BLAS and float64 may disagree on a true near-tie; then both choices are (nearly) as close.
    mismatch = codes != expected
    assert mismatch.mean() < 1e-3
    for r, i in zip(*np.nonzero(mismatch), strict=True):
        off, w = stage.offsets[i], stage.widths[i]
        sub = x[r, off: off + w].astype(np.float64)
        d = ((stage.codebooks_[i, [codes[r, i], expected[r, i]], :w] - sub) ** 2).sum(axis=1)
        assert abs(d[0] - d[1]) <= 1e-4 * max(1.0, d[1])


def test_kmeans_lowers_error_with_iterations_and_uses_every_centroid() -> None:
    x = make_vectors(3000, DIM)
    errors = []
    for iters in (1, 5, 25):
        chain = fitted(f"pq:8x6:iters={iters}:sample=3000", x)
        errors.append(float(((chain.decode(chain.encode(x)) - x) ** 2).sum(axis=1).mean()))
    assert errors[0] > errors[1] > errors[2]
    stage = fitted("pq:8x6:sample=3000", x).stages[0]
    for i in range(stage.m):  # no duplicate centroids (empty clusters are re-seeded)
        assert len(np.unique(stage.codebooks_[i], axis=0)) == stage.k


def test_over_relaxed_kmeans_beats_plain_lloyd_and_ends_at_cluster_means(monkeypatch: pytest.MonkeyPatch) -> None:
    from vecx.codecs import kmeans

    x = np.ascontiguousarray(anisotropic(4000, 8, seed=3))

    def error(centroids: np.ndarray) -> float:
        labels = np.empty(len(x), dtype=np.intp)
        kmeans._nearest(x, kmeans._augmented(centroids), labels)
        return float(((x - centroids[labels]) ** 2).sum(axis=1).mean())

    relaxed = kmeans._kmeans(x, 64, 12, seed=5)
    monkeypatch.setattr(kmeans, "_RELAX", 1.0)
    plain = kmeans._kmeans(x, 64, 12, seed=5)
    assert error(relaxed) < 0.995 * error(plain)
    # What a plain Lloyd run gets in twice the steps, the relaxed one gets in the given ones.
    assert error(relaxed) <= error(kmeans._kmeans(x, 64, 24, seed=5)) * 1.002
    fixed = kmeans._kmeans(x, 64, 500, seed=5)  # plain Lloyd run to its fixed point
    monkeypatch.undo()
    # Started at a Lloyd fixed point, the relaxed run stays there.
    assert np.allclose(kmeans._kmeans(x, 64, 20, seed=5, init=fixed), fixed, rtol=0, atol=1e-6)
    # The result is the means of the last assignment, not an extrapolated step past them.
    seen: list[np.ndarray] = []
    nearest = kmeans._nearest

    def recording(rows: np.ndarray, augmented: np.ndarray, out: np.ndarray, xa: np.ndarray | None = None) -> None:
        nearest(rows, augmented, out, xa)
        seen.append(out.copy())

    monkeypatch.setattr(kmeans, "_nearest", recording)
    centroids = kmeans._kmeans(x, 64, 9, seed=5)
    last = seen[-1]
    for j in np.unique(last):
        np.testing.assert_allclose(centroids[j], x[last == j].mean(axis=0, dtype=np.float64), rtol=0, atol=1e-5)


def test_duplicate_rows_still_give_distinct_centroids() -> None:
    x = make_vectors(600, 16)
    x[:400] = 0.0  # many identical rows: random initial centroids repeat, clusters go empty
    stage = fitted("pq:4x8:sample=600", x).stages[0]
    for i in range(stage.m):
        assert len(np.unique(stage.codebooks_[i], axis=0)) == stage.k
    codes = stage.encode(x)
    everything = _pack(np.tile(np.arange(256)[:, None], (1, 4)), 8, 4)
    assert np.array_equal(stage.encode(stage.decode(everything)), everything)
    assert np.array_equal(stage.encode(stage.decode(codes)), codes)


@pytest.mark.parametrize("metric, normalized", [("l2", False), ("ip", False), ("cosine", False), ("cosine", True)])
@pytest.mark.parametrize("shape", ["8x8", "7x5"])
def test_adc_scores_equal_exact_metric_against_decoded_rows(metric: str, normalized: bool, shape: str) -> None:
    x = make_vectors(1200, DIM, normalize=normalized)
    q = make_vectors(25, DIM, seed=5, normalize=normalized)
    chain = fitted(f"pq:{shape}:sample=1200", x, metric, normalized)
    stage = chain.stages[0]
    codes = chain.encode(x)
    decoded = chain.decode(codes).astype(np.float64)
    qe = chain.encode_query(q)
    prepared = stage.prepare_queries(qe)
    assert prepared["tables"].shape == (25, stage.m, stage.k) and prepared["tables"].dtype == np.float32
    scores = stage.score(prepared, codes)
    assert scores.shape == (25, 1200) and scores.dtype == np.float32
    qf = qe.astype(np.float64)  # cosine: queries normalized like the data
    if metric == "cosine" and not normalized:
        np.testing.assert_allclose(np.linalg.norm(qf, axis=1), 1.0, rtol=1e-5)
    if metric == "l2":
        exact = ((qf[:, None, :] - decoded[None, :, :]) ** 2).sum(axis=2)
        assert chain.output.metric == "l2"
    else:
        exact = qf @ decoded.T
        assert chain.output.metric == "ip"
    scale = np.abs(exact).max()
    np.testing.assert_allclose(scores, exact, rtol=1e-4, atol=1e-5 * scale)
    # Each query against its own candidates: the same numbers.
    rng = np.random.default_rng(2)
    picks = rng.integers(0, 1200, size=(25, 40))
    cand = stage.score_candidates(prepared, codes[picks])
    assert cand.shape == (25, 40) and cand.dtype == np.float32
    np.testing.assert_array_equal(cand, np.take_along_axis(scores, picks, axis=1))
    # A subset of the prepared queries scores like the full batch.
    sub = {k: v[3:5] for k, v in prepared.items()}
    np.testing.assert_array_equal(stage.score(sub, codes), scores[3:5])


def test_adc_ranking_beats_chance_and_tracks_exact_search() -> None:
    x = make_vectors(3000, DIM, normalize=True)
    q = make_vectors(50, DIM, seed=8, normalize=True)
    chain = fitted("pq:16x8:sample=3000", x, "cosine")
    stage = chain.stages[0]
    scores = stage.score(stage.prepare_queries(chain.encode_query(q)), chain.encode(x))
    top = np.argsort(-scores, axis=1)[:, :10]
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, truth, strict=True)])
    assert recall > 0.5


@pytest.mark.parametrize("shape", ["6x8", "5x8", "6x3", "7x4", "5x5", "3x11", "9x12", "1x1"])
def test_encode_of_decode_gives_the_codes_back(shape: str) -> None:
    x = make_vectors(5000, DIM)
    chain = fitted(f"pq:{shape}:sample=5000", x)
    codes = chain.encode(x)
    assert np.array_equal(chain.encode(chain.decode(codes)), codes)
    stage = chain.stages[0]
    # Every code of every sub-space, not only those the data uses.
    every = _pack(np.tile(np.arange(stage.k)[:, None], (1, stage.m)), stage.bits, stage.nbytes)
    assert np.array_equal(chain.encode(chain.decode(every)), every)


def test_encode_of_decode_with_opq_and_cosine() -> None:
    x = make_vectors(2000, DIM, normalize=True)
    chain = fitted("pq:8x8:opq=true:opq_iters=3:sample=2000", x, "cosine")
    codes = chain.encode(x)
    assert np.array_equal(chain.encode(chain.decode(codes)), codes)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
@pytest.mark.parametrize("m", [1, 3, 7, 8])
def test_packing_round_trips_msb_first(bits: int, m: int) -> None:
    rng = np.random.default_rng(bits * 100 + m)
    codes = rng.integers(0, 1 << bits, size=(37, m))
    packed = _pack(codes, bits, (m * bits + 7) // 8)
    assert packed.dtype == np.uint8 and packed.shape == (37, (m * bits + 7) // 8)
    assert np.array_equal(_unpack(packed, bits, m).astype(np.int64), codes)
    # Reference: the codes' bits, most significant first, concatenated over the row, zero padded.
    bitstring = "".join(format(int(c), f"0{bits}b") for c in codes[0])
    bitstring += "0" * (8 * packed.shape[1] - len(bitstring))
    assert bytes(packed[0]).hex() == int(bitstring, 2).to_bytes(packed.shape[1], "big").hex()


@pytest.mark.parametrize("shape, nbytes", [("8x4", 4), ("7x4", 4), ("8x5", 5), ("9x5", 6), ("12x8", 12)])
def test_bit_packed_codes_round_trip_through_the_codec(shape: str, nbytes: int) -> None:
    x = make_vectors(800, DIM)
    chain = fitted(f"pq:{shape}:sample=800", x)
    stage = chain.stages[0]
    codes = chain.encode(x)
    assert codes.shape == (800, nbytes) and codes.dtype == np.uint8
    assert stage.output.bytes_per_vector == nbytes
    expected = brute_force_codes(stage, x)
    assert (unpacked(chain, codes) == expected).mean() > 0.999
    assert unpacked(chain, codes).max() < stage.k
    if (stage.m * stage.bits) % 8:  # padding bits at the end of the row are zero
        spare = 8 * nbytes - stage.m * stage.bits
        assert np.all(codes[:, -1] & ((1 << spare) - 1) == 0)


def test_uneven_sub_spaces_work() -> None:
    x = make_vectors(1000, 50)  # 50 = 7 x 7 + 1: one sub-space of 8, six of 7
    chain = fitted("pq:7x8:sample=1000", x)
    stage = chain.stages[0]
    assert stage.widths == [8, 7, 7, 7, 7, 7, 7] and stage.codebooks_.shape == (7, 256, 8)
    assert np.all(stage.codebooks_[1:, :, 7] == 0)  # zero padding
    codes = chain.encode(x)
    decoded = chain.decode(codes)
    assert decoded.shape == (1000, 50)
    assert np.array_equal(chain.encode(decoded), codes)
    np.testing.assert_array_equal(unpacked(chain, codes), brute_force_codes(stage, x))
    err = ((decoded - x) ** 2).sum(axis=1).mean()
    assert err < 0.5 * ((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()


def test_same_seed_same_bytes_other_seed_other_codebooks() -> None:
    x = make_vectors(2000, DIM)
    a = fitted("pq:8x8:sample=2000:seed=1", x)
    b = fitted("pq:8x8:sample=2000:seed=1", x)
    c = fitted("pq:8x8:sample=2000:seed=2", x)
    assert a.stages[0].codebooks_.tobytes() == b.stages[0].codebooks_.tobytes()
    assert a.encode(x).tobytes() == b.encode(x).tobytes()
    assert not np.array_equal(a.stages[0].codebooks_, c.stages[0].codebooks_)
    o1 = fitted("pq:8x8:opq=true:opq_iters=2:sample=2000:seed=1", x)
    o2 = fitted("pq:8x8:opq=true:opq_iters=2:sample=2000:seed=1", x)
    assert o1.stages[0].rotation_.tobytes() == o2.stages[0].rotation_.tobytes()
    assert o1.stages[0].codebooks_.tobytes() == o2.stages[0].codebooks_.tobytes()


def test_large_sample_is_subsampled_deterministically() -> None:
    x = make_vectors(1200, 8)
    a = fitted("pq:2x2:sample=1200", x)  # 4 centroids: k-means uses at most 256 x 4 = 1024 rows
    b = fitted("pq:2x2:sample=1200", x)
    assert a.stages[0].codebooks_.tobytes() == b.stages[0].codebooks_.tobytes()


def anisotropic(n: int, d: int, seed: int) -> np.ndarray:
    """Gaussian data with a random (correlated) covariance and decaying spectrum."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scales = np.exp(-np.arange(d) / 6.0)
    return ((rng.standard_normal((n, d)) * scales) @ basis.T).astype(np.float32)


@pytest.mark.slow
def test_opq_stops_once_its_error_stalls_and_the_stop_depends_on_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from vecx.codecs import pq

    x = anisotropic(3000, 32, seed=5)
    calls = {"n": 0}
    train = pq.PQ._train

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return train(self, *args, **kwargs)

    monkeypatch.setattr(pq.PQ, "_train", counting)
    capped = fitted("pq:8x6:opq=true:opq_iters=400:sample=3000", x)
    updates = calls["n"] - 3  # two starting k-means and the final one
    assert 0 < updates < 400
    # More allowed updates change nothing once it has stopped: the stop is the error's, not the cap's.
    longer = fitted("pq:8x6:opq=true:opq_iters=800:sample=3000", x)
    assert longer.stages[0].state()["rotation"].tobytes() == capped.stages[0].state()["rotation"].tobytes()
    # With no tolerance it runs every update it is given.
    monkeypatch.setattr(pq, "_OPQ_TOLERANCE", 0.0)
    calls["n"] = 0
    fitted("pq:8x6:opq=true:opq_iters=12:sample=3000", x)
    assert calls["n"] - 3 == 12


def test_kmeans_reports_the_assignment_its_means_come_from() -> None:
    from vecx.codecs import pq

    x = anisotropic(2000, 6, seed=8)
    labels = np.full(len(x), -1, dtype=np.intp)
    centroids = pq._kmeans(x, 32, 7, seed=2, labels_out=labels)
    assert labels.min() >= 0 and labels.max() < 32
    for j in np.unique(labels):
        np.testing.assert_allclose(centroids[j], x[labels == j].mean(axis=0), rtol=0, atol=1e-5)


def test_opq_lowers_reconstruction_error_and_stores_an_orthogonal_rotation() -> None:
    x = anisotropic(4000, 32, seed=3)
    plain = fitted("pq:8x6:sample=4000", x)
    rotated = fitted("pq:8x6:opq=true:sample=4000", x)
    rotation = rotated.stages[0].state()["rotation"]
    assert rotation.shape == (32, 32) and rotation.dtype == np.float32
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(32), atol=1e-5)
    mse_plain = ((plain.decode(plain.encode(x)) - x) ** 2).sum(axis=1).mean()
    mse_opq = ((rotated.decode(rotated.encode(x)) - x) ** 2).sum(axis=1).mean()
    assert mse_opq < 0.8 * mse_plain
    # ADC scores of an OPQ chain are still the exact metric against the decoded rows.
    q = anisotropic(10, 32, seed=4)
    stage = rotated.stages[0]
    scores = stage.score(stage.prepare_queries(rotated.encode_query(q)), rotated.encode(x))
    exact = ((q[:, None, :].astype(np.float64) - rotated.decode(rotated.encode(x))[None]) ** 2).sum(axis=2)
    np.testing.assert_allclose(scores, exact, rtol=1e-4, atol=1e-5 * exact.max())


@pytest.mark.slow
def test_reconstruction_error_is_no_worse_than_faiss() -> None:
    faiss = pytest.importorskip("faiss")
    faiss.omp_set_num_threads(1)
    for metric, x in (("l2", make_vectors(6000, 64, seed=11)), ("l2", anisotropic(6000, 64, seed=12))):
        index = faiss.IndexPQ(64, 8, 8)
        index.train(x)
        ref = ((index.sa_decode(index.sa_encode(x)) - x) ** 2).sum(axis=1).mean()
        chain = fitted("pq:8x8:sample=6000", x, metric)
        ours = ((chain.decode(chain.encode(x)) - x) ** 2).sum(axis=1).mean()
        assert ours <= 1.02 * ref, (ours, ref)


def test_state_round_trip_gives_identical_codes_and_scores() -> None:
    x = make_vectors(1500, 50)
    q = make_vectors(20, 50, seed=9)
    for spec in ("pq:7x5:sample=1500", "pq:6x8:opq=true:opq_iters=2:sample=1500"):
        chain = fitted(spec, x, "cosine", False)
        blob = state.pack({"stages": [{}]}, chain.state_arrays())
        _, arrays = state.unpack(blob, "mem")
        assert sorted(arrays[0]) == (["codebooks", "rotation"] if "opq=true" in spec else ["codebooks"])
        rebuilt = Chain.from_records(chain.input, chain.records("f" * 64), arrays, "mem")
        codes = chain.encode(x)
        assert rebuilt.encode(x).tobytes() == codes.tobytes()
        a, b = chain.stages[0], rebuilt.stages[0]
        sa = a.score(a.prepare_queries(chain.encode_query(q)), codes)
        sb = b.score(b.prepare_queries(rebuilt.encode_query(q)), codes)
        assert sa.tobytes() == sb.tobytes()
        assert rebuilt.decode(codes).tobytes() == chain.decode(codes).tobytes()


def test_state_of_the_wrong_shape_is_a_mismatch() -> None:
    chain = fitted("pq:8x8:sample=700", make_vectors(700, DIM))
    arrays = chain.stages[0].state()
    other = Chain.from_spec("pq:8x8", VectorSpec(DIM + 8, "float32", "l2")).stages[0]
    with pytest.raises(MismatchError, match="shape"):
        other.load_state(arrays)
    with_opq = Chain.from_spec("pq:8x8:opq=true", VectorSpec(DIM, "float32", "l2")).stages[0]
    with pytest.raises(MismatchError, match="expected"):
        with_opq.load_state(arrays)
    uneven = fitted("pq:7x4:sample=700", make_vectors(700, 50)).stages[0]
    bad = {"codebooks": uneven.state()["codebooks"].copy()}
    bad["codebooks"][3, 0, 7] = 1.0  # padding of a narrow sub-space
    with pytest.raises(MismatchError, match="padding"):
        uneven.load_state(bad)


def test_cli_pq_then_info(tmp_path: Path, base_npy: Path) -> None:
    out = tmp_path / "base.pq.parquet"
    result = run_vecx("pq", base_npy, "-o", out, "--shape", "8x8", "--sample", "2000", "--metric", "l2", "--quiet")
    assert result.code == 0, result.stderr
    info = run_vecx("info", out, "--json")
    assert info.code == 0, info.stderr
    text = info.out
    assert "pq:8x8" in text and "codes" in text
    report = json.loads(text)
    assert json.dumps(report).count("scorer") >= 1
    bad = run_vecx("pq", base_npy, "-o", tmp_path / "bad.parquet", "--shape", "8by8")
    assert bad.code == 2 and "must be MxB" in bad.stderr


def test_replanning_keeps_the_fitted_state_and_empty_batches_work() -> None:
    x = make_vectors(700, DIM)
    chain = fitted("pq:8x4:sample=700", x)
    codes = chain.encode(x)
    chain.with_input(VectorSpec(DIM, "float32", "l2", False))
    assert chain.encode(x).tobytes() == codes.tobytes()
    stage = chain.stages[0]
    assert chain.encode(x[:0]).shape == (0, 4)
    prepared = stage.prepare_queries(chain.encode_query(x[:3]))
    assert stage.score(prepared, codes[:0]).shape == (3, 0)
    assert stage.score_candidates(prepared, codes[:0].reshape(3, 0, 4)).shape == (3, 0)


def test_batch_scoring_by_decoding_equals_the_tables(monkeypatch) -> None:
    import vecx.codecs.pq as pq_mod

    for metric in ("cosine", "l2"):
        x = make_vectors(800, 48, normalize=metric == "cosine")
        chain = Chain.from_spec("pq:12x8:sample=800", VectorSpec(48, "float32", metric, metric == "cosine"))
        chain.fit(lambda stage, x=x: x)
        stage = chain.stages[0]
        q = make_vectors(40, 48, seed=5, normalize=metric == "cosine")
        prepared = stage.prepare_queries(chain.encode_query(q))
        codes = chain.encode(x)
        batch = stage.score(prepared, codes)  # 40 queries: the decode + product path
        monkeypatch.setattr(pq_mod, "GEMM_QUERIES", 10**9)
        tables = stage.score(prepared, codes)
        monkeypatch.undo()
        np.testing.assert_allclose(batch, tables, rtol=1e-4, atol=1e-3)
