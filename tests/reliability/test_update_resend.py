"""``update`` through a server that fails its calls (500, 503, resets, answers lost after the
write was applied): every UpdateItem is conditional on the image it was computed from, so it is
sent again, and an update applied twice in effect is impossible. A counting transform proves it:
every item ends with its count moved on exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import create_table, put_items, scan_all

from ddbmigrate.testing.proxy import Faults, FaultProxy

pytestmark = pytest.mark.reliability

COUNT = '''
def bump(item):
    item["n"] = item["n"] + 1
    return item
'''


@pytest.mark.parametrize("version", [None, "ver"], ids=["whole-image", "version-attribute"])
def test_an_update_is_resent_after_server_errors_and_applied_once(endpoint: str, tmp_path: Path,
                                                                  version: str) -> None:
    n = 300
    table = create_table(endpoint)
    put_items(endpoint, table, [{"pk": {"S": f"k{i:04d}"}, "n": {"N": "0"}, "pad": {"S": "x" * (i % 40)}}
                                for i in range(n)])
    (tmp_path / "bump.py").write_text(COUNT)
    faults = Faults(error500=0.04, error503=0.04, reset=0.04, lost_response=0.12, ops=frozenset({"UpdateItem"}))
    with FaultProxy(endpoint, seed=7, faults=faults) as proxy:
        args = [sys.executable, "-m", "ddbmigrate", "update", table, "--transform", "bump.py:bump",
                "--endpoint-url", proxy.url, "--region", "us-east-1", "--segments", "2", "--writers", "4",
                "--progress", "off", "--max-attempts", "8", "--report", "r.json"]
        if version:
            args += ["--version-attribute", version]
        r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        lost = proxy.audit.snapshot()["faults"].get("lost_response", 0)
    assert r.returncode == 0, r.stderr
    assert lost > 0  # answers were lost after their writes were applied, and sent again
    final = scan_all(endpoint, table)
    assert len(final) == n
    assert sorted(it["n"]["N"] for it in final) == ["1"] * n, [it for it in final if it["n"]["N"] != "1"][:3]
    if version:
        assert all(it[version]["N"] == "1" for it in final)
    rep = json.loads((tmp_path / "r.json").read_text())
    c = rep["counters"]
    assert c["read"] == n and c["written"] == n and rep["balanced"], c
