"""Chains end to end through the CLI: one command equals the stages run one by one, on files and pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from conftest import make_vectors, run_vecx, run_vecx_process

from vecx.formats import metadata


def meta_of(path: Path) -> dict:
    return json.loads(pq.ParquetFile(path).metadata.metadata[metadata.KEY])


def test_one_command_equals_two_steps(tmp_path: Path, base_table: Path) -> None:
    t, ti8, one = tmp_path / "t.parquet", tmp_path / "t.i8.parquet", tmp_path / "one.parquet"
    assert run_vecx("truncate", base_table, "-o", t, "--dim", "32").code == 0
    assert run_vecx("int8", t, "-o", ti8, "--sample", "1000").code == 0
    r = run_vecx("encode", base_table, "-o", one, "--spec", "truncate:32,int8:sample=1000")
    assert r.code == 0, r.stderr
    assert one.read_bytes() == ti8.read_bytes()
    meta = meta_of(one)
    assert [s["codec"] for s in meta["stages"]] == ["truncate", "int8"]
    assert meta["stages"][1]["fit_rows"] == 1000
    assert meta["vector"]["dtype"] == "int8" and meta["vector"]["bytes_per_vector"] == 32


def test_raw_input_one_command_equals_import_then_encode(tmp_path: Path, base_npy: Path) -> None:
    imported, encoded, direct = tmp_path / "i.parquet", tmp_path / "e.parquet", tmp_path / "d.parquet"
    assert run_vecx("import", base_npy, "-o", imported).code == 0
    assert run_vecx("encode", imported, "-o", encoded, "--spec", "truncate:16,f16").code == 0
    assert run_vecx("encode", base_npy, "-o", direct, "--spec", "truncate:16,f16").code == 0
    assert encoded.read_bytes() == direct.read_bytes()


def test_pipes_give_the_same_bytes_as_files(tmp_path: Path, base_npy: Path, base_table: Path) -> None:
    ids = tmp_path / "ids.txt"
    files = tmp_path / "files.parquet"
    assert run_vecx("encode", base_table, "-o", files, "--spec", "truncate:32,int8").code == 0
    piped = tmp_path / "piped.parquet"
    env = {"VECX_NO_PROGRESS": "1"}
    cmd = (f"{sys.executable} -m vecx import {base_npy} -o - --ids {ids} | "
           f"{sys.executable} -m vecx truncate - -o - --dim 32 | "
           f"{sys.executable} -m vecx int8 - -o {piped}")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr.decode()
    assert piped.read_bytes() == files.read_bytes()


def test_info_on_a_pipe_sees_the_final_metadata(tmp_path: Path, base_npy: Path) -> None:
    cmd = f"{sys.executable} -m vecx import {base_npy} -o - | {sys.executable} -m vecx info - --json"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    info = json.loads(proc.stdout)["vecx"]
    imported = tmp_path / "i.parquet"
    assert run_vecx("import", base_npy, "-o", imported).code == 0
    assert info["fingerprint"] == meta_of(imported)["fingerprint"]
    assert info["rows"] == 3000


def test_fitted_state_is_reusable_and_checked(tmp_path: Path, base_table: Path) -> None:
    state_file = tmp_path / "int8.state"
    r = run_vecx("fit", base_table, "-s", "int8:sample=700", "-o", state_file, "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["spec"] == "int8:mode=perdim:quantile=1.0:sample=700:seed=0"
    with_state, fitted = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert run_vecx("encode", base_table, "-o", with_state, "--state", state_file).code == 0
    assert run_vecx("encode", base_table, "-o", fitted, "--spec", "int8:sample=700").code == 0
    assert with_state.read_bytes() == fitted.read_bytes()
    # --save-state writes the same state as vecx fit.
    saved = tmp_path / "saved.state"
    assert run_vecx("int8", base_table, "-o", tmp_path / "c.parquet", "--sample", "700",
                    "--save-state", saved).code == 0
    assert saved.read_bytes() == state_file.read_bytes()
    # The state opens with any Arrow reader.
    import pyarrow as pa

    table = pa.ipc.open_file(pa.memory_map(str(state_file))).read_all()
    assert sorted(table["name"].to_pylist()) == ["lo", "scale"]
    # Applied to data of another dimension: a mismatch (exit 4), no output.
    other = tmp_path / "other.npy"
    np.save(other, make_vectors(100, 20))
    bad_out = tmp_path / "bad.parquet"
    r = run_vecx("encode", other, "-o", bad_out, "--state", state_file)
    assert r.code == 4 and "fitted on 48-d" in r.stderr and not bad_out.exists()
    # A spec that disagrees with the state is refused too.
    r = run_vecx("encode", base_table, "-o", bad_out, "--state", state_file, "--spec", "int8:sample=9")
    assert r.code == 4 and "state is for spec" in r.stderr


def test_info_human_and_json(tmp_path: Path, base_table: Path) -> None:
    out = tmp_path / "x.parquet"
    assert run_vecx("encode", base_table, "-o", out, "--spec", "truncate:32,int8").code == 0
    r = run_vecx("info", out)
    assert r.code == 0, r.stderr
    text = r.out
    for expected in ("32 x int8 = 32 bytes/vector", "cosine, on decoded values", "1. truncate:32:renorm=true",
                     "2. int8:mode=perdim", "fingerprint", "6.0x vs float32 source"):
        assert expected in text, text
    data = json.loads(run_vecx("info", out, "--json").stdout)
    assert data["vecx"]["spec"].startswith("truncate:32")
    assert data["vecx"]["stages"][1]["state_sha256"]
    raw = json.loads(run_vecx("info", tmp_path.parent / base_table.parent.name / "base.npy", "--json").stdout)
    assert raw["vecx"] is None and raw["raw"]["dim"] == 48


def test_fingerprints_chain(tmp_path: Path, base_table: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert run_vecx("truncate", base_table, "-o", a, "--dim", "32").code == 0
    assert run_vecx("truncate", base_table, "-o", b, "--dim", "31").code == 0
    ma, mb, mbase = meta_of(a), meta_of(b), meta_of(base_table)
    assert ma["source"] == mbase["source"]
    assert ma["fingerprint"] != mb["fingerprint"]
    assert ma["stages"][0]["fingerprint"] == ma["fingerprint"]
    assert mbase["fingerprint"] == mbase["source"]["fingerprint"]


def test_json_report_and_quiet(tmp_path: Path, base_table: Path) -> None:
    out = tmp_path / "x.parquet"
    r = run_vecx("f16", base_table, "-o", out, "--json", "-q")
    assert r.code == 0 and r.stderr == ""
    report = json.loads(r.stdout)
    assert report["rows"] == 3000 and report["bytes_per_vector"] == 96 and report["dtype"] == "float16"
    r = run_vecx("f16", base_table, "-o", "-", "--json")
    assert r.code == 2 and "--json cannot be combined with -o -" in r.stderr


def test_the_early_exit_still_cleans_up_and_flushes(tmp_path: Path, base_npy: Path) -> None:
    """After a command vecx leaves with os._exit (the interpreter's teardown costs 0.1-0.15 s);
    its atexit handlers must still run (a spooled stdin is removed) and stdout must be whole.
    Only a process of its own exits that way: this runs one."""
    import pyarrow as pa

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = run_vecx_process("import", "-", "-o", "-", stdin=base_npy.read_bytes(), env={"TMPDIR": str(tmp)})
    assert r.code == 0, r.stderr
    assert list(tmp.iterdir()) == []  # the stdin spool file is gone
    table = pa.ipc.open_stream(r.stdout).read_all()
    assert table.num_rows == 3000
    np.testing.assert_array_equal(np.stack(table["vector"].to_numpy(zero_copy_only=False)), np.load(base_npy))
