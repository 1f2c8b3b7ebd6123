r"""The maths of the ``vsa`` codec: JSON records to fixed-length vectors by orthogonal-matrix binding.

This is vecx's own "soft MBAT" design (after Gallant 2022: bind by multiplying with random
*orthogonal* matrices; JSON needs non-commutative binding). It is not Gallant's exact recipe.

Encoding of a value ``v`` at key path ``p`` (all value vectors have unit norm):

- **string**: ``unit(e * A_str(s) + t * unit(sum of A_tok(token)))``: an exact-match atom for the whole
  string plus a bag of lower-cased word tokens (``\w+``, at most ``max_tokens``), so shared words give
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
  weights array items double (it ranks better on the Nobel data, see BENCHMARKS.md).
- **pairs** (conjunctions): inside every object, for each pair of scalar fields, the elementwise
  product of the two bound field vectors (scaled by ``sqrt(D) / sqrt(m - 1)`` for ``m`` scalar
  fields) is added with weight ``pairs``. It matches only when *both* fields match (same prize
  year *and* category), which sums alone cannot express.
- The record's vector is normalized once, at the end (normalizing every level lets small
  sub-objects outweigh the record). Nothing else is normalized: orthogonal binding keeps norms, so
  depth neither shrinks nor grows a field's share.
- **weights** (``idf``): each scalar's term is scaled by
  ``floor + (1 - floor) * log((n + 1) / (count + 1)) / log(n + 1)``, with ``count`` the number of
  sampled records holding that exact value at that path (a hashed table, bounded size). The
  default floor (0.8) is mild on purpose: a common value still weighs 0.8 of a unique one, because
  records often carry unique fields (names, descriptions) that a partial query lacks, and strong
  weights let those dominate a record's norm.

Randomness: every atom is regenerated bit-exactly from the seed (:mod:`vecx.codecs.vsa.atoms`);
the fitted part is in :mod:`vecx.codecs.vsa.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from vecx.codecs.vsa.atoms import (
    CODEBOOK_MASK,
    COUNT_BUCKETS,
    TOKEN_RE,
    Config,
    RecordError,
    atom_magnitude,
    codebook_bits,
    digests64,
    hash64,
    hashes64,
    parse_number,
    path_of,
    raw_bits,
    signed_permutation,
    value_token,
)
from vecx.codecs.vsa.stats import PathStats
from vecx.kernels import apply_blocks, cores

_CACHE_BYTES = 64 << 20
_MAX_WORD_HASHES = 1 << 18
_MAX_SHAPES = 1 << 14  # cached children lists (object key sets and array paths)
_SLAB_BYTES = 512 << 10  # partial sums added up together (a core's share of the L2 cache)


class _RowCache:
    """Float32 vectors (rows of ``width``) by key, kept in the arrays they were built in; bounded.

    :meth:`rows` returns the vectors of some keys as one array, building the missing ones with one
    call of ``make`` (so that they are built by array operations). The array ``make`` returns is
    kept as it is, read-only, so caching costs no copy; when more than ``capacity`` rows would be
    kept the cache starts over.
    """

    def __init__(self, width: int, capacity: int) -> None:
        self.width = width
        self.capacity = capacity
        self.index: dict[Any, tuple[int, int]] = {}  # key -> (batch, row in it)
        self.batches: list[np.ndarray] = []
        self.held = 0  # rows in the batches

    def clear(self) -> None:
        self.index.clear()
        self.batches.clear()
        self.held = 0

    def rows(self, keys: list[Any], make: Callable[[list[Any]], np.ndarray]) -> np.ndarray:
        """The vectors of ``keys`` (distinct) as rows, in order (do not write to them); ``make(missing keys)``
        builds the missing ones."""
        found = [self.index.get(key) for key in keys]
        missing = [i for i, where in enumerate(found) if where is None]
        made = make([keys[i] for i in missing]) if missing else None
        if made is not None and len(missing) == len(keys):
            out = made
        else:
            out = np.empty((len(keys), self.width), dtype=np.float32)
            by_batch: dict[int, tuple[list[int], list[int]]] = {}
            for i, where in enumerate(found):
                if where is not None:
                    positions, rows = by_batch.setdefault(where[0], ([], []))
                    positions.append(i)
                    rows.append(where[1])
            for batch, (positions, rows) in by_batch.items():
                out[positions] = self.batches[batch][rows]
            if made is not None:
                out[missing] = made
        if made is not None:
            if self.held + len(missing) > self.capacity:
                self.clear()  # full: start over (bounded memory)
            made.flags.writeable = False
            batch = len(self.batches)
            self.batches.append(made)
            self.held += len(missing)
            for row, i in enumerate(missing):
                self.index[keys[i]] = (batch, row)
        return out


class Encoder:
    """Encodes parsed JSON records (dicts) into unit float32 vectors; see the module docstring.

    The work is split so that Python touches each value once and numpy does the rest in array
    operations over a block of records: a walk over the records collects the containers (nodes)
    and the distinct (path, binding, value) leaves; the vectors of the leaves not cached yet are
    built together (all atoms of a block from one gather of packed bits, all word bags as one
    sum per word position, all bindings as one gather per edge); the nodes are then summed and
    bound bottom-up. Every float32 operation is the one of the straightforward per-value
    formulas, in the same order, so the vectors are bit-identical to them: sums of several
    vectors are always added first to last, and norms are one BLAS dot per vector.
    """

    def __init__(self, config: Config, stats: PathStats, q: np.ndarray | None) -> None:
        self.c = config
        self.stats = stats
        self.q = q  # Haar blocks (nb x b x b) or None (mode "perm")
        d = config.dim
        words = raw_bits(config.seed, "level", "tau", d)
        self._tau = (words >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
        self.codebook_bits = codebook_bits(config.seed, d)
        magnitude = atom_magnitude(d)
        # The 8 atom entries (-m for bit 0, +m for bit 1) of each byte value: unpacks bits by bytes.
        byte_bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
        self._atom_entries = byte_bits.astype(np.float32) * (magnitude + magnitude) - magnitude
        self._fixed: dict[tuple, np.ndarray] = {}  # atoms of literals, level anchors, empty containers
        # Word atoms are rebuilt from their hashes whenever needed (a gather from the packed codebook
        # costs less than storing and gathering float rows); only the hashes are cached.
        self._token_hashes: dict[str, bytes] = {}
        self._value_cache = _RowCache(d, max(1024, (_CACHE_BYTES // 2) // (4 * d)))
        # A leaf's bound vector, followed (with gamma) by its unbound weighted value: one row each.
        leaf_width = 2 * d if config.gamma else d
        self._leaf_cache = _RowCache(leaf_width, max(1024, _CACHE_BYTES // (4 * leaf_width)))
        self._edges: dict[Any, int] = {}
        self._edge_perm: list[np.ndarray] = []
        self._edge_sign: list[np.ndarray] = []
        self._edge_mix: list[tuple[float, float]] = []
        # The (edge, path) of the children of objects by (path, keys) and of arrays by path.
        self._children: dict[Any, list[tuple[int, str]]] = {}
        self._log_n = math.log(stats.n + 1) if stats.n else 0.0
        self._twins: list[Encoder] = []  # encoders for more threads (see encode)

    # ---- atoms and value vectors -----------------------------------------------------------
    def atoms(self, purpose: str, tokens: list[Any]) -> np.ndarray:
        """The random unit +-1/sqrt(D) vectors of some tokens (rows): each the product of 3 codebook rows
        picked by the token's hash.

        Any two different tokens differ in at least one row, and the product of independent
        random +-1 vectors is again one, so atoms are quasi-orthogonal; drawing them this way
        costs a hash and a gather instead of a random generator per token. The product of the
        three rows is the XOR of their packed bits (bit 1 = +1), unpacked once to floats.
        """
        return self._atoms_of(hashes64(purpose, tokens))

    def _atoms_of(self, hashes: np.ndarray) -> np.ndarray:
        """The atoms of some token hashes (uint64), see :meth:`atoms`."""
        cb = self.codebook_bits
        mask = np.uint64(CODEBOOK_MASK)
        words = cb[hashes & mask] ^ cb[(hashes >> np.uint64(16)) & mask] ^ cb[(hashes >> np.uint64(32)) & mask]
        entries = np.take(self._atom_entries, words.view(np.uint8), axis=0).reshape(len(hashes), -1)
        return entries if entries.shape[1] == self.c.dim else np.ascontiguousarray(entries[:, : self.c.dim])

    def atom(self, purpose: str, token: Any) -> np.ndarray:
        """The atom of one token (see :meth:`atoms`)."""
        return self.atoms(purpose, [token])[0]

    def _fixed_atom(self, purpose: str, token: Any) -> np.ndarray:
        key = (purpose, token)
        vec = self._fixed.get(key)
        if vec is None:
            vec = self._fixed[key] = self.atom(purpose, token)
        return vec

    def level_codes(self, ts: list[float]) -> np.ndarray:
        """Level codes of some ``t`` in [0, 1] (rows): ``levels`` chained spans between random anchors, so the
        cosine of two levels is ``1 - levels * |t - t'|`` down to about 0."""
        levels = self.c.levels
        spans, fractions = [], []
        for t in ts:
            u = t * levels
            span = min(int(u), levels - 1)
            spans.append(span)
            fractions.append(u - span)
        anchors = {span: self._fixed_atom("level", span) for span in set(spans) | {s + 1 for s in spans}}
        below = np.stack([anchors[span] for span in spans])
        above = np.stack([anchors[span + 1] for span in spans])
        return np.where(np.asarray(fractions)[:, None] < self._tau, below, above)

    def _number_vectors(self, items: list[tuple[str, float]]) -> np.ndarray:
        """``unit(e * A_num(p, x) + s * L(t))`` for some (path, number); the exact atom alone at unfitted paths."""
        out = self.atoms("num", [(path, repr(x)) for path, x in items])
        ranged, ts = [], []
        for i, (path, x) in enumerate(items):
            rng = self.stats.ranges.get(path)
            if rng is not None:
                lo, hi, _ = rng
                ranged.append(i)
                ts.append(min(1.0, max(0.0, (x - lo) / (hi - lo))))
        if ranged:
            out[ranged] = self._mix(out[ranged], self.level_codes(ts))
        return out

    def _mix(self, exact: np.ndarray, soft: np.ndarray) -> np.ndarray:
        """``unit(e * exact + s * soft)`` row by row, computed in ``soft``'s memory (float addition commutes)."""
        if self.c.soft != 1.0:
            soft *= np.float32(self.c.soft)
        if self.c.exact != 1.0:
            exact = exact * np.float32(self.c.exact)
        soft += exact
        return _to_unit(soft)

    def _string_vectors(self, texts: list[str]) -> np.ndarray:
        """``unit(e * A_str(s) + t * unit(sum of A_tok(token)))`` for some strings (the exact atom alone if
        a string has no words)."""
        out = self.atoms("str", texts)
        token_lists = [TOKEN_RE.findall(text.lower())[: self.c.max_tokens] for text in texts]
        worded = [i for i, tokens in enumerate(token_lists) if tokens]
        if worded:
            distinct = list(dict.fromkeys(token for i in worded for token in token_lists[i]))
            table = self._atoms_of(self._word_hashes(distinct))
            position = {token: row for row, token in enumerate(distinct)}
            flat = np.fromiter((position[token] for i in worded for token in token_lists[i]), dtype=np.intp)
            lengths = np.fromiter((len(token_lists[i]) for i in worded), dtype=np.intp, count=len(worded))
            bags = _to_unit(_ordered_sums(table, flat, lengths))
            if len(worded) == len(texts):
                return self._mix(out, bags)
            out[worded] = self._mix(out[worded], bags)
        return out

    def _word_hashes(self, words: list[str]) -> np.ndarray:
        """``hash64("tok", word)`` of some words, from a bounded cache of their digests."""
        cache = self._token_hashes
        if len(cache) > _MAX_WORD_HASHES:
            cache.clear()
        missing = [word for word in words if word not in cache]
        if missing:
            cache.update(zip(missing, digests64("tok", missing), strict=True))
        return np.frombuffer(b"".join([cache[word] for word in words]), dtype="<u8").astype(np.uint64)

    def _value_key(self, path: str, value: Any) -> tuple:
        """What a scalar's value vector depends on: a literal, a number at a path, or a string."""
        if value is None or isinstance(value, bool):
            return ("l", value)
        if isinstance(value, (int, float)):
            return ("n", path, float(value))
        rng = self.stats.ranges.get(path)
        if rng is not None and rng[2]:  # numeric strings and dates count as numbers at this path
            parsed = parse_number(value)
            if parsed is not None:
                return ("n", path, parsed)
        return ("s", value)

    def _make_values(self, keys: list[tuple]) -> np.ndarray:
        """The value vectors of some value keys (rows), each kind built as one batch."""
        out = np.empty((len(keys), self.c.dim), dtype=np.float32)
        kinds: dict[str, list[int]] = {"l": [], "n": [], "s": []}
        for i, key in enumerate(keys):
            kinds[key[0]].append(i)
        if kinds["l"]:
            out[kinds["l"]] = np.stack([self._fixed_atom("lit", value_token(keys[i][1])) for i in kinds["l"]])
        if kinds["n"]:
            out[kinds["n"]] = self._number_vectors([keys[i][1:] for i in kinds["n"]])
        if kinds["s"]:
            out[kinds["s"]] = self._string_vectors([keys[i][1] for i in kinds["s"]])
        return out

    def weight(self, path: str, value: Any) -> float:
        """The idf weight of a scalar at a key path (1 without idf or without counted values)."""
        counts = self.stats.counts
        if not self.c.idf or not self.stats.n or counts is None:
            return 1.0
        count = int(counts[hash64(path, value_token(value)) % COUNT_BUCKETS])
        idf = math.log((self.stats.n + 1) / (count + 1)) / self._log_n
        return self.c.idf_floor + (1.0 - self.c.idf_floor) * idf

    def _make_leaves(self, leaves: list[tuple[str, int, Any]]) -> np.ndarray:
        """Rows ``w * B_edge v`` (then, with gamma, ``w * v``) for some (path, edge, scalar) leaves."""
        d = self.c.dim
        value_keys = [self._value_key(path, value) for path, _, value in leaves]
        distinct = list(dict.fromkeys(value_keys))
        vectors = self._value_cache.rows(distinct, self._make_values)
        position = {key: row for row, key in enumerate(distinct)}
        value_rows = np.fromiter((position[key] for key in value_keys), dtype=np.intp, count=len(value_keys))
        weights = np.asarray([self.weight(path, value) for path, _, value in leaves], dtype=np.float32)
        weighted = bool((weights != 1.0).any())
        out = np.empty((len(leaves), self._leaf_cache.width), dtype=np.float32)
        by_edge: dict[int, list[int]] = {}
        for i, (_, edge, _) in enumerate(leaves):
            by_edge.setdefault(edge, []).append(i)
        for edge, rows in by_edge.items():
            alpha, beta = self._edge_mix[edge]
            v = vectors[value_rows[rows]]
            if weighted:
                v *= weights[rows][:, None]
            bound = np.take(v, self._edge_perm[edge], axis=1)  # v[:, perm], much faster
            bound *= self._edge_sign[edge]
            if beta != 1.0:
                bound *= np.float32(beta)
            if alpha:
                bound += np.float32(alpha) * v
            out[rows, :d] = bound
            if self.c.gamma:
                out[rows, d:] = v
        return out

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
    def encode(self, records: list[Any], normalize: bool = True, only_path: str | None = None,
               workers: int = 1) -> np.ndarray:
        """Unit vectors (rows x dim, float32) for a list of parsed records.

        ``normalize=False`` returns the raw sums; ``only_path`` keeps only the scalars (and empty
        containers) at that key path, everything else contributing zero but keeping its array
        position (with pairs off, the sum over all paths is the unnormalized record vector:
        what ``vecx vsa explain`` decomposes). Blocks of records are encoded on ``workers``
        threads (0: the cores this process may use); the vectors do not depend on it. One is the
        default because the walk over the records holds the GIL: a second thread helps only while
        another core is idle, and slows the encoding down when other jobs keep the cores busy.
        """
        from threadpoolctl import threadpool_limits

        out = np.empty((len(records), self.c.dim), dtype=np.float32)
        # The block size is part of the result: a GEMM's rounding can depend on its number of rows.
        step = max(16, min(512, (32 << 20) // (self.c.dim * 4 * 24)))
        starts = range(0, len(records), step)
        workers = max(1, min(len(starts), workers or cores()))
        # The products here are small (a few hundred rows by one 256-wide block): BLAS threads cost
        # more than they give, most of all on a busy machine, so one thread.
        with threadpool_limits(limits=1, user_api="blas"):
            if workers == 1:
                for start in starts:
                    out[start: start + step] = self._encode_block(records[start: start + step], start, normalize,
                                                                  only_path)
                return out
            from concurrent.futures import ThreadPoolExecutor
            from queue import SimpleQueue

            # One encoder per thread (caches are not shared between threads); any encoder gives
            # the same vectors, so it does not matter which one takes which block.
            while len(self._twins) < workers - 1:
                self._twins.append(self._twin())
            idle: SimpleQueue = SimpleQueue()
            for encoder in [self, *self._twins[: workers - 1]]:
                idle.put(encoder)

            def encode_block(start: int) -> None:
                encoder = idle.get()
                try:
                    out[start: start + step] = encoder._encode_block(records[start: start + step], start, normalize,
                                                                     only_path)
                finally:
                    idle.put(encoder)

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vecx-vsa") as pool:
                for _ in pool.map(encode_block, starts):  # in order: the first bad record's error is raised
                    pass
        return out

    def _twin(self) -> Encoder:
        """Another encoder of the same configuration and state (its own caches), for another thread."""
        twin = Encoder.__new__(Encoder)
        twin.__dict__.update(self.__dict__)  # the configuration and the read-only arrays ...
        twin._fixed = dict(self._fixed)  # ... and fresh caches
        twin._token_hashes = {}
        twin._value_cache = _RowCache(self._value_cache.width, self._value_cache.capacity)
        twin._leaf_cache = _RowCache(self._leaf_cache.width, self._leaf_cache.capacity)
        twin._edges, twin._edge_perm, twin._edge_sign, twin._edge_mix, twin._children = {}, [], [], [], {}
        twin._twins = []
        return twin

    def _object_children(self, path: str, keys: list[str]) -> list[tuple[int, str]]:
        """(edge, path) of the fields of an object at ``path`` with these (sorted) keys; cached by key set,
        since most objects at a path share their keys."""
        shape = (path, tuple(keys))
        children = self._children.get(shape)
        if children is None:
            if len(self._children) >= _MAX_SHAPES:
                self._children.clear()
            children = self._children[shape] = [(self.edge("k", key), path_of(path, key)) for key in keys]
        return children

    def _array_children(self, path: str, length: int) -> list[tuple[int, str]]:
        """(edge, path) of at least the first ``length`` items of an array at ``path`` (cached per path)."""
        children = self._children.get(path)
        if children is None or len(children) < length:
            if len(self._children) >= _MAX_SHAPES:
                self._children.clear()
            item_path = path + "[]"
            children = self._children[path] = [(self.edge("i", (path, i)), item_path) for i in range(length)]
        return children

    def _bind(self, x: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """Apply each row's edge: a key's signed permutation, or ``alpha I + beta P^i`` for item i."""
        out = np.empty_like(x)
        for e in np.unique(edges):
            rows = np.flatnonzero(edges == e)
            perm, sign = self._edge_perm[e], self._edge_sign[e]
            alpha, beta = self._edge_mix[e]
            y = np.take(x[rows], perm, axis=1)  # x[rows][:, perm], much faster
            y *= sign
            if beta != 1.0:
                y *= np.float32(beta)
            if alpha:
                y += x[rows] * np.float32(alpha)
            out[rows] = y
        return out

    def _encode_block(self, records: list[Any], offset: int, normalize: bool, only_path: str | None) -> np.ndarray:
        """Encode one block of records (rows ``offset``...): walk them into one tree of containers and
        scalars, build the scalars' vectors together, then bind every container into its parent."""
        self._forget_edges_if_many()
        tree = _BlockTree(bool(self.c.pairs) and only_path is None, only_path)
        for local, record in enumerate(records):
            self._walk_record(tree, record, offset + local)
        vec = np.zeros((len(tree.parent), self.c.dim), dtype=np.float32)
        self._add_leaves(tree, vec)
        self._bind_up(tree, vec)
        result = vec[np.asarray(tree.roots)]
        return self._normalized(result) if normalize else result.astype(np.float32, copy=False)

    def _forget_edges_if_many(self) -> None:
        """Bounded memory with many distinct keys: the edge tables are dropped (only between blocks)."""
        if len(self._edges) >= 4096:
            self._edges.clear()
            self._edge_perm.clear()
            self._edge_sign.clear()
            self._edge_mix.clear()
            self._children.clear()  # these refer to edge numbers too
            self._leaf_cache.clear()

    def _walk_record(self, tree: _BlockTree, record: Any, row: int) -> None:
        """Add a record's containers (nodes, numbered as found) and scalars (leaves) to the tree. A
        node's leaves are listed in its sorted-key or array order, so that they are consecutive."""
        if not isinstance(record, dict):
            raise RecordError(row, f"expected a JSON object, got {type(record).__name__}")
        first_leaf = len(tree.leaf_slot)
        root = tree.add_node(-1, 0, -1, True)
        tree.roots.append(root)
        stack: list[tuple[Any, int, str, int]] = [(record, root, "", 0)]
        while stack:
            value, node, path, depth = stack.pop()
            if depth >= self.c.max_depth:
                raise RecordError(row, f"nesting deeper than {self.c.max_depth} levels at {path!r} (max_depth)")
            if not value:
                tree.add_empty(node, value, path)
                continue
            children, subs = self._children_and_values(value, path)
            first = len(tree.leaf_slot)
            # An array's cached children may be more than its items: the cache serves longer arrays too.
            for (edge, sub_path), sub in zip(children, subs, strict=False):
                if isinstance(sub, (dict, list)):
                    child = tree.add_node(node, depth + 1, edge, isinstance(sub, dict) and bool(sub))
                    stack.append((sub, child, sub_path, depth + 1))
                elif tree.only_path is None or sub_path == tree.only_path:
                    tree.leaf_slot.append(tree.slot(sub_path, edge, sub, row))
            tree.end_container(node, len(tree.leaf_slot) - first, isinstance(value, dict))
        tree.record_leaves.append(len(tree.leaf_slot) - first_leaf)

    def _children_and_values(self, value: Any, path: str) -> tuple[list[tuple[int, str]], list[Any]]:
        """A non-empty container's (edge, path) children and their values: an object's in key order,
        an array's first ``max_items``."""
        if isinstance(value, dict):
            keys = sorted(value)
            return self._object_children(path, keys), [value[key] for key in keys]
        subs = value[: self.c.max_items]
        return self._array_children(path, len(subs)), subs

    def _add_leaves(self, tree: _BlockTree, vec: np.ndarray) -> None:
        """Each node's scalars into its row of ``vec``: their sum (plus the field-pair conjunctions for
        objects), the fixed atoms of empty containers, and the unbound copies on the roots."""
        c, d = self.c, self.c.dim
        if tree.slots:
            slot_rows = self._leaf_cache.rows(
                list(tree.slot_of),
                lambda missing: self._make_leaves([tree.slots[tree.slot_of[key]] for key in missing]))
            flat = np.asarray(tree.leaf_slot, dtype=np.intp)
            self._sum_leaves(tree, vec, slot_rows[:, :d], flat)
            if c.gamma:  # the root is never bound, so it takes the unbound copies directly
                lengths = np.asarray(tree.record_leaves, dtype=np.intp)
                with_leaves = np.flatnonzero(lengths)
                unbound = _ordered_sums(slot_rows[:, d:], flat, lengths[with_leaves])
                root_rows = np.asarray(tree.roots)[with_leaves]
                vec[root_rows] = vec[root_rows] + np.float32(c.gamma) * unbound
        for is_dict, containers in tree.empty_nodes.items():
            if containers:
                vec[containers] = self._fixed_atom("lit", "{}" if is_dict else "[]")

    def _sum_leaves(self, tree: _BlockTree, vec: np.ndarray, bound: np.ndarray, flat: np.ndarray) -> None:
        """Sum each node's bound scalar vectors; objects with paired fields add their conjunctions."""
        counts = np.asarray(tree.leaf_counts, dtype=np.intp)
        nodes = np.asarray(tree.leaf_nodes, dtype=np.intp)
        paired = np.asarray(tree.pair_nodes, dtype=bool)
        if not paired.all():
            vec[nodes[~paired]] = _ordered_sums(bound, flat[np.repeat(~paired, counts)], counts[~paired])
        if paired.any():
            # sum_{i<j} f_i * f_j = ((sum f)^2 - sum f^2) / 2, elementwise; sqrt(D) makes a product of
            # unit random vectors unit-sized, 1/sqrt(m-1) keeps m(m-1)/2 pairs about as heavy as the m fields.
            totals, squares = _ordered_sums(bound, flat[np.repeat(paired, counts)], counts[paired], squares=True)
            pair_scale = np.float32(self.c.pairs * math.sqrt(self.c.dim) * 0.5)
            factors = pair_scale / np.sqrt(counts[paired] - 1.0).astype(np.float32)
            conjunctions = totals * totals
            conjunctions -= squares
            conjunctions *= factors[:, None]
            conjunctions += totals  # total + conjunctions (float addition commutes)
            vec[nodes[paired]] = conjunctions

    def _bind_up(self, tree: _BlockTree, vec: np.ndarray) -> None:
        """Bottom-up, deepest first: each nested container (times Q if an object) is bound into its parent."""
        parent_a = np.asarray(tree.parent)
        depth_a = np.asarray(tree.depth_of)
        edge_a = np.asarray(tree.edge_of)
        obj_a = np.asarray(tree.is_obj)
        for depth in range(int(depth_a.max()), 0, -1):
            ids = np.flatnonzero(depth_a == depth)
            objs = ids[obj_a[ids]]
            if len(objs) and self.q is not None:
                vec[objs] = apply_blocks(vec[objs], self.q, transpose=True)
            _add_rows(vec, parent_a[ids], self._bind(vec[ids], edge_a[ids]))

    def _normalized(self, result: np.ndarray) -> np.ndarray:
        """Records at unit norm; a record without any value gets the empty object's atom."""
        norms = np.linalg.norm(result, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        if empty.any():
            result[empty] = self._fixed_atom("lit", "{}")
            norms[empty] = 1.0
        return (result / norms).astype(np.float32, copy=False)


class _BlockTree:
    """The containers (nodes) and scalars (leaves) of a block of records, as :class:`Encoder` walks them.

    A leaf is a slot: a distinct ``(path, edge, value)`` of the block, so that a value repeated in
    many records gets one vector. Per node with leaves: how many, and whether they are also paired
    (objects with several scalar fields).
    """

    def __init__(self, pairs: bool, only_path: str | None) -> None:
        self.pairs, self.only_path = pairs, only_path
        self.parent: list[int] = []
        self.depth_of: list[int] = []
        self.edge_of: list[int] = []
        self.is_obj: list[bool] = []
        self.roots: list[int] = []
        self.empty_nodes: dict[bool, list[int]] = {True: [], False: []}  # empty {} / [] nodes
        self.slot_of: dict[tuple[str, int, str], int] = {}
        self.slots: list[tuple[str, int, Any]] = []
        self.leaf_slot: list[int] = []
        self.leaf_nodes: list[int] = []  # the nodes with leaves ...
        self.leaf_counts: list[int] = []  # ... and how many
        self.pair_nodes: list[bool] = []  # ... and whether their leaves are also paired (objects)
        self.record_leaves: list[int] = []  # leaves per record (for the unbound gamma copies)

    def add_node(self, parent: int, depth: int, edge: int, is_obj: bool) -> int:
        """A new container node; its number."""
        self.parent.append(parent)
        self.depth_of.append(depth)
        self.edge_of.append(edge)
        self.is_obj.append(is_obj)
        return len(self.parent) - 1

    def add_empty(self, node: int, value: Any, path: str) -> None:
        """An empty ``{}`` or ``[]``: a fixed atom (when its path is encoded at all)."""
        if self.only_path is None or self.only_path == path:
            self.empty_nodes[isinstance(value, dict)].append(node)

    def slot(self, path: str, edge: int, value: Any, row: int) -> int:
        """The slot of a scalar at ``path`` under ``edge``; a non-finite number is refused."""
        if type(value) is str:
            token = "s:" + value
        else:
            token = value_token(value)
            if isinstance(value, float) and not math.isfinite(value):
                raise RecordError(row, f"non-finite number at {path!r}")
        key = (path, edge, token)
        slot = self.slot_of.get(key)
        if slot is None:
            slot = self.slot_of[key] = len(self.slots)
            self.slots.append((path, edge, value))
        return slot

    def end_container(self, node: int, scalars: int, is_dict: bool) -> None:
        """Record the ``scalars`` leaves just added for ``node``."""
        if scalars:
            self.leaf_nodes.append(node)
            self.leaf_counts.append(scalars)
            self.pair_nodes.append(self.pairs and scalars > 1 and is_dict)


def _to_unit(x: np.ndarray) -> np.ndarray:
    """Scales each row of ``x`` to unit norm in place (zero rows kept) and returns it: ``v * float32(1 / |v|)``
    with ``|v|`` from one BLAS dot per row, the float32 sum a single vector's norm gets (a batched norm
    would round differently)."""
    scale = np.ones(len(x), dtype=np.float32)
    for i, row in enumerate(x):
        norm = math.sqrt(float(np.dot(row, row)))
        if norm > 0:
            scale[i] = 1.0 / norm
    x *= scale[:, None]
    return x


def _ordered_sums(values: np.ndarray, flat: np.ndarray, lengths: np.ndarray, squares: bool = False) -> Any:
    """Sums of runs of rows: run ``i`` is the next ``lengths[i]`` (>= 1) rows of ``values[flat]``; with
    ``squares``, also the sums of their elementwise squares (a second array).

    Each run is added first to last, the order of ``values[run].sum(axis=0)`` (float32 sums depend on
    it), but with one vectorized add per position in the runs instead of one sum per run: the runs
    are sorted longest first, so the runs having a k-th row are a prefix. Runs are summed a slab at a
    time, so that the partial sums stay in the CPU cache.
    """
    starts = np.cumsum(lengths) - lengths
    order = np.argsort(-lengths, kind="stable")
    starts, lengths = starts[order], lengths[order]
    out = np.empty((len(lengths), values.shape[1]), dtype=np.float32)
    out_squares = np.empty_like(out) if squares else None
    slab = max(8, _SLAB_BYTES // (4 * values.shape[1]))
    for lo in range(0, len(lengths), slab):
        slab_starts, slab_lengths = starts[lo: lo + slab], lengths[lo: lo + slab]
        sums = values[flat[slab_starts]]
        sums_of_squares = sums * sums if squares else None
        for k in range(1, int(slab_lengths[0])):
            having = int(np.count_nonzero(slab_lengths > k))
            rows = values[flat[slab_starts[:having] + k]]
            sums[:having] += rows
            if sums_of_squares is not None:
                rows *= rows
                sums_of_squares[:having] += rows
        out[order[lo: lo + slab]] = sums
        if out_squares is not None and sums_of_squares is not None:
            out_squares[order[lo: lo + slab]] = sums_of_squares
    return (out, out_squares) if squares else out


def _add_rows(target: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``target[rows] += values`` with repeated rows summed first, in a fixed order (row order of ``values``)."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    bounds = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1], True])
    if len(bounds) - 1 == len(rows):  # no repeats: one vectorized add
        target[sorted_rows] += values[order]
        return
    target[sorted_rows[bounds[:-1]]] += _ordered_sums(values, order, np.diff(bounds))
