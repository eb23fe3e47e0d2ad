"""The files a command writes are checked before it runs: two options naming one file, an
option naming a file the command reads, a report nowhere to be written. And a report is written
through a symbolic link or into a FIFO or device, never renamed over it. Each case lost data or
ended in an internal error after the whole job before."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import List

import pytest
from click.testing import CliRunner

from ddbmigrate.cli import main
from ddbmigrate.state.checkpoint import atomic_write

DEAD = ["--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"]  # never reached


def run(args: List[str], cwd: Path) -> "object":
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, args, env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    finally:
        os.chdir(old)


def test_a_report_on_the_dead_letter_file_is_refused_before_the_job(tmp_path: Path) -> None:
    r = run(["copy", "a", "b", *DEAD, "--dead-letter", "same.json", "--report", "same.json"], tmp_path)
    assert r.exit_code == 2, r.output  # type: ignore[attr-defined]
    assert "--report and --dead-letter name the same file same.json" in r.output  # type: ignore[attr-defined]
    assert "cannot reach" not in r.output  # type: ignore[attr-defined]


def test_a_report_on_the_imported_file_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "in1.json"
    data.write_text('{"Item": {"pk": {"S": "a"}}}\n')
    r = run(["import", "in1.json", "t", *DEAD, "--report", "./in1.json"], tmp_path)
    assert r.exit_code == 2 and "is a file this command reads" in r.output, r.output  # type: ignore[attr-defined]
    assert data.read_text() == '{"Item": {"pk": {"S": "a"}}}\n'


def test_a_report_where_no_file_can_be_made_is_refused_before_the_job(tmp_path: Path) -> None:
    r = run(["clean", "t", *DEAD, "--yes", "--report", "/dev/null/r.json"], tmp_path)
    assert r.exit_code == 2, r.output  # type: ignore[attr-defined]
    assert "cannot write the report /dev/null/r.json" in r.output  # type: ignore[attr-defined]


def test_atomic_write_goes_through_a_link_and_into_a_fifo(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write(str(link), b"{}")
    assert link.is_symlink() and real.read_bytes() == b"{}"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: List[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    atomic_write(str(fifo), b'{"a": 1}')
    reader.join(10)
    assert got == [b'{"a": 1}'] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    atomic_write("/dev/null", b"x")  # written into, not renamed over
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# ------------------------------------------------------------------ the command line's own setup


def _cli(args: List[str], env: "dict[str, str]", cwd: Path) -> "subprocess.CompletedProcess[str]":
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", **env},
                          timeout=120)


def test_a_log_file_nowhere_and_a_bad_log_level_are_one_line_exit_2(tmp_path: Path) -> None:
    r = _cli(["copy", "a", "b", *DEAD, "--log-file", str(tmp_path / "nope" / "x" / "r.log")], {}, tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: cannot open --log-file "), r.stderr
    assert "Traceback" not in r.stderr
    r = _cli(["copy", "a", "b", *DEAD], {"DDBMIGRATE_LOG_LEVEL": "bogus"}, tmp_path)
    assert r.returncode == 2 and "DDBMIGRATE_LOG_LEVEL='bogus'" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_an_os_error_is_one_line_naming_the_file_not_an_internal_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "s.yaml").mkdir()  # a folder where the file should go: refused by the system whoever runs this
    r = _cli(["create-table", "t", "--spec", str(ro / "s.yaml"), *DEAD], {}, tmp_path)
    assert r.returncode in (1, 2) and "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9, 1.2, 2.0])
def test_ctrl_c_while_the_command_starts_is_one_line_exit_130(tmp_path: Path, delay: float) -> None:
    import signal
    import subprocess
    import sys
    import time

    p = subprocess.Popen([sys.executable, "-m", "ddbmigrate", "copy", "table_a", "table_b", *DEAD], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert p.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", (p.returncode, err)


def test_an_interrupt_after_the_job_ended_keeps_the_reports_exit_code(tmp_path: Path) -> None:
    """A Ctrl-C while the summary of a finished job is drawn: the report says done (exit 0) and
    the command said interrupted (130), sending a wrapper to resume a complete job. The report's
    code wins when this run wrote a report of a job that ended; never for one it did not write."""
    import json

    from ddbmigrate.cli.render import _ended_code, _file_state

    path = tmp_path / "r.json"
    before = _file_state(str(path))
    assert _ended_code(str(path), before) is None  # nothing written
    for status, code, expected in (("done", 0, 0), ("failed", 75, 75), ("done", 3, 3), ("interrupted", 130, None)):
        path.write_text(json.dumps({"job": "copy", "status": status, "exit_code": code}))
        assert _ended_code(str(path), before) == expected, status
    stale = _file_state(str(path))  # a report of an earlier run, not rewritten by this one
    assert _ended_code(str(path), stale) is None
