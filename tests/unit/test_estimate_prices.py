"""The packaged prices per region, unknown prices (never read as free), and what the estimate says
when the bulk put price is missing (AWS had not published it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from ddbmigrate.estimate import CostCapExceeded, enforce_max_cost, load_prices
from ddbmigrate.estimate.lanes import estimate_job
from ddbmigrate.estimate.model import Job, Side
from ddbmigrate.estimate.prices import PACKAGED
from ddbmigrate.estimate.sample import SampleStats, index_shapes

TABLE = {"TableName": "T", "BillingMode": "PAY_PER_REQUEST",
         "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
         "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}


def _item(i: int) -> Dict[str, Any]:
    return {"pk": {"S": f"k{i:05d}"}, "v": {"S": "x" * 100}}  # under 1 KB: 1 write unit


def _job(region: str, *, prices: Any = None, exists: bool = False, billing: str = "PAY_PER_REQUEST") -> Job:
    stats = SampleStats(index_shapes(TABLE))
    for i in range(100):
        stats.add(_item(i))
    target = dict(TABLE, BillingMode=billing)
    if billing == "PROVISIONED":
        target["ProvisionedThroughput"] = {"ReadCapacityUnits": 10, "WriteCapacityUnits": 100}
    return Job(kind="copy", stats=stats, source_items=1_000_000, source_bytes=int(stats.source_bytes * 10_000),
               prices=prices or load_prices(region), source=Side({"BillingMode": "PAY_PER_REQUEST"}, True, "src"),
               target=Side(target, exists, "T"), client_items_per_second=1e9)


def test_every_packaged_region_names_its_source_and_date_and_has_the_core_prices() -> None:
    data = json.loads(Path(PACKAGED).read_text())
    core = ("on_demand_write_per_million", "on_demand_read_per_million", "provisioned_wcu_hour", "provisioned_rcu_hour")
    for region, rates in data["regions"].items():
        assert rates["source"] and rates["date"], region
        assert all(isinstance(rates[k], (int, float)) and rates[k] > 0 for k in core), region


def test_tokyo_prices_are_used_for_ap_northeast_1() -> None:
    p = load_prices("ap-northeast-1")
    assert p.notes == [] and p.describe()["rates_region"] == "ap-northeast-1"
    assert p.rate("on_demand_write_per_million") == 0.715 and "APN1-WriteRequestUnits" in p.source
    engine = estimate_job(_job("ap-northeast-1")).lane("engine")
    # 1,000,000 items x 1 write unit at $0.715 per million; eventually consistent scan of the bytes
    assert engine.cost_parts["write units"] == pytest.approx(0.715)
    assert engine.cost_usd is not None and engine.missing_prices == []


def test_an_unknown_region_falls_back_to_the_default_with_a_note() -> None:
    p = load_prices("eu-west-1")
    assert p.region == "eu-west-1" and p.describe()["rates_region"] == "us-east-1"
    assert any("no prices for eu-west-1" in n and "us-east-1 prices are used" in n for n in p.notes)
    est = estimate_job(_job("eu-west-1"))
    assert any("no prices for eu-west-1" in a for a in est.assumptions)
    assert est.lane("engine").cost_parts["write units"] == pytest.approx(0.625)


def test_a_null_price_makes_the_cost_unknown_not_free(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"regions": {"us-east-1": {"on_demand_write_per_million": None}}}))
    est = estimate_job(_job("us-east-1", prices=load_prices("us-east-1", str(tmp_path / "p.json"))))
    engine = est.lane("engine")
    assert engine.cost_usd is None and engine.missing_prices == ["on_demand_write_per_million"]
    with pytest.raises(CostCapExceeded, match=r"on_demand_write_per_million for us-east-1 is null"):
        enforce_max_cost(est, 1000.0)
    # a provisioned target does not need the on-demand price
    prov = estimate_job(_job("us-east-1", prices=load_prices("us-east-1", str(tmp_path / "p.json")),
                             billing="PROVISIONED")).lane("engine")
    assert prov.cost_usd is not None and prov.missing_prices == []


def test_the_unknown_bulk_put_price_says_why_and_how_to_give_it(tmp_path: Path) -> None:
    est = estimate_job(_job("us-east-1", exists=True))
    est.chosen = "bulk-put"
    bulk = est.lane()
    assert bulk.available and bulk.cost_usd is None and bulk.missing_prices == ["bulk_put_per_gb.STANDARD"]
    note = next(n for n in bulk.notes if "bulk put STANDARD price unknown" in n)
    assert "AWS had published no per-GB bulk put price" in note
    assert '--prices FILE holding {"regions": {"us-east-1": {"bulk_put_per_gb": {"STANDARD": <USD per GB>}}}}' in note
    with pytest.raises(CostCapExceeded) as ei:
        enforce_max_cost(est, 100.0, what="the import")
    msg = ei.value.message
    assert "bulk_put_per_gb.STANDARD for us-east-1 is null in the prices file" in msg
    assert '{"regions": {"us-east-1": {"bulk_put_per_gb": {"STANDARD": <USD>}}}}' in msg
    assert "nothing was read or written" in msg
    # given that way, the cost is known and the cap passes
    (tmp_path / "p.json").write_text(json.dumps({"regions": {"us-east-1": {"bulk_put_per_gb": {"STANDARD": 0.2}}}}))
    est2 = estimate_job(_job("us-east-1", prices=load_prices("us-east-1", str(tmp_path / "p.json")), exists=True))
    est2.chosen = "bulk-put"
    assert est2.lane().cost_usd is not None and enforce_max_cost(est2, 100.0) is est2


def test_bulk_put_with_a_condition_prices_the_staged_copy() -> None:
    job = _job("us-east-1", exists=True)
    job.kind, job.source, job.files, job.files_in_s3, job.staged_condition = "import", None, 3, True, True
    bulk = estimate_job(job).lane("bulk-put")
    # each of the 3 input objects is read (GET) and written (PUT) once more
    assert bulk.cost_parts["staged copy (S3 requests)"] == pytest.approx(3 / 1000 * (0.0004 + 0.005))
    assert any("--condition: the 3 input object(s) are first copied" in n for n in bulk.notes)
    job.staged_condition = False
    assert "staged copy (S3 requests)" not in estimate_job(job).lane("bulk-put").cost_parts


def test_a_price_given_twice_in_a_prices_file_is_refused(tmp_path: Path) -> None:
    from ddbmigrate.errors import UsageError

    (tmp_path / "p.json").write_text('{"regions": {"us-east-1": {"wcu_hour": 1, "wcu_hour": 2}}}')
    with pytest.raises(UsageError, match="'wcu_hour' appears twice"):
        load_prices("us-east-1", str(tmp_path / "p.json"))


@pytest.mark.parametrize("over, named", [
    ({"regions": {"us-east-1": {"on_demand_write_per_milion": 9}}},
     "regions.us-east-1.on_demand_write_per_milion is not a name the prices file has (did you mean "
     "'on_demand_write_per_million'?)"),
    ({"region": {"us-east-1": {}}}, "region is not a name"),
    ({"throughput": {"partition_writes": 500}}, "throughput.partition_writes is not a name"),
    ({"regions": {"eu-south-9": {"bulk_put_per_gb": {"FAST": 1}}}}, "regions.eu-south-9.bulk_put_per_gb.FAST"),
    ({"regions": {"us-east-1": {"export_per_gb": {"STANDARD": 1}}}},
     "regions.us-east-1.export_per_gb.STANDARD is not a name the prices file has: this price has no tiers"),
])
def test_a_misspelt_name_in_a_prices_file_is_refused_not_merged_unread(tmp_path: Path, over: Dict[str, Any],
                                                                       named: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(over))
    from ddbmigrate.errors import UsageError

    with pytest.raises(UsageError) as e:
        load_prices("us-east-1", str(path))
    assert f"--prices {path}: {named}" in str(e.value)


def test_a_prices_file_may_add_a_region_with_the_known_names(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"regions": {"eu-south-9": {"on_demand_write_per_million": 9, "source": "mine",
                                                           "bulk_put_per_gb": {"STANDARD": 1}}}}))
    p = load_prices("eu-south-9", str(path))
    assert p.rate("on_demand_write_per_million") == 9 and p.rate("bulk_put_per_gb") == 1 and p.source == "mine"
