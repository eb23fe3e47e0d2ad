"""The package imports where POSIX-only modules do not exist (Windows): locks are taken with
whatever the platform has, and imported where they are used."""

from __future__ import annotations

import subprocess
import sys


def test_the_package_and_its_command_line_import_without_fcntl() -> None:
    code = ("import sys; sys.modules['fcntl'] = None\n"  # 'import fcntl' now raises ImportError
            "import ddbmigrate, ddbmigrate.cli, ddbmigrate.jobs.replicate, ddbmigrate.state.deadletter\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
