"""Replaying a copy's dead-letter file never writes an item the wrong way: a failed transform's
record holds the source item (it needs the fixed transform), a record refused later holds what
the transform returned (it must not be transformed again). Each replay writes its own kind and
keeps the other whole, for the other replay; a repeated key's second item is never replayed over
the first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from support import create_table, put_items, scan_all

pytestmark = pytest.mark.integration

V2 = '''
def v2(item):
    if item["id"] == "bad1" and BROKEN:
        raise ValueError("bug in v2")
    if item["id"] == "fan":
        return [{"id": "fan", "cents": 1}, {"id": "fan", "cents": 2}]
    return {"id": item["id"], "name": item["name"], "cents": item["dollars"] * 100, "schema": "v2"}
'''


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)


def by_id(items: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {i["id"]["S"]: i for i in items}


def test_a_mixed_dead_letter_file_is_replayed_each_kind_the_right_way(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint, hash_key=("id", "S")), create_table(endpoint, hash_key=("id", "S"))
    put_items(endpoint, src, [{"id": {"S": k}, "name": {"S": k.upper()}, "dollars": {"N": "5"}}
                              for k in ("a", "b", "bad1", "fan")])
    put_items(endpoint, dst, [{"id": {"S": "big"}, "name": {"S": "pre-existing"}}])
    put_items(endpoint, src, [{"id": {"S": "big"}, "name": {"S": "B" * 10}, "dollars": {"N": "5"},
                               "pad": {"S": "x"}}])
    (tmp_path / "v2.py").write_text("BROKEN = True\n" + V2)
    (tmp_path / "v2fixed.py").write_text("BROKEN = False\n" + V2)
    env_args = ["--endpoint-url", endpoint, "--progress", "off"]
    r = cli(tmp_path, "copy", src, dst, *env_args, "--transform", "v2.py:v2", "--on-error", "skip",
            "--mode", "fail-existing", "--dead-letter", "dl.jsonl")
    assert r.returncode == 3, r.stderr
    recs = [json.loads(x) for x in (tmp_path / "dl.jsonl").read_text().splitlines()]
    kinds = sorted((d["stage"], d["error_code"]) for d in recs)
    assert kinds == [("transform", "ValueError"), ("validate", "DuplicateKey"),
                     ("write", "ConditionalCheckFailedException")], kinds

    # Without --transform: the source item of the failed transform is not written in the old model.
    r = cli(tmp_path, "import", "dl.jsonl", dst, *env_args, "--mode", "fail-existing", "--dead-letter", "r1.jsonl")
    assert r.returncode == 3, r.stderr
    got = by_id(scan_all(endpoint, dst))
    assert "dollars" not in json.dumps(got.get("bad1", {})) and got["big"]["name"] == {"S": "pre-existing"}
    assert got["fan"]["cents"] == {"N": "1"}  # the first of the repeated key stays
    again = [json.loads(x) for x in (tmp_path / "r1.jsonl").read_text().splitlines()]
    reasons = " ".join(d["reason"] for d in again)
    assert "replay it with --transform" in reasons and "would replace it" in reasons

    # With the fixed transform, the kept records: the source item goes through it once; an item the
    # transform already returned is refused, not transformed twice.
    r = cli(tmp_path, "import", "r1.jsonl", dst, *env_args, "--transform", "v2fixed.py:v2", "--dead-letter", "r2.jsonl")
    assert r.returncode == 3, r.stderr
    got = by_id(scan_all(endpoint, dst))
    assert got["bad1"]["cents"] == {"N": "500"} and got["bad1"]["schema"] == {"S": "v2"}
    assert got["fan"]["cents"] == {"N": "1"}
    left = [json.loads(x) for x in (tmp_path / "r2.jsonl").read_text().splitlines()]
    assert sorted(d["reason"].split(";")[0] for d in left) == [
        "not replayed: the transform returned two items with this key for one source item and the first was written",
        "not replayed: this dead letter holds an item as it was to be written (what a transform returned, if the "
        "job had one)"]
    assert got["big"]["name"] == {"S": "pre-existing"}  # the conflict, never written over


def test_a_line_that_is_not_utf8_is_kept_exactly_and_never_replayed_as_u_fffd(endpoint: str, tmp_path: Path) -> None:
    """A line with bytes that are not UTF-8 is dead-lettered with its exact bytes (``raw_b64``): its
    replay is dead-lettered again, not loaded with U+FFFD for each bad byte (a record kept as
    readable text alone was replayed as if the replacement characters were the data). A raw line
    fixed in the record by hand is loaded."""
    dst = create_table(endpoint, hash_key=("pk", "S"))
    (tmp_path / "in.json").write_bytes(b'{"Item":{"pk":{"S":"u1"}}}\n{"Item":{"pk":{"S":"u2\xe9x"}}}\n'
                                       b'{"Item":{"pk":{"S":"u3"},"a":{"S":"\xff\xfe"}}}\n')
    env_args = ["--endpoint-url", endpoint, "--progress", "off"]
    r = cli(tmp_path, "import", "in.json", dst, *env_args, "--dead-letter", "dl.jsonl")
    assert r.returncode == 3, r.stderr
    recs = [json.loads(x) for x in (tmp_path / "dl.jsonl").read_text().splitlines()]
    assert [d["reason"] for d in recs] == ["not valid UTF-8: byte 23 of the line is b'\\xe9'",
                                           "not valid UTF-8: byte 36 of the line is b'\\xff'"]
    assert [d["origin"] for d in recs] == ["in.json:2", "in.json:3"]

    r = cli(tmp_path, "import", "dl.jsonl", dst, *env_args, "--dead-letter", "again.jsonl")
    assert r.returncode == 3, r.stderr + r.stdout
    assert len((tmp_path / "again.jsonl").read_text().splitlines()) == 2
    assert sorted(i["pk"]["S"] for i in scan_all(endpoint, dst)) == ["u1"]

    fixed = dict(recs[0], raw=recs[0]["raw"].replace("\ufffd", "\u00e9"))
    (tmp_path / "fixed.jsonl").write_text(json.dumps(fixed) + "\n")
    r = cli(tmp_path, "import", "fixed.jsonl", dst, *env_args)
    assert r.returncode == 0, r.stderr
    assert sorted(i["pk"]["S"] for i in scan_all(endpoint, dst)) == ["u1", "u2\u00e9x"]


def test_a_replicators_dead_letter_is_refused_saying_how_to_recover(endpoint: str, tmp_path: Path) -> None:
    """A replicate dead letter holds a stream record (a REMOVE, here): import cannot apply it.
    Before, it was refused as "an incremental export record outside an incremental import",
    which says nothing of what to do; now the refusal says how to bring the target back."""
    from ddbmigrate.state.deadletter import dead_letter_line

    dst = create_table(endpoint, hash_key=("id", "S"))
    put_items(endpoint, dst, [{"id": {"S": "k1"}, "v": {"S": "still here"}}])
    record = {"eventName": "REMOVE", "eventID": "e1",
              "dynamodb": {"Keys": {"id": {"S": "k1"}}, "OldImage": {"id": {"S": "k1"}, "v": {"S": "still here"}},
                           "SequenceNumber": "100", "StreamViewType": "NEW_AND_OLD_IMAGES"}}
    (tmp_path / "dl.jsonl").write_bytes(dead_letter_line(
        None, "transform failed: ValueError: boom", code="InvalidInput", stage="read", origin="shard-0001:100",
        raw=json.dumps(record)))
    (tmp_path / "fixed.py").write_text("def f(item):\n    return item\n")
    for n, extra in enumerate(([], ["--transform", "fixed.py:f"])):
        r = cli(tmp_path, "import", "dl.jsonl", dst, "--endpoint-url", endpoint, "--progress", "off",
                "--dead-letter", f"again{n}.jsonl", *extra)
        assert r.returncode == 3, r.stderr
        again = [json.loads(x) for x in (tmp_path / f"again{n}.jsonl").read_text().splitlines()]
        assert len(again) == 1 and again[0]["reason"].startswith(
            "not replayed: a dead letter of `ddbmigrate replicate` holds a stream record"), again
        assert "verify SOURCE TARGET --repair" in again[0]["reason"]
    assert scan_all(endpoint, dst) == [{"id": {"S": "k1"}, "v": {"S": "still here"}}]


def test_an_incremental_imports_dead_letter_is_refused_saying_how_to_recover(endpoint: str, tmp_path: Path) -> None:
    """An incremental export's record that failed is dead-lettered whole; a newer or an older
    record of its key may have been written. Replayed alone it would put its image over that one
    (an older image over a newer one), so the replay refuses it and says how to bring it in."""
    from test_export_import import _rec, aws_export

    dst = create_table(endpoint)
    t = 1_700_000_000_000_000
    bad = _rec("a", t + 100, {"v": {"N": "not a number"}})  # the newest of a: refused
    aws_export(tmp_path / "inc", [[_rec("a", t, {"v": {"S": "older"}}), bad]], incremental=True)
    r = cli(tmp_path, "import", "inc", dst, "--endpoint-url", endpoint, "--progress", "off", "--dead-letter", "dl.jsonl")
    assert r.returncode == 3, r.stderr
    assert scan_all(endpoint, dst) == [{"pk": {"S": "a"}, "v": {"S": "older"}}]
    r = cli(tmp_path, "import", "dl.jsonl", dst, "--endpoint-url", endpoint, "--progress", "off",
            "--dead-letter", "again.jsonl")
    assert r.returncode == 3, r.stderr
    again = [json.loads(x) for x in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert len(again) == 1 and again[0]["reason"].startswith(
        "not replayed: a dead letter of an incremental export's import holds an export record"), again
    assert "import the export again" in again[0]["reason"]
    assert scan_all(endpoint, dst) == [{"pk": {"S": "a"}, "v": {"S": "older"}}]
