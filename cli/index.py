"""``vecx index``: build an index directory from an encoded vector table."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from vecx.cli.common import Bar, Debug, Json, Quiet, emit_json, examples, message


def waiting(index: str, pid: int | None) -> None:
    """Say on stderr (always: a silent wait looks like a hang) that another writer holds the index."""
    sys.stderr.write(f"vecx: waiting for another vecx process{f' (pid {pid})' if pid else ''} "
                     f"that is writing {index}\n")
    sys.stderr.flush()


def register(app: typer.Typer) -> None:
    """Add ``vecx index``."""

    @app.command("index", epilog=examples(
        "vecx index docs.i8.parquet -o docs.vecx --rescore docs.parquet",
        "vecx index docs.fde.parquet -o docs.vecx --rescore docs.mv.parquet",
        "vecx index docs.f16.parquet -o docs.vecx --connectivity 32 --deterministic",
        "vecx index docs.pq.parquet -o docs.vecx --rescore docs.parquet      # PQ codes: exhaustive ADC scan",
        "vecx index docs.rabitq.parquet -o docs.vecx --scan graph --rescore docs.parquet",
    ))
    def index(table: Annotated[str, typer.Argument(metavar="TABLE", help="Encoded vector table (float32, float16, int8:mode=global or binarize codes; pq and binarize:mode=rabitq codes are scored by their codec).", show_default=False)],
              output: Annotated[str, typer.Option("--output", "-o", metavar="DIR", help="Index to write (a directory; replaced atomically).", show_default=False)],
              rescore: Annotated[Optional[str], typer.Option("--rescore", metavar="TABLE", help="Float32/float16 table of the same source, kept memory-mapped for rescoring (a multi-vector table: exact MaxSim over its token vectors, plus a mean-vector graph for --first-stage mean|both).", show_default=False)] = None,
              connectivity: Annotated[int, typer.Option("--connectivity", metavar="M", min=2, help="Graph edges per node (HNSW M).")] = 16,
              expansion_add: Annotated[int, typer.Option("--expansion-add", metavar="N", min=1, help="Candidate list size while building (efConstruction).")] = 128,
              expansion_search: Annotated[int, typer.Option("--expansion-search", metavar="N", min=1, help="Default candidate list size while searching (ef).")] = 64,
              oversample: Annotated[int, typer.Option("--oversample", metavar="X", min=1, help="Default rescoring factor: fetch X*k candidates, rescore, keep k.")] = 4,
              deterministic: Annotated[bool, typer.Option("--deterministic", help="Single-threaded add in row order: the same graph bytes every time.")] = False,
              scan: Annotated[str, typer.Option("--scan", metavar="auto|exhaustive|graph", help="Default search: exhaustive compares every code (exact for the codes; no graph is built for pq and binarize:mode=rabitq codes, which their codec scores), graph walks the HNSW graph (for rabitq: a Hamming graph over the sign bits whose candidates the estimator ranks). auto: graph, but for pq/rabitq codes only above 200,000 rows.")] = "auto",
              pool: Annotated[int, typer.Option("--pool", metavar="X", min=1, help="--scan graph: the graph returns X times the candidates kept, for the estimator to rank.")] = 4,
              no_wait: Annotated[bool, typer.Option("--no-wait", help="If another vecx process is writing this index, exit 6 at once instead of waiting for it.")] = False,
              quiet: Quiet = False, json: Json = False, debug: Debug = False) -> None:
        """Build a usearch HNSW index over encoded vectors, with ids, payload and optional rescoring vectors.

        The index is a directory (manifest with checksums, graph, rows, chain state); a rebuild
        replaces it atomically, so running queries see the old or the new index, never a mix,
        and a query that is running keeps its version until it ends. Builds of one index take
        turns on a writer lock (.NAME.lock beside it): an overlapping cron job waits, or exits 6
        with --no-wait. A failed or interrupted build leaves the previous index as it was.
        """
        from vecx import api
        from vecx.indexes.build import BuildOptions

        report = api.build_index(table, output, rescore=rescore, progress=Bar(quiet), options=BuildOptions(
            connectivity=connectivity, expansion_add=expansion_add, expansion_search=expansion_search,
            oversample=oversample, deterministic=deterministic, scan=scan, pool=pool),
            wait=not no_wait, on_wait=lambda pid: waiting(output, pid))
        manifest = report.manifest
        if json:
            emit_json(report)
        else:
            g = manifest["graph"]
            c = manifest.get("codes")
            kind = (f"{c['codec']} codes scored by their codec ({manifest['search']['scan']} scan"
                    + (f", {g['dtype']} {g['metric']} navigation graph)" if g["file"] else ")") if c
                    else f"{g['dtype']} {g['metric']} graph")
            message(f"indexed {manifest['rows']:,} vectors into {output}: {kind}, "
                    f"{manifest['bytes_per_vector']} bytes/vector"
                    + (", rescoring with " + manifest["rescore"]["dtype"] if manifest["rescore"] else ""), quiet)
