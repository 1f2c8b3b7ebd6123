"""A fast structured random rotation: random signs, Walsh-Hadamard transforms and butterflies.

A dense random orthogonal matrix costs ``D^2`` multiply-adds per vector; for RaBitQ codes that is
most of the encoding time. This rotation costs ``O(D log D)``: :data:`ROUNDS` rounds, each of

1. a multiplication by seeded random signs (a random diagonal of ±1),
2. the normalized Walsh-Hadamard transform of ``2^k`` coordinates (the largest power of two not
   above ``P``; alternately the first and the last ``2^k``, so every coordinate takes part),
3. when ``P`` is not a power of two, a butterfly mixing each coordinate of the first half with its
   counterpart in the second: ``(a, b) -> ((a + b), (a - b)) / sqrt(2)``.

Every step is orthogonal, so the whole is (distances and inner products are kept), and the sign
diagonals between the transforms make it random enough for sign codes: the same construction
(random signs between Hadamard transforms, with Kac-walk style mixing for other sizes) is what the
RaBitQ library uses by default. ``P`` is the input's width, a multiple of 2.

Four ways to apply it, equal up to float rounding: a compiled kernel for encoding many rows
(:func:`rotate_rows`); the dense ``P x P`` matrix of the same rotation (:func:`rotation_matrix`) for
narrow queries and decoding, where one BLAS product is cheaper than loading the kernel; products
with two small Hadamard factors per round (:func:`transform_products`) for wide queries, whose dense
matrix is megabytes that a scan pushes out of the cache; and numpy passes (:func:`transform`, either
direction) for decoding rows too wide for a dense matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

#: Sign-and-transform rounds. Three suffice for powers of two (the "HD3" of cross-polytope LSH);
#: the fourth gives the half-mixing butterflies of other widths a second pass.
ROUNDS = 4

#: Rows transformed together, one SIMD lane each (16 float32 fill an AVX-512 register).
LANES = 16

_kernel: Any = None


def draw_signs(width: int, rng: Any) -> Any:
    """The rotation's state: :data:`ROUNDS` x ``width`` random signs (int8 ±1) drawn from ``rng``."""
    if width % 2:
        raise ValueError(f"the fast rotation needs an even width, not {width}")
    return np.where(rng.random((ROUNDS, width)) < 0.5, -1, 1).astype(np.int8)


def _transform_size(width: int) -> int:
    """The Walsh-Hadamard transform's size: the largest power of two not above ``width``."""
    return 1 << (width.bit_length() - 1)


def _plan(signs: Any) -> tuple[int, Any]:
    """The transform's size ``2^k`` and the multipliers the kernel applies around the transforms
    ((rounds + 1) x width float32): row ``r`` before round ``r``'s transform (its signs, times the
    Hadamard normalization on the round's block and the previous round's butterfly normalization:
    all linear, so they can move there), the last row after the last round. Kept per signs: a
    single query's rotation would otherwise spend a third of its time here."""
    return _per_signs(_PLANS, signs, _new_plan)


#: What :func:`_per_signs` keeps, by the signs' shape, type and bytes (read-only): :func:`_plan`'s
#: results, and the dense matrices of :func:`rotation_matrix` (the stages of one index, a 1-bit
#: first stage and 4-bit rescoring codes fitted with one seed, share one).
_PLANS: dict[tuple[Any, ...], tuple[int, Any]] = {}
_MATRICES: dict[tuple[Any, ...], Any] = {}


def _per_signs(cache: dict[tuple[Any, ...], Any], signs: Any, build: Callable[[Any], Any]) -> Any:
    """``build(signs)``, computed once per process for the same signs (a few chains' worth are kept;
    more is unusual)."""
    signs = np.ascontiguousarray(signs)
    key = (signs.shape, signs.dtype.str, signs.tobytes())
    found = cache.get(key)
    if found is None:
        if len(cache) >= 8:
            cache.clear()
        found = cache[key] = build(signs)
    return found


def _new_plan(signs: Any) -> tuple[int, Any]:
    rounds, width = signs.shape
    size = _transform_size(width)
    mix = 1.0 / math.sqrt(2.0) if size != width else 1.0
    folded = np.ones((rounds + 1, width))
    folded[:rounds] = signs
    for r in range(rounds):
        start = 0 if r % 2 == 0 else width - size
        folded[r, start:start + size] /= math.sqrt(size)
    folded[1:] *= mix
    folded = np.ascontiguousarray(folded, dtype=np.float32)
    folded.flags.writeable = False
    return size, folded


def rotation_matrix(signs: Any) -> Any:
    """The rotation as a dense ``P x P`` float32 matrix ``M`` (``rotate_rows(x) = x @ M``, up to
    float rounding; ``M.T`` undoes it), computed in float64 by transforming the identity. Read-only:
    the matrix of the same signs is computed once per process."""
    return _per_signs(_MATRICES, signs, _new_matrix)


def _new_matrix(signs: Any) -> Any:
    matrix = transform(np.eye(signs.shape[1]), signs).astype(np.float32)
    matrix.flags.writeable = False
    return matrix


def transform(x: Any, signs: Any, inverse: bool = False) -> Any:
    """The rotation (or its inverse) of the rows of ``x`` (rows x ``P``) by numpy passes, in ``x``'s
    float type: for a few rows, or to build :func:`rotation_matrix`; many rows go to :func:`rotate_rows`."""
    rounds, width = signs.shape
    size = _transform_size(width)
    x = np.array(x, copy=True)
    order = range(rounds - 1, -1, -1) if inverse else range(rounds)
    for r in order:  # each step is its own inverse but the signs; undone in the reverse order
        if not inverse:
            x *= signs[r]
        else:
            x = _half_mix(x, size, width)
        start = 0 if r % 2 == 0 else width - size
        block = x[:, start:start + size].copy()  # a column slice: reshaping it would copy it anyway
        h = 1
        while h < size:  # butterflies of pairs h apart, as the kernel does them
            view = block.reshape(len(x), size // (2 * h), 2, h)
            a, b = view[:, :, 0, :].copy(), view[:, :, 1, :].copy()
            view[:, :, 0, :] = a + b
            view[:, :, 1, :] = a - b
            h *= 2
        x[:, start:start + size] = block / math.sqrt(size)
        if inverse:
            x *= signs[r]
        else:
            x = _half_mix(x, size, width)
    return x


def transform_products(x: Any, signs: Any) -> Any:
    """The rotation of the rows of ``x`` (rows x ``P`` float32), each round's Walsh-Hadamard transform
    as two products with small Hadamard matrices: ``H(2^k) = H(2^a) (x) H(2^b)`` (Sylvester's
    construction is a Kronecker power), so a block reshaped to ``2^a x 2^b`` is transformed as
    ``H(2^a) @ block @ H(2^b)``: ``(2^a + 2^b) 2^k`` multiply-adds a row instead of the dense matrix's
    ``P^2``, and factors of a few KB that stay in the cache. The signs and normalizations are
    :func:`_plan`'s multipliers, applied between the rounds."""
    size, folded = _plan(signs)
    first, second = _hadamard_factors(size)
    n, width = x.shape
    x = np.array(x, dtype=np.float32, copy=True)
    for r in range(len(signs)):
        x *= folded[r]
        start = 0 if r % 2 == 0 else width - size
        block = x[:, start:start + size].reshape(n * len(first), len(second)) @ second
        x[:, start:start + size] = np.matmul(first, block.reshape(n, len(first), len(second))).reshape(n, size)
        if size != width:  # the half-mixing butterflies, their normalization in the next multipliers
            half = width // 2
            a, b = x[:, :half].copy(), x[:, half:]
            x[:, :half] += b
            x[:, half:] = a - b
    x *= folded[len(signs)]
    return x


#: Unnormalized Sylvester-Hadamard matrices (float32), by size.
_SYLVESTER: dict[int, Any] = {}


def _hadamard_factors(size: int) -> tuple[Any, Any]:
    """Two Sylvester-Hadamard matrices whose Kronecker product is the one of ``size`` (a power of two),
    as near in size as can be."""
    k = size.bit_length() - 1
    return _sylvester(1 << (k // 2)), _sylvester(size >> (k // 2))


def _sylvester(size: int) -> Any:
    h = _SYLVESTER.get(size)
    if h is None:
        h = np.ones((1, 1), dtype=np.float32)
        while len(h) < size:
            h = np.block([[h, h], [h, -h]])
        h.flags.writeable = False
        _SYLVESTER[size] = h
    return h


def _half_mix(x: Any, size: int, width: int) -> Any:
    """The half-mixing butterflies (none when the width is a power of two): their own inverse."""
    if size == width:
        return x
    half = width // 2
    a, b = x[:, :half], x[:, half:]
    return np.concatenate([a + b, a - b], axis=1) / math.sqrt(2.0)


def rotate_rows(x: Any, signs: Any) -> Any:
    """The rotation of each row of ``x`` (rows x ``w`` float32, ``w`` at most the rotation's width,
    zero-padded to it): rows x width float32. Each row's result depends only on that row."""
    size, folded = _plan(signs)
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty((len(x), signs.shape[1]), dtype=np.float32)
    _compiled()(x, out, np.repeat(folded, LANES, axis=1), size)
    return out


def _rotate_kernel(x: Any, out: Any, multipliers: Any, size: int) -> None:  # pragma: no cover
    """The compiled loop of :func:`rotate_rows`: :data:`LANES` rows at a time, transposed into a
    buffer (coordinates x rows) that stays in L1, so that every butterfly is one SIMD operation
    over the rows (within one row, the early butterflies pair neighbours, which do not vectorize).
    ``multipliers`` are :func:`_plan`'s, repeated for each lane. Missing rows of the last group are
    zeros; no row's result depends on another's."""
    n, dim = x.shape
    lanes = np.uint64(LANES)
    cells = np.uint64(multipliers.shape[1])
    width = cells // lanes
    buf = np.zeros(cells, dtype=np.float32)
    for first in range(0, n, LANES):
        count = min(LANES, n - first)
        if count < LANES:  # the missing rows' lanes
            buf[:] = 0.0
        else:  # the padding coordinates (the rows' own are overwritten)
            buf[np.uint64(dim) * lanes:] = 0.0
        for lane in range(count):
            for i in range(dim):
                buf[np.uint64(i) * lanes + np.uint64(lane)] = x[first + lane, i]
        _transform(buf, multipliers, size)
        for lane in range(count):
            for i in range(width):
                out[first + lane, i] = buf[np.uint64(i) * lanes + np.uint64(lane)]


def _transform_group(buf: Any, multipliers: Any, size: int) -> None:  # pragma: no cover
    """The rounds of the rotation on one transposed group of rows, in place.

    Every pass is one flat loop over the buffer with unsigned indices: numba checks signed indices
    for negative values, which keeps LLVM from vectorizing, and short loops (one coordinate's lanes)
    ran several times slower than flat ones."""
    rounds = multipliers.shape[0] - 1
    lanes = np.uint64(LANES)
    cells = np.uint64(multipliers.shape[1])
    width = cells // lanes
    half = cells // np.uint64(2)
    for r in range(rounds):
        for jj in range(cells):  # signs and normalizations
            j = np.uint64(jj)
            buf[j] *= multipliers[r, j]
        start = np.uint64(0 if r % 2 == 0 else width - size) * lanes
        end = start + np.uint64(size) * lanes
        h = lanes
        while h < end - start:  # butterflies of the coordinates h / LANES apart
            i = start
            while i < end:
                for jj in range(h):
                    j = i + np.uint64(jj)
                    a = buf[j]
                    b = buf[j + h]
                    buf[j] = a + b
                    buf[j + h] = a - b
                i += np.uint64(2) * h
            h *= np.uint64(2)
        if size != width:  # the half-mixing butterflies
            for jj in range(half):
                j = np.uint64(jj)
                a = buf[j]
                b = buf[j + half]
                buf[j] = a + b
                buf[j + half] = a - b
    for jj in range(cells):  # the last normalization
        j = np.uint64(jj)
        buf[j] *= multipliers[rounds, j]


_transform: Any = None


def _compiled() -> Any:
    """The compiled kernel (compiled, or loaded from numba's on-disk cache, on first call)."""
    global _kernel, _transform
    if _kernel is None:
        from vecx.kernels import compiled

        _transform = compiled(_transform_group, inline="always")  # by this name in the kernel
        _kernel = compiled(_rotate_kernel)
    return _kernel
