"""Live-migration promises an audit found broken (against the real DynamoDB Local):

* ``cutover --no-verify`` never says GO for a stopped replicator: it cannot see writes made
  after it stopped (verify can, and does);
* a second replicator on the same checkpoint is refused whatever --status-file it is given, and a
  replicator killed with -9 leaves no lock behind;
* ``replicate stop`` during the backfill ends the replicator as stopped (exit 0, both commands),
  and --resume continues the backfill;
* a journal segment that is missing or holds fewer records than the journal recorded is a
  resync, never an endless "rerun with --resume" nor a silent skip;
* bad --poll-interval and --status-file values are refused up front with one line;
* the stream phase's JSON progress lines carry ``backlog``.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from click.testing import CliRunner, Result

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.cli import main
from ddbmigrate.errors import ResyncNeededError, UsageError
from ddbmigrate.jobs.replicate import replicate
from ddbmigrate.state.journal import Journal, segment_name
from ddbmigrate.state.status import read_status, request_stop
from support import as_set, boto_client, create_table, one_error_line, put_items, scan_all, wait_for

pytestmark = pytest.mark.integration

QUICK = ["--poll-interval", "0.1", "--progress", "off", "--quiet"]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def base(endpoint: str) -> List[str]:
    return ["--endpoint-url", endpoint, "--region", "us-east-1"]


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def items(n: int, prefix: str = "k") -> List[Dict[str, Any]]:
    return [{"pk": {"S": f"{prefix}{i:04d}"}, "v": {"N": str(i)}} for i in range(n)]






def state_of(status: Path) -> Dict[str, Any]:
    return read_status(str(status)) if status.exists() else {}


def status_in(folder: Path) -> Path:
    return Path(wait_for(lambda: next(iter(folder.glob("*.status.json")), None), 60.0, "a status file"))


def popen_replicate(tmp_path: Path, *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen([sys.executable, "-m", "ddbmigrate", "replicate", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --------------------------------------------------------------------------- 1: cutover --no-verify


def test_no_verify_cutover_of_a_stopped_replicator_is_no_go(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, items(10))
    status = tmp_path / "st.json"
    box: Dict[str, Any] = {}
    t = threading.Thread(target=lambda: box.update(r=replicate(
        ref(endpoint, src), ref(endpoint, dst), options=RunOptions(progress="off"), status_path=str(status),
        poll_interval=0.1, status_every=0.2)), daemon=True)
    t.start()
    wait_for(lambda: state_of(status).get("state") == "tailing", 60.0, "tailing")
    request_stop(str(status))
    t.join(60)
    assert box["r"].status == "stopped" and state_of(status)["state"] == "stopped"
    gate = [*base(endpoint), "--status-file", str(status), "--quiet-period", "0.5", "--timeout", "30",
            "--progress", "off", "--quiet"]

    # Nothing written since it stopped: verify proves it, but no claim of a quiet source is made.
    ok = cli("cutover", src, dst, *gate)
    assert ok.exit_code == 0, (ok.stdout, ok.stderr)
    assert ok.stdout.startswith("GO: ") and "quiet" not in ok.stdout, ok.stdout

    # A write after the stop: the stopped replicator never saw it.
    put_items(endpoint, src, [{"pk": {"S": "after-stop"}}])
    blind = cli("cutover", src, dst, *gate, "--no-verify")
    assert blind.exit_code == 1, (blind.exit_code, blind.stdout, blind.stderr)
    lines = blind.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("NO-GO: ") and "stopped" in lines[0], blind.stderr
    assert "without --no-verify" in lines[0] and "source is quiet" not in lines[0], lines[0]
    assert "GO" not in blind.stdout
    seen = cli("cutover", src, dst, *gate)
    assert seen.exit_code == 4 and "1 differences" in seen.stderr, (seen.exit_code, seen.stderr)


# --------------------------------------------------------------------------- 2: one replicator per pair


def test_a_second_replicator_with_another_status_file_is_refused_and_kill_9_leaves_no_lock(
        endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, items(20))
    first = popen_replicate(tmp_path, src, dst, *base(endpoint), "--poll-interval", "0.1", "--progress", "off")
    try:
        status = status_in(tmp_path / ".ddbmigrate")
        wait_for(lambda: state_of(status).get("state") == "tailing", 60.0, "tailing")
        second = cli("replicate", src, dst, *base(endpoint), "--resume", "--status-file", "other.status.json",
                     "--stop-after-idle", "1", *QUICK)
        one_error_line(second, 2, "another replicator", f"pid {first.pid}", alone=False)
        assert not (tmp_path / "other.status.json").exists()
        assert read_status(str(status))["alive"]  # the first one runs on, untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    put_items(endpoint, src, items(5, "late"))
    # The kernel dropped the dead one's lock: resuming is not refused, and converges.
    again = cli("replicate", src, dst, *base(endpoint), "--resume", "--status-file", "other.status.json",
                "--stop-after-idle", "1", *QUICK)
    assert again.exit_code == 0, (again.exit_code, again.stderr)
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))
    assert list((tmp_path / ".ddbmigrate").glob("*.lock")) == []  # released and removed on exit


def test_a_second_replicator_with_another_checkpoint_or_folder_is_refused(endpoint: str, tmp_path: Path) -> None:
    """Before: only the checkpoint's lock guarded a pair, so a second replicator given another
    --checkpoint (or run from another folder) ran beside the first, both applying the stream."""
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, items(20))
    first = popen_replicate(tmp_path, src, dst, *base(endpoint), "--poll-interval", "0.1", "--progress", "off")
    try:
        status = status_in(tmp_path / ".ddbmigrate")
        wait_for(lambda: state_of(status).get("state") == "tailing", 60.0, "tailing")
        other = tmp_path / "elsewhere"
        other.mkdir()
        second = subprocess.run([sys.executable, "-m", "ddbmigrate", "replicate", src, dst, *base(endpoint),
                                 "--checkpoint", "other.checkpoint.json", "--stop-after-idle", "1", *QUICK],
                                cwd=other, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert "another replicator" in second.stderr and f"pid {first.pid}" in second.stderr, second.stderr
        assert read_status(str(status))["alive"]
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)


def test_a_stream_the_replicator_enables_is_followed_past_the_sources_first_write(endpoint: str,
                                                                                   tmp_path: Path) -> None:
    """Before: with the source's stream enabled by the replicator (--yes), its shard was empty
    while the backfill wrote the target, and DynamoDB Local then refused the shard's iterator as
    trimmed at the source's first write: "resync needed", exit 1."""
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(300))
    p = popen_replicate(tmp_path, src, dst, *base(endpoint), "--yes", "--poll-interval", "0.2", "--progress", "off")
    try:
        status = status_in(tmp_path / ".ddbmigrate")
        wait_for(lambda: state_of(status).get("state") == "tailing", 60.0, "tailing")
        time.sleep(1.0)
        put_items(endpoint, src, items(30, "late"))
        wait_for(lambda: len(scan_all(endpoint, dst)) == 330 or p.poll() is not None, 60.0, "the late items")
        assert p.poll() is None, p.communicate()[1]
        assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        p.communicate(timeout=60)


def slow_backfill(endpoint: str, tmp_path: Path, n: int, *extra: str) -> Tuple[str, str, Any]:
    """A replicator in its backfill (one segment at 1 read unit/s) of a source of ``n`` items."""
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, items(n))
    p = popen_replicate(tmp_path, src, dst, *base(endpoint), "--segments", "1", "--max-read-units", "1",
                        "--poll-interval", "0.1", "--progress", "off", *extra)
    try:
        status = status_in(tmp_path / ".ddbmigrate")
        wait_for(lambda: state_of(status).get("state") == "backfill", 60.0, "the backfill")
    except BaseException:
        p.kill()
        p.communicate()
        raise
    return src, dst, p


def test_a_replication_interrupted_in_its_backfill_is_reported_as_a_replication(endpoint: str,
                                                                                 tmp_path: Path) -> None:
    """Before: Ctrl-C during the backfill wrote the backfill's own report, filed as a copy
    ("job": "copy") with no journal, though the journal held what a resume applies."""
    src, dst, p = slow_backfill(endpoint, tmp_path, 300, "--report", "rep.json")
    try:
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["job"] == "replicate" and rep["status"] == "interrupted" and rep["exit_code"] == 130, rep
    assert rep["extra"]["phase"] == "backfill" and "backlog_records" in rep["extra"]["journal"], rep["extra"]
    assert "ddbmigrate copy" not in err


# --------------------------------------------------------------------------- 3: stop during the backfill


def test_replicate_stop_during_the_backfill_is_stopped_exit_0_and_resume_continues(
        endpoint: str, tmp_path: Path) -> None:
    src, dst, p = slow_backfill(endpoint, tmp_path, 300, "--report", "rep.json")
    try:
        s = cli("replicate", "stop", src, dst, *base(endpoint), "--timeout", "60")
        assert s.exit_code == 0 and "stopped" in s.stdout, (s.exit_code, s.stdout, s.stderr)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "Traceback" not in err and "interrupted" not in err, err
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["status"] == "stopped" and rep["exit_code"] == 0 and rep["extra"]["stopped_by"] == "stop requested"
    doc = read_status(str(status_in(tmp_path / ".ddbmigrate")))
    assert doc["state"] == "stopped" and not doc["alive"] and doc["phase"] == "backfill"
    assert len(scan_all(endpoint, dst)) < 300  # it really was stopped mid-backfill
    # A cutover against it says so at once (its figures will not change), not after --timeout.
    gate = cli("cutover", src, dst, *base(endpoint), "--timeout", "300", "--quiet-period", "0.5")
    assert gate.exit_code == 1 and "stopped during its backfill" in gate.stdout + gate.stderr, (
        gate.exit_code, gate.stdout, gate.stderr)

    resumed = cli("replicate", src, dst, *base(endpoint), "--resume", "--stop-after-idle", "1", *QUICK)
    assert resumed.exit_code == 0, (resumed.exit_code, resumed.stderr)
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))


# --------------------------------------------------------------------------- 5: journal segment integrity


def _sealed_journal(tmp_path: Path) -> Journal:
    jr = Journal(str(tmp_path / "j"), str(tmp_path / "j.json"))
    jr.open(fresh=True, positions={})
    recs = [{"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": f"k{i}"}}}} for i in range(3)]
    jr.append("shard-1", recs, {"seq": "3"}, read_at=time.time())
    assert jr.seal()
    return jr


def test_a_missing_or_shortened_segment_is_a_resync_not_a_retry(tmp_path: Path) -> None:
    jr = _sealed_journal(tmp_path)
    seg = tmp_path / "j" / segment_name(0)
    assert len(jr.read_segment(0)) == 3
    lines = gzip.decompress(seg.read_bytes()).splitlines(keepends=True)
    seg.write_bytes(gzip.compress(b"".join(lines[:2])))  # valid gzip, one record fewer
    with pytest.raises(ResyncNeededError) as short:
        jr.read_segment(0)
    assert str(seg) in short.value.one_line() and "3" in short.value.message
    # Damaged bytes (deflate data that does not decode: zlib.error, not an OSError) too.
    good = gzip.compress(b"".join(lines))
    seg.write_bytes(good[:12] + bytes(b ^ 0x5A for b in good[12:-8]) + good[-8:])
    with pytest.raises(ResyncNeededError) as damaged:
        jr.read_segment(0)
    assert str(seg) in damaged.value.one_line() and "damaged" in damaged.value.message
    seg.unlink()
    with pytest.raises(ResyncNeededError) as gone:
        jr.read_segment(0)
    assert str(seg) in gone.value.one_line() and "missing" in gone.value.message


def test_resuming_onto_a_shortened_segment_stops_with_resync_needed(endpoint: str, tmp_path: Path) -> None:
    # A slow backfill that ends on --max-runtime (checkpoint kept), with changes journaled meanwhile.
    src, dst, p = slow_backfill(endpoint, tmp_path, 200, "--max-runtime", "6")
    try:
        put_items(endpoint, src, items(20, "during"))
        p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
    segs = sorted((tmp_path / ".ddbmigrate").glob("*.journal/seg-*.jsonl.gz"))
    assert segs, p.returncode
    seg = segs[0]
    lines = gzip.decompress(seg.read_bytes()).splitlines(keepends=True)
    seg.write_bytes(gzip.compress(b"".join(lines[:-1])))
    r = cli("replicate", src, dst, *base(endpoint), "--resume", "--stop-after-idle", "1", *QUICK)
    one_error_line(r, 1, "resync needed", str(seg.name), "--restart --clean-target", alone=False)



def test_the_report_of_a_resync_in_the_stream_phase_names_the_command(endpoint: str, tmp_path: Path) -> None:
    """Before: stderr and the status named the command to resync, the --report did not (the
    engine's report kept the error line from before the command was added)."""
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, items(3))
    box: Dict[str, Any] = {}

    def run() -> None:
        try:
            replicate(ref(endpoint, src), ref(endpoint, dst), options=RunOptions(progress="off", report="rep.json"),
                      status_path=str(tmp_path / "st.json"), poll_interval=0.1, status_every=0.2)
        except BaseException as e:  # noqa: BLE001 - the test looks at it
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_for(lambda: (tmp_path / "st.json").is_file() and read_status(str(tmp_path / "st.json")).get("state")
             == "tailing", 60, "tailing")
    boto_client(endpoint).update_table(TableName=src, StreamSpecification={"StreamEnabled": False})
    t.join(120)
    assert isinstance(box.get("error"), ResyncNeededError)
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["status"] == "failed" and rep["exit_code"] == 1
    assert "has ended" in rep["error"] and "--restart --clean-target" in rep["error"], rep["error"]
    assert read_status(str(tmp_path / "st.json"))["error"] == rep["error"]


# --------------------------------------------------------------------------- 4, 6: refused up front


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_poll_interval_not_above_zero_is_refused(endpoint: str, tmp_path: Path, value: str) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    r = cli("replicate", src, dst, *base(endpoint), "--poll-interval", value, "--max-runtime", "3",
            "--progress", "off", "--quiet")
    one_error_line(r, 2, "--poll-interval must be > 0 seconds", alone=False)
    assert not (tmp_path / ".ddbmigrate").exists() or not list((tmp_path / ".ddbmigrate").iterdir())




@pytest.mark.parametrize("where", ["s3://", "s3:///prefix"])
def test_a_journal_url_without_a_bucket_is_refused_up_front(endpoint: str, tmp_path: Path, where: str) -> None:
    """Before: `--journal s3://` journaled to a local folder named "s3:" (and `s3:///prefix`
    failed only at the first seal, exit 75, once the checkpoint and the journal existed)."""
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, items(3))
    r = cli("replicate", src, dst, *base(endpoint), "--journal", where, "--max-runtime", "2", *QUICK)
    one_error_line(r, 2, f"--journal {where}", "s3://bucket/prefix", alone=False)
    assert sorted(os.listdir(tmp_path)) == []
    assert scan_all(endpoint, dst) == []


@pytest.mark.parametrize("limit", ["max_runtime", "stop_after_idle", "max_lag"])
def test_a_nan_limit_is_refused_not_a_run_that_never_ends(endpoint: str, tmp_path: Path, limit: str) -> None:
    """Before: nan passed the `< 0` checks, and a nan --max-runtime or --stop-after-idle never
    stopped the replication (nor a nan --max-lag ever failed /healthz)."""
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    stop = threading.Event()
    stop.set()  # (were it accepted, the run ends at once instead of never)
    with pytest.raises(UsageError, match=f"--{limit.replace('_', '-')} must be"):
        replicate(ref(endpoint, src), ref(endpoint, dst), options=RunOptions(progress="off"), stop_event=stop,
                  poll_interval=0.1, **{limit: float("nan")})
    assert not (tmp_path / ".ddbmigrate").exists() or not list((tmp_path / ".ddbmigrate").iterdir())


@pytest.mark.parametrize("args, words", [
    (["replicate", "status", "--status-file", "s.json", "--watch", "nan"], ["--watch must be"]),
    (["replicate", "status", "--status-file", "s.json", "--watch", "-1"], ["--watch must be"]),
    (["replicate", "status", "--status-file", "s.json", "--max-lag", "nan"], ["--max-lag must be"]),
    (["cutover", "{src}", "{dst}", "--timeout", "nan"], ["--timeout", "must be"]),
    (["cutover", "{src}", "{dst}", "--quiet-period", "nan"], ["--quiet-period", "must be"]),
])
def test_status_and_cutover_refuse_a_nan_or_negative_figure(endpoint: str, tmp_path: Path, args: List[str],
                                                           words: List[str]) -> None:
    """Before: `status --watch -1` printed once, then "internal error: ValueError"; a nan
    --max-lag never lagged; a nan cutover --timeout waited forever for a lag that never came."""
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    (tmp_path / "s.json").write_text(json.dumps({"state": "tailing", "updated_at": time.time(), "pid": os.getpid(),
                                                 "lag_seconds": 99.0, "caught_up": False}))
    r = cli(*[a.format(src=src, dst=dst) for a in args], *(base(endpoint) if args[0] == "cutover" else []),
            "--progress" if args[0] == "cutover" else "--json", *(["off"] if args[0] == "cutover" else []))
    one_error_line(r, 2, *words, alone=False)


def test_a_status_file_under_a_regular_file_is_refused_up_front(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    (tmp_path / "afile").write_text("")
    r = cli("replicate", src, dst, *base(endpoint), "--status-file", "afile/s.json", "--stop-after-idle", "1",
            *QUICK)
    one_error_line(r, 2, "--status-file", "afile/s.json", alone=False)
    assert not (tmp_path / ".ddbmigrate").exists() or not list((tmp_path / ".ddbmigrate").iterdir())
    assert scan_all(endpoint, dst) == []


# --------------------------------------------------------------------------- 7: progress lines


def test_json_progress_of_the_stream_phase_carries_the_backlog(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, items(5))
    out = subprocess.run([sys.executable, "-m", "ddbmigrate", "replicate", src, dst, *base(endpoint),
                          "--poll-interval", "0.1", "--progress", "json", "--stop-after-idle", "1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    events = [json.loads(ln) for ln in out.stderr.splitlines() if ln.startswith('{"event":"progress')]
    stream = [e for e in events if e.get("job") == "replicate"]
    assert stream and all("backlog" in e for e in stream), stream
    assert stream[-1]["backlog"] == 0
