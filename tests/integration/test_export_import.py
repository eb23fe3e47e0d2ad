"""export / import against the real DynamoDB Local (and S3 as a moto server process on loopback).

The AWS-layout fixtures are built here byte for byte with gzip + hashlib, independently of
ddbmigrate's own writer, so a bug in the writer cannot hide a bug in the reader.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.errors import FingerprintMismatchError, FatalError, UsageError
from ddbmigrate.jobs.export import export_table
from ddbmigrate.jobs.import_files import import_files
from ddbmigrate.core.items import number_problem
from ddbmigrate.storage.stores import S3Settings
from ddbmigrate.testing.proxy import Faults, FaultProxy
from support import as_set, create_table, every_type_items, put_items, scan_all, unique

pytestmark = pytest.mark.integration

OFF = RunOptions(progress="off")


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def opts(**kw: Any) -> RunOptions:
    return RunOptions(progress="off", **kw)


def cli(*args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------- hand-built AWS exports


def aws_export(folder: Path, files: List[List[Any]], *, checksum: str = ".md5", incremental: bool = False,
               export_id: str = "01700000000000-abcd1234", prefix: str = "backups/2026") -> Path:
    """An export folder exactly as DynamoDB writes it (lines may be dicts or raw bytes)."""
    root = folder / "AWSDynamoDB" / export_id
    (root / "data").mkdir(parents=True)
    (root / "_started").write_bytes(b"")
    entries = []
    total = 0
    for i, lines in enumerate(files):
        name = f"{i:02d}" + "abcdefghijklmnopqrstuvwx"
        raw = b"".join((ln if isinstance(ln, bytes) else dumps(ln)) + b"\n" for ln in lines)
        gz = gzip.compress(raw)
        (root / "data" / f"{name}.json.gz").write_bytes(gz)
        entries.append({"itemCount": len(lines), "md5Checksum": b64md5(gz), "etag": hashlib.md5(gz).hexdigest(),
                        "dataFileS3Key": f"{prefix}/AWSDynamoDB/{export_id}/data/{name}.json.gz"})
        total += len(lines)
    mf = b"".join(dumps(e) + b"\n" for e in entries)
    (root / "manifest-files.json").write_bytes(mf)
    (root / f"manifest-files{checksum}").write_bytes(b64md5(mf).encode())
    summary: Dict[str, Any] = {
        "version": "2020-06-30",
        "exportArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/Src/export/{export_id}",
        "startTime": "2026-11-04T07:28:34.028Z", "endTime": "2026-11-04T07:33:43.897Z",
        "tableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/Src",
        "tableId": "12345a12-abcd-123a-ab12-1234abc12345", "exportTime": "2026-11-04T07:28:34.028Z",
        "s3Bucket": "bucket", "s3Prefix": prefix, "s3SseAlgorithm": "AES256", "s3SseKmsKeyId": None,
        "manifestFilesS3Key": f"{prefix}/AWSDynamoDB/{export_id}/manifest-files.json",
        "billedSizeBytes": 0, "itemCount": total, "outputFormat": "DYNAMODB_JSON",
    }
    if incremental:
        summary.update({"exportType": "INCREMENTAL_EXPORT", "exportFromTime": "2026-11-04T06:00:00.000Z",
                        "exportToTime": "2026-11-04T07:00:00.000Z", "outputView": "NEW_AND_OLD_IMAGES"})
    sb = dumps(summary)
    (root / "manifest-summary.json").write_bytes(sb)
    (root / f"manifest-summary{checksum}").write_bytes(b64md5(sb).encode())
    return root


def manifest_entries(root: Path) -> List[Dict[str, Any]]:
    return [json.loads(x) for x in (root / "manifest-files.json").read_text().splitlines()]


def rewrite_manifest(root: Path, entries: List[Dict[str, Any]], checksum: str = ".md5") -> None:
    mf = b"".join(dumps(e) + b"\n" for e in entries)
    (root / "manifest-files.json").write_bytes(mf)
    (root / f"manifest-files{checksum}").write_bytes(b64md5(mf).encode())


def data_file(root: Path, i: int) -> Path:
    return root / "data" / (f"{i:02d}" + "abcdefghijklmnopqrstuvwx.json.gz")


def gen_items(n: int, prefix: str = "i") -> List[Dict[str, Any]]:
    return [{"pk": {"S": f"{prefix}{i:05d}"}, "n": {"N": f"{i}.25"}, "s": {"S": "x" * (i % 50)}} for i in range(n)]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("segments", [1, 3])
def test_round_trip_every_type_and_layout(endpoint: str, tmp_path: Path, segments: int) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    items = every_type_items() + gen_items(200)
    put_items(endpoint, src, items)
    rep = export_table(ref(endpoint, src), str(tmp_path / "out"), opts(segments=segments), file_size=100_000)
    assert rep.written == len(items) and rep.balanced()
    root = Path(rep.extra["export_path"])
    assert root.parent.name == "AWSDynamoDB" and root.parent.parent == tmp_path / "out"
    names = sorted(p.name for p in root.iterdir())
    assert names == ["_started", "data", "manifest-files.json", "manifest-files.md5", "manifest-summary.json",
                     "manifest-summary.md5"]
    summary = json.loads((root / "manifest-summary.json").read_bytes())
    for k in ("version", "exportArn", "startTime", "endTime", "tableArn", "exportTime", "s3Bucket", "s3Prefix",
              "manifestFilesS3Key", "billedSizeBytes", "itemCount", "outputFormat"):
        assert k in summary
    assert summary["version"] == "2020-06-30" and summary["outputFormat"] == "DYNAMODB_JSON"
    assert summary["itemCount"] == len(items) and summary["exportArn"].endswith("/export/" + root.name)
    assert (root / "manifest-summary.md5").read_bytes() == b64md5((root / "manifest-summary.json").read_bytes()).encode()
    assert (root / "manifest-files.md5").read_bytes() == b64md5((root / "manifest-files.json").read_bytes()).encode()
    entries = manifest_entries(root)
    assert len(entries) > 1  # rolled over by size
    lines_seen = []
    for e in entries:
        path = tmp_path / "out" / e["dataFileS3Key"]
        gz = path.read_bytes()
        assert e["md5Checksum"] == b64md5(gz) and e["etag"] == hashlib.md5(gz).hexdigest()
        lines = gzip.decompress(gz).splitlines()
        assert e["itemCount"] == len(lines)
        lines_seen += [json.loads(x)["Item"] for x in lines]
    assert as_set(lines_seen) == as_set(items)
    assert sum(e["itemCount"] for e in entries) == summary["itemCount"]

    back = import_files(str(tmp_path / "out"), ref(endpoint, dst), OFF)
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    assert back.read == len(items) and back.written == len(items) and back.balanced() and back.exit_code == 0


def _number() -> st.SearchStrategy[str]:
    return st.builds(lambda m, e: f"{m}E{e}", st.integers(-10 ** 38 + 1, 10 ** 38 - 1), st.integers(-90, 80)) \
        .filter(lambda s: number_problem(s) is None)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


_scalar = st.one_of(
    st.text(max_size=20).map(lambda s: {"S": s}),
    _number().map(lambda n: {"N": n}),
    st.binary(max_size=16).map(lambda b: {"B": _b64(b)}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.sets(st.text(max_size=8), min_size=1, max_size=4).map(lambda s: {"SS": sorted(s)}),
    st.sets(st.integers(-10 ** 6, 10 ** 6), min_size=1, max_size=4).map(lambda s: {"NS": [str(x) for x in s]}),
    st.sets(st.binary(min_size=1, max_size=8), min_size=1, max_size=3).map(lambda s: {"BS": [_b64(x) for x in s]}),
)
_value = st.recursive(_scalar, lambda kids: st.one_of(
    st.lists(kids, max_size=3).map(lambda v: {"L": v}),
    st.dictionaries(st.text(min_size=1, max_size=6), kids, max_size=3).map(lambda v: {"M": v})), max_leaves=8)
_items = st.lists(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k != "pk"), _value, max_size=4),
                  min_size=1, max_size=8)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies=_items)
def test_round_trip_is_lossless_for_generated_items(endpoint: str, tmp_path_factory: Any, bodies: List[Dict[str, Any]]) -> None:
    items = [{"pk": {"S": f"k{i}"}, **b} for i, b in enumerate(bodies)]
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items)
    out = tmp_path_factory.mktemp("hyp")
    rep = export_table(ref(endpoint, src), str(out), opts(segments=2))
    import_files(rep.extra["export_path"], ref(endpoint, dst), OFF)
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src)) == as_set(items)


def test_json_format_export_reads_as_plain_values(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    items = [{"pk": {"S": "a"}, "n": {"N": "12345678901234567890123456789012345678"}, "f": {"N": "-0.000001"},
              "m": {"M": {"l": {"L": [{"N": "1"}, {"S": "x"}, {"NULL": True}, {"BOOL": True}]}}},
              "b": {"B": _b64(b"\x00\xff")}, "ss": {"SS": ["q"]}}]
    put_items(endpoint, src, items)
    rep = export_table(ref(endpoint, src), str(tmp_path / "j"), opts(), fmt="json")
    root = Path(rep.extra["export_path"])
    (entry,) = manifest_entries(root)
    line = gzip.decompress((tmp_path / "j" / entry["dataFileS3Key"]).read_bytes()).decode().strip()
    assert line.startswith("{") and '"Item"' not in line
    assert '"n":12345678901234567890123456789012345678' in line and '"f":-0.000001' in line
    assert '"b":"AP8="' in line and '"ss":["q"]' in line
    assert json.loads(line)["m"] == {"l": [1, "x", None, True]}
    import_files(str(root), ref(endpoint, dst), OFF)
    (got,) = scan_all(endpoint, dst)
    assert got["n"] == {"N": "12345678901234567890123456789012345678"} and got["f"]["N"] in ("-0.000001", "-1E-6")
    assert got["b"] == {"S": "AP8="} and got["ss"] == {"L": [{"S": "q"}]}  # documented: B and sets are not kept


# --------------------------------------------------------------------------- hand-built AWS layout


@pytest.mark.parametrize("checksum", [".md5", ".checksum"])
def test_hand_built_full_export_imports(endpoint: str, tmp_path: Path, checksum: str) -> None:
    items = every_type_items() + gen_items(30)
    files = [[{"Item": it} for it in items[:20]], [{"Item": it} for it in items[20:]], []]
    aws_export(tmp_path / "exp", files, checksum=checksum)
    dst = create_table(endpoint)
    rep = import_files(str(tmp_path / "exp"), ref(endpoint, dst), OFF)
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    assert rep.read == len(items) and rep.written == len(items) and rep.extra["source_kind"] == "export"


def _rec(pk: str, ts: int, new: Optional[Dict[str, Any]], old: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    r: Dict[str, Any] = {"Metadata": {"WriteTimestampMicros": {"N": str(ts)}}, "Keys": {"pk": {"S": pk}}}
    if new is not None:
        r["NewImage"] = {"pk": {"S": pk}, **new}
    if old is not None:
        r["OldImage"] = {"pk": {"S": pk}, **old}
    return r


@pytest.mark.parametrize("checksum", [".md5", ".checksum"])
def test_hand_built_incremental_export_applies_newest_per_key(endpoint: str, tmp_path: Path, checksum: str) -> None:
    dst = create_table(endpoint)
    put_items(endpoint, dst, [{"pk": {"S": "c"}, "v": {"S": "old"}}, {"pk": {"S": "keep"}, "v": {"S": "same"}}])
    t = 1_700_000_000_000_000
    file1 = [
        _rec("a", t + 200, {"v": {"S": "a2"}}, {"v": {"S": "a1"}}),  # newest a, in the first file
        _rec("b", t + 100, {"v": {"S": "b1"}}),
        _rec("d", t + 100, None, {"v": {"S": "d0"}}),  # delete, older than the put in file2
        _rec("e", t + 300, None, {"v": {"S": "e1"}}),  # delete newer than the put below
    ]
    file2 = [
        _rec("a", t + 100, {"v": {"S": "a1"}}),
        _rec("b", t + 300, None, {"v": {"S": "b1"}}),  # b deleted at the end
        _rec("c", t + 50, None, {"v": {"S": "old"}}),  # existing item deleted
        _rec("d", t + 150, {"v": {"S": "d2"}}),
        _rec("e", t + 200, {"v": {"S": "e1"}}),
        _rec("f", t + 10, {"v": {"N": "1"}}),
    ]
    aws_export(tmp_path / "inc", [file1, file2], checksum=checksum, incremental=True)
    rep = import_files(str(tmp_path / "inc"), ref(endpoint, dst), OFF)
    got = {i["pk"]["S"]: i["v"] for i in scan_all(endpoint, dst)}
    assert got == {"a": {"S": "a2"}, "d": {"S": "d2"}, "f": {"N": "1"}, "keep": {"S": "same"}}
    c = rep.counters
    assert c["read"] == 10 and c["collapsed"] == 4 and c["written"] == 3 and c["deleted"] == 3
    assert rep.balanced() and rep.extra["source_kind"] == "incremental"


def test_an_incremental_import_deletes_what_a_killed_one_staged(endpoint: str, tmp_path: Path) -> None:
    """The records of an incremental export are staged on disk; a kill -9 left them there for good."""
    from ddbmigrate.sources.incremental import STAGE_PREFIX
    from ddbmigrate.state import leftovers

    dst = create_table(endpoint)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    spill = tmp_path / "spill"
    left = spill / f"{STAGE_PREFIX}{leftovers.HOST}-{gone.pid}-k9"
    left.mkdir(parents=True)
    (left / "p0000.jsonl").write_bytes(b"{}\n" * 1000)
    aws_export(tmp_path / "inc", [[_rec("a", 1_700_000_000_000_000, {"v": {"S": "a1"}})]], incremental=True)
    rep = import_files(str(tmp_path / "inc"), ref(endpoint, dst), OFF, spill_dir=str(spill))
    assert rep.written == 1 and [i["pk"]["S"] for i in scan_all(endpoint, dst)] == ["a"]
    assert list(spill.iterdir()) == []  # the killed one's staging and this one's both gone


def test_an_incremental_record_whose_image_has_another_key_is_a_dead_letter(endpoint: str, tmp_path: Path) -> None:
    """Before: a record with Keys {pk: a} and NewImage {pk: ZZZ} wrote ZZZ, and a (older, from a
    record before it) was neither written nor deleted, with nothing dead-lettered and exit 0."""
    dst = create_table(endpoint)
    t = 1_700_000_000_000_000
    odd = _rec("a", t + 300, {"v": {"S": "a3"}})
    odd["NewImage"]["pk"] = {"S": "ZZZ"}
    old_odd = _rec("b", t + 300, None, {"v": {"S": "b1"}})
    old_odd["OldImage"] = {"v": {"S": "b1"}}  # no key at all
    aws_export(tmp_path / "inc", [[_rec("a", t + 100, {"v": {"S": "a1"}}), _rec("b", t + 100, {"v": {"S": "b1"}}),
                                   odd, old_odd]], incremental=True)
    rep = import_files(str(tmp_path / "inc"), ref(endpoint, dst), opts(dead_letter=str(tmp_path / "dl.jsonl")))
    got = {i["pk"]["S"]: i["v"]["S"] for i in scan_all(endpoint, dst)}
    assert got == {"a": "a1", "b": "b1"}
    recs = [json.loads(x) for x in (tmp_path / "dl.jsonl").read_text().splitlines()]
    assert sorted(r["reason"] for r in recs) == ["NewImage's key attribute 'pk' differs from Keys",
                                                 "OldImage lacks the key attribute 'pk' that Keys gives"]
    assert rep.counters["dead_lettered"] == 2 and rep.balanced()


# --------------------------------------------------------------------------- malformed input

BAD_LINES = [
    # (raw line, words expected in the dead-letter reason)
    (b'{"Item": {"pk": {"S": "broken"}', "invalid JSON"),
    (dumps({"Item": {"pk": {"S": "x1"}, "a": {"S": 1}}}), "S must be a string"),
    (dumps({"Item": {"pk": {"S": "x2"}, "a": {"Q": "1"}}}), "unknown type descriptor"),
    (dumps({"Item": {"pk": {"S": "x3"}, "b": {"B": "not base64!"}}}), "invalid base64"),
    (dumps({"Item": {"other": {"S": "x4"}}}), "missing key attribute 'pk'"),
    (dumps({"Item": {"pk": {"N": "5"}}}), "must be of type S"),
    (dumps({"Item": {"pk": {"S": "x6"}, "big": {"S": "y" * (401 * 1024)}}}), "DynamoDB's limit"),
    (dumps({"Item": {"pk": {"S": "x7"}, "n": {"N": "1" * 39}}}), "39 significant digits"),
    (dumps({"Item": {"pk": {"S": "x8"}, "ss": {"SS": []}}}), "empty"),
    (b"42", "expected a JSON object"),
    (dumps({"Item": {"pk": {"S": "x9"}, "n": {"N": "1e200"}}}), "out of DynamoDB's range"),
]


def test_every_bad_line_kind_is_dead_lettered_with_file_and_line(endpoint: str, tmp_path: Path) -> None:
    good = gen_items(12)
    lines: List[bytes] = []
    expected: Dict[int, str] = {}
    for i, g in enumerate(good):
        lines.append(dumps({"Item": g}))
        if i < len(BAD_LINES):
            lines.append(BAD_LINES[i][0])
            expected[len(lines)] = BAD_LINES[i][1]
    lines.append(b"x" * (9 * 1024 * 1024))  # one line longer than the line limit
    expected[len(lines)] = "line limit"
    lines.append(b"")  # blank lines are not items
    (tmp_path / "in.json").write_bytes(b"\n".join(lines) + b"\n")
    dst = create_table(endpoint)
    dl, rp = tmp_path / "dead.jsonl", tmp_path / "report.json"
    r = cli("import", str(tmp_path / "in.json"), dst, "--endpoint-url", endpoint, "--dead-letter", str(dl),
            "--report", str(rp), "--quiet")
    assert r.returncode == 3, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(good)
    dead = [json.loads(x) for x in dl.read_text().splitlines()]
    by_line = {int(d["origin"].rsplit(":", 1)[1]): d for d in dead}
    assert all(d["origin"].startswith("in.json:") for d in dead)
    assert set(by_line) == set(expected)
    for ln, words in expected.items():
        assert words in by_line[ln]["reason"], (ln, by_line[ln]["reason"])
    report = json.loads(rp.read_text())
    assert report["counters"]["written"] == len(good) and report["counters"]["dead_lettered"] == len(expected)
    assert report["balanced"]


def test_plain_json_lines_and_array_keep_full_precision(endpoint: str, tmp_path: Path) -> None:
    dst = create_table(endpoint)
    (tmp_path / "plain.jsonl").write_text(
        '{"pk": "a", "n": 0.1000000000000000000000000000000000001, "i": 12345678901234567890123456789012345678}\n'
        '{"pk": "b", "l": [1, {"x": null}], "t": true}\n'
        '{"pk": "c", "n": 123456789012345678901234567890123456789}\n'  # 39 digits
        '{"pk": 5}\n'
        '{"pk": "d", "n": NaN}\n')
    (tmp_path / "arr.json").write_text('[\n {"pk": "e", "n": 1.50},\n {"pk": "f", "m": {"k": [2.5]}},\n {"nope": 1}\n]\n')
    dl = tmp_path / "dead.jsonl"
    rep = import_files(str(tmp_path / "*.json*"), ref(endpoint, dst), opts(dead_letter=str(dl)))
    got = {i["pk"]["S"]: i for i in scan_all(endpoint, dst)}
    assert sorted(got) == ["a", "b", "e", "f"]
    assert got["a"]["n"] == {"N": "0.1000000000000000000000000000000000001"}
    assert got["a"]["i"] == {"N": "12345678901234567890123456789012345678"}
    assert got["b"]["l"] == {"L": [{"N": "1"}, {"M": {"x": {"NULL": True}}}]}
    assert got["e"]["n"]["N"] in ("1.5", "1.50") and got["f"]["m"] == {"M": {"k": {"L": [{"N": "2.5"}]}}}
    dead = {d["origin"]: d["reason"] for d in map(json.loads, dl.read_text().splitlines())}
    assert set(dead) == {"plain.jsonl:3", "plain.jsonl:4", "plain.jsonl:5", "arr.json:4"}
    assert "39 significant digits" in dead["plain.jsonl:3"] and "must be of type S" in dead["plain.jsonl:4"]
    assert "missing key" in dead["arr.json:4"]
    assert rep.exit_code == 3 and rep.balanced()


def test_plain_file_versions_of_a_key_far_apart_land_in_file_order(endpoint: str, tmp_path: Path) -> None:
    """A key repeated in far-apart chunks (1,000 lines each) ends with its last line's version."""
    dst = create_table(endpoint)
    rounds, keys = 12, 1000
    with open(tmp_path / "versions.jsonl", "w") as fh:
        for r in range(rounds):
            for k in range(keys):
                fh.write(json.dumps({"pk": f"k{k}", "v": r, "pad": "x" * (k % 50)}) + "\n")
    # Throttled and partly unprocessed batches are retried after a back-off while other writers
    # go on: without per-key order an older version would often land last. A given write rate
    # (far above what Local does) keeps the found-rate limiter out of it: these throttles are
    # random, not a capacity, and what the limiter makes of them is tested on its own.
    with FaultProxy(endpoint, seed=3, faults=Faults(throttle=0.05, unprocessed=0.1, writes_only=True)) as proxy:
        rep = import_files(str(tmp_path / "versions.jsonl"), ref(proxy.url, dst),
                           opts(writers=16, max_write_units=200_000))
    got = {i["pk"]["S"]: i["v"]["N"] for i in scan_all(endpoint, dst)}
    assert got == {f"k{k}": str(rounds - 1) for k in range(keys)}
    assert rep.exit_code == 0 and rep.balanced() and rep.counters["written"] == rounds * keys


def test_skip_existing_import_keeps_the_first_version_of_a_key(endpoint: str, tmp_path: Path) -> None:
    """A conditional mode never replaces an item: the first line of a key stays, near or far."""
    dst = create_table(endpoint)
    lines = [{"pk": "dup", "v": 0}, {"pk": "dup", "v": 1}]  # one chunk: collapsed to the first
    lines += [{"pk": f"k{i}", "v": 0} for i in range(1500)]
    lines += [{"pk": "dup", "v": 2}, {"pk": "k7", "v": 9}]  # a later chunk: skipped as existing
    (tmp_path / "dups.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rep = import_files(str(tmp_path / "dups.jsonl"), ref(endpoint, dst), opts(mode="skip-existing"))
    got = {i["pk"]["S"]: i["v"]["N"] for i in scan_all(endpoint, dst)}
    assert got == {"dup": "0", **{f"k{i}": "0" for i in range(1500)}}
    assert rep.counters["collapsed"] == 1 and rep.counters["skipped_existing"] == 2
    assert rep.counters["written"] == 1501 and rep.balanced()


def test_dead_letter_file_is_replayable(endpoint: str, tmp_path: Path) -> None:
    (tmp_path / "in.json").write_bytes(dumps({"Item": {"pk": {"N": "7"}, "v": {"S": "x"}}}) + b"\n"
                                       + dumps({"Item": {"pk": {"S": "s"}}}) + b"\n")
    s_table = create_table(endpoint)
    dl = tmp_path / "dead.jsonl"
    import_files(str(tmp_path / "in.json"), ref(endpoint, s_table), opts(dead_letter=str(dl)))
    n_table = create_table(endpoint, hash_key=("pk", "N"))
    rep = import_files(str(dl), ref(endpoint, n_table), OFF)
    assert scan_all(endpoint, n_table) == [{"pk": {"N": "7"}, "v": {"S": "x"}}]
    assert rep.written == 1 and rep.dead_lettered == 0


def _dead(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _fix_raw(path: Path, old: str, new: str) -> None:
    recs = _dead(path)
    for r in recs:
        r["raw"] = r["raw"].replace(old, new)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_dead_letters_of_lines_that_did_not_parse_replay_after_a_fix(endpoint: str, tmp_path: Path) -> None:
    # A rejected line is kept whole (a 300 KB one included), an Ion line as Ion, a CSV row as the
    # item it made: fixed in the dead-letter file, each replays into the table.
    table = create_table(endpoint)
    big = "x" * 300_000
    (tmp_path / "big.json").write_bytes(dumps({"Item": {"pk": {"S": "big"}, "s": {"S": big}, "e": {"SS": []}}}) + b"\n")
    (tmp_path / "t.ion").write_bytes(b'{Item:{pk:"ion",s:$dynamodb_SS::[]}}\n')
    for name in ("big.json", "t.ion"):
        dl = tmp_path / f"{name}.dead.jsonl"
        rep = import_files(str(tmp_path / name), ref(endpoint, table), opts(dead_letter=str(dl)))
        assert rep.dead_lettered == 1
        (rec,) = _dead(dl)
        assert "empty" in rec["reason"] and rec["item"] is None and "raw_truncated" not in rec
        # Replayed as it is, the record fails for its own reason, not as a line cut short.
        again = tmp_path / f"{name}.again.jsonl"
        rep = import_files(str(dl), ref(endpoint, table), opts(dead_letter=str(again)))
        assert rep.dead_lettered == 1 and "empty" in _dead(again)[0]["reason"], _dead(again)[0]["reason"]
        assert _dead(again)[0]["origin"] == f"{name}.dead.jsonl:1 (from {name}:1)"  # where it came from too
        twice = tmp_path / f"{name}.twice.jsonl"
        import_files(str(again), ref(endpoint, table), opts(dead_letter=str(twice)))
        assert _dead(twice)[0]["origin"] == f"{name}.again.jsonl:1 (from {name}:1)"
    _fix_raw(tmp_path / "big.json.dead.jsonl", '"SS":[]', '"SS":["fixed"]')
    _fix_raw(tmp_path / "t.ion.dead.jsonl", "$dynamodb_SS::[]", '$dynamodb_SS::["fixed"]')
    for name in ("big.json", "t.ion"):
        rep = import_files(str(tmp_path / f"{name}.dead.jsonl"), ref(endpoint, table), OFF)
        assert rep.written == 1 and rep.dead_lettered == 0
    got = {i["pk"]["S"]: i for i in scan_all(endpoint, table)}
    assert got["big"] == {"pk": {"S": "big"}, "s": {"S": big}, "e": {"SS": ["fixed"]}}
    assert got["ion"] == {"pk": {"S": "ion"}, "s": {"SS": ["fixed"]}}

    n_table = create_table(endpoint, hash_key=("pk", "N"))
    (tmp_path / "rows.csv").write_text('pk,name\n1,"a, b"\nnot-a-number,"c ""d"""\n2,e,extra\n')
    dl = tmp_path / "csv.dead.jsonl"
    rep = import_files(str(tmp_path / "rows.csv"), ref(endpoint, n_table), opts(dead_letter=str(dl)))
    assert rep.written == 1 and rep.dead_lettered == 2
    bad_number, extra = _dead(dl)
    assert json.loads(bad_number["raw"]) == {"pk": {"N": "not-a-number"}, "name": {"S": 'c "d"'}}
    assert extra["raw"] == "2,e,extra" and "3 values" in extra["reason"]
    _fix_raw(dl, "not-a-number", "3")
    rep = import_files(str(dl), ref(endpoint, n_table), opts(dead_letter=str(tmp_path / "csv.again.jsonl")))
    assert rep.written == 1 and rep.dead_lettered == 1
    assert sorted(scan_all(endpoint, n_table), key=lambda i: i["pk"]["N"]) == [
        {"pk": {"N": "1"}, "name": {"S": "a, b"}}, {"pk": {"N": "3"}, "name": {"S": 'c "d"'}}]


def test_a_raw_line_too_long_for_its_dead_letter_says_so_on_replay() -> None:
    from ddbmigrate.sources.lines import parse_item
    from ddbmigrate.state.deadletter import MAX_RAW, dead_letter_line

    raw = '{"pk": {"S": "' + "y" * MAX_RAW + '"}, "e": {"SS": []}}'
    rec = json.loads(dead_letter_line(None, "empty set", origin="f.json:9", raw=raw))
    assert rec["raw_truncated"] is True and rec["raw_length"] == len(raw) and len(rec["raw"]) == MAX_RAW
    item, reason, _ = parse_item(dead_letter_line(None, "empty set", origin="f.json:9", raw=raw).rstrip(), "auto")
    assert item is None and reason is not None and "first 2,000,000 characters" in reason and "f.json:9" in reason


def test_an_export_to_a_file_is_one_line_before_any_checkpoint(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    put_items(endpoint, src, gen_items(5))
    (tmp_path / "afile").write_text("hi")
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "export", src, "afile", "--endpoint-url", endpoint, "-q"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "is a file, not a folder" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / ".ddbmigrate").exists() or not list((tmp_path / ".ddbmigrate").glob("*.checkpoint.json"))
    (tmp_path / "afile").unlink()
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "export", src, "afile", "--endpoint-url", endpoint, "-q"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr  # no --restart needed


def _two_file_export(tmp_path: Path) -> tuple:
    f1, f2 = gen_items(40, "a"), gen_items(300, "b")
    root = aws_export(tmp_path / "exp", [[{"Item": i} for i in f1], [{"Item": i} for i in f2]])
    return root, f1, f2


def _set_file(root: Path, i: int, data: bytes, fix_md5: bool = True) -> None:
    data_file(root, i).write_bytes(data)
    if fix_md5:  # keep the manifest consistent so only the gzip stream is at fault
        entries = manifest_entries(root)
        entries[i]["md5Checksum"] = b64md5(data)
        rewrite_manifest(root, entries)


@pytest.mark.parametrize("fault", ["corrupt-gzip", "truncated-gzip", "md5-mismatch", "count-mismatch"])
def test_bad_file_fails_before_any_of_its_items_is_written(endpoint: str, tmp_path: Path, fault: str) -> None:
    root, f1, f2 = _two_file_export(tmp_path)
    gz = data_file(root, 1).read_bytes()
    if fault == "corrupt-gzip":
        bad = bytearray(gz)
        for j in range(len(bad) // 2, len(bad) // 2 + 8):
            bad[j] ^= 0xFF
        _set_file(root, 1, bytes(bad))
    elif fault == "truncated-gzip":
        _set_file(root, 1, gz[: len(gz) * 2 // 3])
    elif fault == "md5-mismatch":
        entries = manifest_entries(root)
        entries[1]["md5Checksum"] = b64md5(b"something else")
        rewrite_manifest(root, entries)
    else:
        entries = manifest_entries(root)
        entries[1]["itemCount"] += 1
        rewrite_manifest(root, entries)
    dst = create_table(endpoint)
    rp = tmp_path / "report.json"
    r = cli("import", str(root), dst, "--endpoint-url", endpoint, "--report", str(rp), "--quiet")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and data_file(root, 1).name in r.stderr
    assert {"corrupt-gzip": "corrupt", "truncated-gzip": "corrupt", "md5-mismatch": "md5Checksum",
            "count-mismatch": "itemCount"}[fault] in r.stderr
    assert "0 items of this file were loaded" in r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(f1)  # the good file loaded, nothing of the bad one
    failed = json.loads(rp.read_text())["extra"]["failed_files"]
    assert [f["unit"] for f in failed] == ["data/" + data_file(root, 1).name] and failed[0]["handed_on"] == 0


def test_no_validate_reports_exactly_what_was_loaded(endpoint: str, tmp_path: Path) -> None:
    root, f1, f2 = _two_file_export(tmp_path)
    gz = data_file(root, 1).read_bytes()
    cut = gz[: len(gz) * 2 // 3]
    _set_file(root, 1, cut)
    # What a decompressor gets out of the truncated stream: every complete line is an item.
    complete = zlib.decompressobj(31).decompress(cut).count(b"\n")
    assert 0 < complete < len(f2)
    dst = create_table(endpoint)
    with pytest.raises(FatalError) as ei:
        import_files(str(root), ref(endpoint, dst), OFF, validate=False)
    assert f"({complete} items of this file were loaded)" in ei.value.message
    assert as_set(scan_all(endpoint, dst)) == as_set(f1 + f2[:complete])
    rep = ei.value.report  # type: ignore[attr-defined]
    assert rep.written == len(f1) + complete and rep.balanced()


def test_resume_after_fixing_a_bad_file_loads_only_the_rest(endpoint: str, tmp_path: Path) -> None:
    root, f1, f2 = _two_file_export(tmp_path)
    good = data_file(root, 1).read_bytes()
    _set_file(root, 1, good[:100])
    dst = create_table(endpoint)
    with pytest.raises(FatalError):
        import_files(str(root), ref(endpoint, dst), OFF)
    _set_file(root, 1, good)
    # The file was replaced: without --force that is refused (a rewrite with other records would
    # lose some), with it the fixed file is read on from where the bad one stopped.
    with pytest.raises(FingerprintMismatchError, match=r"the input files changed \(.*rewritten\)"):
        import_files(str(root), ref(endpoint, dst), opts(resume=True))
    rep = import_files(str(root), ref(endpoint, dst), opts(resume=True, force=True))
    assert as_set(scan_all(endpoint, dst)) == as_set(f1 + f2)
    assert rep.read == len(f1) + len(f2) and rep.written == len(f1) + len(f2) and rep.balanced()


def test_export_level_faults_stop_before_writing(endpoint: str, tmp_path: Path) -> None:
    dst = create_table(endpoint)
    root, _, _ = _two_file_export(tmp_path)
    (root / "manifest-files.md5").write_bytes(b64md5(b"tampered").encode())
    with pytest.raises(FatalError, match="does not match its manifest-files.md5"):
        import_files(str(tmp_path / "exp"), ref(endpoint, dst), OFF)
    root2 = aws_export(tmp_path / "exp2", [[{"Item": i} for i in gen_items(3)]])
    data_file(root2, 0).unlink()
    with pytest.raises(FatalError, match="is missing"):
        import_files(str(root2), ref(endpoint, dst), OFF)
    root3 = aws_export(tmp_path / "exp3", [[{"Item": i} for i in gen_items(3)]])
    (root3 / "manifest-summary.json").unlink()
    r = cli("import", str(tmp_path / "exp3"), dst, "--endpoint-url", endpoint, "--quiet")
    assert r.returncode == 1 and "unfinished export" in r.stderr and "Traceback" not in r.stderr
    assert scan_all(endpoint, dst) == []


def test_max_errors_stops_the_import(endpoint: str, tmp_path: Path) -> None:
    # Every other item has a key of the wrong type: enough to stop the job, not every item (a
    # file where no item fits is refused before any write: test_mismatched_target_exits_2...).
    lines = [dumps({"Item": {"pk": {"N": str(i)} if i % 2 else {"S": str(i)}}}) for i in range(50)]
    (tmp_path / "bad.json").write_bytes(b"\n".join(lines) + b"\n")
    dst = create_table(endpoint)
    r = cli("import", str(tmp_path / "bad.json"), dst, "--endpoint-url", endpoint, "--max-errors", "5", "--quiet")
    assert r.returncode == 1 and "--max-errors 5" in r.stderr


# --------------------------------------------------------------------------- options, resume


def test_transform_mode_and_create_target_from_spec(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    put_items(endpoint, src, gen_items(30))
    rep = export_table(ref(endpoint, src), str(tmp_path / "e"), opts(segments=2))
    (tmp_path / "t.py").write_text("def tf(item):\n    item['id'] = item.pop('pk')\n    item['n'] = item['n'] * 2\n"
                                   "    return item if item['id'] != 'i00003' else None\n")
    (tmp_path / "spec.yaml").write_text("AttributeDefinitions:\n  - {AttributeName: id, AttributeType: S}\n"
                                        "KeySchema:\n  - {AttributeName: id, KeyType: HASH}\n")
    dst = unique()
    put_first = [{"id": {"S": "i00001"}, "n": {"N": "-1"}}]
    r = cli("import", rep.extra["export_path"], dst, "--endpoint-url", endpoint, "--create-target", "--spec",
            str(tmp_path / "spec.yaml"), "--transform", f"{tmp_path / 't.py'}:tf", "--quiet")
    assert r.returncode == 0, r.stderr
    got = {i["id"]["S"]: i["n"]["N"] for i in scan_all(endpoint, dst)}
    assert len(got) == 29 and got["i00002"] == "4.5" and "i00003" not in got
    put_items(endpoint, dst, put_first)
    r = cli("import", rep.extra["export_path"], dst, "--endpoint-url", endpoint, "--transform",
            f"{tmp_path / 't.py'}:tf", "--mode", "skip-existing", "--restart", "--quiet")
    assert r.returncode == 0, r.stderr
    assert {i["id"]["S"]: i["n"]["N"] for i in scan_all(endpoint, dst)}["i00001"] == "-1"


def test_import_resumes_inside_files_after_kill(endpoint: str, tmp_path: Path) -> None:
    items = gen_items(1200)
    lines = b"".join(dumps({"Item": i}) + b"\n" for i in items)
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(lines[: len(lines) // 2 + lines[len(lines) // 2:].index(b"\n") + 1]))
    (tmp_path / "b.json").write_bytes(lines[len(lines) // 2 + lines[len(lines) // 2:].index(b"\n") + 1:])
    dst = create_table(endpoint)
    args = ["import", str(tmp_path), dst, "--endpoint-url", endpoint, "--quiet", "--writers", "2",
            "--report", str(tmp_path / "r.json")]
    r = cli(*args, env={"DDBMIGRATE_CRASH_AT": "after_batch_ack", "DDBMIGRATE_CRASH_AFTER": "20"})
    assert r.returncode == -9
    assert 0 < len(scan_all(endpoint, dst)) < 1200
    r = cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(items)
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["balanced"] and rep["counters"]["read"] == rep["counters"]["written"] + rep["counters"]["collapsed"]


def test_export_resumes_after_kill_without_duplicates(endpoint: str, tmp_path: Path) -> None:
    """Killed while saving its second checkpoint: files finished for it are orphans, re-exported."""
    from ddbmigrate.aws.client import DynamoClient
    from ddbmigrate.jobs.seed import seed_table

    src, dst = create_table(endpoint), create_table(endpoint)
    seed_table(DynamoClient(ref(endpoint, src)), src, 1500, size=1000)
    out = tmp_path / "out"
    # A slow read rate so the export lives through several checkpoints (one every 2 s).
    args = ["export", src, str(out), "--endpoint-url", endpoint, "--quiet", "--segments", "4", "--file-size", "1",
            "--commit-every", "0", "--max-read-units", "40", "--report", str(tmp_path / "r.json")]
    r = cli(*args, env={"DDBMIGRATE_CRASH_AT": "mid_checkpoint_write", "DDBMIGRATE_CRASH_AFTER": "2"})
    assert r.returncode == -9
    (crashed,) = list((out / "AWSDynamoDB").iterdir())
    assert not (crashed / "manifest-summary.json").exists()  # recognisably unfinished
    r = cli(*args[:-6], "--resume", "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (out / "AWSDynamoDB").iterdir()] == [crashed.name]  # the same export, continued
    summary = json.loads((crashed / "manifest-summary.json").read_text())
    assert summary["itemCount"] == 1500
    listed = {e["dataFileS3Key"].rsplit("/", 1)[1] for e in manifest_entries(crashed)}
    assert {p.name for p in (crashed / "data").iterdir()} == listed  # no orphans left behind
    rep = import_files(str(crashed), ref(endpoint, dst), OFF)
    assert rep.read == 1500
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))


def test_an_export_killed_midway_leaves_no_unfinished_file_after_a_restart(endpoint: str, tmp_path: Path) -> None:
    """Its unfinished data files were deleted only by a --resume of the same export: a --restart
    (a new export) or another export to the same place left them in the folder for good."""
    src = create_table(endpoint)
    put_items(endpoint, src, gen_items(300))
    out = tmp_path / "out"
    args = ["export", src, str(out), "--endpoint-url", endpoint, "--quiet", "--segments", "2",
            "--checkpoint", str(tmp_path / "c.json")]
    r = cli(*args, env={"DDBMIGRATE_CRASH_AT": "mid_export_line", "DDBMIGRATE_CRASH_AFTER": "50"})
    assert r.returncode == -9, r.stderr
    assert list((out / ".ddbmigrate-tmp").iterdir())  # half a file, as the kill left it
    r = cli(*args, "--restart")
    assert r.returncode == 0, r.stderr
    assert not (out / ".ddbmigrate-tmp").exists()  # swept, then removed empty


def test_missing_source_and_ambiguous_folder_are_usage_errors(endpoint: str, tmp_path: Path) -> None:
    dst = create_table(endpoint)
    with pytest.raises(UsageError, match="does not exist"):
        import_files(str(tmp_path / "nope.json"), ref(endpoint, dst), OFF)
    aws_export(tmp_path / "two", [[]], export_id="01700000000000-aaaaaaaa")
    aws_export(tmp_path / "two", [[]], export_id="01700000000001-bbbbbbbb")
    with pytest.raises(UsageError, match="holds 2 exports"):
        import_files(str(tmp_path / "two"), ref(endpoint, dst), OFF)


# --------------------------------------------------------------------------- S3 (moto server process: conftest moto_s3)


def _s3(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1")


def test_export_import_through_s3(endpoint: str, moto_s3: str) -> None:
    bucket = unique("bkt")
    _s3(moto_s3).create_bucket(Bucket=bucket)
    src, dst = create_table(endpoint), create_table(endpoint)
    items = every_type_items() + gen_items(100)
    put_items(endpoint, src, items)
    s3 = S3Settings(endpoint_url=moto_s3)
    rep = export_table(ref(endpoint, src), f"s3://{bucket}/backups/x", opts(segments=2), s3=s3, file_size=200_000)
    eid = rep.extra["export_id"]
    keys = {o["Key"] for o in _s3(moto_s3).list_objects_v2(Bucket=bucket)["Contents"]}
    base = f"backups/x/AWSDynamoDB/{eid}/"
    assert {base + n for n in ("_started", "manifest-files.json", "manifest-files.md5", "manifest-summary.json",
                               "manifest-summary.md5")} <= keys
    summary = json.loads(_s3(moto_s3).get_object(Bucket=bucket, Key=base + "manifest-summary.json")["Body"].read())
    assert summary["s3Bucket"] == bucket and summary["s3Prefix"] == "backups/x"
    assert summary["manifestFilesS3Key"] == base + "manifest-files.json"
    entries = [json.loads(x) for x in _s3(moto_s3).get_object(
        Bucket=bucket, Key=base + "manifest-files.json")["Body"].read().splitlines()]
    assert {e["dataFileS3Key"] for e in entries} <= keys and len(entries) > 1
    import_files(f"s3://{bucket}/backups/x", ref(endpoint, dst), OFF, s3=s3)
    assert as_set(scan_all(endpoint, dst)) == as_set(items)


def test_cli_s3_endpoint_from_environment(endpoint: str, moto_s3: str, tmp_path: Path) -> None:
    bucket = unique("bkt")
    _s3(moto_s3).create_bucket(Bucket=bucket)
    root = aws_export(tmp_path / "exp", [[{"Item": i} for i in gen_items(50)]], prefix="in")
    for p in root.rglob("*"):
        if p.is_file():
            _s3(moto_s3).upload_file(str(p), bucket, "in/" + str(p.relative_to(tmp_path / "exp")))
    dst = create_table(endpoint)
    # --endpoint-url is DynamoDB's; S3 is found through AWS_ENDPOINT_URL_S3.
    r = cli("import", f"s3://{bucket}/in", dst, "--endpoint-url", endpoint, "--quiet",
            env={"AWS_ENDPOINT_URL_S3": moto_s3})
    assert r.returncode == 0, r.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(gen_items(50))
    # And the other way round, from the command line, with --s3-endpoint-url.
    r = cli("export", dst, f"s3://{bucket}/cli", "--endpoint-url", endpoint, "--s3-endpoint-url", moto_s3,
            "--quiet")
    assert r.returncode == 0, r.stderr
    keys = [o["Key"] for o in _s3(moto_s3).list_objects_v2(Bucket=bucket, Prefix="cli/")["Contents"]]
    (summary_key,) = [k for k in keys if k.endswith("manifest-summary.json")]
    summary = json.loads(_s3(moto_s3).get_object(Bucket=bucket, Key=summary_key)["Body"].read())
    assert summary["itemCount"] == 50 and summary["s3Prefix"] == "cli"
    # A glob over S3 keys reads the data files directly (no manifest).
    other = create_table(endpoint)
    rep = import_files(f"s3://{bucket}/in/AWSDynamoDB/*/data/*.json.gz", ref(endpoint, other), OFF,
                       s3=S3Settings(endpoint_url=moto_s3))
    assert rep.extra["source_kind"] == "files" and as_set(scan_all(endpoint, other)) == as_set(gen_items(50))


def test_incremental_export_that_cannot_fit_exits_2_before_staging(endpoint: str, tmp_path: Path) -> None:
    dst = create_table(endpoint, hash_key=("pk", "N"))  # the export's keys are strings
    t = 1_700_000_000_000_000
    aws_export(tmp_path / "inc", [[_rec("a", t + 1, {"v": {"S": "x"}}), _rec("b", t + 2, {"v": {"S": "y"}})]],
               incremental=True)
    with pytest.raises(UsageError, match=r"'pk' is N \(number\) but source items carry S"):
        import_files(str(tmp_path / "inc"), ref(endpoint, dst), OFF)
    assert scan_all(endpoint, dst) == []
