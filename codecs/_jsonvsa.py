"""The maths of the ``vsa`` codec: JSON records to fixed-length vectors by orthogonal-matrix binding.

This is vecx's own "soft MBAT" design (after Gallant 2022: bind by multiplying with random
*orthogonal* matrices; JSON needs non-commutative binding). It is not Gallant's exact recipe.

Encoding of a value ``v`` at key path ``p`` (all value vectors have unit norm):

- **string**: ``unit(e * A_str(s) + t * unit(sum of A_tok(token)))``: an exact-match atom for the whole
  string plus a bag of lower-cased word tokens (``\\w+``, at most ``max_tokens``), so shared words give
  partial similarity and identical strings full similarity.
- **number** (a JSON number, or a numeric string / ``YYYY-MM-DD`` date at a path where the fitted
  sample says such strings are numbers): ``unit(e * A_num(p, x) + s * L(t))`` where ``A_num`` is an
  exact-match atom and ``L`` a level code: ``t = (x - lo) / (hi - lo)`` clipped to [0, 1] with the
  path's fitted range, ``L(t)_j = A_j if t < tau_j else B_j`` (random thresholds), so that the
  cosine of two levels falls linearly, ``1 - levels * |t - t'|`` (``levels`` chained spans).
- **true / false / null**, empty ``[]`` / ``{}``: fixed atoms.
- **object**: ``sum_k w_k * S_k enc(v_k)`` (+ ``gamma * enc(v_k)`` for scalars, unbound, so the same
  value under another key still counts a little), then, for nested objects, multiplied by the
  block-diagonal Haar-orthogonal matrix ``Q`` (``block``-wide blocks). ``S_k`` is a signed
  permutation drawn from the key, so the binding of a value under key ``k`` is the orthogonal
  matrix ``Q S_k``: key-specific, non-commutative
  (``{"a": "b"}`` is not ``{"b": "a"}``), and exactly invertible. Keys are visited in sorted order,
  so key order cannot change a single bit. The root object is not multiplied by ``Q``: one
  orthogonal map applied to every record changes no cosine.
- **array**: ``sum_i alpha * enc(e_i) + beta * P^(i+1) enc(e_i)`` with ``P`` a signed permutation
  drawn from the array's key path: the ``alpha`` part ignores order (the same items in another
  order stay partly similar), the ``beta`` part is positional (prefix-aligned: index 0 means the
  same everywhere). ``alpha^2 + beta^2 = 1`` keeps an item's norm; the default ``alpha = beta = 1``
  weights array items double (measured better on the Nobel data).
- **pairs** (conjunctions): inside every object, for each pair of scalar fields, the elementwise
  product of the two bound field vectors (scaled by ``sqrt(D) / sqrt(m - 1)`` for ``m`` scalar
  fields) is added with weight ``pairs``. It matches only when *both* fields match (same prize
  year *and* category), which sums alone cannot express.
- The record's vector is normalized once, at the end (normalizing every level lets small
  sub-objects outweigh the record). Nothing else is normalized: orthogonal binding keeps norms, so
  depth neither shrinks nor grows a field's share.
- **weights** (``idf``, off by default: it measured worse on the Nobel data): each scalar's term is
  scaled by ``floor + (1 - floor) * log((n + 1) / (count + 1)) / log(n + 1)``, with ``count`` the
  number of sampled records holding that exact value at that path (a hashed table, bounded size).

Randomness: key permutations, level thresholds and a codebook of random +-1 rows come from
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

TOKEN_RE = re.compile(r"\w+", re.UNICODE)
NUMBER_RE = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*\Z")
DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
#: Fraction of a path's sampled string values that must parse as numbers/dates for the path to
#: treat numeric-looking strings as numbers.
NUMERIC_SHARE = 0.9
COUNT_BUCKETS = 1 << 16
CODEBOOK_ROWS = 1 << 12
CODEBOOK_MASK = CODEBOOK_ROWS - 1
_CACHE_BYTES = 64 << 20


class RecordError(ValueError):
    """A record the encoder refuses (too deep, non-finite number, not an object); ``row`` is batch-local."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row
        self.message = message


def _hash64(*parts: Any) -> int:
    h = hashlib.blake2b(digest_size=8)
    h.update("\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "little")


def raw_bits(seed: int, purpose: str, token: Any, n64: int) -> np.ndarray:
    """``n64`` raw 64-bit words from the PCG64 stream of ``blake2b(seed, purpose, token)`` (bit-stable)."""
    return np.random.PCG64(_hash64(seed, purpose, token)).random_raw(n64).astype(np.uint64)


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


def _codebook(seed: int, dim: int) -> np.ndarray:
    """CODEBOOK_ROWS random +-1 rows (scaled so that a product of three has unit norm), from raw bits."""
    words = raw_bits(seed, "codebook", "", CODEBOOK_ROWS * ((dim + 63) // 64)).reshape(CODEBOOK_ROWS, -1)
    bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, :dim]
    scale = np.float32(dim ** (-1.0 / 6.0))  # (D^-1/6)^3 = D^-1/2
    return (bits.astype(np.float32) * np.float32(2.0) - np.float32(1.0)) * scale


def haar_blocks(dim: int, block: int, seed: int) -> np.ndarray:
    """The binding matrix as ``dim / block`` Haar-orthogonal blocks (``nb x block x block``, float32).

    Each block is the QR of a seeded Gaussian matrix with the sign fix (the generator of the
    ``rotate`` codec); ``block = dim`` is one dense Haar matrix. Block-diagonal keeps the cost
    of generating (QR is cubic) and applying the matrix small; the key permutations that come
    before it spread every value over all blocks.
    """
    from vecx.codecs.rotate import haar_orthogonal

    return np.stack([haar_orthogonal(block, _hash64(seed, "vsa:Q", i) & ((1 << 63) - 1))
                     for i in range(dim // block)])


def apply_blocks(x: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """``x @ Q^T`` for the block-diagonal ``Q`` given by ``blocks`` (rows x dim); one GEMM per block."""
    nb, b, _ = blocks.shape
    out = np.empty((len(x), nb * b), dtype=np.float32)
    for i in range(nb):
        out[:, i * b:(i + 1) * b] = np.ascontiguousarray(x[:, i * b:(i + 1) * b]) @ blocks[i].T
    return out


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
    soft: float = 0.5  # weight of token bags / number levels
    gamma: float = 0.0  # unbound copy of scalar values (cross-key similarity)
    alpha: float = 1.0  # unordered part of arrays
    beta: float = 1.0  # positional part of arrays
    levels: int = 4  # spans of the number level code (kernel width = range / levels)
    pairs: float = 2.0  # conjunctions of scalar fields inside an object
    idf: bool = False
    idf_floor: float = 0.1


class PathStats:
    """What the fit learned per key path: numeric ranges and hashed value counts (the state)."""

    def __init__(self, ranges: dict[str, tuple[float, float, bool]], counts: np.ndarray, n: int) -> None:
        self.ranges = ranges  # path -> (lo, hi, numeric strings count as numbers)
        self.counts = counts  # int64[COUNT_BUCKETS]
        self.n = n

    @classmethod
    def empty(cls) -> PathStats:
        return cls({}, np.zeros(COUNT_BUCKETS, dtype=np.int64), 0)


def path_of(parent: str, key: str) -> str:
    """Key path notation: ``prizes[].affiliations[].city``."""
    return f"{parent}.{key}" if parent else key


def _value_token(value: Any) -> str:
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


def fit_stats(records: list[Any], config: Config) -> PathStats:
    """Per-path numeric ranges and value counts from a sample of records."""
    numbers: dict[str, list[float]] = {}
    strings: dict[str, list[int]] = {}  # path -> [strings seen, numeric strings]
    counts = np.zeros(COUNT_BUCKETS, dtype=np.int64)
    n = 0
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise RecordError(row, f"expected a JSON object, got {type(record).__name__}")
        n += 1
        seen: set[int] = set()
        stack: list[tuple[Any, str, int]] = [(record, "", 0)]
        while stack:
            value, path, depth = stack.pop()
            if depth >= config.max_depth:
                continue  # refused (with its row) when encoded
            if isinstance(value, dict):
                stack.extend((v, path_of(path, k), depth + 1) for k, v in value.items())
            elif isinstance(value, list):
                stack.extend((v, path + "[]", depth + 1) for v in value[: config.max_items])
            else:
                seen.add(_hash64(path, _value_token(value)) % COUNT_BUCKETS)
                if isinstance(value, bool) or value is None:
                    continue
                if isinstance(value, (int, float)):
                    if math.isfinite(value):
                        numbers.setdefault(path, []).append(float(value))
                    continue
                tally = strings.setdefault(path, [0, 0])
                tally[0] += 1
                parsed = parse_number(value)
                if parsed is not None:
                    tally[1] += 1
                    numbers.setdefault(path, []).append(parsed)
        for bucket in seen:  # document frequency: once per record
            counts[bucket] += 1
    ranges: dict[str, tuple[float, float, bool]] = {}
    for path, values in numbers.items():
        tally = strings.get(path, [0, 0])
        numeric_strings = tally[0] > 0 and tally[1] >= NUMERIC_SHARE * tally[0]
        if not numeric_strings and len(values) == tally[1]:
            continue  # only strings, too few of them numeric: a text field
        lo, hi = float(min(values)), float(max(values))
        if hi <= lo:
            hi = lo + 1.0
        ranges[path] = (lo, hi, numeric_strings)
    return PathStats(ranges, counts, n)


class Encoder:
    """Encodes parsed JSON records (dicts) into unit float32 vectors; see the module docstring."""

    def __init__(self, config: Config, stats: PathStats, q: np.ndarray | None) -> None:
        self.c = config
        self.stats = stats
        self.q = q  # Haar blocks (nb x b x b) or None (mode "perm")
        d = config.dim
        words = raw_bits(config.seed, "level", "tau", d)
        self._tau = (words >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
        self._values: dict[tuple, np.ndarray] = {}
        self._codebook = _codebook(config.seed, d)
        self._tok_rows: dict[str, int] = {}
        self._tok_table = np.empty((max(4 * config.max_tokens, (16 << 20) // (4 * d)), d), dtype=np.float32)
        self._edges: dict[Any, int] = {}
        self._edge_perm: list[np.ndarray] = []
        self._edge_sign: list[np.ndarray] = []
        self._edge_mix: list[tuple[float, float]] = []
        self._max_cached = max(1024, _CACHE_BYTES // (4 * d))
        self._log_n = math.log(stats.n + 1) if stats.n else 0.0

    # ---- atoms and value vectors -----------------------------------------------------------
    def atom(self, purpose: str, token: Any) -> np.ndarray:
        """The random unit +-1/sqrt(D) vector of a token: the product of 3 codebook rows picked by its hash.

        Any two different tokens differ in at least one row, and the product of independent
        random +-1 vectors is again one, so atoms are quasi-orthogonal; drawing them this way
        costs a hash and two multiplications instead of a random generator per token.
        """
        key = ("a", purpose, token)
        vec = self._values.get(key)
        if vec is None:
            h = _hash64(purpose, token)
            cb = self._codebook
            vec = cb[h & CODEBOOK_MASK] * cb[(h >> 16) & CODEBOOK_MASK] * cb[(h >> 32) & CODEBOOK_MASK]
            if len(self._values) >= self._max_cached:
                self._values.clear()
            self._values[key] = vec
        return vec

    def level(self, t: float) -> np.ndarray:
        """Level code of ``t`` in [0, 1]: ``levels`` chained spans between random anchors, so the
        cosine of two levels is ``1 - levels * |t - t'|`` down to about 0."""
        u = t * self.c.levels
        span = min(int(u), self.c.levels - 1)
        a, b = self.atom("level", span), self.atom("level", span + 1)
        return np.where(u - span < self._tau, a, b).astype(np.float32)

    def _cached(self, key: tuple, make: Any) -> np.ndarray:
        vec = self._values.get(key)
        if vec is None:
            if len(self._values) >= self._max_cached:
                self._values.clear()
            vec = self._values[key] = make()
        return vec

    def _token_rows(self, tokens: list[str]) -> np.ndarray:
        """The atoms of some word tokens (rows x dim), from a bounded table of the tokens seen so far."""
        rows = self._tok_rows
        missing = [t for t in dict.fromkeys(tokens) if t not in rows]
        if missing:
            if len(rows) + len(missing) > len(self._tok_table):
                rows.clear()  # full: start over (bounded memory); only this string's tokens are needed
                missing = list(dict.fromkeys(tokens))
            h = np.asarray([_hash64("tok", t) for t in missing], dtype=np.uint64)
            cb = self._codebook
            mask = np.uint64(CODEBOOK_MASK)
            start = len(rows)
            self._tok_table[start: start + len(missing)] = (
                cb[h & mask] * cb[(h >> np.uint64(16)) & mask] * cb[(h >> np.uint64(32)) & mask])
            for offset, token in enumerate(missing):
                rows[token] = start + offset
        return self._tok_table[[rows[t] for t in tokens]]

    def number_vector(self, path: str, x: float) -> np.ndarray:
        def make() -> np.ndarray:
            exact = self.atom("num", (path, repr(x)))
            rng = self.stats.ranges.get(path)
            if rng is None:
                return exact
            lo, hi, _ = rng
            t = min(1.0, max(0.0, (x - lo) / (hi - lo)))
            return _unit(self.c.exact * exact + self.c.soft * self.level(t))

        return self._cached(("n", path, x), make)

    def string_vector(self, text: str) -> np.ndarray:
        def make() -> np.ndarray:
            exact = self.atom("str", text)
            tokens = TOKEN_RE.findall(text.lower())[: self.c.max_tokens]
            if not tokens:
                return exact
            bag = self._token_rows(tokens).sum(axis=0)
            return _unit(self.c.exact * exact + self.c.soft * _unit(bag))

        return self._cached(("s", text), make)

    def scalar_vector(self, path: str, value: Any, row: int) -> np.ndarray:
        if value is None or isinstance(value, bool):
            return self._cached(("l", value), lambda: self.atom("lit", _value_token(value)))
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise RecordError(row, f"non-finite number at {path!r}")
            return self.number_vector(path, float(value))
        rng = self.stats.ranges.get(path)
        if rng is not None and rng[2]:
            parsed = parse_number(value)
            if parsed is not None:
                return self.number_vector(path, parsed)
        return self.string_vector(value)

    def weight(self, path: str, value: Any) -> float:
        if not self.c.idf or not self.stats.n:
            return 1.0
        count = int(self.stats.counts[_hash64(path, _value_token(value)) % COUNT_BUCKETS])
        idf = math.log((self.stats.n + 1) / (count + 1)) / self._log_n
        return self.c.idf_floor + (1.0 - self.c.idf_floor) * idf

    # ---- binding edges -----------------------------------------------------------------------
    def edge(self, kind: str, token: Any) -> int:
        """Index of a signed permutation: a key's (``"k"``) or the i-th array position's (``"i"``)."""
        key = (kind, token)
        index = self._edges.get(key)
        if index is None:
            if kind == "k":
                perm, sign = signed_permutation(self.c.seed, "key", token, self.c.dim)
            else:  # item i of the array at a path: P_path^(i+1) (never the identity, so the positional
                # part is not the unordered one; per path, so nested arrays do not add up coherently)
                array_path, position = token
                base_perm, base_sign = signed_permutation(self.c.seed, "seq", array_path, self.c.dim)
                if position == 0:
                    perm, sign = base_perm, base_sign
                else:
                    prev = self.edge("i", (array_path, position - 1))
                    p_prev, s_prev = self._edge_perm[prev], self._edge_sign[prev]
                    perm, sign = p_prev[base_perm], s_prev[base_perm] * base_sign
            index = self._edges[key] = len(self._edge_perm)
            self._edge_perm.append(perm)
            self._edge_sign.append(sign)
            self._edge_mix.append((0.0, 1.0) if kind == "k" else (self.c.alpha, self.c.beta))
        return index

    # ---- encoding ------------------------------------------------------------------------------
    def encode(self, records: list[Any], normalize: bool = True, only_path: str | None = None) -> np.ndarray:
        """Unit vectors (rows x dim, float32) for a list of parsed records.

        ``normalize=False`` returns the raw sums; ``only_path`` keeps only the scalars (and empty
        containers) at that key path, everything else contributing zero but keeping its array
        position (with pairs off, the sum over all paths is the unnormalized record vector:
        what ``vecx vsa explain`` decomposes).
        """
        from threadpoolctl import threadpool_limits

        out = np.empty((len(records), self.c.dim), dtype=np.float32)
        step = max(16, min(512, (32 << 20) // (self.c.dim * 4 * 24)))
        # The products here are small (a few hundred rows by one 256-wide block): BLAS threads cost
        # more than they give (measured 12x slower on a busy 2-core machine), so one thread.
        with threadpool_limits(limits=1, user_api="blas"):
            for start in range(0, len(records), step):
                out[start: start + step] = self._encode_block(records[start: start + step], start, normalize,
                                                              only_path)
        return out

    def bound_leaf(self, path: str, edge: int, value: Any, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(bound, unbound) contribution of a scalar: ``w * B_edge v`` and ``w * v`` (cached)."""
        key = ("b", path, edge, _value_token(value))
        hit = self._values.get(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        v = np.float32(self.weight(path, value)) * self.scalar_vector(path, value, row)
        alpha, beta = self._edge_mix[edge]
        bound = v[self._edge_perm[edge]] * self._edge_sign[edge]
        if beta != 1.0:
            bound *= np.float32(beta)
        if alpha:
            bound += np.float32(alpha) * v
        if len(self._values) >= self._max_cached:
            self._values.clear()
        self._values[key] = (bound, v)  # type: ignore[assignment]
        return bound, v

    def _bind(self, x: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """Apply each row's edge: a key's signed permutation, or ``alpha I + beta P^i`` for item i."""
        out = np.empty_like(x)
        for e in np.unique(edges):
            rows = np.flatnonzero(edges == e)
            perm, sign, alpha, beta = self._edge_perm[e], self._edge_sign[e], *self._edge_mix[e]
            y = x[rows][:, perm] * sign
            if beta != 1.0:
                y *= np.float32(beta)
            if alpha:
                y += x[rows] * np.float32(alpha)
            out[rows] = y
        return out

    def _encode_block(self, records: list[Any], offset: int, normalize: bool, only_path: str | None) -> np.ndarray:
        c = self.c
        if len(self._edges) >= 4096:  # bounded memory with many distinct keys; only between blocks
            self._edges.clear()
            self._edge_perm.clear()
            self._edge_sign.clear()
            self._edge_mix.clear()
            self._values.clear()  # cached bound vectors refer to edge numbers
        # Containers (objects, arrays) are nodes; a node starts as the sum of its scalars' cached
        # bound vectors (and their conjunctions); nested containers are added bottom-up below.
        parent: list[int] = []
        depth_of: list[int] = []
        edge_of: list[int] = []
        is_obj: list[bool] = []
        own: list[Any] = []
        roots: list[int] = []
        zero = np.zeros(c.dim, dtype=np.float32)
        empty_obj = self._cached(("e", "{}"), lambda: self.atom("lit", "{}"))
        empty_arr = self._cached(("e", "[]"), lambda: self.atom("lit", "[]"))
        pair_scale = np.float32(c.pairs * math.sqrt(c.dim) * 0.5)
        for local, record in enumerate(records):
            row = offset + local
            if not isinstance(record, dict):
                raise RecordError(row, f"expected a JSON object, got {type(record).__name__}")
            root = len(parent)
            roots.append(root)
            parent.append(-1); depth_of.append(0); edge_of.append(-1); is_obj.append(True); own.append(zero)
            unbound: list[np.ndarray] = []
            stack: list[tuple[Any, int, str, int]] = [(record, root, "", 0)]
            while stack:
                value, node, path, depth = stack.pop()
                if depth >= c.max_depth:
                    raise RecordError(row, f"nesting deeper than {c.max_depth} levels at {path!r} "
                                           "(max_depth)")
                if not value:
                    if only_path is None or only_path == path:
                        own[node] = empty_obj if isinstance(value, dict) else empty_arr
                    continue
                if isinstance(value, dict):
                    items = [(self.edge("k", key), path_of(path, key), value[key]) for key in sorted(value)]
                else:
                    items = [(self.edge("i", (path, i)), path + "[]", v) for i, v in enumerate(value[: c.max_items])]
                total = None
                squares = None
                scalars = 0
                for edge, sub_path, sub in items:
                    if isinstance(sub, (dict, list)):
                        child = len(parent)
                        parent.append(node); depth_of.append(depth + 1); edge_of.append(edge)
                        is_obj.append(isinstance(sub, dict) and bool(sub)); own.append(zero)
                        stack.append((sub, child, sub_path, depth + 1))
                        continue
                    if only_path is not None and sub_path != only_path:
                        continue
                    bound, plain = self.bound_leaf(sub_path, edge, sub, row)
                    scalars += 1
                    if total is None:
                        total = bound.copy()
                    else:
                        total += bound
                    if c.pairs and only_path is None and isinstance(value, dict):
                        squares = bound * bound if squares is None else squares + bound * bound
                    if c.gamma:
                        unbound.append(plain)
                if total is not None:
                    if squares is not None and scalars > 1:
                        # sum_{i<j} f_i * f_j = ((sum f)^2 - sum f^2) / 2, elementwise; sqrt(D) makes a
                        # product of unit random vectors unit-sized, 1/sqrt(m-1) keeps m(m-1)/2 pairs
                        # about as heavy as the m fields.
                        total = total + (total * total - squares) * (pair_scale / np.float32(math.sqrt(scalars - 1)))
                    own[node] = total
            if unbound:  # the root is never bound, so it takes these copies directly
                own[root] = own[root] + np.float32(c.gamma) * np.sum(unbound, axis=0)
        vec = np.stack(own)
        parent_a = np.asarray(parent)
        depth_a = np.asarray(depth_of)
        edge_a = np.asarray(edge_of)
        obj_a = np.asarray(is_obj)
        for depth in range(int(depth_a.max()), 0, -1):
            ids = np.flatnonzero(depth_a == depth)
            objs = ids[obj_a[ids]]
            if len(objs) and self.q is not None:
                vec[objs] = apply_blocks(vec[objs], self.q)
            _add_rows(vec, parent_a[ids], self._bind(vec[ids], edge_a[ids]))
        result = vec[np.asarray(roots)]
        if normalize:
            norms = np.linalg.norm(result, axis=1, keepdims=True)
            empty = norms[:, 0] == 0
            if empty.any():
                result[empty] = empty_obj
                norms[empty] = 1.0
            result = result / norms
        return result.astype(np.float32, copy=False)


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


def _unit(v: np.ndarray) -> np.ndarray:
    n = math.sqrt(float(np.dot(v, v)))
    return v * np.float32(1.0 / n) if n > 0 else v


def _add_rows(target: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``target[rows] += values`` with repeated rows summed in a fixed order (row order of ``values``)."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    bounds = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1], True])
    if len(bounds) - 1 == len(rows):  # no repeats: one vectorized add
        target[sorted_rows] += values[order]
        return
    for a, b in zip(bounds[:-1], bounds[1:]):
        target[sorted_rows[a]] += values[order[a:b]].sum(axis=0)
