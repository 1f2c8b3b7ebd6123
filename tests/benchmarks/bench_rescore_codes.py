"""Rescoring from compressed codes: recall@10 against the bytes a vector keeps in memory.

For each set, a first stage of 1-bit RaBitQ codes (an exhaustive scan, and a Hamming graph over
their sign bits: ``--scan graph``) is rescored by float32 vectors (read from disk, the usual
setup), by float16 vectors (exact scores, half the bytes), by per-dimension int8 codes and by 4-bit
extended RaBitQ codes (both scored by their codec).
Memory per vector counts the first stage's codes (and graph links, for the graph) and the
rescoring rows, which then fit in memory too. Each index is searched by ``Searcher.search``
for the set's 1,000 queries (batch; QPS the best of three after one untimed search), recall@10
against its exact ground truth.

    python tests/benchmarks/bench_rescore_codes.py --out /tmp/bench-rescore-codes.md
"""

from __future__ import annotations

import os
import tempfile
from functools import partial

from _harness import begin, best, finish, log, shared_set, table

SETS = [("debian-minilm-30k", "cosine"), ("glove50-100k", "cosine")]
RESCORERS = [(None, "float32 (from disk)"), ("f16", "float16 vectors, exact"),
             ("int8", "per-dimension int8 codes, codec"),
             ("binarize:mode=rabitq:bits=4", "4-bit RaBitQ codes, estimator")]
FACTORS = (1, 4, 10, 20)


def run_set(name: str, metric: str, work: str) -> list[list[object]]:
    from vecx import api
    from vecx.indexes.build import BuildOptions
    from vecx.indexes.evaluate import recall_at
    from vecx.indexes.search import Searcher

    q, truth, imported = shared_set(name, metric, work)
    first = os.path.join(work, f"{name}.rq.parquet")
    api.encode_file(imported, first, "binarize:mode=rabitq")
    out = []
    for scan in ("exhaustive", "graph"):
        for spec, label in RESCORERS:
            rescore = imported
            if spec is not None:
                rescore = os.path.join(work, f"{name}.{spec.replace(':', '_')}.parquet")
                if not os.path.exists(rescore):
                    api.encode_file(imported, rescore, spec)
            index = os.path.join(work, f"{name}.{scan}.vecx")
            manifest = api.build_index(first, index, rescore=rescore, options=BuildOptions(scan=scan)).manifest
            searcher = Searcher(index)
            searcher.use_compiled_scans()
            qq = searcher.check_queries(q, "queries")
            files = manifest["files"]
            rows = manifest["rows"]
            first_bytes = files["codes.bin"]["bytes"] + (files["graph.usearch"]["bytes"] if scan == "graph" else 0)
            rescore_bytes = files["rescore.npy"]["bytes"]
            in_memory = first_bytes / rows + (0 if spec is None else rescore_bytes / rows)
            cells = []
            for factor in FACTORS:
                search = partial(searcher.search, qq, 10, oversample=factor, rescore=factor > 1)
                found, _ = search()
                cells += [f"{recall_at(found, truth, 10):.4f}", f"{len(q) / best(search):,.0f}"]
            searcher.close()
            log(f"{name} {scan} {label}: {cells}")
            out.append([name, f"1-bit RaBitQ, {scan}", label, f"{in_memory:,.0f}",
                        f"{rescore_bytes / rows:,.0f}", *cells])
    return out


def main() -> None:
    out, cmdline, start = begin(__doc__)
    with tempfile.TemporaryDirectory(prefix="bench-rescore-codes-") as work:
        rows = [row for name, metric in SETS for row in run_set(name, metric, work)]
    header = ["set", "first stage", "rescored by", "bytes/vector in memory", "rescoring bytes/vector"]
    for factor in FACTORS:
        header += [f"recall@10 x{factor}" if factor > 1 else "recall@10 (no rescoring)", "QPS"]
    finish(out, cmdline, start, table(header, rows))


if __name__ == "__main__":
    main()
