"""A chain of codecs: threads vector spaces through stages, fits them, encodes, and records provenance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vecx import spec as spec_mod
from vecx.codecs import get_codec, resolve_stage
from vecx.codecs.base import Codec
from vecx.errors import DataError, MismatchError, SpecError, UsageError
from vecx.formats import metadata, state
from vecx.space import JSON, VectorSpec, is_packed


@dataclass
class Chain:
    """Stages applied in order to vectors of space ``input``."""

    input: VectorSpec
    stages: list[Codec] = field(default_factory=list)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_spec(cls, text: str, input: VectorSpec, seed: int | None = None) -> Chain:
        """Parse and plan a spec string on an input space; raises SpecError without touching data."""
        parsed = spec_mod.parse(text)
        chain = cls(input)
        current = input
        for number, stage in enumerate(parsed, start=1):
            where = f"spec {text.strip()!r}: stage {number}"
            codec_cls, values = resolve_stage(stage, where, seed)
            if current.multi != codec_cls.takes_multi:
                raise SpecError(f"{where}: {codec_cls.name} " + (
                    "needs one vector per row, this input holds a set of vectors per row (multi-vector)"
                    if current.multi else "needs multi-vector input (a set of vectors per row)"),
                    hint="start the chain with muvera to turn each set into one vector" if current.multi
                    else "import token vectors with 'vecx import --multi'")
            codec = codec_cls(values, current)
            chain.stages.append(codec)
            current = codec.output
        return chain

    @classmethod
    def from_records(cls, input: VectorSpec, records: list[dict[str, Any]],
                     arrays: list[dict[str, Any]], path: str) -> Chain:
        """Rebuild a fitted chain from stage records and their stored arrays (checking hashes)."""
        chain = cls(input)
        current = input
        for index, record in enumerate(records):
            codec_cls = get_codec(record["codec"], f"{path}: stage {index + 1}")
            version = record.get("version", 1)
            if not isinstance(version, int) or not codec_cls.reads_version(version):
                raise MismatchError(
                    f"{path}: stage {index + 1} was made by {record['codec']} codec version "
                    f"{version}, this vecx reads version {codec_cls.version}"
                    + "".join(f", {v}" for v in sorted(codec_cls.older_versions)))
            values = codec_cls.resolve(spec_mod.parse(record["spec"])[0], f"{path}: stage {index + 1}",
                                       codec_cls.older_versions.get(version))
            codec = codec_cls(values, current, version)
            stage_arrays = arrays[index] if index < len(arrays) else {}
            if state.arrays_sha256(stage_arrays) != record.get("state_sha256"):
                raise DataError(f"{path}: fitted state of stage {index + 1} ({record['codec']}) "
                                    "does not match its recorded hash (file damaged or edited)")
            codec.load_state(stage_arrays)
            codec.fit_rows_ = record.get("fit_rows")
            codec.notes_ = record.get("notes") or None
            chain.stages.append(codec)
            current = codec.output
        return chain

    @classmethod
    def from_table(cls, meta: dict[str, Any], state_blob: bytes | None, path: str,
                   arrays: list[dict[str, Any]] | None = None) -> Chain:
        """The fitted chain recorded in a vector table's ``vecx`` metadata and embedded state
        (an Arrow state container's bytes, or the per-stage ``arrays`` already read)."""
        records = meta.get("stages", [])
        if arrays is None:
            arrays = state.unpack(state_blob, path)[1] if state_blob else [{} for _ in records]
        if len(arrays) != len(records):
            raise MismatchError(f"{path}: fitted state holds {len(arrays)} stages, "
                                f"the metadata lists {len(records)}")
        first = VectorSpec.from_json(records[0]["input"] if records else meta["vector"])
        chain = cls.from_records(first, records, arrays, path)
        stored = VectorSpec.from_json(meta["vector"])
        out = chain.output
        if (out.dim, out.dtype, out.multi) != (stored.dim, stored.dtype, stored.multi):
            raise MismatchError(f"{path}: the recorded chain {chain.spec or '(none)'!r} gives {out.dim} x {out.dtype} "
                                f"vectors, the metadata says the table holds {stored.dim} x {stored.dtype}",
                                hint="the file was edited or corrupted; re-create it with vecx")
        return chain

    @classmethod
    def from_source(cls, source: Any) -> Chain:
        """The fitted chain recorded in a vecx table (an empty chain on its space for raw inputs)."""
        if source.meta is None:
            return cls(source.space)
        return cls.from_table(source.meta, source.state_blob, source.path)

    @classmethod
    def from_state_file(cls, path: str, input: VectorSpec | None, spec: str | None = None,
                        seed: int | None = None) -> Chain:
        """A fitted chain from a state file (``vecx fit``, ``--save-state``), checked against the space of
        the data it will be applied to (``None``: the space it was fitted on) and, if given, against ``spec``."""
        try:
            with open(path, "rb") as handle:
                blob = handle.read()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read state file ({exc.strerror})") from None
        meta, arrays = state.unpack(blob, path)
        metadata.complete_state(meta, path)
        fitted_for = VectorSpec.from_json(meta["input"])
        input = input or fitted_for
        if (fitted_for.dim, fitted_for.dtype, fitted_for.metric) != (input.dim, input.dtype, input.metric):
            raise MismatchError(
                f"{path}: state was fitted on {fitted_for.dim}-d {fitted_for.dtype} {fitted_for.metric} vectors; "
                f"this input is {input.dim}-d {input.dtype} {input.metric}",
                hint="fit a state on data like this input (vecx fit), or drop --state")
        chain = cls.from_records(input, meta["stages"], arrays, path)
        if spec:
            wanted = cls.from_spec(spec, input, seed).spec
            if wanted != chain.spec:
                raise MismatchError(f"{path}: state is for spec {chain.spec!r}, not {wanted!r}",
                                    hint="drop --spec to use the state's own spec")
        return chain

    # ---- properties ---------------------------------------------------------------
    @property
    def output(self) -> VectorSpec:
        """Space of the last stage (the input if the chain is empty)."""
        return self.stages[-1].output if self.stages else self.input

    @property
    def spec(self) -> str:
        """Canonical spec string."""
        return ",".join(s.spec for s in self.stages)

    @property
    def needs_fit(self) -> bool:
        """Whether any stage still has to learn state."""
        return any(not s.is_fitted for s in self.stages)

    def __add__(self, other: Chain) -> Chain:
        if other.input != self.output:
            raise MismatchError(f"cannot append a chain made for {other.input} to one that ends in {self.output}")
        return Chain(self.input, self.stages + other.stages)

    def state_container(self, fitted_on: str | None) -> bytes:
        """The state container of this chain's stages: what ``vecx fit`` writes and tables embed."""
        records = [{"codec": s.name, "version": s.version, "spec": s.spec, "fit_rows": s.fit_rows_,
                    "state_sha256": state.arrays_sha256(s.state()), **({"notes": s.notes_} if s.notes_ else {})}
                   for s in self.stages]
        meta = {"spec": self.spec, "input": self.input.to_json(), "stages": records, "fitted_on": fitted_on}
        return state.pack(meta, self.state_arrays())

    def float_view(self, stored: VectorSpec, where: str) -> Callable[[Any], Any]:
        """A function turning stored vectors of space ``stored`` (this chain's output) into float32 rows
        in the space decoding lands in: floats as they are, other codes decoded."""
        import numpy as np

        if stored.dtype in ("float32", "float16"):
            return lambda v: np.asarray(v, dtype=np.float32)
        packed = is_packed(stored.dtype)
        probe = self.decode(np.zeros((1, stored.bytes_per_vector if packed else stored.dim),
                                     dtype=np.uint8 if packed else stored.dtype))
        if probe.dtype.kind != "f":
            raise UsageError(f"{where}: {stored.dtype} codes cannot be decoded to floats")
        return lambda v: np.asarray(self.decode(v), dtype=np.float32)

    # ---- running ------------------------------------------------------------------
    def fit(self, sample_for: Callable[[Codec], Any], refit: bool = False) -> None:
        """Fit every unfitted stage (every fitting stage with ``refit``), in order, on the sample
        ``sample_for(stage)`` returns.

        The sample is given in the chain's input space and passed through the earlier
        (already fitted) stages, so a one-command chain fits exactly like stage-by-stage runs.
        """
        for index, stage in enumerate(self.stages):
            if stage.is_fitted and not (refit and stage.needs_fit):
                continue
            sample = sample_for(stage)
            for earlier in self.stages[:index]:
                sample = earlier.encode(sample)
            stage.fit(sample)

    def encode(self, x: Any) -> Any:
        """Encode data vectors through every stage."""
        for stage in self.stages:
            x = stage.encode(x)
        return x

    def encode_query(self, q: Any) -> Any:
        """Encode query vectors through every stage's query path."""
        for stage in self.stages:
            q = stage.encode_query(q)
        return q

    def _first_decoded(self) -> int:
        """Index of the first stage of the trailing run of stages that can decode."""
        index = len(self.stages)
        while index > 0 and self.stages[index - 1].can_decode:
            index -= 1
        return index

    def decode(self, codes: Any) -> Any:
        """Decode back through the trailing stages that can; the result is in the *decoded space*:
        the output of the last stage that cannot decode (or the chain's input)."""
        for stage in reversed(self.stages[self._first_decoded():]):
            codes = stage.decode(codes)
        return codes

    @property
    def decodes_to_input(self) -> bool:
        """Whether :meth:`decode` returns vectors in the chain's input space (every stage decodes)."""
        return self._first_decoded() == 0

    @property
    def decoded_space(self) -> VectorSpec:
        """The space :meth:`decode` returns vectors in."""
        first = self._first_decoded()
        return self.stages[first].input if first < len(self.stages) else self.output

    def query_to_decoded(self, q: Any) -> Any:
        """Map input-space queries into the decoded space (through the stages decoding cannot undo)."""
        for stage in self.stages[: self._first_decoded()]:
            q = stage.encode_query(q)
        return q

    # ---- provenance ---------------------------------------------------------------
    def records(self, previous_fingerprint: str | None) -> list[dict[str, Any]]:
        """Stage records for the file metadata, fingerprints chained from ``previous_fingerprint``."""
        out = []
        fp = previous_fingerprint
        for stage in self.stages:
            state_sha = state.arrays_sha256(stage.state())
            fp = None if fp is None else metadata.stage_fingerprint(fp, stage.spec, stage.version, state_sha)
            out.append({
                "codec": stage.name, "version": stage.version, "spec": stage.spec,
                "params": dict(stage.values), "seed": stage.seed,
                "query_encoding": stage.query_encoding,
                "input": stage.input.to_json(), "output": stage.output.to_json(),
                "state_sha256": state_sha, "fit_rows": stage.fit_rows_,
                **({"notes": stage.notes_} if stage.notes_ else {}),
                "fingerprint": fp,
            })
        return out

    def state_arrays(self) -> list[tuple[str, dict[str, Any]]]:
        """(codec name, arrays) per stage, for the state container."""
        return [(s.name, s.state()) for s in self.stages]

    def explain(self) -> list[dict[str, Any]]:
        """One row per stage: spaces, bytes per vector, fit and query behaviour (no data needed)."""
        rows = [{"stage": 0, "codec": "input", "spec": "", **self.input.to_json(),
                 "fit": False, "query_encoding": "-"}]
        for index, s in enumerate(self.stages, start=1):
            rows.append({"stage": index, "codec": s.name, "spec": s.spec, **s.output.to_json(),
                         "fit": s.needs_fit, "query_encoding": s.query_encoding})
        return rows

    def with_input(self, input: VectorSpec) -> Chain:
        """Re-plan the stages on a refined input space (e.g. once a raw input's norms are known).

        Parameters and fitted state stay; only the recorded spaces change.
        """
        current = input
        for stage in self.stages:
            stage.input = current
            stage.output = stage.plan(current)
            current = stage.output
        self.input = input
        return self


def space_model(model: str | None, stages: list[Any]) -> str | None:
    """Whose space vectors made by ``model`` are in after ``stages`` (records or codecs): the target
    model the last stage mapping between models recorded (``notes.to_model``, e.g. an ``align`` map),
    else ``model`` (``None``: not recorded)."""
    for stage in reversed(stages):
        notes = (stage.get("notes") if isinstance(stage, dict) else stage.notes_) or {}
        if notes.get("to_model"):
            return str(notes["to_model"])
    return model


def reads_records(spec: str | None, state_file: str | None) -> bool:
    """Whether a chain (spec string, or the chain of a state file) starts with a stage that reads JSON."""
    if state_file:
        try:
            with open(state_file, "rb") as handle:
                meta, _ = state.unpack(handle.read(), state_file)
        except OSError:
            return False  # reported by the caller when it reads the file
        return (meta.get("input") or {}).get("dtype") == JSON
    if not spec:
        return False
    stages = spec_mod.parse(spec)
    return get_codec(stages[0].name, "spec").input_kind == JSON
