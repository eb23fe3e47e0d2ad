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


def test_a_process_in_another_pid_namespace_of_this_host_is_not_judged_by_our_pids(tmp_path: Path) -> None:
    # A container on the host network has the host's name but pids of its own: one running there
    # as a pid dead here was taken for dead, and its files deleted under it.
    import shutil

    import pytest

    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    code = "from ddbmigrate.state import leftovers; print(leftovers.HOST)"
    run = subprocess.run(["unshare", "--user", "--map-root-user", "--pid", "--fork", sys.executable, "-c", code],
                         capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot make a pid namespace here: {run.stderr.strip()}")
    theirs = run.stdout.strip()
    assert theirs != leftovers.HOST
    live_there = tmp_path / f"verify-{theirs}-{_dead_pid()}-abc"
    live_there.mkdir()
    assert leftovers.sweep(str(tmp_path), "verify-", once=False) == 0
    assert live_there.exists()


def test_long_host_names_that_differ_at_their_end_stay_apart() -> None:
    # Pods of one workload: the same long prefix, told apart by their last characters.
    a = leftovers.host_word("ddbmigrate-export-orders-table-8f7e6d5c4b-exec-1")
    b = leftovers.host_word("ddbmigrate-export-orders-table-8f7e6d5c4b-exec-2")
    assert a != b and len(a) <= 40 and "-" not in a + b
    assert "/" not in leftovers.host_word("odd/name") and leftovers.host_word("") == "host"


def test_a_pid_too_large_for_the_system_is_a_dead_owner_not_a_traceback(tmp_path: Path) -> None:
    assert leftovers.pid_alive(10 ** 30) is False
    (tmp_path / f"verify-{leftovers.HOST}-{10 ** 30}-abc").mkdir()
    assert leftovers.sweep(str(tmp_path), "verify-", once=False) == 1
