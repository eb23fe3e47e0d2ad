"""``--engine local|spark`` and ``--spark-master``: shared by copy, clean, export, import and verify.

Parsing only: the Spark engine itself lives in ``ddbmigrate.engine.spark`` (which imports pyspark
lazily), so the CLI starts as fast with these options as without them.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional

import click

F = Callable[..., Any]


class Processes(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """``--processes N`` or ``auto`` (every core of this machine)."""

    name = "N|auto"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> int:
        if isinstance(value, int):
            n = value
        elif str(value).strip().lower() == "auto":
            n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        else:
            try:
                n = int(value)
            except ValueError:
                self.fail(f"{value!r} is neither a number of processes nor 'auto'", param, ctx)
        if not 1 <= n <= 256:
            self.fail(f"{n} is not between 1 and 256", param, ctx)
        return n


def engine_options(f: F) -> F:
    opts = [
        click.option("--processes", type=Processes(), default="1", show_default=True,
                     help="Local engine: worker processes, units (segments, files) spread over them; 'auto': "
                          "one per core (past ~30k items/s one process is CPU-bound)."),
        click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
                     help="local: threads in this process; spark: one scan segment (or file) per Spark task "
                          "(needs pyspark: pip install 'ddbmigrate[spark]')."),
        click.option("--spark-master", "spark_master", metavar="URL",
                     help="Spark master when no Spark context is running yet (default local[*]; "
                          "spark-submit and Glue set their own)."),
        click.option("--spark-tasks", "spark_tasks", type=click.IntRange(1, 100_000),
                     help="Segments running at once on Spark (default: the cluster's default parallelism); "
                          "rate limits are divided among them."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def uses_spark(kw: Dict[str, Any]) -> bool:
    if kw.get("engine") != "spark" and (kw.get("spark_master") or kw.get("spark_tasks")):
        raise click.UsageError("--spark-master/--spark-tasks need --engine spark")
    if kw.get("engine") == "spark" and (kw.get("processes") or 1) > 1:
        raise click.UsageError("--processes is for the local engine; with --engine spark use --spark-tasks")
    return kw.get("engine") == "spark"


def spark_settings(kw: Dict[str, Any]) -> Any:
    from ..engine.spark import SparkSettings

    return SparkSettings(master=kw.get("spark_master"), max_tasks=kw.get("spark_tasks"))


def engine_from(kw: Dict[str, Any]) -> Any:
    """The engine the parsed options ask for: Spark with ``--engine spark`` (``--spark-master``,
    ``--spark-tasks``), else the local one (worker processes with ``--processes N``)."""
    from ..engine import engine_for

    if uses_spark(kw):
        return engine_for("spark", spark_master=kw.get("spark_master"), spark_tasks=kw.get("spark_tasks"))
    return engine_for("local", processes=kw.get("processes") or 1)
