"""Row ids of an index in memory-mappable files, so a query answers without opening Parquet.

``rows.parquet`` holds ids and payload for ``--fields`` and ``--where``; a plain query needs
only the ids of its k results, and pyarrow's import alone costs more than the whole search.
So the build also writes:

- integer ids: ``ids.npy``, int64 (or uint64), row i = graph key i;
- string ids: ``ids.offsets.npy`` (int64, rows + 1) and ``ids.utf8`` (the UTF-8 bytes of
  every id, concatenated): id i is ``utf8[offsets[i]:offsets[i + 1]]``.

Both are streamed while the graph is built (memory stays bounded) and checksummed in the
manifest like every other file. Other id types (binary, ...) get no such files and fall back
to Parquet.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, BinaryIO

from vecx._lazy import lazy
from vecx.errors import DataError

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")

NUMERIC = "ids.npy"
OFFSETS = "ids.offsets.npy"
UTF8 = "ids.utf8"


class IdWriter:
    """Appends id batches (Arrow arrays) to the id files of a version directory being built."""

    def __init__(self, directory: str, id_type: Any) -> None:
        self.directory = directory
        #: ``int64``/``uint64`` (ids.npy), ``utf8`` (ids.offsets.npy + ids.utf8), or ``None``: no id files.
        self.kind: str | None
        if pa.types.is_integer(id_type):
            self.kind = "uint64" if id_type == pa.uint64() else "int64"
        elif pa.types.is_string(id_type) or pa.types.is_large_string(id_type):
            self.kind = "utf8"
        else:
            self.kind = None
        self.rows = 0
        self.bytes = 0
        self._raw: BinaryIO | None = None
        self._offsets: list[Any] = []
        if self.kind is not None:
            self._raw = open(os.path.join(directory, UTF8 if self.kind == "utf8" else NUMERIC + ".raw"), "wb")

    def add(self, ids: Any) -> None:
        """Append one batch of ids (an Arrow array without nulls)."""
        if self._raw is None:
            return
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        if self.kind == "utf8":
            array = ids.cast(pa.large_string()) if not pa.types.is_large_string(ids.type) else ids
            buffers = array.buffers()
            offsets = np.frombuffer(buffers[1], dtype=np.int64, count=len(array) + 1, offset=array.offset * 8)
            start, end = int(offsets[0]), int(offsets[-1])
            self._raw.write(memoryview(buffers[2])[start:end] if buffers[2] is not None else b"")
            self._offsets.append((offsets[1:] - start + self.bytes).astype(np.int64))
            self.bytes += end - start
        else:
            self._raw.write(np.asarray(ids.to_numpy(zero_copy_only=False), dtype=self.kind).tobytes())
        self.rows += len(ids)

    def close(self) -> None:
        """Finish the files (the numeric ids get their .npy header now that the count is known)."""
        if self._raw is None:
            return
        self._raw.close()
        if self.kind == "utf8":
            offsets = np.concatenate([np.zeros(1, dtype=np.int64), *self._offsets])
            np.save(os.path.join(self.directory, OFFSETS), offsets)
            return
        from vecx.formats.npyfile import NpyWriter

        raw_path = os.path.join(self.directory, NUMERIC + ".raw")
        out = NpyWriter(os.path.join(self.directory, NUMERIC), self.kind, (self.rows,))
        chunk = 1 << 20
        try:
            with open(raw_path, "rb") as handle:
                for _ in range(0, self.rows, chunk):
                    out.write(np.frombuffer(handle.read(chunk * 8), dtype=self.kind))
        finally:
            out.close()
        os.remove(raw_path)


class IdReader:
    """Ids by row number from the files :class:`IdWriter` made (``None`` from :func:`open_ids` if absent)."""

    def __init__(self, directory: str, prefix: str = "") -> None:
        numeric = os.path.join(directory, prefix + NUMERIC)
        if os.path.exists(numeric):
            self.numbers = np.load(numeric, mmap_mode="r")
            self.offsets = self.utf8 = None
        else:
            self.numbers = None
            self.offsets = np.load(os.path.join(directory, prefix + OFFSETS), mmap_mode="r")
            utf8 = os.path.join(directory, prefix + UTF8)
            self.utf8 = np.memmap(utf8, dtype=np.uint8, mode="r") if os.path.getsize(utf8) else \
                np.zeros(0, dtype=np.uint8)

    def ids(self, rows: Any) -> list[Any]:
        """The ids of some rows, as Python ints or strs."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.numbers is not None:
            return np.asarray(self.numbers[rows]).tolist()
        offsets, utf8 = self.offsets, self.utf8
        assert offsets is not None and utf8 is not None, "string ids: both files are open"
        starts, ends = offsets[rows], offsets[rows + 1]
        return [bytes(utf8[s:e]).decode("utf-8") for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]

    def row_of(self, value: Any) -> int:
        """Row number of an id, or -1 (string ids are found by a scan of the bytes, not decoded)."""
        if self.numbers is not None:
            try:
                number = int(value)
            except (TypeError, ValueError):
                return -1
            hits = np.flatnonzero(self.numbers == number)
            return int(hits[0]) if len(hits) else -1
        needle = str(value).encode("utf-8")
        offsets = np.asarray(self.offsets)
        if not needle:
            hits = np.flatnonzero(np.diff(offsets) == 0)
            return int(hits[0]) if len(hits) else -1
        haystack = np.asarray(self.utf8).tobytes()
        position = haystack.find(needle)
        while position >= 0:
            row = int(np.searchsorted(offsets, position, side="right")) - 1
            if offsets[row] == position and offsets[row + 1] == position + len(needle):
                return row
            position = haystack.find(needle, position + 1)
        return -1


def open_ids(version: Any, segment: Any) -> IdReader | None:
    """The id files of one segment (:class:`vecx.indexes.segments.Segment`) of an opened index version
    (:class:`vecx.indexes.store.Version`), if its manifest lists them (indexes built before they
    existed do not)."""
    if version.has(segment.name(NUMERIC)) or (version.has(segment.name(OFFSETS)) and version.has(segment.name(UTF8))):
        reader = IdReader(version.directory, segment.prefix)
        offsets, utf8 = reader.offsets, reader.utf8
        if reader.numbers is not None:
            count, offsets_ok = len(reader.numbers), True
        else:
            assert offsets is not None and utf8 is not None, "string ids: both files are open"
            count = len(offsets) - 1
            offsets_ok = len(offsets) > 0 and int(offsets[0]) == 0 and int(offsets[-1]) == len(utf8)
        if count != segment.rows or not offsets_ok:
            raise DataError(f"{version.path}: the id files do not match the {segment.rows} rows they belong to "
                            "(damaged)", hint="rebuild the index")
        return reader
    return None
