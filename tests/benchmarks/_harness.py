"""What the benchmark scripts share: logging, timed subprocess runs, Markdown tables, the machine.

The machine is shared and noisy, so a figure is always a ratio to a peer measured in the same
run, and runs of vecx and its peer alternate (:func:`interleaved`). Each command runs inside a
fresh wrapper process that reports its wall time, its peak RSS (``ru_maxrss`` of
RUSAGE_CHILDREN, which for a fresh wrapper is exactly that one child) and a sampled peak of
anonymous RSS (``RssAnon``: excludes memory-mapped file pages).

The scripts run as ``python tests/benchmarks/NAME.py``, so this module is imported as ``_harness``.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

PY = sys.executable
_SCRIPT = os.path.join(os.path.dirname(PY), "vecx")  # the console script of this interpreter's venv
VECX = [_SCRIPT] if os.path.exists(_SCRIPT) else [PY, "-m", "vecx"]
NCPU = len(os.sched_getaffinity(0))

# Runs argv[2:] (stdout discarded), writes [returncode, wall seconds, ru_maxrss KiB, peak RssAnon KiB,
# CPU seconds (user + system, all threads)] to argv[1].
WRAPPER = r"""
import json, resource, subprocess, sys, threading, time
def anon(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return max([int(l.split()[1]) for l in f if l.startswith("RssAnon:")] + [0])
    except OSError:
        return 0
t = time.perf_counter(); p = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL); peak = [0]
def sample():  # memory sampled beside the wait: the wall time ends when the child does, not at a poll
    while p.returncode is None:
        peak[0] = max(peak[0], anon(p.pid)); time.sleep(0.02)
sampler = threading.Thread(target=sample, daemon=True); sampler.start()
p.wait(); wall = time.perf_counter() - t; sampler.join(); peak = peak[0]
use = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump([p.returncode, wall, use.ru_maxrss, peak, use.ru_utime + use.ru_stime], open(sys.argv[1], "w"))
"""


def log(msg: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure(argv: list[str], work: str) -> dict[str, float]:
    """Run argv once in a fresh wrapper process: wall seconds, peak RSS and peak anon RSS (MB)."""
    report = os.path.join(work, "wrapper.json")
    subprocess.run([PY, "-c", WRAPPER, report, *argv], check=True)
    with open(report) as f:
        rc, wall, rss, anon, cpu = json.load(f)
    if rc != 0:
        raise SystemExit(f"command failed ({rc}): {shlex.join(argv)}")
    return {"s": wall, "rss": rss / 1024, "anon": anon / 1024, "cpu": cpu}


def remove(path: str) -> None:
    """Delete a file, or a vecx index (its link and its hidden version directory)."""
    for p in (path, os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.d")):
        if os.path.islink(p) or os.path.isfile(p):
            os.unlink(p)
        elif os.path.isdir(p):
            shutil.rmtree(p)


def drop_caches() -> bool:
    """Sync and drop the page cache; False if not permitted."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def interleaved(cmds: dict[str, tuple], repeat: int, work: str, cold: bool = False,
                budget: float = 0.0, max_repeat: int = 0) -> dict[str, dict[str, float]]:
    """Best of ``repeat`` alternating runs of each (argv, output[, rounds]): min wall time, max peak memory.

    A command given ``rounds`` runs only in the first that many rounds (a costly side figure
    that needs no pairing with the others).

    With a ``budget`` (seconds), rounds go on after the first ``repeat`` while all of them so
    far took less than that, up to ``max_repeat``: short commands, whose ratios this machine's
    noise swings the most, get more rounds for the same time. Only elapsed time decides, never
    a result, so the extra rounds cannot favour either side.

    ``runs`` keeps every wall time in run order, so round r of one command can be paired with
    round r of another (they ran seconds apart, under the same machine load).

    Before each run the command's output is removed and dirty pages are synced (and the page
    cache dropped if ``cold``), so no run pays for overwriting a big file or for the previous
    run's disk writeback.
    """
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cmds}
    start, r = time.perf_counter(), 0
    while r < repeat or (r < max_repeat and time.perf_counter() - start < budget):
        # Odd rounds run the commands in reverse, so no command always runs first (or right after a given one).
        for name, (argv, output, *rounds) in (list(cmds.items()) if r % 2 == 0 else list(cmds.items())[::-1]):
            if rounds and r >= rounds[0]:
                continue
            if output:
                remove(output)
            drop_caches() if cold else os.sync()
            runs[name].append(measure(argv, work))
            log(f"  {name} run {r + 1}/{max(repeat, r + 1)}: {runs[name][-1]['s']:.3f} s, "
                f"{runs[name][-1]['rss']:.0f} MB")
        r += 1
    return {name: {"s": min(x["s"] for x in rs), "rss": max(x["rss"] for x in rs),
                   "anon": max(x["anon"] for x in rs), "runs": [x["s"] for x in rs],
                   "cpu_runs": [x["cpu"] for x in rs]} for name, rs in runs.items()}


def paired_ratios(a: dict[str, object], b: dict[str, object], key: str = "runs") -> list[float]:
    """Round-by-round ratios a/b of two commands timed by the same :func:`interleaved` call
    (``key="cpu_runs"``: of their CPU seconds). A command limited to fewer rounds ran in the first
    rounds only, so the pairs stop where its runs do."""
    return [x / y for x, y in zip(a[key], b[key], strict=False)]  # type: ignore[arg-type]



def verdict(ok: bool) -> str:
    """PASS, or a bold MISS."""
    return "PASS" if ok else "**MISS**"


def best(call: Callable[[], object], repeat: int = 3) -> float:
    """The best of ``repeat`` timed calls of ``call`` (seconds), after one untimed call (warm-up)."""
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def machine() -> str:
    """The machine and library versions, as a one-row Markdown table."""
    import faiss
    import numpy as np
    import pyarrow as pa
    import usearch

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return table(["nproc", "CPU", "RAM", "load avg 1/5/15 min", "python", "numpy", "pyarrow", "usearch", "faiss"],
                 [[NCPU, cpu, f"{mem:.0f} GiB", " / ".join(f"{v:.1f}" for v in os.getloadavg()),
                   platform.python_version(), np.__version__, pa.__version__, usearch.__version__,
                   faiss.__version__]])


def command_line() -> str:
    """How this benchmark script was run, as a reader can rerun it."""
    return "python " + shlex.join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])


#: The shared real data sets, beside the repository.
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")


def shared_set(name: str, metric: str, work: str) -> tuple[Any, Any, str]:
    """A shared set's queries (float32), its exact top-10 rows, and its base imported into ``work``."""
    import numpy as np

    from vecx import api
    from vecx.formats.readers import ReadOptions

    q = np.load(os.path.join(DATA, name, "queries.npy")).astype(np.float32)
    truth = np.load(os.path.join(DATA, name, "gt.npy"))[:, :10]
    imported = os.path.join(work, f"{name}.parquet")
    api.encode_file(os.path.join(DATA, name, "base.npy"), imported, None, read=ReadOptions(metric=metric))
    return q, truth, imported


def begin(doc: str) -> tuple[str | None, str, float]:
    """A benchmark script whose only option is ``--out``, starting: that option, the command line
    and the load average."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", help="write the Markdown section here (default: stdout)")
    return ap.parse_args().out, command_line(), os.getloadavg()[0]


def finish(out: str | None, cmdline: str, load: float, *tables: str) -> None:
    """The benchmark's Markdown: its command, the machine and the load before and after, its tables."""
    publish("\n\n".join([f"Command: `{cmdline}`", machine() + f" Load average {load:.2f} before, "
                          f"{os.getloadavg()[0]:.2f} after.", *tables]) + "\n", out)


def publish(text: str, out: str | None) -> None:
    """A benchmark's Markdown: written to ``out`` if given, and printed."""
    if out:
        with open(out, "w") as f:
            f.write(text)
    print(text)
