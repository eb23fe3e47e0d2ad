"""``migrations up`` on DynamoDB Local: a runner that lost the lock writes no history record (the
new holder's stands), a migration numbered below an applied one is refused unless
``--out-of-order``, and an interrupted migration says how to go on with the command that exists."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from support import create_table, one_error_line, one_usage_line, put_items, scan_all, unique

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.errors import EXIT_INTERRUPTED, EXIT_RETRIABLE, UsageError
from ddbmigrate.migrations import (
    AwsSettings,
    History,
    LockHeldError,
    LockLostError,
    down,
    history_records,
    status,
    up,
)

pytestmark = pytest.mark.integration

YES = lambda message: True


def cli(*args: str) -> Any:
    """The command line in this process (click's runner): exit code, stdout and stderr."""
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    return CliRunner().invoke(main, list(args))




# Runner A's migration. While A is inside it, runner B (the same library, its clock past A's
# lease: A "paused" longer than its lease) takes the lock over and applies this very migration.
# Then A's upgrade returns, or fails, as A's would after waking up.
TAKEN_OVER = '''"""Applied by runner B while runner A is inside it."""
import os

from ddbmigrate.migrations import History, up

LOG = {log!r}
HIST = {hist!r}
FAIL = {fail!r}


def upgrade(ctx):
    with open(LOG, "a") as fh:
        fh.write(ctx.id + "\\n")
    with open(LOG) as fh:
        if len(fh.read().splitlines()) > 1:
            return  # runner B (or a later run): nothing more to do
    ref = ctx.table(HIST)
    probe = History(ref)
    expires = float(probe.lock_item()["expires_at"])  # A's lease
    probe.close()
    b = History(ref, clock=lambda: expires + 1)
    try:
        res = up(os.path.dirname(os.path.abspath(__file__)), ctx.settings, history_table=HIST,
                 state_dir={state_b!r}, confirm=lambda m: True, history=b, lease=60)
    finally:
        b.close()
    assert res.done == [ctx.id, "0002_after"], res.done
    if FAIL:
        raise RuntimeError("runner A's upgrade fails after the takeover")
'''


@pytest.mark.parametrize("fail", [False, True], ids=["upgrade-returns", "upgrade-fails"])
def test_a_runner_that_lost_the_lock_writes_nothing_and_the_new_holders_record_stands(
        endpoint: str, tmp_path: Path, fail: bool) -> None:
    d = tmp_path / "m"
    d.mkdir()
    log, hist = tmp_path / "applied.log", unique("hist")
    (d / "0001_taken_over.py").write_text(TAKEN_OVER.format(log=str(log), hist=hist, fail=fail,
                                                            state_b=str(tmp_path / "stB")))
    (d / "0002_after.py").write_text(f'"""After."""\n\ndef upgrade(ctx):\n    open({str(log)!r}, "a").write('
                                     'ctx.id + "\\n")\n')
    aws = ["--endpoint-url", endpoint, "--region", "us-east-1"]
    common = ["--dir", str(d), "--history-table", hist, "--progress", "off", *aws]

    a = cli("migrations", "up", *common, "--state-dir", str(tmp_path / "stA"), "--yes")
    line = one_error_line(a, EXIT_RETRIABLE)
    assert "migration 0001_taken_over: the migrations lock was lost" in line and "recorded nothing" in line, line
    if fail:
        assert "runner A's upgrade fails" in line, line  # what A did not record is still said
    # B applied both migrations; A wrote nothing over B's records and did not go on to 0002.
    assert log.read_text().splitlines() == ["0001_taken_over", "0001_taken_over", "0002_after"]
    recs = {r["id"]: r for r in history_records(AwsSettings(region="us-east-1", endpoint_url=endpoint),
                                                history_table=hist)}
    assert recs["0001_taken_over"]["state"] == "applied" and "error" not in recs["0001_taken_over"]
    assert recs["0001_taken_over"]["attempts"] == 2  # A's start, then B's resume: nothing after
    assert [r["state"] for r in recs["0001_taken_over"]["runs"]] == ["running", "applied"]
    assert recs["0002_after"]["state"] == "applied"

    again = cli("migrations", "up", *common, "--state-dir", str(tmp_path / "stC"), "--yes")
    assert again.exit_code == 0 and "nothing to apply" in again.stdout, (again.stdout, again.stderr)
    assert len(log.read_text().splitlines()) == 3  # not applied a second time


def test_history_writes_need_the_lock_still_held(endpoint: str) -> None:
    hist = unique("hist")
    now = [1_000_000.0]
    ref = TableRef(hist, region="us-east-1", endpoint_url=endpoint)
    h = History(ref, clock=lambda: now[0])
    h.ensure()
    a = h.acquire(lease=60)
    rec = h.start("0001_x", "c" * 64, "X", None, lock=a)
    assert h.records()["0001_x"]["state"] == "running"

    # A's lease ran out, nobody took it yet: A's clock says it may not write any more.
    now[0] += 61
    with pytest.raises(LockLostError, match="lease ran out without a renewal") as ei:
        h.finish(rec, "applied", [], lock=a)
    assert ei.value.exit_code == EXIT_RETRIABLE == LockHeldError.exit_code
    assert h.records()["0001_x"]["state"] == "running"

    # B takes the expired lock and records the migration; A's late writes are all refused.
    b = h.acquire(lease=60)
    b_rec = h.finish(h.start("0001_x", "c" * 64, "X", h.records()["0001_x"], lock=b), "applied", [], lock=b)
    now[0] -= 61  # even by a clock that says A's lease is not over: the owner changed
    for write in (lambda: h.finish(rec, "failed", [], error="boom", lock=a),
                  lambda: h.put(dict(rec, state="reverted"), lock=a),
                  lambda: h.start("0002_y", "d" * 64, "Y", None, lock=a)):
        with pytest.raises(LockLostError, match="taken over by"):
            write()
    assert a.lost
    recs = h.records()
    assert set(recs) == {"0001_x"} and recs["0001_x"]["state"] == "applied"
    assert recs["0001_x"]["finished_at"] == b_rec["finished_at"] and "error" not in recs["0001_x"]
    b.release()
    a.release()
    h.close()


def mig(d: Path, n: str, log: Path) -> None:
    (d / f"{n}_m.py").write_text(f'"""M {n}."""\n\ndef upgrade(ctx):\n    open({str(log)!r}, "a").write("{n}\\n")\n')


def applied_0001_and_0003(endpoint: str, tmp_path: Path) -> Tuple[Path, Path, str, List[str]]:
    """A folder of migrations 0001 and 0003, both applied: (folder, their log, history, options)."""
    d = tmp_path / "migrations"
    d.mkdir()
    log, hist = tmp_path / "applied.log", unique("hist")
    mig(d, "0001", log)
    mig(d, "0003", log)
    common = ["--dir", str(d), "--history-table", hist, "--state-dir", str(tmp_path / "state"), "--progress", "off",
              "--endpoint-url", endpoint, "--region", "us-east-1"]
    assert cli("migrations", "up", *common, "--yes").exit_code == 0
    return d, log, hist, common


def test_a_migration_numbered_below_an_applied_one_needs_out_of_order(endpoint: str, tmp_path: Path) -> None:
    d, log, hist, common = applied_0001_and_0003(endpoint, tmp_path)
    mig(d, "0002", log)
    mig(d, "0004", log)

    line = one_usage_line(cli("migrations", "up", *common, "--yes"), "0002_m.py", "0003", "--out-of-order")
    assert "0004" not in line
    assert log.read_text().split() == ["0001", "0003"]  # nothing ran, not even the in-order 0004
    s = AwsSettings(region="us-east-1", endpoint_url=endpoint)
    assert [x.state for x in status(str(d), s, history_table=hist)] == ["applied", "pending", "applied", "pending"]
    with pytest.raises(UsageError, match="0002_m.py is numbered below 0003_m"):
        up(str(d), s, history_table=hist, state_dir=str(tmp_path / "state"), confirm=YES)

    ok = cli("migrations", "up", *common, "--yes", "--out-of-order")
    assert ok.exit_code == 0, ok.stderr
    assert "applied 2 migration(s)" in ok.stdout and "out of order" in ok.stdout and "0002_m" in ok.stdout
    assert log.read_text().split() == ["0001", "0003", "0002", "0004"]
    again = cli("migrations", "up", *common, "--yes")
    assert again.exit_code == 0 and "nothing to apply" in again.stdout


def test_an_out_of_order_migration_that_failed_resumes_without_the_flag(endpoint: str, tmp_path: Path) -> None:
    d, log, _, common = applied_0001_and_0003(endpoint, tmp_path)
    common = [*common, "--yes"]
    (d / "0002_m.py").write_text('"""M 0002."""\n\ndef upgrade(ctx):\n    raise RuntimeError("not yet")\n')
    failed = cli("migrations", "up", *common, "--out-of-order")
    assert failed.exit_code == 1 and "not yet" in failed.stderr, (failed.exit_code, failed.stderr)
    mig(d, "0002", log)  # fixed; the run it failed in was the out-of-order one it was let through in
    again = cli("migrations", "up", *common)
    assert again.exit_code == 0, again.stderr
    assert log.read_text().split() == ["0001", "0003", "0002"]


INTERRUPTED = '''"""Stopped by SIGTERM in its job (the job's own error, as the engine raises it)."""
from ddbmigrate.engine.run import interrupted_error


def upgrade(ctx):
    raise interrupted_error(".ddbmigrate/migrations/0001_stopped/01-copy.checkpoint.json")
'''


def test_an_interrupted_migration_says_to_run_up_again_not_resume(endpoint: str, tmp_path: Path) -> None:
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "0001_stopped.py").write_text(INTERRUPTED)
    hist = unique("hist")
    r = cli("migrations", "up", "--dir", str(d), "--history-table", hist, "--state-dir", str(tmp_path / "state"),
            "--progress", "off", "--endpoint-url", endpoint, "--region", "us-east-1", "--yes")
    line = one_error_line(r, EXIT_INTERRUPTED)
    assert "migration 0001_stopped interrupted" in line and "run `ddbmigrate migrations up` again" in line, line
    assert "--resume" not in r.stderr
    rec: List[Dict[str, Any]] = history_records(AwsSettings(region="us-east-1", endpoint_url=endpoint),
                                                history_table=hist)
    assert rec[0]["state"] == "failed" and "--resume" not in rec[0]["error"]


@pytest.mark.parametrize("state", ["applied", "failed"])
def test_a_renamed_migration_is_not_applied_again_under_its_new_name(endpoint: str, tmp_path: Path,
                                                                      state: str) -> None:
    # Renaming an applied (or half-applied) file used to be "missing" + a new pending one of the
    # same number: --allow-changed, as the refusal advised, then ran it a second time.
    d, log, hist, common = applied_0001_and_0003(endpoint, tmp_path)
    if state == "failed":
        (d / "0004_m.py").write_text('"""M 0004."""\n\ndef upgrade(ctx):\n    open('
                                     f'{str(log)!r}, "a").write("0004\\n")\n    raise RuntimeError("half done")\n')
        assert cli("migrations", "up", *common, "--yes").exit_code == 1
        (d / "0004_m.py").rename(d / "0004_m_renamed.py")
    else:
        (d / "0003_m.py").rename(d / "0003_m_renamed.py")
    ran = log.read_text().split()
    for extra in ([], ["--allow-changed"], ["--allow-changed", "--out-of-order"]):
        r = cli("migrations", "up", *common, "--yes", *extra)
        one_usage_line(r, "_m_renamed.py", f"{state} migration", "_m.py")
    assert log.read_text().split() == ran
    assert {r["id"] for r in history_records(AwsSettings(region="us-east-1", endpoint_url=endpoint),
                                             history_table=hist)} == {"0001_m", "0003_m"} | (
        {"0004_m"} if state == "failed" else set())


def test_down_refuses_when_a_migration_to_revert_has_no_file(endpoint: str, tmp_path: Path) -> None:
    # It used to be passed over: the ones below it were undone under it, "reverted 2", exit 0.
    d, log, hist = tmp_path / "migrations", tmp_path / "ran.log", unique("hist")
    d.mkdir()
    for n in ("0001", "0002", "0003"):
        (d / f"{n}_m.py").write_text(f'"""M {n}."""\n\ndef upgrade(ctx):\n    pass\n\n\ndef downgrade(ctx):\n'
                                     f'    open({str(log)!r}, "a").write("{n}\\n")\n')
    common = ["--dir", str(d), "--history-table", hist, "--state-dir", str(tmp_path / "state"), "--progress", "off",
              "--endpoint-url", endpoint, "--region", "us-east-1", "--yes"]
    assert cli("migrations", "up", *common).exit_code == 0
    (d / "0003_m.py").rename(tmp_path / "0003_m.py")
    one_usage_line(cli("migrations", "down", *common, "--to", "0"), "cannot revert 0003_m", "no file")
    one_usage_line(cli("migrations", "down", *common, "--to", "1"), "cannot revert 0003_m")
    assert not log.exists()
    s = AwsSettings(region="us-east-1", endpoint_url=endpoint)
    assert [x.state for x in status(str(d), s, history_table=hist)] == ["applied", "applied", "missing"]
    (tmp_path / "0003_m.py").rename(d / "0003_m.py")
    assert cli("migrations", "down", *common, "--to", "1").exit_code == 0
    assert log.read_text().split() == ["0003", "0002"]


PRICES = '''"""Raise every price by 100; the downgrade lowers it again (neither is idempotent)."""
MARKER = {marker!r}


def plus(item):
    return dict(item, price=item["price"] + 100)


def minus(item):
    return dict(item, price=item["price"] - 100)


def upgrade(ctx):
    ctx.update({table!r}, plus)


def downgrade(ctx):
    ctx.update({table!r}, minus)
    open(MARKER, "w").close()  # from here on the runner's clock is past its lease
'''


def test_a_downgrade_whose_reverted_record_was_not_written_is_not_run_twice(endpoint: str,
                                                                          tmp_path: Path) -> None:
    # The downgrade's step checkpoints were deleted before "reverted" was recorded: a runner that
    # lost the lock there (or died) left the migration "applied" with no trace of the finished
    # downgrade, and the next `down` lowered every price a second time.
    table = create_table(endpoint)
    put_items(endpoint, table, [{"pk": {"S": f"k{i}"}, "price": {"N": "1000"}} for i in range(6)])
    d, marker, hist, state = tmp_path / "migrations", tmp_path / "late", unique("hist"), str(tmp_path / "state")
    d.mkdir()
    (d / "0001_prices.py").write_text(PRICES.format(marker=str(marker), table=table))
    s = AwsSettings(region="us-east-1", endpoint_url=endpoint)
    kw: Dict[str, Any] = {"history_table": hist, "state_dir": state, "confirm": YES,
                          "options": RunOptions(progress="off")}
    assert up(str(d), s, **kw).done == ["0001_prices"]
    late = History(TableRef(hist, region="us-east-1", endpoint_url=endpoint),
                   clock=lambda: time.time() + (1000 if marker.exists() else 0))
    try:
        with pytest.raises(LockLostError):
            down(str(d), s, to="0", history=late, lease=60, **kw)
    finally:
        late.close()
    prices = lambda: sorted(it["price"]["N"] for it in scan_all(endpoint, table))
    assert prices() == ["1000"] * 6
    # Its runner gone (the lock released), the record still says the revert is under way.
    assert [x.state for x in status(str(d), s, history_table=hist)] == ["revert_interrupted"]
    assert down(str(d), s, to="0", **kw).done == ["0001_prices"]  # recorded now; its step is a no-op
    assert prices() == ["1000"] * 6
    assert [x.state for x in status(str(d), s, history_table=hist)] == ["reverted"]
    assert up(str(d), s, **kw).done == ["0001_prices"]  # applied afresh: the downgrade's state is gone
    assert down(str(d), s, to="0", **kw).done == ["0001_prices"]
    assert prices() == ["1000"] * 6


@pytest.mark.parametrize("key", [("pk", "S"), ("id", "S")], ids=["other-key", "data-table-keyed-id"])
def test_a_history_table_that_is_a_data_table_is_one_line(endpoint: str, tmp_path: Path, key: Tuple[str, str]) -> None:
    # --history-table naming a data table: keyed otherwise it was a raw ValidationException (up)
    # or "internal error: KeyError" (status); keyed id, its items were listed as migrations.
    table = create_table(endpoint, hash_key=key)
    items = [{key[0]: {"S": "user-1"}, "name": {"S": "Ada"}}]
    put_items(endpoint, table, items)
    d = tmp_path / "migrations"
    d.mkdir()
    mig(d, "0001", tmp_path / "ran.log")
    where = ["--dir", str(d), "--history-table", table, "--state-dir", str(tmp_path / "state"),
             "--endpoint-url", endpoint, "--region", "us-east-1"]
    for command in (["up", "--yes"], ["status"], ["history"], ["verify"], ["down", "--to", "0", "--yes"]):
        one_usage_line(cli("migrations", *command, *where), f"table {table} is not a migrations history table")
    assert not (tmp_path / "ran.log").exists()
    assert scan_all(endpoint, table) == items


def test_ctrl_c_in_a_verify_stops_migrations_verify(endpoint: str, tmp_path: Path) -> None:
    # It was taken for a difference ("... interrupted; run `migrations up` again to resume it"),
    # the next migration's verify ran, and the command ended with exit 4.
    d, log, hist = tmp_path / "migrations", tmp_path / "verified.log", unique("hist")
    d.mkdir()
    (d / "0001_a.py").write_text('"""A."""\n\ndef upgrade(ctx):\n    pass\n\n\ndef verify(ctx):\n'
                                 '    raise KeyboardInterrupt\n')
    (d / "0002_b.py").write_text(f'"""B."""\n\ndef upgrade(ctx):\n    pass\n\n\ndef verify(ctx):\n'
                                 f'    open({str(log)!r}, "a").write("0002")\n')
    where = ["--dir", str(d), "--history-table", hist, "--state-dir", str(tmp_path / "state"),
             "--endpoint-url", endpoint, "--region", "us-east-1"]
    assert cli("migrations", "up", *where, "--yes", "--progress", "off").exit_code == 0
    line = one_error_line(cli("migrations", "verify", *where), EXIT_INTERRUPTED, "verify", "0001_a")
    assert "migrations up" not in line
    assert not log.exists()


def test_a_failure_with_a_huge_error_message_is_recorded_failed(endpoint: str, tmp_path: Path) -> None:
    # An error quoting a large item made the record over 400 KB: the failure went unrecorded (the
    # migration stayed "running"), and the line said ValidationException, not the error.
    d, hist = tmp_path / "migrations", unique("hist")
    d.mkdir()
    (d / "0001_big.py").write_text('"""Big."""\n\ndef upgrade(ctx):\n    raise ValueError("bad item " + "x" * 300000)\n')
    r = cli("migrations", "up", "--dir", str(d), "--history-table", hist, "--state-dir", str(tmp_path / "state"),
            "--endpoint-url", endpoint, "--region", "us-east-1", "--yes")
    assert one_error_line(r, 1).startswith("error: migration 0001_big failed: ValueError: bad item xxx")
    rec = history_records(AwsSettings(region="us-east-1", endpoint_url=endpoint), history_table=hist)[0]
    assert rec["state"] == "failed" and rec["runs"][-1]["state"] == "failed"
    assert rec["error"].startswith("migration 0001_big failed: ValueError: bad item xxx")
    assert rec["error"].endswith(" more characters)") and len(rec["error"]) < 3000
