"""A checkpoint written by ddbmigrate 0.1 still resumes (issue 14, "what must not change").

``tests/data/checkpoint-0.1-copy.json`` is the unedited checkpoint file of a 0.1 run (commit
ee84828, before the layout by layer), made on DynamoDB Local by::

    ddbmigrate copy compat01-source compat01-target --endpoint-url http://127.0.0.1:47263 \\
        --region us-east-1 --segments 4 --max-read-units 3 --checkpoint-every 0.1 --progress off

over the 3,000 items of :func:`source_item`, stopped with SIGINT once a segment was done: segment
1 is done, segments 0, 2 and 3 have positions, 2,268 items were read and written.

Here the source is seeded with the same items, the target holds exactly what that checkpoint
says 0.1 had written (done segments whole, the others up to their positions), and ``copy
--resume`` must take the checkpoint as its own, scan only what was left, and end with the target
equal to the source and counts that add up.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest

from ddbmigrate import Report
from ddbmigrate.state.checkpoint import default_path, fingerprint
from ddbmigrate.testing import run_tool
from support import as_set, boto_client, scan_all, to_wire

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "checkpoint-0.1-copy.json"
SRC, DST = "compat01-source", "compat01-target"  # fixed: they are part of the saved job identity
ITEMS = 3000
SEGMENTS = 4
# The default checkpoint name 0.1 gave that job (endpoint http://127.0.0.1:47263 in its identity).
SAVED_NAME_01 = "copy-compat01-source-compat01-target-038af1e4.checkpoint.json"


def source_item(i: int) -> Dict[str, Any]:
    """Item ``i`` of the source, in boto3's low-level form (bytes for B). Do not change: the
    saved checkpoint's positions are keys of these items, in this table's scan order."""
    it: Dict[str, Any] = {
        "pk": {"S": f"item-{i:05d}"}, "n": {"N": str(i * 7)}, "flag": {"BOOL": i % 3 == 0},
        "tags": {"SS": [f"t{i % 5}", f"u{i % 7}"]}, "body": {"S": "x" * (100 + i % 50)},
        "nested": {"M": {"i": {"N": str(i)}, "l": {"L": [{"S": "a"}, {"N": "1.5"}]}}},
    }
    if i % 10 == 0:
        it["blob"] = {"B": bytes([i % 256, 0, 255])}
    return it


def fresh_table(client: Any, name: str) -> None:
    try:
        client.delete_table(TableName=name)
        client.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


def batch_put(client: Any, table: str, items: List[Dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        todo: Dict[str, Any] = {table: [{"PutRequest": {"Item": it}} for it in items[start:start + 25]]}
        while todo:
            todo = client.batch_write_item(RequestItems=todo).get("UnprocessedItems") or {}


def segment_keys(client: Any, table: str) -> List[List[str]]:
    """Each scan segment's keys, in scan order (the order positions refer to)."""
    out = []
    for seg in range(SEGMENTS):
        keys: List[str] = []
        for page in client.get_paginator("scan").paginate(TableName=table, Segment=seg, TotalSegments=SEGMENTS,
                                                          ConsistentRead=True, ProjectionExpression="pk"):
            keys.extend(i["pk"]["S"] for i in page["Items"])
        out.append(keys)
    return out


def test_saved_checkpoint_is_what_01_wrote() -> None:
    """The file is the 0.1 one, and the rules that name and sign it have not moved."""
    saved = json.loads(DATA.read_bytes())
    assert saved["version"] == 1 and saved["state"] == "running"
    assert saved["done"] and saved["positions"], "the file must mix finished and unfinished segments"
    assert saved["job"]["names"] == [SRC, DST] and saved["job"]["segments"] == SEGMENTS
    # The fingerprint rule: 0.1's fingerprint of 0.1's identity, recomputed by today's code.
    assert fingerprint(saved["job"]) == saved["fingerprint"]
    # The default path rule: a user who resumes without --checkpoint meets the same file.
    assert default_path("copy", saved["job"]) == os.path.join(".ddbmigrate", SAVED_NAME_01)


@pytest.mark.parametrize("segments_option", [["--segments", "4"], []], ids=["same-command", "segments-from-checkpoint"])
def test_01_copy_checkpoint_resumes(endpoint: str, segments_option: List[str]) -> None:
    saved = json.loads(DATA.read_bytes())
    client = boto_client(endpoint)
    for name in (SRC, DST):
        fresh_table(client, name)
    items = [source_item(i) for i in range(ITEMS)]
    batch_put(client, SRC, items)

    # The target as the checkpoint says 0.1 left it: finished segments whole, the others up to
    # and including their position (invariant 1: nothing past it is known to be written).
    done: Set[str] = set(saved["done"])
    positions: Dict[str, Any] = saved["positions"]
    by_key = {it["pk"]["S"]: it for it in items}
    already: List[str] = []
    left = 0
    for seg, keys in enumerate(segment_keys(client, SRC)):
        if str(seg) in done:
            already.extend(keys)
        elif str(seg) in positions:
            cut = keys.index(positions[str(seg)]["pk"]["S"]) + 1
            already.extend(keys[:cut])
            left += len(keys) - cut
        else:
            left += len(keys)
    # Same items, same segments, same scan order as when 0.1 saved the file: the checkpoint
    # describes this table (else the assertions below would test nothing).
    assert len(already) == saved["counters"]["written"] == saved["counters"]["read"]
    assert len(already) + left == ITEMS
    batch_put(client, DST, [by_key[k] for k in already])

    # Only the endpoint depends on the machine (DynamoDB Local listens on a free port). It is part
    # of the job identity (TableRef.identity: table, region, endpoint_url, role_arn), so the
    # fingerprint, which hashes the whole identity, must be recomputed after rewriting it; every
    # other byte of the identity stays as 0.1 wrote it.
    job = copy.deepcopy(saved["job"])
    for side in ("source", "target"):
        assert job[side]["endpoint_url"] == "http://127.0.0.1:47263"
        job[side]["endpoint_url"] = endpoint
    checkpoint = dict(saved, job=job, fingerprint=fingerprint(job))
    path = default_path("copy", job)  # where `copy --resume` without --checkpoint looks
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(checkpoint, fh, indent=2)

    run = run_tool(["copy", SRC, DST, "--endpoint-url", endpoint, "--region", "us-east-1", *segments_option,
                    "--resume", "--report", "report.json", "--progress", "off", "--quiet"], timeout=120)

    # (a) it resumed: accepted as the same job, the finished segment not scanned again, the
    # others continued from their positions.
    assert run.exit_code == 0, run.output
    assert "different job" not in run.output
    with open("report.json", "rb") as fh:
        data = json.load(fh)
    assert data["status"] == "done" and data["checkpoint_path"] == path
    assert sorted(data["extra"]["unit_seconds"]) == sorted(str(s) for s in range(SEGMENTS) if str(s) not in done)
    assert data["counters"]["read"] == saved["counters"]["read"] + left
    assert data["counters"]["written"] == saved["counters"]["written"] + left
    with open(path, "rb") as fh:
        final = json.load(fh)
    assert final["state"] == "done" and sorted(final["done"]) == [str(s) for s in range(SEGMENTS)]

    # (b) the target is the source, exactly.
    assert as_set(scan_all(endpoint, DST)) == as_set([to_wire(it) for it in items])

    # (c) the counts add up.
    report = Report(**{k: v for k, v in data.items() if k in Report.__dataclass_fields__})
    assert report.balanced() and data["balanced"] is True
    assert report.read == ITEMS and report.dead_lettered == 0
