"""Sharded builds: an index built as N segments in parallel, on this machine or on a Dask cluster.

``vecx index TABLE -o docs.vecx --shards N`` splits the table's rows into N contiguous ranges of
(nearly) equal size and builds each as a segment of the new index (:mod:`vecx.indexes.segments`),
its graph keyed by the index's row numbers. The split depends only on the row count, so the
shards hold the same rows and codes whichever engine ran them; with ``--deterministic`` each
shard's files are byte-identical too.

Engines (:mod:`vecx.engines`): ``local`` builds the shards one after another in this process
(each build already uses every core); ``dask`` sends each shard's build to a Dask cluster's
workers as a task. Workers read the table and write their segment into
the new version's directory themselves, so the table and the index must be on storage every
worker reaches (a shared path; tables may be on an object store). The client then renames the
segments' files into place and commits the version under the writer lock, as any build does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from vecx import engines
from vecx.formats.source import Batch
from vecx.formats.tempfiles import write_failure
from vecx.indexes import store
from vecx.indexes.build import Build, BuildOptions, plan_build
from vecx.indexes.segments import Segment


class RowRange:
    """Rows ``start .. stop - 1`` of an opened vecx table, read as a table of their own (offsets from 0).

    Tables that can start reading at a row (Parquet row groups, dataset parts) skip what comes
    before the range; the others are read from the start.
    """

    def __init__(self, source: Any, start: int, stop: int) -> None:
        self.inner, self.start, self.stop = source, start, stop
        self.path, self.options, self.state_blob = source.path, source.options, source.state_blob
        self.id_type, self.payload_fields = source.id_type, source.payload_fields
        self.space, self.multi, self.dim = source.space, source.multi, source.dim
        self.rows = stop - start
        meta = dict(source.meta)
        if self.multi and meta.get("source"):  # the whole table's token count: counted anew for the range
            meta["source"] = {k: v for k, v in meta["source"].items() if k != "tokens"}
        self.meta = meta

    def batches(self) -> Any:
        """The range's rows in batches, offsets counted from its first row."""
        reader = getattr(self.inner, "batches_from", None)
        batches = reader(self.start) if reader is not None else self.inner.batches()
        for batch in batches:
            lo, hi = batch.offset, batch.offset + len(batch)
            if hi <= self.start:
                continue
            if lo >= self.stop:
                break
            a, z = max(lo, self.start) - lo, min(hi, self.stop) - lo
            if (a, z) == (0, len(batch)):
                yield Batch(lo - self.start, batch.ids, batch.vectors, batch.payload)
            else:
                yield Batch(lo + a - self.start, batch.ids.slice(a, z - a), batch.vectors[a:z],
                            {name: column.slice(a, z - a) for name, column in batch.payload.items()})


@dataclass(frozen=True)
class ShardTask:
    """One shard's build: what a worker needs (plain, picklable values)."""

    table: str
    rescore: str | None
    options: BuildOptions
    start: int
    stop: int
    #: Where the worker writes the segment's files (inside the new version of the index).
    directory: str
    output: str
    #: The rescoring tables of the stages before ``rescore``.
    refine: tuple[str, ...] = ()


def build_shard(task: ShardTask) -> dict[str, Any]:
    """Build one shard as a segment in ``task.directory``; returns its manifest sections (runs on a worker)."""
    plan = plan_build(task.table, task.rescore, task.options, task.refine)
    plan.source = RowRange(plan.source, task.start, task.stop)
    if plan.rescore_src is not None:
        plan.rescore_src = RowRange(plan.rescore_src, task.start, task.stop)
    plan.refine_srcs = tuple(RowRange(src, task.start, task.stop) for src in plan.refine_srcs)
    os.makedirs(task.directory, exist_ok=True)
    manifest, _ = Build(plan, task.directory, task.output, task.options, task.start).written(None)
    return manifest


def bounds(rows: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous row ranges of nearly equal size (fewer if there are fewer rows)."""
    shards = max(1, min(shards, rows))
    cuts = [round(i * rows / shards) for i in range(shards + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(shards)]


def build(table: str, output: str, *, rescore: str | None, options: BuildOptions, shards: int,
          engine: str = "local", scheduler: str | None = None, wait: bool = True,
          on_wait: Any = None, refine: tuple[str, ...] = ()) -> dict[str, Any]:
    """Build ``output`` from ``table`` as ``shards`` segments (see the module's description)."""
    engines.check_engine(engine)
    plan = plan_build(table, rescore, options, refine)  # everything that can refuse the build, before the lock
    rows = plan.source.rows
    if not rows:
        from vecx.errors import DataError

        raise DataError(f"{table}: no vectors to index (empty table)")
    ranges = bounds(rows, shards)
    with store.Writer(output, wait=wait, on_wait=on_wait) as writer:
        version = writer.path
        assert version is not None, "the writer's version directory exists inside its with block"
        tasks = [ShardTask(table, rescore, options, lo, hi, os.path.join(version, f"tmp-shard-{i}"), output, refine)
                 for i, (lo, hi) in enumerate(ranges)]
        manifests = engines.run(build_shard, tasks, engine, scheduler)
        body = _assemble(version, tasks, manifests, output)
        writer.commit(body)
    return store.open_version(output)[1]


def _assemble(version: str, tasks: list[ShardTask], manifests: list[dict[str, Any]], output: str) -> dict[str, Any]:
    """Moves every shard's files into the version under its segment prefix (the chain files once) and
    returns the index's manifest."""
    from vecx.indexes.update import SHARED

    segments = []
    try:
        for number, (task, manifest) in enumerate(zip(tasks, manifests, strict=True)):
            segment = Segment("" if number == 0 else f"seg{number}-", task.start, int(manifest["rows"]),
                              (manifest["table"]["fingerprint"],) if number == 0 and manifest["table"].get(
                                  "fingerprint") else ())
            names = store.segment_files(manifest) + ([n for n in SHARED if os.path.exists(
                os.path.join(task.directory, n))] if number == 0 else [])
            for name in names:
                os.rename(os.path.join(task.directory, name),
                          os.path.join(version, name if name in SHARED else segment.prefix + name))
            store._rmtree(task.directory, ignore_errors=False)
            segments.append(segment)
    except OSError as exc:
        raise write_failure(output, exc) from None
    body = dict(manifests[0])
    body["rows"] = sum(s.rows for s in segments)
    body["segments"] = [s.to_json() for s in segments]
    if (body.get("rescore") or {}).get("multi"):
        body["rescore"] = {**body["rescore"], "tokens": sum(int(m["rescore"]["tokens"]) for m in manifests)}
    return body
