"""`verify --metrics-port`: each side's counters are a series of their own, and never go down.

verify reads its two sides one after the other, each as a job that counts from 0. Under one
``job="verify"`` label the probe saw ``ddbmigrate_records_total{counter="read",job="verify"}``
go 0 -> 4,433 -> 20,000 -> 11,985 (and retries drop): the target side's live counts replaced the
source side's final ones, and Prometheus reads a drop as a restart. Each side now has its own
label value (``verify-source``, ``verify-target``), so every series only rises and both sides'
final counts stay served.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from ddbmigrate import TableRef
from ddbmigrate.engine import engine_for
from ddbmigrate.verify import verify_tables
from support import boto_client, create_table, wait_for

pytestmark = pytest.mark.integration

SERIES = re.compile(r'^ddbmigrate_(records_total|retries_total)\{([^}]*)\} ([0-9.e+]+)$', re.MULTILINE)
Key = Tuple[str, str]  # (metric, labels)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _counters(port: int) -> Dict[Key, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(m.group(1), m.group(2)): float(m.group(3)) for m in SERIES.finditer(text)}


class Scraper:
    """Scrapes /metrics in the background and at each side job's start and end, one scrape at a
    time, so the list is in the order a Prometheus server would have seen the figures."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: List[Dict[Key, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def scrape(self) -> Dict[Key, float]:
        with self._lock:
            try:
                got = _counters(self.port)
            except OSError:
                return {}  # between the server's release and the next acquire
            self.seen.append(got)
            return got

    def _loop(self) -> None:
        while not self._stop.wait(0.01):
            self.scrape()

    def __enter__(self) -> "Scraper":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    # the observer verify_tables shows each side job to (attached after its metrics are served)
    def attach(self, job: str, snapshot: Any) -> Callable[[], Any]:
        self.scrape()
        return self.scrape  # after the job's figures became its final ones

    def drops(self) -> List[str]:
        high: Dict[Key, float] = {}
        out = []
        for i, scrape in enumerate(self.seen):
            for key, v in scrape.items():
                if v < high.get(key, 0.0):
                    out.append(f"scrape {i}: {key} {high[key]:g} -> {v:g}")
                high[key] = max(high.get(key, 0.0), v)
        return out


def _put(endpoint: str, table: str, items: List[Dict[str, Any]]) -> None:
    c = boto_client(endpoint)
    for i in range(0, len(items), 25):
        pending: Any = {table: [{"PutRequest": {"Item": it}} for it in items[i:i + 25]]}
        while pending:
            pending = c.batch_write_item(RequestItems=pending).get("UnprocessedItems")


def _tables(endpoint: str, n: int) -> Tuple[TableRef, TableRef]:
    src, dst = create_table(endpoint), create_table(endpoint)
    _put(endpoint, src, [{"pk": {"S": f"k{i:05d}"}, "n": {"N": str(i)}} for i in range(n)])
    # The target lacks 3 items and has 2 of its own: the verify finds differences, as in the probe.
    _put(endpoint, dst, [{"pk": {"S": f"k{i:05d}"}, "n": {"N": str(i)}} for i in range(3, n)]
         + [{"pk": {"S": f"x{i}"}} for i in range(2)])
    return (TableRef(src, endpoint_url=endpoint, region="us-east-1"),
            TableRef(dst, endpoint_url=endpoint, region="us-east-1"))


@pytest.mark.parametrize("engine", [None, "processes"], ids=["threads", "processes"])
def test_each_verify_side_has_its_own_series_and_none_goes_down(endpoint: str, tmp_path: Path,
                                                                 engine: Optional[str]) -> None:
    n = 3000
    src, dst = _tables(endpoint, n)
    port = _free_port()
    with Scraper(port) as scraper:
        rep = verify_tables(src, dst, metrics_port=port, observer=scraper, work_dir=str(tmp_path),
                            engine=engine_for("processes", processes=2) if engine else None)
    assert rep.exit_code == 4 and rep.missing == 3 and rep.unexpected == 2
    assert scraper.drops() == []
    # At the second side's end both sides' final counts are served, each under its label: the
    # report's source_read and target_read.
    last = next(s for s in reversed(scraper.seen) if s)
    assert last[("records_total", 'counter="read",job="verify-source"')] == rep.counters["source_read"] == n
    assert last[("records_total", 'counter="read",job="verify-target"')] == rep.counters["target_read"] == n - 1
    assert ("retries_total", 'cause="throttle",job="verify-target"') in last
    # The source side was served while it ran, under its own label.
    assert any(("records_total", 'counter="read",job="verify-source"') in s
               and ("records_total", 'counter="read",job="verify-target"') not in s for s in scraper.seen)


def test_verify_cli_serves_both_sides_final_counts(endpoint: str, tmp_path: Path) -> None:
    """`ddbmigrate verify --metrics-port P --metrics-linger S`, as the operator runs it."""
    src, dst = _tables(endpoint, 500)
    port = _free_port()
    report = tmp_path / "v.json"
    proc = subprocess.Popen([sys.executable, "-m", "ddbmigrate", "verify", src.table, dst.table, "--endpoint-url",
                             endpoint, "--progress", "off", "--metrics-port", str(port), "--metrics-linger", "60",
                             "--report", str(report)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            env={**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    err: List[bytes] = []
    stderr = proc.stderr
    assert stderr is not None
    threading.Thread(target=lambda: err.extend(iter(stderr.readline, b"")), daemon=True).start()
    try:
        # A Ctrl-C before the linger began would stop the verify's last steps, not the linger.
        wait_for(lambda: b"metrics: the final figures stay on" in b"".join(err), 60, "the verify to end and linger")
        assert report.exists()
        got = _counters(port)
        assert got[("records_total", 'counter="read",job="verify-source"')] == 500
        assert got[("records_total", 'counter="read",job="verify-target"')] == 499
        assert not any('job="verify"' in labels for _, labels in got)
        proc.send_signal(signal.SIGINT)  # ends the linger; the verify's own exit code stays
        assert proc.wait(30) == 4
    finally:
        proc.kill()
        proc.wait()
