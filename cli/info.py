"""``vecx info`` (what a table, index or ground-truth file holds) and ``vecx verify`` (is every byte intact)."""

from typing import Annotated, Any

import typer

from vecx.cli import render
from vecx.cli.common import Column, Debug, IdColumn, Json, Quiet, emit_json, examples, read_options


def _info_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The (field, value) lines ``vecx info`` shows for a report's JSON form."""
    from vecx.chain import space_model

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
        return lines
    other_kind = {"index": lambda: _index_lines(meta, data["version"]), "state": lambda: _state_lines(meta),
                  "truth": lambda: _truth_lines(meta)}.get(meta.get("kind"))
    if other_kind is not None:
        return lines + other_kind()
    v, src = meta["vector"], meta.get("source") or {}
    on = {"codes": "", "scorer": ", by the codec's scorer against float queries"}.get(v.get("metric_on", "codes"), ", on decoded values")
    lines += [
        ("rows", f"{meta['rows']:,}" if meta.get("rows") is not None else "unknown"),
        ("vector", f"{v['dim']} x {v['dtype']} = {v['bytes_per_vector']} bytes/vector"
                   + _sets_text(v, src, bool(meta.get("stages")))),
        ("metric", f"{v['metric']}{on}{', unit-norm' if v['normalized'] else ''}"),
        ("ids", meta["id"]["type"]),
        *_model_line(src.get("model"), space_model(src.get("model"), meta.get("stages") or [])),
        *([("payload", ", ".join(data["columns"]) or "none")] if "columns" in data else []),
        ("source", f"{src.get('dim')} x {src.get('dtype')} {src.get('metric')}"
                   f"{', unit-norm' if src.get('normalized') else ''}"
                   f"{' (imported as ' + src['codes'] + ' codes)' if src.get('codes') else ''}, {src.get('rows', 0) or 0:,} rows, "
                   f"fingerprint {(src.get('fingerprint') or 'unknown')[:16]}"),
    ]
    stages = meta.get("stages", [])
    if not stages:
        lines.append(("chain", "(none: imported vectors)"))
    for i, st in enumerate(stages):
        extra = _version_note(st)
        if st.get("fit_rows"):
            extra.append(f"fitted on {st['fit_rows']:,} rows")
        extra += _notes_text(st)
        if st.get("state_sha256"):
            extra.append(f"state {st['state_sha256'][:12]}")
        out = st["output"]
        detail = f"-> {out['dim']} x {out['dtype']}" + (f" ({'; '.join(extra)})" if extra else "")
        lines.append(("chain" if i == 0 else "", f"{i + 1}. {st['spec']}  {detail}"))
    ratio = src.get("dim", 0) * 4 / v["bytes_per_vector"] if src.get("dim") else None
    if src.get("multi") and src.get("rows") and not v.get("multi"):  # one vector per set of vectors
        ratio = src["tokens"] / src["rows"] * src["dim"] * 4 / v["bytes_per_vector"]
    elif src.get("multi") and src.get("tokens") and v.get("tokens"):  # fewer vectors per set (crisp)
        ratio = src["tokens"] * src["dim"] * 4 / (v["tokens"] * v["bytes_per_vector"])
    if ratio:
        lines.append(("compression", f"{ratio:.1f}x vs float32 source"))
    lines += [("fingerprint", meta.get("fingerprint") or "unknown (stream not finished)"),
              ("written by", f"vecx {meta['writer']['version']}, format {meta['format_version']}")]
    return lines


def register(app: typer.Typer) -> None:
    """Add ``vecx info`` and ``vecx verify``."""

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

        report = api.info(input, read_options(column, id_column, None))
        if json:
            emit_json(report)
        else:
            render.table([list(line) for line in _info_lines(report.to_json())], header=False)

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
                what = report.kind + (f", {report.rows:,} rows" if report.rows is not None else "")
                typer.echo(f"{report.path}: ok ({what})")


def _index_lines(meta: dict[str, Any], version: str) -> list[tuple[str, str]]:
    """What ``vecx info`` shows of an index: rows and segments, codes or graph, chain, rescoring."""
    g = meta["graph"]
    return [
        ("kind", f"index ({version})"),
        ("rows", _index_rows(meta)),
        *([("codes", f"{meta['codes']['spec']} codes, {meta['bytes_per_vector']} bytes/vector, scored by the "
                     f"codec ({meta['codes']['metric']}); default scan {meta['search'].get('scan')}"
                     + (f", pool {meta['search'].get('pool')}x" if g.get("file") else "")
                     + (f", {meta['search']['nprobe']} lists per query" if meta["search"].get("nprobe") else "")
                     + (f", queries rounded to {meta['search']['query_bits']} bits"
                        if meta["search"].get("query_bits") else ""))]
          if meta.get("codes") else []),
        ("graph", (f"usearch HNSW, {g['ndim']} x {g['dtype']}, metric {g['metric']}"
                   + ("" if meta.get("codes") else f", {meta['bytes_per_vector']} bytes/vector")
                   if g.get("file", "graph.usearch") else
                   "none (coarse lists of the codes)" if meta["search"].get("scan") == "ivf" else
                   "none (exhaustive scan of the codes)")),
        *([("parameters", f"connectivity {g['connectivity']}, expansion add {g['expansion_add']}, "
                          f"search {g['expansion_search']}; "
                          f"{'deterministic (1 thread)' if g['deterministic'] else 'multi-threaded build'}"
                          + (f", insertion order {g['order']}" if g.get("order") else ""))]
          if g.get("file", "graph.usearch") else []),
        *([("intrinsic dim", lid_text(g["lid"]))] if g.get("lid") and g["lid"].get("median") is not None else []),
        ("chain", meta["table"].get("spec") or "(none)"),
        ("payload", ", ".join(meta.get("columns") or []) or "none"),
        *_model_line(meta["table"].get("model"), meta["table"].get("space_model") or meta["table"].get("model")),
        ("rescoring", _rescoring_text(meta)),
        ("fingerprint", meta["table"].get("fingerprint") or "unknown"),
        ("written by", f"vecx {meta['writer']['version']}, index format {meta['format_version']}"),
    ]


def _rescoring_text(meta: dict[str, Any]) -> str:
    """The index's rescoring stages (what each holds and how it scores) and their default factors."""
    r = meta.get("rescore")
    if not r:
        return "none"
    if r.get("multi"):
        return (f"exact MaxSim over {r['tokens']:,} token vectors ({r['dim']} x {r['dtype']}), mean-vector graph "
                f"for --first-stage mean|both, oversample {meta['search']['oversample']}x")

    def stage(info: dict[str, Any]) -> str:
        if info.get("encoded"):
            return f"{info.get('spec')} codes, {info['dim']} x {info['dtype']}, scored by their codec"
        return f"{info['dim']} x {info['dtype']} ({info.get('spec') or 'as imported'})"

    stages = [*(meta.get("refine") or ()), r]
    factor = meta["search"]["oversample"]
    if len(stages) == 1:
        return f"{stage(r)}, oversample {factor}x"
    return ("; ".join(f"stage {number}: {stage(info)}" for number, info in enumerate(stages, start=1))
            + f"; oversample {','.join(map(str, factor))}")


def lid_text(lid: dict[str, Any]) -> str:
    """A LID estimate (indexes/order.py's summary) in one line: median, mean, spread, and how it was made."""
    figures = [f"{name} {lid[key]}" for key, name in (("median", "median"), ("mean", "mean"), ("harmonic", "harmonic"))
               if lid.get(key) is not None]
    if lid.get("p10") is not None and lid.get("p90") is not None:
        figures.append(f"p10-p90 {lid['p10']}-{lid['p90']}")
    return (f"LID {', '.join(figures)} ({lid.get('rows', 0):,} rows, {lid.get('k')} nearest among "
            f"{lid.get('reference_rows', 0):,} sampled)")


def _truth_lines(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """What ``vecx info`` shows of a ground-truth file."""
    base, queries = meta["base"], meta["queries"]
    return [("kind", f"exact ground truth: top-{meta['k']} by {meta['score']}"),
            ("queries", f"{queries['rows']:,} (fingerprint {(queries.get('fingerprint') or 'unknown')[:16]})"),
            ("base", f"{base['rows']:,} rows, spec {base.get('spec') or '(none)'}, "
                     f"fingerprint {(base.get('fingerprint') or 'unknown')[:16]}"),
            ("written by", f"vecx {meta['writer']['version']}, format {meta['format_version']}")]


def _state_lines(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """What ``vecx info`` shows of a fitted state file: the chain, the space it takes, its stages."""
    space, fitted_on = meta["input"], meta.get("fitted_on")
    lines = [("kind", "fitted state (for 'vecx encode --state' and queries)"),
             ("spec", meta.get("spec") or "(none)"),
             ("fitted for", f"{space['dim']} x {space['dtype']} {space['metric']}"
                            f"{', unit-norm' if space.get('normalized') else ''} vectors"),
             ("fitted on", f"data with fingerprint {fitted_on[:16]}" if fitted_on else "unknown data")]
    for i, st in enumerate(meta.get("stages", [])):
        rows = "".join(f"{note}; " for note in _version_note(st))
        rows += f"fitted on {st['fit_rows']:,} rows; " if st.get("fit_rows") else ""
        rows += "".join(f"{note}; " for note in _notes_text(st))
        lines.append(("stages" if i == 0 else "",
                      f"{i + 1}. {st['spec']}  ({rows}state {(st.get('state_sha256') or 'none')[:12]})"))
    return lines + [("written by", f"vecx {meta['writer']['version']}, format {meta['format_version']}")]


def _version_note(stage: dict[str, Any]) -> list[str]:
    """A stage recorded by an older codec version: what this vecx reads it as (or that it cannot)."""
    from vecx.codecs import get_codec
    from vecx.errors import VecxError

    try:
        codec = get_codec(str(stage.get("codec")))
    except VecxError:
        return []
    version = stage.get("version", 1)
    if version == codec.version:
        return []
    if version not in codec.older_versions:
        return [f"codec version {version}: this vecx reads version {codec.version}"]
    implied = codec.older_versions[version]
    return [f"codec version {version}" + (", read as " + ":".join(f"{k}={v}" for k, v in implied.items())
                                          if implied else "")]


def _index_rows(meta: dict[str, Any]) -> str:
    """An index's rows, with its segments and deleted rows when it has them."""
    rows, segments = int(meta["rows"]), meta.get("segments") or []
    deleted = int((meta.get("deleted") or {}).get("rows", 0))
    if len(segments) <= 1 and not deleted:
        return f"{rows:,}"
    parts = " + ".join(f"{int(s['rows']):,}" for s in segments)
    return (f"{rows - deleted:,} live ({rows:,} stored in {len(segments)} segment{'s' if len(segments) != 1 else ''}"
            + (f": {parts}" if len(segments) > 1 else "") + (f"; {deleted:,} deleted" if deleted else "") + ")")


def _sets_text(vector: dict, source: dict, encoded: bool) -> str:
    """What the vector line adds for multi-vector tables: the vectors held in all (the source's
    count unless a stage changed the sets, then the count the stage recorded, if any)."""
    if not vector.get("multi"):
        return ""
    tokens = vector.get("tokens") if encoded else source.get("tokens")
    if not tokens:
        return "; a set of vectors per row"
    ratio = f", {tokens / source['tokens']:.1%} of the source's {source['tokens']:,}" \
        if encoded and source.get("tokens") else ""
    return f"; a set of vectors per row ({tokens:,} vectors{ratio})"


def _model_line(model: str | None, space: str | None) -> list[tuple[str, str]]:
    """The ``model`` line: the embedding model named at import, and whose space a map put it in."""
    if not model and not space:
        return []
    if space and space != model:
        return [("model", f"{model or 'unknown'}, mapped into the space of {space}")]
    return [("model", str(model))]


def _notes_text(stage: dict[str, Any]) -> list[str]:
    """What a stage recorded about its data: the models a map joins."""
    notes = stage.get("notes") or {}
    if notes.get("from_model") or notes.get("to_model"):
        return [f"maps {notes.get('from_model') or 'unknown model'} into {notes.get('to_model') or 'unknown model'}"]
    return []
