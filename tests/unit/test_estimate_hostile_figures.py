"""Acceptance probes of the estimate, without AWS: out-of-range inputs end in one usage line (not an
OverflowError), every lane's JSON has the same unit shape, and an empty source is limited by nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from ddbmigrate.errors import EXIT_USAGE, UsageError
from ddbmigrate.estimate import load_prices
from ddbmigrate.estimate.lanes import estimate_job
from ddbmigrate.estimate.model import Job, Side, fmt_duration, usd
from ddbmigrate.estimate.render import estimate_lines
from ddbmigrate.estimate.sample import SampleStats, index_shapes

TABLE = {
    "TableName": "Hostile", "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
}


def _job(n: int = 10, prices: Any = None, items: Any = None, **kw: Any) -> Job:
    stats = SampleStats(index_shapes(TABLE))
    for i in range(n):
        stats.add({"pk": {"S": f"k{i:04d}"}, "d": {"S": "x" * 1000}})
    stats.complete = items is None
    scale = (items / n) if items is not None else 1
    return Job(kind="copy", stats=stats, source_items=items or n, source_bytes=int(stats.source_bytes * scale),
               prices=prices or load_prices("us-east-1"), source=Side(TABLE, True, "Hostile"),
               target=Side(TABLE, False, "Hostile2"), client_items_per_second=1e9, **kw)


@pytest.mark.parametrize("kw, named", [
    ({"max_write_units": 1e-320}, "write limit (--max-write-units)"),
    ({"max_read_units": 1e-320}, "source read capacity"),
])
def test_a_limit_so_small_the_time_is_infinite_is_a_usage_error(kw: Dict[str, Any], named: str) -> None:
    """10 units / 1e-320 units/s is inf seconds: it was an OverflowError (exit 1, "internal error")
    when the duration was shown; now one line naming the bound, exit 2."""
    with pytest.raises(UsageError) as ei:
        estimate_job(_job(**kw))
    assert ei.value.exit_code == EXIT_USAGE
    line = ei.value.one_line()
    assert named in line and "not a finite number" in line and "\n" not in line


def test_a_prices_figure_that_makes_a_time_infinite_is_a_usage_error(tmp_path: Path) -> None:
    """A throughput figure is refused at 0, but 1e-320 GB/h is above 0 and makes the ImportTable
    time infinite: the lane and the bound are named."""
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"throughput": {"import_table_gb_per_hour": 1e-320}}))
    with pytest.raises(UsageError, match=r"time bound 'ImportTable' of the lane 'export -> ImportTable"):
        estimate_job(_job(prices=load_prices("us-east-1", str(f))))


def test_a_price_that_makes_a_cost_infinite_is_a_usage_error(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"regions": {"us-east-1": {"on_demand_write_per_million": 1.7e308,
                                                       "replicated_write_per_million": 1.7e308}}}))
    # 10 billion items of 1 WCU: 1e4 million units x 1.7e308 $ overflows to inf
    with pytest.raises(UsageError, match=r"the (on-demand )?cost.* is inf, not a finite number"):
        estimate_job(_job(items=10 ** 10, prices=load_prices("us-east-1", str(f))))


def test_an_absurd_but_finite_time_is_shown_not_refused() -> None:
    """A tiny limit that leaves the time finite (centuries) is an estimate, not an error."""
    est = estimate_job(_job(n=10, max_write_units=1e-9))
    lane = est.lane()
    assert lane.limited_by == "write limit (--max-write-units)"
    assert lane.duration_s == pytest.approx(10 / 1e-9)
    assert any(line.strip().startswith("time 2777777 h") for line in estimate_lines(est))
    assert fmt_duration(float("inf")) == "unbounded" and usd(float("inf")) == "$inf"


def test_every_lane_has_read_and_write_units_with_a_total() -> None:
    """The JSON gives each lane ``read_units`` and ``write_units`` with a ``total``: the replica lane
    had ``read_units: {}``, so ``lane["read_units"]["total"]`` was a KeyError for it alone."""
    doc = estimate_job(_job(source_prices=load_prices("ap-northeast-1"), cross_region_or_account=True)).to_dict()
    lanes = {ln["lane"]: ln for ln in doc["lanes"]}
    assert set(lanes) == {"engine", "import-table", "bulk-put", "global-table-replica"}
    for name, ln in lanes.items():
        assert "total" in ln["read_units"] and "total" in ln["write_units"], name
    assert lanes["global-table-replica"]["read_units"] == {"table": 0, "total": 0}
    assert lanes["global-table-replica"]["write_units"] == lanes["engine"]["write_units"] == {"table": 10, "total": 10}


def test_an_empty_source_takes_no_time_and_is_limited_by_nothing() -> None:
    """An empty table: 0 units, $0, 0 s, and no bound "limits" it (it said "this machine (CPU)")."""
    est = estimate_job(_job(n=0))
    lane = est.lane()
    assert (lane.write_units["total"], lane.read_units["total"], lane.cost_usd) == (0, 0, 0.0)
    assert lane.duration_s == 0.0 and lane.limited_by is None
    assert any(line.strip() == "time 0 s" for line in estimate_lines(est))
