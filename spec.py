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
    """Parse a spec string into stages; raise :class:`SpecError` naming the bad token.

    A faiss ``index_factory`` string (``OPQ24,PQ24x8``, ``PCA96,SQ8``) is read as the vecx
    chain it names (see :func:`from_faiss`).
    """
    text = read_spec_arg(text.strip())
    if not text:
        raise SpecError("empty spec: give at least one stage, e.g. \"truncate:64\"")
    text = from_faiss(text) or text
    text = _fold_lists(text)
    text = ",".join(_precision(stage.strip(), text) for stage in re.split(r"[,|]", text))
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


_FAISS_TOKEN = re.compile(r"[A-Z]")
_FAISS_STAGES = [  # (pattern, vecx stage or None to refuse, what to say when refused)
    (re.compile(r"PCAR?(\d+)\Z"), "pca:{0}", ""),
    (re.compile(r"PQ(\d+)(?:x(\d+))?(?:np)?\Z"), "pq:{0}x{1}", ""),
    (re.compile(r"SQ8\Z"), "int8", ""),
    (re.compile(r"SQfp16\Z"), "f16", ""),
    (re.compile(r"RaBitQ\Z"), "binarize:mode=rabitq", ""),
    (re.compile(r"RR(\d+)\Z"), "rotate", ""),
    (re.compile(r"IVF\d+.*\Z"), None, "vecx's coarse lists are a parameter of its pq stage: write IVFn,PQmxb "
                                     "(pq:MxB:ivf=N)"),
    (re.compile(r"HNSW(\d+).*\Z"), None, "vecx builds the graph itself: 'vecx index --connectivity {0}'"),
    (re.compile(r"Flat\Z"), None, "vecx keeps float vectors when no codec is given: leave --spec out"),
    (re.compile(r"PCAW\d+\Z"), None, "vecx's pca does not whiten; use pca:N"),
    (re.compile(r"SQ\d+\Z"), None, "vecx's scalar quantizer is int8 (SQ8)"),
]


def from_faiss(text: str) -> str | None:
    """The vecx spec a faiss ``index_factory`` string names, or None when ``text`` is not one.

    ``PCA96``/``PCAR96`` are ``pca:96``, ``PQ24x8`` (and ``PQ24``, ``PQ24x8np``) ``pq:24x8``,
    ``OPQ24`` before a ``PQ`` the PQ stage's ``opq=true``, ``IVF512`` before a ``PQ`` its
    ``ivf=512`` (coarse lists), ``SQ8`` ``int8``, ``SQfp16`` ``f16``, ``RaBitQ``
    ``binarize:mode=rabitq``, ``RR`` ``rotate``. Parts vecx does not have (``HNSW``, ``Flat``,
    ``OPQm_d``, an ``IVF`` not before a ``PQ``) are a :class:`SpecError` saying what to write.
    """
    tokens = [t.strip() for t in re.split(r"[,|]", text)]
    if not any(re.fullmatch(r"OPQ\d+(?:_\d+)?", t) or any(p.match(t) for p, _, _ in _FAISS_STAGES)
               for t in tokens):
        return None  # vecx syntax, or a typo the parser names
    out: list[str] = []
    opq = False
    for position, token in enumerate(tokens):
        ivf_match = re.fullmatch(r"IVF(\d+)", token)
        if ivf_match:  # folded into the next pq stage by _fold_lists
            after = tokens[position + 1] if position + 1 < len(tokens) else ""
            if not re.match(r"PQ\d", after):
                raise SpecError(f"spec {text!r}: {token!r} (a faiss factory string): vecx's coarse lists hold PQ "
                                f"codes, so {token} must come right before a PQ stage",
                                hint=f"write {token},PQ24x8 (or index float vectors with a graph: 'vecx index')")
            out.append(f"ivf:{ivf_match.group(1)}")
            continue
        opq_match = re.fullmatch(r"OPQ(\d+)(?:_(\d+))?", token)
        if opq_match:
            if opq_match.group(2):
                raise SpecError(f"spec {text!r}: {token!r} (a faiss factory string): vecx's OPQ rotates without "
                                "reducing dimensions",
                                hint=f"write OPQ{opq_match.group(1)}, or pca:{opq_match.group(2)} before the PQ stage")
            opq = True
            continue
        stage = _faiss_stage(token, text)
        if stage.startswith("pq:") and opq:
            stage, opq = stage + ":opq=true", False
        out.append(stage)
    if opq:
        raise SpecError(f"spec {text!r}: OPQ must come before a PQ stage")
    return ",".join(out)


def _fold_lists(text: str) -> str:
    """``ivf:N,pq:...`` (coarse lists written as a stage of their own, as faiss writes IVFn,PQ...)
    as ``pq:...:ivf=N``; other specs as they are."""
    tokens = [t.strip() for t in re.split(r"[,|]", text)]
    if not any(re.match(r"ivf(:|\Z)", t) for t in tokens):
        return text
    out: list[str] = []
    lists = None
    for token in tokens:
        match = re.fullmatch(r"ivf:(?:lists=)?(\d+)", token)
        if match:
            if lists is not None:
                raise SpecError(f"spec {text!r}: two ivf stages in a row")
            lists = match.group(1)
            continue
        if re.match(r"ivf(:|\Z)", token):
            raise SpecError(f"spec {text!r}: {token!r}: write ivf:N (N coarse lists) right before a pq stage")
        if lists is not None:
            if not token.startswith("pq:"):
                raise SpecError(f"spec {text!r}: ivf:{lists} must come right before a pq stage (its codes are "
                                "the residuals from the lists' centroids)", hint=f"write ivf:{lists},pq:24x8")
            token, lists = token + f":ivf={lists}", None
        out.append(token)
    if lists is not None:
        raise SpecError(f"spec {text!r}: ivf:{lists} must come right before a pq stage")
    return ",".join(out)


def _faiss_stage(token: str, text: str) -> str:
    """The vecx stage of one faiss factory token (not OPQ), or a :class:`SpecError` saying what to write."""
    where = f"spec {text!r}: {token!r} (a faiss factory string)"
    if not _FAISS_TOKEN.match(token):
        raise SpecError(f"{where} beside vecx stages: write the whole spec one way",
                        hint="vecx spells faiss's PQ24x8 as pq:24x8, PCA96 as pca:96, SQ8 as int8")
    for pattern, stage, refusal in _FAISS_STAGES:
        match = pattern.match(token)
        if match is None:
            continue
        if stage is None:
            raise SpecError(f"{where}: {refusal.format(*match.groups())}")
        return stage.format(*[g if g is not None else "8" for g in match.groups()])
    raise SpecError(f"{where}: not a faiss stage vecx knows",
                    hint="vecx reads PCA, OPQ, PQ, SQ8, SQfp16, RaBitQ and RR; see 'vecx spec list'")


#: sentence-transformers' ``quantize_embeddings`` precisions, as vecx stages. ``ubinary`` is
#: ``np.packbits(x > 0)``: the bytes ``binarize:mode=sign`` writes. ``binary`` is the same bits
#: shifted to int8 (``ubinary - 128``): vecx stores the unsigned bytes. ``uint8`` floors each
#: value onto the per-dimension range: vecx stores those levels shifted by -128, as int8. (Its
#: ``int8`` truncates: ``int8:rounding=truncate``; vecx's own ``int8`` rounds to the nearest.)
PRECISIONS = {"ubinary": "binarize:mode=sign", "binary": "binarize:mode=sign", "uint8": "int8:rounding=floor"}


def _precision(stage: str, text: str) -> str:
    """A stage named by a sentence-transformers precision, as the vecx stage; others as they are."""
    return PRECISIONS.get(stage, stage)
