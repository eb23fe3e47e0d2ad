"""A resume continues exactly or is refused: never at line N of a file that is no longer the one
its checkpoint read (unless --force says a failed file was replaced on purpose), never with
another CSV parsing, and never (even with --force) into another target, folder or format. Each case failed before: exit 0, a report of every item written, and
items missing or wrong in the target.

The first run is stopped by a kill -9 of its own (a named crash point after a batch is
acknowledged), so a real unfinished checkpoint is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from support import create_table, put_items, scan_all

ENV = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}


def cli(args: List[str], cwd: Path, crash_after: int = 0) -> "subprocess.CompletedProcess[str]":
    env = {**os.environ, **ENV}
    if crash_after:
        env.update({"DDBMIGRATE_CRASH_AT": "after_batch_ack", "DDBMIGRATE_CRASH_AFTER": str(crash_after)})
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args, "--progress", "off"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def lines(n: int, ver: int, reverse: bool = False) -> str:
    keys = range(n - 1, -1, -1) if reverse else range(n)
    return "".join(json.dumps({"Item": {"pk": {"S": f"k{i:05d}"}, "ver": {"N": str(ver)}}}) + "\n" for i in keys)


def test_a_file_rewritten_after_a_crash_is_not_resumed_at_its_old_line(endpoint: str, tmp_path: Path) -> None:
    table = create_table(endpoint)
    folder = tmp_path / "in"
    folder.mkdir()
    data = folder / "data.json"
    data.write_text(lines(3000, 1))
    first = cli(["import", str(folder), table, "--endpoint-url", endpoint, "--writers", "1"], tmp_path,
                crash_after=20)
    assert first.returncode == -9, first.stderr
    # Re-dumped: the same name and size, the same keys, another order and version.
    data.write_text(lines(3000, 2, reverse=True))
    assert len(data.read_text()) == len(lines(3000, 1))
    r = cli(["import", str(folder), table, "--endpoint-url", endpoint, "--resume"], tmp_path)
    assert r.returncode == 2, r.stderr
    assert "the input files changed (data.json rewritten) since it was saved" in r.stderr, r.stderr
    assert "--restart" in r.stderr and "--resume --force" in r.stderr
    r = cli(["import", str(folder), table, "--endpoint-url", endpoint, "--restart"], tmp_path)
    assert r.returncode == 0, r.stderr
    got = scan_all(endpoint, table)
    assert len(got) == 3000 and {it["ver"]["N"] for it in got} == {"2"}


@pytest.mark.parametrize("change", [["--csv-header", "pk,num,name"], ["--csv-delimiter", ","]])
def test_a_resume_with_other_csv_options_is_refused(endpoint: str, tmp_path: Path, change: List[str]) -> None:
    table = create_table(endpoint)
    csv = tmp_path / "d.csv"
    csv.write_text("".join(f"k{i:05d};alice{i};{i}\n" for i in range(3000)))
    base = ["import", str(csv), table, "--endpoint-url", endpoint, "--writers", "1"]
    first = cli([*base, "--csv-header", "pk,name,num", "--csv-delimiter", ";"], tmp_path, crash_after=20)
    assert first.returncode == -9, first.stderr
    opts: Dict[str, str] = {"--csv-header": "pk,name,num", "--csv-delimiter": ";"}
    opts[change[0]] = change[1]
    r = cli([*base, *[x for kv in opts.items() for x in kv], "--resume", "--force"], tmp_path)
    assert r.returncode == 2 and f"another {change[0]}" in r.stderr, r.stderr
    # The same options resume it, exactly.
    r = cli([*base, "--csv-header", "pk,name,num", "--csv-delimiter", ";", "--resume"], tmp_path)
    assert r.returncode == 0, r.stderr
    got = {it["pk"]["S"]: it for it in scan_all(endpoint, table)}
    assert len(got) == 3000 and got["k00042"]["name"] == {"S": "alice42"} and got["k00042"]["num"] == {"S": "42"}


def test_force_does_not_resume_a_copy_into_another_table(endpoint: str, tmp_path: Path) -> None:
    src, a, b = create_table(endpoint), create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i:05d}"}} for i in range(2000)])
    first = cli(["copy", src, a, "--endpoint-url", endpoint, "--checkpoint", "job.json", "--segments", "1",
                 "--writers", "1"], tmp_path, crash_after=10)
    assert first.returncode == -9, first.stderr
    r = cli(["copy", src, b, "--endpoint-url", endpoint, "--checkpoint", "job.json", "--segments", "1",
             "--resume", "--force"], tmp_path)
    assert r.returncode == 2 and "another target" in r.stderr and "even with --force" in r.stderr, r.stderr
    assert scan_all(endpoint, b) == []
