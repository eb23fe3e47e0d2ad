"""A replicator's status tells a live process from a dead one: a killed one not yet reaped (a
zombie, which ``kill(pid, 0)`` still finds) and a pid given to another process since are dead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ddbmigrate.state.status import process_started, read_status

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")


def _status(path: Path, pid: int, started: object) -> Path:
    path.write_text(json.dumps({"state": "tailing", "updated_at": time.time(), "pid": pid, "pid_started": started,
                                "lag_seconds": 0.0, "caught_up": True}))
    return path


def test_this_live_process_is_alive(tmp_path: Path) -> None:
    st = read_status(str(_status(tmp_path / "s.json", os.getpid(), process_started())))
    assert st["alive"] is True and st["state"] == "tailing" and st["caught_up"] is True


def test_a_killed_process_not_yet_reaped_is_dead(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = process_started(child.pid)
        assert started is not None
        os.kill(child.pid, 9)
        deadline = time.time() + 10
        while time.time() < deadline:  # until the kernel has made it a zombie (not reaped: no wait())
            with open(f"/proc/{child.pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.05)
        os.kill(child.pid, 0)  # still "exists" for kill(0)
        st = read_status(str(_status(tmp_path / "s.json", child.pid, started)))
        assert st["alive"] is False and st["state"] == "dead" and st["caught_up"] is False and st["lag_seconds"] is None
    finally:
        child.wait()


def test_a_pid_given_to_another_process_is_dead(tmp_path: Path) -> None:
    st = read_status(str(_status(tmp_path / "s.json", os.getpid(), "1")))  # this pid, another start time
    assert st["alive"] is False and st["state"] == "dead"
