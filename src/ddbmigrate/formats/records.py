"""Small record codecs of other tools' files: AWS Data Pipeline lines, scan pages, CSV rows.

* AWS Data Pipeline (``DynamoDB-export``) lines carry the SDK v1 ``AttributeValue`` field names:
  ``{"s":..}``, ``{"n":..}``, ``{"b":..}``, ``{"sS":[..]}``, ``{"nS":[..]}``, ``{"bS":[..]}``,
  ``{"m":{..}}``, ``{"l":[..]}``, ``{"bOOL":..}``, ``{"nULLValue":true}`` (``nULL`` also read).
* Data Pipeline's older Hive export (EMR, ``DynamoDBStorageHandler``, an ``item map<string,string>``
  column written by Hive's default text format) writes one item per line: attributes separated by
  ``\\x02``, each attribute's name (raw text) and value by ``\\x03``; the value is the connector's
  Gson JSON of the ``AttributeValue`` (emr-dynamodb-connector ``HiveDynamoDBItemType``, read back
  by its ``DynamoDBExportSerDe``). Connectors on SDK v1 write the field names above; on SDK v2 its
  ``AttributeValueSerializer`` writes the type names lower-cased (``ss``, ``ns``, ``bs``,
  ``bool``, ``null``). Binary is base64 in both. Gson escapes every control character inside the
  JSON, so only a name can hold a raw ``\\x02``/``\\x03``/newline, and no such name can be written.
* A scan page (``aws dynamodb scan --output json``, a dynamodump ``data/0001.json``) is a JSON
  document with ``Items`` (wire items), ``Count``, ``ScannedCount`` and maybe
  ``LastEvaluatedKey``/``NextToken``/``ConsumedCapacity``.
* A CSV row, as ImportTable reads it: the key attributes typed by the table's key schema, every
  other attribute a string, an empty value is no attribute.

Invariant: every conversion is exact or a reason; nothing is guessed.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import orjson

from ..core.items import WireItem, item_problem

DP_TYPES = {"s": "S", "n": "N", "b": "B", "ss": "SS", "ns": "NS", "bs": "BS", "m": "M", "l": "L",
            "bool": "BOOL", "null": "NULL", "nullvalue": "NULL"}
SCAN_KEYS = frozenset(("Items", "Count", "ScannedCount", "LastEvaluatedKey", "ConsumedCapacity", "NextToken",
                       "ResponseMetadata"))


class RecordProblem(ValueError):
    """A record that does not convert; the message is the dead-letter reason. ``item``: the
    record as far as it converted (a CSV row's typed attributes, a Data Pipeline line's item), for its
    dead letter."""

    def __init__(self, message: str, item: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.item = item


# --------------------------------------------------------------------------- Data Pipeline


def looks_data_pipeline(obj: Mapping[str, Any]) -> bool:
    """Every value a one-key object with a lowercase SDK v1 type name (and at least one value)."""
    if not obj:
        return False
    seen_lower = False
    for v in obj.values():
        if not isinstance(v, dict) or len(v) != 1:
            return False
        k = next(iter(v))
        if k.lower() not in DP_TYPES:
            return False
        seen_lower = seen_lower or k != k.upper()
    return seen_lower


def _dp_value(v: Any, path: str) -> Dict[str, Any]:
    if not isinstance(v, dict) or len(v) != 1:
        raise RecordProblem(f"{path}: expected one type key such as {{\"s\": ...}}")
    ((k, x),) = v.items()
    t = DP_TYPES.get(k.lower())
    if t is None:
        raise RecordProblem(f"{path}: unknown type key {k!r}")
    if t == "M":
        if not isinstance(x, dict):
            raise RecordProblem(f"{path}: m must be an object")
        return {"M": {str(n): _dp_value(e, f"{path}.{n}") for n, e in x.items()}}
    if t == "L":
        if not isinstance(x, list):
            raise RecordProblem(f"{path}: l must be a list")
        return {"L": [_dp_value(e, f"{path}[{i}]") for i, e in enumerate(x)]}
    return {t: x}  # (NULL false, a BOOL that is a string, ...: item_problem says why, nothing is guessed)


def from_data_pipeline(obj: Any) -> WireItem:
    """A Data Pipeline line (decoded) -> wire item. Raises RecordProblem."""
    if not isinstance(obj, dict):
        raise RecordProblem(f"expected a JSON object, got {type(obj).__name__}")
    item = {str(k): _dp_value(v, str(k)) for k, v in obj.items()}
    p = item_problem(item)
    if p:
        raise RecordProblem(p, item)
    return item


# --------------------------------------------------------------------------- Data Pipeline Hive lines

HIVE_FIELD = b"\x02"  # between attributes (Hive's collection-items delimiter)
HIVE_NAME = b"\x03"  # between an attribute's name and its value (Hive's map-keys delimiter)


def looks_hive_line(line: bytes) -> bool:
    """Every field of the line a name, one ``\\x03`` and a JSON object (for detection: no JSON
    text, Ion text or CSV holds a raw ``\\x03``; a value is not parsed here)."""
    if HIVE_NAME not in line:
        return False
    for field in line.rstrip(b"\r").split(HIVE_FIELD):
        _, sep, value = field.partition(HIVE_NAME)
        if not sep or HIVE_NAME in value or not (value.startswith(b"{") and value.endswith(b"}")):
            return False
    return True


def hive_fields(line: bytes) -> List[Tuple[str, bytes]]:
    """A Hive line -> ``[(name, value JSON)]`` in line order. Raises RecordProblem: a line that is
    not UTF-8, a field without exactly one ``\\x03``, a name given twice, Hive's NULL (``\\N``)."""
    if line == b"\\N":
        raise RecordProblem("invalid Hive line: \\N is Hive's NULL, not an item")
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as u:
        raise RecordProblem(f"not valid UTF-8: byte {u.start + 1} of the line is {line[u.start:u.start + 1]!r}") \
            from None
    out: List[Tuple[str, bytes]] = []
    seen = set()
    for i, field in enumerate(line.split(HIVE_FIELD), 1):
        parts = field.split(HIVE_NAME)
        if len(parts) != 2:
            raise RecordProblem(f"invalid Hive line: field {i} has {'no' if len(parts) == 1 else len(parts) - 1} "
                                "\\x03 between its name and value (expected exactly one)")
        name = parts[0].decode("utf-8")
        if name in seen:
            raise RecordProblem(f"the attribute {name!r} appears twice in the line (a reader would keep one of them)")
        seen.add(name)
        out.append((name, parts[1]))
    return out


# --------------------------------------------------------------------------- scan pages


def looks_scan_page(obj: Any) -> bool:
    """A Scan response document: ``Items`` a list, the other keys a Scan response's."""
    return (isinstance(obj, dict) and isinstance(obj.get("Items"), list) and set(obj) <= SCAN_KEYS
            and ("Count" in obj or "ScannedCount" in obj))


# --------------------------------------------------------------------------- CSV


def csv_item(header: Sequence[str], row: Sequence[str], key_types: Mapping[str, str]) -> WireItem:
    """One CSV row -> wire item (AWS's rules: see the module docstring). Raises RecordProblem."""
    if len(row) > len(header):
        raise RecordProblem(f"row has {len(row)} values but the header names {len(header)} columns")
    item: Dict[str, Any] = {}
    for name, value in zip(header, row):
        if value == "":
            continue  # an empty value is no attribute (ImportTable does the same)
        t = key_types.get(name, "S")
        if t == "B":
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise RecordProblem(f"key attribute {name!r} is binary: {value[:40]!r} is not base64") from None
        item[name] = {t: value}
    p = item_problem(item)
    if p:
        raise RecordProblem(p, item)
    return item


def csv_reject_raw(e: RecordProblem, row: Sequence[str], delimiter: str) -> str:
    """A rejected CSV row as its dead letter keeps it, to be replayed: the item it made, as
    DynamoDB JSON, when the row converted (fix the value there and replay); else the row as CSV
    (a row with more values than the header has columns: fix it in its file)."""
    if e.item is not None:
        return orjson.dumps(e.item).decode()
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(row)
    return out.getvalue()


def parse_csv_header(text: str, delimiter: str) -> List[str]:
    row = next(csv.reader([text], delimiter=delimiter), [])
    return [c.strip() for c in row]


def csv_header_problem(header: Sequence[str]) -> Optional[str]:
    if not header or any(not h for h in header):
        return "the CSV header has an empty column name"
    dup = {h for h in header if list(header).count(h) > 1}
    if dup:
        return f"the CSV header names {sorted(dup)[0]!r} twice"
    return None


def first_keys(obj: Mapping[str, Any], n: int = 4) -> Tuple[str, ...]:
    return tuple(list(obj)[:n])


__all__ = [
    "DP_TYPES",
    "SCAN_KEYS",
    "RecordProblem",
    "csv_header_problem",
    "csv_item",
    "HIVE_FIELD",
    "HIVE_NAME",
    "first_keys",
    "from_data_pipeline",
    "hive_fields",
    "looks_data_pipeline",
    "looks_hive_line",
    "looks_scan_page",
    "parse_csv_header",
]
