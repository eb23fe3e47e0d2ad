"""Every rich table the CLI prints, drawn from report data (domain classes draw nothing).

Each ``render_*`` function takes a report object and an optional rich ``Console`` and prints to
it: stderr by default, so stdout stays free for machine-readable output (except
:func:`render_run_report`, the output of ``ddbmigrate report`` itself, on stdout). rich is
imported inside the functions: importing this module stays cheap for library users who never
render.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:
    from .html import RunReport
    from .report import Report


# How a dry run names its counters: words that cannot be mistaken for writes.
DRY_RUN_LABELS: Dict[str, str] = {
    "read": "in (read)",
    "out": "out (after transform)",
    "written": "would write",
    "dropped": "dropped by transform",
    "fanout_extra": "fan-out (extra items)",
    "dead_lettered": "invalid (would dead-letter)",
}


# Control characters (C0 but the newline, DEL, C1): a name or message from the data must not move
# the cursor, set the window title or clear the screen of the terminal it is printed on.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def inert(text: Any) -> str:
    """``text`` with its control characters escaped, for output that is not rich's."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _plain(text: Any) -> str:
    """``text`` from the data or the user (a name, a path, a message) as it is to be printed:
    control characters escaped, and rich's markup too (an attribute named "[/]" stopped the
    summary with a MarkupError; "[bold]" restyled the rest)."""
    from rich.markup import escape

    return escape(inert(text))


def _console(console: Any, stderr: bool = True) -> Any:
    if console is not None:
        return console
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    # Off a terminal (a log, a pipe, CI) nothing may be cut short: "10,0…" is not a number.
    return Console(stderr=stderr, width=None if tty else 240)


def render_report(report: "Report", console: Any = None) -> None:
    """A job's summary table on the terminal (stderr by default), then its error if any."""
    from rich.table import Table

    from .html import UNSETTLED, unsettled_counts

    console = _console(console)
    t = Table(title=f"ddbmigrate {report.job}: {report.status}", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", justify="right")
    if report.source:
        t.add_row("source", _plain(report.source))
    if report.target:
        t.add_row("target", _plain(report.target))
    dry = report.status == "dry-run"
    # A dry run always shows the whole funnel (in, out, dropped, fan-out, invalid), in words
    # that cannot be mistaken for writes.
    labels = DRY_RUN_LABELS if dry else {}
    unsettled = unsettled_counts(report.extra.get("unsettled"))
    for k in ("read", "out", "written", "deleted", "skipped_existing", "dropped", "fanout_extra",
              "collapsed", "dead_lettered", "transform_errors", "unchanged", "retried_races", "vanished",
              "condition_failed"):
        v = report.count(k)
        if v or k in ("read", "written", "dead_lettered") or (dry and k in labels):
            t.add_row(labels.get(k, k.replace("_", " ")), f"{v:,}")
        if k in unsettled:
            # Acknowledged (or dead-lettered), in chunks the stop cut short: the checkpoint is before them.
            t.add_row(UNSETTLED[k][0], f"{unsettled[k]:,} ({UNSETTLED[k][1]})")
    retries = ", ".join(f"{k} {v}" for k, v in sorted(report.retries.items()) if v) or "0"
    t.add_row("retries", retries)
    for name, lim in sorted(report.rate_limits.items()):
        if lim.get("declared") and lim.get("auto"):
            last = lim.get("declared_last")
            changed = "" if last is None else (
                f", {last:,.0f}/s later (the table's capacity changed)" if last else
                ", none declared later (left to the table's push-back)")
            t.add_row(f"{name} rate", f"started at the table's own {lim['declared']:,.0f}/s{changed}; "
                                      f"{lim.get('current', 0):,.0f}/s at the end ({lim.get('throttle_events', 0)} throttles)")
            continue
        if lim.get("auto") and not lim.get("current"):
            t.add_row(f"{name} rate", f"no capacity limit found ({lim.get('throttle_events', 0)} throttles retried, "
                                      "none a sign of one)")
            continue
        if lim.get("auto"):
            t.add_row(f"{name} rate", f"found from throttles: held at {lim.get('current', 0):,.0f}/s "
                                      f"({lim.get('throttle_events', 0)} throttles)")
            continue
        t.add_row(f"{name} rate limit", f"{lim.get('limit', 0):,.0f}/s (now {lim.get('current', 0):,.0f}/s, "
                                         f"{lim.get('throttle_events', 0)} throttles)")
    resumed = report.extra.get("resumed")
    if isinstance(resumed, dict) and isinstance(resumed.get("counters_before"), dict):
        earlier = resumed["counters_before"]
        did = int(earlier.get("written", 0) or 0) + int(earlier.get("deleted", 0) or 0) or int(earlier.get("read", 0) or 0)
        t.add_row("resumed", f"{did:,} done by earlier runs (in the counts above); RCU/WCU, duration and items/s "
                             "are this run's")
    t.add_row("consumed RCU / WCU", f"{report.consumed_read_units:,.1f} / {report.consumed_write_units:,.1f}")
    t.add_row("duration", f"{report.duration_seconds:,.1f} s")
    t.add_row("items/s", f"{report.items_per_second:,.0f}")
    cleaned = report.extra.get("clean_target")
    if isinstance(cleaned, dict):
        left = cleaned.get("left_after_clean")
        t.add_row("target emptied first", f"{int(cleaned.get('deleted') or 0):,} items deleted in "
                                          f"{float(cleaned.get('seconds') or 0):,.1f} s"
                                          + (f"; {_plain(str(left))} written meanwhile left in it" if left else ""))
    for k, v in report.extra.items():
        if isinstance(v, (str, int, float)):
            t.add_row(k.replace("_", " "), str(v))
    est = report.extra.get("estimate")
    if isinstance(est, dict) and "estimated" in est:  # --max-cost ran an estimate: show it against the run
        from ..estimate.guard import comparison_lines

        first, second = comparison_lines(est)
        t.add_row("estimate", first.split(":", 1)[1].strip())
        t.add_row("actual", second.split(":", 1)[1].strip())
    if report.dead_lettered or report.dead_letter_path and os.path.exists(report.dead_letter_path):
        t.add_row("dead-letter file", _plain(report.dead_letter_path or "(not kept)"))
    if not report.balanced():
        t.add_row("[red]counts[/red]", "[red]do not add up[/red]")
    console.print(t)
    if report.error:
        console.print(f"[red]error:[/red] {_plain(report.error)}")


def render_run_report(rr: "RunReport", console: Any = None) -> None:
    """``ddbmigrate report``: one row per job of a saved report (stdout by default), with a
    throughput sparkline, then dead-letter reasons, errors and segment timings."""
    from rich.table import Table

    from .html import UNSETTLED, backfill_text, sparkline, status_label, throttled, throughput

    console = _console(console, stderr=False)  # stdout: this summary is the command's output
    top = status_label(rr.status, rr.exit_code, sum(r.dead for r in rr.runs))
    t = Table(title=f"ddbmigrate {_plain(rr.title)}: {top}" + (f" (exit {rr.exit_code})" if rr.exit_code is not None
                                                                else ""), title_justify="left")
    for col, just in (("job", "left"), ("status", "left"), ("read", "right"), ("written", "right"),
                      ("dead", "right"), ("retries", "right"), ("throttles", "right"), ("seconds", "right"),
                      ("items/s", "right"), ("throughput", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rr.runs:
        # Green only for exit 0: a verify that found differences read both sides to the end
        # ("done") and exits 4.
        label = status_label(r.status, r.exit_code, r.dead)
        colour = "green" if label == "done" else "red" if label in ("failed", "blocked", "differences") \
            else "yellow"
        t.add_row(_plain(r.name), f"[{colour}]{label}[/{colour}]", f"{r.counters.get('read', 0):,}",
                  f"{r.counters.get('written', 0):,}", f"{r.dead:,}", f"{sum(r.retries.values()):,}",
                  f"{throttled(r.retries):,}", f"{r.duration:,.1f}", f"{r.items_per_second:,.0f}",
                  sparkline([v for _, v in throughput(r.timeline)]))
    if len(rr.runs) > 1:
        def tot(k: str) -> int:
            return sum(r.counters.get(k, 0) for r in rr.runs)

        t.add_row("[bold]total", "", f"{tot('read'):,}", f"{tot('written'):,}", f"{tot('dead_lettered'):,}",
                  f"{sum(sum(r.retries.values()) for r in rr.runs):,}",
                  f"{sum(throttled(r.retries) for r in rr.runs):,}", f"{rr.duration:,.1f}", "",
                  sparkline([v for _, v in throughput(rr.total_timeline)]))
    console.print(t)
    if rr.error:
        console.print(f"[red]error:[/red] {_plain(rr.error)}")
    for r in rr.runs:
        for k, n in r.unsettled.items():
            # Beside "written" above, which stops at the checkpoint: the target holds these too.
            console.print(f"{_plain(r.name)}: {UNSETTLED[k][0]} {n:,} ({UNSETTLED[k][1]})")
        if r.backfill:
            console.print(f"{_plain(r.name)}: {backfill_text(r.backfill)}")
        if r.verdict is not None:
            _print_verdict(console, f"{r.name} (verify after)" if r.verdict.after else r.name, r.verdict)
        if r.dead_letter_reasons:
            reasons = ", ".join(f"{_plain(k)} {v:,}" for k, v in sorted(r.dead_letter_reasons.items(), key=lambda x: -x[1]))
            console.print(f"[red]{_plain(r.name)}[/red] dead letters: {reasons}"
                          + (f" (in {_plain(r.dead_letter_path)})" if r.dead_letter_path else ""))
        if r.error:
            console.print(f"[red]{_plain(r.name)}:[/red] {_plain(r.error)}")
        if r.estimate and "estimated" in r.estimate:
            from ..estimate.guard import comparison_lines

            for line in comparison_lines(r.estimate):
                console.print(f"{_plain(r.name)}: {_plain(line)}")
        if r.unit_seconds:
            vals = sorted(r.unit_seconds.values())
            console.print(f"{_plain(r.name)}: {len(vals)} segment(s), fastest {vals[0]:.1f}s, median "
                          f"{vals[len(vals) // 2]:.1f}s, slowest {vals[-1]:.1f}s")


def _print_verdict(console: Any, name: str, v: "Verdict") -> None:
    """A verify's verdict under a summary table: its counts by category and where the differences are."""
    from ..verify.report import CATEGORIES

    colour = "red" if v.failed else "green" if v.compared or v.repaired else "yellow"
    line = f"{_plain(name)}: [{colour}]{_plain(v.text)}[/{colour}]"
    if v.compared:  # an unfinished verify has no counts by outcome: zeros would read as found
        shown = [k for k in ("equal",) + CATEGORIES
                 if k in ("equal", "missing", "unexpected", "mismatched") or v.counts.get(k)]
        line += ": " + ", ".join(f"{k} {v.counts.get(k, 0):,}" for k in shown)
    console.print(line)
    if v.diff_path:
        console.print(f"{_plain(name)}: differences file {_plain(v.diff_path)}")
    elif v.differences:
        console.print(f"{_plain(name)}: differences file not kept (use --diff FILE to list them all)")


if TYPE_CHECKING:
    from ..plan.report import PlanReport
    from .html import Verdict

# A plan job's status, coloured so a failed job stands out in a long table.
_PLAN_STATUS_COLOURS: Dict[str, str] = {"done": "green", "failed": "red", "interrupted": "yellow",
                                        "blocked": "red", "differences": "red"}


def render_plan_report(report: "PlanReport", console: Any = None) -> None:
    """A plan run: one row per job plus a total row, then each job's error and each verify's
    verdict, on stderr by default."""
    from rich.table import Table

    from .html import backfill_counts, backfill_text, verdict_of

    console = _console(console)
    t = Table(title=f"ddbmigrate plan {report.name}: {report.status}", title_justify="left")
    for col, just in (("job", "left"), ("kind", "left"), ("status", "left"), ("read", "right"),
                      ("written", "right"), ("dead", "right"), ("retries", "right"), ("seconds", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for j in report.jobs:
        c = (j.report or {}).get("counters") or {}
        r = sum((j.report or {}).get("retries", {}).values()) if j.report else 0
        colour = _PLAN_STATUS_COLOURS.get(j.status, "")
        status = f"[{colour}]{j.status}[/{colour}]" if colour else j.status
        if j.resumed_from_state:
            status += " (earlier run)"
        t.add_row(_plain(j.name), j.kind, status, f"{c.get('read', 0):,}", f"{c.get('written', 0):,}",
                  f"{c.get('dead_lettered', 0):,}", f"{r:,}", f"{j.duration_seconds:,.1f}")
    tc = report.totals.get("counters", {})
    t.add_row("[bold]total", "", "", f"{tc.get('read', 0):,}", f"{tc.get('written', 0):,}",
              f"{report.totals.get('dead_lettered', 0):,}", f"{sum(report.totals.get('retries', {}).values()):,}",
              f"{report.duration_seconds:,.1f}")
    console.print(t)
    for j in report.jobs:
        backfill = backfill_counts((j.report or {}).get("extra"))
        if backfill:
            console.print(f"{_plain(j.name)}: {backfill_text(backfill)}")
        if j.error:
            console.print(f"[red]{_plain(j.name)}:[/red] {_plain(j.error)}")
        v = verdict_of(j.report) or verdict_of(j.verify, after=True)
        if v is not None:
            _print_verdict(console, f"{j.name} (verify after)" if v.after else j.name, v)
    if not report.balanced():
        console.print("[red]counts do not add up in at least one job[/red]")


# --------------------------------------------------------------------------- verify and cutover

if TYPE_CHECKING:
    from ..jobs.cutover import CutoverReport
    from ..verify.report import VerifyReport


def render_verify_report(report: "VerifyReport", console: Any = None) -> None:
    """What verify found (stderr by default): counts by category, a bodiless preview of the differences,
    the sampling confidence and the repair outcome."""
    import orjson
    from rich.table import Table

    from ..verify.report import CATEGORIES

    from .html import verdict_text

    console = _console(console)
    verdict = verdict_text(report.compared, report.differences, report.repair is not None, report.remaining)
    t = Table(title=f"ddbmigrate verify: {report.status}: {verdict}", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", justify="right")
    t.add_row("source", _plain(report.source))
    t.add_row("target", _plain(report.target))
    mode = "keys only" if report.keys_only else "full items"
    if report.sample_rate is not None:
        mode += f", sample {report.sample_rate * 100:.4g}% of keys"
    t.add_row("compared", mode)
    c = report.count
    t.add_row("source read", f"{c('source_read'):,}")
    if report.extra.get("transform"):
        t.add_row("expected after transform", f"{c('expected') + c('sampled_out_expected'):,}")
        for k in ("dropped", "fanout_extra", "transform_errors"):
            if c(k):
                t.add_row(k.replace("_", " "), f"{c(k):,}")
    t.add_row("target read", f"{c('target_read'):,}")
    if report.sample_rate is not None:
        t.add_row("not in the sample", f"{c('sampled_out_expected'):,} expected / {c('sampled_out_actual'):,} target")
    verdict_known = report.compared or report.repair is not None
    if verdict_known:  # an unfinished verify has no counts by outcome: zeros would read as found
        t.add_row("equal", f"{report.equal:,}")
    for k in CATEGORIES:
        v = getattr(report, k)
        if v or (verdict_known and k in ("missing", "unexpected", "mismatched")):
            t.add_row(f"[red]{k}[/red]" if v else k, f"{v:,}")
    for k in ("expected_duplicates", "actual_duplicates"):
        if c(k):
            t.add_row(k.replace("_", " "), f"{c(k):,}")
    t.add_row("partitions / spilled", f"{report.partitions} / {report.spilled_bytes / 1e6:,.1f} MB")
    t.add_row("consumed RCU", f"{report.consumed_read_units:,.1f}")
    if report.consumed_write_units:
        t.add_row("consumed WCU (repair)", f"{report.consumed_write_units:,.1f}")
    t.add_row("duration", f"{report.duration_seconds:,.1f} s")
    t.add_row("items/s", f"{report.items_per_second:,.0f}")
    if report.diff_path:
        t.add_row("differences file", _plain(report.diff_path))
    if report.compared and not report.balanced():
        t.add_row("[red]counts[/red]", "[red]do not add up[/red]")
    console.print(t)
    for d in report.preview[:10]:
        paths = ", ".join(_plain(p) for p in d.get("paths", [])[:5])
        # A record with no key (unreadable, or invalid before its key was known) is named by where it was read.
        where = orjson.dumps(d["key"]).decode() if d.get("key") is not None else d.get("origin") or "null"
        console.print(f"  {d['category']:<11} {_plain(where)}" + (f"  ({paths})" if paths else "")
                      + (f"  {_plain(d['reason'])}" if d.get("reason") else ""))
    if report.differences > len(report.preview[:10]):
        console.print(f"  ... {report.differences - len(report.preview[:10]):,} more"
                      + (f" in {_plain(report.diff_path)}" if report.diff_path else " (use --diff FILE to list them all)"))
    if report.confidence.get("statement"):
        console.print(f"sample: {report.confidence['statement']}")
    if report.repair is not None:
        r = report.repair
        console.print(f"repair: {r.get('put', 0):,} put, {r.get('deleted', 0):,} deleted"
                      + (f", {r['delete_skipped']:,} unexpected kept (not confirmed)" if r.get("delete_skipped") else "")
                      + (f", {r['rejected']:,} rejected" if r.get("rejected") else "")
                      + f"; re-checked {r.get('rechecked', 0):,} keys with consistent reads: "
                      + f"{r.get('still_different', 0):,} still different")
    if report.error:
        console.print(f"[red]error:[/red] {_plain(report.error)}")


def render_cutover_report(report: "CutoverReport", console: Any = None) -> None:
    """The cutover gate's GO / NO-GO (stderr by default), with the numbers behind it."""
    from rich.table import Table

    console = _console(console)
    t = Table(title=f"ddbmigrate cutover: {'GO' if report.go else 'NO-GO'}", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", justify="right")
    t.add_row("source", _plain(report.source))
    t.add_row("target", _plain(report.target))
    t.add_row("replicator", str(report.replicator_state))
    t.add_row("lag", "-" if report.lag_seconds is None else f"{report.lag_seconds:.1f} s")
    t.add_row("pending records", "-" if report.pending_records is None else str(report.pending_records))
    t.add_row("quiet for", "-" if report.quiet_seconds is None else f"{report.quiet_seconds:.1f} s")
    for k, v in report.counts.items():
        t.add_row(k.replace("_", " "), str(v))
    if report.verify is not None:
        for k in ("equal", "missing", "unexpected", "mismatched", "invalid"):
            if k in report.verify:
                t.add_row(f"verify {k}", str(report.verify[k]))
    if report.transform:
        t.add_row("transform", _plain(report.transform))
    t.add_row("waited", f"{report.waited_seconds:.1f} s")
    t.add_row("decision", ("[green]GO[/green]: " if report.go else "[red]NO-GO[/red]: ") + _plain(report.reason))
    console.print(t)
    if report.differing:
        import orjson

        console.print(f"first {len(report.differing)} differing keys"
                      + (f" (all differences: {_plain(report.diff_path)})" if report.diff_path else "") + ":")
        for d in report.differing:
            console.print("  " + orjson.dumps(d, default=str).decode(), markup=False, highlight=False)
