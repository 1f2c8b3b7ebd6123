"""``vecx spec explain`` and ``vecx spec list``: spec strings and the codecs they name, without data."""

from typing import Annotated, Optional

import typer

from vecx.cli import render
from vecx.cli.common import Debug, Json, emit_json, examples


def register(app: typer.Typer) -> None:
    """Add the ``vecx spec`` group."""
    spec_app = typer.Typer(help="Inspect spec strings and the codecs they name.", no_args_is_help=True)
    app.add_typer(spec_app, name="spec")

    @spec_app.command("explain", epilog=examples(
        "vecx spec explain truncate:32,int8 --dim 50",
        "vecx spec explain 'truncate:256|f16' --dim 768 --json",
        "vecx spec explain muvera:20x5x16,binarize --dim 128 --multi",
    ))
    def explain(spec: Annotated[str, typer.Argument(metavar="SPEC", help="Spec string (or @file).", show_default=False)],
                dim: Annotated[int, typer.Option("--dim", metavar="D", help="Input dimension.", show_default=False)],
                metric: Annotated[str, typer.Option("--metric", metavar="METRIC", help="Input metric: cosine, ip or l2.")] = "cosine",
                normalized: Annotated[bool, typer.Option("--normalized", help="Input vectors are unit-norm.")] = False,
                seed: Annotated[Optional[int], typer.Option("--seed", metavar="N", help="Seed for stages that do not set one.", show_default=False)] = None,
                multi: Annotated[bool, typer.Option("--multi", help="Input rows are sets of D-dimensional vectors (e.g. for muvera).")] = False,
                json: Json = False, debug: Debug = False) -> None:
        """Print each stage's dimension, dtype, bytes/vector and metric, without reading any data."""
        from vecx import api

        result = api.explain(spec, dim, metric=metric, normalized=normalized, seed=seed, multi=multi)
        if json:
            emit_json(result)
            return
        rows = [["stage", "codec", "dim", "dtype", "bytes/vec", "metric", "fit", "query"]]
        for r in result.stages:
            metric_text = r["metric"] + (" (decoded)" if r["metric_on"] == "decoded" else "")
            rows.append([str(r["stage"]), r["codec"], str(r["dim"]), r["dtype"], str(r["bytes_per_vector"]),
                         metric_text, "yes" if r["fit"] else "-", r["query_encoding"]])
        render.table(rows)
        typer.echo(f"canonical: {result.spec}")
        typer.echo(f"compression: {result.compression:g}x")

    @spec_app.command("list", epilog=examples("vecx spec list", "vecx spec list --json"))
    def list_codecs(json: Json = False, debug: Debug = False) -> None:
        """List the codecs a spec can use, with their parameters and defaults."""
        from vecx import api

        codecs = api.list_codecs()
        if json:
            emit_json(codecs)
            return
        for c in codecs:
            typer.echo(f"{c.codec:<10} {c.summary}")
            for p in c.params:
                typer.echo(f"{'':<12}{p['name']}: {p['help']} ({c.spelled_defaults[p['name']]})")
