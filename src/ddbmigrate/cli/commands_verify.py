"""``ddbmigrate verify``: parse options, call :func:`ddbmigrate.verify.job.verify_tables`, render."""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import click

from ..config import TableRef
from ..core.items import KeySchema
from ..errors import UsageError
from ..formats.detect import INPUT_FORMATS
from ..verify import is_files_location, verify_tables
from ..state.paths import output_path_problem
from .engine import engine_from, engine_options, spark_settings, uses_spark
from .options import (
    METRICS_LINGER,
    confirm_prompt,
    pass_kwargs,
    retry_policy,
    s3_options,
    s3_settings,
    table_ref,
    two_sided_aws_options,
)
from .render import handle_errors, render_report

_KEY_TYPES = ("S", "N", "B")


class SampleRate(click.ParamType):  # type: ignore[type-arg]
    """A sampling rate: ``0.01`` or ``1%``."""

    name = "RATE"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            rate = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            self.fail(f"{value!r} is not a rate such as 0.01 or 1%", param, ctx)
        if not 0 < rate <= 1:
            self.fail(f"{value!r} must be in (0, 1] (or (0%, 100%])", param, ctx)
        return rate


def parse_key_schema(text: Optional[str]) -> Optional[KeySchema]:
    """``pk:S`` or ``pk:S,sk:N`` -> KeySchema."""
    if not text:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not 1 <= len(parts) <= 2:
        raise UsageError(f"--key-schema {text!r}: expected HASH:TYPE or HASH:TYPE,RANGE:TYPE")
    out = []
    for p in parts:
        name, _, typ = p.rpartition(":")
        if not name or typ.upper() not in _KEY_TYPES:
            raise UsageError(f"--key-schema {text!r}: {p!r} must be NAME:S, NAME:N or NAME:B")
        out.append((name, typ.upper()))
    if len(out) == 1:
        return KeySchema(out[0][0], out[0][1])
    return KeySchema(out[0][0], out[0][1], out[1][0], out[1][1])


def writable_report(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """--report is checked as the options are read, before the command runs: a failed verify
    writes its report to this same path, which would only fail again under the error."""
    if value and "://" not in value:
        problem = output_path_problem(value, replaced=True)
        if problem:
            raise click.BadParameter(f"{value} cannot be written: {problem}", ctx, param)
    return value


def side_ref(arg: str, kw: Dict[str, Any], side: str) -> Union[TableRef, str]:
    """A table (name or ARN, with this side's AWS options) or a files location (kept as text)."""
    if is_files_location(arg):
        return arg
    return table_ref(arg, kw, side)


@click.command("verify")
@click.argument("source")
@click.argument("target")
@two_sided_aws_options
@click.option("--transform", help="The expected target is transform(source): path/to/file.py:func or pkg.mod:func.")
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="When the transform raises: stop (fail), or count the item and go on (skip).")
@click.option("--sample", type=SampleRate(),
              help="Check a deterministic key-hash fraction of the keys (0.01 or 1%); the report states the confidence.")
@click.option("--keys-only", is_flag=True, help="Compare presence of keys only, not item contents.")
@click.option("--diff", "diff_path", type=click.Path(dir_okay=False),
              help="Write every difference as a JSON line (with the items and differing paths).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), callback=writable_report,
              help="Write the JSON report here.")
@click.option("--repair", is_flag=True,
              help="Rewrite missing and mismatched items from the (transformed) source; delete unexpected "
                   "items after confirmation; then re-check them with consistent reads.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --repair deletes unexpected items.")
@click.option("--input-format", type=click.Choice(list(INPUT_FORMATS)), default="auto",
              show_default=True, help="Format of a files side (auto-detected per file).")
@click.option("--follow-symlinks", is_flag=True,
              help="Read files that link out of SOURCE's folder (refused by default).")
@s3_options
@click.option("--key-schema", help="Target primary key when no table tells it (files target): pk:S[,sk:N].")
@click.option("--segments", type=int, help="Scan segments for both tables (default: from each table's size).")
@click.option("--source-segments", type=int, help="Scan segments for the source table.")
@click.option("--target-segments", type=int, help="Scan segments for the target table.")
@click.option("--consistent-read", is_flag=True, help="Strongly consistent scans.")
@click.option("--max-read-units", type=float, help="Read capacity units per second, across both scans.")
@click.option("--memory", "memory_mb", type=float, default=256, show_default=True,
              help="Memory budget of the comparison in MB (more is spilled to disk).")
@click.option("--work-dir", type=click.Path(file_okay=False),
              help="Folder for the spill files (default ./.ddbmigrate; needs about the size of both sides).")
@click.option("--max-attempts", type=int, default=10, show_default=True, help="Attempts per request.")
@click.option("--progress", type=click.Choice(["auto", "bar", "json", "off"]), default="auto", show_default=True,
              help="Progress display (auto: bar on a terminal, JSON lines otherwise).")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary.")
@click.option("--metrics-port", type=int,
              help="Serve Prometheus metrics (/metrics) and a health check (/healthz) on this port while it runs.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address --metrics-port binds.")
@METRICS_LINGER
@engine_options
@handle_errors
@pass_kwargs
def verify_cmd(kw: Dict[str, Any]) -> int:
    """Check that TARGET equals transform(SOURCE), item by item; exit 0 when equal, 4 when not.

    SOURCE and TARGET are table names / ARNs, or files: an export folder, a file, a folder of
    files, a glob, or an s3:// prefix (see `ddbmigrate import`).
    """
    for k in ("segments", "source_segments", "target_segments"):
        if kw.get(k) is not None and not 1 <= kw[k] <= 1_000_000:
            raise UsageError(f"--{k.replace('_', '-')} must be between 1 and 1000000")
    if uses_spark(kw):
        from ..verify.spark import verify_tables_spark

        report = verify_tables_spark(
            side_ref(kw["source"], kw, "source"), side_ref(kw["target"], kw, "target"),  # type: ignore[arg-type]
            spark=spark_settings(kw), transform=kw.get("transform"), on_error=kw["on_error"],
            sample=kw.get("sample"), keys_only=kw["keys_only"], diff_path=kw.get("diff_path"),
            report_path=kw.get("report_path"), repair=kw["repair"], confirm=confirm_prompt(kw["yes"]),
            segments=kw.get("segments"), source_segments=kw.get("source_segments"),
            target_segments=kw.get("target_segments"), consistent_read=kw["consistent_read"],
            memory_mb=kw["memory_mb"], progress="off" if kw["quiet"] else kw["progress"],
            retry=retry_policy(kw), max_read_units=kw.get("max_read_units"))
        render_report(report, kw["quiet"])
        return int(report.exit_code)
    report = verify_tables(
        side_ref(kw["source"], kw, "source"), side_ref(kw["target"], kw, "target"),
        transform=kw.get("transform"), on_error=kw["on_error"], sample=kw.get("sample"),
        keys_only=kw["keys_only"], diff_path=kw.get("diff_path"), report_path=kw.get("report_path"),
        repair=kw["repair"], confirm=confirm_prompt(kw["yes"]), key_schema=parse_key_schema(kw.get("key_schema")),
        segments=kw.get("segments"), source_segments=kw.get("source_segments"),
        target_segments=kw.get("target_segments"), consistent_read=kw["consistent_read"],
        max_read_units=kw.get("max_read_units"), memory_mb=kw["memory_mb"], work_dir=kw.get("work_dir"),
        retry=retry_policy(kw),
        progress="off" if kw["quiet"] else kw["progress"], input_format=kw["input_format"],
        follow_symlinks=kw["follow_symlinks"],
        s3=s3_settings(kw), engine=engine_from(kw) if (kw.get("processes") or 1) > 1 else None,
        metrics_port=kw.get("metrics_port"), metrics_host=kw["metrics_host"],
    )
    render_report(report, kw["quiet"])
    return report.exit_code


def register(group: click.Group) -> None:
    group.add_command(verify_cmd)
