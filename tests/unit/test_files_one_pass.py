"""A checked file is fetched and decompressed once (files.py invariant 6).

The check pass (gzip CRC, md5Checksum, itemCount) keeps the file's content, and its items are
read from what it kept: the same items, rejects and positions as reading the file straight,
one fetch from storage instead of two, nothing left open or on disk afterwards.
"""

from __future__ import annotations

import base64
import codecs
import gzip
import hashlib
import os
import threading
from pathlib import Path
from typing import Any, List, Optional, Tuple

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddbmigrate.sources import files as files_mod
from ddbmigrate.sources.files import FileSource
from ddbmigrate.storage.export_layout import FileEntry, Plan
from ddbmigrate.storage.stores import LocalStorage


class CountingStorage(LocalStorage):
    def __init__(self) -> None:
        super().__init__()
        self.opened: List[str] = []

    def open_read(self, path: str) -> Any:
        self.opened.append(path)
        return super().open_read(path)


def _export_file(path: Path, lines: List[bytes], *, count: Optional[int] = None,
                 md5: Optional[str] = None, bom: bool = False) -> FileEntry:
    data = gzip.compress((codecs.BOM_UTF8 if bom else b"") + b"\n".join(lines) + b"\n")
    path.write_bytes(data)
    nonblank = sum(1 for x in lines if x.strip())
    right = base64.b64encode(hashlib.md5(data).digest()).decode()
    return FileEntry(str(path), path.name, len(data), nonblank if count is None else count, md5 or right)


def _read(storage: Any, entry: FileEntry, *, validate: bool = True, start: Optional[int] = None) -> Tuple[Any, ...]:
    src = FileSource(storage, Plan("export", os.path.dirname(entry.path), [entry]), validate=validate,
                     input_format="dynamodb-json", chunk_lines=7)
    chunks = list(src.read(entry.unit, start, threading.Event()))
    items = [orjson.dumps(i) for c in chunks for i in c.items]
    rejects = [r for c in chunks for r in c.rejects]
    positions = [(c.position, c.done) for c in chunks]
    return items, rejects, positions, [f.reason for f in src.failures()]


def _lines(n: int) -> List[bytes]:
    return [orjson.dumps({"Item": {"pk": {"S": f"k{i}"}, "n": {"N": str(i)}, "pad": {"S": "x" * (i % 300)}}})
            for i in range(n)]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("in_memory", [1 << 30, 2048], ids=["kept-in-memory", "kept-on-disk"])
def test_a_checked_file_is_fetched_once_and_read_whole(tmp_path: Path, in_memory: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_mod, "KEEP_IN_MEMORY", in_memory)
    entry = _export_file(tmp_path / "a.json.gz", _lines(50), bom=True)
    storage = CountingStorage()
    fds = _fds()
    items, rejects, positions, failures = _read(storage, entry)
    assert storage.opened == [entry.path]  # one fetch: checked and read from what was kept
    assert items == [orjson.dumps(orjson.loads(x)["Item"]) for x in _lines(50)]
    assert rejects == [] and failures == []
    assert positions[-1] == (50, True)
    assert _fds() == fds  # the kept content (memory or unnamed file) is closed


def test_a_file_over_the_keep_limit_is_fetched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_mod, "KEEP_LIMIT", 1000)  # less than the file's content
    entry = _export_file(tmp_path / "a.json.gz", _lines(40))
    storage = CountingStorage()
    items, _, _, failures = _read(storage, entry)
    assert storage.opened == [entry.path, entry.path]
    assert len(items) == 40 and failures == []


@pytest.mark.parametrize("bad", ["md5", "count"])
def test_a_bad_file_is_fetched_once_and_loads_nothing(tmp_path: Path, bad: str) -> None:
    lines = _lines(30)
    entry = _export_file(tmp_path / "a.json.gz", lines, count=31 if bad == "count" else None,
                         md5="AAAAAAAAAAAAAAAAAAAAAA==" if bad == "md5" else None)
    storage = CountingStorage()
    fds = _fds()
    items, rejects, _, failures = _read(storage, entry)
    assert items == [] and rejects == []
    assert len(failures) == 1 and ("md5" in failures[0].lower() or "itemcount" in failures[0].lower().replace(" ", ""))
    assert storage.opened == [entry.path]
    assert _fds() == fds


def test_a_resume_inside_a_checked_file_reads_the_rest(tmp_path: Path) -> None:
    entry = _export_file(tmp_path / "a.json.gz", _lines(30))
    items, _, positions, _ = _read(LocalStorage(), entry, start=12)
    assert items == [orjson.dumps(orjson.loads(x)["Item"]) for x in _lines(30)[12:]]
    assert positions[-1] == (30, True)


_line = st.one_of(
    st.just(b""), st.just(b"   "), st.just(b"not json"), st.just(b'{"Item": {"pk": {"S": "a"}, "pk": {"S": "b"}}}'),
    st.builds(lambda k, pad: orjson.dumps({"Item": {"pk": {"S": k}, "pad": {"S": pad}}}),
              st.text(min_size=1, max_size=8), st.text(max_size=40)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line, max_size=40), bom=st.booleans(), in_memory=st.sampled_from([64, 1 << 20]))
def test_reading_what_the_check_kept_equals_reading_the_file(tmp_path: Path, lines: List[bytes], bom: bool,
                                                            in_memory: int) -> None:
    path = tmp_path / "h.json.gz"
    entry = _export_file(path, lines, bom=bom)
    old = files_mod.KEEP_IN_MEMORY
    files_mod.KEEP_IN_MEMORY = in_memory
    try:
        kept = _read(LocalStorage(), entry)
    finally:
        files_mod.KEEP_IN_MEMORY = old
    straight = _read(LocalStorage(), entry, validate=False)
    assert kept == straight
