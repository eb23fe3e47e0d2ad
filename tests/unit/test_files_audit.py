"""Defects an audit of file imports found, checked without DynamoDB: CSV quoting, encoding and
field limits, over-long JSON elements, manifest totals, S3 globbing, the import's fit check."""

from __future__ import annotations

import base64
import glob
import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from ddbmigrate.errors import FatalError, UsageError
from ddbmigrate.jobs.fit import check_records_fit
from ddbmigrate.sources.files import FileSource
from ddbmigrate.sources.lines import MAX_LINE
from ddbmigrate.storage.export_layout import FileEntry, Plan, discover
from ddbmigrate.storage.stores import LocalStorage, glob_regex

BIG = MAX_LINE + 1024 * 1024  # just over the line limit


def _read(path: Path, fmt: str) -> Tuple[List[Tuple[Any, str]], List[Tuple[str, str, str]], List[str]]:
    """(items with origin, rejects, failure lines) of one file read as ``fmt``."""
    src = FileSource(LocalStorage(), Plan("files", str(path.parent), [FileEntry(str(path), path.name, fmt=fmt)]),
                     key_types={"pk": "S"})
    items: List[Tuple[Any, str]] = []
    rejects: List[Tuple[str, str, str]] = []
    for c in src.read(path.name, None, threading.Event()):
        items += list(zip(c.items, c.origins or []))
        rejects += [(raw[:80], reason, origin) for raw, reason, origin in c.rejects]
    return items, rejects, [f.one_line() for f in src.failures()]


def _pks(items: List[Tuple[Any, str]]) -> List[str]:
    return [it["pk"]["S"] for it, _ in items]


# --------------------------------------------------------------------------- CSV


def test_csv_quote_open_at_end_of_file_fails_the_file_naming_its_line(tmp_path: Path) -> None:
    p = tmp_path / "q.csv"
    p.write_text('pk,v\na,1\nb,"oops\n' + "".join(f"r{i},{i}\n" for i in range(50)))
    items, rejects, failed = _read(p, "csv")
    # Before: b got v="oops\nr0,0\n..." and r0..r49 vanished, with no failure at all.
    assert _pks(items) == ["a"] and rejects == []
    assert len(failed) == 1 and failed[0].startswith("q.csv:3: ") and "never closed" in failed[0]


def test_csv_quoted_values_over_several_lines_still_load(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text('pk,v\na,"one\n\ntwo, ""three"""\nb,2\n')
    items, rejects, failed = _read(p, "csv")
    assert [(it["pk"]["S"], it["v"]["S"], o) for it, o in items] == [
        ("a", 'one\n\ntwo, "three"', "m.csv:2"), ("b", "2", "m.csv:5")]
    assert rejects == [] and failed == []


def test_csv_text_after_a_closing_quote_is_a_dead_letter_not_a_merged_value(tmp_path: Path) -> None:
    """Before: ``b,"ab"cd`` loaded v = "abcd", a value no one wrote, and the import said nothing."""
    p = tmp_path / "x.csv"
    p.write_text('pk,v\na,1\nb,"ab"cd\nc,"multi\nline"z\nd,"say ""hi"""\n')
    items, rejects, failed = _read(p, "csv")
    assert [(it["pk"]["S"], it["v"]["S"], o) for it, o in items] == [("a", "1", "x.csv:2"), ("d", 'say "hi"', "x.csv:6")]
    assert [(raw, o) for raw, _, o in rejects] == [('b,"ab"cd', "x.csv:3"), ('c,"multi\nline"z', "x.csv:4")]
    assert all(r.startswith("malformed CSV record (',' expected after '\"')") for _, r, _ in rejects), rejects
    assert failed == []


def test_csv_header_with_text_after_a_closing_quote_fails_the_file(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text('"pk"x,v\na,1\n')
    items, rejects, failed = _read(p, "csv")
    assert items == [] and rejects == []
    assert len(failed) == 1 and failed[0].startswith("h.csv:1: not csv: the header is a malformed CSV record")


def test_csv_quoted_value_running_past_the_line_limit_fails_naming_where_it_opened(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    row = "x" * 1000 + "\n"
    with open(p, "w") as fh:
        fh.write('pk,v\na,1\nb,"never closed\n')
        for _ in range(MAX_LINE // len(row) + 10):
            fh.write(row)
        fh.write('c,"late"\n')
    items, rejects, failed = _read(p, "csv")
    assert _pks(items) == ["a"]
    assert len(failed) == 1 and failed[0].startswith("r.csv:3: ") and f"over {MAX_LINE} bytes" in failed[0]


def test_csv_invalid_utf8_row_is_a_dead_letter_with_its_line(tmp_path: Path) -> None:
    p = tmp_path / "u.csv"
    p.write_bytes(b'pk,v\na,caf\xe9\nb,"x\xff\ny"\nc,ok\n')
    items, rejects, failed = _read(p, "csv")
    # Before: a and b were written with U+FFFD in place of the bytes.
    assert [(it["pk"]["S"], it["v"]["S"]) for it, _ in items] == [("c", "ok")]
    assert [(o, r.split(":")[0]) for _, r, o in rejects] == [("u.csv:2", "invalid UTF-8 on line 2"),
                                                           ("u.csv:3", "invalid UTF-8 on line 3")]
    assert "0xe9" in rejects[0][1] and "0xff" in rejects[1][1] and failed == []


def test_csv_field_over_128k_loads_and_an_over_long_line_is_a_dead_letter(tmp_path: Path) -> None:
    p = tmp_path / "big.csv"
    with open(p, "w") as fh:
        fh.write("pk,v\na," + "x" * 200_000 + "\nb," + "y" * BIG + "\nc,3\n")
    items, rejects, failed = _read(p, "csv")
    # Before: "field larger than field limit (131072)" failed the file at a; b and c were lost.
    assert [(it["pk"]["S"], len(it["v"]["S"])) for it, _ in items] == [("a", 200_000), ("c", 1)]
    assert [(o, "line limit" in r) for _, r, o in rejects] == [("big.csv:3", True)]
    assert failed == []


# --------------------------------------------------------------------------- JSON elements


def test_over_long_array_element_is_a_dead_letter_and_the_rest_loads(tmp_path: Path) -> None:
    p = tmp_path / "arr.json"
    big = "x" * BIG
    p.write_text('[\n{"pk":"a"},\n{"pk":"b","v":"%s"},\n{"pk":"c","q":"\\"]}{["},\n[%s],\n{"pk":"d"}\n]\n'
                 % (big, ",".join(["1"] * (BIG // 2))))
    items, rejects, failed = _read(p, "json")
    # Before: the file failed at element 2 ("array element 2 is over 8388608 bytes"); c, d lost.
    assert [(pk, o) for pk, o in zip(_pks(items), [o for _, o in items])] == [
        ("a", "arr.json:2"), ("c", "arr.json:4"), ("d", "arr.json:6")]
    assert [(o, r.split(" is ")[0]) for _, r, o in rejects] == [("arr.json:3", "array element 2"),
                                                              ("arr.json:5", "array element 4")]
    assert failed == []


def test_an_invalid_array_element_is_invalid_json_not_an_over_long_one(tmp_path: Path) -> None:
    # A syntax error well inside what was read was taken for a value going on in the next block:
    # buffered to 8 MB, then skipped as "over the limit", its text lost (or, within the last 8 MB
    # of a file, the file failed as invalid): it depended on the file's size. Now it is invalid
    # JSON where it is, whatever follows.
    p = tmp_path / "arr.json"
    rest = ",\n".join('{"pk":"k%d","pad":"%s"}' % (i, "y" * 1000) for i in range(9000))  # over 8 MB after it
    p.write_text('[\n{"pk":"a"},\n{"pk":"bad" "x":1},\n' + rest + "\n]\n")
    items, rejects, failed = _read(p, "json")
    assert _pks(items) == ["a"] and rejects == []
    assert len(failed) == 1 and "invalid JSON in array element 2" in failed[0] and "arr.json:3" in failed[0], failed


def test_over_long_item_of_a_scan_document_is_a_dead_letter_and_the_rest_loads(tmp_path: Path) -> None:
    p = tmp_path / "scan.json"
    p.write_text('{"Items":[{"pk":{"S":"a"}},\n{"pk":{"S":"%s"}},\n{"pk":{"S":"c"}}],"Count":3,"ScannedCount":3}\n'
                 '{"Items":[{"pk":{"S":"d"}}],"Count":1}\n' % ("y" * BIG))
    items, rejects, failed = _read(p, "aws-scan")
    assert _pks(items) == ["a", "c", "d"]
    assert [(o, r.split(" is ")[0]) for _, r, o in rejects] == [("scan.json:2", "item 2 of document 1")]
    assert failed == []


_PROBE = r"""
import sys, threading
from pathlib import Path
from ddbmigrate.sources.files import FileSource
from ddbmigrate.storage.export_layout import FileEntry, Plan
from ddbmigrate.storage.stores import LocalStorage
p = Path(sys.argv[1])
src = FileSource(LocalStorage(), Plan("files", str(p.parent), [FileEntry(str(p), p.name, fmt="json")]), validate=False)
pks, rejects = [], []
for c in src.read(p.name, None, threading.Event()):
    pks += [i["pk"]["S"] for i in c.items]; rejects += [o for _, _, o in c.rejects]
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(pks, rejects, [f.reason for f in src.failures()], hwm // 1024)
"""


def test_a_huge_array_element_is_never_held(tmp_path: Path) -> None:
    size = 384 * 1024 * 1024
    path = tmp_path / "huge.json.gz"
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = b"y" * (1 << 20)
    with open(path, "wb") as fh:
        fh.write(comp.compress(b'[{"pk":"a"},\n{"pk":"b","v":"'))
        for _ in range(size // len(block)):
            fh.write(comp.compress(block))
        fh.write(comp.compress(b'"},\n{"pk":"c"}]\n'))
        fh.write(comp.flush())
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode == 0, out.stderr
    mb = int(out.stdout.split()[-1])
    assert out.stdout.startswith("['a', 'c'] ['huge.json.gz:2'] [] "), out.stdout
    assert mb < 200, f"peak RSS {mb} MB for a {size >> 20} MB element"


# --------------------------------------------------------------------------- export manifests


def _b64md5(b: bytes) -> str:
    return base64.b64encode(hashlib.md5(b).digest()).decode()


def _export(base: Path, eid: str, files: List[int], *, incremental: bool = False,
            listed: int = -1, shared_extra: int = 0) -> Path:
    """An AWS-shaped export of ``files`` (items per file), listing only the first ``listed``."""
    root = base / "AWSDynamoDB" / eid
    data = base / "AWSDynamoDB" / "data" if incremental else root / "data"
    root.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, n in enumerate(files + [1] * shared_extra):
        raw = b"".join(json.dumps({"Item": {"pk": {"S": f"{eid}-{i}-{j}"}}}).encode() + b"\n" for j in range(n))
        gz = gzip.compress(raw)
        name = f"{eid}{i:02d}".ljust(26, "x") + ".json.gz"
        (data / name).write_bytes(gz)
        rel = "AWSDynamoDB/data/" if incremental else f"AWSDynamoDB/{eid}/data/"
        entries.append({"itemCount": n, "md5Checksum": _b64md5(gz), "dataFileS3Key": f"p/{rel}{name}"})
    mf = b"".join(json.dumps(e).encode() + b"\n" for e in entries[:len(files)][:listed if listed >= 0 else None])
    (root / "manifest-files.json").write_bytes(mf)
    summary: Dict[str, Any] = {"version": "2020-06-30", "itemCount": sum(files), "outputFormat": "DYNAMODB_JSON",
                               "exportType": "INCREMENTAL_EXPORT" if incremental else "FULL_EXPORT"}
    (root / "manifest-summary.json").write_bytes(json.dumps(summary).encode())
    return root


def test_a_cut_manifest_is_refused_naming_the_unlisted_files(tmp_path: Path) -> None:
    root = _export(tmp_path, "01700000000000-aaaaaaaa", [500, 500, 500], listed=2)
    with pytest.raises(FatalError) as e:
        discover(str(root), LocalStorage())
    msg = e.value.message
    assert "lists 2 file(s) with 1000 items" in msg and "says the export holds 1500" in msg
    assert "01700000000000-aaaaaaaa02" in msg and "nothing was written" in msg


def test_an_empty_manifest_is_refused(tmp_path: Path) -> None:
    root = _export(tmp_path, "01700000000000-bbbbbbbb", [7, 8], listed=0)
    with pytest.raises(FatalError, match="lists 0 file.s. with 0 items but manifest-summary.json says the export "
                                         "holds 15; data/ holds 2 file.s. it does not list"):
        discover(str(root), LocalStorage())


def test_complete_manifests_pass_and_other_exports_shared_data_is_not_unlisted(tmp_path: Path) -> None:
    full = _export(tmp_path, "01700000000000-cccccccc", [3, 4])
    assert sum(f.item_count or 0 for f in discover(str(full), LocalStorage()).files) == 7
    # Incremental exports share AWSDynamoDB/data/ with every other export under the prefix.
    inc = _export(tmp_path / "inc", "01700000000001-dddddddd", [2, 2], incremental=True, shared_extra=3)
    assert len(discover(str(inc), LocalStorage()).files) == 2
    # A per-file count that is off (more listed than counted, nothing unlisted) is left to the
    # per-file check, which names that file and lets the others load.
    over = _export(tmp_path / "over", "01700000000002-eeeeeeee", [3, 4])
    lines = (over / "manifest-files.json").read_bytes().splitlines()
    e = json.loads(lines[1])
    e["itemCount"] += 1
    (over / "manifest-files.json").write_bytes(lines[0] + b"\n" + json.dumps(e).encode() + b"\n")
    assert [f.item_count for f in discover(str(over), LocalStorage()).files] == [3, 5]


# --------------------------------------------------------------------------- S3 glob


@pytest.mark.parametrize("pattern", ["data/*.json", "data/**/*.json", "data/**", "data/*/*.json", "*/*",
                                     "data/?.json", "data/[ab].json", "data/[!a].json", "data/**/deep/*"])
def test_s3_glob_reads_a_pattern_as_a_local_glob_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      pattern: str) -> None:
    names = ["data/a.json", "data/b.json", "data/old/c.json", "data/old/deep/d.json", "data/.x.json",
             "data/.h/e.json", "data/x1.gz", "top.json"]
    for n in names:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_text("{}")
    monkeypatch.chdir(tmp_path)
    local = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    assert sorted(n for n in names if glob_regex(pattern).fullmatch(n)) == local


# --------------------------------------------------------------------------- fit check

_DESC = {"AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
         "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}


def _records(bad: int, good: int) -> List[Tuple[Dict[str, Any], str]]:
    return ([({"x": {"S": str(i)}}, f"in.json:{i + 1}") for i in range(bad)]
            + [({"pk": {"S": str(i)}}, f"in.json:{bad + i + 1}") for i in range(good)])


def test_unfit_records_at_the_head_of_the_input_do_not_stop_the_import() -> None:
    check_records_fit("kf", _DESC, _records(20, 1000), lambda: False)  # no refusal: they are dead letters


def test_an_input_none_of_whose_records_fits_is_refused_naming_where() -> None:
    with pytest.raises(UsageError) as e:
        check_records_fit("kf", _DESC, _records(20, 0), lambda: True)
    assert "none of the 20 record(s) of the input fits (in.json:1 to in.json:20)" in e.value.message
    # The first records alone are not the input: a few unfit ones say nothing about the rest.
    check_records_fit("kf", _DESC, _records(20, 0), lambda: False)
    with pytest.raises(UsageError) as e:
        check_records_fit("kf", _DESC, _records(50, 0), lambda: False, limit=50)
    assert "the first 50 records (in.json:1 to in.json:50) all fail to fit" in e.value.message
    assert e.value.hint and "move these out of the input" in e.value.hint


def test_files_of_the_shared_data_folder_are_named_where_they_are(tmp_path: Path) -> None:
    """A dead letter's file:line names the file where it is: an incremental export's data is in
    the prefix's shared AWSDynamoDB/data/, not under its ExportId (before: <ExportId>/data/...)."""
    full = _export(tmp_path, "01700000000000-cccccccc", [3])
    inc = _export(tmp_path, "01700000000001-dddddddd", [2], incremental=True)
    summary = json.loads((inc / "manifest-summary.json").read_text())
    summary.update(exportFromTime="2023-11-14T22:13:20.000Z", exportToTime="2023-11-14T22:15:00.000Z")
    (inc / "manifest-summary.json").write_text(json.dumps(summary))
    summary = json.loads((full / "manifest-summary.json").read_text())
    summary.update(exportTime="2023-11-14T22:13:20.000Z")
    (full / "manifest-summary.json").write_text(json.dumps(summary))
    plan = discover(str(tmp_path), LocalStorage())
    units = [f.unit for f in plan.files]
    assert units[0].startswith("01700000000000-cccccccc/data/") and units[1].startswith("data/"), units
    for f in plan.files:
        assert os.path.exists(os.path.join(str(tmp_path), "AWSDynamoDB", f.unit)), f.unit


def test_csv_malformed_rows_are_handed_on_in_chunks_not_held(tmp_path: Path) -> None:
    """A file of rows with text after a closing quote: each is a dead letter, handed on as any
    record is (before, the whole remainder piled up in one chunk and the position never moved)."""
    p = tmp_path / "bad.csv"
    p.write_text("pk,v\nfirst,1\n" + "".join(f'k{i},"ab"cd\n' for i in range(5000)))
    src = FileSource(LocalStorage(), Plan("files", str(tmp_path), [FileEntry(str(p), p.name, fmt="csv")]),
                     key_types={"pk": "S"})
    sizes = [len(c.rejects) for c in src.read(p.name, None, threading.Event())]
    assert sum(sizes) == 5000 and len(sizes) > 1 and max(sizes) < 5000, sizes[:5]
