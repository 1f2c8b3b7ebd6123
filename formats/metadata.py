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
    """Parse and version-check a ``vecx`` metadata value read from ``path``."""
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise DataError(f"{path}: the 'vecx' metadata is not valid JSON (file damaged?)") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("format_version"), int):
        raise DataError(f"{path}: the 'vecx' metadata has no format_version (not written by vecx?)")
    check_version(meta, path)
    return meta


def check_version(meta: dict[str, Any], path: str) -> None:
    """Refuse a format this vecx does not know (exit code 4)."""
    version = meta["format_version"]
    if version > FORMAT_VERSION or version < 1:
        writer = meta.get("writer", {}).get("version", "?")
        raise MismatchError(
            f"{path}: written by vecx {writer} in format version {version}; this is vecx "
            f"{__version__}, which reads format versions up to {FORMAT_VERSION}",
            hint="upgrade vecx (pip install -U vecx) to read this file",
        )


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
