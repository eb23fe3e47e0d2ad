"""Test helpers for file formats: hypothesis strategies of every DynamoDB type, and Ion written
with amazon.ion's own writer in AWS's type mapping (independent of ddbmigrate's Ion writer)."""

from __future__ import annotations

import base64
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


