"""What the history says about a run, on DynamoDB Local: a migration of thousands of steps is
still recorded (its record stays under DynamoDB's 400 KB item limit), a downgrade under way is
recorded as such (killed with kill -9 or failed, ``status`` says so, ``up`` refuses, ``down``
finishes it), and a migration stopped by dead letters exits 3 (differences: 4), --json alike."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from support import create_table, put_items, scan_all, unique, wait_for

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.core.items import MAX_ITEM_BYTES, item_size
from ddbmigrate.errors import EXIT_DEAD_LETTERS, EXIT_DIFFERENCES, EXIT_RETRIABLE, RetriableError, UsageError
from ddbmigrate.migrations import AwsSettings, History, down, history_records, status, up, verify
from ddbmigrate.reporting.report import Report

pytestmark = pytest.mark.integration

YES = lambda message: True


def settings(endpoint: str) -> AwsSettings:
    return AwsSettings(region="us-east-1", endpoint_url=endpoint)


def raw_record(endpoint: str, hist: str, mid: str) -> Dict[str, Any]:
    """The record as DynamoDB holds it (wire format), to measure it."""
    from support import boto_client

    item = boto_client(endpoint).get_item(TableName=hist, Key={"id": {"S": mid}}, ConsistentRead=True)["Item"]
    return dict(item)


def record(endpoint: str, hist: str, mid: str) -> Dict[str, Any]:
    return {r["id"]: r for r in history_records(settings(endpoint), history_table=hist)}[mid]


# ---------------------------------------------------------------------------- 1. many steps

TENANTS = '''"""Copy the users of each of {n} tenants into the tenant's own table."""


def upgrade(ctx):
    ctx.copy({src!r}, {dst!r})                   # a real copy, first
    for i in range({n}):
        ctx.copy({src!r}, "acme-production-eu-west-1-tenant-%04d-users-by-region-and-signup-date-with-gsi-v2" % i)
'''


def test_a_migration_of_1600_steps_is_recorded_failed_then_applied(endpoint: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Each step's entry is ~300 bytes: 1,600 of them made the record over 400 KB, so it could not be
    # written (ValidationException): the failure went unrecorded (left "running"), and a migration
    # that succeeded could never be recorded applied.
    from ddbmigrate.migrations import context

    real_copy = context.copy_table
    fail_at: List[str] = ["acme-production-eu-west-1-tenant-1500-users-by-region-and-signup-date-with-gsi-v2"]
    calls: List[str] = []

    def copy_table(src: TableRef, dst: TableRef, opts: RunOptions, **kw: Any) -> Report:
        if "-tenant-" not in dst.table:
            return real_copy(src, dst, opts, **kw)
        calls.append(dst.table)
        if dst.table in fail_at:
            raise RetriableError("throttled past --max-attempts", table=dst.table)
        return Report(job="copy", status="done", counters={"read": 3, "written": 3}, duration_seconds=0.25,
                      checkpoint_path=opts.checkpoint)

    monkeypatch.setattr(context, "copy_table", copy_table)
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"u{i}"}} for i in range(5)])
    d, hist, n = tmp_path / "migrations", unique("hist"), 1600
    d.mkdir()
    (d / "0001_tenants.py").write_text(TENANTS.format(n=n, src=src, dst=dst))
    kw: Dict[str, Any] = {"history_table": hist, "state_dir": str(tmp_path / "state"), "confirm": YES,
                          "options": RunOptions(progress="off")}

    with pytest.raises(RetriableError) as ei:
        up(str(d), settings(endpoint), **kw)
    assert ei.value.exit_code == EXIT_RETRIABLE and "migration 0001_tenants failed" in ei.value.message
    rec = record(endpoint, hist, "0001_tenants")
    assert rec["state"] == "failed" and "throttled" in rec["error"]
    steps = rec["steps"]
    assert steps["count"] == 1502 and steps["by_kind"] == {"copy": 1502}
    assert steps["counters"] == {"read": 5 + 1500 * 3, "out": 5, "written": 5 + 1500 * 3}
    kept = [e["step"] for e in rec["summary"]]
    assert kept == sorted(kept) and len(kept) + steps["omitted"] == 1502 and steps["omitted"] > 0
    assert kept[0] == 1 and rec["summary"][0]["counters"] == {"read": 5, "out": 5, "written": 5}  # the real step
    last = rec["summary"][-1]  # the step that failed is always kept, with its error
    assert last["step"] == 1502 and "throttled" in last["error"] and last["what"].endswith(fail_at[0])
    assert item_size(raw_record(endpoint, hist, "0001_tenants")) <= MAX_ITEM_BYTES
    assert sorted(it["pk"]["S"] for it in scan_all(endpoint, dst)) == [f"u{i}" for i in range(5)]

    fail_at.clear()  # the fix
    res = up(str(d), settings(endpoint), **kw)
    assert res.done == ["0001_tenants"]
    rec = record(endpoint, hist, "0001_tenants")
    assert rec["state"] == "applied" and "error" not in rec and rec["attempts"] == 2
    assert [r["state"] for r in rec["runs"]] == ["failed", "applied"]
    steps = rec["steps"]
    assert steps["count"] == n + 1 and steps["counters"] == {"read": 5 + n * 3, "out": 5, "written": 5 + n * 3}
    assert steps["seconds"] >= n * 0.25
    assert steps["omitted"] == n + 1 - len(rec["summary"]) > 0
    assert rec["summary"][-1]["step"] == n + 1 and rec["summary"][0]["step"] == 1
    assert item_size(raw_record(endpoint, hist, "0001_tenants")) <= MAX_ITEM_BYTES
    assert len(calls) == 1501 + n  # every tenant step ran (the fake writes no checkpoint)
    assert sorted(it["pk"]["S"] for it in scan_all(endpoint, dst)) == [f"u{i}" for i in range(5)]
    # status and history read it back as any record
    (st,) = status(str(d), settings(endpoint), history_table=hist)
    assert st.state == "applied" and st.summary == rec["summary"] and st.steps == rec["steps"]


# ---------------------------------------------------------------------------- 2. a downgrade under way

PRICES = '''"""Raise every price by 100; the downgrade lowers it again (neither is idempotent)."""
import os
import time

MARKER = {marker!r}
BREAK = {brk!r}


def plus(item):
    return dict(item, price=item["price"] + 100)


def minus(item):
    return dict(item, price=item["price"] - 100)


def tag(item):
    return dict(item, reverted=True)


def upgrade(ctx):
    ctx.update({table!r}, plus)


def downgrade(ctx):
    ctx.update({table!r}, minus)
    if not os.path.exists(MARKER):
        open(MARKER, "w").close()
        while True:  # the test kills this runner here (kill -9)
            time.sleep(0.05)
    if os.path.exists(BREAK):
        raise RuntimeError("the second step of the downgrade is broken")
    ctx.update({table!r}, tag)
'''


def prices_world(endpoint: str, tmp_path: Path) -> Dict[str, Any]:
    table = create_table(endpoint)
    put_items(endpoint, table, [{"pk": {"S": f"k{i}"}, "price": {"N": "1000"}} for i in range(6)])
    d = tmp_path / "migrations"
    d.mkdir()
    w = {"dir": str(d), "table": table, "hist": unique("hist"), "state": str(tmp_path / "state"),
         "marker": tmp_path / "inside-downgrade", "break": tmp_path / "break"}
    (d / "0001_prices.py").write_text(PRICES.format(marker=str(w["marker"]), brk=str(w["break"]), table=table))
    (d / "0002_nothing.py").write_text('"""Nothing."""\n\ndef upgrade(ctx):\n    pass\n\n\n'
                                       'def downgrade(ctx):\n    pass\n')
    return w


def items(endpoint: str, table: str) -> List[Any]:
    return sorted((it["price"]["N"], "reverted" in it) for it in scan_all(endpoint, table))


def test_a_downgrade_killed_midway_is_recorded_and_down_finishes_it(endpoint: str, tmp_path: Path) -> None:
    # A downgrade wrote nothing before it ended: killed midway, its record still said "applied",
    # status said "applied" over half-reverted data, and `up` found "nothing to apply".
    w = prices_world(endpoint, tmp_path)
    s = settings(endpoint)
    kw: Dict[str, Any] = {"history_table": w["hist"], "state_dir": w["state"], "confirm": YES,
                          "options": RunOptions(progress="off")}
    assert up(w["dir"], s, **kw).done == ["0001_prices", "0002_nothing"]
    assert items(endpoint, w["table"]) == [("1100", False)] * 6

    proc = subprocess.Popen([sys.executable, "-m", "ddbmigrate", "migrations", "down", "--to", "0", "--yes",
                             "--dir", w["dir"], "--history-table", w["hist"], "--state-dir", w["state"],
                             "--progress", "off", "--endpoint-url", endpoint, "--region", "us-east-1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: w["marker"].exists() or proc.poll() is not None, 120, "the downgrade's first step")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert items(endpoint, w["table"]) == [("1000", False)] * 6  # its first step is done

    rec = record(endpoint, w["hist"], "0001_prices")
    assert rec["state"] == "reverting" and "finished_at" not in rec
    assert rec["runs"][-1]["kind"] == "down" and rec["runs"][-1]["state"] == "reverting"
    assert rec["runs"][-1]["to"] == "0"
    assert [r["state"] for r in rec["runs"]] == ["applied", "reverting"]
    assert record(endpoint, w["hist"], "0002_nothing")["state"] == "reverted"
    st = {x.id: x for x in status(w["dir"], s, history_table=w["hist"])}
    assert st["0001_prices"].state == "revert_interrupted" and st["0002_nothing"].state == "reverted"
    assert "migrations down" in (st["0001_prices"].error or "")
    v = verify(w["dir"], s, history_table=w["hist"], state_dir=w["state"])
    assert v.exit_code == EXIT_DIFFERENCES and any("0001_prices" in p for p in v.problems)

    # The dead runner's lease, over by the clock of the next runner (nothing sleeps).
    later = History(TableRef(w["hist"], region="us-east-1", endpoint_url=endpoint), clock=lambda: time.time() + 400)
    try:
        with pytest.raises(UsageError, match=r"0001_prices.*being reverted.*migrations down --to 0"):
            up(w["dir"], s, history=later, **kw)
        assert items(endpoint, w["table"]) == [("1000", False)] * 6  # `up` changed nothing
        assert record(endpoint, w["hist"], "0001_prices")["state"] == "reverting"
        res = down(w["dir"], s, to="0", history=later, **kw)
    finally:
        later.close()
    assert res.done == ["0001_prices"]
    # The finished step was not run again (prices lowered once), the rest ran.
    assert items(endpoint, w["table"]) == [("1000", True)] * 6
    rec = record(endpoint, w["hist"], "0001_prices")
    assert rec["state"] == "reverted" and [r["state"] for r in rec["runs"]] == ["applied", "reverting", "reverted"]
    assert [x.state for x in status(w["dir"], s, history_table=w["hist"])] == ["reverted", "reverted"]
    assert up(w["dir"], s, **kw).done == ["0001_prices", "0002_nothing"]  # applied afresh
    assert items(endpoint, w["table"]) == [("1100", True)] * 6


def cli(*args: str) -> Any:
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    return CliRunner().invoke(main, list(args))


def test_a_downgrade_that_fails_is_recorded_revert_failed(endpoint: str, tmp_path: Path) -> None:
    # It was recorded as "applied" with an error.
    w = prices_world(endpoint, tmp_path)
    w["marker"].touch()  # no pause in this one
    w["break"].touch()
    common = ["--dir", w["dir"], "--history-table", w["hist"], "--state-dir", w["state"], "--progress", "off",
              "--endpoint-url", endpoint, "--region", "us-east-1", "--yes"]
    assert cli("migrations", "up", *common).exit_code == 0
    r = cli("migrations", "down", *common, "--to", "0", "--json")
    assert r.exit_code == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 1 and doc["done"] == ["0002_nothing"] and "is broken" in doc["error"]
    rec = record(endpoint, w["hist"], "0001_prices")
    assert rec["state"] == "revert_failed" and "is broken" in rec["error"] and rec["finished_at"]
    assert [r["state"] for r in rec["runs"]] == ["applied", "revert_failed"]
    assert [e["kind"] for e in rec["summary"]] == ["update"]  # the downgrade's steps
    st = json.loads(cli("migrations", "status", "--json", "--dir", w["dir"], "--history-table", w["hist"],
                        "--endpoint-url", endpoint, "--region", "us-east-1").stdout)
    assert [m["state"] for m in st["migrations"]] == ["revert_failed", "reverted"]
    assert st["pending"] == ["0002_nothing"] and st["reverting"] == ["0001_prices"]
    refused = cli("migrations", "up", *common)
    assert refused.exit_code == 2 and "migrations down --to 0" in refused.stderr, refused.stderr
    assert items(endpoint, w["table"]) == [("1000", False)] * 6

    w["break"].unlink()  # the fix
    again = cli("migrations", "down", *common, "--to", "0")
    assert again.exit_code == 0, again.stderr
    assert items(endpoint, w["table"]) == [("1000", True)] * 6  # lowered once, not twice
    rec = record(endpoint, w["hist"], "0001_prices")
    assert rec["state"] == "reverted" and "error" not in rec
    assert [r["state"] for r in rec["runs"]] == ["applied", "revert_failed", "reverted"]


# ---------------------------------------------------------------------------- 3. exit codes

DEAD = '''"""Copy {src} into {dst}; one item cannot be transformed until the fix."""
import os

BROKEN = {broken!r}


def tr(item):
    if item["pk"] == "u3" and os.path.exists(BROKEN):
        raise ValueError("no region for u3")
    return dict(item, copied=True)


def upgrade(ctx):
    ctx.copy({src!r}, {dst!r}, transform=tr, on_error="skip")
'''


def test_a_migration_stopped_by_dead_letters_exits_3_and_stays_failed(endpoint: str, tmp_path: Path) -> None:
    # It exited 1 (fatal), --json said 1: the convention for "dead letters" is 3.
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"u{i}"}} for i in range(6)])
    d, hist, broken = tmp_path / "migrations", unique("hist"), tmp_path / "broken"
    d.mkdir()
    broken.touch()
    (d / "0001_fine.py").write_text('"""Fine."""\n\ndef upgrade(ctx):\n    pass\n')
    (d / "0002_copy.py").write_text(DEAD.format(src=src, dst=dst, broken=str(broken)))
    (d / "0003_after.py").write_text('"""After."""\n\ndef upgrade(ctx):\n    pass\n')
    common = ["--dir", str(d), "--history-table", hist, "--state-dir", str(tmp_path / "state"), "--progress", "off",
              "--endpoint-url", endpoint, "--region", "us-east-1", "--yes"]
    out = subprocess.run([sys.executable, "-m", "ddbmigrate", "migrations", "up", "--json", *common],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == EXIT_DEAD_LETTERS, out.stderr
    doc = json.loads(out.stdout)
    assert doc["exit_code"] == EXIT_DEAD_LETTERS and doc["done"] == ["0001_fine"]
    assert "1 item(s) dead-lettered" in doc["error"]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: migration 0002_copy failed: step 1 (copy") and "dead-lettered" in line
    assert sorted(it["pk"]["S"] for it in scan_all(endpoint, dst)) == ["u0", "u1", "u2", "u4", "u5"]
    recs = {r["id"]: r for r in history_records(settings(endpoint), history_table=hist)}
    assert recs["0002_copy"]["state"] == "failed" and "0003_after" not in recs  # not applied; later ones wait
    step = recs["0002_copy"]["summary"][0]
    assert step["exit_code"] == EXIT_DEAD_LETTERS and step["counters"]["dead_lettered"] == 1
    assert os.path.exists(step["dead_letters"])
    text = cli("migrations", "up", *common)  # no --json: the same code
    assert text.exit_code == EXIT_DEAD_LETTERS and "dead-lettered" in text.stderr

    broken.unlink()  # the fix: the step starts over, the migration is applied
    ok = cli("migrations", "up", "--json", *common)
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["done"] == ["0002_copy", "0003_after"] and json.loads(ok.stdout)["exit_code"] == 0
    assert sorted(it["pk"]["S"] for it in scan_all(endpoint, dst) if it.get("copied")) == [f"u{i}" for i in range(6)]


def test_a_migration_whose_verify_finds_differences_exits_4(endpoint: str, tmp_path: Path) -> None:
    a, b = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, a, [{"pk": {"S": f"u{i}"}} for i in range(3)])
    put_items(endpoint, b, [{"pk": {"S": f"u{i}"}} for i in range(2)])
    d, hist = tmp_path / "migrations", unique("hist")
    d.mkdir()
    (d / "0001_check.py").write_text(f'"""Check."""\n\ndef upgrade(ctx):\n    ctx.verify({a!r}, {b!r})\n')
    common = ["--dir", str(d), "--history-table", hist, "--state-dir", str(tmp_path / "state"), "--progress", "off",
              "--endpoint-url", endpoint, "--region", "us-east-1", "--yes"]
    r = cli("migrations", "up", "--json", *common)
    assert r.exit_code == EXIT_DIFFERENCES, r.stderr
    assert json.loads(r.stdout)["exit_code"] == EXIT_DIFFERENCES
    assert record(endpoint, hist, "0001_check")["state"] == "failed"
