"""Arrays in memory where the library takes files: NumPy arrays and Arrow tables handed to the
functions of :mod:`vecx.api` from a notebook or a script.

Every such function reads its inputs as files, with the checks and provenance the command line
has. An array passed in their place is written to a private temporary file first (``.npy`` for
an ndarray, Parquet for an Arrow table), read from there exactly as the command line would
read it, and removed when the call returns: the results are those of the same data saved and
given as a path.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from vecx._lazy import lazy
from vecx.errors import UsageError

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
    import pyarrow as pa
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")

F = TypeVar("F", bound=Callable[..., Any])


def is_in_memory(value: Any) -> bool:
    """Whether ``value`` is data in memory (an ndarray, an Arrow table or record batch), not a path."""
    if value is None or isinstance(value, (str, bytes, os.PathLike, list, tuple)):
        return False
    module = type(value).__module__
    if module.startswith("numpy"):
        return isinstance(value, np.ndarray)
    return module.startswith("pyarrow") and isinstance(value, (pa.Table, pa.RecordBatch))


def save(value: Any, directory: str, name: str) -> str:
    """Write an ndarray (as ``.npy``) or an Arrow table (as Parquet) into ``directory``; its path."""
    if isinstance(value, np.ndarray):
        if value.dtype == np.float64:  # what numpy makes by default; vecx stores float32
            value = value.astype(np.float32)
        if value.dtype.kind not in "fiub" or value.ndim not in (1, 2):
            raise UsageError(f"{name}: an array of {value.ndim} dimensions and dtype {value.dtype}; give a "
                             "2-D array of vectors (float32, float16, int8 or packed uint8 bits), or a 1-D "
                             "array of ids")
        path = os.path.join(directory, f"{name}.npy")
        np.save(path, np.ascontiguousarray(value))
        return path
    import pyarrow.parquet as pq

    table = pa.Table.from_batches([value]) if isinstance(value, pa.RecordBatch) else value
    path = os.path.join(directory, f"{name}.parquet")
    pq.write_table(table, path)
    return path


@contextlib.contextmanager
def spooled(values: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``values`` with every in-memory one replaced by the path of a temporary file holding it
    (the files are removed on leaving the block)."""
    def held(value: Any) -> bool:
        return is_in_memory(value) or (isinstance(value, (list, tuple)) and any(map(is_in_memory, value)))

    if not any(held(v) for v in values.values()):
        yield values
        return
    with tempfile.TemporaryDirectory(prefix="vecx-arrays-") as directory:
        def spool(name: str, value: Any) -> Any:
            if isinstance(value, (list, tuple)):  # one file per array of a list (rescoring stages)
                return [spool(f"{name}{number}", item) for number, item in enumerate(value, start=1)]
            return save(value, directory, name) if is_in_memory(value) else value

        yield {name: spool(name, v) for name, v in values.items()}


def accepts_arrays(*names: str) -> Callable[[F], F]:
    """Let the parameters ``names`` of a file-reading function take arrays too (see the module)."""

    def decorate(function: F) -> F:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            given = {name: bound.arguments[name] for name in names if name in bound.arguments}
            with spooled(given) as paths:
                bound.arguments.update(paths)
                return function(*bound.args, **bound.kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
