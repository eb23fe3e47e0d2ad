"""``ddbmigrate report FILE [--html PAGE]`` on a report a person edited by hand and broke.

Every such file gives either the summary (and the page), or one line naming the file and what is
wrong in it (the field, when a field is) with exit 2: never a traceback, never "internal error"
(a count written as text, a list where an object was, a field removed, a file cut short were each
a one-line "internal error: AttributeError ..." before).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from typing import Any, Dict, List, Tuple, Union

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddbmigrate.cli import main
from ddbmigrate.plan.report import JobResult, PlanReport
from ddbmigrate.reporting.report import Report
from ddbmigrate.verify.report import VerifyReport

from support import one_usage_line

Path_ = Tuple[Union[str, int], ...]


def _copy_report() -> Dict[str, Any]:
    rep = Report(job="copy", source="users @ us-east-1", target="users-v2 @ us-east-1", status="failed",
                 counters={"read": 500, "written": 490, "dead_lettered": 2, "collapsed": 8},
                 retries={"throttle": 4, "unprocessed": 3}, duration_seconds=5.0, items_per_second=98.0,
                 dead_letter_reasons={"invalid_item": 2}, dead_letter_path="dead.jsonl", error="boom",
                 timeline=[{"t": float(i), "done": i * 100, "retries": i, "throttles": i // 2} for i in range(5)],
                 error_exit_code=75)
    rep.extra = {"unit_seconds": {"0": 1.5, "1": 2.5}, "unsettled": {"written": 7},
                 "dead_letter_messages": {"invalid_item": "item too large"},
                 "backfill_read": 10, "backfill_written": 10, "backfill_dead_lettered": 0,
                 "estimate": {"lane": "on-demand",
                              "estimated": {"duration_s": 4.0, "write_units": 500.0, "read_units": 250.0,
                                            "cost_usd": 0.01, "limited_by": "write capacity"},
                              "actual": {"duration_s": 5.0, "write_units": 490.0, "read_units": 250.0}}}
    return rep.to_dict()


def _verify_report() -> Dict[str, Any]:
    rep = VerifyReport(source="a", target="b", status="done", equal=10, missing=1, unexpected=2, mismatched=3,
                       diff_path="diff.jsonl", counters={"read": 26, "source_read": 14, "target_read": 12})
    rep.remaining = rep.differences
    return rep.to_dict()


def _plan_report() -> Dict[str, Any]:
    plan = PlanReport(plan="plan.yaml", name="p", status="differences", jobs=[
        JobResult("users", "copy", 1, status="differences", exit_code=4, report=_copy_report(),
                  verify=_verify_report(), error="verify found differences", offset_seconds=0.5,
                  duration_seconds=5.0),
        JobResult("check", "verify", 2, status="done", report=_verify_report(), duration_seconds=1.0),
        JobResult("later", "copy", 3, status="not-started")],
        timeline=[{"t": 0.0, "done": 0}, {"t": 1.0, "done": 100}])
    plan.compute_totals()
    return plan.to_dict()


VALID = {"copy": _copy_report(), "verify": _verify_report(), "plan": _plan_report()}


def _paths(doc: Any, at: Path_ = ()) -> List[Path_]:
    """Every place in ``doc``: each key of an object, each element of a list."""
    out: List[Path_] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(at + (k,))
            out.extend(_paths(v, at + (k,)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append(at + (i,))
            out.extend(_paths(v, at + (i,)))
    return out


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                     max_leaves=6)


@st.composite
def mutants(draw: st.DrawFn) -> Tuple[str, bytes]:
    """A valid report with one hand edit: a value replaced (by one of any type, a list for an
    object), a field removed, the whole document replaced, or the file cut short."""
    name = draw(st.sampled_from(sorted(VALID)))
    doc = copy.deepcopy(VALID[name])
    how = draw(st.sampled_from(["replace", "replace", "replace", "remove", "wrap", "document", "truncate"]))
    if how == "document":
        return how, json.dumps(draw(st.one_of(_scalars, st.lists(_scalars, max_size=3)))).encode()
    if how == "truncate":
        text = json.dumps(doc, indent=2).encode()
        return how, text[:draw(st.integers(0, len(text) - 1))]
    path = draw(st.sampled_from(_paths(doc)))
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if how == "remove" and isinstance(parent, dict):
        del parent[last]
    elif how == "wrap":
        parent[last] = [parent[last]]
    else:
        parent[last] = draw(_json)
    return f"{how} {'.'.join(map(str, path))}", json.dumps(doc).encode()


def report(path: str, page: str) -> Result:
    return CliRunner().invoke(main, ["report", path, "--html", page])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutants())
def test_every_hand_edit_renders_or_is_one_line_naming_the_file(mutant: Tuple[str, bytes]) -> None:
    how, content = mutant
    with tempfile.TemporaryDirectory() as d:
        path, page = os.path.join(d, "run.json"), os.path.join(d, "run.html")
        with open(path, "wb") as fh:
            fh.write(content)
        r = report(path, page)
        if r.exit_code == 0:
            assert os.path.exists(page) and "ddbmigrate" in r.stdout, (how, r.output)
            return
        line = one_usage_line(r, f"report {path}")
        if how.startswith(("replace", "remove", "wrap")):
            # Said in the file's terms: the field, or what the document is not.
            assert "field " in line or "not a ddbmigrate report" in line, (how, line)
        assert not os.path.exists(page), how  # no page drawn from half a report


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(counters=[500, 490]), ["field counters is a list (expected an object)"]),
    (lambda d: d["counters"].update(read="500"), ["field counters.read is text (expected a number)"]),
    (lambda d: d.pop("counters"), ["field counters is missing"]),
    (lambda d: d.update(duration_seconds="5 s"), ["field duration_seconds is text"]),
    (lambda d: d["timeline"][1].update(t=None), ["field timeline[1].t is null (expected a number)"]),
    (lambda d: d["extra"].update(estimate={"estimated": {}}), ["field extra.estimate.actual is missing"]),
    (lambda d: d["extra"]["unit_seconds"].update({"1": [2.5]}), ["field extra.unit_seconds.1 is a list"]),
    (lambda d: d.update(exit_code="3"), ["field exit_code is text (expected a whole number)"]),
    (lambda d: d["counters"].update(written=-5), ["field counters.written is -5 (expected a number from 0 to 1e+15)"]),
    (lambda d: d["timeline"][1].update(done=1e300), ["field timeline[1].done is 1e+300"]),
    (lambda d: d.update(duration_seconds=10 ** 30), ["field duration_seconds is 1e+30"]),
])
def test_the_line_names_the_field(tmp_path: Any, edit: Any, words: List[str]) -> None:
    doc = copy.deepcopy(VALID["copy"])
    edit(doc)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    one_usage_line(report(str(path), str(tmp_path / "run.html")), f"report {path}: ", *words)


def test_a_plan_job_field_is_named_with_its_place(tmp_path: Any) -> None:
    doc = copy.deepcopy(VALID["plan"])
    doc["jobs"][1]["report"]["missing"] = "1"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    one_usage_line(report(str(path), str(tmp_path / "p.html")), "field jobs[1].report.missing is text")
    doc["jobs"][1]["report"]["missing"] = 1
    doc["jobs"][2] = ["later"]
    path.write_text(json.dumps(doc))
    one_usage_line(report(str(path), str(tmp_path / "p.html")), "field jobs[2] is a list (expected an object)")


@pytest.mark.parametrize("content, words", [
    (b"[1, 2]", ["not a ddbmigrate report (it is a list, expected a JSON object)"]),
    (b'"run"', ["not a ddbmigrate report (it is text"]),
    (b'{"job": "copy", "counters": {"read": 1', ["is not JSON (cut short"]),
    (b"", ["is not JSON"]),
])
def test_a_file_that_is_not_a_report_object_says_so(tmp_path: Any, content: bytes, words: List[str]) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(content)
    one_usage_line(report(str(path), str(tmp_path / "run.html")), str(path), *words)


def test_points_a_moment_apart_draw_no_endless_rate(tmp_path: Any) -> None:
    doc = copy.deepcopy(VALID["copy"])
    doc["timeline"] = [{"t": 0.0, "done": 0}, {"t": 5e-324, "done": 10 ** 15}, {"t": 1.0, "done": 10 ** 15}]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    r = report(str(path), str(tmp_path / "run.html"))
    assert r.exit_code == 0, r.output


def test_the_valid_reports_render() -> None:
    with tempfile.TemporaryDirectory() as d:
        for name, doc in VALID.items():
            path = os.path.join(d, f"{name}.json")
            with open(path, "w") as fh:
                json.dump(doc, fh)
            r = report(path, os.path.join(d, f"{name}.html"))
            assert r.exit_code == 0, (name, r.output)
