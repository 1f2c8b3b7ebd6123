"""``vecx bench``: chains end to end beside faiss and usearch, as a table, JSON, Markdown or a plot."""

import shlex
from typing import Annotated, Any, Optional

import typer

from vecx.cli.common import Bar, Debug, Json, Metric, OldQueries, Queries, Quiet, emit_json, examples


def register(app: typer.Typer) -> None:
    """Add ``vecx bench``."""

    @app.command("bench", epilog=examples(
        "vecx bench base.npy --queries queries.npy --spec f16 --spec int8:mode=global --spec binarize --spec pca:96",
        "vecx bench base.npy --queries queries.npy --spec binarize --truth gt.npy --oversample 4 --oversample 10 --peers",
        "vecx bench docs.parquet --queries q.parquet --spec pca:96 --peer PQ48x8 --peer usearch:i8 --plot pareto.png",
        "vecx bench base.npy --queries queries.npy --metric l2 --spec f16 --index-option connectivity=32 --json",
        "vecx bench base.npy --queries queries.npy --spec pq:48x8 --spec binarize:mode=rabitq --spec binarize:mode=rabitq@scan=graph --peers",
    ))
    def bench(ctx: typer.Context,
              base: Annotated[str, typer.Argument(metavar="BASE", help="Base vectors: .npy, .parquet (raw or a vecx float table), ...", show_default=False)],
              old_queries: OldQueries = None,
              spec: Annotated[Optional[list[str]], typer.Option("--spec", metavar="SPEC", help="A chain to measure (repeatable), e.g. f16, binarize, pca:96; SPEC@key=value sets an index option for it alone, e.g. binarize:mode=rabitq@scan=graph.", show_default=False)] = None,
              queries: Queries = None,
              truth: Annotated[Optional[str], typer.Option("--truth", metavar="FILE", help="Ground truth: a 'vecx truth' table or a .npy of row numbers (queries x >= k). Default: computed exactly.", show_default=False)] = None,
              k: Annotated[int, typer.Option("-k", metavar="K", help="The k of recall@k.")] = 10,
              oversample: Annotated[Optional[list[int]], typer.Option("--oversample", metavar="X", help="Rescoring factor to measure (repeatable; default 4 and 10): k*X candidates rescored with the float vectors.", show_default=False)] = None,
              rescore: Annotated[Optional[list[int]], typer.Option("--rescore", metavar="X", hidden=True)] = None,
              peers: Annotated[bool, typer.Option("--peers", help="Also run the faiss-cpu and raw usearch equivalents at the same bytes per vector.")] = False,
              peer: Annotated[Optional[list[str]], typer.Option("--peer", metavar="NAME", help="An extra peer (repeatable): a faiss index_factory string (PQ48x8, OPQ24,PQ24x8, PCA96,Flat, BFlat) or usearch:f32|f16|i8|b1.", show_default=False)] = None,
              index_option: Annotated[Optional[list[str]], typer.Option("--index-option", metavar="KEY=VALUE", help="Index build option for every chain (repeatable), e.g. connectivity=32, deterministic=true.", show_default=False)] = None,
              plot: Annotated[Optional[str], typer.Option("--plot", metavar="FILE.png", help="Draw recall vs bytes per vector to this PNG (needs matplotlib).", show_default=False)] = None,
              output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE.md", help="Also write the table as Markdown, with the command, to this file.", show_default=False)] = None,
              out: Annotated[Optional[str], typer.Option("--out", metavar="FILE.md", hidden=True)] = None,
              sample: Annotated[Optional[int], typer.Option("--sample", metavar="N", help="Training sample rows for every fitting stage without its own (and for the faiss peers).", show_default=False)] = None,
              seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the stages and of the training sample.")] = 0,
              repeat: Annotated[int, typer.Option("--repeat", metavar="N", help="Time each batch search N times and keep the best.")] = 2,
              metric: Metric = None,
              records: Annotated[bool, typer.Option("--records", help="BASE is a JSONL file of JSON records: compare JSON encoders (--spec, default vsa:2048) with feature hashing on finding each record's duplicates from damaged copies.")] = False,
              label: Annotated[Optional[str], typer.Option("--label", metavar="FIELD", help="--records: the field that is equal on duplicates (a string, number or list of them).", show_default=False)] = None,
              drop: Annotated[Optional[list[str]], typer.Option("--drop", metavar="FIELD", help="--records: a field removed from records and queries before encoding (repeatable; a.b reaches into objects), e.g. an identifier a query would not have.", show_default=False)] = None,
              query_count: Annotated[int, typer.Option("--query-count", metavar="N", help="--records: damaged records used as queries (a seeded sample).")] = 1000,
              remove: Annotated[float, typer.Option("--remove", metavar="X", help="--records: share of each object's fields a query loses.")] = 0.3,
              shift: Annotated[float, typer.Option("--shift", metavar="X", help="--records: numbers move by up to this share of their path's range.")] = 0.02,
              json: Json = False, quiet: Quiet = False, debug: Debug = False) -> None:
        """Measure chains end to end: fit, encode, index, query and rescore, with recall@k against
        exact ground truth, bytes per vector, fit time, encode throughput, build time and QPS.

        Every chain runs through the same library path as 'vecx encode' and 'vecx index'; work
        files go to a temporary directory that is always removed. With --peers, faiss-cpu
        (IndexPQ, OPQ+PQ, PCA+Flat, IndexBinaryFlat on sign bits, IndexHNSWFlat) and raw usearch
        run on the same data, training sample, graph parameters and rescoring. Rows are sorted
        by bytes per vector; * marks the Pareto front (recall after the best rescoring vs bytes).

        With --records, BASE is a JSONL file of records and --label names the field equal on
        duplicates: a seeded sample of records, each damaged (--remove of its fields dropped,
        numbers moved by up to --shift of their range, arrays reordered), is searched among all
        records by exact cosine for each JSON encoder (--spec, default vsa:2048) and for feature
        hashing of path=value tokens at the same dimension: recall@k of the query's duplicates.
        """
        from vecx.bench import BenchOptions, run
        from vecx.cli.common import query_file, renamed
        from vecx.errors import UsageError

        if records:
            vector_only = {"--queries": queries or old_queries, "--truth": truth, "--oversample": oversample or rescore,
                           "--peers": peers, "--peer": peer, "--index-option": index_option, "--plot": plot,
                           "--sample": sample, "--metric": metric}
            given = [name for name, value in vector_only.items() if value]
            if given:
                raise UsageError(f"{', '.join(given)}: not for --records (JSON encoders are compared on damaged "
                                 "copies of the records themselves)", hint="see 'vecx bench --help'")
            _bench_records(base, spec, label, drop, query_count, remove, shift, k, seed, output or out,
                           _command_line(ctx), json, quiet)
            return
        if label is not None or drop:
            raise UsageError("--label and --drop go with --records (a JSONL file of JSON records)")
        if not spec:
            raise UsageError("no chain to measure: give --spec SPEC (repeatable), e.g. --spec f16 --spec binarize")
        queries = query_file(queries, old_queries, base)
        from vecx.formats.hdf5 import is_hdf5

        if truth is None and queries == base and is_hdf5(base):
            truth = base  # an ann-benchmarks file: its test set's own neighbours
        rescore = renamed("--oversample", oversample, "--rescore", rescore)
        out = renamed("--output", output, "--out", out)
        options = BenchOptions(k=k, rescore=tuple(rescore) if rescore else (4, 10), truth=truth, peers=peers,
                               peer_names=tuple(peer or ()), index_options=_key_values(index_option or [], UsageError),
                               sample=sample, seed=seed, metric=metric, repeat=repeat, plot=plot, markdown=out,
                               command=_command_line(ctx))
        report = run(base, queries, list(spec), options, progress=Bar(quiet))
        if json:
            emit_json(report)
        else:
            from vecx.bench import report as report_mod
            from vecx.cli import render

            styles = {"vecx": "bold cyan", "faiss": "yellow", "usearch": "green"}
            render.table([report_mod.header(report), *report_mod.cells(report)],
                         title=f"vecx bench: {report['base']['path']}", note=report_mod.description(report),
                         styles=[styles.get(row["system"]) for row in report["rows"]])


def _bench_records(base: str, spec: list[str] | None, label: str | None, drop: list[str] | None, query_count: int,
                   remove: float, shift: float, k: int, seed: int, markdown: str | None, command: str | None,
                   json: bool, quiet: bool) -> None:
    """``vecx bench --records``: JSON encoders against feature hashing on damaged copies of records."""
    from vecx.bench import records as records_mod
    from vecx.cli import render
    from vecx.errors import UsageError
    from vecx.formats.tempfiles import write_bytes_atomic

    if not label:
        raise UsageError("--records needs --label FIELD: the field equal on records that are duplicates")
    options = records_mod.RecordsOptions(label=label, drop=tuple(drop or ()), queries=query_count, remove=remove,
                                         shift=shift, k=k, seed=seed, command=command)
    report = records_mod.run_records(base, spec, options, progress=Bar(quiet))
    if markdown:
        write_bytes_atomic(markdown, records_mod.markdown(report).encode())
    if json:
        emit_json(report)
    else:
        render.table([records_mod.header(report), *records_mod.cells(report)],
                     title=f"vecx bench --records: {base}", note=records_mod.description(report))


def _key_values(items: list[str], error: Any) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise error(f"--index-option {item!r}: write KEY=VALUE, e.g. connectivity=32")
        out[key.strip()] = value.strip()
    return out


def _command_line(ctx: typer.Context) -> str | None:
    """The command line that ran (for the Markdown report), as the entry point received it."""
    argv = (ctx.find_root().obj or {}).get("argv")
    return "vecx " + shlex.join(argv) if argv and argv[0] == "bench" else None
