"""Copy and clean through the fault proxy: every fault kind ends with target == source exactly.

Each scenario runs the real CLI (``python -m ddbmigrate copy``) as a subprocess against the
real DynamoDB Local behind :class:`ddbmigrate.testing.FaultProxy`, resuming after exit 75 if the
retries ran out, then compares an independent boto3 scan of the target with the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from ddbmigrate.testing import FaultProxy, Faults
from reliability_support import SOAK, Outcome, compare, record, run_until_done
from support import boto_client, create_table, scan_all

pytestmark = pytest.mark.reliability

SCENARIOS: Dict[str, Faults] = {
    "throttle": Faults(throttle=0.15),
    "http-500-503": Faults(error500=0.08, error503=0.08),
    "connection-reset": Faults(reset=0.1),
    "lost-response-after-write": Faults(lost_response=0.15),
    "partial-unprocessed-items": Faults(unprocessed=0.35),
    "outage-3s": Faults(outages=[(0.3, 3.0)]),
    "everything-at-once": Faults(throttle=0.04, error500=0.02, error503=0.02, reset=0.03, lost_response=0.04,
                                 unprocessed=0.1, outages=[(0.4, 1.5)]),
}


def copy_through(proxy: FaultProxy, src: str, dst: str, *extra: str) -> list[str]:
    # The write limit keeps the copy running for a few seconds even on a fast machine, so the
    # outages (which start a fraction of a second in) always land mid-copy.
    return ["copy", src, dst, "--endpoint-url", proxy.url, "--segments", "4", "--max-attempts", "12",
            "--progress", "json", "--checkpoint-every", "0.5", "--max-write-units", "1000", *extra]


def check_full_images_only(proxy: FaultProxy) -> None:
    # Invariant 3: replays are harmless because only full images are written.
    assert proxy.audit.relative_updates == 0
    assert "UpdateItem" not in proxy.audit.requests


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_copy_under_faults(endpoint: str, source: Tuple[str, Dict[str, Any]], tmp_path: Path, name: str) -> None:
    src, expected = source
    dst = create_table(endpoint)
    with FaultProxy(endpoint, seed=sum(map(ord, name)), faults=SCENARIOS[name]) as proxy:
        att = run_until_done(copy_through(proxy, src, dst), tmp_path)
    diff = compare(expected, endpoint, dst)
    rep = att.last_report
    injected = dict(proxy.audit.faults)
    rec = record(Outcome(
        scenario=f"copy/{name}", kind="fault", items=len(expected), **diff,
        write_amplification=proxy.audit.write_amplification(dst, len(expected)), retries=att.retries(),
        recovery_s=max(proxy.audit.outage_recoveries, default=None), peak_rss_mb=att.peak_rss_mb(),
        exit_codes=att.exit_codes, duration_s=round(sum(r.duration_s for r in att.runs), 2),
        notes=f"injected {injected}",
    ))
    assert diff == {"lost": 0, "unexpected": 0, "mismatched": 0}, att.describe()
    assert rep["balanced"] and rep["counters"]["read"] == len(expected) == rep["counters"]["written"]
    assert sum(injected.values()) > 0, "the scenario injected nothing: it proves nothing"
    check_full_images_only(proxy)
    kinds = set(injected)
    if kinds & {"throttle"}:
        assert rec.retries.get("throttle", 0) > 0
    if kinds & {"error500", "error503"}:
        assert rec.retries.get("5xx", 0) > 0
    if kinds & {"reset", "lost_response", "outage"}:
        assert rec.retries.get("connection", 0) > 0
    if kinds == {"unprocessed"}:
        # UnprocessedItems were retried until written, and our altered bodies passed the CRC check.
        assert rec.retries.get("unprocessed", 0) > 0 and "connection" not in rec.retries
    if "lost_response" in kinds:
        assert rec.write_amplification > 1.0  # writes the server applied were sent again, harmlessly


@pytest.mark.skipif(not SOAK, reason="30-second outage soak: set DDBMIGRATE_SOAK=1")
@pytest.mark.slow
def test_copy_survives_a_30_second_outage(endpoint: str, source: Tuple[str, Dict[str, Any]], tmp_path: Path) -> None:
    src, expected = source
    dst = create_table(endpoint)
    with FaultProxy(endpoint, seed=30, faults=Faults(outages=[(1.0, 30.0)], throttle=0.02, unprocessed=0.05)) as proxy:
        att = run_until_done(copy_through(proxy, src, dst), tmp_path, timeout=300)
    diff = compare(expected, endpoint, dst)
    record(Outcome(scenario="copy/outage-30s (soak)", kind="fault", items=len(expected), **diff,
                   write_amplification=proxy.audit.write_amplification(dst, len(expected)), retries=att.retries(),
                   recovery_s=max(proxy.audit.outage_recoveries, default=None), peak_rss_mb=att.peak_rss_mb(),
                   exit_codes=att.exit_codes, duration_s=round(sum(r.duration_s for r in att.runs), 2)))
    assert diff == {"lost": 0, "unexpected": 0, "mismatched": 0}, att.describe()
    assert att.last_report["balanced"]
    check_full_images_only(proxy)


def test_clean_under_faults(endpoint: str, source: Tuple[str, Dict[str, Any]], tmp_path: Path) -> None:
    src, expected = source
    dst = create_table(endpoint)
    faults = Faults(throttle=0.05, error503=0.05, reset=0.05, lost_response=0.08, unprocessed=0.15)
    with FaultProxy(endpoint, seed=11) as proxy:
        run_until_done(copy_through(proxy, src, dst), tmp_path / "copy")
        proxy.faults = faults
        att = run_until_done(["clean", dst, "--yes", "--endpoint-url", proxy.url, "--segments", "4",
                              "--max-attempts", "12", "--progress", "json"], tmp_path / "clean")
    remaining = scan_all(endpoint, dst)
    rep = att.last_report
    record(Outcome(scenario="clean/faults", kind="fault", items=len(expected), unexpected=len(remaining),
                   retries=att.retries(), peak_rss_mb=att.peak_rss_mb(), exit_codes=att.exit_codes,
                   duration_s=round(sum(r.duration_s for r in att.runs), 2), notes=f"injected {dict(proxy.audit.faults)}"))
    assert remaining == [], att.describe()
    assert rep["balanced"] and rep["counters"]["deleted"] == len(expected)
    assert sum(proxy.audit.faults.values()) > 0
    check_full_images_only(proxy)


def test_the_relative_update_guard_sees_an_update(endpoint: str) -> None:
    """The guard above can fail: an UpdateItem through the proxy is caught by its audit."""
    table = create_table(endpoint)
    with FaultProxy(endpoint) as proxy:
        c = boto_client(proxy.url)
        c.put_item(TableName=table, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
        assert proxy.audit.relative_updates == 0
        c.update_item(TableName=table, Key={"pk": {"S": "a"}}, UpdateExpression="ADD n :one",
                      ExpressionAttributeValues={":one": {"N": "1"}})
        assert proxy.audit.relative_updates == 1 and proxy.audit.requests["UpdateItem"] == 1


@pytest.mark.parametrize("mode", ["skip-existing", "fail-existing"])
def test_conditional_put_whose_response_was_lost_counts_as_written(
        endpoint: str, source: Tuple[str, Dict[str, Any]], tmp_path: Path, mode: str) -> None:
    """A conditional PutItem applied by the server, its response lost, fails its condition on the
    retry: it is this run's write (the existing item is the one sent), not an existing item."""
    src, expected = source
    dst = create_table(endpoint)
    with FaultProxy(endpoint, seed=23, faults=Faults(lost_response=0.1, writes_only=True)) as proxy:
        att = run_until_done(copy_through(proxy, src, dst, "--mode", mode), tmp_path)
        lost = proxy.audit.faults.get("lost_response", 0)
    assert lost > 0, "no response was lost: the test proves nothing"
    assert compare(expected, endpoint, dst) == {"lost": 0, "unexpected": 0, "mismatched": 0}, att.describe()
    rep = att.last_report
    c = rep["counters"]
    assert c["written"] == len(expected), (c, att.describe())
    assert c.get("skipped_existing", 0) == 0 and c.get("dead_lettered", 0) == 0, c
    assert rep["balanced"] and att.exit_codes[-1] == 0


def test_conditional_put_of_an_item_that_was_there_is_still_skipped(endpoint: str, tmp_path: Path) -> None:
    """The other side of the rule above: an item that existed before (even one equal to the one
    sent) is skipped when no attempt of ours could have written it."""
    from support import put_items

    src = create_table(endpoint)
    dst = create_table(endpoint)
    items = [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(50)]
    put_items(endpoint, src, items)
    put_items(endpoint, dst, items[:20])
    with FaultProxy(endpoint, seed=5) as proxy:
        att = run_until_done(copy_through(proxy, src, dst, "--mode", "skip-existing"), tmp_path)
    c = att.last_report["counters"]
    assert c["written"] == 30 and c["skipped_existing"] == 20, c
