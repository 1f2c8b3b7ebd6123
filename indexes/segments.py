"""Segments and tombstones: an index as a list of parts encoded by one fitted chain.

An index version holds one or more *segments*. Each is what a build writes (a graph or a codes
file, the rows' ids and payload, the rescoring vectors), under a file-name prefix of its own:
the first segment of an index has none (``graph.usearch``, ``rows.parquet`` ...: a one-segment
index is exactly the format of indexes built before segments existed), appended ones
``seg1-``, ``seg2-`` ... (``seg1-graph.usearch``, ``seg1-rows.parquet`` ...). The chain
(``table.json``, ``state.npz``) and the rescoring chain (``rescore.json``) are shared.

Rows are numbered across segments in order: segment ``s`` holds global rows
``start[s] .. start[s] + rows[s] - 1``. ``tombstones.npy`` (sorted int64 global rows) lists
deleted rows, and rows superseded by a later segment's row of the same id (upsert); searches
never return them. ``vecx compact`` rewrites segments without their tombstoned rows.

The manifest's ``segments`` list (``prefix``, ``rows``, ``fingerprints`` of the tables each was
built from) and ``deleted`` section (``file``, ``rows``) describe them; an index with either
has format version 2, which vecx versions that know only one segment refuse to open rather
than answer from its first segment alone.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

TOMBSTONES = "tombstones.npy"
#: A segment's file-name prefix: none for the first segment, ``segN-`` for the others.
PREFIX = re.compile(r"^(seg[1-9][0-9]{0,8}-)?$")


@dataclass(frozen=True)
class Segment:
    """One segment's place in the index: its files' prefix and its rows' global numbers."""

    prefix: str
    start: int
    rows: int
    #: Fingerprints of the tables whose rows it holds (one per build or append merged into it).
    fingerprints: tuple[str, ...] = field(default=())

    @property
    def stop(self) -> int:
        """One past its last global row."""
        return self.start + self.rows

    def name(self, file: str) -> str:
        """The index file name of one of this segment's files (``rows.parquet`` -> ``seg1-rows.parquet``)."""
        return self.prefix + file

    def to_json(self) -> dict[str, Any]:
        """The manifest entry."""
        return {"prefix": self.prefix, "rows": self.rows, "fingerprints": list(self.fingerprints)}


def segments_of(manifest: dict[str, Any]) -> list[Segment]:
    """The segments a (checked) manifest lists; an index without the field is one segment."""
    entries = manifest.get("segments")
    if not entries:
        fingerprint = (manifest.get("table") or {}).get("fingerprint")
        return [Segment("", 0, int(manifest["rows"]), (fingerprint,) if fingerprint else ())]
    out, start = [], 0
    for entry in entries:
        out.append(Segment(entry["prefix"], start, int(entry["rows"]), tuple(entry.get("fingerprints") or ())))
        start += int(entry["rows"])
    return out


def next_prefix(segments: list[Segment]) -> str:
    """The prefix of a new segment: one past the highest number in use."""
    numbers = [int(s.prefix[3:-1]) for s in segments if s.prefix]
    return f"seg{max(numbers, default=0) + 1}-"


def merge_run(sizes: list[int]) -> int:
    """How many of the newest segments an append merges into one (0: none), given every segment's rows.

    The run grows backwards from the newest segment while the next older one holds no more rows
    than the run: segments then roughly double in size from newest to oldest, as the digits of a
    binary counter. A stream of equal appends keeps at most about log2(appended rows / one append)
    segments beside the first, and each row is rewritten about that many times; the first
    segment is merged only once the appended rows outnumber it.
    """
    run, total = 1, sizes[-1] if sizes else 0
    for size in reversed(sizes[:-1]):
        if size > total:
            break
        run, total = run + 1, total + size
    return run if run >= 2 else 0


def locate(starts: Any, rows: Any) -> Any:
    """The segment of each global row (``starts``: the segments' first rows, ascending)."""
    return np.searchsorted(starts, rows, side="right") - 1


class Stacked:
    """Row arrays of several segments seen as one (global row numbers): integer-array and slice indexing.

    What a one-segment index's memory-mapped arrays answer, the stacked view answers for many:
    only the rows asked for are read from each part.
    """

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        sizes = [len(p) for p in parts]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.shape[0])
            if step != 1:
                return self[np.arange(start, stop, step)]
            pieces = []
            for part, lo in zip(self.parts, self.starts[:-1].tolist(), strict=True):
                a, b = max(start, lo), min(stop, lo + len(part))
                if a < b:
                    pieces.append(np.asarray(part[a - lo: b - lo]))
            return np.concatenate(pieces) if pieces else np.empty((0, *self.shape[1:]), dtype=self.dtype)
        rows = np.asarray(index, dtype=np.int64)
        flat = rows.reshape(-1)
        if len(flat) < 2 or bool((flat[1:] >= flat[:-1]).all()):  # sorted (rescoring asks so): a slice per part
            cuts = np.searchsorted(flat, self.starts).tolist()
            pieces = [np.asarray(part[flat[lo:hi] - start]) for part, start, lo, hi in
                      zip(self.parts, self.starts[:-1].tolist(), cuts[:-1], cuts[1:], strict=True) if hi > lo]
            out = np.concatenate(pieces) if len(pieces) > 1 else pieces[0] if pieces else \
                np.empty((0, *self.shape[1:]), dtype=self.dtype)
            return out.reshape(*rows.shape, *self.shape[1:])
        out = np.empty((len(flat), *self.shape[1:]), dtype=self.dtype)
        where = locate(self.starts[:-1], flat)
        for s in np.unique(where).tolist():
            mask = where == s
            out[mask] = self.parts[s][flat[mask] - self.starts[s]]
        return out.reshape(*rows.shape, *self.shape[1:])


def random_access(array: Any) -> Any:
    """Tell the kernel a memory-mapped array is read at random rows (``MADV_RANDOM``), and return it
    as a plain ndarray view of the same mapping.

    Rescoring reads a few scattered rows per query; the kernel's default read-ahead fetches the
    neighbouring pages of each as well (BENCHMARKS.md, Scale). The plain view skips
    ``numpy.memmap``'s Python-level indexing, which costs more than the gather itself for one query.
    """
    handle = getattr(array, "_mmap", None)
    advise = getattr(handle, "madvise", None)
    random = getattr(mmap, "MADV_RANDOM", None)
    if advise is not None and random is not None:
        try:
            advise(random)
        except (OSError, ValueError):
            pass  # advice only
    return np.asarray(array)


def stacked(parts: list[Any]) -> Any:
    """One part as itself (no cost for one-segment indexes), several as a :class:`Stacked` view."""
    return parts[0] if len(parts) == 1 else Stacked(parts)


class StackedIds:
    """Ids by global row over the segments' id files; an id's row is its newest live one."""

    def __init__(self, readers: list[Any], segments: list[Segment], deleted: Any) -> None:
        self.readers, self.segments, self.deleted = readers, segments, deleted

    def ids(self, rows: Any) -> list[Any]:
        """The ids of some global rows, as Python ints or strs."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(self.readers) == 1:
            return self.readers[0].ids(rows)
        out: list[Any] = [None] * len(rows)
        where = locate(np.asarray([s.start for s in self.segments]), rows)
        for s in np.unique(where).tolist():
            picked = np.flatnonzero(where == s)
            for i, value in zip(picked.tolist(), self.readers[s].ids(rows[picked] - self.segments[s].start),
                                strict=True):
                out[i] = value
        return out

    def row_of(self, value: Any) -> int:
        """The global row of an id that is not deleted (the newest segment first), or -1."""
        for reader, segment in zip(reversed(self.readers), reversed(self.segments), strict=True):
            row = reader.row_of(value)
            if row >= 0 and not is_deleted(self.deleted, segment.start + row):
                return segment.start + row
        return -1


def is_deleted(deleted: Any, row: int) -> bool:
    """Whether a global row is in the sorted tombstone array (``None``: nothing is deleted)."""
    if deleted is None or not len(deleted):
        return False
    at = int(np.searchsorted(deleted, row))
    return at < len(deleted) and int(deleted[at]) == row


def live_mask(rows: int, deleted: Any) -> Any:
    """A boolean mask over the global rows: false where a row is tombstoned."""
    mask = np.ones(rows, dtype=bool)
    if deleted is not None and len(deleted):
        mask[deleted] = False
    return mask


def merge_tombstones(old: Any, new: Any) -> Any:
    """The sorted union of two tombstone arrays (either may be ``None``)."""
    parts = [np.asarray(a, dtype=np.int64) for a in (old, new) if a is not None and len(a)]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
