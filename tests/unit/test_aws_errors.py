"""aws.errors: the AWS error code and message, from botocore exceptions and raw JSON bodies."""

from __future__ import annotations

import botocore.session
import orjson
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from botocore.stub import Stubber

from ddbmigrate.aws.errors import code_from_type, error_code, error_message, parse_error_body


def client_error(code: str, message: str = "", op: str = "CreateTable") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}, op)


def test_client_error_code_and_message() -> None:
    e = client_error("ResourceInUseException", "Table already exists: t")
    assert error_code(e) == "ResourceInUseException"
    assert error_message(e) == "Table already exists: t"


def test_modeled_exception_raised_by_a_real_botocore_client() -> None:
    # botocore's generated subclasses (client.exceptions.X) carry the same response shape.
    client = botocore.session.get_session().create_client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(client) as stub:
        stub.add_client_error("describe_table", service_error_code="ResourceNotFoundException",
                              service_message="Requested resource not found", http_status_code=400)
        with pytest.raises(client.exceptions.ResourceNotFoundException) as info:
            client.describe_table(TableName="missing")
    assert error_code(info.value) == "ResourceNotFoundException"
    assert error_message(info.value) == "Requested resource not found"


def test_s3_style_numeric_code() -> None:
    # HEAD on a missing S3 key has no body: botocore reports the status as the code.
    assert error_code(client_error("404", "Not Found", op="HeadObject")) == "404"


def test_client_error_without_code_or_message() -> None:
    e = ClientError({"Error": {}}, "PutItem")
    assert error_code(e) is None and error_message(e) is None
    assert error_code(ClientError({}, "PutItem")) is None
    assert error_code(client_error("", "")) is None


@pytest.mark.parametrize("exc", [
    ValueError("nope"),
    KeyError("Error"),
    EndpointConnectionError(endpoint_url="http://localhost:1"),
    NoCredentialsError(),
    RuntimeError(),
])
def test_non_aws_exceptions_have_no_code(exc: BaseException) -> None:
    assert error_code(exc) is None
    assert error_message(exc) is None


def test_foreign_response_attribute_is_ignored() -> None:
    # requests/urllib3-style exceptions carry an HTTP response object, not botocore's dict.
    class HttpError(Exception):
        response = object()

    class Weird(Exception):
        response = {"Error": "a string, not a dict"}

    assert error_code(HttpError()) is None
    assert error_code(Weird()) is None
    assert error_message(Weird()) is None


def test_code_from_type() -> None:
    assert code_from_type("com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException") == \
        "ProvisionedThroughputExceededException"
    assert code_from_type("ThrottlingException") == "ThrottlingException"
    assert code_from_type("a#b#ConditionalCheckFailedException") == "ConditionalCheckFailedException"
    assert code_from_type("") == ""


def test_parse_json_error_body() -> None:
    body = orjson.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                         "message": "The conditional request failed"})
    assert parse_error_body(body, 400) == ("ConditionalCheckFailedException", "The conditional request failed")
    # some services spell it Message
    body = orjson.dumps({"__type": "com.amazon.coral.service#SerializationException", "Message": "bad"})
    assert parse_error_body(body, 400) == ("SerializationException", "bad")


def test_parse_error_body_without_type_falls_back_to_http_status() -> None:
    assert parse_error_body(orjson.dumps({"message": "boom"}), 500) == ("HTTP500", "boom")
    assert parse_error_body(orjson.dumps({"__type": None}), 503) == ("HTTP503", "")
    assert parse_error_body(orjson.dumps(["not", "an", "object"]), 502) == ("HTTP502", "")
    assert parse_error_body(b"", 500) == ("HTTP500", "")


def test_parse_non_json_body_keeps_its_start_as_message() -> None:
    html = b"<html>" + b"x" * 500 + b"</html>"
    code, msg = parse_error_body(html, 502)
    assert code == "HTTP502"
    assert msg == html[:200].decode()
    assert parse_error_body(b"\xff\xfe oops", 500) == ("HTTP500", "\ufffd\ufffd oops")
