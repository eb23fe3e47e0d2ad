"""``--max-cost`` values and ``estimate import``'s input options, without AWS.

* A cap that is not a finite amount of US dollars, 0 or more (``nan``, ``inf``, ``-1``) is a usage
  error (exit 2, one line naming --max-cost) for every command that takes it, before anything is
  estimated, sampled or read: ``nan`` used to pass every comparison, so it silently disabled the cap.
* ``estimate import`` takes the import's own input options (every --input-format, --csv-header,
  --csv-delimiter) and refuses ``--native`` on a local SOURCE as the import does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List

import click
import pytest
from click.testing import CliRunner, Result

import ddbmigrate.estimate as estimate_pkg
import ddbmigrate.estimate.api as estimate_api
from ddbmigrate.cli import main
from ddbmigrate.cli.commands_estimate import estimate_import_cmd
from ddbmigrate.cli.commands_files import import_cmd
from ddbmigrate.config import RunOptions, TableRef
from ddbmigrate.errors import UsageError
from ddbmigrate.estimate import enforce_max_cost, estimate_import
from ddbmigrate.formats.detect import INPUT_FORMATS
from ddbmigrate.plan import PlanError, load_plan, run_plan

from support import one_usage_line

EP = "http://127.0.0.1:1"  # nothing listens: a command that got as far as AWS would fail differently

TABLE_DESC = {
    "TableName": "Orders", "BillingMode": "PAY_PER_REQUEST", "ItemCount": 0, "TableSizeBytes": 0,
    "TableStatus": "ACTIVE",
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                             {"AttributeName": "n", "AttributeType": "N"}],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "n", "KeyType": "RANGE"}],
}


def run(args: List[str]) -> Result:
    return CliRunner().invoke(main, args)




@pytest.fixture
def no_estimates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any estimate (sampling, DescribeTable) would fail the test: the cap is refused before."""
    def boom(*a: Any, **k: Any) -> Any:
        raise AssertionError("an estimate was started with an unusable --max-cost")

    for name in ("estimate_copy", "estimate_import", "estimate_export", "estimate_replicate"):
        monkeypatch.setattr(estimate_pkg, name, boom)
        monkeypatch.setattr(estimate_api, name, boom)


@pytest.fixture
def data(tmp_path: Path) -> str:
    p = tmp_path / "d.json"
    p.write_text('{"pk": "a", "n": 1}\n')
    return str(p)


# --------------------------------------------------------------------------- --max-cost


BAD_CAPS = ["nan", "NaN", "inf", "-inf", "-1", "-0.01", "1e400", "ten"]


@pytest.mark.parametrize("value", BAD_CAPS)
@pytest.mark.parametrize("argv", [
    ["copy", "Orders", "Orders2"],
    ["replicate", "Orders", "Orders2"],
    ["replicate", "Orders", "Orders2", "--no-backfill"],
    ["import", "{data}", "Orders"],
    ["estimate", "copy", "Orders", "Orders2"],
    ["estimate", "replicate", "Orders", "Orders2"],
    ["estimate", "import", "{data}", "Orders"],
    ["estimate", "export", "Orders", "out"],
    ["run", "{plan}"],
], ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_an_unusable_max_cost_is_one_usage_line_before_anything_runs(
        argv: List[str], value: str, data: str, tmp_path: Path, no_estimates: None) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text("jobs: [{kind: copy, source: Orders, target: Orders2}]\n")
    args = [a.format(data=data, plan=plan) for a in argv]
    r = run([*args, "--endpoint-url", EP, "--max-cost", value] if args[0] != "run" else
            [*args, "--max-cost", value])
    line = one_usage_line(r, "--max-cost", value)
    assert "US dollars" in line
    assert not (tmp_path / ".ddbmigrate").exists()  # no plan state, no checkpoint: nothing started


@pytest.mark.parametrize("value", ["0", "0.0", "12.5"])
def test_a_finite_cap_of_zero_or_more_is_accepted_by_the_option(value: str) -> None:
    param = next(p for p in estimate_import_cmd.params if p.name == "max_cost")
    assert param.type_cast_value(click.Context(estimate_import_cmd), value) == float(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0])
def test_the_library_refuses_an_unusable_cap_before_looking_at_the_estimate(value: float) -> None:
    with pytest.raises(UsageError, match="--max-cost must be a finite amount"):
        enforce_max_cost(None, value)  # type: ignore[arg-type]  # never looked at
    with pytest.raises(UsageError, match="--max-cost must be a finite amount"):
        run_plan("does-not-matter.yaml", max_cost=value)


@pytest.mark.parametrize("value", [".nan", ".inf", "-1"])
def test_a_plan_jobs_max_cost_must_be_finite_too(tmp_path: Path, value: str) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(f"jobs:\n  - kind: copy\n    source: Orders\n    target: Orders2\n"
                    f"    options: {{max_cost: {value}}}\n")
    with pytest.raises(PlanError) as info:
        load_plan(str(plan))
    assert any("max_cost must be a finite amount of US dollars" in str(p) and "p.yaml:5" in str(p)
               for p in info.value.problems), info.value.problems


# --------------------------------------------------------------------------- estimate import's input options


def _choices(cmd: click.Command, name: str) -> List[str]:
    param = next(p for p in cmd.params if p.name == name)
    assert isinstance(param.type, click.Choice)
    return list(param.type.choices)


def test_estimate_import_takes_the_import_s_input_options() -> None:
    assert _choices(estimate_import_cmd, "input_format") == _choices(import_cmd, "input_format") \
        == list(INPUT_FORMATS)
    assert {"csv", "ion"} <= set(INPUT_FORMATS)
    theirs = {p.name: p for p in import_cmd.params}
    mine = {p.name: p for p in estimate_import_cmd.params}
    for name in ("input_format", "csv_header", "csv_delimiter", "follow_symlinks"):
        assert name in mine, name
        assert mine[name].default == theirs[name].default, name


@pytest.mark.parametrize("fmt", [f for f in INPUT_FORMATS])
def test_every_input_format_and_the_csv_options_reach_the_estimate(
        fmt: str, data: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: Dict[str, Any] = {}

    def fake(source: str, table: Any, options: Any = None, **kw: Any) -> Any:
        seen.update(kw)
        raise UsageError("stopped by the test")

    monkeypatch.setattr(estimate_pkg, "estimate_import", fake)
    r = run(["estimate", "import", data, "Orders", "--endpoint-url", EP, "--input-format", fmt,
             "--csv-delimiter", ";", "--csv-header", "pk,n"])
    one_usage_line(r, "stopped by the test")
    assert seen["input_format"] == fmt and seen["csv_delimiter"] == ";" and seen["csv_header"] == ["pk", "n"]


class _FakeTable:
    """DescribeTable of an existing table, without AWS."""

    def __init__(self, desc: Dict[str, Any]) -> None:
        self.desc = desc

    def describe_table(self) -> Dict[str, Any]:
        return dict(self.desc)

    def close(self) -> None:
        pass


def test_a_semicolon_csv_without_a_header_is_sampled_as_the_import_reads_it(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "orders.csv").write_text("".join(f"o{i};{i};{'x' * i}\n" for i in range(10)))
    est = estimate_import(str(d), TableRef("Orders", region="us-east-1"), RunOptions(), input_format="csv",
                          csv_header=["pk", "n", "pad"], csv_delimiter=";", client=_FakeTable(TABLE_DESC),
                          sample=100)
    doc = est.to_dict()
    sample = doc["inputs"]["sample"]
    assert sample["items"] == 10, doc["inputs"]
    # Each row became {pk: S, n: N, pad: S}: the key spread counts 10 distinct pk values.
    assert doc["keys"]["table"]["distinct_values_in_sample"] == 10, doc["keys"]


def test_estimate_import_checks_the_csv_options_as_the_import_does(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "orders.csv").write_text("pk,n\no1,1\n")
    with pytest.raises(UsageError, match="--csv-delimiter must be one character"):
        estimate_import(str(d), TableRef("Orders"), input_format="csv", csv_delimiter=";;",
                        client=_FakeTable(TABLE_DESC))


def test_estimate_import_refuses_native_on_a_local_source_as_the_import_does(tmp_path: Path) -> None:
    d = tmp_path / "localdir"
    d.mkdir()
    (d / "x.json").write_text('{"pk": "a", "n": 1}\n')
    spec = tmp_path / "spec.yaml"
    spec.write_text("KeySchema: [{AttributeName: pk, KeyType: HASH}]\n"
                    "AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\n")
    real = run(["import", str(d), "Orders", "--endpoint-url", EP, "--native", "--spec", str(spec)])
    est = run(["estimate", "import", str(d), "Orders", "--endpoint-url", EP, "--native"])
    assert real.exit_code == est.exit_code == 2, (real.stderr, est.stderr)
    message = "--native imports read S3: SOURCE must be s3://bucket/prefix (an export folder)"
    assert message in real.stderr and message in est.stderr
    assert real.stderr.strip().splitlines()[-1] == est.stderr.strip().splitlines()[-1]
    est = run(["estimate", "import", str(d), "Orders", "--endpoint-url", EP, "--native", "--bulk-put"])
    assert est.exit_code == 2 and message in est.stderr
    # The library says the same (import --native --max-cost estimates through it first).
    with pytest.raises(UsageError, match="--native imports read S3"):
        estimate_import(str(d), TableRef("Orders"), native=True, client=_FakeTable(TABLE_DESC))


def test_a_plan_import_job_is_estimated_with_its_input_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ddbmigrate.plan.estimate import estimate_job

    seen: Dict[str, Any] = {}

    def fake(source: str, table: Any, options: Any = None, **kw: Any) -> Any:
        seen.update(kw)
        raise UsageError("stopped by the test")

    monkeypatch.setattr(estimate_pkg, "estimate_import", fake)
    (tmp_path / "in").mkdir()
    plan = tmp_path / "p.yaml"
    plan.write_text("jobs:\n  - kind: import\n    from: in\n    target: Orders\n"
                    "    args: {input_format: csv, csv_delimiter: ';', csv_header: 'pk,n'}\n")
    r = estimate_job(load_plan(str(plan)).jobs[0])
    assert r.error == "stopped by the test"
    assert seen["input_format"] == "csv" and seen["csv_delimiter"] == ";" and seen["csv_header"] == ["pk", "n"]
