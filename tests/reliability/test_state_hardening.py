"""The multi-process engine and durable state under kill -9 (issue 22's findings, each reproduced).

- Workers die with their parent: a kill -9 of the parent alone leaves no worker writing.
- The whole tree killed, resumed with another --processes (and then none): every dead letter is
  in the one dead-letter file exactly once.
- Dead letters are durable before the checkpoint that counts them: with the window between a
  checkpoint's cut and its fsync widened to 0.3 s, kills never lose a counted dead letter.
- A hand-edited checkpoint is refused (exit 2) unless --force.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import psutil
import pytest

from ddbmigrate.testing import run_tool
from reliability_support import run_until_done
from support import create_table, put_items, scan_all

pytestmark = pytest.mark.reliability

FAILING_SEVENTH = "def f(item):\n    if int(item['n']) % 7 == 0:\n        raise ValueError('seven')\n    return item\n"
N = 1400


@pytest.fixture(scope="module")
def numbered(endpoint: str) -> str:
    src = create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i:05d}"}, "n": {"N": str(i)}, "pad": {"S": "x" * 200}}
                              for i in range(N)])
    return src


def _expected_dead() -> List[str]:
    return sorted(f"k{i:05d}" for i in range(N) if i % 7 == 0)


def _dead_keys(path: Path) -> List[str]:
    return sorted(json.loads(line)["source_key"]["pk"]["S"] for line in path.read_text().splitlines())


def _args(tmp_path: Path, src: str, dst: str, endpoint: str, *extra: str) -> List[str]:
    (tmp_path / "tf.py").write_text(FAILING_SEVENTH)
    return ["copy", src, dst, "--endpoint-url", endpoint, "--segments", "6", "--progress", "json",
            "--transform", f"{tmp_path / 'tf.py'}:f", "--on-error", "skip", "--dead-letter",
            str(tmp_path / "dead.jsonl"), "--checkpoint-every", "0.2", "--max-write-units", "400", *extra]


def _env() -> Dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"}


def _start(args: List[str], cwd: Path, **kw: Any) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen([sys.executable, "-m", "ddbmigrate", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, **kw)


def _wait_for_items(endpoint: str, table: str, n: int, proc: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(scan_all(endpoint, table)) < n:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.1)


def test_workers_die_with_their_parent(endpoint: str, numbered: str, tmp_path: Path) -> None:
    dst = create_table(endpoint)
    proc = _start(_args(tmp_path, numbered, dst, endpoint, "--processes", "2"), tmp_path)
    workers: List[Any] = []
    try:
        _wait_for_items(endpoint, dst, 100, proc)
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert len([w for w in workers if "python" in w.name().lower()]) >= 2
        proc.kill()  # the parent alone, as an OOM killer or a lost container would
        proc.wait()
        gone, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, f"workers outlived their parent: {[w.pid for w in alive]}"
        n = len(scan_all(endpoint, dst))
        time.sleep(1.0)
        assert len(scan_all(endpoint, dst)) == n  # nobody is writing any more
    finally:
        for w in workers:  # only the tool's processes: DynamoDB Local is a child of this test too
            if w.is_running():
                w.kill()
    # And the resume finishes the job exactly.
    att = run_until_done(_args(tmp_path, numbered, dst, endpoint, "--processes", "3"), tmp_path, resume_first=True)
    assert _dead_keys(tmp_path / "dead.jsonl") == _expected_dead(), att.describe()
    assert len(scan_all(endpoint, dst)) == N - len(_expected_dead())


@pytest.mark.parametrize("trial", range(2))
def test_whole_tree_killed_then_resumed_with_other_process_counts(endpoint: str, numbered: str, tmp_path: Path,
                                                                  trial: int) -> None:
    dst = create_table(endpoint)
    proc = _start(_args(tmp_path, numbered, dst, endpoint, "--processes", "3"), tmp_path, start_new_session=True)
    try:
        _wait_for_items(endpoint, dst, 150 + 250 * trial, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # parent and workers at once
        proc.wait()
    # Resume with two processes, killed again, then finish on the threads engine.
    proc = _start(_args(tmp_path, numbered, dst, endpoint, "--processes", "2", "--resume"), tmp_path,
                  start_new_session=True)
    try:
        time.sleep(1.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    att = run_until_done(_args(tmp_path, numbered, dst, endpoint), tmp_path, resume_first=True)
    assert _dead_keys(tmp_path / "dead.jsonl") == _expected_dead(), att.describe()
    assert att.last_report["counters"]["dead_lettered"] == len(_expected_dead())
    assert not list(tmp_path.glob("dead.jsonl.*")) and not list(tmp_path.glob("**/*.part*"))
    assert len(scan_all(endpoint, dst)) == N - len(_expected_dead())


@pytest.mark.parametrize("trial", range(4))
def test_counted_dead_letters_survive_kills_in_the_checkpoint_window(endpoint: str, numbered: str, tmp_path: Path,
                                                                     trial: int) -> None:
    rng = random.Random(2200 + trial)
    dst = create_table(endpoint)
    env = {"DDBMIGRATE_PAUSE_AT": "checkpoint_window:0.3"}
    first: Dict[str, Any] = {"env": env, "kill_after": round(rng.uniform(1.0, 3.0), 2)}
    then = [{"env": dict(env), "kill_after": round(rng.uniform(1.0, 2.5), 2)}]
    att = run_until_done(_args(tmp_path, numbered, dst, endpoint, "--writers", "3"), tmp_path, first=first,
                         then=then)
    assert att.exit_codes[0] == -9, att.describe()
    assert _dead_keys(tmp_path / "dead.jsonl") == _expected_dead(), att.describe()
    assert att.last_report["counters"]["dead_lettered"] == len(_expected_dead())


def test_a_hand_edited_checkpoint_is_refused_unless_forced(endpoint: str, numbered: str, tmp_path: Path) -> None:
    dst = create_table(endpoint)
    ckpt = tmp_path / "c.json"
    args = _args(tmp_path, numbered, dst, endpoint, "--checkpoint", str(ckpt))
    def saved() -> bool:
        try:
            data = json.loads(ckpt.read_text())
        except (OSError, ValueError):
            return False
        return bool(data.get("done") or data.get("positions"))

    first = run_tool(args, cwd=str(tmp_path), timeout=120, kill_when=saved)
    assert first.exit_code == -9, first.stderr[-2000:]
    data = json.loads(ckpt.read_text())
    from ddbmigrate.sources.table_scan import unit_name

    data["done"] = [unit_name(i) for i in range(6)]  # "every segment is done"
    data["positions"] = {}
    ckpt.write_text(json.dumps(data, indent=2))
    out = subprocess.run([sys.executable, "-m", "ddbmigrate", *args, "--resume"], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "does not match its checksum" in out.stderr and "--force" in out.stderr
    assert "Traceback" not in out.stderr
    # --force resumes from it as edited (the operator's call), and --restart starts over.
    forced = subprocess.run([sys.executable, "-m", "ddbmigrate", *args, "--resume", "--force"], cwd=tmp_path,
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert forced.returncode in (0, 3), forced.stderr
