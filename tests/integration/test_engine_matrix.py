"""One matrix, job x engine, against the real DynamoDB Local: every job moves exactly the same data
and reports exactly the same counts on the threads, processes and Spark engines, and honours the
same options (dead letters, --max-errors over the whole job, --sample, progress events, resume
after an interrupt, --drain-timeout) on each.

Every expectation comes from outside ddbmigrate (tests/matrix_support.py): items are seeded and
scanned with plain boto3, export folders are built and read back with gzip + json, and the
expected output of a transform is computed on wire items, never by running the transform.

verify is in the matrix (the same differences on each engine); replicate is not: it runs on the
threads engine only (its stream phase is one ordered consumer; see test_replicate.py).

Spark cells run when ``ddbmigrate.engine.spark`` has a ``SparkEngine`` (checked in each test, at
run time, not at import) and pyspark and Java are present; otherwise they are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.engine import engine_for
from ddbmigrate.errors import DdbMigrateError, InterruptedError_
from ddbmigrate.jobs.clean import clean_table
from ddbmigrate.jobs.copy import copy_table
from ddbmigrate.jobs.export import export_table
from ddbmigrate.jobs.import_files import import_files
from matrix_support import (RESHAPE, Recorder, dead_letter_lines, expected_reshape, failing_transform, matrix_items,
                            number, read_export, seed, source_pk, typed_items, write_aws_export, write_transform)
from support import local_spark, as_set, create_table, scan_all

pytestmark = pytest.mark.integration

ENGINES = ["threads", "processes", "spark"]
SPARK_MASTER = "local[2]"
SEGMENTS = 4


# --------------------------------------------------------------------------- engines


@pytest.fixture(scope="module")
def spark_context() -> Iterator[Any]:
    """One local[2] SparkContext for the module's Spark cells (started only when one runs)."""
    with local_spark(SPARK_MASTER, "ddbmigrate-matrix") as sc:
        yield sc


def spark_or_skip(request: pytest.FixtureRequest) -> Any:
    import ddbmigrate.engine.spark as spark_module

    if not hasattr(spark_module, "SparkEngine"):
        pytest.skip("ddbmigrate.engine.spark has no SparkEngine yet (the Spark engine is being rewritten)")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        pytest.skip("pyspark is not installed (pip install 'ddbmigrate[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java 17+ (no java on PATH, no JAVA_HOME)")
    request.getfixturevalue("spark_context")
    return engine_for("spark", spark_master=SPARK_MASTER)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Any:
    if request.param == "spark":
        return spark_or_skip(request)
    return engine_for(request.param, processes=2)


# --------------------------------------------------------------------------- helpers


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def opts(**kw: Any) -> RunOptions:
    kw.setdefault("progress", "off")
    kw.setdefault("segments", SEGMENTS)
    kw.setdefault("writers", 2)
    return RunOptions(**kw)


def fields(report: Any) -> Dict[str, Any]:
    """The report fields every engine must agree on."""
    return {
        "status": report.status,
        "read": report.count("read"),
        "written": report.count("written"),
        "deleted": report.count("deleted"),
        "dead_lettered": report.count("dead_lettered"),
        "dropped": report.count("dropped"),
        "fanout_extra": report.count("fanout_extra"),
        "balanced": report.balanced(),
        "segments": report.segments,
    }


def expect(status: str = "done", *, read: int, written: int = 0, deleted: int = 0, dead_lettered: int = 0,
           dropped: int = 0, fanout_extra: int = 0, segments: int = SEGMENTS) -> Dict[str, Any]:
    return {"status": status, "read": read, "written": written, "deleted": deleted, "dead_lettered": dead_lettered,
            "dropped": dropped, "fanout_extra": fanout_extra, "balanced": True, "segments": segments}


def source_table(endpoint: str, items: List[Dict[str, Any]]) -> str:
    name = create_table(endpoint)
    seed(endpoint, name, items)
    return name


# --------------------------------------------------------------------------- the matrix: job x engine


def test_copy(endpoint: str, engine: Any) -> None:
    items = matrix_items()
    src, dst = source_table(endpoint, items), create_table(endpoint)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), opts(), engine=engine)
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    assert fields(rep) == expect(read=len(items), written=len(items))
    assert rep.exit_code == 0


def test_verify(endpoint: str, engine: Any, tmp_path: Path) -> None:
    """Verify on every engine: the same differences, counted the same way."""
    from ddbmigrate.verify import verify_tables
    from support import boto_client, from_wire

    items = matrix_items()
    src, dst = source_table(endpoint, items), source_table(endpoint, items)
    c = boto_client(endpoint)
    c.delete_item(TableName=dst, Key=from_wire({"pk": items[0]["pk"]}))  # missing
    c.put_item(TableName=dst, Item=from_wire({"pk": {"S": "extra-item"}}))  # unexpected
    c.put_item(TableName=dst, Item=from_wire({**items[1], "changed": {"BOOL": True}}))  # mismatched
    rep = verify_tables(ref(endpoint, src), ref(endpoint, dst), segments=SEGMENTS, engine=engine,
                        work_dir=str(tmp_path))
    assert (rep.missing, rep.unexpected, rep.mismatched, rep.invalid) == (1, 1, 1, 0)
    assert rep.equal == len(items) - 2 and rep.exit_code == 4 and rep.balanced()
    assert rep.count("source_read") == len(items) and rep.count("target_read") == len(items)


def test_copy_with_transform(endpoint: str, engine: Any, tmp_path: Path) -> None:
    items = matrix_items()
    src = source_table(endpoint, items)
    dst = create_table(endpoint, hash_key=("PK", "S"), range_key=("SK", "S"))
    transform = write_transform(tmp_path, "reshape", RESHAPE)
    want, counts = expected_reshape(items)
    assert counts["dropped"] > 0 and counts["fanout_extra"] > 0  # the data exercises both
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), opts(transform=transform), engine=engine)
    assert as_set(scan_all(endpoint, dst)) == as_set(want)
    assert fields(rep) == expect(read=len(items), written=len(want), **counts)
    assert rep.exit_code == 0


def test_export(endpoint: str, engine: Any, tmp_path: Path) -> None:
    items = matrix_items()
    src = source_table(endpoint, items)
    dest = tmp_path / "export"
    rep = export_table(ref(endpoint, src), str(dest), opts(), engine=engine)
    root, exported, entries, summary = read_export(dest)
    assert as_set(exported) == as_set(items)
    assert rep.extra.get("export_id") == root.name
    assert summary["outputFormat"] == "DYNAMODB_JSON"
    assert sum(e["itemCount"] for e in entries) == len(items)
    assert fields(rep) == expect(read=len(items), written=len(items))


def test_import(endpoint: str, engine: Any, tmp_path: Path) -> None:
    items = matrix_items()
    root = write_aws_export(tmp_path / "in", items, files=4)
    dst = create_table(endpoint)
    rep = import_files(str(root), ref(endpoint, dst), opts(), engine=engine)
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    # One unit per data file: the report's segments are the files.
    assert fields(rep) == expect(read=len(items), written=len(items), segments=4)


def test_import_of_an_export_made_on_threads(endpoint: str, engine: Any, tmp_path: Path) -> None:
    items = matrix_items(60)
    src = source_table(endpoint, items)
    dest = tmp_path / "export"
    export_table(ref(endpoint, src), str(dest), opts(), engine=engine_for("threads"))
    root, _, entries, _ = read_export(dest)
    dst = create_table(endpoint)
    rep = import_files(str(root), ref(endpoint, dst), opts(), engine=engine)
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    assert fields(rep) == expect(read=len(items), written=len(items), segments=len(entries))


def test_clean(endpoint: str, engine: Any) -> None:
    items = matrix_items()
    table = source_table(endpoint, items)
    rep = clean_table(ref(endpoint, table), opts(), confirm=lambda m: True, engine=engine)
    assert scan_all(endpoint, table) == []
    assert fields(rep) == expect(read=len(items), deleted=len(items))


# --------------------------------------------------------------------------- options, on every engine


def test_dead_letters(endpoint: str, engine: Any, tmp_path: Path) -> None:
    items = typed_items(240)
    failing = {n for n in range(240) if n % 13 == 6}  # spread over every segment
    src, dst = source_table(endpoint, items), create_table(endpoint)
    dead = tmp_path / "dead.jsonl"
    o = opts(transform=failing_transform(tmp_path, sorted(failing)), on_error="skip", dead_letter=str(dead))
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), o, engine=engine)
    lines = dead_letter_lines(dead)
    assert sorted(source_pk(ln) for ln in lines) == sorted(f"item-{n:05d}" for n in failing)
    assert all(ln["stage"] == "transform" for ln in lines)
    assert as_set([ln["item"] for ln in lines]) == as_set([it for it in items if number(it) in failing])
    assert as_set(scan_all(endpoint, dst)) == as_set([it for it in items if number(it) not in failing])
    assert fields(rep) == expect(read=240, written=240 - len(failing), dead_lettered=len(failing))
    assert rep.exit_code == 3


def test_max_errors_over_the_whole_job(endpoint: str, engine: Any, tmp_path: Path) -> None:
    items = typed_items(240)
    failing = [n for n in range(240) if n % 10 == 0]  # 24 failing items, in every segment
    limit = 5
    src, dst = source_table(endpoint, items), create_table(endpoint)
    dead = tmp_path / "dead.jsonl"
    o = opts(transform=failing_transform(tmp_path, failing), on_error="skip", dead_letter=str(dead),
             max_errors=limit)
    with pytest.raises(DdbMigrateError) as ei:
        copy_table(ref(endpoint, src), ref(endpoint, dst), o, engine=engine)
    assert ei.value.exit_code == 1, ei.value
    assert "max-errors" in str(ei.value)
    assert getattr(ei.value, "report").status == "failed"
    lines = dead_letter_lines(dead)
    assert {source_pk(ln) for ln in lines} <= {f"item-{n:05d}" for n in failing}
    # The (N+1)-th failing item stops the job: it stays behind the checkpoint, in no file (on
    # Spark too: every task asks the driver's budget before it dead-letters a record).
    assert len(lines) == limit, sorted(source_pk(ln) for ln in lines)
    # Nothing past the checkpoint was settled: resuming without the limit dead-letters every
    # failing item exactly once (no line repeated, none lost) and writes all the others.
    o2 = opts(transform=o.transform, on_error="skip", dead_letter=str(dead), resume=True)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), o2, engine=engine)
    lines = dead_letter_lines(dead)
    assert sorted(source_pk(ln) for ln in lines) == sorted(f"item-{n:05d}" for n in failing)
    assert as_set(scan_all(endpoint, dst)) == as_set([it for it in items if number(it) not in failing])
    assert fields(rep) == expect(read=240, written=240 - len(failing), dead_lettered=len(failing))


def test_sample_in_a_dry_run(endpoint: str, engine: Any, tmp_path: Path) -> None:
    items = matrix_items(60)
    src = source_table(endpoint, items)
    dst = create_table(endpoint, hash_key=("PK", "S"), range_key=("SK", "S"))
    o = opts(transform=write_transform(tmp_path, "reshape", RESHAPE), dry_run=True, sample=3)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), o, engine=engine)
    assert rep.status == "dry-run"
    assert scan_all(endpoint, dst) == []
    assert len(rep.samples) == 3
    for pair in rep.samples:
        assert set(pair) == {"before", "after"}
        before = pair["before"]
        want, _ = expected_reshape([before])
        assert as_set(list(pair["after"])) == as_set(want), before["pk"]


@pytest.mark.parametrize("job", ["copy", "clean"])
def test_progress_events(endpoint: str, engine: Any, job: str) -> None:
    items = typed_items(240)
    src = source_table(endpoint, items)
    rec = Recorder()
    if job == "copy":
        dst = create_table(endpoint)
        copy_table(ref(endpoint, src), ref(endpoint, dst), opts(), engine=engine, observer=rec)
    else:
        clean_table(ref(endpoint, src), opts(), confirm=lambda m: True, engine=engine, observer=rec)
    assert rec.attached == [job]
    assert rec.detached == 1
    done = rec.done_values()
    assert done and done[-1] == len(items), done[-5:]
    assert all(a <= b for a, b in zip(done, done[1:])), done


def interrupted_then_resumed(endpoint: str, engine: Any, tmp_path: Path, **kw: Any) -> Dict[str, Any]:
    """Copy with a slow transform; ``cancel`` once something is done; then resume. Returns facts."""
    items = typed_items(200)
    src, dst = source_table(endpoint, items), create_table(endpoint)
    # Small scan pages (a read limit sets the page size), so a segment is several pages and a
    # stop between pages leaves work behind; a few ms per item keeps the run going meanwhile.
    o = dict(transform=failing_transform(tmp_path, [], sleep=0.01, name="slow"), max_read_units=5.0, **kw)
    cancel = threading.Event()
    cancelled_at: List[float] = []

    def on_snapshot(snap: Dict[str, Any]) -> None:
        if (snap.get("done") or 0) > 0 and not cancel.is_set():
            cancelled_at.append(time.monotonic())
            cancel.set()

    with pytest.raises(InterruptedError_) as ei:
        copy_table(ref(endpoint, src), ref(endpoint, dst), opts(**o), engine=engine, cancel=cancel,
                   observer=Recorder(on_snapshot))
    stopped_after = time.monotonic() - cancelled_at[0]
    first = getattr(ei.value, "report")
    assert ei.value.exit_code == 130
    assert first.status == "interrupted"
    assert first.checkpoint_path and Path(first.checkpoint_path).exists()
    assert first.read < len(items), "the interrupt came too late to leave anything behind"
    second = copy_table(ref(endpoint, src), ref(endpoint, dst), opts(resume=True, **o), engine=engine)
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    # Counters are cumulative over both runs: every item read and written exactly once.
    assert fields(second) == expect(read=len(items), written=len(items))
    assert first.read <= second.read and first.written <= second.written
    return {"stopped_after": stopped_after, "first": first, "second": second}


def test_resume_after_an_interrupt(endpoint: str, engine: Any, tmp_path: Path) -> None:
    interrupted_then_resumed(endpoint, engine, tmp_path)


def test_drain_timeout_zero(endpoint: str, engine: Any, tmp_path: Path) -> None:
    facts = interrupted_then_resumed(endpoint, engine, tmp_path, drain_timeout=0.0)
    assert facts["stopped_after"] < 60, facts["stopped_after"]  # bounded, not a speed test
