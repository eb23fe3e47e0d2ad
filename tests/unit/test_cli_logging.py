"""Every command has the same logging options (-v/--verbose, --log-level, --log-file)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Tuple

import click
import pytest
from click.testing import CliRunner

from ddbmigrate.cli import main


def commands(group: click.Group, prefix: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], click.Command]]:
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,), cmd


ALL = sorted(commands(main), key=lambda c: c[0])


def test_the_command_list_is_not_empty() -> None:
    names = {" ".join(n) for n, _ in ALL}
    assert {"copy", "verify", "cutover", "replicate status", "local start", "plan validate"} <= names


@pytest.mark.parametrize("name,cmd", ALL, ids=[" ".join(n) for n, _ in ALL])
def test_every_command_has_the_logging_options(name: Tuple[str, ...], cmd: click.Command) -> None:
    opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert {"-v", "--verbose", "--log-level", "--log-file"} <= opts, " ".join(name)


@pytest.mark.parametrize("argv", [["verify", "src-table", "dst-table"], ["cutover", "src-table", "dst-table"]])
def test_verify_and_cutover_write_their_log_file(argv: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 9: the command fails, and says so in the log file it was given.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDLOGTEST000000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "log-test-secret")
    log = tmp_path / "cmd.log"
    r = CliRunner().invoke(main, [*argv, "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1",
                                  "-vv", "--log-file", str(log), *(["--max-attempts", "1"] if argv[0] == "verify" else
                                                                   ["--timeout", "1", "--status-file",
                                                                    str(tmp_path / "none.json")])])
    assert r.exit_code != 0
    assert f"{argv[0]} ended with exit {r.exit_code}" in log.read_text()
