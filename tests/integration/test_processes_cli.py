"""``--processes N|auto`` on every job that moves items (copy, clean, export, import, verify)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ddbmigrate.cli.engine import Processes
from support import as_set, create_table, every_type_items, put_items, scan_all

pytestmark = pytest.mark.integration


def test_processes_accepts_a_count_or_auto() -> None:
    p = Processes()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert p.convert("auto", None, None) == cores and p.convert("AUTO", None, None) == cores
    assert p.convert("3", None, None) == 3 and p.convert(2, None, None) == 2
    for bad in ("0", "300", "many"):
        with pytest.raises(click.BadParameter):
            p.convert(bad, None, None)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args, "--progress", "off"], capture_output=True,
                          text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_export_and_import_with_processes_auto_move_every_item(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    items = every_type_items() + [{"pk": {"S": f"k{i:04d}"}, "n": {"N": str(i)}} for i in range(600)]
    put_items(endpoint, src, items)
    out = tmp_path / "export"
    r = _cli("export", src, str(out), "--endpoint-url", endpoint, "--segments", "4", "--processes", "auto",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    dst = create_table(endpoint)
    r = _cli("import", str(out), dst, "--endpoint-url", endpoint, "--processes", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))
    bad = _cli("import", str(out), dst, "--endpoint-url", endpoint, "--processes", "zero", cwd=tmp_path)
    assert bad.returncode == 2 and "'zero' is neither a number of processes nor 'auto'" in bad.stderr
