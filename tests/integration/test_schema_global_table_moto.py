"""API-shape test: a global table's export, read through the real reader and CLI.

moto (5.2) has no global tables (no ``Replicas`` in DescribeTable, no ReplicaUpdates), so a small
proxy in front of moto adds what DynamoDB reports for a version 2019.11.21 global table to each
DescribeTable answer (``GlobalTableVersion`` and a ``Replicas`` entry for us-west-2, in
DynamoDB's documented shape); every other call, and the rest of the answer, is moto's. The table's
own settings (deletion protection, PITR, tags, encryption with the AWS managed key) are moto's.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import urlparse

import boto3
import cfnlint.api
import pytest
import yaml
from click.testing import CliRunner
from support import unique

from ddbmigrate.cli import main

REPLICA = {"RegionName": "us-west-2", "ReplicaStatus": "ACTIVE",
           "ReplicaTableClassSummary": {"TableClass": "STANDARD_INFREQUENT_ACCESS"}}


@pytest.fixture()
def global_table_proxy(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_s3)  # is the key DynamoDB's AWS managed key?
    target = urlparse(moto_s3)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_a: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            try:
                conn.request("POST", self.path, body=body,
                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            if self.headers.get("X-Amz-Target") == "DynamoDB_20120810.DescribeTable" and resp.status == 200:
                answer = json.loads(data)
                answer["Table"]["GlobalTableVersion"] = "2019.11.21"
                answer["Table"]["Replicas"] = [REPLICA]
                data = json.dumps(answer).encode()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date",
                                     "x-amz-crc32"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def global_table(moto: str) -> str:
    name = unique("gt")
    c = boto3.client("dynamodb", endpoint_url=moto, region_name="us-east-1")
    c.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                   StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
                   SSESpecification={"Enabled": True, "SSEType": "KMS"},
                   DeletionProtectionEnabled=True, Tags=[{"Key": "env", "Value": "prod"}])
    c.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    return name


def test_cloudformation_export_of_a_global_table_is_a_global_table(moto_s3: str, global_table_proxy: str) -> None:
    name = global_table(moto_s3)
    r = run("schema", "export", name, "--as", "cloudformation", "--endpoint-url", global_table_proxy,
            "--region", "us-east-1")
    assert r.exit_code == 0, r.stderr
    (res,) = yaml.safe_load(r.stdout)["Resources"].values()
    assert res["Type"] == "AWS::DynamoDB::GlobalTable", r.stdout
    p = res["Properties"]
    assert p["TableName"] == name and p["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    # moto's key is DynamoDB's AWS managed key (told by moto's KMS): no key, in any replica.
    assert p["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    assert p["Replicas"] == [
        {"Region": "us-east-1", "DeletionProtectionEnabled": True,
         "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
         "Tags": [{"Key": "env", "Value": "prod"}]},
        {"Region": "us-west-2", "TableClass": "STANDARD_INFREQUENT_ACCESS"}]
    matches = cfnlint.api.lint(r.stdout, regions=["us-east-1", "us-west-2"],
                               config=cfnlint.api.ManualArgs(include_checks=["I"]))
    assert not matches, [str(m) for m in matches]
    assert "note: exported as AWS::DynamoDB::GlobalTable with its replicas (us-east-1, us-west-2)" in r.stderr
    assert "not exported: replica us-west-2: PointInTimeRecoverySpecification" in r.stderr
    assert "not part of the definition" not in r.stderr


def test_other_formats_of_a_global_table(moto_s3: str, global_table_proxy: str) -> None:
    name = global_table(moto_s3)
    r = run("schema", "export", name, "--as", "cdk", "--endpoint-url", global_table_proxy)
    assert r.exit_code == 2 and "global table (replicas in us-east-1, us-west-2)" in r.stderr, r.stderr
    assert r.stdout == ""
    r = run("schema", "export", name, "--as", "terraform", "--endpoint-url", global_table_proxy)
    assert r.exit_code == 0, r.stderr
    assert "ignore_changes = [replica]" in r.stdout
    r = run("schema", "export", name, "--as", "spec", "--endpoint-url", global_table_proxy)
    assert r.exit_code == 0 and "Replicas" not in r.stdout
    assert "note: global table replicas (us-west-2) are not part of the definition" in r.stderr
