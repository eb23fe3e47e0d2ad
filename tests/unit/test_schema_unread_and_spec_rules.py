"""Two promises of the schema area, without I/O.

1. A setting that could not be read is never written as a value by any renderer: Terraform
   would otherwise apply "off" to a table whose setting is on (PITR read as access denied came out
   as ``point_in_time_recovery { enabled = false }``). A setting read as off may be written as off.
2. A spec that DynamoDB (and cfn-lint) refuse is refused before CreateTable, as one line naming
   the file and the field: an attribute defined twice, capacity on an on-demand table or index, a
   tag without a Value.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List

import cfnlint.api
import hcl2
import pytest
import yaml
from click.testing import CliRunner

from ddbmigrate.aws.tables import request_from_spec, spec_to_request
from ddbmigrate.cli import main
from ddbmigrate.errors import UsageError
from ddbmigrate.schema.model import TableDefinition, from_aws, normalize
from ddbmigrate.schema.render import FORMATS, render, to_cdk, to_cloudformation, to_terraform
from ddbmigrate.schema.spec import definition_from_spec

ACCT = "123456789012"
ARN = f"arn:aws:dynamodb:eu-west-1:{ACCT}:table/Orders"


def full() -> Dict[str, Any]:
    """Every setting that a call which can fail reports, set to something not the default."""
    return {
        "TableName": "Orders", "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "g", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                    "Projection": {"ProjectionType": "ALL"},
                                    "ContributorInsightsSpecification": {"Enabled": True}}],
        "StreamSpecification": {"StreamViewType": "NEW_IMAGE"},
        "TimeToLiveSpecification": {"AttributeName": "exp", "Enabled": True},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "DeletionProtectionEnabled": True,
        "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS"},
        "ContributorInsightsSpecification": {"Enabled": True},
        "ResourcePolicy": {"PolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"}, "Action": "dynamodb:GetItem",
            "Resource": ARN}]}},
        "KinesisStreamSpecification": {"StreamArn": f"arn:aws:kinesis:eu-west-1:{ACCT}:stream/s"},
        "Tags": [{"Key": "env", "Value": "prod"}],
    }


def unread_definition(setting: str) -> TableDefinition:
    """What the reader makes of ``full()`` when ``setting``'s call fails: absent, and said unread."""
    props = full()
    props.pop(setting)
    if setting == "ContributorInsightsSpecification":
        for g in props["GlobalSecondaryIndexes"]:
            g.pop(setting)
    return TableDefinition(props=normalize(props), unread={setting: "access denied to SomeCall"}, arn=ARN,
                           label="table Orders")


def tf_table(text: str) -> Dict[str, Any]:
    tf = hcl2.loads(text, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True,
                                                                          explicit_blocks=False))
    return dict(next(r["aws_dynamodb_table"] for r in tf["resource"] if "aws_dynamodb_table" in r)["orders"])


def tf_resources(text: str) -> List[str]:
    tf = hcl2.loads(text, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True,
                                                                          explicit_blocks=False))
    return sorted(k for r in tf["resource"] for k in r)


def ignored(table: Dict[str, Any]) -> List[str]:
    life = table["lifecycle"][0]
    return [str(x).strip("${}") for x in life.get("ignore_changes", [])]


# setting -> (its arguments of aws_dynamodb_table, its own Terraform resource, its CDK property)
WHERE = {
    "PointInTimeRecoverySpecification": (["point_in_time_recovery"], None, "pointInTimeRecovery"),
    "TimeToLiveSpecification": (["ttl"], None, "timeToLiveAttribute"),
    "Tags": (["tags"], None, "cdk.Tags.of(table)"),
    "DeletionProtectionEnabled": (["deletion_protection_enabled"], None, "deletionProtection"),
    "ContributorInsightsSpecification": ([], "aws_dynamodb_contributor_insights", "contributorInsights"),
    "ResourcePolicy": ([], "aws_dynamodb_resource_policy", "resourcePolicy"),
    "KinesisStreamSpecification": ([], "aws_dynamodb_kinesis_streaming_destination", "kinesisStream"),
}


@pytest.mark.parametrize("setting", sorted(WHERE))
def test_an_unread_setting_is_written_as_no_value_in_any_format(setting: str) -> None:
    args, resource, cdk_text = WHERE[setting]
    d = unread_definition(setting)
    # The same table with the setting read: every one of these is written somewhere.
    known = TableDefinition(props=normalize(full()), arn=ARN)
    t_known = tf_table(to_terraform(known))
    for a in args:
        assert a in t_known, a
    if resource:
        assert resource in tf_resources(to_terraform(known))
    assert cdk_text in to_cdk(known)

    tf = to_terraform(d)
    t = tf_table(tf)
    for a in args:
        assert a not in t, (a, t.get(a))
    # Left out is not enough for an argument the provider does not compute (tags, deletion
    # protection): ignore_changes keeps the table's own value.
    assert ignored(t) == args
    if resource:
        assert resource not in tf_resources(tf)
    assert f"#   {setting}: access denied to SomeCall" in tf
    cfn = to_cloudformation(d)
    props = next(iter(yaml.safe_load(cfn)["Resources"].values()))["Properties"]
    assert setting not in props
    assert not any(setting in g for g in props.get("GlobalSecondaryIndexes", []))
    assert f"#   {setting}: access denied to SomeCall" in cfn
    cdk = to_cdk(d)
    assert cdk_text not in cdk and f"//   {setting}: access denied to SomeCall" in cdk
    assert setting not in yaml.safe_load(render(d, "spec"))


def test_pitr_denied_is_not_rendered_as_disabled_the_reported_repro() -> None:
    """export --as terraform said "not exported: PointInTimeRecoverySpecification (access denied to
    DescribeContinuousBackups)" yet wrote ``point_in_time_recovery { enabled = false }``."""
    desc = {"TableName": "Orders", "TableArn": ARN, "DeletionProtectionEnabled": False,
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}}
    d = from_aws(desc, ttl={"TimeToLiveStatus": "DISABLED"}, tags=[], insights={None: {}},
                 unread={"PointInTimeRecoverySpecification": "access denied to DescribeContinuousBackups"})
    t = tf_table(to_terraform(d))
    assert "point_in_time_recovery" not in t
    assert ignored(t) == ["point_in_time_recovery"]
    assert t["deletion_protection_enabled"] is False  # read as off: written as off
    for fmt in FORMATS:
        text = render(d, fmt)
        assert "PointInTimeRecoveryEnabled: false" not in text and "pointInTimeRecoveryEnabled: false" not in text
    # The comment naming what was left out keeps the template valid.
    assert not cfnlint.api.lint(to_cloudformation(d), regions=["eu-west-1"])


def test_a_setting_read_as_off_is_written_as_off() -> None:
    desc = {"TableName": "Orders", "TableArn": ARN, "DeletionProtectionEnabled": False,
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}
    d = from_aws(desc, ttl={"TimeToLiveStatus": "DISABLED"}, tags=[], insights={None: {}},
                 backups={"PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": "DISABLED"}})
    assert d.unread == {}
    tf = to_terraform(d)
    t = tf_table(tf)
    assert t["point_in_time_recovery"][0] == {"enabled": False}
    assert t["server_side_encryption"][0] == {"enabled": False}
    assert t["deletion_protection_enabled"] is False
    assert "ignore_changes" not in t["lifecycle"][0] and "Not exported" not in tf
    assert "deletionProtection: false" in to_cdk(d)
    assert not to_cloudformation(d).startswith("#")


def test_deletion_protection_missing_from_describe_table_is_unread_not_off() -> None:
    desc = {"TableName": "Orders", "TableArn": ARN,
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}
    d = from_aws(desc, ttl={}, backups={}, tags=[], insights={None: {}})
    assert d.unread == {"DeletionProtectionEnabled": "DescribeTable did not report it"}
    t = tf_table(to_terraform(d))
    assert "deletion_protection_enabled" not in t and ignored(t) == ["deletion_protection_enabled"]
    assert "deletionProtection" not in to_cdk(d)


def test_every_unread_table_argument_at_once_is_one_ignore_changes_list() -> None:
    props = full()
    unread = {}
    for s in ("PointInTimeRecoverySpecification", "TimeToLiveSpecification", "Tags", "DeletionProtectionEnabled"):
        props.pop(s)
        unread[s] = "the endpoint does not support it"
    t = tf_table(to_terraform(TableDefinition(props=normalize(props), unread=unread, arn=ARN)))
    assert sorted(ignored(t)) == ["deletion_protection_enabled", "point_in_time_recovery", "tags", "ttl"]
    assert t["lifecycle"][0]["prevent_destroy"] is True


# ------------------------------------------------------------------ specs DynamoDB refuses


def spec(**over: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {
        "TableName": "App",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "g", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                    "Projection": {"ProjectionType": "ALL"}}],
    }
    base.update(over)
    return base


PT = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
GSI_PT = [{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
           "Projection": {"ProjectionType": "ALL"}, "ProvisionedThroughput": PT}]

REFUSED = [
    pytest.param(dict(AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                            {"AttributeName": "g", "AttributeType": "S"},
                                            {"AttributeName": "pk", "AttributeType": "N"}]),
                 "AttributeDefinitions[2].AttributeName 'pk' is also AttributeDefinitions[0]'s", id="attr-twice"),
    pytest.param(dict(AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                            {"AttributeName": "pk", "AttributeType": "S"},
                                            {"AttributeName": "g", "AttributeType": "S"}]),
                 "AttributeDefinitions[1].AttributeName 'pk'", id="attr-twice-same-type"),
    pytest.param(dict(BillingMode="PAY_PER_REQUEST", ProvisionedThroughput=PT),
                 "ProvisionedThroughput needs BillingMode PROVISIONED, not PAY_PER_REQUEST", id="ppr-with-capacity"),
    pytest.param(dict(ProvisionedThroughput=PT),
                 "BillingMode is not given: ddbmigrate's default is PAY_PER_REQUEST", id="no-mode-with-capacity"),
    pytest.param(dict(BillingMode="PAY_PER_REQUEST", GlobalSecondaryIndexes=GSI_PT),
                 "GlobalSecondaryIndexes[0].ProvisionedThroughput needs BillingMode PROVISIONED",
                 id="ppr-gsi-with-capacity"),
    pytest.param(dict(BillingMode="PROVISIONED"), "ProvisionedThroughput is required with BillingMode PROVISIONED",
                 id="provisioned-without-capacity"),
    pytest.param(dict(BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": 0,
                                                                        "WriteCapacityUnits": 5}),
                 "ProvisionedThroughput needs integer ReadCapacityUnits and WriteCapacityUnits >= 1",
                 id="provisioned-zero"),
    pytest.param(dict(BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": True,
                                                                        "WriteCapacityUnits": 5}),
                 "ProvisionedThroughput needs integer", id="provisioned-bool"),
]


@pytest.mark.parametrize("over,words", REFUSED)
def test_specs_dynamodb_refuses_are_refused_naming_the_file_and_field(over: Dict[str, Any], words: str) -> None:
    with pytest.raises(UsageError) as e:
        definition_from_spec(spec(**over), path="app.yaml")
    assert e.value.message.startswith("table spec app.yaml: ") and words in e.value.message, e.value.message
    assert "\n" not in e.value.message
    # The CreateTable core every spec user shares (ImportTable, plans, --target-spec) refuses it too.
    with pytest.raises(UsageError) as e2:
        request_from_spec(spec(**over), "app.yaml")
    assert words in e2.value.message


def test_provisioned_specs_still_pass_and_indexes_inherit_the_tables_capacity() -> None:
    req = spec_to_request(spec(BillingMode="PROVISIONED", ProvisionedThroughput=PT))
    assert req["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"] == PT
    req = spec_to_request(spec(BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": "3",
                                                                                 "WriteCapacityUnits": 4}))
    assert req["ProvisionedThroughput"] == {"ReadCapacityUnits": 3, "WriteCapacityUnits": 4}
    req = spec_to_request(spec(BillingMode="PAY_PER_REQUEST", ProvisionedThroughput=None))
    assert "ProvisionedThroughput" not in req


@pytest.mark.parametrize("tags,ok", [
    ([{"Key": "a"}], False),
    ([{"Key": "a", "Value": None}], False),
    ([{"Key": "a", "Value": ""}], True),
    ([{"Key": "a", "Value": "b"}], True),
])
def test_a_tag_needs_a_value_and_an_empty_one_is_a_value(tags: List[Dict[str, Any]], ok: bool) -> None:
    s = spec(Tags=copy.deepcopy(tags))
    if ok:
        assert definition_from_spec(s, path="app.yaml").props["Tags"] == [{"Key": "a", "Value": tags[0]["Value"]}]
        return
    with pytest.raises(UsageError) as e:
        definition_from_spec(s, path="app.yaml")
    assert e.value.message.startswith("table spec app.yaml: Tags[0].Value is required"), e.value.message


def test_a_tag_value_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(UsageError, match=r"Tags\[0\]\.Value must be a string"):
        definition_from_spec(spec(Tags=[{"Key": "a", "Value": 5}]), path="app.yaml")


@pytest.mark.parametrize("text,words", [
    ("AttributeDefinitions:\n  - {AttributeName: pk, AttributeType: S}\n  - {AttributeName: pk, AttributeType: N}\n"
     "KeySchema: [{AttributeName: pk, KeyType: HASH}]\n", "AttributeDefinitions[1].AttributeName 'pk'"),
    ("BillingMode: PAY_PER_REQUEST\nProvisionedThroughput: {ReadCapacityUnits: 1, WriteCapacityUnits: 1}\n"
     "AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\nKeySchema: [{AttributeName: pk, KeyType: HASH}]\n",
     "ProvisionedThroughput needs BillingMode PROVISIONED"),
    ("AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\nKeySchema: [{AttributeName: pk, KeyType: HASH}]\n"
     "Tags: [{Key: a}]\n", "Tags[0].Value is required"),
])
def test_create_table_refuses_before_any_call_with_exit_2(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("TableName: eee3\n" + text)
    # Nothing listens on port 9: a call to CreateTable would fail differently (exit 1, a connection error).
    r = CliRunner().invoke(main, ["create-table", "--spec", str(path), "--endpoint-url", "http://127.0.0.1:9",
                                  "--region", "us-east-1"])
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    err = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(err) == 1 and f"table spec {path}: " in err[0] and words in err[0], r.stderr
    assert "created table" not in r.stdout
