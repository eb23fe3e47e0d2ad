"""A key given twice in a YAML (or JSON) file ddbmigrate reads is refused, never resolved by
keeping the last one: plan files and table specs (properties, resources, templates; YAML or JSON).
One line names the file, the line and the key; the exit code is 2."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, List

import pytest
import yaml
from click.testing import CliRunner, Result

from ddbmigrate.aws.tables import load_spec
from ddbmigrate.cli import main
from ddbmigrate.errors import UsageError
from ddbmigrate.plan.yaml_lines import PlanError, load_yaml
from ddbmigrate.yaml_strict import DuplicateKeyError, load_text

# No AWS call is ever made: every refusal comes before one (an unreachable endpoint would show).
DEAD = ["--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"]


def run(args: List[str]) -> Result:
    return CliRunner().invoke(main, args)


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return str(path)


def error_lines(r: Result) -> List[str]:
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]


# --------------------------------------------------------------------------- plans


PLAN_TWO_TARGETS = """
jobs:
  - kind: copy
    source: src
    target: dst
    target: vaa
"""


def test_plan_validate_refuses_a_job_with_two_targets(tmp_path: Path) -> None:
    plan = write(tmp_path / "plan.yaml", PLAN_TWO_TARGETS)
    r = run(["plan", "validate", plan, "--no-check-tables"])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert isinstance(r.exception, SystemExit)
    lines = error_lines(r)
    assert len(lines) == 1, r.stderr
    assert f"{plan}:5:" in lines[0] and "duplicate key 'target'" in lines[0] and "line 4" in lines[0], lines
    assert "vaa" not in r.stdout  # nothing "would run" against the second target


def test_run_refuses_the_plan_with_one_line(tmp_path: Path) -> None:
    plan = write(tmp_path / "plan.yaml", PLAN_TWO_TARGETS)
    r = run(["run", plan])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = error_lines(r)
    assert len(lines) == 1 and f"{plan}:5" in lines[0] and "'target'" in lines[0], r.stderr


def test_every_repeated_key_of_a_plan_at_any_depth_is_named(tmp_path: Path) -> None:
    plan = write(tmp_path / "plan.yaml", """
        defaults:
          options: {write_percent: 50, write_percent: 80}
        jobs:
          - kind: copy
            source: {table: a, region: eu-west-1, region: us-east-1}
            target: b
        jobs: []
    """)
    with pytest.raises(PlanError) as ei:
        load_yaml(plan)
    got = [(p.line, p.message.split(" (")[0]) for p in ei.value.problems]
    assert got == [(2, "duplicate key 'write_percent'"), (5, "duplicate key 'region'"), (7, "duplicate key 'jobs'")]
    assert all(p.file == plan for p in ei.value.problems)


def test_merge_keys_are_not_repetitions(tmp_path: Path) -> None:
    # A key next to "<<: *base" overrides the merged one, as YAML says; lines still come out right.
    plan = write(tmp_path / "plan.yaml", """
        base: &base {kind: copy, source: a, target: b}
        jobs:
          - <<: *base
            target: c
          - <<: *base
    """)
    data, lines = load_yaml(plan)
    assert data["jobs"] == [{"kind": "copy", "source": "a", "target": "c"},
                            {"kind": "copy", "source": "a", "target": "b"}]
    assert lines[("jobs", 0, "target")] == 4


def test_a_merged_anchor_that_overrides_its_own_merge_is_fine() -> None:
    # The anchor's node is flattened (by PyYAML, when the alias is merged) before its own mapping
    # is constructed: its override is still one key, and the data is what PyYAML makes of it.
    text = "x:\n  y: &b\n    <<: {k: 1}\n    k: 2\nz:\n  <<: *b\n"
    data, _ = load_text(text)
    assert data == yaml.safe_load(text)


@pytest.mark.parametrize("text, key", [
    ("a: 1\nb: 2\na: 3\n", "a"),
    ("'a': 1\n\"a\": 2\n", "a"),            # quoting does not make another key
    ("true: 1\nTrue: 2\n", True),           # nor another spelling of the same value
    ("l:\n  - {x: 1, x: 2}\n", "x"),        # inside a sequence
    ("<<: {a: 1}\n<<: {b: 2}\n", "<<"),     # two merge keys: one "<<: [*a, *b]" says it
])
def test_duplicates_found(text: str, key: Any) -> None:
    with pytest.raises(DuplicateKeyError) as ei:
        load_text(text)
    assert ei.value.duplicates[0].key == key


@pytest.mark.parametrize("text", ["1: a\n'1': b\n", "a: {x: 1}\nb: {x: 1}\n", "a: &x {k: 1}\nb: *x\n"])
def test_distinct_keys_are_fine(text: str) -> None:
    load_text(text)


# --------------------------------------------------------------------------- table specs


SPEC_TWO_KEY_SCHEMAS = """
TableName: dup
BillingMode: PAY_PER_REQUEST
AttributeDefinitions:
  - {AttributeName: pk, AttributeType: S}
  - {AttributeName: sk, AttributeType: S}
KeySchema:
  - {AttributeName: pk, KeyType: HASH}
KeySchema:
  - {AttributeName: sk, KeyType: HASH}
"""


def test_create_table_refuses_a_spec_with_two_key_schemas(tmp_path: Path) -> None:
    spec = write(tmp_path / "table.yaml", SPEC_TWO_KEY_SCHEMAS)
    r = run(["create-table", "--spec", spec, *DEAD])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert isinstance(r.exception, SystemExit)
    lines = error_lines(r)
    assert len(lines) == 1 and r.stderr.strip() == lines[0], r.stderr
    assert f"{spec}:8:" in lines[0] and "duplicate key 'KeySchema'" in lines[0] and "line 6" in lines[0], lines


def test_a_json_spec_is_held_to_the_same_rule(tmp_path: Path) -> None:
    spec = write(tmp_path / "table.json", """
        {"TableName": "dup", "BillingMode": "PAY_PER_REQUEST",
         "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
         "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH", "KeyType": "RANGE"}]}
    """)
    r = run(["create-table", "--spec", spec, *DEAD])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = error_lines(r)
    assert len(lines) == 1 and f"{spec}:3:" in lines[0] and "duplicate key 'KeyType'" in lines[0], r.stderr


def test_a_template_repeating_a_key_deep_inside_is_refused(tmp_path: Path) -> None:
    spec = write(tmp_path / "stack.yaml", """
        Resources:
          Orders:
            Type: AWS::DynamoDB::Table
            Properties:
              BillingMode: PAY_PER_REQUEST
              AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
              KeySchema: [{AttributeName: pk, KeyType: HASH}]
              BillingMode: PROVISIONED
    """)
    with pytest.raises(UsageError) as ei:
        load_spec(spec)
    assert ei.value.exit_code == 2
    assert ei.value.message.startswith(f"table spec {spec}:8: duplicate key 'BillingMode' (first given at line 5)")


def test_a_valid_spec_still_loads(tmp_path: Path) -> None:
    spec = write(tmp_path / "table.yaml", SPEC_TWO_KEY_SCHEMAS.rsplit("KeySchema:", 1)[0])
    assert load_spec(spec)["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]


def test_a_policy_document_given_as_json_text_is_held_to_the_same_rule(tmp_path: Path) -> None:
    # The policy is JSON inside the spec: a name repeated there would be read as one of the two.
    policy = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Effect": "Deny", '
              '"Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "dynamodb:GetItem", '
              '"Resource": "*"}]}')
    spec = write(tmp_path / "table.yaml", f"""
        TableName: pol
        BillingMode: PAY_PER_REQUEST
        AttributeDefinitions: [{{AttributeName: pk, AttributeType: S}}]
        KeySchema: [{{AttributeName: pk, KeyType: HASH}}]
        ResourcePolicy:
          PolicyDocument: '{policy}'
    """)
    r = run(["create-table", "--spec", spec, *DEAD])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = error_lines(r)
    assert len(lines) == 1 and "PolicyDocument" in lines[0] and "'Effect' appears twice" in lines[0], r.stderr
    # The same policy without the repeat is accepted by the check (the dead endpoint fails later).
    ok = write(tmp_path / "ok.yaml", open(spec).read().replace('"Effect": "Deny", ', ""))
    r = run(["create-table", "--spec", ok, *DEAD])
    assert "PolicyDocument" not in r.stderr, r.stderr


# ------------------------------------------------------------------ aliases that expand too far

BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['x'] * 9)}]\n"
               for p, c in zip([""] + list("abcdefg"), "abcdefgh")) + "jobs: *h\n"


def test_a_billion_laughs_plan_is_refused_before_it_is_walked(tmp_path: Path) -> None:
    """Nine lines standing for 9**8 (43 million) jobs: before, `plan validate` grew past 5 GB."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    r = run(["plan", "validate", str(path)])
    assert r.exit_code == 2, r.output
    assert "expand it to over 1,000,000 values" in r.output and "bomb.yaml" in r.output, r.output
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB
    with pytest.raises(UsageError, match="spec .*bomb.yaml: its aliases"):
        load_spec(str(path))


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    from ddbmigrate.yaml_strict import AliasBombError

    with pytest.raises(AliasBombError, match="from inside itself"):
        load_text("a: &x [1, *x]\n")


def test_ordinary_anchors_and_merges_still_load() -> None:
    data, _ = load_text("base: &b {segments: 4}\njobs:\n  - {<<: *b, name: one}\n  - {<<: *b, name: two}\n"
                        "list: &l [1, 2]\nagain: [*l, *l]\n")
    assert data["jobs"] == [{"segments": 4, "name": "one"}, {"segments": 4, "name": "two"}]
    assert data["again"] == [[1, 2], [1, 2]]
