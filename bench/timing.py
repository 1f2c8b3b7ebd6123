"""Wall-clock timing for ``vecx bench``: the best of repeated runs, so that a shared, noisy machine
does not decide the comparison (vecx and its peers are timed by the same functions)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: A fit (vecx codec or faiss train) that took less than this is repeated, up to ``--repeat`` times,
#: and its best time kept: short fits swing several-fold on a shared machine.
REFIT_SECONDS = 20.0


def best_fit_time(fit: Callable[[], Any], repeat: int) -> float:
    """The best wall time of ``fit()``: one run, more (up to ``repeat``) while each stays short."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        fit()
        best = min(best, time.perf_counter() - started)
        if best >= REFIT_SECONDS:
            break
    return best


#: An encode pass (vecx apply or faiss ``sa_encode``) is repeated until the runs add up to this
#: many seconds (at most :data:`MAX_ENCODE_RUNS`, at least ``--repeat``), its best time kept: a pass
#: over a small base takes milliseconds, where one thread's late start decides a single run.
ENCODE_SECONDS = 1.0
MAX_ENCODE_RUNS = 30


def best_encode_time(encode: Callable[[], Any], repeat: int) -> float:
    """The best wall time of ``encode()`` over :data:`ENCODE_SECONDS` of runs (see there)."""
    best, spent, runs = float("inf"), 0.0, 0
    while runs < max(1, repeat) or (spent < ENCODE_SECONDS and runs < MAX_ENCODE_RUNS):
        started = time.perf_counter()
        encode()
        took = time.perf_counter() - started
        best, spent, runs = min(best, took), spent + took, runs + 1
    return best


def best_time(call: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    """The result of ``call`` and its best wall time over ``repeat`` runs."""
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - started)
    return out, best


#: Queries searched one at a time for a row's single-query latency (``p50 ms``).
SINGLE_QUERIES = 200


def single_query_ms(search_one: Callable[[int], Any], queries: int) -> float:
    """The median wall time, in ms, of ``search_one(i)`` (a search for query ``i`` alone) over the first
    :data:`SINGLE_QUERIES` queries: what one request to a server, or one ``vecx query``'s search, costs."""
    import statistics

    times = []
    for i in range(min(SINGLE_QUERIES, queries)):
        started = time.perf_counter()
        search_one(i)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3) if times else 0.0
