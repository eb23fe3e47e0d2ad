"""The commands a newcomer types first: `ddbmigrate demo` and `ddbmigrate local start|status|stop`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True,
                          timeout=240, cwd=cwd)


def test_demo_copies_a_sample_table_and_the_counts_add_up(tmp_path: Path) -> None:
    r = cli("demo", "--items", "500", "--progress", "off", "--report", "demo.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "counts add up: True" in r.stderr
    assert (tmp_path / "demo.json").exists()


def test_local_servers_of_two_projects_are_their_own(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    try:
        ra = cli("local", "start", cwd=a)
        assert ra.returncode == 0, ra.stderr
        endpoint_a = ra.stdout.strip().splitlines()[0]
        assert cli("local", "status", cwd=b).returncode == 1  # project b has none
        rb = cli("local", "start", cwd=b)
        assert rb.returncode == 0, rb.stderr
        assert rb.stdout.strip().splitlines()[0] != endpoint_a
        assert cli("local", "stop", cwd=b).stdout.strip() == "stopped"
        st = cli("local", "status", cwd=a)  # stopping b's server left a's running
        assert st.returncode == 0 and endpoint_a in st.stdout
    finally:
        for d in (a, b):
            cli("local", "stop", cwd=d)
    assert cli("local", "status", cwd=a).returncode == 1
    assert not os.path.exists(a / ".ddbmigrate" / "local-server.json")
