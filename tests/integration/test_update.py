"""``ddbmigrate update``: in-place transforms on DynamoDB Local while an application writes.

Races are made to happen, not hoped for: the transform itself performs the application's
write (through plain boto3) the first time it sees chosen keys, so that write lands exactly
between the job's read and its conditional update. A free-running writer thread adds races
that land anywhere. Every application write must survive, every item must end transformed,
and the counts must add up exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest
from support import (
    boto_client,
    create_table,
    every_type_items,
    put_items,
    scan_all,
    unique,
)

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.errors import TransformError, UsageError
from ddbmigrate.jobs.update import update_table

pytestmark = pytest.mark.integration


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def opts(**kw: Any) -> RunOptions:
    kw.setdefault("progress", "off")
    kw.setdefault("segments", 4)
    return RunOptions(**kw)


def remodel(item: Dict[str, Any]) -> Dict[str, Any]:
    """The migration: a lower-cased GSI key from the e-mail, the legacy field dropped."""
    out = dict(item)
    out["gsi1pk"] = "EMAIL#" + str(item["email"]).lower()
    out.pop("legacy", None)
    return out


def by_pk(items: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {it["pk"]["S"]: it for it in items}


def seed(endpoint: str, n: int) -> str:
    table = create_table(endpoint)
    put_items(endpoint, table, [{"pk": {"S": f"u{i:04d}"}, "email": {"S": f"User{i}@Example.COM"},
                                 "n": {"N": str(i)}, "legacy": {"S": "x" * (i % 7)}} for i in range(n)])
    return table


def test_update_under_concurrent_writer_loses_no_write(endpoint: str) -> None:
    n = 240
    table = seed(endpoint, n)
    app = boto_client(endpoint)
    # Keys whose application write lands between the job's read and its write (deterministic races)
    # and keys the application deletes in that window (they must not come back).
    racing = {f"u{i:04d}" for i in range(0, n, 10)}
    deleted = {f"u{i:04d}" for i in range(5, n, 40)}
    app_emails: Dict[str, str] = {}
    lock = threading.Lock()
    seen: Set[str] = set()

    def app_write(pk: str, tag: str) -> None:
        email = f"Changed-{tag}-{pk}@Example.COM"
        app.update_item(TableName=table, Key={"pk": {"S": pk}},
                        UpdateExpression="SET email = :e, #a = :a ADD hits :one",
                        ExpressionAttributeNames={"#a": f"app_{tag}"},
                        ExpressionAttributeValues={":e": {"S": email}, ":a": {"S": tag}, ":one": {"N": "1"}})
        with lock:
            app_emails[pk] = email

    def transform(item: Dict[str, Any]) -> Dict[str, Any]:
        pk = item["pk"]
        if not threading.current_thread().name.startswith("writer-"):
            return remodel(item)  # the check of a sample before the job: no application write there
        with lock:
            first = pk not in seen
            seen.add(pk)
        if first and pk in racing:
            app_write(pk, "inline")
        if first and pk in deleted:
            app.delete_item(TableName=table, Key={"pk": {"S": pk}})
        return remodel(item)

    stop = threading.Event()
    background: Dict[str, int] = {}  # successful application writes per key

    def writer() -> None:
        # The application keeps writing while the job runs: it updates an attribute, adds one
        # and counts, on the same items the job is transforming (attributes the transform does
        # not derive from, as an application not yet aware of the new attribute would).
        i = 1
        while not stop.is_set():
            pk = f"u{(i * 7) % n:04d}"
            if pk not in deleted:
                try:
                    app.update_item(TableName=table, Key={"pk": {"S": pk}},
                                    UpdateExpression="SET bg = :b, #x = :b ADD bgcount :one",
                                    ConditionExpression="attribute_exists(pk)",
                                    ExpressionAttributeNames={"#x": f"bg_{i % 3}"},
                                    ExpressionAttributeValues={":b": {"N": str(i)}, ":one": {"N": "1"}})
                    with lock:
                        background[pk] = background.get(pk, 0) + 1
                except app.exceptions.ConditionalCheckFailedException:
                    pass
            i += 1

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        rep = update_table(ref(endpoint, table), opts(writers=8), transform=transform)
    finally:
        stop.set()
        t.join()
    assert sum(background.values()) > 0
    c = rep.counters
    assert rep.status == "done" and rep.exit_code == 0
    assert c["read"] == n
    assert c.get("vanished", 0) == len(deleted)
    assert c["written"] + c.get("unchanged", 0) + c.get("vanished", 0) + c.get("dead_lettered", 0) == n
    assert c.get("dead_lettered", 0) == 0
    # Every inline race was lost once by the job and retried (the background writer adds more).
    assert c["retried_races"] >= len(racing) + len(deleted)
    assert rep.balanced()

    final = by_pk(scan_all(endpoint, table))
    assert set(final) == {f"u{i:04d}" for i in range(n)} - deleted
    for pk, it in final.items():
        # Transformed, from the item's latest e-mail: the job never wrote a stale derivation.
        assert it["gsi1pk"]["S"] == "EMAIL#" + it["email"]["S"].lower(), pk
        assert "legacy" not in it
        assert it["n"]["N"] == str(int(pk[1:]))
        if pk in app_emails:
            assert it["email"]["S"] == app_emails[pk], pk  # the application's last write survived
        # Every background write survived: its count, and the attributes it added.
        assert int(it.get("bgcount", {"N": "0"})["N"]) == background.get(pk, 0), pk
        if pk in racing:
            assert it["app_inline"] == {"S": "inline"} and it["hits"] == {"N": "1"}

    # Idempotent: a second run finds nothing to change and writes nothing.
    rep2 = update_table(ref(endpoint, table), opts(), transform=remodel)
    assert rep2.counters["written"] == 0
    assert rep2.counters["unchanged"] == n - len(deleted)
    assert rep2.balanced()


def test_update_with_version_attribute(endpoint: str) -> None:
    table = create_table(endpoint)
    put_items(endpoint, table, [{"pk": {"S": f"k{i}"}, "email": {"S": f"A{i}@X"}, "ver": {"N": "3"}}
                                for i in range(20)] + [{"pk": {"S": "nover"}, "email": {"S": "N@X"}}])
    app = boto_client(endpoint)
    raced: Set[str] = set()

    def transform(item: Dict[str, Any]) -> Dict[str, Any]:
        if item["pk"] == "k3" and "k3" not in raced and threading.current_thread().name.startswith("writer-"):
            raced.add("k3")
            # An optimistic writer of the application: condition on the version, moves it on.
            app.update_item(TableName=table, Key={"pk": {"S": "k3"}},
                            UpdateExpression="SET email = :e, ver = :n", ConditionExpression="ver = :o",
                            ExpressionAttributeValues={":e": {"S": "NEW@X"}, ":n": {"N": "4"}, ":o": {"N": "3"}})
        return remodel(item)

    rep = update_table(ref(endpoint, table), opts(), transform=transform, version_attribute="ver")
    assert rep.counters["written"] == 21 and rep.counters["retried_races"] == 1 and rep.balanced()
    final = by_pk(scan_all(endpoint, table))
    assert final["k3"]["email"] == {"S": "NEW@X"} and final["k3"]["gsi1pk"] == {"S": "EMAIL#new@x"}
    assert final["k3"]["ver"] == {"N": "5"}  # the app's 4, moved on by our update
    assert final["k0"]["ver"] == {"N": "4"}
    assert final["nover"]["ver"] == {"N": "1"}
    # A transform that changes the version itself is refused with the reason, not half applied.
    rep = update_table(ref(endpoint, table), opts(on_error="skip"), transform=lambda it: dict(it, ver=99, x=1),
                       version_attribute="ver")
    assert rep.counters["written"] == 0 and rep.counters["dead_lettered"] == 21, rep.counters
    assert all("x" not in i and i["ver"] != {"N": "99"} for i in scan_all(endpoint, table))
    # An application writer holding version 4 of k0 now loses its race instead of our change.
    with pytest.raises(app.exceptions.ConditionalCheckFailedException):
        app.update_item(TableName=table, Key={"pk": {"S": "k0"}}, UpdateExpression="SET email = :e",
                        ConditionExpression="ver = :o",
                        ExpressionAttributeValues={":e": {"S": "stale"}, ":o": {"N": "3"}})


def test_update_every_type_only_changed_attributes(endpoint: str) -> None:
    """Conditions on every DynamoDB type (sets, nested maps, empty values, 38 digits, a 399 KB
    string) hold, and attributes the transform does not touch come back byte-identical."""
    table = create_table(endpoint)
    items = every_type_items()
    put_items(endpoint, table, items)

    def mark(item: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(item)
        out["migrated"] = True
        out["tags"] = {"a", "b"}
        out["big_number"] = Decimal(12345678901234567890123456789012345678)
        return out

    rep = update_table(ref(endpoint, table), opts(segments=1), transform=mark)
    assert rep.counters["written"] == len(items) and rep.counters.get("retried_races", 0) == 0, rep.counters
    final = by_pk(scan_all(endpoint, table))
    for it in items:
        got = dict(final[it["pk"]["S"]])
        assert got.pop("migrated") == {"BOOL": True}
        assert sorted(got.pop("tags")["SS"]) == ["a", "b"]
        assert got.pop("big_number") == {"N": "12345678901234567890123456789012345678"}
        assert json.dumps(got, sort_keys=True) == json.dumps(it, sort_keys=True) or \
            _canon(got) == _canon(it)


def _canon(it: Dict[str, Any]) -> Any:
    from ddbmigrate.core.items import canonical_item

    return canonical_item(it)


def test_update_dead_letters_bad_outputs_and_continues(endpoint: str) -> None:
    table = create_table(endpoint)
    put_items(endpoint, table, [{"pk": {"S": f"r{i}"}, "v": {"N": str(i)}} for i in range(12)])
    app = boto_client(endpoint)
    app.update_item(TableName=table, Key={"pk": {"S": "r5"}}, UpdateExpression="SET hot = :z",
                    ExpressionAttributeValues={":z": {"N": "0"}})

    def bad(item: Dict[str, Any]) -> Any:
        i = int(item["v"])
        if i == 5 and threading.current_thread().name.startswith("writer-"):
            # A hot item: the application changes it between every read and write of ours.
            app.update_item(TableName=table, Key={"pk": {"S": "r5"}}, UpdateExpression="ADD hot :one",
                            ExpressionAttributeValues={":one": {"N": "1"}})
            return dict(item, w=10)
        if i == 1:
            raise ValueError("boom")
        if i == 2:
            return dict(item, pk="other")  # a changed key: refused
        if i == 3:
            return [item, item]  # fan-out: refused
        if i == 4:
            return None  # left as it is
        return dict(item, w=i * 2)

    other = create_table(endpoint)
    put_items(endpoint, other, [{"pk": {"S": "r1"}, "v": {"N": "1"}}])
    with pytest.raises(TransformError, match="boom"):
        update_table(ref(endpoint, other), opts(segments=1), transform=bad)
    rep = update_table(ref(endpoint, table), opts(segments=1, on_error="skip"), transform=bad,
                       max_races=3)
    c = rep.counters
    assert c["read"] == 12 and c["dead_lettered"] == 4 and c["unchanged"] == 1 and c["written"] == 7
    assert c["retried_races"] == 3 and rep.exit_code == 3 and rep.balanced()
    assert c["transform_errors"] == 1  # the one that raised, counted as a copy counts it
    lines = [json.loads(x) for x in Path(rep.dead_letter_path or "").read_text().splitlines()]
    assert sorted(x["error_code"] for x in lines) == ["FanOut", "ItemKeepsChanging", "KeyChanged", "ValueError"]
    hot = next(x for x in lines if x["error_code"] == "ItemKeepsChanging")
    assert hot["item"]["pk"] == {"S": "r5"} and "run the update again" in hot["reason"]
    final = by_pk(scan_all(endpoint, table))
    assert "other" not in final and final["r4"] == {"pk": {"S": "r4"}, "v": {"N": "4"}}
    assert final["r7"]["w"] == {"N": "14"}
    assert "w" not in final["r5"] and final["r5"]["hot"] == {"N": "3"}  # all 3 application writes kept
    assert {x["stage"] for x in lines} == {"update"}, lines

    # A replay with import would put the images read before the update back over the writes made
    # since (before: "stage": "write", replayed as plain puts, exit 0): every record is refused.
    app.update_item(TableName=table, Key={"pk": {"S": "r1"}}, UpdateExpression="SET app = :n",
                    ExpressionAttributeValues={":n": {"S": "newer"}})
    from ddbmigrate.jobs.import_files import import_files

    again = str(Path(rep.dead_letter_path or "").with_suffix(".replay.jsonl"))
    replay = import_files(rep.dead_letter_path or "", ref(endpoint, table), opts(dead_letter=again))
    assert replay.counters.get("written", 0) == 0 and replay.counters["dead_lettered"] == 4, replay.counters
    refused = [json.loads(x)["reason"] for x in Path(again).read_text().splitlines()]
    assert all(r.startswith("not replayed: a dead letter of `ddbmigrate update`") for r in refused), refused
    assert by_pk(scan_all(endpoint, table)) == {**final, "r1": {**final["r1"], "app": {"S": "newer"}}}


def test_a_failed_update_reports_the_items_it_updated_before_it_stopped(endpoint: str) -> None:
    # The transform fails (--on-error fail) on the fifth item a writer sees, in the middle of a
    # batch: the four updated before it used to be lost from the report (written 0, nothing
    # "also written, not settled") while the table held them changed.
    table = create_table(endpoint)
    put_items(endpoint, table, [{"pk": {"S": f"r{i}"}, "v": {"N": str(i)}} for i in range(10)])
    seen: List[str] = []

    def fifth_fails(item: Dict[str, Any]) -> Any:
        if threading.current_thread().name.startswith("writer-"):
            seen.append(item["pk"])
            if len(seen) == 5:
                raise ValueError("boom")
        return dict(item, w=1)

    with pytest.raises(TransformError, match="boom") as ei:
        update_table(ref(endpoint, table), opts(segments=1, writers=1, dry_run=True), transform=fifth_fails)
    assert "unsettled" not in ei.value.report.extra  # type: ignore[attr-defined]  # (nothing was sent)
    seen.clear()
    with pytest.raises(TransformError, match="boom") as ei:
        update_table(ref(endpoint, table), opts(segments=1, writers=1), transform=fifth_fails)
    updated = sorted(it["pk"]["S"] for it in scan_all(endpoint, table) if "w" in it)
    assert updated == sorted(seen[:4])
    rep = ei.value.report  # type: ignore[attr-defined]
    assert rep.exit_code == 1 and rep.counters["written"] == 0
    assert rep.extra["unsettled"] == {"written": 4}, rep.extra


def test_update_cli_dry_run_then_run(endpoint: str, tmp_path: Path) -> None:
    table = seed(endpoint, 30)
    f = tmp_path / "m.py"
    f.write_text("def fn(item):\n    item['gsi1pk'] = 'EMAIL#' + item['email'].lower()\n    return item\n")
    base = [sys.executable, "-m", "ddbmigrate", "update", table, "--transform", f"{f}:fn",
            "--endpoint-url", endpoint, "--region", "us-east-1", "--progress", "off"]
    drep = update_table(ref(endpoint, table), opts(dry_run=True), transform=f"{f}:fn")
    assert drep.status == "dry-run" and drep.counters["written"] == 30 and drep.checkpoint_path is None
    assert all("gsi1pk" not in it for it in scan_all(endpoint, table))  # nothing written
    out = subprocess.run(base + ["--report", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["counters"]["written"] == 30 and rep["balanced"]
    assert all(it["gsi1pk"]["S"] == "EMAIL#" + it["email"]["S"].lower() for it in scan_all(endpoint, table))
    bad = subprocess.run(base[:5] + ["--endpoint-url", endpoint, "--region", "us-east-1"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "transform" in bad.stderr and "Traceback" not in bad.stderr


def test_update_refuses_up_front_what_no_item_could_take(endpoint: str) -> None:
    """A transform whose every sampled output changes the key, fans out or breaks an index's
    key type is one line (exit 2) before anything is written, not a table of dead letters."""
    table = create_table(endpoint, gsis=[{"IndexName": "by-gk", "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"}],
                                          "Projection": {"ProjectionType": "KEYS_ONLY"}}])
    items = [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(5)]
    put_items(endpoint, table, items)
    cases = [(lambda it: dict(it, pk="new-" + it["pk"]), "changed the key of the item"),
             (lambda it: [it, dict(it, v=0)], "returned 2 items"),
             (lambda it: dict(it, gk=1), "attribute 'gk' is S (string) but transformed items carry N"),
             # (Each over the limit used to be a dead letter: the whole table, exit 3.)
             (lambda it: dict(it, blob="x" * 410_000), "over DynamoDB's item size limit of 409600 bytes")]
    for fn, needle in cases:
        with pytest.raises(UsageError) as ei:
            update_table(ref(endpoint, table), opts(), transform=fn)
        assert needle in ei.value.message and "nothing was written" in ei.value.message
    assert as_canon(scan_all(endpoint, table)) == as_canon(items)
    # A transform that fails on some items only is not refused up front: --on-error decides.
    rep = update_table(ref(endpoint, table), opts(on_error="skip"),
                       transform=lambda it: dict(it, w=1) if it["v"] != 3 else 1 / 0)
    assert rep.counters["written"] == 4 and rep.counters["dead_lettered"] == 1


def as_canon(items: List[Dict[str, Any]]) -> Any:
    return sorted(_canon(it) for it in items)


def test_update_refuses_unknown_table_and_key_version(endpoint: str) -> None:
    table = create_table(endpoint)
    with pytest.raises(UsageError):
        update_table(ref(endpoint, table), opts(), transform=remodel, version_attribute="pk")
    with pytest.raises(UsageError):
        update_table(ref(endpoint, table), opts())
    with pytest.raises(Exception) as ei:
        update_table(ref(endpoint, unique("missing")), opts(), transform=remodel)
    assert "does not exist" in str(ei.value)


def test_update_as_a_plan_job(endpoint: str, tmp_path: Path) -> None:
    from ddbmigrate import run_plan, validate_plan

    table = create_table(endpoint)
    put_items(endpoint, table, [{"pk": {"S": f"p{i}"}, "ver": {"N": "1"}} for i in range(6)])
    (tmp_path / "tf.py").write_text("def tag(item):\n    item['tagged'] = True\n    return item\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"""version: 1
defaults:
  target: {{region: us-east-1, endpoint_url: "{endpoint}"}}
jobs:
  - kind: update
    target: {table}
    transform: tf.py:tag
    args: {{version_attribute: ver}}
""")
    assert validate_plan(str(plan)) == []
    rep = run_plan(str(plan))
    assert rep.exit_code == 0, rep.jobs[0].error
    job = rep.jobs[0]
    assert job.kind == "update" and job.status == "done" and job.report is not None
    assert job.report["counters"]["written"] == 6
    assert all(it["tagged"] == {"BOOL": True} and it["ver"] == {"N": "2"} for it in scan_all(endpoint, table))
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"version: 1\njobs:\n  - kind: update\n    target: {table}\n")
    with pytest.raises(Exception, match="needs 'transform'"):
        run_plan(str(bad))
