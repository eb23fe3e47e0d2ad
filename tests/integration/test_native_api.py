"""Native Export to S3 / Import from S3: API-SHAPE tests against moto's server on loopback.

These tests check that ddbmigrate sends well-formed ExportTableToPointInTime / DescribeExport /
ImportTable / DescribeImport / DescribeContinuousBackups requests, watches them to a terminal
status, and reports what the service answered. moto implements these calls only partly (it
writes one data file per export, ignores ExportTime and incremental windows, and finishes
instantly), so nothing here says anything about DynamoDB's real export/import data paths; our
own export/import data paths are tested on DynamoDB Local (test_export/test_import).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from typing import Any, Dict, List

import boto3
import pytest

from ddbmigrate.config import TableRef
from ddbmigrate.errors import FatalError, UsageError
from ddbmigrate.aws.managed import import_prefix, native_export, native_import, parse_time
from support import unique

pytestmark = pytest.mark.integration


def _ddb(url: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")


def _s3(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1")


def _table(url: str, items: int, pitr: bool) -> str:
    name = unique("nat")
    c = _ddb(url)
    c.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    for i in range(items):
        c.put_item(TableName=name, Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}})
    if pitr:
        c.update_continuous_backups(TableName=name,
                                    PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    return name


def _ref(url: str, name: str) -> TableRef:
    return TableRef(name, endpoint_url=url, region="us-east-1")


def test_export_refused_when_pitr_is_off(moto_s3: str) -> None:
    name = _table(moto_s3, 1, pitr=False)
    with pytest.raises(FatalError) as ei:
        native_export(_ref(moto_s3, name), "s3://bucket-x/p", progress="off", poll_interval=0.01)
    msg = ei.value.one_line()
    assert "point-in-time recovery" in msg and "update-continuous-backups" in msg and name in msg


def test_export_is_started_watched_and_ends_with_the_folder(moto_s3: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Shape: the request is accepted, DescribeExport is polled to COMPLETED, the report carries
    DynamoDB's item count and billed size, and the folder follows AWSDynamoDB/<ExportId>/."""
    name = _table(moto_s3, 25, pitr=True)
    bucket = unique("bkt")
    _s3(moto_s3).create_bucket(Bucket=bucket)
    rep = native_export(_ref(moto_s3, name), f"s3://{bucket}/exports/{name}", progress="json", poll_interval=0.05)
    arn = rep.extra["export_arn"]
    assert rep.extra["export_status"] == "COMPLETED" and rep.status == "done"
    assert rep.extra["item_count"] == 25 and rep.counters == {"read": 25, "written": 25}
    assert rep.extra["billed_size_bytes"] > 0
    assert rep.extra["export_path"] == f"s3://{bucket}/exports/{name}/AWSDynamoDB/{arn.rsplit('/', 1)[-1]}/"
    keys = [o["Key"] for o in _s3(moto_s3).list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys and all(k.startswith(f"exports/{name}/AWSDynamoDB/") for k in keys)
    events = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert events and events[-1]["event"] == "progress_final" and events[-1]["done"] == 25
    assert "COMPLETED" in events[-1]["status"]


def test_export_to_a_missing_bucket_fails_clearly(moto_s3: str) -> None:
    name = _table(moto_s3, 1, pitr=True)
    with pytest.raises(FatalError) as ei:
        native_export(_ref(moto_s3, name), f"s3://{unique('nobucket')}/p", progress="off", poll_interval=0.01)
    assert "FAILED" in ei.value.one_line() and ei.value.report.status == "failed"  # type: ignore[attr-defined]


def test_incremental_and_export_time_requests(moto_s3: str) -> None:
    name = _table(moto_s3, 2, pitr=True)
    bucket = unique("bkt")
    _s3(moto_s3).create_bucket(Bucket=bucket)
    rep = native_export(_ref(moto_s3, name), f"s3://{bucket}/inc",
                        incremental=("2026-11-24T10:00:00Z", "2026-11-24T12:00:00Z"), progress="off",
                        poll_interval=0.01)
    assert rep.extra["export_type"] == "INCREMENTAL_EXPORT"
    assert rep.extra["export_from_time"] == "2026-11-24T10:00:00+00:00"
    # Refused locally, before any call: the window rules and exclusive options.
    ref = _ref(moto_s3, name)
    with pytest.raises(UsageError, match="between 15 minutes and 24 hours"):
        native_export(ref, f"s3://{bucket}/x", incremental=("2026-11-24T10:00:00Z", "2026-11-24T10:05:00Z"))
    with pytest.raises(UsageError, match="must be after"):
        native_export(ref, f"s3://{bucket}/x", incremental=("2026-11-24T12:00:00Z", "2026-11-24T10:00:00Z"))
    with pytest.raises(UsageError, match="exclusive"):
        native_export(ref, f"s3://{bucket}/x", export_time="1700000000", incremental=("1", "2"))
    with pytest.raises(UsageError, match="ISO 8601"):
        native_export(ref, f"s3://{bucket}/x", export_time="yesterday")
    with pytest.raises(UsageError, match="s3://"):
        native_export(ref, "/local/folder")


def _upload_export(url: str, bucket: str, prefix: str, items: List[Dict[str, Any]], manifest_count: int) -> str:
    s3 = _s3(url)
    s3.create_bucket(Bucket=bucket)
    folder = f"{prefix}/AWSDynamoDB/01732530000000-abcd1234"
    body = gzip.compress("".join(json.dumps({"Item": it}) + "\n" for it in items).encode())
    s3.put_object(Bucket=bucket, Key=f"{folder}/data/part-0.json.gz", Body=body)
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-summary.json",
                  Body=json.dumps({"version": "2020-06-30", "itemCount": manifest_count}).encode())
    return f"s3://{bucket}/{folder}/"


def test_import_from_an_export_folder_is_watched(moto_s3: str, tmp_path: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Shape: ImportTable gets the folder's data/ prefix, GZIP, DYNAMODB_JSON and the spec's
    schema; DescribeImport is polled to COMPLETED; the manifest's item count is the ETA total."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    items = [{"id": {"S": f"i{i}"}, "v": {"N": str(i)}, "tags": {"SS": ["a", "b"]}} for i in range(40)]
    uri = _upload_export(moto_s3, unique("bkt"), "exp", items, 40)
    spec = tmp_path / "spec.yaml"
    spec.write_text("AttributeDefinitions: [{AttributeName: id, AttributeType: S}]\n"
                    "KeySchema: [{AttributeName: id, KeyType: HASH}]\n")
    name = unique("imp")
    rep = native_import(uri, _ref(moto_s3, name), str(spec), progress="off", poll_interval=0.05)
    assert rep.extra["import_status"] == "COMPLETED"
    assert rep.extra["s3_key_prefix"].endswith("AWSDynamoDB/01732530000000-abcd1234/data/")
    assert rep.extra["total_items"] == 40
    assert rep.counters == {"read": 40, "written": 40, "dead_lettered": 0} and rep.balanced()
    d = _ddb(moto_s3).describe_table(TableName=name)["Table"]
    assert d["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert _ddb(moto_s3).scan(TableName=name, Select="COUNT")["Count"] == 40
    with pytest.raises(UsageError, match="already exists"):
        native_import(uri, _ref(moto_s3, name), str(spec), progress="off", poll_interval=0.05)


def test_import_errors_are_reported_as_failed(moto_s3: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    items = [{"id": {"S": "good"}}, {"other": {"S": "no key"}}]
    uri = _upload_export(moto_s3, unique("bkt"), "bad", items, 2)
    spec = tmp_path / "spec.yaml"
    spec.write_text("AttributeDefinitions: [{AttributeName: id, AttributeType: S}]\n"
                    "KeySchema: [{AttributeName: id, KeyType: HASH}]\n")
    with pytest.raises(FatalError) as ei:
        native_import(uri, _ref(moto_s3, unique("imp")), str(spec), progress="off", poll_interval=0.05)
    rep = ei.value.report  # type: ignore[attr-defined]
    assert rep.status == "failed" and rep.counters["dead_lettered"] == 1 and rep.counters["read"] == 2
    assert "FAILED" in ei.value.one_line()


def test_spec_rules_for_import_table(tmp_path: Any, moto_s3: str) -> None:
    spec = tmp_path / "lsi.yaml"
    spec.write_text("AttributeDefinitions: [{AttributeName: h, AttributeType: S}, {AttributeName: r, AttributeType: S},"
                    " {AttributeName: l, AttributeType: S}]\n"
                    "KeySchema: [{AttributeName: h, KeyType: HASH}, {AttributeName: r, KeyType: RANGE}]\n"
                    "LocalSecondaryIndexes: [{IndexName: byL, KeySchema: [{AttributeName: h, KeyType: HASH},"
                    " {AttributeName: l, KeyType: RANGE}]}]\n")
    with pytest.raises(UsageError, match="local secondary indexes"):
        native_import("s3://b/p/", _ref(moto_s3, unique("imp")), str(spec), progress="off")


def test_import_prefix_and_time_parsing() -> None:
    assert import_prefix("s3://b/x/y/AWSDynamoDB/0173-ab/") == ("b", "x/y/AWSDynamoDB/0173-ab/data/", True)
    assert import_prefix("s3://b/AWSDynamoDB/0173-ab") == ("b", "AWSDynamoDB/0173-ab/data/", True)
    assert import_prefix("s3://b/x/AWSDynamoDB/0173-ab/data/") == ("b", "x/AWSDynamoDB/0173-ab/data/", True)
    assert import_prefix("s3://b/plain/files") == ("b", "plain/files/", False)
    assert parse_time("2026-11-25T10:00:00Z") == parse_time(1795600800)
    assert parse_time("2026-11-25T11:00:00+01:00") == parse_time("2026-11-25T10:00:00Z")


def test_cli_native_export_and_import(moto_s3: str, tmp_path: Any) -> None:
    name = _table(moto_s3, 7, pitr=True)
    bucket = unique("bkt")
    _s3(moto_s3).create_bucket(Bucket=bucket)
    env = dict(os.environ, AWS_ENDPOINT_URL_S3=moto_s3)
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "export", name, f"s3://{bucket}/cli", "--native",
                        "--endpoint-url", moto_s3, "--region", "us-east-1", "--progress", "off"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert f"s3://{bucket}/cli/AWSDynamoDB/" in r.stdout
    off = _table(moto_s3, 1, pitr=False)
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "export", off, f"s3://{bucket}/cli", "--native",
                        "--endpoint-url", moto_s3, "--region", "us-east-1", "--quiet"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "point-in-time recovery" in r.stderr and "Traceback" not in r.stderr
    uri = _upload_export(moto_s3, unique("bkt"), "cli", [{"id": {"S": "a"}}, {"id": {"S": "b"}}], 2)
    spec = tmp_path / "spec.yaml"
    spec.write_text("AttributeDefinitions: [{AttributeName: id, AttributeType: S}]\n"
                    "KeySchema: [{AttributeName: id, KeyType: HASH}]\n")
    new = unique("imp")
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "import", uri, new, "--native", "--spec", str(spec),
                        "--endpoint-url", moto_s3, "--region", "us-east-1", "--progress", "off"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert _ddb(moto_s3).scan(TableName=new, Select="COUNT")["Count"] == 2


def test_plan_validate_checks_pitr_for_native_exports(moto_s3: str, tmp_path: Any) -> None:
    from ddbmigrate.plan import validate_plan

    on, off = _table(moto_s3, 1, pitr=True), _table(moto_s3, 1, pitr=False)
    (tmp_path / "p.yaml").write_text(
        "defaults:\n"
        f"  source: {{endpoint_url: '{moto_s3}', region: us-east-1}}\n"
        "jobs:\n"
        f"  - {{kind: export, native: true, source: {on}, to: 's3://b/x'}}\n"
        "  - kind: export\n"
        "    native: true\n"
        f"    source: {off}\n"
        "    to: s3://b/y\n")
    problems = validate_plan(str(tmp_path / "p.yaml"))
    assert [(p.line, p.job) for p in problems] == [(6, f"export-{off}")]
    assert "point-in-time recovery is DISABLED" in problems[0].message
