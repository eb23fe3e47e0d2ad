"""Hostile files an acceptance probe found mishandled, end to end on DynamoDB Local: the items in
the table, the dead letters with their file:line and reason, and the exit code."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ddbmigrate.sources.lines import MAX_LINE
from support import create_table
from test_files_audit_e2e import cli, dead, pks

pytestmark = pytest.mark.integration


DEEP = "[" * 2000 + "]" * 2000


@pytest.mark.parametrize("doc", [
    '[{"pk":"ok1"},' + DEEP + ',{"pk":"ok2"}]',
    '{"Items":[{"pk":{"S":"ok1"}},' + DEEP + ',{"pk":{"S":"ok2"}}],"Count":3,"ScannedCount":3}',
])
def test_an_element_nested_too_deeply_is_a_dead_letter_and_the_rest_loads(endpoint: str, tmp_path: Path,
                                                                           doc: str) -> None:
    """Before: "internal error: RecursionError" while the format was told, or the whole file
    failed at that element."""
    p, dl, t = tmp_path / "d.json", tmp_path / "dl.jsonl", create_table(endpoint)
    p.write_text(doc)
    r = cli("import", str(p), t, "--endpoint-url", endpoint, "--dead-letter", str(dl), "--quiet")
    assert r.returncode == 3, r.stderr
    assert pks(endpoint, t) == ["ok1", "ok2"]
    [rec] = dead(dl)
    assert "nested too deeply" in rec["reason"] and rec["origin"] == "d.json:1"


@pytest.mark.parametrize("doc", [
    b'[{"pk":"a\xe9b"},\n{"pk":"ok"}]',
    b'{"Items":[{"pk":{"S":"a\xe9b"}},\n{"pk":{"S":"ok"}}],"Count":2,"ScannedCount":2}',
])
def test_bytes_that_are_not_utf8_in_a_json_document_are_a_dead_letter_not_u_fffd(endpoint: str, tmp_path: Path,
                                                                                  doc: bytes) -> None:
    """Before: the document was decoded with U+FFFD for each bad byte, and "a\\ufffdb" loaded."""
    p, dl, t = tmp_path / "u.json", tmp_path / "dl.jsonl", create_table(endpoint)
    p.write_bytes(doc)
    r = cli("import", str(p), t, "--endpoint-url", endpoint, "--dead-letter", str(dl), "--quiet")
    assert r.returncode == 3, r.stderr
    assert pks(endpoint, t) == ["ok"]
    [rec] = dead(dl)
    assert rec["reason"].startswith("not valid UTF-8") and "0xe9" in rec["reason"], rec
    assert rec["origin"] == "u.json:1"
    assert b"a\xe9b" in base64.b64decode(rec["raw_b64"])


@pytest.mark.parametrize("data, said", [
    (b"pk,na\rme\nx,1\n", "crhdr.csv:1: invalid CSV: a carriage return (\\r) alone inside an unquoted value"),
    ("pk,name\nx,1\n".encode("utf-16"), "crhdr.csv:1: not csv: the file is UTF-16"),
])
def test_a_csv_header_that_cannot_be_read_is_one_line_naming_the_file(endpoint: str, tmp_path: Path,
                                                                      data: bytes, said: str) -> None:
    """Before: "internal error: Error: new-line character seen in unquoted field", no file named."""
    p, t = tmp_path / "crhdr.csv", create_table(endpoint)
    p.write_bytes(data)
    r = cli("import", str(p), t, "--endpoint-url", endpoint, "--quiet")
    assert r.returncode == 1, r.stderr
    assert said in r.stderr and "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert pks(endpoint, t) == []


def test_a_first_line_over_the_line_limit_is_a_dead_letter_and_the_rest_loads(endpoint: str, tmp_path: Path) -> None:
    """Before: the format was told by that line's first 8 MB ("a multi-line JSON document"), and
    the file was refused; the same line further down was a dead letter."""
    p, dl, t = tmp_path / "first.json", tmp_path / "dl.jsonl", create_table(endpoint)
    with open(p, "wb") as fh:
        fh.write(b'{"Item":{"pk":{"S":"big"},"a":{"S":"' + b"x" * (MAX_LINE + 10) + b'"}}}\n')
        fh.write(b"".join(b'{"Item":{"pk":{"S":"k%d"}}}\n' % i for i in range(3)))
    r = cli("import", str(p), t, "--endpoint-url", endpoint, "--dead-letter", str(dl), "--quiet")
    assert r.returncode == 3, r.stderr
    assert pks(endpoint, t) == ["k0", "k1", "k2"]
    [rec] = dead(dl)
    assert rec["origin"] == "first.json:1" and "over the" in rec["reason"] and "line limit" in rec["reason"]


def test_a_file_whose_name_holds_glob_characters_is_that_file(endpoint: str, tmp_path: Path) -> None:
    """Before: "no data files match" (exit 2): the name was read as a glob, which matches
    "we ird1.json", not itself. A glob that names no file by that name is still a glob."""
    (tmp_path / "we ird[1].json").write_text('{"Item":{"pk":{"S":"w1"}}}\n')
    (tmp_path / "we ird1.json").write_text('{"Item":{"pk":{"S":"w2"}}}\n')
    t = create_table(endpoint)
    r = cli("import", str(tmp_path / "we ird[1].json"), t, "--endpoint-url", endpoint, "--quiet")
    assert r.returncode == 0, r.stderr
    assert pks(endpoint, t) == ["w1"]
    t2 = create_table(endpoint)
    r = cli("import", str(tmp_path / "we ird[0-9].json"), t2, "--endpoint-url", endpoint, "--quiet")
    assert r.returncode == 0, r.stderr
    assert pks(endpoint, t2) == ["w2"]


def test_a_ragged_csv_rows_dead_letter_replays_to_one_clear_reason(endpoint: str, tmp_path: Path) -> None:
    """Before: its replay read the CSV row as JSON ("invalid JSON: Expecting value"), and a file
    of such records alone was refused as "not dead-letter"."""
    p, dl, again, t = tmp_path / "t.csv", tmp_path / "dl.jsonl", tmp_path / "again.jsonl", create_table(endpoint)
    p.write_text("pk,name,price\na,x,1\nc,x,y,z\n")
    r = cli("import", str(p), t, "--endpoint-url", endpoint, "--dead-letter", str(dl), "--quiet")
    assert r.returncode == 3, r.stderr
    r = cli("import", str(dl), t, "--endpoint-url", endpoint, "--dead-letter", str(again), "--quiet")
    assert r.returncode == 3, r.stderr
    [rec] = dead(again)
    assert rec["reason"].startswith("a CSV row with more values than its header has columns is not replayed alone")
    assert "t.csv:3" in rec["reason"] and pks(endpoint, t) == ["a"]


def test_a_scan_document_on_one_line_longer_than_the_sample_is_read_as_one(endpoint: str, tmp_path: Path) -> None:
    """An `aws dynamodb scan` output written on one line (no newline in its first 8 MB) was "a
    multi-line JSON document", refused; and it must not be taken for a file of lines whose first
    line is over the limit."""
    p, t = tmp_path / "scan.json", create_table(endpoint)
    items = [{"pk": {"S": f"k{i}"}, "a": {"S": "x" * 1000}} for i in range(9000)]
    p.write_text(json.dumps({"Items": items, "Count": len(items), "ScannedCount": len(items)}))
    assert p.stat().st_size > MAX_LINE
    r = cli("import", str(p), t, "--endpoint-url", endpoint, "--quiet")
    assert r.returncode == 0, r.stderr
    assert len(pks(endpoint, t)) == 9000
