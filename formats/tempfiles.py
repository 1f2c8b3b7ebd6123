"""Temporary files that never outlive their writer for long, and small atomic writes.

Every temporary name carries the writing process's pid, so that a later run can tell a
live writer's file from one left behind by a process that was killed (``kill -9``, a
power cut): the next write to the same target, or the next spool, removes the dead ones.

- ``.NAME.tmp-PID-RANDOM`` beside an output file, renamed over ``NAME`` when complete;
- ``vecx-KIND-PID-RANDOM.SUFFIX`` in the system temporary directory, for spooled standard
  input and intermediate copies, removed at exit.
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from vecx.errors import UsageError, WriteError

_SIBLING = re.compile(r"\.tmp-(\d+)-[0-9a-f]{8}$")
_SPOOL = re.compile(r"^vecx-[a-z]+-(\d+)-[A-Za-z0-9_]+\.[a-z]+$")


def pid_alive(pid: int) -> bool:
    """Whether a local process with this pid exists (a pid we may not signal counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sibling_tmp(path: str) -> str:
    """A fresh temporary name beside ``path``, after removing dead writers' leftovers for it."""
    directory, name = os.path.split(os.path.abspath(path))
    sweep_siblings(directory, name)
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")


def sweep_siblings(directory: str, name: str) -> list[str]:
    """Remove ``.NAME.tmp-PID-*`` files in ``directory`` whose process is gone; return their names."""
    prefix = f".{name}.tmp-"
    removed: list[str] = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        match = _SIBLING.search(entry)
        if match is None or pid_alive(int(match.group(1))):
            continue
        full = os.path.join(directory, entry)
        try:
            if stat.S_ISREG(os.lstat(full).st_mode) or os.path.islink(full):
                os.unlink(full)
                removed.append(entry)
        except OSError:
            pass
    return removed


def spool_path(kind: str, suffix: str) -> str:
    """Create an empty ``vecx-KIND-PID-*.SUFFIX`` file in the temporary directory, removed at exit.

    Dead processes' spool files are removed first: they hold a whole copy of some input.
    """
    import tempfile

    directory = tempfile.gettempdir()
    try:
        for entry in os.listdir(directory):
            match = _SPOOL.match(entry)
            if match and not pid_alive(int(match.group(1))):
                try:
                    os.unlink(os.path.join(directory, entry))
                except OSError:
                    pass
    except OSError:
        pass
    fd, path = tempfile.mkstemp(prefix=f"vecx-{kind}-{os.getpid()}-", suffix=suffix)
    os.close(fd)
    atexit.register(_remove_quietly, path)
    return path


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def check_regular_target(path: str) -> None:
    """Refuse an output path that exists as something other than a regular file or a directory.

    Writing goes to a temporary file renamed over the target; renaming over a FIFO or a
    device (``-o /dev/null``) would replace the node itself, so such targets are refused.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError:
        return  # the write itself will report it
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UsageError(f"{path}: is a FIFO, socket or device, not a file; vecx replaces its outputs "
                         "atomically and will not replace it", hint="use -o - to write to standard output")


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write a small file atomically (temporary file beside it, then rename); ``-`` is standard output."""
    check_output(path)
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary name beside ``path`` to write to; renamed over ``path`` when the block ends
    without an error, removed otherwise. OS errors become a :class:`WriteError` naming ``path``."""
    tmp = sibling_tmp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise write_failure(path, exc) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


#: OS errors that mean an output cannot be written (exit 5), and how vecx says each.
WRITE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted", errno.EFBIG: "file too large"}


def write_failure(where: str, exc: OSError) -> WriteError:
    """A :class:`WriteError` for an OS error met while writing ``where`` (disk full, read-only, ...)."""
    reason = WRITE_ERRNOS.get(exc.errno or 0, exc.strerror or str(exc))
    return WriteError(f"{where}: cannot write ({reason})",
                      hint="nothing was changed; free space or fix permissions, then rerun")


def check_output(path: str) -> None:
    """Fail early (before any work) if ``path`` cannot be written."""
    if path == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write Arrow data to a terminal",
                             hint="give -o FILE.parquet, or pipe into another command")
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory; give a file name")
    check_regular_target(path)
    if not os.access(directory, os.W_OK):
        raise WriteError(f"{path}: directory {directory} is not writable",
                         hint="choose another output directory, or fix its permissions")


def is_dataset_output(path: str) -> bool:
    """Whether ``-o`` names a dataset folder: a path ending in ``/``, or a folder vecx wrote as one."""
    from vecx.formats.dataset import DATASET_FILE

    return path.endswith(("/", os.sep)) or os.path.isfile(os.path.join(path, DATASET_FILE))


@contextmanager
def dataset_dir(path: str) -> Iterator[str]:
    """A temporary folder beside the dataset folder ``path`` to write its parts into; when the block
    ends without an error it replaces ``path`` (a folder vecx wrote, or nothing), else it is removed.

    The swap is two renames (the old folder aside, the new one in), then the old one is removed:
    a reader that lists the folder in between finds it missing, never half written.
    """
    import shutil

    from vecx.formats.dataset import DATASET_FILE

    target = path.rstrip("/" + os.sep) or path
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise UsageError(f"{path}: directory {parent} does not exist")
    if os.path.lexists(target) and not os.path.isfile(os.path.join(target, DATASET_FILE)):
        if not (os.path.isdir(target) and not os.path.islink(target) and not os.listdir(target)):
            raise UsageError(f"{path}: exists and is not a dataset folder vecx wrote; vecx will not replace it",
                             hint="choose another name, or remove it")
    tmp = os.path.join(parent, f".{os.path.basename(target)}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        os.mkdir(tmp)
    except OSError as exc:
        raise write_failure(path, exc) from None
    try:
        yield tmp
        old = None
        if os.path.lexists(target):
            old = os.path.join(parent, f".{os.path.basename(target)}.old-{os.getpid()}-{os.urandom(4).hex()}")
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise write_failure(path, exc) from None
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
