"""Fitted codec state: an open, content-addressed container of named arrays.

The container is an Arrow IPC file with one row per array::

    stage: int32    index of the stage in the chain (0-based)
    codec: string   codec name, e.g. "int8"
    name:  string   array name, e.g. "lo"
    dtype: string   numpy dtype name, little-endian, e.g. "float32"
    shape: list<int64>
    data:  binary   the array's bytes, C order, little-endian

and schema metadata key ``vecx`` (kind "state") with the chain it belongs to. The
same bytes are embedded (base64) in vector tables under the ``vecx.state`` key
and written standalone by ``vecx fit`` / ``--save-state``; any Arrow reader can
open them (``pyarrow.ipc.open_file``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, MismatchError
from vecx.formats import metadata

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")


def _canonical(array: Any) -> Any:
    """C-contiguous little-endian copy of an array (what gets hashed and stored)."""
    a = np.ascontiguousarray(array)
    return a.astype(a.dtype.newbyteorder("<"), copy=False)


def arrays_sha256(arrays: dict[str, Any]) -> str | None:
    """Hash of a stage's fitted arrays (names, dtypes, shapes and bytes); None if stateless."""
    if not arrays:
        return None
    h = hashlib.sha256(b"vecx-state-v1")
    for name in sorted(arrays):
        a = _canonical(arrays[name])
        h.update(f"\n{name}\n{a.dtype.str}\n{list(a.shape)}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def pack(meta: dict[str, Any], stages: list[tuple[str, dict[str, Any]]]) -> bytes:
    """Serialize (codec name, arrays) per stage into the container's bytes."""
    rows: dict[str, list[Any]] = {k: [] for k in ("stage", "codec", "name", "dtype", "shape", "data")}
    for index, (codec, arrays) in enumerate(stages):
        for name in sorted(arrays):
            a = _canonical(arrays[name])
            rows["stage"].append(index)
            rows["codec"].append(codec)
            rows["name"].append(name)
            rows["dtype"].append(a.dtype.name)
            rows["shape"].append(list(a.shape))
            rows["data"].append(a.tobytes())
    schema = pa.schema(
        [("stage", pa.int32()), ("codec", pa.string()), ("name", pa.string()),
         ("dtype", pa.string()), ("shape", pa.list_(pa.int64())), ("data", pa.large_binary())],
        metadata={metadata.KEY: metadata.dumps({**metadata.header(), "kind": "state", **meta})},
    )
    table = pa.table(rows, schema=schema)
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def unpack(blob: bytes, path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Inverse of :func:`pack`: the container's metadata and the arrays of each stage."""
    try:
        reader = pa.ipc.open_file(pa.BufferReader(blob))
        table = reader.read_all()
        raw_meta = (reader.schema.metadata or {}).get(metadata.KEY)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: fitted state is not a readable vecx state container ({exc})") from None
    if raw_meta is None:
        raise DataError(f"{path}: fitted state container has no 'vecx' metadata")
    meta = metadata.loads(raw_meta, path)
    if meta.get("kind") != "state":
        raise DataError(f"{path}: fitted state container's metadata is of kind {meta.get('kind', 'vectors')!r}, "
                        "not 'state'")
    missing = [name for name in ("stage", "name", "dtype", "shape", "data") if name not in table.column_names]
    if missing:
        raise DataError(f"{path}: fitted state container has no column {missing[0]!r} (file damaged?)")
    n_stages = len(meta["stages"])
    stages: list[dict[str, Any]] = [{} for _ in range(n_stages)]
    for number, row in enumerate(table.to_pylist()):
        if not isinstance(row["stage"], int) or not 0 <= row["stage"] < n_stages:
            raise MismatchError(f"{path}: fitted state names stage {row['stage']}, the chain has {n_stages}")
        stages[row["stage"]][row["name"]] = _array(row, f"{path}: fitted state array {number} ({row['name']!r})")
    return meta, stages


#: The kinds of numpy dtype a fitted array may have: booleans, integers, floats (never objects).
_ARRAY_KINDS = "biuf"


def _array(row: dict[str, Any], where: str) -> Any:
    """One stored array, checked: a plain numeric dtype, a shape of non-negative integers, the right byte count."""
    if not isinstance(row["name"], str) or not isinstance(row["dtype"], str) or not isinstance(row["data"], bytes):
        raise DataError(f"{where}: name, dtype or data is missing (file damaged?)")
    try:
        dtype = np.dtype(row["dtype"])
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DataError(f"{where}: dtype {row['dtype']!r} is not a plain numeric type (file damaged or edited?)")
    shape = row["shape"]
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise DataError(f"{where}: shape {shape!r} is not a list of non-negative sizes (file damaged or edited?)")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(row["data"]):
        raise DataError(f"{where}: shape {shape} of {dtype.name} needs {count * dtype.itemsize:,} bytes, "
                        f"the data has {len(row['data']):,} (file damaged or edited?)")
    return np.frombuffer(row["data"], dtype=dtype.newbyteorder("<")).reshape(shape).copy()


def encode_blob(blob: bytes) -> bytes:
    """Base64 for embedding in Parquet/Arrow key-value metadata (kept ASCII for other readers)."""
    return base64.b64encode(blob)


def decode_blob(value: bytes, path: str) -> bytes:
    """Inverse of :func:`encode_blob`."""
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise DataError(f"{path}: embedded fitted state is damaged (bad base64)") from None


# ---- the same arrays as an .npz (zip of .npy files), readable without pyarrow ----------------
#: Fixed zip timestamps, so the same state gives the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str, stages: list[dict[str, Any]]) -> None:
    """Write per-stage arrays as an uncompressed, deterministic .npz: member ``<stage>/<name>.npy``.

    Indexes keep their chain state this way so that ``vecx query`` loads it with numpy alone
    (the Arrow container needs pyarrow, whose import costs more than a whole query).
    """
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(zipfile.ZipInfo("stages.npy", _ZIP_EPOCH), _npy_bytes(np.asarray(len(stages))))
        for index, arrays in enumerate(stages):
            for name in sorted(arrays):
                info = zipfile.ZipInfo(f"{index}/{name}.npy", _ZIP_EPOCH)
                archive.writestr(info, _npy_bytes(_canonical(arrays[name])))


def _npy_bytes(array: Any) -> bytes:
    sink = io.BytesIO()
    np.lib.format.write_array(sink, array, allow_pickle=False)
    return sink.getvalue()


#: More stages than any chain has: a count beyond it is damage, not a chain.
MAX_STAGES = 1024


def read_npz(path: str, where: str) -> list[dict[str, Any]]:
    """Inverse of :func:`write_npz`; a damaged file is a :class:`DataError`."""
    import zipfile

    try:
        # vecx stores members uncompressed: a compressed member (a possible zip bomb) is refused
        # before numpy inflates it, and so is an entry whose size would not fit the file.
        with zipfile.ZipFile(path) as archive:
            size = os.path.getsize(path)
            if any(m.compress_type != zipfile.ZIP_STORED or m.file_size > size for m in archive.infolist()):
                raise DataError(f"{where}: fitted state .npz has compressed or oversized members (not written by vecx)")
        with np.load(path, allow_pickle=False) as archive:
            count = int(archive["stages"])
            if not 0 <= count <= MAX_STAGES:
                raise DataError(f"{where}: fitted state names {count} stages (damaged)")
            stages: list[dict[str, Any]] = [{} for _ in range(count)]
            for key in archive.files:
                if key == "stages":
                    continue
                stage, _, name = key.partition("/")
                if not stage.isdigit() or int(stage) >= count:
                    raise DataError(f"{where}: fitted state names stage {stage!r}, the chain has {count}")
                stages[int(stage)][name] = archive[key]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{where}: fitted state is not a readable .npz ({exc})") from None
    return stages
