"""Format codecs and detection without a server: Ion both ways (against amazon.ion's own writer),
ZSTD streaming, CSV and Data Pipeline rows, and detection that never rests on one record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import orjson
import pytest
import zstandard
from amazon.ion import simpleion
from hypothesis import given, settings

from ddbmigrate.core.items import canonical_item
from ddbmigrate.formats import ion
from ddbmigrate.formats.detect import check_sample, detect
from ddbmigrate.formats.records import RecordProblem, csv_item, from_data_pipeline
from ddbmigrate.sources.lines import LineStream
from ddbmigrate.storage.stores import LocalStorage
from formats_support import _item, aws_ion_line


@settings(max_examples=300, deadline=None)
@given(item=_item)
def test_ion_round_trip_is_lossless_for_every_type(item: Dict[str, Any]) -> None:
    line = ion.item_line(item)
    assert line.startswith(b"$ion_1_0 {Item:") and line.endswith(b"}\n") and line.count(b"\n") == 1
    got, reason = ion.parse_item_line(line.rstrip(b"\n"))
    assert reason is None and canonical_item(got) == canonical_item(item)  # type: ignore[arg-type]
    # What amazon.ion itself reads from our line is AWS's mapping of the item.
    theirs = simpleion.loads(line, single_value=False)[0]["Item"]
    assert set(theirs) == set(item)


@settings(max_examples=200, deadline=None)
@given(item=_item)
def test_ion_written_by_amazon_ion_reads_back(item: Dict[str, Any]) -> None:
    got, reason = ion.parse_item_line(aws_ion_line(item))
    assert reason is None and canonical_item(got) == canonical_item(item)  # type: ignore[arg-type]


def test_ion_aws_documented_lines() -> None:
    line = (b'$ion_1_0 {Item:{Authors:$dynamodb_SS::["Author1","Author2"],Dimensions:"8.5 x 11.0 x 1.5",'
            b'ISBN:"333-3333333333",Id:103,InPublication:false,PageCount:600,Price:2000,ProductCategory:"Book",'
            b'Title:"Book 103 Title",Rating:4.5,Cover:{{AAH/}},Gone:null}}')
    got, reason = ion.parse_item_line(line)
    assert reason is None and got == {
        "Authors": {"SS": ["Author1", "Author2"]}, "Dimensions": {"S": "8.5 x 11.0 x 1.5"},
        "ISBN": {"S": "333-3333333333"}, "Id": {"N": "103"}, "InPublication": {"BOOL": False},
        "PageCount": {"N": "600"}, "Price": {"N": "2000"}, "ProductCategory": {"S": "Book"},
        "Title": {"S": "Book 103 Title"}, "Rating": {"N": "4.5"}, "Cover": {"B": "AAH/"}, "Gone": {"NULL": True}}
    rec = ion.parse_change_line(b'$ion_1_0 {Metadata:{WriteTimestampMicros:1680109764000000},Keys:{PK:"a"},'
                                b'OldImage:{PK:"a",n:$dynamodb_NS::[1,2.50]},NewImage:{PK:"a",n:$dynamodb_NS::[3]}}')
    assert rec == {"Metadata": {"WriteTimestampMicros": {"N": "1680109764000000"}}, "Keys": {"PK": {"S": "a"}},
                   "NewImage": {"PK": {"S": "a"}, "n": {"NS": ["3"]}},
                   "OldImage": {"PK": {"S": "a"}, "n": {"NS": ["1", "2.50"]}}}
    # A null image is no image, as in the DYNAMODB_JSON twin ("OldImage": null): a delete stays one.
    rec = ion.parse_change_line(b'$ion_1_0 {Metadata:{WriteTimestampMicros:1},Keys:{PK:"a"},NewImage:null.struct,'
                                b'OldImage:null}')
    assert rec == {"Metadata": {"WriteTimestampMicros": {"N": "1"}}, "Keys": {"PK": {"S": "a"}}}
    assert ion.parse_item_line(b"{Item:{a:1}} {Item:{b:2}}")[1] == "expected one Ion value on the line, found 2"
    assert (ion.parse_item_line(b'{Item:{a:"x"')[1] or "").startswith("invalid Ion")


def test_an_ion_timestamp_is_kept_as_its_ion_text() -> None:
    """DynamoDB has no timestamp type: a timestamp is a string, as written (before: isoformat,
    which read "2020T" as a midnight and cut nanoseconds to microseconds)."""
    got, reason = ion.parse_item_line(b'$ion_1_0 {Item:{pk:"a",y:2020T,z:2020-01-01T00:00:00Z,'
                                      b'n:2020-01-01T00:00:00.123456789-08:00,m:x::2007-02-23T12:14Z}}')
    assert reason is None and got == {"pk": {"S": "a"}, "y": {"S": "2020T"}, "z": {"S": "2020-01-01T00:00:00Z"},
                                      "n": {"S": "2020-01-01T00:00:00.123456789-08:00"},
                                      "m": {"S": "2007-02-23T12:14Z"}}


def test_ion_numbers_are_exact() -> None:
    assert ion.ion_number("12345678901234567890123456789012345678") == "12345678901234567890123456789012345678"
    assert ion.ion_number("1.5E+100") == "1.5d+100" and ion.ion_number("-0.000001") == "-0.000001"
    assert ion.ion_number("1E-130") == "1d-130" and ion.ion_number("12.50") == "12.5"


# --------------------------------------------------------------------------- ZSTD


def _lines(path: Path) -> List[Any]:
    ls = LineStream(LocalStorage(), str(path))
    try:
        return [ln for _, ln in ls.numbered()]
    finally:
        ls.close()


def test_zstd_stream_multi_frame_and_truncated(tmp_path: Path) -> None:
    c = zstandard.ZstdCompressor()
    p = tmp_path / "a.json.zst"
    p.write_bytes(c.compress(b"a\nb\n") + c.compress(b"c\n"))
    assert _lines(p) == [b"a", b"b", b"c"]
    data = b"".join(b"line%06d\n" % i for i in range(200_000))
    z = c.compress(data)
    (tmp_path / "t.zst").write_bytes(z[: len(z) // 2])
    seen: List[Any] = []
    with pytest.raises((EOFError, zstandard.ZstdError)):
        for ln in _lines_iter(tmp_path / "t.zst"):
            seen.append(ln)
    assert 0 < len(seen) < 200_000 and seen[:2] == [b"line000000", b"line000001"]


def _lines_iter(path: Path) -> Any:
    ls = LineStream(LocalStorage(), str(path))
    try:
        yield from (ln for _, ln in ls.numbered())
    finally:
        ls.close()


# --------------------------------------------------------------------------- CSV, Data Pipeline


def test_csv_rows_follow_importtable_rules() -> None:
    keys = {"id": "N", "sk": "S", "blob": "B"}
    assert csv_item(["id", "sk", "name", "empty"], ["007", "a", "12", ""], keys) == {
        "id": {"N": "007"}, "sk": {"S": "a"}, "name": {"S": "12"}}
    with pytest.raises(RecordProblem, match="not a number"):
        csv_item(["id"], ["x"], keys)
    with pytest.raises(RecordProblem, match="header names 1 columns"):
        csv_item(["id"], ["1", "2"], keys)
    with pytest.raises(RecordProblem, match="not base64"):
        csv_item(["blob"], ["!!"], keys)


def test_data_pipeline_lines() -> None:
    line = {"pk": {"s": "a"}, "n": {"n": "1.5"}, "b": {"b": "AAH/"}, "ss": {"sS": ["x", "y"]}, "ns": {"nS": ["1"]},
            "bs": {"bS": ["AA=="]}, "m": {"m": {"l": {"l": [{"bOOL": True}, {"nULLValue": True}]}}}}
    assert from_data_pipeline(line) == {
        "pk": {"S": "a"}, "n": {"N": "1.5"}, "b": {"B": "AAH/"}, "ss": {"SS": ["x", "y"]}, "ns": {"NS": ["1"]},
        "bs": {"BS": ["AA=="]}, "m": {"M": {"l": {"L": [{"BOOL": True}, {"NULL": True}]}}}}
    with pytest.raises(RecordProblem, match="unknown type key"):
        from_data_pipeline({"a": {"q": "1"}})


# --------------------------------------------------------------------------- detection


def _jl(objs: List[Any]) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objs)


def test_detection_uses_more_than_the_first_record() -> None:
    # Plain JSON whose items have attributes named Item, Keys, Metadata: never DynamoDB JSON.
    plain = [{"Item": {"S": "x"}}, {"Item": {"name": "pen"}, "id": 2}, {"Keys": {"a": {"S": "1"}}, "Metadata": 3},
             {"id": 4, "Item": "y"}]
    assert detect(_jl(plain), "x.json", True).fmt == "json"
    assert detect(_jl([{"Keys": {"k": {"S": "1"}}, "Metadata": {"x": 1}}, {"id": 1}, {"id": 2}]), "x", True).fmt == "json"
    ddb = [{"Item": {"pk": {"S": str(i)}, "n": {"N": "1"}}} for i in range(5)] + [{"Item": {"pk": {"S": "x"}, "a": {"Q": 1}}}]
    assert detect(_jl(ddb), "d.json.gz", True).fmt == "dynamodb-json"  # a bad line does not change it
    assert detect(_jl([{"pk": {"S": "a"}}, {"pk": {"S": "b"}}]), "bare", True).fmt == "dynamodb-json"
    inc = [{"Metadata": {"WriteTimestampMicros": {"N": "1"}}, "Keys": {"pk": {"S": "a"}}, "NewImage": {"pk": {"S": "a"}}}]
    assert detect(_jl(inc), "x", True).fmt == "incremental"
    assert detect(_jl([{"pk": {"s": "a"}, "n": {"n": "1"}}]), "uuid", True).fmt == "data-pipeline"
    page = {"Items": [{"pk": {"S": "a"}}], "Count": 1, "ScannedCount": 1, "ConsumedCapacity": None}
    assert detect(json.dumps(page, indent=4).encode(), "out.json", True).fmt == "aws-scan"
    assert detect(orjson.dumps(page), "out.json", True).fmt == "aws-scan"
    assert detect(b'$ion_1_0 {Item:{a:1}}\n', "x.gz", True).fmt == "ion"
    assert detect(b'{Item:{a:1}}\n{Item:{a:2}}\n', "x", True).fmt == "ion"
    assert detect(b"pk,name\n1,a\n", "x.csv.zst", True).fmt == "csv"
    assert detect(b"[\n" + b",".join(orjson.dumps({"pk": {"S": str(i)}}) for i in range(3)) + b"]", "a", True).fmt \
        == "dynamodb-json"
    assert detect(b'[{"pk": "a"}]', "a", True).fmt == "json"
    bad = detect(b"pk,name\n1,a\n", "x.txt", True)
    assert bad.fmt is None and "CSV" in bad.found
    assert detect(b"\x00\x01garbage", "x", True).fmt is None


def test_check_sample_refuses_a_file_in_another_format() -> None:
    plain = _jl([{"pk": "a", "n": 1}, {"pk": "b"}])
    assert check_sample(plain, "json", True) is None
    assert "dynamodb-json" in (check_sample(plain, "dynamodb-json", True) or "")
    assert check_sample(plain, "ion", True) is None  # JSON text is Ion text
    assert (check_sample(b"{a:\n", "ion", True) or "").startswith("invalid Ion")
    assert check_sample(b"a,b\n1,2\n", "dynamodb-json", True) == "not JSON lines"
    assert check_sample(b"a,b\n1,2\n", "aws-scan", True) == "it does not start with a JSON object"
    assert "not a Scan response" in (check_sample(plain, "dynamodump", True) or "")
    page = json.dumps({"Items": [], "Count": 0, "ScannedCount": 0}, indent=2).encode()
    assert check_sample(page, "aws-scan", True) is None and check_sample(page.replace(b"\n", b""), "dynamodump", True) is None
    assert "first key" in (check_sample(b'{\n  "Item": {}\n}\n', "aws-scan", True) or "")


# --------------------------------------------------------------------------- reading files (no server)


def _read_all(folder: Path, **kw: Any) -> Any:
    import threading

    from ddbmigrate.sources.detection import assign_formats
    from ddbmigrate.sources.files import FileSource
    from ddbmigrate.storage.export_layout import discover

    st = LocalStorage()
    given = kw.pop("input_format", "auto")
    plan = assign_formats(discover(str(folder), st, any_name=given != "auto"), st, given)
    src = FileSource(st, plan, **kw)
    out = {}
    for f in plan.files:
        chunks = list(src.read(f.unit, kw.get("start"), threading.Event()))
        out[f.unit] = (f.fmt, [i for c in chunks for i in c.items], [r for c in chunks for r in c.rejects], chunks)
    return out, src.failures()


def test_long_first_line_bom_and_scan_pages_across_blocks(tmp_path: Path) -> None:
    big = {"pk": "a", "blob": "x" * 300_000}
    (tmp_path / "long.json").write_bytes(orjson.dumps(big) + b"\n" + orjson.dumps({"pk": "b"}) + b"\n")
    (tmp_path / "bom.ion").write_bytes(b"\xef\xbb\xbf" + aws_ion_line({"pk": {"S": "c"}}) + b"\n")
    page_items = [{"pk": {"S": f"k{i}"}, "pad": {"S": "y" * 500}} for i in range(5000)]  # ~3 MB: several blocks
    pages = [{"Items": page_items[:2000], "Count": 2000, "ScannedCount": 2000},
             {"Items": page_items[2000:], "Count": 3000, "ScannedCount": 3000, "LastEvaluatedKey": None}]
    (tmp_path / "scan.json").write_text("".join(json.dumps(p, indent=4) + "\n" for p in pages))
    got, failures = _read_all(tmp_path)
    assert not failures
    assert got["long.json"][0] == "json" and [i["pk"]["S"] for i in got["long.json"][1]] == ["a", "b"]
    assert got["bom.ion"][0] == "ion" and got["bom.ion"][1] == [{"pk": {"S": "c"}}]
    fmt, items, rejects, chunks = got["scan.json"]
    assert fmt == "aws-scan" and items == page_items and not rejects
    assert chunks[-1].done and chunks[-1].position == 5000 and chunks[0].origins[0] == "scan.json:3"  # "{", "Items": [, then the item


def test_csv_reader_header_quotes_resume_and_bad_rows(tmp_path: Path) -> None:
    import threading

    from ddbmigrate.sources.files import FileSource
    from ddbmigrate.storage.export_layout import FileEntry, Plan

    (tmp_path / "t.csv").write_bytes(b'\xef\xbb\xbfid,name\r\n1,"a\r\nb"\r\n\r\nx,c\r\n3,,\r\n4,"d,e"\r\n')
    plan = Plan("files", str(tmp_path), [FileEntry(str(tmp_path / "t.csv"), "t.csv", fmt="csv")])
    src = FileSource(LocalStorage(), plan, key_types={"id": "N"})
    chunks = list(src.read("t.csv", None, threading.Event()))
    items = [i for c in chunks for i in c.items]
    rejects = [r for c in chunks for r in c.rejects]
    assert items == [{"id": {"N": "1"}, "name": {"S": "a\r\nb"}}, {"id": {"N": "4"}, "name": {"S": "d,e"}}]
    assert [(r[1][:13], r[2]) for r in rejects] == [("id: not a num", "t.csv:5"), ("row has 3 val", "t.csv:6")]
    assert chunks[-1].done and chunks[-1].position == 4 and not src.failures()
    resumed = [i for c in src.read("t.csv", 3, threading.Event()) for i in c.items]
    assert resumed == [{"id": {"N": "4"}, "name": {"S": "d,e"}}]


def test_data_pipeline_files_without_a_manifest_need_the_format_named(tmp_path: Path) -> None:
    from ddbmigrate.errors import UsageError

    (tmp_path / "5d2bf1ba-829e-402f-a9a4-2849b974be01").write_bytes(_jl([{"pk": {"s": "a"}, "n": {"n": "1"}}]))
    (tmp_path / "_SUCCESS").write_bytes(b"")
    with pytest.raises(UsageError, match="no data files"):
        _read_all(tmp_path)
    got, failures = _read_all(tmp_path, input_format="data-pipeline")
    assert not failures and list(got) == ["5d2bf1ba-829e-402f-a9a4-2849b974be01"]
    assert got["5d2bf1ba-829e-402f-a9a4-2849b974be01"][1] == [{"pk": {"S": "a"}, "n": {"N": "1"}}]
    # A repeated name is a rejected line, not a silently kept one.
    (tmp_path / "5d2bf1ba-829e-402f-a9a4-2849b974be01").write_bytes(b'{"pk":{"s":"a"},"pk":{"s":"b"}}\n')
    got, _ = _read_all(tmp_path, input_format="data-pipeline")
    assert "appears twice" in got["5d2bf1ba-829e-402f-a9a4-2849b974be01"][2][0][1]


_ZSTD_BOMB = r"""
import io, sys, zstandard
from ddbmigrate.formats.compression import ZstdReader
cobj = zstandard.ZstdCompressor(level=3).compressobj()
frame = b"".join(cobj.compress(b"\0" * (1 << 20)) for _ in range(64)) + cobj.flush()
bomb = frame * 2  # two frames, 128 MB of zeros
r = ZstdReader(io.BytesIO(bomb))
sizes = []
while True:
    b = r.read(1 << 20)
    if not b:
        break
    sizes.append(len(b))
print(len(bomb), sum(sizes), max(sizes))
"""


def test_zstd_bomb_is_read_in_bounded_pieces() -> None:
    # In a child process: its big transient buffers must not stay in this process's memory
    # (a later test measures a child's peak RSS, which Linux counts from the parent's at fork).
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _ZSTD_BOMB], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr[-2000:]
    size, total, biggest = (int(x) for x in out.stdout.split())
    assert size < 100_000 and total == 128 << 20 and biggest <= 32 << 20


def test_a_file_of_bare_words_is_not_ion() -> None:
    from ddbmigrate.formats.detect import detect

    # "garbage" parses as an Ion symbol; a file of items in Ion holds structs.
    assert detect(b"garbage\n", "x.json", True).fmt is None
    assert detect(b"garbage\nmore words\n", "x.json", True).fmt is None
    assert detect(b"{Item:{pk:\"a\"}}\n", "x.json", True).fmt == "ion"


def test_a_first_line_longer_than_the_sample_is_not_called_a_multi_line_document() -> None:
    head = b'{"pk": "' + b"x" * 4096
    got = detect(head, "big.json", complete=False)
    assert got.fmt is None
    assert "first line is longer than the 4,104-byte sample" in got.found and "multi-line" not in got.found
    # A document really over many lines still says so.
    assert "multi-line JSON document" in detect(b'{\n  "pk": "a",\n  "v": {\n', "d.json", complete=False).found


def test_manifests_of_the_wrong_shape_are_one_clear_error(tmp_path: Path) -> None:
    from ddbmigrate.errors import FatalError
    from ddbmigrate.storage.export_layout import discover

    def export(name: str, summary: Any, entry: Any) -> Path:
        root = tmp_path / name / "AWSDynamoDB" / "01700000000000-aaaaaaaa"
        (root / "data").mkdir(parents=True)
        (root / "data" / "a.json.gz").write_bytes(b"")
        (root / "manifest-summary.json").write_bytes(orjson.dumps(summary))
        (root / "manifest-files.json").write_bytes(orjson.dumps(entry) + b"\n")
        return tmp_path / name

    good = {"itemCount": 0, "dataFileS3Key": "AWSDynamoDB/01700000000000-aaaaaaaa/data/a.json.gz"}
    with pytest.raises(FatalError, match="manifest-summary.json is not a JSON object"):
        discover(str(export("list", [{"outputFormat": "ION"}], good)), LocalStorage())
    with pytest.raises(FatalError, match="manifest-files.json line is not a valid entry") as e:
        discover(str(export("count", {"itemCount": 0}, dict(good, itemCount="abc"))), LocalStorage())
    assert e.value.line == 1
    dp = tmp_path / "dp"
    dp.mkdir()
    (dp / "manifest").write_bytes(orjson.dumps({"name": "DynamoDB-export", "version": 3, "entries": 5}))
    with pytest.raises(FatalError, match="entries is not a list"):
        discover(str(dp), LocalStorage())


def test_an_export_manifest_named_as_the_source_says_to_import_its_folder(tmp_path: Path) -> None:
    import re

    from ddbmigrate.errors import UsageError
    from ddbmigrate.storage.export_layout import discover

    root = tmp_path / "AWSDynamoDB" / "01700000000000-aaaaaaaa"
    root.mkdir(parents=True)
    for name in ("manifest-summary.json", "manifest-files.json"):
        (root / name).write_bytes(b'{"itemCount": 0}\n')
        with pytest.raises(UsageError, match=re.escape(f"{name} is an export's manifest, not its data: import the "
                                                       f"export's folder ({root})")):
            discover(str(root / name), LocalStorage())
