"""The multi-process local engine: same results, merged dead letters, resumable checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ddbmigrate import RunOptions, TableRef, copy_table
from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.jobs.seed import seed_table
from support import as_set, create_table, every_type_items, put_items, scan_all

pytestmark = pytest.mark.integration


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def test_processes_copy_exact(endpoint: str) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    seed_table(DynamoClient(ref(endpoint, src)), src, 1500, size=800)
    put_items(endpoint, src, every_type_items())
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst),
                     RunOptions(segments=6, processes=3, progress="off", report="r.json"))
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))
    assert rep.written == 1500 + len(every_type_items()) and rep.balanced()
    saved = json.load(open("r.json"))
    assert saved["extra"]["processes"] == 3 and saved["counters"]["written"] == rep.written


def test_processes_dead_letters_merged_and_exit_3(endpoint: str, tmp_path) -> None:
    src = create_table(endpoint, hash_key=("pk", "S"))
    dst = create_table(endpoint, hash_key=("id", "N"))
    good = [{"pk": {"S": f"g{i}"}, "id": {"N": str(i)}} for i in range(60)]
    bad = [{"pk": {"S": f"b{i}"}, "id": {"S": "x"}} for i in range(5)]
    put_items(endpoint, src, good + bad)
    dl = tmp_path / "dead.jsonl"
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "copy", src, dst, "--endpoint-url", endpoint,
                        "--processes", "2", "--segments", "4", "--dead-letter", str(dl), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    lines = [json.loads(x) for x in dl.read_text().splitlines()]
    assert sorted(x["item"]["pk"]["S"] for x in lines) == sorted(f"b{i}" for i in range(5))
    assert not [p for p in os.listdir(tmp_path) if ".part" in p]
    assert len(scan_all(endpoint, dst)) == 60


def test_processes_kill9_then_resume(endpoint: str, tmp_path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    seed_table(DynamoClient(ref(endpoint, src)), src, 3000, size=600)
    ck = tmp_path / "ck.json"
    base = [sys.executable, "-m", "ddbmigrate", "copy", src, dst, "--endpoint-url", endpoint, "--processes", "2",
            "--segments", "8", "--checkpoint", str(ck), "--quiet"]
    env = dict(os.environ, DDBMIGRATE_CRASH_AT="after_batch_ack", DDBMIGRATE_CRASH_AFTER="20")
    first = subprocess.run(base, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode != 0  # a worker was killed mid-run
    second = subprocess.run(base + ["--resume"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))
    assert json.loads(ck.read_text())["state"] == "done"
