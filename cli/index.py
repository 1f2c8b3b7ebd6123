"""``vecx index``, ``vecx delete``, ``vecx compact``: build an index directory from an encoded vector
table, grow it by segments, delete rows, merge segments."""

import sys
from typing import Annotated, Any, Optional

import typer

from vecx.cli.common import Bar, Debug, Engine, Json, Quiet, Scheduler, emit_json, examples, message

NoWait = Annotated[bool, typer.Option("--no-wait", help="If another vecx process is writing this index, exit 6 at once instead of waiting for it.")]


def waiting(index: str, pid: int | None) -> None:
    """Say on stderr (always: a silent wait looks like a hang) that another writer holds the index."""
    sys.stderr.write(f"vecx: waiting for another vecx process{f' (pid {pid})' if pid else ''} "
                     f"that is writing {index}\n")
    sys.stderr.flush()


def register(app: typer.Typer) -> None:
    """Add ``vecx index``, ``vecx delete`` and ``vecx compact``."""
    _add_index(app)
    _add_delete(app)
    _add_compact(app)


def _add_index(app: typer.Typer) -> None:
    @app.command("index", epilog=examples(
        "vecx index docs.i8.parquet -o docs.vecx --rescore-vectors docs.parquet",
        "vecx index docs.fde.parquet -o docs.vecx --rescore-vectors docs.mv.parquet",
        "vecx index docs.f16.parquet -o docs.vecx --connectivity 32 --deterministic",
        "vecx index docs.pq.parquet -o docs.vecx --rescore-vectors docs.parquet      # PQ codes: exhaustive ADC scan",
        "vecx index docs.rabitq.parquet -o docs.vecx --scan graph --rescore-vectors docs.parquet",
        "vecx index new.parquet -o docs.vecx --append          # a new segment; ids already there are replaced",
        "vecx index docs.i8.parquet -o docs.vecx --rescore-vectors docs.parquet --if-changed   # cron: skip if same input",
        "vecx index codes/ -o docs.vecx --shards 8 --engine dask --scheduler tcp://head:8786",
        "vecx index docs.parquet -o docs.vecx --budget 64B/vector --target-recall 0.95   # plan, then build the pick",
    ))
    def index(table: Annotated[str, typer.Argument(metavar="TABLE", help="Encoded vector table (float32, float16, int8:mode=global or binarize codes; pq and binarize:mode=rabitq codes are scored by their codec): a file, or a dataset of parts (folder, glob, s3:// ...).", show_default=False)],
              output: Annotated[str, typer.Option("--output", "-o", metavar="DIR", help="Index to write (a directory; replaced atomically).", show_default=False)],
              rescore_vectors: Annotated[Optional[list[str]], typer.Option("--rescore-vectors", metavar="TABLE", help="A table of the same source, kept memory-mapped for rescoring: float32/float16 vectors (exact scores), or codes their codec scores or decodes (e.g. binarize:mode=rabitq:bits=4, int8: an index that fits in memory; scored as the codec scores them). Repeat it for rescoring stages, cheapest first: each ranks the candidates the one before kept, e.g. 4-bit codes in memory, then float vectors read from disk for the few left (--oversample 20,2). A multi-vector table (alone): exact MaxSim over its token vectors, plus a mean-vector graph for --first-stage mean|both.", show_default=False)] = None,
              rescore: Annotated[Optional[str], typer.Option("--rescore", metavar="TABLE", hidden=True)] = None,
              connectivity: Annotated[int, typer.Option("--connectivity", metavar="M", min=2, help="Graph edges per node (HNSW M).")] = 16,
              expansion_add: Annotated[int, typer.Option("--expansion-add", metavar="N", min=1, help="Candidate list size while building (efConstruction).")] = 128,
              expansion_search: Annotated[int, typer.Option("--expansion-search", metavar="N", min=1, help="Default candidate list size while searching (ef).")] = 64,
              oversample: Annotated[Optional[str], typer.Option("--oversample", metavar="X[,Y...]", help="Default rescoring factors: fetch X*k candidates, rescore, keep k; with several rescoring stages, one factor per stage (X*k candidates for the first, which keeps Y*k for the next ...). [default: 4; 10,2 for two stages]", show_default=False)] = None,
              deterministic: Annotated[bool, typer.Option("--deterministic", help="Single-threaded add: the same graph bytes every time.")] = False,
              order: Annotated[str, typer.Option("--order", metavar="auto|input|random|lid", help="The order rows enter the graph (HNSW recall depends on it: early rows become hubs). input: the table's; random: a seeded shuffle, undoing any grouping of the rows (by source, date, category); lid: highest local intrinsic dimensionality first (Elliott & Clark 2024), estimated from each row's 20 nearest neighbours among a seeded sample of up to 2,000 rows, in the codes' own metric; auto: lid for float and int8 graphs built multi-threaded, else input (what measured best). Orders other than input hold the graph's vectors in memory once more while building.")] = "auto",
              scan: Annotated[str, typer.Option("--scan", metavar="auto|exhaustive|graph|ivf", help="Default search: exhaustive compares every code (exact for the codes; no graph is built for pq and binarize:mode=rabitq codes, which their codec scores), graph walks the HNSW graph (for rabitq: a Hamming graph over the sign bits whose candidates the estimator ranks), ivf scans the --nprobe lists nearest the query (codes in coarse lists, pq:...:ivf=N: their default). auto: graph, but for codes their codec scores (pq, rabitq, per-dimension int8) only above 200,000 rows (about 8 MB of int8 codes: 20,000 rows of 384-d).")] = "auto",
              pool: Annotated[int, typer.Option("--pool", metavar="X", min=1, help="--scan graph: the graph returns X times the candidates kept, for the estimator to rank.")] = 4,
              nprobe: Annotated[int, typer.Option("--nprobe", metavar="N", min=1, help="Codes in coarse lists (pq:...:ivf=N): lists each query scans by default.")] = 16,
              query_bits: Annotated[int, typer.Option("--query-bits", metavar="B", min=0, max=8, help="RaBitQ codes (binarize:mode=rabitq): round each query to B bits per coordinate by default (1-8, faiss's qb; 'vecx query --query-bits' for one search): a faster scan, scores of the rounded query. 0: queries are not rounded.")] = 0,
              append: Annotated[bool, typer.Option("--append", help="Add TABLE's rows to the index as a new segment instead of rebuilding it (builds it if it does not exist). TABLE is encoded by the index's chain, or is earlier in it (e.g. the imported vectors: encoded on the way in, and kept as rescoring vectors when the index rescores with them). Rows whose id is already in the index replace the old rows; a table already appended is skipped. Graph options come from the index.")] = False,
              max_segments: Annotated[Optional[int], typer.Option("--max-segments", metavar="N", min=1, help="With --append: if the index then has more than N segments, merge the newest ones (as 'vecx compact --max-segments N').", show_default=False)] = None,
              auto_merge: Annotated[Optional[bool], typer.Option("--auto-merge/--no-auto-merge", help="With --append: merge the newest segments while the next older one holds no more rows than they do together, so that daily appends keep about log2(appends) segments (each row is rewritten about as many times). [default: --auto-merge]", show_default=False)] = None,
              shards: Annotated[int, typer.Option("--shards", metavar="N", min=1, help="Build the index as N segments of nearly equal row ranges (queries merge them); in parallel with --engine dask.")] = 1,
              engine: Engine = "local", scheduler: Scheduler = None,
              if_changed: Annotated[bool, typer.Option("--if-changed", help="Do nothing (exit 0, a note on stderr) when the index was built from TABLE (and --rescore-vectors) with the same fingerprints, as one segment without deletions.")] = False,
              budget: Annotated[Optional[str], typer.Option("--budget", metavar="SIZE", help="TABLE is the imported float vectors: plan an index for this memory budget (as 'vecx plan TABLE --budget SIZE': 2MB for the whole index, or 64B/vector), encode TABLE with the pick's chain and build it with the pick's rescoring, --oversample, --nprobe and --expansion-search. The built index's memory (graph, codes, state) is checked before it replaces DIR: over the budget, exit 2 and DIR is left as it was.", show_default=False)] = None,
              target_recall: Annotated[Optional[float], typer.Option("--target-recall", metavar="R", min=0.0, max=1.0, help="With --budget: pick the fastest candidate reaching recall@10 >= R (as 'vecx plan --target-recall').", show_default=False)] = None,
              queries: Annotated[Optional[str], typer.Option("--queries", metavar="FILE", help="With --budget: query vectors the plan measures with (default: sampled rows of TABLE).", show_default=False)] = None,
              no_wait: NoWait = False,
              quiet: Quiet = False, json: Json = False, debug: Debug = False) -> None:
        """Build a usearch HNSW index over encoded vectors, with ids, payload and optional rescoring vectors.

        The index is a directory (manifest with checksums, graph, rows, chain state); a rebuild
        replaces it atomically, so running queries see the old or the new index, never a mix,
        and a query that is running keeps its version until it ends. Builds of one index take
        turns on a writer lock (.NAME.lock beside it): an overlapping cron job waits, or exits 6
        with --no-wait. A failed or interrupted build leaves the previous index as it was.
        """
        from vecx import api
        from vecx.cli.common import factors, renamed
        from vecx.indexes.build import BuildOptions

        stages = renamed("--rescore-vectors", rescore_vectors, "--rescore", [rescore] if rescore else None)
        _refuse_conflicts(append=append, if_changed=if_changed, shards=shards, engine=engine,
                          max_segments=max_segments, auto_merge=auto_merge, budget=budget, target_recall=target_recall,
                          queries=queries, rescore=bool(stages), scan=scan)
        if budget is not None:
            _index_for_budget(table, output, budget, target_recall, queries, connectivity=connectivity,
                              expansion_add=expansion_add, deterministic=deterministic, no_wait=no_wait,
                              quiet=quiet, json=json)
            return
        options = BuildOptions(connectivity=connectivity, expansion_add=expansion_add,
                               expansion_search=expansion_search, oversample=factors(oversample),
                               deterministic=deterministic, scan=scan, pool=pool, nprobe=nprobe, order=order,
                               query_bits=query_bits)
        common: dict[str, Any] = {"rescore": stages or None, "progress": Bar(quiet), "options": options, "wait": not no_wait,
                                  "on_wait": lambda pid: waiting(output, pid)}
        if append:
            report = api.append_index(table, output, max_segments=max_segments,
                                      auto_merge=auto_merge is not False, **common)
        else:
            report = api.build_index(table, output, if_changed=if_changed, shards=shards, engine=engine,
                                     scheduler=scheduler, **common)
        if json:
            emit_json(report)
        elif report.action in ("appended", "unchanged"):
            change = report.change or {}
            note(change.get("note") or _appended(output, report.manifest, change), quiet)
        else:
            message(_built(output, report.manifest), quiet)


def _refuse_conflicts(*, append: bool, if_changed: bool, shards: int, engine: str, max_segments: int | None,
                      auto_merge: bool | None, budget: str | None, target_recall: float | None, queries: str | None,
                      rescore: bool, scan: str) -> None:
    """Usage errors for options of ``vecx index`` that do not go together."""
    from vecx.errors import UsageError

    if (max_segments is not None or auto_merge is not None) and not append:
        raise UsageError("--max-segments and --[no-]auto-merge apply to --append (or see 'vecx compact')")
    if append and if_changed:
        raise UsageError("--append skips a table already in the index by itself; drop --if-changed")
    if append and (shards > 1 or engine != "local"):
        raise UsageError("--shards and --engine build a whole index; --append adds one segment")
    if budget is None and (target_recall is not None or queries is not None):
        raise UsageError("--target-recall and --queries apply to --budget (or see 'vecx eval', 'vecx plan')")
    if budget is not None and (append or if_changed or shards > 1 or engine != "local" or rescore or scan != "auto"):
        raise UsageError("--budget plans the chain, the scan and the rescoring of a whole new index: drop "
                         "--append, --if-changed, --shards, --engine, --rescore-vectors and --scan")


def _index_for_budget(table: str, output: str, budget: str, target_recall: float | None, queries: str | None, *,
                      connectivity: int, expansion_add: int, deterministic: bool, no_wait: bool, quiet: bool,
                      json: bool) -> None:
    """``vecx index TABLE --budget SIZE``: the plan's pick, built on the whole of TABLE."""
    from vecx.bench.plan import PlanOptions, build_for_budget

    report = build_for_budget(table, output, PlanOptions(budget=budget, target_recall=target_recall, queries=queries),
                              progress=Bar(quiet), wait=not no_wait, on_wait=lambda pid: waiting(output, pid),
                              connectivity=connectivity, expansion_add=expansion_add, deterministic=deterministic)
    if json:
        emit_json(report)
        return
    plan, pick, tuning = report["plan"], report["plan"]["pick"], report.get("tuning")
    target, k = plan["target_recall"], plan["k"]
    reached = "" if target is None else (f", reaches recall@{k} >= {target} on the sample"
                                         if pick["reaches_target"] else f", the best recall (none reaches {target})")
    message(f"plan: {pick['spec']} of {len(plan['candidates'])} candidates measured on {plan['sample_rows']:,} "
            f"sample rows{reached}", quiet)
    message(_built(output, report["manifest"]) + f"; {report['memory_bytes']:,} bytes in memory, budget "
            f"{plan['budget']['bytes']:,}", quiet)
    if tuning:
        settings = ", ".join(f"{knob} {tuning[knob]}" for knob in ("oversample", "nprobe", "expansion") if knob in tuning)
        note(f"on the whole index: recall@{k} {tuning[f'recall@{k}']} with {settings}, saved as its defaults"
             if tuning["reached"] else f"on the whole index no setting reached recall@{k} >= {target} (best "
             f"{max(t[f'recall@{k}'] for t in tuning['tried'])}); the plan's settings stay", quiet)


def _add_delete(app: typer.Typer) -> None:
    @app.command("delete", epilog=examples(
        "vecx delete docs.vecx --id 42 --id 43",
        "vecx delete docs.vecx --ids gone.txt            # one id per line; - reads stdin",
        "vecx delete docs.vecx --where \"lang = 'xx' or year < 1990\"",
    ))
    def delete(index: Annotated[str, typer.Argument(metavar="INDEX", help="Index directory.", show_default=False)],
               ids_file: Annotated[Optional[str], typer.Option("--ids", metavar="FILE", help="Ids to delete, one per line (- for stdin).", show_default=False)] = None,
               id_values: Annotated[Optional[list[str]], typer.Option("--id", metavar="ID", help="An id to delete (repeatable).", show_default=False)] = None,
               where: Annotated[Optional[str], typer.Option("--where", metavar="EXPR", help="Delete the rows this filter matches (the 'vecx query --where' language).", show_default=False)] = None,
               no_wait: NoWait = False, quiet: Quiet = False, json: Json = False, debug: Debug = False) -> None:
        """Delete rows of an index: they never come back from query, eval or --like.

        Deleted rows are recorded as tombstones in a new version of the index (swapped in
        atomically, under the writer lock, as a build is); 'vecx compact' drops them for good.
        Ids that are not in the index are reported, not an error.
        """
        from vecx import api

        ids = list(id_values or []) + (_read_ids(ids_file) if ids_file else [])
        report = api.delete_rows(index, ids=ids or None, where=where, wait=not no_wait,
                                 on_wait=lambda pid: waiting(index, pid))
        if json:
            emit_json(report)
            return
        gone = len(report.missing)
        missing = f"; {gone:,} of the ids given {'is' if gone == 1 else 'are'} not in it" if gone else ""
        note(f"deleted {report.rows_deleted:,} rows of {index}: {report.live_rows:,} of {report.rows:,} rows live, "
             f"{report.segments} segment{'s' if report.segments != 1 else ''}{missing}", quiet)


def _add_compact(app: typer.Typer) -> None:
    @app.command("compact", epilog=examples(
        "vecx compact docs.vecx                      # one segment, deleted rows dropped",
        "vecx compact docs.vecx --max-segments 4     # merge only the newest segments",
    ))
    def compact(index: Annotated[str, typer.Argument(metavar="INDEX", help="Index directory.", show_default=False)],
                max_segments: Annotated[int, typer.Option("--max-segments", metavar="N", min=1, help="Merge the newest segments until at most N remain (1: rewrite everything).")] = 1,
                no_wait: NoWait = False, quiet: Quiet = False, json: Json = False, debug: Debug = False) -> None:
        """Merge an index's segments, dropping deleted rows.

        The stored codes are reinserted as they are, in row order: compacting gives the graph a
        full build of the same rows would. The result is a new version swapped in atomically.
        """
        from vecx import api

        report = api.compact_index(index, max_segments=max_segments, progress=Bar(quiet), wait=not no_wait,
                                   on_wait=lambda pid: waiting(index, pid))
        if json:
            emit_json(report)
            return
        if report.action == "unchanged":
            note(f"{index}: {report.note}", quiet)
            return
        message(f"compacted {report.merged} segments of {index}, dropping {report.rows_deleted:,} deleted rows: "
                f"{report.rows:,} rows in {report.segments} segment{'s' if report.segments != 1 else ''}", quiet)



def _read_ids(path: str) -> list[str]:
    """Ids, one per line, from a file or stdin (blank lines skipped)."""
    from vecx.errors import UsageError

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ids ({exc.strerror})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def note(text: str, quiet: bool) -> None:
    """A note on stderr that cron logs should keep (terminal or not), unless --quiet."""
    if not quiet:
        sys.stderr.write(f"vecx: {text}\n")


def _built(output: str, manifest: dict[str, Any]) -> str:
    g = manifest["graph"]
    c = manifest.get("codes")
    kind = (f"{c['codec']} codes scored by their codec ({manifest['search']['scan']} scan"
            + (f", {g['dtype']} {g['metric']} navigation graph)" if g["file"] else ")") if c
            else f"{g['dtype']} {g['metric']} graph")
    return (f"indexed {manifest['rows']:,} vectors into {output}: {kind}, {manifest['bytes_per_vector']} bytes/vector"
            + (", rescoring with " + ", then ".join(stage["dtype"] for stage in (*manifest.get("refine", ()),
                                                                                manifest["rescore"]))
               if manifest["rescore"] else ""))


def _appended(output: str, manifest: dict[str, Any], change: dict[str, Any]) -> str:
    segments = len(manifest.get("segments") or [None])
    deleted = int((manifest.get("deleted") or {}).get("rows", 0))
    replaced = f" ({change.get('rows_deleted', 0):,} replaced rows of the same ids)" if change.get("rows_deleted") else ""
    merged = f"; merged {change['merged']} segments" if change.get("merged") else ""
    return (f"appended {change.get('rows_added', 0):,} rows to {output}{replaced}: "
            f"{int(manifest['rows']) - deleted:,} live rows in {segments} segment{'s' if segments != 1 else ''}{merged}")
