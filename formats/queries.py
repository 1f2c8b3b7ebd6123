"""Query inputs that are not tables: JSONL vectors on standard input and plain ``.npy`` files.

Query batches are small and read whole. Everything else (Parquet, Arrow, CSV, vecx tables) goes
through the general readers; these are the fast or special paths in front of them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, BinaryIO

from vecx._lazy import lazy
from vecx.errors import DataError, MismatchError

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")


def read_jsonl_vectors(stream: BinaryIO, expected_dim: int,
                       where: str = "<stdin>") -> tuple[Any, list[Any] | None]:
    """Query vectors from JSONL lines, each a list of numbers or ``{"vector": [...], "id": ...}``.

    All or nothing: a malformed line fails the whole batch with an error naming the line, so a
    batch is searched only when every line is valid. Returns float32 vectors and the ids (None
    when no line gave one).
    """
    import orjson

    vectors, ids = [], []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"{where}: line {number}: not valid JSON ({exc}); no query was run",
                            hint="fix that line; a batch is searched only when every line is valid") from None
        vec = obj.get("vector") if isinstance(obj, dict) else obj
        if not isinstance(vec, list) or not all(isinstance(v, (int, float)) for v in vec):
            raise DataError(f"{where}: line {number}: expected a list of numbers or "
                            "{\"vector\": [...]}; no query was run")
        if len(vec) != expected_dim:
            raise MismatchError(f"{where}: line {number}: query has {len(vec)} dimensions, the index "
                                f"takes {expected_dim}; no query was run")
        vectors.append(vec)
        ids.append(obj.get("id") if isinstance(obj, dict) else None)
    if not vectors:
        raise DataError(f"{where}: no query vectors")
    return np.asarray(vectors, dtype=np.float32), ids if any(i is not None for i in ids) else None


def is_npy(path: str) -> bool:
    """Whether ``path`` names an existing ``.npy`` file."""
    return path.endswith(".npy") and os.path.isfile(path)


def read_plain_npy(path: str) -> Any:
    """Float32 vectors (or bytes, as stored) of a small, plain ``.npy`` query file read with numpy alone, else None
    (the general reader then handles it and reports any problem). A file that is no ``.npy`` at
    all is a :class:`DataError` naming it."""
    from vecx.formats.arrays import read_npy_header

    read_npy_header(path)
    try:
        q = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if q.ndim not in (1, 2) or q.size == 0:
        return None
    if q.dtype in (np.uint8, np.int8):  # perhaps codes (pre-quantized queries): the searcher decides
        return q
    if q.dtype.kind != "f":
        return None
    return np.asarray(q, dtype=np.float32)


def read_npy_token_set(path: str) -> Any:
    """One query's set of vectors (multi-vector search) from a 2-D ``.npy``, as float32 rows."""
    from vecx.formats.arrays import read_npy_header

    read_npy_header(path)
    try:
        tokens = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    if tokens.ndim != 2 or tokens.dtype.kind not in "fiu" or not len(tokens):
        raise DataError(f"{path}: one query's vectors must be a non-empty 2-D array, got shape "
                        f"{tokens.shape} dtype {tokens.dtype}")
    return np.asarray(tokens, dtype=np.float32)
