"""The pure-Python Parquet footer reader agrees with pyarrow, and declines what it cannot read."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vecx.formats.footer import read_footer, vecx_metadata


def _pyarrow_view(path):
    meta = pq.ParquetFile(path).metadata
    return meta.num_rows, dict(meta.metadata or {})


@pytest.mark.parametrize("row_group_size", [7, 1000])
def test_footer_matches_pyarrow_on_varied_tables(tmp_path, row_group_size):
    rng = np.random.default_rng(5)
    n = 123
    table = pa.table({
        "id": pa.array([f"w{i}" for i in range(n)]),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(rng.standard_normal(n * 4, dtype=np.float32)), 4),
        "flag": pa.array(rng.integers(0, 2, n).astype(bool)),
        "score": pa.array(rng.standard_normal(n)),
        "tags": pa.array([["a", "b"][: i % 3] for i in range(n)], type=pa.list_(pa.string())),
        "nested": pa.array([{"x": i, "y": str(i)} for i in range(n)]),
    }).replace_schema_metadata({b"vecx": json.dumps({"rows": n}).encode(), b"other": b"\x00\xff" * 300})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=row_group_size, write_statistics=True)
    assert read_footer(str(path)) == _pyarrow_view(path)
    assert vecx_metadata(str(path)) == (n, json.dumps({"rows": n}).encode())


def test_footer_of_a_vecx_table_matches_pyarrow(tmp_path, vecx, base_npy):
    out = tmp_path / "b.parquet"
    assert vecx("encode", base_npy, "-o", out, "--spec", "truncate:16,int8").code == 0
    rows, pairs = read_footer(str(out))
    assert (rows, pairs) == _pyarrow_view(out)
    assert b"vecx" in pairs and b"vecx.state" in pairs


def test_footer_declines_damaged_or_foreign_files(tmp_path, base_npy):
    table = pa.table({"a": [1, 2, 3]})
    good = tmp_path / "good.parquet"
    pq.write_table(table, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(data[: len(data) // 2])
    garbled = tmp_path / "garbled.parquet"
    length = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - length
    garbled.write_bytes(data[:start] + bytes([0xFF]) * length + data[-8:])
    assert read_footer(str(good)) == _pyarrow_view(good)
    assert vecx_metadata(str(good)) is None
    assert read_footer(str(truncated)) is None
    assert read_footer(str(garbled)) is None
    assert read_footer(str(base_npy)) is None
    assert read_footer(str(tmp_path / "missing.parquet")) is None


def test_info_reports_the_same_from_the_footer_as_through_pyarrow(tmp_path, vecx, base_npy):
    """`info` takes the footer path for vecx tables; its report equals the full reader's."""
    out = tmp_path / "b.parquet"
    assert vecx("encode", base_npy, "-o", out, "--spec", "int8").code == 0
    fast = json.loads(vecx("info", out, "--json").out)
    slow = json.loads(vecx("info", out, "--json", "--column", "vector").out)
    assert fast == slow


@pytest.mark.parametrize("element", [1, 2, 6])  # bools (true, false) and i64 elements
def test_footer_declines_a_collection_larger_than_the_footer(tmp_path, element):
    """A damaged collection size (here 2**60 elements in a 30-byte footer) is refused at once, not looped over."""
    huge = 2 ** 60
    varint = bytearray()
    while True:
        varint.append((huge & 0x7F) | (0x80 if huge > 0x7F else 0))
        huge >>= 7
        if not huge:
            break
    # FileMetaData: field 1 (i32 version) = 1, then field 2 as a list with header 0xF? and a varint size.
    footer = bytes([0x15, 0x02, 0x19, 0xF0 | element]) + bytes(varint) + b"\x00" * 8
    path = tmp_path / "huge.parquet"
    path.write_bytes(b"PAR1" + footer + len(footer).to_bytes(4, "little") + b"PAR1")

    def too_slow(signum, frame):
        raise AssertionError("the footer reader loops over the declared size")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(10)
    try:
        assert read_footer(str(path)) is None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_column_names_from_the_footer_are_pyarrows(tmp_path: Path) -> None:
    """The footer reader's top-level column names (``vecx info``'s payload) equal pyarrow's, nested
    columns (fixed-size lists, lists of lists, structs) included."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vecx.formats.footer import column_names

    n = 4
    columns = {
        "id": pa.array(range(n)),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(n * 3, dtype=np.float32)), 3),
        "tokens": pa.array([[[1.0, 2.0]], [[3.0, 4.0], [5.0, 6.0]], [[0.0, 0.0]], [[1.0, 1.0]]]),
        "meta": pa.array([{"a": i, "b": {"c": str(i)}} for i in range(n)]),
        "lang": pa.array(["en", "de", "en", "fr"]),
    }
    for keep in (["id", "vector"], ["id", "vector", "tokens", "meta", "lang"], ["meta", "id"], ["lang"]):
        path = tmp_path / f"{'_'.join(keep)}.parquet"
        pq.write_table(pa.table({k: columns[k] for k in keep}), path)
        assert column_names(str(path)) == pq.read_schema(path).names == keep
