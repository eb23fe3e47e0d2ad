"""Transforms and re-modelling against the real DynamoDB Local: exact target contents, counts
that add up, the documented outcome of every kind of bad transform output, write modes, dry run,
table specs. The example transforms under examples/ are the ones tested here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ddbmigrate import RunOptions, TableRef, copy_table
from ddbmigrate.errors import FatalError, TransformError, UsageError
from ddbmigrate.core.transform import load_transform
from support import as_set, boto_client, create_table, every_type_items, put_items, scan_all, unique

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SUBSCRIBERS = EXAMPLES / "remodel_subscribers"


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def opts(**kw: Any) -> RunOptions:
    kw.setdefault("progress", "off")
    return RunOptions(**kw)


def cli(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True,
                          timeout=120)


def dead_lines(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def spec_for(tmp_path: Path, src: Path, name: str) -> str:
    """The example spec under a unique table name (tests share one DynamoDB Local)."""
    p = tmp_path / f"{name}.yaml"
    p.write_text(src.read_text().replace("TableName: App", f"TableName: {name}")
                 .replace("TableName: Shop", f"TableName: {name}"))
    return str(p)


# ------------------------------------------------------------------ the subscriber re-model

ADA, GRACE = "be05c4d0-136c-52bf-a17a-98405c4eef95", "351cee82-21c5-527a-ab42-179e6e2b298a"
LINUS, MARGARET = "1e6cbc20-33b9-56bf-bf22-918e4c35d5e9", "7d7466a1-1caa-5860-babb-2185ade62429"


def _user(uid: str, email: str, date: str, charset: str, **extra: Any) -> Dict[str, Any]:
    it = {"PK": {"S": f"USER#{uid}"}, "SK": {"S": f"USER#{uid}"}, "GSI1PK": {"S": "USER"},
          "GSI1SK": {"S": f"{date}#{uid}"}, "type": {"S": "User"}, "id": {"S": uid}, "email": {"S": email},
          "charset": {"S": charset}, "subscribedAt": {"S": date}, "status": {"S": "ACTIVE"},
          "marketingOptIn": {"BOOL": False}, "schemaVersion": {"N": "2"}}
    it.update(extra)
    return it


EXPECTED_USERS = [
    _user(ADA, "ada@example.com", "2019-03-14", "UTF-8"),
    _user(GRACE, "grace@example.com", "2020-11-02", "ISO-8859-1"),
    _user(LINUS, "linus@example.org", "2021-06-30", "UTF-8"),
    _user(MARGARET, "margaret@example.net", "2018-01-09", "UTF-8", Tags={"SS": ["apollo", "nasa"]}),
]


def _subscribers_source(endpoint: str) -> str:
    sys.path.insert(0, str(SUBSCRIBERS))
    try:
        import seed  # the example's own sample data
    finally:
        sys.path.remove(str(SUBSCRIBERS))
    src = create_table(endpoint, hash_key=("SubscriberEmail", "S"))
    put_items(endpoint, src, seed.SUBSCRIBERS)
    return src


def test_subscriber_remodel_end_to_end(endpoint: str, tmp_path: Path) -> None:
    src = _subscribers_source(endpoint)
    dst = unique("app")
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), opts(segments=2),
                     target_spec=spec_for(tmp_path, SUBSCRIBERS / "table.yaml", dst),
                     transform=load_transform(f"{SUBSCRIBERS}/transform.py:to_user"))
    assert as_set(scan_all(endpoint, dst)) == as_set(EXPECTED_USERS)
    assert (rep.read, rep.count("out"), rep.written, rep.dead_lettered) == (4, 4, 4, 0)
    assert rep.balanced() and rep.exit_code == 0
    # The new access pattern: all users through GSI1, oldest subscription first.
    c = boto_client(endpoint)
    got = c.query(TableName=dst, IndexName="GSI1", KeyConditionExpression="GSI1PK = :u",
                  ExpressionAttributeValues={":u": {"S": "USER"}})["Items"]
    assert [i["email"]["S"] for i in got] == ["margaret@example.net", "ada@example.com", "grace@example.com",
                                              "linus@example.org"]
    desc = c.describe_table(TableName=dst)["Table"]
    assert [k["AttributeName"] for k in desc["KeySchema"]] == ["PK", "SK"]

    # Running again is harmless (stable ids): same contents. skip-existing writes nothing.
    rep2 = copy_table(ref(endpoint, src), ref(endpoint, dst), opts(mode="skip-existing"),
                      transform=load_transform(f"{SUBSCRIBERS}/transform.py:to_user"))
    assert (rep2.read, rep2.written, rep2.count("skipped_existing")) == (4, 0, 4) and rep2.balanced()
    assert as_set(scan_all(endpoint, dst)) == as_set(EXPECTED_USERS)


def test_identity_transform_every_type_lossless(endpoint: str, tmp_path: Path) -> None:
    """Wire -> Python -> wire through a user function keeps every type and value exactly."""
    (tmp_path / "ident.py").write_text("def same(item):\n    return item\n")
    src, dst = create_table(endpoint), create_table(endpoint)
    items = every_type_items()
    put_items(endpoint, src, items)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), opts(transform=str(tmp_path / "ident.py") + ":same"))
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    assert rep.written == len(items) and rep.balanced()


# ------------------------------------------------------------------ fan-out, drops, write modes


def _orders(n: int) -> List[Dict[str, Any]]:
    out = []
    for i in range(n):
        lines = [{"M": {"sku": {"S": f"SKU-{j}"}, "qty": {"N": str(j + 1)}, "price": {"N": "12.50"}}}
                 for j in range(i % 4)]  # 0..3 lines
        out.append({"orderId": {"S": f"o-{i:03d}"}, "customerId": {"S": f"c-{i % 5}"},
                    "createdAt": {"S": f"2024-05-{i % 28 + 1:02d}T10:00:00Z"}, "lines": {"L": lines}})
    return out


def test_fanout_counts_then_skip_existing_then_fail_existing(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, hash_key=("orderId", "S"))
    orders = _orders(40)
    put_items(endpoint, src, orders)
    lines_total = sum(i % 4 for i in range(40))  # 60
    dst = unique("shop")
    tf = f"{EXAMPLES}/fanout_orders/transform.py:split_order"
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), opts(transform=tf, segments=3),
                     target_spec=spec_for(tmp_path, EXAMPLES / "fanout_orders" / "table.yaml", dst))
    assert rep.read == 40 and rep.count("fanout_extra") == lines_total
    assert rep.count("out") == rep.written == 40 + lines_total and rep.balanced()
    got = scan_all(endpoint, dst)
    assert len(got) == 40 + lines_total
    header = next(i for i in got if i["SK"]["S"] == "ORDER#o-003")
    assert header["total"]["N"] in ("75", "75.00", "75.0") and header["lineCount"]["N"] == "3"
    line = next(i for i in got if i["PK"]["S"] == "ORDER#o-003" and i["SK"]["S"] == "LINE#003")
    assert line["amount"]["N"] in ("37.5", "37.50") and line["sku"]["S"] == "SKU-2"

    # Second run, skip-existing: nothing written, every output counted as skipped.
    rep2 = copy_table(ref(endpoint, src), ref(endpoint, dst), opts(transform=tf, mode="skip-existing"))
    assert rep2.written == 0 and rep2.count("skipped_existing") == 40 + lines_total
    assert rep2.dead_lettered == 0 and rep2.balanced() and rep2.exit_code == 0

    # fail-existing: every output dead-lettered with its reason and source key; exit 3.
    dl = tmp_path / "dead.jsonl"
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--region", "us-east-1", "--transform", tf,
            "--mode", "fail-existing", "--dead-letter", str(dl), "--report", str(tmp_path / "r.json"), "--quiet")
    assert r.returncode == 3, r.stderr
    lines = dead_lines(dl)
    assert len(lines) == 40 + lines_total
    assert {x["error_code"] for x in lines} == {"ConditionalCheckFailedException"}
    assert all("already exists" in x["reason"] and x["transform"] == tf for x in lines)
    assert {x["source_key"]["orderId"]["S"] for x in lines} == {f"o-{i:03d}" for i in range(40)}
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counters"]["written"] == 0 and report["counters"]["dead_lettered"] == 40 + lines_total
    assert report["balanced"] and len(scan_all(endpoint, dst)) == 40 + lines_total


def test_filter_drops_counted(endpoint: str) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    items = [{"pk": {"S": f"u{i}"}, "email": {"S": f"u{i}@corp.com"}} for i in range(10)]
    items += [{"pk": {"S": "del1"}, "deleted": {"BOOL": True}}, {"pk": {"S": "del2"}, "status": {"S": "DELETED"}},
              {"pk": {"S": "test1"}, "email": {"S": "bot@Example.TEST"}}]
    put_items(endpoint, src, items)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst),
                     opts(transform=f"{EXAMPLES}/filter/transform.py:keep_live"))
    assert (rep.read, rep.written, rep.count("dropped")) == (13, 10, 3) and rep.balanced()
    assert as_set(scan_all(endpoint, dst)) == as_set(items[:10])


# ------------------------------------------------------------------ bad transform output

FAULTY = '''
from decimal import Decimal

def f(item):
    case = item.get("case")
    if case == "raise":
        raise ValueError("cannot handle " + item["pk"])  # line 7
    if case == "nondict":
        return 42
    if case == "nokey":
        del item["pk"]
    if case == "keytype":
        item["pk"] = Decimal(7)
    if case == "big":
        item["blob"] = "x" * (401 * 1024)
    if case == "dup":
        return [dict(item, v=1), dict(item, v=2), dict(item, pk=item["pk"] + "-b")]
    if case == "emptyset":
        item["tags"] = set()
    if case == "drop":
        return None
    return item
'''

CASES = ["raise", "nondict", "nokey", "keytype", "big", "dup", "emptyset", "drop"]


def _faulty_source(endpoint: str, tmp_path: Path) -> str:
    (tmp_path / "faulty.py").write_text(textwrap.dedent(FAULTY))
    src = create_table(endpoint)
    items = [{"pk": {"S": f"ok{i}"}, "case": {"S": "ok"}} for i in range(5)]
    items += [{"pk": {"S": c}, "case": {"S": c}} for c in CASES]
    put_items(endpoint, src, items)
    return src


def test_every_bad_output_has_its_documented_outcome(endpoint: str, tmp_path: Path) -> None:
    src = _faulty_source(endpoint, tmp_path)
    dst = create_table(endpoint)
    dl, rp = tmp_path / "dead.jsonl", tmp_path / "report.json"
    tf = f"{tmp_path}/faulty.py:f"
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--region", "us-east-1", "--transform", tf,
            "--on-error", "skip", "--dead-letter", str(dl), "--report", str(rp), "--quiet")
    assert r.returncode == 3, r.stderr
    by_key = {}
    for x in dead_lines(dl):
        assert x["transform"] == tf
        by_key.setdefault(x["source_key"]["pk"]["S"], []).append(x)
    assert sorted(by_key) == sorted(["raise", "nondict", "nokey", "keytype", "big", "dup", "emptyset"])
    # raise: the source item, the exception, a short traceback through the user's file
    (e,) = by_key["raise"]
    assert e["stage"] == "transform" and e["error_code"] == "ValueError"
    assert "ValueError: cannot handle raise" in e["reason"] and "faulty.py:7" in e["reason"]
    assert e["item"] == {"pk": {"S": "raise"}, "case": {"S": "raise"}}
    assert "faulty.py" in e["traceback"] and "ValueError" in e["traceback"]
    (e,) = by_key["nondict"]
    assert e["error_code"] == "BadReturnType" and "returned int" in e["reason"] and "traceback" not in e
    (e,) = by_key["nokey"]
    assert e["stage"] == "validate" and e["error_code"] == "InvalidKey" and "missing key attribute 'pk'" in e["reason"]
    (e,) = by_key["keytype"]
    assert e["error_code"] == "InvalidKey" and "must be of type S, got N" in e["reason"]
    assert e["item"]["pk"] == {"N": "7"}
    (e,) = by_key["big"]
    assert e["error_code"] == "ItemTooLarge" and "DynamoDB's limit is 409600" in e["reason"]
    (e,) = by_key["dup"]
    assert e["error_code"] == "DuplicateKey" and e["item"]["v"] == {"N": "2"} and "first was kept" in e["reason"]
    (e,) = by_key["emptyset"]
    assert e["error_code"] == "InvalidOutput" and "tags: empty set" in e["reason"]

    got = {i["pk"]["S"]: i for i in scan_all(endpoint, dst)}
    assert sorted(got) == sorted([f"ok{i}" for i in range(5)] + ["dup", "dup-b"])
    assert got["dup"]["v"] == {"N": "1"}  # the first of the two same-key outputs
    c = json.loads(rp.read_text())["counters"]
    assert c["read"] == 13 and c["written"] == 7 and c["dead_lettered"] == 7 and c["dropped"] == 1
    assert c["transform_errors"] == 3 and c["fanout_extra"] == 2
    assert json.loads(rp.read_text())["balanced"]


def test_on_error_fail_stops_with_one_clear_line(endpoint: str, tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text("def f(item):\n    if item['pk'] == 'bad':\n"
                                      "        raise KeyError('no such field')\n    return item\n")
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": "bad"}}])
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--region", "us-east-1",
            "--transform", f"{tmp_path}/boom.py:f", "--quiet")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert "KeyError: 'no such field'" in line and f"{tmp_path}/boom.py:3" in line
    assert '"pk":{"S":"bad"}' in line
    assert scan_all(endpoint, dst) == []
    # The checkpoint is kept (the run did not finish), so a fixed rerun can resume.
    assert list((tmp_path / ".ddbmigrate").glob("*.checkpoint.json"))


def test_on_error_fail_library_raises_transform_error(endpoint: str, tmp_path: Path) -> None:
    src = _faulty_source(endpoint, tmp_path)
    dst = create_table(endpoint)
    with pytest.raises(TransformError) as ei:
        copy_table(ref(endpoint, src), ref(endpoint, dst), opts(transform=f"{tmp_path}/faulty.py:f", segments=1))
    assert ei.value.report.status == "failed"  # type: ignore[attr-defined]


def test_max_errors_aborts(endpoint: str, tmp_path: Path) -> None:
    (tmp_path / "allbad.py").write_text("def f(item):\n    raise RuntimeError('nope')\n")
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i}"}} for i in range(30)])
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--region", "us-east-1", "--transform",
            f"{tmp_path}/allbad.py:f", "--on-error", "skip", "--max-errors", "2", "--segments", "1", "--quiet")
    assert r.returncode == 1 and "--max-errors 2" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(FatalError, match="max-errors") as ei:
        copy_table(ref(endpoint, src), ref(endpoint, dst),
                   opts(transform=f"{tmp_path}/allbad.py:f", on_error="skip", max_errors=2, segments=1, restart=True,
                        dead_letter=str(tmp_path / "dl.jsonl")))
    # The report says the dead letters the stop kept in the file (they were "dead 0" beside a file of 2).
    rep = ei.value.report  # type: ignore[attr-defined]
    kept = len((tmp_path / "dl.jsonl").read_text().splitlines())
    assert kept == 2 and rep.count("dead_lettered") + rep.extra["unsettled"]["dead_lettered"] == kept, rep.extra


# ------------------------------------------------------------------ dry run, context, loading


def test_dry_run_writes_nothing(endpoint: str, tmp_path: Path) -> None:
    src = _faulty_source(endpoint, tmp_path)
    dst = create_table(endpoint)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst),
                     opts(transform=f"{tmp_path}/faulty.py:f", on_error="skip", dry_run=True, sample=3))
    assert scan_all(endpoint, dst) == []
    assert rep.status == "dry-run" and rep.read == 13 and rep.count("dropped") == 1
    assert rep.count("fanout_extra") == 2 and rep.dead_lettered == 7 and rep.balanced()
    assert len(rep.samples) == 3 and all("before" in s and "after" in s for s in rep.samples)
    assert not (tmp_path / ".ddbmigrate").exists() or not list((tmp_path / ".ddbmigrate").glob("*.checkpoint.json"))
    # CLI: the funnel is printed; a spec'd target that does not exist is not created.
    missing = unique("never")
    spec = spec_for(tmp_path, EXAMPLES / "fanout_orders" / "table.yaml", missing)
    osrc = create_table(endpoint, hash_key=("orderId", "S"))
    put_items(endpoint, osrc, _orders(8))
    r = cli("copy", osrc, missing, "--endpoint-url", endpoint, "--region", "us-east-1", "--target-spec", spec,
            "--transform", f"{EXAMPLES}/fanout_orders/transform.py:split_order", "--dry-run", "--sample", "1",
            "--progress", "off")
    assert r.returncode == 0, r.stderr
    for label in ("in (read)", "out (after transform)", "would write", "dropped by transform",
                  "fan-out (extra items)", "invalid (would dead-letter)"):
        assert label in r.stderr
    assert json.loads(r.stdout.splitlines()[0])["before"]["orderId"]
    tables = boto_client(endpoint).list_tables(Limit=100)["TableNames"]
    assert missing not in tables


def test_context_gets_source_table_and_segment(endpoint: str, tmp_path: Path) -> None:
    (tmp_path / "ctx.py").write_text(
        "def f(item, ctx):\n    item['src'] = ctx.source_table\n    item['dst'] = ctx.target_table\n"
        "    item['seg'] = ctx.segment\n    return item\n")
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i}"}} for i in range(60)])
    copy_table(ref(endpoint, src), ref(endpoint, dst), opts(transform=f"{tmp_path}/ctx.py:f", segments=3))
    got = scan_all(endpoint, dst)
    assert len(got) == 60
    assert {i["src"]["S"] for i in got} == {src} and {i["dst"]["S"] for i in got} == {dst}
    assert {i["seg"]["N"] for i in got} <= {"0", "1", "2"}


def test_package_module_reference_and_signature_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tf.py").write_text("def up(item):\n    return dict(item, x=1)\n\n"
                               "def three(a, b, c):\n    return a\n\nNOT_CALLABLE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    t = load_transform("mypkg.tf:up")
    assert t({"pk": {"S": "a"}}) == [{"pk": {"S": "a"}, "x": {"N": "1"}}]
    assert len(t.code_hash) == 64
    with pytest.raises(UsageError, match="one argument"):
        load_transform("mypkg.tf:three")
    with pytest.raises(UsageError, match="no function"):
        load_transform("mypkg.tf:NOT_CALLABLE")
    with pytest.raises(UsageError, match="not found"):
        load_transform("nope/missing.py:f")
    with pytest.raises(UsageError, match="expected"):
        load_transform("no_colon")


def test_transform_hash_is_part_of_job_identity(endpoint: str, tmp_path: Path) -> None:
    """Editing the transform changes the checkpoint fingerprint: a resume is not silently mixed."""
    p = tmp_path / "v.py"
    p.write_text("def f(item):\n    return item\n")
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": "a"}}])
    ck = str(tmp_path / "ck.json")
    copy_table(ref(endpoint, src), ref(endpoint, dst), opts(transform=f"{p}:f", checkpoint=ck))
    p.write_text("def f(item):\n    return dict(item, changed=True)\n")
    from ddbmigrate.errors import FingerprintMismatchError

    with pytest.raises(FingerprintMismatchError, match="transform_hash"):
        copy_table(ref(endpoint, src), ref(endpoint, dst), opts(transform=f"{p}:f", checkpoint=ck, resume=True))


# ------------------------------------------------------------------ create-table


def test_create_table_cli(endpoint: str, tmp_path: Path) -> None:
    name = unique("ct")
    spec = tmp_path / "t.yaml"
    spec.write_text((SUBSCRIBERS / "table.yaml").read_text()
                    + "TimeToLiveSpecification: {AttributeName: expiresAt, Enabled: true}\n"
                    + "StreamSpecification: {StreamViewType: NEW_IMAGE}\n")
    r = cli("create-table", name, "--spec", str(spec), "--endpoint-url", endpoint, "--region", "us-east-1")
    assert r.returncode == 0, r.stderr
    assert f"created table {name} (ACTIVE)" in r.stdout and "GSI GSI1" in r.stdout
    c = boto_client(endpoint)
    d = c.describe_table(TableName=name)["Table"]
    assert d["TableStatus"] == "ACTIVE" and d["GlobalSecondaryIndexes"][0]["IndexStatus"] == "ACTIVE"
    assert d["StreamSpecification"]["StreamViewType"] == "NEW_IMAGE"
    ttl = c.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl.get("AttributeName") == "expiresAt"
    # Again: the table exists -> one line, exit 1.
    r = cli("create-table", name, "--spec", str(spec), "--endpoint-url", endpoint, "--region", "us-east-1")
    assert r.returncode == 1 and "already exists" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("mutate,field", [
    (lambda s: s.replace("GlobalSecondaryIndexes", "GlobalSecondaryIndex"), "GlobalSecondaryIndex"),
    (lambda s: s.replace("KeyType: RANGE}\nGlobal", "KeyType: SORT}\nGlobal"), "KeySchema[1].KeyType"),
    (lambda s: s.replace("AttributeType: S}\n  - {AttributeName: GSI1SK", "AttributeType: X}\n  - {AttributeName: GSI1SK"),
     "AttributeDefinitions[2]"),
    (lambda s: s.replace("ProjectionType: ALL", "ProjectionType: SOME"), "GlobalSecondaryIndexes[0].Projection"),
    (lambda s: s.replace("BillingMode: PAY_PER_REQUEST", "BillingMode: PROVISIONED"), "ProvisionedThroughput"),
    (lambda s: s.replace("AttributeDefinitions:\n", "AttributeDefinitions:\n  - {AttributeName: Unused, AttributeType: S}\n"),
     "Unused"),
    (lambda s: "a: [1\n", ":2"),
])
def test_create_table_bad_spec_names_the_field(endpoint: str, tmp_path: Path, mutate: Any, field: str) -> None:
    spec = tmp_path / "bad.yaml"
    src = (SUBSCRIBERS / "table.yaml").read_text()
    bad = mutate(src)
    assert bad != src
    spec.write_text(bad)
    name = unique("bad")
    r = cli("create-table", name, "--spec", str(spec), "--endpoint-url", endpoint, "--region", "us-east-1")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert field in r.stderr and "bad.yaml" in r.stderr
    assert name not in boto_client(endpoint).list_tables(Limit=100)["TableNames"]


def test_examples_compile() -> None:
    for p in EXAMPLES.rglob("*.py"):
        compile(p.read_text(), str(p), "exec")
    assert os.path.exists(SUBSCRIBERS / "README.md")


def test_copy_target_spec_error_names_file_and_field(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    spec = tmp_path / "target.yaml"
    spec.write_text((SUBSCRIBERS / "table.yaml").read_text().replace("IndexName: GSI1", "IndexNam: GSI1"))
    r = cli("copy", src, unique("never"), "--endpoint-url", endpoint, "--region", "us-east-1",
            "--target-spec", str(spec), "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "target.yaml" in r.stderr and "GlobalSecondaryIndexes[0].IndexName" in r.stderr
