"""A global table (replicas in other regions, version 2019.11.21) in every export format.

CloudFormation: an ``AWS::DynamoDB::GlobalTable`` with every replica and the per-replica settings
DescribeTable reports, checked by cfn-lint with every rule; never an ``AWS::DynamoDB::Table``,
whose adoption would drop the replicas. What cannot be a GlobalTable (provisioned billing, the
legacy 2017.11.29 version) is refused, as is CDK's ``dynamodb.Table``. Terraform keeps the
replicas (``replica`` in ``ignore_changes``).
"""

from __future__ import annotations

import copy
from typing import Any, Dict

import cfnlint.api
import hcl2
import pytest
import yaml

from ddbmigrate.errors import UsageError
from ddbmigrate.schema.model import from_aws
from ddbmigrate.schema.render import export_notes, render, to_cdk, to_cloudformation, to_terraform

ACCT = "123456789012"
ARN = f"arn:aws:dynamodb:eu-west-1:{ACCT}:table/Orders"
KEY_EU = f"arn:aws:kms:eu-west-1:{ACCT}:key/11111111-2222-3333-4444-555555555555"
KEY_US = f"arn:aws:kms:us-west-2:{ACCT}:key/66666666-7777-8888-9999-000000000000"
KEY_AP = f"arn:aws:kms:ap-south-1:{ACCT}:key/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def global_describe() -> Dict[str, Any]:
    """DescribeTable of a global table read in eu-west-1, in the shape DynamoDB answers it."""
    return {
        "TableName": "Orders", "TableArn": ARN, "TableStatus": "ACTIVE", "GlobalTableVersion": "2019.11.21",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "email", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "OnDemandThroughput": {"MaxReadRequestUnits": 900, "MaxWriteRequestUnits": 400},
        "GlobalSecondaryIndexes": [{
            "IndexName": "byEmail", "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"}, "IndexStatus": "ACTIVE",
            "OnDemandThroughput": {"MaxReadRequestUnits": 300, "MaxWriteRequestUnits": 100}}],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        "SSEDescription": {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": KEY_EU},
        "TableClassSummary": {"TableClass": "STANDARD_INFREQUENT_ACCESS"},
        "DeletionProtectionEnabled": True,
        "Replicas": [
            {"RegionName": "us-west-2", "ReplicaStatus": "ACTIVE", "KMSMasterKeyId": KEY_US,
             "ReplicaTableClassSummary": {"TableClass": "STANDARD"},
             "OnDemandThroughputOverride": {"MaxReadRequestUnits": 500},
             "GlobalSecondaryIndexes": [{"IndexName": "byEmail",
                                         "OnDemandThroughputOverride": {"MaxReadRequestUnits": 50}}]},
            {"RegionName": "ap-south-1", "ReplicaStatus": "ACTIVE", "KMSMasterKeyId": KEY_AP,
             "ReplicaTableClassSummary": {"TableClass": "STANDARD_INFREQUENT_ACCESS"}},
            {"RegionName": "sa-east-1", "ReplicaStatus": "DELETING"},
        ],
    }


def read(desc: Dict[str, Any]) -> Any:
    return from_aws(desc, ttl={"TimeToLiveStatus": "ENABLED", "AttributeName": "exp"},
                    backups={"PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": "ENABLED",
                                                                "RecoveryPeriodInDays": 35}},
                    tags=[{"Key": "env", "Value": "prod"}],
                    insights={None: {"ContributorInsightsStatus": "ENABLED"}})


def lint(text: str) -> None:
    # Every rule, warnings and informational ones included: nothing at all may be reported.
    matches = cfnlint.api.lint(text, regions=["eu-west-1", "us-west-2", "ap-south-1"],
                               config=cfnlint.api.ManualArgs(include_checks=["I"]))
    assert not matches, [str(m) for m in matches]


def test_cloudformation_of_a_global_table_is_a_global_table_with_every_replica() -> None:
    d = read(global_describe())
    text = to_cloudformation(d)
    lint(text)
    (logical, res), = yaml.safe_load(text)["Resources"].items()
    assert logical == "OrdersTable"
    assert res["Type"] == "AWS::DynamoDB::GlobalTable"
    assert res["DeletionPolicy"] == "Retain" and res["UpdateReplacePolicy"] == "Retain"
    p = res["Properties"]
    assert p["TableName"] == "Orders" and p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert p["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    assert p["TimeToLiveSpecification"] == {"AttributeName": "exp", "Enabled": True}
    assert p["WriteOnDemandThroughputSettings"] == {"MaxWriteRequestUnits": 400}
    assert p["GlobalSecondaryIndexes"] == [{
        "IndexName": "byEmail", "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
        "WriteOnDemandThroughputSettings": {"MaxWriteRequestUnits": 100}}]
    replicas = {r["Region"]: r for r in p["Replicas"]}
    # The replica being deleted is left out; the region read from comes first.
    assert [r["Region"] for r in p["Replicas"]] == ["eu-west-1", "us-west-2", "ap-south-1"]
    here = replicas["eu-west-1"]
    assert here["DeletionProtectionEnabled"] is True
    assert here["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert here["ContributorInsightsSpecification"] == {"Enabled": True}
    assert here["TableClass"] == "STANDARD_INFREQUENT_ACCESS"
    assert here["Tags"] == [{"Key": "env", "Value": "prod"}]
    assert here["SSESpecification"] == {"KMSMasterKeyId": KEY_EU}
    assert here["ReadOnDemandThroughputSettings"] == {"MaxReadRequestUnits": 900}
    assert here["GlobalSecondaryIndexes"] == [{"IndexName": "byEmail",
                                               "ReadOnDemandThroughputSettings": {"MaxReadRequestUnits": 300}}]
    # Other replicas: what DescribeTable reports of them (key, class, read maximum and its overrides).
    us = replicas["us-west-2"]
    assert us == {"Region": "us-west-2", "SSESpecification": {"KMSMasterKeyId": KEY_US},
                  "ReadOnDemandThroughputSettings": {"MaxReadRequestUnits": 500},
                  "GlobalSecondaryIndexes": [{"IndexName": "byEmail",
                                              "ReadOnDemandThroughputSettings": {"MaxReadRequestUnits": 50}}]}
    ap = replicas["ap-south-1"]
    assert ap == {"Region": "ap-south-1", "SSESpecification": {"KMSMasterKeyId": KEY_AP},
                  "TableClass": "STANDARD_INFREQUENT_ACCESS",
                  "ReadOnDemandThroughputSettings": {"MaxReadRequestUnits": 900},
                  "GlobalSecondaryIndexes": [{"IndexName": "byEmail",
                                              "ReadOnDemandThroughputSettings": {"MaxReadRequestUnits": 300}}]}
    # What could not be read for the other replicas is said, in the file and on stderr.
    assert "# Not read for the replicas in other regions" in text
    assert "us-west-2: " in text and "PointInTimeRecoverySpecification" in text
    notes = export_notes(d, "cloudformation")
    assert any("AWS::DynamoDB::GlobalTable" in n and "us-west-2" in n for n in notes), notes
    assert not any("not part of the definition" in n for n in notes), notes
    assert any("sa-east-1" in n for n in notes), notes


def test_a_global_table_with_the_aws_managed_key_and_nothing_else_passes_cfn_lint() -> None:
    desc = global_describe()
    desc.pop("OnDemandThroughput")
    desc.pop("TableClassSummary")
    desc["GlobalSecondaryIndexes"][0].pop("OnDemandThroughput")
    desc["Replicas"] = [{"RegionName": "us-west-2", "ReplicaStatus": "ACTIVE"}]
    desc["SSEDescription"] = {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": KEY_EU}
    d = from_aws(desc, aws_managed_key=True)
    text = to_cloudformation(d)
    lint(text)
    p = yaml.safe_load(text)["Resources"]["OrdersTable"]["Properties"]
    assert p["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    assert p["Replicas"] == [{"Region": "eu-west-1", "DeletionProtectionEnabled": True}, {"Region": "us-west-2"}]


def test_a_replica_listed_with_the_region_read_from_is_one_replica() -> None:
    # Whether DescribeTable lists the region it answers in among the replicas or not, it is one replica.
    desc = global_describe()
    desc["Replicas"].insert(0, {"RegionName": "eu-west-1", "ReplicaStatus": "ACTIVE", "KMSMasterKeyId": KEY_EU})
    p = yaml.safe_load(to_cloudformation(read(desc)))["Resources"]["OrdersTable"]["Properties"]
    assert [r["Region"] for r in p["Replicas"]] == ["eu-west-1", "us-west-2", "ap-south-1"]


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(BillingModeSummary={"BillingMode": "PROVISIONED"},
                        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}),
     "PROVISIONED"),
    (lambda d: d.update(GlobalTableVersion="2017.11.29"), "2017.11.29"),
], ids=["provisioned", "legacy-version"])
def test_a_global_table_cloudformation_cannot_express_is_refused_not_exported_single_region(
        change: Any, words: str) -> None:
    desc = global_describe()
    change(desc)
    with pytest.raises(UsageError) as e:
        to_cloudformation(read(desc))
    assert words in e.value.message and "replicas" in e.value.message and "terraform" in e.value.message


def test_cdk_of_a_global_table_is_refused() -> None:
    # dynamodb.Table is AWS::DynamoDB::Table: `cdk import` would adopt one region's table alone.
    with pytest.raises(UsageError) as e:
        to_cdk(read(global_describe()))
    assert "global table" in e.value.message and "cloudformation" in e.value.message


def test_terraform_and_spec_of_a_global_table_keep_the_replicas_out_of_the_plan() -> None:
    d = read(global_describe())
    text = to_terraform(d)
    tf = hcl2.loads(text, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True,
                                                                          explicit_blocks=False))
    t = next(r["aws_dynamodb_table"] for r in tf["resource"] if "aws_dynamodb_table" in r)["orders"]
    assert "replica" in t["lifecycle"][0]["ignore_changes"]
    assert "# Global table replicas (us-west-2, ap-south-1) are not exported" in text
    # The spec (for create-table) is a single-region table's; the note says the replicas are not in it.
    assert "Replicas" not in yaml.safe_load(render(d, "spec"))
    assert any("not part of the definition" in n for n in export_notes(d, "spec"))


def test_a_single_region_table_is_still_an_aws_dynamodb_table() -> None:
    desc = copy.deepcopy(global_describe())
    desc.pop("Replicas")
    desc.pop("GlobalTableVersion")
    res = yaml.safe_load(to_cloudformation(read(desc)))["Resources"]["OrdersTable"]
    assert res["Type"] == "AWS::DynamoDB::Table" and "Replicas" not in res["Properties"]
