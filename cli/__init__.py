"""The ``vecx`` command line: thin typer commands over :mod:`vecx.api`."""


def run() -> None:
    """The console script: :func:`vecx.cli.main.main` with the cyclic garbage collector paused while
    modules load.

    Loading typer, numpy, usearch and vecx makes a few hundred thousand objects and no garbage, and
    the collector would walk them over and over: a few percent of a single ``vecx query``'s
    process. ``main`` loads the named command's libraries, freezes what is loaded (``gc.freeze``:
    never walked again) and resumes the collector before the command runs.
    """
    import gc

    gc.disable()
    from vecx.cli.main import main

    main()
