"""What the command line shows: summaries of reports, and library errors as one line + exit code."""

from __future__ import annotations

import copy
import errno
import functools
import logging
import os
import signal
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import click

from ..engine.run import install_handler
from ..errors import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_USAGE, DdbMigrateError
from ..reporting.terminal import inert


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


def verify_after(report: Any, path: Optional[str], quiet: bool, verify: Callable[[], Any]) -> int:
    """``--verify`` after a job: its outcome is in the job's report too (``extra["verify"]``, the
    report written again), and a verify that found differences or failed is the report's
    ``exit_code`` as it is the command's: a report never says 0 for a command that exited 1."""
    try:
        vrep = verify()
    except (DdbMigrateError, KeyboardInterrupt, Exception) as e:
        # The job's report was written before verify began: a Ctrl-C or any failure of verify
        # is written into it here, or it would say 0 for a command that exits otherwise.
        if isinstance(e, DdbMigrateError):
            code, text = e.exit_code, e.one_line()
        elif isinstance(e, KeyboardInterrupt):
            code, text = EXIT_INTERRUPTED, "interrupted"
        else:
            code, text = EXIT_FATAL, f"internal error: {type(e).__name__}"
        report.extra["verify"] = {"error": text, "exit_code": code}
        report.error_exit_code, report.error = code, report.error or f"--verify: {text}"
        if path:
            report.write_json(path)  # (redacted as it is written)
        raise
    render_report(vrep, quiet)
    report.extra["verify"] = {"exit_code": vrep.exit_code, "differences": vrep.differences, "equal": vrep.equal,
                              "missing": vrep.missing, "unexpected": vrep.unexpected, "mismatched": vrep.mismatched,
                              "diff_path": vrep.diff_path}
    if vrep.exit_code:
        report.error_exit_code = vrep.exit_code
        report.error = report.error or f"--verify found {vrep.differences:,} difference(s)"
    if path:
        report.write_json(path)
    return int(report.exit_code)


# Commands whose --report a failure must still leave behind: command -> (the report's job, the
# argument that is its source, the one that is its target). A job that fails inside its run writes
# its own report (engine/run.py); one that fails before (a missing file, an unreachable endpoint,
# a bad option value) leaves this one: the same schema, the real exit code, the error, zero counts.
# The estimate commands take --report only to mirror the job's options: they write none.
FAILURE_REPORTS: Dict[str, Tuple[str, Optional[str], Optional[str]]] = {
    "copy": ("copy", "source_table", "target_table"),
    "clean": ("clean", None, "table"),
    "export": ("export", "table", "dest"),
    "import": ("import", "source", "table"),
    "update": ("update", "table", "table"),
    "verify": ("verify", "source", "target"),
    "replicate": ("replicate", "source_table", "target_table"),
    "cutover": ("cutover", "source_table", "target_table"),
    "run": ("plan", "plan_file", None),
}
# The arguments that name a table, and the side whose --source-/--target- options apply to it.
_TABLE_ARGS = {"source_table": "source", "target_table": "target", "table": None}

FileState = Optional[Tuple[int, int, int]]


def _ended_code(path: Optional[str], before: "FileState") -> Optional[int]:
    """The exit code of the report this run wrote at ``path`` for a job that ended (not one
    stopped by the interrupt), or None."""
    if not path or "://" in path or not os.path.isfile(path) or _file_state(path) == before:
        return None  # (a FIFO or a device: opened for reading, it would block)
    try:
        with open(path, "rb") as fh:
            import orjson

            data = orjson.loads(fh.read())
    except (OSError, ValueError):
        return None
    code = data.get("exit_code") if isinstance(data, dict) else None
    if not isinstance(code, int) or isinstance(code, bool) or data.get("status") not in ("done", "dry-run", "failed"):
        return None
    return code


def _file_state(path: Optional[str]) -> FileState:
    """What tells whether ``path`` was (re)written since: an atomic write replaces the inode."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size) if st is not None else None


def _label(command: str, kw: Dict[str, Any], arg: Optional[str]) -> str:
    """How the job's own report names a side: ``table @ region @ endpoint`` for a table."""
    value = kw.get(arg) if arg else None
    if value is None or arg is None:
        return ""
    side: Optional[str] = None
    if arg in _TABLE_ARGS:
        side = _TABLE_ARGS[arg]
    elif command == "verify":  # either side of verify is a table or files
        from ..verify import is_files_location

        if is_files_location(str(value)):
            return str(value)
        side = arg
    else:
        return str(value)
    from .options import table_ref

    try:
        return table_ref(str(value), kw, side).describe()
    except DdbMigrateError:  # the bad name or endpoint the command failed on
        return str(value)


def write_failure_report(command: str, kw: Dict[str, Any], exit_code: int, error: str,
                         report: Any = None) -> Optional[str]:
    """Write the report ``--report`` asked for, of a ``command`` that failed before its job wrote
    one: ``report`` when the error carried one, else a report with no counts. Returns a one-line
    problem when it could not be written (a report that cannot be written must not hide the error)."""
    path = kw.get("report") or kw.get("report_path")
    kind = FAILURE_REPORTS.get(command)
    if not path or kind is None:
        return None
    job, source_arg, target_arg = kind
    status = "interrupted" if exit_code == EXIT_INTERRUPTED else "failed"
    try:
        source, target = _label(command, kw, source_arg), _label(command, kw, target_arg)
        if job == "update":
            target += " (in place)"
        if job == "plan" or job == "cutover":
            import orjson

            from ..logs import redact_obj
            from ..state.checkpoint import atomic_write

            doc: Dict[str, Any]
            if job == "plan":
                from ..plan.report import PlanReport

                doc = PlanReport(plan=source, name=os.path.splitext(os.path.basename(source))[0],
                                 status=status).to_dict()
                doc.update(exit_code=exit_code, error=error)
            else:
                from ..jobs.cutover import CutoverReport

                doc = CutoverReport(source=source, target=target, go=False, reason=error,
                                    exit_code=exit_code).to_dict()
            atomic_write(path, orjson.dumps(redact_obj(doc), option=orjson.OPT_INDENT_2, default=str))
            return None
        from ..reporting.report import Report, utcnow

        if not isinstance(report, Report):
            if job == "verify":
                from ..verify.report import VerifyReport

                report = VerifyReport(source=source, target=target)
            else:
                from ..core.records import COUNTER_NAMES

                report = Report(job=job, source=source, target=target, counters=dict.fromkeys(COUNTER_NAMES, 0))
            report.finished_at = utcnow()
        report.status = status
        report.error = report.error or error
        report.error_exit_code = exit_code
        report.write_json(path)
    except Exception as e:  # a path that is a folder, a full disk: said, after the error itself
        from ..logs import redact

        return f"could not write the report {path}: {type(e).__name__}: {redact(str(e))}"
    return None


EXIT_BROKEN_PIPE = 128 + 13  # as a shell reports a process ended by SIGPIPE


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def handle_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line on stderr and the error class's exit code.

    It also gives the command the logging options (-v, --log-level, --log-file) and applies them
    before the command runs: every command logs the same way, and the command never sees them."""
    from .options import LOGGING_KEYS, logging_options

    def run(*args: Any, **kw: Any) -> Any:
        quiet = bool(kw.get("quiet"))
        from ..logs import configure_logging, redact

        verbose, log_level, log_file = (kw.pop(k, None) for k in LOGGING_KEYS)
        linger = float(kw.pop("metrics_linger", None) or 0.0)
        level = log_level or ("debug" if (verbose or 0) > 1 else "info" if verbose else None) \
            or os.environ.get("DDBMIGRATE_LOG_LEVEL")
        try:
            configure_logging(level or "warning", log_file)
        except ValueError as e:  # only from DDBMIGRATE_LOG_LEVEL: --log-level is a checked choice
            click.echo(f"error: DDBMIGRATE_LOG_LEVEL={os.environ.get('DDBMIGRATE_LOG_LEVEL', '')!r}: {e}", err=True)
            sys.exit(EXIT_USAGE)
        except OSError as e:
            click.echo(f"error: cannot open --log-file {log_file}: {e.strerror or e}", err=True)
            sys.exit(EXIT_USAGE)
        # The outcome goes to the log too (at info: -v), so a --log-file tells how the command ended.
        log = logging.getLogger("ddbmigrate.cli")
        name = f.__name__.removesuffix("_cmd").replace("_", " ")
        # --report of a job that fails before it could write one (see FAILURE_REPORTS): a report
        # still tells how it ended, and a stale one of an earlier run is not taken for this one's.
        before = _file_state(kw.get("report") or kw.get("report_path"))

        refused_paths: List[str] = []  # the output files themselves were refused: none is written

        def report_failure(code: int, error: str, report: Any = None) -> None:
            if refused_paths:
                return
            if _file_state(kw.get("report") or kw.get("report_path")) == before:
                problem = write_failure_report(name, kw, code, error, report)
                if problem:
                    click.echo(f"warning: {problem}", err=True)

        # Until a job installs its own handler (once it runs), SIGTERM is a Ctrl-C: checks and
        # samples before the run end as "interrupted" (exit 130, with their --report), not killed.
        restore = install_handler(_terminate_as_interrupt, (signal.SIGTERM,))
        if linger:
            from ..reporting import metrics

            metrics.set_linger(linger)
        try:
            try:
                if linger and kw.get("metrics_port") is None:
                    raise click.UsageError("--metrics-linger needs --metrics-port")
                from ..errors import UsageError
                from ..state.paths import outputs_problem

                problem = outputs_problem(
                    {"--report": kw.get("report") or kw.get("report_path"), "--dead-letter": kw.get("dead_letter"),
                     "--log-file": log_file, "--checkpoint": kw.get("checkpoint")},
                    [str(kw[k]) for k in ("source", "plan_file", "spec") if isinstance(kw.get(k), str)])
                if problem:
                    refused_paths.append(problem)
                    raise UsageError(problem)
                code = f(*args, **kw)
            except Exception as e:
                from ..aws.control_plane import control_error, is_botocore_error

                if not is_botocore_error(e):
                    raise
                # A control-plane call that no job step turned into one of ours: still one line and
                # the exit code its kind deserves (75 for an endpoint that did not answer).
                raise control_error(e) from None
            finally:
                restore()  # before the failure is reported: a second SIGTERM there ends the process
        except DdbMigrateError as e:
            report = getattr(e, "report", None)
            if report is not None and not quiet:
                # The table without its own "error:" line: the one below says it, once, last.
                shown = copy.copy(report)
                shown.error = None
                draw_report(shown)
            line = redact(e.one_line())
            report_failure(e.exit_code, line, report)
            # A message may quote the data (a transform's exception, an item's value): printed
            # inertly, an escape sequence in it does not drive the terminal.
            click.echo(f"error: {inert(line)}", err=True)
            if e.hint and e.hint not in e.one_line():
                click.echo(f"hint: {inert(redact(e.hint))}", err=True)
            log.info("%s ended with exit %d: %s", name, e.exit_code, line)
            sys.exit(e.exit_code)
        except BrokenPipeError:
            # The reader of our output went away (`... | head`): nothing more can be said there.
            # stdout is pointed at /dev/null so the interpreter's own flush at exit stays quiet.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            log.info("%s: its output was closed by the reader (exit %d)", name, EXIT_BROKEN_PIPE)
            sys.exit(EXIT_BROKEN_PIPE)
        except KeyboardInterrupt:
            ended = _ended_code(kw.get("report") or kw.get("report_path"), before)
            if ended is not None:
                # The job had ended and written its report when the signal came (while its summary
                # was drawn): the report stands, and the exit code is the one it gives, not 130
                # for a job that is complete (a wrapper would resume it for nothing).
                click.echo(f"interrupted after the job ended; its report stands (exit {ended})", err=True)
                log.info("%s interrupted after it ended (exit %d)", name, ended)
                sys.exit(ended)
            report_failure(EXIT_INTERRUPTED, "interrupted")
            click.echo("interrupted", err=True)
            log.info("%s interrupted (exit %d)", name, EXIT_INTERRUPTED)
            sys.exit(EXIT_INTERRUPTED)
        except click.exceptions.ClickException as e:
            # A usage error found once the options were read (a combination of them): the job
            # was asked for, so its --report says why it did not run.
            report_failure(e.exit_code, redact(e.format_message()).replace("\n", " "))
            raise
        except Exception as e:
            if os.environ.get("DDBMIGRATE_DEBUG"):
                raise
            if isinstance(e, OSError) and e.strerror:
                # The machine's answer, not a defect of ours: a full disk, a folder that takes no
                # file, a file that went away. One line naming the file when the system says it.
                where = f": {e.filename}" if e.filename else (
                    " (writing a file of this job: the export folder, the checkpoint, the dead letters or a "
                    "spill folder)" if e.errno == errno.ENOSPC else "")
                text = redact(f"{e.strerror}{where}")
                report_failure(EXIT_FATAL, text)
                click.echo(f"error: {inert(text)}", err=True)
                log.info("%s ended with exit %d: %s", name, EXIT_FATAL, text)
                sys.exit(EXIT_FATAL)
            # Redacted before the cut: half a secret would no longer be recognised.
            text = f"internal error: {type(e).__name__}: {redact(str(e))[:500]}"
            report_failure(EXIT_FATAL, text)
            click.echo(f"{inert(text)} (set DDBMIGRATE_DEBUG=1 for a traceback)", err=True)
            log.info("%s ended with an internal error (exit %d): %s", name, EXIT_FATAL, type(e).__name__)
            sys.exit(EXIT_FATAL)
        log.info("%s ended with exit %d", name, code or 0)
        sys.exit(code or 0)

    @functools.wraps(f)
    def wrapper(*args: Any, **kw: Any) -> Any:
        try:
            return run(*args, **kw)
        finally:
            # --metrics-linger: the final figures stay served a while, whatever the outcome.
            from ..reporting import metrics

            metrics.wait_lingering(lambda text: None if kw.get("quiet") else click.echo(text, err=True))

    return logging_options(wrapper)
