"""Shared click options: per-side AWS settings, S3 settings, run options, output. Parsing only; no AWS calls."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, Dict, Optional

import click

from ..config import RetryPolicy, RunOptions, TableRef, check_endpoint
from ..errors import UsageError
from ..storage.stores import S3Settings

F = Callable[..., Any]

AWS_FIELDS = ("region", "profile", "endpoint_url", "role_arn")


def _aws_options(prefix: str, side_help: str) -> Callable[[F], F]:
    p = f"{prefix}-" if prefix else ""
    u = f"{prefix}_" if prefix else ""

    def deco(f: F) -> F:
        f = click.option(f"--{p}role-arn", f"{u}role_arn", help=f"IAM role to assume for {side_help} (cross-account).")(f)
        f = click.option(f"--{p}endpoint-url", f"{u}endpoint_url",
                         help=f"DynamoDB endpoint for {side_help} (default: AWS_ENDPOINT_URL or the region's).")(f)
        f = click.option(f"--{p}profile", f"{u}profile", help=f"AWS profile for {side_help}.")(f)
        f = click.option(f"--{p}region", f"{u}region", help=f"AWS region for {side_help}.")(f)
        return f

    return deco


def aws_options(f: F) -> F:
    """--region/--profile/--endpoint-url/--role-arn (both sides, or the single table)."""
    return _aws_options("", "both sides")(f)


def two_sided_aws_options(f: F) -> F:
    f = _aws_options("target", "the target")(f)
    f = _aws_options("source", "the source")(f)
    return aws_options(f)


def table_ref(table: str, kw: Dict[str, Any], side: Optional[str] = None) -> TableRef:
    """Side-specific options override the shared ones. The endpoint is checked here, before any
    work: a malformed one is a usage error naming the option (or variable) it came from."""
    vals: Dict[str, Any] = {}
    for name in AWS_FIELDS:
        v = kw.get(f"{side}_{name}") if side else None
        vals[name] = v if v is not None else kw.get(name)
    option = f"--{side}-endpoint-url" if side and kw.get(f"{side}_endpoint_url") is not None else "--endpoint-url"
    vals["endpoint_url"] = endpoint_option(vals["endpoint_url"], option)
    return TableRef(table=table, **vals)


# botocore's order for a DynamoDB client without an explicit endpoint.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL")


def endpoint_option(url: Optional[str], option: str = "--endpoint-url") -> Optional[str]:
    """``url`` (from ``option``) checked; without one, the environment variable botocore would use
    instead is checked, so a bad AWS_ENDPOINT_URL is one line naming it, not an internal error."""
    if url is not None:
        return check_endpoint(url, option)
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() != "true":
        for var in ENDPOINT_VARIABLES:
            if os.environ.get(var):
                check_endpoint(os.environ[var], var)
                break
    return None


def s3_options(f: F) -> F:
    """--s3-endpoint-url/--s3-region/--s3-profile/--s3-role-arn, for s3:// locations (see s3_settings)."""
    opts = [
        click.option("--s3-endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, "
                                                "then AWS's). --endpoint-url is DynamoDB's only."),
        click.option("--s3-region", help="Region of the bucket (default: --region)."),
        click.option("--s3-profile", help="AWS profile for S3 (default: --profile)."),
        click.option("--s3-role-arn", help="IAM role to assume for S3 (default: --role-arn)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def s3_settings(kw: Dict[str, Any]) -> S3Settings:
    """S3Settings from s3_options; each unset --s3-* falls back to the shared AWS option."""
    return S3Settings(
        region=kw.get("s3_region") or kw.get("region"),
        profile=kw.get("s3_profile") or kw.get("profile"),
        role_arn=kw.get("s3_role_arn") or kw.get("role_arn"),
        endpoint_url=check_endpoint(kw.get("s3_endpoint_url"), "--s3-endpoint-url"),
    )


# Read by handle_errors (render.py), not by the command: the wait is the process's, at its end.
METRICS_LINGER = click.option(
    "--metrics-linger", "metrics_linger", type=click.FloatRange(0, 3600), default=0.0,
    help="With --metrics-port: once the work is done, keep serving its final figures SECONDS more "
         "before exiting (more than the scrape interval: the last scrape then sees how it ended).")


def run_options(f: F) -> F:
    opts = [
        click.option("--segments", type=int, help="Parallel scan segments (default: from the table size)."),
        click.option("--writers", type=int, help="Concurrent writer threads (default 16; 32 for conditional modes; export: 4 file writers)."),
        click.option("--dead-letter", "dead_letter", type=click.Path(dir_okay=False),
                     help="JSON-lines file for items that could not be written, with why (a copy's or an import's "
                          "replay with import; docs/files.md says how each record replays)."),
        click.option("--report", type=click.Path(dir_okay=False), help="Write the JSON report here."),
        click.option("--checkpoint", type=click.Path(dir_okay=False),
                     help="Checkpoint file (default: .ddbmigrate/<job>-<tables>-<hash>.checkpoint.json)."),
        click.option("--resume", is_flag=True, help="Continue from the checkpoint."),
        click.option("--restart", is_flag=True, help="Ignore an existing checkpoint and start over."),
        click.option("--force", is_flag=True, help="Resume even if the checkpoint belongs to a different job."),
        click.option("--max-read-units", type=float, help="Read capacity units per second, across all workers."),
        click.option("--max-write-units", type=float,
                     help="Write capacity units per second, across all workers. Without it, writes start at the "
                          "target's provisioned units (on DynamoDB itself) and find the capacity from throttles."),
        click.option("--read-percent", type=float, help="Percent of the source's read capacity to use."),
        click.option("--write-percent", type=float, help="Percent of the target's write capacity to use."),
        click.option("--max-attempts", type=int, default=10, show_default=True,
                     help="Attempts per request before stopping with exit 75 (resumable)."),
        click.option("--consistent-read", is_flag=True, help="Strongly consistent scans."),
        click.option("--progress", type=click.Choice(["auto", "bar", "json", "off"]), default="auto",
                     show_default=True, help="Progress display (auto: bar on a terminal, JSON lines otherwise)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress and no summary."),
        click.option("--checkpoint-every", "checkpoint_every", type=float, default=2.0, show_default=True,
                     help="Seconds between checkpoint saves."),
        click.option("--drain-timeout", "drain_timeout", type=float, default=30.0, show_default=True,
                     help="On Ctrl-C/SIGTERM: seconds to let in-flight batches finish before stopping."),
        click.option("--metrics-port", "metrics_port", type=int,
                     help="Serve Prometheus metrics (/metrics) and a health check (/healthz) on this port while the job runs."),
        click.option("--metrics-host", "metrics_host", default="127.0.0.1", show_default=True,
                     help="Address the --metrics-port server binds."),
        METRICS_LINGER,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


LOGGING_KEYS = ("verbose", "log_level", "log_file")


def logging_options(f: F) -> F:
    """-v/--verbose, --log-level, --log-file: every command has them (render.handle_errors adds
    them, so a new command cannot forget them) and reads them before the command runs."""
    opts = [
        click.option("--verbose", "-v", count=True, help="Log what the job does (-vv: debug). Never logs secrets."),
        click.option("--log-level", "log_level", type=click.Choice(["error", "warning", "info", "debug"]),
                     help="Log level (default warning; env DDBMIGRATE_LOG_LEVEL)."),
        click.option("--log-file", "log_file", type=click.Path(dir_okay=False), help="Also write the log here."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def transform_options(f: F) -> F:
    opts = [
        click.option("--transform", help="Python transform: path/to/file.py:func or package.module:func."),
        click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
                     help="When the transform raises: stop (fail) or dead-letter the item (skip)."),
        click.option("--max-errors", type=int, help="Stop once more than N items are dead-lettered."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def write_mode_options(f: F) -> F:
    opts = [
        click.option("--mode", type=click.Choice(["overwrite", "skip-existing", "fail-existing"]),
                     default="overwrite", show_default=True,
                     help="overwrite; skip-existing (conditional put, existing items counted as skipped); "
                          "fail-existing (existing items dead-lettered)."),
        click.option("--dry-run", is_flag=True, help="Read, transform and validate; write nothing."),
        click.option("--sample", type=int, default=0, help="With --dry-run: show N before/after pairs."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def given(kw: Dict[str, Any], name: str, default: Any) -> Any:
    """The option's value, or ``default`` only when it was not given: a 0 stays 0 (and is then
    refused or honoured), never silently replaced by the default as ``value or default`` would."""
    v = kw.get(name)
    return default if v is None else v


def retry_policy(kw: Dict[str, Any]) -> RetryPolicy:
    """``--max-attempts N`` (default 10); 0 or less is refused, as a usage error naming it."""
    attempts = given(kw, "max_attempts", 10)
    if attempts < 1:
        raise UsageError(f"--max-attempts must be at least 1, not {attempts}")
    return RetryPolicy(max_attempts=attempts)


def build_run_options(kw: Dict[str, Any]) -> RunOptions:
    progress = "off" if kw.get("quiet") else kw.get("progress", "auto")
    sample = given(kw, "sample", 0)
    if sample < 0:
        raise UsageError(f"--sample must be 0 or more, not {sample}")
    if sample > 0 and not kw.get("dry_run"):
        # It shows the pairs of a dry run only: without --dry-run it would be silently ignored.
        raise UsageError("--sample N needs --dry-run (it shows a dry run's before/after pairs)")
    return RunOptions(
        segments=kw.get("segments"), writers=kw.get("writers"), mode=kw.get("mode") or "overwrite",
        transform=kw.get("transform"), on_error=kw.get("on_error") or "fail", max_errors=kw.get("max_errors"),
        dead_letter=kw.get("dead_letter"), report=kw.get("report"), checkpoint=kw.get("checkpoint"),
        resume=bool(kw.get("resume")), restart=bool(kw.get("restart")), force=bool(kw.get("force")),
        dry_run=bool(kw.get("dry_run")), sample=int(sample),
        consistent_read=bool(kw.get("consistent_read")), max_read_units=kw.get("max_read_units"),
        max_write_units=kw.get("max_write_units"), read_percent=kw.get("read_percent"),
        write_percent=kw.get("write_percent"), retry=retry_policy(kw),
        processes=given(kw, "processes", 1),
        progress=progress, checkpoint_every=given(kw, "checkpoint_every", 2.0),
        drain_timeout=given(kw, "drain_timeout", 30.0),
        metrics_port=kw.get("metrics_port"), metrics_host=kw.get("metrics_host") or "127.0.0.1",
    )


def confirm_prompt(yes: bool) -> Callable[[str], bool]:
    def ask(message: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            click.echo(f"{message}\nNot a terminal: refusing without --yes.", err=True)
            return False
        return click.confirm(message, default=False, err=True)

    return ask


def pass_kwargs(f: F) -> F:
    @functools.wraps(f)
    def wrapper(**kw: Any) -> Any:
        return f(kw)

    return wrapper
