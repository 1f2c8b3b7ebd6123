"""``vecx info``, ``vecx truth`` and ``vecx spec``."""

from __future__ import annotations

from typing import Any, Optional

import typer
from typing import Annotated
from vecx.cli.common import (
    Bar,
    Column,
    Debug,
    IdColumn,
    Json,
    Metric,
    Quiet,
    echo_columns,
    emit_json,
    examples,
    message,
    read_options,
)


def _render_info(data: dict[str, Any]) -> str:
    meta = data.get("vecx")
    size = f"{data['file_bytes']:,} bytes, " if "file_bytes" in data else ""
    lines = [("file", f"{data['path']} ({size}{data['format']})")]
    if meta is None:
        raw = data["raw"]
        rows = f"{raw['rows']:,}" if raw["rows"] is not None else "unknown"
        lines += [("rows", rows), ("vector", f"{raw['dim']} dimensions, column {raw['vector_column']!r} (raw input, "
                                             "not written by vecx; 'vecx import' validates and fingerprints it)"),
                  ("ids", repr(raw["id_column"]) if raw["id_column"] else "row numbers"),
                  ("payload", ", ".join(raw["payload"]) or "(none)")]
        return _table(lines)
    if meta.get("kind") == "index":
        g, r = meta["graph"], meta.get("rescore")
        lines += [
            ("kind", f"index ({data['version']})"),
            ("rows", f"{meta['rows']:,}"),
            *([("codes", f"{meta['codes']['spec']} codes, {meta['bytes_per_vector']} bytes/vector, scored by the "
                         f"codec ({meta['codes']['metric']}); default scan {meta['search'].get('scan')}"
                         + (f", pool {meta['search'].get('pool')}x" if g.get("file") else ""))] if meta.get("codes") else []),
            ("graph", (f"usearch HNSW, {g['ndim']} x {g['dtype']}, metric {g['metric']}"
                       + ("" if meta.get("codes") else f", {meta['bytes_per_vector']} bytes/vector")
                       if g.get("file", "graph.usearch") else "none (exhaustive scan of the codes)")),
            ("parameters", f"connectivity {g['connectivity']}, expansion add {g['expansion_add']}, "
                           f"search {g['expansion_search']}; "
                           f"{'deterministic (1 thread)' if g['deterministic'] else 'multi-threaded build'}"),
            ("chain", meta["table"].get("spec") or "(none)"),
            ("rescoring", (f"exact MaxSim over {r['tokens']:,} token vectors ({r['dim']} x {r['dtype']}), "
                           "mean-vector graph for --first-stage mean|both, " if r and r.get("multi") else
                           f"{r['dim']} x {r['dtype']} ({r.get('spec') or 'as imported'}), " if r else "")
                          + (f"oversample {meta['search']['oversample']}x" if r else "none")),
            ("fingerprint", meta["table"].get("fingerprint") or "unknown"),
            ("written by", f"vecx {meta['writer']['version']}, index format {meta['format_version']}"),
        ]
        return _table(lines)
    if meta.get("kind") == "truth":
        base, queries = meta["base"], meta["queries"]
        lines += [("kind", f"exact ground truth: top-{meta['k']} by {meta['score']}"),
                  ("queries", f"{queries['rows']:,} (fingerprint {(queries.get('fingerprint') or 'unknown')[:16]})"),
                  ("base", f"{base['rows']:,} rows, spec {base.get('spec') or '(none)'}, "
                           f"fingerprint {(base.get('fingerprint') or 'unknown')[:16]}"),
                  ("written by", f"vecx {meta['writer']['version']}, format {meta['format_version']}")]
        return _table(lines)
    v, src = meta["vector"], meta.get("source") or {}
    on = {"codes": "", "scorer": ", by the codec's scorer against float queries"}.get(v.get("metric_on", "codes"), ", on decoded values")
    lines += [
        ("rows", f"{meta['rows']:,}" if meta.get("rows") is not None else "unknown"),
        ("vector", f"{v['dim']} x {v['dtype']} = {v['bytes_per_vector']} bytes/vector"
                   + (f"; a set of vectors per row ({src['tokens']:,} vectors)" if v.get("multi") and src.get("tokens")
                      else "; a set of vectors per row" if v.get("multi") else "")),
        ("metric", f"{v['metric']}{on}{', unit-norm' if v['normalized'] else ''}"),
        ("ids", meta["id"]["type"]),
        ("source", f"{src.get('dim')} x {src.get('dtype')} {src.get('metric')}"
                   f"{', unit-norm' if src.get('normalized') else ''}, {src.get('rows', 0) or 0:,} rows, "
                   f"fingerprint {(src.get('fingerprint') or 'unknown')[:16]}"),
    ]
    stages = meta.get("stages", [])
    if not stages:
        lines.append(("chain", "(none: imported vectors)"))
    for i, st in enumerate(stages):
        extra = []
        if st.get("fit_rows"):
            extra.append(f"fitted on {st['fit_rows']:,} rows")
        if st.get("state_sha256"):
            extra.append(f"state {st['state_sha256'][:12]}")
        out = st["output"]
        detail = f"-> {out['dim']} x {out['dtype']}" + (f" ({'; '.join(extra)})" if extra else "")
        lines.append(("chain" if i == 0 else "", f"{i + 1}. {st['spec']}  {detail}"))
    ratio = src.get("dim", 0) * 4 / v["bytes_per_vector"] if src.get("dim") else None
    if src.get("multi") and src.get("rows") and not v.get("multi"):  # one vector per set of vectors
        ratio = src["tokens"] / src["rows"] * src["dim"] * 4 / v["bytes_per_vector"]
    if ratio:
        lines.append(("compression", f"{ratio:.1f}x vs float32 source"))
    lines += [("fingerprint", meta.get("fingerprint") or "unknown (stream not finished)"),
              ("written by", f"vecx {meta['writer']['version']}, format {meta['format_version']}")]
    return _table(lines)


def _table(lines: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def register(app: typer.Typer) -> None:
    """Add the commands of this module to the app."""

    @app.command("info", epilog=examples(
        "vecx info docs.i8.parquet",
        "vecx info docs.i8.parquet --json | jq .vecx.spec",
        "vecx info docs.vecx",
        "vecx import x.npy -o - | vecx info -",
    ))
    def info(input: Annotated[str, typer.Argument(metavar="INPUT", help="A vector table (or any input vecx reads), or - for stdin.", show_default=False)],
             column: Column = None, id_column: IdColumn = None,
             json: Json = False, quiet: Quiet = False, debug: Debug = False) -> None:
        """Show what a vector table holds: chain, dimensions, dtype, metric, bytes/vector, fingerprint."""
        from vecx import api

        data = api.info(input, read_options(column, id_column, None))
        if json:
            emit_json(data)
        else:
            typer.echo(_render_info(data))

    @app.command("verify", epilog=examples(
        "vecx verify docs.vecx",
        "vecx index docs.i8.parquet -o docs.vecx && vecx verify docs.vecx   # in a cron job",
        "vecx verify docs.parquet pca.state gt.parquet --json",
    ))
    def verify(paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Indexes, vector tables, ground-truth files or state files written by vecx.", show_default=False)],
               json: Json = False, quiet: Quiet = False, debug: Debug = False) -> None:
        """Check every byte of what vecx wrote: exit 0 if intact, 3 at the first damaged file.

        An index: the sha256 of every file against its manifest, the graph header, ids, rescoring
        vectors and chain state, and every row of its payload. A table: its metadata, its chain's
        state hashes and every page (vecx writes Parquet page checksums). A state file: its arrays
        against their hashes. Queries check only sizes, headers and small files on open, so run
        this after copying an index or from cron after a rebuild.
        """
        from vecx import api

        reports = [api.verify(path) for path in paths]
        if json:
            emit_json(reports if len(reports) > 1 else reports[0])
        else:
            for report in reports:
                what = f"{report['kind']}" + (f", {report['rows']:,} rows" if "rows" in report else "")
                typer.echo(f"{report['path']}: ok ({what})")

    @app.command("truth", epilog=examples(
        "vecx truth glove.parquet queries.parquet -o gt.parquet -k 100",
        "vecx truth base.fvecs queries.fvecs -o gt.parquet -k 10 --metric l2",
        "vecx truth docs.mv.parquet q.mv.parquet -o gt.parquet --maxsim -k 10",
    ))
    def truth(base: Annotated[str, typer.Argument(metavar="BASE", help="Base vectors (a vector table or raw input).", show_default=False)],
              queries: Annotated[str, typer.Argument(metavar="QUERIES", help="Query vectors, in the base's space or its chain's input space.", show_default=False)],
              output: Annotated[str, typer.Option("--output", "-o", metavar="FILE", help="Parquet file to write.", show_default=False)],
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

        result = api.truth(base, queries, output, k, read_base=read_options(None, None, metric),
                           read_queries_options=read_options(None, None, metric), progress=Bar(quiet),
                           maxsim=maxsim)
        if json:
            emit_json(result)
        else:
            message(f"wrote exact top-{k} ({result['score']}) for {result['queries']:,} queries over "
                    f"{result['base_rows']:,} rows to {output}", quiet)

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
        for r in result["stages"]:
            metric_text = r["metric"] + (" (decoded)" if r["metric_on"] == "decoded" else "")
            rows.append([str(r["stage"]), r["codec"], str(r["dim"]), r["dtype"], str(r["bytes_per_vector"]),
                         metric_text, "yes" if r["fit"] else "-", r["query_encoding"]])
        echo_columns(rows)
        typer.echo(f"canonical: {result['spec']}")
        typer.echo(f"compression: {result['compression']:g}x")

    @spec_app.command("list", epilog=examples("vecx spec list", "vecx spec list --json"))
    def list_codecs(json: Json = False, debug: Debug = False) -> None:
        """List the codecs a spec can use, with their parameters and defaults."""
        from vecx.codecs import registry

        data = []
        for name, cls in registry().items():
            params = [{"name": p.name, "type": p.type.__name__, "required": p.required,
                       "default": None if p.required else p.default, "help": p.help,
                       "default_text": "required" if p.required else f"default {p.format(p.default)}",
                       **({"choices": list(p.choices)} if p.choices else {})} for p in cls.params]
            data.append({"codec": name, "summary": cls.summary, "primary": cls.primary, "fit": cls.needs_fit,
                         "query_encoding": cls.query_encoding, "params": params})
        if json:
            for c in data:
                for p in c["params"]:
                    p.pop("default_text")
            emit_json(data)
            return
        for c in data:
            typer.echo(f"{c['codec']:<10} {c['summary']}")
            for p in c["params"]:
                typer.echo(f"{'':<12}{p['name']}: {p['help']} ({p.pop('default_text')})")
