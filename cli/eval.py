"""``vecx eval``: recall by stage, QPS and latency of an index; tunes and saves its search defaults."""

from typing import Annotated, Any, Optional

import typer

from vecx.cli import render
from vecx.cli.common import Debug, Json, Quiet, emit_json, examples


def register(app: typer.Typer) -> None:
    """Add ``vecx eval``."""

    @app.command("eval", epilog=examples(
        "vecx eval docs.vecx --queries q.parquet --truth gt.parquet -k 10",
        "vecx eval docs.vecx --queries q.npy --target-recall 0.95 --save",
        "vecx eval docs.fde.vecx --queries q.mv.parquet --truth gt.parquet --first-stage both",
    ))
    def eval_(index: Annotated[str, typer.Argument(metavar="INDEX", help="An index built by 'vecx index'.", show_default=False)],
              queries: Annotated[str, typer.Option("--queries", metavar="FILE", help="Query vectors in the input space (.npy, .parquet, ...; an ann-benchmarks .hdf5: its test set).", show_default=False)],
              truth: Annotated[Optional[str], typer.Option("--truth", metavar="FILE", help="Ground truth: a 'vecx truth' table, a .npy of base row numbers (queries x k), or an ann-benchmarks .hdf5 (its neighbors) (default: computed exactly from the index's float rescoring vectors).", show_default=False)] = None,
              k: Annotated[int, typer.Option("-k", metavar="K", min=1, help="The k of the tuned recall@k.")] = 10,
              oversample: Annotated[Optional[str], typer.Option("--oversample", metavar="X[,Y...]", help="Oversampling (rescoring) factor to evaluate, or one per rescoring stage (default: the index's).", show_default=False)] = None,
              rescore: Annotated[Optional[int], typer.Option("--rescore", metavar="X", min=1, hidden=True)] = None,
              expansion: Annotated[Optional[int], typer.Option("--expansion", metavar="N", min=1, help="Search expansion to evaluate (default: the index's).", show_default=False)] = None,
              target_recall: Annotated[Optional[float], typer.Option("--target-recall", metavar="R", help="Find the smallest oversampling factor, then search expansion, reaching recall@k >= R.", show_default=False)] = None,
              save: Annotated[bool, typer.Option("--save", help="Store what --target-recall found as the index's defaults (atomically).")] = False,
              first_stage: Annotated[Optional[str], typer.Option("--first-stage", metavar="fde|mean|both", help="Multi-vector index: where candidates come from before the MaxSim rerank. [default: fde]", show_default=False)] = None,
              scan: Annotated[Optional[str], typer.Option("--scan", metavar="exhaustive|graph|ivf", help="Evaluate an exhaustive search of the codes, the graph, or the --nprobe nearest coarse lists (default: the index's).", show_default=False)] = None,
              nprobe: Annotated[Optional[int], typer.Option("--nprobe", metavar="N", min=1, help="Codes in coarse lists: lists scanned per query (default: the index's).", show_default=False)] = None,
              query_bits: Annotated[Optional[int], typer.Option("--query-bits", metavar="B", min=0, max=8, help="RaBitQ codes: evaluate queries rounded to B bits per coordinate (1-8, faiss's qb); 0: not rounded (default: the index's).", show_default=False)] = None,
              json: Json = False, quiet: Quiet = False, debug: Debug = False) -> None:
        """Measure an index: recall of the codes searched exactly (quantization loss), through the graph
        (graph loss) and after rescoring, with QPS and p50/p99 latency.

        Batch QPS is one multi-threaded call over all queries; latencies come from single queries.
        """
        from vecx import api
        from vecx.cli.common import factors, renamed

        rescore = renamed("--oversample", factors(oversample), "--rescore", rescore)
        result = api.evaluate(index, queries, truth_path=truth, k=k, oversample=rescore, expansion=expansion,
                              target_recall=target_recall, save=save, first_stage=first_stage, scan=scan, nprobe=nprobe,
                              query_bits=query_bits)
        if json:
            emit_json(result)
            return
        g = result.graph
        graph = (f"{g['dtype']} {g['metric']} graph (connectivity {g['connectivity']}, expansion add "
                 f"{g['expansion_add']}, search {expansion or g['expansion_search']})")
        if result.scored:
            what = f"{result.scan} scan of codes scored by their codec" + (f", {graph}" if g.get("file") else "")
            if result.nprobe is not None:
                what += f" ({result.nprobe} of {result.lists} lists per query)"
            if result.query_bits:
                what += f", queries rounded to {result.query_bits} bits"
        else:
            what = graph if result.scan == "graph" else f"exhaustive scan of the codes, {graph}"
        typer.echo(f"index   {index}: {result.rows:,} rows, {what}, {result.bytes_per_vector} bytes/vector")
        typer.echo(f"queries {result.queries:,}; truth {result.truth}")
        keys = [c for c in result.stages[0] if c.startswith("recall@")]
        header = ["stage", *keys, "QPS", "p50 ms", "p99 ms"]
        rows = [header] + [[s["stage"], *[f"{s[c]:.4f}" for c in keys], *(
            [f"{s['qps']:,.0f}", f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}"] if "qps" in s else ["", "", ""])]
            for s in result.stages]
        render.table(rows)
        _lid_lines(result, k)
        tuning = result.tuning
        if tuning:
            first = (tuning["tried"] or [{}])[0]
            knob = next((name for name in ("nprobe", "expansion") if name in first), None)

            def at(setting: dict) -> str:
                factor = setting["oversample"]
                spelled = ",".join(map(str, factor)) if isinstance(factor, list) else factor
                return f"oversample {spelled}" + (f", {knob} {setting[knob]}" if knob else "")

            if tuning["reached"]:
                typer.echo(f"target recall@{k} >= {tuning['target']}: {at(tuning)} "
                           f"(recall@{k} {tuning[f'recall@{k}']:.4f})"
                           + ("; saved as the index's defaults" if tuning.get("saved") else ""))
            else:
                best = max(tuning["tried"], key=lambda t: t[f"recall@{k}"])
                typer.echo(f"target recall@{k} >= {tuning['target']} not reached; best {best[f'recall@{k}']:.4f} "
                           f"at {at(best)}")


def _lid_lines(result: Any, k: int) -> None:
    """The set's and the queries' intrinsic dimensionality, and recall@k of the queries of low and high LID."""
    from vecx.cli.info import lid_text

    lid = result.lid or {}
    if lid.get("data") and lid["data"].get("median") is not None:
        typer.echo(f"data    {lid_text(lid['data'])}")
    queries = lid.get("queries")
    if not queries or queries.get("median") is None:
        return
    typer.echo(f"queries LID median {queries['median']}, mean {queries['mean']}, p10-p90 {queries['p10']}-"
               f"{queries['p90']} ({queries['k']} exact nearest codes)")
    split = [f"{s['stage']} {s['by_lid']['low']:.4f} / {s['by_lid']['high']:.4f}" for s in result.stages
             if s.get("by_lid") and None not in s["by_lid"].values()]
    if split:
        typer.echo(f"recall@{k} of the queries at or below / above the median LID: " + "; ".join(split))
