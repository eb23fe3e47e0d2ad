"""Hostile input files: bounded memory and time, and every bad line a dead letter with file:line.

Each case is one the independent security suite found (issue 22): a gzip member of spaces
without a newline, a flood of newlines, lone surrogate escapes, deep nesting, repeated names.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddbmigrate.sources.files import FileSource
from ddbmigrate.sources.lines import LineStream, TooLong, parse_item
from ddbmigrate.storage.export_layout import FileEntry, Plan
from ddbmigrate.storage.stores import LocalStorage


def _read(path: Path, fmt: str = "") -> Tuple[List[Any], List[Any], List[Any]]:
    src = FileSource(LocalStorage(), Plan("files", str(path.parent), [FileEntry(str(path), path.name, fmt=fmt)]))
    chunks = list(src.read(path.name, None, threading.Event()))
    items = [it for c in chunks for it in c.items]
    rejects = [r for c in chunks for r in c.rejects]
    return items, rejects, src.failures()


def _gzip_stream(path: Path, pieces: Any) -> None:
    """Write a gzip file from byte pieces without holding it whole (level 1: fast)."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:
        for piece in pieces:
            fh.write(comp.compress(piece))
        fh.write(comp.flush())


_BOMB = r"""
import sys, threading
from pathlib import Path
from ddbmigrate.sources.files import FileSource
from ddbmigrate.storage.export_layout import FileEntry, Plan
from ddbmigrate.storage.stores import LocalStorage
p = Path(sys.argv[1])
src = FileSource(LocalStorage(), Plan("files", str(p.parent), [FileEntry(str(p), p.name)]), validate=False)
n = r = 0
for c in src.read(p.name, None, threading.Event()):
    n += len(c.items); r += len(c.rejects)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forked parent (pytest) across exec.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(n, r, [f.reason for f in src.failures()], hwm // 1024)
"""


def _run_bounded(path: Path) -> Tuple[int, int, str, int]:
    """Read ``path`` in a child process: (items, rejects, failures, peak RSS MB)."""
    out = subprocess.run([sys.executable, "-c", _BOMB, str(path)], capture_output=True, text=True, timeout=240,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr[-2000:]
    n, r, failures, rss = out.stdout.rsplit(" ", 1)[0].split(" ", 2) + [out.stdout.split()[-1]]
    return int(n), int(r), failures, int(rss)


def test_a_gzip_member_of_spaces_without_a_newline_is_read_in_bounded_memory(tmp_path: Path) -> None:
    p = tmp_path / "spaces.json.gz"
    head = b'{"pk": {"S": "before"}}\n'
    _gzip_stream(p, [head] + [b" " * (1 << 20)] * 512 + [b'\n{"pk": {"S": "after"}}\n'])  # 512 MB of spaces
    n, r, failures, rss = _run_bounded(p)
    assert (n, r, failures) == (2, 0, "[]")
    assert rss < 200, f"peak RSS {rss} MB"


def test_a_flood_of_newlines_costs_nothing_and_keeps_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "newlines.json.gz"
    _gzip_stream(p, [b"\n" * (1 << 20)] * 64 + [b'{"pk": {"S": "a"}}\n'] + [b"\r\n" * (1 << 19)] * 8 + [b'{"pk": 1}\n'])
    ls = LineStream(LocalStorage(), str(p))
    try:
        got = list(ls.numbered())
    finally:
        ls.close()
    first = 64 * (1 << 20) + 1
    assert got == [(first, b'{"pk": {"S": "a"}}'), (first + 1 + 8 * (1 << 19), b'{"pk": 1}')]
    items, rejects, _ = _read(p)
    assert items == [{"pk": {"S": "a"}}]
    assert [(r[2], r[1]) for r in rejects] == [(f"newlines.json.gz:{first + 1 + 8 * (1 << 19)}",
                                                 "pk: expected one type descriptor such as {\"S\": ...}, got 1")]


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([b"", b" ", b"\t", b"\r", b"  \r"]),
                          st.sampled_from([b'{"a":{"S":"x"}}', b"[1]", b"y" * 40, b""])), max_size=30),
       st.integers(1, 64))
@settings(max_examples=150, deadline=None)
def test_numbered_lines_match_a_plain_split_at_any_block_size(rows: Any, block: int) -> None:
    data = b"".join(b"\n" * nl + ws + body for nl, ws, body in rows)
    import ddbmigrate.sources.lines as lines_mod

    class _Mem:
        def open_read(self, _path: str) -> Any:
            import io
            return io.BytesIO(data)

    old = lines_mod.BLOCK
    lines_mod.BLOCK = block
    try:
        ls = LineStream(_Mem(), "mem")  # type: ignore[arg-type]
        ls.first_char()
        got = list(ls.numbered())
    finally:
        lines_mod.BLOCK = old
    expected = [(i + 1, line.lstrip()) for i, line in enumerate(data.split(b"\n")) if line.strip()]
    assert got == expected


def test_line_limit_holds_while_streaming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ddbmigrate.sources.lines.MAX_LINE", 1000)
    monkeypatch.setattr("ddbmigrate.sources.lines.BLOCK", 64)
    p = tmp_path / "long.json"
    p.write_bytes(b'{"pk": {"S": "a"}}\n' + b"x" * 5000 + b"\n\n" + b'{"pk": {"S": "b"}}')
    ls = LineStream(LocalStorage(), str(p))
    got = list(ls.numbered())
    ls.close()
    assert got[0] == (1, b'{"pk": {"S": "a"}}') and got[1][0] == 2 and isinstance(got[1][1], TooLong)
    assert got[1][1].size == 5000 and got[2] == (4, b'{"pk": {"S": "b"}}')


@pytest.mark.parametrize("line, why", [
    (b'{"pk": {"S": "\\ud800"}}', "surrogate"),
    (b'{"pk": "\\udc00x"}', "surrogate"),
    (b"[" * 200_000, "deep|depth"),
    (b'{"pk": ' + b"[" * 5000 + b"]" * 5000 + b"}", "deep|depth"),
    (b'{"pk": {"S": "a"}, "pk": {"S": "b"}}', "'pk' appears twice"),
    (b'{"pk": {"S": "a"}, "n": {"N": "1", "N": "2"}}', "'N' appears twice"),
    (b'{"Item": {"pk": {"S": "a"}, "x": {"S": "1"}, "x": {"S": "2"}}}', "'x' appears twice"),
    (b'{"pk": "a", "m": {"k": 1, "k": 2}}', "'k' appears twice"),
])
def test_bad_lines_are_dead_letters_with_their_reason(tmp_path: Path, line: bytes, why: str) -> None:
    for fmt in ("auto", "ddb", "plain"):
        item, reason, _ = parse_item(line, fmt)
        if fmt == "plain" and why.startswith("'") and b'"S"' in line:
            continue  # as plain JSON the same line is still a repeat, checked in "auto"
        assert item is None and reason, (fmt, reason)
    _, reason, _ = parse_item(line, "auto")
    assert re.search(why, reason or ""), reason
    p = tmp_path / "bad.json"
    p.write_bytes(b'{"pk": {"S": "ok1"}}\n' + line + b'\n{"pk": {"S": "ok2"}}\n')
    items, rejects, failures = _read(p)
    assert items == [{"pk": {"S": "ok1"}}, {"pk": {"S": "ok2"}}] and not failures
    assert len(rejects) == 1 and rejects[0][2] == "bad.json:2" and re.search(why, rejects[0][1])


def test_escaped_quotes_and_colons_inside_strings_are_not_repeats() -> None:
    line = json.dumps({"pk": {"S": 'a": "b'}, "q": {"S": '\\":'}, "s": {"SS": ['x":', '"y" :']}}).encode()
    item, reason, _ = parse_item(line, "auto")
    assert reason is None and item == json.loads(line)
    pair = b'{"pk": {"S": "\\ud83d\\ude00"}}'  # a valid surrogate pair is an emoji, not a problem
    assert parse_item(pair, "auto") == ({"pk": {"S": "\U0001F600"}}, None, "ddb")


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=8), min_size=1, max_size=6),
       st.booleans())
@settings(max_examples=200, deadline=None)
def test_repeat_detection_is_exact(attrs: Any, repeat: bool) -> None:
    body = ", ".join(f"{json.dumps(k)}: {{\"S\": {json.dumps(v)}}}" for k, v in attrs.items())
    if repeat:
        k = next(iter(attrs))
        body += f", {json.dumps(k)} : {{\"S\": \"again\"}}"
    item, reason, _ = parse_item(("{" + body + "}").encode(), "ddb")
    assert (item is None) == repeat
    assert (reason is not None and "appears twice" in reason) == repeat


def test_json_array_elements_with_repeats_surrogates_and_depth(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text('[{"pk": "a"},\n {"pk": "b", "pk": "c"},\n {"pk": "\\ud800"},\n {"pk": "d"}]')
    items, rejects, failures = _read(p)
    assert items == [{"pk": {"S": "a"}}, {"pk": {"S": "d"}}] and not failures
    assert [(r[2], "appears twice" in r[1] or "surrogate" in r[1]) for r in rejects] == [("a.json:2", True),
                                                                                         ("a.json:3", True)]
    deep = tmp_path / "deep.json"
    deep.write_text("[" + "[" * 100_000)
    items, rejects, failures = _read(deep)
    assert not items and len(failures) == 1 and "deep.json" in failures[0].one_line()


def test_leading_blank_blocks_keep_array_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "a.json.gz"
    p.write_bytes(gzip.compress(b"\n" * (3 << 20) + b'[{"pk": "a"},\n{"pk": 1, "pk": 2}]'))
    _, rejects, _ = _read(p)
    assert [r[2] for r in rejects] == [f"a.json.gz:{(3 << 20) + 2}"]


def test_rss_probe_is_meaningful() -> None:
    """The probe the bounds above use does see memory a child holds (so those bounds can fail)."""
    code = ("x = bytearray(150 << 20)\n"
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')) // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert int(out.stdout) >= 150



def _export_with_link(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.json"
    secret.parent.mkdir()
    secret.write_text('{"not": "yours"}\n')
    export = tmp_path / "drop" / "export"
    (export / "data").mkdir(parents=True)
    (export / "data" / "a.json").write_text('{"Item": {"pk": {"S": "a"}}}\n')
    os.symlink(secret, export / "data" / "b.json")
    return export


def test_a_link_out_of_the_import_folder_is_refused_unless_asked(tmp_path: Path) -> None:
    from ddbmigrate.errors import UsageError
    from ddbmigrate.storage.export_layout import discover

    export = _export_with_link(tmp_path)
    with pytest.raises(UsageError, match="outside .*--follow-symlinks"):
        discover(str(export), LocalStorage())
    with pytest.raises(UsageError, match="b.json"):
        discover(str(export / "data" / "*.json"), LocalStorage())
    assert len(discover(str(export), LocalStorage(), follow_symlinks=True).files) == 2
    # A link to the folder itself is the user's choice: everything under it is inside.
    os.symlink(export, tmp_path / "alias")
    (export / "data" / "b.json").unlink()
    assert [f.unit for f in discover(str(tmp_path / "alias"), LocalStorage()).files] == ["data/a.json"]


def test_the_cli_refuses_before_touching_the_table(tmp_path: Path) -> None:
    export = _export_with_link(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    for cmd in (["import", str(export), "tbl"], ["verify", f"./{export.relative_to(tmp_path)}", "tbl"]):
        out = subprocess.run([sys.executable, "-m", "ddbmigrate", *cmd, "--endpoint-url", "http://127.0.0.1:9"],
                             capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert "outside" in out.stderr and "--follow-symlinks" in out.stderr and "Traceback" not in out.stderr
        assert "not\": \"yours" not in out.stderr + out.stdout


@pytest.mark.parametrize("line, why", [
    (b'{Item:{pk:"d",a:"x",a:"y"}}', "item: the name 'a' appears twice"),
    (b'$ion_1_0 {Item:{pk:"e",m:{k:1,k:2}}}', "m: the name 'k' appears twice"),
    (b'{Item:{pk:"f",l:[{a:1,a:2}]}}', r"l\[0\]: the name 'a' appears twice"),
    (b'{Item:{pk:"g"},Item:{pk:"h"}}', "the name 'Item' appears twice"),
])
def test_ion_names_repeated_in_a_struct_are_dead_letters(tmp_path: Path, line: bytes, why: str) -> None:
    # Ion allows a name twice in one struct; an item cannot hold both values, so the line is a
    # dead letter with its reason, never an item with one of them.
    p = tmp_path / "bad.ion"
    p.write_bytes(b'{Item:{pk:"ok1",m:{k:1}}}\n' + line + b'\n{Item:{pk:"ok2"}}\n')
    items, rejects, failures = _read(p, "ion")
    assert items == [{"pk": {"S": "ok1"}, "m": {"M": {"k": {"N": "1"}}}}, {"pk": {"S": "ok2"}}] and not failures
    assert len(rejects) == 1 and rejects[0][2] == "bad.ion:2" and re.search(why, rejects[0][1]), rejects


def test_ion_incremental_record_with_a_repeated_field_is_refused() -> None:
    from ddbmigrate.formats import ion

    with pytest.raises(ion.IonProblem, match="'Keys' appears twice"):
        ion.parse_change_line(b'{Keys:{pk:"a"},Keys:{pk:"b"},NewImage:{pk:"a"}}')
    with pytest.raises(ion.IonProblem, match="NewImage: the name 'x' appears twice"):
        ion.parse_change_line(b'{Keys:{pk:"a"},NewImage:{pk:"a",x:1,x:2}}')


def test_a_rejected_array_element_is_kept_as_written(tmp_path: Path) -> None:
    # Its dead letter replays the same numbers: the element's own text, not a re-encoding of the
    # decoded value (which wrote 2.50 as the string "2.50").
    p = tmp_path / "a.json"
    p.write_text('[{"pk": "a"},\n {"pk": "b", "n": 2.50, "pk": "c"}]')
    items, rejects, failures = _read(p)
    assert items == [{"pk": {"S": "a"}}] and not failures
    assert [(r[0], r[2]) for r in rejects] == [('{"pk": "b", "n": 2.50, "pk": "c"}', "a.json:2")]


def test_an_ion_marker_on_its_own_line_is_no_record(tmp_path: Path) -> None:
    # A writer may start an Ion file with its version marker alone on the first line: valid Ion,
    # no record, and not one a manifest's itemCount counts.
    p = tmp_path / "x.ion"
    p.write_bytes(b'$ion_1_0\n{Item:{pk:"a"}}\n$ion_1_0 {Item:{pk:"b"}}\n')
    items, rejects, failures = _read(p, "ion")
    assert items == [{"pk": {"S": "a"}}, {"pk": {"S": "b"}}] and rejects == [] and failures == []
    src = FileSource(LocalStorage(), Plan("files", str(tmp_path), [FileEntry(str(p), p.name, fmt="ion", item_count=2)]))
    chunks = list(src.read(p.name, None, threading.Event()))
    assert [it for c in chunks for it in c.items] == items and src.failures() == []


def test_a_huge_manifest_is_refused_without_being_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ddbmigrate.errors import FatalError
    from ddbmigrate.storage import export_layout
    from ddbmigrate.storage.export_layout import discover

    monkeypatch.setattr(export_layout, "MANIFEST_LIMIT", 4096)
    root = tmp_path / "exp" / "AWSDynamoDB" / "01700000000000-aaaaaaaa"
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.json.gz").write_bytes(gzip.compress(b""))
    (root / "manifest-files.json").write_bytes(json.dumps({
        "itemCount": 0, "dataFileS3Key": "AWSDynamoDB/01700000000000-aaaaaaaa/data/a.json.gz"}).encode() + b"\n")
    summary = json.dumps({"itemCount": 0, "outputFormat": "DYNAMODB_JSON"}).encode()
    (root / "manifest-summary.json").write_bytes(summary)
    assert len(discover(str(tmp_path / "exp"), LocalStorage()).files) == 1
    (root / "manifest-summary.json").write_bytes(b" " * 5000 + summary)  # (valid JSON, over the limit)
    with pytest.raises(FatalError, match="manifest-summary.json is over 4,096 bytes") as e:
        discover(str(tmp_path / "exp"), LocalStorage())
    assert e.value.code == "ManifestTooLarge"
    # A data file named "manifest" that big is no Data Pipeline manifest: the folder's files are read.
    (tmp_path / "dp").mkdir()
    (tmp_path / "dp" / "manifest").write_bytes(b" " * 5000)
    (tmp_path / "dp" / "a.json").write_bytes(b'{"pk": {"S": "a"}}\n')
    assert [f.unit for f in discover(str(tmp_path / "dp"), LocalStorage()).files] == ["a.json"]
