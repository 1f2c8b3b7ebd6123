"""The ``vecx`` command line: thin typer commands over :mod:`vecx.api`."""
