"""Table definitions without I/O: normalizing, spec checking, diff, policy and key rules, renderers.

The renderers' outputs are checked by the tools that read them: cfn-lint for CloudFormation,
python-hcl2 for Terraform (parsed, then every documented attribute and block looked up).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import cfnlint.api
import hcl2
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddbmigrate.errors import UsageError
from ddbmigrate.schema.apply import CreateResult, foreign_key_reason, rewrite_policy
from ddbmigrate.schema.diff import diff_definitions
from ddbmigrate.schema.model import TableDefinition, create_request, from_aws, normalize
from ddbmigrate.schema.render import export_notes, render, to_cdk, to_cloudformation, to_terraform
from ddbmigrate.schema.spec import definition_from_spec

ACCT = "123456789012"
ARN = f"arn:aws:dynamodb:eu-west-1:{ACCT}:table/Orders"


def every_setting() -> Dict[str, Any]:
    """A spec with every setting of AWS::DynamoDB::Table that ddbmigrate carries (compact form)."""
    return {
        "TableName": "Orders",
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "N"},
                                 {"AttributeName": "gpk", "AttributeType": "B"},
                                 {"AttributeName": "lsk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "OnDemandThroughput": {"MaxReadRequestUnits": 500, "MaxWriteRequestUnits": 200},
        "WarmThroughput": {"ReadUnitsPerSecond": 20000, "WriteUnitsPerSecond": 8000},
        "GlobalSecondaryIndexes": [{
            "IndexName": "byGroup",
            "KeySchema": [{"AttributeName": "gpk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["a", "b"]},
            "OnDemandThroughput": {"MaxReadRequestUnits": 100, "MaxWriteRequestUnits": 50},
            "WarmThroughput": {"ReadUnitsPerSecond": 13000, "WriteUnitsPerSecond": 5000},
            "ContributorInsightsSpecification": {"Enabled": True}}],
        "LocalSecondaryIndexes": [{"IndexName": "byLsk", "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "lsk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"}}],
        "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
        "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": 10},
        "DeletionProtectionEnabled": True,
        "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS",
                             "KMSMasterKeyId": f"arn:aws:kms:eu-west-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
        "TableClass": "STANDARD_INFREQUENT_ACCESS",
        "ContributorInsightsSpecification": {"Enabled": True, "Mode": "THROTTLED_KEYS"},
        "ResourcePolicy": {"PolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:role/reader"},
            "Action": "dynamodb:GetItem", "Resource": ARN}]}},
        "KinesisStreamSpecification": {"StreamArn": f"arn:aws:kinesis:eu-west-1:{ACCT}:stream/orders",
                                       "ApproximateCreationDateTimePrecision": "MICROSECOND"},
        "Tags": [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "orders ${not-interpolated}"}],
    }


def parse_hcl(text: str) -> Dict[str, Any]:
    """Terraform text as python-hcl2 reads it (string quotes stripped, blocks as lists)."""
    return dict(hcl2.loads(text, serialization_options=hcl2.SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False)))


def defn(spec: Dict[str, Any]) -> TableDefinition:
    return definition_from_spec(spec)


# ------------------------------------------------------------------ normalize and specs


def test_every_setting_spec_is_already_canonical_and_round_trips_through_yaml() -> None:
    spec = every_setting()
    assert normalize(spec) == spec
    d = defn(spec)
    assert d.props == spec
    again = definition_from_spec(yaml.safe_load(render(d, "spec")))
    assert again.props == spec


def test_defaults_written_out_normalize_away() -> None:
    spec = {
        "TableName": "T", "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "DeletionProtectionEnabled": False, "TableClass": "STANDARD", "Tags": [],
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": 35},
        "SSESpecification": {"SSEEnabled": False}, "ContributorInsightsSpecification": {"Enabled": False},
        "TimeToLiveSpecification": {"AttributeName": "x", "Enabled": False},
        "OnDemandThroughput": {"MaxReadRequestUnits": -1, "MaxWriteRequestUnits": -1},
        "WarmThroughput": {"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 4000},
    }
    assert defn(spec).props == {
        "TableName": "T", "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789_.-", min_size=3, max_size=12)


@st.composite
def definitions(draw: Any) -> Dict[str, Any]:
    provisioned = draw(st.booleans())
    attrs = draw(st.lists(names, min_size=4, max_size=4, unique=True))
    types = draw(st.lists(st.sampled_from("SNB"), min_size=4, max_size=4))
    spec: Dict[str, Any] = {"TableName": draw(names), "BillingMode": "PROVISIONED" if provisioned else "PAY_PER_REQUEST"}
    with_range = draw(st.booleans())
    keys = [{"AttributeName": attrs[0], "KeyType": "HASH"}] + (
        [{"AttributeName": attrs[1], "KeyType": "RANGE"}] if with_range else [])
    used = [a["AttributeName"] for a in keys]
    units = st.integers(1, 40000)
    if provisioned:
        spec["ProvisionedThroughput"] = {"ReadCapacityUnits": draw(units), "WriteCapacityUnits": draw(units)}
    elif draw(st.booleans()):
        spec["OnDemandThroughput"] = {"MaxReadRequestUnits": draw(units), "MaxWriteRequestUnits": draw(units)}
    gsis = []
    for i in range(draw(st.integers(0, 2))):
        g: Dict[str, Any] = {"IndexName": f"gsi{i}", "KeySchema": [{"AttributeName": attrs[2 + i], "KeyType": "HASH"}]}
        ptype = draw(st.sampled_from(["ALL", "KEYS_ONLY", "INCLUDE"]))
        g["Projection"] = {"ProjectionType": ptype}
        if ptype == "INCLUDE":
            g["Projection"]["NonKeyAttributes"] = sorted(draw(st.lists(names, min_size=1, max_size=3, unique=True)))
        if provisioned:
            g["ProvisionedThroughput"] = {"ReadCapacityUnits": draw(units), "WriteCapacityUnits": draw(units)}
        if draw(st.booleans()):
            g["ContributorInsightsSpecification"] = {"Enabled": True}
        used.append(attrs[2 + i])
        gsis.append(g)
    spec["AttributeDefinitions"] = [{"AttributeName": a, "AttributeType": types[attrs.index(a)]} for a in used]
    spec["KeySchema"] = keys
    if draw(st.booleans()):
        spec["WarmThroughput"] = {"ReadUnitsPerSecond": draw(st.integers(12001, 90000)),
                                  "WriteUnitsPerSecond": draw(st.integers(4001, 90000))}
    if gsis:
        spec["GlobalSecondaryIndexes"] = gsis
    if draw(st.booleans()):
        spec["StreamSpecification"] = {"StreamViewType": draw(st.sampled_from(
            ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]))}
    if draw(st.booleans()):
        spec["TimeToLiveSpecification"] = {"AttributeName": draw(names), "Enabled": True}
    if draw(st.booleans()):
        spec["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True,
                                                    "RecoveryPeriodInDays": draw(st.integers(1, 34))}
    if draw(st.booleans()):
        spec["DeletionProtectionEnabled"] = True
    if draw(st.booleans()):
        spec["SSESpecification"] = {"SSEEnabled": True, "SSEType": "KMS"}
    if draw(st.booleans()):
        spec["TableClass"] = "STANDARD_INFREQUENT_ACCESS"
    if draw(st.booleans()):
        spec["ContributorInsightsSpecification"] = {"Enabled": True}
    tags = draw(st.dictionaries(names, st.text(max_size=20), max_size=3))
    if tags:
        spec["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    return spec


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definitions())
def test_spec_export_round_trips_and_normalize_is_idempotent(spec: Dict[str, Any]) -> None:
    d = defn(spec)
    assert normalize(d.props) == d.props
    assert d.props == spec  # the generator writes the canonical form
    assert definition_from_spec(yaml.safe_load(render(d, "spec"))).props == d.props
    # The CreateTable request carries what CreateTable takes.
    req = create_request(d.props)
    assert req["KeySchema"] == spec["KeySchema"] and req["BillingMode"] == spec["BillingMode"]
    assert req.get("DeletionProtectionEnabled", False) == spec.get("DeletionProtectionEnabled", False)
    assert all("ContributorInsightsSpecification" not in g for g in req.get("GlobalSecondaryIndexes", []))
    # CloudFormation carries the properties unchanged; Terraform parses whatever the definition holds.
    template = yaml.safe_load(to_cloudformation(d))
    assert next(iter(template["Resources"].values()))["Properties"] == d.props
    tf = parse_hcl(to_terraform(d))
    assert next(iter(tf["resource"][0]["aws_dynamodb_table"].values()))["name"] == spec["TableName"]


@pytest.mark.parametrize("value", ["\x85", "x\x85y", "a\u2028b", "\u2029", "é \u2028"])
def test_a_tag_value_with_a_unicode_line_break_survives_spec_and_cloudformation(value: str) -> None:
    """PyYAML writes NEL and the Unicode line and paragraph separators raw inside single quotes,
    and reads them back as line breaks: hypothesis found a tag value "\x85" read back as " "."""
    spec = {"TableName": "orders", "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "Tags": [{"Key": "note", "Value": value}]}
    d = defn(spec)
    assert definition_from_spec(yaml.safe_load(render(d, "spec"))).props["Tags"] == [{"Key": "note", "Value": value}]
    template = yaml.safe_load(to_cloudformation(d))
    assert next(iter(template["Resources"].values()))["Properties"]["Tags"] == [{"Key": "note", "Value": value}]


@pytest.mark.parametrize("mutate,field", [
    (lambda s: s.update(DeletionProtectionEnabled="yes"), "DeletionProtectionEnabled"),
    (lambda s: s["PointInTimeRecoverySpecification"].update(RecoveryPeriodInDays=36), "RecoveryPeriodInDays"),
    (lambda s: s["SSESpecification"].update(SSEType="AES256"), "SSESpecification.SSEType"),
    (lambda s: s.update(TableClass="COLD"), "TableClass"),
    (lambda s: s["Tags"].append({"Key": "env", "Value": "dup"}), "Tags[2].Key"),
    (lambda s: s["ContributorInsightsSpecification"].update(Mode="ALL"), "ContributorInsightsSpecification.Mode"),
    (lambda s: s.update(ResourcePolicy={"PolicyDocument": "{not json"}), "ResourcePolicy.PolicyDocument"),
    (lambda s: s["KinesisStreamSpecification"].update(StreamArn="orders"), "KinesisStreamSpecification.StreamArn"),
    (lambda s: s["GlobalSecondaryIndexes"][0]["WarmThroughput"].update(ReadUnitsPerSecond=0),
     "GlobalSecondaryIndexes[0].WarmThroughput.ReadUnitsPerSecond"),
    (lambda s: s.update(BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": 1,
                                                                          "WriteCapacityUnits": 1}),
     "OnDemandThroughput needs BillingMode PAY_PER_REQUEST"),
    (lambda s: s["PointInTimeRecoverySpecification"].update(Enabled=True), "PointInTimeRecoverySpecification.Enabled"),
    # "false" is a non-empty string: read as true, it would have turned TTL on.
    (lambda s: s["TimeToLiveSpecification"].update(Enabled="false"), "TimeToLiveSpecification.Enabled"),
    (lambda s: s.update(TimeToLiveSpecification=True), "TimeToLiveSpecification must be a mapping"),
    (lambda s: s["TimeToLiveSpecification"].update(AttributeName=5), "TimeToLiveSpecification.AttributeName"),
    (lambda s: s["TimeToLiveSpecification"].update(Bogus=1), "TimeToLiveSpecification.Bogus"),
    (lambda s: s["TimeToLiveSpecification"].pop("AttributeName"), "TimeToLiveSpecification.AttributeName"),
])
def test_bad_settings_name_the_file_and_field(mutate: Callable[[Dict[str, Any]], None], field: str) -> None:
    spec = every_setting()
    mutate(spec)
    with pytest.raises(UsageError) as e:
        definition_from_spec(spec, path="orders.yaml")
    assert "orders.yaml" in e.value.message and field in e.value.message, e.value.message


# ------------------------------------------------------------------ DescribeTable & co -> definition


def test_from_aws_reads_every_answer_and_drops_what_a_table_is_not() -> None:
    desc = {
        "TableName": "Orders", "TableArn": ARN, "TableStatus": "ACTIVE", "ItemCount": 7, "TableSizeBytes": 100,
        "AttributeDefinitions": [{"AttributeName": "sk", "AttributeType": "N"},
                                 {"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "sk", "KeyType": "RANGE"}, {"AttributeName": "pk", "KeyType": "HASH"}],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0, "NumberOfDecreasesToday": 0},
        "OnDemandThroughput": {"MaxReadRequestUnits": -1, "MaxWriteRequestUnits": 900},
        "WarmThroughput": {"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 4000, "Status": "ACTIVE"},
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
        "LatestStreamArn": ARN + "/stream/x",
        "SSEDescription": {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": "arn:aws:kms:eu-west-1:1:key/k"},
        "TableClassSummary": {"TableClass": "STANDARD_INFREQUENT_ACCESS"},
        "DeletionProtectionEnabled": True,
        "Replicas": [{"RegionName": "us-west-2"}],
    }
    d = from_aws(
        desc,
        ttl={"TimeToLiveStatus": "ENABLED", "AttributeName": "exp"},
        backups={"ContinuousBackupsStatus": "ENABLED", "PointInTimeRecoveryDescription": {
            "PointInTimeRecoveryStatus": "ENABLED", "RecoveryPeriodInDays": 35}},
        tags=[{"Key": "b", "Value": "2"}, {"Key": "aws:cloudformation:stack-name", "Value": "s"}, {"Key": "a", "Value": "1"}],
        insights={None: {"ContributorInsightsStatus": "ENABLED", "ContributorInsightsMode": "THROTTLED_KEYS"}},
        policy=json.dumps({"Version": "2012-10-17", "Statement": []}),
        kinesis=[{"StreamArn": "arn:aws:kinesis:eu-west-1:1:stream/s", "DestinationStatus": "ACTIVE",
                  "ApproximateCreationDateTimePrecision": "MILLISECOND"},
                 {"StreamArn": "arn:aws:kinesis:eu-west-1:1:stream/old", "DestinationStatus": "DISABLED"}],
    )
    assert d.arn == ARN
    assert d.props == {
        "TableName": "Orders", "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "N"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "OnDemandThroughput": {"MaxWriteRequestUnits": 900},
        "StreamSpecification": {"StreamViewType": "KEYS_ONLY"},
        "TimeToLiveSpecification": {"AttributeName": "exp", "Enabled": True},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "DeletionProtectionEnabled": True,
        "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": "arn:aws:kms:eu-west-1:1:key/k"},
        "TableClass": "STANDARD_INFREQUENT_ACCESS",
        "ContributorInsightsSpecification": {"Enabled": True, "Mode": "THROTTLED_KEYS"},
        "ResourcePolicy": {"PolicyDocument": {"Version": "2012-10-17", "Statement": []}},
        "KinesisStreamSpecification": {"StreamArn": "arn:aws:kinesis:eu-west-1:1:stream/s"},
        "Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}],
    }
    assert any("aws:cloudformation:stack-name" in n for n in d.notes)
    assert any("us-west-2" in n for n in d.notes)


# ------------------------------------------------------------------ diff: every setting, one side changed


def _gsi(s: Dict[str, Any]) -> Dict[str, Any]:
    return dict(s["GlobalSecondaryIndexes"][0])


MUTATIONS: List[Any] = [
    ("BillingMode", lambda s: (s.update(BillingMode="PROVISIONED", ProvisionedThroughput={
        "ReadCapacityUnits": 5, "WriteCapacityUnits": 5}), s.pop("OnDemandThroughput"),
        s["GlobalSecondaryIndexes"][0].pop("OnDemandThroughput")),
     {"BillingMode", "ProvisionedThroughput", "OnDemandThroughput", "GlobalSecondaryIndexes[byGroup].OnDemandThroughput",
      "GlobalSecondaryIndexes[byGroup].ProvisionedThroughput"}),
    ("OnDemandThroughput", lambda s: s.update(OnDemandThroughput={"MaxReadRequestUnits": 501}), None),
    ("WarmThroughput", lambda s: s.pop("WarmThroughput"), None),
    ("AttributeDefinitions", lambda s: s["AttributeDefinitions"][2].update(AttributeType="S"), None),
    # The RANGE key: an LSI shares the table's HASH key (DynamoDB refuses the spec otherwise, and so
    # does spec_to_request), so the HASH key cannot change alone.
    ("KeySchema", lambda s: s["KeySchema"][1].update(AttributeName="lsk"), {"KeySchema", "AttributeDefinitions"}),
    ("StreamSpecification", lambda s: s.update(StreamSpecification={"StreamViewType": "NEW_IMAGE"}), None),
    ("StreamSpecification", lambda s: s.pop("StreamSpecification"), None),
    ("TimeToLiveSpecification", lambda s: s.pop("TimeToLiveSpecification"), None),
    ("TimeToLiveSpecification", lambda s: s["TimeToLiveSpecification"].update(AttributeName="ttl"), None),
    ("PointInTimeRecoverySpecification", lambda s: s.pop("PointInTimeRecoverySpecification"), None),
    ("PointInTimeRecoverySpecification",
     lambda s: s["PointInTimeRecoverySpecification"].update(RecoveryPeriodInDays=35), None),
    ("DeletionProtectionEnabled", lambda s: s.pop("DeletionProtectionEnabled"), None),
    ("SSESpecification", lambda s: s.pop("SSESpecification"), None),
    ("SSESpecification", lambda s: s["SSESpecification"].pop("KMSMasterKeyId"), None),
    ("TableClass", lambda s: s.pop("TableClass"), None),
    ("ContributorInsightsSpecification", lambda s: s.pop("ContributorInsightsSpecification"), None),
    ("ContributorInsightsSpecification", lambda s: s["ContributorInsightsSpecification"].pop("Mode"), None),
    ("ResourcePolicy", lambda s: s["ResourcePolicy"]["PolicyDocument"]["Statement"][0].update(Effect="Deny"), None),
    ("ResourcePolicy", lambda s: s.pop("ResourcePolicy"), None),
    ("KinesisStreamSpecification", lambda s: s.pop("KinesisStreamSpecification"), None),
    ("KinesisStreamSpecification",
     lambda s: s["KinesisStreamSpecification"].pop("ApproximateCreationDateTimePrecision"), None),
    ("Tags", lambda s: s["Tags"].pop(), None),
    ("Tags", lambda s: s["Tags"][0].update(Value="dev"), None),
    ("GlobalSecondaryIndexes[byGroup].Projection",
     lambda s: s["GlobalSecondaryIndexes"][0]["Projection"]["NonKeyAttributes"].append("c"), None),
    ("GlobalSecondaryIndexes[byGroup].KeySchema", lambda s: s["GlobalSecondaryIndexes"][0]["KeySchema"].pop(), None),
    ("GlobalSecondaryIndexes[byGroup].OnDemandThroughput",
     lambda s: s["GlobalSecondaryIndexes"][0]["OnDemandThroughput"].update(MaxWriteRequestUnits=51), None),
    ("GlobalSecondaryIndexes[byGroup].WarmThroughput", lambda s: s["GlobalSecondaryIndexes"][0].pop("WarmThroughput"),
     None),
    ("GlobalSecondaryIndexes[byGroup].ContributorInsightsSpecification",
     lambda s: s["GlobalSecondaryIndexes"][0].pop("ContributorInsightsSpecification"), None),
    ("GlobalSecondaryIndexes[byNew]", lambda s: s["GlobalSecondaryIndexes"].append(
        dict(_gsi(s), IndexName="byNew")), None),
    ("LocalSecondaryIndexes[byLsk].Projection",
     lambda s: s["LocalSecondaryIndexes"][0].update(Projection={"ProjectionType": "ALL"}), None),
]


@pytest.mark.parametrize("setting,mutate,expected", MUTATIONS, ids=[f"{i}-{m[0]}" for i, m in enumerate(MUTATIONS)])
def test_diff_finds_each_setting_changed_on_one_side(setting: str, mutate: Any, expected: Any) -> None:
    a = every_setting()
    b = copy.deepcopy(a)
    mutate(b)
    b["TableName"] = "OtherName"  # names are never compared
    for x, y in ((a, b), (b, a)):
        d = diff_definitions(defn(x), defn(y))
        assert d.exit_code == 4
        assert {s.setting for s in d.differences} == (expected or {setting})
    assert diff_definitions(defn(a), defn(dict(copy.deepcopy(a), TableName="Z"))).exit_code == 0


def test_unread_settings_are_not_compared_and_said() -> None:
    a, b = defn(every_setting()), defn(every_setting())
    b.props.pop("Tags")
    b.unread["Tags"] = "the endpoint does not support ListTagsOfResource"
    d = diff_definitions(a, b)
    assert d.exit_code == 0 and d.not_compared == [("Tags", "B: the endpoint does not support ListTagsOfResource")]


# ------------------------------------------------------------------ cross-account rules


def test_foreign_kms_keys_are_refused_with_the_reason() -> None:
    key = "arn:aws:kms:eu-west-1:111122223333:key/abc"
    assert "111122223333" in str(foreign_key_reason(key, "eu-west-1", ACCT))
    assert "regional" in str(foreign_key_reason(key, "us-east-1", "111122223333"))
    assert foreign_key_reason(key, "eu-west-1", "111122223333") is None
    assert foreign_key_reason("alias/orders", "eu-west-1", ACCT) is None


def test_resource_policy_rewritten_for_the_target_table_and_account() -> None:
    src = f"arn:aws:dynamodb:eu-west-1:{ACCT}:table/Orders"
    dst = "arn:aws:dynamodb:eu-west-1:999988887777:table/OrdersCopy"
    doc = {"Statement": [{"Principal": {"AWS": [f"arn:aws:iam::{ACCT}:role/app", ACCT, "arn:aws:iam::555:root"]},
                          "Resource": [src, src + "/index/*", f"arn:aws:dynamodb:eu-west-1:{ACCT}:table/OrdersOld"]}]}
    got, changes = rewrite_policy(doc, src, dst)
    st_ = got["Statement"][0]
    assert st_["Resource"] == [dst, dst + "/index/*", "arn:aws:dynamodb:eu-west-1:999988887777:table/OrdersOld"]
    assert st_["Principal"]["AWS"] == ["arn:aws:iam::999988887777:role/app", "999988887777", "arn:aws:iam::555:root"]
    assert len(changes) == 2
    same, changes = rewrite_policy(doc, None, dst)
    assert same == doc and changes == []


def test_create_result_groups_unsupported_apis_in_one_line() -> None:
    r = CreateResult(table="T", description={}, not_applied=[
        ("Tags", "not read from table S: the endpoint does not support ListTagsOfResource"),
        ("ResourcePolicy", "not read from table S: the endpoint does not support GetResourcePolicy"),
        ("TableClass", "asked for STANDARD_INFREQUENT_ACCESS, the new table has STANDARD")])
    lines = r.setting_lines()
    assert lines[0] == "not applied: Tags, ResourcePolicy: not read from table S: the endpoint does not support their APIs"
    assert lines[1].startswith("not applied: TableClass: asked for")
    one = CreateResult(table="T", description={}, not_applied=[
        ("PointInTimeRecoverySpecification", "not read from table S: the endpoint does not support "
                                             "DescribeContinuousBackups")])
    assert one.setting_lines() == ["not applied: PointInTimeRecoverySpecification: not read from table S: the "
                                   "endpoint does not support its API"]


# ------------------------------------------------------------------ renderers


def test_cloudformation_passes_cfn_lint() -> None:
    prov = every_setting()
    prov.update(BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    prov.pop("OnDemandThroughput")
    prov["GlobalSecondaryIndexes"][0].pop("OnDemandThroughput")
    prov["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"] = {"ReadCapacityUnits": 3, "WriteCapacityUnits": 2}
    for i, spec in enumerate((every_setting(), prov)):
        text = to_cloudformation(defn(spec))
        t = yaml.safe_load(text)
        res = t["Resources"]["OrdersTable"]
        assert res["Type"] == "AWS::DynamoDB::Table"
        assert res["DeletionPolicy"] == "Retain" and res["UpdateReplacePolicy"] == "Retain"
        assert res["Properties"] == spec
        # Every rule, warnings and informational ones included: nothing at all may be reported.
        matches = cfnlint.api.lint(text, regions=["eu-west-1", "us-east-1"],
                                   config=cfnlint.api.ManualArgs(include_checks=["I"]))
        assert not matches, [str(m) for m in matches]


def test_cloudformation_of_a_table_with_a_255_character_name_passes_cfn_lint() -> None:
    # The longest table name DynamoDB takes: the logical id made of it must still fit in 255.
    spec = {"TableName": "o" * 255, "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}
    text = to_cloudformation(defn(spec))
    (res_id, res), = yaml.safe_load(text)["Resources"].items()
    assert res["Properties"]["TableName"] == "o" * 255 and res_id.endswith("Table")
    matches = cfnlint.api.lint(text, regions=["us-east-1"], config=cfnlint.api.ManualArgs(include_checks=["I"]))
    assert not matches, [str(m) for m in matches]


def test_terraform_has_the_documented_attributes_and_blocks() -> None:
    tf = parse_hcl(to_terraform(defn(every_setting())))
    imports = {i["to"].strip("${}"): i["id"] for i in tf["import"]}
    tables = [r["aws_dynamodb_table"] for r in tf["resource"] if "aws_dynamodb_table" in r]
    t = tables[0]["orders"]
    assert imports["aws_dynamodb_table.orders"] == "Orders"
    assert (t["name"], t["billing_mode"], t["hash_key"], t["range_key"]) == ("Orders", "PAY_PER_REQUEST", "pk", "sk")
    assert t["deletion_protection_enabled"] is True and t["table_class"] == "STANDARD_INFREQUENT_ACCESS"
    assert t["stream_enabled"] is True and t["stream_view_type"] == "NEW_AND_OLD_IMAGES"
    assert [(a["name"], a["type"]) for a in t["attribute"]] == [("pk", "S"), ("sk", "N"), ("gpk", "B"), ("lsk", "S")]
    g = t["global_secondary_index"][0]
    assert (g["name"], g["hash_key"], g["range_key"], g["projection_type"], g["non_key_attributes"]) == \
        ("byGroup", "gpk", "sk", "INCLUDE", ["a", "b"])
    assert g["on_demand_throughput"][0] == {"max_read_request_units": 100, "max_write_request_units": 50}
    assert g["warm_throughput"][0] == {"read_units_per_second": 13000, "write_units_per_second": 5000}
    lsi = t["local_secondary_index"][0]
    assert (lsi["name"], lsi["range_key"], lsi["projection_type"]) == ("byLsk", "lsk", "KEYS_ONLY")
    assert t["ttl"][0] == {"attribute_name": "expiresAt", "enabled": True}
    assert t["point_in_time_recovery"][0] == {"enabled": True, "recovery_period_in_days": 10}
    assert t["server_side_encryption"][0]["enabled"] is True
    assert t["server_side_encryption"][0]["kms_key_arn"].startswith("arn:aws:kms:eu-west-1:")
    assert t["on_demand_throughput"][0] == {"max_read_request_units": 500, "max_write_request_units": 200}
    assert t["warm_throughput"][0] == {"read_units_per_second": 20000, "write_units_per_second": 8000}
    assert t["tags"] == {"env": "prod", "team": "orders $${not-interpolated}"}  # hcl2 keeps the escape as written
    assert t["lifecycle"][0]["prevent_destroy"] is True
    kinds = {k for r in tf["resource"] for k in r}
    assert kinds == {"aws_dynamodb_table", "aws_dynamodb_resource_policy", "aws_dynamodb_contributor_insights",
                     "aws_dynamodb_kinesis_streaming_destination"}
    assert imports["aws_dynamodb_kinesis_streaming_destination.orders"] == \
        f"Orders,arn:aws:kinesis:eu-west-1:{ACCT}:stream/orders"
    assert "aws_dynamodb_contributor_insights.orders_bygroup" in imports
    ci = [r["aws_dynamodb_contributor_insights"] for r in tf["resource"] if "aws_dynamodb_contributor_insights" in r]
    assert {next(iter(c)) for c in ci} == {"orders", "orders_bygroup"}


def test_terraform_names_contributor_insights_of_look_alike_indexes_apart() -> None:
    # by.email, by_email and By_Email are three indexes, and one Terraform name unless told apart.
    spec = every_setting()
    g = spec["GlobalSecondaryIndexes"][0]
    spec["GlobalSecondaryIndexes"] = [dict(copy.deepcopy(g), IndexName=n) for n in ("by.email", "by_email", "By_Email")]
    tf = parse_hcl(to_terraform(defn(spec)))
    ci = [next(iter(r["aws_dynamodb_contributor_insights"].items())) for r in tf["resource"]
          if "aws_dynamodb_contributor_insights" in r]
    labels = [label for label, _ in ci]
    assert len(set(labels)) == len(labels) == 4, labels
    assert sorted(body.get("index_name", "") for _, body in ci) == ["", "By_Email", "by.email", "by_email"]
    imports = sorted(i["to"].strip("${}") for i in tf["import"] if "contributor_insights" in i["to"])
    assert imports == sorted(f"aws_dynamodb_contributor_insights.{label}" for label in labels)


def test_terraform_provisioned_capacity() -> None:
    spec = every_setting()
    spec.update(BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 6})
    spec.pop("OnDemandThroughput")
    spec["GlobalSecondaryIndexes"][0].pop("OnDemandThroughput")
    spec["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"] = {"ReadCapacityUnits": 3, "WriteCapacityUnits": 2}
    t = [r["aws_dynamodb_table"] for r in parse_hcl(to_terraform(defn(spec)))["resource"]
         if "aws_dynamodb_table" in r][0]["orders"]
    assert (t["read_capacity"], t["write_capacity"]) == (5, 6)
    g = t["global_secondary_index"][0]
    assert (g["read_capacity"], g["write_capacity"]) == (3, 2)


def test_terraform_keeps_a_global_tables_replicas() -> None:
    # The provider reads replicas into `replica`: an export without it planned them away, and
    # `terraform apply` deleted the replica tables.
    desc = {"TableName": "Orders", "TableArn": ARN, "DeletionProtectionEnabled": False,
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            "Replicas": [{"RegionName": "us-west-2"}, {"RegionName": "ap-south-1"}]}
    text = to_terraform(from_aws(desc))
    t = [r["aws_dynamodb_table"] for r in parse_hcl(text)["resource"] if "aws_dynamodb_table" in r][0]["orders"]
    assert "replica" not in t
    assert t["lifecycle"][0]["ignore_changes"] == ["replica"]
    assert "# Global table replicas (us-west-2, ap-south-1) are not exported" in text
    desc.pop("Replicas")
    assert "ignore_changes" not in parse_hcl(to_terraform(from_aws(desc)))["resource"][0]["aws_dynamodb_table"][
        "orders"]["lifecycle"][0]


def test_an_index_being_deleted_is_not_part_of_the_definition() -> None:
    # It was cloned onto a new table, and exported for Terraform to re-create after its deletion.
    gsi = {"KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}}
    desc = {"TableName": "Orders", "TableArn": ARN, "TableStatus": "UPDATING", "DeletionProtectionEnabled": False,
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "g", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            "GlobalSecondaryIndexes": [dict(gsi, IndexName="byOld", IndexStatus="DELETING"),
                                       dict(gsi, IndexName="byNew", IndexStatus="CREATING", Backfilling=True)]}
    d = from_aws(desc)
    assert [g["IndexName"] for g in d.props["GlobalSecondaryIndexes"]] == ["byNew"]
    assert "index byOld is being deleted: left out of the definition" in d.notes
    assert "byOld" not in to_terraform(d) and "byOld" not in json.dumps(create_request(d.props))


@pytest.mark.parametrize("key", ["alias/orders-key", "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"])
def test_a_spec_naming_its_kms_key_by_alias_or_id_converts_to_terraform_and_cdk(key: str) -> None:
    # kms_key_arn and kms.Key.fromKeyArn take only an ARN: the key was written as given, which
    # `terraform validate` and `cdk synth` refuse.
    spec = every_setting()
    spec["SSESpecification"]["KMSMasterKeyId"] = key
    tf = parse_hcl(to_terraform(defn(spec)))
    t = [r["aws_dynamodb_table"] for r in tf["resource"] if "aws_dynamodb_table" in r][0]["orders"]
    assert t["server_side_encryption"][0] == {"enabled": True, "kms_key_arn": "${data.aws_kms_key.orders.arn}"}
    assert tf["data"] == [{"aws_kms_key": {"orders": {"key_id": key}}}]
    ts = to_cdk(defn(spec))
    assert "kms.Key.fromKeyArn(this, 'TableKey', \"" not in ts
    assert (f"kms.Alias.fromAliasName(this, 'TableKey', \"{key}\")" if key.startswith("alias/") else
            f"this.formatArn({{ service: 'kms', resource: 'key', resourceName: \"{key}\" }})") in ts


def test_cdk_snippet_carries_every_setting() -> None:
    ts = to_cdk(defn(every_setting()))
    for needle in (
        "new dynamodb.Table(this, \"OrdersTable\"", "tableName: \"Orders\"",
        "partitionKey: { name: \"pk\", type: dynamodb.AttributeType.STRING }",
        "sortKey: { name: \"sk\", type: dynamodb.AttributeType.NUMBER }",
        "billingMode: dynamodb.BillingMode.PAY_PER_REQUEST", "maxReadRequestUnits: 500",
        "warmThroughput: { readUnitsPerSecond: 20000, writeUnitsPerSecond: 8000 }",
        "stream: dynamodb.StreamViewType.NEW_AND_OLD_IMAGES", "timeToLiveAttribute: \"expiresAt\"",
        "pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true, recoveryPeriodInDays: 10 }",
        "deletionProtection: true", "encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED", "kms.Key.fromKeyArn(",
        "tableClass: dynamodb.TableClass.STANDARD_INFREQUENT_ACCESS",
        "contributorInsightsSpecification: { enabled: true, mode: dynamodb.ContributorInsightsMode.THROTTLED_KEYS }",
        "resourcePolicy: iam.PolicyDocument.fromJson(", "kinesis.Stream.fromStreamArn(",
        "removalPolicy: cdk.RemovalPolicy.RETAIN", "table.addGlobalSecondaryIndex({ indexName: \"byGroup\"",
        "nonKeyAttributes: [\"a\", \"b\"]", "table.addLocalSecondaryIndex({ indexName: \"byLsk\"",
        "cdk.Tags.of(table).add(\"env\", \"prod\")",
        "import * as kinesis from 'aws-cdk-lib/aws-kinesis';",
    ):
        assert needle in ts, needle
    assert ts.count("{") == ts.count("}") and ts.count("(") == ts.count(")")


def test_export_notes_say_what_was_left_out() -> None:
    d = TableDefinition(props=normalize(every_setting()), unread={"Tags": "access denied to ListTagsOfResource"},
                        notes=["global table replicas (us-west-2) are not part of the definition"])
    assert export_notes(d) == ["not exported: Tags (access denied to ListTagsOfResource)",
                               "note: global table replicas (us-west-2) are not part of the definition"]
    with pytest.raises(UsageError, match="unknown export format"):
        render(d, "pulumi")


# ------------------------------------------------------------------ creation: the calls DynamoDB sees


def test_create_applies_post_creation_settings_after_active_and_checks_them() -> None:
    """The settings no emulator keeps (table class, contributor insights on the table and a GSI),
    PITR retried while DynamoDB sets up backups, Kinesis never applied: the exact calls, their
    parameters checked against botocore's model by the Stubber, and the outcome of each setting."""
    import boto3
    from botocore.stub import Stubber

    from ddbmigrate.aws.client import DynamoClient
    from ddbmigrate.config import TableRef
    from ddbmigrate.schema.apply import create_from_definition

    spec = {
        "TableName": "Orders", "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "g", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                    "Projection": {"ProjectionType": "ALL"},
                                    "ContributorInsightsSpecification": {"Enabled": True}}],
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": 10},
        "TableClass": "STANDARD_INFREQUENT_ACCESS",
        "ContributorInsightsSpecification": {"Enabled": True, "Mode": "THROTTLED_KEYS"},
        "KinesisStreamSpecification": {"StreamArn": f"arn:aws:kinesis:eu-west-1:{ACCT}:stream/s"},
    }
    client = DynamoClient(TableRef("Orders", region="eu-west-1", endpoint_url="http://127.0.0.1:9"))
    settings_ = boto3.client("dynamodb", region_name="eu-west-1", endpoint_url="http://127.0.0.1:9")
    desc = {"TableName": "Orders", "TableArn": ARN, "TableStatus": "ACTIVE", "KeySchema": spec["KeySchema"],
            "AttributeDefinitions": spec["AttributeDefinitions"],
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            "TableClassSummary": {"TableClass": "STANDARD_INFREQUENT_ACCESS"},
            "GlobalSecondaryIndexes": [{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                        "Projection": {"ProjectionType": "ALL"}, "IndexStatus": "ACTIVE"}]}
    sleeps: List[float] = []
    with Stubber(client.control) as ctl, Stubber(settings_) as st_:
        ctl.add_response("create_table", {"TableDescription": dict(desc, TableStatus="CREATING")}, {
            "TableName": "Orders", "AttributeDefinitions": spec["AttributeDefinitions"],
            "KeySchema": spec["KeySchema"], "BillingMode": "PAY_PER_REQUEST",
            "TableClass": "STANDARD_INFREQUENT_ACCESS",
            "GlobalSecondaryIndexes": [{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                        "Projection": {"ProjectionType": "ALL"}}]})
        for _ in range(3):  # wait_active, the read-back, the final description
            ctl.add_response("describe_table", {"Table": desc}, {"TableName": "Orders"})
        st_.add_client_error("update_continuous_backups", "ContinuousBackupsUnavailableException")
        pitr = {"TableName": "Orders", "PointInTimeRecoverySpecification": {
            "PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": 10}}
        st_.add_response("update_continuous_backups", {"ContinuousBackupsDescription": {
            "ContinuousBackupsStatus": "ENABLED"}}, pitr)
        st_.add_response("update_contributor_insights", {}, {
            "TableName": "Orders", "ContributorInsightsAction": "ENABLE", "ContributorInsightsMode": "THROTTLED_KEYS"})
        st_.add_response("update_contributor_insights", {}, {
            "TableName": "Orders", "IndexName": "byG", "ContributorInsightsAction": "ENABLE"})
        st_.add_response("describe_time_to_live", {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}})
        st_.add_response("describe_continuous_backups", {"ContinuousBackupsDescription": {
            "ContinuousBackupsStatus": "ENABLED", "PointInTimeRecoveryDescription": {
                "PointInTimeRecoveryStatus": "ENABLED", "RecoveryPeriodInDays": 10}}})
        st_.add_response("list_tags_of_resource", {"Tags": []}, {"ResourceArn": ARN})
        st_.add_response("describe_contributor_insights", {"ContributorInsightsStatus": "ENABLED",
                                                           "ContributorInsightsMode": "THROTTLED_KEYS"},
                         {"TableName": "Orders"})
        st_.add_response("describe_contributor_insights", {"ContributorInsightsStatus": "ENABLING"},
                         {"TableName": "Orders", "IndexName": "byG"})
        st_.add_client_error("get_resource_policy", "PolicyNotFoundException")
        st_.add_response("describe_kinesis_streaming_destination", {"TableName": "Orders",
                                                                    "KinesisDataStreamDestinations": []})
        result = create_from_definition(client, defn(spec), sleep=sleeps.append, settings=settings_, account=ACCT)
        ctl.assert_no_pending_responses()
        st_.assert_no_pending_responses()
    client.close()
    assert len(sleeps) == 1  # one retry of UpdateContinuousBackups
    assert [s for s, _ in result.not_applied] == ["KinesisStreamSpecification"]
    assert "enable-kinesis-streaming-destination" in result.not_applied[0][1]
    assert result.unchecked == []
    assert set(result.applied) >= {"GlobalSecondaryIndexes", "PointInTimeRecoverySpecification", "TableClass",
                                   "ContributorInsightsSpecification"}


def test_spec_paths_and_table_arns_are_told_apart(tmp_path: Path) -> None:
    from ddbmigrate.schema.spec import is_spec_path

    assert is_spec_path("table.yaml") and is_spec_path("specs/orders.json") and is_spec_path("x.YML")
    assert not is_spec_path("Orders") and not is_spec_path(ARN) and not is_spec_path("orders.v2")
    (tmp_path / "Orders").write_text("TableName: Orders\n")
    assert is_spec_path(str(tmp_path / "Orders"))


def test_a_setting_that_shows_late_is_read_again_before_it_is_reported() -> None:
    """Tags given to CreateTable that ListTagsOfResource shows only on the second read: applied,
    after one wait (not reported as missing)."""
    import boto3
    from botocore.stub import Stubber

    from ddbmigrate.aws.client import DynamoClient
    from ddbmigrate.config import TableRef
    from ddbmigrate.schema.apply import create_from_definition

    spec = {"TableName": "Orders", "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}], "Tags": [{"Key": "env", "Value": "prod"}]}
    client = DynamoClient(TableRef("Orders", region="eu-west-1", endpoint_url="http://127.0.0.1:9"))
    settings_ = boto3.client("dynamodb", region_name="eu-west-1", endpoint_url="http://127.0.0.1:9")
    desc = {"TableName": "Orders", "TableArn": ARN, "TableStatus": "ACTIVE", "KeySchema": spec["KeySchema"],
            "AttributeDefinitions": spec["AttributeDefinitions"],
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}}

    def read_back(st_: Any, tags: List[Dict[str, str]]) -> None:
        ctl.add_response("describe_table", {"Table": desc}, {"TableName": "Orders"})
        st_.add_response("describe_time_to_live", {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}})
        st_.add_response("describe_continuous_backups", {"ContinuousBackupsDescription": {
            "ContinuousBackupsStatus": "ENABLED", "PointInTimeRecoveryDescription": {
                "PointInTimeRecoveryStatus": "DISABLED"}}})
        st_.add_response("list_tags_of_resource", {"Tags": tags}, {"ResourceArn": ARN})
        st_.add_response("describe_contributor_insights", {"ContributorInsightsStatus": "DISABLED"})
        st_.add_client_error("get_resource_policy", "PolicyNotFoundException")
        st_.add_response("describe_kinesis_streaming_destination", {"TableName": "Orders",
                                                                    "KinesisDataStreamDestinations": []})

    sleeps: List[float] = []
    with Stubber(client.control) as ctl, Stubber(settings_) as st_:
        ctl.add_response("create_table", {"TableDescription": desc}, {
            "TableName": "Orders", "AttributeDefinitions": spec["AttributeDefinitions"],
            "KeySchema": spec["KeySchema"], "BillingMode": "PAY_PER_REQUEST", "Tags": spec["Tags"]})
        ctl.add_response("describe_table", {"Table": desc}, {"TableName": "Orders"})
        read_back(st_, [])
        read_back(st_, spec["Tags"])
        ctl.add_response("describe_table", {"Table": desc}, {"TableName": "Orders"})
        result = create_from_definition(client, defn(spec), sleep=sleeps.append, settings=settings_)
        ctl.assert_no_pending_responses()
        st_.assert_no_pending_responses()
    client.close()
    assert sleeps == [2.0]
    assert result.applied == ["BillingMode", "Tags"] and result.not_applied == [] and result.unchecked == []


def test_schema_export_converts_a_spec_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    spec = every_setting()
    path = tmp_path / "orders.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(main, ["schema", "export", str(path), "--as", "cloudformation"])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.stdout)["Resources"]["OrdersTable"]["Properties"] == spec
    r = CliRunner().invoke(main, ["schema", "diff", str(path), str(path), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["equal"] is True


@pytest.mark.parametrize("fmt", ["spec", "cloudformation", "terraform", "cdk"])
def test_schema_export_of_a_spec_without_table_name_is_refused(tmp_path: Path, fmt: str) -> None:
    # It was exported as a table named "unnamed": an import block, resource import or create of that table.
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    spec = every_setting()
    spec.pop("TableName")
    path = tmp_path / "orders.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(main, ["schema", "export", str(path), "--as", fmt])
    assert r.exit_code == 2 and r.stdout == "", r.output
    assert r.stderr.strip() == f"error: table spec {path}: TableName is required to export it"
    r = CliRunner().invoke(main, ["schema", "diff", str(path), str(path), "--json"])  # names are not compared
    assert r.exit_code == 0 and json.loads(r.stdout)["equal"] is True


def test_policies_that_differ_only_by_their_own_table_and_account_are_equal() -> None:
    def table(arn: str, action: str) -> TableDefinition:
        acct = arn.split(":")[4]
        spec = dict(every_setting(), ResourcePolicy={"PolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{acct}:role/app", acct]}, "Action": action,
            "Resource": [arn, arn + "/index/*"]}]}})
        d = defn(spec)
        d.arn = arn
        return d

    src = f"arn:aws:dynamodb:eu-west-1:{ACCT}:table/Orders"
    dst = "arn:aws:dynamodb:us-east-1:999988887777:table/OrdersCopy"
    assert diff_definitions(table(src, "dynamodb:GetItem"), table(dst, "dynamodb:GetItem")).equal
    d = diff_definitions(table(src, "dynamodb:GetItem"), table(dst, "dynamodb:PutItem"))
    assert [x.setting for x in d.differences] == ["ResourcePolicy"]
    assert "${TableArn}" in json.dumps(d.differences[0].a)  # shown with the placeholders it was compared with


def _described(req: Dict[str, Any]) -> Dict[str, Any]:
    """What DescribeTable answers for a table created with CreateTable ``req`` (statuses, zeros and
    defaults included, as DynamoDB reports them)."""
    on_demand = req["BillingMode"] == "PAY_PER_REQUEST"
    zero = {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0, "NumberOfDecreasesToday": 0}
    unlimited = {"MaxReadRequestUnits": -1, "MaxWriteRequestUnits": -1}

    def warm(x: Dict[str, Any]) -> Dict[str, Any]:
        return dict(x.get("WarmThroughput") or {"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 4000},
                    Status="ACTIVE")

    desc: Dict[str, Any] = {
        "TableName": req["TableName"], "TableArn": f"arn:aws:dynamodb:eu-west-1:{ACCT}:table/{req['TableName']}",
        "TableStatus": "ACTIVE", "ItemCount": 0, "AttributeDefinitions": list(reversed(req["AttributeDefinitions"])),
        "KeySchema": req["KeySchema"], "BillingModeSummary": {"BillingMode": req["BillingMode"]},
        "ProvisionedThroughput": zero if on_demand else dict(req["ProvisionedThroughput"], NumberOfDecreasesToday=0),
        "OnDemandThroughput": dict(unlimited, **req.get("OnDemandThroughput", {})),
        "WarmThroughput": warm(req), "DeletionProtectionEnabled": bool(req.get("DeletionProtectionEnabled")),
    }
    gsis = []
    for g in req.get("GlobalSecondaryIndexes") or []:
        gsis.append({"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g["Projection"],
                     "IndexStatus": "ACTIVE", "ProvisionedThroughput": zero if on_demand else g["ProvisionedThroughput"],
                     "OnDemandThroughput": dict(unlimited, **g.get("OnDemandThroughput", {})), "WarmThroughput": warm(g)})
    if gsis:
        desc["GlobalSecondaryIndexes"] = gsis
    if req.get("LocalSecondaryIndexes"):
        desc["LocalSecondaryIndexes"] = req["LocalSecondaryIndexes"]
    if req.get("StreamSpecification"):
        desc["StreamSpecification"] = req["StreamSpecification"]
    if req.get("SSESpecification"):
        desc["SSEDescription"] = {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": req["SSESpecification"].get(
            "KMSMasterKeyId", f"arn:aws:kms:eu-west-1:{ACCT}:key/aws-managed")}
    desc["TableClassSummary"] = {"TableClass": req.get("TableClass", "STANDARD")}
    return desc


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definitions())
def test_a_table_created_from_a_definition_reads_back_as_that_definition(spec: Dict[str, Any]) -> None:
    """The model's invariant: spec -> CreateTable (+ the post-creation calls) -> Describe* answers ->
    the same definition, with every status, zero, -1 and baseline DynamoDB adds normalized away."""
    d = defn(spec)
    req = create_request(d.props)
    p = d.props
    ttl = p.get("TimeToLiveSpecification")
    pitr = p.get("PointInTimeRecoverySpecification")
    insights: Dict[Any, Dict[str, Any]] = {None: {"ContributorInsightsStatus": "ENABLED" if p.get(
        "ContributorInsightsSpecification") else "DISABLED"}}
    for g in p.get("GlobalSecondaryIndexes") or []:
        insights[g["IndexName"]] = {"ContributorInsightsStatus": "ENABLING" if g.get(
            "ContributorInsightsSpecification") else "DISABLED"}
    back = from_aws(
        _described(req),
        ttl={"TimeToLiveStatus": "ENABLED", "AttributeName": ttl["AttributeName"]} if ttl else {
            "TimeToLiveStatus": "DISABLED"},
        backups={"ContinuousBackupsStatus": "ENABLED", "PointInTimeRecoveryDescription": {
            "PointInTimeRecoveryStatus": "ENABLED" if pitr else "DISABLED",
            "RecoveryPeriodInDays": (pitr or {}).get("RecoveryPeriodInDays", 35)}},
        tags=list(reversed(p.get("Tags") or [])), insights=insights, kinesis=[],
        aws_managed_key=bool(p.get("SSESpecification")) and "KMSMasterKeyId" not in p["SSESpecification"])
    assert back.props == p


def test_settings_calls_retry_transient_errors_only() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    from ddbmigrate.schema.read import call, why

    def failing(*codes: str) -> Callable[..., Any]:
        left = list(codes)

        def fn(**kw: Any) -> Any:
            if left:
                code = left.pop(0)
                if code == "connection":
                    raise EndpointConnectionError(endpoint_url="http://x")
                raise ClientError({"Error": {"Code": code, "Message": "m"}}, "Op")
            return {"ok": kw}
        return fn

    sleeps: List[float] = []
    assert call(failing("ThrottlingException", "InternalServerError", "connection"), "Op", sleep=sleeps.append,
                a=1) == {"ok": {"a": 1}}
    assert len(sleeps) == 3 and all(0 < s <= 8 for s in sleeps)
    with pytest.raises(ClientError):  # moto's HTML 500 for an operation it lacks: no retry
        call(failing("500"), "Op", sleep=sleeps.append)
    assert len(sleeps) == 3
    with pytest.raises(ClientError):
        call(failing(*["ThrottlingException"] * 4), "Op", sleep=sleeps.append)
    assert len(sleeps) == 6  # 4 attempts in all
    e = ClientError({"Error": {"Code": "UnknownOperationException", "Message": "An unknown operation"}}, "X")
    assert why(e, "DescribeContinuousBackups") == "the endpoint does not support DescribeContinuousBackups"
    e = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "X")
    assert why(e, "GetResourcePolicy") == "access denied to GetResourcePolicy"


def test_an_export_of_a_provisioned_table_says_auto_scaling_is_not_exported() -> None:
    """Its fixed capacity would fight auto scaling on a later apply: the file and stderr say so."""
    from dataclasses import replace

    spec = {"TableName": "orders", "BillingMode": "PROVISIONED",
            "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 7},
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}
    live = replace(defn(spec), arn="arn:aws:dynamodb:us-east-1:123456789012:table/orders")
    assert any("auto scaling" in n and "ignore_changes" in n for n in export_notes(live))
    assert "# Note: auto scaling (Application Auto Scaling targets and policies) is not read" in to_terraform(live)
    parse_hcl(to_terraform(live))  # still valid HCL
    # On demand, or a spec (not a live table: what it says is what the user wrote): no note.
    assert not any("auto scaling" in n for n in export_notes(defn(spec)))
    on_demand = replace(defn({k: v for k, v in spec.items() if k != "ProvisionedThroughput"} |
                             {"BillingMode": "PAY_PER_REQUEST"}), arn=live.arn)
    assert not any("auto scaling" in n for n in export_notes(on_demand))
