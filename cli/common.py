"""Options shared by several commands, spelled once; output helpers; the progress bar.

Nothing here imports numpy or pyarrow: ``vecx --help`` must stay fast.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any, Optional

import typer

from vecx.errors import UsageError

Input = Annotated[list[str], typer.Argument(metavar="INPUT...", help="Input file (.npy, .fvecs/.ivecs/.bvecs, .parquet, .arrow, .jsonl, .csv, .hdf5 of ann-benchmarks: its train set), a dataset of Parquet parts (a folder, a glob, or a URI: s3://, gs://, file://, hf://), or - for stdin. Several inputs (Parquet files or datasets) are read as one dataset, in the order given.", show_default=False)]
Output = Annotated[str, typer.Option("--output", "-o", metavar="FILE", help="Output .parquet file; DIR/ (trailing slash) for one part per input part of a dataset, plus DIR/_vecx.json; or - for an Arrow IPC stream on stdout.", show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or messages on stderr (errors still show).")]
Json = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON report on stdout.")]
Queries = Annotated[Optional[str], typer.Option("--queries", metavar="FILE", help="Query vectors, in the base's space or its chain's input space (.npy, .parquet, ...; an ann-benchmarks .hdf5: its test set, the default for an .hdf5 base).", show_default=False)]
OldQueries = Annotated[Optional[str], typer.Argument(metavar="[QUERIES]", hidden=True, show_default=False)]
JsonFormat = Annotated[bool, typer.Option("--json", help="Shorthand for --format json.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show a full traceback on errors.")]
Seed = Annotated[Optional[int], typer.Option("--seed", metavar="N", help="Seed for stages that do not set their own (default 0).", show_default=False)]
Column = Annotated[Optional[str], typer.Option("--column", metavar="NAME", help="Raw input: column or JSON field holding the vectors, or an HDF5 file's dataset (default: auto-detect; train).", show_default=False)]
IdColumn = Annotated[Optional[str], typer.Option("--id-column", metavar="NAME", help="Raw input: column or field holding unique ids (default: 'id' if present, else row numbers).", show_default=False)]
Metric = Annotated[Optional[str], typer.Option("--metric", metavar="METRIC", help="Raw input: the similarity the vectors are for: cosine, ip or l2 (default cosine; angular, euclidean and dot are taken for them).", show_default=False)]
Model = Annotated[Optional[str], typer.Option("--model", metavar="NAME", help="The embedding model that made the vectors (e.g. sentence-transformers/all-MiniLM-L6-v2): recorded in the provenance, carried by every later step, shown by 'vecx info'; a table that names another model is refused.", show_default=False)]
Keep = Annotated[Optional[str], typer.Option("--keep", metavar="A,B", help="JSON records: fields to keep as payload columns (comma-separated; shown by 'vecx query --fields').", show_default=False)]
Engine = Annotated[str, typer.Option("--engine", metavar="local|dask", help="Where parallel work runs (the parts of a -o DIR/ output, an index's --shards): local (this process, one after another) or dask (tasks on a Dask cluster: --scheduler, DASK_SCHEDULER_ADDRESS, or else a LocalCluster of this machine; pip install 'dask[distributed]'). Inputs and outputs must be on storage every worker reaches.")]
Scheduler = Annotated[Optional[str], typer.Option("--scheduler", metavar="ADDRESS", help="Dask scheduler for --engine dask, e.g. tcp://host:8786 (default: DASK_SCHEDULER_ADDRESS).", show_default=False)]
StateIn = Annotated[Optional[str], typer.Option("--state", metavar="FILE", help="Apply a fitted state (from 'vecx fit' or --save-state) instead of fitting.", show_default=False)]
StateOut = Annotated[Optional[str], typer.Option("--save-state", metavar="FILE", help="Also write the fitted state to this file, to reuse on other files.", show_default=False)]


def read_options(column: str | None, id_column: str | None, metric: str | None, ids_file: str | None = None,
                 keep: str | None = None, model: str | None = None) -> Any:
    """Build :class:`vecx.formats.readers.ReadOptions` from CLI values."""
    from vecx.formats.readers import ReadOptions

    kept = tuple(f.strip() for f in keep.split(",") if f.strip()) if keep else None
    return ReadOptions(column=column, id_column=id_column, metric=metric, ids_file=ids_file, keep=kept, model=model)


def renamed(new: str, new_value: Any, old: str, old_value: Any) -> Any:
    """The value of an option given by its name, or by the name it had before (``old``: a hidden alias
    that still works, with a note on stderr saying the new name)."""
    from vecx.errors import UsageError

    if old_value is None or old_value == []:
        return new_value
    if new_value is not None and new_value != []:
        raise UsageError(f"give {new} (or its old name {old}), not both")
    typer.echo(f"vecx: {old} is now {new}; the old name still works, for now", err=True)
    return old_value


def factors(text: str | None) -> int | tuple[int, ...] | None:
    """``--oversample``: one factor (``10``), or one per rescoring stage (``20,4``)."""
    from vecx.errors import UsageError

    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise UsageError(f"--oversample {text}: give a factor of at least 1, or one per rescoring stage "
                         "(e.g. 20,4: 20 x k candidates for the first stage, of which it keeps 4 x k for the next)")
    return values[0] if len(values) == 1 else values


def query_file(option: str | None, positional: str | None, base: str) -> str:
    """The queries of truth/bench: ``--queries FILE``, the old second argument (with a note), or the
    test set of an ann-benchmarks HDF5 base."""
    from vecx.errors import UsageError
    from vecx.formats.hdf5 import is_hdf5

    if positional is not None:
        if option is not None:
            raise UsageError("give the queries once: --queries FILE (a second argument is its old spelling)")
        typer.echo("vecx: queries as a second argument are now --queries FILE; the old spelling still works, "
                   "for now", err=True)
        return positional
    if option is not None:
        return option
    if is_hdf5(base):
        return base
    raise UsageError("no queries: give --queries FILE")


def output_format(fmt: str | None, json_flag: bool, choices: tuple[str, ...], default: str) -> str:
    """The output format from ``--format`` and its shorthand ``--json``, checked against ``choices``."""
    from vecx.errors import UsageError

    if json_flag:
        if fmt not in (None, "json"):
            raise UsageError(f"--json is short for --format json; it cannot be combined with --format {fmt}")
        return "json"
    fmt = fmt or default
    if fmt not in choices:
        raise UsageError(f"--format must be one of {', '.join(choices)}, not {fmt!r}")
    return fmt


#: The commands whose ``--json`` once took a JSON record (now ``--record``): ``--json VALUE`` there,
#: where VALUE is a record (``{...}``), a file (``@FILE``) or stdin (``-``), is read as ``--record``.
_RECORD_COMMANDS = (("query",), ("vsa", "explain"))


def old_record_spelling(args: list[str]) -> list[str]:
    """A command line with the old ``--json RECORD`` spelling turned into ``--record RECORD`` (with a
    note on stderr); any other command line as it is. ``--json`` alone is now ``--format json``."""
    if not any(tuple(args[:len(words)]) == words for words in _RECORD_COMMANDS):
        return args
    out: list[str] = []
    rest = iter(range(len(args)))
    for i in rest:
        arg = args[i]
        value = None
        if arg.startswith("--json="):
            value = arg[len("--json="):]
        elif arg == "--json" and i + 1 < len(args) and (args[i + 1] == "-" or args[i + 1][:1] in ("{", "@", "[")):
            value = args[i + 1]
            next(rest)
        if value is None:
            out.append(arg)
            continue
        typer.echo("vecx: --json RECORD is now --record RECORD (--json alone is --format json); "
                   "the old spelling still works, for now", err=True)
        out += ["--record", value]
    return out


def stderr_enabled(quiet: bool) -> bool:
    """Messages and progress go to stderr only if it is a terminal and not silenced."""
    return not quiet and sys.stderr.isatty()


def message(text: str, quiet: bool) -> None:
    """A human message on stderr (only for a terminal, never with --quiet)."""
    if stderr_enabled(quiet):
        sys.stderr.write(f"vecx: {text}\n")


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout: plain data, a report (its ``to_json()``) or a list of reports."""
    import orjson

    if hasattr(data, "to_json"):
        data = data.to_json()
    elif isinstance(data, list):
        data = [item.to_json() if hasattr(item, "to_json") else item for item in data]
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    sys.stdout.flush()


def check_json_output(json_out: bool, output: str) -> None:
    """--json and -o - would both write to stdout."""
    if json_out and output == "-":
        raise UsageError("--json cannot be combined with -o - (stdout carries the data)",
                         hint="write the data to a file, or drop --json")


class Bar:
    """Progress on stderr with tqdm: off when stderr is not a terminal, or with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = stderr_enabled(quiet) and not os.environ.get("VECX_NO_PROGRESS")
        self._bar: Any = None
        self._ticking: Any = None  # (event, lock): stops the clock of a step without a row count

    def start(self, total: int | None, desc: str) -> None:
        """A new bar for the step ``desc`` (``total`` rows, None when unknown), replacing the previous one.

        A step without a row count (a fit: OPQ takes minutes) shows its running time instead of a
        count stuck at 0, ticking twice a second.
        """
        if not self.enabled:
            return
        # tqdm ships no type information, and the mypy configuration does not list it among the
        # untyped libraries (tqdm.* with ignore_missing_imports, or types-tqdm, would make this unneeded).
        from tqdm import tqdm

        self.close()
        self._bar = tqdm(total=total, desc=f"vecx: {desc}", unit=" rows", unit_scale=True,
                         file=sys.stderr, leave=False, dynamic_ncols=True,
                         **({} if total is not None else {"bar_format": "{desc} ... {elapsed}"}))
        if total is None:
            import threading

            stop, bar, lock = threading.Event(), self._bar, threading.Lock()
            self._ticking = (stop, lock)

            def tick() -> None:
                while not stop.wait(0.5):
                    with lock:  # never after close() took the bar off
                        if not stop.is_set():
                            bar.refresh()

            threading.Thread(target=tick, name="vecx-progress", daemon=True).start()

    def advance(self, n: int) -> None:
        """The bar moves on by ``n`` rows (nothing while no bar is shown)."""
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        """The bar is taken off the terminal (``leave=False``), if one is shown."""
        if self._ticking is not None:
            stop, lock = self._ticking
            with lock:
                stop.set()
            self._ticking = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def examples(*lines: str) -> str:
    """An 'Examples:' epilog block that click will not re-wrap."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def report_encode(report: Any, json_out: bool, quiet: bool) -> None:
    """Print what an encode/import did: JSON on stdout, or a one-line summary on stderr."""
    for note in () if quiet else getattr(report, "notes", None) or ():
        typer.echo(f"vecx: note: {note}", err=True)  # shown in a pipe too: the data may be misread
    if json_out:
        emit_json(report)
        return
    where = "stdout" if report.output == "-" else report.output
    message(f"wrote {report.rows:,} vectors to {where}: {report.dim} x {report.dtype} = "
            f"{report.bytes_per_vector} bytes/vector ({report.seconds:.2f} s)", quiet)
