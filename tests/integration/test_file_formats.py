"""Every file a DynamoDB user has, imported into DynamoDB Local and compared exactly.

Each layout is built here from AWS's (or the tool's) documentation: incremental exports sharing
``AWSDynamoDB/data/``, ION exports (written with amazon.ion's own writer), ImportTable CSV,
ZSTD, ``aws dynamodb scan`` output, a real dynamodump backup, a Data Pipeline export; never
with ddbmigrate's own writer, so a bug there cannot hide one here.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import boto3
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.errors import FatalError, UsageError
from ddbmigrate.jobs.export import export_table
from ddbmigrate.jobs.import_files import import_files
from ddbmigrate.storage.stores import S3Settings
from support import as_set, create_table, every_type_items, put_items, scan_all, unique
from formats_support import _value, aws_ion_line, hive_line

pytestmark = pytest.mark.integration

OFF = RunOptions(progress="off")
REPO = Path(__file__).resolve().parents[2]


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def cli(*args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def items(n: int, prefix: str = "i") -> List[Dict[str, Any]]:
    return [{"pk": {"S": f"{prefix}{i:04d}"}, "n": {"N": f"{i}.5"}, "s": {"S": "x" * (i % 7)}} for i in range(n)]


# --------------------------------------------------------------------------- AWS export layouts


def write_export(base: Path, export_id: str, data: List[bytes], *, incremental: bool = False,
                 fmt: str = "DYNAMODB_JSON", prefix: str = "exports", export_time: str = "2026-11-04T06:00:00.000Z",
                 window: tuple = ("2026-11-04T06:00:00.000Z", "2026-11-04T07:00:00.000Z")) -> Path:
    """An export as AWS lays it out: a full export's data under its own folder, incremental
    exports' data in the prefix's shared AWSDynamoDB/data/ folder, each named by dataFileS3Key."""
    ext = ".ion.gz" if fmt == "ION" else ".json.gz"
    root = base / "AWSDynamoDB" / export_id
    root.mkdir(parents=True)
    (root / "_started").write_bytes(b"")
    data_dir = base / "AWSDynamoDB" / "data" if incremental else root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    entries, total = [], 0
    for i, raw in enumerate(data):
        name = hashlib.sha1(f"{export_id}{i}".encode()).hexdigest()[:26]
        gz = gzip.compress(raw)
        (data_dir / f"{name}{ext}").write_bytes(gz)
        count = sum(1 for ln in raw.split(b"\n") if ln.strip())
        key = (f"{prefix}/AWSDynamoDB/data/{name}{ext}" if incremental
               else f"{prefix}/AWSDynamoDB/{export_id}/data/{name}{ext}")
        e: Dict[str, Any] = {"itemCount": count, "md5Checksum": b64md5(gz)}
        if not incremental:
            e["etag"] = hashlib.md5(gz).hexdigest()
        e["dataFileS3Key"] = key
        entries.append(e)
        total += count
    mf = b"".join(dumps(e) + b"\n" for e in entries)
    (root / "manifest-files.json").write_bytes(mf)
    (root / "manifest-files.checksum").write_bytes(b64md5(mf).encode())
    common = {"exportArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/Src/export/{export_id}",
              "startTime": "2026-11-04T07:28:34.028Z", "endTime": "2026-11-04T07:33:43.897Z",
              "tableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/Src",
              "tableId": "12345a12-abcd-123a-ab12-1234abc12345"}
    tail = {"s3Bucket": "bucket", "s3Prefix": prefix, "s3SseAlgorithm": "AES256", "s3SseKmsKeyId": None,
            "manifestFilesS3Key": f"{prefix}/AWSDynamoDB/{export_id}/manifest-files.json",
            "billedSizeBytes": 0, "itemCount": total, "outputFormat": fmt}
    if incremental:
        summary = {"version": "2023-08-01", **common, "exportFromTime": window[0], "exportToTime": window[1], **tail,
                   "outputView": "NEW_AND_OLD_IMAGES", "exportType": "INCREMENTAL_EXPORT"}
    else:
        summary = {"version": "2020-06-30", **common, "exportTime": export_time, **tail, "exportType": "FULL_EXPORT"}
    sb = dumps(summary)
    (root / "manifest-summary.json").write_bytes(sb)
    (root / "manifest-summary.checksum").write_bytes(b64md5(sb).encode())
    return root


def rec(pk: str, ts: int, new: Optional[Dict[str, Any]], old: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    r: Dict[str, Any] = {"Metadata": {"WriteTimestampMicros": {"N": str(ts)}}, "Keys": {"pk": {"S": pk}}}
    if old is not None:
        r["OldImage"] = {"pk": {"S": pk}, **old}
    if new is not None:
        r["NewImage"] = {"pk": {"S": pk}, **new}
    return r


def jl(objs: List[Any]) -> bytes:
    return b"".join(dumps(o) + b"\n" for o in objs)


T6 = 1_793_772_000_000_000  # 2026-11-04T06:00:00Z in microseconds


def _prefix_with_chain(base: Path) -> Dict[str, Dict[str, Any]]:
    """A full export at 06:00 and two incremental windows (06:00-07:00, 07:00-08:00)."""
    full = items(6)
    write_export(base, "01793772000000-aaaaaaaa", [jl([{"Item": i} for i in full[:3]]), jl([{"Item": i} for i in full[3:]])])
    write_export(base, "01793775600000-bbbbbbbb", [
        jl([rec("i0000", T6 + 10, {"v": {"S": "one"}}, {"v": {"S": "zero"}}), rec("i0001", T6 + 20, None, {})]),
        jl([rec("new1", T6 + 30, {"v": {"N": "1"}}), rec("i0002", T6 + 40, {"v": {"S": "i2a"}})]),
    ], incremental=True)
    write_export(base, "01793779200000-cccccccc", [
        jl([rec("i0002", T6 + 3_600_000_001, {"v": {"S": "i2b"}}), rec("new1", T6 + 3_600_000_002, None, {}),
            rec("i0001", T6 + 3_600_000_003, {"v": {"S": "back"}})]),
    ], incremental=True, window=("2026-11-04T07:00:00.000Z", "2026-11-04T08:00:00.000Z"))
    expected = {i["pk"]["S"]: i for i in full}
    expected["i0000"] = {"pk": {"S": "i0000"}, "v": {"S": "one"}}
    expected["i0001"] = {"pk": {"S": "i0001"}, "v": {"S": "back"}}
    expected["i0002"] = {"pk": {"S": "i0002"}, "v": {"S": "i2b"}}
    return expected


def test_incremental_export_data_is_found_by_its_dataFileS3Key(endpoint: str, tmp_path: Path) -> None:
    base = tmp_path / "exports"
    root = write_export(base, "01793775600000-bbbbbbbb", [
        jl([rec("a", T6 + 1, {"v": {"S": "a1"}}), rec("b", T6 + 2, {"v": {"S": "b1"}})]),
        jl([rec("a", T6 + 3, {"v": {"S": "a2"}}, {"v": {"S": "a1"}})])], incremental=True)
    assert not (root / "data").exists() and len(list((base / "AWSDynamoDB" / "data").iterdir())) == 2
    dst = create_table(endpoint)
    rep = import_files(str(root), ref(endpoint, dst), OFF)
    assert {i["pk"]["S"]: i["v"]["S"] for i in scan_all(endpoint, dst)} == {"a": "a2", "b": "b1"}
    assert rep.extra["source_kind"] == "incremental" and rep.counters["collapsed"] == 1
    # The prefix itself holds one export (and the shared data folder, which is no export).
    dst2 = create_table(endpoint)
    rep = import_files(str(base), ref(endpoint, dst2), OFF)
    assert {i["pk"]["S"]: i["v"]["S"] for i in scan_all(endpoint, dst2)} == {"a": "a2", "b": "b1"}


def test_a_prefix_of_full_and_incremental_exports_is_applied_in_time_order(endpoint: str, tmp_path: Path) -> None:
    expected = _prefix_with_chain(tmp_path / "p")
    dst = create_table(endpoint)
    put_items(endpoint, dst, [{"pk": {"S": "stale"}, "v": {"S": "kept: not in any export"}}])
    rep = import_files(str(tmp_path / "p"), ref(endpoint, dst), OFF)
    got = scan_all(endpoint, dst)
    assert as_set(got) == as_set([*expected.values(), {"pk": {"S": "stale"}, "v": {"S": "kept: not in any export"}}])
    assert [e["export_id"] for e in rep.extra["exports"]] == ["01793772000000-aaaaaaaa", "01793775600000-bbbbbbbb",
                                                             "01793779200000-cccccccc"]
    assert rep.balanced() and rep.counters["deleted"] == 1 and rep.exit_code == 0  # new1: created, then deleted
    # The AWSDynamoDB/ folder itself is the same chain, not a folder of plain files.
    dst2 = create_table(endpoint)
    rep = import_files(str(tmp_path / "p" / "AWSDynamoDB") + "/", ref(endpoint, dst2), OFF)
    assert as_set(scan_all(endpoint, dst2)) == as_set(expected.values())
    assert rep.extra["source_kind"] == "incremental" and len(rep.extra["exports"]) == 3


def test_exports_that_cannot_be_chained_are_named_and_asked(endpoint: str, tmp_path: Path) -> None:
    dst = create_table(endpoint)
    base = tmp_path / "gap"
    write_export(base, "01793772000000-aaaaaaaa", [jl([{"Item": i} for i in items(2)])])
    write_export(base, "01793779200000-cccccccc", [jl([rec("a", T6 + 3_600_000_001, {"v": {"S": "x"}})])],
                 incremental=True, window=("2026-11-04T07:00:00.000Z", "2026-11-04T08:00:00.000Z"))
    r = cli("import", str(base), dst, "--endpoint-url", endpoint, "--quiet")
    assert r.returncode == 2 and "gap" in r.stderr and "01793772000000-aaaaaaaa" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    two = tmp_path / "two"
    write_export(two, "01793772000000-aaaaaaaa", [jl([{"Item": i} for i in items(2)])])
    write_export(two, "01793772000001-dddddddd", [jl([{"Item": i} for i in items(2)])])
    with pytest.raises(UsageError, match="holds 2 exports"):
        import_files(str(two), ref(endpoint, dst), OFF)
    # Named by their AWSDynamoDB/ folder: asked the same, never both read unchecked in no order.
    with pytest.raises(UsageError, match="holds 2 exports"):
        import_files(str(two / "AWSDynamoDB"), ref(endpoint, dst), OFF)
    assert scan_all(endpoint, dst) == []


def _upload(s3: Any, bucket: str, folder: Path, prefix: str) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            s3.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(folder)}")


def from_s3(moto_s3: str, folder: Path, endpoint: str, make_table: Any, **kw: Any) -> Any:
    """Upload ``folder`` to a new bucket and import it from there into a new table."""
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    bucket = unique("bkt")
    s3.create_bucket(Bucket=bucket)
    _upload(s3, bucket, folder, "in")
    table = make_table()
    rep = import_files(f"s3://{bucket}/in", ref(endpoint, table), OFF, s3=S3Settings(endpoint_url=moto_s3), **kw)
    return table, rep


def test_export_chain_and_ion_from_s3(endpoint: str, moto_s3: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    bucket = unique("bkt")
    s3.create_bucket(Bucket=bucket)
    expected = _prefix_with_chain(tmp_path / "p")
    _upload(s3, bucket, tmp_path / "p", "exports")
    dst = create_table(endpoint)
    import_files(f"s3://{bucket}/exports", ref(endpoint, dst), OFF, s3=S3Settings(endpoint_url=moto_s3))
    assert as_set(scan_all(endpoint, dst)) == as_set(list(expected.values()))
    ion_items = every_type_items()
    write_export(tmp_path / "ion", "01793772000000-eeeeeeee", [b"".join(aws_ion_line(i) + b"\n" for i in ion_items)],
                 fmt="ION")
    _upload(s3, bucket, tmp_path / "ion", "ionexp")
    dst2 = create_table(endpoint)
    rep = import_files(f"s3://{bucket}/ionexp", ref(endpoint, dst2), OFF, s3=S3Settings(endpoint_url=moto_s3))
    assert as_set(scan_all(endpoint, dst2)) == as_set(ion_items)
    assert set(rep.extra["file_formats"].values()) == {"ion"}


# --------------------------------------------------------------------------- ION


def test_ion_full_and_incremental_exports(endpoint: str, moto_s3: str, tmp_path: Path) -> None:
    full = every_type_items() + items(20)
    root = write_export(tmp_path / "full", "01793772000000-aaaaaaaa",
                        [b"".join(aws_ion_line(i) + b"\n" for i in full[:10]),
                         b"".join(aws_ion_line(i) + b"\n" for i in full[10:])], fmt="ION")
    assert all(p.name.endswith(".ion.gz") for p in (root / "data").iterdir())
    dst = create_table(endpoint)
    rep = import_files(str(tmp_path / "full"), ref(endpoint, dst), OFF)
    assert as_set(scan_all(endpoint, dst)) == as_set(full) and rep.read == len(full) and rep.exit_code == 0
    # An incremental export in ION, as AWS writes it.
    lines = [
        b'$ion_1_0 {Metadata:{WriteTimestampMicros:1793772000000010},Keys:{pk:"scalars"},'
        b'OldImage:{pk:"scalars"},NewImage:{pk:"scalars",ns:$dynamodb_NS::[1,2.5],bs:$dynamodb_BS::[{{AAE=}}],'
        b'm:{ss:$dynamodb_SS::["a"],l:[null,true,12345678901234567890123456789012345678]},e:"",eb:{{}}}}',
        b'$ion_1_0 {Metadata:{WriteTimestampMicros:1793772000000020},Keys:{pk:"empties"},OldImage:{pk:"empties"}}',
        b'$ion_1_0 {Metadata:{WriteTimestampMicros:1793772000000005},Keys:{pk:"scalars"},NewImage:{pk:"scalars"}}',
    ]
    write_export(tmp_path / "inc", "01793775600000-bbbbbbbb", [b"\n".join(lines) + b"\n"], incremental=True, fmt="ION")
    # Applied from S3 (its data in the shared AWSDynamoDB/data/ there).
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    bucket = unique("bkt")
    s3.create_bucket(Bucket=bucket)
    _upload(s3, bucket, tmp_path / "inc", "exports")
    rep = import_files(f"s3://{bucket}/exports", ref(endpoint, dst), OFF, s3=S3Settings(endpoint_url=moto_s3))
    got = {i["pk"]["S"]: i for i in scan_all(endpoint, dst)}
    assert "empties" not in got and rep.counters["deleted"] == 1 and rep.counters["collapsed"] == 1
    assert as_set([got["scalars"]]) == as_set([{
        "pk": {"S": "scalars"}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": ["AAE="]}, "e": {"S": ""}, "eb": {"B": ""},
        "m": {"M": {"ss": {"SS": ["a"]}, "l": {"L": [{"NULL": True}, {"BOOL": True},
                                                    {"N": "12345678901234567890123456789012345678"}]}}}}])


def test_export_format_ion_layout_and_round_trip(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, every_type_items() + items(30))
    rep = export_table(ref(endpoint, src), str(tmp_path / "o"), RunOptions(progress="off", segments=2), fmt="ion",
                       file_size=50_000)
    root = Path(rep.extra["export_path"])
    summary = json.loads((root / "manifest-summary.json").read_bytes())
    assert summary["outputFormat"] == "ION" and summary["itemCount"] == len(every_type_items()) + 30
    entries = [json.loads(x) for x in (root / "manifest-files.json").read_text().splitlines()]
    assert len(entries) > 1 and all(e["dataFileS3Key"].endswith(".ion.gz") for e in entries)
    assert list(entries[0]) == ["itemCount", "md5Checksum", "etag", "dataFileS3Key"]
    for e in entries:
        lines = gzip.decompress((tmp_path / "o" / e["dataFileS3Key"]).read_bytes()).splitlines()
        assert all(ln.startswith(b"$ion_1_0 {Item:{") for ln in lines) and len(lines) == e["itemCount"]
    r = cli("import", str(tmp_path / "o"), dst, "--endpoint-url", endpoint, "--quiet", "--report",
            str(tmp_path / "r.json"), "--verify")  # and verify reads the ION export as its source side
    assert r.returncode == 0, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))
    assert set(json.loads((tmp_path / "r.json").read_text())["extra"]["file_formats"].values()) == {"ion"}


_bodies = st.lists(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k != "pk"), _value, max_size=4),
                   min_size=1, max_size=6)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies=_bodies)
def test_export_ion_then_import_is_lossless_for_generated_items(endpoint: str, tmp_path_factory: Any,
                                                               bodies: List[Dict[str, Any]]) -> None:
    src_items = [{"pk": {"S": f"k{i}"}, **b} for i, b in enumerate(bodies)]
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, src_items)
    out = tmp_path_factory.mktemp("ion")
    rep = export_table(ref(endpoint, src), str(out), RunOptions(progress="off"), fmt="ion")
    import_files(rep.extra["export_path"], ref(endpoint, dst), OFF)
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))


# --------------------------------------------------------------------------- ImportTable inputs


def test_importtable_inputs_csv_ion_dynamodb_json_plain_gzip_zstd(endpoint: str, moto_s3: str, tmp_path: Path) -> None:
    dst = create_table(endpoint, hash_key=("id", "N"), range_key=("sk", "S"))
    rows = [["id", "sk", "name", "note"], ["1", "a", "pen", ""], ["2", "b", "x, \"quoted\"\nline", "12.50"],
            ["3", "c", "", "007"]]
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "with-header.csv").write_bytes(buf.getvalue().encode())
    dst2 = create_table(endpoint, hash_key=("id", "N"), range_key=("sk", "S"))
    assert import_files(str(tmp_path / "in"), ref(endpoint, dst), OFF).exit_code == 0
    want = [{"id": {"N": "1"}, "sk": {"S": "a"}, "name": {"S": "pen"}},
            {"id": {"N": "2"}, "sk": {"S": "b"}, "name": {"S": "x, \"quoted\"\nline"}, "note": {"S": "12.50"}},
            {"id": {"N": "3"}, "sk": {"S": "c"}, "note": {"S": "007"}}]
    assert as_set(scan_all(endpoint, dst)) == as_set(want)
    # No header line: --csv-header; another delimiter; ZSTD and GZIP, detected by magic bytes.
    body = "\n".join(";".join(r) for r in [["4", "d", "semi", "x"], ["5", "e", "", ""]]) + "\n"
    (tmp_path / "nh").mkdir()
    (tmp_path / "nh" / "part-1.csv.zst").write_bytes(zstandard.ZstdCompressor().compress(body.encode()))
    (tmp_path / "nh" / "part-2.csv").write_bytes(gzip.compress(b"6;f;gz;\n"))
    r = cli("import", str(tmp_path / "nh"), dst2, "--endpoint-url", endpoint, "--quiet", "--csv-header",
            "id,sk,name,note", "--csv-delimiter", ";", "--input-format", "csv", "--verify")  # verify reads CSV alike
    assert r.returncode == 0, r.stderr
    assert as_set(scan_all(endpoint, dst2)) == as_set([
        {"id": {"N": "4"}, "sk": {"S": "d"}, "name": {"S": "semi"}, "note": {"S": "x"}},
        {"id": {"N": "5"}, "sk": {"S": "e"}}, {"id": {"N": "6"}, "sk": {"S": "f"}, "name": {"S": "gz"}}])
    # DynamoDB JSON and Ion, plain / GZIP / ZSTD, in one folder (ImportTable's other inputs).
    every = every_type_items()
    t3 = create_table(endpoint)
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "a.json").write_bytes(jl([{"Item": i} for i in every[:2]]))
    (d / "b.json.zst").write_bytes(zstandard.ZstdCompressor().compress(jl([{"Item": i} for i in every[2:4]])))
    (d / "c.ion.gz").write_bytes(gzip.compress(b"".join(aws_ion_line(i) + b"\n" for i in every[4:5])))
    (d / "d.ion.zst").write_bytes(zstandard.ZstdCompressor().compress(b"".join(aws_ion_line(i) + b"\n" for i in every[5:])))
    rep = import_files(str(d), ref(endpoint, t3), OFF)
    assert as_set(scan_all(endpoint, t3)) == as_set(every)
    assert rep.extra["file_formats"] == {"a.json": "dynamodb-json", "b.json.zst": "dynamodb-json", "c.ion.gz": "ion",
                                         "d.ion.zst": "ion"}
    # The same from S3.
    t4, _ = from_s3(moto_s3, d, endpoint, lambda: create_table(endpoint))
    assert as_set(scan_all(endpoint, t4)) == as_set(every)
    t5, rep = from_s3(moto_s3, tmp_path / "nh", endpoint,
                      lambda: create_table(endpoint, hash_key=("id", "N"), range_key=("sk", "S")),
                      input_format="csv", csv_header=["id", "sk", "name", "note"], csv_delimiter=";")
    assert as_set(scan_all(endpoint, t5)) == as_set(scan_all(endpoint, dst2))


# --------------------------------------------------------------------------- other tools


def test_aws_cli_scan_output_with_several_pages(endpoint: str, moto_s3: str, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    every = every_type_items() + items(40)
    pages = [every[:3], every[3:20], every[20:]]
    text = "".join(json.dumps({"Items": p, "Count": len(p), "ScannedCount": len(p), "ConsumedCapacity": None},
                              indent=4) + "\n" for p in pages)
    (tmp_path / "scan.json").write_text(text)
    dst = create_table(endpoint)
    r = cli("import", str(tmp_path / "scan.json"), dst, "--endpoint-url", endpoint, "--quiet", "--report",
            str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(every)
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["counters"]["read"] == len(every) and rep["extra"]["file_formats"] == {"scan.json": "aws-scan"}
    (tmp_path / "s3in").mkdir()
    shutil.copy(tmp_path / "scan.json", tmp_path / "s3in" / "scan.json")
    t2, _ = from_s3(moto_s3, tmp_path / "s3in", endpoint, lambda: create_table(endpoint))
    assert as_set(scan_all(endpoint, t2)) == as_set(every)
    # A page holding fewer items than its Count (the last output of a `--starting-token` resume
    # has no NextToken) is read, and said: not a silent partial load, nor a refused real file.
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "scan.json").write_text(text.replace(f'"Count": {len(pages[2])}', '"Count": 999'))
    with caplog.at_level("WARNING"):
        rep = import_files(str(tmp_path / "cut"), ref(endpoint, create_table(endpoint)), OFF)
    assert rep.exit_code == 0 and rep.written == len(every)
    assert f"document 3 says Count 999 but holds {len(pages[2])} items" in caplog.text


def test_aws_cli_scan_output_cut_by_max_items(endpoint: str, tmp_path: Path) -> None:
    # What `aws dynamodb scan --max-items 3 --page-size 4` (then --starting-token) prints: the
    # CLI's own paginator cuts Items, keeps Count of the pages it fetched, and adds a NextToken.
    src = create_table(endpoint)
    every = items(10)
    put_items(endpoint, src, every)
    pager = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").get_paginator("scan")
    first = pager.paginate(TableName=src, PaginationConfig={"MaxItems": 3, "PageSize": 4}).build_full_result()
    second = pager.paginate(TableName=src, PaginationConfig={"MaxItems": 3, "PageSize": 4,
                                                               "StartingToken": first["NextToken"]}).build_full_result()
    # The last output, resumed mid-page: no NextToken, and a Count of the whole page.
    last = pager.paginate(TableName=src, PaginationConfig={"MaxItems": 100, "PageSize": 4,
                                                             "StartingToken": second["NextToken"]}).build_full_result()
    assert first["Count"] > len(first["Items"]) and "NextToken" in second and "NextToken" not in last
    assert last["Count"] > len(last["Items"])
    (tmp_path / "scan.json").write_text("".join(json.dumps(x, indent=4) + "\n" for x in (first, second, last)))
    dst = create_table(endpoint)
    rep = import_files(str(tmp_path / "scan.json"), ref(endpoint, dst), OFF)
    assert rep.exit_code == 0
    assert as_set(scan_all(endpoint, dst)) == as_set(every)
    # More items than Count is still a contradiction, NextToken or not.
    cut = dict(first, Count=2)
    (tmp_path / "bad.json").write_text(json.dumps(cut, indent=4) + "\n")
    with pytest.raises(FatalError, match="says Count 2 but holds 3"):
        import_files(str(tmp_path / "bad.json"), ref(endpoint, create_table(endpoint)), OFF)


def _dynamodump() -> str:
    for p in (REPO / ".venv-tools" / "bin" / "dynamodump", Path("/work/main/.venv-tools/bin/dynamodump")):
        if p.exists():
            return str(p)
    found = shutil.which("dynamodump")
    if not found:
        pytest.fail("dynamodump is not installed: run `bash scripts/ensure-tools`")
    return found


def test_dynamodump_backup_with_create_target(endpoint: str, moto_s3: str, tmp_path: Path) -> None:
    src = create_table(endpoint, unique("dump").replace("-", ""), gsis=[{
        "IndexName": "by_name", "KeySchema": [{"AttributeName": "name", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "ALL"}}])
    every = [i for i in every_type_items() if i["pk"]["S"] != "big"] + [{**i, "name": {"S": f"n{n % 3}"}}
                                                                        for n, i in enumerate(items(30))]
    put_items(endpoint, src, every)
    port = endpoint.rsplit(":", 1)[1]
    # The real dynamodump CLI entry point, in its own venv. dynamodump 1.11.1 always takes its
    # worker-thread path, which waits THREAD_START_DELAY (1 s) per worker, 25 s in all: set to 0
    # here only to keep CI fast; the backup it writes is unchanged.
    argv = ["dynamodump", "-m", "backup", "-r", "local", "-s", src, "--host", "127.0.0.1", "--port", port,
            "--accessKey", "test", "--secretKey", "test", "--dumpPath", str(tmp_path / "dump"), "--log", "ERROR"]
    code = ("import sys, dynamodump.dynamodump as d; d.THREAD_START_DELAY = 0; "
            f"sys.argv = {argv!r}; d.main()")
    r = subprocess.run([str(Path(_dynamodump()).parent / "python"), "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "dump" / src / "schema.json").exists() and (tmp_path / "dump" / src / "data" / "0001.json").exists()
    # The backup folder (with the table folder in it) and --create-target from schema.json.
    dst = unique("restored")
    r = cli("import", str(tmp_path / "dump"), dst, "--endpoint-url", endpoint, "--create-target", "--quiet",
            "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(every)
    desc = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").describe_table(TableName=dst)["Table"]
    assert [g["IndexName"] for g in desc["GlobalSecondaryIndexes"]] == ["by_name"]
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["extra"]["source_kind"] == "dynamodump" and set(rep["extra"]["file_formats"].values()) == {"dynamodump"}
    # The table folder itself, into an existing table: schema.json is never read as data.
    dst2 = create_table(endpoint)
    rep2 = import_files(str(tmp_path / "dump" / src), ref(endpoint, dst2), OFF)
    assert as_set(scan_all(endpoint, dst2)) == as_set(every) and rep2.read == len(every) and rep2.exit_code == 0
    t3, rep3 = from_s3(moto_s3, tmp_path / "dump", endpoint, lambda: unique("froms3"), create_target=True)
    assert as_set(scan_all(endpoint, t3)) == as_set(every) and rep3.extra["source_kind"] == "dynamodump"


def _dp_value(v: Dict[str, Any]) -> Dict[str, Any]:
    ((t, x),) = v.items()
    name = {"S": "s", "N": "n", "B": "b", "SS": "sS", "NS": "nS", "BS": "bS", "M": "m", "L": "l", "BOOL": "bOOL",
            "NULL": "nULLValue"}[t]
    if t == "M":
        return {name: {k: _dp_value(e) for k, e in x.items()}}
    if t == "L":
        return {name: [_dp_value(e) for e in x]}
    return {name: x}


def test_data_pipeline_export(endpoint: str, moto_s3: str, tmp_path: Path) -> None:
    every = every_type_items() + items(25)
    folder = tmp_path / "2019-03-01-12-00-00"
    folder.mkdir()
    names = ["5d2bf1ba-829e-402f-a9a4-2849b974be01", "8e0f4b14-5d27-4b4a-9b1a-2f6f0e6d9a11"]
    for name, part in zip(names, (every[:10], every[10:])):
        (folder / name).write_bytes(jl([{k: _dp_value(v) for k, v in i.items()} for i in part]))
    (folder / "manifest").write_bytes(dumps({"name": "DynamoDB-export", "version": 3, "entries": [
        {"url": f"s3://bucket/backups/2019-03-01-12-00-00/{n}", "mandatory": True} for n in names]}))
    (folder / "_SUCCESS").write_bytes(b"")
    dst = create_table(endpoint)
    rep = import_files(str(folder), ref(endpoint, dst), OFF)
    assert as_set(scan_all(endpoint, dst)) == as_set(every)
    assert rep.extra["source_kind"] == "data-pipeline" and set(rep.extra["file_formats"].values()) == {"data-pipeline"}
    t2, _ = from_s3(moto_s3, folder, endpoint, lambda: create_table(endpoint))
    assert as_set(scan_all(endpoint, t2)) == as_set(every)
    (folder / names[1]).unlink()
    with pytest.raises(FatalError, match="listed in the Data Pipeline manifest is missing"):
        import_files(str(folder), ref(endpoint, dst), OFF)


def test_data_pipeline_dead_letters_replay_as_the_items_they_are(endpoint: str, tmp_path: Path) -> None:
    folder = tmp_path / "dp"
    folder.mkdir()
    name = "5d2bf1ba-829e-402f-a9a4-2849b974be01"
    (folder / name).write_bytes(jl([{"pk": {"s": "a"}, "tags": {"sS": []}}, {"pk": {"s": "b"}, "n": {"n": "1"}},
                                    {"pk": {"s": "c"}, "m": {"m": {"bin": {"b": "!!"}}}}]))
    (folder / "manifest").write_bytes(dumps({"name": "DynamoDB-export", "version": 3, "entries": [
        {"url": f"s3://bucket/backups/{name}", "mandatory": True}]}))
    dst = create_table(endpoint)
    dl = tmp_path / "dl.jsonl"
    rep = import_files(str(folder), ref(endpoint, dst), RunOptions(progress="off", dead_letter=str(dl)))
    assert rep.exit_code == 3 and as_set(scan_all(endpoint, dst)) == as_set([{"pk": {"S": "b"}, "n": {"N": "1"}}])
    # Fixed where the dead letters keep them, and replayed: the items they are, never Data
    # Pipeline's {"s": ...} read as a map.
    records = [json.loads(ln) for ln in dl.read_text().splitlines()]
    assert [r["origin"] for r in records] == [f"{name}:1", f"{name}:3"]
    for r in records:
        r["raw"] = r["raw"].replace("[]", '["x"]').replace('"!!"', '"AA=="')
    (tmp_path / "fixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rep = import_files(str(tmp_path / "fixed.jsonl"), ref(endpoint, dst), OFF)
    assert rep.exit_code == 0
    assert as_set(scan_all(endpoint, dst)) == as_set([
        {"pk": {"S": "a"}, "tags": {"SS": ["x"]}}, {"pk": {"S": "b"}, "n": {"N": "1"}},
        {"pk": {"S": "c"}, "m": {"M": {"bin": {"B": "AA=="}}}}])


def test_data_pipeline_hive_export(endpoint: str, tmp_path: Path) -> None:
    # The older "Export DynamoDB table to S3" template: EMR + Hive writes \x02/\x03 lines of the
    # connector's Gson JSON (SDK v1 field names, or SDK v2's lower-cased ones), files named by Hive.
    every = every_type_items() + items(25)
    folder = tmp_path / "2014-05-01-00-00-00"
    folder.mkdir()
    (folder / "000000").write_bytes(b"".join(hive_line(i, "v1") + b"\n" for i in every[:10]))
    (folder / "000001").write_bytes(gzip.compress(b"".join(hive_line(i, "v2") + b"\n" for i in every[10:])))
    (folder / "_SUCCESS").write_bytes(b"")
    dst = create_table(endpoint)
    r = cli("import", str(folder), dst, "--endpoint-url", endpoint, "--quiet", "--input-format", "data-pipeline-hive")
    assert r.returncode == 0, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(every)
    # A file named alone is told by its content (in a folder, files with no extension are data
    # only when the format is named, as for Data Pipeline's JSON files without their manifest).
    dst2 = create_table(endpoint)
    rep = import_files(str(folder / "000001"), ref(endpoint, dst2), OFF)
    assert rep.extra["file_formats"] == {"000001": "data-pipeline-hive"} and rep.exit_code == 0
    assert as_set(scan_all(endpoint, dst2)) == as_set(every[10:])
    r = cli("import", str(folder / "000000"), dst, "--endpoint-url", endpoint, "--quiet", "--input-format",
            "data-pipeline")
    assert r.returncode == 2 and "not data-pipeline" in r.stderr and "try --input-format data-pipeline-hive" in r.stderr


def test_data_pipeline_hive_bad_lines_dead_letter_and_replay(endpoint: str, tmp_path: Path) -> None:
    folder = tmp_path / "hive"
    folder.mkdir()
    lines = [hive_line({"pk": {"S": "a"}, "n": {"N": "1"}}),
             b'pk\x03{"s":"b"}\x02n\x03{"n":"2"',  # cut short: invalid JSON
             b'pk\x03{"s":"c"}\x02tags\x03{"sS":[]}',  # converts, but an empty set
             b'pk\x03{"s":"d"}\x02name\x03{"s":"caf\xe9"}']  # not UTF-8
    (folder / "000000_0").write_bytes(b"\n".join(lines) + b"\n")
    dst = create_table(endpoint)
    dl = tmp_path / "dl.jsonl"
    r = cli("import", str(folder / "000000_0"), dst, "--endpoint-url", endpoint, "--quiet", "--dead-letter", str(dl))
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set([{"pk": {"S": "a"}, "n": {"N": "1"}}])
    records = [json.loads(ln) for ln in dl.read_text().splitlines()]
    assert [r["origin"] for r in records] == ["000000_0:2", "000000_0:3", "000000_0:4"]
    assert records[0]["reason"].startswith("invalid JSON in the value of 'n'")
    assert records[0]["raw"].encode() == lines[1] and json.loads(records[1]["raw"])["tags"] == {"SS": []}
    assert records[2]["reason"].startswith("not valid UTF-8") and base64.b64decode(records[2]["raw_b64"]) == lines[3]
    # Replayed unedited: the same lines are dead letters again, the bytes still exact.
    dl2 = tmp_path / "dl2.jsonl"
    r = cli("import", str(dl), dst, "--endpoint-url", endpoint, "--quiet", "--dead-letter", str(dl2))
    assert r.returncode == 3, r.stderr
    assert len(dl2.read_text().splitlines()) == 3 and len(scan_all(endpoint, dst)) == 1
    assert base64.b64decode(json.loads(json.loads(dl2.read_text().splitlines()[2])["raw"])["raw_b64"]) == lines[3]
    # Fixed where the dead letters keep them: the items they are (Hive lines read as Hive again).
    records[0]["raw"] = records[0]["raw"] + "}"
    records[1]["raw"] = records[1]["raw"].replace("[]", '["x"]')
    records[2]["raw"] = records[2]["raw"].replace("\ufffd", "\u00e9")
    (tmp_path / "fixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rep = import_files(str(tmp_path / "fixed.jsonl"), ref(endpoint, dst), OFF)
    assert rep.exit_code == 0
    assert as_set(scan_all(endpoint, dst)) == as_set([
        {"pk": {"S": "a"}, "n": {"N": "1"}}, {"pk": {"S": "b"}, "n": {"N": "2"}},
        {"pk": {"S": "c"}, "tags": {"SS": ["x"]}}, {"pk": {"S": "d"}, "name": {"S": "caf\u00e9"}}])


def test_data_pipeline_invalid_json_lines_replay_as_data_pipeline(endpoint: str, tmp_path: Path) -> None:
    folder = tmp_path / "dp"
    folder.mkdir()
    name = "5d2bf1ba-829e-402f-a9a4-2849b974be01"
    bad = [b'{"pk":{"s":"b"},"m":{"m":{"k":{"s":"v"}}},}', b'{"pk":{"s":"c"},"x":{"s":"\xff"}}']
    (folder / name).write_bytes(jl([{"pk": {"s": "a"}}]) + b"\n".join(bad) + b"\n")
    (folder / "manifest").write_bytes(dumps({"name": "DynamoDB-export", "version": 3, "entries": [
        {"url": f"s3://bucket/backups/{name}", "mandatory": True}]}))
    dst = create_table(endpoint)
    dl = tmp_path / "dl.jsonl"
    rep = import_files(str(folder), ref(endpoint, dst), RunOptions(progress="off", dead_letter=str(dl)))
    assert rep.exit_code == 3 and len(scan_all(endpoint, dst)) == 1
    records = [json.loads(ln) for ln in dl.read_text().splitlines()]
    assert [r["origin"] for r in records] == [f"{name}:2", f"{name}:3"]
    assert records[0]["raw"].encode() == bad[0] and base64.b64decode(records[1]["raw_b64"]) == bad[1]
    # Unedited, each is dead-lettered again (its bytes kept exactly), and nothing is written.
    rep = import_files(str(dl), ref(endpoint, dst), RunOptions(progress="off", dead_letter=str(tmp_path / "d2.jsonl")))
    assert rep.exit_code == 3 and rep.dead_lettered == 2 and len(scan_all(endpoint, dst)) == 1
    # Fixed: Data Pipeline items, never {"s": ...} read as a map.
    records[0]["raw"] = records[0]["raw"].replace("}},}", "}}}")
    records[1]["raw"] = records[1]["raw"].replace("\ufffd", "y")
    (tmp_path / "fixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rep = import_files(str(tmp_path / "fixed.jsonl"), ref(endpoint, dst), OFF)
    assert rep.exit_code == 0
    assert as_set(scan_all(endpoint, dst)) == as_set([
        {"pk": {"S": "a"}}, {"pk": {"S": "b"}, "m": {"M": {"k": {"S": "v"}}}}, {"pk": {"S": "c"}, "x": {"S": "y"}}])


# --------------------------------------------------------------------------- detection and errors


def test_plain_json_with_item_keys_metadata_attributes_is_plain(endpoint: str, tmp_path: Path) -> None:
    lines = [{"pk": "a", "Item": {"S": "looks wrapped"}}, {"Item": {"name": {"S": "x"}}, "pk": "b"},
             {"pk": "c", "Keys": {"x": {"S": "1"}}, "Metadata": {"N": "2"}}, {"pk": "d", "n": 1.5}]
    (tmp_path / "plain.json").write_bytes(jl(lines))
    dst = create_table(endpoint)
    rep = import_files(str(tmp_path / "plain.json"), ref(endpoint, dst), OFF)
    got = {i["pk"]["S"]: i for i in scan_all(endpoint, dst)}
    assert got["a"]["Item"] == {"M": {"S": {"S": "looks wrapped"}}} and got["c"]["Metadata"] == {"M": {"N": {"S": "2"}}}
    assert rep.extra["file_formats"] == {"plain.json": "json"} and rep.exit_code == 0


def test_a_file_not_in_the_chosen_format_fails_at_once(endpoint: str, tmp_path: Path) -> None:
    dst = create_table(endpoint)
    (tmp_path / "plain.json").write_bytes(jl([{"pk": f"k{i}"} for i in range(5)]))
    r = cli("import", str(tmp_path / "plain.json"), dst, "--endpoint-url", endpoint, "--input-format",
            "dynamodb-json", "--quiet")
    assert r.returncode == 2 and "not dynamodb-json" in r.stderr and "plain.json" in r.stderr
    assert "try --input-format json" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "junk.json").write_bytes(b"\x00\x01\x02 not data at all\n")
    with pytest.raises(UsageError, match="junk.json: not a format ddbmigrate reads"):
        import_files(str(tmp_path / "junk.json"), ref(endpoint, dst), OFF)
    # An export whose manifest says DYNAMODB_JSON but whose data is not: one line, nothing dead-lettered.
    root = write_export(tmp_path / "liar", "01793772000000-aaaaaaaa", [b"".join(b"pk=%d\n" % i for i in range(150))])
    dl = tmp_path / "dead.jsonl"
    r = cli("import", str(root), dst, "--endpoint-url", endpoint, "--quiet", "--dead-letter", str(dl))
    assert r.returncode == 1 and "not dynamodb-json: its first 100 records all failed to parse" in r.stderr
    assert not dl.exists() or dl.read_text() == ""
    assert scan_all(endpoint, dst) == []
    # The same for an incremental export: nothing is staged, written or dead-lettered.
    write_export(tmp_path / "liar2", "01793775600000-bbbbbbbb", [b"".join(b"pk=%d\n" % i for i in range(150))],
                 incremental=True)
    with pytest.raises(FatalError, match="not dynamodb-json: its first 100 records all failed"):
        import_files(str(tmp_path / "liar2"), ref(endpoint, dst), OFF)
    assert scan_all(endpoint, dst) == []


def test_a_short_file_none_of_whose_lines_is_its_format_fails_whole(endpoint: str, tmp_path: Path) -> None:
    # Fewer than 100 records: a manifest saying DYNAMODB_JSON over Ion lines fails that file with
    # one line, nothing dead-lettered; the other file of the export loads.
    dst = create_table(endpoint)
    ion_lines = b"".join(b'$ion_1_0 {Item:{pk:"i%d"}}\n' % i for i in range(5))
    good = b"".join(b'{"Item":{"pk":{"S":"g%d"}}}\n' % i for i in range(3))
    root = write_export(tmp_path / "liar", "01793772000000-cccccccc", [ion_lines, good])
    dl = tmp_path / "dead.jsonl"
    r = cli("import", str(root), dst, "--endpoint-url", endpoint, "--quiet", "--dead-letter", str(dl))
    assert r.returncode == 1, r.stderr
    assert "not dynamodb-json: its 5 records all failed to parse" in r.stderr and "invalid JSON" in r.stderr
    assert not dl.exists() or dl.read_text() == ""
    assert sorted(i["pk"]["S"] for i in scan_all(endpoint, dst)) == ["g0", "g1", "g2"]
    # The same in an incremental export: nothing staged, written or dead-lettered.
    write_export(tmp_path / "liar2", "01793775600000-dddddddd", [b"not json\n"], incremental=True)
    with pytest.raises(FatalError, match="not dynamodb-json: its 1 record failed to parse"):
        import_files(str(tmp_path / "liar2"), ref(endpoint, create_table(endpoint)), OFF)
    # Lines of the format holding bad items are dead letters, however few.
    bad_items = b'{"Item":{"pk":{"S":"b"},"e":{"SS":[]}}}\n'
    root3 = write_export(tmp_path / "bad", "01793779200000-eeeeeeee", [bad_items])
    rep = import_files(str(root3), ref(endpoint, dst), RunOptions(progress="off", dead_letter=str(tmp_path / "dl3.jsonl")))
    assert rep.dead_lettered == 1 and rep.exit_code == 3


def test_every_csv_header_is_checked_for_the_key_before_anything_is_written(endpoint: str, tmp_path: Path) -> None:
    # The second file lacks the key column: the import stops before writing, naming that file,
    # instead of dead-lettering each of its rows.
    dst = create_table(endpoint)
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.csv").write_text("pk,name\na,x\n")
    (d / "b.csv").write_text("id,name\nc,x\nd,y\n")
    r = cli("import", str(d), dst, "--endpoint-url", endpoint, "--quiet")
    assert r.returncode == 2, r.stderr
    assert "b.csv" in r.stderr and "no column 'pk'" in r.stderr and "Traceback" not in r.stderr
    assert scan_all(endpoint, dst) == []
    (d / "b.csv").write_text("name,pk\nx,c\n")
    r = cli("import", str(d), dst, "--endpoint-url", endpoint, "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(i["pk"]["S"] for i in scan_all(endpoint, dst)) == ["a", "c"]


def test_input_format_lists_every_format() -> None:
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    out = CliRunner().invoke(main, ["import", "--help"], terminal_width=200).output
    for f in ("auto", "dynamodb-json", "json", "ion", "csv", "aws-scan", "dynamodump", "data-pipeline",
              "data-pipeline-hive"):
        assert f in out
    assert "--csv-header" in out and "--csv-delimiter" in out
    assert "dynamodb-json|json|ion" in CliRunner().invoke(main, ["export", "--help"], terminal_width=200).output


# --------------------------------------------------------------------------- export layout exactness


def test_empty_table_export_has_aws_shape_and_s3_summary_fields(endpoint: str, moto_s3: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    rep = export_table(ref(endpoint, src), str(tmp_path / "e"), OFF)
    root = Path(rep.extra["export_path"])
    (entry,) = [json.loads(x) for x in (root / "manifest-files.json").read_text().splitlines()]
    gz = (tmp_path / "e" / entry["dataFileS3Key"]).read_bytes()
    assert entry["itemCount"] == 0 and gzip.decompress(gz) == b"" and entry["md5Checksum"] == b64md5(gz)
    summary = json.loads((root / "manifest-summary.json").read_bytes())
    assert list(summary) == ["version", "exportArn", "startTime", "endTime", "tableArn", "tableId", "exportTime",
                             "s3Bucket", "s3Prefix", "s3SseAlgorithm", "s3SseKmsKeyId", "manifestFilesS3Key",
                             "billedSizeBytes", "itemCount", "outputFormat", "exportType"]
    assert summary["itemCount"] == 0 and summary["s3SseAlgorithm"] is None
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["AWSDynamoDB"]  # nothing else left behind
    dst = create_table(endpoint)
    assert import_files(str(tmp_path / "e"), ref(endpoint, dst), OFF).exit_code == 0
    bucket = unique("bkt")
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    rep = export_table(ref(endpoint, src), f"s3://{bucket}/x", OFF, s3=S3Settings(endpoint_url=moto_s3))
    key = f"x/AWSDynamoDB/{rep.extra['export_id']}/manifest-summary.json"
    summary = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert summary["s3SseAlgorithm"] == "AES256" and summary["s3Bucket"] == bucket
    # A bucket whose default encryption is KMS: the summary says so, with the key.
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/exports"}}]})
    rep = export_table(ref(endpoint, src), f"s3://{bucket}/k", OFF, s3=S3Settings(endpoint_url=moto_s3))
    key = f"k/AWSDynamoDB/{rep.extra['export_id']}/manifest-summary.json"
    summary = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert (summary["s3SseAlgorithm"], summary["s3SseKmsKeyId"]) == ("KMS", "alias/exports")


def test_a_chain_of_exports_with_a_transform_that_rekeys(endpoint: str, tmp_path: Path) -> None:
    """The full export's items are keyed like the incremental records (the source's key), not like
    the target: a transform may move the key."""
    expected = _prefix_with_chain(tmp_path / "p")
    (tmp_path / "t.py").write_text("def tf(item):\n    item['id'] = item.pop('pk')\n    return item\n")
    dst = create_table(endpoint, hash_key=("id", "S"))
    rep = import_files(str(tmp_path / "p"), ref(endpoint, dst), RunOptions(progress="off", transform=f"{tmp_path / 't.py'}:tf"))
    want = [{("id" if k == "pk" else k): v for k, v in i.items()} for i in expected.values()]
    assert as_set(scan_all(endpoint, dst)) == as_set(want) and rep.exit_code == 0


def test_incremental_records_older_than_the_full_export_never_bring_an_item_back(endpoint: str,
                                                                                  tmp_path: Path) -> None:
    base = tmp_path / "overlap"
    write_export(base, "01793772000000-aaaaaaaa", [jl([{"Item": {"pk": {"S": "a"}, "v": {"S": "snapshot"}}}])])
    write_export(base, "01793768400000-bbbbbbbb", [jl([
        rec("ghost", T6 - 100, {"v": {"S": "deleted before the snapshot"}}),
        rec("a", T6 - 50, {"v": {"S": "older than the snapshot"}}),
        rec("b", T6 + 10, {"v": {"S": "after"}}),
    ])], incremental=True, window=("2026-11-04T05:00:00.000Z", "2026-11-04T07:00:00.000Z"))
    dst = create_table(endpoint)
    rep = import_files(str(base), ref(endpoint, dst), OFF)
    assert {i["pk"]["S"]: i["v"]["S"] for i in scan_all(endpoint, dst)} == {"a": "snapshot", "b": "after"}
    assert rep.counters["read"] == 4 and rep.counters["collapsed"] == 2 and rep.balanced()
