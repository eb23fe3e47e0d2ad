"""What killed processes leave behind is deleted by the next run, and nothing a live one owns."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ddbmigrate.state import leftovers


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_owners_files_and_folders_go_and_the_rest_stay(tmp_path: Path) -> None:
    dead = tmp_path / f"verify-{leftovers.HOST}-{_dead_pid()}-abc"
    (dead / "spill").mkdir(parents=True)
    (dead / "spill" / "p0.bin").write_bytes(b"x" * 1000)
    torn = tmp_path / f"verify-{leftovers.HOST}-{_dead_pid()}-file"
    torn.write_bytes(b"y")
    live = tmp_path / f"verify-{leftovers.HOST}-1-def"  # pid 1 runs
    mine = tmp_path / f"{leftovers.owned('verify-')}ghi"
    other_host = tmp_path / f"verify-elsewhere-{_dead_pid()}-jkl"  # may be in use there
    unnamed = tmp_path / "verify-q1w2e3r4"  # an older release's: owner unknown
    users = tmp_path / "verify-report.json"
    for p in (live, mine, other_host, unnamed):
        p.mkdir()
    users.write_text("{}")
    assert leftovers.sweep(str(tmp_path), "verify-", once=False) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, mine, other_host, unnamed, users))


def test_an_age_limit_takes_any_owners_old_leftovers(tmp_path: Path) -> None:
    old = tmp_path / ".tmp-ddbmigrate-elsewhere-123-x"
    new = tmp_path / ".tmp-ddbmigrate-elsewhere-124-y"
    old.write_bytes(b"a")
    new.write_bytes(b"b")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert leftovers.sweep(str(tmp_path), ".tmp-ddbmigrate-", max_age=3600, once=False) == 1
    assert [p.name for p in tmp_path.iterdir()] == [new.name]
