"""``ddbmigrate run PLAN``, ``ddbmigrate plan validate PLAN`` and ``ddbmigrate report RUN.json``."""

from __future__ import annotations

from typing import Any, Dict, List

import click

from ..errors import EXIT_OK, EXIT_USAGE
from .commands_estimate import bulk_put_only, bulk_put_condition, check_native_import_source, max_cost_param
from .options import METRICS_LINGER, pass_kwargs
from .render import draw_report, handle_errors, write_failure_report


@click.command("run")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--parallel", type=click.IntRange(1, 256), help="Jobs at a time (default: the plan's, else 4).")
@click.option("--resume", is_flag=True, help="Skip finished jobs; resume the others from their checkpoints.")
@click.option("--restart", is_flag=True, help="Ignore an unfinished earlier run and start every job over.")
@click.option("--force", is_flag=True,
              help="With --resume: resume a job even if its checkpoint belongs to a different definition of it "
                   "(a fixed transform, changed options), as a job's own --force does.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the combined JSON report here.")
@click.option("--state-dir", type=click.Path(file_okay=False),
              help="Where checkpoints, dead letters and plan-state.json live (default: from the plan).")
@click.option("--fail-fast", is_flag=True, default=None, help="Stop every job when one fails.")
@click.option("--progress", type=click.Choice(["auto", "bar", "json", "off"]), default="auto", show_default=True,
              help="Progress display (auto: bars on a terminal, JSON lines otherwise).")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary.")
@max_cost_param("Estimate the plan's jobs first; refuse to start (exit 2, with the estimates) when their total "
                "exceeds USD. A job's own cap is its options.max_cost.")
@click.option("--prices", type=click.Path(exists=True, dir_okay=False),
              help="JSON prices over the packaged, dated prices file (for --max-cost / max_cost).")
@click.option("--metrics-port", "metrics_port", type=click.IntRange(0, 65535),
              help="Serve Prometheus /metrics and /healthz here while the plan runs (each job's series "
                   "labelled with its name).")
@click.option("--metrics-host", "metrics_host", default="127.0.0.1", show_default=True,
              help="Address the --metrics-port server binds.")
@METRICS_LINGER
@handle_errors
@pass_kwargs
def run_cmd(kw: Dict[str, Any]) -> int:
    """Run every job of PLAN_FILE (YAML): concurrently, with one progress display and one report."""
    from ..plan import PlanError, run_plan
    from ..reporting.terminal import inert, render_plan_report

    try:
        rep = run_plan(kw["plan_file"], parallel=kw["parallel"], resume=kw["resume"], restart=kw["restart"],
                       report=kw["report"], progress="off" if kw["quiet"] else kw["progress"],
                       state_dir=kw["state_dir"], fail_fast=kw["fail_fast"], max_cost=kw["max_cost"],
                       prices=kw["prices"], metrics_port=kw["metrics_port"], metrics_host=kw["metrics_host"],
                       force=kw["force"])
    except PlanError as e:
        for p in e.problems:  # every problem, each with its line, not just the first
            click.echo(f"error: {inert(p)}", err=True)
        problem = write_failure_report("run", kw, EXIT_USAGE, e.one_line())
        if problem:
            click.echo(f"warning: {problem}", err=True)
        return EXIT_USAGE
    if not kw["quiet"]:
        render_plan_report(rep)
        if rep.status != "done":
            click.echo(f"state kept in {rep.state_dir}; rerun with --resume to continue", err=True)
    return rep.exit_code


@click.group("plan")
def plan_group() -> None:
    """Check migration plans."""


@plan_group.command("validate")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--no-check-tables", is_flag=True, help="Only check the file (no AWS calls).")
@click.option("--sample", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Source items to run through each transform to check the target's key schema.")
@click.option("--estimate", "with_estimate", is_flag=True,
              help="Also estimate each job's units, cost and time (see `ddbmigrate estimate`), and the total.")
@click.option("--estimate-sample", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="With --estimate: source items sampled per job.")
@click.option("--prices", type=click.Path(exists=True, dir_okay=False),
              help="With --estimate: JSON prices over the packaged, dated prices file.")
@click.option("--json", "as_json", is_flag=True, help="With --estimate: one JSON document of every job's estimate.")
@handle_errors
@pass_kwargs
def validate_cmd(kw: Dict[str, Any]) -> int:
    """Check PLAN_FILE (schema, tables, permissions, key schemas) and print what would run."""
    from ..plan import load_plan, validate_plan
    from ..reporting.terminal import inert

    warnings: List[Any] = []
    problems = validate_plan(kw["plan_file"], check_tables=not kw["no_check_tables"], sample=kw["sample"],
                             warnings=warnings)
    # A sampled item's values reach these lines (in a transform's message): shown, never obeyed.
    for w in warnings:
        click.echo(f"warning: {inert(w)}", err=True)
    for p in problems:
        click.echo(f"error: {inert(p)}", err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) in {kw['plan_file']}", err=True)
        return EXIT_USAGE
    plan = load_plan(kw["plan_file"])
    if kw.get("with_estimate"):
        return _print_plan_estimate(plan, kw)
    click.echo(f"plan {plan.name}: {len(plan.jobs)} job(s), {plan.parallel} at a time, state in {plan.state_dir}")
    for line in plan.describe():
        click.echo(f"  {line}")
    return EXIT_OK


def _print_plan_estimate(plan: Any, kw: Dict[str, Any]) -> int:
    import orjson

    from ..plan.estimate import estimate_plan
    from ..reporting.terminal import inert

    from ..estimate.model import usd

    results = estimate_plan(plan, sample=kw["estimate_sample"], prices=kw.get("prices"))
    known = [r.cost for r in results if r.cost is not None]
    total = sum(known) if len(known) == len(results) else None
    # A job's max_cost that its estimate exceeds (or cannot be checked against): `run` would
    # refuse the plan, so validating it says so (exit 2), as every other problem.
    problems: List[str] = []
    for r in results:
        cap = r.job.options.get("max_cost")
        if cap is not None and (r.cost is None or r.cost > float(cap)):
            problems.append(f"{plan.path}:{r.job.line}: {r.job.name}: " + (
                f"max_cost {usd(float(cap))} cannot be checked: {r.line()}" if r.cost is None else
                f"estimated {usd(r.cost)} exceeds its max_cost {usd(float(cap))}"))
    if kw.get("as_json"):
        doc = {"plan": plan.name, "total_cost_usd": total, "problems": problems,
               "jobs": [{"job": r.job.name, "kind": r.job.kind, "error": r.error,
                         "estimate": r.estimate.to_dict() if r.estimate is not None else None} for r in results]}
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode())
        return EXIT_USAGE if problems else EXIT_OK
    click.echo(f"plan {plan.name}: {len(plan.jobs)} job(s), {plan.parallel} at a time, state in {plan.state_dir}")
    for r in results:
        click.echo(f"  {r.line()}")
    click.echo(f"  total: {'unknown (see above)' if total is None else f'${total:,.4f}'}")
    for p in problems:
        click.echo(f"error: {inert(p)}", err=True)
    return EXIT_USAGE if problems else EXIT_OK


@click.command("report")
@click.argument("report_file", type=click.Path(dir_okay=False))
@click.option("--html", "html_out", type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML page (charts inline, no external assets).")
@click.option("--quiet", "-q", is_flag=True, help="No terminal summary.")
@handle_errors
@pass_kwargs
def report_cmd(kw: Dict[str, Any]) -> int:
    """Summarise a finished run's JSON report (from --report) on the terminal and as HTML."""
    from ..errors import UsageError
    from ..reporting.html import load_run_report, write_html
    from ..reporting.terminal import render_run_report
    from ..state.paths import output_path_problem, outputs_problem

    if kw["html_out"]:
        # Before reading: --html naming the report itself wrote the page over the run's only report.
        problem = outputs_problem({"--html": kw["html_out"]}, [kw["report_file"]])
        where = output_path_problem(kw["html_out"], replaced=True) if not problem else None
        if problem or where:
            raise UsageError(problem or f"cannot write the page {kw['html_out']}: {where}")
    data = load_run_report(kw["report_file"])
    if not kw["quiet"]:
        render_run_report(data)
    if kw["html_out"]:
        write_html(data, kw["html_out"])
        if not kw["quiet"]:
            click.echo(f"wrote {kw['html_out']}", err=True)
    return EXIT_OK


# --------------------------------------------------------------------------- native export/import
# ``ddbmigrate export ... --native`` and ``ddbmigrate import ... --native`` (commands_files.py)
# hand over to these, so the native paths live with their library module's owner.


def wants_native_export(kw: Dict[str, Any]) -> bool:
    if kw.get("native"):
        return True
    if kw.get("export_time") or kw.get("incremental"):
        raise click.UsageError("--export-time and --incremental need --native")
    return False


def run_native_export(kw: Dict[str, Any]) -> int:
    """``export TABLE s3://... --native [--export-time T] [--incremental FROM TO]``."""
    from ..aws.managed import native_export
    from .options import table_ref

    if not str(kw["dest"]).startswith("s3://"):
        raise click.UsageError("--native exports go to S3: DEST must be s3://bucket/prefix")
    inc = kw.get("incremental") or None
    if kw.get("fmt") == "json":
        raise click.UsageError("--native exports write DYNAMODB_JSON or ION: --format dynamodb-json or ion")
    report = native_export(table_ref(kw["table"], kw), kw["dest"], export_time=kw.get("export_time"),
                           export_format="ION" if kw.get("fmt") == "ion" else "DYNAMODB_JSON",
                           incremental=(inc[0], inc[1]) if inc else None,
                           progress="off" if kw.get("quiet") else kw.get("progress", "auto"),
                           report_path=kw.get("report"))
    if not kw.get("quiet"):
        draw_report(report)
    click.echo(report.extra.get("export_path", ""))
    return report.exit_code


def run_native_import(kw: Dict[str, Any], estimate: Any = None) -> int:
    """``import s3://... TABLE --native --spec table.yaml`` (ImportTable, new table) or
    ``import s3://... TABLE --native --bulk-put`` (bulk put items, existing table)."""
    from ..aws.managed import native_import
    from .options import confirm_prompt, s3_settings, table_ref

    check_native_import_source(kw)
    if kw.get("bulk_put"):
        from ..aws.bulk_put import native_bulk_put

        if kw.get("spec"):
            raise click.UsageError("--bulk-put loads an existing table: drop --spec (ImportTable creates new tables)")
        cond = bulk_put_condition(kw)
        formats = {"auto": "DYNAMODB_JSON", "dynamodb-json": "DYNAMODB_JSON", "ion": "ION"}
        given = kw.get("input_format") or "auto"
        if given not in formats:
            raise click.UsageError(f"--bulk-put reads dynamodb-json or ion, not {given}")
        ask = confirm_prompt(bool(kw.get("yes")))
        report = native_bulk_put(kw["source"], table_ref(kw["table"], kw), tier=str(kw.get("tier") or "standard"),
                                 max_write_units=kw.get("max_write_units"), report_uri=kw.get("failure_report"),
                                 input_format=formats[given],
                                 compression=str(kw.get("bulk_put_compression") or "gzip").upper(),
                                 condition=cond, staging_uri=kw.get("staging"),
                                 keep_staging=bool(kw.get("keep_staging")),
                                 restart=bool(kw.get("restart")), confirm_cancel=ask,
                                 progress="off" if kw.get("quiet") else kw.get("progress", "auto"),
                                 report_path=kw.get("report"), s3_endpoint_url=kw.get("s3_endpoint_url"),
                                 s3_settings=s3_settings(kw) if cond is not None else None)
        click.echo(f"failure report: {report.extra.get('failure_report')}", err=True)
        if cond is not None:
            n = report.count("condition_failed")
            note = report.extra.get("condition_failed_unknown")
            click.echo(f"condition failed: {'unknown' if note else f'{n:,}'} item(s), not written "
                       f"(report: {report.extra.get('condition_failure_report')})", err=True)
    else:
        if kw.get("tier") not in (None, "standard") or kw.get("failure_report") or bulk_put_only(kw):
            raise click.UsageError("--tier, --failure-report, --condition*, --staging, --keep-staging and "
                                   "--compression are bulk put options: add --bulk-put")
        if not kw.get("spec"):
            raise click.UsageError("--native creates the table with ImportTable: give --spec table.yaml "
                                   "(or --bulk-put to load an existing table)")
        # ImportTable reads three of the formats import does (and takes no CSV options from here).
        native_formats = {"auto": "DYNAMODB_JSON", "dynamodb-json": "DYNAMODB_JSON", "ion": "ION", "csv": "CSV"}
        given = kw.get("input_format") or "auto"
        if given not in native_formats:
            raise click.UsageError(f"--native: ImportTable reads dynamodb-json, ion or csv, not {given}")
        if kw.get("csv_header") or (kw.get("csv_delimiter") or ",") != ",":
            raise click.UsageError("--native does not pass --csv-header/--csv-delimiter on: import without --native")
        report = native_import(kw["source"], table_ref(kw["table"], kw), kw["spec"],
                               input_format=native_formats[given],
                               progress="off" if kw.get("quiet") else kw.get("progress", "auto"),
                               report_path=kw.get("report"), s3_endpoint_url=kw.get("s3_endpoint_url"))
    if estimate is not None:
        from ..estimate import attach_estimate

        attach_estimate(report, estimate, kw.get("report"))
    if not kw.get("quiet"):
        draw_report(report)
    return report.exit_code


def native_export_options(f: Any) -> Any:
    """The options ``export`` gains for --native (added by commands_files.export_cmd)."""
    f = click.option("--incremental", nargs=2, metavar="FROM TO", default=None,
                     help="With --native: export only the changes between FROM and TO (15 min to 24 h).")(f)
    f = click.option("--export-time", help="With --native: the table as it was at this time "
                                           "(ISO 8601 or Unix seconds; default now).")(f)
    f = click.option("--native", is_flag=True, help="Use DynamoDB's managed Export to S3 (needs point-in-time "
                                                    "recovery; DEST s3://...), watched to the end.")(f)
    return f


def native_import_options(f: Any) -> Any:
    """The options ``import`` gains for --native (uses its existing --spec, --max-write-units, --restart)."""
    f = click.option("--failure-report", "failure_report", metavar="S3URI",
                     help="With --bulk-put: where DynamoDB writes the items it could not write "
                          "(default s3://<input bucket>/ddbmigrate-bulk-put-reports/<table>/).")(f)
    f = click.option("--tier", type=click.Choice(["standard", "accelerated"]), default="standard", show_default=True,
                     help="With --bulk-put: the performance tier.")(f)
    f = click.option("--keep-staging", is_flag=True,
                     help="With --condition: keep the staged copy of the input after the load ends.")(f)
    f = click.option("--staging", metavar="S3URI",
                     help="With --condition: where the copy of the input with the condition in every record is "
                          "staged (default: next to the failure report, <report prefix>-staging/<hash>/).")(f)
    f = click.option("--compression", "bulk_put_compression", type=click.Choice(["gzip", "zstd", "none"]),
                     default="gzip", show_default=True,
                     help="With --bulk-put: how the input objects are compressed (InputCompressionType); "
                          "a staged copy is written the same way.")(f)
    f = click.option("--condition-values", metavar="JSON",
                     help="With --condition: ExpressionAttributeValues as DynamoDB JSON, e.g. "
                          "'{\":v\": {\"N\": \"3\"}}' (or @file.json).")(f)
    f = click.option("--condition-names", metavar="JSON",
                     help="With --condition: ExpressionAttributeNames, e.g. '{\"#v\": \"version\"}' (or @file.json).")(f)
    f = click.option("--condition", metavar="EXPR",
                     help="With --bulk-put: a condition every item must meet to be written (e.g. "
                          "'attribute_not_exists(pk)'); it is put into each record of a staged copy of the input, "
                          "and the items that fail it are counted apart.")(f)
    f = click.option("--bulk-put", "bulk_put", is_flag=True,
                     help="With --native: load the EXISTING table TABLE with bulk put items (StartBulkPutItems), "
                          "watched; rerunning re-attaches (client token kept); Ctrl-C asks to cancel.")(f)
    return click.option("--native", is_flag=True, help="Create TABLE with DynamoDB's managed Import from S3 "
                                                        "(ImportTable; needs --spec), or with --bulk-put load an "
                                                        "existing one; watched to the end.")(f)


def register(group: click.Group) -> None:
    group.add_command(run_cmd)
    group.add_command(plan_group)
    group.add_command(report_cmd)

