"""``python -m ddbmigrate.testing.proxy``: the standalone entry point users run in front of DynamoDB."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Tuple

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from support import create_table

pytestmark = pytest.mark.reliability


def _start(args: List[str], stderr: int = subprocess.DEVNULL) -> Tuple["subprocess.Popen[str]", str, str]:
    """The standalone proxy, its URL and its banner (read within 60 s, or the test fails)."""
    proc = subprocess.Popen([sys.executable, "-m", "ddbmigrate.testing.proxy", *args],
                            stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if "listening on http://127.0.0.1:" not in line:
        proc.kill()
        pytest.fail(f"the proxy did not start: {line!r}")
    return proc, line.split("listening on ")[1].split()[0], line


def _send(url: str, method: str, data: bytes = b"", ctype: str = "") -> Tuple[int, Any]:
    req = urllib.request.Request(url, data=data or None, method=method,
                                 headers={"Content-Type": ctype} if ctype else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _get(url: str) -> Tuple[int, Any]:
    return _send(url, "GET")


def _client(url: str) -> Any:
    """boto3 through the proxy, one attempt a call: what the proxy answers is what the test sees."""
    return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))


def test_standalone_proxy_injects_audits_and_writes_its_audit(endpoint: str, tmp_path: Path) -> None:
    table = create_table(endpoint)
    audit = tmp_path / "audit.json"
    proc, url, _ = _start(["--target", endpoint, "--seed", "3", "--throttle", "1.0", "--ops", "Scan", "--audit", str(audit)])
    try:
        c = _client(url)
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


def test_standalone_proxy_models_a_tables_write_capacity(endpoint: str, tmp_path: Path) -> None:
    """--write-capacity 0.5 --burst-seconds 40 --partitions 1: the burst (20 items of 1 WCU) is
    admitted, the rest comes back in UnprocessedItems, a call with nothing admitted is refused
    whole (half a unit a second refills one item in 2 s, far more than between two calls); the
    control path reports it and changes the capacity while the proxy runs; the audit file keeps
    the capacity's figures."""
    table = create_table(endpoint)
    audit = tmp_path / "audit.json"
    proc, url, banner = _start(["--target", endpoint, "--write-capacity", "0.5", "--partitions", "1",
                                "--burst-seconds", "40", "--audit", str(audit)])
    try:
        assert "0.5 write units/s over 1 partition(s), 40 s of burst" in banner
        c = _client(url)

        def batch(prefix: str) -> Dict[str, Any]:
            resp: Dict[str, Any] = c.batch_write_item(RequestItems={table: [
                {"PutRequest": {"Item": {"pk": {"S": f"{prefix}{i:02d}"}}}} for i in range(25)]})
            return resp

        first = batch("a")
        assert len(first["UnprocessedItems"][table]) == 5
        with pytest.raises(ClientError) as ei:
            batch("b")
        assert ei.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        status, snap = _get(url + "/__proxy__/capacity")
        assert status == 200 and snap["units"] == 0.5 and snap["partitions"] == 1
        assert snap["accepted_items"] == 20 and snap["throttled_items"] == 30 and snap["refused_calls"] == 1
        for bad in ("abc", "", "0", "inf", "0.01"):  # 0.01 x 40 s: not one write unit, ever
            status, err = _get(url + f"/__proxy__/capacity?units={bad}")
            assert status == 400 and "units=" in err["error"], (bad, err)
        status, snap = _get(url + "/__proxy__/capacity?units=1000")
        assert status == 200 and snap["units"] == 1000
        time.sleep(0.3)  # the bucket refills at 1,000 units/s: 25 in 25 ms
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
    saved = json.loads(audit.read_text())["capacity"]
    assert saved["accepted_items"] == 45 and saved["tables"][table]["throttled_items"] == 30


def test_standalone_proxy_capacity_options_need_a_capacity(endpoint: str) -> None:
    for args, says in ((["--partitions", "4"], "give --write-capacity too"),
                       (["--write-capacity", "3"], "cannot admit one write unit"),
                       (["--write-capacity", "1000", "--unprocessed", "0.1"], "give one of them")):
        bad = subprocess.run([sys.executable, "-m", "ddbmigrate.testing.proxy", "--target", endpoint, *args],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and says in bad.stderr, bad.stderr
        # The documented command starts without a runpy warning.
        assert "RuntimeWarning" not in bad.stderr, bad.stderr
    proc, url, _ = _start(["--target", endpoint])
    try:
        status, body = _get(url + "/__proxy__/capacity")
        assert status == 400 and "--write-capacity" in body["error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_standalone_proxy_control_paths_answer_404_405_and_400_and_change_state_by_post(endpoint: str) -> None:
    """A mistyped control path is 404 (it read 200 with an error body, so a script checking the
    status took it for success); a method other than GET or POST is 405; an outage of
    ``seconds=abc`` is 400, not a dropped connection; a change is a POST, with the query or a form
    body, and the old GET with a query still works."""
    create_table(endpoint)
    proc, url, _ = _start(["--target", endpoint, "--write-capacity", "1000", "--partitions", "2"])
    try:
        for path in ("/__proxy__/capacty", "/__proxy__/", "/__proxy__", "/__proxy__/audit/x"):
            status, body = _get(url + path)
            assert status == 404 and "/__proxy__/capacity" in body["paths"], (path, body)
        status, body = _send(url + "/__proxy__/capacity", "DELETE")
        assert status == 405 and "POST" in body["error"]
        try:
            urllib.request.urlopen(urllib.request.Request(url + "/__proxy__/capacity", method="PUT"), timeout=10)
        except urllib.error.HTTPError as e:
            assert e.code == 405 and e.headers["Allow"] == "GET, POST"
        else:
            pytest.fail("PUT /__proxy__/capacity was answered 2xx")
        status, body = _send(url + "/__proxy__/capacity", "GET", b"units=700",
                             "application/x-www-form-urlencoded")
        assert status == 400 and "only with POST" in body["error"]
        # Whatever is mistyped is refused, and the capacity stays as it was.
        for path, data, ctype, code, says in (
                ("/__proxy__/capacity?unit=700", b"", "", 400, "unknown parameter 'unit'"),
                ("/__proxy__/capacity?units=700&units=800", b"", "", 400, "units given twice"),
                ("/__proxy__/capacity?units=600", b"units=700", "", 400, "units given twice"),
                ("/__proxy__/capacity", b'{"units": 700}', "application/json", 415, "form body"),
                ("/__proxy__/outage", b'{"seconds": 0.5}', "application/json", 415, "form body"),
                ("/__proxy__/audit?x=1", b"", "", 400, "takes none"),
                ("/__proxy__/capacity", b"units", "", 400, "bad query field")):
            status, body = _send(url + path, "POST", data, ctype)
            assert status == code and says in body["error"], (path, data, body)
        for bad in ("abc", "0", "-1", "nan"):
            status, body = _send(url + f"/__proxy__/outage?seconds={bad}", "POST")
            assert status == 400 and "seconds=" in body["error"], (bad, body)
        assert _get(url + "/__proxy__/capacity")[1]["units"] == 1000  # a read changes nothing
        status, snap = _send(url + "/__proxy__/capacity?units=600", "POST")
        assert status == 200 and snap["units"] == 600
        status, snap = _send(url + "/__proxy__/capacity", "POST", b"units=700&")
        assert status == 200 and snap["units"] == 700
        status, snap = _get(url + "/__proxy__/capacity?units=800")
        assert status == 200 and snap["units"] == 800
        status, audit = _get(url + "/__proxy__/audit")
        assert status == 200 and audit["capacity"]["units"] == 800
        status, body = _send(url + "/__proxy__/outage?seconds=0.5", "POST")
        assert status == 200 and body == {"ok": True, "seconds": 0.5}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0


def test_standalone_proxy_stops_cleanly_with_a_client_connected(endpoint: str) -> None:
    """SIGTERM with a kept-alive connection open: exit 0 and no traceback (asyncio printed a
    CancelledError traceback for the connection's handler on every such stop)."""
    import http.client

    proc, url, _ = _start(["--target", endpoint], stderr=subprocess.PIPE)
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/__proxy__/audit")
    assert conn.getresponse().read()  # the connection stays open, idle
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    conn.close()
    assert proc.returncode == 0
    assert "Traceback" not in err and "CancelledError" not in err, err
