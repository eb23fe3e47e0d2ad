"""Numbers an acceptance probe found untrue, against the real DynamoDB Local (the unit half is in
tests/unit/test_replicate_truth_probe.py):

* ``replicate --max-runtime`` with a backlog on a throttled target stops near its limit, cutting
  the chunk in flight, says so (status ``stopped``, ``max_runtime`` in the report), and a
  ``--resume`` applies every record the cut left (nothing lost);
* the progress of both runs is of acknowledged work, never negative (the resumed apply job counts
  ``done`` from 0 while its checkpoint counted thousands);
* ``/healthz`` of a replicator whose writes land on a throttled target, a whole chunk settling at
  once, is not "failing: ... nothing was written" (the stall detector counts acknowledged writes);
* ``copy --processes 2`` that fails (exit 75, no signal) does not end on a line saying it is
  "stopping ... (signal again to stop at once)".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.config import RetryPolicy
from ddbmigrate.jobs.replicate import replicate
from ddbmigrate.state.status import read_status, request_stop
from ddbmigrate.testing.capacity import WriteCapacity
from ddbmigrate.testing.proxy import FaultProxy, Faults
from support import as_set, create_table, put_items, scan_all, wait_for
from test_replicate_journal import _free_port

pytestmark = pytest.mark.integration


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def items(n: int) -> List[Dict[str, Any]]:
    return [{"pk": {"S": f"k{i:04d}"}, "v": {"N": str(i)}, "pad": {"S": "x" * 200}} for i in range(n)]


def progress_lines(text: str, job: str) -> List[Dict[str, Any]]:
    out = []
    for ln in text.splitlines():
        if ln.startswith('{"event":"progress'):
            ev = json.loads(ln)
            if ev.get("job") == job:
                out.append(ev)
    return out


class _Throttled:
    """A replicator of a streamed source into a target behind a 10 WCU/s proxy: 600 one-unit
    writes are a minute of writing for one journal chunk (up to 1,000 records)."""

    def __init__(self, endpoint: str, tmp_path: Path, progress: str) -> None:
        self.endpoint, self.tmp_path, self.progress = endpoint, tmp_path, progress
        self.src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
        self.dst = create_table(endpoint)
        self.cap = WriteCapacity(10, partitions=1)
        self.status = tmp_path / "r.status.json"
        self.proxy = FaultProxy(endpoint, faults=Faults(capacity=self.cap))
        self.box: Dict[str, Any] = {}

    def run(self, **kw: Any) -> Any:
        resume = bool(kw.pop("resume", False))
        return replicate(ref(self.endpoint, self.src), ref(self.proxy.url, self.dst), backfill=False,
                         status_path=str(self.status), poll_interval=0.1,
                         options=RunOptions(progress=self.progress, writers=2,
                                            checkpoint=str(self.tmp_path / "r.checkpoint.json"),
                                            retry=RetryPolicy(max_attempts=1000, max_delay=0.5), resume=resume),
                         **kw)

    def start_applying_600(self, **kw: Any) -> threading.Thread:
        """The replicator in a thread (its report or error in ``box``), applying 600 new records."""
        def go() -> None:
            try:
                self.box["report"] = self.run(**kw)
            except BaseException as e:  # noqa: BLE001 - the test reports it
                self.box["error"] = e

        t = threading.Thread(target=go, daemon=True)
        t.start()
        wait_for(lambda: self.status.exists() and read_status(str(self.status)).get("state") in ("replaying", "tailing"),
                 60, "the replicator applying the journal")
        put_items(self.endpoint, self.src, items(600))
        return t

    def resume_unthrottled(self) -> Any:
        """A resume with the capacity lifted: every record the cut left is applied."""
        self.cap.set_units(100_000)
        rep = self.run(resume=True, stop_after_idle=1.0)
        assert rep.status == "done" and rep.extra["stopped_by"] == "idle"
        assert as_set(scan_all(self.endpoint, self.dst)) == as_set(scan_all(self.endpoint, self.src))
        return rep


def test_max_runtime_cuts_the_chunk_in_flight_says_so_and_resume_loses_nothing(
        endpoint: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    r = _Throttled(endpoint, tmp_path, "json")
    with r.proxy:
        t = r.start_applying_600(max_runtime=15)  # far past the 15 s limit
        t.join(180)
        assert not t.is_alive(), "--max-runtime 15 did not stop the replicator"
        assert "error" not in r.box, r.box.get("error")
        rep = r.box["report"]
        first = capfd.readouterr().err

        # It says it was the limit, not "done", and that it cut the chunk in flight.
        assert rep.status == "stopped" and rep.exit_code == 0
        assert rep.extra["stopped_by"] == "max runtime"
        limit = rep.extra["max_runtime"]
        assert limit["limit_s"] == 15 and limit["cut_records"] > 0, limit
        # Bounded: the old code ran the whole chunk out (a minute at 10 WCU/s) past the limit.
        assert limit["ran_s"] < 15 + 30, limit
        assert "--max-runtime 15 s reached" in first
        assert len(scan_all(endpoint, r.dst)) < 600
        lines = progress_lines(first, "replicate")
        assert lines and all(x["items_per_s"] >= 0 for x in lines), lines
        # Writes landed though no chunk may have settled: the rate says so.
        assert lines[-1]["event"] == "progress_final" and lines[-1]["items_per_s"] > 0, lines[-1]

        # The checkpoint stayed before the cut chunk: a resume applies all of it, nothing lost.
        r.resume_unthrottled()
        lines2 = progress_lines(capfd.readouterr().err, "replicate")
        assert lines2 and all(x["items_per_s"] >= 0 for x in lines2), lines2


def test_replicate_stop_cuts_the_chunk_in_flight_and_resume_loses_nothing(endpoint: str, tmp_path: Path) -> None:
    r = _Throttled(endpoint, tmp_path, "none")
    with r.proxy:
        t = r.start_applying_600()
        wait_for(lambda: len(scan_all(endpoint, r.dst)) >= 20, 60, "the chunk being applied")
        asked = time.monotonic()
        request_stop(str(r.status))  # what `ddbmigrate replicate stop` does
        t.join(120)
        assert not t.is_alive(), "replicate stop did not stop the replicator"
        # Bounded: the old code applied the whole chunk first (a minute at 10 WCU/s).
        assert time.monotonic() - asked < 30
        assert "error" not in r.box, r.box.get("error")
        rep = r.box["report"]
        assert rep.status == "stopped" and rep.exit_code == 0
        assert rep.extra["stopped_by"] == "stop requested"
        assert rep.extra["cut_records"] > 0, rep.extra
        assert len(scan_all(endpoint, r.dst)) < 600
        r.resume_unthrottled()  # the checkpoint stayed before the cut chunk


def test_a_processes_copy_that_fails_is_not_described_as_a_signal_stop(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    dst = create_table(endpoint)
    put_items(endpoint, src, items(200))
    # Every write answered 500: the workers' retries run out, exit 75; nobody sends a signal.
    with FaultProxy(endpoint, faults=Faults(error500=1.0, writes_only=True)) as proxy:
        out = subprocess.run([sys.executable, "-m", "ddbmigrate", "copy", src, dst, "--endpoint-url", proxy.url,
                              "--region", "us-east-1", "--processes", "2", "--segments", "4", "--max-attempts", "2",
                              "--progress", "json"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=180,
                             env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode == 75, out.stderr[-2000:]
    lines = progress_lines(out.stderr, "copy")
    assert lines and lines[-1]["event"] == "progress_final", out.stderr[-2000:]
    assert not any("signal" in str(x.get("status", "")) for x in lines), lines


def _scrape(port: int, path: str) -> Tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()
    except OSError:
        return 0, ""


def test_healthz_is_not_failing_while_throttled_writes_land(endpoint: str, tmp_path: Path) -> None:
    """The probe: 503 "failing: requests are being retried and nothing was written for 43 s" while
    `written` rose 3,500 -> 3,825: a whole journal chunk settles at once under 20 WCU/s."""
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    # An on-demand-like target (no declared units): the writers find its 10 WCU/s by throttles,
    # so requests are retried all along while 600 records take a minute to land.
    cap = WriteCapacity(10, partitions=1, declared=False)
    port = _free_port()
    status = tmp_path / "h.status.json"
    with FaultProxy(endpoint, faults=Faults(capacity=cap)) as proxy:
        box: Dict[str, Any] = {}

        def go() -> None:
            try:
                box["report"] = replicate(
                    ref(endpoint, src), ref(proxy.url, dst), backfill=False, status_path=str(status),
                    poll_interval=0.1, max_runtime=40,
                    options=RunOptions(progress="off", writers=2, metrics_port=port,
                                       checkpoint=str(tmp_path / "h.checkpoint.json"),
                                       retry=RetryPolicy(max_attempts=1000, max_delay=0.5)))
            except BaseException as e:  # noqa: BLE001 - the test reports it
                box["error"] = e

        t = threading.Thread(target=go, daemon=True)
        t.start()
        wait_for(lambda: status.exists() and read_status(str(status)).get("state") in ("replaying", "tailing"),
                 60, "the replicator applying the journal")
        put_items(endpoint, src, items(600))
        answers: List[Tuple[int, str]] = []
        while t.is_alive():
            answers.append(_scrape(port, "/healthz"))
            time.sleep(0.5)
        t.join()
    assert "error" not in box, box.get("error")
    # Retries did happen (or the check proves nothing), and writes landed as they did.
    assert sum(box["report"].retries.values()) > 0
    assert len(scan_all(endpoint, dst)) > 0
    failing = [text for code, text in answers if code == 503]
    assert not failing, failing[:3]
