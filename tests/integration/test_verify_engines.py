"""verify's scans run as jobs: the processes engine finds exactly what the threads engine finds.

Each side is a Job into a compare sink; on the processes engine every worker spills its own
files and the comparison reads them all. The report (every count) and the differences file
(every line) must be the same as on threads, for every category: missing, unexpected,
mismatched, invalid (an expected item that cannot exist in the target) and unreadable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

import orjson
import pytest

from ddbmigrate import RunOptions, TableRef, copy_table
from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.engine import engine_for
from ddbmigrate.errors import TransformError
from ddbmigrate.jobs.seed import seed_table
from ddbmigrate.verify import VerifyReport, iter_diffs, verify_tables
from support import boto_client, create_table, put_items, VERIFY_FANOUT as FANOUT

pytestmark = pytest.mark.integration

CATEGORIES = ("equal", "missing", "unexpected", "mismatched", "invalid", "unreadable")


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def sets_sorted(v: Any) -> Any:
    """A transform's Python sets come out in its process's hash order: compare sets as sets."""
    if isinstance(v, dict):
        return {k: sorted(x) if k in ("SS", "NS", "BS") and isinstance(x, list) else sets_sorted(x)
                for k, x in v.items()}
    if isinstance(v, list):
        return [sets_sorted(x) for x in v]
    return v


def outcome(rep: VerifyReport, diff_path: str) -> Tuple[Dict[str, int], Dict[str, int], List[bytes]]:
    """(categories, counters, sorted difference lines) of one verify: what must not depend on the engine."""
    assert rep.balanced()
    cats = {c: getattr(rep, c) for c in CATEGORIES}
    counters = {k: v for k, v in rep.counters.items()}
    lines = sorted(orjson.dumps(sets_sorted(d), option=orjson.OPT_SORT_KEYS) for d in iter_diffs(diff_path))
    return cats, counters, lines


def both_engines(run: Any) -> Tuple[Any, Any]:
    threads = run(None, "threads.jsonl")
    processes = run(engine_for("processes", processes=2), "processes.jsonl")
    return outcome(threads, "threads.jsonl"), outcome(processes, "processes.jsonl")


def test_processes_report_every_category_as_threads(endpoint: str) -> None:
    # The source is keyed by "id", the target by "pk": an item without a valid "pk" is invalid.
    src = create_table(endpoint, hash_key=("id", "S"))
    dst = create_table(endpoint)
    items = [{"id": {"S": f"i{i:04d}"}, "pk": {"S": f"k{i:04d}"}, "v": {"N": str(i)},
              "tags": {"SS": ["a", f"t{i % 5}"]}} for i in range(300)]
    bad = [{"id": {"S": "no-pk"}, "v": {"N": "1"}},  # missing key attribute
           {"id": {"S": "pk-number"}, "pk": {"N": "7"}},  # key attribute of the wrong type
           {"id": {"S": "pk-empty"}, "pk": {"S": ""}}]  # empty string key
    put_items(endpoint, src, items + bad)
    target = [{k: v for k, v in it.items() if k != "id"} | {"id": it["id"]} for it in items]
    put_items(endpoint, dst, target)
    c = boto_client(endpoint)
    for i in (3, 77, 150):  # missing
        c.delete_item(TableName=dst, Key={"pk": {"S": f"k{i:04d}"}})
    for i in (10, 11):  # mismatched
        c.update_item(TableName=dst, Key={"pk": {"S": f"k{i:04d}"}}, UpdateExpression="SET v = :v",
                      ExpressionAttributeValues={":v": {"S": "changed"}})
    for k in ("extra-1", "extra-2", "extra-3", "extra-4"):  # unexpected
        c.put_item(TableName=dst, Item={"pk": {"S": k}})

    def run(engine: Any, diff: str) -> VerifyReport:
        return verify_tables(ref(endpoint, src), ref(endpoint, dst), segments=4, progress="off", diff_path=diff,
                             memory_mb=0.01, engine=engine)

    (t_cats, t_counters, t_lines), (p_cats, p_counters, p_lines) = both_engines(run)
    assert t_cats == {"equal": 295, "missing": 3, "unexpected": 4, "mismatched": 2, "invalid": 3, "unreadable": 0}
    assert p_cats == t_cats
    assert p_counters == t_counters
    assert p_lines == t_lines
    invalid = [orjson.loads(x) for x in t_lines if b'"category":"invalid"' in x]
    assert sorted(d["source_key"]["id"]["S"] for d in invalid) == ["no-pk", "pk-empty", "pk-number"]
    assert all(set(d) == {"category", "reason", "source_key", "origin", "expected"} for d in invalid)
    assert not [f for f in os.listdir(".ddbmigrate") if f.startswith("verify-")]  # work folder removed


def test_processes_files_side_with_unreadable_lines(endpoint: str, tmp_path: Any) -> None:
    """A files side (FilesSpec) read by worker processes: unparsable lines are unreadable, as on threads."""
    dst = create_table(endpoint)
    items = [{"pk": {"S": f"k{i:03d}"}, "n": {"N": str(i)}} for i in range(120)]
    put_items(endpoint, dst, items[:-2])
    folder = tmp_path / "lines"
    folder.mkdir()
    for part in range(3):
        rows = [orjson.dumps({"Item": it}).decode() for it in items[part::3]]
        if part == 1:
            rows.insert(5, "{not json")
        (folder / f"part-{part}.json").write_text("\n".join(rows) + "\n")

    def run(engine: Any, diff: str) -> VerifyReport:
        return verify_tables("./lines", ref(endpoint, dst), progress="off", diff_path=diff, engine=engine)

    (t_cats, t_counters, t_lines), (p_cats, p_counters, p_lines) = both_engines(run)
    assert t_cats == {"equal": 118, "missing": 2, "unexpected": 0, "mismatched": 0, "invalid": 0, "unreadable": 1}
    assert (p_cats, p_counters, p_lines) == (t_cats, t_counters, t_lines)
    (unreadable,) = [orjson.loads(x) for x in t_lines if b'"category":"unreadable"' in x]
    assert unreadable["side"] == "source" and unreadable["raw"] == "{not json"
    assert unreadable["origin"].endswith(":6")




def test_processes_verify_with_transform(endpoint: str, tmp_path: Any) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    seed_table(DynamoClient(ref(endpoint, src)), src, 100, size=600)
    (tmp_path / "tf.py").write_text(FANOUT)
    copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(transform="tf.py:split", progress="off"))
    procs = engine_for("processes", processes=2)
    ok = verify_tables(ref(endpoint, src), ref(endpoint, dst), transform="tf.py:split", progress="off", segments=4,
                       engine=procs)
    assert ok.exit_code == 0 and ok.equal == 180 and ok.balanced()
    assert ok.count("dropped") == 10 and ok.count("fanout_extra") == 90 and ok.count("source_read") == 100
    c = boto_client(endpoint)
    c.delete_item(TableName=dst, Key={"pk": {"S": "user#000000042#b"}})
    c.put_item(TableName=dst, Item={"pk": {"S": "user#000000017#a"}})  # derived from a dropped item

    def run(engine: Any, diff: str) -> VerifyReport:
        return verify_tables(ref(endpoint, src), ref(endpoint, dst), transform="tf.py:split", progress="off",
                             segments=4, diff_path=diff, engine=engine)

    (t_cats, t_counters, t_lines), (p_cats, p_counters, p_lines) = both_engines(run)
    assert (t_cats["missing"], t_cats["unexpected"], t_cats["mismatched"]) == (1, 1, 0)
    assert (p_cats, p_counters, p_lines) == (t_cats, t_counters, t_lines)


def test_processes_transform_error_stops_verify(endpoint: str, tmp_path: Any) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i}"}} for i in range(20)])
    put_items(endpoint, dst, [{"pk": {"S": f"k{i}"}} for i in range(20)])
    (tmp_path / "boom.py").write_text("def f(item):\n    if item['pk'] == 'k5':\n        raise ValueError('no')\n"
                                      "    return item\n")
    procs = engine_for("processes", processes=2)
    with pytest.raises(TransformError) as ei:
        verify_tables(ref(endpoint, src), ref(endpoint, dst), transform="boom.py:f", progress="off", segments=4,
                      engine=procs)
    assert 'source key {"pk":{"S":"k5"}}' in ei.value.one_line()
    skipped = verify_tables(ref(endpoint, src), ref(endpoint, dst), transform="boom.py:f", progress="off",
                            segments=4, engine=procs, on_error="skip")
    assert skipped.count("transform_errors") == 1 and skipped.unexpected == 1 and skipped.balanced()


def test_cli_verify_with_processes(endpoint: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    from support import put_items

    src, dst = create_table(endpoint), create_table(endpoint)
    rows = [{"pk": {"S": f"k{i:03d}"}, "n": {"N": str(i)}} for i in range(120)]
    put_items(endpoint, src, rows)
    put_items(endpoint, dst, rows[:-1])
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "verify", src, dst, "--endpoint-url", endpoint,
                        "--processes", "2", "--progress", "off", "--report", "v.json"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    import json

    rep = json.loads((tmp_path / "v.json").read_text())
    assert rep["missing"] == 1 and rep["equal"] == 119
