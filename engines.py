"""Where independent tasks run: here, one after another, or as tasks on a Dask cluster.

vecx's parallel steps — encoding a dataset part by part (``vecx encode DATASET -o DIR/``), building
an index's shards (``vecx index --shards N``) — are lists of independent tasks whose results are
the same wherever they run. ``local`` runs them in this process in order (each already uses every
core); ``dask`` hands them to an existing distributed engine rather than a home-made one: the
scheduler at ``--scheduler`` / ``DASK_SCHEDULER_ADDRESS``, or, without either, a ``LocalCluster``
of this machine. Tasks read their inputs and write their outputs themselves, so both must be on
storage every worker reaches. Dask is an optional extra: ``pip install 'dask[distributed]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from vecx.errors import UsageError

ENGINES = ("local", "dask")


def check_engine(engine: str) -> None:
    """A known engine, whose packages are installed (a :class:`UsageError` saying how to install them)."""
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError("--engine dask needs Dask's distributed scheduler, which is not installed",
                             hint="pip install 'dask[distributed]' (the 'dask' extra of vecx)") from None


def run(fn: Callable[[Any], Any], tasks: list[Any], engine: str = "local", scheduler: str | None = None) -> list[Any]:
    """``fn`` over ``tasks``; the results in the tasks' order. An error in any task is raised here."""
    check_engine(engine)
    if engine == "local":
        return [fn(task) for task in tasks]
    from distributed import Client, LocalCluster

    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    cluster = None if address else LocalCluster(processes=True, threads_per_worker=1, dashboard_address=":0")
    try:
        with Client(address or cluster) as client:
            return list(client.gather(client.map(fn, tasks, pure=False)))
    finally:
        if cluster is not None:
            cluster.close()
