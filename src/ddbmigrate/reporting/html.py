"""``ddbmigrate report``: a finished run's JSON report as one HTML page (the terminal summary is
:func:`ddbmigrate.reporting.terminal.render_run_report`, drawn from the same :class:`RunReport`).

Accepts what ``--report`` writes: a single job's :class:`~ddbmigrate.reporting.report.Report` or a plan's
:class:`~ddbmigrate.plan.report.PlanReport` (``"kind": "plan"``). Both become a list of *runs* (one per
job) with counters, retries, durations, dead-letter counts and a timeline of ``{t, done,
retries, throttles}`` points, plus what the job's own summary said beyond its counters: a
verify's verdict (:class:`Verdict`) and a stopped run's writes past its checkpoint (:data:`UNSETTLED`).

Invariant: the HTML page is self-contained (no external asset, no network request): the charts
are inline SVG drawn here, in Python, so the page reads the same offline, in a mail attachment,
or with scripts off; a small inline script only adds hover read-outs. Every string from the
report is HTML-escaped. No item body is shown (reports carry none by default, invariant 8).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import orjson

from ..errors import EXIT_DEAD_LETTERS, EXIT_DIFFERENCES, UsageError

PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#65a30d", "#db2777", "#475569",
           "#ca8a04")
STATUS_COLOURS = {"done": "#16a34a", "failed": "#dc2626", "interrupted": "#d97706", "blocked": "#dc2626",
                  "differences": "#dc2626", "not-started": "#94a3b8", "dry-run": "#2563eb",
                  "done with dead letters": "#d97706", "stopped": "#16a34a"}


def status_label(status: str, exit_code: Optional[int], dead: int) -> str:
    """A run that ended with anything but exit 0 is not a plain green "done": a verify that found
    differences (exit 4) finishes its work, "done", and still fails its purpose."""
    if status != "done":
        return status
    if exit_code == EXIT_DIFFERENCES:
        return "differences"
    if exit_code == EXIT_DEAD_LETTERS or dead:
        return "done with dead letters"
    if exit_code:
        return f"done, exit {exit_code}"
    return status


# A stopped run's writes, deletes and dead letters past its checkpoint (``extra.unsettled``), in
# the words of every summary that shows them: the job's own, ``ddbmigrate report`` and the page.
UNSETTLED: Dict[str, Tuple[str, str]] = {
    "written": ("also written, not settled", "a resume writes them again"),
    "deleted": ("also deleted, not settled", "a resume deletes them again"),
    "dead_lettered": ("also dead-lettered, not settled", "in the file; a resume reads them again and cuts them off"),
}


def unsettled_counts(unsettled: Any) -> Dict[str, int]:
    """The non-zero counts of an ``extra.unsettled``, in :data:`UNSETTLED`'s order."""
    if not isinstance(unsettled, Mapping):
        return {}
    return {k: _count(unsettled.get(k)) for k in UNSETTLED if _count(unsettled.get(k))}


def _count(v: Any) -> int:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def backfill_counts(extra: Any) -> Dict[str, int]:
    """A replication's backfill (``extra.backfill_*``): its counters are the stream's alone, so
    one that backfilled a whole table read "written 0" beside its own summary's "backfill written"."""
    if not isinstance(extra, Mapping) or not any(f"backfill_{k}" in extra for k in ("read", "written")):
        return {}
    return {k: _count(extra.get(f"backfill_{k}")) for k in ("read", "written", "dead_lettered")}


def backfill_text(counts: Dict[str, int]) -> str:
    return (f"backfill read {counts['read']:,}, written {counts['written']:,}, dead-lettered "
            f"{counts['dead_lettered']:,} (before the stream: not in the stream's counts)")


def verdict_text(compared: bool, differences: int, repaired: bool, remaining: int) -> str:
    """A verify's verdict as its own summary words it; a verify that stopped before its end has none."""
    if not (compared or repaired):
        return "no verdict (it stopped before its end)"
    text = "EQUAL" if not differences else f"DIFFERENT ({differences:,})"
    if repaired and differences:
        text += " - repaired" if not remaining else f" - {remaining:,} remain after repair"
    return text


@dataclass
class Verdict:
    """What a verify found, read from its report: a job's "done" says only that it read both
    sides to the end; this says whether they are equal."""

    compared: bool
    counts: Dict[str, int]  # "equal", then each category of difference
    differences: int
    diff_path: Optional[str] = None
    repaired: bool = False
    remaining: int = 0
    after: bool = False  # a job's verify_after, not a verify job of its own

    @property
    def text(self) -> str:
        return verdict_text(self.compared, self.differences, self.repaired, self.remaining)

    @property
    def failed(self) -> bool:
        """Differences left (verify's exit 4)."""
        return self.remaining > 0


def verdict_of(d: Any, after: bool = False) -> Optional[Verdict]:
    """The verdict in a report dict when it is a verify's (None for any other job's)."""
    if not isinstance(d, dict) or d.get("job") != "verify" or "missing" not in d:
        return None
    from ..verify.report import CATEGORIES

    counts = {k: _count(d.get(k)) for k in ("equal",) + CATEGORIES}
    differences = sum(counts[k] for k in CATEGORIES)
    compared = d.get("status") == "done"
    return Verdict(compared=compared, counts=counts, differences=differences,
                   diff_path=str(d["diff_path"]) if d.get("diff_path") else None,
                   repaired=d.get("repair") is not None,
                   remaining=_count(d.get("remaining")) if "remaining" in d else differences if compared else 0,
                   after=after)


@dataclass
class Run:
    """One job of a report, normalised."""

    name: str
    kind: str
    status: str
    counters: Dict[str, int] = field(default_factory=dict)
    retries: Dict[str, int] = field(default_factory=dict)
    duration: float = 0.0
    offset: float = 0.0
    timeline: List[Dict[str, Any]] = field(default_factory=list)
    dead_letter_reasons: Dict[str, int] = field(default_factory=dict)
    dead_letter_path: Optional[str] = None
    dead_letter_messages: Dict[str, str] = field(default_factory=dict)
    unit_seconds: Dict[str, float] = field(default_factory=dict)
    error: Optional[str] = None
    items_per_second: float = 0.0
    source: str = ""
    target: str = ""
    balanced: Optional[bool] = None
    estimate: Optional[Dict[str, Any]] = None  # estimated vs actual, when the run was estimated first
    exit_code: Optional[int] = None
    unsettled: Dict[str, int] = field(default_factory=dict)  # see UNSETTLED
    verdict: Optional[Verdict] = None  # a verify's, or a job's verify_after
    backfill: Dict[str, int] = field(default_factory=dict)  # a replication's, see backfill_counts

    @property
    def dead(self) -> int:
        return int(self.counters.get("dead_lettered", 0) or 0)


@dataclass
class RunReport:
    title: str
    status: str
    exit_code: Optional[int]
    duration: float
    started_at: Optional[str]
    runs: List[Run]
    total_timeline: List[Dict[str, Any]] = field(default_factory=list)
    is_plan: bool = False
    error: Optional[str] = None  # a plan's own: it failed before any job (no job row to carry it)


# --------------------------------------------------------------------------- loading
#
# A report is read field by field, each one checked for its type as it is read: a report edited
# by hand (a count written as text, a list where an object was, a field removed) is one line
# naming the file and the field (exit 2), never a traceback or an internal error half-way through
# the page. A field ddbmigrate may leave out (older reports, jobs that stopped early) takes its
# default; one every report of its kind has is required.


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, list):
        return "a list"
    return "an object"


class _Fields:
    """One JSON object of a report and where it is in the file (``jobs[2].report``): every read
    checks the field's type, and a wrong one is a UsageError naming the field."""

    def __init__(self, d: Mapping[str, Any], at: str = "") -> None:
        self.d = d
        self.at = at

    def where(self, key: str) -> str:
        return f"{self.at}.{key}" if self.at else key

    def bad(self, key: str, expected: str, found: Any = None, missing: bool = False) -> UsageError:
        what = "is missing" if missing else f"is {_kind(found)}"
        return UsageError(f"field {self.where(key)} {what} (expected {expected})")

    def has(self, key: str) -> bool:
        return self.d.get(key) is not None

    def _get(self, key: str, expected: str, required: bool) -> Any:
        v = self.d.get(key)
        if v is None and required:
            raise self.bad(key, expected, missing=key not in self.d, found=v)
        return v

    def text(self, key: str, default: str = "", required: bool = False) -> str:
        v = self._get(key, "text", required)
        if v is None:
            return default
        if not isinstance(v, str):
            raise self.bad(key, "text", v)
        return v

    def opt_text(self, key: str) -> Optional[str]:
        return self.text(key) if self.has(key) else None

    def number(self, key: str, default: float = 0.0, required: bool = False) -> float:
        v = self._get(key, "a number", required)
        if v is None:
            return default
        return _number(v, lambda: self.bad(key, "a number", v), self.where(key))

    def opt_number(self, key: str) -> Optional[float]:
        return self.number(key) if self.has(key) else None

    def opt_int(self, key: str) -> Optional[int]:
        v = self.d.get(key)
        if v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.bad(key, "a whole number", v)
        return v

    def opt_bool(self, key: str) -> Optional[bool]:
        v = self.d.get(key)
        if v is not None and not isinstance(v, bool):
            raise self.bad(key, "true or false", v)
        return v

    def obj(self, key: str, required: bool = False) -> "_Fields":
        v = self._get(key, "an object", required)
        if v is None:
            return _Fields({}, self.where(key))
        if not isinstance(v, dict):
            raise self.bad(key, "an object", v)
        return _Fields(v, self.where(key))

    def opt_obj(self, key: str) -> Optional["_Fields"]:
        return self.obj(key) if self.has(key) else None

    def objs(self, key: str, required: bool = False) -> List["_Fields"]:
        v = self._get(key, "a list of objects", required)
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.bad(key, "a list of objects", v)
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                raise UsageError(f"field {self.where(key)}[{i}] is {_kind(item)} (expected an object)")
            out.append(_Fields(item, f"{self.where(key)}[{i}]"))
        return out

    def numbers(self, key: str, required: bool = False) -> Dict[str, float]:
        """An object of numbers (counters, retries, seconds by segment)."""
        f = self.obj(key, required)
        return {str(k): f.number(str(k), required=True) for k in f.d}

    def counts(self, key: str, required: bool = False) -> Dict[str, int]:
        """An object of counts: whole numbers stay exact (past 2**53 too), others are cut to one."""
        f = self.obj(key, required)
        out: Dict[str, int] = {}
        for k, v in f.d.items():
            n = f.number(str(k), required=True)  # (checks it)
            out[str(k)] = v if isinstance(v, int) and not isinstance(v, bool) else int(n)
        return out


# Every figure of a report (counts, seconds, units, dollars, a timeline's points) is one of these:
# no run counts or lasts more, and the page's arithmetic (rates, scales) stays finite.
MAX_FIGURE = 1e15


def _number(v: Any, bad: Callable[[], UsageError], where: str) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise bad()
    if not 0 <= v <= MAX_FIGURE:  # (compared as given: a float of a 400-digit integer overflows)
        raise UsageError(f"field {where} is {v!r:.40} (expected a number from 0 to {MAX_FIGURE:.0e})")
    return float(v)


def load_run_report(path: str) -> RunReport:
    """Read and normalise a report file; one clear error line, naming the file (and the field),
    if it is not one."""
    try:
        with open(path, "rb") as fh:
            data = orjson.loads(fh.read())
    except FileNotFoundError:
        raise UsageError(f"report {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"report {path} is a folder, not a file") from None
    except OSError as e:
        raise UsageError(f"cannot read report {path}: {e.strerror or e}") from None
    except orjson.JSONDecodeError as e:
        raise UsageError(f"report {path} is not JSON (cut short, or edited into something else): {e}") from None
    try:
        return normalise(data)
    except UsageError as e:
        raise UsageError(f"report {path}: {e.message}") from None


def _timeline(f: _Fields, key: str) -> List[Dict[str, Any]]:
    points = []
    for p in f.objs(key):
        point: Dict[str, Any] = {"t": p.number("t", required=True)}
        for k in ("done", "retries", "throttles"):
            if p.has(k):
                point[k] = p.number(k)
        points.append(point)
    return points


def _check_estimate(extra: _Fields) -> Optional[Dict[str, Any]]:
    """``extra.estimate`` (estimated vs actual), its figures checked: the summary formats them."""
    est = extra.opt_obj("estimate")
    if est is None:
        return None
    if "estimated" in est.d:
        estimated, actual = est.obj("estimated", required=True), est.obj("actual", required=True)
        for f, keys in ((estimated, ("duration_s", "write_units", "read_units", "cost_usd")), (actual, ("duration_s",))):
            for k in keys:  # each one there, null when it was not known
                if k not in f.d:
                    raise f.bad(k, "a number or null", missing=True)
                f.opt_number(k)
        for k in ("write_units", "read_units"):
            actual.number(k, required=True)
    return dict(est.d)


def _check_verify(f: _Fields) -> None:
    """A verify's counts (see :func:`verdict_of`), when the object is a verify's."""
    if f.d.get("job") != "verify" or "missing" not in f.d:
        return
    from ..verify.report import CATEGORIES

    for k in ("equal", "remaining") + CATEGORIES:
        f.opt_number(k)
    f.opt_text("diff_path")
    if f.has("repair"):
        f.obj("repair")


def _run_from_report(f: _Fields, name: Optional[str] = None, offset: float = 0.0,
                     status: Optional[str] = None, error: Optional[str] = None) -> Run:
    extra = f.obj("extra")
    job = f.text("job", "job")
    _check_verify(f)
    extra.counts("unsettled")
    for k in ("read", "written", "dead_lettered"):
        extra.opt_number(f"backfill_{k}")
    messages = extra.obj("dead_letter_messages")
    return Run(
        name=name or job, kind=job, status=status or f.text("status", "?"),
        counters=f.counts("counters"), retries=f.counts("retries"),
        duration=f.number("duration_seconds"), offset=offset, timeline=_timeline(f, "timeline"),
        dead_letter_reasons=f.counts("dead_letter_reasons"), dead_letter_path=f.opt_text("dead_letter_path"),
        dead_letter_messages={str(k): messages.text(str(k)) for k in messages.d},
        unit_seconds=extra.numbers("unit_seconds"),
        error=error or f.opt_text("error"), items_per_second=f.number("items_per_second"),
        source=f.text("source"), target=f.text("target"), balanced=f.opt_bool("balanced"),
        estimate=_check_estimate(extra), exit_code=f.opt_int("exit_code"),
        unsettled=unsettled_counts(extra.d.get("unsettled")), verdict=verdict_of(f.d),
        backfill=backfill_counts(extra.d),
    )


def normalise(data: Any) -> RunReport:
    """A report's dict as a :class:`RunReport`; a UsageError naming the field that is not as
    ddbmigrate writes it."""
    if not isinstance(data, dict):
        raise UsageError(f"not a ddbmigrate report (it is {_kind(data)}, expected a JSON object)")
    top = _Fields(data)
    if data.get("kind") == "plan":
        runs = []
        for j in top.objs("jobs", required=True):
            rep = j.obj("report")
            run = _run_from_report(rep, name=j.text("name", required=True), offset=j.number("offset_seconds"),
                                   status=j.text("status", "?"), error=j.opt_text("error"))
            run.kind = j.text("kind") or run.kind
            # The plan's code for the job, not its report's: a verify_after's differences are the job's.
            code = j.opt_int("exit_code")
            run.exit_code = code if code is not None else run.exit_code
            verify = j.opt_obj("verify")
            if run.verdict is None and verify is not None:
                _check_verify(verify)
                run.verdict = verdict_of(verify.d, after=True)
            if not rep.d:
                run.duration = j.number("duration_seconds")
            runs.append(run)
        return RunReport(title=f"plan {top.text('name')}", status=top.text("status", "?"),
                         exit_code=top.opt_int("exit_code"), duration=top.number("duration_seconds"),
                         started_at=top.opt_text("started_at"), runs=runs,
                         total_timeline=_timeline(top, "timeline"), is_plan=True, error=top.opt_text("error"))
    if "job" not in data and "counters" not in data:
        raise UsageError("not a ddbmigrate report (no 'job' and 'counters', and not a plan report)")
    top.text("job", required=True)
    top.obj("counters", required=True)
    run = _run_from_report(top)
    return RunReport(title=f"{run.kind} {run.source} → {run.target}".strip(), status=run.status,
                     exit_code=run.exit_code, duration=run.duration, started_at=top.opt_text("started_at"),
                     runs=[run], total_timeline=run.timeline)


# --------------------------------------------------------------------------- derived series


def throughput(timeline: Sequence[Dict[str, Any]]) -> List[Tuple[float, float]]:
    """(t, items/s) between consecutive timeline points."""
    out: List[Tuple[float, float]] = []
    for a, b in zip(timeline, timeline[1:]):
        dt = float(b["t"]) - float(a["t"])
        if dt > 0:
            rate = max(0.0, (float(b.get("done", 0)) - float(a.get("done", 0))) / dt)
            if math.isfinite(rate):  # (two points a few femtoseconds apart: no rate to draw)
                out.append((float(b["t"]), rate))
    return out


def throttled(retries: Dict[str, int]) -> int:
    """Throttles as the timeline counts them: calls refused and items held back (UnprocessedItems),
    each retried (the summary counted the first alone, and read 23 beside a timeline's 41)."""
    return int(retries.get("throttle", 0)) + int(retries.get("unprocessed", 0))


def cumulative(timeline: Sequence[Dict[str, Any]], key: str) -> List[Tuple[float, float]]:
    return [(float(p["t"]), float(p.get(key, 0) or 0)) for p in timeline]


# --------------------------------------------------------------------------- sparkline


def sparkline(values: Sequence[float], width: int = 24) -> str:
    if not values:
        return ""
    if len(values) > width:  # average into ``width`` buckets
        step = len(values) / width
        values = [sum(values[int(i * step):max(int(i * step) + 1, int((i + 1) * step))]) /
                  max(1, len(values[int(i * step):max(int(i * step) + 1, int((i + 1) * step))])) for i in range(width)]
    top = max(values) or 1.0
    blocks = "▁▂▃▄▅▆▇█"
    return "".join(blocks[min(7, int(v / top * 7.999))] for v in values)


# --------------------------------------------------------------------------- SVG


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return float(m * exp)
    return float(10 * exp)


def _fmt(v: float) -> str:
    if v >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.1f}"


def line_chart(chart_id: str, title: str, series: List[Tuple[str, str, List[Tuple[float, float]]]],
               y_label: str, width: int = 760, height: int = 260) -> str:
    """An SVG line chart; ``series`` = [(name, colour, [(x, y), ...])]."""
    left, right, top, bottom = 56, 16, 28, 34
    pw, ph = width - left - right, height - top - bottom
    xs = [x for _, _, pts in series for x, _ in pts]
    ys = [y for _, _, pts in series for _, y in pts]
    x_max = max(xs) if xs else 1.0
    x_max = x_max if x_max > 0 else 1.0
    y_max = _nice_max(max(ys) if ys else 0.0)
    e = html.escape
    out = [f'<svg class="chart" id="{e(chart_id)}" role="img" aria-label="{e(title)}" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" data-xmax="{x_max}" '
           f'data-ymax="{y_max}" data-left="{left}" data-top="{top}" data-pw="{pw}" data-ph="{ph}">',
           f'<text class="title" x="{left}" y="18">{e(title)}</text>']
    for i in range(5):
        y = top + ph - ph * i / 4
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(y_max * i / 4)}</text>')
    for i in range(6):
        x = left + pw * i / 5
        out.append(f'<text class="tick" x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">'
                   f'{_fmt(x_max * i / 5)}s</text>')
    out.append(f'<text class="axis" x="12" y="{top + ph / 2:.0f}" transform="rotate(-90 12 {top + ph / 2:.0f})" '
               f'text-anchor="middle">{e(y_label)}</text>')
    if not xs:
        out.append(f'<text class="empty" x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle">'
                   'no timeline recorded</text>')
    for name, colour, pts in series:
        if not pts:
            continue
        coords = " ".join(f"{left + pw * x / x_max:.1f},{top + ph - ph * min(y, y_max) / y_max:.1f}" for x, y in pts)
        data = ";".join(f"{x:g},{y:g}" for x, y in pts)
        out.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{coords}" '
                   f'data-name="{e(name)}" data-points="{data}"><title>{e(name)}</title></polyline>')
    out.append(_legend([(n, c) for n, c, pts in series if pts], left, height - 4))
    out.append("</svg>")
    return "".join(out)


def _legend(items: List[Tuple[str, str]], x: int, y: int) -> str:
    e = html.escape
    parts = []
    for name, colour in items[:10]:
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
                     f'<text class="legend" x="{x + 14}" y="{y}">{e(name[:28])}</text>')
        x += 24 + 7 * min(28, len(name))
    return f'<g class="legend">{"".join(parts)}</g>'


def bar_chart(chart_id: str, title: str, bars: List[Tuple[str, float, float, str, str]], unit: str,
              width: int = 760) -> str:
    """Horizontal bars from ``start`` to ``start + length``: [(label, start, length, colour, tooltip)]."""
    left, right, top, row = 180, 60, 28, 22
    height = top + row * max(1, len(bars)) + 26
    pw = width - left - right
    end = max((s + ln for _, s, ln, _, _ in bars), default=0.0)
    x_max = _nice_max(end)
    e = html.escape
    out = [f'<svg class="chart" id="{e(chart_id)}" role="img" aria-label="{e(title)}" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
           f'<text class="title" x="12" y="18">{e(title)}</text>']
    for i in range(6):
        x = left + pw * i / 5
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - 22}"/>'
                   f'<text class="tick" x="{x:.1f}" y="{height - 8}" text-anchor="middle">{_fmt(x_max * i / 5)}'
                   f'{e(unit)}</text>')
    if not bars:
        out.append(f'<text class="empty" x="{left + pw / 2}" y="{top + 14}" text-anchor="middle">nothing to show</text>')
    for i, (label, start, length, colour, tip) in enumerate(bars):
        y = top + i * row + 3
        x0 = left + pw * start / x_max
        w = max(1.5, pw * length / x_max)
        out.append(f'<text class="label" x="{left - 8}" y="{y + 12}" text-anchor="end">{e(label[:26])}</text>'
                   f'<rect class="bar" x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="{colour}" '
                   f'data-label="{e(label)}" data-value="{length:g}"><title>{e(tip)}</title></rect>'
                   f'<text class="value" x="{x0 + w + 4:.1f}" y="{y + 12}">{e(_fmt(length))}{e(unit)}</text>')
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#0f172a;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px}
.meta{color:#475569;margin-bottom:16px} .status{font-weight:600}
table{border-collapse:collapse;margin:8px 0} th,td{padding:4px 10px;border-bottom:1px solid #e2e8f0;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f8fafc}
.chart{display:block;margin:8px 0;max-width:100%;height:auto} .chart .title{font-weight:600;font-size:13px}
.chart .grid{stroke:#e2e8f0} .chart .tick,.chart .legend,.chart .label,.chart .value,.chart .axis{font-size:11px;fill:#475569}
.chart .empty{fill:#94a3b8} .err{color:#dc2626} .cursor{stroke:#0f172a;stroke-dasharray:3 3}
.readout{font-size:11px;fill:#0f172a}
"""

# Adds a hover read-out to every line chart; marks the page when done (the browser test checks it).
_JS = """
(function(){
  var charts = document.querySelectorAll('svg.chart');
  var ready = 0;
  charts.forEach(function(svg){
    var lines = svg.querySelectorAll('polyline.series');
    if (lines.length) {
      var ns = 'http://www.w3.org/2000/svg';
      var cursor = document.createElementNS(ns, 'line'); cursor.setAttribute('class', 'cursor');
      var readout = document.createElementNS(ns, 'text'); readout.setAttribute('class', 'readout');
      cursor.style.display = 'none'; svg.appendChild(cursor); svg.appendChild(readout);
      var left = +svg.dataset.left, top = +svg.dataset.top, pw = +svg.dataset.pw, ph = +svg.dataset.ph;
      var xmax = +svg.dataset.xmax;
      var series = Array.prototype.map.call(lines, function(l){
        return {name: l.dataset.name, pts: l.dataset.points.split(';').map(function(p){
          var a = p.split(','); return [+a[0], +a[1]]; })};
      });
      svg.addEventListener('mousemove', function(ev){
        var box = svg.getBoundingClientRect();
        var x = (ev.clientX - box.left) * (svg.viewBox.baseVal.width / box.width);
        var t = Math.max(0, Math.min(xmax, (x - left) / pw * xmax));
        var parts = series.map(function(s){
          var best = s.pts[0];
          s.pts.forEach(function(p){ if (Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p; });
          return s.name + ' ' + Math.round(best[1]);
        });
        cursor.setAttribute('x1', x); cursor.setAttribute('x2', x);
        cursor.setAttribute('y1', top); cursor.setAttribute('y2', top + ph); cursor.style.display = '';
        readout.setAttribute('x', left + 4); readout.setAttribute('y', top + 12);
        readout.textContent = t.toFixed(1) + 's: ' + parts.join(', ');
      });
      svg.addEventListener('mouseleave', function(){ cursor.style.display = 'none'; readout.textContent = ''; });
      svg.dataset.interactive = '1';
    }
    ready++;
  });
  document.documentElement.setAttribute('data-charts-ready', String(ready));
})();
"""


def render_html(rr: RunReport) -> str:
    """The whole page as one string (inline CSS, inline SVG, inline script)."""
    e = html.escape
    colours = {r.name: PALETTE[i % len(PALETTE)] for i, r in enumerate(rr.runs)}
    top = status_label(rr.status, rr.exit_code, sum(r.dead for r in rr.runs))
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>ddbmigrate report: {e(rr.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>ddbmigrate {e(rr.title)}</h1>",
             f"<div class='meta'><span class='status' style='color:{STATUS_COLOURS.get(top, '#0f172a')}'>"
             f"{e(top)}</span>"
             + (f" · exit code {e(str(rr.exit_code))}" if rr.exit_code is not None else "")
             + f" · {rr.duration:,.1f} s" + (f" · started {e(str(rr.started_at))}" if rr.started_at else "")
             + "</div>"]
    # Summary table
    parts.append("<h2>Summary</h2><table id='summary'><tr><th>job</th><th>status</th><th>read</th><th>written</th>"
                 "<th>dead letters</th><th>retries</th><th>throttles</th><th>seconds</th><th>items/s</th></tr>")
    for r in rr.runs:
        label = status_label(r.status, r.exit_code, r.dead)
        parts.append(
            f"<tr><td>{e(r.name)}</td><td style='color:{STATUS_COLOURS.get(label, '#0f172a')}'>{e(label)}</td>"
            f"<td>{r.counters.get('read', 0):,}</td><td>{r.counters.get('written', 0):,}</td><td>{r.dead:,}</td>"
            f"<td>{sum(r.retries.values()):,}</td><td>{throttled(r.retries):,}</td><td>{r.duration:,.1f}</td>"
            f"<td>{r.items_per_second:,.0f}</td></tr>")
    if len(rr.runs) > 1:
        def tot(k: str) -> int:
            return sum(r.counters.get(k, 0) for r in rr.runs)

        parts.append(f"<tr><th>total</th><th></th><th>{tot('read'):,}</th><th>{tot('written'):,}</th>"
                     f"<th>{tot('dead_lettered'):,}</th><th>{sum(sum(r.retries.values()) for r in rr.runs):,}</th>"
                     f"<th>{sum(throttled(r.retries) for r in rr.runs):,}</th><th>{rr.duration:,.1f}</th>"
                     "<th></th></tr>")
    parts.append("</table>")
    unsettled = [(r, k, n) for r in rr.runs for k, n in r.unsettled.items()]
    if unsettled:
        # In the target (or the dead-letter file) beside the counts above, which stop at the checkpoint.
        parts.append("<table id='unsettled'><tr><th>job</th><th>past the checkpoint</th><th>items</th><th></th></tr>")
        for r, k, n in unsettled:
            label, note = UNSETTLED[k]
            parts.append(f"<tr><td>{e(r.name)}</td><td>{e(label)}</td><td>{n:,}</td><td>{e(note)}</td></tr>")
        parts.append("</table>")
    if rr.error:
        parts.append(f"<p class='err'><b>plan</b>: {e(rr.error)}</p>")
    for r in rr.runs:
        if r.backfill:
            parts.append(f"<p class='backfill'><b>{e(r.name)}</b>: {e(backfill_text(r.backfill))}</p>")
    errors = [r for r in rr.runs if r.error]
    for r in errors:
        parts.append(f"<p class='err'><b>{e(r.name)}</b>: {e(str(r.error))}</p>")
    verdicts = [(r, r.verdict) for r in rr.runs if r.verdict is not None]
    if verdicts:
        parts.append(_verify_table(verdicts))

    # 1. throughput over time
    series = [(r.name, colours[r.name], _shift(throughput(r.timeline), r.offset if rr.is_plan else 0.0))
              for r in rr.runs]
    if rr.is_plan and len(rr.runs) > 1 and rr.total_timeline:
        series.append(("total", "#0f172a", throughput(rr.total_timeline)))
    parts.append("<h2>Throughput over time</h2>")
    parts.append(line_chart("throughput", "items per second", series, "items/s"))
    # 2. retries and throttles over time (cumulative)
    rt: List[Tuple[str, str, List[Tuple[float, float]]]] = []
    for r in rr.runs:
        off = r.offset if rr.is_plan else 0.0
        label = f"{r.name} " if len(rr.runs) > 1 else ""
        rt.append((f"{label}retries", colours[r.name], _shift(cumulative(r.timeline, "retries"), off)))
        rt.append((f"{label}throttles", _darker(colours[r.name]), _shift(cumulative(r.timeline, "throttles"), off)))
    parts.append("<h2>Retries and throttles over time</h2>")
    parts.append(line_chart("retries", "retries and throttles so far", rt, "count"))
    # 3. durations: per job on the plan's clock, and per segment
    parts.append("<h2>Durations</h2>")
    bars = [(r.name, r.offset, r.duration, STATUS_COLOURS.get(status_label(r.status, r.exit_code, r.dead), "#475569"),
             f"{r.name}: {status_label(r.status, r.exit_code, r.dead)}, {r.duration:.1f}s from {r.offset:.1f}s")
            for r in rr.runs]
    parts.append(bar_chart("durations", "per job (start and length, seconds)", bars, "s"))
    for i, r in enumerate(rr.runs):
        if r.unit_seconds:
            units = sorted(r.unit_seconds.items(), key=lambda kv: _unit_order(kv[0]))[:200]
            seg_bars = [(f"segment {u}", 0.0, s, colours[r.name], f"{r.name} segment {u}: {s:.2f}s") for u, s in units]
            parts.append(bar_chart(f"segments-{i}", f"{r.name}: per segment", seg_bars, "s"))
    # 4. dead letters
    parts.append("<h2>Dead letters</h2>")
    dl_bars = [(r.name, 0.0, float(r.dead), "#dc2626" if r.dead else "#94a3b8", f"{r.name}: {r.dead} dead-lettered")
               for r in rr.runs]
    parts.append(bar_chart("dead-letters", "items dead-lettered, per job", dl_bars, ""))
    reasons = [(r, k, v) for r in rr.runs for k, v in sorted(r.dead_letter_reasons.items(), key=lambda x: -x[1])]
    if reasons:
        parts.append("<table id='dead-letter-reasons'><tr><th>job</th><th>reason</th><th>message</th><th>items</th>"
                     "<th>file</th></tr>")
        for r, k, v in reasons:
            parts.append(f"<tr><td>{e(r.name)}</td><td>{e(str(k))}</td><td>{e(r.dead_letter_messages.get(k, ''))}</td>"
                         f"<td>{int(v):,}</td><td>{e(str(r.dead_letter_path or ''))}</td></tr>")
        parts.append("</table>")
    elif verdicts:
        parts.append("<p>No item was dead-lettered (a verify's invalid and unreadable records are differences, "
                     "under Verify).</p>")
    else:
        parts.append("<p>No item was dead-lettered.</p>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "".join(parts)


def _verify_table(verdicts: List[Tuple[Run, Verdict]]) -> str:
    from ..verify.report import CATEGORIES

    e = html.escape
    names = ("equal",) + CATEGORIES
    out = ["<h2>Verify</h2><table id='verify'><tr><th>job</th><th>verdict</th>"
           + "".join(f"<th>{k}</th>" for k in names) + "<th>differences file</th></tr>"]
    for r, v in verdicts:
        colour = "#dc2626" if v.failed else "#16a34a" if v.compared or v.repaired else "#d97706"
        name = f"{r.name} (verify after)" if v.after else r.name
        # A verify that stopped midway counted no outcome: zeros would read as "none found".
        cells = "".join(f"<td>{v.counts.get(k, 0):,}</td>" if v.compared else "<td>-</td>" for k in names)
        where = v.diff_path or ("not kept (--diff FILE keeps them)" if v.differences else "")
        out.append(f"<tr><td>{e(name)}</td><td class='verdict' style='color:{colour}'>{e(v.text)}</td>{cells}"
                   f"<td>{e(where)}</td></tr>")
    out.append("</table>")
    return "".join(out)


def write_html(rr: RunReport, path: str) -> None:
    from ..state.checkpoint import atomic_write

    atomic_write(path, render_html(rr).encode("utf-8"))


def _shift(pts: List[Tuple[float, float]], by: float) -> List[Tuple[float, float]]:
    return [(x + by, y) for x, y in pts] if by else pts


def _darker(colour: str) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#%02x%02x%02x" % (r * 6 // 10, g * 6 // 10, b * 6 // 10)


def _unit_order(u: str) -> Tuple[int, Any]:
    return (0, int(u)) if u.isdigit() else (1, u)
