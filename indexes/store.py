"""The index directory: versioned contents behind a symlink that is swapped atomically.

``docs.vecx`` is a symbolic link to ``.docs.vecx.d/<version>/``, a directory holding::

    manifest.json    format version, build parameters, counts, and size + sha256 of every file
    graph.usearch    the usearch HNSW graph over the encoded vectors (opened as a memory-mapped view)
    rows.parquet     id and payload of every row, row i = graph key i
    table.json       the encoded table's vecx metadata (the chain that encodes queries)
    state.npz        the chain's fitted state, if any: an uncompressed zip of <stage>/<name>.npy (numpy alone reads it)
    ids.npy          integer ids by row (or ids.offsets.npy + ids.utf8 for string ids), memory-mapped by queries
    rescore.npy      optional higher-precision vectors for rescoring (memory-mapped), + rescore.json

Writers. A build takes the writer lock ``.docs.vecx.lock`` beside the index (``flock``; a
second writer waits, or fails fast with :class:`~vecx.errors.BusyError`), writes a new version
directory, then replaces the link with ``os.replace`` (atomic). A killed build leaves the link
untouched; its version directory is removed by the next writer. Old versions are removed by
the next build unless a reader still holds them.

Readers. A reader resolves the link once, then holds a shared ``flock`` on that version's
``manifest.json`` for as long as it is open: writers never remove a version that is held, so
a long batch of queries survives any number of rebuilds. A reader sees the old index or the
new one, never a mix.

Trust. An index directory is untrusted input (indexes are copied between machines and
people): the manifest is validated field by field, it may name only plain files inside its
version directory, every file vecx opens must be listed in it with its size and sha256, no
entry of a version may be a symbolic link, and cleanup never follows a link.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeGuard

from vecx import __version__
from vecx.errors import BusyError, DataError, MismatchError, UsageError, WriteError
from vecx.formats.tempfiles import write_failure

#: The newest index format this vecx reads and writes: 2 adds segments and tombstones
#: (:mod:`vecx.indexes.segments`). An index with one segment and no tombstones is still written as 1.
INDEX_FORMAT_VERSION = 3
MANIFEST = "manifest.json"
#: Files up to this size are checksummed on every open; larger ones by size and header (``verify=True``: all).
#: Small, so that a query pays for hashing metadata and state only, not ids or rows.
QUICK_VERIFY_BYTES = 1 << 20
#: A manifest larger than this is not one vecx wrote.
MAX_MANIFEST_BYTES = 16 << 20
#: File names a manifest may list: one plain name, no directory part, not hidden.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION_NAME = re.compile(r"^v-[0-9a-f]{12}$")
_TMP_NAME = re.compile(r"^tmp-(\d+)-[0-9a-f]{8}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _random_hex(digits: int) -> str:
    return os.urandom((digits + 1) // 2).hex()[:digits]


def _rmtree(path: str, ignore_errors: bool = True) -> None:
    """``shutil.rmtree`` (imported here: queries never remove anything, and never pay for it).

    On Linux it works through directory descriptors and never follows a symbolic link.
    """
    import shutil

    shutil.rmtree(path, ignore_errors=ignore_errors)


def sha256_file(path: str) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions_dir(target: str) -> str:
    """Where the versions of index ``target`` live: a hidden sibling directory."""
    parent, name = os.path.split(os.path.abspath(target))
    return os.path.join(parent, f".{name}.d")


def lock_path(target: str) -> str:
    """The writer lock file of index ``target``: a hidden sibling file, never removed."""
    parent, name = os.path.split(os.path.abspath(target))
    return os.path.join(parent, f".{name}.lock")


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------
class Writer:
    """One change to an index: lock, new version directory, commit or abort.

    Use as a context manager; inside, :attr:`path` is the new version's directory and
    :meth:`commit` publishes it. Leaving the block without a commit (an error, Ctrl-C)
    removes the version; the link and the versions it points to are untouched.
    ``on_wait(pid)`` is called once if another writer holds the lock and ``wait`` is true.
    """

    def __init__(self, target: str, *, wait: bool = True, on_wait: Callable[[int | None], None] | None = None) -> None:
        if target == "-":
            raise UsageError("an index is a directory and cannot be written to standard output",
                             hint="give -o NAME.vecx")
        self.target = target
        self.wait = wait
        self.on_wait = on_wait
        self.path: str | None = None
        self._lock_fd: int | None = None
        self._created_root = False

    def __enter__(self) -> Writer:
        check_target(self.target)
        self._lock_fd = _acquire(self.target, self.wait, self.on_wait)
        try:
            root = versions_dir(self.target)
            _check_versions_dir(root, self.target)
            if not os.path.isdir(root):
                os.mkdir(root)
                self._created_root = True
            _sweep(root, self.target, keep=_linked_versions(self.target))
            self.path = os.path.join(root, f"tmp-{os.getpid()}-{_random_hex(8)}")
            os.mkdir(self.path)
        except OSError as exc:
            self._release()
            raise write_failure(self.target, exc) from None
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self.path is not None:  # not committed
                _rmtree(self.path, ignore_errors=True)
                self.path = None
                root = versions_dir(self.target)
                if not os.path.lexists(self.target):
                    try:
                        os.rmdir(root)  # only if empty: a first build that failed leaves nothing
                    except OSError:
                        pass
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def commit(self, manifest: dict[str, Any], known: dict[str, dict[str, Any]] | None = None) -> None:
        """Checksum the files, write the manifest, and atomically point the target at this version.

        ``known``: checksums of files already computed (hard-linked from a verified version, or
        hashed while they were written), not hashed again.
        """
        assert self.path is not None, "commit outside the with block, or twice"
        version_path = self.path
        try:
            files = {}
            for name in sorted(os.listdir(version_path)):
                full = os.path.join(version_path, name)
                if known and name in known and known[name]["bytes"] == os.path.getsize(full):
                    files[name] = known[name]
                else:
                    files[name] = {"bytes": os.path.getsize(full), "sha256": sha256_file(full)}
            manifest = {"format_version": format_version(manifest), "kind": "index",
                        "writer": {"library": "vecx", "version": __version__}, **manifest, "files": files}
            check_manifest(manifest, self.target, set(files))
            with open(os.path.join(version_path, MANIFEST), "w", encoding="utf-8") as handle:
                json.dump(manifest, handle, indent=1, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            root = versions_dir(self.target)
            final = os.path.join(root, "v-" + _random_hex(12))
            os.rename(version_path, final)
            self.path = None
        except OSError as exc:
            raise write_failure(self.target, exc) from None
        parent = os.path.dirname(os.path.abspath(self.target))
        link_tmp = os.path.join(parent, f".{os.path.basename(self.target)}.link-{os.getpid()}-{_random_hex(8)}")
        previous = _linked_versions(self.target)
        try:
            os.symlink(os.path.relpath(final, parent), link_tmp)
            os.replace(link_tmp, self.target)
        except BaseException as exc:
            if os.path.lexists(link_tmp):
                os.unlink(link_tmp)
            _rmtree(final, ignore_errors=True)
            if isinstance(exc, OSError):
                raise write_failure(self.target, exc) from None
            raise
        _fsync_dir(parent)
        _sweep(root, self.target, keep={os.path.basename(final)} | previous)


def format_version(body: dict[str, Any]) -> int:
    """The oldest format that can hold a manifest: 1 unless it has several segments or tombstones (2),
    or several rescoring stages (3)."""
    if body.get("refine"):
        return 3
    return 2 if len(body.get("segments") or ()) > 1 or body.get("deleted") else 1


def check_target(target: str) -> None:
    """Refuse an output path that is something other than a vecx index (or nothing yet)."""
    if os.path.islink(target):
        if not _points_into_versions(target):
            raise UsageError(f"{target}: is a symbolic link to {os.readlink(target)}, not to a version of "
                             "this index; vecx will not replace it", hint="give the index's real path")
        return
    if os.path.lexists(target):
        raise UsageError(f"{target}: exists and is not a vecx index (a plain file, directory or device)",
                         hint="choose another name, or remove it")
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise UsageError(f"{target}: directory {parent} does not exist")


def _points_into_versions(target: str) -> bool:
    link = os.readlink(target)
    head, name = os.path.split(link)
    return head == os.path.basename(versions_dir(target)) and bool(_VERSION_NAME.match(name))


def _linked_versions(target: str) -> set[str]:
    """The version the target's link names (a set of zero or one names)."""
    if os.path.islink(target) and _points_into_versions(target):
        return {os.path.basename(os.readlink(target))}
    return set()


def _check_versions_dir(root: str, target: str) -> None:
    if os.path.islink(root) or (os.path.lexists(root) and not os.path.isdir(root)):
        raise UsageError(f"{target}: {root} is not a directory vecx made (a symbolic link or a file); "
                         "vecx will not write or delete through it", hint="remove it, then rerun")


def _acquire(target: str, wait: bool, on_wait: Callable[[int | None], None] | None) -> int:
    import fcntl

    path = lock_path(target)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{path}: the lock file is a symbolic link; remove it, then rerun") from None
        raise write_failure(target, exc) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{path}: the lock file is not a regular file; remove it, then rerun")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise BusyError(f"{target}: another vecx process{f' (pid {holder})' if holder else ''} "
                                "is writing this index",
                                hint="rerun later, or without --no-wait to wait for it") from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. a network file system without lock support
            raise WriteError(f"{target}: cannot lock {path} ({exc.strerror or exc}); vecx builds an index only "
                             "under its writer lock",
                             hint="build the index on a file system with flock support") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _sweep(root: str, target: str, keep: set[str]) -> None:
    """Remove old versions no reader holds, dead builds' directories and stale link files.

    Runs under the writer lock, so no other vecx writer is active. Only names vecx makes are
    touched; a symbolic link is unlinked, never followed.
    """
    for name in os.listdir(root):
        if name not in keep:
            _sweep_entry(root, name)
    parent, base = os.path.split(os.path.abspath(target))
    for name in os.listdir(parent):
        if name.startswith(f".{base}.link-"):
            try:
                os.unlink(os.path.join(parent, name))
            except OSError:
                pass


def _sweep_entry(root: str, name: str) -> None:
    """Removes one entry of the versions directory if vecx made it and nothing needs it any more.

    A version goes unless a reader holds it; a build directory (``tmp-PID-*``) goes unless its
    process still runs; anything else vecx's names match that is not a directory is unlinked.
    """
    from vecx.formats.tempfiles import pid_alive

    path = os.path.join(root, name)
    tmp = _TMP_NAME.match(name)
    if tmp is None and not _VERSION_NAME.match(name):
        return  # not ours
    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    if tmp is not None:
        if int(tmp.group(1)) != os.getpid() and pid_alive(int(tmp.group(1))):
            return  # a build by a vecx without the writer lock is running
        _rmtree(path, ignore_errors=True)
        return
    _remove_unless_held(path)


def _remove_unless_held(path: str) -> None:
    """Remove a version directory unless a reader holds its manifest (shared flock)."""
    import fcntl

    try:
        fd = os.open(os.path.join(path, MANIFEST), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        _rmtree(path, ignore_errors=True)  # no manifest: not a version any reader opened
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a reader holds it; a later build removes it
        _rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Derived:
    """A new version made from the current one (see :func:`derive`): the writer, the current manifest,
    and the checksums of the files linked into the new version."""

    def __init__(self, writer: Writer, manifest: dict[str, Any], linked: dict[str, dict[str, Any]]) -> None:
        self.writer, self.manifest, self.linked = writer, manifest, linked

    @property
    def path(self) -> str:
        """The new version's directory."""
        assert self.writer.path is not None, "used inside derive's with block"
        return self.writer.path

    def commit(self, body: dict[str, Any]) -> None:
        """Publish the new version with manifest ``body`` (linked files are not hashed again)."""
        self.writer.commit(body, known=self.linked)


@contextmanager
def derive(target: str, *, keep: Callable[[str], bool] = lambda name: True, expected: str | None = None,
           wait: bool = True, on_wait: Callable[[int | None], None] | None = None) -> Iterator[Derived]:
    """Start a new version of an existing index from its current one, under the writer lock.

    The current version's files that ``keep`` accepts are hard-linked into the new version (no
    copy; the links share the bytes and keep their checksums). ``expected``: the version
    directory the change was computed on; if the index has been rebuilt since, nothing is
    written and a :class:`MismatchError` says so. Commit with :meth:`Derived.commit`; leaving
    the block without a commit leaves the index as it was.
    """
    with Writer(target, wait=wait, on_wait=on_wait) as writer:
        assert writer.path is not None, "the writer's version directory exists inside its with block"
        with open_reader(target) as current:
            if expected is not None and os.path.realpath(current.directory) != os.path.realpath(expected):
                raise MismatchError(f"{target}: the index was changed while this ran; nothing was saved",
                                    hint="rerun the command on the new index")
            manifest = current.manifest
            linked = {}
            try:
                for name, info in manifest["files"].items():
                    if keep(name):
                        os.link(current.file(name), os.path.join(writer.path, name))
                        linked[name] = info
            except OSError as exc:
                raise write_failure(target, exc) from None
        yield Derived(writer, manifest, linked)


def manifest_body(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest without the fields a commit sets (format version, kind, writer, files)."""
    return {k: v for k, v in manifest.items() if k not in ("format_version", "kind", "writer", "files")}


def update_manifest(target: str, changes: dict[str, dict[str, Any]], *, expected: str | None = None,
                    wait: bool = True, on_wait: Callable[[int | None], None] | None = None) -> dict[str, Any]:
    """Publish a new version whose manifest has ``changes`` merged in (files are hard-linked, not copied).

    ``expected``: the version directory the changes were computed on; if the index has been
    rebuilt since, nothing is written and a :class:`MismatchError` says so.
    """
    with derive(target, expected=expected, wait=wait, on_wait=on_wait) as change:
        body = manifest_body(change.manifest)
        for section, values in changes.items():
            body[section] = {**body.get(section, {}), **values}
        change.commit(body)
    return open_version(target)[1]


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------
class Version:
    """One opened version of an index: its directory, validated manifest, and a reader's hold on it.

    While open, no writer removes the directory. :meth:`close` (or leaving a ``with`` block)
    lets it go; so does the end of the process.
    """

    def __init__(self, path: str, directory: str, manifest: dict[str, Any], fd: int | None) -> None:
        self.path = path
        self.directory = directory
        self.manifest = manifest
        self._fd = fd

    def file(self, name: str) -> str:
        """Full path of a file the manifest lists (a :class:`DataError` for any other name)."""
        if name not in self.manifest["files"]:
            raise DataError(f"{self.path}: {name} is not listed in the index manifest", hint="rebuild the index")
        return os.path.join(self.directory, name)

    def has(self, name: str) -> bool:
        """Whether the manifest lists ``name``."""
        return name in self.manifest["files"]

    def close(self) -> None:
        """Release the hold on this version (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Version:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def open_version(path: str, verify: bool = False) -> tuple[str, dict[str, Any]]:
    """Resolve an index path to one version directory and its checked manifest (not held open)."""
    with open_reader(path, verify=verify) as version:
        return version.directory, version.manifest


def open_reader(path: str, verify: bool = False) -> Version:
    """Open the index's current version for reading and hold it (see :class:`Version`).

    Checks the manifest, that every listed file is a plain file of the listed size inside the
    version, and the sha256 of small files (of every file with ``verify``).
    """
    if not os.path.exists(path):
        if os.path.islink(path):
            raise DataError(f"{path}: the index link points to a version that does not exist",
                            hint="rebuild the index")
        raise DataError(f"{path}: no such index", hint="build one with 'vecx index TABLE -o PATH'")
    for _ in range(100):
        version = _open_current(path, verify)
        if version is not None:
            return version
    raise DataError(f"{path}: the index keeps changing under this reader", hint="rerun the command")


def _open_current(path: str, verify: bool) -> Version | None:
    """One attempt at opening and holding the version the index link names now.

    ``None`` when a writer swapped or removed that version meanwhile: the caller resolves the
    link again. Damage is a :class:`DataError`.
    """
    directory = os.path.realpath(path)
    manifest_path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise DataError(f"{path}: not a vecx index (not a directory)")
    fd = _open_manifest(path, directory, manifest_path)
    if fd is None or not _hold_shared(fd):
        return None
    try:
        if os.fstat(fd).st_nlink == 0 or not os.path.exists(manifest_path):
            os.close(fd)
            return None  # removed while we opened it
        manifest = _read_manifest(fd, path)
        _check_files(directory, manifest, path, verify)
    except BaseException:
        os.close(fd)
        raise
    return Version(path, directory, manifest, fd)


def _open_manifest(path: str, directory: str, manifest_path: str) -> int | None:
    """A descriptor of a version's manifest (never through a symbolic link); ``None`` if the version
    was swapped and removed between resolving the link and opening it."""
    try:
        return os.open(manifest_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        if os.path.realpath(path) != directory:
            return None  # swapped and removed between resolving and opening: resolve again
        raise DataError(f"{path}: not a vecx index (no {MANIFEST})") from None
    except OSError as exc:
        raise DataError(f"{path}: {MANIFEST} cannot be opened ({exc.strerror or exc})") from None


def _hold_shared(fd: int) -> bool:
    """Takes a reader's shared hold on a manifest; ``False`` (the descriptor closed) if a writer is
    removing that version right now. A file system without ``flock`` is read unheld."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:  # a writer is removing this version right now
        os.close(fd)
        return False
    except OSError:
        pass  # a file system without flock: read unheld
    return True


def _read_manifest(fd: int, path: str) -> dict[str, Any]:
    size = os.fstat(fd).st_size
    if size > MAX_MANIFEST_BYTES:
        raise DataError(f"{path}: {MANIFEST} is {size:,} bytes, not a manifest vecx wrote")
    data = os.pread(fd, size, 0)
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path}: {MANIFEST} is unreadable ({type(exc).__name__})", hint="rebuild the index") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "index" or \
            not _is_int(manifest.get("format_version")):
        raise DataError(f"{path}: {MANIFEST} is not a vecx index manifest")
    version = manifest["format_version"]
    if version > INDEX_FORMAT_VERSION:
        writer = manifest.get("writer")
        by = writer.get("version", "?") if isinstance(writer, dict) else "?"
        raise MismatchError(
            f"{path}: index format version {version} was written by vecx {by}; this is vecx {__version__}, "
            f"which reads up to version {INDEX_FORMAT_VERSION}", hint="upgrade vecx (pip install -U vecx)")
    check_manifest(manifest, path)
    return manifest


def _check_files(directory: str, manifest: dict[str, Any], path: str, verify: bool) -> None:
    listed = manifest["files"]
    try:
        entries = os.listdir(directory)
    except OSError as exc:
        raise DataError(f"{path}: cannot list the index ({exc.strerror})") from None
    for entry in entries:
        if os.path.islink(os.path.join(directory, entry)):
            raise DataError(f"{path}: {entry} is a symbolic link; an index holds only plain files",
                            hint="rebuild the index")
    for name, info in listed.items():
        full = os.path.join(directory, name)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            raise DataError(f"{path}: file {name} is missing", hint="rebuild the index") from None
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{path}: {name} is not a plain file", hint="rebuild the index")
        if st.st_size != info["bytes"]:
            raise DataError(f"{path}: {name} has {st.st_size:,} bytes, the manifest says {info['bytes']:,} "
                            "(damaged or replaced)", hint="rebuild the index")
        if (verify or info["bytes"] <= QUICK_VERIFY_BYTES) and sha256_file(full) != info["sha256"]:
            raise DataError(f"{path}: checksum of {name} does not match the manifest (damaged)",
                            hint="rebuild the index")
        if name.endswith(".npy"):
            check_npy(full, path, name)


def check_npy(full: str, path: str, name: str) -> tuple[Any, tuple[int, ...]]:
    """Check an ``.npy`` file's header against its size (no pickles): its dtype and shape."""
    import numpy as np

    try:
        with open(full, "rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            if major == 1:
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif major in (2, 3):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"npy version {major}")
            offset = handle.tell()
    except (ValueError, SyntaxError, TypeError, OSError, MemoryError) as exc:
        raise DataError(f"{path}: {name} has a damaged header ({type(exc).__name__})",
                        hint="rebuild the index") from None
    if dtype.hasobject or fortran or any(not isinstance(n, int) or n < 0 for n in shape):
        raise DataError(f"{path}: {name} is not a plain numeric array", hint="rebuild the index")
    expected = offset + int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if expected != os.path.getsize(full):
        raise DataError(f"{path}: {name} holds {os.path.getsize(full):,} bytes, its header says {expected:,} "
                        "(damaged)", hint="rebuild the index")
    return dtype, shape


# --------------------------------------------------------------------------------------
# The manifest's shape
# --------------------------------------------------------------------------------------
def _is_int(value: Any) -> TypeGuard[int]:
    """Whether a JSON value is an integer (``true``/``false`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


class _Shape:
    """Field checks with one error message form: ``PATH: manifest field 'a.b' ...``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, field: str, what: str) -> DataError:
        """The error for manifest field ``field``, which ``what`` (e.g. "must be an object")."""
        return DataError(f"{self.path}: {MANIFEST} field {field!r} {what}", hint="rebuild the index")

    def section(self, parent: dict[str, Any], key: str, field: str) -> dict[str, Any]:
        """The object under ``key``, which must be there."""
        value = parent.get(key)
        if not isinstance(value, dict):
            raise self.fail(field, "must be an object")
        return value

    def optional_section(self, parent: dict[str, Any], key: str, field: str) -> dict[str, Any] | None:
        """The object under ``key``, or ``None`` if it is absent (or null)."""
        return None if parent.get(key) is None else self.section(parent, key, field)

    def integer(self, parent: dict[str, Any], key: str, field: str, low: int = 0, optional: bool = False,
                high: int | None = None) -> None:
        """An integer of at least ``low`` (and at most ``high``) under ``key`` (``optional``: or nothing)."""
        value = parent.get(key)
        if value is None and optional:
            return
        if not _is_int(value) or value < low:
            raise self.fail(field, f"must be an integer >= {low}")
        if high is not None and value > high:
            raise self.fail(field, f"must be an integer <= {high}")

    def string(self, parent: dict[str, Any], key: str, field: str, optional: bool = False,
               choices: tuple[str, ...] | None = None) -> None:
        """A string under ``key``, one of ``choices`` if given (``optional``: or nothing)."""
        value = parent.get(key)
        if value is None and optional:
            return
        if not isinstance(value, str) or (choices is not None and value not in choices):
            raise self.fail(field, "must be " + (f"one of {', '.join(choices)}" if choices else "a string"))

    def file(self, parent: dict[str, Any], key: str, field: str, listed: set[str], suffix: str,
             optional: bool = False) -> None:
        """A field naming one of the index's files, of the kind its suffix says (``.npy``, ...)."""
        self.string(parent, key, field, optional)
        value = parent.get(key)
        if value is not None and value not in listed:
            raise self.fail(field, f"names {value!r}, which is not among the index's files")
        if value is not None and not value.endswith(suffix):
            raise self.fail(field, f"names {value!r}, not a {suffix} file")


def check_manifest(manifest: dict[str, Any], path: str, listed: set[str] | None = None) -> None:
    """Validate every manifest field vecx reads: types, ranges, and file names.

    File names must be plain names inside the version directory (no ``/``, ``..``, hidden or
    absolute names), and every file another field names must be listed under ``files``.
    """
    from vecx.indexes.codescan import MAX_QUERY_BITS

    shape = _Shape(path)
    listed = _check_files_field(shape, manifest, listed)
    shape.integer(manifest, "rows", "rows")
    shape.integer(manifest, "bytes_per_vector", "bytes_per_vector", low=1)
    writer = shape.section(manifest, "writer", "writer")
    shape.string(writer, "version", "writer.version")
    table = shape.section(manifest, "table", "table")
    shape.string(table, "fingerprint", "table.fingerprint", optional=True)
    shape.string(table, "spec", "table.spec", optional=True)
    shape.string(table, "model", "table.model", optional=True)
    shape.string(table, "space_model", "table.space_model", optional=True)
    columns = manifest.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise shape.fail("columns", "must be a list of column names")
    shape.string(manifest, "ids", "ids", optional=True)
    graph = _check_graph_section(shape, manifest, listed)
    search = shape.section(manifest, "search", "search")
    _check_factors(shape, search, 1 + len(manifest.get("refine") or ()))
    shape.string(search, "scan", "search.scan", optional=True, choices=("graph", "exhaustive", "ivf"))
    shape.integer(search, "pool", "search.pool", low=1, optional=True)
    shape.integer(search, "nprobe", "search.nprobe", low=1, optional=True)
    shape.integer(search, "query_bits", "search.query_bits", optional=True, high=MAX_QUERY_BITS)
    _check_rescore_section(shape, manifest, listed)
    codes = shape.optional_section(manifest, "codes", "codes")
    if codes is not None:
        shape.file(codes, "file", "codes.file", listed, ".bin")
        shape.integer(codes, "bytes", "codes.bytes", low=1)
        shape.string(codes, "codec", "codes.codec")
        shape.string(codes, "spec", "codes.spec")
        shape.string(codes, "metric", "codes.metric", choices=("cosine", "ip", "l2"))
    if graph.get("file") is None and codes is None:
        raise shape.fail("graph.file", "is empty, and there are no scored codes to search")
    _check_segments(shape, manifest, listed)


def _check_files_field(shape: _Shape, manifest: dict[str, Any], listed: set[str] | None) -> set[str]:
    """Checks the ``files`` field (plain names, sizes, sha256s); returns the names other fields may name.

    ``listed`` (the files of a version being committed) takes the place of the field's own names.
    """
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise shape.fail("files", "must list the index's files")
    for name, info in files.items():
        if not isinstance(name, str) or not _FILE_NAME.match(name) or name == MANIFEST:
            raise shape.fail("files", f"names {name!r}: an index file must be a plain name inside its directory")
        if not isinstance(info, dict) or not _is_int(info.get("bytes")) or info["bytes"] < 0 \
                or not isinstance(info.get("sha256"), str) or not _SHA256.match(info["sha256"]):
            raise shape.fail(f"files.{name}", "must hold bytes (an integer) and sha256 (64 hex digits)")
    listed = set(files) if listed is None else listed
    for required in ("rows.parquet", "table.json"):
        if required not in listed:
            raise shape.fail("files", f"does not list {required}")
    return listed


def _check_graph_section(shape: _Shape, manifest: dict[str, Any], listed: set[str]) -> dict[str, Any]:
    """Checks the ``graph`` section (its file, metric, scalar kind and build parameters) and returns it."""
    graph = shape.section(manifest, "graph", "graph")
    shape.file(graph, "file", "graph.file", listed, ".usearch", optional=True)
    shape.string(graph, "metric", "graph.metric", choices=("cos", "ip", "l2sq", "hamming", "l2", "cosine"))
    shape.string(graph, "dtype", "graph.dtype")
    shape.integer(graph, "ndim", "graph.ndim", low=1)
    for key in ("connectivity", "expansion_add", "expansion_search"):
        shape.integer(graph, key, f"graph.{key}", low=1)
    if not isinstance(graph.get("deterministic"), bool):
        raise shape.fail("graph.deterministic", "must be true or false")
    shape.string(graph, "order", "graph.order", optional=True, choices=("input", "random", "lid"))
    lid = shape.optional_section(graph, "lid", "graph.lid")
    if lid is not None:
        for key in ("k", "rows", "reference_rows"):
            shape.integer(lid, key, f"graph.lid.{key}")
        for key in ("mean", "harmonic", "median", "p10", "p90"):
            if not (lid.get(key) is None or (isinstance(lid[key], (int, float)) and not isinstance(lid[key], bool))):
                raise shape.fail(f"graph.lid.{key}", "must be a number")
    return graph


def _check_factors(shape: _Shape, search: dict[str, Any], stages: int) -> None:
    """``search.oversample``: one factor (one rescoring stage), or one per stage that never grows."""
    value = search.get("oversample")
    if stages == 1 and not isinstance(value, list):
        shape.integer(search, "oversample", "search.oversample", low=1)
        return
    if not isinstance(value, list) or len(value) != stages or not all(_is_int(f) and f >= 1 for f in value) \
            or any(b > a for a, b in zip(value, value[1:], strict=False)):
        raise shape.fail("search.oversample", f"must be {stages} factors (integers >= 1, none above the one before)")


def _check_rescore_section(shape: _Shape, manifest: dict[str, Any], listed: set[str]) -> None:
    """Checks the optional ``rescore`` section (the last rescoring stage's files, dtype, dimension and
    metric) and the ``refine`` list of the stages before it."""
    from vecx.indexes.rescoring import MAX_REFINE, refine_name

    rescore = shape.optional_section(manifest, "rescore", "rescore")
    refine = manifest.get("refine")
    if refine is not None and (not isinstance(refine, list) or not refine or rescore is None
                               or rescore.get("multi") or len(refine) > MAX_REFINE):
        raise shape.fail("refine", f"must be a list of 1 to {MAX_REFINE} stages, before a rescore section "
                                   "of single vectors")
    if rescore is None:
        return
    _check_rescore_stage(shape, rescore, "rescore", listed)
    if rescore.get("multi"):
        shape.file(rescore, "offsets", "rescore.offsets", listed, ".npy")
        shape.file(rescore, "mean_graph", "rescore.mean_graph", listed, ".usearch", optional=True)
        shape.integer(rescore, "tokens", "rescore.tokens")
    for number, stage in enumerate(refine or (), start=1):
        field = f"refine[{number - 1}]"
        if not isinstance(stage, dict):
            raise shape.fail(field, "must be an object")
        _check_rescore_stage(shape, stage, refine_name(number), listed, field)
        if stage.get("multi"):
            raise shape.fail(f"{field}.multi", "a rescoring stage before the last holds single vectors")


def _check_rescore_stage(shape: _Shape, stage: dict[str, Any], name: str, listed: set[str],
                         field: str = "rescore") -> None:
    """One rescoring stage: its ``NAME.npy`` and ``NAME.json`` files, dtype, dimension and metric."""
    shape.file(stage, "file", f"{field}.file", listed, ".npy")
    if field != "rescore" and stage.get("file") != name + ".npy":
        raise shape.fail(f"{field}.file", f"must be {name}.npy")
    if name + ".json" not in listed:
        raise shape.fail("files", f"does not list {name}.json, which an index with rescoring vectors has")
    shape.string(stage, "dtype", f"{field}.dtype", choices=("float32", "float16", "int8", "bits", "codes"))
    if stage.get("encoded", False) is not (stage.get("dtype") not in ("float32", "float16")):
        raise shape.fail(f"{field}.encoded", "must be true for rescoring codes, and absent for float vectors")
    shape.integer(stage, "dim", f"{field}.dim", low=1)
    shape.string(stage, "metric", f"{field}.metric", choices=("cosine", "ip", "l2", "maxsim"))
    shape.string(stage, "spec", f"{field}.spec", optional=True)


def segment_files(manifest: dict[str, Any]) -> list[str]:
    """The per-segment files of an index, as named for its first segment (no prefix)."""
    names = ["rows.parquet"]
    for section, keys in (("graph", ("file",)), ("codes", ("file",)), ("rescore", ("file", "offsets", "mean_graph"))):
        values = manifest.get(section) or {}
        names += [values[key] for key in keys if values.get(key)]
    names += [stage["file"] for stage in manifest.get("refine") or ()]
    ids = manifest.get("ids")
    names += {"int64": ["ids.npy"], "uint64": ["ids.npy"], "utf8": ["ids.offsets.npy", "ids.utf8"]}.get(ids or "", [])
    return names


def _check_segments(shape: _Shape, manifest: dict[str, Any], listed: set[str]) -> None:
    """Checks the optional ``segments`` list and ``deleted`` section (:mod:`vecx.indexes.segments`):
    prefixes, row counts that add up to ``rows``, every segment's files listed, the tombstone file."""
    from vecx.indexes.segments import TOMBSTONES

    entries = manifest.get("segments")
    if entries is not None:
        if not isinstance(entries, list) or not entries:
            raise shape.fail("segments", "must be a non-empty list")
        seen: set[str] = set()
        for number, entry in enumerate(entries):
            _check_segment(shape, manifest, listed, number, entry, seen)
        if sum(entry["rows"] for entry in entries) != manifest["rows"]:
            raise shape.fail("segments", "rows do not add up to the index's rows")
    deleted = shape.optional_section(manifest, "deleted", "deleted")
    if deleted is not None:
        shape.file(deleted, "file", "deleted.file", listed, ".npy")
        if deleted["file"] != TOMBSTONES:
            raise shape.fail("deleted.file", f"must be {TOMBSTONES}")
        shape.integer(deleted, "rows", "deleted.rows")
        if deleted["rows"] > manifest["rows"]:
            raise shape.fail("deleted.rows", "is more than the index's rows")


def _check_segment(shape: _Shape, manifest: dict[str, Any], listed: set[str], number: int, entry: Any,
                   seen: set[str]) -> None:
    """One entry of the ``segments`` list: a new prefix (none for the first), rows, fingerprints, files."""
    from vecx.indexes.segments import PREFIX

    field = f"segments[{number}]"
    if not isinstance(entry, dict):
        raise shape.fail(field, "must be an object")
    prefix = entry.get("prefix")
    if not isinstance(prefix, str) or not PREFIX.match(prefix) or prefix in seen or (number == 0) != (prefix == ""):
        raise shape.fail(f"{field}.prefix", "must be '' for the first segment, a new 'segN-' for the others")
    seen.add(prefix)
    shape.integer(entry, "rows", f"{field}.rows", low=1)
    fingerprints = entry.get("fingerprints", [])
    if not isinstance(fingerprints, list) or not all(isinstance(f, str) for f in fingerprints):
        raise shape.fail(f"{field}.fingerprints", "must be a list of strings")
    for name in segment_files(manifest):
        if prefix + name not in listed:
            raise shape.fail("files", f"does not list {prefix + name}, a file of segment {number}")
