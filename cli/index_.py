"""``vecx index`` and ``vecx query``."""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer
from typing import Annotated
from vecx.cli.common import Bar, Debug, Json, Quiet, echo_columns, emit_json, examples, message

FORMATS = ("table", "jsonl", "json", "csv")


def waiting(index: str, pid: int | None) -> None:
    """Say on stderr (always: a silent wait looks like a hang) that another writer holds the index."""
    sys.stderr.write(f"vecx: waiting for another vecx process{f' (pid {pid})' if pid else ''} "
                     f"that is writing {index}\n")
    sys.stderr.flush()


def register(app: typer.Typer) -> None:
    """Add the commands of this module to the app."""

    @app.command("index", epilog=examples(
        "vecx index docs.i8.parquet -o docs.vecx --rescore docs.parquet",
        "vecx index docs.fde.parquet -o docs.vecx --rescore docs.mv.parquet",
        "vecx index docs.f16.parquet -o docs.vecx --connectivity 32 --deterministic",
        "vecx index docs.pq.parquet -o docs.vecx --rescore docs.parquet      # PQ codes: exhaustive ADC scan",
        "vecx index docs.rabitq.parquet -o docs.vecx --scan graph --rescore docs.parquet",
    ))
    def index(table: Annotated[str, typer.Argument(metavar="TABLE", help="Encoded vector table (float32, float16, int8:mode=global or binarize codes; pq and binarize:mode=rabitq codes are scored by their codec).", show_default=False)],
              output: Annotated[str, typer.Option("--output", "-o", metavar="DIR", help="Index to write (a directory; replaced atomically).", show_default=False)],
              rescore: Annotated[Optional[str], typer.Option("--rescore", metavar="TABLE", help="Float32/float16 table of the same source, kept memory-mapped for rescoring (a multi-vector table: exact MaxSim over its token vectors, plus a mean-vector graph for --first-stage mean|both).", show_default=False)] = None,
              connectivity: Annotated[int, typer.Option("--connectivity", metavar="M", min=2, help="Graph edges per node (HNSW M).")] = 16,
              expansion_add: Annotated[int, typer.Option("--expansion-add", metavar="N", min=1, help="Candidate list size while building (efConstruction).")] = 128,
              expansion_search: Annotated[int, typer.Option("--expansion-search", metavar="N", min=1, help="Default candidate list size while searching (ef).")] = 64,
              oversample: Annotated[int, typer.Option("--oversample", metavar="X", min=1, help="Default rescoring factor: fetch X*k candidates, rescore, keep k.")] = 4,
              deterministic: Annotated[bool, typer.Option("--deterministic", help="Single-threaded add in row order: the same graph bytes every time.")] = False,
              scan: Annotated[str, typer.Option("--scan", metavar="auto|exhaustive|graph", help="Default search: exhaustive compares every code (exact for the codes; no graph is built for pq and binarize:mode=rabitq codes, which their codec scores), graph walks the HNSW graph (for rabitq: a Hamming graph over the sign bits whose candidates the estimator ranks). auto: graph, but for pq/rabitq codes only above 200,000 rows.")] = "auto",
              pool: Annotated[int, typer.Option("--pool", metavar="X", min=1, help="--scan graph: the graph returns X times the candidates kept, for the estimator to rank.")] = 4,
              no_wait: Annotated[bool, typer.Option("--no-wait", help="If another vecx process is writing this index, exit 6 at once instead of waiting for it.")] = False,
              quiet: Quiet = False, json: Json = False, debug: Debug = False) -> None:
        """Build a usearch HNSW index over encoded vectors, with ids, payload and optional rescoring vectors.

        The index is a directory (manifest with checksums, graph, rows, chain state); a rebuild
        replaces it atomically, so running queries see the old or the new index, never a mix,
        and a query that is running keeps its version until it ends. Builds of one index take
        turns on a writer lock (.NAME.lock beside it): an overlapping cron job waits, or exits 6
        with --no-wait. A failed or interrupted build leaves the previous index as it was.
        """
        from vecx.indexes.build import build, BuildOptions

        manifest = build(table, output, rescore=rescore, progress=Bar(quiet), options=BuildOptions(
            connectivity=connectivity, expansion_add=expansion_add, expansion_search=expansion_search,
            oversample=oversample, deterministic=deterministic, scan=scan, pool=pool),
            wait=not no_wait, on_wait=lambda pid: waiting(output, pid))
        if json:
            emit_json(manifest)
        else:
            g = manifest["graph"]
            c = manifest.get("codes")
            kind = (f"{c['codec']} codes scored by their codec ({manifest['search']['scan']} scan"
                    + (f", {g['dtype']} {g['metric']} navigation graph)" if g["file"] else ")") if c
                    else f"{g['dtype']} {g['metric']} graph")
            message(f"indexed {manifest['rows']:,} vectors into {output}: {kind}, "
                    f"{manifest['bytes_per_vector']} bytes/vector"
                    + (", rescoring with " + manifest["rescore"]["dtype"] if manifest["rescore"] else ""), quiet)

    @app.command("query", epilog=examples(
        "vecx query docs.vecx --vector q.npy -k 10",
        "vecx query docs.vecx --like 1234 -k 10 --fields word,title",
        "cat queries.jsonl | vecx query docs.vecx -k 10 > results.jsonl",
        "vecx query docs.vecx --vector q.npy --where \"lang = 'en'\" --rescore 4",
        "vecx query docs.vecx --vector q.npy --rescore 10 --format csv",
        "vecx query docs.fde.vecx --multi-vector q_tokens.npy -k 10 --first-stage both",
        "vecx query laureates.vecx --json '{\"prizes\": [{\"category\": \"physics\"}]}' -k 5",
    ))
    def query(index: Annotated[str, typer.Argument(metavar="INDEX", help="An index built by 'vecx index'.", show_default=False)],
              vector: Annotated[Optional[str], typer.Option("--vector", metavar="FILE", help="Query vectors: .npy (1-D or 2-D), .parquet, .jsonl, .csv ... (- for stdin).", show_default=False)] = None,
              like: Annotated[Optional[list[str]], typer.Option("--like", metavar="ID", help="Use the item with this id as the query (repeatable); it is left out of its results.", show_default=False)] = None,
              k: Annotated[int, typer.Option("-k", metavar="K", min=1, help="Results per query (at most the index size).")] = 10,
              rescore: Annotated[Optional[int], typer.Option("--rescore", metavar="X", min=1, help="Oversampling factor for rescoring (1 = off; default: the index's).", show_default=False)] = None,
              expansion: Annotated[Optional[int], typer.Option("--expansion", metavar="N", min=1, help="Search candidate list size (default: the index's).", show_default=False)] = None,
              fields: Annotated[Optional[str], typer.Option("--fields", metavar="A,B", help="Payload columns to show (comma-separated; 'all' for every one).", show_default=False)] = None,
              where: Annotated[Optional[str], typer.Option("--where", metavar="FILTER", help="Payload filter, e.g. \"lang = 'en' and year >= 2000\" (=, !=, <, <=, >, >=, in (...), is [not] null, and, or, not).", show_default=False)] = None,
              fmt: Annotated[Optional[str], typer.Option("--format", metavar="FORMAT", help="table (default on a terminal), jsonl (default in a pipe), json or csv.", show_default=False)] = None,
              multi_vector: Annotated[Optional[str], typer.Option("--multi-vector", metavar="FILE", help="Query token sets for a multi-vector index: a 2-D .npy is one query's vectors; a multi-vector table or JSONL of lists is a batch.", show_default=False)] = None,
              first_stage: Annotated[Optional[str], typer.Option("--first-stage", metavar="fde|mean|both", help="Multi-vector index: candidates from the FDE graph, the mean-vector graph, or both; then exact MaxSim rerank. [default: fde]", show_default=False)] = None,
              scan: Annotated[Optional[str], typer.Option("--scan", metavar="exhaustive|graph", help="exhaustive: compare every code (exact for the codes); graph: walk the graph (default: the index's).", show_default=False)] = None,
              json_query: Annotated[Optional[str], typer.Option("--json", metavar="RECORD", help="Indexes of JSON records (vecx vsa): query by a record, e.g. '{\"year\": \"1903\"}' (partial records are fine), @FILE.jsonl or - (JSONL on stdin).", show_default=False)] = None,
              quiet: Quiet = False, debug: Debug = False) -> None:
        """Search an index with raw query vectors (encoded through the index's chain) or by item id.

        Without --vector or --like, queries are read from stdin as JSONL: one vector per line, as
        a list or an object with a "vector" field. A batch is searched in one multi-threaded call;
        if any line is malformed, nothing is searched and the error names the line (exit 3).
        """
        from vecx import api
        from vecx.errors import UsageError

        fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
        if fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if sum(x is not None and x != [] for x in (vector, like, multi_vector, json_query)) > 1:
            raise UsageError("give one of --vector, --multi-vector, --like and --json")
        if vector is None and not like and multi_vector is None and json_query is None and sys.stdin.isatty():
            raise UsageError("no query: give --vector FILE, --like ID, --json RECORD, or JSONL vectors on stdin")
        result = api.query(index, vector=vector if vector is not None else (None if like or multi_vector or json_query
                                                                              else "-"),
                           like=like, json=json_query, k=k, oversample=rescore, expansion=expansion, where=where,
                           fields=None if fields is None else [f for f in fields.split(",") if f],
                           multi_vector=multi_vector, first_stage=first_stage, scan=scan)
        if result["clamped"]:
            message(f"-k {k} is larger than the index; returning {result['k']} per query", quiet)
        if result["matching_rows"] is not None and result["matching_rows"] < k:
            message(f"--where keeps {result['matching_rows']} rows; returning at most that many", quiet)
        _render(result["queries"], fmt)


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
        writer.writerow(["query", "rank", "id", "score", *extra])
        for q in queries:
            for r in q["results"]:
                writer.writerow([q["query"], r["rank"], r["id"], r["score"], *[r.get(e) for e in extra]])
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console()
        for q in queries:
            table = Table(title=f"query {q['query']}" + (f" (like {q['like']})" if "like" in q else ""))
            results = q["results"]
            columns = ["rank", "id", "score"] + [c for c in (results[0] if results else {}) if c not in ("rank", "id", "score")]
            for c in columns:
                table.add_column(c, justify="right" if c in ("rank", "score") else "left")
            for r in results:
                table.add_row(*[f"{r[c]:.4f}" if c == "score" else str(r.get(c)) for c in columns])
            console.print(table)


def register_eval(app: typer.Typer) -> None:
    """Add ``vecx eval``."""

    @app.command("eval", epilog=examples(
        "vecx eval docs.vecx --queries q.parquet --truth gt.parquet -k 10",
        "vecx eval docs.vecx --queries q.npy --target-recall 0.95 --save",
        "vecx eval docs.fde.vecx --queries q.mv.parquet --truth gt.parquet --first-stage both",
    ))
    def eval_(index: Annotated[str, typer.Argument(metavar="INDEX", help="An index built by 'vecx index'.", show_default=False)],
              queries: Annotated[str, typer.Option("--queries", metavar="FILE", help="Query vectors in the input space (.npy, .parquet, ...).", show_default=False)],
              truth: Annotated[Optional[str], typer.Option("--truth", metavar="FILE", help="Ground truth from 'vecx truth' (default: computed exactly from the index's float rescoring vectors).", show_default=False)] = None,
              k: Annotated[int, typer.Option("-k", metavar="K", min=1, help="The k of the tuned recall@k.")] = 10,
              rescore: Annotated[Optional[int], typer.Option("--rescore", metavar="X", min=1, help="Oversampling factor to evaluate (default: the index's).", show_default=False)] = None,
              expansion: Annotated[Optional[int], typer.Option("--expansion", metavar="N", min=1, help="Search expansion to evaluate (default: the index's).", show_default=False)] = None,
              target_recall: Annotated[Optional[float], typer.Option("--target-recall", metavar="R", help="Find the smallest oversampling factor, then search expansion, reaching recall@k >= R.", show_default=False)] = None,
              save: Annotated[bool, typer.Option("--save", help="Store what --target-recall found as the index's defaults (atomically).")] = False,
              first_stage: Annotated[Optional[str], typer.Option("--first-stage", metavar="fde|mean|both", help="Multi-vector index: where candidates come from before the MaxSim rerank. [default: fde]", show_default=False)] = None,
              scan: Annotated[Optional[str], typer.Option("--scan", metavar="exhaustive|graph", help="Evaluate an exhaustive search of the codes or the graph (default: the index's).", show_default=False)] = None,
              json: Json = False, quiet: Quiet = False, debug: Debug = False) -> None:
        """Measure an index: recall of the codes searched exactly (quantization loss), through the graph
        (graph loss) and after rescoring, with QPS and p50/p99 latency.

        Batch QPS is one multi-threaded call over all queries; latencies come from single queries.
        """
        from vecx import api

        result = api.evaluate(index, queries, truth_path=truth, k=k, oversample=rescore, expansion=expansion,
                              target_recall=target_recall, save=save, first_stage=first_stage, scan=scan)
        if json:
            emit_json(result)
            return
        g = result["graph"]
        graph = (f"{g['dtype']} {g['metric']} graph (connectivity {g['connectivity']}, expansion add "
                 f"{g['expansion_add']}, search {expansion or g['expansion_search']})")
        if result.get("scored"):
            what = f"{result['scan']} scan of codes scored by their codec" + (f", {graph}" if g.get("file") else "")
        else:
            what = graph if result["scan"] == "graph" else f"exhaustive scan of the codes, {graph}"
        typer.echo(f"index   {index}: {result['rows']:,} rows, {what}, {result['bytes_per_vector']} bytes/vector")
        typer.echo(f"queries {result['queries']:,}; truth {result['truth']}")
        keys = [c for c in result["stages"][0] if c.startswith("recall@")]
        header = ["stage", *keys, "QPS", "p50 ms", "p99 ms"]
        rows = [header] + [[s["stage"], *[f"{s[c]:.4f}" for c in keys], *(
            [f"{s['qps']:,.0f}", f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}"] if "qps" in s else ["", "", ""])]
            for s in result["stages"]]
        echo_columns(rows)
        tuning = result.get("tuning")
        if tuning:
            if tuning["reached"]:
                typer.echo(f"target recall@{k} >= {tuning['target']}: oversample {tuning['oversample']}, expansion "
                           f"{tuning['expansion']} (recall@{k} {tuning[f'recall@{k}']:.4f})"
                           + ("; saved as the index's defaults" if tuning.get("saved") else ""))
            else:
                best = max(tuning["tried"], key=lambda t: t[f"recall@{k}"])
                typer.echo(f"target recall@{k} >= {tuning['target']} not reached; best {best[f'recall@{k}']:.4f} "
                           f"at oversample {best['oversample']}, expansion {best['expansion']}")
