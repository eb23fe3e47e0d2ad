"""Native export/import (ImportTable, ExportTableToPointInTime) watched through odd answers:
API-SHAPE tests against a scripted loopback server.

moto finishes every export and import at once and always answers well, so a small HTTP server on
127.0.0.1 speaks DynamoDB's JSON protocol for DescribeTable, DescribeContinuousBackups,
ExportTableToPointInTime, DescribeExport, ImportTable and DescribeImport and answers with scripted
descriptions: a CANCELLED import (no failure code), counts missing or malformed, a poll without a
status, an operation that outlives the watching. What is checked is what ddbmigrate reports and
exits with; nothing here says anything about DynamoDB's real export or import.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from click.testing import CliRunner
from support import one_error_line, one_usage_line

from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.aws.managed import native_export, native_import
from ddbmigrate.cli import main
from ddbmigrate.config import TableRef
from ddbmigrate.errors import EXIT_INTERRUPTED, FatalError, InterruptedError_, UsageError

pytestmark = pytest.mark.integration

TABLE = "orders"
NEW = "orders-restored"
TABLE_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"
EXPORT_ARN = f"{TABLE_ARN}/export/01732530000000-abcd1234"
IMPORT_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{NEW}/import/01732530000000-ef567890"
SPEC = "AttributeDefinitions: [{AttributeName: id, AttributeType: S}]\nKeySchema: [{AttributeName: id, KeyType: HASH}]\n"


class Scripted:
    """The service: the start call answers ``script[0]``, each Describe* the next step (the last repeats)."""

    def __init__(self, script: List[Dict[str, Any]]) -> None:
        self.script = script
        self.calls: List[str] = []
        self.step = 0
        self.url = ""

    def _next(self) -> Dict[str, Any]:
        d = self.script[min(self.step, len(self.script) - 1)]
        self.step += 1
        return d

    def handle(self, op: str, body: Dict[str, Any]) -> Any:
        self.calls.append(op)
        if op == "DescribeTable":
            if body["TableName"] != TABLE:
                return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException", "message": "no"}
            return 200, {"Table": {"TableName": TABLE, "TableArn": TABLE_ARN, "TableStatus": "ACTIVE",
                                   "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                                   "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}]}}
        if op == "DescribeContinuousBackups":
            return 200, {"ContinuousBackupsDescription": {
                "ContinuousBackupsStatus": "ENABLED",
                "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": "ENABLED"}}}
        if op == "ExportTableToPointInTime":
            assert body["TableArn"] == TABLE_ARN and body["S3Bucket"]
            return 200, {"ExportDescription": {"ExportArn": EXPORT_ARN, **self._next()}}
        if op == "DescribeExport":
            return 200, {"ExportDescription": {"ExportArn": body["ExportArn"], **self._next()}}
        if op == "ImportTable":
            assert body["S3BucketSource"]["S3Bucket"] and body["TableCreationParameters"]["TableName"] == NEW
            return 200, {"ImportTableDescription": {"ImportArn": IMPORT_ARN, **self._next()}}
        if op == "DescribeImport":
            return 200, {"ImportTableDescription": {"ImportArn": body["ImportArn"], **self._next()}}
        return 400, {"__type": "com.amazonaws.dynamodb.v20120810#UnknownOperationException", "message": op}


@contextlib.contextmanager
def serve(script: List[Dict[str, Any]]) -> Iterator[Scripted]:
    service = Scripted(script)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            op = self.headers["X-Amz-Target"].split(".", 1)[1]
            try:
                status, answer = service.handle(op, body)
            except AssertionError as e:
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
    service.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()


def _ref(url: str, name: str = NEW) -> TableRef:
    return TableRef(name, endpoint_url=url, region="us-east-1")


def _import_cli(url: str, tmp_path: Path, *extra: str) -> Any:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    # a plain prefix, not an export folder: no manifest is read from S3
    return CliRunner().invoke(main, ["import", "s3://in-bucket/plain/", NEW, "--native", "--spec", str(spec),
                                     "--endpoint-url", url, "--region", "us-east-1", "--progress", "off", *extra])


def _import(url: str, **kw: Any) -> Any:
    return native_import("s3://in-bucket/plain/", _ref(url), SPEC_DICT, poll_interval=1.0,
                         sleep=kw.pop("sleep", lambda s: None), **kw)


SPEC_DICT = {"AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
             "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]}


# ------------------------------------------------------------------ the end of an import


def test_a_cancelled_import_is_exit_1_and_says_cancelled_without_none(tmp_path: Path) -> None:
    """CANCELLED has no FailureCode/FailureMessage: the line was "import CANCELLED: None: None"."""
    with serve([{"ImportStatus": "CANCELLED", "ProcessedItemCount": 4, "ImportedItemCount": 4}]) as s:
        r = _import_cli(s.url, tmp_path)
    line = one_error_line(r, 1, "import CANCELLED", alone=False)
    assert "None" not in line
    with serve([{"ImportStatus": "FAILED", "FailureCode": "ValidationError", "FailureMessage": "bad file"}]) as s:
        r = _import_cli(s.url, tmp_path)
    one_error_line(r, 1, "import FAILED: ValidationError: bad file", alone=False)


def test_a_completed_import_with_rejected_items_exits_3(tmp_path: Path) -> None:
    with serve([{"ImportStatus": "COMPLETED", "ProcessedItemCount": 10, "ImportedItemCount": 8,
                 "ErrorCount": 2}]) as s:
        r = _import_cli(s.url, tmp_path, "--report", str(tmp_path / "r.json"))
    assert r.exit_code == 3, r.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["counters"] == {"read": 10, "written": 8, "dead_lettered": 2} and rep["balanced"]


@pytest.mark.parametrize("answer, counters", [
    # no ProcessedItemCount: it was read 0, written 10 (a report that does not add up)
    ({"ImportedItemCount": 10}, {"read": 10, "written": 10, "dead_lettered": 0}),
    ({"ImportedItemCount": 7, "ErrorCount": 3}, {"read": 10, "written": 7, "dead_lettered": 3}),
    # ImportedItemCount 0 is a count, not a missing one: it is kept
    ({"ProcessedItemCount": 5, "ImportedItemCount": 0, "ErrorCount": 5}, {"read": 5, "written": 0, "dead_lettered": 5}),
    # a malformed count was "internal error: ValueError" (exit 1); a negative one made exit 3
    ({"ProcessedItemCount": "lots", "ImportedItemCount": 6, "ErrorCount": -2,
      "ProcessedSizeBytes": "big"}, {"read": 6, "written": 6, "dead_lettered": 0}),
])
def test_missing_or_malformed_counts_still_add_up(tmp_path: Path, answer: Dict[str, Any],
                                                  counters: Dict[str, int]) -> None:
    with serve([{"ImportStatus": "COMPLETED", **answer}]) as s:
        r = _import_cli(s.url, tmp_path, "--report", str(tmp_path / "r.json"))
    assert r.exit_code == (3 if counters["dead_lettered"] else 0), r.output
    assert "internal error" not in r.output and "Traceback" not in r.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["counters"] == counters and rep["balanced"]


# ------------------------------------------------------------------ watching


def test_a_poll_without_a_status_ends_the_watching_naming_the_import() -> None:
    """A DescribeImport answer without ImportStatus was polled forever ("?" on the progress line)."""
    with serve([{"ImportStatus": "IN_PROGRESS"}, {"ProcessedItemCount": 3}]) as s:
        with pytest.raises(FatalError) as ei:
            _import(s.url)
        assert s.calls.count("DescribeImport") == 1
    line = ei.value.one_line()
    assert "no ImportStatus" in line and f"describe-import --import-arn {IMPORT_ARN}" in line


def test_a_timeout_names_the_operation_and_how_to_follow_it() -> None:
    """It said "the operation continues in AWS" without saying which one."""
    ticks = iter(range(10_000))
    with serve([{"ExportStatus": "IN_PROGRESS"}]) as s:
        with pytest.raises(FatalError) as ei:
            native_export(_ref(s.url, TABLE), "s3://out-bucket/x", poll_interval=1.0, timeout=5,
                          sleep=lambda s: None, clock=lambda: float(next(ticks)))
    line = ei.value.one_line()
    assert "still IN_PROGRESS after 5s" in line and f"describe-export --export-arn {EXPORT_ARN}" in line


def test_ctrl_c_while_watching_says_the_export_goes_on_and_how_to_watch_it() -> None:
    def interrupt(_s: float) -> None:
        raise KeyboardInterrupt

    with serve([{"ExportStatus": "IN_PROGRESS"}]) as s:
        with pytest.raises(InterruptedError_) as ei:
            native_export(_ref(s.url, TABLE), "s3://out-bucket/x", poll_interval=1.0, sleep=interrupt)
    assert ei.value.exit_code == EXIT_INTERRUPTED
    line = ei.value.one_line()
    assert f"export {EXPORT_ARN} continues in AWS" in line and f"export_arn={EXPORT_ARN!r}" in line


def test_ctrl_c_during_the_start_call_says_where_to_look_for_the_operation() -> None:
    """Interrupted inside ExportTableToPointInTime, the export may have started with no ARN known: it
    was a bare "interrupted"."""
    with serve([{"ExportStatus": "IN_PROGRESS"}]) as s:
        client = DynamoClient(_ref(s.url, TABLE))

        def interrupt(**_kw: Any) -> None:
            raise KeyboardInterrupt

        client.control.meta.events.register("before-call.dynamodb.ExportTableToPointInTime", interrupt)
        with pytest.raises(InterruptedError_) as ei:
            native_export(_ref(s.url, TABLE), "s3://out-bucket/x", client=client, sleep=lambda s: None)
        client.close()
    assert f"aws dynamodb list-exports --table-arn {TABLE_ARN}" in ei.value.one_line()


def test_reattaching_reports_the_exports_own_folder() -> None:
    """Watching an export by its ARN with another destination: the folder is the export's own
    (its S3Bucket and S3Prefix), not one under the destination given."""
    with serve([{"ExportStatus": "COMPLETED", "S3Bucket": "real-bucket", "S3Prefix": "real/prefix",
                 "ItemCount": 3}]) as s:
        rep = native_export(_ref(s.url, TABLE), "s3://other-bucket/elsewhere", export_arn=EXPORT_ARN,
                            sleep=lambda s: None)
    assert rep.extra["export_path"] == "s3://real-bucket/real/prefix/AWSDynamoDB/01732530000000-abcd1234/"


# ------------------------------------------------------------------ arguments, before any call


@pytest.mark.parametrize("kw, words", [
    ({"poll_interval": -1.0}, "poll_interval"),
    ({"poll_interval": float("nan")}, "poll_interval"),
    ({"timeout": float("nan")}, "timeout"),
    ({"export_time": 99999999999999}, "--export-time"),
    ({"export_time": float("nan")}, "--export-time"),
    ({"view_type": "OLD_IMAGE", "incremental": ("2026-11-24T10:00:00Z", "2026-11-24T12:00:00Z")}, "view type"),
])
def test_bad_arguments_are_refused_before_any_call(kw: Dict[str, Any], words: str) -> None:
    """A negative/NaN poll interval raised from time.sleep only once the export was running; a
    Unix time past the year 9999 was "internal error: ValueError"."""
    with serve([{"ExportStatus": "IN_PROGRESS"}]) as s:
        with pytest.raises(UsageError, match=words):
            native_export(_ref(s.url, TABLE), "s3://out-bucket/x", **kw)
        assert s.calls == []


def test_cli_export_time_out_of_range_is_one_usage_line() -> None:
    with serve([{"ExportStatus": "IN_PROGRESS"}]) as s:
        r = CliRunner().invoke(main, ["export", TABLE, "s3://out-bucket/x", "--native", "--export-time",
                                      "99999999999999", "--endpoint-url", s.url, "--region", "us-east-1"])
        assert s.calls == []
    one_usage_line(r, "--export-time '99999999999999': not a time")
