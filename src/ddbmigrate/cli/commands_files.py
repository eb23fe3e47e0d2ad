"""``ddbmigrate export TABLE DEST`` and ``ddbmigrate import SOURCE TABLE`` (thin over the library)."""

from __future__ import annotations

from typing import Any, Dict

import click

from ..errors import UsageError
from ..jobs.export import export_table
from ..jobs.import_files import import_files
from ..sinks.export_files import DEFAULT_FILE_SIZE, FORMATS
from .commands_estimate import check_cost, file_input_options, max_cost_option
from .commands_plan import (
    native_export_options,
    native_import_options,
    run_native_export,
    run_native_import,
    wants_native_export,
)
from .engine import engine_from, engine_options
from .options import (
    aws_options,
    build_run_options,
    pass_kwargs,
    run_options,
    s3_options,
    s3_settings,
    table_ref,
    transform_options,
    write_mode_options,
)
from .render import handle_errors, render_report, verify_after


@click.command("export")
@click.argument("table")
@click.argument("dest")
@aws_options
@s3_options
@run_options
@transform_options
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="dynamodb-json",
              show_default=True, help="dynamodb-json or ion: AWS's export formats (lossless); json: plain values.")
@click.option("--file-size", type=int, default=DEFAULT_FILE_SIZE // (1024 * 1024), show_default=True,
              help="Start a new data file after this many MB of (uncompressed) items.")
@click.option("--commit-every", type=float, default=30.0, show_default=True,
              help="Seconds between checkpoints; each one finishes the open data files first.")
@engine_options
@native_export_options
@handle_errors
@pass_kwargs
def export_cmd(kw: Dict[str, Any]) -> int:
    """Export TABLE to DEST (a folder or s3://bucket/prefix) in DynamoDB's Export-to-S3 layout."""
    if wants_native_export(kw):  # DynamoDB's managed Export to S3, watched (see commands_plan.py)
        return run_native_export(kw)
    opts = build_run_options(kw)
    if kw["file_size"] < 1:
        raise UsageError(f"--file-size must be at least 1 (MB), not {kw['file_size']}")
    report = export_table(table_ref(kw["table"], kw), kw["dest"], opts, kw["fmt"], s3=s3_settings(kw),
                          file_size=kw["file_size"] * 1024 * 1024, commit_every=kw["commit_every"],
                          engine=engine_from(kw))
    render_report(report, kw["quiet"])
    if not kw["quiet"]:
        click.echo(report.extra.get("export_path", ""))
    return report.exit_code


@click.command("import")
@click.argument("source")
@click.argument("table")
@aws_options
@s3_options
@run_options
@transform_options
@write_mode_options
@click.option("--no-validate", is_flag=True,
              help="Stream each file at once instead of checking it (gzip, md5Checksum, itemCount) first.")
@file_input_options
@click.option("--create-target", is_flag=True, help="Create TABLE from --spec if it does not exist.")
@click.option("--spec", type=click.Path(exists=True, dir_okay=False),
              help="CloudFormation-style table spec (YAML/JSON) for --create-target.")
@click.option("--verify", "verify_after", is_flag=True, help="Verify TABLE == transform(SOURCE) afterwards.")
@engine_options
@native_import_options
@max_cost_option
@handle_errors
@pass_kwargs
def import_cmd(kw: Dict[str, Any]) -> int:
    """Load SOURCE (export folder, file, folder or glob; local or s3://) into TABLE."""
    if kw.get("bulk_put") and not kw.get("native"):
        raise UsageError("--bulk-put needs --native (it loads TABLE with DynamoDB's bulk put items, "
                         "from s3://)")
    opts = build_run_options(kw)

    def estimate() -> Any:
        from ..estimate import estimate_import

        return estimate_import(kw["source"], table_ref(kw["table"], kw), opts, spec=kw["spec"],
                               native=bool(kw.get("native")), bulk_put=bool(kw.get("bulk_put")),
                               tier=str(kw.get("tier") or "standard").upper(), prices=kw.get("prices"),
                               input_format=kw["input_format"], s3=s3_settings(kw),
                               follow_symlinks=kw["follow_symlinks"], condition=bool(kw.get("condition")))

    if kw.get("bulk_put") or kw.get("condition"):
        from .commands_estimate import bulk_put_condition

        bulk_put_condition(kw)  # a wrong --condition stops here, before anything is read or written
    est = check_cost(kw, estimate, "the import")  # before anything is read or written
    if kw.get("native") or kw.get("bulk_put"):  # ImportTable (new table) or bulk put (existing), watched
        return run_native_import(kw, est)
    report = import_files(kw["source"], table_ref(kw["table"], kw), opts, create_target=kw["create_target"],
                          spec=kw["spec"], validate=not kw["no_validate"], input_format=kw["input_format"],
                          csv_header=kw["csv_header"].split(",") if kw["csv_header"] else None,
                          csv_delimiter=kw["csv_delimiter"], follow_symlinks=kw["follow_symlinks"],
                          s3=s3_settings(kw), engine=engine_from(kw))
    if est is not None:
        from ..estimate import attach_estimate

        attach_estimate(report, est, kw.get("report"))
    render_report(report, kw["quiet"])
    if kw.get("verify_after"):
        if report.extra.get("source_kind") == "incremental":
            click.echo("--verify skipped: an incremental export holds changes, not a full image", err=True)
        else:
            from ..verify import files_side, verify_tables

            side = files_side(kw["source"], s3=s3_settings(kw), input_format=kw["input_format"],
                              follow_symlinks=kw["follow_symlinks"], key_types=report.extra.get("key_types"),
                              csv_header=kw["csv_header"].split(",") if kw["csv_header"] else None,
                              csv_delimiter=kw["csv_delimiter"])
            return verify_after(report, kw.get("report"), kw["quiet"], lambda: verify_tables(
                kw["source"], table_ref(kw["table"], kw), source_side=side, transform=opts.transform,
                progress=opts.progress, on_error=opts.on_error, metrics_port=opts.metrics_port,
                metrics_host=opts.metrics_host))
    return report.exit_code


def register(group: click.Group) -> None:
    group.add_command(export_cmd)
    group.add_command(import_cmd)
