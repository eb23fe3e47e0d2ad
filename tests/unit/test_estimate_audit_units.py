"""Audit fixes of the estimate and the IaC export, without AWS: the write cap counts index writes,
ImportTable is priced by its uncompressed input, each region's prices for its side, checked price
files, the source's indexes, a topped-up sample, and the Terraform/CDK outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import orjson
import pytest

from ddbmigrate.errors import UsageError
from ddbmigrate.estimate import CostCapExceeded, enforce_max_cost, load_prices
from ddbmigrate.estimate.lanes import estimate_job
from ddbmigrate.estimate.model import GB, Job, Side
from ddbmigrate.estimate.render import estimate_lines
from ddbmigrate.estimate.sample import SampleStats, index_shapes, sample_table
from ddbmigrate.schema.model import TableDefinition, normalize
from ddbmigrate.schema.render import to_cdk, to_terraform

GSI_TABLE = {
    "TableName": "Est", "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "gpk", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "GlobalSecondaryIndexes": [{"IndexName": "GS1", "KeySchema": [{"AttributeName": "gpk", "KeyType": "HASH"}],
                                "Projection": {"ProjectionType": "ALL"}}],
}


def _item(i: int) -> Dict[str, Any]:
    return {"pk": {"S": f"p{i:04d}"}, "gpk": {"S": f"g{i:04d}"}, "data": {"S": "x" * 1500}}  # 2 WCU per entry


def _job(n: int = 600, *, source_region: Optional[str] = None, region: str = "us-east-1", **kw: Any) -> Job:
    stats = SampleStats(index_shapes(GSI_TABLE))
    for i in range(n):
        stats.add(_item(i))
    return Job(kind="copy", stats=stats, source_items=n, source_bytes=stats.source_bytes,
               prices=load_prices(region), source_prices=load_prices(source_region) if source_region else None,
               source=Side(GSI_TABLE, True, "Est"), target=Side(GSI_TABLE, False, "Est2"),
               client_items_per_second=1e9, **kw)


# ------------------------------------------------------------------ 1. the write cap and GSI writes


def test_max_write_units_bounds_the_table_and_index_writes_together() -> None:
    """600 items x (2 WCU table + 2 WCU GSI) = 2,400 units under a 100 units/s cap: 24 s, as the
    engine's limiter (which counts every consumed unit) takes, not the table's 1,200 / 100 = 12 s."""
    engine = estimate_job(_job(max_write_units=100)).lane("engine")
    assert engine.write_units == {"table": 1200, "GS1": 1200, "total": 2400}
    assert engine.duration_s == pytest.approx(24.0)
    assert engine.limited_by == "write limit (--max-write-units)"


def test_write_percent_bounds_the_sum_too() -> None:
    target = dict(GSI_TABLE, BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": 5,
                                                                              "WriteCapacityUnits": 200})
    job = _job(write_percent=50)
    job.target = Side(target, True, "Est2")
    engine = estimate_job(job).lane("engine")
    assert engine.bounds["write limit (--write-percent)"] == pytest.approx(2400 / 100)
    assert engine.bounds["target table capacity"] == pytest.approx(1200 / 200)


# ------------------------------------------------------------------ 2. ImportTable bills the uncompressed input


def test_import_table_is_priced_by_the_export_lines_not_the_item_size() -> None:
    job = _job(10)
    lines = sum(len(orjson.dumps(_item(i))) + len(b'{"Item":}\n') for i in range(10))
    assert job.stats.json_line_bytes == lines
    lane = estimate_job(job).lane("import-table")
    assert lines > job.stats.output_bytes  # type tags, quotes and the wrapper: more than the item size
    assert lane.cost_parts["ImportTable"] == pytest.approx(lines / GB * 0.15)
    assert any(f"{lines:,} bytes as DynamoDB JSON lines" in n for n in lane.notes)


def test_import_table_of_files_is_priced_by_their_size() -> None:
    job = _job(10)
    job.kind, job.source, job.import_source_bytes = "import", None, 89_390.0
    lane = estimate_job(job).lane("import-table")
    assert lane.cost_parts["ImportTable"] == pytest.approx(89_390 / GB * 0.15)


# ------------------------------------------------------------------ 3. each side its region's prices


def test_cross_region_reads_use_the_source_prices_and_unknown_exports_stay_unknown() -> None:
    est = estimate_job(_job(source_region="ap-northeast-1", region="us-east-1"))
    engine = est.lane("engine")
    read = engine.read_units["total"]
    assert engine.cost_parts["read units"] == pytest.approx(read * 0.1425 / 1e6)  # Tokyo's read price
    assert engine.cost_parts["write units"] == pytest.approx(2400 * 0.625 / 1e6)  # us-east-1's write price
    imp = est.lane("import-table")
    assert imp.cost_parts["native export"] is None and imp.cost_usd is None  # export_per_gb is null in Tokyo
    assert imp.missing_regions == {"export_per_gb": "ap-northeast-1"}
    assert any("inter-region data transfer" in a and "not priced" in a for a in est.assumptions)
    assert est.prices["source_side"]["rates_region"] == "ap-northeast-1"
    assert "  prices: reads ap-northeast-1 of 2026-09, writes us-east-1 of 2026-11-01" in estimate_lines(est)[1]
    est.chosen = "import-table"
    with pytest.raises(CostCapExceeded, match='export_per_gb for ap-northeast-1 is null.*"ap-northeast-1"'):
        enforce_max_cost(est, 100.0)


def test_the_header_names_the_prices_really_used() -> None:
    est = estimate_job(_job(region="eu-west-1"))
    assert estimate_lines(est)[1].startswith("  prices: us-east-1 (none for eu-west-1 in the prices file) of ")
    assert estimate_lines(estimate_job(_job()))[1].startswith("  prices: us-east-1 of 2026-11-01 (")


# ------------------------------------------------------------------ 4. --prices values are checked


@pytest.mark.parametrize("doc,key", [
    ({"regions": {"us-east-1": {"on_demand_write_per_million": "cheap"}}}, "regions.us-east-1.on_demand_write_per_million"),
    ({"regions": {"us-east-1": {"on_demand_read_per_million": -0.1}}}, "regions.us-east-1.on_demand_read_per_million"),
    ({"regions": {"us-east-1": {"bulk_put_per_gb": {"STANDARD": True}}}}, "regions.us-east-1.bulk_put_per_gb.STANDARD"),
    ({"throughput": {"partition_write_units": 0}}, "throughput.partition_write_units"),
    ({"throughput": {"on_demand_new_table_write_units": 0}}, "throughput.on_demand_new_table_write_units"),
    ({"throughput": {"import_table_gb_per_hour": 0}}, "throughput.import_table_gb_per_hour"),
    ({"throughput": {"bulk_put_write_units": {"STANDARD": 0}}}, "throughput.bulk_put_write_units.STANDARD"),
    ({"throughput": {"partition_write_units": None}}, "throughput.partition_write_units"),
    ({"regions": "x"}, "regions"),
])
def test_an_unusable_price_is_one_usage_line_naming_the_file_and_key(tmp_path: Path, doc: Dict[str, Any],
                                                                     key: str) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(UsageError) as e:
        load_prices("us-east-1", str(f))
    msg = e.value.one_line()
    assert f"--prices {f}: {key} " in msg and "\n" not in msg


@pytest.mark.parametrize("text", ['{"regions": {"us-east-1": {"on_demand_write_per_million": NaN}}}',
                                  '{"regions": {"us-east-1": {"on_demand_write_per_million": -0.0}}}',
                                  '{"regions": {"us-east-1": {"on_demand_write_per_million": Infinity}}}'])
def test_nan_infinity_and_negative_zero_are_refused(tmp_path: Path, text: str) -> None:
    f = tmp_path / "p.json"
    f.write_text(text)
    with pytest.raises(UsageError, match="regions.us-east-1.on_demand_write_per_million"):
        load_prices("us-east-1", str(f))


def test_zero_and_null_prices_and_a_zero_startup_are_accepted(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"regions": {"us-east-1": {"export_per_gb": 0, "import_per_gb": None}},
                             "throughput": {"managed_startup_seconds": 0}}))
    p = load_prices("us-east-1", str(f))
    assert p.rate("export_per_gb") == 0.0 and p.rate("import_per_gb") is None


# ------------------------------------------------------------------ 5. the source's indexes


def test_the_source_table_indexes_are_reported() -> None:
    est = estimate_job(_job(10))
    assert est.inputs["source_table"]["indexes"] == ["GS1"]
    assert est.inputs["target_table"]["indexes"] == ["GS1"]


# ------------------------------------------------------------------ 6. the sample is topped up


class _SegmentedTable:
    """A Scan over fixed segments (items in order), honouring Limit and ExclusiveStartKey."""

    def __init__(self, segments: List[List[Dict[str, Any]]]) -> None:
        self.segments = segments

    def call(self, op: str, req: Dict[str, Any], table: str = "") -> Dict[str, Any]:
        assert op == "Scan" and req["TotalSegments"] == len(self.segments)
        items = self.segments[req["Segment"]]
        start = int((req.get("ExclusiveStartKey") or {}).get("i", {}).get("N", 0))
        page = items[start:start + req["Limit"]]
        out: Dict[str, Any] = {"Items": page, "ConsumedCapacity": {"CapacityUnits": 1.0}}
        if start + len(page) < len(items) or len(page) == req["Limit"]:
            out["LastEvaluatedKey"] = {"i": {"N": str(start + len(page))}}
        return out


def _rows(prefix: str, n: int, hot: bool = False) -> List[Dict[str, Any]]:
    return [{"pk": {"S": "HOT" if hot else f"{prefix}{i}"}, "sk": {"N": str(i)}} for i in range(n)]


def test_segments_that_end_early_give_their_share_to_the_others() -> None:
    """One partition-key value's items are all in one segment: the other segments end after 100
    items each, and their unused share goes to the segment still going."""
    table = _SegmentedTable([_rows("a", 100) + _rows("", 3600, hot=True), _rows("b", 100), _rows("c", 100),
                             _rows("d", 100)])
    items, complete, units = sample_table(table, "T", 1000)
    assert len(items) == 1000 and complete is False and units > 0
    assert sum(1 for it in items if it["pk"]["S"] == "HOT") == 600


def test_a_small_table_is_read_whole_and_an_exact_sample_stops_at_n() -> None:
    items, complete, _ = sample_table(_SegmentedTable([_rows(s, 30) for s in "abcd"]), "T", 1000)
    assert len(items) == 120 and complete is True
    items, complete, _ = sample_table(_SegmentedTable([_rows(s, 30) for s in "abcd"]), "T", 10)
    assert len(items) == 10 and complete is False


# ------------------------------------------------------------------ 7-9. Terraform and CDK


def _defn(**extra: Any) -> TableDefinition:
    props = {"TableName": "T", "BillingMode": "PAY_PER_REQUEST",
             "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
             "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}], **extra}
    return TableDefinition(props=normalize(props), arn="arn:aws:dynamodb:eu-west-1:123456789012:table/T")


def test_terraform_contributor_insights_import_id_has_an_empty_index_for_the_table() -> None:
    tf = to_terraform(_defn(ContributorInsightsSpecification={"Enabled": True}))
    assert 'id = "name:T/index:/123456789012"' in tf
    assert "required_providers" not in tf  # nothing newer than what older providers take


def test_terraform_names_the_provider_version_its_arguments_need() -> None:
    tf = to_terraform(_defn(WarmThroughput={"ReadUnitsPerSecond": 13000, "WriteUnitsPerSecond": 5000}))
    assert 'source  = "hashicorp/aws"' in tf and 'version = ">= 6.13.0"' in tf
    tf = to_terraform(_defn(ContributorInsightsSpecification={"Enabled": True, "Mode": "THROTTLED_KEYS"}))
    assert 'version = ">= 6.11.0"' in tf and tf.count("{") == tf.count("}")


def test_cdk_carries_the_kinesis_timestamp_precision() -> None:
    ts = to_cdk(_defn(KinesisStreamSpecification={"StreamArn": "arn:aws:kinesis:eu-west-1:123456789012:stream/s",
                                                  "ApproximateCreationDateTimePrecision": "MICROSECOND"}))
    assert "kinesisPrecisionTimestamp: dynamodb.ApproximateCreationDateTimePrecision.MICROSECOND," in ts
    assert ts.count("{") == ts.count("}")
