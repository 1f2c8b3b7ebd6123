"""Interrupted runs leave the previous output intact (SIGTERM cleans up; kill -9 cannot, but never tears the target)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# A 256 MB input, and real processes interrupted by signals: the whole module is in the slow tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_npy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(2_000_000, 32))
    rng = np.random.default_rng(0)
    for start in range(0, len(arr), 500_000):
        arr[start: start + 500_000] = rng.standard_normal((500_000, 32))
    del arr
    return path


def interrupt_mid_write(src: Path, out: Path, sig: int) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-m", "vecx", "import", str(src), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".{out.name}.tmp-*")):
        assert proc.poll() is None, "the run finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_sigterm_removes_the_partial_file_and_keeps_the_target(tmp_path: Path, big_npy: Path) -> None:
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous version")
    done = interrupt_mid_write(big_npy, out, signal.SIGTERM)
    assert done.returncode == 130, done.stderr
    assert b"interrupted" in done.stderr
    assert out.read_bytes() == b"previous version"
    assert not list(tmp_path.glob(".out.parquet.tmp-*"))


def test_kill_9_never_tears_the_target(tmp_path: Path, big_npy: Path) -> None:
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous version")
    done = interrupt_mid_write(big_npy, out, signal.SIGKILL)
    assert done.returncode == -signal.SIGKILL
    assert out.read_bytes() == b"previous version"
    # The orphaned temporary file is hidden (dot-name) and never mistaken for the target.
    for leftover in tmp_path.glob(".out.parquet.tmp-*"):
        os.unlink(leftover)
