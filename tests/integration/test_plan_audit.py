"""Plan defects found by an audit, reproduced on DynamoDB Local: exact items, statuses and messages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from ddbmigrate.plan import run_plan, validate_plan
from ddbmigrate.plan.yaml_lines import PlanProblem
from support import as_set, boto_client, create_table, put_items, scan_all, unique, write_plan

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plans"
SPEC = ("AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\n"
        "KeySchema: [{AttributeName: pk, KeyType: HASH}]\n")


def _items(prefix: str, n: int) -> List[Dict[str, Any]]:
    return [{"pk": {"S": f"{prefix}{i:03d}"}, "n": {"N": str(i)}} for i in range(n)]


def _with_defaults(plan: Path, **defaults: Any) -> None:
    doc = yaml.safe_load(plan.read_text())
    doc["defaults"].update(defaults)
    plan.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_default_verify_after_verifies_copies_and_leaves_imports_alone(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    items = _items("v", 25)
    put_items(endpoint, src, items)
    (tmp_path / "spec.yaml").write_text(SPEC)
    plan = write_plan(tmp_path / "plan.yaml", endpoint, [
        {"kind": "copy", "name": "cp", "source": src, "target": src + "-copy"},
        {"kind": "export", "name": "exp", "source": src, "to": "out"},
        {"kind": "import", "name": "imp", "from": "out", "target": src + "-imp", "target_spec": "spec.yaml",
         "after": "exp"}], state_dir="state")
    _with_defaults(plan, create_target=True, verify_after=True)
    assert validate_plan(str(plan)) == []

    rep = run_plan(str(plan), progress="off")

    assert rep.status == "done" and rep.exit_code == 0, [(j.name, j.error) for j in rep.jobs]
    assert as_set(scan_all(endpoint, src + "-imp")) == as_set(items)
    assert as_set(scan_all(endpoint, src + "-copy")) == as_set(items)
    assert rep.job("cp").verify is not None and rep.job("cp").verify["exit_code"] == 0
    assert rep.job("imp").verify is None and rep.job("imp").report["counters"]["written"] == 25


def test_two_jobs_after_another_create_their_one_new_target_once(endpoint: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Both start when the export they wait for ends; the first creates the table from the spec,
    the second finds it and writes into it (no ResourceInUseException)."""
    from ddbmigrate.aws.client import DynamoClient
    from ddbmigrate.errors import TableNotFoundError

    real = DynamoClient.describe_table

    def slow_when_missing(self: DynamoClient, *a: Any, **kw: Any) -> Any:
        # Widens the window between "the target is missing" and CreateTable, where both jobs met.
        try:
            return real(self, *a, **kw)
        except TableNotFoundError:
            time.sleep(0.5)
            raise

    monkeypatch.setattr(DynamoClient, "describe_table", slow_when_missing)
    one, two = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, one, _items("a", 30))
    put_items(endpoint, two, _items("b", 30))
    shop = unique("shop")
    (tmp_path / "spec.yaml").write_text(SPEC)
    plan = write_plan(tmp_path / "plan.yaml", endpoint, [
        {"kind": "export", "name": "gate", "source": one, "to": "gate"},
        {"kind": "copy", "name": "c1", "source": one, "target": shop, "target_spec": "spec.yaml", "after": "gate"},
        {"kind": "copy", "name": "c2", "source": two, "target": shop, "target_spec": "spec.yaml", "after": "gate"}],
        state_dir="state", parallel=3)
    assert validate_plan(str(plan)) == []

    rep = run_plan(str(plan), progress="off")

    assert rep.status == "done" and rep.exit_code == 0, [(j.name, j.error) for j in rep.jobs]
    assert as_set(scan_all(endpoint, shop)) == as_set(_items("a", 30) + _items("b", 30))


def test_a_job_removed_from_the_plan_does_not_block_the_next_run(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    put_items(endpoint, src, _items("r", 10))
    jobs: List[Dict[str, Any]] = [
        {"kind": "copy", "name": "v1", "source": src, "target": src + "-v1", "create_target": True},
        {"kind": "copy", "name": "c3", "source": src, "target": unique("missing")}]
    plan = write_plan(tmp_path / "plan.yaml", endpoint, jobs, state_dir="state")
    first = run_plan(str(plan), progress="off")
    assert first.job("c3").status == "failed" and first.exit_code == 1
    plan = write_plan(tmp_path / "plan.yaml", endpoint, jobs[:1] + [
        {"kind": "copy", "name": "v2", "source": src, "target": src + "-v2", "create_target": True}],
        state_dir="state")

    second = run_plan(str(plan), progress="off")

    assert second.status == "done" and second.exit_code == 0, [(j.name, j.error) for j in second.jobs]
    assert [j.name for j in second.jobs] == ["v1", "v2"]
    assert as_set(scan_all(endpoint, src + "-v2")) == as_set(_items("r", 10))
    state = yaml.safe_load((tmp_path / "state" / "plan-state.json").read_text())
    assert sorted(state["jobs"]) == ["v1", "v2"]


@pytest.mark.parametrize("content", [b"{\"version\": 1, \"jobs\": {", b"[1]", b'{"version": 9, "jobs": {}}'])
def test_a_plan_state_that_does_not_read_is_refused_and_restart_starts_over(endpoint: str, tmp_path: Path,
                                                                           content: bytes) -> None:
    """The refusal names --restart, which refused the same (and "[1]" was an internal error)."""
    from ddbmigrate.errors import UsageError

    src = create_table(endpoint)
    put_items(endpoint, src, _items("s", 10))
    plan = write_plan(tmp_path / "plan.yaml", endpoint, [
        {"kind": "copy", "name": "c", "source": src, "target": src + "-c", "create_target": True}],
        state_dir="state")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "plan-state.json").write_bytes(content)
    for resume in (False, True):
        with pytest.raises(UsageError, match="use --restart to start over"):
            run_plan(str(plan), progress="off", resume=resume)

    rep = run_plan(str(plan), progress="off", restart=True)

    assert rep.status == "done" and rep.exit_code == 0, [(j.name, j.error) for j in rep.jobs]
    assert as_set(scan_all(endpoint, src + "-c")) == as_set(_items("s", 10))
    assert run_plan(str(plan), progress="off", resume=True).job("c").resumed_from_state


def test_fail_fast_stops_the_plan_when_a_target_cannot_be_prepared(endpoint: str, tmp_path: Path) -> None:
    """A job whose target failed to be created is a failed job: with fail_fast the others ran anyway."""
    src = create_table(endpoint)
    put_items(endpoint, src, _items("f", 10))
    (tmp_path / "bad.yaml").write_text("not: a: spec\n")
    later = unique("later")
    plan = write_plan(tmp_path / "plan.yaml", endpoint, [
        {"kind": "copy", "name": "broken", "source": src, "target": unique("broken"), "target_spec": "bad.yaml"},
        {"kind": "copy", "name": "later", "source": src, "target": later, "create_target": True}],
        fail_fast=True)
    rep = run_plan(str(plan), progress="off")
    assert rep.job("broken").status == "failed" and "preparing the target" in (rep.job("broken").error or "")
    assert rep.job("later").status == "not-started" and rep.job("later").report is None
    assert rep.status == "failed" and rep.exit_code == 2
    with pytest.raises(Exception, match="ResourceNotFound"):  # not created either
        boto_client(endpoint).describe_table(TableName=later)


def test_a_copy_that_ends_as_the_plan_stops_is_verified_by_the_resume(endpoint: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy that returned just as the plan was stopped skipped its verify_after and was saved
    "done": every --resume then skipped it, and its verify never ran."""
    from ddbmigrate.jobs import registry

    real = registry.job_function("copy")

    def copy_then_stopped(*args: Any, cancel: Any, **kw: Any) -> Any:
        report = real(*args, cancel=cancel, **kw)
        cancel.set()  # the plan's Ctrl-C, right after the copy's last batch
        return report

    src = create_table(endpoint)
    put_items(endpoint, src, _items("v", 10))
    plan = write_plan(tmp_path / "plan.yaml", endpoint, [
        {"kind": "copy", "name": "c", "source": src, "target": src + "-v", "create_target": True,
         "verify_after": True}], state_dir="state")
    resolve = registry.JobKind.resolve
    with monkeypatch.context() as m:
        m.setattr(registry.JobKind, "resolve",
                  lambda self: copy_then_stopped if self.kind == "copy" else resolve(self))
        first = run_plan(str(plan), progress="off")
    assert first.job("c").status == "interrupted" and first.job("c").verify is None and first.exit_code == 130

    again = run_plan(str(plan), progress="off", resume=True)

    job = again.job("c")
    assert job.status == "done" and not job.resumed_from_state and again.exit_code == 0
    assert job.verify is not None and job.verify["equal"] == 10


def test_a_finished_job_changed_before_a_resume_runs_again(endpoint: str, tmp_path: Path) -> None:
    """Docs: --resume skips the jobs done *whose definition did not change*. A changed one met its
    old finished checkpoint ("of a finished run of a different job ... use --restart") and failed,
    so only a --restart of every job ran it."""
    src = create_table(endpoint)
    put_items(endpoint, src, _items("d", 12))
    jobs: List[Dict[str, Any]] = [
        {"kind": "copy", "name": "moved", "source": src, "target": src + "-old", "create_target": True},
        {"kind": "copy", "name": "broken", "source": src, "target": unique("missing")}]
    plan = write_plan(tmp_path / "plan.yaml", endpoint, jobs, state_dir="state")
    first = run_plan(str(plan), progress="off")
    assert first.job("moved").status == "done" and first.job("broken").status == "failed"
    jobs[0]["target"] = src + "-new"
    plan = write_plan(tmp_path / "plan.yaml", endpoint, jobs, state_dir="state")

    again = run_plan(str(plan), progress="off", resume=True)

    moved = again.job("moved")
    assert moved.status == "done" and not moved.resumed_from_state, moved.error
    assert moved.report is not None and moved.report["counters"]["written"] == 12
    assert as_set(scan_all(endpoint, src + "-new")) == as_set(_items("d", 12))
    assert again.job("broken").status == "failed"


def _remodel(endpoint: str, tmp_path: Path, on_error: str) -> Path:
    shutil.copytree(EXAMPLES, tmp_path / "plans")
    customers = create_table(endpoint, hash_key=("customer_id", "S"))
    orders = create_table(endpoint, hash_key=("order_id", "S"))
    put_items(endpoint, customers, [{"customer_id": {"S": f"c{i}"}} for i in range(5)])
    put_items(endpoint, orders, [{"order_id": {"S": f"o{i}"}, "customer_id": {"S": f"c{i % 5}"}} for i in range(19)]
              + [{"order_id": {"S": "orphan"}}])
    path = tmp_path / "plans" / "remodel_two_into_one.yaml"
    doc = yaml.safe_load(path.read_text())
    side = {"endpoint_url": endpoint, "region": "us-east-1"}
    doc["defaults"].update(source=side, target=side)
    doc["defaults"]["options"] = {"on_error": on_error}
    doc["jobs"][0]["source"], doc["jobs"][1]["source"] = customers, orders
    for j in doc["jobs"]:
        j["target"] = unique("shop")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_remodel_example_with_an_orphan_order_validates_with_a_warning(endpoint: str, tmp_path: Path) -> None:
    path = _remodel(endpoint, tmp_path, "skip")
    line = next(i + 1 for i, x in enumerate(path.read_text().splitlines()) if "order_to_shop" in x)
    warnings: List[PlanProblem] = []
    assert validate_plan(str(path), warnings=warnings) == []
    shop_py = tmp_path / "plans" / "transforms" / "shop.py"
    assert [(w.line, w.message) for w in warnings] == [
        (line, "orders-into-shop: the transform raised on 1 of 20 sampled items; with on_error: skip they will "
               f"be dead-lettered, e.g. transform {shop_py}:order_to_shop raised ValueError: order orphan has no "
               f"customer_id at {shop_py}:25 (ValueError)")]
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "plan", "validate", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [f"warning: {warnings[0]}"]


def test_remodel_example_with_an_orphan_order_and_on_error_fail_counts_every_sampled_item(
        endpoint: str, tmp_path: Path) -> None:
    path = _remodel(endpoint, tmp_path, "fail")
    problems = validate_plan(str(path))
    assert len(problems) == 1 and problems[0].message.startswith(
        "orders-into-shop: 1 of 20 sampled transformed items do not fit the key schema of "), problems
    assert "order orphan has no customer_id" in problems[0].message


def test_a_bad_default_spec_is_one_problem_at_its_line(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    plan = write_plan(tmp_path / "plan.yaml", endpoint, [
        {"kind": "copy", "name": "one", "source": src, "target": unique("new")},
        {"kind": "copy", "name": "two", "source": src, "target": unique("new")}], state_dir="state")
    _with_defaults(plan, target_spec="no-such-spec.yaml")
    line = next(i + 1 for i, x in enumerate(plan.read_text().splitlines()) if "no-such-spec" in x)

    problems = validate_plan(str(plan))

    assert [(p.line, p.message) for p in problems] == [
        (line, f"defaults.target_spec: cannot read table spec {tmp_path / 'no-such-spec.yaml'}: "
               "No such file or directory")]


def test_a_verify_job_is_drawn_on_its_row_and_stops_with_the_plan(endpoint: str, tmp_path: Path) -> None:
    # Before, a verify in a plan showed nothing (the total stayed at 0) and ran to its end after
    # Ctrl-C; now its reads are its row's progress, and a signal stops it like any job (exit 130).
    import json
    import signal

    src, dst = create_table(endpoint), create_table(endpoint)
    big = [{"pk": {"S": f"k{i:04d}"}, "pad": {"S": "x" * 3000}} for i in range(600)]
    put_items(endpoint, src, big)
    put_items(endpoint, dst, big)
    plan = write_plan(tmp_path / "plan.yaml", endpoint,
                      [{"kind": "verify", "name": "v", "source": src, "target": dst,
                        "options": {"max_read_units": 20}}], state_dir=str(tmp_path / "state"))
    p = subprocess.Popen([sys.executable, "-m", "ddbmigrate", "run", str(plan), "--progress", "json"], cwd=tmp_path,
                         stderr=subprocess.PIPE, text=True)
    seen: List[Dict[str, Any]] = []
    assert p.stderr is not None
    deadline = time.monotonic() + 60
    for line in p.stderr:
        if line.startswith("{"):
            ev = json.loads(line)
            seen.append(ev)
            if ev.get("job") == "v" and ev.get("done", 0) > 0:
                break
        assert time.monotonic() < deadline, seen
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    assert p.returncode == 130, seen[-3:]
    assert time.monotonic() - sent < 20  # (the whole verify at 20 units/s takes over a minute)
    assert any(e.get("job") == "v" and e.get("phase") == "verify" for e in seen), seen[:5]
