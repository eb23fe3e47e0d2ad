"""Which format a data file is in, decided once per file from its layout and a sample of records.

The decision never rests on one record: up to ``SAMPLE`` records of the file's head are
classified, and a specific format (DynamoDB JSON, an incremental export, a dead-letter file, a
Data Pipeline export) is chosen only when it explains at least half of them; otherwise the file
is plain JSON. So a plain JSON file whose items have an attribute named ``Item``, ``Keys`` or
``Metadata`` stays plain JSON. The ``{"Item": ...}`` wrapper counts only when it is the line's
single key and its value is shaped like a DynamoDB item. Lines holding a raw ``\\x03`` (no JSON or
Ion text does) are first tried as Data Pipeline's Hive export, by the same rule of half.

Invariant: pure (bytes in, a :class:`Detected` out); the caller reads the head of the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Dict, List, Optional, Tuple

import orjson

from ..core.items import ALL_TYPES
from ..state.deadletter import RECORD_KEYS
from . import ion
from .records import HIVE_NAME, looks_data_pipeline, looks_hive_line, looks_scan_page

SAMPLE = 100

# Every format a data file can be read as (what --input-format names; "auto" detects).
FORMATS: Dict[str, str] = {
    "dynamodb-json": "DynamoDB JSON lines ({\"Item\":{...}} or bare items), AWS export DYNAMODB_JSON / ImportTable",
    "json": "plain JSON lines or a JSON array (numbers exact)",
    "ion": "Amazon Ion lines ($ion_1_0 {Item:{...}}), AWS export ION / ImportTable ION",
    "csv": "CSV as ImportTable reads it (header line or --csv-header)",
    "aws-scan": "`aws dynamodb scan --output json` documents (one or several pages)",
    "dynamodump": "dynamodump backup data pages (data/0001.json ...)",
    "data-pipeline": "AWS Data Pipeline DynamoDB-export lines (lowercase type keys)",
    "data-pipeline-hive": "AWS Data Pipeline Hive export lines (\\x02 between attributes, \\x03 after a name)",
}
INPUT_FORMATS = ("auto", *FORMATS)
# What a file is read with: aws-scan and dynamodump pages are the same Scan documents.
READER = {"aws-scan": "scan", "dynamodump": "scan"}

_SCAN_FIRST_KEY = re.compile(rb'^\s*\{\s*"(Items|Count|ScannedCount|LastEvaluatedKey|ConsumedCapacity|NextToken)"\s*:')


@dataclass(frozen=True)
class Detected:
    fmt: Optional[str]  # one of FORMATS, "incremental", "dead-letter", or None (not recognised)
    found: str  # what the head looks like, for messages


def _looks_wire(obj: Any) -> bool:
    if not isinstance(obj, dict) or not obj:
        return False
    for v in obj.values():
        if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in ALL_TYPES:
            return False
    return True


def classify(obj: Any) -> Tuple[str, ...]:
    """The specific formats one decoded JSON record fits (plain JSON fits every object)."""
    if not isinstance(obj, dict):
        return ()
    out: List[str] = []
    keys = set(obj)
    if keys == {"Item"} and _looks_wire(obj["Item"]) or _looks_wire(obj):
        out.append("dynamodb-json")
    if "Keys" in keys and keys <= {"Keys", "Metadata", "NewImage", "OldImage"} and _looks_wire(obj["Keys"]):
        out.append("incremental")
    if "item" in keys and ("reason" in keys or "error_code" in keys) and keys <= RECORD_KEYS:
        out.append("dead-letter")
    if looks_data_pipeline(obj):
        out.append("data-pipeline")
    return tuple(out)


def _sample_lines(head: bytes, complete: bool) -> List[bytes]:
    lines = head.split(b"\n")
    if not complete:
        lines = lines[:-1]  # the last line may be cut by the sample's end
    return [ln.rstrip(b"\r") for ln in lines if ln.strip()][:SAMPLE]


def _vote(objs: List[Any]) -> Optional[str]:
    dicts = [o for o in objs if isinstance(o, dict)]
    if not dicts:
        return None
    counts: Dict[str, int] = {}
    for o in dicts:
        for f in classify(o):
            counts[f] = counts.get(f, 0) + 1
    for f in ("incremental", "dead-letter", "dynamodb-json", "data-pipeline"):
        if counts.get(f, 0) * 2 >= len(dicts):
            return f
    return "json"


def _hive_vote(lines: List[bytes]) -> Optional[Detected]:
    """Data Pipeline Hive lines when at least half of the sampled lines are."""
    n = sum(map(looks_hive_line, lines))
    if lines and n * 2 >= len(lines):
        return Detected("data-pipeline-hive", f"{n} Data Pipeline Hive line(s)" +
                        (f", {len(lines) - n} other" if n < len(lines) else ""))
    return None


def _array_elements(text: str) -> List[Any]:
    dec = json.JSONDecoder(parse_float=Decimal)
    out: List[Any] = []
    pos = text.index("[") + 1
    while len(out) < SAMPLE:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            obj, pos = dec.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError):  # (the reader dead-letters an element too deep)
            break
        out.append(obj)
    return out


def _shown(b: bytes) -> str:
    return repr(b[:60].decode("utf-8", "replace"))


def detect(head: bytes, name: str, complete: bool) -> Detected:
    """The format of a file from its first bytes (decompressed), its name, and whether ``head``
    is the whole file."""
    body = head.lstrip()
    stem = re.sub(r"\.(gz|zst|zstd)$", "", name.lower())
    if not body:
        return Detected("csv" if stem.endswith(".csv") else "dynamodb-json", "an empty file")
    if body.startswith(ion.IVM):
        return Detected("ion", "Ion ($ion_1_0 ...)")
    if stem.endswith(".csv"):
        return Detected("csv", "a .csv file")
    if stem.endswith(".ion"):
        return Detected("ion", "a .ion file")
    if HIVE_NAME in body:  # (no JSON or Ion text holds a raw \x03: only then are lines split)
        hive = _hive_vote(_sample_lines(body, complete))
        if hive is not None:
            return hive
    if body[:1] == b"[":
        elems = _array_elements(body.decode("utf-8", "replace"))
        afmt = _vote(elems) or "json"
        return Detected("dynamodb-json" if afmt == "dynamodb-json" else "json", f"a JSON array ({afmt})")
    lines = _sample_lines(body, complete)
    objs: List[Any] = []
    bad = 0
    for ln in lines:
        try:
            objs.append(orjson.loads(ln))
        except orjson.JSONDecodeError:
            bad += 1
    try:
        first_obj: Any = orjson.loads(lines[0]) if lines else None
        first_ok = True
    except orjson.JSONDecodeError:
        first_obj, first_ok = None, False
    if looks_scan_page(first_obj) or ((not first_ok or not lines) and _SCAN_FIRST_KEY.match(body)):
        return Detected("aws-scan", "a Scan response document (Items, Count, ScannedCount)")
    if not objs and body[:1] == b"{":
        try:
            ion.loads_line(lines[0] if lines else body)
            return Detected("ion", "Ion structs")
        except ion.IonProblem:
            pass
        if not lines and not complete:
            # No line ended within the sample: one long line, not a document over many lines.
            return Detected(None, f"a JSON document whose first line is longer than the {len(head):,}-byte sample "
                                  f"read to tell formats apart, starting {_shown(body)}")
        return Detected(None, f"a multi-line JSON document starting {_shown(body)}")
    if objs:
        vote = _vote(objs)
        if vote is not None:
            return Detected(vote, f"{len(objs)} JSON record(s) ({vote})" + (f", {bad} invalid" if bad else ""))
        return Detected(None, f"JSON values that are not objects, starting {_shown(body)}")
    if lines:
        try:
            # An Ion item is a struct: a bare word (``garbage``) parses as an Ion symbol, but no
            # file of them is a file of items.
            if isinstance(ion.loads_line(lines[0]), Mapping):
                return Detected("ion", "Ion structs")
        except ion.IonProblem:
            pass
    first = lines[0] if lines else body
    if b"," in first or b"\t" in first or b";" in first or b"|" in first:
        return Detected(None, f"delimited text (CSV?) starting {_shown(first)}")
    return Detected(None, f"text starting {_shown(first)}")


def check_sample(head: bytes, fmt: str, complete: bool) -> Optional[str]:
    """Why a file whose head is ``head`` cannot be ``fmt`` (every sampled record fails), or None."""
    reader = READER.get(fmt, fmt)
    body = head.lstrip()
    if not body or reader == "csv":
        return None
    lines = _sample_lines(body, complete)
    if fmt == "data-pipeline-hive":
        if not lines or any(map(looks_hive_line, lines)):
            return None
        return (f"no line of the first {len(lines)} is a Hive line (attributes separated by \\x02, each name "
                "followed by \\x03 and its value as JSON)")
    if reader == "scan":
        if body[:1] != b"{":
            return "it does not start with a JSON object"
        try:
            first: Any = orjson.loads(lines[0]) if lines else None
        except orjson.JSONDecodeError:
            return None if _SCAN_FIRST_KEY.match(body) else "its first key is not a Scan response's (Items, Count, ...)"
        if first is not None and not looks_scan_page(first):
            return "its first line is a JSON object without Items and Count (not a Scan response)"
        return None
    if not lines:
        return None
    if reader == "ion":
        reasons = []
        for ln in lines:
            if ion.is_marker_line(ln):
                continue
            try:
                if isinstance(ion.loads_line(ln), Mapping):
                    return None
                reasons.append("an Ion value that is not a struct (an item is one)")
            except ion.IonProblem as e:
                reasons.append(str(e))
        return reasons[0] if reasons else None
    if body[:1] == b"[":
        return None  # an array: each element is checked as it is read
    objs = []
    for ln in lines:
        try:
            objs.append(orjson.loads(ln))
        except orjson.JSONDecodeError:
            pass
    if not objs:
        return "not JSON lines"
    if fmt == "json":
        return None if any(isinstance(o, dict) for o in objs) else "no JSON object in the first lines"
    want = {"dynamodb-json": "dynamodb-json", "data-pipeline": "data-pipeline"}.get(fmt)
    if want and not any(want in classify(o) for o in objs):
        return f"no record of the first {len(objs)} is {fmt}"
    return None


__all__ = ["FORMATS", "INPUT_FORMATS", "READER", "SAMPLE", "Detected", "check_sample", "classify", "detect"]
