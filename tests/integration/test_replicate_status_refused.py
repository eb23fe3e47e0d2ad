"""``replicate status`` after a ``replicate --resume`` refused up front (its stream replaced, its
checkpoint made for another transform): the last real run's state, and that a resume was refused
and why — never the earlier run as if nothing had happened, nor the refused one as running.

Before, a refusal before the status writer started left the file as the previous run wrote it:
``status`` said "stopped" (or "dead") with no word of the refusal an operator had just seen
scroll by, or of why the replication is not running now."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner, Result

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.cli import main
from ddbmigrate.errors import ResyncNeededError, UsageError
from ddbmigrate.jobs.replicate import replicate
from ddbmigrate.state.status import read_status
from support import as_set, boto_client, create_table, put_items, scan_all

pytestmark = pytest.mark.integration

RENAME_PY = '''
def forward(item):
    return dict(item, pk="new#" + item["pk"])

def other(item):
    return dict(item, pk="other#" + item["pk"])
'''


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def items(n: int) -> List[Dict[str, Any]]:
    return [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(n)]


def status_cli(path: Path, *more: str) -> Result:
    return CliRunner().invoke(main, ["replicate", "status", "--status-file", str(path), *more])


def test_a_refused_resume_is_in_the_status_beside_the_last_runs_state(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint, stream="NEW_AND_OLD_IMAGES"), create_table(endpoint)
    put_items(endpoint, src, items(5))
    status = tmp_path / "rep.status.json"
    common: Dict[str, Any] = {"status_path": str(status), "stop_after_idle": 0, "poll_interval": 0.05}
    ckpt = str(tmp_path / "rep.checkpoint.json")
    replicate(ref(endpoint, src), ref(endpoint, dst), options=RunOptions(progress="off", checkpoint=ckpt), **common)
    before = read_status(str(status))
    assert before["state"] == "stopped" and "refused" not in before
    # The stream is replaced: a --resume is refused before it starts (a resync is needed).
    c = boto_client(endpoint)
    c.update_table(TableName=src, StreamSpecification={"StreamEnabled": False})
    c.update_table(TableName=src, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    with pytest.raises(ResyncNeededError):
        replicate(ref(endpoint, src), ref(endpoint, dst),
                  options=RunOptions(progress="off", checkpoint=ckpt, resume=True), **common)
    doc = read_status(str(status))
    # The last real run's state and figures, untouched; and the refusal, with its reason.
    assert doc["state"] == "stopped" and not doc["alive"] and doc["updated_at"] == before["updated_at"]
    assert doc["lag_seconds"] is None and not doc["caught_up"]
    refused = doc["refused"]
    assert refused["resume"] is True and "resync needed" in refused["error"] and refused["at"]
    r = status_cli(status)
    assert r.exit_code == 6, r.output  # not running
    out = r.stdout
    assert "last attempt     a --resume was refused at " in out and "resync needed" in out, out
    assert "nothing ran: the state below is the last run's" in out
    assert "state            stopped (not running;" in out and "caught up" not in out, out
    j = status_cli(status, "--json")
    assert j.exit_code == 6 and json.loads(j.stdout)["refused"]["error"] == refused["error"]
    # The resync it names runs, and its own status has no word of the old refusal.
    replicate(ref(endpoint, src), ref(endpoint, dst),
              options=RunOptions(progress="off", checkpoint=ckpt, restart=True), clean_target=True,
              confirm=lambda m: True, **common)
    after = read_status(str(status))
    assert after["state"] == "stopped" and "refused" not in after
    assert "last attempt" not in status_cli(status).stdout
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))


def test_a_refused_fresh_run_is_said_as_a_run_not_a_resume(endpoint: str, tmp_path: Path) -> None:
    """Without --resume, a replication with a checkpoint is refused too (it asks for --resume or
    --restart): the status says a run was refused."""
    src, dst = create_table(endpoint, stream="NEW_AND_OLD_IMAGES"), create_table(endpoint)
    put_items(endpoint, src, items(3))
    status = tmp_path / "rep.status.json"
    ckpt = str(tmp_path / "rep.checkpoint.json")
    common: Dict[str, Any] = {"status_path": str(status), "stop_after_idle": 0, "poll_interval": 0.05}
    replicate(ref(endpoint, src), ref(endpoint, dst), options=RunOptions(progress="off", checkpoint=ckpt), **common)
    with pytest.raises(UsageError, match="--resume"):
        replicate(ref(endpoint, src), ref(endpoint, dst), options=RunOptions(progress="off", checkpoint=ckpt),
                  **common)
    doc = read_status(str(status))
    assert doc["state"] == "stopped" and doc["refused"]["resume"] is False
    assert "last attempt     a run was refused at " in status_cli(status).stdout


def test_no_status_file_is_made_for_a_refusal_with_no_run_before(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    status = tmp_path / "rep.status.json"
    with pytest.raises(UsageError, match="same table"):
        replicate(ref(endpoint, src), ref(endpoint, src), status_path=str(status),
                  options=RunOptions(progress="off", checkpoint=str(tmp_path / "c.checkpoint.json"), resume=True),
                  stop_after_idle=0)
    assert not status.exists()  # nothing ran here: no status is made up


def test_a_killed_replicator_then_a_refused_resume_is_dead_not_running(endpoint: str, tmp_path: Path) -> None:
    """kill -9 while tailing, then a --resume with another transform (its checkpoint was made for
    another job: refused, exit 2): the status is the killed run's, dead, and the refusal."""
    src, dst = create_table(endpoint, stream="NEW_AND_OLD_IMAGES"), create_table(endpoint)
    put_items(endpoint, src, items(10))
    (tmp_path / "rename.py").write_text(RENAME_PY)
    base = [src, dst, "--endpoint-url", endpoint, "--region", "us-east-1", "--poll-interval", "0.1",
            "--progress", "off", "--status-file", "rep.status.json"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    p = subprocess.Popen([sys.executable, "-m", "ddbmigrate", "replicate", *base, "--transform", "rename.py:forward"],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    status = tmp_path / "rep.status.json"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if status.is_file() and read_status(str(status)).get("state") == "tailing":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the replicator never reached tailing")
    finally:
        p.kill()
        p.wait(timeout=30)
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "replicate", *base, "--transform", "rename.py:other",
                        "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    refusal = r.stderr.strip().splitlines()[-1].removeprefix("error: ")
    doc = read_status(str(status))
    assert doc["state"] == "dead" and not doc["alive"] and doc["lag_seconds"] is None and not doc["caught_up"]
    assert doc["refused"]["resume"] is True and doc["refused"]["error"] == refusal
    s = status_cli(status)
    assert s.exit_code == 6 and "state            dead (not running;" in s.stdout, s.stdout
    assert "last attempt     a --resume was refused" in s.stdout and refusal in s.stdout
    assert "tailing" not in s.stdout and "caught up" not in s.stdout and "applying" not in s.stdout
