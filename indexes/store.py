"""The index directory: versioned contents behind a symlink that is swapped atomically.

``docs.vecx`` is a symbolic link to ``.docs.vecx.d/<version>/``, a directory holding::

    manifest.json    format version, build parameters, counts, and size + sha256 of every file
    graph.usearch    the usearch HNSW graph over the encoded vectors (opened as a memory-mapped view)
    rows.parquet     id and payload of every row, row i = graph key i
    table.json       the encoded table's vecx metadata (the chain that encodes queries)
    state.npz        the chain's fitted state, if any: an uncompressed zip of <stage>/<name>.npy (numpy alone reads it)
    ids.npy          integer ids by row (or ids.offsets.npy + ids.utf8 for string ids), memory-mapped by queries
    rescore.npy      optional higher-precision vectors for rescoring (memory-mapped), + rescore.json

A build writes a new version directory, then replaces the link with ``os.replace`` (atomic):
a reader resolves the link once and reads one version, old or new, never a mix. The
previous version is kept so that readers that resolved the link just before the swap can
finish; older ones are removed by the next build. A killed build leaves the link untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from typing import Any

from vecx import __version__
from vecx.errors import DataError, MismatchError, UsageError

INDEX_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Files up to this size are checksummed on every open; larger ones by size (``verify=True``: all).
#: Small, so that a query pays for hashing metadata and state only, not ids or rows.
QUICK_VERIFY_BYTES = 1 << 20


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


def new_version(target: str) -> str:
    """Create an empty directory for the next version of ``target`` and return its path."""
    if os.path.exists(target) and not os.path.islink(target):
        raise UsageError(f"{target}: exists and is not a vecx index (a plain file or directory)",
                         hint="choose another name, or remove it")
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise UsageError(f"{target}: directory {parent} does not exist")
    root = versions_dir(target)
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    return path


def commit(target: str, version_path: str, manifest: dict[str, Any],
           known: dict[str, dict[str, Any]] | None = None) -> None:
    """Checksum the files, write the manifest, and atomically point ``target`` at this version.

    ``known``: checksums of files hard-linked from a verified version (not hashed again).
    """
    files = {}
    for name in sorted(os.listdir(version_path)):
        full = os.path.join(version_path, name)
        if known and name in known and known[name]["bytes"] == os.path.getsize(full):
            files[name] = known[name]
        else:
            files[name] = {"bytes": os.path.getsize(full), "sha256": sha256_file(full)}
    manifest = {"format_version": INDEX_FORMAT_VERSION, "kind": "index",
                "writer": {"library": "vecx", "version": __version__}, **manifest, "files": files}
    with open(os.path.join(version_path, MANIFEST), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.write("\n")
    root = versions_dir(target)
    final = os.path.join(root, "v-" + uuid.uuid4().hex[:12])
    os.rename(version_path, final)
    link_tmp = os.path.join(os.path.dirname(os.path.abspath(target)), f".{os.path.basename(target)}.link-{os.getpid()}")
    os.symlink(os.path.relpath(final, os.path.dirname(os.path.abspath(target))), link_tmp)
    previous = os.path.realpath(target) if os.path.islink(target) else None
    os.replace(link_tmp, target)
    _prune(root, keep={final, previous})


def _prune(root: str, keep: set[str | None]) -> None:
    """Remove versions other than the current and the previous one (and stale temporary builds)."""
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if path in keep:
            continue
        if name.startswith("tmp-"):
            pid = name.split("-")[1]
            if pid.isdigit() and _alive(int(pid)):
                continue  # another build is running
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def update_manifest(target: str, changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Publish a new version whose manifest has ``changes`` merged in (files are hard-linked, not copied)."""
    directory, manifest = open_version(target)
    version = new_version(target)
    try:
        for name in manifest["files"]:
            os.link(os.path.join(directory, name), os.path.join(version, name))
        body = {k: v for k, v in manifest.items() if k not in ("format_version", "kind", "writer", "files")}
        for section, values in changes.items():
            body[section] = {**body.get(section, {}), **values}
        commit(target, version, body, known=manifest["files"])
    except BaseException:
        abort(version)
        raise
    return open_version(target)[1]


def abort(version_path: str) -> None:
    """Drop an unfinished version."""
    shutil.rmtree(version_path, ignore_errors=True)


def open_version(path: str, verify: bool = False) -> tuple[str, dict[str, Any]]:
    """Resolve an index path to one version directory and its checked manifest."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such index", hint="build one with 'vecx index TABLE -o PATH'")
    directory = os.path.realpath(path)
    manifest_path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory) or not os.path.exists(manifest_path):
        raise DataError(f"{path}: not a vecx index (no {MANIFEST})")
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: {MANIFEST} is unreadable ({exc})") from None
    version = manifest.get("format_version")
    if not isinstance(version, int) or manifest.get("kind") != "index":
        raise DataError(f"{path}: {MANIFEST} is not a vecx index manifest")
    if version > INDEX_FORMAT_VERSION:
        raise MismatchError(
            f"{path}: index format version {version} was written by vecx "
            f"{manifest.get('writer', {}).get('version', '?')}; this is vecx {__version__}, which reads "
            f"up to version {INDEX_FORMAT_VERSION}", hint="upgrade vecx (pip install -U vecx)")
    for name, info in manifest.get("files", {}).items():
        full = os.path.join(directory, name)
        if not os.path.exists(full):
            raise DataError(f"{path}: file {name} is missing", hint="rebuild the index")
        if os.path.getsize(full) != info["bytes"]:
            raise MismatchError(f"{path}: {name} has {os.path.getsize(full)} bytes, the manifest says "
                                f"{info['bytes']} (damaged or replaced)", hint="rebuild the index")
        if (verify or info["bytes"] <= QUICK_VERIFY_BYTES) and sha256_file(full) != info["sha256"]:
            raise MismatchError(f"{path}: checksum of {name} does not match the manifest (damaged)",
                                hint="rebuild the index")
    return directory, manifest
