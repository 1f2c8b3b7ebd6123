"""The ``vecx`` metadata key: versioned JSON provenance stored with every vector table.

Layout (format_version 1; readers ignore keys they do not know)::

    {"format_version": 1, "kind": "vectors",
     "writer": {"library": "vecx", "version": "0.1.0"},
     "rows": 100000,
     "id": {"column": "id", "type": "string"},
     "vector": {"column": "vector", "dim": 32, "dtype": "int8", "metric": "cosine",
                "normalized": false, "metric_on": "decoded", "bytes_per_vector": 32},
     "source": {"dim": 50, "dtype": "float32", "metric": "cosine", "normalized": false,
                "rows": 100000, "ids_sha256": "...", "vectors_sha256": "...", "fingerprint": "..."},
     "spec": "truncate:32:renorm=true,int8:...",          # canonical chain so far
     "stages": [{"codec": "truncate", "version": 1, "spec": "...", "params": {...},
                 "seed": null, "query_encoding": "symmetric", "input": {...}, "output": {...},
                 "state_sha256": null, "fit_rows": null, "fingerprint": "..."}, ...],
     "fingerprint": "...",                                # last stage's (or the source's)
     "state": {"sha256": "...", "bytes": 1234} | null}    # fitted arrays under key "vecx.state"

No timestamps and no paths: identical inputs give identical bytes. The source
fingerprint hashes the ids and vectors as imported (not the file bytes), so the
same vectors imported from .npy or .fvecs share it; each stage chains its own
fingerprint from the previous one, its canonical spec, codec version and state hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from vecx import FORMAT_VERSION, __version__
from vecx.errors import DataError, MismatchError

KEY = b"vecx"
STATE_KEY = b"vecx.state"


def dumps(meta: dict[str, Any]) -> bytes:
    """Serialize metadata deterministically (sorted keys, no whitespace)."""
    return orjson.dumps(meta, option=orjson.OPT_SORT_KEYS)


def loads(raw: bytes, path: str) -> dict[str, Any]:
    """Parse, version-check and validate (:func:`validate`) a ``vecx`` metadata value read from ``path``."""
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise DataError(f"{path}: the 'vecx' metadata is not valid JSON (file damaged?)") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise DataError(f"{path}: the 'vecx' metadata has no format_version (not written by vecx?)")
    check_version(meta, path)
    validate(meta, path)
    return meta


def check_version(meta: dict[str, Any], path: str) -> None:
    """Refuse a format this vecx does not know (exit code 4)."""
    version = meta["format_version"]
    if version > FORMAT_VERSION or version < 1:
        writer = meta.get("writer")
        writer = writer.get("version", "?") if isinstance(writer, dict) else "?"
        raise MismatchError(
            f"{path}: written by vecx {writer} in format version {version}; this is vecx "
            f"{__version__}, which reads format versions up to {FORMAT_VERSION}",
            hint="upgrade vecx (pip install -U vecx) to read this file",
        )


#: The kinds of vecx file whose metadata :func:`loads` reads.
KINDS = ("vectors", "truth", "state")
_STORED_DTYPES = ("float32", "float16", "int8", "bits", "codes")
_METRIC_ON = ("codes", "decoded", "scorer")
_METRICS = ("cosine", "ip", "l2", "hamming")  # hamming: packed sign bits (binarize)
_TYPES: dict[str, Any] = {"int": int, "str": str, "bool": bool, "dict": dict, "list": list}
_NAMES = {"int": "an integer", "str": "a string", "bool": "true or false", "dict": "an object", "list": "an array"}


def validate(meta: dict[str, Any], path: str) -> None:
    """Check every field vecx reads from a ``vecx`` metadata block, by the file's kind.

    The metadata is untrusted input (any JSON editor can change it): a field of the wrong
    type, out of range or missing is a :class:`DataError` naming the field, so that no
    reader further on has to guard its lookups. Unknown keys are ignored.
    """
    kind = meta.get("kind", "vectors")
    if not isinstance(kind, str) or kind not in KINDS:
        raise _damaged(path, "kind", f"is {_describe(kind)}, not one of {', '.join(KINDS)}")
    writer = _get(meta, "writer", "", path, "dict")
    _get(writer, "version", "writer", path, "str")
    if kind == "vectors":
        _get(meta, "rows", "", path, "int", required=False, nullable=True, minimum=0)
        ids = _get(meta, "id", "", path, "dict")
        _get(ids, "column", "id", path, "str")
        _get(ids, "type", "id", path, "str", choices=("int64", "string"))
        _space(_get(meta, "vector", "", path, "dict"), "vector", path, column=True)
        source = _get(meta, "source", "", path, "dict", required=False, nullable=True)
        if source is not None:
            _source(source, "source", path)
        _get(meta, "spec", "", path, "str", required=False)
        for number, stage in enumerate(_get(meta, "stages", "", path, "list", required=False) or []):
            _stage(stage, f"stages[{number}]", path, full=True)
        _get(meta, "fingerprint", "", path, "str", required=False, nullable=True)
        stored = _get(meta, "state", "", path, "dict", required=False, nullable=True)
        if stored is not None:
            _get(stored, "bytes", "state", path, "int", required=False, minimum=0)
    elif kind == "truth":
        _get(meta, "k", "", path, "int", minimum=1)
        _get(meta, "metric", "", path, "str")
        _get(meta, "score", "", path, "str")
        for name in ("base", "queries"):
            block = _get(meta, name, "", path, "dict")
            _get(block, "rows", name, path, "int", minimum=0)
            _get(block, "fingerprint", name, path, "str", required=False, nullable=True)
        _get(meta["base"], "spec", "base", path, "str", required=False, nullable=True)
        _get(meta["base"], "source_fingerprint", "base", path, "str", required=False, nullable=True)
    else:  # a fitted state container (tables embed its arrays; a state file is used whole, see complete_state)
        _get(meta, "spec", "", path, "str", required=False)
        space = _get(meta, "input", "", path, "dict", required=False)
        if space is not None:
            _space(space, "input", path, json_ok=True)
        for number, stage in enumerate(_get(meta, "stages", "", path, "list")):
            _stage(stage, f"stages[{number}]", path, full=False)
        _get(meta, "fitted_on", "", path, "str", required=False, nullable=True)


def _space(block: dict[str, Any], name: str, path: str, *, json_ok: bool = False, column: bool = False) -> None:
    """A vector space block (:meth:`vecx.space.VectorSpec.to_json`, plus the column name)."""
    from vecx.space import JSON, row_bytes

    if column:
        _get(block, "column", name, path, "str")
    dtype = _get(block, "dtype", name, path, "str", choices=_STORED_DTYPES + ((JSON,) if json_ok else ()))
    dim = _get(block, "dim", name, path, "int", minimum=0 if dtype == JSON else 1)
    _get(block, "metric", name, path, "str", choices=_METRICS)
    _get(block, "normalized", name, path, "bool")
    _get(block, "metric_on", name, path, "str", required=False, choices=_METRIC_ON)
    _get(block, "multi", name, path, "bool", required=False)
    if block.get("multi"):  # a multi-vector stage's output: how many vectors it kept in all
        _get(block, "tokens", name, path, "int", required=False, minimum=0)
    width = _get(block, "bytes_per_vector", name, path, "int")
    if width != row_bytes(dim, dtype):
        raise _damaged(path, f"{name}.bytes_per_vector", f"is {width}, but {dim} x {dtype} takes "
                                                          f"{row_bytes(dim, dtype)} bytes")


def _source(block: dict[str, Any], name: str, path: str) -> None:
    """The provenance of the imported data (every field optional; a stream states some only at its end)."""
    for key in ("rows", "dim", "tokens"):
        _get(block, key, name, path, "int", required=False, nullable=True, minimum=0)
    for key in ("dtype", "metric", "fingerprint", "ids_sha256", "vectors_sha256"):
        _get(block, key, name, path, "str", required=False, nullable=True)
    for key in ("normalized", "multi"):
        _get(block, key, name, path, "bool", required=False)
    if block.get("multi"):  # sets of vectors: how many vectors in all, of what dimension
        _get(block, "tokens", name, path, "int", minimum=0)
        _get(block, "dim", name, path, "int", minimum=0)


def complete_state(meta: dict[str, Any], path: str) -> None:
    """A state file applied on its own (``--state``) must also name its input space and every stage's spec."""
    _get(meta, "input", "", path, "dict")
    for number, stage in enumerate(meta["stages"]):
        _get(stage, "codec", f"stages[{number}]", path, "str")
        _get(stage, "spec", f"stages[{number}]", path, "str")


def _stage(stage: Any, name: str, path: str, *, full: bool) -> None:
    """One stage record: in a vector table (``full``) or in a state container."""
    if not isinstance(stage, dict):
        raise _damaged(path, name, f"is {_describe(stage)}, not an object")
    _get(stage, "codec", name, path, "str", required=full)
    spec = _get(stage, "spec", name, path, "str", required=full) or ""
    if spec.lstrip().startswith("@"):  # a spec argument naming a file; a stored spec is always inline
        raise _damaged(path, f"{name}.spec", f"is {spec!r}, not a stage spec")
    _get(stage, "version", name, path, "int", required=False)
    _get(stage, "fit_rows", name, path, "int", required=False, nullable=True, minimum=0)
    _get(stage, "state_sha256", name, path, "str", required=False, nullable=True)
    _get(stage, "notes", name, path, "dict", required=False)
    if full:
        _space(_get(stage, "input", name, path, "dict"), f"{name}.input", path, json_ok=True)
        _space(_get(stage, "output", name, path, "dict"), f"{name}.output", path)
        _get(stage, "fingerprint", name, path, "str", required=False, nullable=True)
        _get(stage, "params", name, path, "dict", required=False)
        _get(stage, "seed", name, path, "int", required=False, nullable=True)
        _get(stage, "query_encoding", name, path, "str", required=False)


def _get(block: dict[str, Any], key: str, where: str, path: str, kind: str, *, required: bool = True,
         nullable: bool = False, choices: tuple[str, ...] | None = None, minimum: int | None = None) -> Any:
    """``block[key]`` checked: present (unless not ``required``), of type ``kind``, within ``choices``/``minimum``."""
    name = f"{where}.{key}" if where else key
    if key not in block:
        if required:
            raise _damaged(path, name, "is missing")
        return None
    value = block[key]
    if value is None and nullable:
        return None
    if not isinstance(value, _TYPES[kind]) or (isinstance(value, bool) and kind != "bool"):
        raise _damaged(path, name, f"is {_describe(value)}, not {_NAMES[kind]}")
    if choices is not None and value not in choices:
        raise _damaged(path, name, f"is {value!r}, not one of {', '.join(choices)}")
    if minimum is not None and value < minimum:
        raise _damaged(path, name, f"is {value}, less than {minimum}")
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r:.40})"
    if isinstance(value, str):
        return f"a string ({value!r:.40})"
    return "an array" if isinstance(value, list) else "an object"


def _damaged(path: str, name: str, problem: str) -> DataError:
    return DataError(f"{path}: the 'vecx' metadata is damaged: field {name!r} {problem}",
                     hint="the file was edited or corrupted; re-create it with the vecx command that wrote it")


def header() -> dict[str, Any]:
    """The fields every vecx file starts with."""
    return {"format_version": FORMAT_VERSION, "writer": {"library": "vecx", "version": __version__}}


def sha256_text(*parts: str) -> str:
    """sha256 of parts joined by newlines (used for fingerprints)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def source_fingerprint(source: dict[str, Any]) -> str:
    """Fingerprint of imported data: its content hashes, shape, dtype and declared metric."""
    return sha256_text(
        "vecx-source-v1", str(source["rows"]), str(source["dim"]), source["dtype"],
        source["metric"], str(source["normalized"]), source["ids_sha256"], source["vectors_sha256"],
    )


def stage_fingerprint(previous: str, spec: str, version: int, state_sha256: str | None) -> str:
    """Chain one stage onto the previous fingerprint."""
    return sha256_text("vecx-stage-v1", previous, spec, str(version), state_sha256 or "-")
