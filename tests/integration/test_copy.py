"""copy_table against the real DynamoDB Local: exact contents, every type, keys, segments."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from ddbmigrate import RunOptions, TableRef, copy_table
from ddbmigrate.errors import TableNotFoundError
from support import as_set, create_table, every_type_items, put_items, scan_all, unique

pytestmark = pytest.mark.integration


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


@pytest.mark.parametrize("segments", [1, 7])
def test_every_type_copied_exactly(endpoint: str, segments: int) -> None:
    src = create_table(endpoint)
    dst = create_table(endpoint)
    items = every_type_items()
    put_items(endpoint, src, items)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(segments=segments, progress="off"))
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    assert rep.read == len(items) and rep.written == len(items) and rep.balanced()
    assert rep.exit_code == 0


@pytest.mark.parametrize(
    "hash_key,range_key",
    [(("id", "N"), None), (("id", "B"), None), (("h", "S"), ("r", "N")), (("h", "N"), ("r", "B")),
     (("h", "B"), ("r", "S"))],
)
def test_key_types(endpoint: str, hash_key, range_key) -> None:
    src = create_table(endpoint, hash_key=hash_key, range_key=range_key)
    dst = create_table(endpoint, hash_key=hash_key, range_key=range_key)

    def keyval(t: str, i: int) -> dict:
        return {"S": f"k{i}"} if t == "S" else {"N": str(i * 10 ** 30 + 1)} if t == "N" else \
            {"B": base64.b64encode(i.to_bytes(2, "big") + b"\xff").decode()}

    items = []
    for i in range(300):
        it = {hash_key[0]: keyval(hash_key[1], i // 3 if range_key else i), "v": {"N": str(i)}}
        if range_key:
            it[range_key[0]] = keyval(range_key[1], i % 3 + 1)
        items.append(it)
    put_items(endpoint, src, items)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(segments=4, progress="off"))
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    assert rep.written == 300


def test_empty_table(endpoint: str) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(progress="off"))
    assert rep.read == 0 and rep.written == 0 and scan_all(endpoint, dst) == []


def test_many_pages_many_segments(endpoint: str) -> None:
    from ddbmigrate.aws.client import DynamoClient
    from ddbmigrate.jobs.seed import seed_table

    src, dst = create_table(endpoint), create_table(endpoint)
    seed_table(DynamoClient(ref(endpoint, src)), src, 3000, size=2000)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(segments=16, writers=6, progress="off"))
    got = scan_all(endpoint, dst)
    assert len(got) == 3000 and rep.written == 3000
    assert as_set(got) == as_set(scan_all(endpoint, src))


def test_create_target_clones_schema(endpoint: str) -> None:
    gsi = [{"IndexName": "byName", "KeySchema": [{"AttributeName": "name", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"}}]
    src = create_table(endpoint, range_key=("sk", "N"), gsis=gsi, stream="NEW_AND_OLD_IMAGES")
    put_items(endpoint, src, [{"pk": {"S": "a"}, "sk": {"N": "1"}, "name": {"S": "x"}}])
    dst = unique()
    copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(progress="off"), create_target=True)
    import boto3

    d = boto3.client("dynamodb", endpoint_url=endpoint).describe_table(TableName=dst)["Table"]
    assert [k["AttributeName"] for k in d["KeySchema"]] == ["pk", "sk"]
    assert d["GlobalSecondaryIndexes"][0]["IndexName"] == "byName"
    assert d["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert len(scan_all(endpoint, dst)) == 1


def test_missing_target_is_clear_error(endpoint: str) -> None:
    src = create_table(endpoint)
    with pytest.raises(TableNotFoundError, match="--create-target"):
        copy_table(ref(endpoint, src), ref(endpoint, unique()), RunOptions(progress="off"))


def test_cross_endpoint_copy_between_two_servers(endpoint: str) -> None:
    from ddbmigrate import dynamodb_local as local

    with local.start() as other:
        src = create_table(endpoint)
        dst = create_table(other.endpoint_url, name=src)  # same name, other "account"
        items = every_type_items()
        put_items(endpoint, src, items)
        rep = copy_table(ref(endpoint, src), ref(other.endpoint_url, dst), RunOptions(progress="off"))
        assert as_set(scan_all(other.endpoint_url, dst)) == as_set(items)
        assert rep.written == len(items)


def test_clean_target_then_copy(endpoint: str) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"s{i}"}} for i in range(20)])
    put_items(endpoint, dst, [{"pk": {"S": f"old{i}"}} for i in range(30)])
    asked = []
    copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(progress="off"), clean_target=True,
               confirm=lambda m: asked.append(m) or True)
    assert dst in asked[0]
    assert sorted(i["pk"]["S"] for i in scan_all(endpoint, dst)) == sorted(f"s{i}" for i in range(20))


def test_clean_target_refused_without_confirmation(endpoint: str) -> None:
    from ddbmigrate.errors import UsageError

    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, dst, [{"pk": {"S": "keep"}}])
    with pytest.raises(UsageError):
        copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(progress="off"), clean_target=True,
                   confirm=lambda m: False)
    assert len(scan_all(endpoint, dst)) == 1


def test_key_mismatch_dead_lettered_cli(endpoint: str, tmp_path) -> None:
    """Target keyed on N 'pk': items whose pk is S are dead-lettered; the rest written; exit 3."""
    src = create_table(endpoint, hash_key=("pk", "S"))
    dst = create_table(endpoint, hash_key=("id", "N"))
    good = [{"pk": {"S": f"g{i}"}, "id": {"N": str(i)}} for i in range(40)]
    bad = [{"pk": {"S": "b1"}, "id": {"S": "not-a-number"}}, {"pk": {"S": "b2"}}]
    put_items(endpoint, src, good + bad)
    dl, rp = tmp_path / "dead.jsonl", tmp_path / "report.json"
    r = subprocess.run(
        [sys.executable, "-m", "ddbmigrate", "copy", src, dst, "--endpoint-url", endpoint, "--region", "us-east-1",
         "--dead-letter", str(dl), "--report", str(rp), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    lines = [json.loads(x) for x in dl.read_text().splitlines()]
    assert sorted(x["item"]["pk"]["S"] for x in lines) == ["b1", "b2"]
    assert all("id" in x["reason"] for x in lines)
    assert len(scan_all(endpoint, dst)) == 40
    report = json.loads(rp.read_text())
    assert report["counters"]["read"] == 42 and report["counters"]["written"] == 40
    assert report["counters"]["dead_lettered"] == 2 and report["balanced"]


def test_cli_missing_table_one_line_error(endpoint: str) -> None:
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "copy", "nope-src", "nope-dst", "--endpoint-url", endpoint,
                        "--quiet"], capture_output=True, text=True)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "nope-src" in r.stderr
