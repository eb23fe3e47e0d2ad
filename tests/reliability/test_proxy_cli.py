"""``python -m ddbmigrate.testing.proxy``: the standalone entry point users run in front of DynamoDB."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from support import create_table

pytestmark = pytest.mark.reliability


def test_standalone_proxy_injects_audits_and_writes_its_audit(endpoint: str, tmp_path: Path) -> None:
    table = create_table(endpoint)
    audit = tmp_path / "audit.json"
    proc = subprocess.Popen([sys.executable, "-m", "ddbmigrate.testing.proxy", "--target", endpoint, "--seed", "3",
                             "--throttle", "1.0", "--ops", "Scan", "--audit", str(audit)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ")[1].split()[0]
        c = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                         aws_secret_access_key="test", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
        c.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"N": "1"}})  # not in --ops: untouched
        with pytest.raises(ClientError) as ei:
            c.scan(TableName=table)  # botocore parses our injected error (and checks its CRC32)
        assert ei.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        live = json.loads(urllib.request.urlopen(url + "/__proxy__/audit", timeout=10).read())
        assert live["faults"] == {"throttle": 1} and live["writes_forwarded"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    saved = json.loads(audit.read_text())
    assert saved["requests"]["Scan"] == 1 and saved["forwarded"] == {"PutItem": 1}
    assert saved["relative_updates"] == 0


def _start(args: list) -> tuple:
    proc = subprocess.Popen([sys.executable, "-m", "ddbmigrate.testing.proxy", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert "listening on http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
    return proc, line.split("listening on ")[1].split()[0], line


def _get(url: str) -> tuple:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_standalone_proxy_models_a_tables_write_capacity(endpoint: str) -> None:
    """--write-capacity 2 --burst-seconds 10 --partitions 1: the burst (20 items of 1 WCU) is
    admitted, the rest comes back in UnprocessedItems, a call with nothing admitted is refused
    whole (2 units/s refill less than an item between two calls); the control path reports it and
    changes the capacity while the proxy runs."""
    table = create_table(endpoint)
    proc, url, banner = _start(["--target", endpoint, "--write-capacity", "2", "--partitions", "1",
                                  "--burst-seconds", "10"])
    try:
        assert "2 write units/s over 1 partitions" in banner
        c = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                         aws_secret_access_key="test", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))

        def batch(prefix: str) -> dict:
            return c.batch_write_item(RequestItems={table: [
                {"PutRequest": {"Item": {"pk": {"S": f"{prefix}{i:02d}"}}}} for i in range(25)]})

        first = batch("a")
        assert len(first["UnprocessedItems"][table]) == 5
        with pytest.raises(ClientError) as ei:
            batch("b")
        assert ei.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        status, snap = _get(url + "/__proxy__/capacity")
        assert status == 200 and snap["units"] == 2 and snap["partitions"] == 1
        assert snap["accepted_items"] == 20 and snap["throttled_items"] == 30 and snap["refused_calls"] == 1
        assert _get(url + "/__proxy__/capacity?units=abc")[0] == 400
        status, snap = _get(url + "/__proxy__/capacity?units=1000")
        assert status == 200 and snap["units"] == 1000
        time.sleep(0.3)  # the bucket refills at 1,000 units/s (up to 10 s of it): 25 in 25 ms
        assert not batch("c").get("UnprocessedItems")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    direct = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    keys = sorted(i["pk"]["S"] for i in direct.scan(TableName=table)["Items"])
    held = sorted(r["PutRequest"]["Item"]["pk"]["S"] for r in first["UnprocessedItems"][table])
    assert keys == sorted({f"a{i:02d}" for i in range(25)} - set(held)) + [f"c{i:02d}" for i in range(25)]


def test_standalone_proxy_capacity_options_need_a_capacity(endpoint: str) -> None:
    bad = subprocess.run([sys.executable, "-m", "ddbmigrate.testing.proxy", "--target", endpoint, "--partitions", "4"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "give --write-capacity too" in bad.stderr
    proc, url, _ = _start(["--target", endpoint])
    try:
        status, body = _get(url + "/__proxy__/capacity")
        assert status == 400 and "--write-capacity" in body["error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
