"""One subcommand per registered codec (``vecx truncate``, ``vecx int8`` ...), generated from its parameters.

A codec module declares its parameters once; this module turns them into options,
so adding a codec adds its command without touching the CLI.
"""

import inspect
from typing import Annotated, Any, Optional

import typer

from vecx.cli import common
from vecx.codecs import registry
from vecx.codecs.base import Codec, Param
from vecx.space import JSON


def _option(p: Param) -> tuple[Any, Any]:
    flag = "--" + p.name.replace("_", "-")
    metavar = {int: "N", float: "X"}.get(p.type, "|".join(p.choices) if p.choices else "TEXT")
    help_text = p.help + (f" [one of: {', '.join(p.choices)}]" if p.choices else "")
    if p.type is bool:
        decl = typer.Option(f"{flag}/--no-{p.name.replace('_', '-')}", help=help_text)
        return Annotated[bool, decl], p.default
    if p.required:
        return Annotated[p.type, typer.Option(flag, metavar=metavar, help=help_text, show_default=False)], ...
    return Annotated[Optional[p.type], typer.Option(flag, metavar=metavar, show_default=False,
                                                    help=help_text + f" [default: {p.format(p.default)}]")], None


def make_command(cls: type[Codec]) -> Any:
    """The command function of a codec, with options generated from its parameters."""
    return _make_command(cls)


def _make_command(cls: type[Codec]) -> Any:
    params = {p.name: p for p in cls.params}

    def command(**kwargs: Any) -> None:
        from vecx import api

        common.check_json_output(kwargs["json"], kwargs["output"])
        # Flags always have a value; at their default they count as not given (so --state alone works).
        parts = [cls.name] + [f"{name}={params[name].format(kwargs[name])}" for name in params
                              if kwargs.get(name) is not None and name != "seed"
                              and not (params[name].type is bool and kwargs[name] == params[name].default)]
        # With --state and no parameters given, the state's own spec applies.
        spec = None if kwargs.get("state") and len(parts) == 1 else ":".join(parts)
        report = api.encode_file(
            kwargs["input"], kwargs["output"], spec, seed=kwargs.get("seed"),
            state_file=kwargs.get("state"), save_state=kwargs.get("save_state"),
            read=common.read_options(kwargs.get("column"), kwargs["id_column"], kwargs.get("metric"),
                                     keep=kwargs.get("keep")),
            progress=common.Bar(kwargs["quiet"]),
        )
        common.report_encode(report, kwargs["json"], kwargs["quiet"])

    signature: list[tuple[str, Any, Any]] = [
        ("input", common.Input, inspect.Parameter.empty),
        ("output", common.Output, inspect.Parameter.empty),
    ]
    for p in cls.params:
        annotation, default = _option(p)
        if p.name == "seed":
            annotation, default = common.Seed, None
        signature.append((p.name, annotation, default))
    if cls.needs_fit:
        signature += [("state", common.StateIn, None), ("save_state", common.StateOut, None)]
    if cls.input_kind == JSON:  # records: payload fields to keep instead of a vector column and metric
        signature += [("keep", common.Keep, None), ("id_column", common.IdColumn, None)]
    else:
        signature += [("column", common.Column, None), ("id_column", common.IdColumn, None),
                      ("metric", common.Metric, None)]
    signature += [("quiet", common.Quiet, False),
                  ("json", common.Json, False), ("debug", common.Debug, False)]
    command.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
        for name, annotation, default in signature
    ])
    command.__annotations__ = {name: annotation for name, annotation, _ in signature}
    command.__doc__ = f"{cls.summary[:1].upper()}{cls.summary[1:]}.\n\n{cls.help}"
    return command


def example(cls: type[Codec], command: str | None = None) -> str:
    """The examples epilog of a codec's command (``command``: how the command is spelled)."""
    return _example(cls, command)


def _example(cls: type[Codec], command: str | None = None) -> str:
    if cls.input_kind == JSON:
        name = command or cls.name
        return common.examples(
            f"vecx {name} records.jsonl -o records.{cls.name}.parquet --dim 2048 --seed 7 --keep name,year",
            f"vecx encode records.jsonl -o records.bin.parquet --spec {cls.name}:2048,binarize",
            f"vecx {name} more.jsonl -o more.{cls.name}.parquet --state {cls.name}.state",
        )
    if cls.examples:  # a codec may spell out its own
        return common.examples(*cls.examples)
    required = [p for p in cls.params if p.required]
    flags = " ".join(f"--{p.name} 32" if p.type is int else f"--{p.name} X" for p in required)
    first = f"vecx {cls.name} docs.parquet -o docs.{cls.name}.parquet {flags}".rstrip()
    lines = [first, f"vecx encode docs.parquet -o out.parquet --spec {cls.example}"]
    if cls.needs_fit:
        lines.append(f"vecx {cls.name} more.parquet -o more.{cls.name}.parquet --state {cls.name}.state")
    return common.examples(*lines)


#: Codecs whose command lives in a group of their own (cli/vsa.py, cli/align.py) instead of a flat
#: generated command.
GROUPED = ("vsa", "align")


def register(app: typer.Typer) -> None:
    """Add a command for every registered codec, except those with a command group of their own."""
    for name, cls in registry().items():
        if name not in GROUPED:
            app.command(name, epilog=_example(cls))(_make_command(cls))
