"""``vecx plan``: measure a few chains on a sample and pick an index for a memory budget."""

from typing import Annotated, Optional

import typer

from vecx.cli.common import Bar, Debug, Json, Quiet, emit_json, examples


def register(app: typer.Typer) -> None:
    """Add ``vecx plan``."""

    @app.command("plan", epilog=examples(
        "vecx plan docs.parquet --budget 2MB",
        "vecx plan docs.parquet --budget 64B/vector --target-recall 0.95",
        "vecx plan docs.parquet --budget 1GiB --queries q.npy --json",
    ))
    def plan(base: Annotated[str, typer.Argument(metavar="BASE", help="Imported float vectors (a vecx table or dataset).", show_default=False)],
             budget: Annotated[str, typer.Option("--budget", metavar="SIZE", help="What the index may keep in memory: the whole index (2MB, 500KiB, 1.5GB) or per vector (64B/vector). The graph and the codes count; rescoring vectors and payload are memory-mapped and do not.", show_default=False)],
             target_recall: Annotated[Optional[float], typer.Option("--target-recall", metavar="R", min=0.0, max=1.0, help="Find each candidate's least oversampling, then expansion or lists probed, reaching recall@k >= R (as 'vecx eval --target-recall'), and pick the fastest there; default: the best recall.", show_default=False)] = None,
             queries: Annotated[Optional[str], typer.Option("--queries", metavar="FILE", help="Query vectors to measure with (default: sampled rows of BASE, left out of the sample).", show_default=False)] = None,
             k: Annotated[int, typer.Option("-k", metavar="K", min=1, help="The k of recall@k.")] = 10,
             sample: Annotated[int, typer.Option("--sample", metavar="N", min=100, help="Base rows each candidate is built on.")] = 20_000,
             seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the sample and of the chains.")] = 0,
             json: Json = False, quiet: Quiet = False, debug: Debug = False) -> None:
        """Measure a small set of chains on a seeded sample of BASE and pick an index for a memory budget.

        Candidates: float16 and int8 graphs, PCA then int8, sign bits, RaBitQ (with and without
        coarse lists) and OPQ + PQ (with and without coarse lists) at the sizes the budget allows.
        Each is built on the sample and measured (recall@k of its codes and rescored x4 with the
        float vectors, batch QPS); its memory (graph, codes, fitted state) is measured on the
        sample index and extrapolated to BASE's rows. Prints every candidate, the Pareto set
        (recall against memory), the pick and the commands that build it on BASE.
        """
        from vecx.bench.plan import PlanOptions, run

        report = run(base, PlanOptions(budget=budget, target_recall=target_recall, queries=queries, k=k,
                                       sample=sample, seed=seed), progress=Bar(quiet))
        if json:
            emit_json(report)
            return
        _print(report)


def _print(report: dict) -> None:
    from vecx.cli import render

    k = report["k"]
    b = report["budget"]
    typer.echo(f"plan   {report['base']}: {report['rows']:,} rows; budget {b['given']} "
               f"({b['bytes']:,} bytes, {b['bytes_per_vector']:g} per vector)")
    typer.echo(f"sample {report['sample_rows']:,} rows, {report['queries']:,} queries; recall@{k}, rescored x"
               f"{report['oversample']} with the float vectors (memory-mapped, not counted)")
    target = report["target_recall"]
    rows = [["spec", "scan", "memory", "B/vector", f"recall@{k}", f"x{report['oversample']}", "QPS", "fits", "pareto",
             *(["at target", "QPS there"] if target is not None else [])]]
    for c in sorted(report["candidates"], key=lambda c: c["memory_bytes"]):
        tuned = c.get("tuned")
        rows.append([c["spec"], c["scan"], _size(c["memory_bytes"]), f"{c['bytes_per_vector']:g}",
                     f"{c[f'recall@{k}']:.4f}", f"{c[f'recall@{k}_rescored']:.4f}", f"{c['qps'] or 0:,.0f}",
                     "yes" if c["fits"] else "no", "*" if c["pareto"] else "",
                     *([_settings(tuned), f"{tuned['qps'] or 0:,.0f}" if tuned else ""] if target is not None else [])])
    render.table(rows, right=(2, 3, 4, 5, 6, 10))
    pick = report["pick"]
    note = "" if target is None else (f" (reaches recall@{k} >= {target})" if pick["reaches_target"]
                                      else f" (none reaches recall@{k} >= {target}: the best recall)")
    typer.echo(f"pick   {pick['spec']}, {_settings(pick['settings'])}, {_size(pick['memory_bytes'])} in memory{note}:")
    for command in pick["commands"]:
        typer.echo(f"  {command}")


def _settings(tuned: dict | None) -> str:
    """Search settings as the plan prints them: 'x4, nprobe 32' ('-' when the target is out of reach)."""
    if not tuned:
        return "-"
    parts = [f"x{tuned['oversample']}" if tuned["oversample"] > 1 else "no rescoring"]
    parts += [f"{knob} {tuned[knob]}" for knob in ("nprobe", "expansion") if knob in tuned]
    return ", ".join(parts)


def _size(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"
