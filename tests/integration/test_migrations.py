"""Migrations as code on DynamoDB Local: three migrations (create a table, copy with a re-model
into it, add a GSI key in place) applied in order, the history they leave, a second ``up`` that
does nothing, an edited applied file refused, a failing migration resumed after the fix, the
lock, the item-level upgrade identical to its backfill, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest
from support import create_table, put_items, scan_all, unique

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.core.items import canonical_item, from_python, to_python
from ddbmigrate.errors import EXIT_RETRIABLE, UsageError
from ddbmigrate.migrations import (
    AwsSettings,
    History,
    LockHeldError,
    down,
    history_records,
    status,
    up,
    upgrade_item,
    verify,
)
from ddbmigrate.migrations.upgrade import load_registry

pytestmark = pytest.mark.integration

YES = lambda message: True

CREATE = '''"""Create {v2}, the re-modelled users table."""


def upgrade(ctx):
    ctx.create_table({{
        "TableName": "{v2}",
        "AttributeDefinitions": [{{"AttributeName": "pk", "AttributeType": "S"}},
                                 {{"AttributeName": "sk", "AttributeType": "S"}}],
        "KeySchema": [{{"AttributeName": "pk", "KeyType": "HASH"}}, {{"AttributeName": "sk", "KeyType": "RANGE"}}],
    }})
'''

COPY = '''"""Copy {v1} into {v2}: one item per user, keyed USER#id / PROFILE, name split."""

CALLS = {calls!r}


def remodel(item):
    with open(CALLS, "a") as fh:
        fh.write(item["id"] + "\\n")
    first, _, last = item.pop("name").partition(" ")
    return {{"pk": "USER#" + item.pop("id"), "sk": "PROFILE", "first": first, "last": last, **item}}


def upgrade(ctx):
    ctx.copy("{v1}", "{v2}", transform=remodel, segments=2)
'''

GSI = '''"""Fill the GSI key on every user, in place."""


def add_gsi_key(item):
    item["gsi1pk"] = "EMAIL#" + item["email"].lower()
    return item


def upgrade(ctx):
    ctx.update("{v2}", add_gsi_key, segments=2)


def verify(ctx):
    ctx.verify("{v2}", "{v2}")
'''

FAILING = '''"""Tag users; the first version of this file has a bug."""

BROKEN = {broken}


def tag(item):
    if BROKEN and item["pk"] == "USER#u07":
        raise KeyError("tier")
    item["tier"] = "free"
    return item


def upgrade(ctx):
    ctx.update("{v2}", tag, segments=1)
'''


def settings(endpoint: str) -> AwsSettings:
    return AwsSettings(region="us-east-1", endpoint_url=endpoint)


def users(n: int) -> List[Dict[str, Any]]:
    return [{"id": {"S": f"u{i:02d}"}, "name": {"S": f"Ada{i} Lovelace"}, "email": {"S": f"Ada{i}@X.org"},
             "n": {"N": str(i)}} for i in range(n)]


def expected_v2(n: int, **extra: Any) -> Dict[Any, int]:
    out: Dict[Any, int] = {}
    for i in range(n):
        it = {"pk": f"USER#u{i:02d}", "sk": "PROFILE", "first": f"Ada{i}", "last": "Lovelace",
              "email": f"Ada{i}@X.org", "n": i, "gsi1pk": f"EMAIL#ada{i}@x.org", **extra}
        out[canonical_item(from_python(it))] = 1
    return out


def as_multiset(items: List[Dict[str, Any]]) -> Dict[Any, int]:
    out: Dict[Any, int] = {}
    for it in items:
        out[canonical_item(it)] = out.get(canonical_item(it), 0) + 1
    return out


@pytest.fixture
def world(endpoint: str, tmp_path: Path) -> Dict[str, Any]:
    v1 = create_table(endpoint, hash_key=("id", "S"))
    v2 = unique("users-v2")
    put_items(endpoint, v1, users(12))
    d = tmp_path / "migrations"
    d.mkdir()
    calls = tmp_path / "calls.txt"
    (d / "0001_create_users_v2.py").write_text(CREATE.format(v2=v2))
    (d / "0002_copy_users.py").write_text(COPY.format(v1=v1, v2=v2, calls=str(calls)))
    (d / "0003_add_gsi_key.py").write_text(GSI.format(v2=v2))
    return {"dir": str(d), "v1": v1, "v2": v2, "calls": calls, "hist": unique("hist"),
            "state": str(tmp_path / "state"), "s": settings(endpoint)}


def run_up(w: Dict[str, Any], **kw: Any) -> Any:
    kw.setdefault("confirm", YES)
    return up(w["dir"], w["s"], history_table=w["hist"], state_dir=w["state"],
              options=RunOptions(progress="off"), **kw)


def test_up_applies_in_order_records_history_and_is_then_a_no_op(world: Dict[str, Any], endpoint: str) -> None:
    w = world
    assert [s.state for s in status(w["dir"], w["s"], history_table=w["hist"])] == ["pending"] * 3
    res = run_up(w)
    assert res.done == ["0001_create_users_v2", "0002_copy_users", "0003_add_gsi_key"]
    assert as_multiset(scan_all(endpoint, w["v2"])) == expected_v2(12)
    recs = history_records(w["s"], history_table=w["hist"])
    assert [r["id"] for r in recs] == res.done
    for r in recs:
        assert r["state"] == "applied" and len(r["checksum"]) == 64 and r["attempts"] == 1
        assert r["started_at"] <= r["finished_at"] and "@" in r["who"] and r["description"]
    copy_step = recs[1]["summary"][0]
    assert copy_step["kind"] == "copy" and copy_step["counters"]["written"] == 12 and copy_step["exit_code"] == 0
    assert recs[2]["summary"][0]["counters"]["written"] == 12

    calls = w["calls"].read_text()
    again = run_up(w)
    assert again.done == [] and again.message == "nothing to apply"
    assert history_records(w["s"], history_table=w["hist"]) == recs  # not even a history write
    assert w["calls"].read_text() == calls  # no job ran
    assert verify(w["dir"], w["s"], history_table=w["hist"], state_dir=w["state"]).exit_code == 0

    # An applied migration's file is edited: refused (before anything runs), then accepted.
    p = Path(w["dir"]) / "0002_copy_users.py"
    p.write_text(p.read_text() + "\n# edited\n")
    (Path(w["dir"]) / "0004_noop.py").write_text('"""Nothing."""\n\ndef upgrade(ctx):\n    pass\n')
    with pytest.raises(UsageError, match="0002_copy_users changed since it was applied"):
        run_up(w)
    st = {s.id: s.state for s in status(w["dir"], w["s"], history_table=w["hist"])}
    assert st == {"0001_create_users_v2": "applied", "0002_copy_users": "changed", "0003_add_gsi_key": "applied",
                  "0004_noop": "pending"}
    v = verify(w["dir"], w["s"], history_table=w["hist"], state_dir=w["state"])
    assert v.exit_code == 4 and "0002_copy_users" in v.problems[0]
    assert run_up(w, allow_changed=True).done == ["0004_noop"]
    assert all(s.state == "applied" for s in status(w["dir"], w["s"], history_table=w["hist"]))


def test_failing_migration_stays_failed_and_resumes_after_the_fix(world: Dict[str, Any], endpoint: str) -> None:
    w = world
    p = Path(w["dir"]) / "0004_tag_users.py"
    p.write_text(FAILING.format(v2=w["v2"], broken=True))
    with pytest.raises(Exception) as ei:
        run_up(w)
    calls = w["calls"].read_text()
    assert "migration 0004_tag_users failed" in str(ei.value) and "KeyError" in str(ei.value)
    recs = {r["id"]: r for r in history_records(w["s"], history_table=w["hist"])}
    assert [recs[k]["state"] for k in sorted(recs)] == ["applied", "applied", "applied", "failed"]
    assert "KeyError" in recs["0004_tag_users"]["error"] and recs["0004_tag_users"]["summary"][0]["error"]
    assert not any("tier" in it for it in scan_all(endpoint, w["v2"]) if it["pk"]["S"] == "USER#u07")
    # The items tagged before the failure are in the table, past the step's checkpoint: its
    # counters (the checkpoint's) say 0, its record says how many (before: nothing at all).
    tagged = sum(1 for it in scan_all(endpoint, w["v2"]) if "tier" in it)
    assert tagged >= 1 and recs["0004_tag_users"]["summary"][0]["unsettled"] == {"written": tagged}

    p.write_text(FAILING.format(v2=w["v2"], broken=False))  # the fix
    res = run_up(w)
    assert res.done == ["0004_tag_users"]
    rec = {r["id"]: r for r in history_records(w["s"], history_table=w["hist"])}["0004_tag_users"]
    assert rec["state"] == "applied" and rec["attempts"] == 2 and "error" not in rec
    assert [r["state"] for r in rec["runs"]] == ["failed", "applied"]
    step = rec["summary"][0]
    # The step went on from its checkpoint: its report counts the table once, not twice; the
    # items the failed run had already tagged come out of the idempotent transform unchanged.
    c = step["counters"]
    assert c["read"] == 12 and c["written"] + c.get("unchanged", 0) == 12 and c["written"] >= 1
    assert as_multiset(scan_all(endpoint, w["v2"])) == expected_v2(12, tier="free")
    assert w["calls"].read_text() == calls  # the applied migrations before it did not run again


def test_a_second_runner_is_refused_or_waits_for_the_lock(world: Dict[str, Any], endpoint: str) -> None:
    w = world
    other = History(TableRef(w["hist"], region="us-east-1", endpoint_url=endpoint))
    other.ensure()
    lock = other.acquire(lease=600)
    with pytest.raises(LockHeldError) as ei:
        run_up(w)
    assert ei.value.exit_code == EXIT_RETRIABLE and "another runner holds the migrations lock" in ei.value.message
    assert history_records(w["s"], history_table=w["hist"]) == []  # nothing was applied

    # Waiting: the holder releases while the second runner waits.
    timer = threading.Timer(0.3, lock.release)
    timer.start()
    try:
        assert len(run_up(w, wait=30).done) == 3
    finally:
        timer.join()
    assert other.lock_item() is None  # released on exit

    # A crashed runner's lease expires and is taken over (time is injected, nothing sleeps).
    now = [1_000_000.0]
    clocked = History(TableRef(w["hist"], region="us-east-1", endpoint_url=endpoint), clock=lambda: now[0])
    clocked.acquire(lease=60)  # never released: its runner "died"
    with pytest.raises(LockHeldError):
        clocked.acquire(lease=60)
    now[0] += 61
    taken = clocked.acquire(lease=60)
    now[0] += 30
    assert taken.renew() and not taken.lost and clocked.lock_item()["owner"] == taken.owner  # type: ignore[index]
    now[0] += 61  # no renewal reached DynamoDB for a whole lease: this runner must not go on
    assert taken.lost
    again = clocked.acquire(lease=60)  # a third runner takes the expired lease
    assert not taken.renew() and taken.lost
    again.release()
    taken.release()  # not the owner any more: a no-op, the lock item is gone with again's release
    assert clocked.lock_item() is None
    other.close()
    clocked.close()


REGISTRY_FILE = '''
from ddbmigrate.migrations import UpgradeRegistry

REGISTRY = UpgradeRegistry("_v")


@REGISTRY.step(1)
def split_name(item):
    first, _, last = item.pop("name").partition(" ")
    item["first"], item["last"] = first, last


@REGISTRY.step(2)
def gsi_key(item):
    return dict(item, gsi1pk="LAST#" + item["last"].lower())
'''


def test_upgrade_item_brings_v1_and_v2_to_v3_like_the_backfill(endpoint: str, tmp_path: Path) -> None:
    from support import every_type_items

    f = tmp_path / "schema.py"
    f.write_text(REGISTRY_FILE)
    tf = load_registry(f"{f}:REGISTRY", "_v")
    reg = tf.func
    with pytest.raises(UsageError, match="not '_w'"):
        load_registry(f"{f}:REGISTRY", "_w")
    table = create_table(endpoint)
    items: List[Dict[str, Any]] = []
    for i, body in enumerate(every_type_items()[:-1]):  # every type and awkward value, beside the name
        v1 = dict(body, pk={"S": f"v1-{i}"}, name={"S": f"Grace{i} Hopper"})
        items.append(v1)
        v2 = from_python(upgrade_item(to_python(v1), {1: reg.steps[1]}))  # an item written at v2
        items.append(dict(v2, pk={"S": f"v2-{i}"}))
    items.append(from_python(upgrade_item(to_python(dict(items[0], pk={"S": "v3"})), reg)))
    put_items(endpoint, table, items)
    # What the application reads lazily, item by item, before the backfill reaches it:
    lazy = {it["pk"]["S"]: canonical_item(from_python(upgrade_item(to_python(it), reg))) for it in items}
    # The backfill, from the command line (in this process: click's runner).
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    out = CliRunner().invoke(main, ["update", table, "--transform", f"{f}:REGISTRY", "--schema-version-attribute",
                                    "_v", "--endpoint-url", endpoint, "--region", "us-east-1", "--segments", "2",
                                    "--quiet", "--report", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["counters"]["written"] == len(items) - 1 and rep["counters"]["unchanged"] == 1 and rep["balanced"]
    backfilled = {it["pk"]["S"]: canonical_item(it) for it in scan_all(endpoint, table)}
    assert backfilled == lazy
    assert all(to_python(it)["_v"] == 3 for it in scan_all(endpoint, table))


def cli(*args: str) -> Any:
    """The command line in this process (click's runner): exit code, stdout and stderr."""
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    return CliRunner().invoke(main, list(args))


def test_cli_init_new_status_up_history(world: Dict[str, Any], endpoint: str, tmp_path: Path) -> None:
    w = world
    aws = ["--endpoint-url", endpoint, "--region", "us-east-1"]
    fresh = tmp_path / "fresh"
    assert cli("migrations", "init", str(fresh)).exit_code == 0 and fresh.is_dir()
    assert cli("migrations", "init", "--dir", str(tmp_path / "other")).exit_code == 0 and (tmp_path / "other").is_dir()
    made = cli("migrations", "new", "add user alias", "--dir", str(fresh))
    assert made.exit_code == 0 and made.stdout.strip().endswith("0001_add_user_alias.py")
    common = ["--dir", w["dir"], "--history-table", w["hist"], "--state-dir", w["state"], *aws]
    st = cli("migrations", "status", "--json", *common)
    assert st.exit_code == 0, st.stderr
    assert json.loads(st.stdout)["pending"] == ["0001_create_users_v2", "0002_copy_users", "0003_add_gsi_key"]
    refused = cli("migrations", "up", *common, "--progress", "off")  # no terminal, no --yes
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    # The real thing once, as a user runs it: a new process.
    ok = subprocess.run([sys.executable, "-m", "ddbmigrate", "migrations", "up", "--to", "0002", "--yes",
                         "--progress", "off", "--json", *common], capture_output=True, text=True, timeout=180)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["done"] == ["0001_create_users_v2", "0002_copy_users"]
    hist = cli("migrations", "history", "--json", "--dir", w["dir"], "--history-table", w["hist"], *aws)
    recs = json.loads(hist.stdout)["history"]
    assert [r["state"] for r in recs] == ["applied", "applied"] and recs[1]["summary"][0]["counters"]["written"] == 12
    assert [r["file"] for r in recs] == ["same", "same"]
    assert cli("migrations", "history", "--history-table", w["hist"], *aws).exit_code == 0  # the table view
    assert cli("migrations", "status", *common).exit_code == 0
    st2 = json.loads(cli("migrations", "status", "--json", *common).stdout)
    assert st2["pending"] == ["0003_add_gsi_key"]
    bad = cli("migrations", "up", "--dir", str(tmp_path / "nope"), "--yes", *aws)
    assert bad.exit_code == 2 and "does not exist" in bad.stderr


FLAG = '''"""Flag every item (and unflag it on the way down)."""


def add_flag(item):
    item["flag"] = True
    return item


def drop_flag(item):
    item.pop("flag", None)
    return item


def upgrade(ctx):
    ctx.update("{table}", add_flag, segments=1)


def downgrade(ctx):
    ctx.update("{table}", drop_flag, segments=1)
'''

SLOW = '''"""Wait for the test to let it finish (a long migration)."""
import os
import time


def upgrade(ctx):
    deadline = time.monotonic() + 60
    while not os.path.exists({go!r}) and time.monotonic() < deadline:
        time.sleep(0.02)
'''


def test_down_reverts_and_up_applies_again_from_fresh_checkpoints(endpoint: str, tmp_path: Path) -> None:
    table = create_table(endpoint)
    put_items(endpoint, table, [{"pk": {"S": f"k{i}"}} for i in range(5)])
    d = tmp_path / "m"
    d.mkdir()
    (d / "0001_flag.py").write_text(FLAG.format(table=table))
    w = {"dir": str(d), "hist": unique("hist"), "state": str(tmp_path / "state"), "s": settings(endpoint)}
    assert run_up(w).done == ["0001_flag"]
    assert all(it.get("flag") == {"BOOL": True} for it in scan_all(endpoint, table))
    res = down(str(d), w["s"], to="0", confirm=YES, history_table=w["hist"], state_dir=w["state"],
               options=RunOptions(progress="off"))
    assert res.done == ["0001_flag"] and not any("flag" in it for it in scan_all(endpoint, table))
    assert [s.state for s in status(str(d), w["s"], history_table=w["hist"])] == ["reverted"]
    assert run_up(w).done == ["0001_flag"]  # re-applied for real, not a no-op on the old checkpoint
    assert all(it.get("flag") == {"BOOL": True} for it in scan_all(endpoint, table))
    (d / "0002_no_down.py").write_text('"""No way back."""\n\ndef upgrade(ctx):\n    pass\n')
    run_up(w)
    with pytest.raises(UsageError, match="no downgrade"):
        down(str(d), w["s"], to="0", confirm=YES, history_table=w["hist"], state_dir=w["state"])


def test_two_concurrent_ups_one_waits_for_the_other(world: Dict[str, Any], endpoint: str, tmp_path: Path) -> None:
    w = world
    go = tmp_path / "go"
    (Path(w["dir"]) / "0004_slow.py").write_text(SLOW.format(go=str(go)))
    first: Dict[str, Any] = {}

    def runner() -> None:
        try:
            first["result"] = run_up(w)
        except BaseException as e:  # surfaced by the assertion below
            first["error"] = e

    t = threading.Thread(target=runner)
    t.start()
    try:
        h = History(TableRef(w["hist"], region="us-east-1", endpoint_url=endpoint))
        while not any(r.get("state") == "running" and r["id"] == "0004_slow"
                      for r in history_records(w["s"], history_table=w["hist"]) if h.exists()):
            assert t.is_alive(), first
        with pytest.raises(LockHeldError):
            run_up(w)  # the second runner, at the same moment: refused
        go.write_text("go")
        second = run_up(w, wait=60)  # waits for the first to finish, then finds nothing to do
    finally:
        go.write_text("go")
        t.join()
    assert "error" not in first, first
    assert first["result"].done == ["0001_create_users_v2", "0002_copy_users", "0003_add_gsi_key", "0004_slow"]
    assert second.done == [] and second.message == "nothing to apply"
    h.close()


IMPORT_THEN_VERIFY = '''"""Load the seed file into {table}, then check it against {other}."""


def upgrade(ctx):
    ctx.import_files({path!r}, "{table}", input_format="json")
    ctx.verify("{table}", "{other}")
'''


def test_ctx_import_files_and_a_verify_that_finds_differences_fails_the_migration(endpoint: str,
                                                                                  tmp_path: Path) -> None:
    table, other = create_table(endpoint), create_table(endpoint)
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"pk": f"s{i}", "n": i}) + "\n" for i in range(7)))
    put_items(endpoint, other, [{"pk": {"S": f"s{i}"}, "n": {"N": str(i)}} for i in range(6)])  # one missing
    d = tmp_path / "m"
    d.mkdir()
    (d / "0001_seed.py").write_text(IMPORT_THEN_VERIFY.format(table=table, other=other, path=str(seed)))
    w = {"dir": str(d), "hist": unique("hist"), "state": str(tmp_path / "state"), "s": settings(endpoint)}
    with pytest.raises(Exception, match="the tables differ"):
        run_up(w)
    assert len(scan_all(endpoint, table)) == 7
    rec = history_records(w["s"], history_table=w["hist"])[0]
    assert rec["state"] == "failed"
    assert [s["kind"] for s in rec["summary"]] == ["import", "verify"]
    assert rec["summary"][0]["counters"]["written"] == 7
    put_items(endpoint, other, [{"pk": {"S": "s6"}, "n": {"N": "6"}}])  # the fix: the other side is complete
    assert run_up(w).done == ["0001_seed"]
    rec = history_records(w["s"], history_table=w["hist"])[0]
    assert rec["state"] == "applied" and rec["attempts"] == 2 and rec["summary"][0]["counters"]["written"] == 7


def test_up_json_prints_a_document_when_a_migration_fails(endpoint: str, tmp_path: Path) -> None:
    """CI reading `up --json` got nothing on stdout when a migration failed (only the error line)."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "0001_fine.py").write_text('"""Nothing to do."""\n\n\ndef upgrade(ctx):\n    pass\n')
    (d / "0002_breaks.py").write_text('"""Fails."""\n\n\ndef upgrade(ctx):\n    raise RuntimeError("no such column")\n')
    aws = ["--endpoint-url", endpoint, "--region", "us-east-1"]
    out = subprocess.run([sys.executable, "-m", "ddbmigrate", "migrations", "up", "--dir", str(d), "--yes",
                          "--history-table", unique("hist"), "--state-dir", str(tmp_path / "st"), "--progress", "off",
                          "--json", *aws], capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["action"] == "up" and doc["done"] == ["0001_fine"] and doc["exit_code"] == 1
    assert "migration 0002_breaks failed: RuntimeError: no such column" in doc["error"]
    assert out.stderr.strip().splitlines()[-1].startswith("error: migration 0002_breaks failed")
