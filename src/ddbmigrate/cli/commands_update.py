"""``ddbmigrate update``: transform a table's items in place, safe under live writes."""

from __future__ import annotations

from typing import Any, Dict

import click

from ..jobs.update import update_table
from .engine import engine_from, engine_options
from .options import (
    aws_options,
    build_run_options,
    pass_kwargs,
    run_options,
    table_ref,
    transform_options,
)
from .render import handle_errors, render_report


@click.command("update")
@click.argument("table")
@aws_options
@run_options
@transform_options
@click.option("--version-attribute", "version_attribute", metavar="NAME",
              help="Condition each write on this number attribute (which every writer of the table moves "
                   "on) instead of on every attribute read; the update moves it on by one.")
@click.option("--schema-version-attribute", "schema_version_attribute", metavar="NAME",
              help="The --transform names an UpgradeRegistry (ddbmigrate.migrations): upgrade each item "
                   "from the schema version in NAME (e.g. _v) to the latest; items already there are unchanged.")
@click.option("--max-races", "max_races", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Lost races (the item changed between read and write) per item before it is dead-lettered.")
@click.option("--dry-run", is_flag=True, help="Read and transform; count what would be written; write nothing.")
@engine_options
@handle_errors
@pass_kwargs
def update_cmd(kw: Dict[str, Any]) -> int:
    """Transform every item of TABLE in place (--transform f.py:fn), writing only what changed,
    each write conditional on the item not having changed since it was read."""
    opts = build_run_options(kw)
    transform: Any = None
    if kw.get("schema_version_attribute"):
        from ..migrations.upgrade import load_registry

        transform = load_registry(opts.transform, kw["schema_version_attribute"])
    report = update_table(table_ref(kw["table"], kw), opts, transform=transform,
                          version_attribute=kw.get("version_attribute"), max_races=kw["max_races"],
                          engine=engine_from(kw))
    render_report(report, kw["quiet"])
    return report.exit_code


def register(group: click.Group) -> None:
    group.add_command(update_cmd)
