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

    def __init__(self, ranges: dict[str, tuple[float, float, bool]], counts: np.ndarray | None, n: int) -> None:
        self.ranges = ranges  # path -> (lo, hi, numeric strings count as numbers)
        self.counts = counts  # int64[COUNT_BUCKETS]; None when the idf weights are off
        self.n = n

    @classmethod
    def empty(cls) -> PathStats:
        return cls({}, np.zeros(COUNT_BUCKETS, dtype=np.int64), 0)


def fit_stats(records: list[Any], config: Config) -> PathStats:
    """Per-path numeric ranges and value counts from a sample of records."""
    numbers: dict[str, list[float]] = {}
    strings: dict[str, list[int]] = {}  # path -> [strings seen, numeric strings]
    counts = np.zeros(COUNT_BUCKETS, dtype=np.int64)
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise RecordError(row, f"expected a JSON object, got {type(record).__name__}")
        for bucket in _tally_record(record, config, numbers, strings):  # document frequency: once per record
            counts[bucket] += 1
    ranges = {path: found for path, values in numbers.items()
              if (found := _range(values, strings.get(path, [0, 0]))) is not None}
    return PathStats(ranges, counts, len(records))


def _tally_record(record: dict[str, Any], config: Config, numbers: dict[str, list[float]],
                  strings: dict[str, list[int]]) -> set[int]:
    """Add a record's numbers and string tallies per path; the count buckets of its values."""
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
            _tally_scalar(value, path, numbers, strings)
    return seen


def _tally_scalar(value: Any, path: str, numbers: dict[str, list[float]], strings: dict[str, list[int]]) -> None:
    """A number's value, or a string's tally (and its value if it parses as a number or date)."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        if math.isfinite(value):
            numbers.setdefault(path, []).append(float(value))
        return
    tally = strings.setdefault(path, [0, 0])
    tally[0] += 1
    parsed = parse_number(value)
    if parsed is not None:
        tally[1] += 1
        numbers.setdefault(path, []).append(parsed)


def _range(values: list[float], tally: list[int]) -> tuple[float, float, bool] | None:
    """A path's numeric range and whether its numeric strings count as numbers; None for a text field
    (only strings, too few of them numeric)."""
    numeric_strings = tally[0] > 0 and tally[1] >= NUMERIC_SHARE * tally[0]
    if not numeric_strings and len(values) == tally[1]:
        return None
    lo, hi = float(min(values)), float(max(values))
    if hi <= lo:
        hi = lo + 1.0
        if hi <= lo:  # |lo| >= 2^53: adding 1 rounds back to lo (and t would divide by zero)
            hi = lo + abs(lo) * 1e-6
    return lo, hi, numeric_strings
