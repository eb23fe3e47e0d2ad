"""The Spark engine's pure parts (no Spark, no DynamoDB): file naming, rate shares, errors, entry args."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddbmigrate.errors import (
    EXIT_FATAL,
    EXIT_RETRIABLE,
    EXIT_USAGE,
    FatalError,
    RetriesExhaustedError,
    TransformError,
    UsageError,
)
from ddbmigrate.engine.spark import (
    SegmentDeadLetters,
    SparkSettings,
    dead_letter_pattern,
    divide_rate,
    parse_fail_once,
    segment_file,
    task_slots,
)
from ddbmigrate.integrations.spark.entry import command_line


def test_core_never_imports_pyspark() -> None:
    code = ("import sys, ddbmigrate, ddbmigrate.cli, ddbmigrate.engine.spark, ddbmigrate.integrations.spark.entry; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')], 'pyspark imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("base,seg,want", [
    ("dead.jsonl", 7, "dead.segment-0007.jsonl"),
    ("out/dead", 12, "out/dead.segment-0012.jsonl"),
    ("s3://b/p/dead.json", 3, "s3://b/p/dead.segment-0003.json"),
    ("s3://b/p/folder/", 3, "s3://b/p/folder/segment-0003.jsonl"),
    ("./x.y/dead", 1, "./x.y/dead.segment-0001.jsonl"),
])
def test_segment_file_names(base: str, seg: int, want: str) -> None:
    assert segment_file(base, seg) == want


@given(st.integers(min_value=1, max_value=1_000_000))
def test_segment_files_never_clash(total: int) -> None:
    from ddbmigrate.engine.spark import _digits

    d = _digits(total)
    names = {segment_file("dead.jsonl", s, d) for s in {0, total // 2, total - 1}}
    assert len(names) == len({0, total // 2, total - 1})
    # Fixed width: lexical order is segment order.
    assert sorted(names) == [segment_file("dead.jsonl", s, d) for s in sorted({0, total // 2, total - 1})]


def test_dead_letter_pattern() -> None:
    assert dead_letter_pattern("dead.jsonl", 16) == "dead.segment-*.jsonl"
    assert dead_letter_pattern(None, 16) is None


@given(st.floats(min_value=1, max_value=1e6), st.integers(min_value=1, max_value=4096))
def test_rate_shares_add_up_to_the_limit(rate: float, slots: int) -> None:
    share = divide_rate(rate, slots)
    assert share is not None
    # N concurrent tasks never exceed the job's limit, however many share it.
    assert 0 < share and share * slots <= rate * (1 + 1e-9)


def test_no_limit_stays_unlimited() -> None:
    assert divide_rate(None, 8) is None


class _Ctx:
    defaultParallelism = 6


def test_task_slots() -> None:
    assert task_slots(_Ctx(), 100, SparkSettings()) == 6
    assert task_slots(_Ctx(), 3, SparkSettings()) == 3  # never more than the segments left
    assert task_slots(_Ctx(), 100, SparkSettings(max_tasks=2)) == 2


def test_errors_keep_their_class_and_exit_code() -> None:
    from ddbmigrate.errors import from_wire, to_wire

    for err, code in ((RetriesExhaustedError("x", table="t", code="UnprocessedItems"), EXIT_RETRIABLE),
                      (UsageError("bad"), EXIT_USAGE), (TransformError("boom"), EXIT_FATAL)):
        back = from_wire(orjson.loads(orjson.dumps(to_wire(err))), "segment 5: ")
        assert type(back) is type(err) and back.exit_code == code and back.message.startswith("segment 5: ")
        assert back.table == err.table and back.code == err.code
    assert isinstance(from_wire({"class": "NoSuchThing", "message": "m"}), FatalError)


def test_fail_once_spec() -> None:
    assert parse_fail_once("3:2:/tmp/m") == (3, 2, "/tmp/m")
    assert parse_fail_once(None) is None
    with pytest.raises(UsageError):
        parse_fail_once("nope")


def test_dead_letters_start_afresh_per_attempt(tmp_path: Path) -> None:
    base = str(tmp_path / "dead.jsonl")
    first = SegmentDeadLetters(base, 4, 4)
    first.dead.add({"pk": {"S": "a"}}, "first attempt")
    assert first.publish() == str(tmp_path / "dead.segment-0004.jsonl")
    second = SegmentDeadLetters(base, 4, 4)  # Spark runs the segment again
    second.dead.add({"pk": {"S": "b"}}, "second attempt")
    second.publish()
    lines = (tmp_path / "dead.segment-0004.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x)["reason"] for x in lines] == ["second attempt"]
    empty = SegmentDeadLetters(base, 5, 4)
    assert empty.publish() is None and not (tmp_path / "dead.segment-0005.jsonl").exists()


def test_entry_point_arguments() -> None:
    assert command_line(["copy", "a", "b"]) == ["copy", "--engine", "spark", "a", "b"]
    assert command_line(["copy", "a", "b", "--engine", "local"]) == ["copy", "a", "b", "--engine", "local"]
    assert command_line(["verify", "a", "b", "--engine=local"]) == ["verify", "a", "b", "--engine=local"]
    assert command_line(["--JOB_ID", "j", "--ddbmigrate_args", "export t 's3://b/p q'", "--TempDir", "x"]) == \
        ["export", "--engine", "spark", "t", "s3://b/p q"]
    assert command_line(["--ddbmigrate_args=local start"]) == ["local", "start"]


def test_data_source_conversions_never_truncate() -> None:
    pytest.importorskip("pyspark.sql.datasource", reason="the Python Data Source API needs pyspark 4")
    from decimal import Decimal

    from pyspark.sql.types import ArrayType, BinaryType, DecimalType, IntegerType, LongType, StringType

    from ddbmigrate.integrations.spark.datasource import convert

    assert convert(Decimal("12.34"), None, DecimalType(38, 2)) == Decimal("12.34")
    assert convert(Decimal("12.345"), None, DecimalType(38, 2)) is None  # would round
    assert convert(Decimal("1E+100"), None, DecimalType(38, 2)) is None  # too many digits
    big = Decimal("12345678901234567890123456789012345678")
    assert convert(big, None, DecimalType(38, 0)) == big
    assert convert(big, None, LongType()) is None and convert(Decimal("2147483648"), None, IntegerType()) is None
    assert convert(Decimal("-5"), None, LongType()) == -5 and convert(Decimal("1.5"), None, LongType()) is None
    assert convert({"b", "a"}, None, ArrayType(StringType())) == ["a", "b"]
    assert convert(b"\x00\xff", None, BinaryType()) == b"\x00\xff"
    assert convert(Decimal("7"), {"N": "7"}, StringType()) == '{"N":"7"}'  # other types: their DynamoDB JSON


def test_01_spark_checkpoint_state_reads_as_todays() -> None:
    """0.1 kept an export's id under extra["job_state"] and each segment's files under its own
    entry; the sink spec is prepared from the merged state, as today's checkpoints hold it."""
    from ddbmigrate.engine.spark import Spark01State

    class Spec:
        def prepare(self, saved: object) -> object:
            return saved

    f = [{"dataFileS3Key": f"AWSDynamoDB/x/data/{n}.json.gz", "itemCount": 1} for n in "abc"]
    saved = {"engine": "spark", "total_segments": 12, "job_state": {"export_id": "x", "started_at": 1.5},
             "segments": {"10": {"extra": {"files": [f[2]], "bytes": 5}},
                          "2": {"extra": {"files": f[:2], "bytes": 7}}}}
    assert Spark01State(Spec()).prepare(saved) == {"export_id": "x", "started_at": 1.5, "files": f, "bytes": 12}
    copy_01 = {"engine": "spark", "total_segments": 3, "job_state": {}, "segments": {"0": {"extra": {}}}}
    assert Spark01State(Spec()).prepare(copy_01) == {}
    today = {"export_id": "y", "files": [], "bytes": 0}
    assert Spark01State(Spec()).prepare(today) == today and Spark01State(Spec()).prepare(None) is None
