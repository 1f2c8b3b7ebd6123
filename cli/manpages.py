"""Generate roff man pages for every command from the CLI itself: ``python -m vecx.cli.manpages man/``.

The pages are committed; a test regenerates them and fails when they are stale,
so ``--help`` and ``man vecx-<command>`` never disagree. No dates: the output is
a pure function of the CLI.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from vecx import __version__


def _esc(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line for line in text.split("\n"))


def _paragraphs(text: str) -> tuple[list[str], list[str]]:
    r"""Split click help text into prose paragraphs and verbatim (``\b``) blocks, in order."""
    prose, verbatim = [], []
    for block in (text or "").strip().split("\n\n"):
        if block.startswith("\b"):
            verbatim.append(block[1:].strip("\n"))
        else:
            prose.append(" ".join(line.strip() for line in block.splitlines()))
    return prose, verbatim


def _page(name: str, command: Any, ctx: Any) -> str:
    title = name.upper().replace(" ", "-")
    summary = command.get_short_help_str(limit=200) if hasattr(command, "get_short_help_str") else ""
    usage = " ".join(command.collect_usage_pieces(ctx))
    out = [f'.TH {title} 1 "" "vecx {__version__}" "vecx manual"',
           ".SH NAME", f"{_esc(name.replace(' ', '-'))} \\- {_esc(summary)}",
           ".SH SYNOPSIS", f".B {_esc(name)}", _esc(usage), ".SH DESCRIPTION"]
    prose, verbatim = _paragraphs(command.help or "")
    for para in prose:
        out += [".PP", _esc(para)]
    for block in verbatim:
        out += [".PP", ".nf", _esc(block), ".fi"]
    records = [p.get_help_record(ctx) for p in command.get_params(ctx)]
    records = [r for r in records if r]
    if records:
        out.append(".SH OPTIONS")
        for opts, help_text in records:
            out += [".TP", f"\\fB{_esc(opts)}\\fR", _esc(help_text)]
    subcommands = getattr(command, "commands", {})
    if subcommands:
        out.append(".SH COMMANDS")
        for sub_name, sub in subcommands.items():
            out += [".TP", f"\\fB{_esc(sub_name)}\\fR", _esc(sub.get_short_help_str(limit=200))]
    _, epilog_blocks = _paragraphs(command.epilog or "")
    for block in epilog_blocks:
        heading, _, body = block.partition("\n")
        out += [f".SH {_esc(heading.rstrip(':').upper())}", ".nf", _esc(body.rstrip()), ".fi"]
    if name != "vecx":
        out += [".SH SEE ALSO", "\\fBvecx\\fR(1)"]
    return "\n".join(out) + "\n"


def pages() -> dict[str, str]:
    """File name -> roff text for ``vecx`` and every (sub)command."""
    import typer

    from vecx.cli.main import app

    root = typer.main.get_command(app)
    result: dict[str, str] = {}

    def walk(name: str, command: Any, parent_ctx: Any) -> None:
        ctx = command.context_class(command, info_name=name.split(" ")[-1], parent=parent_ctx)
        result[name.replace(" ", "-") + ".1"] = _page(name, command, ctx)
        for sub_name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(f"{name} {sub_name}", sub, ctx)

    walk("vecx", root, None)
    return result


def write(directory: Path) -> list[Path]:
    """Write every page into ``directory`` (removing pages of commands that no longer exist)."""
    directory.mkdir(parents=True, exist_ok=True)
    generated = pages()
    for stale in directory.glob("vecx*.1"):
        if stale.name not in generated:
            stale.unlink()
    written = []
    for file_name, text in generated.items():
        path = directory / file_name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for page in write(Path(sys.argv[1] if len(sys.argv) > 1 else "man")):
        print(page)
