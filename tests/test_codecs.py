"""The codec contract, checked for every registered codec, plus each codec's own semantics."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_vectors

from vecx.chain import Chain
from vecx.codecs import registry
from vecx.errors import DataError, MismatchError, RowError
from vecx.formats import state
from vecx.space import JSON, VectorSpec, is_packed

DIM = 48
#: Every codec of 48-d float vectors, by its own example spec (codecs that take sets of vectors,
#: muvera, have their contract tests in test_muvera.py; codecs that read JSON records, vsa, in test_vsa.py).
EXAMPLES = {name: cls.example for name, cls in registry().items() if not cls.takes_multi and cls.input_kind != JSON}


def fitted(spec: str, x: np.ndarray, metric: str = "cosine") -> Chain:
    unit = bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4))
    chain = Chain.from_spec(spec, VectorSpec(x.shape[1], "float32", metric, unit))
    chain.fit(lambda stage: x[: stage.values.get("sample", len(x))])
    return chain


def test_every_codec_has_an_example_that_names_it() -> None:
    for name, cls in registry().items():
        assert cls.example.split(":")[0].split(",")[0] == name, f"{name}: set its example (a runnable spec)"


@pytest.fixture(params=sorted(EXAMPLES), ids=sorted(EXAMPLES))
def codec_spec(request) -> str:
    return EXAMPLES[request.param]


def test_planned_output_matches_encoded(codec_spec: str) -> None:
    x = make_vectors(700, DIM)
    chain = fitted(codec_spec, x)
    codes = chain.encode(x)
    out = chain.output
    packed = is_packed(out.dtype)
    assert codes.shape == (700, out.bytes_per_vector if packed else out.dim)
    assert codes.dtype == np.dtype("uint8" if packed else out.dtype)
    assert codes.nbytes // 700 == out.bytes_per_vector


def test_encode_is_deterministic_and_idempotent_after_decode(codec_spec: str) -> None:
    x = make_vectors(700, DIM, normalize=True)  # unit-norm embeddings, the common case
    a, b = fitted(codec_spec, x), fitted(codec_spec, x)
    codes = a.encode(x)
    assert codes.tobytes() == b.encode(x).tobytes()  # same seed, same sample: same bytes
    stage = a.stages[-1]
    try:
        decoded = stage.decode(codes)
    except NotImplementedError:
        return
    # encode(decode(codes)) gives the codes back (faiss's encode-twice contract); float codes
    # up to rounding error.
    again = stage.encode(decoded)
    if codes.dtype.kind == "f":
        np.testing.assert_allclose(again, codes, rtol=1e-4, atol=1e-4)
    else:
        assert np.array_equal(again, codes)


def test_state_round_trips_through_the_container(codec_spec: str) -> None:
    x = make_vectors(700, DIM)
    chain = fitted(codec_spec, x)
    blob = state.pack({"stages": [{}] * len(chain.stages)}, chain.state_arrays())
    _, arrays = state.unpack(blob, "mem")
    records = chain.records("f" * 64)
    rebuilt = Chain.from_records(chain.input, records, arrays, "mem")
    assert rebuilt.encode(x).tobytes() == chain.encode(x).tobytes()
    assert rebuilt.encode_query(x[:1]).tobytes() == chain.encode_query(x[:1]).tobytes()


def test_query_encoding_of_one_vector_equals_its_row(codec_spec: str) -> None:
    x = make_vectors(700, DIM)
    chain = fitted(codec_spec, x)
    symmetric = all(s.query_encoding == "symmetric" for s in chain.stages)
    batch = chain.encode(x) if symmetric else chain.encode_query(x)
    for row in (0, 17, 699):  # a single query is encoded as it would be in a batch
        one = chain.encode_query(x[row: row + 1])[0]
        if one.dtype.kind == "f":  # BLAS takes another path for one row: equal up to the last bit
            np.testing.assert_allclose(one, batch[row], rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(one, batch[row])


def test_int8_single_query_uses_saved_ranges_not_its_own() -> None:
    # sentence-transformers#2837: calibrating on the query itself gives zeros for one vector.
    x = make_vectors(2000, DIM)
    chain = fitted("int8:sample=1000", x)
    q = make_vectors(1, DIM, seed=99)
    code = chain.encode(q)  # one vector, encoded with the saved ranges
    assert len(np.unique(code)) > 10
    # Queries are scored as floats against the decoded codes (asymmetric): nothing to calibrate.
    np.testing.assert_array_equal(chain.encode_query(q), q.astype(np.float32))
    back = chain.decode(code)[0]
    stage = chain.stages[0]
    lo, hi = stage.lo_, stage.lo_ + 255 * stage.scale_
    # Within the calibrated range: within half a step; outside: clipped to the range's edge.
    expected = np.clip(q[0], lo, hi)
    assert np.all(np.abs(back - expected) <= stage.scale_ / 2 + 1e-5)


def test_int8_reconstruction_error_is_within_half_a_step() -> None:
    x = make_vectors(3000, DIM)
    chain = fitted("int8:sample=3000", x)  # min/max over all rows: nothing is clipped
    err = np.abs(chain.decode(chain.encode(x)) - x)
    assert np.all(err <= chain.stages[0].scale_ / 2 + 1e-5)


def test_int8_global_codes_are_proportional_to_vectors() -> None:
    x = make_vectors(1000, DIM, normalize=True)
    chain = fitted("int8:mode=global", x)
    codes = chain.encode(x).astype(np.float32)
    cos = np.sum(codes * x, axis=1) / np.linalg.norm(codes, axis=1) / np.linalg.norm(x, axis=1)
    assert cos.min() > 0.99
    assert chain.output.metric_on == "codes"
    assert np.abs(chain.encode(x)).max() <= 127


def test_int8_quantile_clips_outliers() -> None:
    x = make_vectors(2000, DIM)
    x[5, 3] = 1e4
    wide = fitted("int8:sample=2000", x).stages[0]
    narrow = fitted("int8:sample=2000:quantile=0.99", x).stages[0]
    assert narrow.scale_[3] < wide.scale_[3] / 10
    assert fitted("int8:sample=2000:quantile=0.99", x).encode(x)[5, 3] == 127


def test_int8_constant_dimension_decodes_exactly() -> None:
    x = make_vectors(500, DIM)
    x[:, 7] = 0.25
    chain = fitted("int8", x)
    assert np.allclose(chain.decode(chain.encode(x))[:, 7], 0.25)


def test_int8_state_of_wrong_shape_is_a_mismatch() -> None:
    chain = fitted("int8", make_vectors(200, DIM))
    other = Chain.from_spec("int8", VectorSpec(DIM + 1, "float32", "cosine"))
    with pytest.raises(MismatchError, match="shape"):
        other.stages[0].load_state(chain.stages[0].state())


def test_state_hash_mismatch_is_detected() -> None:
    x = make_vectors(300, DIM)
    chain = fitted("int8", x)
    records = chain.records("0" * 64)
    arrays = [{k: v.copy() for k, v in s.state().items()} for s in chain.stages]
    arrays[0]["lo"][0] += 1.0
    with pytest.raises(DataError, match="does not match its recorded hash"):
        Chain.from_records(chain.input, records, arrays, "f.parquet")


def test_truncate_prefix_and_unit_norm() -> None:
    x = make_vectors(100, DIM)
    y = fitted("truncate:10", x).encode(x)
    assert np.allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-6)
    ref = x[:, :10] / np.linalg.norm(x[:, :10], axis=1, keepdims=True)
    assert np.allclose(y, ref, atol=1e-6)
    zero = np.zeros((1, DIM), dtype=np.float32)
    assert np.all(fitted("truncate:10", x).encode(zero) == 0)


def test_truncate_without_renorm_keeps_values() -> None:
    x = make_vectors(100, DIM)
    y = fitted("truncate:10:renorm=false", x, metric="l2").encode(x)
    assert np.array_equal(y, x[:, :10])


def test_f16_round_trip_and_range() -> None:
    x = make_vectors(100, DIM)
    chain = fitted("f16", x)
    assert np.allclose(chain.decode(chain.encode(x)), x, rtol=1e-3, atol=1e-3)
    x[42, 0] = 7e4
    with pytest.raises(RowError, match="row 42: value out of float16 range"):
        chain.encode(x)


def test_binarize_bits_are_signs_of_centred_values() -> None:
    x = np.abs(make_vectors(400, 20)) + 0.1  # all positive: plain sign bits are all 1
    sign = fitted("binarize:mode=sign", x)
    assert np.all(np.unpackbits(sign.encode(x), axis=1)[:, :20] == 1)
    center = fitted("binarize", x)
    bits = np.unpackbits(center.encode(x), axis=1)[:, :20]
    assert np.array_equal(bits, (x > x.mean(axis=0)).astype(np.uint8))
    assert center.output.bytes_per_vector == 3 and center.output.metric == "hamming"
    # Decoding lands on the right side of the mean, one mean absolute deviation away.
    decoded = center.decode(center.encode(x))
    assert np.array_equal(decoded > x.mean(axis=0), x > x.mean(axis=0))


def test_pca_matches_an_independent_svd() -> None:
    x = make_vectors(2000, DIM)
    chain = fitted("pca:8:sample=2000", x, metric="l2")
    stage = chain.stages[0]
    centred = x.astype(np.float64) - x.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(stage.variance_, sv[:8] ** 2 / (len(x) - 1), rtol=1e-4)
    for comp, ref in zip(stage.components_, vt[:8], strict=True):
        assert abs(abs(float(comp @ ref)) - 1) < 1e-4  # the same direction
        assert comp[np.abs(comp).argmax()] > 0  # the sign rule
    # L2 input: symmetric, and projections preserve differences.
    y = chain.encode(x)
    np.testing.assert_allclose(y, centred @ vt[:8].T * np.sign(np.sum(stage.components_ * vt[:8], axis=1)),
                               rtol=1e-3, atol=1e-3)
    assert chain.output.metric == "l2" and stage.query_encoding == "symmetric"


def test_pca_inner_product_ranking_uses_uncentred_queries() -> None:
    x = make_vectors(1500, DIM, normalize=True)
    q = make_vectors(30, DIM, seed=3, normalize=True)
    chain = fitted(f"pca:{DIM}:sample=1500", x)  # all components: the ranking must be exact
    assert chain.output.metric == "ip" and chain.stages[0].query_encoding == "asymmetric"
    scores = chain.encode_query(q) @ chain.encode(x).T
    exact = q @ x.T
    assert np.array_equal(np.argsort(-scores, axis=1)[:, :10], np.argsort(-exact, axis=1)[:, :10])


def test_pca_whitening_gives_unit_variance() -> None:
    x = make_vectors(3000, DIM)
    y = fitted("pca:6:whiten=true:sample=3000", x, metric="l2").encode(x)
    np.testing.assert_allclose(y.var(axis=0, ddof=1), 1.0, rtol=1e-3)


def test_rotation_is_orthogonal_and_keeps_inner_products() -> None:
    x = make_vectors(200, DIM)
    chain = fitted("rotate:seed=7", x)
    m = chain.stages[0].state()["matrix"]
    np.testing.assert_allclose(m @ m.T, np.eye(DIM), atol=1e-5)
    y = chain.encode(x)
    np.testing.assert_allclose(y @ y.T, x @ x.T, rtol=1e-4, atol=1e-2)
    assert not np.allclose(fitted("rotate:seed=8", x).encode(x), y)


def test_sparse_projection_density_and_expected_inner_products() -> None:
    x = make_vectors(300, 256, normalize=True)
    chain = fitted("rp:256:seed=1", x)  # rp may not project up: dim at most the input's
    m = chain.stages[0].state()["matrix"]
    assert abs((m != 0).mean() - 1 / 16) < 0.01  # s = sqrt(256) = 16
    y = chain.encode(x)
    err = (y @ y.T - x @ x.T)[np.triu_indices(300, 1)]
    assert abs(err.mean()) < 0.01 and err.std() < 0.1  # unbiased, variance ~ 1/dim


def test_metric_contract_is_handed_on() -> None:
    c = Chain.from_spec("truncate:16,int8", VectorSpec(DIM, "float32", "ip"))
    assert [s.output.metric for s in c.stages] == ["cosine", "cosine"]
    assert [s.output.normalized for s in c.stages] == [True, False]
    assert c.output.metric_on == "decoded"
    c = Chain.from_spec("f16", VectorSpec(DIM, "float32", "l2", False))
    assert (c.output.metric, c.output.dtype) == ("l2", "float16")


def _example_input(cls: type) -> tuple[VectorSpec, object]:
    """Small data of the kind a codec reads: 48-d vectors, sets of 16-d vectors, or JSON records."""
    if cls.input_kind == JSON:
        records = [{"name": f"n{i % 7}", "year": 1900 + i, "tags": ["a", "b"][: i % 3]} for i in range(300)]
        return VectorSpec(0, JSON), records
    if cls.takes_multi:
        from vecx.formats.multi import MultiVectors

        tokens = make_vectors(900, 16, normalize=True)
        return VectorSpec(16, "float32", "cosine", True, multi=True), MultiVectors(tokens, np.arange(0, 901, 3))
    return VectorSpec(DIM, "float32", "cosine", False), make_vectors(300, DIM)


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_example_fits_and_encodes_its_kind_of_input(name: str) -> None:
    """Each codec's example spec (what --help shows and the spec fuzzer starts from) runs as given."""
    cls = registry()[name]
    space, data = _example_input(cls)
    chain = Chain.from_spec(cls.example, space)
    chain.fit(lambda stage: data)
    codes = chain.encode(data)
    assert len(codes) == 300
    out = chain.output
    if out.multi:  # sets of vectors in, sets out (crisp): each row keeps at least one vector
        assert codes.dim == out.dim and (codes.counts >= 1).all() and (codes.counts <= data.counts).all()
        return
    assert codes.shape[1] == (out.bytes_per_vector if is_packed(out.dtype) else out.dim)
