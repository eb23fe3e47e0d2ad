"""Engines run a :class:`~ddbmigrate.engine.job.Job`: threads, processes or Spark.

They differ only in how they schedule units; one driver (engine/run.py) owns the checkpoint,
dead letters, counters, progress, report and errors for all of them.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

ENGINES: Tuple[str, ...] = ("threads", "processes", "spark")


def engine_for(name: str, *, processes: int = 2, spark_master: Optional[str] = None,
               spark_tasks: Optional[int] = None) -> Any:
    """The engine called ``name`` ("local" is "threads", as the CLI's ``--engine local``)."""
    from ..errors import UsageError

    if name in ("threads", "local"):
        if processes > 1 and name == "local":
            from .processes import ProcessesEngine

            return ProcessesEngine(processes)
        from .threads import ThreadsEngine

        return ThreadsEngine()
    if name == "processes":
        from .processes import ProcessesEngine

        return ProcessesEngine(processes)
    if name == "spark":
        from .spark import SparkEngine, SparkSettings

        return SparkEngine(SparkSettings(master=spark_master, max_tasks=spark_tasks))
    raise UsageError(f"engine must be one of {', '.join(ENGINES)}, not {name!r}")


def default_engine(options: Any) -> Any:
    """The engine a job function uses when none is given: ``options.processes`` decides."""
    return engine_for("local", processes=options.processes)


__all__ = ["ENGINES", "default_engine", "engine_for"]
