"""Plan files: schema checks name the line; defaults, paths and names resolve as documented (no server)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

from ddbmigrate.plan.run import PlanError, PlanReport, JobResult, load_plan, validate_plan


def _write(tmp_path: Path, text: str, name: str = "plan.yaml") -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(p)


def _problems(path: str) -> Dict[int, str]:
    out: Dict[int, List[str]] = {}
    for p in validate_plan(path, check_tables=False):
        assert p.line is not None, p
        out.setdefault(p.line, []).append(p.message)
    return {k: " | ".join(v) for k, v in out.items()}


def test_defaults_apply_and_side_fields_override(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        version: 1
        defaults:
          source: {region: eu-west-1, profile: old}
          target: {region: eu-central-1, role_arn: "arn:aws:iam::222222222222:role/w"}
          options: {max_write_units: 100, segments: 8}
          create_target: true
          verify_after: true
          transforms: {users: tx/users.py:fix}
        jobs:
          - {kind: copy, source: users, target: users}
          - kind: copy
            source: {table: orders, region: us-east-1}
            target: orders-v2
            create_target: false
            options: {max_write_units: 5}
    """)
    plan = load_plan(path)
    users, orders = plan.jobs
    assert users.name == "copy-users" and orders.name == "copy-orders"
    assert users.source is not None and users.source.region == "eu-west-1" and users.source.profile == "old"
    assert users.target is not None and users.target.role_arn == "arn:aws:iam::222222222222:role/w"
    assert users.create_target and users.verify_after
    assert users.transform == f"{tmp_path / 'tx' / 'users.py'}:fix"  # relative to the plan file
    assert users.options == {"max_write_units": 100, "segments": 8}
    assert orders.source is not None and orders.source.region == "us-east-1" and orders.source.profile == "old"
    assert not orders.create_target and orders.transform is None
    assert orders.options == {"max_write_units": 5, "segments": 8}
    assert orders.line == 11 and users.line == 10


def test_schema_problems_each_name_their_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        version: 1
        parallel: zero
        defaults:
          optons: {}
        jobs:
          - kind: cpy
            source: a-table
          - kind: copy
            source: a-table
            target: b-table
            create_targt: true
          - kind: copy
            source: a-table
            target: c-table
            options: {max_write_units: fast, mode: sideways}
          - kind: export
            source: a-table
          - kind: clean
            target: b-table
          - kind: copy
            name: copy-a-table
            source: x?y
            target: b-table
    """)
    got = _problems(path)
    assert "parallel must be an integer" in got[2]
    assert "unknown field 'optons'" in got[4] and "did you mean 'options'" in got[4]
    assert "did you mean 'copy'" in got[6]
    assert "unknown field 'create_targt'" in got[11] and "create_target" in got[11]
    assert "max_write_units must be a number" in got[15]
    assert "needs 'to'" in got[16]
    assert "add 'confirm: true'" in got[18]
    assert "already used" in got[21]
    assert "invalid table name 'x?y'" in got[22]


def test_mode_checked_like_the_cli(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        jobs:
          - kind: copy
            source: a-table
            target: b-table
            options:
              mode: sideways
    """)
    got = _problems(path)
    assert list(got) == [5] and "mode must be one of" in got[5]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        jobs:
          - kind: copy
            source: [unclosed
          - kind: copy
    """)
    with pytest.raises(PlanError) as ei:
        load_plan(path)
    assert ei.value.line is not None and ei.value.line >= 3
    assert "not valid YAML" in ei.value.message
    assert ei.value.one_line().count("\n") == 0


def test_dependencies_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        jobs:
          - {name: a, kind: copy, source: t-one, target: t-two, after: b}
          - {name: b, kind: copy, source: t-three, target: t-four, after: [a]}
          - {name: c, kind: copy, source: t-five, target: t-six, after: nope}
    """)
    got = _problems(path)
    assert "cycle" in got[2] and "a -> b -> a" in got[2]
    assert "no job named 'nope'" in got[4]


def test_generated_names_are_unique(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        jobs:
          - {kind: copy, source: users, target: users-a}
          - {kind: copy, source: users, target: users-b}
          - {kind: verify, source: users, target: users-a}
    """)
    assert [j.name for j in load_plan(path).jobs] == ["copy-users", "copy-users-2", "verify-users"]


def test_native_options_need_native_and_a_spec(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        jobs:
          - kind: export
            source: a-table
            to: s3://bucket/p
            export_time: "2026-01-01T00:00:00Z"
          - kind: import
            from: s3://bucket/p/AWSDynamoDB/0123/
            target: b-table
            native: true
          - kind: export
            native: true
            source: a-table
            to: s3://bucket/p
            incremental: ["2026-01-01T00:00:00Z"]
    """)
    got = _problems(path)
    assert "need native: true" in got[2]
    assert "spec: table.yaml" in got[6]
    assert "[FROM, TO]" in got[14]


def test_transform_and_spec_problems_found_without_tables(tmp_path: Path) -> None:
    (tmp_path / "tx.py").write_text("def ok(item):\n    return item\n")
    (tmp_path / "spec.yaml").write_text("KeySchema: [{AttributeName: pk, KeyType: HASH}]\n")
    path = _write(tmp_path, """
        jobs:
          - kind: copy
            source: a-table
            target: b-table
            transform: tx.py:missing_function
          - kind: copy
            source: a-table
            target: c-table
            target_spec: spec.yaml
          - kind: copy
            source: a-table
            target: d-table
            transform: tx.py:ok
    """)
    got = _problems(path)
    assert "no function 'missing_function'" in got[5]
    assert "AttributeDefinitions is required" in got[9]
    assert 13 not in got


def test_plan_report_exit_code_and_totals() -> None:
    ok = JobResult("a", "copy", 1, status="done", report={"counters": {"read": 5, "written": 5}, "balanced": True,
                                                          "retries": {"throttle": 2}})
    dead = JobResult("b", "copy", 2, status="done", exit_code=3,
                     report={"counters": {"read": 3, "written": 2, "dead_lettered": 1}, "balanced": True})
    rep = PlanReport(plan="p.yaml", name="p", jobs=[ok, dead])
    rep.compute_totals()
    assert rep.exit_code == 3
    assert rep.totals["counters"] == {"read": 8, "written": 7, "dead_lettered": 1}
    assert rep.totals["retries"] == {"throttle": 2} and rep.totals["dead_lettered"] == 1
    failed = JobResult("c", "copy", 3, status="failed", exit_code=75, error="retries exhausted")
    rep.jobs.append(failed)
    assert rep.exit_code == 75
    rep.jobs.append(JobResult("d", "copy", 4, status="failed", exit_code=1))
    assert rep.exit_code == 1
    d = rep.to_dict()
    assert d["exit_code"] == 1 and [j["name"] for j in d["jobs"]] == ["a", "b", "c", "d"]


def test_state_dir_is_deterministic_per_plan_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "jobs: [{kind: copy, source: a-table, target: b-table}]\n")
    first = load_plan(path).state_dir
    monkeypatch.chdir(tmp_path)
    assert load_plan(path).state_dir == first and first.startswith(os.path.join(".ddbmigrate", "plans", "plan-"))
    path2 = _write(tmp_path, "state_dir: st\njobs: [{kind: copy, source: a-table, target: b-table}]\n", "p2.yaml")
    assert load_plan(path2).state_dir == str(tmp_path / "st")


def test_yaml_boolean_keys_are_explained(tmp_path: Path) -> None:
    path = _write(tmp_path, "jobs:\n  - {kind: clean, target: t-one, yes: true}\n")
    got = _problems(path)
    assert "yes/no/on/off" in got[2] and "add 'confirm: true'" in got[2]
    ok = _write(tmp_path, "jobs:\n  - {kind: clean, target: t-one, confirm: true}\n", "ok.yaml")
    assert validate_plan(ok, check_tables=False) == []


def test_missing_job_function_is_one_clear_error() -> None:
    from ddbmigrate.errors import UsageError
    from ddbmigrate.plan.run import _import_function

    with pytest.raises(UsageError, match="needs ddbmigrate.not_in_this_build.run, which this build"):
        _import_function("not_in_this_build", "run", "export")
    with pytest.raises(UsageError, match="needs ddbmigrate.jobs.copy.no_such_function"):
        _import_function("jobs.copy", "no_such_function", "copy")
