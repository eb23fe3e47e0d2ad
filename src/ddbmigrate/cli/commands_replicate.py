"""``ddbmigrate replicate SOURCE TARGET``, ``ddbmigrate replicate status`` and ``ddbmigrate cutover``.

``replicate`` is a group whose default command runs a replication, so both
``replicate SOURCE TARGET [options]`` and ``replicate status`` work (``replicate run ...`` too).
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List

import click
import orjson

from ..errors import EXIT_LAGGING, EXIT_NOT_RUNNING, FatalError, UsageError
from ..jobs.cutover import cutover
from ..jobs.replicate import replicate
from ..reporting.progress import fmt_bytes
from ..reporting.terminal import inert
from ..state.status import read_status, request_stop, status_path_for, stop_request_path
from .commands_estimate import check_cost, max_cost_option
from .options import (
    build_run_options,
    confirm_prompt,
    pass_kwargs,
    run_options,
    s3_options,
    s3_settings,
    table_ref,
    transform_options,
    two_sided_aws_options,
)
from .commands_schema import preflight
from .render import handle_errors, render_report


class _DefaultGroup(click.Group):
    """A group that runs ``run`` when the first argument is not one of its commands."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "SOURCE_TABLE TARGET_TABLE [OPTIONS] | status [OPTIONS] | stop")


@click.group("replicate", cls=_DefaultGroup)
def replicate_group() -> None:
    """Live migration: backfill TARGET from SOURCE, then replay and tail SOURCE's stream.

    \b
    ddbmigrate replicate SOURCE TARGET [--transform f.py:fn]   run (until stopped)
    ddbmigrate replicate status [SOURCE TARGET]                 lag and counts of a running one
    ddbmigrate replicate stop SOURCE TARGET                      end it cleanly (after cutover)
    ddbmigrate cutover SOURCE TARGET                             go / no-go gate
    Rollback: ddbmigrate replicate TARGET SOURCE --transform reverse.py:fn
    """


@replicate_group.command("run")
@click.argument("source_table")
@click.argument("target_table")
@two_sided_aws_options
@run_options
@transform_options
@click.option("--status-file", type=click.Path(dir_okay=False),
              help="Status file written every second (default: next to the checkpoint in .ddbmigrate/).")
@click.option("--max-runtime", type=float, help="Stop (checkpoint kept, exit 0) after this many seconds.")
@click.option("--stop-after-idle", type=float,
              help="Stop (checkpoint kept, exit 0) once the stream has had no new record for this many seconds.")
@click.option("--poll-interval", type=float, default=0.5, show_default=True,
              help="Seconds between polls of a caught-up stream.")
@click.option("--no-backfill", is_flag=True,
              help="Skip the copy: only replay changes from now on (both sides already equal, e.g. rollback "
                   "replication started right after a verified cutover).")
@click.option("--create-target", is_flag=True, help="Create the target with the source's schema if missing.")
@click.option("--target-spec", type=click.Path(exists=True, dir_okay=False),
              help="Create the target from a table spec (YAML/JSON) if missing.")
@click.option("--target-kms-key", "target_kms_key",
              help="With --create-target: encrypt the new table with this KMS key (a source key in another "
                   "account or region cannot be reused).")
@click.option("--clean-target", is_flag=True, help="Empty the target before the backfill (asks for confirmation).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (enabling the stream, --clean-target).")
@click.option("--journal", metavar="DIR|s3://bucket/prefix",
              help="Where the change journal keeps stream records until they are applied (default: a folder "
                   "next to the checkpoint). Lets a backfill take longer than the stream's 24 h retention.")
@click.option("--shard-readers", type=int, default=8, show_default=True,
              help="Stream shards read at once (independent lineages in parallel; one reader per shard).")
@s3_options
@click.option("--skip-ttl-deletes", is_flag=True,
              help="Do not replicate deletes made by the source's TTL expiry (counted in the report).")
@click.option("--max-lag", type=float, metavar="SECONDS",
              help="With --metrics-port: /healthz answers 503 while the lag is above SECONDS.")
@max_cost_option
@handle_errors
@pass_kwargs
def replicate_cmd(kw: Dict[str, Any]) -> int:
    """Replicate SOURCE_TABLE into TARGET_TABLE: backfill, then follow the stream until stopped.

    Ctrl-C / SIGTERM stop it with the checkpoint saved (exit 130); --resume continues.
    """
    src = table_ref(kw["source_table"], kw, "source")
    dst = table_ref(kw["target_table"], kw, "target")
    opts = build_run_options(kw)
    ask = confirm_prompt(kw["yes"])
    if kw.get("target_kms_key") and not (kw["create_target"] or kw.get("target_spec")):
        raise click.UsageError("--target-kms-key applies to a table ddbmigrate creates: add --create-target or "
                               "--target-spec")
    preflight(src, dst, kw["quiet"])

    def estimate() -> Any:
        from ..estimate import estimate_replicate

        return estimate_replicate(src, dst, opts, create_target=kw["create_target"], target_spec=kw.get("target_spec"),
                                  prices=kw.get("prices"))

    est = None if kw["no_backfill"] else check_cost(kw, estimate, "the replication's backfill")
    report = replicate(
        src, dst, transform=kw.get("transform"), options=opts, enable_stream_confirm=ask,
        status_path=kw.get("status_file"), max_runtime=kw.get("max_runtime"),
        stop_after_idle=kw.get("stop_after_idle"), poll_interval=kw["poll_interval"],
        backfill=not kw["no_backfill"], create_target=kw["create_target"], target_spec=kw.get("target_spec"),
        clean_target=kw["clean_target"], confirm=ask, journal=kw.get("journal"), journal_s3=s3_settings(kw), shard_readers=kw["shard_readers"],
        skip_ttl_deletes=kw["skip_ttl_deletes"], max_lag=kw.get("max_lag"), target_kms_key=kw.get("target_kms_key"),
    )
    if est is not None:
        from ..estimate import attach_estimate

        attach_estimate(report, est, kw.get("report"))
    render_report(report, kw["quiet"])
    return report.exit_code


@replicate_group.command("status")
@click.argument("source_table", required=False)
@click.argument("target_table", required=False)
@two_sided_aws_options
@click.option("--status-file", type=click.Path(dir_okay=False), help="The replicator's status file.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="The replicator's --checkpoint, if it had one.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (with its exit code).")
@click.option("--watch", type=float, help="Print again every N seconds until Ctrl-C.")
@click.option("--max-lag", type=float, metavar="SECONDS",
              help="Exit 5 when the replicator is running but more than SECONDS behind.")
@handle_errors
@pass_kwargs
def status_cmd(kw: Dict[str, Any]) -> int:
    """Show state, lag and counts of a replication (from its status file).

    \b
    Exit codes: 0 running (caught up, or within --max-lag), 5 running but lagging more than
    --max-lag, 6 not running (stopped, failed, or dead: its lag is then unknown).
    """
    # (nan passes every comparison: a --max-lag that never lags, a --watch that cannot sleep)
    if kw.get("watch") is not None and not kw["watch"] > 0:
        raise UsageError("--watch must be a number of seconds > 0")
    if kw.get("max_lag") is not None and not kw["max_lag"] >= 0:
        raise UsageError("--max-lag must be a number of seconds >= 0")
    path = _status_path(kw)
    while True:
        doc = read_status(path)
        code = status_exit_code(doc, kw.get("max_lag"))
        if kw["as_json"]:
            click.echo(orjson.dumps({**doc, "exit_code": code}, default=str).decode())
        else:
            _print_status(doc)
        if not kw.get("watch"):
            return code
        time.sleep(kw["watch"])


def status_exit_code(doc: Dict[str, Any], max_lag: Any = None) -> int:
    if not doc.get("alive"):
        return EXIT_NOT_RUNNING
    lag = doc.get("lag_seconds")
    if max_lag is not None and (lag is None or float(lag) > float(max_lag)):
        return EXIT_LAGGING
    return 0


def _status_path(kw: Dict[str, Any]) -> str:
    path = kw.get("status_file")
    if not path:
        if not (kw.get("source_table") and kw.get("target_table")):
            raise click.UsageError("give SOURCE_TABLE TARGET_TABLE (with the same AWS options) or --status-file")
        path = status_path_for(table_ref(kw["source_table"], kw, "source"), table_ref(kw["target_table"], kw, "target"),
                               kw.get("checkpoint"))
    return str(path)


@replicate_group.command("stop")
@click.argument("source_table", required=False)
@click.argument("target_table", required=False)
@two_sided_aws_options
@click.option("--status-file", type=click.Path(dir_okay=False), help="The replicator's status file.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="The replicator's --checkpoint, if it had one.")
@click.option("--timeout", type=click.FloatRange(0, 86_400 * 7), default=120.0, show_default=True,
              help="Seconds to wait for the replicator to finish its in-flight writes and stop.")
@handle_errors
@pass_kwargs
def stop_cmd(kw: Dict[str, Any]) -> int:
    """End a replication cleanly (after cutover): it finishes in-flight writes, saves its checkpoint
    and exits 0 with the report saying "stopped" (during the backfill too: --resume continues it).
    Exit 6 when no replicator is running."""
    path = _status_path(kw)
    if not os.path.exists(path):
        # Nothing ever ran here (or it ran elsewhere): nothing is running, as the docs say (exit 6).
        click.echo(f"not running: no replication status at {path} (is the replicator running in another "
                   "folder? pass its --status-file or --checkpoint)", err=True)
        return EXIT_NOT_RUNNING
    doc = read_status(path)
    if not doc.get("alive"):
        click.echo(f"not running: the replication is {doc.get('state')} (status {path})", err=True)
        return EXIT_NOT_RUNNING
    request_stop(path)
    deadline = time.monotonic() + kw["timeout"]
    while time.monotonic() < deadline:
        time.sleep(0.2)
        doc = read_status(path)
        if not doc.get("alive"):
            if doc.get("state") == "stopped":
                click.echo("stopped")
                return 0
            click.echo(f"the replicator ended as {doc.get('state')}: {doc.get('error', 'see its output')}", err=True)
            return 1
    raise FatalError(f"the replicator did not stop within {kw['timeout']:.0f} s (the request stays at "
                     f"{stop_request_path(path)}; it stops once its in-flight writes are done)")


def _print_status(doc: Dict[str, Any]) -> None:
    state = doc.get("state")
    alive = "running" if doc.get("alive") else "not running"
    lines = [
        f"replication {doc.get('source')} -> {doc.get('target')}",
        f"  state            {state} ({alive}; updated {doc.get('age_seconds')} s ago)",
        f"  phase            {_phase(doc)}",
    ]
    refused = doc.get("refused")
    if isinstance(refused, dict) and not doc.get("alive"):
        # A run refused before it started changed nothing: the lines below are the last real run's.
        what = "a --resume" if refused.get("resume") else "a run"
        lines.insert(1, f"  last attempt     {what} was refused at {refused.get('at')}, before it started: "
                        f"{inert(refused.get('error'))}")
        lines.insert(2, "                   (nothing ran: the state below is the last run's)")
    if doc.get("phase") == "backfill":
        done, total = doc.get("backfill_done"), doc.get("backfill_total")
        pct = f" ({100.0 * float(done or 0) / float(total):.0f} %)" if total else ""
        lines.append(f"  backfill         {done if done is not None else '-'} of {total or '?'} items{pct}")
    if "lag_seconds" in doc:
        lag = doc.get("lag_seconds")
        lines += [
            (f"  lag              {lag} s behind the newest change" + (" (caught up)" if doc.get("caught_up") else ""))
            if lag is not None else
            f"  lag              unknown: not running (last reported {doc.get('last_lag_seconds', '-')} s)",
            f"  pending records  {doc.get('pending_records', '-')}",
        ]
    j = doc.get("journal") or {}
    if j:
        size = fmt_bytes(j.get("bytes") or 0)
        lines.append(f"  journal          {j.get('backlog_records', 0)} records to apply, {size} in "
                     f"{j.get('segments', 0)} segments at {j.get('location')}")
    if doc.get("phase") == "stream":
        lines += [
            f"  quiet for        {doc.get('idle_seconds', 0)} s",
            f"  records          {doc.get('records', 0)} (inserts {doc.get('inserts', 0)}, modifies "
            f"{doc.get('modifies', 0)}, removes {doc.get('removes', 0)})",
        ]
        if doc.get("ttl_deletes") or doc.get("ttl_deletes_skipped"):
            lines.append(f"  TTL deletes      {doc.get('ttl_deletes', 0)} replicated, "
                         f"{doc.get('ttl_deletes_skipped', 0)} skipped")
    if "shards_open" in doc:
        lines.append(f"  shards           {doc.get('shards_open', 0)} open, {doc.get('shards_waiting', 0)} waiting, "
                     f"{doc.get('shards_finished', 0)} finished, {doc.get('shards_reading', 0)} being read")
    counts = doc.get("counts") or {}
    if counts:
        lines.append("  target writes    " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if doc.get("error"):
        lines.append(f"  error            {inert(doc['error'])}")
    click.echo("\n".join(lines))


def _phase(doc: Dict[str, Any]) -> str:
    if not doc.get("alive"):
        # A replicator that is not running does nothing: its phase is only where it stopped.
        return f"{doc.get('phase') or '-'} when it stopped (nothing runs now)"
    if doc.get("phase") == "backfill":
        return "backfill (the journal keeps every change meanwhile)"
    if doc.get("phase") == "stream":
        return "tailing the stream (caught up)" if doc.get("caught_up") else "applying the journal"
    return str(doc.get("phase") or "-")


@click.command("cutover")
@click.argument("source_table")
@click.argument("target_table")
@two_sided_aws_options
@click.option("--transform", help="The transform verify compares with (default: the running replicator's own).")
@click.option("--status-file", type=click.Path(dir_okay=False), help="The replicator's status file.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="The replicator's --checkpoint, if it had one.")
@click.option("--quiet-period", type=click.FloatRange(0, 86_400), default=10.0, show_default=True,
              help="Seconds without any new stream record that count as 'writes have stopped'.")
@click.option("--timeout", type=click.FloatRange(0, 86_400 * 7), default=600.0, show_default=True, help="Give up (no-go) after this long.")
@click.option("--no-verify", is_flag=True,
              help="Only wait for lag 0 (not recommended; NO-GO when the replicator is stopped: it cannot see "
                   "writes made after it stopped).")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the go / no-go report as JSON here.")
@click.option("--diff", "diff_path", type=click.Path(dir_okay=False),
              help="Write every difference verify finds here (JSON lines); NO-GO names the first 20 anyway.")
@click.option("--progress", type=click.Choice(["auto", "bar", "json", "off"]), default="auto", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
@handle_errors
@pass_kwargs
def cutover_cmd(kw: Dict[str, Any]) -> int:
    """Cutover gate: wait until replication lag is 0 after source writes stopped, verify, print GO / NO-GO.

    Exit 0 on GO; 4 when verify found differences; 1 when lag did not reach 0, the replicator is down,
    or (with --no-verify) it is stopped.
    """
    src = table_ref(kw["source_table"], kw, "source")
    dst = table_ref(kw["target_table"], kw, "target")
    preflight(src, dst, kw["quiet"])
    rep = cutover(src, dst, transform=kw.get("transform"), status_path=kw.get("status_file"),
                  checkpoint=kw.get("checkpoint"), quiet_period=kw["quiet_period"], timeout=kw["timeout"],
                  verify=not kw["no_verify"], progress="off" if kw["quiet"] else kw["progress"],
                  diff_path=kw.get("diff_path"))
    if kw.get("report"):
        from ..state.checkpoint import atomic_write

        from ..logs import redact_obj

        atomic_write(kw["report"], orjson.dumps(redact_obj(rep.to_dict()), option=orjson.OPT_INDENT_2, default=str))
    if not kw["quiet"]:
        from ..reporting.terminal import render_cutover_report

        render_cutover_report(rep)
    click.echo(("GO: " if rep.go else "NO-GO: ") + rep.reason, err=not rep.go)
    return rep.exit_code


def register(group: click.Group) -> None:
    group.add_command(replicate_group)
    group.add_command(cutover_cmd)
