"""``verify --repair`` while the source is being written (and a live copy keeps the target up to
date), against the real DynamoDB Local.

Verify scans the source, then the target, then repairs. Writes made to the source in between
(and copied to the target by a replicator) must not be undone: each key is repaired to what the
source holds when it is repaired, read again with a consistent read, and the re-check compares
the target with that, not with the copy the comparison saw. The race is made deterministic by a
transform that, once it has seen the whole source, makes those "live" writes itself: the source
scan has the old images, the target scan the new ones.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, List

import pytest

from ddbmigrate import TableRef
from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.core.items import KeySchema
from ddbmigrate.core.transform import as_transform
from ddbmigrate.verify import repair_differences, verify_tables
from support import as_set, boto_client, create_table, put_items, scan_all

pytestmark = pytest.mark.integration
N = 10


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def item(k: str, v: int) -> Dict[str, Any]:
    return {"pk": {"S": k}, "v": {"N": str(v)}}


def planted(endpoint: str) -> Dict[str, str]:
    """A source of N items, and a target with three real differences: k01 missing, k02
    mismatched, ``extra`` unexpected."""
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [item(f"k{i:02d}", 1) for i in range(N)])
    put_items(endpoint, dst, [item(f"k{i:02d}", 99 if i == 2 else 1) for i in range(N) if i != 1]
              + [item("extra", 0)])
    return {"src": src, "dst": dst}


def live_writes(endpoint: str, t: Dict[str, str]) -> None:
    """What a writer and a live replicate do while verify runs: an update, a new item and a delete
    written to the source and already copied to the target; and an update of k02 not copied yet."""
    c = boto_client(endpoint)
    for table in (t["src"], t["dst"]):
        c.put_item(TableName=table, Item=item("k03", 2))
        c.put_item(TableName=table, Item=item("new", 7))
        c.delete_item(TableName=table, Key={"pk": {"S": "k04"}})
    c.put_item(TableName=t["src"], Item=item("k02", 5))


# What both tables hold at the end: the source as it is now, every live write kept.
FINAL = [item("k00", 1), item("k01", 1), item("k02", 5), item("k03", 2)] + \
        [item(f"k{i:02d}", 1) for i in range(5, N)] + [item("new", 7)]


def test_repair_keeps_writes_made_while_verify_ran(endpoint: str, caplog: Any) -> None:
    t = planted(endpoint)
    calls = [0]
    lock = threading.Lock()

    def identity(it: Dict[str, Any]) -> Dict[str, Any]:
        with lock:
            calls[0] += 1
            last = calls[0] == N
        if last:  # the whole source has been read (with the old images): now the live writes
            live_writes(endpoint, t)
        return it

    asked: List[str] = []
    caplog.set_level(logging.WARNING, logger="ddbmigrate")
    rep = verify_tables(ref(endpoint, t["src"]), ref(endpoint, t["dst"]), transform=as_transform(identity),
                        progress="off", repair=True, confirm=lambda m: asked.append(m) or True, segments=2)
    # What the comparison saw: the source's old images against the target after the live writes.
    assert (rep.missing, rep.mismatched, rep.unexpected, rep.equal) == (2, 2, 2, N - 4)
    assert len(asked) == 1 and "Delete 2 unexpected items" in asked[0]
    # Every live write kept: the target is the source as it is now (the old code put back k02=1
    # and k03=1, put back the deleted k04 and deleted "new").
    assert as_set(scan_all(endpoint, t["dst"])) == as_set(FINAL)
    assert as_set(scan_all(endpoint, t["src"])) == as_set(FINAL)
    assert rep.repair is not None
    r = {k: v for k, v in rep.repair.items() if k != "still_different_keys"}
    # k01 put as it was; k02 put to the source's new value 5 (not the old 1); extra deleted; k03,
    # new and the deleted k04 already right in the target (copied live): left alone.
    assert r == {"put": 2, "deleted": 1, "delete_skipped": 0, "rejected": 0, "rechecked": 6, "still_different": 0,
                 "reread": 6, "source_changed": 4, "already_equal": 3, "not_reread": 0, "transform_errors": 0}
    assert rep.remaining == 0 and rep.exit_code == 0
    assert any("4 key(s) changed in the source while verify ran" in m for m in caplog.messages)
    again = verify_tables(ref(endpoint, t["src"]), ref(endpoint, t["dst"]), progress="off")
    assert again.differences == 0


def test_repair_from_a_stale_differences_file_without_a_transform(endpoint: str) -> None:
    # The differences were found, then the source and target moved on before the repair.
    t = planted(endpoint)
    first = verify_tables(ref(endpoint, t["src"]), ref(endpoint, t["dst"]), progress="off", diff_path="d.jsonl")
    assert (first.missing, first.mismatched, first.unexpected) == (1, 1, 1)
    live_writes(endpoint, t)
    c = boto_client(endpoint)
    # ... and the source now holds "extra" too, copied live: it is no longer unexpected.
    for table in (t["src"], t["dst"]):
        c.put_item(TableName=table, Item=item("extra", 3))
    keys = KeySchema("pk", "S")
    r = repair_differences("d.jsonl", DynamoClient(ref(endpoint, t["dst"])), keys, confirm=lambda m: True,
                           source=DynamoClient(ref(endpoint, t["src"])), source_keys=keys)
    r.pop("still_different_keys")
    assert r == {"put": 2, "deleted": 0, "delete_skipped": 0, "rejected": 0, "rechecked": 3, "still_different": 0,
                 "reread": 3, "source_changed": 2, "already_equal": 1, "not_reread": 0, "transform_errors": 0}
    assert as_set(scan_all(endpoint, t["dst"])) == as_set(FINAL + [item("extra", 3)])


def test_recheck_compares_with_the_source_read_again(endpoint: str) -> None:
    # The source changes after the repair read it, and the target does not follow (yet): the
    # re-check says so instead of calling the key fixed by the image the repair wrote.
    t = planted(endpoint)
    verify_tables(ref(endpoint, t["src"]), ref(endpoint, t["dst"]), progress="off", diff_path="d.jsonl")
    keys = KeySchema("pk", "S")
    src = DynamoClient(ref(endpoint, t["src"]))
    dst = DynamoClient(ref(endpoint, t["dst"]))
    real = dst.call_parsed

    def call_parsed(op: str, *a: Any, **kw: Any) -> Any:
        out = real(op, *a, **kw)
        if op == "BatchWriteItem":  # right after the repair's write: a new source write, not copied
            boto_client(endpoint).put_item(TableName=t["src"], Item=item("k01", 8))
        return out

    dst.call_parsed = call_parsed  # type: ignore[method-assign]
    r = repair_differences("d.jsonl", dst, keys, confirm=lambda m: True, source=src, source_keys=keys)
    assert r["put"] == 2 and r["deleted"] == 1 and r["rechecked"] == 3
    assert r["still_different"] == 1 and r["still_different_keys"] == [{"pk": {"S": "k01"}}]


REKEY = '''
def rekey(item):
    return {"pk": item["pk"] + "#x", "v": item["v"]}
'''


def test_rekeying_transform_repairs_from_the_copy_and_says_it_is_not_safe(endpoint: str, tmp_path: Any,
                                                                          caplog: Any) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [item(f"k{i}", 1) for i in range(4)])
    put_items(endpoint, dst, [item(f"k{i}#x", 1) for i in range(1, 4)] + [item("k9#x", 1)])
    (tmp_path / "tf.py").write_text(REKEY)
    caplog.set_level(logging.WARNING, logger="ddbmigrate")
    rep = verify_tables(ref(endpoint, src), ref(endpoint, dst), transform="tf.py:rekey", progress="off",
                        repair=True, confirm=lambda m: True)
    assert (rep.missing, rep.unexpected) == (1, 1) and rep.exit_code == 0
    assert rep.repair is not None
    assert (rep.repair["put"], rep.repair["deleted"], rep.repair["not_reread"], rep.repair["reread"]) == (1, 1, 2, 0)
    assert "not safe" in rep.repair["note"] and "re-keys" in rep.repair["note"]
    assert any("not safe" in m for m in caplog.messages)
    assert as_set(scan_all(endpoint, dst)) == as_set([item(f"k{i}#x", 1) for i in range(4)])
