"""AWS Data Pipeline's Hive export (``\\x02``/``\\x03`` lines of Gson JSON values) read without a
server: every type both connector generations write round-trips, detection tells it from the
other formats, bad lines are dead letters with ``file:line`` and a reason, and a Data Pipeline
line kept as it was in a dead letter is replayed as Data Pipeline again, never as plain JSON."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any, Dict, List, Tuple

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddbmigrate.core.items import canonical_item
from ddbmigrate.formats.detect import check_sample, detect
from ddbmigrate.sources.lines import parse_line, parse_pipeline_line
from ddbmigrate.state.deadletter import dead_letter_line
from ddbmigrate.storage.stores import LocalStorage
from formats_support import hive_item, hive_line

HIVE = "data-pipeline-hive"


@settings(max_examples=300, deadline=None)
@given(item=hive_item, sdk=st.sampled_from(["v1", "v2"]), ascii_only=st.booleans())
def test_every_type_round_trips_from_both_connector_generations(item: Dict[str, Any], sdk: str,
                                                                 ascii_only: bool) -> None:
    line = hive_line(item, sdk, ascii_only)
    got, reason, _ = parse_pipeline_line(line, HIVE)
    assert reason is None and canonical_item(got) == canonical_item(item)  # type: ignore[arg-type]
    assert detect(line + b"\n", "000000_0", True).fmt == HIVE and check_sample(line + b"\n", HIVE, True) is None


def test_the_connectors_own_lines() -> None:
    # DynamoDBItemWritable's comment on "the old data pipeline export job (which leverages Hive)".
    got, reason, _ = parse_pipeline_line(b'id\x03{"s":"Seattle"}\x02scores\x03{"nS":["100","30","45"]}', HIVE)
    assert reason is None and got == {"id": {"S": "Seattle"}, "scores": {"NS": ["100", "30", "45"]}}
    # SDK v2's serializer: lower-cased type names; an empty list or map is written as such and read
    # as such (the connector's own reader would make an empty AttributeValue of it).
    got, reason, _ = parse_pipeline_line(b'b\x03{"b":"AAH/"}\x02bs\x03{"bs":["AA=="]}\x02t\x03{"bool":false}\x02'
                                         b'z\x03{"null":true}\x02l\x03{"l":[]}\x02m\x03{"m":{}}', HIVE)
    assert reason is None and got == {"b": {"B": "AAH/"}, "bs": {"BS": ["AA=="]}, "t": {"BOOL": False},
                                      "z": {"NULL": True}, "l": {"L": []}, "m": {"M": {}}}


def test_detection_tells_hive_lines_from_the_other_formats() -> None:
    line = hive_line({"pk": {"S": "a"}, "n": {"N": "1"}})
    assert detect(line + b"\n", "000000", True).fmt == HIVE
    # A name may start with "[" or "{": still Hive, not a JSON array or an Ion struct.
    assert detect(hive_line({"[x": {"S": "a"}}) + b"\n" + hive_line({"{y": {"S": "b"}}) + b"\n", "f", True).fmt == HIVE
    # Half the sample is enough (one broken line does not change a file's format); less is not.
    assert detect(line + b"\n" + b"garbage\n", "f", True).fmt == HIVE
    assert detect(line + b"\ngarbage\nmore garbage\n", "f", True).fmt != HIVE
    assert detect(b'{"pk":{"s":"a"}}\n', "f", True).fmt == "data-pipeline"
    assert detect(b'{"pk":{"S":"a"}}\n', "f", True).fmt == "dynamodb-json"
    assert detect(line + b"\n", "x.csv", True).fmt == "csv"  # a .csv name still decides first
    why = check_sample(b'{"pk":{"s":"a"}}\n', HIVE, True)
    assert why is not None and "no line of the first 1 is a Hive line" in why
    assert check_sample(b'{"pk":{"s":"a"}}\n', "data-pipeline", True) is None
    assert check_sample(line + b"\n", "data-pipeline", True) == "not JSON lines"


def _read(folder: Path, input_format: str = "auto") -> Tuple[Dict[str, Any], List[Any]]:
    from ddbmigrate.sources.detection import assign_formats
    from ddbmigrate.sources.files import FileSource
    from ddbmigrate.storage.export_layout import discover

    st_ = LocalStorage()
    plan = assign_formats(discover(str(folder), st_, any_name=input_format != "auto"), st_, input_format)
    src = FileSource(st_, plan)
    out = {}
    for f in plan.files:
        chunks = list(src.read(f.unit, None, threading.Event()))
        out[f.unit] = (f.fmt, [i for c in chunks for i in c.items], [r for c in chunks for r in c.rejects])
    return out, src.failures()


BAD = [
    (b"\\N", "\\N is Hive's NULL", True),
    (b'pk\x03{"s":"a"}\x02nothing', "field 2 has no \\x03", True),
    (b'pk\x03{"s":"a"}\x02x\x03y\x03{"s":"b"}', "field 2 has 2 \\x03", True),
    (b'pk\x03{"s":"a"', "invalid JSON in the value of 'pk'", True),
    (b'pk\x03{"s":"a"}\x02pk\x03{"s":"b"}', "the attribute 'pk' appears twice", True),
    (b'pk\x03{"s":"a","s":"b"}', "'pk': the name 's' appears twice", True),
    (b'pk\x03{"q":"a"}', "unknown type key 'q'", True),
    (b'pk\x03{"s":"caf\xe9"}', "not valid UTF-8: byte 13", True),
    # Converted, but no valid item: kept as the DynamoDB-JSON item it made.
    (b'pk\x03{"s":"a"}\x02e\x03{"sS":[]}', "e: SS is empty", False),
    (b'pk\x03{"s":"a"}\x02z\x03{"nULLValue":false}', "NULL must be true", False),
    (b'pk\x03{"s":"a"}\x02bin\x03{"b":"!!"}', "base64", False),
]


def test_bad_lines_are_dead_letters_with_file_line_and_why(tmp_path: Path) -> None:
    good = [{" lead": {"S": "space"}, "pk": {"S": f"g{i}"}} for i in range(3)]
    body = [hive_line(good[0])] + [b for b, _, _ in BAD] + [b"", hive_line(good[1]), hive_line(good[2]) + b"\r"]
    (tmp_path / "000000_0").write_bytes(b"\n".join(body) + b"\n")
    for given in ("auto", HIVE):
        got, failures = _read(tmp_path if given != "auto" else tmp_path / "000000_0", given)
        (fmt, items, rejects), = got.values()
        assert not failures and fmt == HIVE
        assert items == good  # a name's leading space is kept, a CRLF ending dropped
        assert [r[2] for r in rejects] == [f"000000_0:{n}" for n in range(2, 2 + len(BAD))]
        for (raw, reason, _), (line, why, as_line) in zip(rejects, BAD):
            assert why in reason, (reason, why)
            if as_line:  # kept as it was, its format said, for its replay
                assert reason.endswith(" (data-pipeline-hive)") and raw.encode("utf-8", "surrogateescape") == line
            else:
                assert not reason.endswith(")") or "(data-pipeline" not in reason
                assert orjson.loads(raw)["pk"] == {"S": "a"}


def test_a_file_of_no_hive_lines_named_as_hive_is_refused_at_once(tmp_path: Path) -> None:
    from ddbmigrate.errors import UsageError

    (tmp_path / "part").write_bytes(b'{"pk":{"s":"a"}}\n')
    with pytest.raises(UsageError, match="not data-pipeline-hive .* try --input-format data-pipeline"):
        _read(tmp_path, HIVE)


def _record(raw: bytes, reason: str) -> Dict[str, Any]:
    return orjson.loads(dead_letter_line(None, reason, stage="read", origin="f:1",
                                         raw=raw.decode("utf-8", "surrogateescape")))


@pytest.mark.parametrize("fmt,broken,fixed,item", [
    ("data-pipeline", b'{"pk":{"s":"a"},"m":{"s":"x"},}', b'{"pk":{"s":"a"},"m":{"s":"x"}}',
     {"pk": {"S": "a"}, "m": {"S": "x"}}),
    ("data-pipeline", b'{"pk":{"s":"a"},"m":{"q":"x"}}', b'{"pk":{"s":"a"},"m":{"s":"x"}}',
     {"pk": {"S": "a"}, "m": {"S": "x"}}),
    (HIVE, b'pk\x03{"s":"a"}\x02m\x03{"s":"x"', b'pk\x03{"s":"a"}\x02m\x03{"s":"x"}',
     {"pk": {"S": "a"}, "m": {"S": "x"}}),
])
def test_a_pipeline_line_kept_as_it_was_replays_as_pipeline(fmt: str, broken: bytes, fixed: bytes,
                                                           item: Dict[str, Any]) -> None:
    from ddbmigrate.sources.lines import pipeline_reject

    _, reason, _ = parse_pipeline_line(broken, fmt)
    raw, reason = pipeline_reject(broken, fmt, reason or "")
    assert raw == broken
    rec = _record(raw, reason)
    # Unedited: dead-lettered again, with the same reason.
    got, why, _, _ = parse_line(orjson.dumps(rec), "deadletter")
    assert got is None and why is not None and why in reason
    # raw edited to fix the line: the item Data Pipeline meant, never {"s": ...} read as a map.
    rec["raw"] = fixed.decode()
    got, why, _, _ = parse_line(orjson.dumps(rec), "deadletter")
    assert why is None and got == item


@pytest.mark.parametrize("fmt,line", [("data-pipeline", b'{"pk":{"s":"caf\xe9"}}'),
                                      (HIVE, b'pk\x03{"s":"caf\xe9"}')])
def test_a_pipeline_line_not_utf8_keeps_its_bytes_and_is_never_loaded_with_u_fffd(fmt: str, line: bytes) -> None:
    from ddbmigrate.sources.lines import pipeline_reject

    _, reason, _ = parse_pipeline_line(line, fmt)
    assert reason is not None and reason.startswith("not valid UTF-8")
    raw, reason = pipeline_reject(line, fmt, reason)
    rec = _record(raw, reason)
    assert base64.b64decode(rec["raw_b64"]) == line and "\ufffd" in rec["raw"]
    got, why, _, _ = parse_line(orjson.dumps(rec), "deadletter")
    assert got is None and why is not None and why.startswith("not valid UTF-8")
    rec["raw"] = rec["raw"].replace("\ufffd", "\u00e9")  # fixed by hand: the edited text is read
    got, why, _, _ = parse_line(orjson.dumps(rec), "deadletter")
    assert why is None and got == {"pk": {"S": "caf\u00e9"}}


def test_a_short_file_none_of_whose_lines_is_hive_syntax_fails_whole(tmp_path: Path) -> None:
    (tmp_path / "000000_0").write_bytes(b'pk\x03{"s":"a"}}\n\\N\nno delimiters at all\n')
    got, failures = _read(tmp_path, HIVE)
    (_, items, rejects), = got.values()
    assert not items and not rejects
    (failure,) = failures
    assert "not data-pipeline-hive: its 3 records all failed to parse" in failure.reason
