"""``note_refusal``: a replication run refused before it started is said in the status file beside
the last real run's state, which it leaves as it was; never over a live replicator's status, and
never as a status file made up where no run ever was (docs/live-migration.md, "Lag and status")."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from click.testing import CliRunner

from ddbmigrate.cli import main
from ddbmigrate.state.status import note_refusal, process_started, read_status


def _status(path: Path, state: str, pid: int, updated_at: float) -> Path:
    path.write_text(json.dumps({"source": "a", "target": "b", "state": state, "phase": "stream", "updated_at": updated_at,
                                "pid": pid, "pid_started": process_started(), "status_every": 1.0,
                                "lag_seconds": 0.0, "caught_up": True}))
    return path


def test_a_stopped_runs_status_keeps_its_state_and_gains_the_refusal(tmp_path: Path) -> None:
    path = _status(tmp_path / "s.status.json", "stopped", 1, 1_000.0)
    note_refusal(str(path), "resync needed: \x1b]0;title\x07the stream changed", resume=True)
    doc = read_status(str(path))
    assert doc["state"] == "stopped" and doc["updated_at"] == 1_000.0 and not doc["alive"] and not doc["caught_up"]
    assert doc["refused"]["resume"] is True and doc["refused"]["error"].startswith("resync needed")
    r = CliRunner().invoke(main, ["replicate", "status", "--status-file", str(path)])
    assert r.exit_code == 6
    assert "last attempt     a --resume was refused at " in r.stdout and "\x1b" not in r.stdout, r.stdout


def test_a_live_replicators_status_is_left_alone(tmp_path: Path) -> None:
    path = _status(tmp_path / "s.status.json", "tailing", os.getpid(), time.time())
    before = path.read_bytes()
    note_refusal(str(path), "another replicator (pid 1) is running for these tables", resume=False)
    assert path.read_bytes() == before


def test_no_status_file_is_made_and_a_broken_one_is_left(tmp_path: Path) -> None:
    note_refusal(str(tmp_path / "none.status.json"), "refused", resume=True)
    assert not (tmp_path / "none.status.json").exists()
    broken = tmp_path / "broken.status.json"
    broken.write_text("[1, 2")
    note_refusal(str(broken), "refused", resume=True)  # (a status problem is never an error)
    assert broken.read_text() == "[1, 2"
