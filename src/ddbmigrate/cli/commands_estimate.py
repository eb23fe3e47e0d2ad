"""``ddbmigrate estimate copy|import|export|replicate ARGS...`` and ``--max-cost`` helpers.

The estimate subcommands take the job's own arguments and options (so a command line can be
estimated by putting ``estimate`` in front of it), plus ``--sample N``, ``--prices FILE``,
``--json`` and ``--max-cost USD``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import click
import orjson

from ..errors import EXIT_OK, EXIT_USAGE, UsageError
from ..formats.detect import INPUT_FORMATS
from .engine import engine_options
from .options import (
    aws_options,
    build_run_options,
    pass_kwargs,
    run_options,
    s3_options,
    s3_settings,
    table_ref,
    transform_options,
    two_sided_aws_options,
)
from .render import handle_errors

F = Callable[..., Any]


class OptionValueError(click.ClickException):
    """A refused option value: exit 2 and one ``error:`` line (as the commands' own usage errors),
    raised while the options are read, so before any command does anything."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class CostCap(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """``--max-cost USD``: a finite amount of US dollars, 0 or more.

    ``nan`` would pass every comparison with an estimate (no cap at all, silently) and ``inf`` is
    no cap either; they and a negative amount are refused when the option is read, by every
    command that takes it, before any sampling, reading or writing."""

    name = "USD"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        from ..estimate.guard import max_cost_problem

        if isinstance(value, float):
            amount = value
        else:
            try:
                amount = float(str(value).strip())
            except ValueError:
                raise OptionValueError(f"--max-cost must be an amount of US dollars, not {value!r}") from None
        problem = max_cost_problem(amount, given=str(value).strip())
        if problem:
            raise OptionValueError(problem)
        return amount


def max_cost_param(help_text: str) -> Callable[[F], F]:
    """The one ``--max-cost USD`` option (copy, import, replicate, estimate *, run)."""
    return click.option("--max-cost", "max_cost", type=CostCap(), metavar="USD", help=help_text)


def file_input_options(f: F) -> F:
    """The input options of ``import`` (format and CSV), shared by ``import`` and ``estimate
    import``, so that ``estimate`` in front of an import's command line accepts the same options."""
    opts = [
        click.option("--input-format", type=click.Choice(list(INPUT_FORMATS)), default="auto", show_default=True,
                     help="Format of the data files (auto: decided per file from the layout and its first records)."),
        click.option("--csv-header", default=None, metavar="A,B,C",
                     help="CSV files have no header line: these are the column names, comma-separated whatever "
                          "--csv-delimiter is (ImportTable's HeaderList)."),
        click.option("--csv-delimiter", default=",", show_default=True, help="CSV field separator (one character)."),
        click.option("--follow-symlinks", is_flag=True,
                     help="Read files that link out of SOURCE's folder (refused by default)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def max_cost_option(f: F) -> F:
    """``--max-cost USD``, ``--estimate`` and ``--prices FILE`` for copy, import and replicate."""
    f = click.option("--prices", "prices", type=click.Path(exists=True, dir_okay=False),
                     help="With --max-cost: JSON prices over the packaged, dated prices file.")(f)
    f = click.option("--estimate", "estimate_first", is_flag=True,
                     help="Estimate first (as `ddbmigrate estimate` would) and show estimated vs actual time "
                          "and capacity in the report.")(f)
    return max_cost_param("Estimate first (see `ddbmigrate estimate`); refuse to start (exit 2, with the "
                          "estimate) when it exceeds USD. The report then shows estimated vs actual.")(f)


def estimate_options(f: F) -> F:
    opts: List[Callable[[F], F]] = [
        click.option("--sample", "estimate_sample", type=click.IntRange(1, 100_000), default=1000, show_default=True,
                     help="Source items to sample (a parallel scan of a few segments), run through the transform."),
        click.option("--prices", "prices", type=click.Path(exists=True, dir_okay=False),
                     help="JSON prices over the packaged, dated prices file (same shape; only what changes)."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout."),
        max_cost_param("Exit 2 when this job's lane costs more than USD (checked before anything is sampled)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _job_flags(f: F) -> F:
    """Flags of the jobs that change nothing in an estimate, accepted so a job's command line works
    (``--processes`` comes with the engine options, as on the jobs: this machine's throughput scales with it)."""
    opts = [
        click.option("--mode", type=click.Choice(["overwrite", "skip-existing", "fail-existing"]), default="overwrite"),
        click.option("--dry-run", is_flag=True, hidden=True),
        click.option("--clean-target", is_flag=True, hidden=True),
        click.option("--yes", "-y", is_flag=True, hidden=True),
        click.option("--verify", "verify_after", is_flag=True, hidden=True),
        click.option("--estimate", "estimate_first", is_flag=True, hidden=True),
        click.option("--target-kms-key", hidden=True),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _target_options(f: F) -> F:
    """A table-to-table estimate's target that may not exist yet (copy, replicate)."""
    f = click.option("--target-spec", type=click.Path(exists=True, dir_okay=False),
                     help="The target's spec (its keys and indexes), when it does not exist yet.")(f)
    return click.option("--create-target", is_flag=True, help="The target would be created with the source's schema.")(f)


def emit(est: Any, as_json: bool, err: bool = False) -> None:
    """The estimate: one JSON document, or the text table."""
    from ..estimate.render import estimate_lines

    if as_json:
        click.echo(orjson.dumps(est.to_dict(), option=orjson.OPT_INDENT_2, default=str).decode(), err=err)
    else:
        for line in estimate_lines(est):
            click.echo(line, err=err)


def finish(est: Any, kw: Dict[str, Any], what: str) -> int:
    from ..estimate import enforce_max_cost

    emit(est, kw.get("as_json", False))
    enforce_max_cost(est, kw.get("max_cost"), what=what)
    return EXIT_OK


def check_cost(kw: Dict[str, Any], make: Callable[[], Any], what: str) -> Optional[Any]:
    """For a job with ``--max-cost`` (or ``--estimate``): estimate; refuse (exit 2, estimate on stderr)
    above the cap. The estimate is returned, for the report's estimated vs actual."""
    from ..estimate import CostCapExceeded, enforce_max_cost
    from ..estimate.guard import check_max_cost

    check_max_cost(kw.get("max_cost"))  # before the estimate reads anything (the option checks it too)
    if (kw.get("max_cost") is None and not kw.get("estimate_first")) or kw.get("dry_run"):
        return None

    est = make()
    try:
        return enforce_max_cost(est, kw["max_cost"], what=what)
    except CostCapExceeded:
        if not kw.get("quiet"):
            emit(est, False, err=True)
        raise


@click.group("estimate")
def estimate_group() -> None:
    """Time and cost of a job before running it, for every lane that can do it.

    \b
    ddbmigrate estimate copy SOURCE TARGET [copy options] [--json]
    ddbmigrate estimate import SOURCE TABLE [import options] [--native [--bulk-put]]
    ddbmigrate estimate export TABLE DEST [export options] [--native]
    ddbmigrate estimate replicate SOURCE TARGET [replicate options]
    """


@estimate_group.command("copy")
@click.argument("source_table")
@click.argument("target_table")
@two_sided_aws_options
@run_options
@transform_options
@_job_flags
@_target_options
@click.option("--tier", type=click.Choice(["standard", "accelerated"]), default="standard", show_default=True,
              help="Bulk put tier for the bulk put lane.")
@engine_options
@estimate_options
@handle_errors
@pass_kwargs
def estimate_copy_cmd(kw: Dict[str, Any]) -> int:
    """Estimate `copy SOURCE_TABLE TARGET_TABLE` (every lane, hot keys, cost, time)."""
    from ..estimate import estimate_copy

    est = estimate_copy(table_ref(kw["source_table"], kw, "source"), table_ref(kw["target_table"], kw, "target"),
                        build_run_options(kw), create_target=kw["create_target"], target_spec=kw["target_spec"],
                        sample=kw["estimate_sample"], prices=kw["prices"], tier=kw["tier"].upper())
    return finish(est, kw, "the copy")


@estimate_group.command("replicate")
@click.argument("source_table")
@click.argument("target_table")
@two_sided_aws_options
@run_options
@transform_options
@_job_flags
@_target_options
@click.option("--no-backfill", is_flag=True, hidden=True)
@click.option("--status-file", hidden=True)
@click.option("--max-runtime", type=float, hidden=True)
@click.option("--stop-after-idle", type=float, hidden=True)
@click.option("--poll-interval", type=float, hidden=True)
@click.option("--journal", hidden=True)
@click.option("--shard-readers", type=int, hidden=True)
@click.option("--skip-ttl-deletes", is_flag=True, hidden=True)
@click.option("--max-lag", type=float, hidden=True)
@s3_options
@estimate_options
@handle_errors
@pass_kwargs
def estimate_replicate_cmd(kw: Dict[str, Any]) -> int:
    """Estimate the backfill of `replicate SOURCE_TABLE TARGET_TABLE` (the stream is a note)."""
    from ..estimate import estimate_replicate

    est = estimate_replicate(table_ref(kw["source_table"], kw, "source"),
                             table_ref(kw["target_table"], kw, "target"), build_run_options(kw),
                             create_target=kw["create_target"], target_spec=kw["target_spec"],
                             sample=kw["estimate_sample"], prices=kw["prices"])
    if kw.get("no_backfill"):
        est.assumptions.insert(0, "--no-backfill: the replication copies nothing up front; the lanes show what "
                                  "a backfill would take, and the stream costs one write per change")
    return finish(est, kw, "the replication's backfill")


@estimate_group.command("import")
@click.argument("source")
@click.argument("table")
@aws_options
@s3_options
@run_options
@transform_options
@_job_flags
@file_input_options
@click.option("--no-validate", is_flag=True, hidden=True)
@click.option("--create-target", is_flag=True, hidden=True)
@click.option("--spec", type=click.Path(exists=True, dir_okay=False),
              help="The table's spec when it does not exist yet.")
@click.option("--native", is_flag=True, help="This job's lane is DynamoDB's (ImportTable, or bulk put with --bulk-put).")
@click.option("--bulk-put", is_flag=True, help="This job's lane is bulk put items (existing table).")
@click.option("--tier", type=click.Choice(["standard", "accelerated"]), default="standard", show_default=True)
@click.option("--failure-report", hidden=True)
@click.option("--condition", help="As for import --bulk-put: the staged copy it needs is priced too.")
@click.option("--condition-names", hidden=True)
@click.option("--condition-values", hidden=True)
@click.option("--staging", hidden=True)
@click.option("--keep-staging", is_flag=True, hidden=True)
@click.option("--compression", "bulk_put_compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip",
              hidden=True)
@engine_options
@estimate_options
@handle_errors
@pass_kwargs
def estimate_import_cmd(kw: Dict[str, Any]) -> int:
    """Estimate `import SOURCE TABLE` (our engine, ImportTable, bulk put)."""
    from ..estimate import estimate_import
    cond = bulk_put_condition(kw)  # the same checks as the import itself (exit 2)
    header = kw["csv_header"].split(",") if kw["csv_header"] else None
    est = estimate_import(kw["source"], table_ref(kw["table"], kw), build_run_options(kw), spec=kw["spec"],
                          native=kw["native"], bulk_put=kw["bulk_put"], tier=kw["tier"].upper(),
                          sample=kw["estimate_sample"], prices=kw["prices"], input_format=kw["input_format"],
                          s3=s3_settings(kw), follow_symlinks=kw["follow_symlinks"], condition=cond is not None,
                          csv_header=header, csv_delimiter=kw["csv_delimiter"])
    return finish(est, kw, "the import")


@estimate_group.command("export")
@click.argument("table")
@click.argument("dest")
@aws_options
@s3_options
@run_options
@transform_options
@click.option("--format", "fmt", type=click.Choice(["dynamodb-json", "json"]), default="dynamodb-json", hidden=True)
@click.option("--file-size", type=int, hidden=True)
@click.option("--native", is_flag=True, help="This job's lane is DynamoDB's native export.")
@click.option("--export-time", hidden=True)
@click.option("--incremental", nargs=2, default=None, hidden=True)
@click.option("--commit-every", type=float, hidden=True)
@engine_options
@estimate_options
@handle_errors
@pass_kwargs
def estimate_export_cmd(kw: Dict[str, Any]) -> int:
    """Estimate `export TABLE DEST` (our scan to files, and the native export)."""
    from ..estimate import estimate_export

    est = estimate_export(table_ref(kw["table"], kw), kw["dest"], build_run_options(kw), native=kw["native"],
                          sample=kw["estimate_sample"], prices=kw["prices"])
    if kw.get("incremental"):
        est.assumptions.insert(0, "--incremental: estimated as a full export (an incremental export's size is "
                                  "only known once it has run): an upper bound")
    return finish(est, kw, "the export")


def register(group: click.Group) -> None:
    group.add_command(estimate_group)


# The checks import's --native options share with `estimate import` (commands_plan.py's native
# import runs them too; defined here, below the commands that both import).
def check_native_import_source(kw: Dict[str, Any]) -> None:
    """``import --native`` (and ``estimate import --native``) read S3 only: a local SOURCE is refused."""
    if not str(kw["source"]).startswith("s3://"):
        raise UsageError("--native imports read S3: SOURCE must be s3://bucket/prefix (an export folder)")


def bulk_put_only(kw: Dict[str, Any]) -> bool:
    return bool(kw.get("condition") or kw.get("condition_names") or kw.get("condition_values") or kw.get("staging")
                or kw.get("keep_staging") or kw.get("bulk_put_compression") not in (None, "gzip"))


def bulk_put_condition(kw: Dict[str, Any]) -> Any:
    """``--condition`` with its names and values, checked (exit 2 with one line when wrong)."""
    from ..aws.bulk_put_stage import parse_condition

    if not kw.get("bulk_put") and bulk_put_only(kw):
        raise click.UsageError("--condition*, --staging, --keep-staging and --compression are bulk put options: "
                               "add --native --bulk-put")
    return parse_condition(kw.get("condition"), kw.get("condition_names"), kw.get("condition_values"))
