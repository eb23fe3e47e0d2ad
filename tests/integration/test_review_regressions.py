"""Regressions found in review, each reproduced against the real DynamoDB Local."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.jobs.export import export_table
from ddbmigrate.sources.table_scan import MIN_SEGMENTS
from ddbmigrate.core.transform import load_transform
from support import as_set, boto_client, create_table, put_items, scan_all


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def opts(**kw: Any) -> RunOptions:
    return RunOptions(progress="off", **kw)


def test_export_with_a_rekeying_transform_exports_every_item(endpoint: str, tmp_path: Path) -> None:
    # A file has no key schema: the transformed items must not be checked against the source key
    # (a re-modelling export used to dead-letter every item as "missing key attribute 'pk'").
    src = create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"u{i}"}, "name": {"S": f"n{i}"}} for i in range(20)])
    (tmp_path / "rekey.py").write_text(
        "def f(item):\n    return {'PK': 'USER#' + item['pk'], 'name': item['name']}\n")
    rep = export_table(ref(endpoint, src), str(tmp_path / "out"), opts(segments=2),
                       transform=load_transform(f"{tmp_path / 'rekey.py'}:f"))
    assert rep.dead_lettered == 0 and rep.balanced()
    assert rep.extra["items_exported"] == 20
    lines = [json.loads(line) for p in (Path(rep.extra["export_path"]) / "data").glob("*.json.gz")
             for line in gzip.decompress(p.read_bytes()).splitlines()]
    assert sorted(line["Item"]["PK"]["S"] for line in lines) == sorted(f"USER#u{i}" for i in range(20))


def _seed(endpoint: str, table: str, start: int, n: int) -> None:
    """Plain boto3 batch writes of small items (independent of ddbmigrate)."""
    c = boto_client(endpoint)
    for lo in range(start, start + n, 25):
        reqs = [{"PutRequest": {"Item": {"pk": {"S": f"k{i:06d}"}, "v": {"N": str(i)}}}}
                for i in range(lo, min(lo + 25, start + n))]
        while reqs:
            reqs = c.batch_write_item(RequestItems={table: reqs}).get("UnprocessedItems", {}).get(table, [])


def _cli(*args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_resume_keeps_the_checkpoints_segment_count_when_the_table_grew(endpoint: str) -> None:
    # The default --segments comes from the table's size; a source that grows while a migration
    # is interrupted (it is live) must not turn --resume into "belongs to a different job" (whose
    # only way forward, --force, would apply per-segment positions to a different segmentation).
    src, dst = create_table(endpoint), create_table(endpoint)
    _seed(endpoint, src, 0, 4990)  # under 5,000 items: 4 default segments
    args = ["copy", src, dst, "--endpoint-url", endpoint, "--quiet", "--writers", "2",
            "--checkpoint-every", "0.05", "--checkpoint", "ck.json"]
    r = _cli(*args, env={"DDBMIGRATE_CRASH_AT": "mid_checkpoint_write", "DDBMIGRATE_CRASH_AFTER": "2"})
    assert r.returncode == -9, r.stderr
    assert json.loads(open("ck.json").read())["job"]["segments"] == 4
    _seed(endpoint, src, 4990, 20)  # now over 5,000: the default would be MIN_SEGMENTS
    r = _cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))


def test_resumed_clean_keeps_its_segment_count_after_the_table_shrank(endpoint: str) -> None:
    # An interrupted clean has deleted items: the default segment count computed from the
    # smaller table differs, and --resume must still continue the same job.
    table = create_table(endpoint)
    _seed(endpoint, table, 0, 5010)  # over 5,000 items: MIN_SEGMENTS default segments
    args = ["clean", table, "--endpoint-url", endpoint, "--quiet", "--yes", "--writers", "1",
            "--checkpoint-every", "0.05", "--checkpoint", "ck.json"]
    r = _cli(*args, env={"DDBMIGRATE_CRASH_AT": "after_batch_ack", "DDBMIGRATE_CRASH_AFTER": "60"})
    assert r.returncode == -9, r.stderr
    assert json.loads(open("ck.json").read())["job"]["segments"] == MIN_SEGMENTS
    assert 0 < len(scan_all(endpoint, table)) < 5000  # the default would now be 4 segments
    r = _cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert scan_all(endpoint, table) == []


def test_processes_keep_resumed_positions_of_workers_that_died_before_reporting(endpoint: str) -> None:
    # --processes: the parent saves what workers report. A worker killed before its first report
    # must not erase the positions it was resumed from (its segments would start over, and the
    # resumed counters would count those items twice).
    from ddbmigrate.state.checkpoint import CheckpointState, CheckpointStore, fingerprint
    from ddbmigrate.jobs.copy import copy_identity

    src, dst = create_table(endpoint), create_table(endpoint)
    _seed(endpoint, src, 0, 200)
    c = boto_client(endpoint)
    positions = {str(s): c.scan(TableName=src, Segment=s, TotalSegments=2, Limit=5)["LastEvaluatedKey"]
                 for s in range(2)}
    ident = copy_identity(TableRef(src, endpoint_url=endpoint), TableRef(dst, endpoint_url=endpoint), [src, dst],
                          2, None, RunOptions())
    CheckpointStore("ck.json").save(CheckpointState(fingerprint=fingerprint(ident), job=ident, positions=positions,
                                                    counters={"read": 10, "out": 10, "written": 10}))
    r = _cli("copy", src, dst, "--endpoint-url", endpoint, "--quiet", "--segments", "2", "--processes", "2",
             "--checkpoint", "ck.json", "--resume",
             env={"DDBMIGRATE_CRASH_AT": "after_batch_ack", "DDBMIGRATE_CRASH_AFTER": "1"})
    assert r.returncode == 1 and "died" in r.stderr, r.stderr
    saved = json.loads(open("ck.json").read())
    assert saved["positions"] == positions and saved["counters"]["read"] == 10
