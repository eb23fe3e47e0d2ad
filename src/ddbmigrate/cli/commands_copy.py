"""``ddbmigrate copy`` and ``ddbmigrate clean``."""

from __future__ import annotations

from typing import Any, Dict

import click

from ..jobs.clean import clean_table
from ..jobs.copy import copy_table
from .commands_estimate import check_cost, max_cost_option
from .engine import engine_from, engine_options
from .options import (
    aws_options,
    build_run_options,
    confirm_prompt,
    pass_kwargs,
    run_options,
    table_ref,
    transform_options,
    two_sided_aws_options,
    write_mode_options,
)
from .commands_schema import preflight
from .render import handle_errors, render_report, verify_after


@click.command("copy")
@click.argument("source_table")
@click.argument("target_table")
@two_sided_aws_options
@run_options
@transform_options
@write_mode_options
@click.option("--create-target", is_flag=True, help="Create the target with the source's schema if missing.")
@click.option("--target-spec", type=click.Path(exists=True, dir_okay=False),
              help="Create the target from a CloudFormation-style table spec (YAML/JSON) if missing.")
@click.option("--target-kms-key", "target_kms_key",
              help="With --create-target: encrypt the new table with this KMS key (a source key in another "
                   "account or region cannot be reused).")
@click.option("--clean-target", is_flag=True, help="Empty the target first (asks for confirmation).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--verify", "verify_after", is_flag=True, help="Verify target == transform(source) afterwards.")
@engine_options
@max_cost_option
@handle_errors
@pass_kwargs
def copy_cmd(kw: Dict[str, Any]) -> int:
    """Copy every item of SOURCE_TABLE into TARGET_TABLE (names or table ARNs)."""
    src = table_ref(kw["source_table"], kw, "source")
    dst = table_ref(kw["target_table"], kw, "target")
    opts = build_run_options(kw)
    preflight(src, dst, kw["quiet"])

    def estimate() -> Any:
        from ..estimate import estimate_copy

        return estimate_copy(src, dst, opts, create_target=kw["create_target"], target_spec=kw["target_spec"],
                             prices=kw.get("prices"))

    est = check_cost(kw, estimate, "the copy")  # before anything is written
    report = copy_table(src, dst, opts, create_target=kw["create_target"], target_spec=kw["target_spec"],
                        clean_target=kw["clean_target"], confirm=confirm_prompt(kw["yes"]), engine=engine_from(kw),
                        target_kms_key=kw.get("target_kms_key"))
    if est is not None:
        from ..estimate import attach_estimate

        attach_estimate(report, est, kw.get("report"))
    render_report(report, kw["quiet"])
    if opts.dry_run and report.samples and not kw["quiet"]:
        import orjson

        for s in report.samples:
            click.echo(orjson.dumps(s, default=str).decode())
    if kw.get("verify_after"):
        from ..verify import verify_tables

        return verify_after(report, kw.get("report"), kw["quiet"], lambda: verify_tables(
            src, dst, transform=opts.transform, progress=opts.progress, on_error=opts.on_error,
            metrics_port=opts.metrics_port, metrics_host=opts.metrics_host))
    return report.exit_code


@click.command("clean")
@click.argument("table")
@aws_options
@run_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@engine_options
@handle_errors
@pass_kwargs
def clean_cmd(kw: Dict[str, Any]) -> int:
    """Delete every item of TABLE (asks for confirmation naming the table and its item count)."""
    report = clean_table(table_ref(kw["table"], kw), build_run_options(kw), confirm=confirm_prompt(kw["yes"]),
                         engine=engine_from(kw))
    render_report(report, kw["quiet"])
    return report.exit_code


def register(group: click.Group) -> None:
    group.add_command(copy_cmd)
    group.add_command(clean_cmd)
