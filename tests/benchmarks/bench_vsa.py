"""VSA benchmark: vecx vsa vs feature hashing of path=value tokens, on the Nobel laureates.

Every laureate's record minus ``id``, names (``firstname``, ``surname``) and every prize's
``motivation`` is a query against all 992 full records (the query's own record excluded):

  (a) co-laureate recall@10: share of the laureates who share a prize with the query (labels.tsv)
      found in the top 10 (denominator min(10, number of co-laureates); queries with none skipped);
  (b) category precision@10: share of the top 10 sharing a prize category with the query.

Baseline, in the same run: the record flattened to ``path=value`` tokens (``prizes[].year=1903``),
each hashed (blake2b) to one of D dimensions with a hashed sign, summed, cosine. Ranking is
exact (brute-force cosine, or Hamming on the packed bits after ``binarize``), so the figures are
those of the encodings, not of a graph. Throughput: records/s of the vsa encoder (library call,
cache cold, fit excluded; on one thread, the default, then on all cores) next to the hashing baseline in the
same process, as a ratio.

    python tests/benchmarks/bench_vsa.py            # D = 1024, 2048, 4096 and binarize
    python tests/benchmarks/bench_vsa.py --quick    # D = 1024 only
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))

from vecx.bench.records import hashing  # noqa: E402  (the baseline vecx bench --records runs)
from vecx.codecs.binarize import Binarize  # noqa: E402
from vecx.codecs.vsa import Vsa  # noqa: E402
from vecx.space import JSON, VectorSpec  # noqa: E402
from vecx.spec import parse  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data",
                    "nobel-laureates-json")


def load() -> tuple[list[dict], list[dict], list[set[int]], list[set[str]]]:
    records = [orjson.loads(line) for line in open(os.path.join(DATA, "records.jsonl"), "rb")]
    with open(os.path.join(DATA, "labels.tsv"), encoding="utf-8") as handle:
        labels = list(csv.DictReader(handle, delimiter="\t"))
    row_of = {r["id"]: n for n, r in enumerate(records)}
    assert [label["id"] for label in labels] == [r["id"] for r in records]
    co = [{row_of[x] for x in label["co_laureate_ids"].split(",") if x} for label in labels]
    cats = [set(label["categories"].split(",")) for label in labels]
    data = [{k: v for k, v in r.items() if k != "id"} for r in records]  # vecx never encodes the id field
    queries = []
    for r in records:
        q = {k: v for k, v in r.items() if k not in ("id", "firstname", "surname")}
        if "prizes" in q:
            q["prizes"] = [{k: v for k, v in p.items() if k != "motivation"} if isinstance(p, dict) else p
                           for p in q["prizes"]]
        queries.append(q)
    return data, queries, co, cats


def scores_of(x: np.ndarray, q: np.ndarray, bits: bool) -> np.ndarray:
    if bits:
        xb = np.unpackbits(x, axis=1).astype(np.float32)
        qb = np.unpackbits(q, axis=1).astype(np.float32)
        return -(qb.sum(1)[:, None] + xb.sum(1)[None, :] - 2 * qb @ xb.T)  # minus Hamming
    return q @ x.T


def evaluate(x: np.ndarray, q: np.ndarray, co: list[set[int]], cats: list[set[str]], bits: bool = False):
    s = scores_of(x, q, bits)
    np.fill_diagonal(s, -np.inf)
    top = np.argsort(-s, axis=1, kind="stable")[:, :10]
    recall = [len(set(top[i]) & co[i]) / min(10, len(co[i])) for i in range(len(co)) if co[i]]
    precision = [np.mean([bool(cats[j] & cats[i]) for j in top[i]]) for i in range(len(co))]
    return float(np.mean(recall)), float(np.mean(precision))


def vsa_codec(spec: str, data: list[dict]) -> Vsa:
    stage = parse(spec)[0]
    codec = Vsa(Vsa.resolve(stage, "bench", {"seed": 7}), VectorSpec(0, JSON))
    codec.fit(data)
    return codec


def binarized(x: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = Binarize(Binarize.resolve(parse("binarize")[0], "bench"), VectorSpec(x.shape[1], "float32", "cosine", True))
    b.fit(x)
    return b.encode(x), b.encode(q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--variants", action="store_true", help="also the design variants tried (D = 1024)")
    args = ap.parse_args()
    data, queries, co, cats = load()
    dims = [1024] if args.quick else [1024, 2048, 4096]
    print(f"records {len(data)}, queries {len(queries)} (with co-laureates: {sum(1 for c in co if c)})")
    print("| D | encoding | co-laureate recall@10 | category precision@10 | vs hashing (recall, precision) |")
    print("|---|---|---|---|---|")
    for dim in dims:
        hx, hq = hashing(data, dim), hashing(queries, dim)
        base = evaluate(hx, hq, co, cats)
        base_bits = evaluate(*binarized(hx, hq), co, cats, bits=True)
        codec = vsa_codec(f"vsa:{dim}", data)
        vx, vq = codec.encode(data), codec.encode_query(queries)
        ours = evaluate(vx, vq, co, cats)
        ours_bits = evaluate(*binarized(vx, vq), co, cats, bits=True)
        for name, got, ref in (("hashing", base, base), ("vsa", ours, base),
                               ("hashing,binarize", base_bits, base_bits), ("vsa,binarize", ours_bits, base_bits)):
            print(f"| {dim} | {name} | {got[0]:.3f} | {got[1]:.3f} | {got[0] / ref[0]:.2f}x, {got[1] / ref[1]:.2f}x |",
                  flush=True)
    if args.variants:
        print("\nDesign variants at D = 1024 (vsa parameters; exact cosine):")
        print("| spec | recall@10 | precision@10 |")
        print("|---|---|---|")
        half = "alpha=0.7071067811865476:beta=0.7071067811865476"
        for spec in ("vsa:1024", "vsa:1024:pairs=0", "vsa:1024:pairs=3", "vsa:1024:soft=0", "vsa:1024:soft=0.5",
                     "vsa:1024:levels=4", "vsa:1024:levels=1", f"vsa:1024:{half}", "vsa:1024:idf=false",
                     "vsa:1024:idf_floor=0.1", "vsa:1024:gamma=0.3", "vsa:1024:mode=perm", "vsa:1024:block=1024"):
            codec = vsa_codec(spec, data)
            got = evaluate(codec.encode(data), codec.encode_query(queries), co, cats)
            print(f"| `{spec}` | {got[0]:.3f} | {got[1]:.3f} |", flush=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print("\nEncode throughput at D = 2048 (records/s, best of 3, cold cache each time; fit excluded; "
          f"threads: 1, the default, then all {cores} cores):")
    print("| encoder | threads | records/s | vs hashing |")
    print("|---|---|---|---|")
    best_hash = min(_timed(lambda: hashing(data, 2048)) for _ in range(3))
    print(f"| hashing (Python, same process) | 1 | {len(data) / best_hash:,.0f} | 1.00x |")
    for spec in ("vsa:2048", "vsa:2048:mode=perm", "vsa:2048:block=2048"):
        codec = vsa_codec(spec, data)
        best = min(_timed(lambda codec=codec: Vsa.encode(_cold(codec), data)) for _ in range(3))
        print(f"| `{spec}` | 1 | {len(data) / best:,.0f} | {best_hash / best:.2f}x |", flush=True)
        best = min(_timed(lambda codec=codec: _cold(codec).encoder().encode(data, workers=0)) for _ in range(3))
        print(f"| `{spec}` | {cores} | {len(data) / best:,.0f} | {best_hash / best:.2f}x |", flush=True)


def _cold(codec: Vsa) -> Vsa:
    codec.encoder_ = None  # a fresh encoder: empty value cache
    return codec


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
