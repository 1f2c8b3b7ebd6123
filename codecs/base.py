"""The codec protocol: every encoding step in vecx is a subclass of :class:`Codec`.

A codec declares its parameters (:class:`Param`), says what it turns an input
vector space into (:meth:`Codec.plan`), optionally learns state from a seeded
sample (:meth:`Codec.fit`), encodes data and queries, decodes where it can, and
saves its fitted arrays openly (:meth:`Codec.state` / :meth:`Codec.load_state`).
Codec modules import numpy lazily so that listing commands stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from vecx._lazy import lazy
from vecx.errors import MismatchError, SpecError
from vecx.kernels import unit_rows
from vecx.space import VectorSpec
from vecx.spec import StageSpec, suggest

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")


@dataclass(frozen=True)
class Param:
    """One codec parameter: its type, default, constraints and help text.

    ``default=None`` with ``required=True`` means the user must give it. ``omit_default``: the
    canonical token leaves the parameter out while it holds its default, so that a parameter added
    to a codec later does not change the spec (and fingerprints) of files written before it.
    """

    name: str
    type: type
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    omit_default: bool = False

    def convert(self, raw: str | Any, where: str) -> Any:
        """Convert a spec-string value (or a Python value) to this parameter's type, within its choices
        and range."""
        try:
            value = self._parse(raw)
        except (TypeError, ValueError):
            raise SpecError(f"{where}: {self.name}={raw!r} is not a valid {self.type.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise SpecError(f"{where}: {self.name}={value!r} must be one of {', '.join(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise SpecError(f"{where}: {self.name}={value} must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise SpecError(f"{where}: {self.name}={value} must be at most {self.maximum:g}")
        return value

    def _parse(self, raw: str | Any) -> Any:
        """``raw`` as this parameter's type (a ValueError or TypeError if it is not one)."""
        if self.type is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("true", "1", "yes", "on"):
                return True
            if str(raw).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(raw)
        if self.type is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        if self.type is float:
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(raw)
            return value
        return str(raw)

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
    #: Bump when the bytes produced for the same parameters change. An instance rebuilt from a file
    #: carries the version recorded there (see ``older_versions``).
    version: int = 1
    #: Earlier versions whose files this vecx still reads, each with the parameter values its files
    #: imply for parameters that version did not have: a file of version ``v`` is loaded with those
    #: values, and its spec token keeps omitting them (so that its records stay what they were).
    older_versions: ClassVar[dict[int, dict[str, Any]]] = {}
    #: One-line description for listings.
    summary: ClassVar[str] = ""
    #: Longer help shown by ``vecx <name> --help``.
    help: ClassVar[str] = ""
    #: A spec of this codec that runs on small data of its kind of input (48-d float vectors, sets of
    #: 16-d vectors for ``takes_multi``, JSON records for ``input_kind`` JSON, a few hundred rows):
    #: the contract tests run it, the spec fuzzer starts from it, ``--help`` shows it.
    example: ClassVar[str] = ""
    #: The examples of ``vecx <name> --help``, when the codec spells out its own (else made from ``example``).
    examples: ClassVar[tuple[str, ...]] = ()
    #: Declared parameters.
    params: ClassVar[tuple[Param, ...]] = ()
    #: Parameter that may be written bare after the name (``truncate:32``).
    primary: ClassVar[str | None] = None
    #: Whether the codec learns state from a sample before encoding.
    needs_fit: ClassVar[bool] = False
    #: Whether the codec takes multi-vector input (a set of vectors per row); others refuse it.
    takes_multi: ClassVar[bool] = False
    #: What the codec reads: ``"vectors"``, or :data:`JSON` (parsed records; first stage only).
    input_kind: ClassVar[str] = "vectors"

    #: Rows of the sample the stage was fitted on (set by the chain's fit; recorded in the metadata).
    fit_rows_: int | None = None
    #: What the fit learned about its data beyond the state, as plain JSON (recorded in the metadata
    #: as the stage's ``notes`` and shown by ``vecx info``), e.g. the models an ``align`` map joins.
    notes_: dict[str, Any] | None = None

    def __init__(self, params: dict[str, Any], input: VectorSpec, version: int | None = None) -> None:
        if version is not None:  # rebuilt from a file of an older version (before plan: it may differ)
            self.version = version
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
    def token(cls, values: dict[str, Any], implied: dict[str, Any] | None = None) -> str:
        """Canonical spec token for resolved parameter values (without those equal to ``implied``:
        what an older version's files imply, see ``older_versions``)."""
        parts = [cls.name]
        if cls.primary is not None:
            parts.append(cls.param(cls.primary).format(values[cls.primary]))
        implied = implied or {}
        for p in sorted(cls.params, key=lambda p: p.name):
            if p.name in implied:
                if values[p.name] == implied[p.name]:
                    continue
            elif p.name == cls.primary or (p.omit_default and values[p.name] == p.default):
                continue
            parts.append(f"{p.name}={p.format(values[p.name])}")
        return ":".join(parts)

    @property
    def spec(self) -> str:
        """This stage's canonical token."""
        return self.token(self.values, self.older_versions.get(self.version))

    @classmethod
    def reads_version(cls, version: int) -> bool:
        """Whether this vecx can rebuild a stage recorded with codec version ``version``."""
        return version == cls.version or version in cls.older_versions

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

    @property
    def symmetric_queries(self) -> bool:
        """Whether queries are encoded exactly like data: true unless the codec overrides
        :meth:`encode_query` (a codec whose override sometimes encodes alike says so here)."""
        return type(self).encode_query is Codec.encode_query

    @property
    def query_encoding(self) -> str:
        """``"symmetric"`` (queries encoded like data) or ``"asymmetric"``, as listings show it."""
        return "symmetric" if self.symmetric_queries else "asymmetric"

    @classmethod
    def listed_query_encoding(cls) -> str:
        """How the codec encodes queries, before its parameters are known (``vecx spec list``)."""
        if cls.encode_query is Codec.encode_query:
            return "symmetric"
        return "depends on the input" if "symmetric_queries" in vars(cls) else "asymmetric"

    @property
    def scores_codes(self) -> bool:
        """Whether only this codec can score its codes (output ``metric_on="scorer"``: PQ, RaBitQ);
        such a codec implements :class:`ScoresCodes`."""
        return self.output.metric_on == "scorer"

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


class ScoresCodes:
    """The asymmetric scoring of codes only their codec can score (output ``metric_on="scorer"``):
    PQ's distance tables, the RaBitQ estimator. Mixed into such codecs; an index of their codes is
    scanned (or navigated, then ranked) through these methods.
    """

    def prepare_queries(self, q: Any) -> dict[str, Any]:
        """Per-query arrays that :meth:`score` needs (e.g. PQ distance tables), from queries as
        :meth:`encode_query` returns them. Every array's first axis is the query, so a subset of
        queries is ``{k: v[rows] for k, v in prepared.items()}``."""
        raise NotImplementedError

    def score(self, prepared: dict[str, Any], codes: Any) -> Any:
        """Estimated metric of every prepared query against every code row: ``(queries, rows)``
        float32; a similarity (higher is better) for ip/cosine output, a squared L2 distance
        (lower is better) for l2 output. ``codes`` is ``rows x bytes`` uint8."""
        raise NotImplementedError

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

    #: The usearch metric of the navigation graph (sign bits: Hamming).
    navigation_metric = "hamming"

    @property
    def takes_query_bits(self) -> bool:
        """Whether :meth:`quantize_queries` can round this codec's queries to a few bits."""
        return False

    def quantize_queries(self, prepared: dict[str, Any], bits: int) -> dict[str, Any]:
        """Prepared queries rounded to ``bits`` bits per coordinate (1-8), scored as such by every
        path (faiss's ``qb``): a little less accurate, and faster to scan where the codes are bits.
        Only where :attr:`takes_query_bits`."""
        raise NotImplementedError
