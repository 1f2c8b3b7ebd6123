"""VSA: JSON records to fixed-length unit vectors by orthogonal-matrix binding (vecx's "soft MBAT").

The first codec whose input is not a vector table: its input space is ``VectorSpec(0, "json")``
(:data:`~vecx.codecs.base.JSON`), ``fit`` and ``encode`` receive lists of parsed records (dicts),
and it must be the first stage of a chain; later stages (``vsa:2048,binarize``) get its float32
unit vectors as usual. The encoding is described in :mod:`vecx.codecs.vsa.encoder`. The fitted state
(per-path number ranges and, in ``dense`` mode, the Haar-orthogonal matrix) and the parameters
(in the spec) are everything a query needs to be encoded exactly like the data.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from vecx._lazy import lazy
from vecx.codecs.base import Codec, Param, sample_params
from vecx.errors import MismatchError, RowError
from vecx.space import JSON, VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")


class Vsa(Codec):
    """JSON record -> unit float32 vector (binding by orthogonal matrices; soft numbers and strings)."""

    name = "vsa"
    #: Version 2 made idf weights (floor 0.8) the default; version-1 files meant a floor of 0.1.
    version = 2
    older_versions: ClassVar[dict[int, dict[str, Any]]] = {1: {"idf_floor": 0.1}}
    input_kind = JSON
    summary = "JSON records to vectors (orthogonal-matrix binding, soft numbers and strings)"
    example = "vsa:256"
    help = (
        "Encode each JSON record (one object per line of a .jsonl file) as one unit vector: values "
        "are bound to their keys by random orthogonal matrices (a key-specific signed permutation, "
        "then seeded Haar-orthogonal blocks for nested objects; mode=perm skips them), so key order "
        "does not matter but key/value roles do; strings give partial similarity through shared "
        "words, numbers (and numeric strings/dates at paths where the sample says so) through level "
        "codes over ranges fitted per key path; arrays keep order partly; pairs of fields inside an "
        "object are also bound together (both must match). Query an index of these vectors with "
        "'vecx query INDEX --json RECORD'; 'vecx vsa explain' shows which fields made two records "
        "similar. Payload columns: --keep; ids: --id-column (default 'id' if present, else row numbers)."
    )
    params = (
        Param("dim", int, default=1024, minimum=64, maximum=65536, help="dimension of the vectors"),
        Param("mode", str, default="dense", choices=("dense", "perm"),
              help="dense: Haar-orthogonal matrix for nested objects; perm: signed permutations only (fast)"),
        Param("block", int, default=256, minimum=8, help="size of the Haar-orthogonal blocks of the dense matrix "
              "(= dim for one full Haar matrix; must divide dim)"),
        Param("pairs", float, default=2.0, minimum=0.0, help="weight of field-pair conjunctions inside objects"),
        Param("soft", float, default=1.0, minimum=0.0, help="weight of word bags and number levels vs exact matches"),
        Param("levels", int, default=16, minimum=1, maximum=1024,
              help="number level spans: similarity falls to 0 over range/levels"),
        Param("gamma", float, default=0.0, minimum=0.0,
              help="weight of unbound copies of values (same value, other key)"),
        Param("alpha", float, default=1.0, minimum=0.0, help="weight of the unordered part of arrays"),
        Param("beta", float, default=1.0, minimum=0.0, help="weight of the positional part of arrays"),
        Param("idf", bool, default=True, help="weight each value by its rarity at its path in the sample"),
        Param("idf_floor", float, default=0.8, minimum=0.0, maximum=1.0, omit_default=True,
              help="with idf: the weight of a value every record has (a unique value weighs 1)"),
        Param("max_tokens", int, default=64, minimum=1, help="words kept per string (the rest are ignored)"),
        Param("max_items", int, default=256, minimum=1, help="items kept per array (the rest are ignored)"),
        Param("max_depth", int, default=32, minimum=1, maximum=1000, help="deepest nesting accepted (deeper: error)"),
        *sample_params("fits number ranges per key path"),
    )
    primary = "dim"
    needs_fit = True

    def plan(self, input: VectorSpec) -> VectorSpec:
        if input.dtype != JSON:
            raise self.fail("encodes JSON records, so it must be the first stage and read a .jsonl file "
                            f"of objects (got {input.dim}-d {input.dtype} vectors)")
        if not hasattr(self, "encoder_"):
            self.encoder_: Any = None
            self.stats_: Any = None
            self.q_: Any = None
        if self.values["mode"] == "dense" and self.values["dim"] % self.block:
            raise self.fail(f"block {self.block} does not divide dim {self.values['dim']}; use a multiple "
                            "of it, another block=, or mode=perm")
        return VectorSpec(self.values["dim"], "float32", "cosine", True)

    @property
    def block(self) -> int:
        """Size of the Haar blocks actually used (``block``, or ``dim`` when that is smaller)."""
        return min(self.values["block"], self.values["dim"])

    # ---- configuration -------------------------------------------------------------------------
    def config(self, **overrides: Any) -> Any:
        """The encoder configuration from the parameters (``overrides`` for probes, e.g. pairs=0)."""
        from vecx.codecs.vsa.atoms import Config

        v = self.values
        fields = dict(dim=v["dim"], seed=v["seed"], mode=v["mode"], block=self.block, max_tokens=v["max_tokens"],
                      max_items=v["max_items"], max_depth=v["max_depth"], exact=1.0, soft=v["soft"],
                      gamma=v["gamma"], alpha=v["alpha"], beta=v["beta"], pairs=v["pairs"], idf=v["idf"],
                      idf_floor=v["idf_floor"],
                      levels=v["levels"])
        fields.update(overrides)
        return Config(**fields)

    def encoder(self, **overrides: Any) -> Any:
        """The (cached) encoder; with ``overrides`` a fresh one sharing the fitted state."""
        from vecx.codecs.vsa.encoder import Encoder

        if overrides:
            return Encoder(self.config(**overrides), self.stats_, self.q_)
        if self.encoder_ is None:
            self.encoder_ = Encoder(self.config(), self.stats_, self.q_)
        return self.encoder_

    # ---- protocol --------------------------------------------------------------------------------
    def fit(self, sample: Any) -> None:
        from vecx.codecs.vsa import atoms, stats

        self.stats_ = stats.fit_stats(list(sample), self.config())
        if not self.values["idf"]:
            self.stats_.counts = None
        v = self.values
        self.q_ = atoms.haar_blocks(v["dim"], self.block, v["seed"]) if v["mode"] == "dense" else None
        self.encoder_ = None
        self.is_fitted = True

    def encode(self, x: Any) -> Any:
        from vecx.codecs.vsa.atoms import RecordError

        try:
            return self.encoder().encode(list(x))
        except RecordError as exc:
            raise RowError(exc.row, exc.message, hint="fix that record; nothing was written") from None

    def state(self) -> dict[str, Any]:
        if self.stats_ is None:
            return {}
        paths = sorted(self.stats_.ranges)
        out = {
            "paths": np.frombuffer(json.dumps(paths, ensure_ascii=False).encode(), dtype=np.uint8).copy(),
            "lo": np.asarray([self.stats_.ranges[p][0] for p in paths], dtype=np.float64),
            "hi": np.asarray([self.stats_.ranges[p][1] for p in paths], dtype=np.float64),
            "numeric_strings": np.asarray([self.stats_.ranges[p][2] for p in paths], dtype=np.uint8),
            "sample_rows": np.asarray([self.stats_.n], dtype=np.int64),
        }
        if self.stats_.counts is not None:
            out["counts"] = self.stats_.counts.astype(np.int64)
        if self.q_ is not None:
            out["q"] = self.q_
        return out

    def load_state(self, arrays: dict[str, Any]) -> None:
        from vecx.codecs.vsa import atoms, stats

        try:
            paths = json.loads(bytes(np.asarray(arrays["paths"], dtype=np.uint8)).decode())
        except (KeyError, ValueError):
            raise MismatchError(f"{self.spec}: fitted state has no readable key paths") from None
        n = len(paths)
        d = self.values["dim"]
        shapes = {"paths": tuple(arrays["paths"].shape), "lo": (n,), "hi": (n,), "numeric_strings": (n,),
                  "sample_rows": (1,)}
        if self.values["idf"]:
            shapes["counts"] = (atoms.COUNT_BUCKETS,)
        if self.values["mode"] == "dense":
            b = self.block
            shapes["q"] = (d // b, b, b)
        self._check_state(arrays, shapes)
        ranges = {p: (float(lo), float(hi), bool(s)) for p, lo, hi, s in
                  zip(paths, arrays["lo"], arrays["hi"], arrays["numeric_strings"], strict=True)}
        counts = np.asarray(arrays["counts"], dtype=np.int64) if "counts" in arrays else None
        self.stats_ = stats.PathStats(ranges, counts, int(arrays["sample_rows"][0]))
        self.q_ = np.ascontiguousarray(arrays["q"], dtype=np.float32) if "q" in arrays else None
        self.encoder_ = None
        self.is_fitted = True
