"""Plan files: schema checks name the line; defaults, paths and names resolve as documented (no server)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

from ddbmigrate.plan import PlanError, load_plan
from ddbmigrate.plan.report import JobResult, PlanReport
from ddbmigrate.plan.validate import validate_plan


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
    assert list(got) == [6] and "mode must be one of" in got[6]  # the line of the value


def test_a_bad_mode_is_told_the_values_a_plan_takes(tmp_path: Path) -> None:
    """Before: the message listed skip_existing, a value it then refused as not one of them."""
    path = _write(tmp_path, """
        jobs:
          - {kind: copy, source: a-table, target: b-table, options: {mode: skip_existing}}
          - {kind: copy, source: a-table, target: c-table, options: {mode: skip-existing}}
    """)
    got = _problems(path)
    assert list(got) == [2], got
    assert "mode must be one of overwrite, skip-existing, fail-existing, not 'skip_existing'" in got[2]


def test_every_bad_option_value_is_named_on_its_own_line(tmp_path: Path) -> None:
    """Before: the options were checked together, and only the first bad value was said."""
    path = _write(tmp_path, """
        jobs:
          - kind: copy
            source: a-table
            target: b-table
            options:
              segments: -3
              mode: skip-existing
              max_attempts: 0
              max_write_units: -5
              write_percent: 500
    """)
    got = _problems(path)
    assert sorted(got) == [6, 8, 9, 10], got
    assert "segments must be between" in got[6] and "max attempts must be at least 1" in got[8]
    assert "max_write_units must be a positive number" in got[9] and "write_percent must be in (0, 100]" in got[10]


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
    # A job with no verdict (a verify that failed before comparing) has nothing to add up.
    assert rep.balanced()
    rep.jobs.append(JobResult("e", "verify", 5, status="failed", exit_code=2, report={"balanced": None}))
    assert rep.balanced()
    rep.jobs.append(JobResult("f", "copy", 6, status="done", report={"balanced": False}))
    assert not rep.balanced()


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
    from ddbmigrate.jobs.registry import resolve

    with pytest.raises(UsageError, match="job kind 'export' needs ddbmigrate.not_in_this_build.run, which this build"):
        resolve("ddbmigrate.not_in_this_build", "run", "job kind 'export'")
    with pytest.raises(UsageError, match="needs ddbmigrate.jobs.copy.no_such_function, which this build"):
        resolve("ddbmigrate.jobs.copy", "no_such_function", "job kind 'copy'")


def test_registry_names_every_kind_and_its_engines() -> None:
    from ddbmigrate.jobs import registry

    assert registry.job_kind("copy").reference == "ddbmigrate.jobs.copy.copy_table"
    assert registry.job_kind("export", native=True).reference == "ddbmigrate.aws.managed.native_export"
    assert registry.job_kind("import", native=True).reference == "ddbmigrate.aws.managed.native_import"
    assert registry.job_kind("clean", native=True) is registry.job_kind("clean")  # no native variant
    assert registry.engines_for("replicate") == ("threads",)
    assert registry.engines_for("export", native=True) == ("threads",)
    assert registry.engines_for("verify") == ("threads", "processes", "spark")
    for kind in registry.KINDS:
        assert callable(registry.job_function(kind))
    assert registry.job_function("copy").__name__ == "copy_table"


def test_a_kind_missing_from_the_build_is_a_plan_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ddbmigrate.jobs import registry

    gone = registry.JobKind("replicate", "ddbmigrate.jobs.not_in_this_build", "replicate", ("threads",))
    monkeypatch.setitem(registry._REGISTRY, ("replicate", False), gone)
    path = _write(tmp_path, """
        jobs:
          - {kind: copy, source: a-table, target: b-table}
          - {kind: replicate, source: a-table, target: c-table}
    """)
    got = _problems(path)
    assert list(got) == [3]
    assert got[3] == ("replicate-a-table: job kind 'replicate' needs ddbmigrate.jobs.not_in_this_build.replicate, "
                      "which this build of ddbmigrate does not include")
    from ddbmigrate.errors import UsageError
    from ddbmigrate.plan import run_plan

    with pytest.raises(UsageError, match="not_in_this_build"):  # before any job starts
        run_plan(path, progress="off", state_dir=str(tmp_path / "st"))
    assert not (tmp_path / "st").exists()


# --------------------------------------------------------------------------- engines


def test_engine_fields_apply_per_job_and_from_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        defaults:
          engine: processes
          processes: 6
          spark_master: "local[4]"
        jobs:
          - {kind: copy, source: a-table, target: b-table}
          - {kind: copy, source: a-table, target: c-table, processes: 3}
          - {kind: export, source: a-table, to: out, engine: spark}
          - {kind: import, from: out, target: d-table, engine: spark, spark_master: "local[2]"}
          - {kind: verify, source: a-table, target: b-table, engine: threads}
          - {kind: replicate, source: a-table, target: e-table}
          - {kind: export, source: a-table, to: "s3://b/p", native: true}
    """)
    jobs = load_plan(path).jobs
    got = [(j.engine, j.processes, j.spark_master) for j in jobs]
    assert got == [("processes", 6, None), ("processes", 3, None), ("spark", None, "local[4]"),
                   ("spark", None, "local[2]"), ("threads", None, None),
                   # a default engine serves only the kinds that can run on it
                   (None, None, None), (None, None, None)]
    assert [j.passed_engine() for j in jobs] == ["processes", "processes", "spark", "spark", "threads", None, None]
    assert "engine processes (3)" in jobs[1].describe() and "engine spark (local[2])" in jobs[3].describe()


def test_processes_default_to_two(tmp_path: Path) -> None:
    path = _write(tmp_path, "jobs: [{kind: clean, target: t-one, confirm: true, engine: processes}]\n")
    (job,) = load_plan(path).jobs
    assert (job.engine, job.processes) == ("processes", 2)


def test_no_engine_field_means_no_engine(tmp_path: Path) -> None:
    path = _write(tmp_path, "jobs: [{kind: copy, source: a-table, target: b-table}]\n")
    (job,) = load_plan(path).jobs
    assert (job.engine, job.processes, job.spark_master, job.passed_engine()) == (None, None, None, None)


def test_engine_field_problems_each_name_their_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        defaults:
          engine: threds
        jobs:
          - kind: copy
            source: a-table
            target: b-table
            engine: sparkle
          - kind: copy
            source: a-table
            target: c-table
            engine: processes
            processes: 0
          - kind: copy
            source: a-table
            target: d-table
            engine: processes
            processes: two
          - kind: replicate
            source: a-table
            target: e-table
            engine: spark
          - kind: export
            source: a-table
            to: s3://bucket/p
            native: true
            engine: processes
          - kind: copy
            source: a-table
            target: f-table
            processes: 4
          - kind: copy
            source: a-table
            target: g-table
            engine: spark
            spark_master: ""
          - kind: copy
            source: a-table
            target: h-table
            engine: processes
            spark_master: "local[2]"
          - kind: copy
            source: a-table
            target: i-table
            processes: true
            engine: processes
    """)
    with pytest.raises(PlanError) as ei:
        load_plan(path)
    got: Dict[int, str] = {}
    for p in ei.value.problems:
        assert p.line is not None and "\n" not in str(p), p
        got[p.line] = got[p.line] + " | " + p.message if p.line in got else p.message
    assert got[2] == "defaults.engine must be one of threads, processes, spark, not 'threds'; did you mean 'threads'?"
    assert got[7] == "jobs[0].engine must be one of threads, processes, spark, not 'sparkle'; did you mean 'spark'?"
    assert got[12] == "jobs[1].processes must be a positive integer, not 0"
    assert got[17] == "jobs[2].processes must be a positive integer, not 'two'"
    assert got[21] == "jobs[3].engine: replicate runs on threads only, not 'spark'"
    assert got[26] == "jobs[4].engine: a native export runs on threads only, not 'processes'"
    assert got[30] == "jobs[5].processes applies only to engine: processes (this job runs on threads)"
    assert got[35].startswith("jobs[6].spark_master must be a Spark master URL")
    assert got[40] == "jobs[7].spark_master applies only to engine: spark (this job runs on processes)"
    assert got[44] == "jobs[8].processes must be a positive integer, not True"
    assert len(ei.value.problems) == 10


def test_engine_is_not_part_of_the_job_definition(tmp_path: Path) -> None:
    """Moving a finished job to another engine must not make --resume run it again, and plan
    states saved before engines existed keep their hashes."""
    plain = _write(tmp_path, "jobs: [{kind: copy, source: a-table, target: b-table}]\n", "a.yaml")
    spark = _write(tmp_path, "jobs: [{kind: copy, source: a-table, target: b-table, engine: spark, "
                             "spark_master: 'local[2]'}]\n", "b.yaml")
    (a,), (b,) = load_plan(plain).jobs, load_plan(spark).jobs
    assert a.definition_hash() == b.definition_hash()
    assert "engine" not in a.definition()
    # the hash 0.1 computed for this job (before engines), as saved in its plan-state.json
    assert a.definition_hash() == "b969eb771ab666b46be5e925fd53fb0329826fb4f196ab048cc044b310812116"


def test_an_engine_missing_from_the_build_is_a_plan_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ddbmigrate.engine as engine_pkg

    monkeypatch.delattr(engine_pkg, "engine_for", raising=False)
    path = _write(tmp_path, """
        jobs:
          - {kind: copy, source: a-table, target: b-table}
          - {kind: copy, source: a-table, target: c-table, engine: processes}
          - {kind: replicate, source: a-table, target: d-table, engine: threads}
    """)
    got = _problems(path)
    assert got == {3: "copy-a-table-2: engine 'processes' needs ddbmigrate.engine.engine_for, which this build of "
                      "ddbmigrate does not include"}


def test_engine_needs_a_function_that_takes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ddbmigrate.engine as engine_pkg
    from ddbmigrate.jobs import registry

    def old_clean(table: object, options: object = None) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(engine_pkg, "engine_for", lambda name, **kw: name, raising=False)
    monkeypatch.setattr(registry.JobKind, "resolve", lambda self: old_clean)
    path = _write(tmp_path, "jobs: [{kind: clean, target: t-one, confirm: true, engine: spark}]\n")
    got = _problems(path)
    assert list(got) == [1] and "needs ddbmigrate.jobs.clean.clean_table to take engine=" in got[1]


def test_run_passes_engine_only_when_the_job_names_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job without ``engine:`` is called exactly as before engines existed (no keyword at all);
    one with it gets ``engine_for(name, processes=..., spark_master=...)``."""
    import ddbmigrate.engine as engine_pkg
    from ddbmigrate.jobs import registry
    from ddbmigrate.plan import run_plan

    built: List[Dict[str, object]] = []
    calls: Dict[str, Dict[str, object]] = {}

    def engine_for(name: str, *, processes: int = 2, spark_master: object = None) -> str:
        built.append({"name": name, "processes": processes, "spark_master": spark_master})
        return f"<{name} engine>"

    def clean_table(table: object, options: object = None, *, confirm: object = None,
                    **kw: object) -> Dict[str, object]:
        calls[getattr(table, "table")] = {"engine_given": "engine" in kw, "engine": kw.get("engine")}
        return {"counters": {"read": 0}, "balanced": True, "exit_code": 0}

    monkeypatch.setattr(engine_pkg, "engine_for", engine_for, raising=False)
    monkeypatch.setattr(registry.JobKind, "resolve", lambda self: clean_table)
    path = _write(tmp_path, """
        defaults:
          spark_master: "local[3]"
        jobs:
          - {kind: clean, target: t-plain, confirm: true}
          - {kind: clean, target: t-procs, confirm: true, engine: processes, processes: 5}
          - {kind: clean, target: t-spark, confirm: true, engine: spark}
    """)
    rep = run_plan(path, progress="off", state_dir=str(tmp_path / "st"))
    assert rep.status == "done", [(j.name, j.error) for j in rep.jobs]
    assert calls == {"t-plain": {"engine_given": False, "engine": None},
                     "t-procs": {"engine_given": True, "engine": "<processes engine>"},
                     "t-spark": {"engine_given": True, "engine": "<spark engine>"}}
    assert sorted(built, key=lambda b: str(b["name"])) == [
        {"name": "processes", "processes": 5, "spark_master": None},
        {"name": "spark", "processes": 2, "spark_master": "local[3]"}]


@pytest.mark.parametrize("engine", ["threads", "processes", "spark"])
def test_verify_and_verify_after_accept_every_engine(tmp_path: Path, engine: str) -> None:
    path = _write(tmp_path, f"""
        defaults:
          engine: {engine}
        jobs:
          - {{name: move, kind: copy, source: t-src, target: t-dst, verify_after: true}}
          - {{name: check, kind: verify, source: t-src, target: t-dst, after: [move]}}
        """)
    assert validate_plan(path, check_tables=False) == []


def test_validate_prints_control_characters_from_a_message_inertly(tmp_path: Path) -> None:
    """A transform's message (a sampled item's values in it) was printed raw: on a terminal, an
    OSC sequence in it set the window title (click strips CSI colours alone, and only off one)."""
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    (tmp_path / "tx.py").write_text('raise ValueError("bad \\x1b]0;pwned\\x07 \\x1b[2J value")\n')
    path = _write(tmp_path, """
        jobs:
          - {kind: copy, source: a-table, target: b-table, transform: "tx.py:fix"}
    """)
    r = CliRunner().invoke(main, ["plan", "validate", path, "--no-check-tables"], color=True)
    assert r.exit_code == 2
    assert "bad \\x1b]0;pwned\\x07 \\x1b[2J value" in r.output and "\x1b" not in r.output and "\x07" not in r.output
