"""Plan defects found by an audit, checked without a server: each plan problem names its line."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Dict, List

from click.testing import CliRunner, Result

from ddbmigrate.cli import main
from ddbmigrate.errors import EXIT_FATAL, EXIT_INTERRUPTED
from ddbmigrate.plan import PlanError, load_plan
from ddbmigrate.plan.report import JobResult, PlanReport
from ddbmigrate.plan.validate import validate_plan
from support import one_usage_line

HDR = """\
version: 1
state_dir: state
defaults:
  source: {endpoint_url: "http://127.0.0.1:9", region: us-east-1}
  target: {endpoint_url: "http://127.0.0.1:9", region: us-east-1}
  create_target: true
"""


def _write(tmp_path: Path, text: str, name: str = "plan.yaml") -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(p)


def _problems(path: str) -> Dict[int, List[str]]:
    out: Dict[int, List[str]] = {}
    for p in validate_plan(path, check_tables=False):
        assert p.line is not None, p
        out.setdefault(p.line, []).append(p.message)
    return out


def _cli(args: List[str]) -> Result:
    return CliRunner().invoke(main, args)


def test_a_default_transform_for_a_table_no_job_reads_is_a_problem_with_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "tx.py").write_text("def v2(item):\n    return item\n")
    path = _write(tmp_path, HDR + """\
  transforms:
    usres: tx.py:v2
jobs:
  - {kind: copy, source: users, target: users-v2}
""")
    assert _problems(path) == {8: ["defaults.transforms: no job reads a table 'usres', so this transform would "
                                   "never run; did you mean 'users'?"]}
    try:
        load_plan(path)
        raise AssertionError("the plan loaded")
    except PlanError as e:
        assert [(p.line, "usres" in p.message) for p in e.problems] == [(8, True)]


def test_a_default_transform_for_a_table_a_job_reads_applies(tmp_path: Path) -> None:
    (tmp_path / "tx.py").write_text("def v2(item):\n    return item\n")
    path = _write(tmp_path, HDR + """\
  transforms:
    users: tx.py:v2
jobs:
  - {kind: copy, source: users, target: users-v2}
""")
    assert _problems(path) == {}
    assert load_plan(path).jobs[0].transform == f"{tmp_path / 'tx.py'}:v2"


def test_default_verify_after_skips_imports_and_an_imports_own_is_refused(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\n"
                                        "KeySchema: [{AttributeName: pk, KeyType: HASH}]\n")
    (tmp_path / "in").mkdir()
    path = _write(tmp_path, HDR + """\
  verify_after: true
jobs:
  - {kind: copy, name: c, source: aaa, target: bbb}
  - {kind: import, name: i, from: in, target: ddd, target_spec: spec.yaml}
""")
    assert _problems(path) == {}
    c, i = load_plan(path).jobs
    assert c.verify_after and not i.verify_after
    own = _write(tmp_path, HDR + """\
jobs:
  - kind: import
    name: i
    from: in
    target: ddd
    target_spec: spec.yaml
    verify_after: true
""", name="own.yaml")
    assert _problems(own) == {13: ["jobs[0].verify_after: an import has no source table to compare its target "
                                   "with; add a verify job after it instead"]}


def test_an_import_that_creates_its_target_without_a_spec_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "part-0.jsonl").write_text('{"pk": "a"}\n')
    path = _write(tmp_path, HDR + """\
jobs:
  - kind: import
    name: from-files
    from: in
    target: ddd
  - {kind: export, name: exp, source: aaa, to: out}
  - {kind: import, name: from-export, from: out, target: eee, after: exp}
""")
    assert _problems(path) == {
        8: [f"from-files: create_target needs a table spec: {tmp_path / 'in'} carries no table schema; "
            "add target_spec: FILE"],
        13: [f"from-export: create_target needs a table spec: the export job that writes {tmp_path / 'out'} "
             "writes no table schema; add target_spec: FILE"]}


def test_a_fatal_failure_outranks_an_interruption() -> None:
    rep = PlanReport(plan="p.yaml", name="p", status="interrupted",
                     jobs=[JobResult("v1", "copy", 3, status="failed", exit_code=EXIT_FATAL),
                           JobResult("c3", "copy", 4, status="interrupted", exit_code=EXIT_INTERRUPTED)])
    assert rep.exit_code == EXIT_FATAL
    rep.jobs[0].status, rep.jobs[0].exit_code = "done", 0
    assert rep.exit_code == EXIT_INTERRUPTED


def test_native_exports_that_would_fail_at_once_are_problems_at_their_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, HDR + """\
jobs:
  - {kind: export, name: local, source: aaa, to: out, native: true}
  - {kind: export, name: garbage, source: aaa, to: "s3://b/p", native: true, export_time: garbage}
  - kind: export
    name: backwards
    source: aaa
    to: s3://b/p
    native: true
    incremental: ["2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"]
  - {kind: export, name: long, source: aaa, to: "s3://b/p", native: true, incremental: ["0", "172800"]}
  - {kind: export, name: ok, source: aaa, to: "s3://b/p", native: true, incremental: ["0", "3600"]}
""")
    assert _problems(path) == {
        8: [f"jobs[0].to {str(tmp_path / 'out')!r}: a native export writes to S3: give s3://bucket/prefix "
            "(or drop native: true to export to a folder)"],
        9: ["jobs[1].export_time 'garbage': expected ISO 8601 like 2026-11-25T10:00:00Z or Unix seconds"],
        15: ["jobs[2].incremental: TO (2026-01-01T00:00:00+00:00) must be after FROM (2026-01-02T00:00:00+00:00)"],
        16: ["jobs[3].incremental: the window must be between 15 minutes and 24 hours (got 2 days, 0:00:00)"]}


def test_problems_in_defaults_name_the_defaults_lines_once(tmp_path: Path) -> None:
    path = _write(tmp_path, HDR + """\
  target_spec: no-such-spec.yaml
  transforms:
    aaa: no_such_module_here:fn
    ccc: no-colon
jobs:
  - {kind: copy, name: one, source: aaa, target: xxx}
  - {kind: copy, name: two, source: aaa, target: xxx}
  - {kind: copy, name: three, source: ccc, target: yyy}
""")
    got = _problems(path)
    assert sorted(got) == [7, 9, 10], got
    assert len(got[7]) == 1 and got[7][0].startswith("defaults.target_spec: ") and "no-such-spec.yaml" in got[7][0]
    assert len(got[9]) == 1 and got[9][0].startswith("defaults.transforms: ") and "no_such_module_here" in got[9][0]
    assert got[10] == ["defaults.transforms.ccc 'no-colon': expected path/to/file.py:function or "
                      "package.module:function"]


def test_a_plan_that_is_not_utf8_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes((HDR + "jobs:\n  - {kind: copy, source: aaa, target: bbb}\n").encode("utf-16"))
    r = _cli(["plan", "validate", str(path), "--no-check-tables"])
    assert r.exit_code == 2, (r.exit_code, r.stderr, r.exception)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: {path}: cannot read plan: not UTF-8 text (byte 0: invalid start byte); "
                      "save it as UTF-8"], r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    line = one_usage_line(_cli(["run", str(path)]), str(path), "not UTF-8")
    assert line == errors[0]


def test_a_resumed_plan_watches_its_native_export_again_instead_of_starting_a_second(
        tmp_path: Path, monkeypatch: Any) -> None:
    # An interrupted native export kept running in AWS; the plan's --resume started a second one
    # (billed twice), and an ImportTable's resume failed for good (its table existed by then).
    import ddbmigrate.aws.managed as managed
    from ddbmigrate.errors import InterruptedError_
    from ddbmigrate.plan import run_plan
    from ddbmigrate.reporting.report import Report

    calls: List[Dict[str, Any]] = []

    def fake_export(table: Any, s3_uri: str, export_time: Any = None, incremental: Any = None, *,
                    export_arn: Any = None, on_started: Any = None, progress: str = "off", observer: Any = None,
                    cancel: Any = None) -> Report:
        calls.append({"export_arn": export_arn})
        arn = export_arn or f"arn:aws:dynamodb:us-east-1:1:table/t/export/{len(calls)}"
        on_started(arn)
        if len(calls) == 1:
            raise InterruptedError_("interrupted")
        return Report(job="native-export", source="t", target=s3_uri, extra={"export_arn": arn})

    monkeypatch.setattr(managed, "native_export", fake_export)
    plan = tmp_path / "plan.yaml"
    plan.write_text("state_dir: state\n"
                    "defaults: {source: {endpoint_url: 'http://127.0.0.1:9', region: us-east-1}}\n"
                    "jobs:\n  - {name: exp, kind: export, native: true, source: events, to: 's3://b/x'}\n")
    first = run_plan(str(plan), progress="off")
    assert first.job("exp").status == "interrupted"
    second = run_plan(str(plan), progress="off", resume=True)
    assert second.job("exp").status == "done", second.job("exp").error
    assert [c["export_arn"] for c in calls] == [None, "arn:aws:dynamodb:us-east-1:1:table/t/export/1"]
    third = run_plan(str(plan), progress="off")  # a new run: its own export, not the last one's
    assert third.job("exp").status == "done" and calls[-1]["export_arn"] is None
