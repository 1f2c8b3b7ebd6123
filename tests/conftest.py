"""Shared fixtures: seeded synthetic data sets and a runner for the real ``vecx`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass
class Result:
    """Outcome of one ``vecx`` run."""

    code: int
    stdout: bytes
    stderr: str

    @property
    def out(self) -> str:
        return self.stdout.decode()


def run_vecx(*args: str, stdin: bytes | None = None, cwd: Path | None = None, env: dict | None = None) -> Result:
    """Run ``python -m vecx ARGS`` in a subprocess (real stdin/stdout/stderr, real exit code)."""
    full_env = {**os.environ, "VECX_NO_PROGRESS": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "vecx", *map(str, args)], input=stdin, capture_output=True,
                          cwd=cwd, env=full_env, timeout=600)
    return Result(proc.returncode, proc.stdout, proc.stderr.decode())


@pytest.fixture
def vecx():
    """The runner, as a fixture."""
    return run_vecx


def make_vectors(n: int, d: int, seed: int = 1338, normalize: bool = False) -> np.ndarray:
    """Seeded Gaussian vectors with some structure (a few clusters), float32."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((8, d)).astype(np.float32) * 2
    x = centers[rng.integers(0, 8, n)] + rng.standard_normal((n, d)).astype(np.float32)
    if normalize:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.fixture
def base_npy(tmp_path: Path) -> Path:
    """3,000 x 48 float32 vectors in a .npy file."""
    path = tmp_path / "base.npy"
    np.save(path, make_vectors(3000, 48))
    return path


@pytest.fixture
def base_table(tmp_path: Path, base_npy: Path) -> Path:
    """The same vectors imported as a vecx table with string ids."""
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"w{i}\n" for i in range(3000)))
    out = tmp_path / "base.parquet"
    result = run_vecx("import", base_npy, "-o", out, "--ids", ids)
    assert result.code == 0, result.stderr
    return out


def shared(name: str) -> Path:
    """A shared data set (``../shared/data`` beside the repository).

    A fresh clone without it skips the test, saying why; CI sets ``VECX_REQUIRE_SHARED=1``,
    where a missing set fails instead of skipping.
    """
    path = SHARED_DATA / name
    if not path.exists():
        if os.environ.get("VECX_REQUIRE_SHARED"):
            pytest.fail(f"shared data set missing: {path} (VECX_REQUIRE_SHARED is set)")
        pytest.skip(f"shared data set {name} not found at {path} (it sits beside the repository in CI)")
    return path


def with_edited_metadata(src: Path, dst: Path, edit) -> Path:
    """Copy a vecx Parquet file to ``dst`` with its ``vecx`` metadata changed by ``edit(meta)``."""
    import json

    import pyarrow.parquet as pq

    from vecx.formats import metadata

    f = pq.ParquetFile(src)
    meta = json.loads(f.metadata.metadata[metadata.KEY])
    edit(meta)
    table = f.read()
    writer = pq.ParquetWriter(dst, table.schema)
    writer.write_table(table)
    writer.add_key_value_metadata({metadata.KEY: json.dumps(meta).encode()})
    writer.close()
    return dst


def stored(path: Path):
    """The fitted chain and all stored codes of a vecx table (read with vecx's own reader)."""
    from vecx.chain import Chain
    from vecx.formats.readers import open_source

    source = open_source(str(path))
    return Chain.from_source(source), np.concatenate([b.vectors for b in source.batches()])
