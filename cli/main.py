"""The ``vecx`` entry point: builds the typer app and funnels every error to one line and an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from vecx import __version__

if TYPE_CHECKING:
    from vecx.errors import VecxError

HELP = """Build and query compressed embedding indexes, one reproducible file-to-file step at a time.

Data goes to stdout (or -o FILE), progress and messages to stderr. Every output is
written atomically and carries its provenance; identical inputs give identical bytes.

\b
Exit codes:
  0    ok
  1    internal error (rerun with --debug and report it)
  2    usage: bad option, spec string or parameter
  3    bad input data: unreadable, corrupt, NaN/Inf, mixed dimensions, duplicate ids
  4    mismatch: fitted state, format version or fingerprint does not match
  5    cannot write: disk full, read-only file system, permission denied
  6    busy: another vecx process is writing the index (index --no-wait)
  130  interrupted (Ctrl-C, SIGTERM)
  141  output pipe closed early
"""

_EPILOG = ("\b\nExamples:\n  vecx import glove.npy -o glove.parquet --ids words.txt\n"
           "  vecx encode glove.parquet -o glove.t32.i8.parquet --spec truncate:32,int8\n"
           "  vecx info glove.t32.i8.parquet\n  vecx truth glove.parquet --queries queries.npy -o gt.parquet -k 100")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vecx {__version__}")
        raise typer.Exit()


def _root(version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                         help="Print the version and exit.")] = None) -> None:
    """Build and query compressed embedding indexes."""


# The command modules in --help order, with the commands each adds ("codecs": one per codec, found by
# listing the registry). Only the module that claims a command line's first word is imported, so
# that a single ``vecx query`` does not pay for turning every other command into a click command.
_MODULES = (("encode", ("import", "encode", "fit")), ("codecs", ()), ("vsa", ("vsa",)), ("align", ("align",)),
            ("index", ("index", "delete", "compact")),
            ("query", ("query",)), ("eval", ("eval",)), ("info", ("info", "verify")), ("truth", ("truth",)),
            ("spec", ("spec",)), ("bench", ("bench",)), ("plan", ("plan",)))
_MODULE_OF = {command: module for module, commands in _MODULES for command in commands}


def _register(app: typer.Typer, module: str) -> None:
    import importlib

    importlib.import_module(f"vecx.cli.{module}").register(app)


def build_app(command: str | None = None) -> typer.Typer:
    """The vecx app: every command, or only ``command`` when one of that name exists.

    Only the module that claims ``command`` is imported; a codec's command is found among all of
    them; a name that is no command (a typo) gets the whole app, so that typer's "no such
    command" message and its suggestions see every command.
    """
    app = typer.Typer(
        name="vecx", help=HELP, no_args_is_help=True, add_completion=True, rich_markup_mode=None,
        pretty_exceptions_enable=False, epilog=_EPILOG,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )
    app.callback()(_root)
    claimed = _MODULE_OF.get(command or "")
    for module in (claimed,) if claimed else [name for name, _ in _MODULES]:
        _register(app, module)
    commands = [c for c in app.registered_commands if c.name == command]
    groups = [g for g in app.registered_groups if g.name == command]
    if commands or groups:  # typer turns every registered command into a click command before running one
        app.registered_commands, app.registered_groups = commands, groups
    return app


def __getattr__(name: str) -> typer.Typer:
    # ``vecx.cli.main.app``: the whole app, for man pages, docs tests and embedding.
    if name == "app":
        return build_app()
    raise AttributeError(name)


def _app_for(args: list[str]) -> typer.Typer:
    """The app for a command line: only the module of the named command when one claims it."""
    return build_app(None if not args or args[0].startswith("-") else args[0])


def _os_error(exc: OSError) -> tuple[str, int]:
    """One line and the exit code for an OS error: an output that cannot be written (5), else
    unreadable input (3)."""
    from vecx.errors import ExitCode
    from vecx.formats.tempfiles import WRITE_ERRNOS

    name = exc.filename if exc.filename is not None else ""
    text = f"{name}: {exc.strerror or exc}" if name else (exc.strerror or str(exc))
    if exc.errno in WRITE_ERRNOS:
        return f"{text} (cannot write; the previous output, if any, is unchanged)", ExitCode.CANNOT_WRITE
    return text, ExitCode.DATA


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a Ctrl-C unwound: a KeyboardInterrupt among its first twenty
    contexts or causes."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 20:
        if isinstance(current, KeyboardInterrupt):
            return True
        current = current.__context__ or current.__cause__
        seen += 1
    return False


#: What the funnel reports for one exception: the lines for stderr and the exit code.
_Failure = tuple[list[str], int]

#: The exit code after the reader of stdout went away: 128 + SIGPIPE, as a shell reports it.
_BROKEN_PIPE = 141


def _click_exception() -> type[Exception]:
    """The base of click's command-line errors: typer >= 0.20 vendors click, so it is found through
    typer's own ``BadParameter`` rather than by importing a private module."""
    return next(c for c in typer.BadParameter.__mro__ if issubclass(c, Exception) and c.__name__ == "ClickException")


def _exited(exc: typer.Exit, debug: bool) -> _Failure:
    """``typer.Exit`` (``--version``, a command that ends early): its own code, nothing printed."""
    return [], exc.exit_code


def _interrupted(exc: BaseException, debug: bool) -> _Failure:
    """Ctrl-C, SIGTERM (raised as Ctrl-C) or click's Abort: one line and exit 130."""
    from vecx.errors import ExitCode

    return ["vecx: interrupted"], ExitCode.INTERRUPTED


def _click_error(exc: Any, debug: bool) -> _Failure:
    """A command line click refused (unknown option, missing argument): click prints it with the usage
    line, in its own words, and gives the exit code."""
    exc.show()
    return [], exc.exit_code


def _user_error(exc: VecxError, debug: bool) -> _Failure:
    """A problem the user can fix: the message, the hint if any, and the error's documented exit code
    (with ``--debug``, the traceback first)."""
    if debug:
        import traceback

        traceback.print_exc()
    return [f"vecx: error: {exc.message}", *([f"vecx: hint: {exc.hint}"] if exc.hint else [])], exc.exit_code


def _broken_pipe(exc: BrokenPipeError, debug: bool) -> _Failure:
    """The reader went away (e.g. ``| head``): stop quietly, with stdout pointed at the null device so
    that flushing it at exit raises no second error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return [], _BROKEN_PIPE


def _out_of_memory(exc: MemoryError, debug: bool) -> _Failure:
    """Memory ran out: one line, exit 1 (no traceback, even with ``--debug``)."""
    from vecx.errors import ExitCode

    return ["vecx: error: out of memory"], ExitCode.ERROR


def _os_failure(exc: OSError, debug: bool) -> _Failure:
    """The disk or the file system said no where no command caught it first: one line, exit 5 for an
    output that cannot be written, else 3 (with ``--debug``, the traceback first)."""
    if debug:
        import traceback

        traceback.print_exc()
    line, code = _os_error(exc)
    return [f"vecx: error: {line}"], code


def _internal_error(exc: Exception) -> _Failure:
    """Anything unexpected: an internal error, reported with a hint to rerun with ``--debug``, exit 1."""
    from vecx.errors import ExitCode

    return [f"vecx: internal error: {type(exc).__name__}: {exc}",
            "vecx: hint: rerun with --debug for a traceback, and report it"], ExitCode.ERROR


def _handlers() -> tuple[tuple[type[BaseException], Callable[[Any, bool], _Failure]], ...]:
    """The exceptions the funnel reports, each with its handler, in the order they are tried: the first
    that matches handles it, so a subclass comes before its base (BrokenPipeError before OSError)."""
    from vecx.errors import VecxError

    return ((typer.Exit, _exited), (typer.Abort, _interrupted), (_click_exception(), _click_error),
            (VecxError, _user_error), (KeyboardInterrupt, _interrupted), (BrokenPipeError, _broken_pipe),
            (MemoryError, _out_of_memory), (OSError, _os_failure))


def _resume_collector(args: list[str]) -> None:
    """Resume the garbage collector that :func:`vecx.cli.run` paused, once the command's libraries
    (its module's ``LIBRARIES``) are loaded, and freeze what they made, which is never garbage."""
    import gc

    if gc.isenabled():  # main() called in-process (a test, an embedding): the caller's collector
        return
    import importlib

    module = _MODULE_OF.get(args[0] if args else "")
    for name in getattr(importlib.import_module(f"vecx.cli.{module}"), "LIBRARIES", ()) if module else ():
        importlib.import_module(name)
    gc.freeze()
    gc.enable()


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so that partial outputs are removed; the target stays as it was."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; translate errors into one stderr line and a documented exit code."""
    import signal

    from vecx.errors import ExitCode

    handlers = _handlers()
    signal.signal(signal.SIGTERM, _terminate)
    args = list(sys.argv[1:] if argv is None else argv)
    if "--json" in args or any(a.startswith("--json=") for a in args):
        from vecx.cli.common import old_record_spelling

        args = old_record_spelling(args)
    debug = "--debug" in args or bool(os.environ.get("VECX_DEBUG"))
    lines: list[str] = []
    code: int = ExitCode.OK
    if "_VECX_COMPLETE" in os.environ:  # shell completion is handled inside click's main()
        typer.main.get_command(build_app()).main(args=args, prog_name="vecx")
    command = typer.main.get_command(_app_for(args))
    try:
        # Invoked directly rather than through main(), which would turn Ctrl-C and a closed pipe
        # into exit codes of its own before this funnel could report them.
        with command.make_context("vecx", args, obj={"argv": args}) as ctx:
            _resume_collector(args)
            command.invoke(ctx)
    except tuple(kind for kind, _ in handlers) as exc:
        handle = next(handle for kind, handle in handlers if isinstance(exc, kind))
        lines, code = handle(exc, debug)
    except Exception as exc:  # noqa: BLE001 - the funnel: anything unexpected is an internal error
        if _caused_by_interrupt(exc):  # e.g. a C extension turning the interrupt into its own error
            sys.stderr.write("vecx: interrupted\n")
            sys.exit(int(ExitCode.INTERRUPTED))
        if debug:
            raise
        lines, code = _internal_error(exc)
    for line in lines:
        sys.stderr.write(f"{line}\n")
    if argv is None:  # the process's own command line (not a caller's, e.g. a test's, in-process)
        _exit_without_teardown(int(code))
    sys.exit(int(code))


def _exit_without_teardown(code: int) -> None:
    """End the process now, skipping the interpreter's teardown, else like ``sys.exit``.

    Once pyarrow, numpy and usearch are loaded, freeing every module and object at exit takes a
    noticeable part of a short command (a single query, a small build). Nothing is lost by
    skipping it: every command has closed (and committed) its outputs when it returns; stdout
    and stderr are flushed and the atexit handlers run here, as at a normal exit. Where the
    interpreter still has work to do (a non-daemon thread, a stream that cannot be flushed)
    it exits the normal way.
    """
    import atexit
    import threading

    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    try:
        atexit._run_exitfuncs()  # first, as at a normal exit: a handler may still write
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)
