"""Errors a user can cause, each carrying the documented exit code of the CLI.

The library raises these; the CLI prints ``vecx: error: <message>`` (and the hint,
if any) on one line each and exits with ``exit_code``. Anything else that escapes
is an internal error (exit 1).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``vecx`` command (documented in the README and man pages)."""

    OK = 0
    ERROR = 1  # unexpected / internal error
    USAGE = 2  # bad option, bad spec string, impossible parameters
    DATA = 3  # unreadable, corrupt or invalid input data
    MISMATCH = 4  # codec state / format version / fingerprint does not match
    CANNOT_WRITE = 5  # the output cannot be written: disk full, read-only, permission denied
    BUSY = 6  # another vecx process holds the index's writer lock (only with --no-wait)
    INTERRUPTED = 130  # Ctrl-C


class VecxError(Exception):
    """Base class: a problem the user can fix. ``hint`` says how."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(VecxError):
    """Bad options, spec strings or parameters (exit 2)."""

    exit_code = ExitCode.USAGE


class SpecError(UsageError):
    """A spec string that does not parse or cannot run on the given input (exit 2)."""


class DataError(VecxError):
    """Input data that is missing, corrupt or invalid (exit 3)."""

    exit_code = ExitCode.DATA


class MismatchError(VecxError):
    """Codec state, format version or fingerprint that does not match (exit 4)."""

    exit_code = ExitCode.MISMATCH


class WriteError(VecxError):
    """An output that cannot be written: disk full, read-only file system, no permission (exit 5).

    Nothing is left behind: the partial output is removed and the old target is untouched.
    """

    exit_code = ExitCode.CANNOT_WRITE


class BusyError(VecxError):
    """Another vecx process is writing the same index and the caller chose not to wait (exit 6)."""

    exit_code = ExitCode.BUSY


class RowError(DataError):
    """Bad data in one row of a batch, raised by a codec; the pipeline adds file and absolute row."""

    def __init__(self, row: int, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"row {row}: {message}", hint=hint)
        self.row = row
        self.detail = message


def where(path: str | None, row: int | None = None, field: str | None = None) -> str:
    """Format a location prefix such as ``docs.parquet: row 17: field 'vector'``."""
    parts = [str(path) if path not in (None, "-") else "<stdin>"]
    if row is not None:
        parts.append(f"row {row}")
    if field is not None:
        parts.append(f"field {field!r}")
    return ": ".join(parts)
