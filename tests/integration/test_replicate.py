"""Live replication against the real DynamoDB Local (with Streams): convergence under concurrent
writes, kill -9 and resume, the cutover gate, rollback, stream checks and resync.

Every outcome is checked with an independent boto3 scan of both tables.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.errors import FatalError, ResyncNeededError, UsageError
from ddbmigrate.jobs.replicate import replicate
from ddbmigrate.state.status import read_status
from ddbmigrate.core.transform import load_transform
from support import as_set, boto_client, create_table, every_type_items, put_items, scan_all

pytestmark = pytest.mark.integration

OWNERS = ("ann", "bob", "cat")
TAGS = ("red", "green", "blue", "gold")

FANOUT_PY = '''
def fanout(item):
    """One main item re-keyed under item#, plus one item per (owner, tag): keys change with the data."""
    out = [dict(item, pk="item#" + item["pk"])]
    for t in sorted(item.get("tags") or []):
        d = {"pk": "%s#%s#%s" % (item.get("owner"), t, item["pk"]), "src": item["pk"]}
        if "v" in item:
            d["v"] = item["v"]
        out.append(d)
    return out
'''

RENAME_PY = '''
def forward(item):
    return dict(item, pk="new#" + item["pk"])

def reverse(item):
    assert item["pk"].startswith("new#"), item["pk"]
    return dict(item, pk=item["pk"][len("new#"):])
'''


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def opts(**kw: Any) -> RunOptions:
    return RunOptions(progress="off", **kw)


class Writer(threading.Thread):
    """Seeded puts, updates and deletes on overlapping keys of the source, as fast as it can."""

    def __init__(self, endpoint: str, table: str, seed: int, ops: int, keys: List[str], pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.table, self.seed, self.ops, self.keys, self.pause = endpoint, table, seed, ops, keys, pause
        self.done_at: Optional[float] = None
        self.n = 0  # operations completed so far
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            c = boto_client(self.endpoint)
            r = random.Random(self.seed)
            for n in range(self.ops):
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
                self.n = n + 1
                if self.pause:
                    time.sleep(self.pause)
        except BaseException as e:  # surfaced by the test
            self.error = e
        finally:
            self.done_at = time.time()


def seed_items(n: int) -> List[Dict[str, Any]]:
    r = random.Random(n)
    return [{"pk": {"S": f"k{i:04d}"}, "v": {"N": str(i)}, "owner": {"S": r.choice(OWNERS)},
             "tags": {"SS": sorted(r.sample(TAGS, 2))}, "nested": {"M": {"e": {"M": {}}, "l": {"L": [{"M": {}}]}}}}
            for i in range(n)]


def wait_converged(status_path: Path, writer: Writer, timeout: float = 90.0) -> Dict[str, Any]:
    """The replicator's own status says: caught up, nothing pending, polled after the writer stopped."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if status_path.exists() and writer.done_at is not None:
            st = read_status(str(status_path))
            if st.get("state") == "failed":
                raise AssertionError(st.get("error"))
            if (st.get("caught_up") and st.get("pending_records") == 0 and st.get("lag_seconds") == 0
                    and st["updated_at"] > writer.done_at + 1.0 and st.get("idle_seconds", 0) >= 0.5):
                return st
        time.sleep(0.1)
    raise AssertionError(f"replication did not converge within {timeout}s")


def wait_state(where: Path, states: tuple, timeout: float = 60.0) -> Dict[str, Any]:
    """Wait until the (only) status file in ``where`` (a file or a folder) shows one of ``states``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        # (is_file, not exists: the folder may appear between the two checks, and is no status file)
        files = sorted(where.glob("*.status.json")) if where.is_dir() else [where] if where.is_file() else []
        if files:
            st = read_status(str(files[0]))
            if st.get("state") in states:
                return st
        time.sleep(0.05)
    raise AssertionError(f"no status in {states} within {timeout}s")


def run_in_thread(fn: Callable[[], Any]) -> Dict[str, Any]:
    box: Dict[str, Any] = {}

    def go() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    box["thread"] = t
    return box


def expected_after(transform: Optional[str], items: List[Dict[str, Any]]) -> Dict[Any, int]:
    if transform is None:
        return as_set(items)
    tf = load_transform(transform)
    return as_set([o for it in items for o in tf(it)])


@pytest.mark.parametrize("kind", ["identity", "fanout"])
def test_converges_under_concurrent_writes(endpoint: str, tmp_path: Path, kind: str) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    transform = None
    keys = [f"k{i:04d}" for i in range(0, 400, 2)] + [f"new{i}" for i in range(60)]
    if kind == "fanout":
        (tmp_path / "fan.py").write_text(FANOUT_PY)
        transform = str(tmp_path / "fan.py") + ":fanout"
        put_items(endpoint, src, seed_items(300))
    else:
        put_items(endpoint, src, seed_items(300) + every_type_items())
        keys += ["empties", "nested", "sets", "scalars"]  # the writer also touches every type
    status = tmp_path / "status.json"
    stop = threading.Event()
    writer = Writer(endpoint, src, seed=7 if kind == "identity" else 8, ops=300, keys=keys, pause=0.005)
    writer.start()  # writes during the backfill, and on during the replay and the tail
    box = run_in_thread(lambda: replicate(ref(endpoint, src), ref(endpoint, dst), transform=transform,
                                          options=opts(segments=4, writers=4), stop_event=stop,
                                          status_path=str(status), poll_interval=0.1, status_every=0.2))
    seen: Dict[str, int] = {}  # writer progress when each phase was first seen
    while writer.is_alive():
        if status.exists():
            st = read_status(str(status))
            key = "stream" if st.get("phase") == "stream" else st.get("state", "")
            seen.setdefault(key, writer.n)
        time.sleep(0.01)
    writer.join(120)
    assert seen.get("backfill", 10**9) < seen.get("stream", -1) < writer.ops, seen  # writes in both phases
    assert writer.error is None
    st = wait_converged(status, writer)
    stop.set()
    box["thread"].join(60)
    assert "error" not in box, box.get("error")
    report = box["result"]
    assert report.balanced() and report.dead_lettered == 0
    assert st["records"] > 0 and report.extra["stopped_by"] == "stop requested"
    src_items = scan_all(endpoint, src)
    assert as_set(scan_all(endpoint, dst)) == expected_after(transform, src_items)
    assert read_status(str(status))["state"] == "stopped"
    if kind == "fanout":
        assert st["removes"] > 0 and report.counters["deleted"] > 0  # stale derived items were deleted


CRASHES = [("after_batch_ack", 3), ("mid_checkpoint_write", 2), ("after_stream_write", 3), ("sigkill", 0)]


@pytest.mark.parametrize("seed", [101, 202])
def test_kill_9_at_random_points_then_resume_converges(endpoint: str, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    (tmp_path / "fan.py").write_text(FANOUT_PY)
    transform = str(tmp_path / "fan.py") + ":fanout"
    put_items(endpoint, src, seed_items(300))
    writer = Writer(endpoint, src, seed=seed, ops=400, keys=[f"k{i:04d}" for i in range(0, 500, 3)], pause=0.002)
    writer.start()
    cmd = [sys.executable, "-m", "ddbmigrate", "replicate", src, dst, "--endpoint-url", endpoint,
           "--region", "us-east-1", "--transform", transform, "--segments", "4", "--writers", "4",
           "--stop-after-idle", "1", "--poll-interval", "0.1", "--resume", "--quiet"]
    kills, attempts = 0, 0
    while True:
        attempts += 1
        assert attempts < 15, "did not converge"
        env = dict(os.environ)
        mode = rng.choice(CRASHES) if kills < 3 else None
        if mode and mode[0] != "sigkill":
            env.update(DDBMIGRATE_CRASH_AT=mode[0], DDBMIGRATE_CRASH_AFTER=str(rng.randint(1, mode[1] * 4)))
        p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if mode and mode[0] == "sigkill":
            try:
                p.wait(timeout=rng.uniform(1.0, 3.0))
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
        out, err = p.communicate(timeout=120)
        if p.returncode == -signal.SIGKILL:
            kills += 1
            continue
        assert p.returncode == 0, err
        if writer.done_at is not None and not writer.is_alive():
            break
    assert kills >= 1, "no crash happened: the test would prove nothing"
    assert writer.error is None
    assert as_set(scan_all(endpoint, dst)) == expected_after(transform, scan_all(endpoint, src))


def cli(*args: str) -> Any:
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    return CliRunner().invoke(main, list(args))


def test_cutover_gate_status_and_sigterm_cli(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, seed_items(50))
    base = ["--endpoint-url", endpoint, "--region", "us-east-1"]
    rep = subprocess.Popen([sys.executable, "-m", "ddbmigrate", "replicate", src, dst, *base, "--poll-interval", "0.1",
                            "--progress", "off"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_state(tmp_path / ".ddbmigrate", ("replaying", "tailing"))
        writer = Writer(endpoint, src, seed=3, ops=120, keys=[f"k{i:04d}" for i in range(80)])
        writer.start()
        writer.join(60)
        r = cli("cutover", src, dst, *base, "--quiet-period", "1", "--timeout", "90", "--progress", "off",
                "--report", "go.json")
        assert r.exit_code == 0, r.output
        assert "GO: lag is zero" in r.stdout
        go = json.loads((tmp_path / "go.json").read_text())
        assert go["go"] and go["differences"] == 0 and go["lag_seconds"] == 0
        assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))

        s = cli("replicate", "status", src, dst, *base, "--json")
        assert s.exit_code == 0, s.output
        doc = json.loads(s.stdout)
        assert doc["state"] == "tailing" and doc["alive"] and doc["caught_up"] and doc["records"] > 0
        human = cli("replicate", "status", src, dst, *base)
        assert "lag" in human.stdout and "tailing" in human.stdout
        second = cli("replicate", src, dst, *base, "--resume", "--quiet")
        assert second.exit_code == 2 and "another replicator" in second.stderr

        # A write behind the replication's back: verify finds it, the gate says no.
        put_items(endpoint, dst, [{"pk": {"S": "rogue"}}])
        r = cli("cutover", src, dst, *base, "--quiet-period", "0.5", "--timeout", "60", "--progress", "off", "--quiet")
        assert r.exit_code == 4, r.output
        assert "NO-GO" in r.stderr and "1 differences" in r.stderr
    finally:
        rep.send_signal(signal.SIGTERM)
        out, err = rep.communicate(timeout=60)
    assert rep.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    doc = json.loads(cli("replicate", "status", src, dst, *base, "--json").stdout)
    assert doc["state"] == "interrupted" and not doc["alive"]


def test_cutover_without_a_replicator_is_no_go(endpoint: str) -> None:
    r = cli("cutover", "aaa", "bbb", "--endpoint-url", endpoint)
    assert r.exit_code == 2 and "no replication status" in r.stderr


def test_rollback_reverse_replication(endpoint: str, tmp_path: Path) -> None:
    """Forward with a re-keying transform, cut over, then keep the old table in sync in reverse."""
    (tmp_path / "rename.py").write_text(RENAME_PY)
    old = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    new = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    put_items(endpoint, old, seed_items(40) + every_type_items()[:5])
    fwd = replicate(ref(endpoint, old), ref(endpoint, new), transform=str(tmp_path / "rename.py") + ":forward",
                    options=opts(), stop_after_idle=0.5, poll_interval=0.1)
    assert fwd.balanced()
    assert as_set(scan_all(endpoint, new)) == expected_after(str(tmp_path / "rename.py") + ":forward",
                                                            scan_all(endpoint, old))
    # After cutover the application writes the new table; the reverse replication follows it.
    stop = threading.Event()
    box = run_in_thread(lambda: replicate(ref(endpoint, new), ref(endpoint, old),
                                          transform=str(tmp_path / "rename.py") + ":reverse", options=opts(),
                                          backfill=False, stop_event=stop, status_path=str(tmp_path / "rev.json"),
                                          poll_interval=0.1, status_every=0.2))
    wait_state(tmp_path / "rev.json", ("replaying", "tailing"))
    writer = Writer(endpoint, new, seed=9, ops=80, keys=[f"new#k{i:04d}" for i in range(0, 60)])
    writer.start()
    writer.join(60)
    wait_converged(tmp_path / "rev.json", writer)
    stop.set()
    box["thread"].join(60)
    assert "error" not in box, box.get("error")
    assert as_set(scan_all(endpoint, old)) == expected_after(str(tmp_path / "rename.py") + ":reverse",
                                                            scan_all(endpoint, new))


def test_stream_checks(endpoint: str) -> None:
    plain, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, plain, [{"pk": {"S": "a"}}])
    asked: List[str] = []
    with pytest.raises(UsageError, match="StreamViewType=NEW_AND_OLD_IMAGES"):
        replicate(ref(endpoint, plain), ref(endpoint, dst), options=opts(), enable_stream_confirm=lambda m: asked.append(m) or False)
    assert plain in asked[0]
    assert "StreamSpecification" not in boto_client(endpoint).describe_table(TableName=plain)["Table"]
    rep = replicate(ref(endpoint, plain), ref(endpoint, dst), options=opts(), enable_stream_confirm=lambda m: True,
                    stop_after_idle=0, poll_interval=0.05)
    spec = boto_client(endpoint).describe_table(TableName=plain)["Table"]["StreamSpecification"]
    assert spec == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"} and rep.balanced()
    assert scan_all(endpoint, dst) == [{"pk": {"S": "a"}}]

    keys_only = create_table(endpoint, stream="KEYS_ONLY")
    with pytest.raises(FatalError, match="KEYS_ONLY.*NEW_AND_OLD_IMAGES"):
        replicate(ref(endpoint, keys_only), ref(endpoint, create_table(endpoint)), options=opts())
    new_image = create_table(endpoint, stream="NEW_IMAGE")
    with pytest.raises(FatalError, match="old images"):
        replicate(ref(endpoint, new_image), ref(endpoint, create_table(endpoint)), options=opts(),
                  transform="json:loads")


def test_new_image_stream_is_enough_without_a_transform(endpoint: str) -> None:
    src, dst = create_table(endpoint, stream="NEW_IMAGE"), create_table(endpoint)
    put_items(endpoint, src, seed_items(20))
    stop = threading.Event()
    box = run_in_thread(lambda: replicate(ref(endpoint, src), ref(endpoint, dst), options=opts(), stop_event=stop,
                                          status_path="s.json", poll_interval=0.05, status_every=0.2))
    writer = Writer(endpoint, src, seed=4, ops=80, keys=[f"k{i:04d}" for i in range(30)])
    writer.start()
    writer.join(60)
    wait_converged(Path("s.json"), writer)
    stop.set()
    box["thread"].join(60)
    assert "error" not in box, box.get("error")
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))


def test_resume_after_stream_replaced_needs_resync(endpoint: str) -> None:
    src, dst = create_table(endpoint, stream="NEW_AND_OLD_IMAGES"), create_table(endpoint)
    put_items(endpoint, src, seed_items(5))
    replicate(ref(endpoint, src), ref(endpoint, dst), options=opts(), stop_after_idle=0, poll_interval=0.05)
    c = boto_client(endpoint)
    c.update_table(TableName=src, StreamSpecification={"StreamEnabled": False})
    c.update_table(TableName=src, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    with pytest.raises(UsageError, match="--resume"):
        replicate(ref(endpoint, src), ref(endpoint, dst), options=opts(), stop_after_idle=0)
    with pytest.raises(ResyncNeededError, match="--restart --clean-target") as ei:
        replicate(ref(endpoint, src), ref(endpoint, dst), options=opts(resume=True), stop_after_idle=0)
    assert "stream" in ei.value.message
    # The resync it suggests works: fresh positions, a clean target, a new backfill.
    put_items(endpoint, dst, [{"pk": {"S": "stale"}}])
    replicate(ref(endpoint, src), ref(endpoint, dst), options=opts(restart=True), clean_target=True,
              confirm=lambda m: True, stop_after_idle=0, poll_interval=0.05)
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))


def test_status_of_a_killed_replicator_is_not_running(endpoint: str, tmp_path: Path) -> None:
    """kill -9: the status file still says "tailing", but nobody is: not running, lag unknown, exit 6."""
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, seed_items(20))
    base = ["--endpoint-url", endpoint, "--region", "us-east-1"]
    p = subprocess.Popen([sys.executable, "-m", "ddbmigrate", "replicate", src, dst, *base, "--poll-interval", "0.1",
                          "--progress", "off"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_state(tmp_path / ".ddbmigrate", ("tailing",))
        s = cli("replicate", "status", src, dst, *base, "--json", "--max-lag", "300")
        assert s.exit_code == 0 and json.loads(s.stdout)["alive"], s.output
    finally:
        p.kill()
        p.wait(timeout=30)
    s = cli("replicate", "status", src, dst, *base, "--json")
    doc = json.loads(s.stdout)
    assert s.exit_code == 6 and doc["exit_code"] == 6, s.output
    assert not doc["alive"] and doc["state"] == "dead"
    assert doc["lag_seconds"] is None and not doc["caught_up"]
    human = cli("replicate", "status", src, dst, *base)
    assert human.exit_code == 6 and "not running" in human.stdout and "lag              unknown" in human.stdout
    assert "caught up" not in human.stdout
    # Nor is it "applying the journal" or "tailing": the phase is where it stopped.
    assert "phase            stream when it stopped (nothing runs now)" in human.stdout, human.stdout
    assert "applying" not in human.stdout and "tailing the stream" not in human.stdout


def test_replicate_stop_ends_it_cleanly_and_cutover_uses_its_transform(endpoint: str, tmp_path: Path) -> None:
    """A transformed replication: cutover without --transform verifies with the replicator's own
    transform (GO), then `replicate stop` ends it: exit 0, "stopped" in its report and status."""
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, seed_items(40))
    (tmp_path / "rename.py").write_text(RENAME_PY)
    base = ["--endpoint-url", endpoint, "--region", "us-east-1"]
    p = subprocess.Popen([sys.executable, "-m", "ddbmigrate", "replicate", src, dst, *base, "--poll-interval", "0.1",
                          "--transform", "rename.py:forward", "--progress", "off", "--report", "rep.json"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_state(tmp_path / ".ddbmigrate", ("tailing",))
        put_items(endpoint, src, [{"pk": {"S": "late"}, "v": {"N": "1"}}])
        status = next((tmp_path / ".ddbmigrate").glob("*.status.json")).resolve()
        r = subprocess.run([sys.executable, "-m", "ddbmigrate", "cutover", src, dst, *base, "--quiet-period", "1",
                            "--timeout", "90", "--progress", "off", "--report", "go.json", "--status-file", str(status)],
                           cwd=tmp_path / "..", capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr  # run elsewhere: the transform's path comes from the status
        go = json.loads((tmp_path / ".." / "go.json").read_text())
        assert go["go"] and go["differences"] == 0 and go["transform"].endswith("rename.py:forward")
        s = subprocess.run([sys.executable, "-m", "ddbmigrate", "replicate", "stop", src, dst, *base],
                           cwd=tmp_path, capture_output=True, text=True, timeout=180)
        assert s.returncode == 0 and "stopped" in s.stdout, s.stderr
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["status"] == "stopped" and rep["extra"]["stopped_by"] == "stop requested"
    doc = read_status(str(next((tmp_path / ".ddbmigrate").glob("*.status.json"))))
    assert doc["state"] == "stopped" and not doc["alive"]
    # Not running, so its lag is unknown (the source may change after the stop): never "caught
    # up"; where it stopped is kept as history.
    assert doc["lag_seconds"] is None and not doc["caught_up"] and "last_lag_seconds" in doc
    again = subprocess.run([sys.executable, "-m", "ddbmigrate", "replicate", "stop", src, dst, *base],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 6 and "not running" in again.stderr


def test_cutover_no_go_names_the_differing_keys(endpoint: str, tmp_path: Path) -> None:
    from ddbmigrate.jobs.cutover import cutover

    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    dst = create_table(endpoint)
    put_items(endpoint, src, seed_items(10))
    status = tmp_path / "st.json"
    box = run_in_thread(lambda: replicate(ref(endpoint, src), ref(endpoint, dst), options=opts(),
                                          status_path=str(status), poll_interval=0.1, status_every=0.2,
                                          stop_after_idle=20))
    try:
        wait_state(status, ("tailing",))
        put_items(endpoint, dst, [{"pk": {"S": f"rogue{i:02d}"}} for i in range(25)])
        rep = cutover(ref(endpoint, src), ref(endpoint, dst), status_path=str(status), quiet_period=0.5,
                      timeout=60, progress="off", diff_path=str(tmp_path / "diff.jsonl"))
    finally:
        from ddbmigrate.state.status import request_stop

        request_stop(str(status))  # ask it to stop, as `replicate stop` does (not its 20 s idle stop)
        box["thread"].join(60)
    assert not rep.go and rep.exit_code == 4 and rep.differences == 25
    assert len(rep.differing) == 20 and all(d["category"] == "unexpected" for d in rep.differing)
    assert len((tmp_path / "diff.jsonl").read_text().splitlines()) == 25
