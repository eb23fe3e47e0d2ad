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
from ddbmigrate.exporting import export_table
from ddbmigrate.transform import load_transform
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
    _seed(endpoint, src, 4990, 20)  # now over 5,000: the default would be 8 segments
    r = _cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))
