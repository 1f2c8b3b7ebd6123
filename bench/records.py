"""``vecx bench --records``: JSON record encoders against feature hashing, on perturbed partial records.

The task a user of ``vsa`` has: find a record's duplicates from a damaged copy of it. From a JSONL
file of records and a label field (records with equal labels are duplicates of each other; a list
of labels puts a record in several groups; a record with no label is a group of its own), a
seeded sample of records becomes queries, each damaged the same way for every encoder:

- every field of every object is removed with probability ``remove`` (at least one top-level
  field stays);
- every number is moved by a uniform amount of up to ``shift`` times its path's range over the
  records (integers stay integers); booleans and numeric strings are left alone;
- every array is reordered.

The label field and the ``drop`` fields (identifiers a query would not have) are removed from
records and queries alike before anything is encoded. Each query is ranked against every record
by exact cosine; recall@k is the share of its source's group (the source included) found in the
top ``k``, out of ``min(k, group size)``, averaged over queries. The baseline, at each encoder's
dimension: every ``path=value`` token (``prizes[].year=1903``) hashed with blake2b to one signed
dimension, summed, normalized.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, RowError, UsageError, where
from vecx.progress import SILENT

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")

#: The encoders compared when none is given: vsa at its defaults.
DEFAULT_SPECS = ("vsa:2048",)


@dataclass
class RecordsOptions:
    """The task: which field labels duplicates, what queries lose, how many there are."""

    label: str
    drop: tuple[str, ...] = ()
    queries: int = 1000
    remove: float = 0.3
    shift: float = 0.02
    k: int = 10
    seed: int = 0
    command: str | None = None


@dataclass
class RecordsTask:
    """Records and queries as every encoder sees them, and each query's group of duplicates."""

    records: list[dict[str, Any]]
    queries: list[dict[str, Any]]
    relevant: list[Any]  # per query, the sorted row numbers of its source's group
    sources: Any  # per query, the row number of the record it was made from
    labelled: int = 0  # records that carried the label field
    summary: dict[str, int] = field(default_factory=dict)  # records, queries, groups, largest group


def load_task(path: str, options: RecordsOptions) -> RecordsTask:
    """Read the records, strip the label and ``drop`` fields, and make the damaged queries."""
    from vecx.formats.records import open_records
    from vecx.formats.source import ReadOptions

    if not 0 <= options.remove < 1:
        raise UsageError(f"--remove {options.remove}: give a share of fields in [0, 1)")
    if not 0 <= options.shift <= 1:
        raise UsageError(f"--shift {options.shift}: give a share of each path's range in [0, 1]")
    if options.queries < 1 or options.k < 1:
        raise UsageError("--query-count and -k must be at least 1")
    source = open_records(path, ReadOptions(records=True))
    records, labels, labelled = [], [], 0
    for batch in source.batches():
        for row, record in enumerate(batch.vectors):
            record = dict(record)
            if options.label in record:
                labels.append(_label_values(record.pop(options.label), path, batch.offset + row, options.label))
                labelled += 1
            elif options.label == getattr(source, "id_field", None):  # the id field is the label (never encoded)
                labels.append((batch.ids[row].as_py() if hasattr(batch.ids[row], "as_py") else batch.ids[row],))
                labelled += 1
            else:
                labels.append(())
            for name in options.drop:
                _drop(record, name.split("."))
            records.append(record)
    if not labelled:
        raise DataError(f"{path}: no record has the label field {options.label!r}",
                        hint="give --label FIELD, the top-level field equal on records that are duplicates")
    groups = _groups(labels)
    rng = np.random.default_rng(options.seed)
    sources = np.sort(rng.choice(len(records), size=min(options.queries, len(records)), replace=False))
    ranges = _number_ranges(records)
    queries = [_damage(records[int(i)], rng, options, ranges) for i in sources]
    relevant = [groups_of(labels[int(i)], int(i), groups) for i in sources]
    sizes = {"records": len(records), "queries": len(queries), "groups": len({tuple(r) for r in relevant}),
             "largest group": max(len(r) for r in relevant)}
    return RecordsTask(records, queries, relevant, sources, labelled, sizes)


def _label_values(value: Any, path: str, row: int, name: str) -> tuple[Any, ...]:
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, dict | list) for v in values):
        raise DataError(f"{path}: record {row + 1}: label field {name!r} holds an object or nested list",
                        hint="labels are strings or numbers (or a list of them)")
    return tuple(v for v in values if v is not None)


def _groups(labels: list[tuple[Any, ...]]) -> dict[Any, list[int]]:
    members: dict[Any, list[int]] = {}
    for row, values in enumerate(labels):
        for value in values:
            members.setdefault(value, []).append(row)
    return members


def groups_of(labels: tuple[Any, ...], row: int, groups: dict[Any, list[int]]) -> Any:
    """The rows sharing a label with ``row`` (``row`` itself included), sorted."""
    rows = {row}
    for value in labels:
        rows.update(groups[value])
    return np.array(sorted(rows), dtype=np.int64)


def _drop(record: dict[str, Any], parts: list[str]) -> None:
    """Remove a field, ``a.b`` reaching into objects (and into every object of an array)."""
    head, rest = parts[0], parts[1:]
    if head not in record:
        return
    if not rest:
        del record[head]
        return
    inner = record[head]
    for item in inner if isinstance(inner, list) else [inner]:
        if isinstance(item, dict):
            _drop(item, rest)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def leaves(value: Any, path: str = "") -> Any:
    """``(path, scalar)`` of every scalar of a record: ``prizes[].year`` (array items share their
    array's path)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, _child(path, key))
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item, path + "[]")
    else:
        yield path, value


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _number_ranges(records: list[dict[str, Any]]) -> dict[str, float]:
    """The range (max - min) of the numbers at every path."""
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for record in records:
        for path, value in leaves(record):
            if _is_number(value) and math.isfinite(value):
                lo[path] = min(lo.get(path, value), value)
                hi[path] = max(hi.get(path, value), value)
    return {path: hi[path] - lo[path] for path in lo}


def _damage(record: dict[str, Any], rng: Any, options: RecordsOptions, ranges: dict[str, float]) -> dict[str, Any]:
    """A damaged copy of ``record``: fields removed, numbers moved, arrays reordered."""

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {key: walk(item, _child(path, key)) for key, item in value.items()
                    if rng.random() >= options.remove}
        if isinstance(value, list):
            items = [walk(item, path + "[]") for item in value]
            return [items[i] for i in rng.permutation(len(items))]
        if _is_number(value) and options.shift and ranges.get(path):
            moved = value + rng.uniform(-options.shift, options.shift) * ranges[path]
            return round(moved) if isinstance(value, int) else moved
        return value

    damaged = {key: walk(item, key) for key, item in record.items() if rng.random() >= options.remove}
    if not damaged and record:  # at least one field stays
        key = list(record)[int(rng.integers(len(record)))]
        damaged[key] = walk(record[key], key)
    return damaged


# ---- the encoders ------------------------------------------------------------------------------
def tokens(value: Any) -> Any:
    """The ``path=value`` tokens of a record (arrays add ``[]`` to the path)."""
    return (f"{path}={scalar}" for path, scalar in leaves(value))


def hashing(records: list[dict[str, Any]], dim: int) -> Any:
    """Feature hashing of ``path=value`` tokens: one signed dimension per token, summed, unit length."""
    x = np.zeros((len(records), dim), dtype=np.float32)
    for row, record in enumerate(records):
        for token in tokens(record):
            h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
            x[row, h % dim] += 1.0 if h >> 63 else -1.0
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def recall_at(x: Any, q: Any, relevant: list[Any], k: int) -> float:
    """Mean over queries of the share of their group found in the exact cosine top ``k``."""
    from vecx.indexes.truth import exact_topk

    k = min(k, len(x))
    rows, _ = exact_topk(np.asarray(q, np.float32), iter([(0, np.asarray(x, np.float32))]), k, "cosine")
    found = [np.isin(rows[i], relevant[i]).sum() / min(k, len(relevant[i])) for i in range(len(relevant))]
    return float(np.mean(found))


def run_records(path: str, specs: list[str] | None, options: RecordsOptions, progress: Any = SILENT) -> dict[str, Any]:
    """Every encoder of ``specs`` (vsa at its defaults if none) and hashing at each of their dimensions,
    on the damaged-record task of ``path``: recall@k, the gain over hashing, fit and encode time."""
    from vecx.chain import Chain
    from vecx.space import JSON, VectorSpec

    specs = list(specs or DEFAULT_SPECS)

    def planned(spec: str) -> Chain:
        chain = Chain.from_spec(spec, VectorSpec(0, JSON, "cosine", False), options.seed)
        if chain.output.dtype not in ("float32", "float16"):
            raise UsageError(f"--records compares encodings by cosine: {spec!r} gives {chain.output.dtype} codes",
                             hint="give JSON encoders whose output is float vectors, e.g. vsa:2048")
        return chain

    for spec in specs:  # every spec checked before any work
        planned(spec)
    task = load_task(path, options)
    rows: list[dict[str, Any]] = []
    baselines: dict[int, float] = {}
    progress.start(len(specs), f"{len(task.queries):,} damaged records against {len(task.records):,}")
    for spec in specs:  # one fitted chain at a time: an encoder's caches can be large
        chain = planned(spec)
        dim = chain.output.dim
        if dim not in baselines:
            started = time.perf_counter()
            x, q = hashing(task.records, dim), hashing(task.queries, dim)
            baselines[dim] = recall_at(x, q, task.relevant, options.k)
            rows.append({"encoder": f"hashing:{dim}", "dim": dim, f"recall@{options.k}": baselines[dim],
                         "gain": 0.0, "encode_s": round(time.perf_counter() - started, 3), "fit_s": 0.0})
        started = time.perf_counter()
        try:
            chain.fit(lambda stage: task.records)
            fitted = time.perf_counter()
            x = chain.encode(task.records)
        except RowError as exc:  # the record's row in the file (records are read in order)
            raise DataError(f"{where(path, exc.row)}: {exc.detail}", hint=exc.hint) from None
        try:
            q = chain.encode_query(task.queries)
        except RowError as exc:  # a damaged copy: name the record it came from
            raise DataError(f"{where(path, int(task.sources[exc.row]))}: damaged copy: {exc.detail}",
                            hint=exc.hint) from None
        recall = recall_at(x, q, task.relevant, options.k)
        rows.append({"encoder": spec, "spec": chain.spec, "dim": dim, f"recall@{options.k}": recall,
                     "gain": recall - baselines[dim], "encode_s": round(time.perf_counter() - fitted, 3),
                     "fit_s": round(fitted - started, 3)})
        progress.advance(1)
    progress.close()
    return {"records": path, "label": options.label, "drop": list(options.drop), "k": options.k,
            "queries": len(task.queries), "rows_total": len(task.records), "labelled": task.labelled,
            "task": task.summary, "damage": {"remove": options.remove, "shift": options.shift, "seed": options.seed},
            "rows": rows, "command": options.command}


# ---- the report --------------------------------------------------------------------------------
def header(report: dict[str, Any]) -> list[str]:
    """Column titles of the table."""
    return ["encoder", "dim", f"recall@{report['k']}", "vs hashing", "fit s", "encode s"]


def cells(report: dict[str, Any]) -> list[list[str]]:
    """One list of strings per row, matching :func:`header`."""
    k = report["k"]
    return [[row["encoder"], str(row["dim"]), f"{row[f'recall@{k}']:.4f}",
             "-" if row["encoder"].startswith("hashing:") else f"{row['gain']:+.4f}",
             f"{row['fit_s']:.2f}", f"{row['encode_s']:.2f}"] for row in report["rows"]]


def description(report: dict[str, Any]) -> str:
    """What was measured, in one paragraph."""
    task, damage = report["task"], report["damage"]
    dropped = f"; {', '.join(report['drop'])} dropped" if report["drop"] else ""
    return (f"{task['queries']:,} damaged copies of records ({damage['remove']:.0%} of fields removed, numbers "
            f"moved by up to {damage['shift']:.0%} of their range, arrays reordered; seed {damage['seed']}) "
            f"against {task['records']:,} records; duplicates share {report['label']!r} "
            f"({task['groups']:,} groups among the queries, the largest {task['largest group']}){dropped}. "
            f"recall@{report['k']}: share of a query's group in its exact cosine top {report['k']}.")


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table, with what was measured and the command."""
    lines = ["| " + " | ".join(header(report)) + " |", "|---|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells(report)]
    command = f"\n\nCommand: `{report['command']}`" if report.get("command") else ""
    return description(report) + "\n\n" + "\n".join(lines) + command + "\n"
