"""File codecs without a server: line parsing, plain JSON, gzip streaming, the export sink's commits."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddbmigrate.core.items import canonical_item
from ddbmigrate.core.records import PUT, Op
from ddbmigrate.sinks.export_files import FileSink, plain_json
from ddbmigrate.sources.files import FileSource
from ddbmigrate.sources.lines import LineStream, TooLong, parse_item
from ddbmigrate.storage.export_layout import FileEntry, Plan
from ddbmigrate.storage.export_layout import checksum_matches as _checksum_matches
from ddbmigrate.storage.stores import LocalStorage
from formats_support import _item


@settings(max_examples=300, deadline=None)
@given(item=_item, wrapped=st.booleans())
def test_dynamodb_json_line_round_trip(item: Dict[str, Any], wrapped: bool) -> None:
    if not wrapped and list(item) == ["Item"] and isinstance(item["Item"].get("M"), dict):
        return  # {"Item": {"M": {...}}} bare is the wrapper of an item with an "M" attribute: ambiguous
    line = orjson.dumps({"Item": item} if wrapped else item)
    got, reason, fmt = parse_item(line, "ddb")
    assert reason is None and got == item and fmt == "ddb"


def _plain_expected(v: Dict[str, Any]) -> Dict[str, Any]:
    """What survives plain JSON: B becomes a base64 string, sets become lists."""
    ((t, x),) = v.items()
    if t == "B":
        return {"S": x}
    if t in ("SS", "BS"):
        return {"L": [{"S": e} for e in x]}
    if t == "NS":
        return {"L": [{"N": e} for e in x]}
    if t == "L":
        return {"L": [_plain_expected(e) for e in x]}
    if t == "M":
        return {"M": {k: _plain_expected(e) for k, e in x.items()}}
    return v


@settings(max_examples=300, deadline=None)
@given(item=_item)
def test_plain_json_round_trip_keeps_every_digit(item: Dict[str, Any]) -> None:
    got, reason, _ = parse_item(plain_json(item), "plain")
    assert reason is None
    assert canonical_item(got) == canonical_item({k: _plain_expected(v) for k, v in item.items()})  # type: ignore[arg-type]


def test_plain_number_precision() -> None:
    got, reason, _ = parse_item(b'{"a": 0.1000000000000000000000000000000000001, "b": 1e-130, "c": -12}', "auto")
    assert reason is None and got == {"a": {"N": "0.1000000000000000000000000000000000001"}, "b": {"N": "1E-130"},
                                      "c": {"N": "-12"}}


def test_format_is_fixed_by_the_first_object_of_a_file() -> None:
    _, _, fmt = parse_item(b'{"Item": {"pk": {"S": "a"}}}', "auto")
    got, reason, _ = parse_item(b'{"pk": {"S": 1}}', fmt)
    assert got is None and "S must be a string" in (reason or "")


def test_checksum_encodings() -> None:
    data = b"manifest"
    for h in (hashlib.md5(data).digest(), hashlib.sha256(data).digest()):
        assert _checksum_matches(base64.b64encode(h).decode(), data) and _checksum_matches(h.hex(), data)
    assert not _checksum_matches(base64.b64encode(hashlib.md5(b"x").digest()).decode(), data)


def _lines(path: Path) -> List[Any]:
    ls = LineStream(LocalStorage(), str(path))
    try:
        return [line for _, line in ls.numbered()]
    finally:
        ls.close()


def test_gzip_stream_multi_member_truncated_and_long_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "m.gz"
    p.write_bytes(gzip.compress(b"a\nb\n") + gzip.compress(b"c\n"))
    assert _lines(p) == [b"a", b"b", b"c"]
    data = b"".join(b"line%05d\n" % i for i in range(20000))
    gz = gzip.compress(data)
    (tmp_path / "t.gz").write_bytes(gz[: len(gz) // 2])
    ls = LineStream(LocalStorage(), str(tmp_path / "t.gz"))
    seen = []
    with pytest.raises(EOFError):
        for _, ln in ls.numbered():
            seen.append(ln)
    expected = zlib.decompressobj(31).decompress(gz[: len(gz) // 2]).split(b"\n")[:-1]
    assert seen == expected and len(seen) > 0
    monkeypatch.setattr("ddbmigrate.sources.lines.MAX_LINE", 1000)
    (tmp_path / "long.json").write_bytes(b"x\n" + b"y" * 5000 + b"\nz")
    got = _lines(tmp_path / "long.json")
    assert got[0] == b"x" and isinstance(got[1], TooLong) and got[1].size == 5000 and got[2] == b"z"


def test_json_array_across_blocks(tmp_path: Path) -> None:
    items = [{"pk": f"k{i}", "n": Decimal(f"{i}.5"), "pad": "x" * 300} for i in range(6000)]  # > 1 MB
    text = "[\n" + ",\n".join(json.dumps(i, default=str).replace(f'"{i["n"]}"', str(i["n"])) for i in items) + "\n]"
    (tmp_path / "a.json").write_text(text)
    src = FileSource(LocalStorage(), Plan("files", str(tmp_path), [FileEntry(str(tmp_path / "a.json"), "a.json")]))
    chunks = list(src.read("a.json", None, threading.Event()))
    got = [it for c in chunks for it in c.items]
    assert len(got) == 6000 and got[10] == {"pk": {"S": "k10"}, "n": {"N": "10.5"}, "pad": {"S": "x" * 300}}
    assert chunks[-1].done and chunks[-1].position == 6000 and not src.failures()
    assert [c.origins[0] for c in chunks if c.items][:2] == ["a.json:2", "a.json:1002"]  # type: ignore[index]
    resumed = [it for c in src.read("a.json", 5990, threading.Event()) for it in c.items]
    assert [i["pk"]["S"] for i in resumed] == [f"k{i}" for i in range(5990, 6000)]


def _op(i: int) -> Op:
    item = {"pk": {"S": f"k{i}"}}
    return Op(PUT, item, orjson.dumps(item), None)


def test_file_sink_commits_only_at_checkpoints_and_restore_drops_orphans(tmp_path: Path) -> None:
    now = [0.0]
    sink = FileSink(LocalStorage(), str(tmp_path), commit_every=10.0, file_size=50, clock=lambda: now[0])
    sink.write([_op(i) for i in range(10)])  # rolls over every ~2 lines
    with sink.commit(False) as state:
        assert state is None  # too soon: no save, nothing committed
    assert sink.committed == []
    now[0] = 11.0
    with sink.commit(False) as state:
        assert state is not None
        saved = state
    assert sum(e["itemCount"] for e in saved["files"]) == 10
    sink.write([_op(i) for i in range(10, 14)])  # finished files not covered by a checkpoint
    sink.close()
    data = Path(sink.root) / "data"
    assert len(list(data.iterdir())) > len(saved["files"])
    again = FileSink(LocalStorage(), str(tmp_path))
    again.restore(saved)
    assert again.root == sink.root
    assert sorted(p.name for p in data.iterdir()) == sorted(e["dataFileS3Key"].rsplit("/", 1)[1] for e in saved["files"])


def test_a_resume_deletes_its_exports_unfinished_files_whichever_host_wrote_them(tmp_path: Path) -> None:
    """A resume deleted every unfinished file of its export; named for their process, those of
    another host or pid namespace (a Kubernetes pod restarted under a new name, on a shared
    volume) were kept by the sweep, and by the resume, for good."""
    export_id = "01796544605852-6d23dadd"
    first = FileSink(LocalStorage(), str(tmp_path), export_id=export_id)
    tmp = Path(first._tmp())
    theirs = tmp / f"part-pod_abc.4026532001-7-{export_id}-x1.json.gz"  # the killed pod's
    other_export = tmp / "part-pod_abc.4026532001-7-01796544605999-0a0b0c0d-y.json.gz"
    theirs.write_bytes(b"half")
    other_export.write_bytes(b"half")
    again = FileSink(LocalStorage(), str(tmp_path))
    again.restore({"export_id": export_id, "files": []})
    assert sorted(p.name for p in tmp.iterdir()) == [other_export.name]


def test_a_sink_writes_after_another_sink_tidied_the_shared_temporary_folder_away(tmp_path: Path) -> None:
    """Two sinks of one export (two Spark tasks): the first closes with the shared temporary
    folder empty and removes it, after the second found it but before its first file. The
    second still writes and finishes its file (it failed with FileNotFoundError on the .part)."""
    first = FileSink(LocalStorage(), str(tmp_path), export_id="01796544605852-6d23dadd")
    second = FileSink(LocalStorage(), str(tmp_path), export_id="01796544605852-6d23dadd")
    shared = second._tmp()
    first.write([_op(0)])
    first.close()
    assert not Path(shared).exists()  # tidied away: the race the second sink must survive
    second.write([_op(1), _op(2)])
    second.close()
    files = sorted((Path(second.root) / "data").iterdir())
    lines = [json.loads(x) for f in files for x in gzip.decompress(f.read_bytes()).splitlines()]
    assert sorted(orjson.dumps(x).decode() for x in lines) == sorted(
        orjson.dumps({"Item": _op(i).item}).decode() for i in range(3))


def test_temporary_files_for_a_remote_destination_go_to_a_folder_of_our_own(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A sink removes its temporary folder when it finds it empty: for S3 that folder must be one
    ddbmigrate made inside TMPDIR, never the user's TMPDIR itself."""
    from ddbmigrate.storage.stores import Storage

    user_tmp = tmp_path / "tmp"
    user_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(user_tmp))
    ours = Path(Storage().temp_dir("s3://bucket/prefix"))
    assert ours.is_dir() and ours.parent == user_tmp
    ours.rmdir()  # what a closing sink does with an empty one
    assert user_tmp.is_dir()


def test_an_export_commits_only_whole_chunks(tmp_path: Path) -> None:
    """Files are committed only when no chunk is half-acknowledged: the committed files hold
    exactly the items the checkpoint counts (a resume then never writes an item twice)."""
    import time

    from ddbmigrate.core.processing import Processing
    from ddbmigrate.core.protocols import SourceBase
    from ddbmigrate.core.records import Chunk
    from ddbmigrate.engine.pipeline import Pipeline

    class Src(SourceBase):
        def units(self) -> List[str]:
            return ["0"]

        def read(self, unit: str, position: Any, stop: Any) -> Iterator[Chunk]:
            for c in range(int(position or 0), 4):
                yield Chunk(items=[{"pk": {"S": f"{c}-{i}"}} for i in range(30)], position=c + 1, done=c == 3)

    class SlowFiles(FileSink):
        def write(self, ops: List[Any]) -> Any:
            if ops[0].item["pk"]["S"] == "0-20":  # the last batch of the first chunk is slow
                time.sleep(0.5)
            return super().write(ops)

    sink = SlowFiles(LocalStorage(), str(tmp_path), commit_every=0.0)
    saves: List[Any] = []

    def on_checkpoint(p: Pipeline, state: Dict[str, Any]) -> None:
        cut = p.checkpoint_cut()
        saves.append((cut.counters.get("written", 0), sum(f["itemCount"] for f in state["files"])))

    Pipeline(Src(), sink, Processing(key_schema=None, max_batch_ops=10, dedupe=False), readers=1, writers=3,
             on_checkpoint=on_checkpoint, checkpoint_every=0.05).run()
    assert saves and all(counted == in_files for counted, in_files in saves), saves
    assert saves[-1] == (120, 120)
