"""Table definitions on a moto server: the settings DynamoDB Local does not keep.

moto (5.2) keeps and reports tags, PITR with its recovery period, SSE with a KMS key, deletion
protection, warm throughput and resource policies (PutResourcePolicy / GetResourcePolicy); it does
not report table class, on-demand maximum throughput, contributor insights or Kinesis
destinations (those are covered on DynamoDB Local or by the unit tests, see docs/iac.md).
Every outcome is checked with plain boto3 against the server, not with ddbmigrate's reader.

moto's KMS and STS (the AWS managed key, the account a key belongs to) are named the way a user
names them, ``AWS_ENDPOINT_URL_KMS`` and ``AWS_ENDPOINT_URL_STS``: ``--endpoint-url`` is DynamoDB's
alone (test_schema_service_endpoints.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import boto3
import pytest
import yaml
from click.testing import CliRunner
from support import unique

from ddbmigrate import RunOptions, TableRef, copy_table
from ddbmigrate.cli import main

ACCOUNT = "123456789012"  # moto's account
FOREIGN_KEY = "arn:aws:kms:us-east-1:111122223333:key/0b1c2d3e-aaaa-bbbb-cccc-000000000001"
OWN_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0b1c2d3e-aaaa-bbbb-cccc-000000000002"


@pytest.fixture(autouse=True)
def _kms_and_sts_at_moto(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_s3)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_s3)


def ddb(url: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def policy(name: str, account: str = ACCOUNT) -> Dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "ReadOnly", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:role/reader"},
        "Action": ["dynamodb:GetItem", "dynamodb:Query"],
        "Resource": [f"arn:aws:dynamodb:us-east-1:{account}:table/{name}",
                     f"arn:aws:dynamodb:us-east-1:{account}:table/{name}/index/*"]}]}


def full_spec(name: str) -> Dict[str, Any]:
    """Every setting moto keeps, written in the compact form `schema export --as spec` prints."""
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "N"},
                                 {"AttributeName": "email", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "WarmThroughput": {"ReadUnitsPerSecond": 15000, "WriteUnitsPerSecond": 6000},
        "GlobalSecondaryIndexes": [{
            "IndexName": "byEmail", "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["name", "plan"]}}],
        "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
        "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": 7},
        "DeletionProtectionEnabled": True,
        "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": OWN_KEY},
        "ResourcePolicy": {"PolicyDocument": policy(name)},
        "Tags": [{"Key": "cost-center", "Value": "42"}, {"Key": "team", "Value": "orders"}],
    }


def test_spec_to_table_to_spec_round_trip(moto_s3: str, tmp_path: Path) -> None:
    name = unique("rt")
    spec = full_spec(name)
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    r = run("create-table", "--spec", str(path), "--endpoint-url", moto_s3, "--region", "us-east-1")
    assert r.exit_code == 0, r.stderr + r.stdout
    assert f"created table {name} (ACTIVE)" in r.stdout
    # Settings moto keeps are applied and checked; none is reported missing.
    assert "not applied" not in r.stdout, r.stdout
    c = ddb(moto_s3)
    d = c.describe_table(TableName=name)["Table"]
    assert d["DeletionProtectionEnabled"] is True
    assert d["SSEDescription"]["KMSMasterKeyArn"] == OWN_KEY
    assert d["WarmThroughput"]["ReadUnitsPerSecond"] == 15000
    pitr = c.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert pitr["PointInTimeRecoveryDescription"]["RecoveryPeriodInDays"] == 7
    assert sorted((t["Key"], t["Value"]) for t in c.list_tags_of_resource(ResourceArn=d["TableArn"])["Tags"]) == \
        [("cost-center", "42"), ("team", "orders")]
    assert json.loads(c.get_resource_policy(ResourceArn=d["TableArn"])["Policy"]) == policy(name)
    assert c.describe_time_to_live(TableName=name)["TimeToLiveDescription"]["AttributeName"] == "expiresAt"

    out = tmp_path / "exported.yaml"
    r = run("schema", "export", name, "--as", "spec", "-o", str(out), "--endpoint-url", moto_s3,
            "--region", "us-east-1")
    assert r.exit_code == 0, r.stderr
    assert yaml.safe_load(out.read_text()) == spec
    # ... and the spec file and the table are equal for `schema diff` (exit 0).
    r = run("schema", "diff", str(path), name, "--endpoint-url", moto_s3, "--region", "us-east-1")
    assert r.exit_code == 0, r.stdout


def test_create_target_clones_moto_settings_and_refuses_a_foreign_key(moto_s3: str) -> None:
    src = unique("src")
    c = ddb(moto_s3)
    c.create_table(TableName=src, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                   SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": FOREIGN_KEY},
                   DeletionProtectionEnabled=True, Tags=[{"Key": "env", "Value": "prod"}])
    arn = c.describe_table(TableName=src)["Table"]["TableArn"]
    c.update_continuous_backups(TableName=src, PointInTimeRecoverySpecification={
        "PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": 14})
    c.put_resource_policy(ResourceArn=arn, Policy=json.dumps(policy(src)))
    c.put_item(TableName=src, Item={"pk": {"S": "a"}, "n": {"N": "12345678901234567890123456789012345678"}})

    def clone(dst: str, **kw: Any) -> Dict[str, Any]:
        rep = copy_table(TableRef(src, endpoint_url=moto_s3), TableRef(dst, endpoint_url=moto_s3),
                         RunOptions(progress="off"), create_target=True, **kw)
        assert rep.written == 1
        return dict(rep.extra["target_created"])

    dst = unique("dst")
    created = clone(dst)
    d = c.describe_table(TableName=dst)["Table"]
    assert d["DeletionProtectionEnabled"] is True
    # The source's key is in another account: not reused, the AWS managed key instead, and said so.
    assert d["SSEDescription"]["KMSMasterKeyArn"] != FOREIGN_KEY
    reasons = {x["setting"]: x["reason"] for x in created["not_applied"]}
    assert "SSESpecification.KMSMasterKeyId" in reasons and "111122223333" in reasons[
        "SSESpecification.KMSMasterKeyId"] and "--target-kms-key" in reasons["SSESpecification.KMSMasterKeyId"]
    pitr = c.describe_continuous_backups(TableName=dst)["ContinuousBackupsDescription"][
        "PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED" and pitr["RecoveryPeriodInDays"] == 14
    assert c.list_tags_of_resource(ResourceArn=d["TableArn"])["Tags"] == [{"Key": "env", "Value": "prod"}]
    # The policy names the new table, not the source.
    assert json.loads(c.get_resource_policy(ResourceArn=d["TableArn"])["Policy"]) == policy(dst)
    assert any("resource policy rewritten" in n for n in created["notes"])
    for s in ("DeletionProtectionEnabled", "PointInTimeRecoverySpecification", "Tags", "ResourcePolicy"):
        assert s in created["applied"], created
    # schema diff: the clone's policy (its own ARN) equals the source's; only the key differs.
    r = run("schema", "diff", src, dst, "--endpoint-url", moto_s3, "--json")
    assert [x["setting"] for x in json.loads(r.stdout)["differences"]] == ["SSESpecification"], r.stdout
    # The new table's key is DynamoDB's AWS managed key (alias/aws/dynamodb): a definition names it by
    # leaving the key out, so the export is portable to any account.
    r = run("schema", "export", dst, "--endpoint-url", moto_s3)
    assert yaml.safe_load(r.stdout)["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}

    # --target-kms-key: the new table uses that key.
    dst2 = unique("dst")
    created = clone(dst2, target_kms_key=OWN_KEY)
    assert c.describe_table(TableName=dst2)["Table"]["SSEDescription"]["KMSMasterKeyArn"] == OWN_KEY
    assert "SSESpecification" in created["applied"]
    assert not any(x["setting"].startswith("SSE") for x in created["not_applied"])


def test_schema_diff_finds_moto_settings_changed_on_one_side(moto_s3: str, tmp_path: Path) -> None:
    a, b = unique("a"), unique("b")
    base = full_spec(a)
    for name, spec in ((a, base), (b, dict(full_spec(b), Tags=[{"Key": "team", "Value": "billing"}]))):
        p = tmp_path / f"{name}.yaml"
        spec = dict(spec, ResourcePolicy={"PolicyDocument": policy(a)})  # same document on both
        p.write_text(yaml.safe_dump(spec))
        assert run("create-table", "--spec", str(p), "--endpoint-url", moto_s3).exit_code == 0
    c = ddb(moto_s3)
    c.update_continuous_backups(TableName=b, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False})
    c.update_table(TableName=b, DeletionProtectionEnabled=False)
    r = run("schema", "diff", a, b, "--endpoint-url", moto_s3, "--json")
    assert r.exit_code == 4, r.stdout + r.stderr
    got: List[str] = sorted(x["setting"] for x in json.loads(r.stdout)["differences"])
    assert got == ["DeletionProtectionEnabled", "PointInTimeRecoverySpecification", "Tags"]
    r = run("schema", "diff", a, b, "--endpoint-url", moto_s3)
    assert r.exit_code == 4 and "DeletionProtectionEnabled" in r.stdout and "true" in r.stdout


def test_create_table_kms_key_overrides_the_spec(moto_s3: str, tmp_path: Path) -> None:
    name = unique("kms")
    spec = dict(full_spec(name), SSESpecification={"SSEEnabled": True, "SSEType": "KMS",
                                                   "KMSMasterKeyId": FOREIGN_KEY})
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = run("create-table", "--spec", str(path), "--endpoint-url", moto_s3, "--kms-key", OWN_KEY)
    assert r.exit_code == 0, r.stdout + r.stderr
    assert ddb(moto_s3).describe_table(TableName=name)["Table"]["SSEDescription"]["KMSMasterKeyArn"] == OWN_KEY
    # Without it, the spec's key of another account is refused, and the line says so.
    spec["TableName"] = other = unique("kms")
    path.write_text(yaml.safe_dump(spec))
    r = run("create-table", "--spec", str(path), "--endpoint-url", moto_s3)
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "not applied: SSESpecification.KMSMasterKeyId: the KMS key" in r.stdout and "--target-kms-key" in r.stdout
    assert ddb(moto_s3).describe_table(TableName=other)["Table"]["SSEDescription"]["KMSMasterKeyArn"] != FOREIGN_KEY


def test_cross_account_clone_rewrites_the_policy_and_refuses_the_source_key(moto_s3: str) -> None:
    """--target-role-arn into another account (moto keeps one set of tables per account and hands
    out that account's credentials from AssumeRole, at its STS: AWS_ENDPOINT_URL_STS)."""
    other, role = "111122223333", "arn:aws:iam::111122223333:role/migration"
    src, dst = unique("src"), unique("dst")
    c = ddb(moto_s3)
    c.create_table(TableName=src, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                   SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": OWN_KEY})
    c.put_resource_policy(ResourceArn=c.describe_table(TableName=src)["Table"]["TableArn"],
                          Policy=json.dumps(policy(src)))
    c.put_item(TableName=src, Item={"pk": {"S": "a"}})
    r = run("copy", src, dst, "--endpoint-url", moto_s3, "--target-role-arn", role, "--create-target",
            "--progress", "off")
    assert r.exit_code == 0, r.stderr
    assert f"the KMS key {OWN_KEY} belongs to account {ACCOUNT}, the new table to account {other}" in r.stderr
    creds = boto3.client("sts", endpoint_url=moto_s3, region_name="us-east-1").assume_role(
        RoleArn=role, RoleSessionName="check")["Credentials"]
    theirs = boto3.client("dynamodb", endpoint_url=moto_s3, region_name="us-east-1",
                          aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                          aws_session_token=creds["SessionToken"])
    d = theirs.describe_table(TableName=dst)["Table"]
    assert d["TableArn"] == f"arn:aws:dynamodb:us-east-1:{other}:table/{dst}"
    assert dst not in c.list_tables()["TableNames"]  # not in the source's account
    assert d["SSEDescription"]["KMSMasterKeyArn"] != OWN_KEY
    # Every ARN and account id of the source account now names the target account and table.
    assert json.loads(theirs.get_resource_policy(ResourceArn=d["TableArn"])["Policy"]) == policy(dst, other)
    # ... so for `schema diff` (each side with its own credentials) the policies are equal.
    r = run("schema", "diff", src, dst, "--endpoint-url", moto_s3, "--target-role-arn", role, "--json")
    assert [x["setting"] for x in json.loads(r.stdout)["differences"]] == ["SSESpecification"], r.stdout
