"""Test helpers for file formats: hypothesis strategies of every DynamoDB type, Ion written
with amazon.ion's own writer in AWS's type mapping (independent of ddbmigrate's Ion writer), and
Data Pipeline's Hive export lines as the emr-dynamodb-connector's Gson writes them."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any, Dict

from amazon.ion import simpleion
from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyBytes, IonPyList, IonPyNull
from hypothesis import strategies as st

from ddbmigrate.core.items import number_problem


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


_num = st.builds(lambda m, e: f"{m}E{e}", st.integers(-10 ** 38 + 1, 10 ** 38 - 1), st.integers(-90, 80)) \
    .filter(lambda s: number_problem(s) is None)
_scalar = st.one_of(
    st.text(max_size=10).map(lambda s: {"S": s}), _num.map(lambda n: {"N": n}),
    st.binary(max_size=10).map(lambda b: {"B": _b64(b)}), st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.sets(st.text(max_size=5), min_size=1, max_size=3).map(lambda s: {"SS": sorted(s)}),
    st.sets(_num, min_size=1, max_size=3).map(lambda s: {"NS": sorted(s)}),
    st.sets(st.binary(min_size=1, max_size=4), min_size=1, max_size=3).map(lambda s: {"BS": [_b64(x) for x in s]}),
)
_value = st.recursive(_scalar, lambda k: st.one_of(st.lists(k, max_size=3).map(lambda v: {"L": v}),
                                                   st.dictionaries(st.text(min_size=1, max_size=4), k, max_size=3)
                                                   .map(lambda v: {"M": v})), max_leaves=10)
_item = st.dictionaries(st.text(min_size=1, max_size=6), _value, min_size=1, max_size=5)


def ion_value(v: Dict[str, Any]) -> Any:
    """A wire value as amazon.ion's own Python values (AWS's mapping), independent of ddbmigrate."""
    ((t, x),) = v.items()
    if t == "S":
        return x
    if t == "N":
        return Decimal(x)
    if t == "B":
        return IonPyBytes.from_value(IonType.BLOB, base64.b64decode(x))
    if t == "BOOL":
        return x
    if t == "NULL":
        return IonPyNull.from_value(IonType.NULL, None)
    if t in ("SS", "NS", "BS"):
        elems = [ion_value({t[0]: e}) for e in x]
        return IonPyList.from_value(IonType.LIST, elems, annotations=(f"$dynamodb_{t}",))
    if t == "L":
        return [ion_value(e) for e in x]
    return {k: ion_value(e) for k, e in x.items()}


def aws_ion_line(item: Dict[str, Any]) -> bytes:
    text = simpleion.dumps({"Item": {k: ion_value(v) for k, v in item.items()}}, binary=False)
    return text.encode() if isinstance(text, str) else text




# --------------------------------------------------------------------------- Data Pipeline's Hive export

# The type names the emr-dynamodb-connector's Gson writes: by reflection over the SDK v1
# AttributeValue's fields, or lower-cased by its SDK v2 AttributeValueSerializer.
GSON_NAMES = {
    "v1": {"S": "s", "N": "n", "B": "b", "SS": "sS", "NS": "nS", "BS": "bS", "M": "m", "L": "l", "BOOL": "bOOL",
           "NULL": "nULLValue"},
    "v2": {"S": "s", "N": "n", "B": "b", "SS": "ss", "NS": "ns", "BS": "bs", "M": "m", "L": "l", "BOOL": "bool",
           "NULL": "null"},
}


def gson_value(v: Dict[str, Any], sdk: str) -> Dict[str, Any]:
    ((t, x),) = v.items()
    name = GSON_NAMES[sdk][t]
    if t == "M":
        return {name: {k: gson_value(e, sdk) for k, e in x.items()}}
    if t == "L":
        return {name: [gson_value(e, sdk) for e in x]}
    return {name: x}


def gson_json(obj: Any, ascii_only: bool = False) -> str:
    """JSON as Gson (``disableHtmlEscaping``) writes it: compact, every control character escaped,
    and U+2028/U+2029 too; ``ascii_only`` escapes the rest, which any JSON reader must accept."""
    text = json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def hive_line(item: Dict[str, Any], sdk: str = "v1", ascii_only: bool = False) -> bytes:
    """One line of Data Pipeline's Hive export (``item map<string,string>`` in Hive's default text
    format): ``name \\x03 value`` fields joined by ``\\x02``, the name raw, the value Gson's JSON."""
    return "\x02".join(f"{name}\x03{gson_json(gson_value(v, sdk), ascii_only)}" for name, v in item.items()).encode()


# Names a Hive line can hold: Hive writes a name raw, so none holds a delimiter or a newline.
hive_item = st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda s: not set(s) & {"\x02", "\x03", "\n"}),
                            _value, min_size=1, max_size=5)
