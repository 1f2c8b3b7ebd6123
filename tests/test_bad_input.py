"""Bad input: one clear line naming the file/row, a documented exit code, and no output file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_vectors, run_vecx, with_edited_metadata


def expect_failure(tmp_path: Path, args: list, code: int, *messages: str, stdin: bytes | None = None) -> str:
    out = tmp_path / "out.parquet"
    r = run_vecx(*args, "-o", out, stdin=stdin)
    assert r.code == code, r.stderr
    for message in messages:
        assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2  # the error and at most one hint
    assert not out.exists()
    assert not list(tmp_path.glob(".out.parquet.tmp-*"))
    return r.stderr


def test_mixed_dimensions_jsonl(tmp_path: Path) -> None:
    src = tmp_path / "x.jsonl"
    src.write_text('{"vector": [1, 2, 3]}\n{"vector": [1, 2]}\n')
    expect_failure(tmp_path, ["import", src], 3, "line 2", "mixed dimensions")


def test_mixed_dimensions_fvecs(tmp_path: Path) -> None:
    src = tmp_path / "x.fvecs"
    src.write_bytes(np.int32(3).tobytes() + np.ones(3, "<f4").tobytes() + np.int32(2).tobytes()
                    + np.ones(3, "<f4").tobytes())
    expect_failure(tmp_path, ["import", src], 3, "row 1", "mixed dimensions")


def test_mixed_dimensions_parquet_list(tmp_path: Path) -> None:
    src = tmp_path / "x.parquet"
    pq.write_table(pa.table({"vector": [[1.0, 2.0], [1.0, 2.0], [3.0]]}), src)
    expect_failure(tmp_path, ["import", src], 3, "x.parquet: row 2", "mixed dimensions")


def test_wrong_dimension_query_state(tmp_path: Path, base_table: Path) -> None:
    # A table encoded for 48-d vectors cannot take a 20-d state: covered as a mismatch in test_pipeline.
    src = tmp_path / "x.fvecs"
    src.write_bytes(np.int32(3).tobytes() + np.ones(2, "<f4").tobytes())
    expect_failure(tmp_path, ["import", src], 3, "truncated file or mixed dimensions")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf(tmp_path: Path, value: float) -> None:
    x = make_vectors(100, 4)
    x[37, 2] = value
    src = tmp_path / "x.npy"
    np.save(src, x)
    expect_failure(tmp_path, ["import", src], 3, "x.npy: row 37: vector holds NaN or Inf")
    expect_failure(tmp_path, ["encode", src, "--spec", "int8"], 3, "row 37")


def test_huge_values_are_not_mistaken_for_inf(tmp_path: Path) -> None:
    # Finite, but their squared norms overflow float32: refused as too large, not as NaN/Inf.
    x = make_vectors(10, 4) * 1e30
    src = tmp_path / "x.npy"
    np.save(src, x)
    r = run_vecx("import", src, "-o", tmp_path / "ok.parquet")
    assert r.code == 3 and "too large" in r.stderr and "NaN" not in r.stderr, r.stderr


@pytest.mark.parametrize("name, content", [
    ("x.jsonl", b""), ("x.csv", b""), ("x.jsonl", b"\n\n"), ("x.fvecs", b""),
])
def test_empty_input(tmp_path: Path, name: str, content: bytes) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    expect_failure(tmp_path, ["import", src], 3, "no vectors found")


def test_empty_npy_and_parquet(tmp_path: Path) -> None:
    src = tmp_path / "x.npy"
    np.save(src, np.zeros((0, 4), dtype=np.float32))
    expect_failure(tmp_path, ["import", src], 3, "no vectors found")
    pqsrc = tmp_path / "x.parquet"
    pq.write_table(pa.table({"vector": pa.array([], pa.list_(pa.float32()))}), pqsrc)
    expect_failure(tmp_path, ["import", pqsrc], 3, "no vectors found")


def test_empty_stdin(tmp_path: Path) -> None:
    expect_failure(tmp_path, ["import", "-"], 3, "empty stream", stdin=b"")


def test_duplicate_ids(tmp_path: Path) -> None:
    src = tmp_path / "x.jsonl"
    src.write_text('{"id": "a", "vector": [1, 2]}\n{"id": "b", "vector": [1, 2]}\n{"id": "a", "vector": [3, 2]}\n')
    expect_failure(tmp_path, ["import", src], 3, "duplicate id 'a' (rows 0 and 2)")
    ids = tmp_path / "ids.txt"
    ids.write_text("x\ny\nx\n")
    npy = tmp_path / "x.npy"
    np.save(npy, make_vectors(3, 2))
    expect_failure(tmp_path, ["import", npy, "--ids", ids], 3, "duplicate id 'x'")


def test_ids_file_of_wrong_length(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("a\nb\n")
    npy = tmp_path / "x.npy"
    np.save(npy, make_vectors(3, 2))
    expect_failure(tmp_path, ["import", npy, "--ids", ids], 3, "has 2 ids")


def test_missing_vector_column(tmp_path: Path) -> None:
    src = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": [1, 2], "title": ["a", "b"]}), src)
    expect_failure(tmp_path, ["import", src], 3, "no vector column")
    expect_failure(tmp_path, ["import", src, "--column", "embedding"], 3, "no column 'embedding'")
    expect_failure(tmp_path, ["import", src, "--column", "title"], 3, "not a list of numbers")


def test_null_vector(tmp_path: Path) -> None:
    src = tmp_path / "x.parquet"
    pq.write_table(pa.table({"vector": pa.array([[1.0, 2.0], None], pa.list_(pa.float32()))}), src)
    expect_failure(tmp_path, ["import", src], 3, "row 1", "missing (null)")


def test_truncated_parquet(tmp_path: Path, base_table: Path) -> None:
    data = base_table.read_bytes()
    src = tmp_path / "cut.parquet"
    src.write_bytes(data[: len(data) // 2])
    expect_failure(tmp_path, ["truncate", src, "--dim", "8"], 3, "cut.parquet: not a readable Parquet file")


def test_corrupt_parquet_pages(tmp_path: Path, base_table: Path) -> None:
    data = bytearray(base_table.read_bytes())
    for i in range(200, 5000, 7):  # scribble over the first data pages, keep the footer
        data[i] ^= 0xFF
    src = tmp_path / "bad.parquet"
    src.write_bytes(bytes(data))
    expect_failure(tmp_path, ["truncate", src, "--dim", "8"], 3, "bad.parquet")


def test_not_json_line(tmp_path: Path) -> None:
    src = tmp_path / "x.jsonl"
    src.write_text('{"vector": [1, 2]}\n{"vector": [1, 2\n')
    expect_failure(tmp_path, ["import", src], 3, "line 2: not valid JSON")


def test_non_numeric_csv_cell(tmp_path: Path) -> None:
    src = tmp_path / "x.csv"
    src.write_text("1,2,3\n4,five,6\n")
    expect_failure(tmp_path, ["import", src], 3, "line 2: column 2: 'five' is not a number")


def test_unknown_spec_token(tmp_path: Path, base_table: Path) -> None:
    expect_failure(tmp_path, ["encode", base_table, "--spec", "truncate:8,binarise"], 2,
                   "unknown codec 'binarise'")


def test_dim_larger_than_input(tmp_path: Path, base_table: Path) -> None:
    expect_failure(tmp_path, ["truncate", base_table, "--dim", "64"], 2,
                   "dim 64 is larger than the input dimension 48")


def test_missing_input_file(tmp_path: Path) -> None:
    expect_failure(tmp_path, ["import", tmp_path / "nope.npy"], 3, "nope.npy: no such file")


def test_unknown_format(tmp_path: Path) -> None:
    src = tmp_path / "x.bin"
    src.write_bytes(b"\x00\x01garbage")
    expect_failure(tmp_path, ["import", src], 3, "unknown format")


def test_future_format_version_is_refused(tmp_path: Path, base_table: Path) -> None:
    future = with_edited_metadata(base_table, tmp_path / "future.parquet",
                                  lambda meta: meta.update(format_version=99))
    err = expect_failure(tmp_path, ["truncate", future, "--dim", "8"], 4, "format version 99", "upgrade vecx")
    assert "reads format versions up to 1" in err
    r = run_vecx("info", future)
    assert r.code == 4


def test_failed_run_leaves_existing_output_intact(tmp_path: Path, base_table: Path) -> None:
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous")
    x = make_vectors(10, 48)
    x[9, 0] = np.nan
    src = tmp_path / "x.npy"
    np.save(src, x)
    r = run_vecx("import", src, "-o", out)
    assert r.code == 3
    assert out.read_bytes() == b"previous"
    assert not list(tmp_path.glob(".out.parquet.tmp-*"))


def test_bad_option_is_usage_error(tmp_path: Path, base_table: Path) -> None:
    r = run_vecx("truncate", base_table, "-o", tmp_path / "x.parquet")
    assert r.code == 2 and "--dim" in r.stderr
    r = run_vecx("import", base_table, "-o", tmp_path / "x.parquet", "--metric", "hamming")
    assert r.code == 2 and "--metric must be one of" in r.stderr
    r = run_vecx("import", base_table, "-o", tmp_path / "nodir" / "x.parquet")
    assert r.code == 2 and "does not exist" in r.stderr


def test_arrow_to_a_terminal_is_refused(tmp_path: Path, base_table: Path) -> None:
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "vecx", "truncate", str(base_table), "-o", "-", "--dim", "8"],
                          stdout=slave, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 2
    assert b"refusing to write Arrow data to a terminal" in proc.stderr


def test_debug_shows_a_traceback(tmp_path: Path) -> None:
    r = run_vecx("import", tmp_path / "nope.npy", "-o", tmp_path / "x.parquet", "--debug")
    assert r.code == 3 and "Traceback" in r.stderr
