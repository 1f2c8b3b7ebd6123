"""Shared fixtures: seeded synthetic data sets and two runners for the ``vecx`` command.

``run_vecx`` runs the command line in this process (``vecx.cli.main.main(args)``) with its own
stdin, stdout and stderr (pipes, not terminals), environment and working directory: what the
command does and says is the same as in a process of its own, without an interpreter start-up
per call. ``run_vecx_process`` starts ``python -m vecx`` for the tests that need a real process:
signals, exit without teardown, memory measured per process, concurrent processes, locks held by
another process, or an environment read when modules are imported. ``VECX_TEST_RUNNER=process``
sends every ``run_vecx`` call to a process of its own (the behaviour of both must be the same).

Under pytest-xdist, a test marked ``alone`` runs while no other test of the run does.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import io
import os
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

#: The shared real data sets: ``../shared/data`` beside the repository, or where VECX_SHARED_DATA says.
SHARED_DATA = Path(os.environ.get("VECX_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
#: Set for every run: progress bars never draw, in a process or in this one.
BASE_ENV = {"VECX_NO_PROGRESS": "1"}
#: Variables that only a fresh interpreter reads (at start-up or import): the in-process runner refuses them.
PROCESS_ONLY_ENV = ("PYTHONPATH", "PYTHONHASHSEED", "PYTHONWARNINGS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS", "LANG", "LC_ALL")


@dataclass
class Result:
    """Outcome of one ``vecx`` run."""

    code: int
    stdout: bytes
    stderr: str

    @property
    def out(self) -> str:
        return self.stdout.decode()


def run_vecx_process(*args: str, stdin: bytes | None = None, cwd: Path | None = None,
                     env: dict | None = None) -> Result:
    """Run ``python -m vecx ARGS`` in a subprocess (real stdin/stdout/stderr, real exit code).

    stdin holds ``stdin``, or is empty (the null device) when it is None, as with :func:`run_vecx`.
    """
    full_env = {**os.environ, **BASE_ENV, **(env or {})}
    feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    proc = subprocess.run([sys.executable, "-m", "vecx", *map(str, args)], capture_output=True,
                          cwd=cwd, env=full_env, timeout=600, **feed)
    return Result(proc.returncode, proc.stdout, proc.stderr.decode())


class _Pipe(io.RawIOBase):
    """One end of a pipe: readable (stdin, holding ``data``) or writable (stdout, stderr); never a
    terminal, never seekable, without a file descriptor (as a pipe is to everything but ``fileno``)."""

    def __init__(self, data: bytes | None = None) -> None:
        self._data = memoryview(data) if data is not None else None
        self._at = 0
        self.written = bytearray()

    def readable(self) -> bool:
        return self._data is not None

    def writable(self) -> bool:
        return self._data is None

    def readinto(self, buffer) -> int:
        if self._data is None:
            raise io.UnsupportedOperation("not readable")
        n = min(len(buffer), len(self._data) - self._at)
        buffer[:n] = self._data[self._at: self._at + n]
        self._at += n
        return n

    def write(self, data) -> int:
        if self._data is not None:
            raise io.UnsupportedOperation("not writable")
        self.written += data
        return len(data)


def _text_stream(raw: _Pipe, errors: str) -> io.TextIOWrapper:
    """A ``sys.stdin``/``sys.stdout``-like stream over ``raw``: text on top, ``.buffer`` binary below."""
    buffered = io.BufferedReader(raw) if raw.readable() else io.BufferedWriter(raw)
    # write_through: text and bytes written in turns (a message, then data) keep their order.
    return io.TextIOWrapper(buffered, encoding="utf-8", errors=errors, write_through=True)


@contextlib.contextmanager
def _environment(env: dict[str, str], cwd: Path | None) -> Iterator[None]:
    """``os.environ`` updated by ``env`` and the working directory ``cwd``, restored afterwards.

    The temporary directory is looked up again (``tempfile`` caches it the first time), so that a
    TMPDIR given here is the one the command uses, as in a process started with it.
    """
    saved = {key: os.environ.get(key) for key in env}
    saved_tempdir, saved_cwd = tempfile.tempdir, os.getcwd()
    os.environ.update(env)
    if {"TMPDIR", "TEMP", "TMP"} & set(env):
        tempfile.tempdir = None
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        tempfile.tempdir = saved_tempdir
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _process_exit_handlers() -> Iterator[list]:
    """Collect what the command registers with ``atexit``; the caller runs it when the command ends,
    as the process would on exit (temporary spool files are removed then)."""
    handlers: list = []
    real_register, real_unregister = atexit.register, atexit.unregister

    def register(func, *args, **kwargs):
        handlers.append((func, args, kwargs))
        return func

    def unregister(func) -> None:
        handlers[:] = [h for h in handlers if h[0] is not func]

    atexit.register, atexit.unregister = register, unregister
    try:
        yield handlers
    finally:
        atexit.register, atexit.unregister = real_register, real_unregister


@contextlib.contextmanager
def _signal_handlers() -> Iterator[list]:
    """Undo the SIGTERM handler the command installs; note a Ctrl-C during the command (which it
    turns into exit code 130), so that the caller can stop the test run as Ctrl-C would."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    pressed: list = []

    def interrupt(signum: int, frame: object) -> None:
        pressed.append(signum)
        raise KeyboardInterrupt

    if saved[signal.SIGINT] is signal.default_int_handler:  # not where Ctrl-C is ignored (a background run)
        signal.signal(signal.SIGINT, interrupt)
    try:
        yield pressed
    finally:
        for sig, handler in saved.items():
            if handler is not None:  # None: set outside Python, cannot be restored from here
                signal.signal(sig, handler)


def _warnings_to(stream) -> None:
    """Show warnings as a fresh interpreter would: its default filters, printed to ``stream``."""
    warnings.resetwarnings()
    for action, category in (("ignore", DeprecationWarning), ("ignore", PendingDeprecationWarning),
                             ("ignore", ImportWarning), ("ignore", ResourceWarning)):
        warnings.simplefilter(action, category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = show


def _exit_code(exc: SystemExit, stderr) -> int:
    """The status a process ending with ``exc`` would have (``sys.exit("text")`` prints and gives 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    stderr.write(f"{exc.code}\n")
    return 1


def run_vecx(*args: str, stdin: bytes | None = None, cwd: Path | None = None, env: dict | None = None) -> Result:
    """Run ``vecx ARGS``: in this process (:func:`run_vecx_in_process`), or with
    ``VECX_TEST_RUNNER=process`` in the environment of the test run, in a process of its own
    (:func:`run_vecx_process`: to compare, or to rule the in-process runner out)."""
    runner = run_vecx_process if os.environ.get("VECX_TEST_RUNNER") == "process" else run_vecx_in_process
    return runner(*args, stdin=stdin, cwd=cwd, env=env)


def run_vecx_in_process(*args: str, stdin: bytes | None = None, cwd: Path | None = None,
                        env: dict | None = None) -> Result:
    """Run ``vecx ARGS`` in this process, as ``python -m vecx ARGS`` would run on its own.

    stdin holds ``stdin`` (empty if None), stdout and stderr are pipes; none is a terminal. The
    environment (VECX_NO_PROGRESS=1 and ``env``) and the working directory apply for the call only;
    the SIGTERM handler, ``sys.std*`` and the warning filters are restored afterwards. Exit
    handlers the command registers run when it ends, an exception it lets through is printed
    as a traceback with exit code 1: as in a process of its own. Ctrl-C during the command
    stops the test run (after the command has cleaned up, as it does on Ctrl-C).
    """
    from vecx.cli.main import main

    env = {**BASE_ENV, **(env or {})}
    refused = sorted(set(env) & set(PROCESS_ONLY_ENV))
    if refused:
        raise ValueError(f"{refused}: read at interpreter start-up or import; use run_vecx_process")
    stdout_raw, stderr_raw = _Pipe(), _Pipe()
    streams = (_text_stream(_Pipe(stdin or b""), "strict"), _text_stream(stdout_raw, "strict"),
               _text_stream(stderr_raw, "backslashreplace"))
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    code = 0
    with (_environment(env, cwd), _signal_handlers() as pressed, _process_exit_handlers() as handlers,
          warnings.catch_warnings()):
        sys.stdin, sys.stdout, sys.stderr = streams
        try:
            _warnings_to(sys.stderr)
            try:
                main([str(a) for a in args])
            except SystemExit as exc:
                code = _exit_code(exc, sys.stderr)
            except Exception:  # uncaught: Python prints the traceback and exits with 1
                traceback.print_exc(file=sys.stderr)
                code = 1
            for func, fargs, fkwargs in reversed(handlers):
                try:
                    func(*fargs, **fkwargs)
                except Exception:
                    traceback.print_exc(file=sys.stderr)
            for stream in streams[1:]:
                stream.flush()
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved_streams
    if pressed:
        raise KeyboardInterrupt
    return Result(code, bytes(stdout_raw.written), bytes(stderr_raw.written).decode())


@contextlib.contextmanager
def _turn(lock: Path, alone: bool) -> Iterator[None]:
    """Hold this run's test lock: shared (tests run side by side), or exclusive for a test marked
    ``alone``. A waiting exclusive test holds the turnstile, so the tests that come after it wait
    for their turn behind it however many workers there are."""
    fds = [os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644) for path in (f"{lock}.turnstile", lock)]
    try:
        fcntl.flock(fds[0], fcntl.LOCK_EX)
        if not alone:
            fcntl.flock(fds[0], fcntl.LOCK_UN)
        fcntl.flock(fds[1], fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield
    finally:
        for fd in fds:
            os.close(fd)  # and with it, its lock


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Under pytest-xdist, a test marked ``alone`` runs while no other test does (the other workers
    wait, fixtures included): the peak memory of a process it measures depends on the timing of its
    threads, which a busy machine changes. The lock file lies beside the workers' temporary
    directories, shared by this run's workers only."""
    basetemp = item.config.getoption("basetemp")
    if not os.environ.get("PYTEST_XDIST_WORKER") or not basetemp:
        return (yield)
    with _turn(Path(basetemp).parent / "vecx-tests.lock", item.get_closest_marker("alone") is not None):
        return (yield)


def ok(*args: object, env: dict | None = None) -> str:
    """Run ``vecx ARGS`` (any path-like or number arguments), require exit 0, return its stdout."""
    r = run_vecx(*map(str, args), env=env)
    assert r.code == 0, r.stderr
    return r.out


@pytest.fixture
def vecx():
    """:func:`run_vecx`, as a fixture."""
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
    """A shared data set (``../shared/data`` beside the repository, or under ``VECX_SHARED_DATA``).

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
