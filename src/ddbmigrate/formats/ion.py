"""Amazon Ion, as DynamoDB's Export to S3 and ImportTable write and read it.

AWS's type mapping (one Ion value per line, each line may start with ``$ion_1_0``)::

    S -> string          N -> decimal (integers as int)      B -> blob {{...}}
    BOOL -> bool         NULL -> null                          M -> struct      L -> list
    SS/NS/BS -> list annotated $dynamodb_SS / $dynamodb_NS / $dynamodb_BS

A full export line is ``{Item:{...}}``; an incremental one is
``{Metadata:{WriteTimestampMicros:...},Keys:{...},NewImage:{...},OldImage:{...}}``.

Invariant: lossless both ways for every DynamoDB value. Numbers are written from their exact
decimal text (never through a float) and read as ``Decimal``; blobs keep every byte, empty ones
included; sets keep their annotation at any depth. An Ion float (not something AWS writes) is
read through its shortest repr and so is the only lossy input; symbols and timestamps read as
strings (a timestamp as its Ion text, precision and offset as written).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Dict, List, Optional, Tuple

import orjson
from amazon.ion import simpleion
from amazon.ion.core import IonType

from ..core.items import WireItem, canonical_number, item_problem

IVM = b"$ion_1_0"
SET_ANNOTATIONS = {"$dynamodb_SS": "SS", "$dynamodb_NS": "NS", "$dynamodb_BS": "BS"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYWORDS = frozenset(("null", "true", "false", "nan"))


class IonProblem(ValueError):
    """A line that is not Ion, or Ion that is not a DynamoDB item (the message says which)."""


# --------------------------------------------------------------------------- reading


def is_marker_line(line: bytes) -> bool:
    """A line holding only the Ion version marker (a writer may start a file with it on its own
    line): valid Ion, and no record."""
    return line.strip() == IVM


def loads_line(line: bytes) -> Any:
    """The one Ion value of a line (an optional ``$ion_1_0`` marker first). Raises IonProblem."""
    try:
        # The C reader refuses text values over its buffer (4 KB by default): size it to the line.
        values = simpleion.loads(line, single_value=False, text_buffer_size_limit=max(4096, len(line) + 16))
    except Exception as e:  # amazon.ion raises IonException, ValueError and others on bad text
        raise IonProblem(f"invalid Ion: {str(e).strip()[:200] or type(e).__name__}") from None
    if len(values) != 1:
        raise IonProblem(f"expected one Ion value on the line, found {len(values)}")
    return values[0]


def _annotation(v: Any) -> Optional[str]:
    for a in getattr(v, "ion_annotations", ()) or ():
        t = SET_ANNOTATIONS.get(getattr(a, "text", a))
        if t:
            return t
    return None


def _number(v: Any, path: str) -> str:
    if isinstance(v, bool) or getattr(v, "ion_type", None) is IonType.BOOL:
        raise IonProblem(f"{path}: expected a number, got a bool")
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, Decimal):
        return str(Decimal(v))
    if isinstance(v, float):
        return repr(float(v))
    raise IonProblem(f"{path}: expected a number, got {type(v).__name__}")


def _blob(v: Any, path: str) -> str:
    if not isinstance(v, (bytes, bytearray)):
        raise IonProblem(f"{path}: expected a blob, got {type(v).__name__}")
    return base64.b64encode(bytes(v)).decode("ascii")


def to_wire_value(v: Any, path: str = "item") -> Dict[str, Any]:
    """One Ion value -> one DynamoDB wire value (see the module docstring's mapping)."""
    ion_type = getattr(v, "ion_type", None)
    if _is_null(v):
        return {"NULL": True}
    st = _annotation(v)
    if st is not None:
        if not isinstance(v, list):
            raise IonProblem(f"{path}: ${'dynamodb_' + st} must annotate a list")
        if st == "SS":
            return {"SS": [_text(e, path) for e in v]}
        if st == "NS":
            return {"NS": [_number(e, path) for e in v]}
        return {"BS": [_blob(e, path) for e in v]}
    if isinstance(v, bool) or ion_type is IonType.BOOL:
        return {"BOOL": bool(v)}
    if isinstance(v, str):
        return {"S": str(v)}
    if hasattr(v, "text") and ion_type is IonType.SYMBOL:
        return {"S": _symbol_text(v, path)}
    if isinstance(v, (int, Decimal, float)):
        return {"N": _number(v, path)}
    if isinstance(v, (bytes, bytearray)):
        return {"B": _blob(v, path)}
    if isinstance(v, Mapping):
        return {"M": {k: to_wire_value(x, f"{path}.{k}") for k, x in _fields(v, path).items()}}
    if isinstance(v, list):
        return {"L": [to_wire_value(x, f"{path}[{i}]") for i, x in enumerate(v)]}
    if ion_type is IonType.TIMESTAMP:
        return {"S": _timestamp_text(v)}
    raise IonProblem(f"{path}: Ion {ion_type or type(v).__name__} has no DynamoDB type")


def _is_null(v: Any) -> bool:
    """Any Ion null, typed ones (``null.struct``) included."""
    return v is None or getattr(v, "ion_type", None) is IonType.NULL or type(v).__name__ == "IonPyNull"


def _timestamp_text(v: Any) -> str:
    """A timestamp as its Ion text, precision and offset as written ("2020T", nanoseconds, "Z"):
    Python's isoformat read "2020T" as midnight on New Year's Day and cut nanoseconds to micros."""
    text: str = simpleion.dumps(v, binary=False, omit_version_marker=True).strip()
    return text.rsplit("::", 1)[-1]  # (an annotation is not the value; a timestamp holds no "::")


def _text(v: Any, path: str) -> str:
    if isinstance(v, str):
        return str(v)
    if hasattr(v, "text"):
        return _symbol_text(v, path)
    raise IonProblem(f"{path}: expected a string in $dynamodb_SS, got {type(v).__name__}")


def _symbol_text(v: Any, path: str) -> str:
    # A symbol with no text ($0, or an id its symbol table does not define) says nothing: it
    # was stored as the string "None", a value no one wrote.
    if v.text is None:
        raise IonProblem(f"{path}: an Ion symbol with no text (${getattr(v, 'sid', 0)}) has no DynamoDB value")
    return str(v.text)


def _fields(v: Mapping[Any, Any], path: str) -> Dict[str, Any]:
    """A struct's fields by name. Ion allows a name twice in one struct (its ``items()`` gives
    both); a DynamoDB item or map cannot hold it, and keeping one would lose the other."""
    out: Dict[str, Any] = {}
    for k, x in v.items():
        name = str(k)
        if name in out:
            raise IonProblem(f"{path}: the name {name!r} appears twice in one struct")
        out[name] = x
    return out


def to_wire_item(v: Any, what: str = "item") -> WireItem:
    if not isinstance(v, Mapping):
        raise IonProblem(f"{what}: expected an Ion struct, got {type(v).__name__}")
    return {k: to_wire_value(x, k) for k, x in _fields(v, what).items()}


def parse_item_line(line: bytes) -> Tuple[Optional[WireItem], Optional[str]]:
    """``{Item:{...}}`` (or a bare struct, as ImportTable accepts) -> (item, None) or (None, reason)."""
    try:
        v = loads_line(line)
        if isinstance(v, Mapping) and len(v) == 1 and isinstance(v.get("Item"), Mapping):
            v = v["Item"]
        item = to_wire_item(v)
    except IonProblem as e:
        return None, str(e)
    p = item_problem(item)
    return (None, p) if p else (item, None)


def parse_change_line(line: bytes) -> Dict[str, Any]:
    """An incremental export record -> the same shape as its DYNAMODB_JSON twin. Raises IonProblem."""
    v = loads_line(line)
    if not isinstance(v, Mapping):
        raise IonProblem(f"expected an Ion struct, got {type(v).__name__}")
    v = _fields(v, "record")
    out: Dict[str, Any] = {}
    meta = v.get("Metadata")
    if isinstance(meta, Mapping) and "WriteTimestampMicros" in meta:
        out["Metadata"] = {"WriteTimestampMicros": {"N": _number(meta["WriteTimestampMicros"], "Metadata")}}
    for name in ("Keys", "NewImage", "OldImage"):
        # A null image is no image, as ``"OldImage": null`` is in the record's DYNAMODB_JSON twin.
        if not _is_null(v.get(name)):
            out[name] = to_wire_item(v[name], name)
    return out


# --------------------------------------------------------------------------- writing


def _name(k: str) -> str:
    """A field name: a bare identifier when Ion allows, else a quoted symbol. Never a quoted
    string: ion-c reads ``"$0"`` as symbol ID 0, while ``'$0'`` is the text ``$0``."""
    if _IDENT.fullmatch(k) and k not in _KEYWORDS:
        return k
    inner = orjson.dumps(k).decode()[1:-1]  # JSON's escapes are Ion's too
    return "'" + inner.replace('\\"', '"').replace("'", "\\'") + "'"


def ion_number(text: str) -> str:
    """A DynamoDB number as Ion: an int when integral without exponent, else a decimal."""
    c = canonical_number(text)
    if "E" in c:
        mant, _, exp = c.partition("E")
        return f"{mant}d{exp}"
    return c


def _write_value(v: Dict[str, Any], out: List[str]) -> None:
    ((t, x),) = v.items()
    if t == "S":
        out.append(orjson.dumps(x).decode())
    elif t == "N":
        out.append(ion_number(x))
    elif t == "B":
        out.append("{{" + x + "}}")
    elif t == "BOOL":
        out.append("true" if x else "false")
    elif t == "NULL":
        out.append("null")
    elif t == "SS":
        out.append("$dynamodb_SS::[" + ",".join(orjson.dumps(e).decode() for e in x) + "]")
    elif t == "NS":
        out.append("$dynamodb_NS::[" + ",".join(ion_number(e) for e in x) + "]")
    elif t == "BS":
        out.append("$dynamodb_BS::[" + ",".join("{{" + e + "}}" for e in x) + "]")
    elif t == "L":
        out.append("[")
        for i, e in enumerate(x):
            if i:
                out.append(",")
            _write_value(e, out)
        out.append("]")
    elif t == "M":
        _write_struct(x, out)
    else:
        raise ValueError(f"unknown type descriptor {t!r}")


def _write_struct(m: Dict[str, Any], out: List[str]) -> None:
    out.append("{")
    for i, (k, v) in enumerate(m.items()):
        if i:
            out.append(",")
        out.append(_name(k))
        out.append(":")
        _write_value(v, out)
    out.append("}")


def item_line(item: Dict[str, Any]) -> bytes:
    """A wire item as AWS's ION export line: ``$ion_1_0 {Item:{...}}`` + newline."""
    out = ["$ion_1_0 {Item:"]
    _write_struct(item, out)
    out.append("}\n")
    return "".join(out).encode("utf-8")


__all__ = [
    "IVM",
    "SET_ANNOTATIONS",
    "IonProblem",
    "ion_number",
    "item_line",
    "loads_line",
    "parse_change_line",
    "parse_item_line",
    "to_wire_item",
    "to_wire_value",
]
