"""``--engine spark`` against the real DynamoDB Local, on a real local Spark (``local[2,4]``).

One SparkContext serves the whole module (starting one takes ~10 s); the engine uses the active
context, exactly as it does under spark-submit or Glue. ``local[2,4]``: 2 cores, and a failed
task is retried up to 4 times, so the forced failure below is retried by Spark itself.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import orjson
import pytest

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'ddbmigrate[spark]')")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java 17+ (no java on PATH, no JAVA_HOME)", allow_module_level=True)

from ddbmigrate import RunOptions, TableRef  # noqa: E402
from ddbmigrate.state.checkpoint import CheckpointStore  # noqa: E402
from ddbmigrate.errors import DdbMigrateError  # noqa: E402
from ddbmigrate.engine.spark import FAIL_ONCE_ENV, SparkEngine, SparkSettings  # noqa: E402
from ddbmigrate.jobs.clean import clean_table  # noqa: E402
from ddbmigrate.jobs.copy import copy_table  # noqa: E402
from ddbmigrate.jobs.export import export_table  # noqa: E402
from ddbmigrate.jobs.import_files import import_files  # noqa: E402
from ddbmigrate.reporting.report import Report  # noqa: E402
from support import local_spark, as_set, create_table, every_type_items, scan_all  # noqa: E402

pytestmark = pytest.mark.integration

MASTER = "local[2,4]"


@pytest.fixture(scope="module", autouse=True)
def spark_context() -> Iterator[Any]:
    with local_spark(MASTER, "ddbmigrate-tests") as sc:
        yield sc


def spark(settings: Optional[SparkSettings] = None) -> SparkEngine:
    return SparkEngine(settings or SparkSettings())


def copy_table_spark(source: TableRef, target: TableRef, options: RunOptions, *,
                     spark_settings: Optional[SparkSettings] = None, **kw: Any) -> Report:
    """``copy_table`` on the Spark engine (0.1's ``copy_table_spark``)."""
    return copy_table(source, target, options, engine=spark(spark_settings), **kw)


def export_table_spark(table: TableRef, dest: str, options: RunOptions, **kw: Any) -> Report:
    """``export_table`` on the Spark engine (0.1's ``export_table_spark``)."""
    return export_table(table, dest, options, engine=spark(), **kw)


def put_items(endpoint: str, table: str, items: List[Dict[str, Any]]) -> None:
    """Seed with plain boto3 BatchWriteItem (independent of ddbmigrate; faster than one PutItem each)."""
    from support import boto_client, from_wire

    c = boto_client(endpoint)
    for i in range(0, len(items), 25):
        req = {table: [{"PutRequest": {"Item": from_wire(it)}} for it in items[i:i + 25]]}
        while req:
            req = c.batch_write_item(RequestItems=req).get("UnprocessedItems") or {}


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def opts(**kw: Any) -> RunOptions:
    kw.setdefault("progress", "off")
    return RunOptions(**kw)


def numbered(n: int, start: int = 0) -> List[Dict[str, Any]]:
    return [{"pk": {"S": f"item-{i:05d}"}, "n": {"N": str(i)}, "pad": {"S": "x" * 200}}
            for i in range(start, start + n)]


def dead_lines(folder: Path, stem: str) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    for f in sorted(folder.glob(f"{stem}.segment-*.jsonl")):
        out.extend(orjson.loads(line) for line in f.read_bytes().splitlines() if line.strip())
    return out


TRANSFORM = '''
import os
CALLS = {calls!r}
FAIL_FLAG = {flag!r}

def reshape(item, ctx):
    with open(CALLS, "a") as fh:  # one short line per call: O_APPEND keeps lines whole
        fh.write(item["pk"] + " " + str(os.getpid()) + "\\n")
    n = int(item.get("n", -1))
    if n >= 0 and n % 10 == 3:
        return None  # dropped on purpose
    if n >= 0 and n % 10 == 7 and os.path.exists(FAIL_FLAG):
        # The flag file holds "all" (every 7 fails) or the one key that fails.
        with open(FAIL_FLAG) as fh:
            which = fh.read().strip()
        if which in ("all", item["pk"]):
            raise RuntimeError("seven is not allowed")
    item["upper"] = item["pk"].upper()
    item["segment"] = ctx.segment
    return item
'''


def write_transform(tmp_path: Path) -> tuple[str, Path, Path]:
    calls, flag = tmp_path / "calls.log", tmp_path / "fail.flag"
    path = tmp_path / "reshape.py"
    path.write_text(TRANSFORM.format(calls=str(calls), flag=str(flag)))
    return f"{path}:reshape", calls, flag


def task_calls(calls: Path) -> List[str]:
    """Keys the transform saw in Spark tasks (the driver may try it on a sample before the run)."""
    me = str(os.getpid())
    return [ln.split()[0] for ln in calls.read_text().splitlines() if ln.split()[1] != me]


def expected_transformed(items: List[Dict[str, Any]], failing: bool) -> List[Dict[str, Any]]:
    out = []
    for it in items:
        n = int(it["n"]["N"])
        if n % 10 == 3 or (failing and n % 10 == 7):
            continue
        out.append({**it, "upper": {"S": it["pk"]["S"].upper()}})
    return out


def strip_segment(items: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    # The segment number depends on DynamoDB's hashing: checked separately, then ignored.
    return [{k: v for k, v in it.items() if k != "segment"} for it in items]


# --------------------------------------------------------------------------- tests


def test_every_type_copied_exactly(endpoint: str) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    items = every_type_items() + numbered(300)
    put_items(endpoint, src, items)
    rep = copy_table_spark(ref(endpoint, src), ref(endpoint, dst), opts(segments=5), spark_settings=SparkSettings())
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    assert rep.read == len(items) and rep.written == len(items) and rep.balanced() and rep.exit_code == 0
    assert rep.status == "done" and rep.segments == 5
    assert rep.extra["engine"] == "spark" and rep.extra["spark_master"] == MASTER
    assert rep.retries.get("spark_task", 0) == 0
    st = CheckpointStore(str(rep.checkpoint_path)).load()
    assert st is not None and st.state == "done" and sorted(st.done, key=int) == [str(s) for s in range(5)]
    assert st.counters["read"] == len(items)


def test_empty_table_and_create_target(endpoint: str) -> None:
    src = create_table(endpoint, hash_key=("h", "N"), range_key=("r", "S"))
    dst_name = src + "-copy"
    rep = copy_table_spark(ref(endpoint, src), ref(endpoint, dst_name), opts(), create_target=True)
    assert rep.read == 0 and rep.written == 0 and rep.segments == 1
    assert scan_all(endpoint, dst_name) == []


def test_transform_drops_and_dead_letters_per_segment(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    items = numbered(400)
    put_items(endpoint, src, items)
    tf, calls, flag = write_transform(tmp_path)
    flag.write_text("all")
    rep = copy_table_spark(ref(endpoint, src), ref(endpoint, dst),
                           opts(segments=4, transform=tf, on_error="skip", dead_letter=str(tmp_path / "dead.jsonl")))
    got = scan_all(endpoint, dst)
    assert {it["segment"]["N"] for it in got} <= {"0", "1", "2", "3"}
    assert as_set(strip_segment(got)) == as_set(expected_transformed(items, failing=True))
    assert rep.read == 400 and rep.count("dropped") == 40 and rep.dead_lettered == 40
    assert rep.written == 320 and rep.balanced() and rep.exit_code == 3
    dead = dead_lines(tmp_path, "dead")
    assert sorted(d["item"]["pk"]["S"] for d in dead) == sorted(f"item-{i:05d}" for i in range(7, 400, 10))
    assert all(d["stage"] == "transform" and "seven is not allowed" in d["reason"] for d in dead)
    assert len(rep.extra["dead_letter_files"]) == len(list(tmp_path.glob("dead.segment-*.jsonl"))) > 1
    assert rep.dead_letter_reasons == {"RuntimeError": 40}


def test_failed_task_is_retried_by_spark_with_exact_result(endpoint: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Segment 1's first attempt dies after 2 acknowledged batches; Spark runs it again.

    The retry rewrites the same full images (harmless), its counts replace the failed
    attempt's, and its dead-letter file starts afresh: the report still adds up exactly.
    """
    src, dst = create_table(endpoint), create_table(endpoint)
    items = numbered(600)
    put_items(endpoint, src, items)
    tf, _calls, flag = write_transform(tmp_path)
    flag.write_text("all")
    marker = tmp_path / "failed-once.marker"
    monkeypatch.setenv(FAIL_ONCE_ENV, f"1:2:{marker}")
    rep = copy_table_spark(ref(endpoint, src), ref(endpoint, dst),
                           opts(segments=3, transform=tf, on_error="skip", dead_letter=str(tmp_path / "dl.jsonl")))
    assert marker.exists(), "the injected failure did not fire"
    assert rep.retries.get("spark_task") == 1
    assert as_set(strip_segment(scan_all(endpoint, dst))) == as_set(expected_transformed(items, failing=True))
    assert rep.read == 600 and rep.written == 480 and rep.dead_lettered == 60 and rep.balanced()
    dead = dead_lines(tmp_path, "dl")
    assert len(dead) == 60 and len({d["item"]["pk"]["S"] for d in dead}) == 60


def first_seven_of_segment(endpoint: str, table: str, segment: int, total: int) -> str:
    """A key with n % 10 == 7 that DynamoDB puts in ``segment`` (plain boto3 scan)."""
    from support import boto_client

    pages = boto_client(endpoint).get_paginator("scan").paginate(TableName=table, Segment=segment,
                                                                  TotalSegments=total)
    sevens = sorted(i["pk"]["S"] for p in pages for i in p["Items"] if int(i["n"]["N"]) % 10 == 7)
    assert sevens, "test data too small: no candidate key in that segment"
    return sevens[0]


def test_resume_skips_finished_segments(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    items = numbered(600)
    put_items(endpoint, src, items)
    tf, calls, flag = write_transform(tmp_path)
    # One key of the last segment makes that segment fail (--on-error fail); with one task at a
    # time, segments 0-4 finish first and are checkpointed.
    flag.write_text(first_seven_of_segment(endpoint, src, 5, 6))
    ckpt = str(tmp_path / "spark.checkpoint.json")
    with pytest.raises(DdbMigrateError) as ei:
        copy_table_spark(ref(endpoint, src), ref(endpoint, dst),
                         opts(segments=6, transform=tf, checkpoint=ckpt), spark_settings=SparkSettings(max_tasks=1))
    assert "seven is not allowed" in str(ei.value) and "segment 5" in str(ei.value) and ei.value.exit_code == 1
    report = getattr(ei.value, "report")
    assert report.status == "failed"
    st = CheckpointStore(ckpt).load()
    assert st is not None and st.state == "running" and sorted(st.done, key=int) == ["0", "1", "2", "3", "4"]
    done_read = st.counters["read"]
    assert 0 < done_read < 600

    flag.unlink()
    calls.write_text("")
    rep = copy_table_spark(ref(endpoint, src), ref(endpoint, dst),
                           opts(segments=6, transform=tf, checkpoint=ckpt, resume=True))
    # Only the unfinished segment ran again: the transform saw exactly its items.
    assert len(task_calls(calls)) == 600 - done_read
    assert rep.extra["segments_resumed"] == 5
    assert rep.read == 600 and rep.written == 540 and rep.balanced() and rep.status == "done"
    assert as_set(strip_segment(scan_all(endpoint, dst))) == as_set(expected_transformed(items, failing=False))
    # A finished job resumes to a no-op (no Spark job at all) with the same counts.
    calls.write_text("")
    again = copy_table_spark(ref(endpoint, src), ref(endpoint, dst),
                             opts(segments=6, transform=tf, checkpoint=ckpt, resume=True))
    assert again.read == 600 and again.extra["segments_resumed"] == 6 and task_calls(calls) == []


def test_cli_engine_spark(endpoint: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    src, dst = create_table(endpoint), create_table(endpoint)
    items = numbered(150)
    put_items(endpoint, src, items)
    report = tmp_path / "report.json"
    res = CliRunner().invoke(main, ["copy", src, dst, "--endpoint-url", endpoint, "--region", "us-east-1",
                                    "--engine", "spark", "--segments", "3", "--max-write-units", "100000",
                                    "--report", str(report), "-q"])
    assert res.exit_code == 0, res.output
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    data = orjson.loads(report.read_bytes())
    assert data["counters"]["written"] == 150 and data["balanced"] and data["extra"]["engine"] == "spark"

    res = CliRunner().invoke(main, ["copy", src, dst, "--endpoint-url", endpoint, "--spark-master", "local[1]"])
    assert res.exit_code == 2 and "--engine spark" in res.output


# --------------------------------------------------------------------------- export


def read_export(dest: Path) -> tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """An independent reader of the Export-to-S3 layout: summary + every item, checksums checked."""
    import base64
    import gzip
    import hashlib

    (root,) = list((dest / "AWSDynamoDB").iterdir())
    summary = orjson.loads((root / "manifest-summary.json").read_bytes())
    items: List[Dict[str, Any]] = []
    listed = set()
    for line in (root / "manifest-files.json").read_bytes().splitlines():
        entry = orjson.loads(line)
        path = dest / entry["dataFileS3Key"]
        raw = path.read_bytes()
        assert base64.b64encode(hashlib.md5(raw).digest()).decode() == entry["md5Checksum"]
        lines = [orjson.loads(x) for x in gzip.decompress(raw).splitlines() if x.strip()]
        assert len(lines) == entry["itemCount"]
        items.extend(x["Item"] for x in lines)
        listed.add(path.name)
    # No data file outside the manifest (a failed attempt's files must be gone).
    assert {p.name for p in (root / "data").iterdir()} == listed
    assert summary["itemCount"] == len(items)
    return summary, items


def test_export_every_type_exact(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    items = every_type_items() + numbered(200)
    put_items(endpoint, src, items)
    rep = export_table_spark(ref(endpoint, src), str(tmp_path / "out"), opts(segments=4))
    summary, got = read_export(tmp_path / "out")
    assert as_set(got) == as_set(items)
    assert rep.read == len(items) and rep.written == len(items) and rep.balanced()
    assert summary["outputFormat"] == "DYNAMODB_JSON" and summary["version"] == "2020-06-30"
    assert rep.extra["export_id"] in summary["exportArn"] and rep.extra["items_exported"] == len(items)


def test_export_task_retry_leaves_no_duplicate(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Segment 0's first attempt finishes data files, then dies; Spark retries it.

    The failed attempt's files are not in the manifest and are deleted: each item once.
    """
    src = create_table(endpoint)
    items = numbered(600)
    put_items(endpoint, src, items)
    marker = tmp_path / "export-failed.marker"
    monkeypatch.setenv(FAIL_ONCE_ENV, f"0:1:{marker}")
    tf, _calls, _flag = write_transform(tmp_path)
    rep = export_table_spark(ref(endpoint, src), str(tmp_path / "out"), opts(segments=3, transform=tf),
                             file_size=30_000)
    assert marker.exists() and rep.retries.get("spark_task") == 1
    assert rep.extra["orphan_files_deleted"] >= 1  # the failed attempt had finished a file
    _summary, got = read_export(tmp_path / "out")
    assert as_set(strip_segment(got)) == as_set(expected_transformed(items, failing=False))
    assert rep.read == 600 and rep.count("dropped") == 60 and rep.written == 540 and rep.balanced()


# --------------------------------------------------------------------------- every job on the one engine


def seven_counts(endpoint: str, table: str, total: int) -> List[int]:
    """How many keys with n % 10 == 7 each scan segment holds (plain boto3 scan)."""
    from support import boto_client

    out = []
    for seg in range(total):
        pages = boto_client(endpoint).get_paginator("scan").paginate(TableName=table, Segment=seg,
                                                                      TotalSegments=total)
        out.append(sum(1 for p in pages for i in p["Items"] if int(i["n"]["N"]) % 10 == 7))
    return out


def test_max_errors_counts_over_the_whole_job(endpoint: str, tmp_path: Path) -> None:
    """No segment alone dead-letters more than --max-errors; together they do: the job stops."""
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, numbered(400))
    tf, _calls, flag = write_transform(tmp_path)
    flag.write_text("all")
    per_segment = seven_counts(endpoint, src, 4)
    limit = max(per_segment)
    assert sum(per_segment) > limit
    ckpt = str(tmp_path / "ck.json")
    with pytest.raises(DdbMigrateError) as ei:
        copy_table_spark(ref(endpoint, src), ref(endpoint, dst),
                         opts(segments=4, transform=tf, on_error="skip", max_errors=limit, checkpoint=ckpt,
                              dead_letter=str(tmp_path / "dead.jsonl")),
                         spark_settings=SparkSettings(max_tasks=1))
    assert f"--max-errors {limit}" in str(ei.value) and ei.value.exit_code == 1
    report = getattr(ei.value, "report")
    # The files hold at most --max-errors lines over the job, each one counted in the report.
    assert report.status == "failed" and report.dead_lettered == len(dead_lines(tmp_path, "dead")) <= limit
    assert report.balanced()
    st = CheckpointStore(ckpt).load()
    assert st is not None and st.state == "running" and len(st.done) < 4


def test_dry_run_on_spark_writes_nothing_and_samples(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    items = numbered(200)
    put_items(endpoint, src, items)
    tf, _calls, _flag = write_transform(tmp_path)
    rep = copy_table_spark(ref(endpoint, src), ref(endpoint, dst), opts(segments=2, transform=tf, dry_run=True,
                                                                        sample=3))
    assert scan_all(endpoint, dst) == [] and rep.status == "dry-run" and rep.checkpoint_path is None
    assert rep.read == 200 and rep.written == 180 and rep.count("dropped") == 20 and rep.balanced()
    # Before, and what the transform made of it (a list: a transform may fan out), wire items.
    assert len(rep.samples) == 3
    assert all(s["after"] == [] or s["after"][0]["upper"]["S"] == s["before"]["pk"]["S"].upper() for s in rep.samples)


def test_clean_on_spark_then_resume_after_cancel(endpoint: str, tmp_path: Path) -> None:
    """clean_table on Spark; a run cancelled mid-way (``cancel=``) resumes to an empty table."""
    import threading
    import time

    from ddbmigrate.errors import InterruptedError_

    table = create_table(endpoint)
    put_items(endpoint, table, numbered(300))
    rep = clean_table(ref(endpoint, table), opts(segments=3), confirm=lambda m: True, engine=spark())
    assert scan_all(endpoint, table) == []
    assert rep.read == 300 and rep.count("deleted") == 300 and rep.balanced() and rep.status == "done"
    assert rep.extra["engine"] == "spark" and rep.segments == 3

    put_items(endpoint, table, numbered(600))
    ckpt = tmp_path / "clean.ck.json"
    cancel = threading.Event()
    outcome: List[BaseException] = []

    def run() -> None:
        try:
            clean_table(ref(endpoint, table), opts(segments=6, checkpoint=str(ckpt), max_write_units=150),
                        confirm=lambda m: True, engine=spark(SparkSettings(max_tasks=1)), cancel=cancel)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome.append(e)

    def done_units() -> List[str]:
        st = CheckpointStore(str(ckpt)).load() if ckpt.exists() else None
        return st.done if st is not None else []

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 120
    while not done_units():
        assert t.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.1)
    cancel.set()
    t.join(120)
    assert outcome and isinstance(outcome[0], InterruptedError_) and outcome[0].exit_code == 130
    st = CheckpointStore(str(ckpt)).load()
    assert st is not None and st.state == "running" and 1 <= len(st.done) < 6
    assert scan_all(endpoint, table), "the cancelled run should have left items"
    rep = clean_table(ref(endpoint, table), opts(segments=6, checkpoint=str(ckpt), resume=True),
                      confirm=lambda m: True, engine=spark())
    assert scan_all(endpoint, table) == []
    assert rep.status == "done" and rep.extra["segments_resumed"] == len(st.done)
    # Deletes of the cancelled task are nowhere counted (its unit ran again from its start).
    assert rep.read == rep.count("deleted") <= 600 and rep.balanced()


def test_import_on_spark_with_transform_dead_letters_and_resume(endpoint: str, tmp_path: Path) -> None:
    """import_files on Spark: one file per task, per-file dead letters; a failed run resumes."""
    src = create_table(endpoint)
    items = numbered(500)
    put_items(endpoint, src, items)
    folder = tmp_path / "export"
    export_table(ref(endpoint, src), str(folder), opts(segments=3), file_size=20_000)  # threads engine
    files = list(folder.glob("AWSDynamoDB/*/data/*.json.gz"))
    assert len(files) >= 4

    # Plain: every item, exactly; the same counters as the threads engine would give.
    dst = create_table(endpoint)
    rep = import_files(str(folder), ref(endpoint, dst), opts(), engine=spark())
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    assert rep.read == 500 and rep.written == 500 and rep.balanced() and rep.segments == len(files)
    assert rep.extra["engine"] == "spark" and rep.extra["source_kind"] == "export"

    # A transform that drops and fails items, --on-error skip: dead letters per file (unit index).
    tf, calls, flag = write_transform(tmp_path)
    flag.write_text("all")
    dst = create_table(endpoint)
    rep = import_files(str(folder), ref(endpoint, dst),
                       opts(transform=tf, on_error="skip", dead_letter=str(tmp_path / "imp.jsonl")), engine=spark())
    got = scan_all(endpoint, dst)
    assert {it["segment"].get("NULL") for it in got} == {True}  # no scan segment for a file
    assert as_set(strip_segment(got)) == as_set(expected_transformed(items, failing=True))
    assert rep.read == 500 and rep.count("dropped") == 50 and rep.dead_lettered == 50 and rep.written == 400
    assert rep.balanced() and rep.exit_code == 3 and rep.dead_letter_path == str(tmp_path / "imp.segment-*.jsonl")
    dead = dead_lines(tmp_path, "imp")
    assert sorted(d["item"]["pk"]["S"] for d in dead) == sorted(f"item-{i:05d}" for i in range(7, 500, 10))
    assert sorted(rep.extra["dead_letter_files"]) == sorted(str(p) for p in tmp_path.glob("imp.segment-*.jsonl"))

    # One key of a late file fails (--on-error fail), one file at a time: the run fails, the files
    # before it are checkpointed; --resume loads only what is left.
    from ddbmigrate.storage.export_layout import discover
    from ddbmigrate.storage.stores import storage_for

    import gzip

    def sevens(path: str) -> List[str]:
        return [orjson.loads(x)["Item"]["pk"]["S"] for x in gzip.decompress(Path(path).read_bytes()).splitlines()
                if x.strip() and int(orjson.loads(x)["Item"]["n"]["N"]) % 10 == 7]

    # The last file holding a failing key (how keys spread over files depends on the export).
    in_order = discover(str(folder), storage_for(str(folder))).files
    k = max(i for i, f in enumerate(in_order) if sevens(f.path))
    flag.write_text(sevens(in_order[k].path)[0])
    dst = create_table(endpoint)
    ckpt = str(tmp_path / "imp.ck.json")
    with pytest.raises(DdbMigrateError) as ei:
        import_files(str(folder), ref(endpoint, dst), opts(transform=tf, checkpoint=ckpt),
                     engine=spark(SparkSettings(max_tasks=1)))
    assert "seven is not allowed" in str(ei.value) and ei.value.exit_code == 1
    st = CheckpointStore(ckpt).load()
    assert st is not None and st.state == "running" and len(st.done) == k  # one file at a time, in order
    done_read = st.counters["read"]
    flag.unlink()
    calls.write_text("")
    rep = import_files(str(folder), ref(endpoint, dst), opts(transform=tf, checkpoint=ckpt, resume=True),
                       engine=spark())
    assert len(task_calls(calls)) == 500 - done_read
    assert rep.status == "done" and rep.read == 500 and rep.written == 450 and rep.balanced()
    assert rep.extra["segments_resumed"] == len(st.done)
    assert as_set(strip_segment(scan_all(endpoint, dst))) == as_set(expected_transformed(items, failing=False))


def test_export_failed_run_resumes_with_the_same_export(endpoint: str, tmp_path: Path) -> None:
    """A failed export run keeps its ExportId and finished segments' files; --resume completes it."""
    src = create_table(endpoint)
    items = numbered(600)
    put_items(endpoint, src, items)
    tf, calls, flag = write_transform(tmp_path)
    flag.write_text(first_seven_of_segment(endpoint, src, 2, 3))
    ckpt = str(tmp_path / "exp.ck.json")
    with pytest.raises(DdbMigrateError):
        export_table_spark(ref(endpoint, src), str(tmp_path / "out"), opts(segments=3, transform=tf, checkpoint=ckpt),
                           file_size=20_000)
    st = CheckpointStore(ckpt).load()
    assert st is not None and sorted(st.done) == ["0", "1"] and st.extra["files"]
    export_id = st.extra["export_id"]
    assert not list((tmp_path / "out").glob("AWSDynamoDB/*/manifest-summary.json"))
    flag.unlink()
    calls.write_text("")
    rep = export_table_spark(ref(endpoint, src), str(tmp_path / "out"),
                             opts(segments=3, transform=tf, checkpoint=ckpt, resume=True), file_size=20_000)
    assert len(task_calls(calls)) == 600 - st.counters["read"]
    assert rep.extra["export_id"] == export_id and rep.extra["segments_resumed"] == 2
    _summary, got = read_export(tmp_path / "out")
    assert as_set(strip_segment(got)) == as_set(expected_transformed(items, failing=False))
    assert rep.read == 600 and rep.written == 540 and rep.balanced()


def test_cli_clean_and_import_engine_spark(endpoint: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    src, dst = create_table(endpoint), create_table(endpoint)
    items = numbered(120)
    put_items(endpoint, src, items)
    export_table(ref(endpoint, src), str(tmp_path / "exp"), opts(segments=2))
    common = ["--endpoint-url", endpoint, "--region", "us-east-1", "--engine", "spark", "-q"]
    res = CliRunner().invoke(main, ["import", str(tmp_path / "exp"), dst, *common, "--report", str(tmp_path / "i.json")])
    assert res.exit_code == 0, res.output
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    data = orjson.loads((tmp_path / "i.json").read_bytes())
    assert data["counters"]["written"] == 120 and data["extra"]["engine"] == "spark" and data["balanced"]
    res = CliRunner().invoke(main, ["clean", dst, "--yes", "--segments", "2", *common, "--report", str(tmp_path / "c.json")])
    assert res.exit_code == 0, res.output
    assert scan_all(endpoint, dst) == []
    data = orjson.loads((tmp_path / "c.json").read_bytes())
    assert data["counters"]["deleted"] == 120 and data["extra"]["engine"] == "spark"


# --------------------------------------------------------------------------- 0.1 Spark checkpoints

# tests/data/spark-0.1 holds what ddbmigrate 0.1 (commit ee84828, ``spark.copy_table_spark`` and
# ``spark.export_table_spark``) left behind, unedited: on DynamoDB Local, 600 ``item_01`` items in
# ``spark01-source``, ``--segments 3 --spark-tasks 1`` on ``local[1]``, segment 2's task failed by
# DDBMIGRATE_SPARK_FAIL_ONCE. Segments 0 and 1 are done; the export folder holds their four data
# files and one file of the failed attempt (an orphan, in no checkpoint).
DATA_01 = Path(__file__).resolve().parents[1] / "data" / "spark-0.1"


def item_01(i: int) -> Dict[str, Any]:
    """Item ``i`` of the 0.1 run's source. Do not change: the checkpoints describe these items."""
    return {"pk": {"S": f"item-{i:05d}"}, "n": {"N": str(i)}, "pad": {"S": "x" * (100 + i % 50)}}


def fresh_table(endpoint: str, name: str) -> None:
    from support import boto_client

    c = boto_client(endpoint)
    try:
        c.delete_table(TableName=name)
        c.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    except c.exceptions.ResourceNotFoundException:
        pass
    create_table(endpoint, name)


def checkpoint_01(name: str, endpoint: str, tmp_path: Path, **identity: Any) -> str:
    """The saved 0.1 checkpoint with this machine's endpoint (and ``identity``) in its job, re-signed."""
    from ddbmigrate.state.checkpoint import fingerprint

    saved = orjson.loads((DATA_01 / name).read_bytes())
    job = dict(saved["job"], **identity)
    for side in ("source", "target"):
        if side in job:
            job[side] = dict(job[side], endpoint_url=endpoint)
    assert saved["extra"]["engine"] == "spark" and "job_state" in saved["extra"] and job["engine"] == "spark"
    path = tmp_path / name
    path.write_bytes(orjson.dumps(dict(saved, job=job, fingerprint=fingerprint(job))))
    return str(path)


def test_01_spark_copy_checkpoint_resumes(endpoint: str, tmp_path: Path) -> None:
    from support import boto_client

    items = [item_01(i) for i in range(600)]
    fresh_table(endpoint, "spark01-source")
    fresh_table(endpoint, "spark01-target")
    put_items(endpoint, "spark01-source", items)
    saved = orjson.loads((DATA_01 / "copy.checkpoint.json").read_bytes())
    # The target as 0.1 left it: its finished segments written.
    done_keys = [i["pk"]["S"] for seg in saved["done"] for p in boto_client(endpoint).get_paginator("scan").paginate(
        TableName="spark01-source", Segment=int(seg), TotalSegments=3) for i in p["Items"]]
    assert len(done_keys) == saved["counters"]["read"] == saved["counters"]["written"]
    put_items(endpoint, "spark01-target", [it for it in items if it["pk"]["S"] in set(done_keys)])
    ckpt = checkpoint_01("copy.checkpoint.json", endpoint, tmp_path)
    rep = copy_table_spark(ref(endpoint, "spark01-source"), ref(endpoint, "spark01-target"),
                           opts(checkpoint=ckpt, resume=True))  # the segments come from the checkpoint
    assert rep.status == "done" and rep.extra["segments_resumed"] == 2 and rep.segments == 3
    assert sorted(rep.extra["unit_seconds"]) == ["2"]  # only the unfinished segment ran
    assert rep.read == rep.written == 600 and rep.balanced()
    assert as_set(scan_all(endpoint, "spark01-target")) == as_set(items)
    st = CheckpointStore(ckpt).load()
    assert st is not None and st.state == "done" and sorted(st.done) == ["0", "1", "2"]


def test_01_spark_export_checkpoint_resumes(endpoint: str, tmp_path: Path) -> None:
    items = [item_01(i) for i in range(600)]
    fresh_table(endpoint, "spark01-source")
    put_items(endpoint, "spark01-source", items)
    dest = tmp_path / "export"
    shutil.copytree(DATA_01 / "export", dest)
    saved = orjson.loads((DATA_01 / "export.checkpoint.json").read_bytes())
    export_id = saved["extra"]["job_state"]["export_id"]
    assert len(list(dest.glob("AWSDynamoDB/*/data/*.json.gz"))) == 5  # four committed, one orphan
    ckpt = checkpoint_01("export.checkpoint.json", endpoint, tmp_path, dest=str(dest))
    rep = export_table_spark(ref(endpoint, "spark01-source"), str(dest), opts(checkpoint=ckpt, resume=True),
                             file_size=20_000)
    assert rep.status == "done" and rep.extra["export_id"] == export_id and rep.extra["segments_resumed"] == 2
    _summary, got = read_export(dest)  # no orphan left, every item once, checksums right
    assert as_set(got) == as_set(items)
    assert rep.read == rep.written == rep.extra["items_exported"] == 600 and rep.balanced()


# --------------------------------------------------------------------------- verify


def test_verify_equal_every_type(endpoint: str) -> None:
    from ddbmigrate.verify.spark import verify_tables_spark

    src, dst = create_table(endpoint), create_table(endpoint)
    items = every_type_items() + numbered(150)
    put_items(endpoint, src, items)
    put_items(endpoint, dst, items)
    rep = verify_tables_spark(ref(endpoint, src), ref(endpoint, dst), segments=3, progress="off")
    assert rep.equal == len(items) and rep.differences == 0 and rep.exit_code == 0 and rep.balanced()
    assert rep.count("source_read") == rep.count("target_read") == len(items)
    assert rep.extra["engine"] == "spark"


def test_verify_differences_match_local_engine(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing, unexpected and mismatched items under a transform, with a map task retried by Spark."""
    from ddbmigrate.verify.spark import verify_tables_spark
    from ddbmigrate.verify import iter_diffs, verify_tables

    src, dst = create_table(endpoint), create_table(endpoint)
    items = numbered(500)
    put_items(endpoint, src, items)
    expected = {it["pk"]["S"]: it for it in expected_transformed(items, failing=False)}
    target = dict(expected)
    for i in (1, 2, 4):  # missing
        target.pop(f"item-{i:05d}")
    target["item-00005"] = {**target["item-00005"], "upper": {"S": "changed"}}  # mismatched
    target["extra-1"] = {"pk": {"S": "extra-1"}}  # unexpected
    tf, _calls, _flag = write_transform(tmp_path)
    # The transform also writes ctx.segment, which is None when verifying: expected has no segment.
    put_items(endpoint, dst, [{**it, "segment": {"NULL": True}} for it in target.values()])
    marker = tmp_path / "verify-failed.marker"
    monkeypatch.setenv(FAIL_ONCE_ENV, f"1:1:{marker}")
    diff = tmp_path / "diff.jsonl"
    rep = verify_tables_spark(ref(endpoint, src), ref(endpoint, dst), transform=tf, segments=3,
                              diff_path=str(diff), progress="off")
    assert marker.exists() and rep.retries.get("spark_task", 0) >= 1
    assert (rep.missing, rep.unexpected, rep.mismatched) == (3, 1, 1) and rep.exit_code == 4 and rep.balanced()
    assert rep.count("source_read") == 500 and rep.count("dropped") == 50
    cats = sorted((d["category"], d.get("key", {}).get("pk", {}).get("S")) for d in iter_diffs(str(diff)))
    assert cats == [("mismatched", "item-00005"), ("missing", "item-00001"), ("missing", "item-00002"),
                    ("missing", "item-00004"), ("unexpected", "extra-1")]
    assert not list(tmp_path.glob("diff.part-*"))
    monkeypatch.delenv(FAIL_ONCE_ENV)
    local = verify_tables(ref(endpoint, src), ref(endpoint, dst), transform=tf, segments=3, progress="off")
    for k in ("equal", "missing", "unexpected", "mismatched", "invalid", "unreadable"):
        assert getattr(local, k) == getattr(rep, k), k
    for k in ("source_read", "target_read", "expected", "actual", "dropped"):
        assert local.count(k) == rep.count(k), k


def test_cli_verify_engine_spark_repairs(endpoint: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    src, dst = create_table(endpoint), create_table(endpoint)
    items = numbered(120)
    put_items(endpoint, src, items)
    put_items(endpoint, dst, items[10:] + [{"pk": {"S": "stray"}}])
    args = ["verify", src, dst, "--endpoint-url", endpoint, "--region", "us-east-1", "--engine", "spark",
            "--segments", "2", "-q"]
    res = CliRunner().invoke(main, args + ["--report", str(tmp_path / "r1.json")])
    assert res.exit_code == 4, res.output
    r1 = orjson.loads((tmp_path / "r1.json").read_bytes())
    assert (r1["missing"], r1["unexpected"], r1["mismatched"]) == (10, 1, 0)
    res = CliRunner().invoke(main, args + ["--repair", "--yes", "--report", str(tmp_path / "r2.json")])
    assert res.exit_code == 0, res.output
    r2 = orjson.loads((tmp_path / "r2.json").read_bytes())
    assert r2["repair"]["put"] == 10 and r2["repair"]["deleted"] == 1 and r2["repair"]["still_different"] == 0
    assert as_set(scan_all(endpoint, dst)) == as_set(items)


# --------------------------------------------------------------------------- S3 (moto server process: conftest moto_s3)


def test_cli_export_to_s3_with_dead_letters(endpoint: str, moto_s3: str, tmp_path: Path) -> None:
    """Tasks write data files and per-segment dead-letter files straight to S3."""
    import gzip

    import boto3
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    bucket = "spark-exports"
    s3.create_bucket(Bucket=bucket)
    src = create_table(endpoint)
    items = numbered(300)
    put_items(endpoint, src, items)
    tf, _calls, flag = write_transform(tmp_path)
    flag.write_text("all")
    res = CliRunner().invoke(main, [
        "export", src, f"s3://{bucket}/exports/x", "--endpoint-url", endpoint, "--region", "us-east-1",
        "--s3-endpoint-url", moto_s3, "--engine", "spark", "--segments", "3", "--transform", tf,
        "--on-error", "skip", "--dead-letter", f"s3://{bucket}/dead/dl.jsonl", "-q",
        "--report", str(tmp_path / "r.json")])
    assert res.exit_code == 3, res.output  # done, with dead letters
    rep = orjson.loads((tmp_path / "r.json").read_bytes())
    assert rep["counters"]["written"] == 240 and rep["counters"]["dead_lettered"] == 30 and rep["balanced"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    (summary_key,) = [k for k in keys if k.endswith("manifest-summary.json")]
    summary = orjson.loads(s3.get_object(Bucket=bucket, Key=summary_key)["Body"].read())
    assert summary["s3Bucket"] == bucket and summary["itemCount"] == 240
    manifest = s3.get_object(Bucket=bucket, Key=summary["manifestFilesS3Key"])["Body"].read()
    got: List[Dict[str, Any]] = []
    data_keys = set()
    for line in manifest.splitlines():
        entry = orjson.loads(line)
        data_keys.add(entry["dataFileS3Key"])
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=entry["dataFileS3Key"])["Body"].read())
        got.extend(orjson.loads(x)["Item"] for x in body.splitlines() if x.strip())
    assert {k for k in keys if "/data/" in k} == data_keys
    assert as_set(strip_segment(got)) == as_set(expected_transformed(items, failing=True))
    dead_keys = sorted(k for k in keys if k.startswith("dead/"))
    assert dead_keys and all(k.startswith("dead/dl.segment-") and k.endswith(".jsonl") for k in dead_keys)
    dead = [orjson.loads(x) for k in dead_keys
            for x in s3.get_object(Bucket=bucket, Key=k)["Body"].read().splitlines() if x.strip()]
    assert sorted(d["item"]["pk"]["S"] for d in dead) == sorted(f"item-{i:05d}" for i in range(7, 300, 10))


def test_glue_style_entry_point(endpoint: str) -> None:
    """The driver script as Glue calls it: its own arguments around --ddbmigrate_args."""
    from ddbmigrate.integrations.spark.entry import main as entry

    src, dst = create_table(endpoint), create_table(endpoint)
    items = numbered(80)
    put_items(endpoint, src, items)
    code = entry(["--JOB_ID", "j_123", "--ddbmigrate_args",
                  f"copy {src} {dst} --endpoint-url {endpoint} --region us-east-1 --segments 2 -q",
                  "--TempDir", "s3://glue-temp/x", "--job-bookmark-option", "job-bookmark-disable"])
    assert code == 0
    assert as_set(scan_all(endpoint, dst)) == as_set(items)


def test_sigterm_saves_finished_segments_then_resume(endpoint: str, tmp_path: Path) -> None:
    """A separate driver process (as spark-submit runs it) is stopped with SIGTERM mid-run."""
    import signal
    import subprocess
    import time

    src, dst = create_table(endpoint), create_table(endpoint)
    items = numbered(120)
    put_items(endpoint, src, items)
    slow = tmp_path / "slow.py"
    slow.write_text("import time\n\ndef f(item):\n    time.sleep(0.05)\n    return item\n")
    ckpt = tmp_path / "ck.json"
    args = ["copy", src, dst, "--endpoint-url", endpoint, "--region", "us-east-1", "--segments", "6",
            "--transform", f"{slow}:f", "--checkpoint", str(ckpt), "-q"]
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    proc = subprocess.Popen([sys.executable, "-m", "ddbmigrate", *args, "--engine", "spark",
                             "--spark-master", "local[1]"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while True:
            st = CheckpointStore(str(ckpt)).load() if ckpt.exists() else None
            if st is not None and st.done:
                break
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no segment finished in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()[-2000:]
    st = CheckpointStore(str(ckpt)).load()
    assert st is not None and st.state == "running" and 1 <= len(st.done) < 6
    rep = copy_table_spark(ref(endpoint, src), ref(endpoint, dst),
                           opts(segments=6, transform=f"{slow}:f", checkpoint=str(ckpt), resume=True))
    assert rep.extra["segments_resumed"] == len(st.done) and rep.read == 120 and rep.balanced()
    assert as_set(scan_all(endpoint, dst)) == as_set(items)


# --------------------------------------------------------------------------- Python Data Source (Spark 4+)


def test_python_data_source_reads_every_item(endpoint: str) -> None:
    if int(pyspark.__version__.split(".")[0]) < 4:
        pytest.skip(f"the Python Data Source API needs Spark 4 (pyspark {pyspark.__version__})")
    pytest.importorskip("pyarrow", reason="Spark's Python Data Source API needs pyarrow")
    from pyspark.sql import SparkSession

    from ddbmigrate.integrations.spark.datasource import register

    spark = SparkSession.builder.getOrCreate()
    register(spark)
    src = create_table(endpoint)
    items = every_type_items() + numbered(200)
    put_items(endpoint, src, items)
    reader = spark.read.format("ddbmigrate.dynamodb").option("table", src).option("endpoint_url", endpoint) \
        .option("region", "us-east-1").option("segments", 3)
    df = reader.load()
    assert df.rdd.getNumPartitions() == 3
    got = [orjson.loads(r["item"]) for r in df.collect()]
    assert as_set(got) == as_set(items)  # the default schema is lossless
    typed = reader.schema("pk string, n long, pad string, missing boolean").load()
    rows = typed.filter("n >= 150").orderBy("n").collect()
    assert [(r["pk"], r["n"], r["missing"]) for r in rows] == [(f"item-{i:05d}", i, None) for i in range(150, 200)]


def test_progress_moves_inside_running_segments(endpoint: str, tmp_path: Path) -> None:
    """Tasks report their counters while they run: the display moves before any segment is done."""
    import threading
    from typing import Callable

    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i:04d}"}, "n": {"N": str(i)}} for i in range(300)])
    (tmp_path / "slow.py").write_text("import time\ndef f(item):\n    time.sleep(0.01)\n    return item\n")
    seen: List[Dict[str, Any]] = []

    class Record:
        def attach(self, job: str, snapshot: Callable[[], Dict[str, Any]]) -> Callable[[], None]:
            done = threading.Event()

            def watch() -> None:
                while not done.wait(0.05):
                    seen.append(snapshot())

            threading.Thread(target=watch, daemon=True).start()
            return done.set

    rep = copy_table(ref(endpoint, src), ref(endpoint, dst),
                     opts(segments=2, transform=f"{tmp_path}/slow.py:f", max_read_units=20), engine=spark(),
                     observer=Record())
    assert rep.written == 300
    inside = [s for s in seen if s["done"] > 0 and str(s.get("status", "")).startswith("segments 0/")]
    assert inside, "progress only moved when whole segments finished"


def test_spark_started_by_ddbmigrate_keeps_its_log_lines_out(endpoint: str, tmp_path: Path) -> None:
    """No Spark banner or INFO/WARN lines between ddbmigrate's own output (DDBMIGRATE_SPARK_LOGS=1 keeps them)."""
    import subprocess
    import sys

    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, numbered(20))
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_CONF_DIR", "DDBMIGRATE_SPARK_LOGS")}
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "copy", src, dst, "--endpoint-url", endpoint,
                        "--region", "us-east-1", "--engine", "spark", "--spark-master", "local[1]", "--quiet"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "Setting default log level" not in r.stderr and " WARN " not in r.stderr and " INFO " not in r.stderr, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(numbered(20))
