"""What the ``vsa`` codec learns from its sample: per key path, numeric ranges (so that numbers,
numeric strings and dates get level codes) and hashed value counts (for the optional idf weights)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vecx.codecs.vsa.atoms import (
    COUNT_BUCKETS,
    NUMERIC_SHARE,
    Config,
    RecordError,
    hash64,
    parse_number,
    path_of,
    value_token,
)


class PathStats:
    """What the fit learned per key path: numeric ranges and hashed value counts (the state)."""

    def __init__(self, ranges: dict[str, tuple[float, float, bool]], counts: np.ndarray, n: int) -> None:
        self.ranges = ranges  # path -> (lo, hi, numeric strings count as numbers)
        self.counts = counts  # int64[COUNT_BUCKETS]
        self.n = n

    @classmethod
    def empty(cls) -> PathStats:
        return cls({}, np.zeros(COUNT_BUCKETS, dtype=np.int64), 0)


def fit_stats(records: list[Any], config: Config) -> PathStats:
    """Per-path numeric ranges and value counts from a sample of records."""
    numbers: dict[str, list[float]] = {}
    strings: dict[str, list[int]] = {}  # path -> [strings seen, numeric strings]
    counts = np.zeros(COUNT_BUCKETS, dtype=np.int64)
    n = 0
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise RecordError(row, f"expected a JSON object, got {type(record).__name__}")
        n += 1
        seen: set[int] = set()
        stack: list[tuple[Any, str, int]] = [(record, "", 0)]
        while stack:
            value, path, depth = stack.pop()
            if depth >= config.max_depth:
                continue  # refused (with its row) when encoded
            if isinstance(value, dict):
                stack.extend((v, path_of(path, k), depth + 1) for k, v in value.items())
            elif isinstance(value, list):
                stack.extend((v, path + "[]", depth + 1) for v in value[: config.max_items])
            else:
                seen.add(hash64(path, value_token(value)) % COUNT_BUCKETS)
                if isinstance(value, bool) or value is None:
                    continue
                if isinstance(value, (int, float)):
                    if math.isfinite(value):
                        numbers.setdefault(path, []).append(float(value))
                    continue
                tally = strings.setdefault(path, [0, 0])
                tally[0] += 1
                parsed = parse_number(value)
                if parsed is not None:
                    tally[1] += 1
                    numbers.setdefault(path, []).append(parsed)
        for bucket in seen:  # document frequency: once per record
            counts[bucket] += 1
    ranges: dict[str, tuple[float, float, bool]] = {}
    for path, values in numbers.items():
        tally = strings.get(path, [0, 0])
        numeric_strings = tally[0] > 0 and tally[1] >= NUMERIC_SHARE * tally[0]
        if not numeric_strings and len(values) == tally[1]:
            continue  # only strings, too few of them numeric: a text field
        lo, hi = float(min(values)), float(max(values))
        if hi <= lo:
            hi = lo + 1.0
            if hi <= lo:  # |lo| >= 2^53: adding 1 rounds back to lo (and t would divide by zero)
                hi = lo + abs(lo) * 1e-6
        ranges[path] = (lo, hi, numeric_strings)
    return PathStats(ranges, counts, n)
