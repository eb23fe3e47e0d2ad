"""What the command line shows: summaries of reports, and library errors as one line + exit code."""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Any, Callable

import click

from ..errors import EXIT_FATAL, EXIT_INTERRUPTED, DdbMigrateError


def render_report(report: Any, quiet: bool) -> None:
    if not quiet:
        draw_report(report)


def draw_report(report: Any) -> None:
    """A job's summary table on stderr; the tables live in :mod:`ddbmigrate.reporting.terminal`."""
    from ..reporting import terminal
    from ..reporting.report import Report
    from ..verify.report import VerifyReport

    if isinstance(report, VerifyReport):  # a Report too: test it first
        terminal.render_verify_report(report)
    elif isinstance(report, Report):
        terminal.render_report(report)
    else:
        from ..plan.report import PlanReport

        if isinstance(report, PlanReport):
            terminal.render_plan_report(report)
        else:  # the only other report a command or an error carries
            terminal.render_cutover_report(report)


def handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line on stderr and the error class's exit code.

    It also gives the command the logging options (-v, --log-level, --log-file) and applies them
    before the command runs: every command logs the same way, and the command never sees them."""
    from .options import LOGGING_KEYS, logging_options

    @functools.wraps(f)
    def wrapper(*args: Any, **kw: Any) -> Any:
        quiet = bool(kw.get("quiet"))
        from ..logs import configure_logging, redact

        verbose, log_level, log_file = (kw.pop(k, None) for k in LOGGING_KEYS)
        level = log_level or ("debug" if (verbose or 0) > 1 else "info" if verbose else None) \
            or os.environ.get("DDBMIGRATE_LOG_LEVEL")
        configure_logging(level or "warning", log_file)
        # The outcome goes to the log too (at info: -v), so a --log-file tells how the command ended.
        log = logging.getLogger("ddbmigrate.cli")
        name = f.__name__.removesuffix("_cmd").replace("_", " ")
        try:
            code = f(*args, **kw)
        except DdbMigrateError as e:
            report = getattr(e, "report", None)
            if report is not None and not quiet:
                draw_report(report)
            line = redact(e.one_line())
            click.echo(f"error: {line}", err=True)
            if e.hint and e.hint not in e.one_line():
                click.echo(f"hint: {redact(e.hint)}", err=True)
            log.info("%s ended with exit %d: %s", name, e.exit_code, line)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            log.info("%s interrupted (exit %d)", name, EXIT_INTERRUPTED)
            sys.exit(EXIT_INTERRUPTED)
        except click.exceptions.ClickException:
            raise
        except Exception as e:
            if os.environ.get("DDBMIGRATE_DEBUG"):
                raise
            # Redacted before the cut: half a secret would no longer be recognised.
            click.echo(f"internal error: {type(e).__name__}: {redact(str(e))[:500]} "
                       "(set DDBMIGRATE_DEBUG=1 for a traceback)", err=True)
            log.info("%s ended with an internal error (exit %d): %s", name, EXIT_FATAL, type(e).__name__)
            sys.exit(EXIT_FATAL)
        log.info("%s ended with exit %d", name, code or 0)
        sys.exit(code or 0)

    return logging_options(wrapper)
