"""``ddbmigrate estimate`` and ``--max-cost`` on DynamoDB Local tables with known contents.

Every expected number is computed by hand below from the items' sizes (DynamoDB's size rule:
attribute name bytes + value bytes), so a change in the formulas shows up as a failing sum.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner
from support import boto_client, create_table, put_items, scan_all, unique

from ddbmigrate.cli import main
from ddbmigrate.config import RunOptions, TableRef
from ddbmigrate.estimate import estimate_copy

pytestmark = pytest.mark.integration

TRANSFORM = '''
def remodel(item):
    if item["pk"].startswith("d"):
        return None                       # dropped
    return [
        {"PK": "USER#" + item["pk"], "SK": "A", "GSI1PK": "USER", "GSI1SK": item["pk"],
         "GSI2PK": item["pk"], "blob": item["blob"]},
        {"PK": "USER#" + item["pk"], "SK": "B", "small": "y"},
    ]
'''

SPEC = '''
BillingMode: PAY_PER_REQUEST
AttributeDefinitions:
  - {AttributeName: PK, AttributeType: S}
  - {AttributeName: SK, AttributeType: S}
  - {AttributeName: GSI1PK, AttributeType: S}
  - {AttributeName: GSI1SK, AttributeType: S}
  - {AttributeName: GSI2PK, AttributeType: S}
KeySchema:
  - {AttributeName: PK, KeyType: HASH}
  - {AttributeName: SK, KeyType: RANGE}
GlobalSecondaryIndexes:
  - IndexName: GSI1
    KeySchema: [{AttributeName: GSI1PK, KeyType: HASH}, {AttributeName: GSI1SK, KeyType: RANGE}]
    Projection: {ProjectionType: ALL}
  - IndexName: GSI2
    KeySchema: [{AttributeName: GSI2PK, KeyType: HASH}]
    Projection: {ProjectionType: KEYS_ONLY}
'''

# ---- the hand computation -------------------------------------------------------------------
# 8 kept items {"pk": "u0".."u7", "blob": 1500 x "a"}: 2+2 + 4+1500 = 1508 bytes each.
# 2 dropped items {"pk": "d0"/"d1", "blob": 10 x "b"}:  2+2 + 4+10   =   18 bytes each.
SOURCE_BYTES = 8 * 1508 + 2 * 18                      # 12,100
READ_UNITS = 3 / 2                                    # ceil(12,100 / 4,096) = 3, eventually consistent
# Output A: PK "USER#u0" 2+7, SK "A" 2+1, GSI1PK "USER" 6+4, GSI1SK "u0" 6+2, GSI2PK "u0" 6+2,
#           blob 4+1500                                 = 1,542 bytes -> 2 WCU on the table
#           GSI1 (ALL): 1,542 bytes -> 2 WCU; GSI2 (KEYS_ONLY): PK 9 + SK 3 + GSI2PK 8 = 20 -> 1 WCU
# Output B: PK 9, SK 3, "small" 5+1                     = 18 bytes -> 1 WCU on the table, no index
TABLE_UNITS = 8 * (2 + 1)                             # 24
GSI1_UNITS = 8 * 2                                    # 16
GSI2_UNITS = 8 * 1                                    # 8
WRITE_UNITS = TABLE_UNITS + GSI1_UNITS + GSI2_UNITS   # 48
# us-east-1 on-demand: $0.625 per million write units, $0.125 per million read units
COST = WRITE_UNITS * 0.625 / 1e6 + READ_UNITS * 0.125 / 1e6
# ImportTable lane: $0.10/GB native export of the source + $0.15/GB of the imported (output) bytes;
# our engine exports first because there is a transform: read units + S3 PUT requests instead.
# ImportTable bills the uncompressed size of its input: the export's JSON lines, each
# {"Item":<wire JSON>} and a newline (10 bytes beside the item's JSON). An attribute
# "NAME":{"S":"VALUE"} is len(NAME) + len(VALUE) + 11 bytes, plus a comma between and {} around.
# Output A: PK 2+7+11, SK 2+1+11, GSI1PK 6+4+11, GSI1SK 6+2+11, GSI2PK 6+2+11, blob 4+1500+11
#           = 1,608 + 5 + 2 = 1,615 -> a line of 1,625
# Output B: PK 20, SK 14, small (N "1") 5+1+11 = 51 + 2 + 2 = 55 -> a line of 65
EXPORT_LINE_BYTES = 8 * (1625 + 65)                    # 13,520
# The source's own lines (the import of its export): {"pk":"u0","blob":1500 x "a"} 15 + 1,515 + 3
# = 1,533 -> 1,543; {"pk":"d0","blob":10 x "b"} 15 + 25 + 3 = 43 -> 53
SOURCE_LINE_BYTES = 8 * 1543 + 2 * 53                  # 12,450


def _source(endpoint: str) -> str:
    name = create_table(endpoint)
    items: List[Dict[str, Any]] = [{"pk": {"S": f"u{i}"}, "blob": {"S": "a" * 1500}} for i in range(8)]
    items += [{"pk": {"S": f"d{i}"}, "blob": {"S": "b" * 10}} for i in range(2)]
    put_items(endpoint, name, items)
    return name


def _files(tmp_path: Path) -> Dict[str, str]:
    (tmp_path / "remodel.py").write_text(textwrap.dedent(TRANSFORM))
    (tmp_path / "spec.yaml").write_text(SPEC)
    return {"transform": f"{tmp_path / 'remodel.py'}:remodel", "spec": str(tmp_path / "spec.yaml")}


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_estimate_copy_json_equals_the_hand_computation(endpoint: str, tmp_path: Path) -> None:
    src = _source(endpoint)
    f = _files(tmp_path)
    target = unique("app")  # does not exist: its indexes come from --target-spec
    r = _run("estimate", "copy", src, target, "--endpoint-url", endpoint, "--region", "us-east-1",
             "--transform", f["transform"], "--target-spec", f["spec"], "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    s = doc["inputs"]["sample"]
    assert (s["items"], s["outputs"], s["complete"]) == (10, 16, True)
    assert s["fan_out"] == 1.6 and s["drop_rate"] == 0.2
    assert s["read_units_consumed"] > 0  # what the sample itself cost, as DynamoDB reported it
    assert doc["inputs"]["source_items"] == 10 and doc["inputs"]["source_bytes"] == SOURCE_BYTES
    assert doc["inputs"]["target_table"]["exists"] is False
    engine = next(ln for ln in doc["lanes"] if ln["lane"] == "engine")
    assert doc["chosen_lane"] == "engine"
    assert engine["write_units"] == {"table": TABLE_UNITS, "GSI1": GSI1_UNITS, "GSI2": GSI2_UNITS,
                                     "total": WRITE_UNITS}
    assert engine["read_units"] == {"table": READ_UNITS, "total": READ_UNITS}
    assert engine["cost_usd"] == pytest.approx(COST, abs=1e-9)
    assert engine["cost_on_demand_usd"] == pytest.approx(COST, abs=1e-9)
    # provisioned: the same units as capacity-hours (units / 3600 x $ per unit-hour)
    assert engine["cost_provisioned_usd"] == pytest.approx(WRITE_UNITS / 3600 * 0.00065 + READ_UNITS / 3600 * 0.00013,
                                                           abs=1e-9)
    assert engine["duration_s"] > 0 and engine["limited_by"]
    # the constant GSI1 key is named, with its share of the sample
    hot = doc["keys"]["GSI1"]["hottest"]
    assert hot["value"] == "USER" and hot["share_of_items"] == 1.0 and hot["source_items"] == 8
    assert hot["caps_writes_at_units_per_s"] == 1000.0
    assert any("GSI1PK='USER' holds 100 % of items: GSI1 caps writes at 1,000 WCU/s" in w for w in doc["warnings"])
    assert doc["keys"]["GSI2"]["hottest"] is None  # unique keys: nothing to warn about
    lanes = {ln["lane"]: ln for ln in doc["lanes"]}
    assert lanes["import-table"]["available"] is True and lanes["bulk-put"]["available"] is False
    imp = lanes["import-table"]["cost_parts_usd"]
    assert imp["ImportTable"] == pytest.approx(EXPORT_LINE_BYTES / 1024 ** 3 * 0.15, abs=1e-9)
    assert lanes["global-table-replica"]["available"] is False  # a transform: not the same items
    assert doc["prices"]["date"] and "aws.amazon.com/dynamodb/pricing" in doc["prices"]["source"]


def test_estimate_table_output_names_the_hot_key_and_lanes(endpoint: str, tmp_path: Path) -> None:
    src = _source(endpoint)
    f = _files(tmp_path)
    r = _run("estimate", "copy", src, unique("app"), "--endpoint-url", endpoint, "--region", "us-east-1",
             "--transform", f["transform"], "--target-spec", f["spec"])
    assert r.exit_code == 0, r.output
    assert "GSI1PK='USER' holds 100 % of items" in r.stdout
    assert "ddbmigrate engine" in r.stdout and "ImportTable" in r.stdout and "bulk put" in r.stdout
    assert "write units 48 (table 24, GSI1 16, GSI2 8)" in r.stdout
    r = _run("estimate", "copy", src, unique("app"), "--endpoint-url", endpoint, "--region", "us-east-1",
             "--transform", f["transform"], "--target-spec", f["spec"], "--max-cost", "0.00001",
             "--processes", "auto", "--mode", "skip-existing")  # the job's own options are accepted
    assert r.exit_code == 2 and "exceeds --max-cost $0.000010" in r.stderr


def test_prices_file_overrides_the_packaged_prices(endpoint: str, tmp_path: Path) -> None:
    src = _source(endpoint)
    f = _files(tmp_path)
    (tmp_path / "prices.json").write_text(json.dumps(
        {"regions": {"eu-west-1": {"on_demand_write_per_million": 1.0, "on_demand_read_per_million": 0.5,
                                   "provisioned_wcu_hour": 0.001, "provisioned_rcu_hour": 0.0002}}}))
    est = estimate_copy(TableRef(src, endpoint_url=endpoint, region="eu-west-1"),
                        TableRef(unique("app"), endpoint_url=endpoint, region="eu-west-1"),
                        RunOptions(transform=f["transform"]), target_spec=f["spec"],
                        prices=str(tmp_path / "prices.json"), client_items_per_second=1000.0)
    lane = est.lane("engine")
    assert est.region == "eu-west-1"
    assert lane.cost_usd == pytest.approx(WRITE_UNITS * 1.0 / 1e6 + READ_UNITS * 0.5 / 1e6, abs=1e-12)
    # an injected client rate makes the CPU bound exact: 10 source items at 1,000 items/s
    assert lane.bounds["this machine (CPU)"] == pytest.approx(0.01)


def test_existing_provisioned_target_offers_bulk_put_and_caps_time_by_its_capacity(endpoint: str) -> None:
    src = _source(endpoint)
    tgt = unique("prov")
    boto_client(endpoint).create_table(
        TableName=tgt, BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 2},
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    est = estimate_copy(TableRef(src, endpoint_url=endpoint, region="us-east-1"),
                        TableRef(tgt, endpoint_url=endpoint, region="us-east-1"), client_items_per_second=1e6)
    lane = est.lane("engine")
    # no transform: 8 x 1508 bytes -> 2 WCU, 2 x 18 bytes -> 1 WCU
    assert lane.write_units == {"table": 18.0, "total": 18.0}
    assert lane.bounds["target table capacity"] == pytest.approx(18 / 2)  # 2 WCU/s provisioned
    assert lane.limited_by == "target table capacity" and lane.duration_s == pytest.approx(9.0)
    # provisioned target: the write part is billed as capacity-hours
    assert lane.cost_usd == pytest.approx(18 / 3600 * 0.00065 + READ_UNITS * 0.125 / 1e6, abs=1e-12)
    lanes = {ln.name: ln for ln in est.lanes}
    assert lanes["bulk-put"].available and not lanes["import-table"].available


def test_max_cost_below_the_estimate_exits_2_before_any_write(endpoint: str, tmp_path: Path) -> None:
    src = _source(endpoint)
    f = _files(tmp_path)
    target = unique("app")
    r = _run("copy", src, target, "--endpoint-url", endpoint, "--region", "us-east-1", "--transform",
             f["transform"], "--target-spec", f["spec"], "--max-cost", "0.00001", "--progress", "off")
    assert r.exit_code == 2, r.output
    assert "exceeds --max-cost $0.00" in r.stderr and "nothing was read or written" in r.stderr
    assert "GSI1PK='USER'" in r.stderr  # the estimate is shown
    assert target not in boto_client(endpoint).list_tables()["TableNames"]  # not even created
    # an existing, empty target stays empty
    existing = create_table(endpoint, hash_key=("PK", "S"), range_key=("SK", "S"))
    r = _run("copy", src, existing, "--endpoint-url", endpoint, "--region", "us-east-1", "--transform",
             f["transform"], "--max-cost", "0.00001", "--progress", "off")
    assert r.exit_code == 2 and scan_all(endpoint, existing) == []
    # replicate and import: the same cap, checked before the backfill / the first file
    r = _run("replicate", src, target, "--endpoint-url", endpoint, "--region", "us-east-1", "--transform",
             f["transform"], "--target-spec", f["spec"], "--max-cost", "0.00001", "--progress", "off", "--yes")
    assert r.exit_code == 2 and "backfill" in r.stderr
    assert target not in boto_client(endpoint).list_tables()["TableNames"]
    lines = [json.dumps({"Item": {"pk": {"S": f"u{i}"}, "blob": {"S": "a" * 1500}}}) for i in range(8)]
    (tmp_path / "in.json").write_text("\n".join(lines) + "\n")
    plain = create_table(endpoint)
    r = _run("import", str(tmp_path / "in.json"), plain, "--endpoint-url", endpoint, "--region", "us-east-1",
             "--max-cost", "0.000001", "--progress", "off")
    assert r.exit_code == 2, r.output
    assert "16 write units" in r.stderr and scan_all(endpoint, plain) == []


def test_max_cost_above_the_estimate_runs_and_reports_estimate_vs_actual(endpoint: str, tmp_path: Path) -> None:
    src = _source(endpoint)
    f = _files(tmp_path)
    target = unique("app")
    r = _run("copy", src, target, "--endpoint-url", endpoint, "--region", "us-east-1", "--transform",
             f["transform"], "--target-spec", f["spec"], "--max-cost", "1", "--progress", "off",
             "--report", str(tmp_path / "rep.json"))
    assert r.exit_code == 0, r.output
    assert len(scan_all(endpoint, target)) == 16
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert "estimate" in r.stderr and "actual" in r.stderr
    e = rep["extra"]["estimate"]
    assert e["lane"] == "engine" and e["estimated"]["write_units"] == WRITE_UNITS
    shown = _run("report", str(tmp_path / "rep.json"))  # the saved report shows them too
    assert shown.exit_code == 0 and "estimated: " in shown.stdout and "48 write units" in shown.stdout
    assert "actual: " in shown.stdout
    assert e["actual"]["duration_s"] == rep["duration_seconds"] > 0
    assert e["actual"]["write_units"] == rep["consumed_write_units"]


def test_estimate_export_and_import_lanes(endpoint: str, tmp_path: Path) -> None:
    src = _source(endpoint)
    r = _run("estimate", "export", src, str(tmp_path / "out"), "--endpoint-url", endpoint, "--region",
             "us-east-1", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    lanes = {ln["lane"]: ln for ln in doc["lanes"]}
    assert lanes["engine"]["read_units"]["total"] == READ_UNITS
    assert "s3 requests" not in lanes["engine"]["cost_parts_usd"]  # local files: no S3 requests
    r = _run("estimate", "export", src, "s3://bucket/orders", "--endpoint-url", endpoint, "--region", "us-east-1",
             "--json", "--native")
    doc_s3 = json.loads(r.stdout)
    engine_s3 = next(ln for ln in doc_s3["lanes"] if ln["lane"] == "engine")
    # 19,520 output bytes: one data file + 4 manifest objects, at $0.005 per 1,000 PUTs
    assert engine_s3["cost_parts_usd"]["s3 requests"] == pytest.approx(5 / 1000 * 0.005)
    assert doc_s3["chosen_lane"] == "native-export"
    assert lanes["native-export"]["cost_parts_usd"]["native export"] == pytest.approx(SOURCE_BYTES / 1024 ** 3 * 0.10,
                                                                                       abs=1e-12)
    # import of local DynamoDB-JSON lines into an existing table
    lines = [json.dumps({"Item": {"pk": {"S": f"u{i}"}, "blob": {"S": "a" * 1500}}}) for i in range(8)]
    (tmp_path / "in.json").write_text("\n".join(lines) + "\n")
    tgt = create_table(endpoint)
    r = _run("estimate", "import", str(tmp_path / "in.json"), tgt, "--endpoint-url", endpoint, "--region",
             "us-east-1", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    lanes = {ln["lane"]: ln for ln in doc["lanes"]}
    assert doc["inputs"]["source_items"] == 8
    assert lanes["engine"]["write_units"] == {"table": 16, "total": 16}
    assert lanes["bulk-put"]["available"] is False and "S3" in lanes["bulk-put"]["why_not"]


def _plan(tmp_path: Path, endpoint: str, jobs: List[Dict[str, Any]], name: str = "plan.yaml") -> Path:
    import yaml

    side = {"endpoint_url": endpoint, "region": "us-east-1"}
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"version": 1, "defaults": {"source": side, "target": side}, "jobs": jobs},
                                   sort_keys=False))
    return path


def test_plan_validate_estimate_and_run_max_cost(endpoint: str, tmp_path: Path) -> None:
    src = _source(endpoint)
    f = _files(tmp_path)
    target = unique("app")
    plan = _plan(tmp_path, endpoint, [{"kind": "copy", "name": "remodel", "source": src, "target": target,
                                       "transform": f["transform"], "target_spec": f["spec"]}])
    r = _run("plan", "validate", str(plan), "--estimate", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["total_cost_usd"] == pytest.approx(COST, abs=1e-9)
    job = doc["jobs"][0]
    assert job["job"] == "remodel" and job["estimate"]["lanes"][0]["write_units"]["total"] == WRITE_UNITS
    r = _run("plan", "validate", str(plan), "--estimate")
    assert r.exit_code == 0 and "remodel:" in r.stdout and "GSI1PK='USER'" in r.stdout and "total: $" in r.stdout
    # run --max-cost below the plan's total: exit 2 before the target is even created
    r = _run("run", str(plan), "--max-cost", "0.00001", "--progress", "off")
    assert r.exit_code == 2, r.output
    assert "exceeds --max-cost $0.00" in r.stderr and "remodel" in r.stderr
    assert target not in boto_client(endpoint).list_tables()["TableNames"]
    # a job's own cap (options.max_cost) is checked the same way
    capped = _plan(tmp_path, endpoint, [{"kind": "copy", "name": "remodel", "source": src, "target": target,
                                         "transform": f["transform"], "target_spec": f["spec"],
                                         "options": {"max_cost": 0.00001}}], "capped.yaml")
    r = _run("run", str(capped), "--progress", "off")
    assert r.exit_code == 2 and "exceeds its max_cost" in r.stderr
    assert target not in boto_client(endpoint).list_tables()["TableNames"]
    # ... and `plan validate --estimate` says so before, as a problem at the job's line (exit 2)
    r = _run("plan", "validate", str(capped), "--estimate")
    assert r.exit_code == 2 and f"{capped}:" in r.stderr and "remodel: estimated $" in r.stderr, r.output
    assert "exceeds its max_cost" in r.stderr
    # above the cap: the plan runs, and the job's report carries estimate vs actual
    r = _run("run", str(plan), "--max-cost", "1", "--progress", "off", "--report", str(tmp_path / "run.json"))
    assert r.exit_code == 0, r.output
    assert len(scan_all(endpoint, target)) == 16
    rep = json.loads((tmp_path / "run.json").read_text())
    assert rep["jobs"][0]["report"]["extra"]["estimate"]["estimated"]["write_units"] == WRITE_UNITS


def test_a_partial_sample_is_scaled_to_the_table(endpoint: str) -> None:
    """30 items of 1,508 bytes, a sample of 8: every sum is the sample's x 30/8."""
    src = create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"u{i:02d}"}, "blob": {"S": "a" * 1500}} for i in range(30)])
    desc = boto_client(endpoint).describe_table(TableName=src)["Table"]
    assert desc["ItemCount"] == 30  # DynamoDB Local counts at once (AWS: about every 6 hours)
    est = estimate_copy(TableRef(src, endpoint_url=endpoint, region="us-east-1"),
                        TableRef(unique("t"), endpoint_url=endpoint, region="us-east-1"), sample=8,
                        client_items_per_second=1e6)
    assert est.inputs["sample"]["items"] == 8 and est.inputs["sample"]["complete"] is False
    assert est.inputs["source_items"] == 30
    lane = est.lane("engine")
    assert lane.write_units == {"table": 60.0, "total": 60.0}  # 8 x 2 WCU x 30 / 8
    bytes_ = desc["TableSizeBytes"]
    assert lane.read_units["total"] == math.ceil(bytes_ / 4096) / 2


def test_estimate_import_of_an_s3_export_offers_the_managed_lanes(endpoint: str, moto_s3: str) -> None:
    """An export folder in S3 (written by our export, read from moto): manifest counts, the bulk put
    lane for an existing table, ImportTable for a new one."""
    import boto3

    from ddbmigrate.estimate import estimate_import
    from ddbmigrate.jobs.export import export_table
    from ddbmigrate.storage.stores import S3Settings

    bucket = unique("bkt")
    boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1").create_bucket(Bucket=bucket)
    src = _source(endpoint)
    s3 = S3Settings(endpoint_url=moto_s3)
    rep = export_table(TableRef(src, endpoint_url=endpoint, region="us-east-1"), f"s3://{bucket}/x",
                       RunOptions(segments=2), s3=s3)
    folder = f"s3://{bucket}/x/AWSDynamoDB/{rep.extra['export_id']}/"
    existing = create_table(endpoint)
    est = estimate_import(folder, TableRef(existing, endpoint_url=endpoint, region="us-east-1"), s3=s3,
                          native=True, bulk_put=True, client_items_per_second=1e6)
    assert est.inputs["source_items"] == 10 and est.chosen == "bulk-put"
    lanes = {ln.name: ln for ln in est.lanes}
    assert lanes["bulk-put"].available and not lanes["import-table"].available
    # no transform: the table's bytes are the items' own (8 x 1508 + 2 x 18), 18 write units
    assert lanes["bulk-put"].bytes_written == {"table": SOURCE_BYTES, "total": SOURCE_BYTES}
    assert lanes["bulk-put"].write_units == {"table": 18.0, "total": 18.0}
    assert lanes["engine"].cost_parts["s3 requests"] > 0  # GETs of the data files
    spec = Path("spec.yaml")
    spec.write_text("BillingMode: PAY_PER_REQUEST\nAttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\n"
                    "KeySchema: [{AttributeName: pk, KeyType: HASH}]\n")
    new = estimate_import(folder, TableRef(unique("new"), endpoint_url=endpoint, region="us-east-1"), s3=s3,
                          spec=str(spec), native=True, client_items_per_second=1e6)
    imp = new.lane("import-table")
    assert new.chosen == "import-table" and imp.available
    assert imp.cost_usd == pytest.approx(SOURCE_LINE_BYTES / 1024 ** 3 * 0.15, abs=1e-12)
