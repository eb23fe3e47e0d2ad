"""Table definitions on DynamoDB Local: what Local keeps is cloned, created, exported and diffed.

DynamoDB Local 3.3 keeps deletion protection, TTL, streams, GSIs and LSIs, billing mode,
provisioned throughput and on-demand maximum throughput (table and GSI); it has no PITR, tags,
contributor insights, resource policy or Kinesis APIs, and ignores SSE, table class and warm
throughput (those are checked on moto: test_schema_moto.py). Every outcome is checked by
describing the table with plain boto3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import yaml
from click.testing import CliRunner
from support import boto_client, create_table, put_items, scan_all, unique

from ddbmigrate.cli import main


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def local_spec(name: str, *, provisioned: bool = False) -> Dict[str, Any]:
    """Every setting DynamoDB Local keeps, in the compact form `schema export --as spec` prints."""
    spec: Dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PROVISIONED" if provisioned else "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "N"},
                                 {"AttributeName": "gpk", "AttributeType": "B"},
                                 {"AttributeName": "lsk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    }
    gsi: Dict[str, Any] = {"IndexName": "byGroup", "KeySchema": [{"AttributeName": "gpk", "KeyType": "HASH"},
                                                                  {"AttributeName": "sk", "KeyType": "RANGE"}],
                           "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["a", "b"]}}
    if provisioned:
        spec["ProvisionedThroughput"] = {"ReadCapacityUnits": 7, "WriteCapacityUnits": 3}
        gsi["ProvisionedThroughput"] = {"ReadCapacityUnits": 4, "WriteCapacityUnits": 2}
    else:
        spec["OnDemandThroughput"] = {"MaxReadRequestUnits": 300, "MaxWriteRequestUnits": 100}
        gsi["OnDemandThroughput"] = {"MaxReadRequestUnits": 50, "MaxWriteRequestUnits": 20}
    spec["GlobalSecondaryIndexes"] = [gsi]
    spec["LocalSecondaryIndexes"] = [{"IndexName": "byLsk", "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "lsk", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"}}]
    spec["StreamSpecification"] = {"StreamViewType": "NEW_IMAGE"}
    spec["TimeToLiveSpecification"] = {"AttributeName": "expiresAt", "Enabled": True}
    spec["DeletionProtectionEnabled"] = True
    return spec


def create(endpoint: str, tmp_path: Path, spec: Dict[str, Any]) -> str:
    p = tmp_path / f"{spec['TableName']}.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    r = run("create-table", "--spec", str(p), "--endpoint-url", endpoint)
    assert r.exit_code == 0, r.stdout + r.stderr
    return str(p)


@pytest.mark.parametrize("provisioned", [False, True], ids=["on-demand", "provisioned"])
def test_create_target_clones_what_local_keeps(endpoint: str, tmp_path: Path, provisioned: bool) -> None:
    src = unique("src")
    create(endpoint, tmp_path, local_spec(src, provisioned=provisioned))
    put_items(endpoint, src, [{"pk": {"S": "a"}, "sk": {"N": "1"}, "gpk": {"B": "AAE="}, "lsk": {"S": "x"}}])
    dst = unique("dst")
    r = run("copy", src, dst, "--create-target", "--endpoint-url", endpoint, "--progress", "off")
    assert r.exit_code == 0, r.stdout + r.stderr
    c = boto_client(endpoint)
    s, d = c.describe_table(TableName=src)["Table"], c.describe_table(TableName=dst)["Table"]
    assert d["DeletionProtectionEnabled"] is True
    assert d["KeySchema"] == s["KeySchema"]
    assert sorted(map(str, d["AttributeDefinitions"])) == sorted(map(str, s["AttributeDefinitions"]))
    assert d["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert c.describe_time_to_live(TableName=dst)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    g = d["GlobalSecondaryIndexes"][0]
    assert g["IndexName"] == "byGroup" and g["KeySchema"] == s["GlobalSecondaryIndexes"][0]["KeySchema"]
    assert g["Projection"]["ProjectionType"] == "INCLUDE" and sorted(g["Projection"]["NonKeyAttributes"]) == ["a", "b"]
    lsi = d["LocalSecondaryIndexes"][0]
    assert lsi["IndexName"] == "byLsk" and lsi["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    if provisioned:
        # DynamoDB reports no BillingModeSummary for a table that was always provisioned.
        assert d.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED") == "PROVISIONED"
        assert (d["ProvisionedThroughput"]["ReadCapacityUnits"], d["ProvisionedThroughput"]["WriteCapacityUnits"]) == (7, 3)
        assert (g["ProvisionedThroughput"]["ReadCapacityUnits"], g["ProvisionedThroughput"]["WriteCapacityUnits"]) == (4, 2)
    else:
        assert d["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert d["OnDemandThroughput"] == {"MaxReadRequestUnits": 300, "MaxWriteRequestUnits": 100}
        assert g["OnDemandThroughput"] == {"MaxReadRequestUnits": 50, "MaxWriteRequestUnits": 20}
    assert len(scan_all(endpoint, dst)) == 1
    # What Local cannot report is said, in one line, not hidden.
    assert "not applied: PointInTimeRecoverySpecification, Tags" in r.stderr, r.stderr
    assert "does not support" in r.stderr
    assert f"created table {dst} ({'PROVISIONED' if provisioned else 'PAY_PER_REQUEST'})" in r.stderr
    assert "applied and checked: " in r.stderr and "DeletionProtectionEnabled" in r.stderr


@pytest.mark.parametrize("provisioned", [False, True], ids=["on-demand", "provisioned"])
def test_spec_to_table_to_spec_round_trip_local(endpoint: str, tmp_path: Path, provisioned: bool) -> None:
    spec = local_spec(unique("rt"), provisioned=provisioned)
    create(endpoint, tmp_path, spec)
    r = run("schema", "export", spec["TableName"], "--as", "spec", "--endpoint-url", endpoint)
    assert r.exit_code == 0, r.stderr
    assert yaml.safe_load(r.stdout) == spec
    assert "not exported: PointInTimeRecoverySpecification" in r.stderr  # Local has no DescribeContinuousBackups


MUTATIONS: List[Any] = [
    ("DeletionProtectionEnabled", lambda s: s.pop("DeletionProtectionEnabled")),
    ("TimeToLiveSpecification", lambda s: s.pop("TimeToLiveSpecification")),
    ("TimeToLiveSpecification", lambda s: s.update(TimeToLiveSpecification={"AttributeName": "ttl", "Enabled": True})),
    ("StreamSpecification", lambda s: s.update(StreamSpecification={"StreamViewType": "KEYS_ONLY"})),
    ("StreamSpecification", lambda s: s.pop("StreamSpecification")),
    ("OnDemandThroughput", lambda s: s.update(OnDemandThroughput={"MaxReadRequestUnits": 301})),
    ("GlobalSecondaryIndexes[byGroup].Projection",
     lambda s: s["GlobalSecondaryIndexes"][0].update(Projection={"ProjectionType": "ALL"})),
    ("GlobalSecondaryIndexes[byGroup].OnDemandThroughput",
     lambda s: s["GlobalSecondaryIndexes"][0].pop("OnDemandThroughput")),
    ("LocalSecondaryIndexes[byLsk].Projection",
     lambda s: s["LocalSecondaryIndexes"][0].update(Projection={"ProjectionType": "ALL"})),
    ("GlobalSecondaryIndexes[byGroup]", lambda s: (s.pop("GlobalSecondaryIndexes"), _drop_attr(s, "gpk"))),
    ("KeySchema", lambda s: (s.update(KeySchema=s["KeySchema"][:1]), s.pop("LocalSecondaryIndexes"),
                             _drop_attr(s, "lsk"))),
]


def _drop_attr(spec: Dict[str, Any], name: str) -> None:
    spec["AttributeDefinitions"] = [a for a in spec["AttributeDefinitions"] if a["AttributeName"] != name]


@pytest.fixture(scope="module")
def base_table(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    spec = local_spec(unique("base"))
    create(endpoint, tmp_path_factory.mktemp("base"), spec)
    return str(spec["TableName"])


@pytest.mark.parametrize("setting,mutate", MUTATIONS, ids=[f"{i}-{m[0]}" for i, m in enumerate(MUTATIONS)])
def test_schema_diff_table_vs_spec_finds_each_setting(endpoint: str, base_table: str, tmp_path: Path,
                                                      setting: str, mutate: Callable[[Dict[str, Any]], None]) -> None:
    spec = local_spec(base_table)
    mutate(spec)
    p = tmp_path / "changed.yaml"
    p.write_text(yaml.safe_dump(spec))
    r = run("schema", "diff", base_table, str(p), "--source-endpoint-url", endpoint, "--json")
    assert r.exit_code == 4, r.stdout + r.stderr
    got = [d["setting"] for d in json.loads(r.stdout)["differences"]]
    if setting == "KeySchema":  # without the sort key the LSI goes too (and its attribute)
        assert got == ["AttributeDefinitions", "KeySchema", "LocalSecondaryIndexes[byLsk]"]
    elif setting == "GlobalSecondaryIndexes[byGroup]":
        assert got == ["AttributeDefinitions", setting]
    else:
        assert got == [setting]
    # Unchanged: equal, exit 0.
    p.write_text(yaml.safe_dump(local_spec(base_table)))
    assert run("schema", "diff", base_table, str(p), "--source-endpoint-url", endpoint).exit_code == 0


def test_schema_diff_two_tables_and_preflight_note(endpoint: str) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    boto_client(endpoint).update_table(TableName=dst, DeletionProtectionEnabled=True)
    r = run("schema", "diff", src, dst, "--endpoint-url", endpoint, "--json")
    assert r.exit_code == 4
    assert sorted(d["setting"] for d in json.loads(r.stdout)["differences"]) == [
        "DeletionProtectionEnabled", "StreamSpecification"]
    put_items(endpoint, src, [{"pk": {"S": "k"}}])
    r = run("copy", src, dst, "--endpoint-url", endpoint, "--progress", "off")
    assert r.exit_code == 0, r.stderr
    assert f"note: target {dst} differs from source {src} in 2 setting(s)" in r.stderr
    assert "ddbmigrate schema diff" in r.stderr
    same = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    r = run("copy", src, same, "--endpoint-url", endpoint, "--progress", "off")
    assert r.exit_code == 0 and "differs from source" not in r.stderr


def test_replicate_and_cutover_show_the_preflight_note(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    boto_client(endpoint).update_table(TableName=dst, DeletionProtectionEnabled=True)
    note = f"note: target {dst} differs from source {src} in 2 setting(s): StreamSpecification, DeletionProtectionEnabled"
    # The note comes before the job starts; how the short run itself ends is not this test's concern.
    r = run("replicate", src, dst, "--endpoint-url", endpoint, "--max-runtime", "1", "--progress", "off",
            "--status-file", str(tmp_path / "status.json"))
    assert note in r.stderr, (r.exit_code, r.stderr)
    r = run("cutover", src, dst, "--endpoint-url", endpoint, "--status-file", str(tmp_path / "none.json"),
            "--timeout", "0", "--no-verify")
    assert note in r.stderr, (r.exit_code, r.stderr)


def test_schema_export_every_format_of_a_real_table(endpoint: str, base_table: str, tmp_path: Path) -> None:
    import cfnlint.api
    import hcl2

    spec = local_spec(base_table)
    out = {}
    for fmt in ("cloudformation", "terraform", "cdk"):
        path = tmp_path / f"out.{fmt}"
        r = run("schema", "export", base_table, "--as", fmt, "-o", str(path), "--endpoint-url", endpoint, "-q")
        assert r.exit_code == 0 and r.stdout == "" and r.stderr == "", (r.stdout, r.stderr)
        out[fmt] = path.read_text()
    template = yaml.safe_load(out["cloudformation"])
    resource = template["Resources"][next(iter(template["Resources"]))]
    assert resource["Properties"] == spec
    assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert not cfnlint.api.lint(out["cloudformation"], regions=["us-east-1"])
    tf = hcl2.loads(out["terraform"], serialization_options=hcl2.SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False))
    assert tf["import"][0]["id"] == base_table
    table = tf["resource"][0]["aws_dynamodb_table"]
    assert next(iter(table.values()))["ttl"][0] == {"attribute_name": "expiresAt", "enabled": True}
    assert f'tableName: "{base_table}"' in out["cdk"] and "removalPolicy: cdk.RemovalPolicy.RETAIN" in out["cdk"]


def test_target_kms_key_without_a_table_to_create_is_a_usage_error(endpoint: str) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    for cmd in ("copy", "replicate"):
        r = run(cmd, src, dst, "--endpoint-url", endpoint, "--target-kms-key", "alias/k", "--progress", "off")
        assert r.exit_code == 2 and "--create-target" in r.stderr + r.stdout, (cmd, r.stdout, r.stderr)
    # With --create-target and a target that exists, nothing is created and the key is said to be unused.
    r = run("copy", src, dst, "--endpoint-url", endpoint, "--target-kms-key", "alias/k", "--create-target",
            "--progress", "off")
    assert r.exit_code == 0 and f"target {dst} exists: --target-kms-key alias/k is not used" in r.stderr


def test_dry_run_says_what_the_created_target_would_lack(endpoint: str, tmp_path: Path) -> None:
    src = unique("src")
    spec = dict(local_spec(src), KinesisStreamSpecification={
        "StreamArn": "arn:aws:kinesis:us-east-1:000000000000:stream/s"})
    spec_path = tmp_path / "target.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    create(endpoint, tmp_path, local_spec(src))
    dst = unique("dst")
    r = run("copy", src, dst, "--create-target", "--dry-run", "--endpoint-url", endpoint, "--progress", "off")
    assert r.exit_code == 0, r.stderr
    assert f"dry run: would create table {dst} (" in r.stderr
    assert "with BillingMode PAY_PER_REQUEST, OnDemandThroughput" in r.stderr, r.stderr
    assert f"{dst}: would not be applied: PointInTimeRecoverySpecification, Tags" in r.stderr
    r = run("copy", src, dst, "--target-spec", str(spec_path), "--dry-run", "--endpoint-url", endpoint,
            "--progress", "off")
    assert r.exit_code == 0, r.stderr
    assert "would not be applied: KinesisStreamSpecification: ddbmigrate does not enable" in r.stderr
    assert dst not in boto_client(endpoint).list_tables(ExclusiveStartTableName=dst[:-1])["TableNames"]
