"""Migration plans against the real DynamoDB Local: concurrent jobs, exact results, resume, validate."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from ddbmigrate.plan import load_plan, run_plan, validate_plan
from support import as_set, boto_client, create_table, every_type_items, put_items, scan_all, unique, write_plan

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plans"


def _bulk(prefix: str, n: int) -> List[Dict[str, Any]]:
    return [{"pk": {"S": f"{prefix}{i:04d}"}, "n": {"N": str(i)}, "pad": {"S": "x" * (i % 50)}} for i in range(n)]




def test_four_tables_copied_concurrently_with_combined_report(endpoint: str, tmp_path: Path) -> None:
    sources = [create_table(endpoint) for _ in range(4)]
    contents = {}
    for i, s in enumerate(sources):
        contents[s] = every_type_items() + _bulk(f"t{i}-", 40 + 15 * i)
        put_items(endpoint, s, contents[s])
    plan = write_plan(tmp_path / "plan.yaml", endpoint,
                       [{"kind": "copy", "source": s, "target": f"{s}-new", "options": {"segments": 3}}
                        for s in sources],
                       parallel=3)
    # create_target from the defaults block, to check defaults apply to every job
    doc = yaml.safe_load(plan.read_text())
    doc["defaults"]["create_target"] = True
    plan.write_text(yaml.safe_dump(doc, sort_keys=False))

    rep = run_plan(str(plan), progress="off", report=str(tmp_path / "run.json"))

    assert rep.status == "done" and rep.exit_code == 0
    for s in sources:
        assert as_set(scan_all(endpoint, f"{s}-new")) == as_set(contents[s])
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["kind"] == "plan" and data["exit_code"] == 0 and data["balanced"]
    assert [j["status"] for j in data["jobs"]] == ["done"] * 4
    expected_total = sum(len(v) for v in contents.values())
    assert data["totals"]["counters"]["read"] == expected_total
    assert data["totals"]["counters"]["written"] == expected_total
    for j, s in zip(data["jobs"], sources):
        assert j["report"]["counters"]["written"] == len(contents[s])
        assert j["report"]["balanced"] and j["report"]["timeline"]
        assert os.path.basename(j["checkpoint_path"]) == f"copy-{s}.checkpoint.json"
    # each job's checkpoint is deterministic and finished
    for j in data["jobs"]:
        assert json.loads(Path(j["checkpoint_path"]).read_text())["state"] == "done"


def test_plan_resumed_after_one_job_failed(endpoint: str, tmp_path: Path) -> None:
    """One job stops mid-way (its transform fails on one item); --resume finishes only that job,
    from its checkpoint, and the final counts add up to exactly the source."""
    good = [create_table(endpoint) for _ in range(2)]
    flaky = create_table(endpoint)
    for s in good:
        put_items(endpoint, s, _bulk("g", 30))
    flaky_items = _bulk("f", 200)
    put_items(endpoint, flaky, flaky_items)
    flag = tmp_path / "fail.flag"
    flag.write_text("1")
    (tmp_path / "tx.py").write_text(
        "import os\n"
        f"FLAG = {str(flag)!r}\n"
        "def fail_once(item):\n"
        "    if os.path.exists(FLAG) and item['pk'] == 'f0133':\n"
        "        raise RuntimeError('simulated outage')\n"
        "    item['moved'] = True\n"
        "    return item\n")
    jobs = [{"kind": "copy", "source": s, "target": s, "name": f"good{i}", "create_target": False}
            for i, s in enumerate(good)]
    # same table as source and target is refused, so copy the good ones into new tables
    for j in jobs:
        j["target"] = j["source"] + "-dst"
        j["create_target"] = True
    jobs.append({"kind": "copy", "name": "flaky", "source": flaky, "target": flaky + "-dst", "create_target": True,
                 "transform": "tx.py:fail_once", "options": {"segments": 4, "on_error": "fail"}})
    plan = write_plan(tmp_path / "plan.yaml", endpoint, jobs, parallel=3)

    first = run_plan(str(plan), progress="off")
    assert first.status == "failed" and first.exit_code != 0
    assert first.job("good0").status == "done" and first.job("good1").status == "done"
    assert first.job("flaky").status == "failed" and "simulated outage" in (first.job("flaky").error or "")

    # Without --resume, an unfinished plan is refused rather than silently restarted.
    from ddbmigrate.errors import UsageError

    with pytest.raises(UsageError, match="--resume"):
        run_plan(str(plan), progress="off")

    flag.unlink()
    second = run_plan(str(plan), progress="off", resume=True)
    assert second.status == "done" and second.exit_code == 0
    assert second.job("good0").resumed_from_state and second.job("good1").resumed_from_state
    assert not second.job("flaky").resumed_from_state
    expected = [dict(it, moved={"BOOL": True}) for it in flaky_items]
    assert as_set(scan_all(endpoint, flaky + "-dst")) == as_set(expected)
    rep = second.job("flaky").report
    assert rep is not None and rep["balanced"]
    assert rep["counters"]["read"] == len(flaky_items) and rep["counters"]["written"] == len(flaky_items)
    for s in good:
        assert as_set(scan_all(endpoint, s + "-dst")) == as_set(scan_all(endpoint, s))


def test_a_new_run_never_takes_the_last_runs_finished_jobs_for_its_own(endpoint: str, tmp_path: Path) -> None:
    """Run 1 finishes both jobs; the second source then changes. Run 2 (new) stops in its first
    job before the second starts (fail_fast), as a kill would. Its --resume must copy the second
    source as it is now: before, that job's finished checkpoint of run 1 was taken for run 2's,
    and it reported "done" with run 1's counts, the new items never copied. Run 2's dead letters
    are its own, run 1's kept beside."""
    one, two = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, one, _bulk("a", 40))
    put_items(endpoint, two, _bulk("b", 30) + [{"pk": {"S": "bad"}, "n": {"N": "-1"}}])
    flag = tmp_path / "fail.flag"
    (tmp_path / "tx.py").write_text(
        "import os\n"
        f"FLAG = {str(flag)!r}\n"
        "def first(item):\n"
        "    if os.path.exists(FLAG):\n"
        "        raise RuntimeError('stopped')\n"
        "    return item\n"
        "def second(item):\n"
        "    if item['pk'] == 'bad':\n"
        "        raise ValueError('bad item')\n"
        "    return item\n")
    jobs = [{"kind": "copy", "name": "one", "source": one, "target": one + "-dst", "create_target": True,
             "transform": "tx.py:first"},
            {"kind": "copy", "name": "two", "source": two, "target": two + "-dst", "create_target": True,
             "transform": "tx.py:second", "options": {"on_error": "skip"}}]
    plan = write_plan(tmp_path / "plan.yaml", endpoint, jobs, parallel=1, fail_fast=True)
    first = run_plan(str(plan), progress="off")
    assert first.job("two").status == "done" and first.job("two").report["counters"]["written"] == 30
    put_items(endpoint, two, _bulk("c", 25))
    flag.write_text("1")
    second = run_plan(str(plan), progress="off")
    assert second.job("one").status == "failed" and second.job("two").status != "done"
    flag.unlink()
    third = run_plan(str(plan), progress="off", resume=True)
    assert third.status == "done" and not third.job("two").resumed_from_state
    rep = third.job("two").report
    assert rep is not None and rep["counters"]["written"] == 55 and rep["counters"]["dead_lettered"] == 1
    assert len(scan_all(endpoint, two + "-dst")) == 55
    dead = Path(third.job("two").dead_letter_path or "")
    assert dead.is_file() and len(dead.read_text().splitlines()) == 1  # this run's one, not two
    kept = [p for p in dead.parent.iterdir() if p.name.startswith("two.") and p != dead]
    assert len(kept) == 1 and len(kept[0].read_text().splitlines()) == 1  # run 1's, kept beside


def test_remodel_example_two_tables_into_one(endpoint: str, tmp_path: Path) -> None:
    """The shipped example (its transforms and spec), pointed at DynamoDB Local."""
    shutil.copytree(EXAMPLES, tmp_path / "plans")
    customers = create_table(endpoint, hash_key=("customer_id", "S"))
    orders = create_table(endpoint, hash_key=("order_id", "S"))
    shop = unique("shop")
    put_items(endpoint, customers, [{"customer_id": {"S": f"c{i}"}, "email": {"S": f"C{i}@Example.com"}}
                                    for i in range(30)])
    put_items(endpoint, orders, [{"order_id": {"S": f"o{i}"}, "customer_id": {"S": f"c{i % 30}"},
                                  "total": {"N": f"{i}.5"}} for i in range(90)]
              + [{"order_id": {"S": "orphan"}}])
    path = tmp_path / "plans" / "remodel_two_into_one.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["defaults"]["source"] = {"endpoint_url": endpoint, "region": "us-east-1"}
    doc["defaults"]["target"] = {"endpoint_url": endpoint, "region": "us-east-1"}
    doc["defaults"]["options"].pop("write_percent")
    doc["jobs"][0]["source"], doc["jobs"][1]["source"] = customers, orders
    for j in doc["jobs"]:
        j["target"] = shop
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert validate_plan(str(path)) == []

    rep = run_plan(str(path), progress="off")

    assert rep.exit_code == 3  # the orphan order is dead-lettered, everything else written
    got = scan_all(endpoint, shop)
    assert len(got) == 30 + 90
    assert {i["SK"]["S"] for i in got if i["PK"]["S"] == "CUSTOMER#c1"} == {"PROFILE", "ORDER#o1", "ORDER#o31",
                                                                              "ORDER#o61"}
    dl = Path(rep.job("orders-into-shop").dead_letter_path or "")
    lines = [json.loads(x) for x in dl.read_text().splitlines()]
    assert [x["item"]["order_id"]["S"] for x in lines] == ["orphan"] and "no customer_id" in lines[0]["reason"]
    assert rep.totals["dead_lettered"] == 1 and rep.balanced()


def test_validate_names_the_line(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, hash_key=("id", "S"))
    put_items(endpoint, src, [{"id": {"S": f"a{i}"}} for i in range(5)])
    dst = create_table(endpoint, hash_key=("pk", "S"))
    (tmp_path / "t.py").write_text("def keep(item):\n    return item\n")
    text = f"""version: 1
defaults:
  source: {{endpoint_url: "{endpoint}", region: us-east-1}}
  target: {{endpoint_url: "{endpoint}", region: us-east-1}}
jobs:
  - kind: copy
    source: {src}
    target: {dst}
    transform: t.py:keep
  - kind: copy
    source: no-such-table
    target: {dst}
  - kind: copy
    source: {src}
    target: missing-target
"""
    (tmp_path / "p.yaml").write_text(text)
    problems = validate_plan(str(tmp_path / "p.yaml"))
    by_line = {p.line: p.message for p in problems}
    assert set(by_line) == {9, 11, 15}, problems
    assert "key schema" in by_line[9] and "'pk'" in by_line[9]
    assert "no-such-table" in by_line[11] and "does not exist" in by_line[11]
    assert "missing-target" in by_line[15] and "create_target" in by_line[15]
    assert all(str(p).startswith(f"{tmp_path / 'p.yaml'}:") for p in problems)


def test_cli_run_validate_and_exit_codes(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    put_items(endpoint, src, every_type_items())
    plan = write_plan(tmp_path / "plan.yaml", endpoint,
                       [{"kind": "copy", "source": src, "target": src + "-c", "create_target": True}])
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "plan", "validate", str(plan)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert f"copy copy-{src}:" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "run", str(plan), "--report", "run.json", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(Path("run.json").read_text())["jobs"][0]["report"]["counters"]["written"] == 6
    assert as_set(scan_all(endpoint, src + "-c")) == as_set(every_type_items())
    bad = tmp_path / "bad.yaml"
    bad.write_text(plan.read_text().replace("kind: copy", "kind: cpy"))
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "plan", "validate", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = next(i + 1 for i, x in enumerate(bad.read_text().splitlines()) if "cpy" in x)
    assert f"bad.yaml:{line}:" in r.stderr and "did you mean 'copy'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "run", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and f"bad.yaml:{line}" in r.stderr and "Traceback" not in r.stderr


def test_examples_are_valid_plans() -> None:
    for name in ("eight_tables_cross_account.yaml", "remodel_two_into_one.yaml"):
        plan = load_plan(str(EXAMPLES / name))
        assert plan.jobs
    assert len([j for j in load_plan(str(EXAMPLES / "eight_tables_cross_account.yaml")).jobs
                if j.kind == "copy"]) == 8


def test_ctrl_c_stops_every_job_and_resume_finishes_exactly(endpoint: str, tmp_path: Path) -> None:
    """SIGINT during a plan: running jobs drain and checkpoint, exit 130; --resume completes
    both jobs with exactly the source items and counts that add up across the two runs."""
    import signal
    import time

    from ddbmigrate.aws.client import DynamoClient
    from ddbmigrate.config import TableRef
    from ddbmigrate.jobs.seed import seed_table

    sources = [create_table(endpoint) for _ in range(2)]
    for s in sources:
        seed_table(DynamoClient(TableRef(s, endpoint_url=endpoint, region="us-east-1")), s, 800, size=200)
    # Slow and with a short queue, so the interruption lands mid-job.
    jobs = [{"kind": "copy", "source": s, "target": s + "-d", "create_target": True,
             "options": {"max_write_units": 150, "segments": 4, "writers": 1}} for s in sources]
    plan = write_plan(tmp_path / "plan.yaml", endpoint, jobs, state_dir="st", parallel=2)
    proc = subprocess.Popen([sys.executable, "-m", "ddbmigrate", "run", str(plan), "--progress", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = [tmp_path / "st" / "checkpoints" / f"copy-{s}.checkpoint.json" for s in sources]
    deadline = time.monotonic() + 60
    while not all(c.exists() for c in ckpts) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    state = json.loads((tmp_path / "st" / "plan-state.json").read_text())
    assert {j["status"] for j in state["jobs"].values()} == {"interrupted"}
    for c in ckpts:  # resumable: positions saved, not finished
        assert json.loads(c.read_text())["state"] == "running"

    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "run", str(plan), "--resume", "--report", "run.json",
                        "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = json.loads(Path("run.json").read_text())
    for s, job in zip(sources, data["jobs"]):
        assert as_set(scan_all(endpoint, s + "-d")) == as_set(scan_all(endpoint, s))
        assert job["report"]["counters"]["read"] == 800 and job["report"]["balanced"]


def test_export_then_import_then_verify_chain(endpoint: str, tmp_path: Path) -> None:
    """after: orders jobs; verify_after and a verify job report equality; every type survives."""
    src = create_table(endpoint)
    items = every_type_items()
    put_items(endpoint, src, items)
    (tmp_path / "spec.yaml").write_text("AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\n"
                                        "KeySchema: [{AttributeName: pk, KeyType: HASH}]\n")
    jobs = [{"kind": "copy", "name": "copy", "source": src, "target": src + "-copy", "create_target": True,
             "verify_after": True},
            {"kind": "export", "name": "exp", "source": src, "to": "out"},
            {"kind": "import", "name": "imp", "from": "out", "target": src + "-imp", "create_target": True,
             "target_spec": "spec.yaml", "after": "exp"},
            {"kind": "verify", "name": "ver", "source": src, "target": src + "-imp", "after": ["imp"]}]
    plan = write_plan(tmp_path / "plan.yaml", endpoint, jobs, parallel=2)
    assert validate_plan(str(plan)) == []  # "out" does not exist yet, but an export job writes it
    rep = run_plan(str(plan), progress="off")
    assert rep.status == "done" and rep.exit_code == 0, [(j.name, j.error) for j in rep.jobs]
    assert as_set(scan_all(endpoint, src + "-copy")) == as_set(items)
    assert as_set(scan_all(endpoint, src + "-imp")) == as_set(items)
    assert rep.job("copy").verify is not None and rep.job("copy").verify["exit_code"] == 0
    assert rep.job("ver").report is not None and rep.job("ver").report["exit_code"] == 0
    # order: the import started after the export ended
    exp, imp = rep.job("exp"), rep.job("imp")
    assert (imp.offset_seconds or 0) >= (exp.offset_seconds or 0) + exp.duration_seconds - 0.05


def test_failed_dependency_blocks_and_verify_differences_fail(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    other = create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": "a"}}, {"pk": {"S": "b"}}])
    put_items(endpoint, other, [{"pk": {"S": "a"}}])
    jobs = [{"kind": "copy", "name": "broken", "source": src, "target": "no-such-target"},
            {"kind": "verify", "name": "after-broken", "source": src, "target": other, "after": "broken"},
            {"kind": "verify", "name": "differs", "source": src, "target": other}]
    plan = write_plan(tmp_path / "plan.yaml", endpoint, jobs)
    rep = run_plan(str(plan), progress="off")
    assert rep.job("broken").status == "failed" and "no-such-target" in (rep.job("broken").error or "")
    assert rep.job("after-broken").status == "blocked" and "broken" in (rep.job("after-broken").error or "")
    assert rep.job("differs").status == "differences" and rep.job("differs").exit_code == 4
    assert rep.status == "failed" and rep.exit_code == 1


def test_a_verify_after_that_fails_leaves_the_jobs_own_counts(endpoint: str, tmp_path: Path) -> None:
    """The copy ended, its verify_after did not: the report keeps what the copy wrote (it read
    the verify's report, or none, as the job's: written 0 of a table copied whole)."""
    src = create_table(endpoint)
    put_items(endpoint, src, _bulk("v", 40))
    plan = write_plan(tmp_path / "plan.yaml", endpoint, [
        {"kind": "copy", "name": "copied", "source": src, "target": src + "-v", "create_target": True,
         "verify_after": True}], state_dir="st")
    (tmp_path / "st" / "diffs" / "copied.jsonl").mkdir(parents=True)  # the verify cannot write its differences
    rep = run_plan(str(plan), progress="off")
    job = rep.job("copied")
    assert job.status == "failed" and "diffs" in (job.error or "")
    assert job.report is not None and job.report["job"] == "copy"
    assert job.report["counters"]["written"] == 40 and rep.totals["counters"]["written"] == 40
    assert len(scan_all(endpoint, src + "-v")) == 40


def test_a_job_blocked_by_a_retriable_failure_leaves_the_plan_retriable(endpoint: str, tmp_path: Path) -> None:
    """Docs: a fatal failure (1/2) before a retriable one (75). The job after it, blocked, was a
    fatal 1 of its own, so a plan that a later --resume would finish exited 1."""
    src = create_table(endpoint)
    put_items(endpoint, src, _bulk("r", 5))
    plan = write_plan(tmp_path / "plan.yaml", endpoint, [
        {"kind": "copy", "name": "down", "source": {"table": src, "endpoint_url": "http://127.0.0.1:9"},
         "target": src + "-d", "create_target": True, "options": {"max_attempts": 1}},
        {"kind": "copy", "name": "next", "source": src, "target": src + "-n", "create_target": True,
         "after": "down"}])
    rep = run_plan(str(plan), progress="off")
    assert rep.job("down").status == "failed" and rep.job("down").exit_code == 75
    assert rep.job("next").status == "blocked" and rep.job("next").exit_code == 75
    assert rep.status == "failed" and rep.exit_code == 75


def test_replicate_job_under_concurrent_writes_then_verify(endpoint: str, tmp_path: Path) -> None:
    """A plan's replicate job backfills and replays the stream until idle; a verify job after it
    finds the target equal to the source, writes made during the job included."""
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, every_type_items() + _bulk("r", 200))
    stop = threading.Event()

    def writer() -> None:
        c, rng, n = boto_client(endpoint), random.Random(5), 0
        while not stop.is_set() and n < 400:
            k = f"r{rng.randrange(260):04d}"
            if rng.random() < 0.2:
                c.delete_item(TableName=src, Key={"pk": {"S": k}})
            else:
                c.put_item(TableName=src, Item={"pk": {"S": k}, "n": {"N": str(n)}, "w": {"BOOL": True}})
            n += 1
            time.sleep(0.005)

    jobs = [{"kind": "replicate", "name": "rep", "source": src, "target": dst,
             "options": {"segments": 4, "writers": 4}, "args": {"stop_after_idle": 3.0, "poll_interval": 0.1}},
            {"kind": "verify", "name": "ver", "source": src, "target": dst, "after": ["rep"]}]
    plan = write_plan(tmp_path / "plan.yaml", endpoint, jobs)
    assert validate_plan(str(plan)) == []
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        rep = run_plan(str(plan), progress="off")
    finally:
        stop.set()
        t.join(30)
    assert rep.status == "done" and rep.exit_code == 0, [(j.name, j.error) for j in rep.jobs]
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))
    assert rep.job("rep").report is not None and rep.job("rep").report["balanced"]
    assert rep.job("ver").report is not None and rep.job("ver").report["exit_code"] == 0


def _engines_ready() -> bool:
    import ddbmigrate.engine

    return hasattr(ddbmigrate.engine, "engine_for")


def _spark_ready() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyspark") is not None and (shutil.which("java") is not None
                                                                or bool(os.environ.get("JAVA_HOME")))


@pytest.fixture
def local_spark(monkeypatch: pytest.MonkeyPatch) -> Any:
    # Loopback only, and workers on this interpreter (the venv has ddbmigrate).
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    yield
    # A context left running would be reused (master and all) by the next Spark test.
    from pyspark import SparkContext

    active = SparkContext._active_spark_context
    if active is not None:
        active.stop()


@pytest.mark.skipif(not _engines_ready(), reason="ddbmigrate.engine.engine_for does not exist yet "
                                                 "(plans pass engine= only once the engine layer lands)")
@pytest.mark.skipif(not _spark_ready(), reason="engine: spark needs pyspark and Java 17+")
def test_plan_jobs_on_processes_and_spark(endpoint: str, tmp_path: Path, local_spark: Any) -> None:
    """One copy on ``engine: processes`` and one export on ``engine: spark`` (then an import
    of that export on threads): every target holds exactly the source items."""
    src = create_table(endpoint)
    items = every_type_items() + _bulk("e", 300)
    put_items(endpoint, src, items)
    (tmp_path / "spec.yaml").write_text("AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\n"
                                        "KeySchema: [{AttributeName: pk, KeyType: HASH}]\n")
    jobs = [{"kind": "copy", "name": "copy-on-processes", "source": src, "target": src + "-proc",
             "create_target": True, "engine": "processes", "processes": 2, "options": {"segments": 4}},
            {"kind": "export", "name": "export-on-spark", "source": src, "to": "out", "engine": "spark",
             "spark_master": "local[2]", "options": {"segments": 4}},
            {"kind": "import", "name": "import-back", "from": "out", "target": src + "-back",
             "create_target": True, "target_spec": "spec.yaml", "after": "export-on-spark"}]
    plan = write_plan(tmp_path / "plan.yaml", endpoint, jobs, parallel=2)
    assert validate_plan(str(plan)) == []
    assert [(j.engine, j.processes, j.spark_master) for j in load_plan(str(plan)).jobs] == [
        ("processes", 2, None), ("spark", None, "local[2]"), (None, None, None)]

    rep = run_plan(str(plan), progress="off", report=str(tmp_path / "run.json"))

    assert rep.status == "done" and rep.exit_code == 0, [(j.name, j.error) for j in rep.jobs]
    assert as_set(scan_all(endpoint, src + "-proc")) == as_set(items)
    assert as_set(scan_all(endpoint, src + "-back")) == as_set(items)
    for name in ("copy-on-processes", "export-on-spark", "import-back"):
        job_rep = rep.job(name).report
        assert job_rep is not None and job_rep["balanced"], name
        assert job_rep["counters"]["read"] == len(items), name
    assert rep.totals["balanced"] and rep.totals["dead_lettered"] == 0


def test_validate_reports_every_problem_in_one_pass(endpoint: str, tmp_path: Path) -> None:
    """A field problem does not hide a table problem: one run of `plan validate` lists both."""
    src = create_table(endpoint)
    plan = write_plan(tmp_path / "plan.yaml", endpoint, [
        {"name": "typo", "kind": "copy", "source": {"table": src}, "target": {"table": unique()},
         "optionz": {"segments": 2}},
        {"name": "missing", "kind": "copy", "source": {"table": "no-such-table-here"},
         "target": {"table": src}},
    ])
    problems = [str(p) for p in validate_plan(str(plan))]
    assert any("optionz" in p for p in problems), problems
    assert any("no-such-table-here" in p for p in problems), problems


def test_a_plan_serves_metrics_for_each_of_its_jobs(endpoint: str, tmp_path: Path) -> None:
    import socket
    import urllib.request

    sources = [create_table(endpoint) for _ in range(2)]
    for i, s in enumerate(sources):
        put_items(endpoint, s, _bulk(f"m{i}-", 300))
    plan = write_plan(tmp_path / "plan.yaml", endpoint,
                       [{"kind": "copy", "source": s, "target": f"{s}-new", "create_target": True,
                         "options": {"segments": 2, "max_write_units": 100}} for s in sources], parallel=2)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result: Dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(rep=run_plan(str(plan), progress="off", metrics_port=port)))
    t.start()
    seen = ""
    try:
        deadline = time.monotonic() + 60
        while t.is_alive() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                if text.count('counter="written"') >= 2:
                    seen = text
                    break
            except OSError:
                pass
            time.sleep(0.2)
    finally:
        t.join(120)
    rep = result["rep"]
    assert rep.status == "done"
    names = [j.name for j in rep.jobs]
    for name in names:  # each job's series is labelled with its plan name
        assert f'ddbmigrate_records_total{{counter="written",job="{name}"}}' in seen or \
            f'ddbmigrate_records{{counter="written",job="{name}"}}' in seen, (name, seen[:2000])


def test_a_plans_verify_serves_metrics_beside_its_job(endpoint: str, tmp_path: Path) -> None:
    """verify_after and a verify job serve their sides' series on the plan's server, each under
    its job's name (before: a plan's verify served nothing)."""
    import socket
    import urllib.request

    from ddbmigrate.reporting import metrics

    src = create_table(endpoint)
    put_items(endpoint, src, _bulk("v-", 120))
    plan = write_plan(tmp_path / "plan.yaml", endpoint, [
        {"kind": "copy", "name": "cp", "source": src, "target": f"{src}-new", "create_target": True,
         "verify_after": True, "options": {"segments": 2}},
        {"kind": "verify", "name": "ver", "source": src, "target": f"{src}-new", "after": "cp"}])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics.set_linger(5)  # the plan ends with the verify: its final figures stay to be read
    try:
        rep = run_plan(str(plan), progress="off", metrics_port=port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        metrics.set_linger(0)
        metrics.wait_lingering()
    assert rep.status == "done" and rep.exit_code == 0, [(j.name, j.error) for j in rep.jobs]
    for job in ("cp:verify-source", "cp:verify-target", "ver:verify-source", "ver:verify-target"):
        assert f'ddbmigrate_records_total{{counter="read",job="{job}"}} 120.0' in text, (job, text[:3000])
    assert 'ddbmigrate_records_total{counter="written",job="cp"} 120.0' in text
