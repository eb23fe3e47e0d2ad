"""The BatchWriteItem contract on the real DynamoDB Local: server-side rejections are narrowed
to the offending item, limits hold, every counted item is really in the table."""

from __future__ import annotations

import json

import pytest

from ddbmigrate import RunOptions, TableRef, copy_table
from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.core.items import KeySchema
from ddbmigrate.core.records import PUT, Op
from ddbmigrate.sinks.table_writer import TableWriter
from support import create_table, put_items, scan_all

pytestmark = pytest.mark.integration


def test_validation_exception_dead_letters_only_the_bad_item(endpoint: str, tmp_path) -> None:
    """DynamoDB rejects an empty string as a GSI key; the other 24 items of that batch land."""
    gsi = [{"IndexName": "byEmail", "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"}}]
    src = create_table(endpoint)
    dst = create_table(endpoint, gsis=gsi)
    items = [{"pk": {"S": f"u{i:03d}"}, "email": {"S": f"u{i}@example.com"}} for i in range(50)]
    items[7]["email"] = {"S": ""}  # fine in the source (no GSI there), invalid in the target
    put_items(endpoint, src, items)
    dl = tmp_path / "dead.jsonl"
    rep = copy_table(TableRef(src, endpoint_url=endpoint), TableRef(dst, endpoint_url=endpoint),
                     RunOptions(segments=1, progress="off", dead_letter=str(dl)))
    got = sorted(i["pk"]["S"] for i in scan_all(endpoint, dst))
    assert got == sorted(f"u{i:03d}" for i in range(50) if i != 7)
    dead = [json.loads(x) for x in dl.read_text().splitlines()]
    assert [d["item"]["pk"]["S"] for d in dead] == ["u007"]
    assert dead[0]["error_code"] == "ValidationException"
    assert rep.written == 49 and rep.dead_lettered == 1 and rep.balanced() and rep.exit_code == 3


def test_writer_counts_match_table(endpoint: str) -> None:
    """Puts and deletes in one batch: counts returned are what the table shows."""
    t = create_table(endpoint)
    put_items(endpoint, t, [{"pk": {"S": f"d{i}"}} for i in range(5)])
    c = DynamoClient(TableRef(t, endpoint_url=endpoint))
    ks = KeySchema("pk", "S")
    import orjson

    ops = [Op(PUT, it, orjson.dumps(it), None) for it in ({"pk": {"S": f"n{i}"}, "v": {"N": "1"}} for i in range(20))]
    ops += [Op(1, k, orjson.dumps(k), None) for k in ({"pk": {"S": f"d{i}"}} for i in range(5))]
    res = TableWriter(c, t, ks).write(ops)
    assert (res.written, res.deleted, res.rejected) == (20, 5, [])
    assert sorted(i["pk"]["S"] for i in scan_all(endpoint, t)) == sorted(f"n{i}" for i in range(20))
