"""``vecx truth``: exact nearest neighbours of queries over a base, as a Parquet table."""

from typing import Annotated

import typer

from vecx.cli.common import (
    Bar,
    Debug,
    Json,
    Metric,
    OldQueries,
    Queries,
    Quiet,
    emit_json,
    examples,
    message,
    read_options,
)


def register(app: typer.Typer) -> None:
    """Add ``vecx truth``."""

    @app.command("truth", epilog=examples(
        "vecx truth glove.parquet --queries queries.parquet -o gt.parquet -k 100",
        "vecx truth base.fvecs --queries queries.fvecs -o gt.parquet -k 10 --metric l2",
        "vecx truth docs.mv.parquet --queries q.mv.parquet -o gt.parquet --maxsim -k 10",
    ))
    def truth(base: Annotated[str, typer.Argument(metavar="BASE", help="Base vectors (a vector table or raw input).", show_default=False)],
              output: Annotated[str, typer.Option("--output", "-o", metavar="FILE", help="Parquet file to write.", show_default=False)],
              old_queries: OldQueries = None,
              queries: Queries = None,
              k: Annotated[int, typer.Option("-k", metavar="K", help="Neighbours per query.")] = 100,
              metric: Metric = None,
              maxsim: Annotated[bool, typer.Option("--maxsim", help="Multi-vector base and queries (sets of vectors): rank by exact MaxSim/Chamfer, the sum over query vectors of the best inner product with any document vector.")] = False,
              quiet: Quiet = False, json: Json = False, debug: Debug = False) -> None:
        """Exact top-k neighbours of every query by the base's metric (cosine, ip or l2), in blocks.

        Writes a Parquet table: query_id, ids and rows (the k nearest base ids and row numbers) and
        scores (cosine similarity / inner product, descending; squared L2 distance, ascending).
        Memory holds the queries, one block of base vectors and the running top-k, never the base.
        """
        from vecx import api
        from vecx.cli.common import query_file
        queries = query_file(queries, old_queries, base)
        result = api.truth(base, queries, output, k, read_base=read_options(None, None, metric),
                           read_queries_options=read_options(None, None, metric), progress=Bar(quiet),
                           maxsim=maxsim)
        if json:
            emit_json(result)
        else:
            message(f"wrote exact top-{k} ({result.score}) for {result.queries:,} queries over "
                    f"{result.base_rows:,} rows to {output}", quiet)
