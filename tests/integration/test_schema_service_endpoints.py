"""The KMS and STS look-ups of the schema code go to KMS's and STS's own endpoints, never to the
DynamoDB ``--endpoint-url``.

DynamoDB is DynamoDB Local (which answers no KMS or STS call); KMS and STS are a moto server on
another port, found the way the AWS chain finds a service's endpoint (``AWS_ENDPOINT_URL_KMS``,
``AWS_ENDPOINT_URL_STS``). A look-up sent to the DynamoDB endpoint fails, and the schema code
then knows neither the account nor whether a key is DynamoDB's AWS managed key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner
from support import unique

from ddbmigrate import TableRef
from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.cli import main
from ddbmigrate.schema.apply import account_of
from ddbmigrate.schema.read import is_aws_managed_key

MOTO_ACCOUNT = "123456789012"
FOREIGN_KEY = "arn:aws:kms:us-east-1:111122223333:key/0b1c2d3e-aaaa-bbbb-cccc-000000000001"


@pytest.fixture()
def kms_sts_at_moto(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_s3)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_s3)
    return moto_s3


def test_account_lookup_uses_sts_own_endpoint_not_dynamodbs(endpoint: str, kms_sts_at_moto: str) -> None:
    client = DynamoClient(TableRef(unique("any"), endpoint_url=endpoint), pool_size=1)
    try:
        assert account_of(client) == MOTO_ACCOUNT
    finally:
        client.close()


def test_managed_key_lookup_uses_kms_own_endpoint_not_dynamodbs(endpoint: str, kms_sts_at_moto: str) -> None:
    # moto makes DynamoDB's AWS managed key (alias/aws/dynamodb) in its KMS for an encrypted table.
    moto_ddb = boto3.client("dynamodb", endpoint_url=kms_sts_at_moto, region_name="us-east-1")
    name = unique("sse")
    moto_ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          SSESpecification={"Enabled": True, "SSEType": "KMS"})
    key = moto_ddb.describe_table(TableName=name)["Table"]["SSEDescription"]["KMSMasterKeyArn"]
    client = DynamoClient(TableRef(unique("any"), endpoint_url=endpoint), pool_size=1)
    try:
        assert is_aws_managed_key(client, key) is True
    finally:
        client.close()


def test_create_table_on_local_tells_the_account_from_sts(endpoint: str, kms_sts_at_moto: str,
                                                          tmp_path: Path) -> None:
    """End to end: the spec's key of another account is refused because STS (moto) names the
    account; sent to DynamoDB Local, the look-up failed and the key was not checked at all."""
    name = unique("kms")
    spec: Any = {"TableName": name, "BillingMode": "PAY_PER_REQUEST",
                 "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                 "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                 "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": FOREIGN_KEY}}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(main, ["create-table", "--spec", str(path), "--endpoint-url", endpoint],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.stdout + r.stderr
    assert f"belongs to account 111122223333, the new table to account {MOTO_ACCOUNT}" in r.stdout, r.stdout
