"""Capacity without being told: a copy against a table of limited write capacity, no rate options.

The project's fault proxy models the capacity as DynamoDB applies it (testing/capacity.py): C
write units per second split over P partitions by the hash of the partition key (and of each
GSI's key), items over a partition's bucket back in ``UnprocessedItems``, a call with none
admitted refused with ``ProvisionedThroughputExceededException``. These tests check outcomes
(every item there, few writes throttled, the rate found and reported, a hot key named); how
close to C the copy runs is measured by ``bench/capacity.py``; here only a loose floor, over the
steady state (after the first seconds, when the table's burst allowance and the first estimate
are spent), so a loaded test machine does not make it flaky.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ddbmigrate.testing import FaultProxy, Faults, run_tool
from ddbmigrate.testing.capacity import WriteCapacity
from reliability_support import read_report
from support import create_table, put_items, scan_all

pytestmark = pytest.mark.reliability

N = 12000
SMALL = 2400


def _seed(endpoint: str, n: int) -> str:
    src = create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i:05d}"}, "n": {"N": str(i)}, "pad": {"S": "x" * 500}}
                              for i in range(n)])
    return src


@pytest.fixture(scope="module")
def padded(endpoint: str) -> str:
    return _seed(endpoint, N)


@pytest.fixture(scope="module")
def small(endpoint: str) -> str:
    return _seed(endpoint, SMALL)


def _copy(proxy: FaultProxy, src: str, dst: str, tmp_path: Path, *extra: str) -> Dict[str, Any]:
    report = tmp_path / f"r-{dst}.json"
    r = run_tool(["copy", src, dst, "--endpoint-url", proxy.url, "--segments", "4", "--progress", "off",
                  "--report", str(report), *extra], cwd=str(tmp_path), timeout=240)
    assert r.exit_code == 0, r.stderr[-3000:]
    rep = read_report(report)
    assert rep is not None
    return rep


def _steady(cap: WriteCapacity, after: float) -> threading.Timer:
    t = threading.Timer(after, cap.reset_stats)
    t.start()
    return t


def test_a_copy_finds_the_capacity_and_holds_it(endpoint: str, padded: str, tmp_path: Path) -> None:
    cap = WriteCapacity(1500, partitions=4, declared=False)  # the table does not say (on demand's partitions)
    dst = create_table(endpoint)
    with FaultProxy(endpoint, faults=Faults(capacity=cap)) as proxy:
        timer = _steady(cap, 5.0)
        try:
            rep = _copy(proxy, padded, dst, tmp_path)
        finally:
            timer.cancel()
    assert len(scan_all(endpoint, dst)) == N
    steady = cap.snapshot()
    # The bound is of write requests. Of calls (one item held back makes one), 16 writers
    # retrying on their own back-off get about half throttled; holding the found rate keeps it to
    # a few, and a probe crossing the capacity now and then a few more: in a steady window of 4 s
    # (a loaded machine, whose calls are slow) one crossing read 11.5 % of calls, 0.9 of the
    # capacity used.
    assert steady["throttled_share"] <= 0.05, steady
    assert steady["throttled_call_share"] <= 0.15, steady
    assert steady["efficiency"] is not None and steady["efficiency"] >= 0.6, steady
    lim = rep["rate_limits"]["write"]
    assert lim.get("auto") and lim["throttle_events"] >= 1 and 900 <= lim["current"] <= 1800, lim
    assert "hot_key" not in rep.get("extra", {}), rep.get("extra")


def test_a_capacity_that_shrinks_mid_run_is_followed_without_a_storm(endpoint: str, padded: str,
                                                                     tmp_path: Path) -> None:
    cap = WriteCapacity(3000, partitions=4, declared=False)
    dst = create_table(endpoint)
    with FaultProxy(endpoint, faults=Faults(capacity=cap)) as proxy:
        shrink = threading.Timer(1.5, cap.set_units, args=(1000,))
        shrink.start()
        timer = _steady(cap, 5.0)
        try:
            rep = _copy(proxy, padded, dst, tmp_path)
        finally:
            shrink.cancel()
            timer.cancel()
    assert len(scan_all(endpoint, dst)) == N
    steady = cap.snapshot()
    # The bound, of write requests; of calls (one item held back makes one) a storm is
    # about half (a rate put back to none by a trial read as noise left a fifth to a quarter,
    # and a rate of 0 in the report). The rate left at the end came down from the 3,000 the
    # table first admitted, but may be a probe riding the second of burst the table saved while
    # the writers were under its new capacity (simulated with slow calls: up to 1.56 times it).
    assert steady["throttled_share"] <= 0.05, steady
    assert steady["throttled_call_share"] <= 0.20, steady
    assert steady["efficiency"] is not None and steady["efficiency"] >= 0.6, steady
    lim = rep["rate_limits"]["write"]
    assert lim.get("auto") and lim["throttle_events"] >= 1 and 500 <= lim["current"] <= 1700, rep["rate_limits"]


def test_a_constant_gsi_key_is_named_as_the_hot_key(endpoint: str, small: str, tmp_path: Path) -> None:
    (tmp_path / "tf.py").write_text("def f(item):\n    item['GSI1PK'] = 'USER'\n    return item\n")
    gsi: List[Dict[str, Any]] = [{"IndexName": "GSI1", "KeySchema": [{"AttributeName": "GSI1PK", "KeyType": "HASH"}],
                                  "Projection": {"ProjectionType": "KEYS_ONLY"}}]
    dst = create_table(endpoint, gsis=gsi)
    cap = WriteCapacity(2400, partitions=4)  # one GSI partition: 600 WCU/s, whatever the table has
    with FaultProxy(endpoint, faults=Faults(capacity=cap)) as proxy:
        rep = _copy(proxy, small, dst, tmp_path, "--transform", f"{tmp_path / 'tf.py'}:f")
    assert len(scan_all(endpoint, dst)) == SMALL
    hot = rep["extra"]["hot_key_detail"]
    assert (hot["index"], hot["attribute"], hot["value"]) == ("GSI1", "GSI1PK", "USER"), hot
    assert "GSI1PK = 'USER' (index GSI1)" in rep["extra"]["hot_key"]
    snap = cap.snapshot()
    assert snap["hot_keys"][0]["value"] == "USER"
    # Held at that partition's rate (units count the table's and the index's write: 2 per item).
    assert rep["rate_limits"]["write"]["current"] <= 1.2 * 2 * 600, rep["rate_limits"]
    # The table declared 2,400 (the modelled units): the job started there and came down to the partition.
    assert rep["rate_limits"]["write"]["declared"] == 2400, rep["rate_limits"]


def test_a_copy_starts_at_the_capacity_the_table_declares(endpoint: str, small: str, tmp_path: Path) -> None:
    """A table of 500 WCU (where a job that must find its capacity throttles 6-8 % of its writes
    at start-up, in the simulator and through this proxy) that says so: the job starts at it, and
    the whole run stays within the issue's bound on write requests."""
    cap = WriteCapacity(500, partitions=4)
    dst = create_table(endpoint)
    with FaultProxy(endpoint, faults=Faults(capacity=cap)) as proxy:
        rep = _copy(proxy, small, dst, tmp_path)
        calls = list(cap.calls)
    assert len(scan_all(endpoint, dst)) == SMALL
    whole = cap.snapshot()
    assert whole["throttled_share"] <= 0.05, whole
    lim = rep["rate_limits"]["write"]
    assert lim["declared"] == 500 and lim.get("auto"), lim
    # Nothing sent faster than the declared rate in the first second (with no limit, 16 writers'
    # first calls are 400 units at once), counting what was in flight as the first calls went.
    first = calls[0][0]
    assert sum(units for at, units, _ in calls if at - first < 1.0) <= 500 * 1.0 + 16 * 25, calls[:40]


def _copy_changing(endpoint: str, cap: WriteCapacity, units: float, src: str, dst: str, tmp_path: Path,
                   *extra: str) -> Dict[str, Any]:
    """A copy through the proxy whose capacity becomes ``units`` after 3,000 units written
    (about 2 s of the job's writes, however slow its start on a loaded machine: the job must have
    read the first figure), the model's figures counted from there."""
    done = threading.Event()

    def change() -> None:
        while not done.wait(0.02):
            if cap.accepted_units >= 3000:
                cap.set_units(units)
                cap.reset_stats()
                return

    with FaultProxy(endpoint, faults=Faults(capacity=cap)) as proxy:
        watcher = threading.Thread(target=change, daemon=True)
        watcher.start()
        try:
            return _copy(proxy, src, dst, tmp_path, *extra)
        finally:
            done.set()
            watcher.join(5.0)


def test_a_declared_capacity_halved_mid_run_is_read_again_and_followed(endpoint: str, padded: str,
                                                                     tmp_path: Path) -> None:
    """1,500 WCU that the table declares, lowered to 750 mid-run (an UpdateTable): the job reads
    the figure again (2 s after the first push-back at most) and moves its rate to the new one,
    where reading it once left the old figure the knee to probe back to (in the simulator, 4.6-6.1 %
    of the writes after such a change held back; 2.6-4.9 % read again). The report says so."""
    cap = WriteCapacity(1500, partitions=4)
    dst = create_table(endpoint)
    rep = _copy_changing(endpoint, cap, 750, padded, dst, tmp_path)
    assert len(scan_all(endpoint, dst)) == N
    after = cap.snapshot()
    assert after["throttled_share"] <= 0.05, after
    assert after["efficiency"] is not None and after["efficiency"] >= 0.7, after
    lim = rep["rate_limits"]["write"]
    assert lim["declared"] == 1500 and lim["declared_last"] == 750, lim
    assert lim["current"] <= 1.3 * 750, lim  # at most the probe past the new figure, not the old one


def test_worker_processes_follow_a_declared_capacity_raised_mid_run(endpoint: str, padded: str,
                                                                   tmp_path: Path) -> None:
    """Two worker processes, each starting at half of 500 WCU; the table is raised to 1,000
    (auto scaling) after 3,000 units. Each reads its share of the new figure at its next look,
    and the report says the table's whole figure, not a worker's share of it."""
    cap = WriteCapacity(500, partitions=4)
    dst = create_table(endpoint)
    rep = _copy_changing(endpoint, cap, 1000, padded, dst, tmp_path, "--processes", "2")
    assert len(scan_all(endpoint, dst)) == N
    after = cap.snapshot()
    assert after["throttled_share"] <= 0.05, after
    lim = rep["rate_limits"]["write"]
    assert lim["declared"] == 500 and lim["declared_last"] == 1000, lim
    # The rate at the end is near the new figure (a worker whose units ended before its look
    # still says its half of the old one).
    assert lim["current"] >= 700, lim


def test_a_table_on_dynamodb_local_declares_nothing_believed(endpoint: str, tmp_path: Path) -> None:
    """DynamoDB Local reports the units a table was created with (1 WCU here) and never
    throttles: a job that started at them would take minutes. It runs as fast as Local takes."""
    from support import boto_client

    src = _seed(endpoint, 600)
    dst = "one-wcu-" + src
    c = boto_client(endpoint)
    c.create_table(TableName=dst, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                   ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1})
    report = tmp_path / "r.json"
    r = run_tool(["copy", src, dst, "--endpoint-url", endpoint, "--progress", "off", "--report", str(report)],
                 cwd=str(tmp_path), timeout=120)
    assert r.exit_code == 0, r.stderr[-3000:]
    rep = read_report(report)
    assert rep is not None and rep["counters"]["written"] == 600, rep
    assert "declared" not in rep["rate_limits"].get("write", {}), rep["rate_limits"]
    assert rep["duration_seconds"] < 60, rep["duration_seconds"]  # 600 units at 1 WCU would be 10 minutes


@pytest.mark.parametrize("units,limit", [(1500, 1500), (1500, 750)])
def test_a_rate_given_is_a_ceiling_held_without_a_storm(endpoint: str, padded: str, tmp_path: Path,
                                                        units: int, limit: int) -> None:
    """``--max-write-units`` through the proxy: never more than it, the report says so, and when
    it is the table's whole capacity it is held; under the capacity, nothing is throttled. (How
    close to the rate, and that no burst is saved up on top of it, are measured in simulated
    time in tests/unit/test_ratelimit.py, where a loaded machine cannot move them.)"""
    cap = WriteCapacity(units, partitions=4)
    dst = create_table(endpoint)
    with FaultProxy(endpoint, faults=Faults(capacity=cap)) as proxy:
        timer = _steady(cap, 5.0)
        try:
            rep = _copy(proxy, padded, dst, tmp_path, "--max-write-units", str(limit))
            calls = list(cap.calls)
        finally:
            timer.cancel()
    assert len(scan_all(endpoint, dst)) == N
    steady = cap.snapshot()
    lim = rep["rate_limits"]["write"]
    assert lim["limit"] == limit and not lim.get("auto") and lim["current"] <= limit, lim
    # What arrived by each call, counted from the first: at most the rate since then, plus what
    # 16 writers can have in flight, plus a quarter of a second for the first call's own trip.
    first = calls[0][0]
    sent = 0.0
    for at, units_sent, _ in calls:
        sent += units_sent
        assert sent <= limit * (at - first + 0.25) + 16 * 25, (at - first, sent)
    # Loose floors, as above: a loaded machine must not make it flaky (the simulated tests pin
    # how close to the rate it runs).
    if limit < units:
        assert steady["throttled_calls"] == 0 and 0.3 <= (steady["efficiency"] or 0) <= 0.55, steady
    else:
        assert steady["throttled_call_share"] <= 0.05 and (steady["efficiency"] or 0) >= 0.6, steady
