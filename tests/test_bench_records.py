"""vecx bench --records: the damaged-record task, the hashing baseline and recall, checked from scratch."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import run_vecx

from vecx.bench.records import RecordsOptions, hashing, load_task, recall_at, run_records

QUAKES = Path(__file__).parent / "data" / "quakes-400" / "records.jsonl"
IDS = ("url", "detail", "ids", "code", "title")


def originals() -> list[dict]:
    rows = [json.loads(line) for line in QUAKES.read_text().splitlines()]
    for row in rows:
        del row["event"]
        for name in IDS:
            row.pop(name, None)
    return rows


def leaves(value, path=""):
    """(path, value) of every scalar; array items under path[]."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item, path + "[]")
    else:
        yield path, value


def test_damaged_queries_lose_fields_move_numbers_and_reorder_arrays() -> None:
    records = originals()
    task = load_task(str(QUAKES), RecordsOptions(label="event", drop=IDS, queries=300, remove=0.3, shift=0.02, seed=4))
    assert task.records == records  # the label and the dropped fields are gone, nothing else changed
    spans: dict[str, list[float]] = {}
    for record in records:
        for path, value in leaves(record):
            if isinstance(value, int | float) and not isinstance(value, bool):
                spans.setdefault(path, []).append(value)
    span = {path: max(v) - min(v) for path, v in spans.items()}
    kept = total = 0
    for source, query in zip(task.sources, task.queries, strict=True):
        record = records[int(source)]
        assert set(query) <= set(record) and query
        kept, total = kept + len(query), total + len(record)
        for key, value in query.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and span.get(f".{key}"):
                assert abs(value - record[key]) <= 0.02 * span[f".{key}"] + 0.5 * isinstance(value, int)
                assert isinstance(value, int) == isinstance(record[key], int)
            elif key == "geometry" and "coordinates" in value:  # the array is a reordering of moved numbers
                assert len(value["coordinates"]) == len(record["geometry"]["coordinates"])
            elif not isinstance(value, dict | list):
                assert value == record[key]
    assert abs(kept / total - 0.7) < 0.02, kept / total  # 30% of fields removed, over ~8,000 fields


def test_groups_are_the_records_sharing_the_label() -> None:
    rows = [json.loads(line) for line in QUAKES.read_text().splitlines()]
    task = load_task(str(QUAKES), RecordsOptions(label="net", queries=50, seed=1))
    for source, relevant in zip(task.sources, task.relevant, strict=True):
        want = [i for i, r in enumerate(rows) if r["net"] == rows[int(source)]["net"]]
        assert relevant.tolist() == want
    assert all("net" not in r for r in task.records) and all("net" not in q for q in task.queries)


def test_undamaged_queries_find_their_records_and_recall_counts_group_shares() -> None:
    report = run_records(str(QUAKES), ["vsa:512"], RecordsOptions(label="event", drop=IDS, queries=100, remove=0.0,
                                                                  shift=0.0))
    # Unchanged records, arrays reordered: hashing ignores order, so every record finds itself first.
    assert report["rows"][0]["encoder"] == "hashing:512" and report["rows"][0]["recall@10"] == 1.0
    # recall by hand: query 0's group {0, 1} with row 0 in its top 2, query 1's group {2} missed.
    x = np.eye(4, dtype=np.float32)
    q = np.array([[1, 0, 0.1, 0], [0, 0, 0, 1]], dtype=np.float32)
    assert recall_at(x, q, [np.array([0, 1]), np.array([2])], 2) == pytest.approx((1 / 2 + 0) / 2)


def test_hashing_is_signed_token_counts() -> None:
    record = {"a": 1, "b": [{"c": "x"}, {"c": "x"}]}
    want = np.zeros(64)
    for token, count in Counter(["a=1", "b[].c=x", "b[].c=x"]).items():
        h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        want[h % 64] += count * (1 if h >> 63 else -1)
    assert np.allclose(hashing([record], 64)[0], want / np.linalg.norm(want))


def test_cli_table_json_markdown_and_refusals(tmp_path: Path) -> None:
    args = ["bench", QUAKES, "--records", "--label", "event", *sum((["--drop", d] for d in IDS), []),
            "--spec", "vsa:512", "--query-count", "80", "--seed", "3"]
    r = run_vecx(*args, "--json", "-o", tmp_path / "r.md")
    assert r.code == 0, r.stderr
    report = json.loads(r.out)
    assert [row["encoder"] for row in report["rows"]] == ["hashing:512", "vsa:512"]
    assert report["task"]["queries"] == 80 and report["task"]["records"] == 400
    assert report["rows"][1]["gain"] == pytest.approx(report["rows"][1]["recall@10"] - report["rows"][0]["recall@10"])
    assert "| vsa:512 | 512 |" in (tmp_path / "r.md").read_text()
    again = json.loads(run_vecx(*args, "--json").out)  # seeded: the same queries, the same figures
    assert [a["recall@10"] for a in again["rows"]] == [b["recall@10"] for b in report["rows"]]
    for extra, message in ((["--label", "nope"], "no record has the label field"),
                           (["--label", "event", "--spec", "vsa:256,binarize"], "float vectors"),
                           (["--label", "event", "--remove", "1.5"], "--remove"),
                           (["--label", "event", "--peers", "--truth", "gt.npy"], "not for --records")):
        r = run_vecx("bench", QUAKES, "--records", *extra)
        assert r.code != 0 and message in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
    r = run_vecx("bench", QUAKES, "--records")
    assert r.code == 2 and "--label" in r.stderr


def test_a_record_the_encoder_refuses_is_named_by_file_and_row(tmp_path: Path) -> None:
    deep: dict = {}
    inner = deep
    for _ in range(40):
        inner["a"] = {}
        inner = inner["a"]
    rows = [{"g": i % 3, "x": i} for i in range(20)] + [{"g": 1, "deep": deep}]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run_vecx("bench", path, "--records", "--label", "g", "--spec", "vsa:256")
    assert r.code == 3 and f"{path}: row 20: nesting deeper" in r.stderr and "Traceback" not in r.stderr
