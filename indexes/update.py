"""Changing an index in place: append a segment (upserting ids), delete rows, compact segments.

Each change is a new version of the index (:mod:`vecx.indexes.store`), made under the writer
lock from the current one: files that do not change are hard-linked, the new ones written, and
the version published with one atomic rename, exactly as a full build is. Readers see the index
before or after the change, never during it.

- :func:`append` encodes-checks a table against the index's fitted chain and builds it as a new
  segment (:mod:`vecx.indexes.segments`). A table encoded by the same chain (same stages and
  fitted state) is taken as it is; a table earlier in that chain (e.g. the imported float
  vectors) is encoded through the rest of it on the way in. Rows whose id is already in the
  index supersede the old rows, which become tombstones. A table already in the index (by
  fingerprint) is not added twice.
- :func:`delete` tombstones rows by id or by a ``--where`` filter.
- :func:`compact` rewrites the newest segments as one, without their tombstoned rows. The
  stored codes are reinserted as they are (no re-encoding), in row order, so compacting an
  index gives the graph a full build of the same rows would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.chain import Chain
from vecx.errors import DataError, MismatchError, UsageError
from vecx.formats.source import Batch
from vecx.formats.tempfiles import write_failure
from vecx.indexes import store
from vecx.indexes.build import Build, BuildOptions, Plan, build, check_rescore, open_table
from vecx.indexes.graph import add_batch_rows
from vecx.indexes.rescoring import MAX_REFINE, refine_name
from vecx.indexes.search import Searcher, read_json
from vecx.indexes.segments import TOMBSTONES, Segment, merge_run, merge_tombstones, next_prefix, segments_of
from vecx.space import VectorSpec

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")
    pq = lazy("pyarrow.parquet")

#: Files every segment shares (the chain and the rescoring chain), kept by every change.
SHARED = ("table.json", "state.npz", "state.arrow", "rescore.json", "rescore.state.npz", "rescore.state.arrow") + \
    tuple(refine_name(number) + suffix for number in range(1, MAX_REFINE + 1)
          for suffix in (".json", ".state.npz", ".state.arrow"))
#: A segment being built sits in this directory of the new version until its files are renamed in.
_SCRATCH = "tmp-segment"


@dataclass
class Change:
    """What a change did: the manifest now in force and the counts users want to see."""

    manifest: dict[str, Any]
    #: ``appended``, ``built`` (an append to an index that did not exist), ``unchanged``, ``deleted``,
    #: ``compacted``.
    action: str
    rows_added: int = 0
    #: Rows tombstoned by this change (deleted, or superseded by an appended row of the same id).
    rows_deleted: int = 0
    #: Ids asked to be deleted that are not (or no longer) in the index.
    missing: list[Any] = field(default_factory=list)
    #: Segments merged by a compaction (0: none).
    merged: int = 0
    note: str | None = None


def options_of(manifest: dict[str, Any]) -> BuildOptions:
    """The build options an index was built with (new segments are built alike)."""
    from vecx.indexes import codescan

    graph, search = manifest["graph"], manifest["search"]
    return BuildOptions(connectivity=graph["connectivity"], expansion_add=graph["expansion_add"],
                        expansion_search=graph["expansion_search"], oversample=_factors(search["oversample"]),
                        deterministic=graph["deterministic"], scan=search.get("scan") or "auto",
                        pool=search.get("pool") or codescan.DEFAULT_POOL,
                        nprobe=search.get("nprobe") or codescan.DEFAULT_NPROBE,
                        query_bits=search.get("query_bits") or 0,
                        order=graph.get("order") or "input")


def _factors(value: Any) -> int | tuple[int, ...]:
    """A manifest's ``search.oversample``: one factor, or one per rescoring stage."""
    return tuple(value) if isinstance(value, list) else int(value)


def _stage_keys(meta: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What makes two tables' chains the same: each stage's codec, version, spec and fitted-state hash."""
    return [(s.get("codec"), s.get("version", 1), s.get("spec"), s.get("state_sha256")) for s in meta.get("stages", [])]


def _same_space(a: dict[str, Any], b: dict[str, Any]) -> bool:
    x, y = VectorSpec.from_json(a), VectorSpec.from_json(b)
    return (x.dim, x.dtype, x.metric, x.multi) == (y.dim, y.dtype, y.metric, y.multi)


# --------------------------------------------------------------------------------------
# Append
# --------------------------------------------------------------------------------------
def append(table: str, output: str, *, rescore: str | None = None, refine: Sequence[str] = (),
           options: BuildOptions | None = None,
           max_segments: int | None = None, auto_merge: bool = True, progress: Any = None, wait: bool = True,
           on_wait: Any = None) -> Change:
    """Add the rows of ``table`` to index ``output`` as a new segment (see the module's description).

    An index that does not exist yet is built (with ``options``). ``auto_merge``: then merge the
    newest segments that :func:`~vecx.indexes.segments.merge_run` picks, so that a stream of
    appends keeps few segments. ``max_segments``: compact the newest segments afterwards if
    there are more. Refused, with nothing written, when the table
    was encoded by another chain or fitted state, holds other payload columns or id types, or
    when the index keeps rescoring vectors and none are given for the new rows.
    """
    if not os.path.lexists(output):
        manifest = build(table, output, rescore=rescore, refine=refine, options=options, progress=progress,
                         wait=wait, on_wait=on_wait)
        return Change(manifest, "built", rows_added=int(manifest["rows"]))
    source = open_table(table)
    fingerprint = source.meta.get("fingerprint")
    with store.derive(output, keep=lambda name: name != TOMBSTONES, wait=wait, on_wait=on_wait) as change:
        current = change.manifest
        segments = segments_of(current)
        if fingerprint and any(fingerprint in s.fingerprints for s in segments):
            return Change(current, "unchanged", note=f"{table} is already in {output} (same fingerprint); "
                                                     "nothing was added")
        plan = _append_plan(table, source, rescore, change, output, refine)
        placed = Segment(next_prefix(segments), sum(s.rows for s in segments), 0, (fingerprint,) if fingerprint else ())
        segment, manifest = _build_segment(plan, change, output, placed, options_of(current), progress)
        _check_segment_fits(current, manifest, table)
        superseded = _superseded(change.path, segments, segment)
        old = _current_tombstones(change, output)
        tombstones = merge_tombstones(old, superseded)
        body = store.manifest_body(current)
        body["rows"] = int(current["rows"]) + segment.rows
        body["segments"] = [s.to_json() for s in segments] + [segment.to_json()]
        if (current.get("rescore") or {}).get("multi"):  # the manifest counts every segment's tokens
            tokens = current["rescore"]["tokens"] + manifest["rescore"]["tokens"]
            body["rescore"] = {**current["rescore"], "tokens": tokens}
        _set_tombstones(body, change.path, tombstones, output)
        change.commit(body)
    result = Change(store.open_version(output)[1], "appended", rows_added=segment.rows,
                    rows_deleted=len(tombstones) - (0 if old is None else len(old)))
    sizes = [s.rows for s in segments] + [segment.rows]
    run = merge_run(sizes) if auto_merge else 0
    limit = len(sizes) - run + 1 if run else None
    if max_segments is not None and len(sizes) > max_segments:
        limit = min(limit or max_segments, max_segments)
    if limit is not None:
        compacted = compact(output, max_segments=limit, progress=progress, wait=wait, on_wait=on_wait)
        result.manifest, result.merged = compacted.manifest, compacted.merged
    return result


class _Encoded:
    """A table earlier in the index's chain, read through the rest of the chain: batches of codes."""

    def __init__(self, source: Any, rest: Chain) -> None:
        self.inner, self.rest = source, rest
        self.path, self.rows, self.meta = source.path, source.rows, source.meta
        self.id_type, self.payload_fields = source.id_type, source.payload_fields
        self.state_blob = None
        self.multi = False
        self.space = rest.output

    def batches(self) -> Any:
        """The table's rows, encoded by the rest of the chain."""
        for batch in self.inner.batches():
            yield Batch(batch.offset, batch.ids, self.rest.encode(batch.vectors), batch.payload)


def _append_plan(table: str, source: Any, rescore: str | None, change: store.Derived, output: str,
                 refine: Sequence[str] = ()) -> Plan:
    """Checks a table to append against the index's chain; the plan that builds it as a segment."""
    from dataclasses import replace

    from vecx.formats.source import check_payload_names
    from vecx.indexes.search import _load_chain

    current = change.manifest
    version = store.Version(output, change.path, current, None)  # the linked files, read by name
    index_meta = read_json(version, "table.json")
    chain = _load_chain(version, "table.json", "state", output)
    Chain.from_table(source.meta, source.state_blob, table)  # its own state matches its records
    check_payload_names(source)
    mine, theirs = _stage_keys(index_meta), _stage_keys(source.meta)
    records = index_meta.get("stages", [])
    at = len(theirs)
    if theirs != mine[:at] or not _same_space(source.meta["vector"],
                                              records[at]["input"] if at < len(records) else index_meta["vector"]):
        raise MismatchError(f"{table}: was encoded with {source.meta.get('spec') or '(no stages)'!r}, not by this "
                            f"index's chain {index_meta.get('spec') or '(no stages)'!r} and fitted state",
                            hint="encode it with the state the index was built with (vecx encode --state), or "
                                 "append the imported vectors: the index encodes them")
    _check_rows_fit(source, version, table)
    space = chain.output
    source.options = replace(source.options, batch_rows=add_batch_rows(max(1, space.bytes_per_vector)))
    codes: Any = source if at == len(mine) else _Encoded(source, Chain(chain.stages[at].input, chain.stages[at:]))
    scorer: Any = chain.stages[-1] if current.get("codes") else None
    nav = None
    if scorer is not None and current["graph"].get("file"):
        nav = scorer.navigation(np.zeros((1, space.bytes_per_vector), dtype=np.uint8))
    stages = len(current.get("refine") or ())
    if (refine or (rescore and stages)) and len(refine) != stages:
        raise UsageError(f"--rescore-vectors: {output} rescores in {stages + 1} stage{'s' if stages else ''}; "
                         f"give {stages + 1} tables for the new rows, in the order the index keeps them",
                         hint="see 'vecx info' for the stages")
    refine_srcs = tuple(_append_rescore(table, source, refine[i] if refine else None, version, output,
                                        refine_name(i + 1)) for i in range(stages))
    return Plan(table, codes, space, scorer, nav, current["graph"]["metric"],
                _append_rescore(table, source, rescore, version, output), refine_srcs)


def _append_rescore(table: str, source: Any, rescore: str | None, version: store.Version, output: str,
                    name: str = "rescore") -> Any:
    """The rescoring table of appended rows for one stage (``name``: ``rescore`` for the last): the
    one given, else the table itself when it holds the vectors the index rescores with; checked to
    be encoded like the index's own."""
    info = version.manifest.get("rescore")
    if info is None:
        if rescore:
            raise UsageError(f"--rescore-vectors {rescore}: {output} keeps no rescoring vectors; append without it")
        return None
    index_meta = read_json(version, name + ".json")
    if rescore is None:
        if _stage_keys(source.meta) != _stage_keys(index_meta) or \
                not _same_space(source.meta["vector"], index_meta["vector"]):
            raise UsageError(f"{output} rescores with {index_meta.get('spec') or 'the imported'} vectors; "
                             f"give them for the new rows with --rescore-vectors TABLE",
                             hint=f"e.g. the table {table} was encoded from")
        rescore = table
    src = check_rescore(rescore, source)
    if _stage_keys(src.meta) != _stage_keys(index_meta) or not _same_space(src.meta["vector"], index_meta["vector"]):
        raise MismatchError(f"{rescore}: holds {src.meta.get('spec') or 'imported'} vectors; {output} rescores with "
                            f"{index_meta.get('spec') or 'the imported'} ones",
                            hint="give the table encoded as the index's rescoring vectors were")
    return src


def _build_segment(plan: Plan, change: store.Derived, output: str, segment: Segment, options: BuildOptions,
                   progress: Any) -> tuple[Segment, dict[str, Any]]:
    """Builds one segment (its graphs keyed from ``segment.start``) in a scratch directory of the new
    version, then renames its files in under its prefix; returns it with its rows, and its own
    manifest sections."""
    first_key, prefix = segment.start, segment.prefix
    scratch = os.path.join(change.path, _SCRATCH)
    try:
        os.mkdir(scratch)
    except OSError as exc:
        raise write_failure(output, exc) from None
    manifest, _ = Build(plan, scratch, output, options, first_key).written(progress)
    try:
        for name in store.segment_files(manifest):
            os.rename(os.path.join(scratch, name), os.path.join(change.path, prefix + name))
        store._rmtree(scratch, ignore_errors=False)
    except OSError as exc:
        raise write_failure(output, exc) from None
    return Segment(prefix, first_key, int(manifest["rows"]), segment.fingerprints), manifest


def _check_rows_fit(source: Any, version: store.Version, table: str) -> None:
    """Ids of the index's type and the same payload columns, checked before anything is built."""
    schema = pq.read_schema(version.file("rows.parquet"))
    id_type = schema.field("id").type
    if source.id_type != id_type:
        raise MismatchError(f"{table}: its ids are {source.id_type}, the index's {id_type}",
                            hint="append rows with ids of the same type (import them with the same kind of ids)")
    mine = [(f.name, f.type) for f in schema if f.name != "id"]
    theirs = [(f.name, f.type) for f in source.payload_fields]
    if mine != theirs:
        def spell(fields: list[Any]) -> str:
            return ", ".join(f"{name} ({kind})" for name, kind in fields) or "(none)"

        raise MismatchError(f"{table}: payload columns {spell(theirs)}; the index has {spell(mine)}",
                            hint="append rows with the same payload columns (same names, types and order)")


def _check_segment_fits(current: dict[str, Any], new: dict[str, Any], table: str) -> None:
    """A new segment must be searchable as the index's others are: same graph, codes and rescoring vectors
    (ids and payload were checked before it was built: :func:`_check_rows_fit`)."""
    checks = [("graph", ("dtype", "ndim", "metric")), ("codes", ("bytes", "spec")), ("rescore", ("dtype", "dim"))]
    for section, keys in checks:
        a, b = current.get(section) or {}, new.get(section) or {}
        for key in keys:
            if a.get(key) != b.get(key):
                raise MismatchError(f"{table}: its {section} {key} would be {b.get(key)!r}, the index's is "
                                    f"{a.get(key)!r}", hint="append a table encoded by the index's chain")
    mine, theirs = current.get("refine") or [], new.get("refine") or []
    if [(a["dtype"], a["dim"]) for a in mine] != [(b["dtype"], b["dim"]) for b in theirs]:
        raise MismatchError(f"{table}: its rescoring stages would hold {len(theirs) + 1} sets of rows, unlike the "
                            "index's", hint="give the rescoring tables the index was built with")
    if bool((current.get("graph") or {}).get("file")) != bool((new.get("graph") or {}).get("file")):
        raise MismatchError(f"{table}: would be built with{'out' if current['graph'].get('file') else ''} a graph, "
                            "unlike the index's segments")


def _superseded(version: str, segments: list[Segment], new: Segment) -> Any:
    """Global rows of the existing segments whose ids the new segment holds again (upserts; the id
    types were checked to agree before it was built)."""
    new_ids = pq.read_table(os.path.join(version, new.name("rows.parquet")), columns=["id"])["id"]
    rows = []
    for seg in segments:
        old = pq.read_table(os.path.join(version, seg.name("rows.parquet")), columns=["id"])["id"]
        hits = np.flatnonzero(np.asarray(pc.is_in(old, value_set=new_ids.combine_chunks())))
        rows.append(hits + seg.start)
    return np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def _current_tombstones(change: store.Derived, output: str) -> Any:
    """The tombstones of the version a change starts from (``None``: none)."""
    deleted = change.manifest.get("deleted")
    if not deleted:
        return None
    with store.open_reader(output) as version:
        return np.load(version.file(deleted["file"]))


def _set_tombstones(body: dict[str, Any], version: str, tombstones: Any, output: str) -> None:
    """Write ``tombstones.npy`` into a new version and describe it in the manifest (none: no section)."""
    body.pop("deleted", None)
    if tombstones is None or not len(tombstones):
        return
    try:
        np.save(os.path.join(version, TOMBSTONES), np.asarray(tombstones, dtype=np.int64))
    except OSError as exc:
        raise write_failure(output, exc) from None
    body["deleted"] = {"file": TOMBSTONES, "rows": int(len(tombstones))}


# --------------------------------------------------------------------------------------
# Delete
# --------------------------------------------------------------------------------------
def delete(index: str, *, ids: list[Any] | None = None, where: str | None = None, wait: bool = True,
           on_wait: Any = None) -> Change:
    """Tombstone the rows with the given ids and/or the rows a ``--where`` filter matches.

    Ids not in the index are reported, not an error (deleting is idempotent). Nothing is
    written when nothing new is deleted.
    """
    if not ids and not where:
        raise UsageError("give the rows to delete: --ids FILE, --id ID or --where EXPR")
    searcher = Searcher(index)
    try:
        rows, missing = _rows_to_delete(searcher, ids or [], where, index)
        old = searcher.deleted
        tombstones = merge_tombstones(old, rows)
        added = len(tombstones) - (0 if old is None else len(old))
        if not added:
            return Change(searcher.manifest, "unchanged", missing=missing, note="nothing to delete")
        with store.derive(index, keep=lambda name: name != TOMBSTONES, expected=searcher.directory, wait=wait,
                          on_wait=on_wait) as change:
            body = store.manifest_body(change.manifest)
            body.setdefault("segments", [s.to_json() for s in searcher.segments])
            _set_tombstones(body, change.path, tombstones, index)
            change.commit(body)
    finally:
        searcher.close()
    return Change(store.open_version(index)[1], "deleted", rows_deleted=added, missing=missing)


def _rows_to_delete(searcher: Searcher, ids: list[Any], where: str | None, index: str) -> tuple[Any, list[Any]]:
    """Live rows with any of ``ids`` or matching ``where``, and the ids not found."""
    from vecx.indexes import where as where_mod

    column = searcher.rows_table(["id"])["id"].combine_chunks()
    live = searcher.live if searcher.live is not None else np.ones(searcher.rows, dtype=bool)
    picked = np.zeros(searcher.rows, dtype=bool)
    missing: list[Any] = []
    if ids:
        wanted, bad = _ids_as(column.type, ids)
        hit = np.asarray(pc.is_in(column, value_set=wanted).fill_null(False)) & live
        present = set(column.filter(pa.array(hit)).to_pylist())
        missing = bad + [v for v in wanted.to_pylist() if v not in present]
        picked |= hit
    if where:
        picked |= np.asarray(where_mod.mask(where, searcher.payload_names(), searcher.rows_table, index),
                             dtype=bool) & live
    return np.flatnonzero(picked), missing


def _ids_as(id_type: Any, ids: list[Any]) -> tuple[Any, list[Any]]:
    """Ids (as given: text from a file, or values) as an Arrow array of the index's id type, and those
    that cannot be one (e.g. ``abc`` for integer ids)."""
    good, bad = [], []
    for value in ids:
        try:
            good.append(pa.scalar(int(value) if pa.types.is_integer(id_type) and isinstance(value, str) else value,
                                  id_type))
        except (ValueError, TypeError, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            bad.append(value)
    return pa.array([s.as_py() for s in good], type=id_type), bad


# --------------------------------------------------------------------------------------
# Compact
# --------------------------------------------------------------------------------------
def compact(index: str, *, max_segments: int = 1, progress: Any = None, wait: bool = True,
            on_wait: Any = None) -> Change:
    """Rewrite the newest segments as one, without tombstoned rows, so that at most ``max_segments``
    remain (1: everything is rewritten and every tombstone dropped).

    Older segments are kept as they are (hard-linked), with their tombstones. Nothing is
    written when there is nothing to merge or drop.
    """
    if max_segments < 1:
        raise UsageError(f"--max-segments must be at least 1, not {max_segments}")
    searcher = Searcher(index)
    try:
        segments = searcher.segments
        keep = segments[: max_segments - 1]
        merge = segments[max_segments - 1:]
        first = merge[0].start if merge else searcher.rows
        deleted = searcher.deleted if searcher.deleted is not None else np.zeros(0, dtype=np.int64)
        dropped = int((deleted >= first).sum())
        if len(merge) <= 1 and not dropped:
            return Change(searcher.manifest, "unchanged", note="nothing to compact")
        live_rows = sum(s.rows for s in merge) - dropped
        kept_files = {s.name(f) for s in keep for f in store.segment_files(searcher.manifest)}
        with store.derive(index, keep=lambda name: name in kept_files or name in SHARED,
                          expected=searcher.directory, wait=wait, on_wait=on_wait) as change:
            body = store.manifest_body(change.manifest)
            entries = [s.to_json() for s in keep]
            if live_rows:
                prefix = next_prefix(segments) if keep else ""
                plan = _compact_plan(searcher, merge, live_rows)
                placed = Segment(prefix, first, 0, tuple(f for s in merge for f in s.fingerprints))
                segment, built = _build_segment(plan, change, index, placed, options_of(searcher.manifest), progress)
                if (built.get("rescore") or {}).get("multi"):
                    multi: Any = searcher.multi_rescore  # several segments (keep) are a StackedMulti
                    kept = [int(multi.parts[i].offsets[-1]) for i in range(len(keep))]
                    body["rescore"] = {**body["rescore"], "tokens": sum(kept) + built["rescore"]["tokens"]}
                entries.append(segment.to_json())
            if not entries:
                raise UsageError(f"{index}: every row is deleted; compacting would leave an empty index",
                                 hint="rebuild it from new data, or remove it")
            body["rows"] = first + live_rows
            body["segments"] = entries
            _set_tombstones(body, change.path, deleted[deleted < first], index)
            change.commit(body)
    finally:
        searcher.close()
    return Change(store.open_version(index)[1], "compacted", merged=len(merge), rows_deleted=dropped)


class _StoredRows:
    """The rows of some segments of an opened index, tombstoned ones skipped, read as a table would be:
    ids and payload from the rows files, codes from the graphs or codes files (exactly as stored)."""

    def __init__(self, searcher: Searcher, segments: list[Segment], rows: int, rescore: bool = False,
                 stage: int = 0) -> None:
        """``rescore``: the rows of a rescoring stage (``stage``: 0 for the last, ``i`` for ``refine<i>``)."""
        self.searcher, self.segments, self.rows, self.rescore, self.stage = searcher, segments, rows, rescore, stage
        self.path = searcher.path
        schema = pq.read_schema(searcher.version.file(segments[0].name("rows.parquet")))
        self.id_type = schema.field("id").type
        self.payload_fields = [f for f in schema if f.name != "id"]
        self.state_blob = None
        if rescore:
            meta = dict(read_json(searcher.version, refine_name(stage) + ".json" if stage else "rescore.json"))
            meta["source"] = {k: v for k, v in (meta.get("source") or {}).items() if k != "tokens"}  # counted anew
            self.meta = meta
        else:
            self.meta = read_json(searcher.version, "table.json")
        self.space = VectorSpec.from_json(self.meta["vector"])
        self.multi = rescore and not stage and searcher.multi_rescore is not None
        self.dim = self.space.dim

    def batches(self) -> Any:
        searcher, live = self.searcher, self.searcher.live
        offset = 0
        step = add_batch_rows(max(1, self.space.bytes_per_vector))
        for seg in self.segments:
            rows_file = pq.ParquetFile(searcher.version.file(seg.name("rows.parquet")))
            start = seg.start
            for record_batch in rows_file.iter_batches(batch_size=step):
                rows = np.arange(start, start + record_batch.num_rows, dtype=np.int64)
                start += record_batch.num_rows
                keep = live[rows] if live is not None else np.ones(len(rows), dtype=bool)
                if not keep.any():
                    continue
                rows = rows[keep]
                if len(rows) != record_batch.num_rows:
                    record_batch = record_batch.filter(pa.array(keep))
                yield Batch(offset, record_batch.column("id"), self._vectors(rows),
                            {f.name: record_batch.column(f.name) for f in self.payload_fields})
                offset += len(rows)
        if offset != self.rows:
            raise DataError(f"{self.path}: read {offset:,} rows, expected {self.rows:,} (damaged)",
                            hint="check it with 'vecx verify'")

    def _vectors(self, rows: Any) -> Any:
        searcher = self.searcher
        if not self.rescore:
            return searcher.codes_of(rows)
        if self.multi:
            multi: Any = searcher.multi_rescore
            return multi.sets_of(rows)
        stage = searcher.refine[self.stage - 1] if self.stage else searcher.final
        assert stage is not None, "a rescoring stage's rows are read only from an index that keeps them"
        return np.asarray(stage.stored[rows])


def _compact_plan(searcher: Searcher, merge: list[Segment], rows: int) -> Plan:
    """The plan that rebuilds some segments' live rows from what the index stores."""
    source = _StoredRows(searcher, merge, rows)
    scorer = searcher.scan.scorer if searcher.scan is not None else None
    nav = None
    if scorer is not None and searcher.graphs:
        nav = scorer.navigation(np.zeros((1, source.space.bytes_per_vector), dtype=np.uint8))
    rescore = _StoredRows(searcher, merge, rows, rescore=True) if searcher.manifest.get("rescore") else None
    refine = tuple(_StoredRows(searcher, merge, rows, rescore=True, stage=number)
                   for number in range(1, len(searcher.refine) + 1))
    return Plan(searcher.path, source, source.space, scorer, nav, searcher.manifest["graph"]["metric"], rescore,
                refine)
