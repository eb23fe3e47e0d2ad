"""Values an acceptance probe of every type found mishandled: binary compared by its base64
spelling, numbers whose exponent overflows Decimal, JSON escapes cut by a read block, an Ion
symbol with no text. Each test fails on the code before the fix."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddbmigrate.core.items import (
    KeySchema,
    canonical_b64,
    canonical_item,
    canonical_number,
    digest,
    item_problem,
    number_problem,
)
from ddbmigrate.formats import ion
from ddbmigrate.sources.files import FileSource
from ddbmigrate.storage.export_layout import FileEntry, Plan
from ddbmigrate.storage.stores import LocalStorage


# ------------------------------------------------------------------ binary by bytes


def test_two_spellings_of_the_same_bytes_are_one_key_and_one_value() -> None:
    """``QQ==`` and ``QR==`` both decode to b"A": before, the writer took them for two keys
    (which one survived in the table was up to thread timing) and verify for two values."""
    ks = KeySchema("pk", "B")
    assert ks.key({"pk": {"B": "QQ=="}}) == ks.key({"pk": {"B": "QR=="}}) == ks.key({"pk": {"B": b"A"}})
    a = {"pk": {"S": "k"}, "v": {"B": "QQ=="}, "s": {"BS": ["QR==", "Qg=="]}}
    b = {"pk": {"S": "k"}, "v": {"B": "QR=="}, "s": {"BS": ["Qg==", "QQ=="]}}
    assert canonical_item(a) == canonical_item(b) and digest(a) == digest(b)
    assert canonical_item(a) != canonical_item({**a, "v": {"B": "Qg=="}})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_canonical_base64_is_the_standard_encoding_of_the_bytes(data: bytes) -> None:
    import base64

    text = base64.b64encode(data).decode()
    assert canonical_b64(text) == text == canonical_b64(data)
    if text.endswith("=") and len(text) >= 2:
        # Set the unused bits of the last character: another spelling of the same bytes.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        pad = len(text) - len(text.rstrip("="))
        last = text[-pad - 1]
        other = alphabet[alphabet.index(last) | (0b1111 if pad == 2 else 0b11)]
        spelled = text[:-pad - 1] + other + "=" * pad
        assert base64.b64decode(spelled) == data and canonical_b64(spelled) == text


# ------------------------------------------------------------------ numbers out of Decimal's range


@pytest.mark.parametrize("text", ["1e1000000", "-1e1000000", "9E+999999999999999999", "1e-1000000"])
def test_a_number_far_out_of_range_is_said_so_not_an_overflow(text: str) -> None:
    assert "out of DynamoDB's range" in (number_problem(text) or "")
    problem = item_problem({"pk": {"S": "a"}, "v": {"N": text}})
    assert problem is not None and "out of DynamoDB's range" in problem
    canonical_number(text)  # verify's canonical form of such a value does not raise either


def test_the_edges_of_dynamodbs_range_are_unchanged() -> None:
    assert number_problem("9.9999999999999999999999999999999999999E+125") is None
    assert number_problem("1E-130") is None
    assert number_problem("1E+126") and number_problem("1E-131")
    assert canonical_number("1.500") == "1.5" and canonical_number(str(Decimal("1E+125"))) == "1E+125"


# ------------------------------------------------------------------ JSON escapes across blocks


@pytest.mark.parametrize("indent", [None, 1, 4])
def test_a_scan_document_whose_escapes_cross_read_blocks_loads_whole(tmp_path: Path, indent: int) -> None:
    """json.dump escapes non-ASCII (\\u00e9); before, a 1 MB block ending inside such an escape
    failed the file as "Invalid \\uXXXX escape" a few thousand items in."""
    items = [{"pk": {"S": f"item{i}"}, "v": {"S": "café 日本 \U0001F600" * 10}} for i in range(4000)]
    path = tmp_path / "scan.json"
    with open(path, "w") as fh:
        json.dump({"Items": items, "Count": len(items), "ScannedCount": len(items)}, fh, indent=indent)
    src = FileSource(LocalStorage(), Plan("files", str(tmp_path), [FileEntry(str(path), path.name, fmt="aws-scan")]),
                     key_types={"pk": "S"})
    got = []
    for c in src.read(path.name, None, threading.Event()):
        assert c.rejects == []
        got += c.items
    assert [f.one_line() for f in src.failures()] == []
    assert got == items


# ------------------------------------------------------------------ Ion


def test_an_ion_symbol_without_text_is_refused_not_stored_as_none() -> None:
    got, reason = ion.parse_item_line(b"$ion_1_0 {Item:{pk:\"i26\",v:$0}}")
    assert got is None and reason is not None and "symbol with no text" in reason, (got, reason)
    got, reason = ion.parse_item_line(b"$ion_1_0 {Item:{pk:\"i26\",v:$dynamodb_SS::[a, $0]}}")
    assert got is None and reason is not None and "symbol with no text" in reason, (got, reason)


def test_a_utf16_json_file_is_said_to_be_utf16(tmp_path: Path) -> None:
    """Before: "not a format ddbmigrate reads ... found text starting '\\xff\\xfe{\\x00'", and with
    --input-format "it does not start with a JSON object"."""
    from ddbmigrate.errors import UsageError
    from ddbmigrate.sources.detection import assign_formats

    body = '{"Items":[{"pk":{"S":"a"}}],"Count":1,"ScannedCount":1}\n'
    for name, data in (("bom.json", body.encode("utf-16")), ("nobom.json", body.encode("utf-16-le"))):
        path = tmp_path / name
        path.write_bytes(data)
        for fmt in ("auto", "aws-scan"):
            with pytest.raises(UsageError, match="the file is UTF-16 text"):
                assign_formats(Plan("files", str(tmp_path), [FileEntry(str(path), name)]), LocalStorage(), fmt)
    nuls = tmp_path / "zeros.json"
    nuls.write_bytes(b"\0" * 4096)  # not text at all: not called UTF-16
    with pytest.raises(UsageError) as e:
        assign_formats(Plan("files", str(tmp_path), [FileEntry(str(nuls), "zeros.json")]), LocalStorage(), "auto")
    assert "UTF-16" not in e.value.message


def test_a_difference_path_tells_a_dotted_name_from_a_nested_key() -> None:
    from ddbmigrate.verify.compare import diff_paths

    e = {"pk": {"S": "k"}, "a.b": {"S": "1"}, "a": {"M": {"b": {"S": "1"}}}, "l[0]": {"S": "x"},
         "l": {"L": [{"S": "x"}]}}
    changed_top = {**e, "a.b": {"S": "2"}, "l[0]": {"S": "y"}}
    changed_nested = {**e, "a": {"M": {"b": {"S": "2"}}}, "l": {"L": [{"S": "y"}]}}
    assert [p for p, _, _ in diff_paths(e, changed_top)] == ['"a.b"', '"l[0]"']
    assert [p for p, _, _ in diff_paths(e, changed_nested)] == ["a.b", "l[0]"]
