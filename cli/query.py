"""``vecx query``: search an index by vectors, ids or JSON records; results as a table, JSONL, JSON or CSV."""

import sys
from typing import Annotated, Any, Optional

import typer

from vecx.cli.common import Debug, JsonFormat, Quiet, emit_json, examples, message

FORMATS = ("table", "jsonl", "json", "csv")

#: What a query loads, loaded before it runs while the collector is paused (see vecx.cli.run).
LIBRARIES = ("numpy", "usearch.index", "vecx.api", "vecx.indexes.search", "vecx.formats.queries", "vecx.formats.multi")


def register(app: typer.Typer) -> None:
    """Add ``vecx query``."""

    @app.command("query", epilog=examples(
        "vecx query docs.vecx --vector q.npy -k 10",
        "vecx query docs.vecx --like 1234 -k 10 --fields word,title",
        "cat queries.jsonl | vecx query docs.vecx -k 10 > results.jsonl",
        "vecx query docs.vecx --vector q.npy --where \"lang = 'en'\" --oversample 4",
        "vecx query docs.vecx --vector q.npy --oversample 10 --format csv",
        "vecx query docs.fde.vecx --multi-vector q_tokens.npy -k 10 --first-stage both",
        "vecx query laureates.vecx --record '{\"prizes\": [{\"category\": \"physics\"}]}' -k 5",
    ))
    def query(index: Annotated[str, typer.Argument(metavar="INDEX", help="An index built by 'vecx index'.", show_default=False)],
              vector: Annotated[Optional[str], typer.Option("--vector", metavar="FILE", help="Query vectors: .npy (1-D or 2-D), .parquet, .jsonl, .csv ... (- for stdin).", show_default=False)] = None,
              like: Annotated[Optional[list[str]], typer.Option("--like", metavar="ID", help="Use the item with this id as the query (repeatable); it is left out of its results.", show_default=False)] = None,
              k: Annotated[int, typer.Option("-k", metavar="K", min=1, help="Results per query (at most the index size).")] = 10,
              align: Annotated[Optional[str], typer.Option("--align", metavar="STATE", help="Query vectors of another model, mapped into the index's space by this map ('vecx align fit --from THEIR_MODEL --to INDEX_MODEL').", show_default=False)] = None,
              model: Annotated[Optional[str], typer.Option("--model", metavar="NAME", help="The model the query vectors come from, as named at import: for an index of rows an align stage mapped into another model's space, NAME may be that model (its queries search the mapped rows).", show_default=False)] = None,
              oversample: Annotated[Optional[str], typer.Option("--oversample", metavar="X[,Y...]", help="Rescoring: fetch X*k candidates, rescore them, keep k (1 = off; default: the index's). With several rescoring stages, one factor per stage: X*k candidates for the first, which keeps Y*k for the next ...", show_default=False)] = None,
              rescore: Annotated[Optional[int], typer.Option("--rescore", metavar="X", min=1, hidden=True)] = None,
              expansion: Annotated[Optional[int], typer.Option("--expansion", metavar="N", min=1, help="Search candidate list size (default: the index's).", show_default=False)] = None,
              fields: Annotated[Optional[str], typer.Option("--fields", metavar="A,B", help="Payload columns to show (comma-separated; 'all' for every one).", show_default=False)] = None,
              where: Annotated[Optional[str], typer.Option("--where", metavar="FILTER", help="Payload filter, e.g. \"lang = 'en' and year >= 2000\" (=, !=, <, <=, >, >=, [not] in (...), [not] like 'a%', [not] between A and B, is [not] null, and, or, not; `quoted name`).", show_default=False)] = None,
              fmt: Annotated[Optional[str], typer.Option("--format", metavar="FORMAT", help="table (default on a terminal), jsonl (default in a pipe), json or csv.", show_default=False)] = None,
              multi_vector: Annotated[Optional[str], typer.Option("--multi-vector", metavar="FILE", help="Query token sets for a multi-vector index: a 2-D .npy is one query's vectors; a multi-vector table or JSONL of lists is a batch.", show_default=False)] = None,
              first_stage: Annotated[Optional[str], typer.Option("--first-stage", metavar="fde|mean|both", help="Multi-vector index: candidates from the FDE graph, the mean-vector graph, or both; then exact MaxSim rerank. [default: fde]", show_default=False)] = None,
              scan: Annotated[Optional[str], typer.Option("--scan", metavar="exhaustive|graph|ivf", help="exhaustive: compare every code (exact for the codes); graph: walk the graph; ivf: the --nprobe nearest coarse lists (default: the index's).", show_default=False)] = None,
              nprobe: Annotated[Optional[int], typer.Option("--nprobe", metavar="N", min=1, help="Codes in coarse lists: lists scanned per query (default: the index's).", show_default=False)] = None,
              query_bits: Annotated[Optional[int], typer.Option("--query-bits", metavar="B", min=0, max=8, help="RaBitQ codes (binarize:mode=rabitq): round each query to B bits per coordinate (1-8, faiss's qb) and count bits against the codes: a faster scan, scores of the rounded query; 0: not rounded (default: the index's).", show_default=False)] = None,
              record: Annotated[Optional[str], typer.Option("--record", metavar="RECORD", help="Indexes of JSON records (vecx vsa): query by a record, e.g. '{\"year\": \"1903\"}' (partial records are fine), @FILE.jsonl or - (JSONL on stdin).", show_default=False)] = None,
              json_format: JsonFormat = False,
              quiet: Quiet = False, debug: Debug = False) -> None:
        """Search an index with raw query vectors (encoded through the index's chain) or by item id.

        Without --vector or --like, queries are read from stdin as JSONL: one vector per line, as
        a list or an object with a "vector" field. A batch is searched in one multi-threaded call;
        if any line is malformed, nothing is searched and the error names the line (exit 3).
        """
        from vecx import api
        from vecx.cli.common import factors, output_format, renamed
        from vecx.errors import UsageError

        rescore = renamed("--oversample", factors(oversample), "--rescore", rescore)
        fmt = output_format(fmt, json_format, FORMATS, "table" if sys.stdout.isatty() else "jsonl")
        if sum(x is not None and x != [] for x in (vector, like, multi_vector, record)) > 1:
            raise UsageError("give one of --vector, --multi-vector, --like and --record")
        if align is not None and (like or multi_vector is not None or record is not None):
            raise UsageError("--align maps query vectors (--vector or stdin), not --like, --multi-vector or --record")
        if model is not None and (align is not None or like or multi_vector is not None or record is not None):
            raise UsageError("--model names the model of query vectors (--vector or stdin), without --align")
        if vector is None and not like and multi_vector is None and record is None and sys.stdin.isatty():
            raise UsageError("no query: give --vector FILE, --like ID, --record RECORD, or JSONL vectors on stdin")
        result = api.query(index, vector=vector if vector is not None else (None if like or multi_vector or record
                                                                              else "-"),
                           like=like, json=record, k=k, oversample=rescore, expansion=expansion, where=where,
                           fields=None if fields is None else [f for f in fields.split(",") if f],
                           multi_vector=multi_vector, first_stage=first_stage, scan=scan, nprobe=nprobe,
                           align=align, model=model, query_bits=query_bits)
        if result.clamped:
            message(f"-k {k} is larger than the index; returning {result.k} per query", quiet)
        if result.matching_rows is not None and result.matching_rows < k:
            message(f"--where keeps {result.matching_rows} rows; returning at most that many", quiet)
        _render(result.queries, fmt)


def _render(queries: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        emit_json(queries)
    elif fmt == "jsonl":
        import orjson

        out = sys.stdout.buffer
        for q in queries:
            out.write(orjson.dumps(q) + b"\n")
        out.flush()
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        extra = [k for k in (queries[0]["results"][0] if queries and queries[0]["results"] else {})
                 if k not in ("rank", "id", "score")]
        named = [key for key in ("query_id", "like") if queries and key in queries[0]]  # the query's own id
        writer.writerow(["query", *named, "rank", "id", "score", *extra])
        for q in queries:
            for r in q["results"]:
                writer.writerow([q["query"], *[q[key] for key in named], r["rank"], r["id"], r["score"],
                                 *[r.get(e) for e in extra]])
    else:
        from vecx.cli import render

        for q in queries:
            results = q["results"]
            columns = ["rank", "id", "score"] + [c for c in (results[0] if results else {})
                                                 if c not in ("rank", "id", "score")]
            render.table([columns] + [[f"{r[c]:.4f}" if c == "score" else str(r.get(c)) for c in columns]
                                      for r in results],
                         right=(0, 2), title=f"query {q['query']}" + (f" (like {q['like']})" if "like" in q else
                                                                     f" (id {q['query_id']})" if "query_id" in q else ""))
