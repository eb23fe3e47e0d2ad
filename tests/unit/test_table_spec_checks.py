"""A table spec that DynamoDB's CreateTable would refuse is refused first, as one line naming the
field (exit 2), not as CreateTable's raw message after the job began (exit 1)."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from ddbmigrate.aws.tables import spec_to_request
from ddbmigrate.errors import UsageError


def spec(**over: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {
        "TableName": "App",
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "G")],
        "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [{"IndexName": "GSI1", "KeySchema": [{"AttributeName": "G", "KeyType": "HASH"}]}],
    }
    base.update(over)
    return base


def test_a_good_spec_passes() -> None:
    req = spec_to_request(spec())
    assert req["GlobalSecondaryIndexes"][0]["IndexName"] == "GSI1"


@pytest.mark.parametrize("over,words", [
    ({"GlobalSecondaryIndexes": [{"IndexName": "G1", "KeySchema": [{"AttributeName": "G", "KeyType": "HASH"}]}]},
     ["GlobalSecondaryIndexes[0].IndexName 'G1'", "3-255"]),
    ({"GlobalSecondaryIndexes": [{"IndexName": "by g!", "KeySchema": [{"AttributeName": "G", "KeyType": "HASH"}]}]},
     ["IndexName 'by g!'"]),
    ({"KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "PK", "KeyType": "RANGE"}]},
     ["KeySchema names 'PK' twice"]),
    ({"KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "HASH"}]},
     ["KeySchema[1].KeyType must be RANGE"]),
    ({"GlobalSecondaryIndexes": [{"IndexName": "Same", "KeySchema": [{"AttributeName": "G", "KeyType": "HASH"}]}],
      "LocalSecondaryIndexes": [{"IndexName": "Same", "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"},
                                                                     {"AttributeName": "SK", "KeyType": "RANGE"}]}]},
     ["LocalSecondaryIndexes[0].IndexName 'Same' is also GlobalSecondaryIndexes[0]'s name"]),
    ({"LocalSecondaryIndexes": [{"IndexName": "LSI1", "KeySchema": [{"AttributeName": "SK", "KeyType": "HASH"},
                                                                     {"AttributeName": "G", "KeyType": "RANGE"}]}]},
     ["LocalSecondaryIndexes[0].KeySchema must be the table's HASH key (PK)"]),
    ({"GlobalSecondaryIndexes": [{"IndexName": f"GSI{i:02d}", "KeySchema": [{"AttributeName": "G", "KeyType": "HASH"}]}
                                 for i in range(21)]},
     ["lists 21 indexes; DynamoDB allows 20"]),
])
def test_what_create_table_refuses_is_one_line_naming_the_field(over: Dict[str, Any], words: Any) -> None:
    with pytest.raises(UsageError) as ei:
        spec_to_request(spec(**over))
    for w in words:
        assert w in ei.value.message, ei.value.message


def test_a_provisioned_clone_says_auto_scaling_is_not_copied() -> None:
    # The clone was fixed at the source's capacity of the day, silently: a source scaling 5 to
    # 1,000 WCU became a table of 5.
    from types import SimpleNamespace

    from ddbmigrate.schema.apply import plan_creation
    from ddbmigrate.schema.model import TableDefinition

    props = {"TableName": "Src", "BillingMode": "PROVISIONED",
             "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
             "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
             "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}
    client = SimpleNamespace(ref=SimpleNamespace(table="Dst"), region="us-east-1")
    read = TableDefinition(props=dict(props), arn="arn:aws:dynamodb:us-east-1:123456789012:table/Src")
    plan = plan_creation(client, read, table="Dst", account="123456789012")  # type: ignore[arg-type]
    (why,) = [r for s, r in plan.not_applied if s == "AutoScaling"]
    assert "table/Dst" in why and "not read or copied" in why
    # A spec (no source table) has no scaling to lose; nor has an on-demand table.
    assert not [s for s, _ in plan_creation(client, TableDefinition(props=dict(props)), table="Dst",  # type: ignore[arg-type]
                                            account="1").not_applied if s == "AutoScaling"]
