"""`vecx bench --peers` on the shared data sets, written into BENCHMARKS.md.

For each set, runs the ``vecx bench`` command line itself (so the Markdown shows the exact
command that produced each table) with a list of specs chosen for the set, draws its plot
into ``tests/benchmarks/plots/SET.png``, and replaces the section ``HEADING`` (``## Codecs vs faiss
at equal bytes (`vecx bench`)``) of the output file: its Method, one Latest results subsection per
set and its Command (appended if absent; every other section is kept as it is).

    python tests/benchmarks/bench_sets.py --out BENCHMARKS.md
    python tests/benchmarks/bench_sets.py --sets debian-minilm-30k --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile

from _harness import VECX, log, machine

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = "../shared/data"  # relative to the repository root, where the commands run
HEADING = "## Codecs vs faiss at equal bytes (`vecx bench`)"

# Per set: its metric, and the specs to measure (spec strings as on the command line; "@scan=graph" is
# a per-spec index option). Peers at the same bytes are picked by `vecx bench --peers` for each spec.
SETS: dict[str, tuple[str, list[str]]] = {
    "debian-minilm-30k": ("cosine", ["f16", "int8:mode=global", "binarize", "binarize:mode=rabitq",
                                     "binarize:mode=rabitq@scan=graph", "binarize:mode=rabitq:levels=2",
                                     "pca:96", "pca:96@scan=exhaustive", "pca:48", "pca:48@scan=exhaustive",
                                     "pq:48x8", "pq:24x8", "pq:24x8:opq=true", "pca:96,pq:24x8"]),
    "glove50-100k": ("cosine", ["int8:mode=global", "binarize", "binarize:mode=rabitq", "pca:24",
                                "pca:24@scan=exhaustive", "pq:25x8", "pq:10x8", "pq:10x8:opq=true"]),
    "sift128-images-30k": ("l2", ["f16", "int8:mode=global", "binarize", "binarize:mode=rabitq", "pca:32",
                                  "pca:32@scan=exhaustive", "pq:16x8", "pq:16x8:opq=true", "pq:8x8"]),
}
# Extra peers per set (--peer), beyond those picked for each spec.
EXTRA_PEERS: dict[str, list[str]] = {"debian-minilm-30k": [], "glove50-100k": [], "sift128-images-30k": []}


def command(name: str, metric: str, specs: list[str], out_md: str) -> list[str]:
    """The ``vecx bench`` argv for one set (paths relative to the repository root)."""
    argv = ["bench", f"{DATA}/{name}/base.npy", "--queries", f"{DATA}/{name}/queries.npy",
            "--truth", f"{DATA}/{name}/gt.npy", "--metric", metric]
    for spec in specs:
        argv += ["--spec", spec]
    for peer in EXTRA_PEERS.get(name, []):
        argv += ["--peer", peer]
    return argv + ["--peers", "--plot", f"tests/benchmarks/plots/{name}.png", "-o", out_md, "-q"]


def splice(path: str, section: str) -> None:
    """Replace (or append) the HEADING section of a Markdown file, keeping every other section."""
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# vecx benchmarks\n"
    lines = text.splitlines()
    if HEADING in lines:
        start = lines.index(HEADING)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines = lines[:start] + section.rstrip("\n").splitlines() + ([""] + lines[end:] if end < len(lines) else [])
    else:
        lines = lines + [""] + section.rstrip("\n").splitlines()
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines).rstrip("\n") + "\n")
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated, from: " + ", ".join(SETS))
    ap.add_argument("--out", default="BENCHMARKS.md", help="Markdown file whose bench section is replaced")
    args = ap.parse_args()
    names = [n for n in args.sets.split(",") if n]
    if set(names) - set(SETS):
        ap.error(f"unknown data set(s) {', '.join(sorted(set(names) - set(SETS)))}; choose from {', '.join(SETS)}")
    parts = [HEADING, "", "### Method", "",
             "`vecx bench` runs each spec end to end (fit, encode, index, query, rescore) through the library, "
             "beside the faiss-cpu and raw usearch peers it picks at the same bytes per vector, on the same data, "
             "training sample, graph parameters, truth (`gt.npy`) and float rescoring. All figures of a table "
             "come from one run; the machine is shared, so compare times within a table, as ratios. "
             "vecx rows of float, int8 and sign-bit codes search an HNSW graph over the codes (graph misses "
             "included in their recall); vecx `pq` and `binarize:mode=rabitq` rows scan every code with their "
             "codec's scorer (ADC tables, the RaBitQ estimator), unless marked `@scan=graph` (a Hamming graph's "
             "candidates ranked by the estimator); rows marked `@scan=exhaustive` compare every code (usearch's "
             "exact search), like the faiss Flat peers; fits that take under 20 s are repeated (best of 2), "
             "for vecx and faiss alike; faiss Flat/PQ/BFlat/RaBitQ peers scan all codes exhaustively. "
             "faiss PQ peers are `...np` (no polysemous training, which index_factory adds by default: minutes "
             "of training an ADC scan does not use). Machine: this project's shared machine; the table gives "
             "its cores, memory, library versions and load average when the run started.",
             "", machine(), "", "### Latest results", "",
             "One subsection per data set, each from one `vecx bench` run. Each opens with the command that "
             "made its table (its `--out` went to a temporary file that the script copies here, so it is shown "
             "as the set's name) and ends with the plot of recall against bytes per vector.",
             ""]
    with tempfile.TemporaryDirectory(prefix="vecx-bench-sets-") as tmp:
        for name in names:
            metric, specs = SETS[name]
            out_md = os.path.join(tmp, f"{name}.md")
            argv = command(name, metric, specs, out_md)
            log(f"{name}: vecx {shlex.join(argv)}")
            subprocess.run([*VECX, *argv], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            body = open(out_md, encoding="utf-8").read()
            shown = shlex.join(argv[:-3] + ["-o", f"{name}.md"])  # the temporary path means nothing to readers
            body = body.replace(f"Command: `vecx {shlex.join(argv)}`", f"Command: `vecx {shown}`")
            parts += [f"### {name}", "", body.rstrip("\n"), "",
                      f"![recall vs bytes, {name}](tests/benchmarks/plots/{name}.png)", ""]
    parts += ["### Command", "", "```sh", "python tests/benchmarks/bench_sets.py --out BENCHMARKS.md", "```", "",
              "`make bench` runs the same after installing the bench extras. The script rewrites this section, "
              "from its heading to the next `## ` heading, and the plots; every other section stays as it is. "
              "The command of each table is at the head of its subsection above.", ""]
    splice(os.path.join(ROOT, args.out) if not os.path.isabs(args.out) else args.out, "\n".join(parts))
    log(f"wrote the '{HEADING[3:]}' section of {args.out}")


if __name__ == "__main__":
    sys.exit(main())
