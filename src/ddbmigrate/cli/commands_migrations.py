"""``ddbmigrate migrations init | new | status | up | down | history | verify``."""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List

import click
import orjson

from .options import F, aws_options, build_run_options, confirm_prompt, endpoint_option, pass_kwargs
from .render import handle_errors


def _dir_option(f: F) -> F:
    return click.option("--dir", "directory", default="migrations", show_default=True, type=click.Path(file_okay=False),
                        help="The migrations folder.")(f)


def _history_options(f: F) -> F:
    f = click.option("--history-table", "history_table", default="ddbmigrate_migrations", show_default=True,
                     help="DynamoDB table recording what was applied (created on first use).")(f)
    f = click.option("--state-dir", "state_dir", default=".ddbmigrate/migrations", show_default=True,
                     type=click.Path(file_okay=False), help="Where the migrations' job checkpoints are kept.")(f)
    return f


def _settings(kw: Dict[str, Any]) -> Any:
    from ..migrations import AwsSettings

    return AwsSettings(region=kw.get("region"), profile=kw.get("profile"),
                       endpoint_url=endpoint_option(kw.get("endpoint_url")), role_arn=kw.get("role_arn"))


def _json(obj: Any) -> None:
    click.echo(orjson.dumps(obj, default=str, option=orjson.OPT_INDENT_2).decode())


def _table(rows: List[Dict[str, Any]], columns: List[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(*columns)
    for r in rows:
        t.add_row(*(str(r.get(c) if r.get(c) is not None else "") for c in columns))
    Console(file=sys.stdout).print(t)


@click.group("migrations")
def migrations_group() -> None:
    """Versioned data migrations as Python files, applied in order and recorded in a history table."""


@migrations_group.command("init")
@click.argument("directory", type=click.Path(file_okay=False), required=False)
@click.option("--dir", "dir_option", type=click.Path(file_okay=False), help="The folder (instead of DIRECTORY).")
@handle_errors
@pass_kwargs
def init_cmd(kw: Dict[str, Any]) -> int:
    """Create the migrations folder DIRECTORY (default: migrations)."""
    from ..migrations.files import init

    click.echo(f"migrations folder: {init(kw['directory'] or kw['dir_option'] or 'migrations')}")
    return 0


@migrations_group.command("new")
@click.argument("title")
@_dir_option
@handle_errors
@pass_kwargs
def new_cmd(kw: Dict[str, Any]) -> int:
    """Write the next migration file (NNNN_title.py) from a template."""
    from ..migrations.files import new

    click.echo(new(kw["directory"], kw["title"]))
    return 0


@migrations_group.command("status")
@_dir_option
@_history_options
@aws_options
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (for CI).")
@handle_errors
@pass_kwargs
def status_cmd(kw: Dict[str, Any]) -> int:
    """Each migration of the folder: pending, running, interrupted (recorded running, its runner
    gone: `up` resumes it), applied, failed, reverted, reverting, revert_interrupted or
    revert_failed (a revert under way, its runner gone, or failed: `down` finishes it), changed
    (file edited since it was applied) or missing (recorded, no file)."""
    from ..migrations import status

    rows = status(kw["directory"], _settings(kw), history_table=kw["history_table"])
    if kw["as_json"]:
        pending = ("pending", "failed", "running", "interrupted", "reverted")  # what `up` would apply
        reverting = ("reverting", "revert_interrupted", "revert_failed")  # what `down` must finish
        _json({"migrations": [r.to_dict() for r in rows], "pending": [r.id for r in rows if r.state in pending],
               "reverting": [r.id for r in rows if r.state in reverting]})
    else:
        _table([r.to_dict() for r in rows], ["id", "state", "description", "finished_at", "who"])
    return 0


def _run_options(f: F) -> F:
    # The jobs' checkpoints, dead letters and resume are managed per migration step (see
    # migrations/context.py): only the options that say *how* to run are offered.
    opts = [
        click.option("--max-read-units", type=float, help="Read capacity units per second for each job."),
        click.option("--max-write-units", type=float, help="Write capacity units per second for each job."),
        click.option("--read-percent", type=float, help="Percent of a source's read capacity to use."),
        click.option("--write-percent", type=float, help="Percent of a target's write capacity to use."),
        click.option("--max-attempts", type=int, default=10, show_default=True,
                     help="Attempts per request before a job stops with exit 75 (resumable)."),
        click.option("--progress", type=click.Choice(["auto", "bar", "json", "off"]), default="auto",
                     show_default=True, help="Progress display of each job."),
        click.option("--quiet", "-q", is_flag=True, help="No progress."),
        click.option("--drain-timeout", "drain_timeout", type=float, default=30.0, show_default=True,
                     help="On Ctrl-C/SIGTERM: seconds to let in-flight batches finish before stopping."),
    ]
    for o in reversed(opts):
        f = o(f)
    f = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(f)
    f = click.option("--wait", type=float, default=0.0, show_default=True,
                     help="Seconds (0 or more) to wait for another runner's lock before giving up (exit 75).")(f)
    f = click.option("--lease", type=float, default=300.0, show_default=True,
                     help="Seconds the lock is held without renewal (a crashed runner's lock expires after it); "
                          "3 to 86400.")(f)
    return f


def _check_run_numbers(kw: Dict[str, Any]) -> None:
    """Refuse, as a usage error naming the option, the numbers ``up`` and ``down`` cannot run with,
    before anything is read or locked (a --lease of 0 would otherwise "lose" the lock at once).
    Rates and the drain timeout are RunOptions' to check."""
    from ..migrations.runner import check_lock_times

    check_lock_times(kw["lease"], kw["wait"])


def _print_result(res: Any, as_json: bool) -> None:
    if as_json:
        _json(res.to_dict())
    else:
        click.echo(res.message)


def _run_printed(action: str, as_json: bool, run: Callable[[], Any]) -> int:
    """``run()`` (up or down) and its result printed; with --json a failure is a document too (what
    was done before it, the error and the exit code) before the error line, so that CI reading
    stdout gets one either way."""
    from ..errors import DdbMigrateError

    try:
        res = run()
    except DdbMigrateError as e:
        if as_json:
            _json({"action": action, "done": list(getattr(e, "done", [])), "message": e.one_line(),
                   "error": e.one_line(), "exit_code": e.exit_code})
        raise
    _print_result(res, as_json)
    return int(res.exit_code)


@migrations_group.command("up")
@_dir_option
@_history_options
@aws_options
@_run_options
@click.option("--to", "to", metavar="ID", help="Apply up to and including this migration (id or number).")
@click.option("--allow-changed", is_flag=True, help="Accept applied migrations whose file changed since.")
@click.option("--out-of-order", "out_of_order", is_flag=True,
              help="Apply pending migrations numbered below the highest applied one (refused otherwise, exit 2).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
@pass_kwargs
def up_cmd(kw: Dict[str, Any]) -> int:
    """Apply the pending migrations in order; resume a failed one from its job checkpoints."""
    from ..migrations import up

    _check_run_numbers(kw)
    return _run_printed("up", kw["as_json"], lambda: up(
        kw["directory"], _settings(kw), to=kw["to"], allow_changed=kw["allow_changed"],
        confirm=confirm_prompt(kw["yes"]), options=build_run_options(kw), history_table=kw["history_table"],
        state_dir=kw["state_dir"], wait=kw["wait"], lease=kw["lease"], out_of_order=kw["out_of_order"]))


@migrations_group.command("down")
@_dir_option
@_history_options
@aws_options
@_run_options
@click.option("--to", "to", metavar="ID", required=True,
              help="Revert the migrations after this one (0: all), newest first, with their downgrade(ctx).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
@pass_kwargs
def down_cmd(kw: Dict[str, Any]) -> int:
    """Revert applied migrations with their downgrade(ctx)."""
    from ..migrations import down

    _check_run_numbers(kw)
    return _run_printed("down", kw["as_json"], lambda: down(
        kw["directory"], _settings(kw), to=kw["to"], confirm=confirm_prompt(kw["yes"]),
        options=build_run_options(kw), history_table=kw["history_table"], state_dir=kw["state_dir"],
        wait=kw["wait"], lease=kw["lease"]))


@migrations_group.command("history")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="The migrations folder: each record then says whether its file is there unchanged.")
@_history_options
@aws_options
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@handle_errors
@pass_kwargs
def history_cmd(kw: Dict[str, Any]) -> int:
    """Every record of the history table: id, state, checksum, start/end, who, attempts."""
    from ..migrations import history_records

    recs = history_records(_settings(kw), history_table=kw["history_table"], directory=kw.get("directory"))
    if kw["as_json"]:
        _json({"history": recs})
    else:
        rows = [dict(r, checksum=str(r.get("checksum") or "")[:12]) for r in recs]
        _table(rows, ["id", "state", "checksum", "started_at", "finished_at", "who", "attempts"]
               + (["file"] if kw.get("directory") else []))
    return 0


@migrations_group.command("verify")
@_dir_option
@_history_options
@aws_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
@pass_kwargs
def verify_cmd(kw: Dict[str, Any]) -> int:
    """Check applied migrations against their files (checksums) and run their verify(ctx); exit 4
    on any difference."""
    from ..migrations import verify

    res = verify(kw["directory"], _settings(kw), history_table=kw["history_table"], state_dir=kw["state_dir"])
    if kw["as_json"]:
        _json(res.to_dict())
    else:
        for p in res.problems:
            click.echo(f"difference: {p}")
        click.echo(f"{len(res.checked)} applied migration(s) checked, {len(res.problems)} problem(s)")
    return res.exit_code


def register(group: click.Group) -> None:
    group.add_command(migrations_group)

