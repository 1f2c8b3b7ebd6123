"""Spec strings: parse ``"truncate:32,int8:seed=3"`` into stages and print the canonical form.

Grammar (faiss ``index_factory`` style, shell-safe without quotes)::

    spec  := stage ("," stage)*          # "|" is accepted as a separator on input too
    stage := NAME (":" VALUE)? (":" KEY "=" VALUE)*
    NAME  := [a-z][a-z0-9_]*             # a registered codec
    VALUE := [A-Za-z0-9_.+-]+            # the first bare VALUE is the codec's primary parameter

``@path`` in place of a spec reads the spec from a file. The canonical form,
which vecx stores in every file it writes, spells out every parameter with its
resolved value, primary parameter first and the rest sorted by key, stages
joined by ``,``. Parsing the canonical form gives the same stages back.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from vecx.errors import SpecError

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_VALUE = re.compile(r"[A-Za-z0-9_.+-]+\Z")


@dataclass(frozen=True)
class StageSpec:
    """One parsed stage before its codec resolves types and defaults.

    ``positional`` is the bare value, if any; ``options`` the ``key=value`` pairs as strings.
    """

    name: str
    positional: str | None = None
    options: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def read_spec_arg(text: str) -> str:
    """Expand ``@file`` to the file's contents (comments after ``#`` and newlines dropped)."""
    if not text.startswith("@"):
        return text
    path = Path(text[1:])
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"spec file {str(path)!r}: {exc.strerror or exc}") from None
    lines = [line.split("#", 1)[0].strip() for line in raw.splitlines()]
    return ",".join(line for line in lines if line)


def parse(text: str) -> list[StageSpec]:
    """Parse a spec string into stages; raise :class:`SpecError` naming the bad token."""
    text = read_spec_arg(text.strip())
    if not text:
        raise SpecError("empty spec: give at least one stage, e.g. \"truncate:64\"")
    stages = []
    for number, raw_stage in enumerate(re.split(r"[,|]", text), start=1):
        stages.append(_parse_stage(text, number, raw_stage.strip()))
    return stages


def _parse_stage(text: str, number: int, raw: str) -> StageSpec:
    where = f"spec {text!r}: stage {number}"
    if not raw:
        raise SpecError(f"{where} is empty (two separators in a row?)")
    name, *tokens = raw.split(":")
    if not _NAME.match(name):
        raise SpecError(f"{where}: {name!r} is not a codec name (lower-case letters, digits, _)")
    positional: str | None = None
    options: dict[str, str] = {}
    for position, token in enumerate(tokens):
        key, sep, value = token.partition("=")
        if not sep:
            if position != 0:
                raise SpecError(f"{where}: bare value {token!r} must come first; write key={token}")
            key, value = "", token
        elif not _NAME.match(key):
            raise SpecError(f"{where}: bad parameter name {key!r}")
        if not _VALUE.match(value):
            raise SpecError(f"{where}: bad value {value!r} (allowed: letters, digits, _ . + -)")
        if key == "":
            positional = value
        elif key in options:
            raise SpecError(f"{where}: parameter {key!r} given twice")
        else:
            options[key] = value
    return StageSpec(name, positional, tuple(sorted(options.items())))


def suggest(word: str, choices: list[str]) -> str:
    """Return ``' (did you mean "x"?)'`` for a near miss, else ``''``."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
