"""Bulk put with a per-item condition (import --native --bulk-put --condition): the staged copy in
a real (moto) S3, and the start/watch against the SCRIPTED loopback bulk-operation server of
test_bulk_put_api (moto and DynamoDB Local have no bulk operations).

The record shape (``ConditionExpression``/``ExpressionAttributeNames``/``ExpressionAttributeValues``
next to ``Item``) and the condition-failure report layout (objects under the output prefix
whose key names CONDITION_CHECK_FAILURE) are the shapes ddbmigrate assumes (see
docs/files.md): these tests check that ddbmigrate writes and reads exactly those, not what
DynamoDB does with them.
"""

from __future__ import annotations

import gzip
from typing import Any, Dict, Iterator, List

import boto3
import orjson
import pytest
import zstandard
from click.testing import CliRunner
from hypothesis import given, settings
from support import as_set, every_type_items, unique
from test_bulk_put_api import TABLE, FakeBulk, serve

from ddbmigrate.aws.bulk_put import native_bulk_put
from ddbmigrate.aws.bulk_put_stage import Rewriter, iter_lines, parse_condition
from ddbmigrate.cli import main
from ddbmigrate.config import TableRef
from ddbmigrate.errors import InterruptedError_, UsageError

pytestmark = pytest.mark.integration

COND = "attribute_not_exists(pk) OR #v < :v"
NAMES = '{"#v": "version"}'
VALUES = '{":v": {"N": "12345678901234567890123456789012345678"}}'


class FakeBulkWithReport(FakeBulk):
    """FakeBulk that, when an operation ends, writes a CONDITION_CHECK_FAILURE report object into
    the output prefix (the layout ddbmigrate assumes), holding ``cond_failed`` records."""

    def __init__(self, script: List[Dict[str, Any]], s3: Any, cond_failed: int) -> None:
        super().__init__(script)
        self.s3, self.cond_failed, self.written_report = s3, cond_failed, False
        self.refuse_starts = 0

    def handle(self, op: str, body: Dict[str, Any]) -> Any:
        if op == "StartBulkPutItems" and self.refuse_starts:
            self.refuse_starts -= 1
            self.calls.append({"op": op, "body": body})
            return 400, {"__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException", "message": "not allowed"}
        status, answer = super().handle(op, body)
        desc = answer.get("BulkOperationDescription") if isinstance(answer, dict) else None
        if (op == "DescribeBulkOperation" and desc and desc["BulkOperationStatus"].startswith("COMPLETED")
                and not self.written_report and "CONDITION_CHECK_FAILURE" in desc["OutputS3Configuration"]["OutputType"]):
            out = desc["OutputS3Configuration"]
            opid = desc["BulkOperationArn"].rsplit("/", 1)[-1]
            lines = b"".join(orjson.dumps({"Item": {"pk": {"S": f"c{i}"}}}) + b"\n" for i in range(self.cond_failed))
            self.s3.put_object(Bucket=out["S3Bucket"], Key=f"{out['S3KeyPrefix']}/{opid}/CONDITION_CHECK_FAILURE/"
                               "part-0.json.gz", Body=gzip.compress(lines))
            self.s3.put_object(Bucket=out["S3Bucket"], Key=f"{out['S3KeyPrefix']}/{opid}/manifest-condition.json",
                               Body=b'{"not": "counted"}\n')
            self.written_report = True
        return status, answer


@pytest.fixture
def s3(moto_s3: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")


@pytest.fixture
def fake(s3: Any) -> Iterator[Any]:
    script = [
        {"ProcessedItemCount": 3, "ProcessedInputBytes": 1600},
        {"ProcessedItemCount": 9, "ProcessedInputBytes": 4000, "FailedItemCount": 1,
         "BulkOperationStatus": "COMPLETED_WITH_ERRORS"},
    ]
    with serve(FakeBulkWithReport(script, s3, cond_failed=2)) as service:
        yield service


def _input(s3: Any, items: List[Dict[str, Any]], *, parts: int = 3, codec: str = "gzip") -> str:
    """An export-like folder of ``parts`` data objects holding ``items``; returns its s3:// URI."""
    bucket = unique("in").lower().replace("_", "-")
    s3.create_bucket(Bucket=bucket)
    for p in range(parts):
        lines = b"".join(orjson.dumps({"Item": it}) + b"\n" for it in items[p::parts])
        body = gzip.compress(lines) if codec == "gzip" else zstandard.ZstdCompressor().compress(lines)
        s3.put_object(Bucket=bucket, Key=f"data/part-{p}.json.gz", Body=body)
    s3.put_object(Bucket=bucket, Key="data/empty-marker/", Body=b"")
    return f"s3://{bucket}/data/"


def _objects(s3: Any, bucket: str, prefix: str) -> List[str]:
    resp = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents") or [])


def _records(s3: Any, bucket: str, keys: List[str]) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    for k in keys:
        body = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
        assert body[:2] == b"\x1f\x8b", "staged objects keep the requested compression (GZIP)"
        out += [orjson.loads(line) for line in gzip.decompress(body).splitlines() if line.strip()]
    return out


def _ref(url: str) -> TableRef:
    return TableRef(TABLE, endpoint_url=url, region="us-east-1")


def _run(fake: Any, src: str, tmp_path: Any, moto: str, **kw: Any) -> Any:
    cond = parse_condition(COND, NAMES, VALUES)
    return native_bulk_put(src, _ref(fake.url), condition=cond, poll_interval=0.0, sleep=lambda s: None,
                           state_dir=str(tmp_path), s3_endpoint_url=moto, **kw)


def test_staged_objects_hold_every_input_item_with_the_condition(fake: Any, s3: Any, moto_s3: str,
                                                                 tmp_path: Any) -> None:
    items = every_type_items() + [{"pk": {"S": f"k{i}"}, "version": {"N": str(i)}} for i in range(3)]
    src = _input(s3, items)
    bucket = src.split("/")[2]
    rep = _run(fake, src, tmp_path, moto_s3, keep_staging=True)
    start = next(c["body"] for c in fake.calls if c["op"] == "StartBulkPutItems")
    staging = rep.extra["staging"]
    assert staging.startswith(f"s3://{bucket}/ddbmigrate-bulk-put-reports/{TABLE}-staging/")
    sb, sp = staging[5:].split("/", 1)
    assert start["InputS3Configuration"] == {"S3Bucket": sb, "S3KeyPrefix": sp, "InputFormat": "DYNAMODB_JSON",
                                             "InputCompressionType": "GZIP"}
    assert start["OutputS3Configuration"]["OutputType"] == ["ERROR", "CONDITION_CHECK_FAILURE"]
    keys = _objects(s3, sb, sp)
    assert [k.rsplit("/", 1)[-1] for k in keys] == ["part-0.json.gz", "part-1.json.gz", "part-2.json.gz"]
    recs = _records(s3, sb, keys)
    assert as_set([r["Item"] for r in recs]) == as_set(items) and len(recs) == len(items)
    for r in recs:
        assert r["ConditionExpression"] == COND
        assert r["ExpressionAttributeNames"] == {"#v": "version"}
        assert r["ExpressionAttributeValues"] == {":v": {"N": "12345678901234567890123456789012345678"}}
    # DescribeBulkOperation: 9 processed, 1 error; the report's 2 condition failures apart.
    assert rep.counters == {"read": 9, "written": 6, "dead_lettered": 1, "condition_failed": 2} and rep.balanced()
    assert rep.exit_code == 3
    assert len(rep.extra["condition_failure_objects"]) == 1  # the manifest is not counted
    assert rep.extra["staging_kept"] is True and _objects(s3, sb, sp) == keys


def test_staged_copy_is_deleted_after_the_end_and_the_cli_prints_the_condition_count(
        fake: Any, s3: Any, moto_s3: str, monkeypatch: Any) -> None:
    import ddbmigrate.aws.bulk_put as bp

    src = _input(s3, [{"pk": {"S": f"k{i}"}} for i in range(7)], codec="zstd")
    bucket = src.split("/")[2]
    s3.create_bucket(Bucket="stage-" + bucket)
    real = bp.native_bulk_put
    monkeypatch.setattr(bp, "native_bulk_put",
                        lambda *a, **k: real(*a, **{**k, "poll_interval": 0.0, "sleep": lambda s: None}))
    r = CliRunner().invoke(main, ["import", src, TABLE, "--native", "--bulk-put", "--condition", COND,
                                  "--condition-names", NAMES, "--condition-values", VALUES, "--compression", "zstd",
                                  "--staging", f"s3://stage-{bucket}/st/", "--endpoint-url", fake.url,
                                  "--s3-endpoint-url", moto_s3, "--region", "us-east-1", "--progress", "off"])
    assert r.exit_code == 3, r.output
    assert "condition failed: 2 item(s), not written" in r.stderr
    start = next(c["body"] for c in fake.calls if c["op"] == "StartBulkPutItems")
    assert start["InputS3Configuration"]["S3Bucket"] == f"stage-{bucket}"
    assert start["InputS3Configuration"]["S3KeyPrefix"] == "st/"
    assert start["InputS3Configuration"]["InputCompressionType"] == "ZSTD"
    assert _objects(s3, f"stage-{bucket}", "st/") == []  # deleted after the terminal state


def test_a_rerun_reattaches_without_staging_again(fake: Any, s3: Any, moto_s3: str, tmp_path: Any) -> None:
    items = [{"pk": {"S": f"k{i}"}} for i in range(6)]
    src = _input(s3, items)
    bucket = src.split("/")[2]

    def interrupt(_s: float) -> None:
        raise KeyboardInterrupt

    cond = parse_condition(COND, NAMES, VALUES)
    with pytest.raises(InterruptedError_):
        native_bulk_put(src, _ref(fake.url), condition=cond, poll_interval=0.0, sleep=interrupt,
                        state_dir=str(tmp_path), s3_endpoint_url=moto_s3, confirm_cancel=lambda m: False)
    staged = _objects(s3, bucket, f"ddbmigrate-bulk-put-reports/{TABLE}-staging/")
    assert len(staged) == 3  # kept: the operation is still reading them
    # The input is gone: a second staging would fail, so the rerun proves it re-attached.
    for k in _objects(s3, bucket, "data/"):
        s3.delete_object(Bucket=bucket, Key=k)
    rep = _run(fake, src, tmp_path, moto_s3)
    assert rep.extra["reattached"] is True
    assert sum(1 for c in fake.calls if c["op"] == "StartBulkPutItems") == 1
    assert rep.extra["staging_deleted"] is True
    assert _objects(s3, bucket, f"ddbmigrate-bulk-put-reports/{TABLE}-staging/") == []


def test_a_failed_start_after_staging_reuses_the_staged_copy(fake: Any, s3: Any, moto_s3: str,
                                                            tmp_path: Any) -> None:
    """The first StartBulkPutItems is refused (AccessDenied): the rerun starts on the copy
    staged by the first run, with the saved client token, without staging again."""
    src = _input(s3, [{"pk": {"S": f"k{i}"}} for i in range(4)], parts=2)
    bucket = src.split("/")[2]
    fake.refuse_starts = 1
    with pytest.raises(Exception, match="StartBulkPutItems"):
        _run(fake, src, tmp_path, moto_s3)
    for k in _objects(s3, bucket, "data/"):
        s3.delete_object(Bucket=bucket, Key=k)
    rep = _run(fake, src, tmp_path, moto_s3)
    assert rep.extra["staged_items"] == 4 and rep.extra["staged_objects"] == 2
    tokens = [c["body"]["ClientToken"] for c in fake.calls if c["op"] == "StartBulkPutItems"]
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert rep.counters["read"] == 9


@pytest.mark.parametrize("expr,names,values,msg", [
    ("attribute_not_exists(pk", None, None, "not closed"),
    ("attribute_not_exists(pk))", None, None, "closes nothing"),
    ("#v < :v", NAMES, None, ":v not defined"),
    ("version < :v", NAMES, VALUES, "#v not used"),
    ("#v < :v", NAMES, '{":v": {"N": "1e999"}}', "not DynamoDB JSON"),
    ("   ", None, None, "empty"),
])
def test_a_bad_condition_exits_2_before_anything_is_written(fake: Any, s3: Any, moto_s3: str, expr: str,
                                                             names: Any, values: Any, msg: str) -> None:
    src = _input(s3, [{"pk": {"S": "a"}}], parts=1)
    bucket = src.split("/")[2]
    args = ["import", src, TABLE, "--native", "--bulk-put", "--condition", expr, "--endpoint-url", fake.url,
            "--s3-endpoint-url", moto_s3, "--region", "us-east-1", "--progress", "off"]
    args += ["--condition-names", names] if names else []
    args += ["--condition-values", values] if values else []
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert msg in r.output and "Traceback" not in r.output
    assert fake.calls == []
    assert _objects(s3, bucket, "ddbmigrate-bulk-put-reports/") == []


def test_a_line_that_is_not_a_record_stops_the_staging_naming_it(fake: Any, s3: Any, moto_s3: str,
                                                                 tmp_path: Any) -> None:
    src = _input(s3, [{"pk": {"S": f"k{i}"}} for i in range(4)], parts=2)
    bucket = src.split("/")[2]
    s3.put_object(Bucket=bucket, Key="data/part-9.json.gz",
                  Body=gzip.compress(b'{"Item": {"pk": {"S": "ok"}}}\n{"Item": {"pk": \n'))
    with pytest.raises(UsageError, match=r"data/part-9.json.gz:2: not JSON"):
        _run(fake, src, tmp_path, moto_s3)
    assert not any(c["op"] == "StartBulkPutItems" for c in fake.calls)
    assert _objects(s3, bucket, "ddbmigrate-bulk-put-reports/") == []  # the partial copy is removed


def test_staging_inside_the_input_is_refused(fake: Any, s3: Any, moto_s3: str, tmp_path: Any) -> None:
    src = _input(s3, [{"pk": {"S": "a"}}], parts=1)
    with pytest.raises(UsageError, match="overlaps the input"):
        _run(fake, src, tmp_path, moto_s3, staging_uri=src + "staged/")
    assert fake.calls == []


# --------------------------------------------------------------------------- the record rewrite


def _ion_item(text: bytes) -> Any:
    from ddbmigrate.formats.ion import loads_line, to_wire_item

    v = loads_line(text)
    return v, to_wire_item(v["Item"])


@settings(max_examples=60, deadline=None)
@given(__import__("formats_support")._item)
def test_rewrite_keeps_every_value_in_both_formats(item: Dict[str, Any]) -> None:
    from formats_support import aws_ion_line

    from ddbmigrate.core.items import canonical_item
    from ddbmigrate.formats.ion import item_line, to_wire_item

    cond = parse_condition("attribute_not_exists(#k) OR #k <> :v", '{"#k": "k"}',
                           '{":v": {"NS": ["1", "-2.5E+10"]}}')
    assert cond is not None
    out = Rewriter(cond, "DYNAMODB_JSON")(orjson.dumps({"Item": item}))
    rec = orjson.loads(out)
    assert out.endswith(b"\n") and rec["Item"] == item and rec["ConditionExpression"] == cond.expression
    for line in (item_line(item), aws_ion_line(item)):  # ours and amazon.ion's own Ion writer
        v, got = _ion_item(Rewriter(cond, "ION")(line))
        assert canonical_item(got) == canonical_item(item)
        assert str(v["ConditionExpression"]) == cond.expression
        assert dict(v["ExpressionAttributeNames"]) == {"#k": "k"}
        assert canonical_item(to_wire_item(v["ExpressionAttributeValues"])) == canonical_item(cond.values)


def test_iter_lines_streams_across_blocks() -> None:
    import io

    data = b"a\n" + b"b" * 10 + b"\n\nc"
    assert list(iter_lines(io.BytesIO(data), block=3)) == [b"a", b"b" * 10, b"", b"c"]


def test_condition_options_without_bulk_put_and_an_uncheckable_cap_stop_before_anything(
        fake: Any, s3: Any, moto_s3: str) -> None:
    src = _input(s3, [{"pk": {"S": "a"}}], parts=1)
    bucket = src.split("/")[2]
    base = ["import", src, TABLE, "--endpoint-url", fake.url, "--s3-endpoint-url", moto_s3, "--region", "us-east-1",
            "--progress", "off"]
    r = CliRunner().invoke(main, base + ["--condition", "attribute_not_exists(pk)"])
    assert r.exit_code == 2 and "add --native --bulk-put" in r.output
    # the bulk put price is unpublished: the cap cannot be checked, so nothing is staged or started
    r = CliRunner().invoke(main, base + ["--native", "--bulk-put", "--condition", "attribute_not_exists(pk)",
                                         "--max-cost", "5"])
    assert r.exit_code == 2, r.output
    assert "bulk_put_per_gb.STANDARD for us-east-1 is null" in r.output
    assert not any(c["op"] == "StartBulkPutItems" for c in fake.calls)
    assert _objects(s3, bucket, "ddbmigrate-bulk-put-reports/") == []


def test_ion_input_is_staged_as_ion_with_the_condition(fake: Any, s3: Any, moto_s3: str, tmp_path: Any) -> None:
    from ddbmigrate.core.items import canonical_item
    from ddbmigrate.formats.ion import item_line, loads_line, to_wire_item

    items = every_type_items()[:5]
    bucket = unique("ion").lower().replace("_", "-")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data/a.ion.gz", Body=gzip.compress(b"".join(item_line(i) for i in items)))
    rep = _run(fake, f"s3://{bucket}/data/", tmp_path, moto_s3, input_format="ION", keep_staging=True)
    start = next(c["body"] for c in fake.calls if c["op"] == "StartBulkPutItems")
    assert start["InputS3Configuration"]["InputFormat"] == "ION"
    sb, sp = rep.extra["staging"][5:].split("/", 1)
    (key,) = _objects(s3, sb, sp)
    lines = [ln for ln in gzip.decompress(s3.get_object(Bucket=sb, Key=key)["Body"].read()).splitlines() if ln]
    got = [loads_line(ln) for ln in lines]
    assert [canonical_item(to_wire_item(v["Item"])) for v in got] == [canonical_item(i) for i in items]
    for v in got:
        assert str(v["ConditionExpression"]) == COND and dict(v["ExpressionAttributeNames"]) == {"#v": "version"}
        assert to_wire_item(v["ExpressionAttributeValues"]) == {":v": {"N": "12345678901234567890123456789012345678"}}
