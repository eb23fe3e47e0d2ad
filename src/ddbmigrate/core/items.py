"""DynamoDB items in wire format: validation, size, keys, Python conversion, canonical form.

Items travel through ddbmigrate exactly as DynamoDB's JSON protocol carries them
(``{"name": {"S": "x"}, "n": {"N": "1.50"}, "b": {"B": "<base64>"}}``). Invariant: conversion
to Python values happens once, at the transform boundary, and is lossless: numbers become
``Decimal`` with their full 38 digits (never float), binary becomes ``bytes``, sets become
``set``. Items that DynamoDB gave us are never re-validated on the hot path; items from files
or transforms are validated here before they reach a writer.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import hashlib
import re
from collections import abc as _abc
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import orjson

from ..errors import InvalidItemError

WireItem = Dict[str, Dict[str, Any]]
Key = Tuple[Any, ...]

MAX_ITEM_BYTES = 400 * 1024
SCALAR_TYPES = ("S", "N", "B")
ALL_TYPES = frozenset(("S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS"))

# Enough precision that no arithmetic on a valid DynamoDB number ever rounds.
# Exponents as wide as Decimal has: a value far out of DynamoDB's range (1e1000000) is said to be
# out of range, not raised as decimal.Overflow from normalize() (an internal error).
_CTX = decimal.Context(prec=200, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
_MAX_DIGITS = 38


# --------------------------------------------------------------------------- numbers


def number_problem(text: Any) -> Optional[str]:
    """Why ``text`` is not a valid DynamoDB number, or None."""
    if type(text) is str and len(text) <= 38 and _PLAIN_NUMBER(text):
        return None  # the usual spelling: no Decimal needed to know it is in range
    if not isinstance(text, str):
        return f"number must be a string, got {type(text).__name__}"
    if "_" in text or text != text.strip():
        # Decimal() accepts these; DynamoDB refuses them ("cannot be converted into a number").
        return f"not a number: {text[:40]!r}"
    try:
        d = Decimal(text)
    except decimal.InvalidOperation:
        return f"not a number: {text[:40]!r}"
    if not d.is_finite():
        return f"not a finite number: {text[:40]!r}"
    if d.is_zero():
        return None
    if not -140 < d.adjusted() < 140:  # far out of range: said without normalizing its digits
        return f"number {text[:40]!r} is out of DynamoDB's range (1E-130 to 9.99E+125)"
    sign, digits, exp = _CTX.normalize(d).as_tuple()
    assert isinstance(exp, int)
    if len(digits) > _MAX_DIGITS:
        return f"number has {len(digits)} significant digits, DynamoDB allows 38"
    adjusted = exp + len(digits) - 1
    if adjusted > 125 or adjusted < -130:
        return f"number {text[:40]!r} is out of DynamoDB's range (1E-130 to 9.99E+125)"
    return None


# (attribute, type, index name, "HASH" | "RANGE") of a table's GSI and LSI keys.
IndexKey = Tuple[str, str, str, str]
# DynamoDB's limits on a key value's bytes (a table's or an index's): at most 2,048 for a
# partition key and 1,024 for a sort key (its message says "must be under", meaning up to).
KEY_BYTES = {"HASH": 2048, "RANGE": 1024}


def index_keys_of(desc: Mapping[str, Any]) -> Tuple[IndexKey, ...]:
    """The key attributes of every GSI and LSI of a DescribeTable answer (or CreateTable request)."""
    types = {a["AttributeName"]: a["AttributeType"] for a in desc.get("AttributeDefinitions") or []}
    out: List[IndexKey] = []
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        for ix in desc.get(kind) or []:
            for k in ix.get("KeySchema") or []:
                name = k.get("AttributeName")
                if name in types:
                    out.append((name, types[name], str(ix.get("IndexName")), str(k.get("KeyType"))))
    return tuple(out)


def _key_bytes(typ: str, x: Any) -> int:
    if typ == "S":
        return len(x) if len(x) * 4 <= 1024 else len(x.encode("utf-8", "surrogatepass"))
    if typ == "B":
        return int(len(x) // 4 * 3 - x.endswith("=") - x.endswith("=="))  # base64 text: the bytes it holds
    return 0  # numbers are short


def index_key_problem(item: Mapping[str, Any], keys: Sequence[IndexKey]) -> Optional[str]:
    """Why DynamoDB would refuse ``item`` for one of the table's indexes (an index key attribute
    of another type, empty, or over the key size limit), or None. An item without an index's key
    attribute is simply not in that (sparse) index."""
    for name, typ, index, role in keys:
        v = item.get(name)
        if v is None:
            continue
        if type(v) is not dict or typ not in v or len(v) != 1:
            got = next(iter(v), "?") if isinstance(v, dict) and v else type(v).__name__
            return f"index {index} key attribute {name!r} must be of type {typ}, got {got}"
        x = v[typ]
        if typ in ("S", "B") and x == "":
            return f"index {index} key attribute {name!r} is empty"
        if typ != "N" and isinstance(x, str) and _key_bytes(typ, x) > KEY_BYTES.get(role, 2048):
            return f"index {index} key attribute {name!r} is over {KEY_BYTES.get(role, 2048)} bytes ({role} key)"
    return None


def canonical_number(text: str) -> str:
    """One spelling per numeric value: ``1``, ``1.0`` and ``1E0`` all become ``1``."""
    d = _CTX.normalize(Decimal(text))
    if d.is_zero():
        return "0"
    return format(d, "f") if -30 < d.adjusted() < 40 else str(d)


def _number_size(text: str) -> int:
    d = Decimal(text)
    if d.is_zero():
        return 2
    digits = len(_CTX.normalize(d).as_tuple().digits)
    return (digits + 1) // 2 + 1


# --------------------------------------------------------------------------- size


def _b64len(s: str) -> int:
    n = len(s)
    if n == 0:
        return 0
    pad = 2 if s.endswith("==") else (1 if s.endswith("=") else 0)
    return (n * 3) // 4 - pad


def value_size(v: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value (without its name)."""
    for t, x in v.items():
        if t == "S":
            return len(x.encode("utf-8"))
        if t == "N":
            return _number_size(x)
        if t == "B":
            return _b64len(x) if isinstance(x, str) else len(x)
        if t in ("BOOL", "NULL"):
            return 1
        if t == "SS":
            return sum(len(s.encode("utf-8")) for s in x)
        if t == "NS":
            return sum(_number_size(s) for s in x)
        if t == "BS":
            return sum(_b64len(s) if isinstance(s, str) else len(s) for s in x)
        if t == "L":
            return 3 + sum(value_size(e) + 1 for e in x)
        if t == "M":
            return 3 + sum(len(k.encode("utf-8")) + value_size(e) + 1 for k, e in x.items())
    return 0


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """The item size DynamoDB enforces its 400 KB limit on (names + values)."""
    return sum(len(k.encode("utf-8")) + value_size(v) for k, v in item.items())


def oversize(item: Mapping[str, Any], encoded_len: int) -> Optional[int]:
    """Exact size when the item is over 400 KB, else None.

    The JSON encoding is never shorter than DynamoDB's own size measure, so the exact walk only
    runs for the rare items whose encoding is already above the limit.
    """
    if encoded_len <= MAX_ITEM_BYTES:
        return None
    size = item_size(item)
    return size if size > MAX_ITEM_BYTES else None


# --------------------------------------------------------------------------- validation


def _value_problem(v: Any, path: str, depth: int) -> Optional[str]:
    if depth > 32:
        return f"{path}: nested deeper than DynamoDB's 32 levels"
    if not isinstance(v, dict) or len(v) != 1:
        return f"{path}: expected one type descriptor such as {{\"S\": ...}}, got {_short(v)}"
    ((t, x),) = v.items()
    if t == "S":
        return None if isinstance(x, str) else f"{path}: S must be a string, got {_short(x)}"
    if t == "N":
        p = number_problem(x)
        return f"{path}: {p}" if p else None
    if t == "B":
        return _b64_problem(x, path)
    if t == "BOOL":
        return None if isinstance(x, bool) else f"{path}: BOOL must be true/false, got {_short(x)}"
    if t == "NULL":
        return None if x is True else f"{path}: NULL must be true, got {_short(x)}"
    if t in ("SS", "NS", "BS"):
        if not isinstance(x, list):
            return f"{path}: {t} must be a list, got {_short(x)}"
        if not x:
            return f"{path}: {t} is empty; DynamoDB does not allow empty sets"
        for i, e in enumerate(x):
            if t == "SS" and not isinstance(e, str):
                return f"{path}[{i}]: SS elements must be strings"
            if t == "NS":
                p = number_problem(e)
                if p:
                    return f"{path}[{i}]: {p}"
            if t == "BS":
                p = _b64_problem(e, f"{path}[{i}]")
                if p:
                    return p
        canon = [canonical_number(e) for e in x] if t == "NS" else x
        if len(set(canon)) != len(canon):
            return f"{path}: {t} contains duplicate values"
        return None
    if t == "L":
        if not isinstance(x, list):
            return f"{path}: L must be a list, got {_short(x)}"
        for i, e in enumerate(x):
            p = _value_problem(e, f"{path}[{i}]", depth + 1)
            if p:
                return p
        return None
    if t == "M":
        if not isinstance(x, dict):
            return f"{path}: M must be an object, got {_short(x)}"
        for k, e in x.items():
            p = _value_problem(e, f"{path}.{k}", depth + 1)
            if p:
                return p
        return None
    return f"{path}: unknown type descriptor {t!r}"


def _b64_problem(x: Any, path: str) -> Optional[str]:
    if not isinstance(x, str):
        return f"{path}: binary must be a base64 string, got {_short(x)}"
    try:
        base64.b64decode(x, validate=True)
    except (binascii.Error, ValueError):
        return f"{path}: invalid base64"
    return None


def _short(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 40 else s[:37] + "..."


def item_problem(item: Any) -> Optional[str]:
    """Why ``item`` is not a valid wire-format item, or None. Does not check keys or size."""
    if not isinstance(item, dict):
        return f"item must be a JSON object, got {type(item).__name__}"
    if not item:
        return "item has no attributes"
    for name, v in item.items():
        if not isinstance(name, str) or name == "":
            return "attribute names must be non-empty strings"
        p = _value_problem(v, name, 1)
        if p:
            return p
    return None


# The fast path of validation, for the items files almost always hold: one C-level regex per
# number and no Decimal, a set checked for repeats only in its canonical spelling. Anything it
# is not sure of (a number near the limits, a number set not in canonical form, any problem)
# returns None, and the caller falls back to ``item_problem`` for the exact reason.
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?").fullmatch  # at most 38 chars: at most 38 digits
_CANON_INT = re.compile(r"-?[1-9][0-9]*|0").fullmatch  # one spelling per value
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?").fullmatch  # padded


class _NotSure(Exception):
    pass


_STR = {str}
_BYTES = {bytes}


def _number(x: Any) -> bool:
    # Digits alone (most numbers) with two C-level string methods; anything else by the regex.
    return type(x) is str and len(x) <= 38 and ((x.isdigit() and x.isascii()) or _PLAIN_NUMBER(x) is not None)


def _strings(x: Any) -> bool:
    """A non-empty list of strings, none repeated (a set's members)."""
    return type(x) is list and bool(x) and set(map(type, x)) == _STR and len(set(x)) == len(x)


def _fast_other(t: str, x: Any, depth: int) -> int:
    """Names in a descriptor of type ``t`` other than S and N, its tag counted; raises _NotSure."""
    if t == "M":
        if type(x) is dict:
            return 1 + _fast_names(x, depth + 1)
    elif t == "L":
        if type(x) is list:
            return 1 + (_fast_values(x, depth + 1) if x else 0)  # the depth is of its elements
    elif t == "BOOL":
        if x is True or x is False:
            return 1
    elif t == "NULL":
        if x is True:
            return 1
    elif t == "SS":
        if _strings(x):
            return 1
    elif t == "NS":
        if _strings(x) and max(map(len, x)) <= 38 and all(map(_CANON_INT, x)):
            return 1
    elif t == "B":
        if type(x) is str and _B64(x):
            return 1
    elif t == "BS":
        if _strings(x) and all(map(_B64, x)):
            return 1
    raise _NotSure


def _fast_values(values: Iterable[Any], depth: int) -> int:
    """Names in the type descriptors ``values`` (a map's values, a list's elements) and in
    everything inside them; raises _NotSure. S and N, the most common, are checked here."""
    if depth > 32:
        raise _NotSure
    n = 0
    for v in values:
        if type(v) is not dict or len(v) != 1:
            raise _NotSure
        for t, x in v.items():
            if t == "S":
                if type(x) is not str:
                    raise _NotSure
                n += 1
            elif t == "N":
                if not _number(x):
                    raise _NotSure
                n += 1
            else:
                n += _fast_other(t, x, depth)
    return n


def _fast_names(m: Dict[str, Any], depth: int) -> int:
    """Names of a map (an item's attributes, or an M value) and of everything inside it."""
    if "" in m:
        raise _NotSure
    return len(m) + _fast_values(m.values(), depth)


def valid_item_names(item: Any) -> Optional[int]:
    """How many names (attribute names, type tags, map keys) a valid ``item`` holds, or None.

    None means "not sure": the item may be invalid, or valid in a way only the full check
    (:func:`item_problem`) can tell. The count lets a reader prove that no name was repeated in
    the JSON text it came from, without a second parse.
    """
    if type(item) is not dict or not item:
        return None
    try:
        return _fast_names(item, 1)
    except _NotSure:
        return None


def validate_item(item: Any) -> WireItem:
    p = item_problem(item)
    if p:
        raise InvalidItemError(p)
    return item  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- keys


def gsi_partition_keys(table: Mapping[str, Any]) -> Tuple[Tuple[str, str], ...]:
    """(index name, partition key attribute) of each global secondary index of a DescribeTable."""
    return tuple((g["IndexName"], k["AttributeName"]) for g in table.get("GlobalSecondaryIndexes") or []
                 for k in g.get("KeySchema") or [] if k.get("KeyType") == "HASH")


@dataclass(frozen=True)
class KeySchema:
    """A table's primary key: hash attribute and optional range attribute, with types."""

    hash_name: str
    hash_type: str
    range_name: Optional[str] = None
    range_type: Optional[str] = None

    @classmethod
    def from_table_description(cls, table: Mapping[str, Any]) -> "KeySchema":
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        h = r = None
        for k in table["KeySchema"]:
            if k["KeyType"] == "HASH":
                h = k["AttributeName"]
            else:
                r = k["AttributeName"]
        assert h is not None
        return cls(h, types[h], r, types[r] if r else None)

    @property
    def names(self) -> Tuple[str, ...]:
        return (self.hash_name,) if self.range_name is None else (self.hash_name, self.range_name)

    def attributes(self) -> List[Tuple[str, str]]:
        out = [(self.hash_name, self.hash_type)]
        if self.range_name is not None:
            assert self.range_type is not None
            out.append((self.range_name, self.range_type))
        return out

    def problem(self, item: Mapping[str, Any]) -> Optional[str]:
        """Why ``item`` cannot be written to a table with this key, or None."""
        for name, typ in self.attributes():
            v = item.get(name)
            if v is None:
                return f"missing key attribute {name!r}"
            if not isinstance(v, dict) or typ not in v or len(v) != 1:
                got = next(iter(v), "?") if isinstance(v, dict) and v else type(v).__name__
                return f"key attribute {name!r} must be of type {typ}, got {got}"
            x = v[typ]
            if typ == "S" and (not isinstance(x, str) or x == ""):
                return f"key attribute {name!r} is an empty string"
            if typ != "N" and isinstance(x, str) and len(x) > 256:
                limit = KEY_BYTES["HASH" if name == self.hash_name else "RANGE"]
                if _key_bytes(typ, x) > limit:
                    return f"key attribute {name!r} is over {limit} bytes (DynamoDB's limit for a " \
                           f"{'partition' if limit == 2048 else 'sort'} key)"
            if typ == "B" and (not x or (isinstance(x, str) and _b64_problem(x, name))):
                return f"key attribute {name!r} is empty or not valid base64"
            if typ == "N":
                p = number_problem(x)
                if p:
                    return f"key attribute {name!r}: {p}"
        return None

    def key(self, item: Mapping[str, Any]) -> Key:
        """A hashable identity of the item's primary key (numbers by value, binary by bytes)."""
        h = item[self.hash_name][self.hash_type]
        if self.hash_type == "N":
            h = canonical_number(h)
        elif self.hash_type == "B":
            h = canonical_b64(h)
        if self.range_name is None:
            return (h,)
        r = item[self.range_name][self.range_type]
        if self.range_type == "N":
            r = canonical_number(r)
        elif self.range_type == "B":
            r = canonical_b64(r)
        return (h, r)

    def project(self, item: Mapping[str, Any]) -> WireItem:
        """The key attributes of ``item`` as a wire-format key."""
        return {n: item[n] for n in self.names}

    def project_or_none(self, item: Any) -> Optional[WireItem]:
        """``project``, or None when ``item`` lacks a key attribute (naming a record in a report)."""
        try:
            return self.project(item)
        except (KeyError, TypeError):
            return None

    def key_from_tuple(self, key: Key) -> WireItem:
        out: WireItem = {self.hash_name: {self.hash_type: key[0]}}
        if self.range_name is not None:
            out[self.range_name] = {self.range_type: key[1]}  # type: ignore[dict-item]
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {"hash": [self.hash_name, self.hash_type], "range": [self.range_name, self.range_type]}


# --------------------------------------------------------------------------- python values


def to_python(item: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """Wire item -> plain Python values (Decimal, bytes, set, ...)."""
    return {k: _to_py(v) for k, v in item.items()}


_b64decode = base64.b64decode


def _to_py(v: Any) -> Any:
    # Ordered by how often each type occurs; this runs for every value of every transformed item.
    if type(v) is not dict:
        raise InvalidItemError(f"not a typed value: {_short(v)}")
    if len(v) != 1:
        if not v:
            # DynamoDB Local can deliver an empty nested map in a stream image as a bare {}
            # without its "M" tag; the only sound reading is an empty map.
            return {}
        raise InvalidItemError(f"expected one type descriptor, got {_short(v)}")
    ((t, x),) = v.items()
    if t == "S":
        return x
    if t == "N":
        return Decimal(x)
    if t == "M":
        return {k: _to_py(e) for k, e in x.items()}
    if t == "L":
        return [_to_py(e) for e in x]
    if t == "BOOL":
        return x
    if t == "NULL":
        return None
    if t == "B":
        return _b64decode(x) if type(x) is str else bytes(x)
    if t == "SS":
        return set(x)
    if t == "NS":
        return {Decimal(e) for e in x}
    if t == "BS":
        return {_b64decode(e) if type(e) is str else bytes(e) for e in x}
    raise InvalidItemError(f"unknown type descriptor {t!r}")


class _PathError(Exception):
    """Raised inside the conversion; the attribute path is assembled only on the way out."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.parts: List[str] = []


def from_python(item: Mapping[str, Any]) -> WireItem:
    """Plain Python values -> wire item. Raises InvalidItemError naming the attribute path."""
    if type(item) is not dict and not isinstance(item, _abc.Mapping):
        raise InvalidItemError(f"an item must be a dict, got {type(item).__name__}")
    out: WireItem = {}
    for k, v in item.items():
        if type(k) is not str:
            raise InvalidItemError(f"attribute names must be strings, got {k!r}")
        try:
            out[k] = _from_py(v)
        except _PathError as e:
            path = k + "".join(reversed(e.parts))
            raise InvalidItemError(f"{path}: {e.message}") from None
    return out


_TEN38 = 10 ** 38


def _num(v: Any) -> str:
    t = type(v)
    if t is int:
        if -_TEN38 < v < _TEN38:
            return str(v)
        s = str(v)
    elif t is Decimal:
        if v.is_finite():
            s = str(v)
            # Short plain spellings cannot exceed 38 digits or the exponent range.
            if len(s) <= 38 and "E" not in s:
                return s
        s = str(v)
    elif t is bool:
        raise _PathError("booleans are not numbers")
    elif isinstance(v, float):
        s = float.__repr__(v)
    elif isinstance(v, int):
        s = int.__repr__(v)  # an (int, Enum) member's value, not its name
    elif isinstance(v, Decimal):
        s = Decimal.__str__(v)
    else:
        raise _PathError(f"not a number: {_short(v)}")
    p = number_problem(s)
    if p:
        raise _PathError(p)
    return s


def _from_py(v: Any) -> Dict[str, Any]:
    t = type(v)
    if t is str:
        return {"S": v}
    if t is Decimal or t is int:
        return {"N": _num(v)}
    if t is dict:
        m = {}
        for k, e in v.items():
            if type(k) is not str:
                raise _PathError(f"map keys must be strings, got {k!r}")
            try:
                m[k] = _from_py(e)
            except _PathError as err:
                err.parts.append(f".{k}")
                raise
        return {"M": m}
    if t is list or t is tuple:
        out = []
        for i, e in enumerate(v):
            try:
                out.append(_from_py(e))
            except _PathError as err:
                err.parts.append(f"[{i}]")
                raise
        return {"L": out}
    if t is bool:
        return {"BOOL": v}
    if v is None:
        return {"NULL": True}
    if t is bytes or t is bytearray or t is memoryview:
        return {"B": base64.b64encode(bytes(v)).decode("ascii")}
    if t is set or t is frozenset:
        return _set(v)
    # Subclasses and other mappings/sequences: the slower, general checks. A subclass's value is
    # taken with its base class's method: str() of a (str, Enum) member is "Status.ACTIVE", not
    # the "active" it holds.
    if isinstance(v, str):
        return {"S": str.__str__(v)}
    if isinstance(v, bool):
        return {"BOOL": bool(v)}
    if isinstance(v, (int, float, Decimal)):
        return {"N": _num(v)}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"B": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, _abc.Mapping):
        return _from_py(dict(v))
    if isinstance(v, (list, tuple)):
        return _from_py(list(v))
    if isinstance(v, (set, frozenset)):
        return _set(v)
    raise _PathError(f"unsupported Python type {type(v).__name__}")


_NUMBER_TYPES = {int, Decimal, float}


def _number_set(v: Any, floats: bool) -> Dict[str, Any]:
    nums = [_num(e) for e in v]
    # A Python set holds each value once (1 == 1.0 == Decimal("1")), but a float is its binary
    # value: 0.1 and Decimal("0.1") are two members, spelled as one number, which DynamoDB
    # refuses as a repeat. As numbers they are one member.
    if floats and len(nums) > 1:
        nums = list({Decimal(n): n for n in nums}.values())
    return {"NS": nums}


def _set(v: Any) -> Dict[str, Any]:
    # Set order carries no meaning in DynamoDB, so elements are not sorted.
    if not v:
        raise _PathError("empty set; DynamoDB does not allow empty sets")
    # The usual sets, by their members' exact types in one C-level pass (bool is not int here).
    try:
        kinds = set(map(type, v))
    except TypeError:  # a member whose class cannot be hashed: the general checks say why
        kinds = set()
    if kinds == _STR:
        return {"SS": list(v)}
    if kinds and kinds <= _NUMBER_TYPES:
        return _number_set(v, float in kinds)
    if kinds == _BYTES:
        return {"BS": [base64.b64encode(e).decode("ascii") for e in v]}
    # Subclasses, and sets that mix kinds (refused below, by the general checks).
    first = next(iter(v))
    if isinstance(first, str):
        if all(isinstance(e, str) for e in v):
            members = {str.__str__(e) for e in v}  # values, as for a single string (see _from_py)
            return {"SS": list(members)}
    elif isinstance(first, bytes):  # (a bytearray cannot be a set's member: it is not hashable)
        if all(isinstance(e, bytes) for e in v):
            return {"BS": [base64.b64encode(bytes(e)).decode("ascii") for e in v]}
    elif all(isinstance(e, (int, float, Decimal)) and not isinstance(e, bool) for e in v):
        return _number_set(v, any(isinstance(e, float) for e in v))
    raise _PathError("a set must hold only strings, only numbers or only bytes")


# --------------------------------------------------------------------------- canonical form


def canonical_b64(x: Any) -> str:
    """One base64 spelling per byte string: ``QQ==`` and ``QR==`` both hold b"A" (the bits past
    the last byte are ignored by decoders, DynamoDB's included), and compare equal this way.
    Bytes are encoded; text that is not base64 stays as it is (it is refused elsewhere)."""
    if not isinstance(x, str):
        return base64.b64encode(bytes(x)).decode("ascii")
    try:
        return base64.b64encode(base64.b64decode(x, validate=True)).decode("ascii")
    except (binascii.Error, ValueError):
        return x


def canonical_value(v: Mapping[str, Any]) -> Any:
    """A comparable form: set order ignored, numbers by value, binary by bytes."""
    if not v:
        return ("M", ())
    ((t, x),) = v.items()
    if t == "N":
        return ("N", canonical_number(x))
    if t == "B":
        return ("B", canonical_b64(x))
    if t == "BS":
        return ("BS", tuple(sorted(canonical_b64(e) for e in x)))
    if t == "SS":
        return (t, tuple(sorted(x)))
    if t == "NS":
        return ("NS", tuple(sorted(canonical_number(e) for e in x)))
    if t == "L":
        return ("L", tuple(canonical_value(e) for e in x))
    if t == "M":
        return ("M", tuple(sorted((k, canonical_value(e)) for k, e in x.items())))
    return (t, x)


def canonical_item(item: Mapping[str, Mapping[str, Any]]) -> Tuple[Any, ...]:
    return tuple(sorted((k, canonical_value(v)) for k, v in item.items()))


def digest(item: Mapping[str, Mapping[str, Any]]) -> bytes:
    """A 16-byte digest of the item's canonical form (for bounded-memory comparison)."""
    return hashlib.blake2b(orjson.dumps(canonical_item(item)), digest_size=16).digest()


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def iter_chunks(seq: List[Any], n: int) -> Iterable[List[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
