"""The codec protocol: every encoding step in vecx is a subclass of :class:`Codec`.

A codec declares its parameters (:class:`Param`), says what it turns an input
vector space into (:meth:`Codec.plan`), optionally learns state from a seeded
sample (:meth:`Codec.fit`), encodes data and queries, decodes where it can, and
saves its fitted arrays openly (:meth:`Codec.state` / :meth:`Codec.load_state`).
Codec modules import numpy lazily so that listing commands stays fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from vecx._lazy import lazy
from vecx.errors import MismatchError, SpecError
from vecx.spec import StageSpec, suggest

np = lazy("numpy")

DTYPE_BYTES = {"float32": 4, "float16": 2, "int8": 1}
#: Packed bits (``dtype="bits"``): ``dim`` counts bits, stored 8 per byte, most significant first.
BITS = "bits"
#: Opaque fixed-size byte codes (product-quantization codes, RaBitQ-style codes): ``dim`` counts
#: bytes. The metric holds only through the codec's own scorer between a float query and the codes
#: (``metric_on="scorer"``, see :meth:`Codec.prepare_queries` / :meth:`Codec.score`).
CODES = "codes"
#: Parsed JSON records (the input of ``vsa``): not vectors, so ``dim`` is 0 and a row takes no vector bytes.
JSON = "json"
METRICS = ("cosine", "ip", "l2")


def row_bytes(dim: int, dtype: str) -> int:
    """Bytes one vector of ``dim`` values of ``dtype`` takes (bits are packed)."""
    if dtype == JSON:
        return 0
    if dtype == CODES:
        return dim
    return (dim + 7) // 8 if dtype == BITS else dim * DTYPE_BYTES[dtype]


def is_packed(dtype: str) -> bool:
    """Whether vectors of ``dtype`` are stored as bytes (a fixed-size-binary column): bits and codes."""
    return dtype in (BITS, CODES)


def one_blas_thread() -> Any:
    """A context holding BLAS/LAPACK to one thread: for the small factorizations of fits (QR of a
    rotation, eigh of a covariance). Threaded OpenBLAS made a 384 x 384 QR 50x slower (2 s) on the
    shared 2-core machine; one thread takes 30 ms whatever the load."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def row_norms(x: Any) -> Any:
    """L2 norms of the rows of ``x`` (rows x 1, in ``x``'s float type).

    A float32 sum of squares overflows for rows near float32's range and underflows for tiny
    ones: such rows (an infinite or zero norm) are recomputed in float64, so that re-normalizing
    them gives unit vectors, not zeros. Other rows keep their float32 norms (the same bytes).
    """
    import numpy as np

    with np.errstate(over="ignore", under="ignore"):  # such rows are redone below
        norms = np.linalg.norm(x, axis=1, keepdims=True)
    redo = np.flatnonzero(~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0))
    if len(redo):
        norms = norms.copy()
        norms[redo] = np.linalg.norm(np.asarray(x[redo], dtype=np.float64), axis=1, keepdims=True)
    return norms


def unit_rows(x: Any, norms: Any = None) -> Any:
    """Rows of ``x`` divided by their L2 norms (``norms``, rows x 1, when known); a zero row stays zero."""
    import numpy as np

    norms = row_norms(x) if norms is None else norms
    if (norms > 0).all():
        return x / norms  # the same quotients, without the masked division's 2.5x cost
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def cores() -> int:
    """The cores this process may use."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def map_threads(fn: Any, items: list[Any]) -> list[Any]:
    """``[fn(i) for i in items]`` on a thread pool (one per core), BLAS held to one thread per task.

    For codec work that numpy runs with the GIL released (products, reductions, element-wise
    passes); the results do not depend on the number of threads.
    """
    workers = max(1, min(cores(), len(items)))
    with one_blas_thread():
        if workers == 1:
            return [fn(item) for item in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vecx-codec") as pool:
            return list(pool.map(fn, items))


def in_row_blocks(fn: Any, x: Any, rows: int, fixed: bool = False) -> Any:
    """``fn(x)`` for a row-wise ``fn``, computed on blocks of ``rows`` rows on all cores and stacked.

    Blocks start at fixed multiples of ``rows``, so the result does not depend on the threads.
    ``fixed``: every block is ``rows`` rows (the last one padded with copies of its last row), so
    that BLAS multiplies every row with the same kernel, whatever the rows around it. A
    :class:`~vecx.errors.RowError` names the row of ``x``, not of its block.
    """
    import numpy as np

    from vecx.errors import RowError

    n = len(x)

    def block(start: int) -> Any:
        part = x[start: start + rows]
        real = len(part)
        if fixed and real < rows:
            part = np.concatenate([part, np.repeat(part[real - 1: real], rows - real, axis=0)])
        try:
            out = fn(part)
        except RowError as exc:  # a padding row is a copy of the last real one, which failed first
            raise RowError(exc.row + start, exc.detail, hint=exc.hint) from None
        return out[:real]

    if n <= rows:
        return block(0) if n else fn(x)
    return np.concatenate(map_threads(block, list(range(0, n, rows))), axis=0)


@dataclass(frozen=True)
class VectorSpec:
    """What a vector column holds and what similarity it supports (the *metric contract*).

    ``metric`` is the similarity the vectors are meant for; ``normalized`` says every
    vector has unit L2 norm (then cosine, IP and L2 rank alike); ``metric_on`` says
    whether the metric can be computed on the stored values directly (``"codes"``),
    only after decoding them (``"decoded"``, e.g. per-dimension affine int8 codes), or only by
    the codec's asymmetric scorer between a float query and the codes (``"scorer"``: PQ's
    distance tables, the RaBitQ estimator; dtype :data:`CODES`).
    """

    dim: int
    dtype: str = "float32"
    metric: str = "cosine"
    normalized: bool = False
    metric_on: str = "codes"
    #: A *set* of ``dim``-d vectors per row (multi-vector data, see :mod:`vecx.formats.multi`);
    #: ``bytes_per_vector`` then counts one token vector.
    multi: bool = False

    @property
    def bytes_per_vector(self) -> int:
        """Bytes one encoded vector takes in the vector column."""
        return row_bytes(self.dim, self.dtype)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the file metadata (``multi`` only when set, so single-vector files keep their bytes)."""
        out = asdict(self)
        if not self.multi:
            del out["multi"]
        out["bytes_per_vector"] = self.bytes_per_vector
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VectorSpec:
        """Inverse of :meth:`to_json` (extra keys are ignored)."""
        return cls(
            dim=int(data["dim"]),
            dtype=str(data["dtype"]),
            metric=str(data["metric"]),
            normalized=bool(data["normalized"]),
            metric_on=str(data.get("metric_on", "codes")),
            multi=bool(data.get("multi", False)),
        )


@dataclass(frozen=True)
class Param:
    """One codec parameter: its type, default, constraints and help text.

    ``default=None`` with ``required=True`` means the user must give it.
    """

    name: str
    type: type
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False

    def convert(self, raw: str | Any, where: str) -> Any:
        """Convert a spec-string value (or a Python value) to this parameter's type."""
        value: Any
        try:
            if self.type is bool:
                if isinstance(raw, bool):
                    value = raw
                elif str(raw).lower() in ("true", "1", "yes", "on"):
                    value = True
                elif str(raw).lower() in ("false", "0", "no", "off"):
                    value = False
                else:
                    raise ValueError(raw)
            elif self.type is int:
                if isinstance(raw, float) and not raw.is_integer():
                    raise ValueError(raw)
                value = int(raw)
            elif self.type is float:
                value = float(raw)
                if value != value or value in (float("inf"), float("-inf")):
                    raise ValueError(raw)
            else:
                value = str(raw)
        except (TypeError, ValueError):
            raise SpecError(f"{where}: {self.name}={raw!r} is not a valid {self.type.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise SpecError(f"{where}: {self.name}={value!r} must be one of {', '.join(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise SpecError(f"{where}: {self.name}={value} must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise SpecError(f"{where}: {self.name}={value} must be at most {self.maximum:g}")
        return value

    def format(self, value: Any) -> str:
        """Canonical spelling of a value in a spec string."""
        if self.type is bool:
            return "true" if value else "false"
        if self.type is float:
            return repr(float(value))
        return str(value)


def sample_params(purpose: str) -> tuple[Param, Param]:
    """The ``sample`` and ``seed`` parameters every fitting codec declares (the fit pipeline reads them)."""
    return (Param("sample", int, default=100_000, minimum=1, help=f"rows in the sample that {purpose}"),
            Param("seed", int, default=0, minimum=0, help="seed that picks the sample"))


class Codec:
    """Base class of every codec. Subclasses set the class attributes and override methods.

    Lifecycle: ``codec = Cls(params, input_spec)`` validates parameters against the
    input (``self.output`` is then known without data), ``fit(sample)`` if
    ``needs_fit``, then ``encode``/``encode_query``/``decode`` on numpy arrays.
    """

    #: Registry key and spec token, e.g. ``"int8"``.
    name: ClassVar[str] = ""
    #: Bump when the bytes produced for the same parameters change.
    version: ClassVar[int] = 1
    #: One-line description for listings.
    summary: ClassVar[str] = ""
    #: Longer help shown by ``vecx <name> --help``; should end with an example.
    help: ClassVar[str] = ""
    #: Declared parameters.
    params: ClassVar[tuple[Param, ...]] = ()
    #: Parameter that may be written bare after the name (``truncate:32``).
    primary: ClassVar[str | None] = None
    #: Whether the codec learns state from a sample before encoding.
    needs_fit: ClassVar[bool] = False
    #: ``"symmetric"`` (queries encoded like data) or ``"asymmetric"``.
    query_encoding: ClassVar[str] = "symmetric"
    #: Whether the codec takes multi-vector input (a set of vectors per row); others refuse it.
    takes_multi: ClassVar[bool] = False
    #: What the codec reads: ``"vectors"``, or :data:`JSON` (parsed records; first stage only).
    input_kind: ClassVar[str] = "vectors"

    def __init__(self, params: dict[str, Any], input: VectorSpec) -> None:
        self.values = dict(params)
        self.input = input
        self.output = self.plan(input)
        self.is_fitted = not self.needs_fit

    # ---- parameters ---------------------------------------------------------------
    @classmethod
    def param(cls, name: str) -> Param:
        """Look up a declared parameter by name."""
        for p in cls.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @classmethod
    def resolve(cls, stage: StageSpec, where: str, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """Turn a parsed stage into a full, typed parameter dict (all defaults filled in)."""
        names = [p.name for p in cls.params]
        given: dict[str, Any] = dict(stage.options)
        for key in given:
            if key not in names:
                raise SpecError(f"{where}: {cls.name} has no parameter {key!r}{suggest(key, names)}"
                                f"; it takes: {', '.join(names) or 'none'}")
        if stage.positional is not None:
            if cls.primary is None:
                raise SpecError(f"{where}: {cls.name} takes no bare value; use key=value")
            if cls.primary in given:
                raise SpecError(f"{where}: {cls.primary} given both bare and as {cls.primary}=")
            given[cls.primary] = stage.positional
        out: dict[str, Any] = {}
        for p in cls.params:
            if p.name in given:
                out[p.name] = p.convert(given[p.name], where)
            elif defaults and p.name in defaults and defaults[p.name] is not None:
                out[p.name] = p.convert(defaults[p.name], where)
            elif p.required:
                example = f"{cls.name}:<{p.name}>" if p.name == cls.primary else f"{cls.name}:{p.name}=..."
                raise SpecError(f"{where}: {cls.name} needs {p.name} ({p.help}); write {example}")
            else:
                out[p.name] = p.default
        return out

    @classmethod
    def token(cls, values: dict[str, Any]) -> str:
        """Canonical spec token for resolved parameter values."""
        parts = [cls.name]
        if cls.primary is not None:
            parts.append(cls.param(cls.primary).format(values[cls.primary]))
        for p in sorted(cls.params, key=lambda p: p.name):
            if p.name != cls.primary:
                parts.append(f"{p.name}={p.format(values[p.name])}")
        return ":".join(parts)

    @property
    def spec(self) -> str:
        """This stage's canonical token."""
        return self.token(self.values)

    @property
    def seed(self) -> int | None:
        """The stage's seed, if it has one (recorded in the file metadata)."""
        return self.values.get("seed")

    def fail(self, message: str) -> SpecError:
        """A :class:`SpecError` prefixed with this stage's token."""
        return SpecError(f"{self.spec}: {message}")

    def require_at_most(self, dim: int, input: VectorSpec) -> None:
        """Refuse an output dimension larger than the input's (a reducer cannot add dimensions)."""
        if dim > input.dim:
            raise self.fail(f"dim {dim} is larger than the input dimension {input.dim}")

    def require_float(self, input: VectorSpec, hint: str = "") -> None:
        """Refuse non-float input (codes cannot be quantized again)."""
        if input.dtype not in ("float32", "float16"):
            raise self.fail(f"needs float vectors, got {input.dtype}{hint}")

    def unit_if_cosine(self, x: Any) -> Any:
        """Float32 rows, scaled to unit norm when the input is cosine but not yet normalized, so that
        inner products on the output rank like cosine (zero rows stay zero)."""
        x = np.asarray(x, dtype=np.float32)
        if self.input.metric == "cosine" and not self.input.normalized:
            x = unit_rows(x)
        return x

    # ---- the protocol ---------------------------------------------------------------
    def plan(self, input: VectorSpec) -> VectorSpec:
        """Validate against the input space and return the output space (no data needed)."""
        raise NotImplementedError

    def fit(self, sample: Any) -> None:
        """Learn state from a sample (float array, rows x input dim). Default: nothing to learn."""
        self.is_fitted = True

    def encode(self, x: Any) -> Any:
        """Encode a batch of vectors (rows x input dim) to rows x output dim."""
        raise NotImplementedError

    def encode_query(self, q: Any) -> Any:
        """Encode query vectors; symmetric codecs encode them like data."""
        return self.encode(q)

    def decode(self, codes: Any) -> Any:
        """Best float32 reconstruction in the input space of this stage."""
        raise NotImplementedError(f"{self.name} cannot decode")

    @property
    def can_decode(self) -> bool:
        """Whether this codec overrides :meth:`decode`."""
        return type(self).decode is not Codec.decode

    # ---- asymmetric scoring (codecs whose output has metric_on="scorer") ------------------
    #: Whether :meth:`prepare_queries` / :meth:`score` / :meth:`score_candidates` are implemented.
    scores_codes: ClassVar[bool] = False

    def prepare_queries(self, q: Any) -> dict[str, Any]:
        """Per-query arrays that :meth:`score` needs (e.g. PQ distance tables), from queries as
        :meth:`encode_query` returns them. Every array's first axis is the query, so a subset of
        queries is ``{k: v[rows] for k, v in prepared.items()}``."""
        raise NotImplementedError(f"{self.name} does not score codes")

    def score(self, prepared: dict[str, Any], codes: Any) -> Any:
        """Estimated metric of every prepared query against every code row: ``(queries, rows)``
        float32; a similarity (higher is better) for ip/cosine output, a squared L2 distance
        (lower is better) for l2 output. ``codes`` is ``rows x bytes`` uint8."""
        raise NotImplementedError(f"{self.name} does not score codes")

    def score_candidates(self, prepared: dict[str, Any], codes: Any) -> Any:
        """Like :meth:`score`, but each query against its own candidates: ``codes`` is
        ``queries x candidates x bytes`` and the result ``queries x candidates``."""
        n, m = codes.shape[:2]
        out = np.empty((n, m), dtype=np.float32)
        for i in range(n):
            out[i] = self.score({k: v[i: i + 1] for k, v in prepared.items()}, codes[i])[0]
        return out

    def navigation(self, codes: Any) -> tuple[str, int, Any] | None:
        """A part of the codes that a usearch graph can navigate, as ``(dtype, dim, array)`` (e.g. the
        packed sign bits of RaBitQ codes, ``("bits", D, rows x D/8)``), or ``None``: searched by an
        exhaustive scan of :meth:`score` only."""
        return None

    def state(self) -> dict[str, Any]:
        """Fitted arrays by name (empty for stateless codecs)."""
        return {}

    def load_state(self, arrays: dict[str, Any]) -> None:
        """Restore fitted arrays; raise :class:`MismatchError` if they do not fit this stage."""
        if arrays:
            raise MismatchError(f"{self.spec}: unexpected fitted state {sorted(arrays)}")
        self.is_fitted = True

    def _check_state(self, arrays: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
        """Shared validation for :meth:`load_state`: names, shapes and finiteness."""
        if set(arrays) != set(shapes):
            raise MismatchError(
                f"{self.spec}: fitted state has arrays {sorted(arrays)}, expected {sorted(shapes)}"
            )
        for key, shape in shapes.items():
            if tuple(arrays[key].shape) != shape:
                raise MismatchError(
                    f"{self.spec}: fitted state {key!r} has shape {tuple(arrays[key].shape)}, "
                    f"this stage needs {shape} (state made for other data?)"
                )
            if not np.isfinite(arrays[key]).all():
                raise MismatchError(f"{self.spec}: fitted state {key!r} holds NaN or Inf")
