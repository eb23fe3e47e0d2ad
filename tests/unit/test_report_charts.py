"""report_html: normalising reports, the series drawn, escaping, self-containment (no browser)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any, Dict, List

import pytest

from ddbmigrate.errors import UsageError
from ddbmigrate.reporting.html import load_run_report, normalise, render_html, sparkline, throughput


def _timeline(n: int, per_s: int, throttle_every: int = 0) -> List[Dict[str, Any]]:
    return [{"t": float(i), "done": i * per_s, "retries": i // 3, "throttles": (i // throttle_every) if throttle_every
             else 0} for i in range(n)]


def _report(job: str = "copy", **kw: Any) -> Dict[str, Any]:
    d = {"job": job, "source": "a", "target": "b", "status": "done", "counters": {"read": 500, "written": 498,
         "dead_lettered": 2}, "retries": {"throttle": 4, "5xx": 1}, "duration_seconds": 5.0,
         "items_per_second": 99.6, "dead_letter_reasons": {"invalid_item": 2}, "dead_letter_path": "dead.jsonl",
         "timeline": _timeline(6, 100, 2), "extra": {"unit_seconds": {"0": 1.5, "1": 2.5, "10": 0.5}},
         "exit_code": 3, "balanced": True}
    d.update(kw)
    return d


def _svgs(page: str) -> Dict[str, ET.Element]:
    out = {}
    for m in re.finditer(r"<svg .*?</svg>", page, re.S):
        el = ET.fromstring(m.group(0))  # every chart is well-formed XML
        out[el.get("id", "")] = el
    return out


NS = "{http://www.w3.org/2000/svg}"


def test_single_report_charts_follow_the_timeline() -> None:
    rr = normalise(_report())
    assert [r.name for r in rr.runs] == ["copy"] and not rr.is_plan
    assert throughput(rr.runs[0].timeline) == [(float(i), 100.0) for i in range(1, 6)]
    page = render_html(rr)
    svgs = _svgs(page)
    assert set(svgs) == {"throughput", "retries", "durations", "segments-0", "dead-letters"}
    line = svgs["throughput"].find(f"{NS}polyline")
    assert line is not None and line.get("data-points") == "1,100;2,100;3,100;4,100;5,100"
    ys = {p.split(",")[1] for p in (line.get("points") or "").split()}
    assert len(ys) == 1  # constant rate: a flat line
    names = [p.get("data-name") for p in svgs["retries"].iter(f"{NS}polyline")]
    assert names == ["retries", "throttles"]
    seg_labels = [r.get("data-label") for r in svgs["segments-0"].iter(f"{NS}rect") if r.get("class") == "bar"]
    assert seg_labels == ["segment 0", "segment 1", "segment 10"]
    dead = [(r.get("data-label"), r.get("data-value")) for r in svgs["dead-letters"].iter(f"{NS}rect")
            if r.get("class") == "bar"]
    assert dead == [("copy", "2")]
    assert "invalid_item" in page and "dead.jsonl" in page


def test_plan_report_places_jobs_on_the_plan_clock() -> None:
    plan = {"kind": "plan", "name": "p", "status": "failed", "exit_code": 75, "duration_seconds": 9.0,
            "timeline": _timeline(9, 150),
            "jobs": [{"name": "users", "kind": "copy", "status": "done", "offset_seconds": 0.0,
                      "duration_seconds": 5.0, "report": _report()},
                     {"name": "orders", "kind": "copy", "status": "failed", "offset_seconds": 3.0,
                      "duration_seconds": 2.0, "error": "retries exhausted", "report": _report(timeline=_timeline(3, 50))},
                     {"name": "late", "kind": "verify", "status": "blocked", "duration_seconds": 0.0,
                      "report": None, "error": "runs after orders"}]}
    rr = normalise(plan)
    assert rr.is_plan and [r.status for r in rr.runs] == ["done", "failed", "blocked"]
    svgs = _svgs(render_html(rr))
    lines = {p.get("data-name"): p.get("data-points") for p in svgs["throughput"].iter(f"{NS}polyline")}
    assert lines["orders"] == "4,50;5,50"  # shifted by its 3 s offset
    assert lines["total"].startswith("1,150;")
    bars = {r.get("data-label"): r for r in svgs["durations"].iter(f"{NS}rect") if r.get("class") == "bar"}
    assert set(bars) == {"users", "orders", "late"} and float(bars["orders"].get("x") or 0) > float(
        bars["users"].get("x") or 0)


def test_text_is_escaped_and_page_is_self_contained() -> None:
    page = render_html(normalise(_report(job="<script>alert(1)</script>", error="<img src=x onerror=alert(1)>")))
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert page.count("<script>") == 1  # only our own inline script


def test_not_a_report_is_one_clear_line(tmp_path: Any) -> None:
    p = tmp_path / "x.json"
    p.write_text('{"hello": 1}')
    with pytest.raises(UsageError, match="not a ddbmigrate report"):
        load_run_report(str(p))
    p.write_text("{nope")
    with pytest.raises(UsageError, match="is not JSON"):
        load_run_report(str(p))
    with pytest.raises(UsageError, match="does not exist"):
        load_run_report(str(tmp_path / "missing.json"))


def test_empty_timeline_still_renders() -> None:
    svgs = _svgs(render_html(normalise(_report(timeline=[], extra={}))))
    assert "throughput" in svgs and svgs["throughput"].find(f"{NS}polyline") is None


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert len(sparkline([float(i) for i in range(100)], width=10)) == 10


def test_the_summarys_throttles_are_the_timelines() -> None:
    """The summary counted refused calls alone (23) beside a timeline counting held-back items too (41)."""
    from ddbmigrate.reporting.html import throttled

    assert throttled({"throttle": 23, "unprocessed": 18, "5xx": 4}) == 41
    assert throttled({}) == 0
