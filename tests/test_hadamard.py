"""The fast structured rotation (random signs, Walsh-Hadamard transforms, half-mixing butterflies):
checked against dense matrices built here from the definition, not from the module's own code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vecx import hadamard


def sylvester(size: int) -> np.ndarray:
    """The normalized Walsh-Hadamard matrix of a power-of-two size (Sylvester's construction)."""
    h = np.ones((1, 1))
    while len(h) < size:
        h = np.block([[h, h], [h, -h]])
    return h / math.sqrt(size)


def reference(signs: np.ndarray) -> np.ndarray:
    """The rotation as a product of dense steps, rows multiplied on the left (``y = x @ M``):
    per round, the signs, the transform of the first (even rounds) or last (odd rounds) 2^k
    coordinates, and, unless the width is a power of two, ``(a, b) -> (a + b, a - b) / sqrt 2``
    between each coordinate of the first half and its counterpart in the second."""
    rounds, width = signs.shape
    size = 1 << int(math.floor(math.log2(width)))
    m = np.eye(width)
    for r in range(rounds):
        start = 0 if r % 2 == 0 else width - size
        block = np.eye(width)
        block[start:start + size, start:start + size] = sylvester(size)
        m = m @ np.diag(signs[r].astype(float)) @ block
        if size != width:
            half = width // 2
            mix = np.zeros((width, width))
            for i in range(half):
                mix[i, i] = mix[i + half, i] = mix[i, i + half] = 1.0
                mix[i + half, i + half] = -1.0
            m = m @ (mix / math.sqrt(2.0))
    return m


@pytest.mark.parametrize("width", [8, 56, 128, 384, 1000])
def test_every_implementation_equals_the_definition(width: int) -> None:
    signs = hadamard.draw_signs(width, np.random.default_rng(width))
    assert signs.shape == (hadamard.ROUNDS, width) and set(np.unique(signs)) == {-1, 1}
    m = reference(signs)
    np.testing.assert_allclose(m @ m.T, np.eye(width), atol=1e-9)  # the definition is a rotation
    x = np.random.default_rng(1).standard_normal((37, width)).astype(np.float32)
    np.testing.assert_allclose(hadamard.rotate_rows(x, signs), x @ m, atol=2e-5)
    np.testing.assert_allclose(hadamard.rotation_matrix(signs), m, atol=1e-6)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(hadamard.transform(x64, signs), x64 @ m, atol=1e-9)
    np.testing.assert_allclose(hadamard.transform(x64 @ m, signs, inverse=True), x64, atol=1e-9)


@pytest.mark.parametrize("width", [8, 56, 128, 384, 1000, 1024])
def test_the_products_of_hadamard_factors_equal_the_definition(width: int) -> None:
    """Queries' rotation by two small Hadamard factors per round (Kronecker): the dense steps of the
    definition, in float32 accuracy; a row's result is the same alone as among others."""
    signs = hadamard.draw_signs(width, np.random.default_rng(width + 7))
    x = np.random.default_rng(4).standard_normal((37, width)).astype(np.float32)
    rotated = hadamard.transform_products(x, signs)
    assert rotated.dtype == np.float32 and rotated.shape == x.shape
    np.testing.assert_allclose(rotated, x.astype(np.float64) @ reference(signs), atol=5e-6)
    for i in (0, 36):
        np.testing.assert_allclose(hadamard.transform_products(x[i:i + 1], signs), rotated[i:i + 1], atol=1e-6)


def test_narrow_rows_are_zero_padded_and_no_row_depends_on_another() -> None:
    signs = hadamard.draw_signs(384, np.random.default_rng(3))
    x = np.random.default_rng(2).standard_normal((53, 380)).astype(np.float32)  # 53: a partial lane group
    padded = np.zeros((53, 384), dtype=np.float32)
    padded[:, :380] = x
    whole = hadamard.rotate_rows(x, signs)
    np.testing.assert_allclose(whole, padded @ reference(signs), atol=2e-5)
    for i in (0, 15, 16, 52):  # alone, or in another lane of another group: the same bits
        assert hadamard.rotate_rows(x[i:i + 1], signs).tobytes() == whole[i:i + 1].tobytes()
    assert hadamard.rotate_rows(x[5:40], signs).tobytes() == whole[5:40].tobytes()


def test_an_odd_width_is_refused() -> None:
    with pytest.raises(ValueError, match="even width"):
        hadamard.draw_signs(7, np.random.default_rng(0))


def test_the_dense_matrix_of_the_same_signs_is_computed_once_and_read_only() -> None:
    """Two stages fitted with one seed (a 1-bit first stage, 4-bit rescoring codes) share the dense
    rotation; other signs get their own, and nothing can write into the shared one."""
    rng = np.random.default_rng(3)
    signs = hadamard.draw_signs(64, rng)
    first = hadamard.rotation_matrix(signs)
    assert hadamard.rotation_matrix(signs.copy()) is first
    other = hadamard.rotation_matrix(hadamard.draw_signs(64, rng))
    assert other is not first and not np.allclose(other, first)
    with pytest.raises(ValueError):
        first[0, 0] = 1.0
    np.testing.assert_allclose(first @ first.T, np.eye(64), atol=1e-5)
