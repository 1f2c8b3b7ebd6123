"""``vecx align``: map a table through a fitted map (the codec's generated command) and ``vecx align fit``.

``align`` is both a codec (whose command is generated from its parameters, like every codec's)
and a group with a subcommand ``fit``, which learns the map from two tables of the same items.
As with ``vecx vsa``, the group runs ``encode`` when the first argument names no subcommand.
"""

from typing import Annotated

import typer

from vecx.cli.common import Debug, Json, Quiet, emit_json, examples, message


def register(app: typer.Typer) -> None:
    """Add the ``align`` group: ``encode`` (default) and ``fit``."""
    from vecx.cli.vsa import codec_group

    group = codec_group(
        "align", "'vecx align fit --from OLD --to NEW -o map.state' learns the map from vectors of the "
                 "same items by both models; 'vecx align INPUT -o OUT --state map.state' runs 'vecx align "
                 "encode' (maps a table through it); 'vecx query INDEX --vector q.npy --align map.state' "
                 "maps queries.",
        examples(
            "vecx align fit --from static.parquet --to minilm.parquet -o static2minilm.state",
            "vecx align fit --from static.parquet --to minilm.parquet -o map.state --kind linear",
            "vecx query minilm.vecx --vector static_queries.npy --align static2minilm.state",
            "vecx align old.parquet -o old-in-new-space.parquet --state static2minilm.state",
        ))

    @group.command("fit", epilog=examples(
        "vecx align fit --from static.parquet --to minilm.parquet -o static2minilm.state",
        "vecx align fit --from minilm.parquet --to static.parquet -o minilm2static.state   # the reverse",
    ))
    def fit(old: Annotated[str, typer.Option("--from", metavar="TABLE", help="Vectors of the model to map from (an imported table with ids).", show_default=False)],
            new: Annotated[str, typer.Option("--to", metavar="TABLE", help="Vectors of the same items by the model to map into (paired by id; other items are left out).", show_default=False)],
            output: Annotated[str, typer.Option("--output", "-o", metavar="STATE", help="State file to write (written atomically).", show_default=False)],
            kind: Annotated[str, typer.Option("--kind", metavar="orthogonal|linear", help="orthogonal: Procrustes, keeps the old space's angles and distances; linear: ridge least squares, fits closer and keeps no geometry.")] = "orthogonal",
            ridge: Annotated[float, typer.Option("--ridge", metavar="L", min=0.0, help="--kind linear: the ridge penalty.")] = 0.01,
            held_out: Annotated[float, typer.Option("--held-out", metavar="F", min=0.0, max=0.99, help="Share of the pairs (seeded, at most 5,000) never fitted, on which the cross-model recall is reported.")] = 0.1,
            seed: Annotated[int, typer.Option("--seed", metavar="N", min=0, help="Seed of the held-out draw and of the fitting sample (at most 200,000 pairs).")] = 0,
            quiet: Quiet = False, json: Json = False, debug: Debug = False) -> None:
        """Learn a map from one model's vector space into another's, from vectors of the same items.

        Items are paired by id. The report gives, for held-out pairs never used in the fit, how
        often an item's mapped vector finds its own vector by the other model first (recall@1)
        and among the 10 nearest (recall@10), against the same without a map.
        """
        from vecx import api
        from vecx.errors import UsageError

        if kind not in ("orthogonal", "linear"):
            raise UsageError(f"--kind {kind}: choose orthogonal or linear")
        report = api.align_fit(old, new, output, kind=kind, ridge=ridge, held_out=held_out, seed=seed)
        if json:
            emit_json(report)
            return
        message(f"wrote {output}: {report.spec}, fitted on {report.fitted:,} of {report.pairs:,} paired items",
                quiet)
        if report.held_out:  # the measurement is the command's output, as eval's table is
            def spelled(recall: dict) -> str:
                return ", ".join(f"{name} {value:.4f}" for name, value in recall.items())

            typer.echo(f"held out  {report.held_out:,} items: own item by the other model found at "
                       f"{spelled(report.held_out_recall)}"
                       + (f"; without a map {spelled(report.identity_recall)}" if report.identity_recall else ""))

    app.add_typer(group, name="align")
