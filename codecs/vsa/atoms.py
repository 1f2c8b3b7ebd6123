"""The seeded atoms of the ``vsa`` encoding and the record values they stand for.

Key permutations, level thresholds and a codebook of random +-1 rows come from
``bit_generator.random_raw`` of a ``PCG64`` seeded by ``blake2b(seed, purpose, token)`` (the raw
bit stream is stable across numpy versions) and integer operations only; a token's atom is the
product of three codebook rows picked by its blake2b hash. So they are regenerated bit-exactly.
The Haar blocks of ``Q`` (QR of a Gaussian matrix, sign-fixed) are stored in the codec state,
because Gaussian sampling and QR are not bit-stable across numpy/LAPACK builds.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from vecx.kernels import haar_orthogonal

TOKEN_RE = re.compile(r"\w+", re.UNICODE)
NUMBER_RE = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*\Z")
DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
#: Fraction of a path's sampled string values that must parse as numbers/dates for the path to
#: treat numeric-looking strings as numbers.
NUMERIC_SHARE = 0.9
COUNT_BUCKETS = 1 << 16
CODEBOOK_ROWS = 1 << 12
CODEBOOK_MASK = CODEBOOK_ROWS - 1


class RecordError(ValueError):
    """A record the encoder refuses (too deep, non-finite number, not an object); ``row`` is batch-local."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row
        self.message = message


def hash64(*parts: Any) -> int:
    """A 64-bit blake2b hash of the parts' text: the seed of every atom, stable across platforms."""
    h = hashlib.blake2b(digest_size=8)
    h.update("\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "little")


def digests64(purpose: str, tokens: list[Any]) -> list[bytes]:
    """The 8-byte blake2b digests behind ``hash64(purpose, token)`` of many tokens."""
    prefix = f"{purpose}\x1f"
    blake2b = hashlib.blake2b
    return [blake2b((prefix + str(token)).encode("utf-8", "surrogatepass"), digest_size=8).digest()
            for token in tokens]


def hashes64(purpose: str, tokens: list[Any]) -> np.ndarray:
    """``hash64(purpose, token)`` of many tokens at once (uint64)."""
    return np.frombuffer(b"".join(digests64(purpose, tokens)), dtype="<u8").astype(np.uint64)


def raw_bits(seed: int, purpose: str, token: Any, n64: int) -> np.ndarray:
    """``n64`` raw 64-bit words from the PCG64 stream of ``blake2b(seed, purpose, token)`` (bit-stable)."""
    return np.random.PCG64(hash64(seed, purpose, token)).random_raw(n64).astype(np.uint64)


def bipolar(seed: int, purpose: str, token: Any, dim: int) -> np.ndarray:
    """A random +-1/sqrt(dim) vector (unit norm) from raw bits."""
    words = raw_bits(seed, purpose, token, (dim + 63) // 64)
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:dim]
    return (bits.astype(np.float32) * np.float32(2.0) - np.float32(1.0)) * np.float32(1.0 / math.sqrt(dim))


def signed_permutation(seed: int, purpose: str, token: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A random signed permutation (``perm``, ``sign``): ``(S x)_j = sign_j * x[perm_j]``; from raw bits."""
    keys = raw_bits(seed, purpose + ":perm", token, dim)
    perm = np.argsort(keys, kind="stable").astype(np.int64)
    return perm, bipolar(seed, purpose + ":sign", token, dim) * np.float32(math.sqrt(dim))


def codebook_bits(seed: int, dim: int) -> np.ndarray:
    """CODEBOOK_ROWS random +-1 rows as packed bits (CODEBOOK_ROWS x ceil(dim / 64) words; bit 1 = +1)."""
    return raw_bits(seed, "codebook", "", CODEBOOK_ROWS * ((dim + 63) // 64)).reshape(CODEBOOK_ROWS, -1)


def atom_magnitude(dim: int) -> np.float32:
    """The absolute value of every entry of an atom: three codebook entries of ``dim^-1/6`` multiplied in
    float32 (``(s * s) * s``; rounding is symmetric, so the sign is the product of the three signs)."""
    scale = np.float32(dim ** (-1.0 / 6.0))  # (D^-1/6)^3 = D^-1/2: atoms have unit norm
    return scale * scale * scale


def haar_blocks(dim: int, block: int, seed: int) -> np.ndarray:
    """The binding matrix as ``dim / block`` Haar-orthogonal blocks (``nb x block x block``, float32).

    Each block is the QR of a seeded Gaussian matrix with the sign fix (the generator of the
    ``rotate`` codec); ``block = dim`` is one dense Haar matrix. Block-diagonal keeps the cost
    of generating (QR is cubic) and applying the matrix small; the key permutations that come
    before it spread every value over all blocks.
    """
    return np.stack([haar_orthogonal(block, hash64(seed, "vsa:Q", i) & ((1 << 63) - 1))
                     for i in range(dim // block)])


def parse_number(text: str) -> float | None:
    """A numeric string (``"1903"``, ``"-2.5e3"``) or ``YYYY-MM-DD`` date (as fractional year), else None."""
    if NUMBER_RE.match(text):
        value = float(text)
        return value if math.isfinite(value) else None
    m = DATE_RE.match(text)
    if m:
        try:
            day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            return None  # e.g. "0000-00-00": a placeholder, kept as a string
        return day.year + (day.timetuple().tm_yday - 1) / 366.0
    return None


@dataclass(frozen=True)
class Config:
    """Every parameter that changes the vectors (saved with the codec's spec)."""

    dim: int
    seed: int
    mode: str = "dense"  # "dense": Haar Q for nested objects; "perm": signed permutations only
    block: int = 256  # size of the Haar blocks of Q
    max_tokens: int = 64
    max_items: int = 256
    max_depth: int = 32
    exact: float = 1.0  # weight of exact-match atoms (strings, numbers)
    soft: float = 1.0  # weight of token bags / number levels
    gamma: float = 0.0  # unbound copy of scalar values (cross-key similarity)
    alpha: float = 1.0  # unordered part of arrays
    beta: float = 1.0  # positional part of arrays
    levels: int = 16  # spans of the number level code (kernel width = range / levels)
    pairs: float = 2.0  # conjunctions of scalar fields inside an object
    idf: bool = True
    idf_floor: float = 0.8


def path_of(parent: str, key: str) -> str:
    """Key path notation: ``prizes[].affiliations[].city``."""
    return f"{parent}.{key}" if parent else key


def value_token(value: Any) -> str:
    """Canonical text of a scalar for exact-match atoms and counting."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(float(value))
    return "s:" + value


def leaf_paths(record: Any) -> dict[str, list[Any]]:
    """Key path -> the scalars (and empty containers) found there, in document order."""
    out: dict[str, list[Any]] = {}
    stack: list[tuple[Any, str]] = [(record, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, (dict, list)) and value:
            children = ([(value[k], path_of(path, k)) for k in sorted(value)] if isinstance(value, dict)
                        else [(v, path + "[]") for v in value])
            stack.extend(reversed(children))
        elif path:
            out.setdefault(path, []).append(value)
    return out
