"""``python -m ddbmigrate.testing.proxy``: the standalone entry point users run in front of DynamoDB."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
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
