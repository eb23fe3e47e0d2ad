"""Bulk put items (import --native --bulk-put): API-SHAPE tests against a scripted loopback server.

moto has no bulk operations, and DynamoDB Local neither, so a small HTTP server on 127.0.0.1
speaks DynamoDB's JSON protocol (``X-Amz-Target: DynamoDB_20120810.<Operation>``) for
DescribeTable, StartBulkPutItems, DescribeBulkOperation and CancelBulkOperation as the AWS API
reference (botocore 1.44's service model) describes them: it checks each request's required
fields and enums, answers with scripted progress, and keeps one operation per client token
(the API's idempotency). Nothing here says anything about DynamoDB's real bulk put data path.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List

import pytest
from click.testing import CliRunner

from ddbmigrate.aws.bulk_put import native_bulk_put
from ddbmigrate.cli import main
from ddbmigrate.config import TableRef
from ddbmigrate.errors import FatalError, UsageError

pytestmark = pytest.mark.integration

TABLE = "orders"
TABLE_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"


class FakeBulk:
    """The scripted service: each DescribeBulkOperation advances one step of ``script``."""

    def __init__(self, script: List[Dict[str, Any]]) -> None:
        self.script = script
        self.calls: List[Dict[str, Any]] = []
        self.ops: Dict[str, Dict[str, Any]] = {}  # client token -> description
        self.step: Dict[str, int] = {}
        self.cancelled = False

    def handle(self, op: str, body: Dict[str, Any]) -> Any:
        self.calls.append({"op": op, "body": body})
        if op == "DescribeTable":
            if body["TableName"] != TABLE:
                return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException", "message": "no"}
            return 200, {"Table": {"TableName": TABLE, "TableArn": TABLE_ARN, "TableStatus": "ACTIVE",
                                   "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                   "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]}}
        if op == "StartBulkPutItems":
            inp, out = body["InputS3Configuration"], body["OutputS3Configuration"]
            assert body["TableName"] and inp["S3Bucket"] and out["OutputType"]
            assert inp["InputFormat"] in ("DYNAMODB_JSON", "ION")
            assert inp.get("InputCompressionType", "GZIP") in ("GZIP", "ZSTD", "NONE")
            assert body.get("PerformanceTier", "STANDARD") in ("STANDARD", "ACCELERATED")
            assert set(out["OutputType"]) <= {"ERROR", "CONDITION_CHECK_FAILURE"}
            assert body.get("MaxWriteRequestUnits", 1024) >= 1024
            token = body["ClientToken"]
            if token in self.ops:
                return 200, {"BulkOperationDescription": self.ops[token]}
            arn = f"{TABLE_ARN}/bulk-operation/{len(self.ops) + 1:04d}"
            desc = {"BulkOperationArn": arn, "BulkOperationStatus": "IN_PROGRESS", "ClientToken": token,
                    "TableDetails": [{"TableName": TABLE_ARN}], "InputS3Configuration": inp,
                    "OutputS3Configuration": out, "PerformanceTier": body.get("PerformanceTier", "STANDARD"),
                    "ProcessedItemCount": 0, "ProcessedInputBytes": 0, "TotalInputBytes": 4000}
            self.ops[token] = desc
            self.step[arn] = 0
            return 200, {"BulkOperationDescription": desc}
        if op in ("DescribeBulkOperation", "CancelBulkOperation"):
            arn = body["BulkOperationArn"]
            desc = next((d for d in self.ops.values() if d["BulkOperationArn"] == arn), None)
            if desc is None:
                return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                             "message": "no such operation"}
            if op == "CancelBulkOperation":
                self.cancelled = True
                desc["BulkOperationStatus"] = "CANCELLING"
                return 200, {"BulkOperationArn": arn, "BulkOperationStatus": "CANCELLING"}
            if self.cancelled:
                desc.update({"BulkOperationStatus": "CANCELLED"})
            elif self.step[arn] < len(self.script):
                desc.update(self.script[self.step[arn]])
                self.step[arn] += 1
            return 200, {"BulkOperationDescription": desc}
        return 400, {"__type": "com.amazonaws.dynamodb.v20120810#UnknownOperationException", "message": op}


@pytest.fixture
def fake() -> Iterator[Any]:
    script = [
        {"ProcessedItemCount": 40, "ProcessedInputBytes": 1600},
        {"ProcessedItemCount": 100, "ProcessedInputBytes": 4000, "FailedItemCount": 2,
         "BulkOperationStatus": "COMPLETED_WITH_ERRORS",
         "BulkOperationUsage": [{"TableName": TABLE_ARN, "BulkPutBytes": 3900,
                                 "GlobalSecondaryIndexes": {"GSI1": {"BulkPutBytes": 1200}}}]},
    ]
    with serve(FakeBulk(script)) as service:
        yield service


@contextlib.contextmanager
def serve(service: "FakeBulk") -> Iterator[Any]:
    """The scripted service behind a DynamoDB-shaped HTTP endpoint on loopback (``service.url``);
    a request its asserts refuse comes back as a ValidationException."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            op = self.headers["X-Amz-Target"].split(".", 1)[1]
            try:
                status, answer = service.handle(op, body)
            except AssertionError as e:  # a malformed request: the test sees it as a ValidationException
                status, answer = 400, {"__type": "com.amazon.coral.validate#ValidationException", "message": str(e)}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()


def _ref(url: str) -> TableRef:
    return TableRef(TABLE, endpoint_url=url, region="us-east-1")


def test_start_request_shape_progress_counts_and_failure_report(fake: Any, tmp_path: Any) -> None:
    rep = native_bulk_put("s3://in-bucket/exports/AWSDynamoDB/0123-abcd/", _ref(fake.url), tier="accelerated",
                          max_write_units=2048, report_uri="s3://reports/bulk/", poll_interval=0.0,
                          sleep=lambda s: None, state_dir=str(tmp_path), total_items=100)
    start = next(c["body"] for c in fake.calls if c["op"] == "StartBulkPutItems")
    assert start["TableName"] == TABLE_ARN
    assert start["InputS3Configuration"] == {"S3Bucket": "in-bucket", "S3KeyPrefix": "exports/AWSDynamoDB/0123-abcd/data/",
                                             "InputFormat": "DYNAMODB_JSON", "InputCompressionType": "GZIP"}
    assert start["OutputS3Configuration"] == {"S3Bucket": "reports", "S3KeyPrefix": "bulk", "OutputType": ["ERROR"]}
    assert start["PerformanceTier"] == "ACCELERATED" and start["MaxWriteRequestUnits"] == 2048
    assert start["ClientToken"]
    assert rep.counters == {"read": 100, "written": 98, "dead_lettered": 2} and rep.balanced()
    assert rep.exit_code == 3  # done, with items DynamoDB could not write
    assert rep.dead_letter_path == "s3://reports/bulk" and rep.extra["failure_report"] == "s3://reports/bulk"
    assert rep.extra["bulk_operation_status"] == "COMPLETED_WITH_ERRORS"
    assert rep.extra["bulk_put_usage"][0]["GlobalSecondaryIndexes"]["GSI1"]["BulkPutBytes"] == 1200
    assert sum(1 for c in fake.calls if c["op"] == "DescribeBulkOperation") == 2


def test_rerun_reattaches_by_client_token_and_restart_starts_a_new_operation(fake: Any, tmp_path: Any) -> None:
    kw = dict(poll_interval=0.0, sleep=lambda s: None, state_dir=str(tmp_path))
    first = native_bulk_put("s3://in-bucket/data/", _ref(fake.url), **kw)  # type: ignore[arg-type]
    again = native_bulk_put("s3://in-bucket/data/", _ref(fake.url), **kw)  # type: ignore[arg-type]
    assert again.extra["bulk_operation_arn"] == first.extra["bulk_operation_arn"]
    assert again.extra["reattached"] is True
    assert sum(1 for c in fake.calls if c["op"] == "StartBulkPutItems") == 1  # re-attached, not restarted
    # other settings for the same table and input: refused, naming the way out
    with pytest.raises(UsageError, match="other settings.*--restart"):
        native_bulk_put("s3://in-bucket/data/", _ref(fake.url), tier="accelerated", **kw)  # type: ignore[arg-type]
    new = native_bulk_put("s3://in-bucket/data/", _ref(fake.url), restart=True, **kw)  # type: ignore[arg-type]
    assert new.extra["bulk_operation_arn"] != first.extra["bulk_operation_arn"]
    tokens = [c["body"]["ClientToken"] for c in fake.calls if c["op"] == "StartBulkPutItems"]
    assert len(tokens) == 2 and tokens[0] != tokens[1]


def test_ctrl_c_cancels_after_confirmation(fake: Any, tmp_path: Any) -> None:
    def interrupt(_s: float) -> None:
        if not fake.cancelled:
            raise KeyboardInterrupt

    asked: List[str] = []
    with pytest.raises(FatalError) as ei:
        native_bulk_put("s3://in-bucket/data/", _ref(fake.url), poll_interval=0.0, sleep=interrupt,
                        state_dir=str(tmp_path), confirm_cancel=lambda m: asked.append(m) or True)
    assert asked and "cancel bulk put" in asked[0]
    assert any(c["op"] == "CancelBulkOperation" for c in fake.calls)
    assert "CANCELLED" in ei.value.one_line()


def test_ctrl_c_declined_only_stops_watching(fake: Any, tmp_path: Any) -> None:
    from ddbmigrate.errors import InterruptedError_

    def interrupt(_s: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(InterruptedError_) as ei:
        native_bulk_put("s3://in-bucket/data/", _ref(fake.url), poll_interval=0.0, sleep=interrupt,
                        state_dir=str(tmp_path), confirm_cancel=lambda m: False)
    assert "continues in AWS" in ei.value.one_line()
    assert not any(c["op"] == "CancelBulkOperation" for c in fake.calls)


def test_bad_settings_are_refused_before_any_call(fake: Any, tmp_path: Any) -> None:
    with pytest.raises(UsageError, match="at least 1,024"):
        native_bulk_put("s3://in-bucket/data/", _ref(fake.url), max_write_units=100, state_dir=str(tmp_path))
    assert not any(c["op"] == "StartBulkPutItems" for c in fake.calls)


def test_cli_import_native_bulk_put_prints_the_failure_report(fake: Any, tmp_path: Any, monkeypatch: Any) -> None:
    import ddbmigrate.aws.bulk_put as bp

    real = bp.native_bulk_put
    monkeypatch.setattr(bp, "native_bulk_put",
                        lambda *a, **k: real(*a, **{**k, "poll_interval": 0.0, "sleep": lambda s: None}))
    r = CliRunner().invoke(main, ["import", "s3://in-bucket/data/", TABLE, "--native", "--bulk-put", "--tier",
                                  "standard", "--max-write-units", "4096", "--endpoint-url", fake.url, "--region",
                                  "us-east-1", "--progress", "off"])
    assert r.exit_code == 3, r.output
    assert "failure report: s3://in-bucket/ddbmigrate-bulk-put-reports/orders" in r.stderr
    start = next(c["body"] for c in fake.calls if c["op"] == "StartBulkPutItems")
    assert start["PerformanceTier"] == "STANDARD" and start["MaxWriteRequestUnits"] == 4096


def test_a_crash_before_the_start_answer_reuses_the_saved_token(fake: Any, tmp_path: Any) -> None:
    """The token is saved before StartBulkPutItems: a rerun sends the same token, so DynamoDB
    answers with the operation the lost call started instead of starting a second load."""
    from ddbmigrate.aws import bulk_put as bp

    ref = _ref(fake.url)
    path = bp._state_path(ref, "s3://in-bucket/data/", str(tmp_path))
    bp._save_state(path, {"client_token": "tok-123"})  # what a crash right after the save leaves
    rep = native_bulk_put("s3://in-bucket/data/", ref, poll_interval=0.0, sleep=lambda s: None,
                          state_dir=str(tmp_path))
    starts = [c["body"] for c in fake.calls if c["op"] == "StartBulkPutItems"]
    assert [s["ClientToken"] for s in starts] == ["tok-123"] and rep.extra["client_token"] == "tok-123"
    assert json.loads(open(path).read())["arn"] == rep.extra["bulk_operation_arn"]


def test_cli_refuses_mixed_lanes_before_any_call(fake: Any) -> None:
    base = ["import", "s3://in-bucket/data/", TABLE, "--endpoint-url", fake.url, "--region", "us-east-1",
            "--progress", "off"]
    r = CliRunner().invoke(main, base + ["--native", "--bulk-put", "--spec", __file__])
    assert r.exit_code == 2 and "drop --spec" in r.output
    r = CliRunner().invoke(main, base + ["--native", "--tier", "accelerated", "--spec", __file__])
    assert r.exit_code == 2 and "add --bulk-put" in r.output
    assert fake.calls == []
