"""Write ``.npy`` files row block by row block with ordinary writes, never through a memory map.

A full disk under a writable memory map is not an error the writer sees: the kernel kills
the process with SIGBUS when it touches a page it cannot back, leaving whatever was half
written. Plain ``write`` calls return ENOSPC instead, which the caller turns into a clean
error and a removed temporary directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vecx._lazy import lazy

if TYPE_CHECKING:  # the real modules for the type checker; imported on first use at run time
    import numpy as np
else:
    np = lazy("numpy")


class NpyWriter:
    """An ``.npy`` file of known shape ``(rows, *row_shape)``, filled in row order by :meth:`write`."""

    def __init__(self, path: str, dtype: Any, shape: tuple[int, ...]) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(n) for n in shape)
        self.written = 0
        self.handle = open(path, "wb")
        try:
            header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                      "shape": self.shape}
            np.lib.format.write_array_header_2_0(self.handle, header) if _needs_v2(header) else \
                np.lib.format.write_array_header_1_0(self.handle, header)
        except BaseException:
            self.handle.close()
            raise

    def write(self, rows: Any) -> None:
        """Append rows (converted to the file's dtype); more rows than the shape is an error."""
        block = np.ascontiguousarray(rows, dtype=self.dtype)
        if self.written + len(block) > self.shape[0]:
            raise ValueError(f"{self.path}: more than {self.shape[0]} rows written")
        self.handle.write(block.data.cast("B"))
        self.written += len(block)

    def close(self) -> int:
        """Close the file; returns the rows written (the caller checks it against the shape)."""
        if not self.handle.closed:
            self.handle.close()
        return self.written


def _needs_v2(header: dict[str, Any]) -> bool:
    """Whether the header exceeds version 1.0's 64 KiB limit (only for absurd shapes or dtypes)."""
    return len(repr(header)) > 60_000
