"""The fault proxy's capacity model (testing/capacity.py): each table's write capacity, split over
partitions by the hash of the partition key, as the proxy's --write-capacity mode serves it."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from ddbmigrate.testing.capacity import WriteCapacity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def puts(keys: List[str], **more: Any) -> List[Dict[str, Any]]:
    return [{"PutRequest": {"Item": {"pk": {"S": k}, **more}}} for k in keys]


def test_each_table_has_its_own_capacity() -> None:
    """Two tables with the same key attribute written through one proxy: a full bucket of one
    does not hold back the other's writes (DynamoDB's capacity is per table)."""
    clock = Clock()
    cap = WriteCapacity(10, partitions=1, clock=clock)
    kept, held = cap.admit("a", puts([f"k{i}" for i in range(15)]), "pk", {})
    assert (len(kept), len(held)) == (10, 5)  # a second of burst, then nothing
    kept, held = cap.admit("b", puts([f"k{i}" for i in range(10)]), "pk", {})
    assert (len(kept), len(held)) == (10, 0)
    kept, held = cap.admit("a", puts(["late"]), "pk", {})
    assert (len(kept), len(held)) == (0, 1)


def test_a_capacity_changed_mid_run_is_what_refills() -> None:
    clock = Clock()
    cap = WriteCapacity(10, partitions=1, clock=clock)
    cap.admit("a", puts([f"k{i}" for i in range(10)]), "pk", {})  # the burst spent
    cap.set_units(100)
    clock.now += 0.2  # 20 units at the new rate
    kept, held = cap.admit("a", puts([f"n{i}" for i in range(25)]), "pk", {})
    assert (len(kept), len(held)) == (20, 5)
    snap = cap.snapshot()
    assert snap["units"] == 100 and snap["accepted_items"] == 30 and snap["throttled_items"] == 5


def test_a_constant_gsi_key_is_held_to_one_partition_and_named() -> None:
    """Every item with the same GSI partition key: the index's one partition (40 / 4 = 10 units)
    holds them back whatever the table's partitions have, and the key is the hot one."""
    clock = Clock()
    cap = WriteCapacity(40, partitions=4, clock=clock)
    kept, held = cap.admit("a", puts([f"k{i}" for i in range(30)], g={"S": "same"}), "pk", {"by_g": "g"})
    assert len(kept) == 10 and len(held) == 20
    assert cap.snapshot()["hot_keys"][0] == {"table": "a", "index": "by_g", "attribute": "g", "value": "same",
                                             "throttled": 20}


def test_two_tables_are_each_measured_against_their_own_capacity() -> None:
    clock = Clock()
    cap = WriteCapacity(10, partitions=1, clock=clock)
    cap.admit("a", puts([f"k{i}" for i in range(12)]), "pk", {})
    clock.now += 1.0
    cap.admit("b", puts([f"k{i}" for i in range(10)]), "pk", {})
    snap = cap.snapshot()
    assert snap["tables"]["a"] == {"accepted_units": 10.0, "accepted_items": 10, "throttled_items": 2, "efficiency": 1.0}
    assert snap["tables"]["b"]["accepted_items"] == 10 and snap["tables"]["b"]["throttled_items"] == 0
    assert snap["efficiency"] == 1.0  # 20 units of the two tables' 2 x 10 units over 1 s
    assert [h["table"] for h in snap["hot_keys"]] == ["a", "a"]


@pytest.mark.parametrize("units,partitions,burst", [
    (0, 1, 1.0), (-5, 1, 1.0), (float("inf"), 1, 1.0), (float("nan"), 1, 1.0), (10, 0, 1.0), (10, 1, 0.0),
    (3, 4, 1.0),  # 0.75 units a partition: not one 1 KB write would ever fit
])
def test_a_capacity_that_could_never_admit_a_write_is_refused(units: float, partitions: int, burst: float) -> None:
    with pytest.raises(ValueError):
        WriteCapacity(units, partitions=partitions, burst_seconds=burst)
    cap = WriteCapacity(100, partitions=max(1, partitions), burst_seconds=1.0)
    if partitions >= 1:
        with pytest.raises(ValueError):
            cap.set_units(units if burst > 0 else 0.5 * partitions)
        assert cap.units == 100
