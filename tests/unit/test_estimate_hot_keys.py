"""Hot keys and sort keys: DynamoDB places items by the partition key's hash, so the estimate counts
every write of one partition-key value against one partition; a split for heat by sort key is
said (possible without an LSI), never counted on."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from ddbmigrate.estimate import load_prices
from ddbmigrate.estimate.lanes import estimate_job
from ddbmigrate.estimate.model import Job, Side
from ddbmigrate.estimate.sample import SampleStats, index_shapes

ATTRS = [{"AttributeName": a, "AttributeType": "S"} for a in ("PK", "SK", "GPK", "GSK", "LSK")]
KEYS = [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}]
GSI = {"IndexName": "G", "KeySchema": [{"AttributeName": "GPK", "KeyType": "HASH"},
                                       {"AttributeName": "GSK", "KeyType": "RANGE"}],
       "Projection": {"ProjectionType": "KEYS_ONLY"}}
LSI = {"IndexName": "L", "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"},
                                       {"AttributeName": "LSK", "KeyType": "RANGE"}],
       "Projection": {"ProjectionType": "ALL"}}


def _items(n: int) -> List[Dict[str, Any]]:
    # One partition-key value for all (the classic single-tenant table), many sort keys.
    return [{"PK": {"S": "TENANT#1"}, "SK": {"S": f"ORDER#{i:05d}"}, "GPK": {"S": f"C#{i % 50}"},
             "GSK": {"S": f"{i:05d}"}, "LSK": {"S": f"2026-{i:05d}"}} for i in range(n)]


def _estimate(desc: Dict[str, Any], items: List[Dict[str, Any]], total: int) -> Any:
    stats = SampleStats(index_shapes(desc))
    for it in items:
        stats.add(it)
    job = Job(kind="copy", stats=stats, source_items=total, source_bytes=stats.source_bytes * total // len(items),
              prices=load_prices("us-east-1"), source=Side({"BillingMode": "PAY_PER_REQUEST"}, True, "src"),
              target=Side(desc, False, "T"), client_items_per_second=1e9)
    return estimate_job(job)


def test_a_hot_value_with_many_sort_keys_may_split_for_heat_but_the_bound_assumes_one_partition() -> None:
    desc = {"TableName": "T", "AttributeDefinitions": ATTRS, "KeySchema": KEYS, "GlobalSecondaryIndexes": [GSI]}
    est = _estimate(desc, _items(200), 2_000_000)
    hot = est.keys["table"]["hottest"]
    assert est.keys["table"]["sort_key"] == "SK"
    assert hot["value"] == "TENANT#1" and hot["distinct_sort_keys_in_sample"] == 200
    assert hot["split_for_heat"].startswith("possible, not counted: 200 distinct SK values")
    engine = est.lane("engine")
    # 2,000,000 items x 1 write unit on one partition key at 1,000 WCU/s: no split counted
    assert engine.bounds["hot key table"] == pytest.approx(2000.0)
    assert any(n.startswith("hot key PK='TENANT#1' (the table): possible, not counted") for n in engine.notes)
    assert any("hash of the partition key" in a and "split for heat" in a for a in est.assumptions)
    # the GSI key spreads over 50 values: its hottest has 4 distinct sort keys, a 1/50 share
    g = est.keys["G"]["hottest"]
    assert g["share_of_items"] == pytest.approx(0.02) and g["split_for_heat"].startswith("possible")


def test_with_an_lsi_the_item_collection_never_splits_and_lsi_writes_share_the_partition() -> None:
    desc = {"TableName": "T", "AttributeDefinitions": ATTRS, "KeySchema": KEYS, "LocalSecondaryIndexes": [LSI]}
    est = _estimate(desc, _items(100), 1_000_000)
    hot = est.keys["table"]["hottest"]
    assert hot["split_for_heat"] == ("not possible: the table has a local secondary index, so an item "
                                     "collection is never split")
    engine = est.lane("engine")
    # table write (1 unit) + LSI write (ALL projection, 1 unit) per item, all in TENANT#1's partition
    assert engine.bounds["hot key table"] == pytest.approx(2000.0)
    assert "hot key L" not in engine.bounds  # not a second, separate partition
    assert not any("possible, not counted" in n for n in engine.notes)


def test_without_a_sort_key_one_value_is_one_partition() -> None:
    desc = {"TableName": "T", "AttributeDefinitions": ATTRS[:1] + ATTRS[2:3],
            "KeySchema": KEYS[:1],
            "GlobalSecondaryIndexes": [{"IndexName": "G", "KeySchema": [{"AttributeName": "GPK", "KeyType": "HASH"}],
                                        "Projection": {"ProjectionType": "KEYS_ONLY"}}]}
    items = [{"PK": {"S": f"u{i}"}, "GPK": {"S": "ALL"}} for i in range(100)]
    est = _estimate(desc, items, 100_000)
    hot = est.keys["G"]["hottest"]
    assert hot["split_for_heat"].startswith("not possible: no sort key")
    assert hot["distinct_sort_keys_in_sample"] is None
    assert est.lane("engine").bounds["hot key G"] == pytest.approx(100.0)
