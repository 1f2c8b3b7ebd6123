"""Why two JSON records are similar: their cosine under a ``vsa`` stage, split by key path (``vecx vsa explain``).

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

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")


def contributions(vsa: Any, record: dict[str, Any], vectors: Any) -> list[dict[str, Any]]:
    """For each item vector (its ``vsa`` output, rows of ``vectors``): the cosine between ``record``
    and the item, and each key path's contribution to it (field pairs as one more row), largest first."""
    from vecx.codecs.vsa.atoms import leaf_paths

    record = {k: v for k, v in record.items() if k != "id"}
    full = vsa.encoder().encode([record], normalize=False)[0].astype(np.float64)
    linear = vsa.encoder(pairs=0.0)
    paths = leaf_paths(record)
    parts = {p: linear.encode([record], normalize=False, only_path=p)[0].astype(np.float64) for p in paths}
    pairs = full - sum(parts.values()) if parts else full
    norm = float(np.linalg.norm(full)) or 1.0
    out = []
    for x in vectors:
        x = np.asarray(x, dtype=np.float64)
        xn = float(np.linalg.norm(x)) or 1.0
        rows: list[dict[str, Any]] = [
            {"path": p, "value": _show(paths[p]), "contribution": float(parts[p] @ x) / norm / xn} for p in paths]
        if vsa.values["pairs"]:
            rows.append({"path": "(field pairs)", "value": "conjunctions of fields in one object",
                         "contribution": float(pairs @ x) / norm / xn})
        rows.sort(key=lambda r: -r["contribution"])
        for r in rows:
            r["contribution"] = round(r["contribution"], 6)
        out.append({"cosine": round(float(full @ x) / norm / xn, 6), "fields": rows})
    return out


def _show(values: list[Any]) -> str:
    import orjson

    text = ", ".join(v if isinstance(v, str) else orjson.dumps(v).decode() for v in values)
    return text if len(text) <= 60 else text[:57] + "..."
