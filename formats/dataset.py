"""Datasets: Parquet part files read as one table, from a folder, a glob or an object store.

What users hold is rarely one file: Spark, Dask, Ray and Hugging Face write a folder of part
files (``part-00000-….parquet``), often hive-partitioned (``lang=en/part-0.parquet``), often on
S3. An input is a dataset when it is

- a directory (every Parquet file below it, hidden and ``_``-prefixed names skipped, as
  ``pyarrow.dataset`` does: ``_SUCCESS``, ``_common_metadata``, ``.crc`` files);
- a glob (``parts/*.parquet``, ``data/**/*.parquet``);
- a URI (``s3://bucket/prefix/``, ``gs://…``, ``file:///…``; a single object too), opened with
  ``pyarrow.fs`` (S3 credentials and endpoint from the usual ``AWS_*`` variables, e.g.
  ``AWS_ENDPOINT_URL`` for an S3-compatible server), or through fsspec for schemes pyarrow does
  not know (``hf://`` with ``huggingface_hub`` installed).

Parts are read in path order (sorted), streamed batch by batch, so a dataset is the
concatenation of its parts in that order, whatever wrote them: importing a folder gives the
fingerprint importing the concatenated file gives. Hive keys (``key=value`` directories) become
string payload columns. Every part must have the same columns; a part that differs is named.

Parts written by vecx (each with its ``vecx`` metadata) must agree on the chain, its fitted
state, the vector space and the ids; the dataset's provenance is then defined over its parts in
order: rows add up, and its fingerprints hash the parts' fingerprints in order, so that a
reordered, added or dropped part gives another fingerprint.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy
from vecx.errors import DataError, UsageError
from vecx.formats import metadata
from vecx.formats.source import Batch, ReadOptions
from vecx.formats.tables import TableSource

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
else:
    pa = lazy("pyarrow")
    pafs = lazy("pyarrow.fs")
    pq = lazy("pyarrow.parquet")

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB = re.compile(r"[*?\[]")
PART_SUFFIXES = (".parquet", ".pq")
#: The dataset-level description ``-o DIR/`` writes beside its parts (skipped as a part: ``_`` prefix).
DATASET_FILE = "_vecx.json"
_HIVE = re.compile(r"^([^=/]+)=([^/]*)$")


def is_dataset(path: str) -> bool:
    """Whether an input path names a dataset (a directory, a glob, or a URI) rather than one local file."""
    if path == "-":
        return False
    if URI.match(path):
        return True
    if os.path.isdir(path):
        return True
    return bool(_GLOB.search(path)) and not os.path.exists(path)


def filesystem(path: str) -> tuple[Any, str]:
    """The file system of a path or URI, and the path inside it."""
    if not URI.match(path):
        return pafs.LocalFileSystem(), os.path.abspath(path)
    scheme = path.split("://", 1)[0].lower()
    try:
        return pafs.FileSystem.from_uri(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        if "Unrecognized filesystem type" not in str(exc) and scheme != "hf":
            raise UsageError(f"{path}: {exc}") from None
    try:  # schemes pyarrow does not know (hf://): fsspec, if installed with the scheme's package
        import fsspec  # type: ignore[import-not-found, import-untyped, unused-ignore]

        fs, inner = fsspec.core.url_to_fs(path)
    except ImportError:
        raise UsageError(f"{path}: reading {scheme}:// needs fsspec (and its {scheme} package)",
                         hint="pip install fsspec huggingface_hub  (for hf://)") from None
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), inner


def _is_part(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith((".", "_")) and base.lower().endswith(PART_SUFFIXES)


def find_parts(path: str) -> tuple[Any, str, list[str]]:
    """The file system, the dataset's root (for hive keys) and its part files in path order."""
    fs, inner = filesystem(path)
    if _GLOB.search(inner):
        root = _GLOB.split(inner, 1)[0].rsplit("/", 1)[0]
        if isinstance(fs, pafs.LocalFileSystem):
            found = [os.path.abspath(p) for p in glob.glob(inner, recursive=True) if os.path.isfile(p)]
        else:
            listing = _list(fs, root, path)
            found = [p for p in listing if fnmatch.fnmatchcase(p, inner)]
        parts = sorted(p for p in found if _is_part(p))
    else:
        try:
            info = fs.get_file_info(inner)
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc})", hint="check the path and the credentials") from None
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"{path}: no such file or directory", hint="check the path")
        if info.type == pafs.FileType.File:
            return fs, inner.rsplit("/", 1)[0], [inner]
        root = inner.rstrip("/")
        parts = sorted(p for p in _list(fs, root, path) if _is_part(p[len(root):]))
    if not parts:
        raise DataError(f"{path}: no Parquet part files found (*.parquet, *.pq; hidden and _-prefixed names "
                        "are skipped)", hint="give a folder or a glob of Parquet files")
    return fs, root, parts


def find_many(paths: list[str]) -> tuple[Any, str, list[str]]:
    """The parts of several inputs (files, folders, globs or URIs on one file system), in the order
    given (each input's parts in path order), and their common root."""
    found = [find_parts(path) for path in paths]
    kinds = {type(fs).__name__ for fs, _, _ in found}
    if len(kinds) > 1:
        raise UsageError(f"{' '.join(paths)}: several inputs must be on one file system, "
                         f"not {', '.join(sorted(kinds))}")
    parts = [part for _, _, group in found for part in group]
    if len(set(parts)) != len(parts):
        raise UsageError(f"{' '.join(paths)}: a part is named twice among the inputs")
    roots = [root.split("/") for _, root, _ in found]
    common = []
    for level in zip(*roots, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return found[0][0], "/".join(common), parts


def _list(fs: Any, root: str, path: str) -> list[str]:
    try:
        return [i.path for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
                if i.type == pafs.FileType.File]
    except OSError as exc:
        raise DataError(f"{path}: cannot be listed ({exc})", hint="check the path and the credentials") from None


def hive_keys(root: str, part: str) -> list[tuple[str, str]]:
    """The ``key=value`` directories between the dataset's root and a part file."""
    relative = part[len(root):].strip("/").split("/")[:-1]
    return [(m.group(1), m.group(2)) for m in (_HIVE.match(d) for d in relative) if m]


def combined_fingerprint(kind: str, values: list[str | None]) -> str | None:
    """A fingerprint over parts' fingerprints in order (``None`` if any part has none)."""
    if any(v is None for v in values):
        return None
    h = hashlib.sha256(f"vecx-parts-v1\n{kind}\n{len(values)}\n".encode())
    for value in values:
        h.update(f"{value}\n".encode())
    return h.hexdigest()


class DatasetSource(TableSource):
    """Parquet parts read as one table, in path order (see the module's description)."""

    kind = "dataset"

    def __init__(self, path: str, options: ReadOptions, found: tuple[Any, str, list[str]] | None = None) -> None:
        super().__init__(path, options)
        self.fs, self.root, self.parts = found or find_parts(path)
        footers = [self._footer(part) for part in self.parts]
        raw = [(footer.metadata or {}).get(metadata.KEY) for footer in footers]
        if None in raw and any(r is not None for r in raw):
            first = raw.index(None)
            raise self.fail(f"part {self._name(self.parts[first])} was not written by vecx, other parts were",
                            hint="a dataset holds raw parts or vecx parts, not both")
        schema = footers[0].schema.to_arrow_schema().remove_metadata()
        self.keys = [name for name, _ in hive_keys(self.root, self.parts[0])]
        for part, footer in zip(self.parts, footers, strict=True):
            other = footer.schema.to_arrow_schema().remove_metadata()
            if not other.equals(schema):
                raise self.fail(f"part {self._name(part)} has columns {other.names} ({_types(other)}), "
                                f"part {self._name(self.parts[0])} {schema.names} ({_types(schema)})",
                                hint="every part of a dataset must have the same columns and types")
            if [k for k, _ in hive_keys(self.root, part)] != self.keys:
                raise self.fail(f"part {self._name(part)} sits under other partition keys than "
                                f"{self._name(self.parts[0])} ({', '.join(self.keys) or 'none'})")
        clash = [k for k in self.keys if k in schema.names]
        if clash:
            raise self.fail(f"partition key {clash[0]!r} is also a column of the parts")
        for key in self.keys:
            schema = schema.append(pa.field(key, pa.string()))
        self.part_rows = [footer.num_rows for footer in footers]
        if raw[0] is None:
            self._setup(schema, None, None)
        else:
            self._setup_vecx(schema, footers, raw)
        self.rows = sum(self.part_rows)

    def part(self, number: int) -> DatasetSource:
        """One part of this dataset, read as a dataset of its own (for per-part outputs)."""
        part = self.parts[number]
        return DatasetSource(f"{self.path}: part {self._name(part)}", self.options, (self.fs, self.root, [part]))

    def _name(self, part: str) -> str:
        return part[len(self.root):].lstrip("/") or part

    def _footer(self, part: str) -> Any:
        try:
            with self.fs.open_input_file(part) as handle:
                return pq.read_metadata(handle)
        except (pa.ArrowInvalid, OSError) as exc:
            raise self.fail(f"part {self._name(part)} is not a readable Parquet file ({exc})",
                            hint="the file may be truncated or corrupt; re-create it") from None

    def _setup_vecx(self, schema: Any, footers: list[Any], raw: list[Any]) -> None:
        """Parts written by vecx: one chain, state, space and id type; provenance combined over the parts."""
        metas = [metadata.loads(r, f"{self.path}: part {self._name(p)}") for r, p in zip(raw, self.parts, strict=True)]
        first = metas[0]
        for part, meta, rows in zip(self.parts, metas, self.part_rows, strict=True):
            if meta.get("rows") is not None and meta["rows"] != rows:
                raise self.fail(f"part {self._name(part)} holds {rows:,} rows, its vecx metadata says {meta['rows']:,}",
                                hint="re-create it with vecx")
            if _chain_keys(meta) != _chain_keys(first):
                raise self.fail(f"part {self._name(part)} was encoded as {meta.get('spec') or '(imported)'!r} with "
                                f"other state or space than part {self._name(self.parts[0])} "
                                f"({first.get('spec') or '(imported)'!r})",
                                hint="encode every part with one fitted state (vecx fit, then --state)")
        state_raw = (footers[0].metadata or {}).get(metadata.STATE_KEY)
        self._setup(schema.remove_metadata(), raw[0], state_raw)
        if len(metas) == 1:  # one part is that part, provenance and all
            self.meta = first
            return
        combined = dict(first)
        combined["rows"] = sum(self.part_rows)
        combined["vector"] = {**first["vector"], "normalized": all(bool(m["vector"].get("normalized")) for m in metas)}
        if "tokens" in first["vector"]:  # the vectors a set stage kept, over every part (unknown if one lacks it)
            counts = [m["vector"].get("tokens") for m in metas]
            if all(isinstance(c, int) for c in counts):
                combined["vector"]["tokens"] = sum(counts)
            else:
                del combined["vector"]["tokens"]
        combined["fingerprint"] = combined_fingerprint("table", [m.get("fingerprint") for m in metas])
        sources = [m.get("source") or {} for m in metas]
        if first.get("source"):
            block = dict(first["source"])
            block["rows"] = sum(int(s.get("rows") or 0) for s in sources)
            block["normalized"] = all(bool(s.get("normalized")) for s in sources)
            block["fingerprint"] = combined_fingerprint("source", [s.get("fingerprint") for s in sources])
            for key in ("ids_sha256", "vectors_sha256"):
                block[key] = combined_fingerprint(key, [s.get(key) for s in sources])
            if "tokens" in block:
                block["tokens"] = sum(int(s.get("tokens") or 0) for s in sources)
            combined["source"] = block
        combined["parts"] = len(self.parts)
        self.meta = combined

    def _raw_batches(self, batch_rows: int) -> Iterator[Batch]:
        batches = self._convert_all(self._record_batches(batch_rows), batch_rows)
        if self.meta is None or len(self.parts) == 1:
            yield from batches  # raw rows are validated (ids included) by Source; one vecx part was when written
            return
        from vecx.formats.source import check_unique

        ids = []  # vecx parts were each checked alone, perhaps by different runs: check their ids together
        for batch in batches:
            ids.append(batch.ids)
            yield batch
        check_unique(self, ids)

    def batches_from(self, row: int) -> Iterator[Batch]:
        """The rows of a vecx dataset from the part holding ``row`` on (earlier parts are not read)."""
        assert self.meta is not None, "row ranges are read from vecx tables only"
        start = 0
        for first, rows in enumerate(self.part_rows):
            if start + rows > row:
                yield from self._convert_all(self._record_batches(self.batch_rows(), first), self.batch_rows(), start)
                return
            start += rows

    def _record_batches(self, batch_rows: int, first: int = 0) -> Iterator[Any]:
        for part, rows in list(zip(self.parts, self.part_rows, strict=True))[first:]:
            keys = hive_keys(self.root, part)
            try:
                with self.fs.open_input_file(part) as handle:
                    reader = pq.ParquetFile(handle, pre_buffer=False, buffer_size=1 << 20,
                                            page_checksum_verification=True)
                    seen = 0
                    for rb in reader.iter_batches(batch_size=batch_rows):
                        seen += rb.num_rows
                        for key, value in keys:
                            rb = rb.append_column(key, pa.array([value] * rb.num_rows, pa.string()))
                        yield rb
            except (pa.ArrowInvalid, OSError) as exc:
                raise self.fail(f"part {self._name(part)} cannot be read ({exc})",
                                hint="the file may be truncated or corrupt; re-create it") from None
            if seen != rows:
                raise self.fail(f"part {self._name(part)} held {seen:,} rows, its footer says {rows:,} "
                                "(changed while it was read?)")


def _types(schema: Any) -> str:
    return ", ".join(str(f.type) for f in schema)


def _chain_keys(meta: dict[str, Any]) -> tuple[Any, ...]:
    """What parts of one dataset must share: the chain (codec, version, spec, state hash per stage),
    the stored vectors' space and the ids' column and type."""
    stages = tuple((s.get("codec"), s.get("version", 1), s.get("spec"), s.get("state_sha256"))
                   for s in meta.get("stages", []))
    vector = {k: v for k, v in meta["vector"].items() if k not in ("normalized", "tokens")}  # per-part counts
    return stages, tuple(sorted(vector.items())), tuple(sorted(meta["id"].items()))


def open_dataset(path: str | list[str], options: ReadOptions) -> DatasetSource:
    """Open a dataset input (see :func:`is_dataset`), or several inputs read as one dataset in the
    order given (each a Parquet file, folder, glob or URI)."""
    name = path if isinstance(path, str) else " ".join(path)
    if options.ids_file:
        raise UsageError(f"{name}: --ids applies to one file; a dataset's ids come from its parts' id column")
    if isinstance(path, str):
        return DatasetSource(path, options)
    if "-" in path:
        raise UsageError("- (standard input) cannot be one of several inputs")
    return DatasetSource(name, options, find_many(path))

