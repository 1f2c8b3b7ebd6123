"""``vecx import``, ``vecx encode`` and ``vecx fit``."""

from typing import Annotated, Optional

import typer

from vecx.cli.common import (
    Bar,
    Column,
    Debug,
    Engine,
    IdColumn,
    Input,
    Json,
    Keep,
    Metric,
    Model,
    Output,
    Quiet,
    Scheduler,
    Seed,
    StateIn,
    StateOut,
    check_json_output,
    emit_json,
    examples,
    read_options,
    report_encode,
)

SpecOpt = Annotated[str, typer.Option("--spec", "-s", metavar="SPEC", help="Chain of codecs, e.g. 'truncate:32,int8' (or @file). See 'vecx spec list'.", show_default=False)]


def register(app: typer.Typer) -> None:
    """Add the commands of this module to the app."""

    @app.command("import", epilog=examples(
        "vecx import glove.npy -o glove.parquet --ids words.txt",
        "vecx import base.fvecs -o sift.parquet --metric l2",
        "vecx import docs.parquet -o docs.vecx.parquet --column embedding --id-column doc_id",
        "vecx import x.npy -o - | vecx truncate - -o - --dim 64 | vecx info -",
        "vecx import tokens.parquet -o docs.mv.parquet --multi",
        "vecx import docs.npy -o docs.parquet --model sentence-transformers/all-MiniLM-L6-v2",
        "vecx import docs.ubinary.npy -o docs.bin.parquet --codes ubinary --dim 384",
    ))
    def import_(input: Input, output: Output,
                ids: Annotated[Optional[str], typer.Option("--ids", metavar="FILE", help="Text file with one id per line (replaces row numbers).", show_default=False)] = None,
                column: Column = None, id_column: IdColumn = None, metric: Metric = None, model: Model = None,
                multi: Annotated[bool, typer.Option("--multi", help="Multi-vector data: each row holds a set of vectors (Parquet/Arrow list<list<float>> column, JSONL list of lists); stored as list<fixed_size_list>. Detected anyway; this makes it required.")] = False,
                codes: Annotated[Optional[str], typer.Option("--codes", metavar="PRECISION", help="The numbers are codes made elsewhere (sentence-transformers' quantize_embeddings, embedding APIs): ubinary (packed sign bits, uint8), binary (the same, int8), int8 or uint8 (per-dimension ranges; give --ranges). Written as the vecx codec that makes the same bytes.", show_default=False)] = None,
                dim: Annotated[Optional[int], typer.Option("--dim", metavar="D", min=1, help="--codes ubinary|binary: dimensions of the vectors the bits were made from (default 8 x bytes per row).", show_default=False)] = None,
                ranges: Annotated[Optional[str], typer.Option("--ranges", metavar="FILE.npy", help="--codes int8|uint8: the per-dimension minimum and maximum the codes were made with (2 x D).", show_default=False)] = None,
                engine: Engine = "local", scheduler: Scheduler = None,
                quiet: Quiet = False, json: Json = False, debug: Debug = False) -> None:
        """Import vectors into a vecx table: validated, fingerprinted, with ids and payload.

        Checks that every vector has the same dimension and only finite values and that ids
        are unique; records the metric the vectors are for and whether they are unit-norm.
        Payload columns of Parquet/Arrow/JSONL inputs are carried along. With --multi every row
        is a set of vectors (e.g. per-token embeddings); each row needs at least one vector.
        """
        from dataclasses import replace

        from vecx import api

        check_json_output(json, output)
        if (dim is not None or ranges is not None) and codes is None:
            from vecx.errors import UsageError

            raise UsageError("--dim and --ranges describe codes: give --codes PRECISION too")
        read = replace(read_options(column, id_column, metric, ids, model=model), multi=multi, codes=codes,
                       codes_dim=dim, ranges=ranges)
        report = api.encode_file(input, output, None, read=read,
                                 progress=Bar(quiet), engine=engine, scheduler=scheduler)
        report_encode(report, json, quiet)

    @app.command("encode", epilog=examples(
        "vecx encode glove.parquet -o out.parquet --spec truncate:32,int8",
        "vecx encode docs.parquet -o docs.i8.parquet --spec int8 --save-state int8.state",
        "vecx encode more.parquet -o more.i8.parquet --state int8.state",
        "vecx encode records.jsonl -o records.parquet --spec vsa:2048,binarize --keep name",
        "vecx encode s3://bucket/imported/ -o codes/ --spec pq:48x8 --engine dask   # fit once, a task per part",
    ))
    def encode(input: Input, output: Output, spec: SpecOpt = "", state: StateIn = None,
               save_state: StateOut = None, seed: Seed = None,
               column: Column = None, id_column: IdColumn = None, metric: Metric = None, keep: Keep = None,
               model: Model = None, engine: Engine = "local", scheduler: Scheduler = None,
               quiet: Quiet = False, json: Json = False, debug: Debug = False) -> None:
        """Apply a chain of codecs in one pass; the bytes equal running each stage as its own command.

        Stages that learn state (e.g. int8 ranges) fit on a seeded sample first; the state is
        stored in the output and reused for every query. With --state, a state fitted earlier
        is applied instead (its spec is used when --spec is not given).
        """
        from vecx import api
        from vecx.errors import UsageError

        check_json_output(json, output)
        if not spec and not state:
            raise UsageError("give --spec (e.g. --spec truncate:32,int8) or --state FILE")
        report = api.encode_file(input, output, spec or None, seed=seed, state_file=state, save_state=save_state,
                                 read=read_options(column, id_column, metric, keep=keep, model=model),
                                 progress=Bar(quiet),
                                 engine=engine, scheduler=scheduler)
        report_encode(report, json, quiet)

    @app.command("fit", epilog=examples(
        "vecx fit sample.parquet -s int8 -o int8.state",
        "vecx encode big.parquet -o big.i8.parquet --state int8.state",
    ))
    def fit(input: Input, output: Annotated[str, typer.Option("--output", "-o", metavar="FILE", help="State file to write.", show_default=False)],
            spec: SpecOpt = "", seed: Seed = None,
            column: Column = None, id_column: IdColumn = None, metric: Metric = None,
            quiet: Quiet = False, json: Json = False, debug: Debug = False) -> None:
        """Fit a chain on a seeded sample and write only its state (an Arrow IPC file of named arrays).

        Apply it to any number of files with 'vecx encode --state'. The state remembers the
        vector space it was fitted on; applying it to other data is refused (exit 4).
        """
        from vecx import api
        from vecx.cli.common import message
        from vecx.errors import UsageError

        if not spec:
            raise UsageError("give --spec, e.g. --spec int8")
        result = api.fit_file(input, output, spec, seed=seed, read=read_options(column, id_column, metric),
                              progress=Bar(quiet))
        if json:
            emit_json(result)
        else:
            message(f"wrote fitted state for {result.spec} to {output} ({result.bytes:,} bytes)", quiet)
