"""``migrations up`` / ``down`` refuse the numbers they cannot run with before anything is read or
locked: exit 2 and one line naming the option and its valid range (a --lease of 0 used to take
the lock and "lose" it at once: exit 1, "another runner took it")."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import pytest
from click.testing import CliRunner, Result

from ddbmigrate.cli import main

from support import one_usage_line

# Nothing may be called: an unreachable endpoint (and one attempt) shows any call as exit 75.
DEAD = ["--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1", "--max-attempts", "1"]


def run(tmp_path: Path, args: List[str]) -> Result:
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    (folder / "0001_first.py").write_text('"""First."""\n\ndef upgrade(ctx):\n    pass\n')
    return CliRunner().invoke(main, ["migrations", *args, "--dir", str(folder), "--yes", *DEAD])




@pytest.mark.parametrize("command", [["up"], ["down", "--to", "0"]], ids=["up", "down"])
@pytest.mark.parametrize("lease", ["0", "-1", "2.5", "nan", "inf", "1e300"])
def test_a_lease_out_of_range_is_a_usage_error(tmp_path: Path, command: List[str], lease: str) -> None:
    line = one_usage_line(run(tmp_path, [*command, "--lease", lease]), "--lease", "3", "86400")
    assert "lock was lost" not in line


@pytest.mark.parametrize("args, option", [
    (["--wait", "-1"], "--wait"),
    (["--wait", "nan"], "--wait"),
    (["--max-read-units", "nan"], "--max-read-units"),
    (["--max-write-units", "inf"], "--max-write-units"),
    (["--drain-timeout", "nan"], "--drain-timeout"),
    (["--max-read-units", "0"], "--max-read-units"),
    (["--read-percent", "0"], "--read-percent"),
    (["--drain-timeout", "-1"], "--drain-timeout"),
])
def test_other_numbers_out_of_range_are_usage_errors(tmp_path: Path, args: List[str], option: str) -> None:
    one_usage_line(run(tmp_path, ["up", *args]), option)


def test_the_limits_themselves_are_accepted(tmp_path: Path) -> None:
    # --lease 3 and --wait 0 pass the check: the run gets as far as the (unreachable) endpoint.
    r = run(tmp_path, ["up", "--lease", "3", "--wait", "0"])
    assert r.exit_code == 75, (r.exit_code, r.stderr)
    assert "--lease" not in r.stderr


def test_library_callers_get_the_same_refusal(tmp_path: Any) -> None:
    from ddbmigrate.errors import UsageError
    from ddbmigrate.migrations.context import AwsSettings
    from ddbmigrate.migrations.runner import down, up

    for call in (lambda: up(str(tmp_path), AwsSettings(), lease=0),
                 lambda: down(str(tmp_path), AwsSettings(), to="0", lease=1e300)):
        with pytest.raises(UsageError, match="--lease must be between 3 and 86400"):
            call()
