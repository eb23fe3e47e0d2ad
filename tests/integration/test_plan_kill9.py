"""``kill -9`` of ``ddbmigrate run PLAN`` mid-run: the plan had saved that a run was in progress
before starting its jobs, so a plain rerun is refused once, at plan level (``add --resume ... or
--restart``), before anything starts; ``--resume`` then finishes every job exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml
from support import as_set, boto_client, create_table, put_items, scan_all, write_plan

pytestmark = pytest.mark.integration

SLOW = (
    "import time\n"
    "def slow(item):\n"
    "    time.sleep(0.02)\n"
    "    return item\n"
)




def test_a_plan_killed_with_sigkill_is_refused_once_then_resumed(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    items = [{"pk": {"S": f"k{i:04d}"}, "pad": {"S": "x" * (i % 30)}} for i in range(400)]
    put_items(endpoint, src, items)
    (tmp_path / "slow.py").write_text(SLOW)
    plan = write_plan(tmp_path / "p.yaml", endpoint, [
        {"kind": "copy", "name": "slow", "source": src, "target": src + "-a", "create_target": True,
         "transform": "slow.py:slow", "options": {"segments": 2, "writers": 1}},
        {"kind": "copy", "name": "after-slow", "after": ["slow"], "source": src, "target": src + "-b",
         "create_target": True},
    ], state_dir="st")
    state = tmp_path / "st" / "plan-state.json"
    ckpt = tmp_path / "st" / "checkpoints" / "slow.checkpoint.json"

    proc = subprocess.Popen([sys.executable, "-m", "ddbmigrate", "run", str(plan), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # some items copied, far from all 400 (8 s of transform)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # The run was recorded as in progress before the jobs started.
    saved = json.loads(state.read_text())
    assert saved["jobs"]["slow"]["status"] == "running" and saved["jobs"]["after-slow"]["status"] == "running"
    before = sorted(p.name for p in (tmp_path / "st" / "checkpoints").iterdir())

    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "run", str(plan), "--quiet"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: an unfinished run of this plan exists"), r.stderr
    assert "add --resume" in lines[0] and "--restart" in lines[0] and "slow" in lines[0]
    assert "a checkpoint of an unfinished run exists" not in r.stderr  # said once, at plan level
    # Nothing was started: no new checkpoint, the dependent's target not created, state unchanged.
    assert sorted(p.name for p in (tmp_path / "st" / "checkpoints").iterdir()) == before
    assert json.loads(state.read_text()) == saved
    assert src + "-b" not in boto_client(endpoint).list_tables()["TableNames"]

    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "run", str(plan), "--resume", "--quiet",
                        "--report", "run.json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    data = json.loads(Path("run.json").read_text())
    assert [j["status"] for j in data["jobs"]] == ["done", "done"]
    assert as_set(scan_all(endpoint, src + "-a")) == as_set(items)
    assert as_set(scan_all(endpoint, src + "-b")) == as_set(items)
    final = json.loads(state.read_text())
    assert {j["status"] for j in final["jobs"].values()} == {"done"}

    # A finished plan runs again without --resume (a new run), as before.
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "run", str(plan), "--quiet"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
