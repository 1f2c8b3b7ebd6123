"""Two revisions of vecx side by side: index build and single-query latency, as paired ratios.

For changes that should cost nothing (checks on open, locks, checksums): each revision is
checked out into a temporary git worktree and run from there (``PYTHONPATH`` points a
``vecx`` package at it), with bytecode caching on, as an installed vecx runs. Rounds
alternate which revision goes first; the verdict is the median of the within-round ratios
NEW / BASE, so the machine's load swings both sides alike.

    python tests/benchmarks/bench_revisions.py --base 04e6773 --new HEAD \\
        --table ../shared/data/debian-minilm-30k/base.npy --encoding int8:mode=global

Both revisions index the same tables (encoded once, by ``--new``), so only build and query differ.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _harness import PY, interleaved, log, machine, remove, table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def checkout(revision: str, work: str) -> tuple[str, str]:
    """A worktree of ``revision`` and a directory whose ``vecx`` entry points at it (for PYTHONPATH)."""
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", revision], check=True,
                            capture_output=True, text=True).stdout.strip()
    tree = os.path.join(work, f"tree-{commit}")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-f", tree, commit], check=True,
                   capture_output=True)
    package = os.path.join(work, f"pkg-{commit}")
    os.makedirs(package)
    os.symlink(tree, os.path.join(package, "vecx"))
    return commit, package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--new", default="HEAD")
    parser.add_argument("--table", required=True, help="vectors to import (.npy, .parquet, ...)")
    parser.add_argument("--encoding", default="int8:mode=global", help="chain of the indexed codes")
    parser.add_argument("--repeat", type=int, default=8, help="build rounds")
    parser.add_argument("--query-repeat", type=int, default=30, help="single-query rounds")
    parser.add_argument("--out", help="also write the Markdown report here")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="vecx-revisions-")
    revisions = {}
    try:
        for name in ("base", "new"):
            revisions[name] = checkout(getattr(args, name), work)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["VECX_NO_PROGRESS"] = "1"

        def vecx(name: str, *argv: str) -> list[str]:
            return ["env", f"PYTHONPATH={revisions[name][1]}", PY, "-m", "vecx", *argv]

        floats, codes = os.path.join(work, "floats.parquet"), os.path.join(work, "codes.parquet")
        subprocess.run(vecx("new", "import", args.table, "-o", floats), check=True, env=env)
        subprocess.run(vecx("new", "encode", floats, "-o", codes, "--spec", args.encoding), check=True, env=env)
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # the harness's wrapper passes os.environ on
        os.environ["VECX_NO_PROGRESS"] = "1"
        indexes = {name: os.path.join(work, f"{name}.vecx") for name in revisions}
        log(f"build: {args.repeat} rounds")
        build = interleaved({name: (vecx(name, "index", codes, "-o", indexes[name], "--rescore-vectors", floats),
                                    indexes[name]) for name in revisions}, args.repeat, work)
        log(f"single query: {args.query_repeat} rounds")
        for name in revisions:  # the last build of each is there; warm its pages and bytecode
            subprocess.run(vecx(name, "query", indexes[name], "--like", "1", "-k", "10"), check=True,
                           env=env, capture_output=True)
        query = interleaved({name: (vecx(name, "query", indexes[name], "--like", "1", "-k", "10"), None)
                             for name in revisions}, args.query_repeat, work)
        rows = []
        for what, result in (("index build (with --rescore)", build), ("one `vecx query --like`", query)):
            ratios = [n / b for n, b in zip(result["new"]["runs"], result["base"]["runs"], strict=True)]
            rows.append([what, f"{statistics.median(result['base']['runs']):.3f} s",
                         f"{statistics.median(result['new']['runs']):.3f} s", f"{statistics.median(ratios):.3f}x",
                         f"{min(ratios):.2f}-{max(ratios):.2f}", len(ratios)])
        command = "python tests/benchmarks/" + os.path.basename(__file__) + " " + " ".join(sys.argv[1:])
        report = "\n\n".join([
            f"`{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}), base "
            f"{revisions['base'][0]}, new {revisions['new'][0]}, {args.encoding} codes of {args.table}:",
            table(["what", "base (median)", "new (median)", "new/base (median within-round)", "range", "rounds"], rows),
            machine()])
        print(report)
        if args.out:
            with open(args.out, "w") as handle:
                handle.write(report + "\n")
    finally:
        for name in revisions:
            remove(os.path.join(work, f"{name}.vecx"))
        for commit, _ in revisions.values():
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", os.path.join(work, f"tree-{commit}")],
                           capture_output=True)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
