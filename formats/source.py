"""The shared part of every input: batches, read options, and validation of raw data.

A :class:`Source` yields :class:`Batch` objects of at most ``batch_rows`` rows, so memory
does not grow with the input. *Raw* inputs (anything not written by vecx) are validated
as they stream: equal dimensions, finite values, unique ids; their ids and vectors are
hashed into the source fingerprint, and whether every vector has unit norm is recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, where
from vecx.formats import metadata
from vecx.kernels import MAX_SQ_NORM, too_large_rows
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")


NORM_TOLERANCE = 1e-3


@dataclass
class ReadOptions:
    """How to find vectors and ids in a raw input (ignored for vecx tables where noted)."""

    column: str | None = None  # vector column / JSON field
    id_column: str | None = None  # id column / JSON field
    metric: str | None = None  # declared metric of raw vectors (default cosine)
    model: str | None = None  # the embedding model that made the vectors (recorded in the provenance)
    ids_file: str | None = None  # one id per line, replaces ids
    batch_rows: int | None = None
    multi: bool = False  # require multi-vector data (a set of vectors per row; detected anyway)
    records: bool = False  # JSONL read as parsed JSON records (the chain starts with a JSON codec, vsa)
    keep: tuple[str, ...] | None = None  # JSON records: fields kept as payload columns
    codes: str | None = None  # the numbers are codes of this precision (see vecx.formats.codes)
    codes_dim: int | None = None  # packed-bit codes: the dimension of the vectors they were made from
    ranges: Any = None  # scalar codes: the 2 x D per-dimension minimum and maximum they were made with


@dataclass
class Batch:
    """A slice of rows: ids, vectors as a 2-D numpy array, payload columns."""

    offset: int
    ids: Any
    vectors: Any
    payload: dict[str, Any] = field(default_factory=dict)
    #: Squared L2 norms of the rows (float32), when validation computed them; else ``None``.
    sq_norms: Any = None

    def __len__(self) -> int:
        return len(self.vectors)


def batch_rows_for(row_bytes: int, target_bytes: int = 32 << 20) -> int:
    """Rows per batch (and Parquet row group): about 32 MiB of vectors, a power of two from 1,024 to 65,536."""
    rows = 1024
    while rows < 65536 and rows * 2 * row_bytes <= target_bytes:
        rows *= 2
    return rows


# --------------------------------------------------------------------------------------
# Source: shared streaming, validation and fingerprinting
# --------------------------------------------------------------------------------------
class Source:
    """An opened input. Subclasses implement :meth:`_raw_batches`."""

    kind = "?"
    #: Whether ids come from the data (else they are row numbers, unique by construction).
    ids_from_data = True
    #: The batch :meth:`prime` read ahead and the rest of its stream, until :meth:`batches` hands them on.
    _pending: tuple[Batch, Iterator[Batch]] | None
    #: The temporary file a stream was copied to, when it was opened through
    #: :func:`~vecx.formats.readers.spool` (it is removed at exit).
    spool_path: str

    def __init__(self, path: str, options: ReadOptions) -> None:
        self.path = path  # as the user named it (messages); "-" for stdin
        self.file = path  # what to open (a spool file for stdin)
        self.options = options
        self.meta: dict[str, Any] | None = None  # vecx metadata (tables written by vecx)
        self.state_blob: bytes | None = None
        self.rows: int | None = None
        self.dim = 0
        self.dtype = "float32"
        self.id_type: Any = None
        self.payload_fields: list[Any] = []
        self.seekable = True
        self.multi = False  # a set of vectors per row (vecx.formats.multi); set by the readers
        #: The raw numbers are 8-bit integers (``int8``/``uint8``): perhaps codes made elsewhere.
        self.byte_values: str | None = None
        self._source_block: dict[str, Any] | None = None

    # -- to be provided by subclasses --
    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        raise NotImplementedError

    # -- public --
    @property
    def ids_given(self) -> bool:
        """Whether ids come from the input or an ids file (and so must be checked for duplicates)."""
        return self.ids_from_data or bool(self.options.ids_file)

    @property
    def is_vecx(self) -> bool:
        """Whether the input was written by vecx (carries provenance)."""
        return self.meta is not None

    @property
    def space(self) -> VectorSpec:
        """The vector space of the input (for raw inputs ``normalized`` is known after a full pass)."""
        if self.meta is not None:
            return VectorSpec.from_json(self.meta["vector"])
        metric = self.options.metric or "cosine"
        normalized = bool(self._source_block and self._source_block["normalized"])
        if self.multi:
            return VectorSpec(self.dim, self.dtype, metric, normalized, multi=True)
        return VectorSpec(self.dim, "float32", metric, normalized)

    def batch_rows(self) -> int:
        """Rows per batch for this input (the same rule as the writer's row groups)."""
        if self.multi:
            from vecx.formats import multi

            return multi.batch_rows(self.dim, self.dtype, self.options.batch_rows)
        width = self.space.bytes_per_vector if self.meta is not None else self.dim * 4
        return self.options.batch_rows or batch_rows_for(max(1, width))

    def prime(self) -> None:
        """Read one batch ahead when the format only reveals the dimension (and fields) in the data."""
        if self.dim:
            return
        rest = self.batches()
        first = next(rest, None)
        if first is None:
            raise self.fail("no vectors found (empty input)")
        self._pending = (first, rest)

    def batches(self) -> Iterator[Batch]:
        """Stream every row once; raw inputs are validated and fingerprinted on the way."""
        pending = getattr(self, "_pending", None)
        if pending is not None:
            self._pending = None
            yield pending[0]
            yield from pending[1]
            return
        if self.meta is not None:
            yield from self._raw_batches(self.batch_rows())
            return
        yield from self._validated(self._with_ids_file(self._raw_batches(self.batch_rows())))

    def source_block(self) -> dict[str, Any] | None:
        """Provenance of the data as imported; for raw inputs available after :meth:`batches` ran."""
        if self.meta is not None:
            return self._with_model(self.meta.get("source"))
        return self._source_block

    def _with_model(self, block: dict[str, Any] | None) -> dict[str, Any] | None:
        """The provenance with the model named by ``--model`` (not part of the fingerprint: the
        vectors are what they are); a table that names another model is a :class:`MismatchError`."""
        model = self.options.model
        if block is None or not model or block.get("model") == model:
            return block
        if block.get("model"):
            from vecx.errors import MismatchError

            raise MismatchError(f"{self.path}: its vectors were made by model {block['model']!r}, not {model!r}",
                                hint="drop --model, or give the table made by that model")
        return {**block, "model": model}

    def take(self, rows: Any, convert: Any = None) -> Any:
        """Vectors of the given sorted row numbers, as float32 (for fitting samples); ``convert``
        turns each batch's picked rows into float32 rows first (e.g. decodes codes, which may be wider)."""
        if self.multi:
            from vecx.formats import multi

            return multi.take(self, rows)
        out = np.empty((len(rows), self.dim), dtype=np.float32) if convert is None else None
        filled = 0
        for batch in self.batches():
            lo = np.searchsorted(rows, batch.offset)
            hi = np.searchsorted(rows, batch.offset + len(batch))
            if hi > lo:
                picked = batch.vectors[rows[lo:hi] - batch.offset]
                if convert is not None:
                    picked = convert(picked)
                if out is None:
                    out = np.empty((len(rows), picked.shape[1]), dtype=np.float32)
                out[filled: filled + hi - lo] = picked
                filled += hi - lo
        return out if out is not None else np.empty((0, self.dim), dtype=np.float32)

    def count_rows(self) -> int:
        """Number of rows (a pass over the data if the format does not say)."""
        if self.rows is None:
            self.rows = sum(len(b) for b in self.batches())
        return self.rows

    # -- helpers for subclasses --
    def fail(self, message: str, row: int | None = None, hint: str | None = None) -> DataError:
        """A :class:`DataError` located at this input (and row)."""
        return DataError(f"{where(self.path, row)}: {message}", hint=hint)

    def _with_ids_file(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        if not self.options.ids_file:
            yield from batches
            return
        ids_path = self.options.ids_file
        try:
            with open(ids_path, encoding="utf-8") as handle:
                ids = [line.rstrip("\r\n") for line in handle]
        except OSError as exc:
            raise DataError(f"{ids_path}: cannot read ids file ({exc.strerror})") from None
        if ids and ids[-1] == "":
            ids.pop()
        used = 0
        for batch in batches:
            if batch.offset + len(batch) > len(ids):
                raise DataError(f"{ids_path}: has {len(ids)} ids but {self.path} has more rows",
                                hint="give exactly one id per line, one line per vector")
            batch.ids = pa.array(ids[batch.offset: batch.offset + len(batch)], type=pa.string())
            used = batch.offset + len(batch)
            yield batch
        if used != len(ids):
            raise DataError(f"{ids_path}: has {len(ids)} ids but {self.path} has {used} rows",
                            hint="give exactly one id per line, one line per vector")

    def _validated(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """Check finiteness and dimensions, hash ids and vectors, track norms and unique ids.

        Hashing runs on a second thread (hashlib releases the GIL), one batch behind, so it
        overlaps with encoding and writing instead of adding to them.
        """
        import itertools

        batches = iter(batches)
        first = next(batches, None)  # text formats learn whether rows hold sets from their first batch
        batches = itertools.chain([] if first is None else [first], batches)
        if self.multi:
            yield from self._validated_multi(batches)
            return
        from concurrent.futures import ThreadPoolExecutor

        hashers = (hashlib.sha256(), hashlib.sha256(), hashlib.sha256())  # vectors, id lengths, id bytes
        all_ids: list[Any] = []
        normalized = True
        total = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vecx-hash") as pool:
            pending = None
            for batch in batches:
                sq = self._checked_vectors(batch)
                if normalized and not unit_norm(sq):
                    normalized = False
                batch.sq_norms = sq
                self._check_ids_present(batch)
                if pending is not None:
                    pending.result()
                pending = pool.submit(_hash_batch, hashers, batch.vectors, batch.ids)
                all_ids.append(batch.ids)
                total += len(batch)
                yield batch
            if pending is not None:
                pending.result()
        self._check_complete(total, all_ids)
        block = {
            "rows": total, "dim": self.dim, "dtype": "float32",
            "metric": self.options.metric or "cosine", "normalized": normalized,
            "ids_sha256": hashlib.sha256(
                (hashers[1].hexdigest() + hashers[2].hexdigest()).encode()).hexdigest(),
            "vectors_sha256": hashers[0].hexdigest(),
        }
        block["fingerprint"] = metadata.source_fingerprint(block)
        self._source_block = self._with_model(block)

    def _checked_vectors(self, batch: Batch) -> Any:
        """The squared norms (float32) of a batch's vectors, once they are contiguous float32 and checked.

        An empty vector, NaN/Inf, or a row whose squares overflow float32 is a :class:`DataError`
        naming the row (see :func:`_checked_sq_norms`).
        """
        v = batch.vectors = np.ascontiguousarray(batch.vectors, dtype=np.float32)
        if v.ndim != 2 or not v.shape[1]:
            raise self.fail("vector is empty (0 dimensions)", batch.offset,
                            hint="every row needs a vector of at least one number")
        sq = np.einsum("ij,ij->i", v, v)
        if not np.isfinite(sq).all():  # NaN/Inf, or squares overflowing float32: look closer
            sq = _checked_sq_norms(self, v, sq, batch.offset)
        return sq

    def _check_ids_present(self, batch: Batch) -> None:
        """Refuses a batch with a missing (null) id, naming its row."""
        if batch.ids.null_count:
            nulls = batch.ids.is_null().to_numpy(zero_copy_only=False)
            raise self.fail("id is missing (null)", batch.offset + int(np.flatnonzero(nulls)[0]))

    def _check_complete(self, total: int, all_ids: list[Any]) -> None:
        """After the last batch: refuses an empty input and duplicate ids, then records the row count."""
        if total == 0:
            raise self.fail("no vectors found (empty input)", hint="check the file and --column")
        if self.ids_given:
            check_unique(self, all_ids)
        self.rows = total

    def _validated_multi(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """:meth:`_validated` for multi-vector data (sets of vectors; see :mod:`vecx.formats.multi`)."""
        from vecx.formats import multi

        validator = multi.Validator(self)
        ids_hash = (hashlib.sha256(), hashlib.sha256())
        all_ids: list[Any] = []
        total = 0
        for batch in batches:
            validator.check(batch)
            self._check_ids_present(batch)
            _hash_ids(batch.ids, *ids_hash)
            all_ids.append(batch.ids)
            total += len(batch)
            yield batch
        self._check_complete(total, all_ids)
        block = {"rows": total, "dim": self.dim, "dtype": self.dtype, "metric": self.options.metric or "cosine",
                 "normalized": validator.normalized,
                 "ids_sha256": hashlib.sha256((ids_hash[0].hexdigest() + ids_hash[1].hexdigest()).encode())
                 .hexdigest(), **validator.block_fields()}
        block["fingerprint"] = metadata.source_fingerprint(block)
        self._source_block = self._with_model(block)


def unit_norm(sq_norms: Any) -> bool:
    """Whether rows with these squared L2 norms (float32, as import computes them) all have unit norm,
    within :data:`NORM_TOLERANCE` (true of no rows)."""
    return not len(sq_norms) or bool(np.abs(np.sqrt(sq_norms) - 1.0).max() <= NORM_TOLERANCE)


def _checked_sq_norms(source: Source, v: Any, sq: Any, offset: int) -> Any:
    """Refuse rows holding NaN/Inf, or whose squared norm (in float64) is beyond float32; else the norms.

    Such rows would turn into zeros or infinities in later float32 steps (re-normalizing,
    scores, PCA), silently; a float32 sum that only overflowed by rounding is recomputed.
    """
    bad = np.flatnonzero(~np.isfinite(v).all(axis=1))
    if len(bad):
        raise source.fail("vector holds NaN or Inf", offset + int(bad[0]),
                          hint="clean or drop that row; vecx refuses non-finite values")
    rows = np.flatnonzero(~np.isfinite(sq))
    too_large, exact = too_large_rows(v[rows])
    if len(too_large):
        i = int(too_large[0])
        raise source.fail(f"vector is too large for float32 arithmetic: its squared L2 norm is {exact[i]:.3g} "
                          f"(largest value {np.abs(v[rows[i]]).max():.3g}), beyond {MAX_SQ_NORM:.3g}",
                          offset + int(rows[i]), hint="rescale the vectors (e.g. divide them all by a constant "
                          "such as 1e20) before importing; cosine similarity does not change")
    sq = sq.copy()
    sq[rows] = np.minimum(exact, MAX_SQ_NORM).astype(np.float32)
    return sq


def check_payload_names(source: Source) -> None:
    """Refuse payload columns that would collide with vecx's own columns or query result fields.

    Every input's payload (Parquet/Arrow columns, JSONL fields, ``--keep`` fields of JSON
    records) is carried into tables and indexes and returned next to ``rank``, ``id`` and
    ``score`` by ``vecx query``: a payload ``score`` would overwrite the real score in every
    output format. So such names are refused when the data comes in.
    """
    seen: set[str] = set()
    for f in source.payload_fields:
        if f.name in RESERVED_NAMES:
            raise DataError(f"{where(source.path)}: payload column {f.name!r} clashes with vecx's own "
                            f"{f.name!r} ({RESERVED_NAMES[f.name]})",
                            hint=f"rename the column or field {f.name!r} in the input, e.g. to '{f.name}_'")
        if f.name in seen:
            raise DataError(f"{where(source.path)}: payload column {f.name!r} appears twice",
                            hint="give every column a distinct name")
        seen.add(f.name)


#: Names a payload column may not take, and what vecx uses each for.
RESERVED_NAMES = {
    "id": "the id column", "vector": "the vector column",
    "query": "the query number in query results", "query_id": "the query id in query results",
    "rank": "the rank in query results", "score": "the score in query results",
    "like": "the --like id in query results", "results": "the result list of each query",
}


def _hash_batch(hashers: tuple[Any, Any, Any], vectors: Any, ids: Any) -> None:
    hashers[0].update(memoryview(vectors).cast("B"))
    _hash_ids(ids, hashers[1], hashers[2])


def _hash_ids(ids: Any, lengths: Any, data: Any) -> None:
    """Hash ids independently of batch boundaries: int64 values, or string lengths + bytes."""
    if pa.types.is_integer(ids.type):
        lengths.update(ids.cast(pa.int64()).to_numpy(zero_copy_only=False).astype("<i8").tobytes())
        return
    ids = ids.cast(pa.large_string())
    offsets = np.frombuffer(ids.buffers()[1], dtype="<i8")[ids.offset: ids.offset + len(ids) + 1]
    lengths.update(np.diff(offsets).astype("<i8").tobytes())
    data.update(memoryview(ids.buffers()[2])[offsets[0]: offsets[-1]])


def check_unique(source: Source, chunks: list[Any]) -> None:
    """Refuse duplicate ids, naming a duplicate and both rows.

    Sort-based, so the extra memory is the ids themselves plus 8 bytes per row
    (a hash table over millions of ids costs far more).
    """
    ids = pa.chunked_array(chunks, type=chunks[0].type).combine_chunks()
    if pa.types.is_integer(ids.type):
        values = ids.to_numpy(zero_copy_only=False)
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        dup = np.flatnonzero(ordered[1:] == ordered[:-1])
    else:
        order = pc.sort_indices(ids).to_numpy()
        ordered = ids.take(pa.array(order))
        dup = np.flatnonzero(pc.equal(ordered.slice(1), ordered.slice(0, len(ordered) - 1))
                             .to_numpy(zero_copy_only=False))
    if len(dup):
        first = int(dup[0])
        value = ordered[first].as_py() if not isinstance(ordered, np.ndarray) else ordered[first].item()
        rows = sorted((int(order[first]), int(order[first + 1])))
        raise source.fail(f"duplicate id {value!r} (rows {rows[0]} and {rows[1]})",
                          hint="ids must be unique; drop duplicates or import without --id-column")


def short_error(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
