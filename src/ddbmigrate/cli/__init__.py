"""The ``ddbmigrate`` command line: parse options, call one library function, render the result.

Library errors map to exit codes here (see errors.py); nothing below this package talks to
click, and nothing in this package talks to AWS.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, Optional

import click

from ..errors import EXIT_FATAL, EXIT_INTERRUPTED, DdbMigrateError


def render_report(report: Any, quiet: bool) -> None:
    if not quiet:
        report.render()


def handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line on stderr and the error class's exit code."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kw: Any) -> Any:
        quiet = bool(kw.get("quiet"))
        from ..logs import configure_logging, redact

        level = kw.get("log_level") or ("debug" if (kw.get("verbose") or 0) > 1 else
                                        "info" if kw.get("verbose") else None) \
            or os.environ.get("DDBMIGRATE_LOG_LEVEL")
        configure_logging(level or "warning", kw.get("log_file"))
        try:
            code = f(*args, **kw)
        except DdbMigrateError as e:
            report = getattr(e, "report", None)
            if report is not None and not quiet:
                report.render()
            click.echo(f"error: {redact(e.one_line())}", err=True)
            if e.hint and e.hint not in e.one_line():
                click.echo(f"hint: {redact(e.hint)}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except click.exceptions.ClickException:
            raise
        except Exception as e:
            if os.environ.get("DDBMIGRATE_DEBUG"):
                raise
            click.echo(f"internal error: {type(e).__name__}: {redact(str(e)[:500])} "
                       "(set DDBMIGRATE_DEBUG=1 for a traceback)", err=True)
            sys.exit(EXIT_FATAL)
        sys.exit(code or 0)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="ddbmigrate")
def main() -> None:
    """Move data between DynamoDB tables and files, safely and fast."""


def _register() -> None:
    from . import commands_copy, commands_local

    for mod in (commands_copy, commands_local):
        mod.register(main)
    for name in ("commands_files", "commands_verify", "commands_replicate", "commands_schema",
                 "commands_plan", "commands_report", "commands_spark"):
        try:
            mod = __import__(f"{__name__}.{name}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name and e.name.endswith(name):
                continue  # that command family is not part of this build
            raise
        mod.register(main)


_register()
