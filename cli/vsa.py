"""``vecx vsa``: encode JSON records (the codec's generated command) and ``vecx vsa explain``.

``vsa`` is both a codec (whose command is generated from its parameters, like every codec's)
and a group with a subcommand ``explain``. The group runs its default subcommand, ``encode``,
when the first argument is not a subcommand name, so ``vecx vsa records.jsonl -o out.parquet``
and ``vecx vsa encode records.jsonl -o out.parquet`` are the same command. (An input file
literally named ``explain`` has to be written ``./explain``.)
"""

from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from vecx.cli.common import Debug, JsonFormat, emit_json, examples

DEFAULT = "encode"


class DefaultGroup(TyperGroup):
    """A group that runs its default subcommand when the first argument names no subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """The arguments parsed as click does, with ``encode`` put first when they name no subcommand
        (and are not a request for help)."""
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [DEFAULT, *args]
        return super().parse_args(ctx, args)


def codec_group(name: str, about: str, epilog: str) -> typer.Typer:
    """A command group for codec ``name``: its generated command as the default subcommand
    ``encode``, the codec's summary and ``about`` (what the group's other subcommands do) as help."""
    from vecx.cli import codecs as codec_commands
    from vecx.codecs import get_codec

    cls = get_codec(name)
    group = typer.Typer(cls=DefaultGroup, no_args_is_help=True, rich_markup_mode=None,
                        help=f"{cls.summary[:1].upper()}{cls.summary[1:]}.\n\n{about}", epilog=epilog)
    group.command(DEFAULT, epilog=codec_commands.example(cls, name))(codec_commands.make_command(cls))
    return group


def register(app: typer.Typer) -> None:
    """Add the ``vsa`` group: ``encode`` (default) and ``explain``."""
    group = codec_group(
        "vsa", "'vecx vsa INPUT -o OUT [options]' runs 'vecx vsa encode' (see its --help for the options); "
               "'vecx vsa explain' shows which fields made a record similar to an indexed one.",
        examples(
            "vecx vsa laureates.jsonl -o laureates.parquet --dim 2048 --seed 7 --keep surname",
            "vecx vsa explain laureates.vecx --like 6 --record '{\"bornCountry\": \"Poland\"}'",
        ))

    @group.command("explain", epilog=examples(
        "vecx vsa explain laureates.vecx --like 6 --record '{\"bornCountry\": \"Poland\", \"gender\": \"female\"}'",
        "vecx vsa explain laureates.vecx --like 5 --like 6 --records laureates.jsonl --format json",
    ))
    def explain(index: Annotated[str, typer.Argument(metavar="INDEX", help="An index built from a 'vecx vsa' table.", show_default=False)],
                like: Annotated[Optional[list[str]], typer.Option("--like", metavar="ID", help="Indexed item to compare with (repeatable).", show_default=False)] = None,
                record: Annotated[Optional[str], typer.Option("--record", metavar="RECORD", help="The record to explain, as a JSON object (partial records are fine).", show_default=False)] = None,
                records: Annotated[Optional[str], typer.Option("--records", metavar="FILE", help="Source JSONL: with --like A --like B, A's record is read from it.", show_default=False)] = None,
                fmt: Annotated[Optional[str], typer.Option("--format", metavar="FORMAT", help="table (default) or json.", show_default=False)] = None,
                json_format: JsonFormat = False, debug: Debug = False) -> None:
        """Split the cosine between a JSON record and an indexed item by key path.

        The record's vector is a sum of one part per key path (plus the field-pair conjunctions),
        so each row is that path's share of the cosine and the rows add up to it exactly: shared
        values show as large positive rows, unshared ones near 0 (crosstalk, about 1/sqrt(dim)).
        For indexes of binary codes without --rescore-vectors the item's vector is decoded, so
        the split is approximate (marked).
        """
        import orjson

        from vecx.api import vsa_explain as run
        from vecx.cli.common import output_format
        from vecx.errors import DataError

        fmt = output_format(fmt, json_format, ("table", "json"), "table")
        text = record
        parsed = None
        if text is not None:
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"--record: not valid JSON ({exc})") from None
            if not isinstance(parsed, dict):
                raise DataError("--record: expected a JSON object")
        result = run(index, like=list(like or []), record=parsed, records_file=records)
        if fmt == "json":
            emit_json(result)
            return
        from vecx.cli import render

        for item in result:
            render.table([["path", "value", "contribution"]] + [
                [r["path"], r["value"], f"{r['contribution']:+.4f}"] for r in item.fields],
                right=(2,), indent=2, title=f"{item.query} vs {item.like}: cosine {item.cosine:.4f}"
                + (" (approximate: decoded codes)" if item.approximate else ""))

    app.add_typer(group, name="vsa")
