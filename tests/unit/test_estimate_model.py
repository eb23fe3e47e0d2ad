"""The estimate's arithmetic without AWS: units, projections, hot keys, capacity, prices, the cap."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddbmigrate.core.items import item_size
from ddbmigrate.errors import UsageError
from ddbmigrate.estimate import CostCapExceeded, enforce_max_cost, load_prices
from ddbmigrate.estimate.lanes import estimate_job
from ddbmigrate.estimate.model import Job, Side, fmt_duration, usd
from ddbmigrate.estimate.sample import (
    SampleStats,
    index_shapes,
    read_units,
    write_units,
)

APP = {  # the subscriber re-model's target (examples/remodel_subscribers/table.yaml)
    "TableName": "App", "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in ("PK", "SK", "GSI1PK", "GSI1SK")],
    "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
    "GlobalSecondaryIndexes": [{"IndexName": "GSI1", "KeySchema": [
        {"AttributeName": "GSI1PK", "KeyType": "HASH"}, {"AttributeName": "GSI1SK", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"}}],
}


def _user(i: int) -> Dict[str, Any]:
    """A re-modelled subscriber of under 1 KB: 1 WCU on the table, 1 on GSI1."""
    return {"PK": {"S": f"USER#{i:08d}"}, "SK": {"S": f"USER#{i:08d}"}, "GSI1PK": {"S": "USER"},
            "GSI1SK": {"S": f"2019-03-14#{i:08d}"}, "email": {"S": f"user{i}@example.com"}}


def _job(stats: SampleStats, items: int, target: Dict[str, Any], *, exists: bool = False, **kw: Any) -> Job:
    return Job(kind="copy", stats=stats, source_items=items, source_bytes=int(stats.source_bytes / max(1, stats.source_items) * items),
               prices=load_prices("us-east-1"), source=Side({"BillingMode": "PAY_PER_REQUEST"}, True, "src"),
               target=Side(target, exists, "App"), client_items_per_second=1e9, **kw)


def test_a_constant_gsi_key_caps_the_copy_and_is_named() -> None:
    """The issue's example: every item has GSI1PK = "USER": one GSI partition, 1,000 WCU/s."""
    stats = SampleStats(index_shapes(APP))
    for i in range(1000):
        stats.add(_user(i))
    est = estimate_job(_job(stats, 19_980_000, APP))
    engine = est.lane("engine")
    assert engine.write_units == {"table": 19_980_000, "GSI1": 19_980_000, "total": 39_960_000}
    assert engine.bounds["hot key GSI1"] == pytest.approx(19_980.0)
    assert engine.limited_by == "hot key GSI1" and fmt_duration(engine.duration_s) == "5 h 33 min"
    assert est.warnings == ["GSI1PK='USER' holds 100 % of items: GSI1 caps writes at 1,000 WCU/s → ≥ 5 h 33 min"]
    # on-demand: 39.96 M write units at $0.625 per million
    assert engine.cost_parts["write units"] == pytest.approx(39_960_000 * 0.625 / 1e6)


def test_spread_keys_are_not_hot_and_time_follows_on_demand_starting_throughput() -> None:
    spread = dict(APP, GlobalSecondaryIndexes=[])
    stats = SampleStats(index_shapes(spread))
    for i in range(1000):
        stats.add(_user(i))
    est = estimate_job(_job(stats, 4_000_000, spread))
    engine = est.lane("engine")
    assert est.warnings == [] and est.keys["table"]["hottest"] is None
    # a new on-demand table starts at 4,000 write units/s
    assert engine.bounds["target table capacity"] == pytest.approx(1000.0)
    assert any("4,000 write units/s assumed" in a for a in est.assumptions)


def test_projections_sparse_indexes_and_provisioned_gsi_capacity() -> None:
    desc = {
        "BillingModeSummary": {"BillingMode": "PROVISIONED"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 10, "WriteCapacityUnits": 100},
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {"IndexName": "keys", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "KEYS_ONLY"}, "ProvisionedThroughput": {"WriteCapacityUnits": 5}},
            {"IndexName": "inc", "KeySchema": [{"AttributeName": "h", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["small"]},
             "ProvisionedThroughput": {"WriteCapacityUnits": 50}},
        ],
    }
    stats = SampleStats(index_shapes(desc))
    big = "x" * 3000
    stats.add({"pk": {"S": "a"}, "g": {"S": "k1"}, "h": {"S": "v"}, "small": {"S": "s"}, "big": {"S": big}})
    stats.add({"pk": {"S": "b"}, "big": {"S": big}})  # in neither index: sparse
    # table: 3 KB items -> 3 WCU each; "keys": pk + g = 2+1 + 1+2 = 6 B -> 1; "inc": pk + h + small -> 1
    assert stats.units == {"table": 6, "keys": 1, "inc": 1}
    assert stats.projected == {"table": 2, "keys": 1, "inc": 1}
    est = estimate_job(_job(stats, 2000, desc, exists=True))
    engine = est.lane("engine")
    assert engine.write_units == {"table": 6000, "keys": 1000, "inc": 1000, "total": 8000}
    assert engine.bounds["target table capacity"] == pytest.approx(60.0)  # 6,000 / 100 WCU/s
    assert engine.bounds["GSI keys capacity"] == pytest.approx(200.0)  # 1,000 / 5 WCU/s
    assert engine.limited_by == "GSI keys capacity"
    # provisioned target: its writes cost capacity-hours
    assert engine.cost_parts["write units"] == pytest.approx(8000 / 3600 * 0.00065)


def test_unknown_bulk_put_price_is_unknown_and_the_cap_refuses(tmp_path: Path) -> None:
    stats = SampleStats(index_shapes(APP))
    stats.add(_user(1))
    est = estimate_job(_job(stats, 10, APP, exists=True))
    bulk = est.lane("bulk-put")
    assert bulk.available and bulk.cost_usd is None and any("price unknown" in n for n in bulk.notes)
    est.chosen = "bulk-put"
    with pytest.raises(CostCapExceeded, match="unknown"):
        enforce_max_cost(est, 100.0)
    # a prices file that gives the price makes it known
    (tmp_path / "p.json").write_text(json.dumps({"regions": {"us-east-1": {"bulk_put_per_gb": {"STANDARD": 0.5}}}}))
    job = _job(stats, 10, APP, exists=True)
    job.prices = load_prices("us-east-1", str(tmp_path / "p.json"))
    bulk = estimate_job(job).lane("bulk-put")
    assert bulk.cost_usd == pytest.approx(bulk.bytes_written["total"] / 1024 ** 3 * 0.5 + 10 * item_size(_user(1)) / 1024 ** 3 * 0.10)


def test_bulk_put_is_not_offered_for_a_global_table() -> None:
    stats = SampleStats(index_shapes(APP))
    stats.add(_user(1))
    glob = dict(APP, Replicas=[{"RegionName": "eu-west-1", "ReplicaStatus": "ACTIVE"}])
    bulk = estimate_job(_job(stats, 10, glob, exists=True)).lane("bulk-put")
    assert not bulk.available and "global table" in (bulk.why_not or "")


def test_enforce_max_cost_passes_under_the_cap_and_refuses_over_it() -> None:
    stats = SampleStats(index_shapes(APP))
    stats.add(_user(1))
    est = estimate_job(_job(stats, 1_000_000, APP))
    cost = est.lane().cost_usd
    assert cost is not None and enforce_max_cost(est, cost + 0.01) is est
    with pytest.raises(CostCapExceeded) as ei:
        enforce_max_cost(est, cost / 2)
    assert ei.value.exit_code == 2 and ei.value.estimate is est and "nothing was read or written" in ei.value.message


def test_prices_file_problems_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(UsageError, match=r"bad.json:1: not valid JSON"):
        load_prices(None, str(tmp_path / "bad.json"))
    p = load_prices("ap-south-2")
    assert p.region == "ap-south-2" and any("us-east-1 prices are used" in n for n in p.notes)
    assert p.date and "aws.amazon.com" in p.source


def test_units_and_formats() -> None:
    assert [write_units(n) for n in (0, 1, 1024, 1025, 4096)] == [1, 1, 1, 2, 4]
    assert read_units(4096) == 0.5 and read_units(4097) == 1.0 and read_units(4097, consistent=True) == 2.0
    assert read_units(0) == 0.0
    assert fmt_duration(42) == "42 s" and fmt_duration(61) == "1 min 1 s" and fmt_duration(19_980) == "5 h 33 min"
    assert usd(None) == "unknown" and usd(12.345) == "$12.35" and usd(0.00003) == "$0.000030"


values = st.one_of(st.text(max_size=40).map(lambda s: {"S": s}),
                   st.integers(-10 ** 30, 10 ** 30).map(lambda n: {"N": str(n)}),
                   st.binary(max_size=40).map(lambda b: {"B": base64.b64encode(b).decode()}),  # wire format
                   st.booleans().map(lambda b: {"BOOL": b}),
                   st.lists(st.text(max_size=5), max_size=3).map(lambda xs: {"L": [{"S": x} for x in xs]}))
items = st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=6), items), min_size=1, max_size=30))
def test_sample_sums_add_up_for_any_items(rows: List[Any]) -> None:
    """Per index: units = sum of ceil(entry / 1 KB) over the items it holds; the spread counts
    every projected item once; a value is 'hot' only when two source items share it."""
    shapes = index_shapes({"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                           "GlobalSecondaryIndexes": [{"IndexName": "G", "KeySchema": [
                               {"AttributeName": "g", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}}]})
    stats = SampleStats(shapes)
    expected_table = expected_g = 0
    for pk, body in rows:
        item: Dict[str, Any] = dict(body)
        item["pk"] = {"S": pk}
        item["g"] = {"S": pk[:1]}
        stats.add(item)
        expected_table += max(1, math.ceil(item_size(item) / 1024))
        expected_g += max(1, math.ceil(item_size(item) / 1024))
    assert stats.units == {"table": expected_table, "G": expected_g}
    assert sum(row[1] for row in stats.spread["G"].values.values()) == len(rows)
    hot = stats.spread["G"].hottest()
    firsts = [pk[:1] for pk, _ in rows]
    if hot is None:
        assert len(set(firsts)) == len(firsts)
    else:
        assert firsts.count(hot[0]) >= 2




def test_lagging_describe_table_counts_use_its_size() -> None:
    from ddbmigrate.estimate.api import _side_counts

    stats = SampleStats(index_shapes(APP))
    for i in range(10):
        stats.add(_user(i))
    mean = stats.source_bytes / 10
    notes: List[str] = []
    items, nbytes = _side_counts({"ItemCount": 0, "TableSizeBytes": int(mean * 5000)}, stats, notes)
    assert items == 5000 and nbytes == int(mean * 5000) and "from its size" in notes[0]
    notes = []
    items, _ = _side_counts({"ItemCount": 0, "TableSizeBytes": 0}, stats, notes)
    assert items == 10 and "at least the 10 sampled items" in notes[0]


def test_transform_errors_are_counted_apart_from_drops() -> None:
    from ddbmigrate.core.transform import Transform

    def remodel(item: Dict[str, Any]) -> Any:
        if item["pk"] == "boom":
            raise ValueError("bad item")
        return None if item["pk"] == "drop" else item

    stats = SampleStats(index_shapes({"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}),
                        Transform(remodel, "t:remodel", "0", __file__))
    for pk in ("a", "drop", "boom", "b"):
        stats.add({"pk": {"S": pk}})
    assert (stats.source_items, stats.outputs, stats.dropped, stats.errors) == (4, 2, 1, 1)
    assert "bad item" in (stats.first_error or "")
    est = estimate_job(_job(stats, 4, {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}))
    assert any("1 of 4 sampled items failed in the transform" in w for w in est.warnings)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5000), min_size=1, max_size=20), st.integers(1, 10 ** 9))
def test_costs_are_the_scaled_units_times_the_prices(sizes: List[int], total: int) -> None:
    """For any item sizes and table size: write units = k x the sample's, and the on-demand and
    provisioned costs are exactly units x price (reads included)."""
    desc = {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}], "BillingMode": "PAY_PER_REQUEST"}
    stats = SampleStats(index_shapes(desc))
    for i, n in enumerate(sizes):
        stats.add({"pk": {"S": f"{i:04d}"}, "v": {"S": "x" * n}})
    total = max(total, len(sizes))
    job = _job(stats, total, desc)
    lane = estimate_job(job).lane("engine")
    k = total / len(sizes)
    assert lane.write_units["total"] == pytest.approx(sum(write_units(6 + 1 + n) for n in sizes) * k)
    reads = read_units(job.source_bytes)
    assert lane.read_units["total"] == reads
    assert lane.cost_on_demand_usd == pytest.approx(lane.write_units["total"] * 0.625e-6 + reads * 0.125e-6)
    assert lane.cost_provisioned_usd == pytest.approx(lane.write_units["total"] / 3600 * 0.00065
                                                      + reads / 3600 * 0.00013)
