"""The change journal against DynamoDB Local behind a simulated stream retention of R seconds.

A backfill throttled to take more than 3 x R, and a writer putting, updating and deleting
overlapping keys during and after it: the target equals the source (identity and a re-keying
fan-out) with the journal; without it (the stream read only after the backfill, as before) the
proxy's trimming loses changes. Then kill -9 in every phase and --resume; metrics and /healthz.
Every outcome is checked with an independent boto3 scan of both tables.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from support import as_set, create_table, every_type_items, put_items, scan_all, wait_for
from test_replicate import (
    FANOUT_PY,
    Writer,
    expected_after,
    ref,
    run_in_thread,
    seed_items,
)

from ddbmigrate import RetryPolicy, RunOptions
from ddbmigrate.errors import ResyncNeededError
from ddbmigrate.jobs.replicate import replicate
from ddbmigrate.state.status import read_status
from ddbmigrate.testing.proxy import FaultProxy
from ddbmigrate.testing.retention import RetentionProxy

pytestmark = pytest.mark.integration

R = 2.5  # the simulated stream retention, seconds


class TimedWriter(Writer):
    """The seeded writer of test_replicate (puts, updates, deletes on overlapping keys), running
    until ``halt`` is set (or ``seconds`` pass)."""

    def __init__(self, endpoint: str, table: str, seed: int, seconds: float, keys: List[str]) -> None:
        super().__init__(endpoint, table, seed, ops=10**9, keys=keys, pause=0.02)
        self.halt = threading.Event()
        self.until = time.time() + seconds

    def run(self) -> None:
        import random

        from support import boto_client
        from test_replicate import OWNERS, TAGS

        try:
            c = boto_client(self.endpoint)
            r = random.Random(self.seed)
            n = 0
            while not self.halt.is_set() and time.time() < self.until:
                k = {"pk": {"S": r.choice(self.keys)}}
                x = r.random()
                tags = {"SS": sorted(r.sample(TAGS, r.randint(1, 3)))}
                if x < 0.4:
                    c.put_item(TableName=self.table, Item={**k, "v": {"N": str(n)}, "owner": {"S": r.choice(OWNERS)},
                                                          "tags": tags, "m": {"M": {}}})
                elif x < 0.8:
                    c.update_item(TableName=self.table, Key=k, UpdateExpression="SET v = :v, #o = :o ADD tags :t",
                                  ExpressionAttributeNames={"#o": "owner"},
                                  ExpressionAttributeValues={":v": {"N": str(n)}, ":o": {"S": r.choice(OWNERS)},
                                                             ":t": tags})
                else:
                    c.delete_item(TableName=self.table, Key=k)
                n += 1
                self.n = n
                time.sleep(self.pause)
        except BaseException as e:  # surfaced by the test
            self.error = e
        finally:
            self.done_at = time.time()




def status_of(path: Path) -> Dict[str, Any]:
    return read_status(str(path)) if path.exists() else {}


def quiet(path: Path, writer: Writer, failed_is_done: bool = False) -> bool:
    st = status_of(path)
    if st.get("state") == "failed":
        if failed_is_done:
            return True
        raise AssertionError(st.get("error"))
    return bool(writer.done_at and st.get("caught_up") and st.get("pending_records") == 0
                and st.get("updated_at", 0) > writer.done_at + 1.0 and st.get("idle_seconds", 0) >= 0.5)


def test_backfill_longer_than_the_retention_converges_only_with_the_journal(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    put_items(endpoint, src, seed_items(70) + every_type_items())
    (tmp_path / "fan.py").write_text(FANOUT_PY)
    fan = str(tmp_path / "fan.py") + ":fanout"
    # A read limit of 6 units/s: these items take about 9 s to scan, more than 3 R.
    proxy = RetentionProxy(endpoint, retention=R, tables=[src], scan_delay=0.0).start()
    runs = {"identity": (None, True), "fanout": (fan, True), "no-journal": (None, False)}
    stop = threading.Event()
    boxes, targets, status = {}, {}, {}
    try:
        for name, (tf, journaled) in runs.items():
            targets[name] = create_table(endpoint)
            status[name] = tmp_path / f"{name}.status.json"
            boxes[name] = run_in_thread(lambda tf=tf, journaled=journaled, name=name: replicate(
                ref(proxy.url, src), ref(endpoint, targets[name]), transform=tf,
                options=RunOptions(progress="off", segments=1, writers=4, max_read_units=6.0,
                                   checkpoint=str(tmp_path / f"{name}.checkpoint.json")),
                stop_event=stop, status_path=str(status[name]), poll_interval=0.1, status_every=0.2,
                journal_during_backfill=journaled))
        keys = [f"k{i:04d}" for i in range(0, 90, 2)] + [f"new{i}" for i in range(20)] + ["empties", "sets"]
        writer = TimedWriter(endpoint, src, seed=11, seconds=120, keys=keys)
        writer.start()
        backlog_in_backfill = 0
        phases_seen: Dict[str, int] = {}
        stream_since: Optional[float] = None
        while writer.is_alive():
            sts = [status_of(status[n]) for n in runs]
            phases_seen.setdefault(str(sts[0].get("phase")), writer.n)
            if sts[0].get("phase") == "backfill":
                backlog_in_backfill = max(backlog_in_backfill, int((sts[0].get("journal") or {}).get("backlog_records", 0)))
            if all(st.get("phase") == "stream" for st in sts):
                stream_since = stream_since or time.time()
                if time.time() - stream_since > 2.0:  # and on, a while after every backfill
                    writer.halt.set()
            time.sleep(0.05)
        assert writer.error is None
        assert phases_seen.get("backfill", 10**9) < phases_seen.get("stream", -1), phases_seen  # writes after too
        assert backlog_in_backfill > 0  # the journal held the changes while the backfill ran
        for name in ("identity", "fanout"):
            wait_for(lambda name=name: quiet(status[name], writer), 90, f"{name} to catch up")
        # Without the journal: it either caught up (with a wrong target) or saw the trimming.
        wait_for(lambda: quiet(status["no-journal"], writer, failed_is_done=True), 90, "no-journal")
    finally:
        stop.set()
        for b in boxes.values():
            b["thread"].join(60)
        proxy.stop()
    source_items = scan_all(endpoint, src)
    for name, (tf, journaled) in runs.items():
        if not journaled and "error" in boxes[name]:
            # The stream answered TrimmedDataAccessException: resync needed, the copy is incomplete.
            assert isinstance(boxes[name]["error"], ResyncNeededError), boxes[name]["error"]
            continue
        assert "error" not in boxes[name], boxes[name].get("error")
        report = boxes[name]["result"]
        assert report.extra["backfill_seconds"] >= 3 * R, report.extra
        got = as_set(scan_all(endpoint, targets[name]))
        if journaled:
            assert got == expected_after(tf, source_items), name
            assert report.balanced() and report.dead_lettered == 0
            assert report.extra["journal"]["records_journaled"] > 0
        else:
            # The proxy bites: read only after the backfill, the stream had trimmed changes.
            assert got != expected_after(tf, source_items)
    assert proxy.trimmed_answers > 0 and proxy.horizon_rewrites > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int, path: str) -> Tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _metric(text: str, name: str) -> Optional[float]:
    m = re.search(rf"^ddbmigrate_{name}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


def test_kill_9_in_every_phase_then_resume_converges(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, seed_items(60))
    (tmp_path / "fan.py").write_text(FANOUT_PY)
    proxy = RetentionProxy(endpoint, retention=3600, tables=[src]).start()
    writer = TimedWriter(endpoint, src, seed=5, seconds=30, keys=[f"k{i:04d}" for i in range(0, 90, 3)])
    base = [sys.executable, "-m", "ddbmigrate", "replicate", src, dst, "--endpoint-url", proxy.url,
            "--target-endpoint-url", endpoint, "--region", "us-east-1", "--transform", "fan.py:fanout",
            "--segments", "2", "--writers", "4", "--max-read-units", "4", "--poll-interval", "0.1",
            "--progress", "off", "--quiet", "--resume"]
    ddir = tmp_path / ".ddbmigrate"

    def status() -> Dict[str, Any]:
        files = sorted(ddir.glob("*.status.json")) if ddir.exists() else []
        return read_status(str(files[0])) if files else {}

    def run(until: Optional[Any] = None, env: Optional[Dict[str, str]] = None, extra: Tuple[str, ...] = ()) -> int:
        p = subprocess.Popen(base + list(extra), cwd=tmp_path, env={**os.environ, **(env or {})},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if until is not None:
                wait_for(lambda: until(status()) or p.poll() is not None, 90, "the phase to kill in")
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
            out, err = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
        assert "Traceback" not in err, err
        return p.returncode

    try:
        writer.start()
        # 1. In the backfill, once it copied something and the journal holds changes.
        rc = run(lambda st: st.get("phase") == "backfill" and (st.get("backfill_done") or 0) >= 20
                 and (st.get("journal") or {}).get("backlog_records", 0) > 0)
        assert rc == -signal.SIGKILL
        # 2. Applying the journal: writes acknowledged, their checkpoint not saved yet (the window
        #    between sealing a segment and recording its positions: tests/unit/test_journal.py).
        assert run(env={"DDBMIGRATE_CRASH_AT": "after_stream_write", "DDBMIGRATE_CRASH_AFTER": "2"}) \
            == -signal.SIGKILL
        # 3. Tailing (caught up with the journal) while the writer goes on, slower (so that the
        #    stream is often caught up between two of its writes).
        writer.pause = 0.3
        assert run(lambda st: st.get("state") == "tailing") == -signal.SIGKILL
        writer.halt.set()
        writer.join(120)
        assert writer.error is None
        assert run(extra=("--stop-after-idle", "1")) == 0
    finally:
        proxy.stop()
    assert as_set(scan_all(endpoint, dst)) == expected_after(str(tmp_path / "fan.py") + ":fanout",
                                                            scan_all(endpoint, src))
    # Applied segments are deleted: far fewer are left than were written.
    state = json.loads(next(ddir.glob("*.journal.json")).read_text())
    left = list(next(ddir.glob("*.journal")).glob("seg-*.jsonl.gz"))
    assert state["next"] >= 5 and len(left) <= 2, (state["next"], left)


def test_metrics_show_lag_and_backlog_and_healthz_fails_while_the_target_is_blocked(endpoint: str,
                                                                                     tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, seed_items(60))
    # Pages of 10 items, each held back 0.5 s: a backfill of a few seconds to watch.
    sproxy = RetentionProxy(endpoint, retention=3600, tables=[src], scan_delay=0.5).start()
    tproxy = FaultProxy(endpoint).start()
    port = _free_port()
    stop = threading.Event()
    box = run_in_thread(lambda: replicate(
        ref(sproxy.url, src), ref(tproxy.url, dst),
        options=RunOptions(progress="off", segments=1, writers=2, max_read_units=2.5, metrics_port=port,
                           retry=RetryPolicy(max_attempts=60, max_delay=0.5),
                           checkpoint=str(tmp_path / "m.checkpoint.json")),
        stop_event=stop, status_path=str(tmp_path / "m.status.json"), poll_interval=0.1, max_lag=1.0))
    writer = TimedWriter(endpoint, src, seed=3, seconds=120, keys=[f"k{i:04d}" for i in range(80)])
    lags, backlogs, health = [], [], []
    try:
        writer.start()
        wait_for(lambda: _scrape(port, "/healthz")[0] == 200 if _port_open(port) else False, 30, "/healthz")
        phases, copy_seen = set(), False
        deadline = time.time() + 60
        while not _applied(tmp_path / "m.status.json") and time.time() < deadline:
            code, text = _scrape(port, "/metrics")  # the backfill, then the journal drained
            assert code == 200
            lags.append(_metric(text, "replication_lag_seconds"))
            backlogs.append(_metric(text, "journal_backlog_records"))
            phases.update(re.findall(r'ddbmigrate_replication_phase\{phase="(\w+)"\} 1\.0', text))
            copy_seen = copy_seen or 'ddbmigrate_records_total{counter="read",job="copy"}' in text
            time.sleep(0.25)
        assert "backfill" in phases and copy_seen, (phases, copy_seen)  # the backfill's own driver serves too
        tproxy.start_outage(5)  # the target is unreachable while the writer goes on
        t_end = time.time() + 4
        while time.time() < t_end:
            health.append(_scrape(port, "/healthz"))
            time.sleep(0.3)
        tproxy.end_outage()
        writer.halt.set()
        writer.join(60)
        wait_for(lambda: _scrape(port, "/healthz")[0] == 200, 60, "healthy again")
        text = wait_for(lambda: (lambda t: t if _metric(t, "journal_backlog_records") == 0.0
                                 and _metric(t, "replication_lag_seconds") == 0.0 else None)(_scrape(port, "/metrics")[1]),
                        60, "the backlog drained")
        assert re.search(r'ddbmigrate_retries_total\{cause="[a-z_]+",job="replicate"\} [1-9]', text), text
        assert re.search(r'ddbmigrate_stream_records_read_total\{kind="MODIFY"\} [1-9]', text)
    finally:
        stop.set()
        box["thread"].join(60)
        sproxy.stop()
        tproxy.stop()
    assert "error" not in box, box.get("error")
    seen_lags = [x for x in lags if x is not None]
    seen_backlogs = [x for x in backlogs if x is not None]
    assert len(set(seen_lags)) > 1 and max(seen_lags) > 0, seen_lags  # the lag moves
    assert len(set(seen_backlogs)) > 1 and max(seen_backlogs) > 0, seen_backlogs  # so does the backlog
    assert any(c == 503 and "lag" in body for c, body in health), health
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))
    assert not _port_open(port)  # the server is gone with the job


def _applied(path: Path) -> bool:
    """In the apply phase with the journal's backlog (nearly) drained."""
    st = status_of(path)
    return st.get("phase") == "stream" and (st.get("journal") or {}).get("backlog_records", 10**9) < 20


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_journal_on_s3(moto_s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--journal s3://bucket/prefix: segments are objects; sealed, read, deleted and resumed there."""
    import boto3

    from ddbmigrate.state.journal import Journal

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    bucket = f"journal-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    s3.create_bucket(Bucket=bucket)
    where = f"s3://{bucket}/replication/j"
    j = Journal(where, str(tmp_path / "j.json"))
    j.open(fresh=True, positions={"s": {"from": "TRIM_HORIZON", "since": 1.0}})
    for i in range(3):
        recs = [{"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": f"k{i}"}}, "SequenceNumber": str(10 + i),
                                                     "NewImage": {"pk": {"S": f"k{i}"}, "b": {"B": "AAE="}}}}]
        j.append("s", recs, {"after": str(10 + i)}, 100.0)
        j.seal()
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"replication/j/seg-{n:012d}.jsonl.gz" for n in range(3)]
    j.delete_below(1)
    again = Journal(where, str(tmp_path / "j.json"))
    again.open(fresh=False, positions={})
    assert again.positions == {"s": {"after": "12"}} and again.sealed_next() == 3
    assert [x["r"]["dynamodb"]["NewImage"] for x in again.read_segment(2)] == [{"pk": {"S": "k2"}, "b": {"B": "AAE="}}]
    assert again.backlog(1, 0)["records"] == 2
    assert len(s3.list_objects_v2(Bucket=bucket)["Contents"]) == 2  # the applied segment is gone


def test_every_long_job_serves_metrics_through_the_driver(endpoint: str, tmp_path: Path) -> None:
    """`copy --metrics-port`: the one driver serves /metrics and /healthz while the job runs."""
    from ddbmigrate.jobs.copy import copy_table

    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, seed_items(30))
    port = _free_port()
    seen: Dict[str, Any] = {}

    class Scrape:
        def attach(self, job: str, snapshot: Any) -> Any:
            seen["metrics"] = _scrape(port, "/metrics")
            seen["health"] = _scrape(port, "/healthz")
            return lambda: None

    rep = copy_table(ref(endpoint, src), ref(endpoint, dst),
                     RunOptions(progress="off", metrics_port=port, checkpoint=str(tmp_path / "c.json")),
                     observer=Scrape())
    assert rep.written == 30
    code, text = seen["metrics"]
    assert code == 200 and 'ddbmigrate_job_running{job="copy"} 1.0' in text
    assert 'ddbmigrate_records_total{counter="read",job="copy"}' in text
    assert seen["health"] == (200, "ok\n")
    assert not _port_open(port)  # released with the job

    # verify too: both of its side jobs serve through the one server it holds while it runs.
    from ddbmigrate.core.transform import Transform
    from ddbmigrate.verify.job import verify_tables

    def identity(item: Dict[str, Any]) -> Dict[str, Any]:
        seen.setdefault("during_verify", _scrape(port, "/metrics"))
        return item

    vrep = verify_tables(ref(endpoint, src), ref(endpoint, dst), transform=Transform(identity, "t:identity", "h", __file__),
                         metrics_port=port)
    assert vrep.missing == vrep.mismatched == vrep.unexpected == 0
    code, text = seen["during_verify"]
    assert code == 200 and 'ddbmigrate_job_running{job="verify-source"} 1.0' in text  # its own label per side
    assert not _port_open(port)


def test_metrics_linger_serves_the_final_counts_after_the_job(endpoint: str, tmp_path: Path) -> None:
    """`copy --metrics-port P --metrics-linger S`: a job shorter than the scrape interval is still
    seen as it ended; the counts served then are the report's. Before, the server closed with
    the job and the last scrape's figures were the last the scraper ever had."""
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, seed_items(40))
    port = _free_port()
    report = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "ddbmigrate", "copy", src, dst, "--endpoint-url", endpoint,
                             "--progress", "off", "--metrics-port", str(port), "--metrics-linger", "60",
                             "--report", str(report)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    try:
        wait_for(lambda: report.exists() and b"metrics: the final figures stay on" in _peek_stderr(proc), 60,
                 "the copy to end and linger")
        rep = json.loads(report.read_text())
        code, text = _scrape(port, "/metrics")
        assert code == 200 and rep["exit_code"] == 0 and rep["counters"]["written"] == 40
        assert re.search(r'^ddbmigrate_records_total\{counter="written",job="copy"\} 40\.0$', text, re.MULTILINE), text
        assert _metric(text, "running") == 0
        assert 'ddbmigrate_job_running{job="copy"}' not in text  # a gauge of the present: gone
        proc.send_signal(signal.SIGINT)  # ends the linger at once; the job's own exit code stays
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert not _port_open(port)
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "copy", src, dst, "--endpoint-url", endpoint,
                        "--metrics-linger", "5"], capture_output=True, text=True,
                       env={**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    assert r.returncode == 2 and "--metrics-linger needs --metrics-port" in r.stderr, r.stderr


_stderr_seen: Dict[int, bytes] = {}


def _peek_stderr(proc: "subprocess.Popen[bytes]") -> bytes:
    """What the process has written to stderr so far (read without blocking)."""
    import select

    assert proc.stderr is not None
    got = _stderr_seen.get(proc.pid, b"")
    while select.select([proc.stderr], [], [], 0)[0]:
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            break
        got += chunk
    _stderr_seen[proc.pid] = got
    return got


def test_ttl_deletes_are_replicated_by_default_and_skipped_with_the_option(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    put_items(endpoint, src, [{"pk": {"S": f"{kind}{i}"}, "v": {"N": str(i)}} for kind in ("ttl", "user")
                              for i in range(5)])
    proxy = RetentionProxy(endpoint, retention=3600, tables=[src],
                           ttl_expired=lambda r: r["dynamodb"]["Keys"]["pk"]["S"].startswith("ttl")).start()
    stop = threading.Event()
    boxes, dsts = {}, {}
    try:
        for skip in (False, True):
            dsts[skip] = create_table(endpoint)
            boxes[skip] = run_in_thread(lambda skip=skip: replicate(
                ref(proxy.url, src), ref(endpoint, dsts[skip]), skip_ttl_deletes=skip, journal=str(tmp_path / "shared"),
                options=RunOptions(progress="off", checkpoint=str(tmp_path / f"{skip}.checkpoint.json")),
                stop_event=stop, status_path=str(tmp_path / f"{skip}.status.json"), poll_interval=0.1,
                status_every=0.2))
        for skip in (False, True):
            wait_for(lambda skip=skip: status_of(tmp_path / f"{skip}.status.json").get("state") == "tailing", 60, "tail")
        from support import boto_client

        c = boto_client(endpoint)
        for i in range(5):  # "expire" the ttl items, delete the user items
            c.delete_item(TableName=src, Key={"pk": {"S": f"ttl{i}"}})
            c.delete_item(TableName=src, Key={"pk": {"S": f"user{i}"}})
        done_at = time.time()
        for skip in (False, True):
            wait_for(lambda skip=skip: (lambda st: st.get("caught_up") and st.get("updated_at", 0) > done_at + 1
                                        and st.get("removes", 0) + st.get("ttl_deletes_skipped", 0) >= 10)(
                status_of(tmp_path / f"{skip}.status.json")), 60, "the deletes")
        human = __import__("click.testing", fromlist=["CliRunner"]).CliRunner().invoke(
            __import__("ddbmigrate.cli", fromlist=["main"]).main,
            ["replicate", "status", "--status-file", str(tmp_path / "True.status.json")])
    finally:
        stop.set()
        for b in boxes.values():
            b["thread"].join(60)
        proxy.stop()
    assert scan_all(endpoint, dsts[False]) == []  # TTL expiries replicated as deletes by default
    assert sorted(i["pk"]["S"] for i in scan_all(endpoint, dsts[True])) == [f"ttl{i}" for i in range(5)]
    default, skipping = boxes[False]["result"], boxes[True]["result"]
    assert default.extra["ttl_deletes"] == 5 and default.extra["ttl_deletes_skipped"] == 0
    assert skipping.extra["ttl_deletes_skipped"] == 5 and skipping.extra["removes"] == 5
    assert "TTL deletes      0 replicated, 5 skipped" in human.output and "journal" in human.output
    assert len(list((tmp_path / "shared").iterdir())) == 2  # --journal DIR shared: one folder each
    assert "phase            tailing the stream (caught up)" in human.output, human.output


def test_the_progress_of_a_backfill_shows_the_journal_filling(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, seed_items(80))
    writer = TimedWriter(endpoint, src, seed=9, seconds=8, keys=[f"k{i:04d}" for i in range(0, 120, 2)])
    writer.start()
    try:
        out = subprocess.run([sys.executable, "-m", "ddbmigrate", "replicate", src, dst, "--endpoint-url", endpoint,
                              "--region", "us-east-1", "--segments", "2", "--max-read-units", "4",
                              "--poll-interval", "0.1", "--progress", "json", "--stop-after-idle", "1.5"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=180)
    finally:
        writer.halt.set()
        writer.join(60)
    assert out.returncode == 0, out.stderr[-3000:]
    events = [json.loads(line) for line in out.stderr.splitlines() if line.startswith('{"event":"progress')]
    backfill = [e for e in events if e.get("job") == "copy"]
    assert backfill and all("journal_backlog" in e and "journal_bytes" in e for e in backfill), backfill[:3]
    assert max(e["journal_backlog"] for e in backfill) > 0, backfill
