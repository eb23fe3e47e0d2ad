"""The hot-path SigV4 signer must produce exactly botocore's signature."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from ddbmigrate.aws.signing import FastSigV4


def botocore_headers(creds: Credentials, url: str, region: str, service: str, target: str, body: bytes,
                     when: dt.datetime) -> dict:
    req = AWSRequest(method="POST", url=url, data=body,
                     headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target})
    import botocore.auth as ba

    orig = ba.get_current_datetime if hasattr(ba, "get_current_datetime") else None
    try:
        ba.get_current_datetime = lambda *a, **k: when.replace(tzinfo=None)  # type: ignore[attr-defined]
        SigV4Auth(creds, service, region).add_auth(req)
    finally:
        if orig is not None:
            ba.get_current_datetime = orig  # type: ignore[attr-defined]
    return dict(req.headers.items())


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////session+token/="])
@pytest.mark.parametrize("url,host", [("http://127.0.0.1:8000/", "127.0.0.1:8000"),
                                      ("https://dynamodb.eu-west-1.amazonaws.com/", "dynamodb.eu-west-1.amazonaws.com")])
def test_same_signature_as_botocore(token, url, host) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    when = dt.datetime(2026, 11, 25, 10, 11, 12, tzinfo=dt.timezone.utc)
    body = b'{"TableName":"t","Items":[1,2,3],"u":"\xc3\xa9"}'
    ref = botocore_headers(creds, url, "eu-west-1", "dynamodb", "DynamoDB_20120810.BatchWriteItem", body, when)
    mine = FastSigV4(creds, "eu-west-1", "dynamodb", host, now=lambda: when).sign(
        "DynamoDB_20120810.BatchWriteItem", body, "application/x-amz-json-1.0")
    assert mine["X-Amz-Date"] == ref["X-Amz-Date"]
    assert mine["Authorization"] == ref["Authorization"]
    assert mine.get("X-Amz-Security-Token") == ref.get("X-Amz-Security-Token")


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=2000), region=st.sampled_from(["us-east-1", "ap-southeast-2"]),
       service=st.sampled_from(["dynamodb", "dynamodb"]),
       target=st.sampled_from(["DynamoDB_20120810.Scan", "DynamoDBStreams_20120810.GetRecords"]))
def test_signature_property(body, region, service, target) -> None:
    creds = Credentials("AKID", "secret", None)
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    ref = botocore_headers(creds, "http://localhost:9000/", region, service, target, body, when)
    mine = FastSigV4(creds, region, service, "localhost:9000", now=lambda: when).sign(
        target, body, "application/x-amz-json-1.0")
    assert mine["Authorization"] == ref["Authorization"]


@pytest.mark.parametrize("token", ["  leading-spaces-token", "doubled  spaces  token", "trailing ", "\ttab\tand  space",
                                   " ", "mixed \t  runs/+="])
def test_tokens_with_leading_or_doubled_spaces_sign_like_botocore(token: str) -> None:
    # SigV4 signs header values "trimmed, inner runs of spaces collapsed"; the header itself is
    # sent unchanged. A signer that signs the raw value is refused by DynamoDB (signature mismatch).
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    when = dt.datetime(2026, 11, 25, 10, 11, 12, tzinfo=dt.timezone.utc)
    body = b'{"TableName":"t"}'
    ref = botocore_headers(creds, "https://dynamodb.us-east-1.amazonaws.com/", "us-east-1", "dynamodb",
                           "DynamoDB_20120810.Scan", body, when)
    mine = FastSigV4(creds, "us-east-1", "dynamodb", "dynamodb.us-east-1.amazonaws.com", now=lambda: when).sign(
        "DynamoDB_20120810.Scan", body, "application/x-amz-json-1.0")
    assert mine["Authorization"] == ref["Authorization"]
    assert mine.get("X-Amz-Security-Token") == ref.get("X-Amz-Security-Token")


@settings(max_examples=100, deadline=None)
@given(token=st.text(alphabet=st.sampled_from(list("ab/+= \t")), min_size=1, max_size=40))
def test_any_whitespace_in_a_token_signs_like_botocore(token: str) -> None:
    creds = Credentials("AKID", "secret", token)
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    ref = botocore_headers(creds, "http://localhost:9000/", "us-east-1", "dynamodb", "DynamoDB_20120810.Scan",
                           b"{}", when)
    mine = FastSigV4(creds, "us-east-1", "dynamodb", "localhost:9000", now=lambda: when).sign(
        "DynamoDB_20120810.Scan", b"{}", "application/x-amz-json-1.0")
    assert mine["Authorization"] == ref["Authorization"]
