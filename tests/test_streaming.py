"""Apply steps stream: peak memory does not grow with the number of rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MEASURE = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "vecx", *sys.argv[1:]], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_kb(*args: str) -> int:
    proc = subprocess.run([sys.executable, "-c", MEASURE, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


@pytest.mark.slow
@pytest.mark.alone  # the peak memory of a process: measured while no other test runs
def test_peak_memory_is_independent_of_rows(tmp_path: Path) -> None:
    d = 16  # batches of 65,536 rows: both sizes stream through enough batches to reach a steady state
    rss = {}
    for rows in (600_000, 2_400_000):  # 38 MB and 154 MB of float32 vectors
        src = tmp_path / f"x{rows}.npy"
        rng = np.random.default_rng(0)
        arr = np.lib.format.open_memmap(src, mode="w+", dtype=np.float32, shape=(rows, d))
        for start in range(0, rows, 200_000):
            arr[start: start + 200_000] = rng.standard_normal((min(200_000, rows - start), d))
        del arr
        table = tmp_path / f"x{rows}.parquet"
        rss[("import", rows)] = peak_rss_kb("import", src, "-o", table, "-q")
        rss[("encode", rows)] = peak_rss_kb("encode", table, "-o", tmp_path / f"y{rows}.parquet",
                                            "--spec", "truncate:8,int8", "-q")
        src.unlink()
    for step in ("import", "encode"):
        small, large = rss[(step, 600_000)], rss[(step, 2_400_000)]
        # 4x the rows (+115 MB of input) may cost the id check of raw input (16 bytes/row, 29 MB)
        # and timing noise, never the data itself.
        assert large - small < 50_000, f"{step}: peak RSS {small} kB -> {large} kB"


@pytest.mark.slow
@pytest.mark.alone  # the peak memory of a process: measured while no other test runs
def test_vsa_memory_is_independent_of_records(tmp_path: Path) -> None:
    # Every record brings new strings (the worst case for the encoder's atom caches, which are bounded).
    import orjson

    rss = {}
    for rows in (32_000, 128_000):  # past the point where the bounded atom caches are full
        src = tmp_path / f"r{rows}.jsonl"
        with open(src, "wb") as handle:
            for i in range(rows):
                handle.write(orjson.dumps({"name": f"person{i} family{i % 997}", "year": 1900 + i % 120,
                                           "tags": [f"t{i % 13}", f"u{i}"], "ok": i % 2 == 0}) + b"\n")
        # The fit holds its sample (at most --sample records, by design); the encoding must stream.
        rss[rows] = peak_rss_kb("vsa", src, "-o", tmp_path / f"r{rows}.parquet", "--dim", "256", "--sample", "2000",
                                "-q")
    # 4x the records (and 4x the distinct strings) must not cost memory in proportion.
    assert rss[128_000] - rss[32_000] < 60_000, f"peak RSS {rss[32_000]} kB -> {rss[128_000]} kB"


def _new_threads(before: set) -> list:
    import threading

    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


def test_prefetch_starts_reading_before_the_first_next() -> None:
    """vecx index starts decoding and then imports usearch; the first batch must be on its way."""
    import threading

    from vecx._prefetch import prefetch

    started = threading.Event()

    def items():
        started.set()
        yield from (1, 2, 3)

    batches = prefetch(items(), depth=1)
    assert started.wait(10)
    assert list(batches) == [1, 2, 3]


def test_a_closed_or_dropped_prefetch_stops_its_thread() -> None:
    import threading
    import time

    from vecx._prefetch import prefetch

    def endless(made: list):
        while True:
            made.append(len(made))
            yield made[-1]

    for how in ("close", "drop"):
        before, made = set(threading.enumerate()), []
        batches = prefetch(endless(made), depth=1)
        assert next(batches) == 0
        if how == "close":
            batches.close()
            assert list(batches) == []
        else:
            del batches
        deadline = time.monotonic() + 10
        while _new_threads(before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _new_threads(before), how
        count = len(made)
        time.sleep(0.3)
        assert len(made) == count, how  # nothing is made any more


def test_prefetch_reraises_the_producers_error_where_it_happened() -> None:
    from vecx._prefetch import prefetch

    def items():
        yield 1
        raise ValueError("row 7 is bad")

    batches = prefetch(items())
    assert next(batches) == 1
    with pytest.raises(ValueError, match="row 7"):
        next(batches)
    assert list(batches) == []
