"""kill -9 of ``ddbmigrate update`` after acknowledged writes, before their checkpoint, then
``--resume``: every item ends transformed exactly once in effect, and the resumed report counts
each item once (the items the killed run had already updated come out unchanged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import create_table, scan_all

from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.config import TableRef
from ddbmigrate.jobs.seed import seed_table

pytestmark = pytest.mark.reliability

TRANSFORM = '''
def tag(item):
    item["tagged"] = "v2:" + str(item["pk"])
    return item
'''


@pytest.mark.parametrize("point,after", [("after_batch_ack", 3)])
def test_update_killed_then_resumed(endpoint: str, tmp_path: Path, point: str, after: int) -> None:
    n = 400
    table = create_table(endpoint)
    seed_table(DynamoClient(TableRef(table, endpoint_url=endpoint, region="us-east-1")), table, n, size=300)
    tf = tmp_path / "tag.py"
    tf.write_text(TRANSFORM)
    args = [sys.executable, "-m", "ddbmigrate", "update", table, "--transform", f"{tf}:tag", "--endpoint-url",
            endpoint, "--region", "us-east-1", "--segments", "4", "--writers", "2", "--progress", "off",
            "--checkpoint-every", "0.2", "--max-write-units", "400", "--report", str(tmp_path / "r.json")]
    env = dict(os.environ, DDBMIGRATE_CRASH_AT=point, DDBMIGRATE_CRASH_AFTER=str(after))
    killed = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert killed.returncode == -9, killed.stderr
    done_before = sum(1 for it in scan_all(endpoint, table) if "tagged" in it)
    assert 0 < done_before < n
    resumed = subprocess.run(args + ["--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    c = rep["counters"]
    assert c["read"] == n and c["written"] + c.get("unchanged", 0) == n and rep["balanced"]
    final = scan_all(endpoint, table)
    assert len(final) == n and all(it["tagged"]["S"] == "v2:" + it["pk"]["S"] for it in final)
