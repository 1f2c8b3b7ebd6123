"""Why two JSON records are similar: the cosine of a ``vsa`` index split by key path (``vecx vsa explain``).

The record side must be known as JSON (``--json``, or the ``--like`` item's line in the source
JSONL given with ``--records``); the other side is an item of the index, known only by its
vector. The encoding is linear in the scalars except for the field-pair conjunctions, so the
record's raw vector is ``sum_p c_p + pairs``, where ``c_p`` encodes only the scalars at key
path ``p`` (everything else zero, array positions kept). Each path's contribution is
``<c_p, x> / (|r| |x|)``: the rows add up exactly to the cosine between the record and the
item. A path whose value the item shares contributes about its share of the record's norm; an
unshared one about zero (crosstalk, about ``1/sqrt(dim)``).
"""

from __future__ import annotations

from typing import Any

from vecx._lazy import lazy
from vecx.errors import DataError, UsageError

np = lazy("numpy")


def explain(index: str, *, like: list[Any], record: dict[str, Any] | None = None,
            records_file: str | None = None) -> list[dict[str, Any]]:
    """Per key path contributions to the cosine between a record and indexed items.

    With ``record``: the record against every ``like`` item. Without: the first ``like`` item's
    record (looked up by id in ``records_file``) against each further ``like`` item.
    """
    from vecx.codecs.vsa import Vsa
    from vecx.indexes.hnsw import Searcher

    searcher = Searcher(index)
    if not searcher.chain.stages or not isinstance(searcher.chain.stages[0], Vsa):
        raise UsageError(f"{index}: not an index of JSON records (its chain does not start with vsa)",
                         hint="build it from a 'vecx vsa' table")
    vsa = searcher.chain.stages[0]
    if not like:
        raise UsageError("give --like ID (the indexed item to compare with)")
    if record is None:
        if len(like) < 2 or not records_file:
            raise UsageError("give --json RECORD and --like ID, or --like A --like B --records FILE.jsonl "
                             "(the index keeps vectors, not records: A's record is read from FILE)")
        record = _find_record(records_file, like[0])
        targets = like[1:]
        query_label = f"{like[0]} (from {records_file})"
    else:
        targets = like
        query_label = "--json"
    record = {k: v for k, v in record.items() if k != "id"}
    vectors, approximate = _item_vectors(searcher, vsa, searcher.row_of(list(targets)))
    full = vsa.encoder().encode([record], normalize=False)[0].astype(np.float64)
    linear = vsa.encoder(pairs=0.0)
    from vecx.codecs._jsonvsa import leaf_paths

    paths = leaf_paths(record)
    parts = {p: linear.encode([record], normalize=False, only_path=p)[0].astype(np.float64) for p in paths}
    pairs = full - sum(parts.values()) if parts else full
    norm = float(np.linalg.norm(full)) or 1.0
    out = []
    for target, x in zip(targets, vectors):
        x = np.asarray(x, dtype=np.float64)
        xn = float(np.linalg.norm(x)) or 1.0
        rows = [{"path": p, "value": _show(paths[p]), "contribution": float(parts[p] @ x) / norm / xn}
                for p in paths]
        if vsa.values["pairs"]:
            rows.append({"path": "(field pairs)", "value": "conjunctions of fields in one object",
                         "contribution": float(pairs @ x) / norm / xn})
        rows.sort(key=lambda r: -r["contribution"])
        cosine = float(full @ x) / norm / xn
        for r in rows:
            r["contribution"] = round(r["contribution"], 6)
        out.append({"query": query_label, "like": target, "cosine": round(cosine, 6),
                    "approximate": approximate, "fields": rows})
    return out


def _item_vectors(searcher: Any, vsa: Any, rows: Any) -> tuple[Any, bool]:
    """The vsa vectors of indexed rows: stored floats, rescoring floats, or decoded codes (approximate)."""
    chain = searcher.chain
    if len(chain.stages) == 1:
        return np.asarray(searcher.codes_of(rows), dtype=np.float32), False
    rescore = searcher.rescore_chain
    if searcher.rescore_vectors is not None and rescore is not None and len(rescore.stages) == 1 \
            and rescore.stages[0].spec == vsa.spec:
        return np.asarray(searcher.rescore_vectors[rows], dtype=np.float32), False
    if chain.decoded_space.dim == vsa.output.dim and chain._first_decoded() == 1:
        return np.asarray(chain.decode(searcher.codes_of(rows)), dtype=np.float32), True
    raise UsageError(f"{searcher.path}: the vsa vectors cannot be recovered from this index's codes",
                     hint="build the index with --rescore on the float 'vecx vsa' table")


def _find_record(path: str, item_id: Any) -> dict[str, Any]:
    import orjson

    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"--records {path}: cannot read ({exc.strerror})") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise DataError(f"{path}: line {number}: not valid JSON") from None
            if isinstance(obj, dict) and str(obj.get("id")) == str(item_id):
                return obj
    raise DataError(f"{path}: no record with id {item_id!r}")


def _show(values: list[Any]) -> str:
    import orjson

    text = ", ".join(v if isinstance(v, str) else orjson.dumps(v).decode() for v in values)
    return text if len(text) <= 60 else text[:57] + "..."
