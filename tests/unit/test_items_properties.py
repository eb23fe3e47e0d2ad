"""Property tests for the wire-format codec in items.py (no server).

The transform boundary converts wire items to Python values and back; these properties prove the
conversion lossless over every DynamoDB type, that item_size never exceeds the JSON encoding's
length (the oversize() shortcut depends on it), and that keys and canonical forms compare by
value, not by spelling or set order.
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any, Dict, List

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddbmigrate.errors import InvalidItemError
from ddbmigrate.core.items import (
    MAX_ITEM_BYTES,
    KeySchema,
    canonical_item,
    canonical_number,
    digest,
    from_python,
    item_problem,
    item_size,
    number_problem,
    oversize,
    to_python,
)

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


# ------------------------------------------------------------------ strategies


@st.composite
def numbers(draw: Any) -> str:
    """Valid DynamoDB numbers in many spellings: up to 38 digits, exponents from 1E-130 to 9.99E+125."""
    digits = draw(st.text("0123456789", min_size=1, max_size=38)).lstrip("0")
    sign = draw(st.sampled_from(["", "-"]))
    if not digits:
        return draw(st.sampled_from(["0", "0.0", "0E+3", "-0", "0.000"]))
    lo, hi = -130 - (len(digits) - 1), 125 - (len(digits) - 1)
    exp = draw(st.integers(lo, hi))
    form = draw(st.sampled_from(["E", "e", "str", "plain"]))
    d = Decimal(f"{sign}{digits}E{exp}")
    if form == "E":
        return f"{sign}{digits}E{exp:+d}"
    if form == "e":
        return f"{sign}{digits}e{exp}"
    if form == "plain" and -45 <= exp <= 45:
        return format(d, "f")
    return str(d)


texts = st.text(max_size=12)
scalars = st.one_of(
    texts.map(lambda s: {"S": s}),
    numbers().map(lambda n: {"N": n}),
    st.binary(max_size=16).map(lambda b: {"B": b64(b)}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.sets(texts, min_size=1, max_size=5).map(lambda s: {"SS": list(s)}),
    st.lists(numbers(), min_size=1, max_size=5, unique_by=canonical_number).map(lambda n: {"NS": n}),
    st.sets(st.binary(max_size=8), min_size=1, max_size=5).map(lambda s: {"BS": [b64(b) for b in s]}),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda l: {"L": l}),
        st.dictionaries(texts, children, max_size=4).map(lambda m: {"M": m}),
    ),
    max_leaves=25,
)
names = st.text(min_size=1, max_size=10)
wire_items = st.dictionaries(names, values, min_size=1, max_size=6)


@st.composite
def deep_items(draw: Any) -> Dict[str, Any]:
    """A map nested up to DynamoDB's 32 levels, with a leaf of any scalar type."""
    v = draw(scalars)
    for _ in range(draw(st.integers(1, 31))):
        v = {"M": {draw(texts): v}} if draw(st.booleans()) else {"L": [v]}
    return {"deep": v}


def exact(v: Any) -> Any:
    """A form equal only for identical values: numbers by exact digits and exponent, sets unordered."""
    if isinstance(v, dict) and len(v) == 1:
        ((t, x),) = v.items()
        if t == "N":
            return ("N", Decimal(x).as_tuple())
        if t == "NS":
            return ("NS", frozenset(Decimal(e).as_tuple() for e in x))
        if t in ("SS", "BS"):
            return (t, frozenset(x))
        if t == "L":
            return ("L", tuple(exact(e) for e in x))
        if t == "M":
            return ("M", frozenset((k, exact(e)) for k, e in x.items()))
        return (t, x)
    raise AssertionError(f"not a typed value: {v!r}")


def exact_item(item: Dict[str, Any]) -> Any:
    return frozenset((k, exact(v)) for k, v in item.items())


# ------------------------------------------------------------------ round trips


@PROPS
@given(wire_items)
def test_generated_items_are_valid_wire_items(item: Dict[str, Any]) -> None:
    assert item_problem(item) is None


@PROPS
@given(st.one_of(wire_items, deep_items()))
def test_wire_python_wire_is_lossless(item: Dict[str, Any]) -> None:
    back = from_python(to_python(item))
    assert exact_item(back) == exact_item(item)
    assert canonical_item(back) == canonical_item(item) and digest(back) == digest(item)
    assert item_problem(back) is None


@PROPS
@given(st.one_of(wire_items, deep_items()))
def test_python_wire_python_is_lossless(item: Dict[str, Any]) -> None:
    py = to_python(item)
    again = to_python(from_python(py))
    assert again == py
    # Decimal equality is by value; the spelling (digits and exponent) must survive too.
    assert exact_item(from_python(again)) == exact_item(from_python(py))


@PROPS
@given(numbers())
def test_numbers_keep_every_digit(n: str) -> None:
    assert number_problem(n) is None
    py = to_python({"n": {"N": n}})["n"]
    assert isinstance(py, Decimal) and py.as_tuple() == Decimal(n).as_tuple()
    assert Decimal(from_python({"n": py})["n"]["N"]).as_tuple() == Decimal(n).as_tuple()


def test_python_types_map_to_dynamodb_types() -> None:
    py = to_python({"s": {"S": ""}, "n": {"N": "12345678901234567890123456789012345678"}, "b": {"B": b64(b"\x00\xff")},
                    "t": {"BOOL": True}, "z": {"NULL": True}, "l": {"L": [{"N": "1.50"}]}, "m": {"M": {}},
                    "ss": {"SS": ["a"]}, "ns": {"NS": ["1E+125"]}, "bs": {"BS": [b64(b"x")]}})
    assert py == {"s": "", "n": Decimal("12345678901234567890123456789012345678"), "b": b"\x00\xff", "t": True,
                  "z": None, "l": [Decimal("1.50")], "m": {}, "ss": {"a"}, "ns": {Decimal("1E+125")}, "bs": {b"x"}}
    assert str(py["l"][0]) == "1.50"
    assert from_python({"i": 7, "f": 0.1, "t": (1, "a"), "fs": frozenset({2, 1})}) == {
        "i": {"N": "7"}, "f": {"N": "0.1"}, "t": {"L": [{"N": "1"}, {"S": "a"}]}, "fs": {"NS": ["1", "2"]}}


# ------------------------------------------------------------------ rejected values


@pytest.mark.parametrize("value,path", [
    ({"tags": set()}, "tags"),
    ({"m": {"inner": frozenset()}}, "m.inner"),
    ({"l": [1, {"x": set()}]}, "l[1].x"),
])
def test_empty_sets_rejected_naming_the_path(value: Dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidItemError) as ei:
        from_python(value)
    assert ei.value.message.startswith(f"{path}: empty set") and "DynamoDB does not allow empty sets" in ei.value.message


@pytest.mark.parametrize("t", ["SS", "NS", "BS"])
def test_empty_wire_sets_rejected(t: str) -> None:
    assert "empty" in (item_problem({"a": {t: []}}) or "")


@pytest.mark.parametrize("value,needle", [
    ({"x": float("nan")}, "not a finite number"),
    ({"x": Decimal("1" * 39)}, "39 significant digits"),
    ({"x": Decimal("1E+126")}, "out of DynamoDB's range"),
    ({"x": {1, "a"}}, "only strings, only numbers or only bytes"),
    ({"x": object()}, "unsupported Python type object"),
    ({"x": {1: "a"}}, "map keys must be strings"),
    ({1: "a"}, "attribute names must be strings"),
])
def test_unrepresentable_values_rejected(value: Dict[Any, Any], needle: str) -> None:
    with pytest.raises(InvalidItemError, match=needle):
        from_python(value)


# ------------------------------------------------------------------ item size


@pytest.mark.parametrize("item,size", [
    ({"pk": {"S": "abc"}}, 5),  # name 2 + 3 UTF-8 bytes
    ({"e": {"S": "🙂é"}}, 1 + 4 + 2),
    ({"n": {"N": "123"}}, 1 + 3),  # 1 byte per 2 significant digits (rounded up) + 1
    ({"n": {"N": "12345678901234567890123456789012345678"}}, 1 + 20),
    ({"n": {"N": "1.500E+10"}}, 1 + 2),  # trailing zeros are not significant
    ({"b": {"B": b64(b"\x00\x01\xff")}}, 1 + 3),  # raw bytes, not base64
    ({"t": {"BOOL": True}, "z": {"NULL": True}}, 2 + 2),
    ({"l": {"L": [{"N": "1"}, {"BOOL": True}]}}, 1 + 3 + (2 + 1) + (1 + 1)),  # 3 + 1 per element
    ({"m": {"M": {"a": {"S": "xy"}}}}, 1 + 3 + (1 + 2 + 1)),
    ({"m": {"M": {}}, "l": {"L": []}}, 1 + 3 + 1 + 3),
    ({"ss": {"SS": ["ab", "c"]}, "bs": {"BS": [b64(b"12")]}}, 2 + 3 + 2 + 2),
])
def test_item_size_known_values(item: Dict[str, Any], size: int) -> None:
    assert item_size(item) == size


@PROPS
@given(st.one_of(wire_items, deep_items()))
def test_json_encoding_never_shorter_than_item_size(item: Dict[str, Any]) -> None:
    enc = orjson.dumps(item)
    assert len(enc) >= item_size(item)
    # so oversize() may skip the exact walk for any encoding within the limit
    assert oversize(item, len(enc)) is None


@settings(max_examples=40, deadline=None)
@given(st.integers(MAX_ITEM_BYTES - 200, MAX_ITEM_BYTES + 200), st.text(max_size=5, alphabet="ab"))
def test_oversize_matches_item_size_near_the_limit(n: int, name: str) -> None:
    item = {"k" + name: {"S": "x" * n}}
    size = item_size(item)
    got = oversize(item, len(orjson.dumps(item)))
    assert got == (size if size > MAX_ITEM_BYTES else None)


# ------------------------------------------------------------------ keys and canonical form


@PROPS
@given(numbers(), st.sampled_from(["str", "E", "zeros"]))
def test_number_keys_compare_by_value(n: str, respell: str) -> None:
    ks = KeySchema("id", "N")
    d = Decimal(n)
    other = {"str": str(d), "E": f"{d:E}", "zeros": str(d) + ("0" if "." in str(d) and "E" not in str(d) else "")}[respell]
    assert Decimal(other) == d
    assert ks.key({"id": {"N": n}}) == ks.key({"id": {"N": other}})
    assert ks.problem({"id": {"N": n}}) is None


def test_number_key_examples() -> None:
    ks = KeySchema("h", "S", "r", "N")
    assert ks.key({"h": {"S": "a"}, "r": {"N": "1"}}) == ks.key({"h": {"S": "a"}, "r": {"N": "1.0"}})
    assert ks.key({"h": {"S": "a"}, "r": {"N": "100"}}) == ks.key({"h": {"S": "a"}, "r": {"N": "1E2"}})
    assert ks.key({"h": {"S": "a"}, "r": {"N": "1"}}) != ks.key({"h": {"S": "a"}, "r": {"N": "1.000000001"}})


@PROPS
@given(numbers(), numbers())
def test_distinct_number_keys_stay_distinct(a: str, b: str) -> None:
    ks = KeySchema("id", "N")
    assert (ks.key({"id": {"N": a}}) == ks.key({"id": {"N": b}})) == (Decimal(a) == Decimal(b))


@pytest.mark.parametrize("item,needle", [
    ({"r": {"N": "1"}}, "missing key attribute 'h'"),
    ({"h": {"S": "a"}}, "missing key attribute 'r'"),
    ({"h": {"N": "1"}, "r": {"N": "1"}}, "'h' must be of type S, got N"),
    ({"h": {"S": ""}, "r": {"N": "1"}}, "'h' is an empty string"),
    ({"h": {"S": "a"}, "r": {"N": "x"}}, "'r': not a number"),
    ({"h": {"S": "a"}, "r": {"S": "1"}}, "'r' must be of type N, got S"),
])
def test_key_problems_name_the_attribute(item: Dict[str, Any], needle: str) -> None:
    assert needle in (KeySchema("h", "S", "r", "N").problem(item) or "")


@PROPS
@given(wire_items, st.randoms(use_true_random=False))
def test_canonical_item_ignores_set_order(item: Dict[str, Any], rnd: Any) -> None:
    def shuffle(v: Any) -> Any:
        ((t, x),) = v.items()
        if t in ("SS", "NS", "BS"):
            y = list(x)
            rnd.shuffle(y)
            return {t: y}
        if t == "L":
            return {"L": [shuffle(e) for e in x]}
        if t == "M":
            return {"M": {k: shuffle(e) for k, e in x.items()}}
        return v

    shuffled = {k: shuffle(v) for k, v in item.items()}
    assert canonical_item(shuffled) == canonical_item(item) and digest(shuffled) == digest(item)


def test_canonical_item_tells_values_apart() -> None:
    a: Dict[str, Any] = {"pk": {"S": "1"}, "l": {"L": [{"N": "1"}, {"N": "2"}]}}
    b: Dict[str, Any] = {"pk": {"S": "1"}, "l": {"L": [{"N": "2"}, {"N": "1"}]}}  # list order matters
    c: Dict[str, Any] = {"pk": {"N": "1"}, "l": {"L": [{"N": "1"}, {"N": "2"}]}}  # type matters
    assert len({canonical_item(x) for x in (a, b, c)}) == 3
    same: List[Dict[str, Any]] = [{"n": {"N": "1.0"}, "ns": {"NS": ["2", "1E0"]}},
                                  {"n": {"N": "1"}, "ns": {"NS": ["1", "2.00"]}}]
    assert canonical_item(same[0]) == canonical_item(same[1])


# ------------------------------------------------------------------ the fast validation path

from ddbmigrate.core.items import valid_item_names  # noqa: E402
from ddbmigrate.sources.lines import _count_keys, parse_item  # noqa: E402

# Values the fast path must not wave through: each is invalid, or valid only by a rule the fast
# path does not check (and so must answer "not sure").
awkward = st.sampled_from([
    {"N": "1E+200"}, {"N": "1" * 39}, {"N": "0." + "0" * 40 + "1"}, {"N": " 1"}, {"N": "1_0"}, {"N": "NaN"},
    {"N": "-0"}, {"N": ".5"}, {"N": 1}, {"NS": ["1", "1.0"]}, {"NS": ["1", "01"]}, {"NS": []}, {"SS": ["a", "a"]},
    {"SS": []}, {"BS": ["AA==", "AA=="]}, {"B": "not base64!"}, {"BOOL": "true"}, {"NULL": False},
    {"S": 1}, {"X": "y"}, {"S": "a", "N": "1"}, {}, {"M": {"": {"S": "x"}}}, {"L": {"S": "x"}}, "text",
    # Digits that str.isdigit() knows and DynamoDB does not: the fast path's check of plain digits.
    {"N": "\u0663"}, {"N": "\u00b2"}, {"N": "1\uff11"}, {"N": ""}, {"N": "-"}, {"N": "1."}, {"N": "+1"},
    {"NS": ["\u0663"]}, {"NS": ["1" * 39]}, {"SS": ["a", 1]}, {"BS": ["AA==", 1]}, {"L": [{"N": "\u0663"}]},
])
mixed_values = st.recursive(
    st.one_of(scalars, awkward),
    lambda children: st.one_of(st.lists(children, max_size=3).map(lambda l: {"L": l}),
                               st.dictionaries(texts, children, max_size=3).map(lambda m: {"M": m})),
    max_leaves=12,
)


@PROPS
@given(st.one_of(wire_items, deep_items(), st.dictionaries(names, mixed_values, min_size=1, max_size=5)))
def test_fast_validation_never_passes_what_the_full_check_refuses(item: Dict[str, Any]) -> None:
    names_found = valid_item_names(item)
    if names_found is not None:
        assert item_problem(item) is None
        assert names_found == _count_keys(item)


usual_scalars = st.one_of(
    texts.map(lambda s: {"S": s}),
    st.integers(-10**36 + 1, 10**36 - 1).map(lambda n: {"N": str(n)}),  # 38 characters at most
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10**20, max_value=10**20)
      .map(lambda d: {"N": format(d, "f")}),
    st.binary(max_size=16).map(lambda b: {"B": b64(b)}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.sets(texts, min_size=1, max_size=5).map(lambda s: {"SS": list(s)}),
    st.sets(st.integers(-10**30, 10**30), min_size=1, max_size=5).map(lambda s: {"NS": [str(n) for n in s]}),
    st.sets(st.binary(max_size=8), min_size=1, max_size=5).map(lambda s: {"BS": [b64(b) for b in s]}),
)
usual_items = st.dictionaries(names, st.recursive(
    usual_scalars, lambda c: st.one_of(st.lists(c, max_size=3).map(lambda l: {"L": l}),
                                       st.dictionaries(names, c, max_size=3).map(lambda m: {"M": m})),
    max_leaves=12), min_size=1, max_size=6)


@PROPS
@given(usual_items)
def test_fast_validation_knows_the_usual_items(item: Dict[str, Any]) -> None:
    """Valid items in their usual spelling take the fast path (else the speed-up is a fiction)."""
    assert valid_item_names(item) == _count_keys(item)


@PROPS
@given(wire_items, st.booleans(), st.booleans())
def test_export_lines_parse_the_same_on_the_fast_path(item: Dict[str, Any], wrap: bool, repeat: bool) -> None:
    """An Export-to-S3 line (or a bare item) gives the same item or reason with or without the
    fast path; a repeated name anywhere is still a reject."""
    body = orjson.dumps({"Item": item} if wrap else item)
    if repeat:  # repeat the first attribute at the end of the item
        k, v = next(iter(item.items()))
        extra = b"," + orjson.dumps(k) + b":" + orjson.dumps(v)
        body = body[:-2] + extra + b"}}" if wrap else body[:-1] + extra + b"}"
    got, reason, _ = parse_item(body, "ddb")
    if repeat:
        assert got is None and reason is not None and "appears twice" in reason
    else:
        assert reason is None and got == item


# ------------------------------------------------------------------ export lines handed on as read

@PROPS
@given(st.lists(st.tuples(wire_items, st.sampled_from(["wrapped", "bare", "extra", "metadata", "spaced", "crlf"])),
                min_size=1, max_size=8))
def test_export_lines_are_sent_as_read_or_encoded_again_never_changed(lines: List[Any]) -> None:
    """An Export-to-S3 line's item JSON goes to the writer as it was read (not encoded again);
    a line that is not exactly a one-name wrapper is encoded from what was parsed. Either way
    the bytes sent decode to exactly the item the line holds."""
    import gzip as _gzip
    import tempfile
    import threading
    from pathlib import Path

    from ddbmigrate.core.processing import Processing, Processor
    from ddbmigrate.sources.files import FileSource
    from ddbmigrate.storage.export_layout import FileEntry, Plan
    from ddbmigrate.storage.stores import LocalStorage

    body, want = [], []
    for item, form in lines:
        if form == "wrapped":
            body.append(b'{"Item":' + orjson.dumps(item) + b"}")
        elif form == "crlf":
            body.append(b'{"Item":' + orjson.dumps(item) + b"}\r")
        elif form == "spaced":
            body.append(b'{"Item": ' + orjson.dumps(item) + b" }")
        elif form == "metadata":  # a wrapper with a second name: the item is inside, the slice is not it
            body.append(b'{"Item":' + orjson.dumps(item) + b',"Metadata":{"note":"x:y"}}')
        elif form == "extra":  # a bare item with an attribute named "Item" next to others
            item = {**item, "Item": {"S": "an attribute"}, "zz": {"N": "1"}}
            body.append(b'{"Item":{"S":"an attribute"},' + orjson.dumps({k: v for k, v in item.items() if k != "Item"})[1:])
        else:
            body.append(orjson.dumps(item))
        want.append(item)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "part.json.gz"
        path.write_bytes(_gzip.compress(b"\n".join(body) + b"\n"))
        src = FileSource(LocalStorage(), Plan("files", d, [FileEntry(str(path), path.name)]), input_format="dynamodb-json")
        chunks = list(src.read(path.name, None, threading.Event()))
    assert not src.failures() and not [r for c in chunks for r in c.rejects]
    proc = Processor(Processing(key_schema=None))
    sent = [orjson.loads(op.enc) for c in chunks
            for op in proc.chunk(c, 0, lambda *a, **k: pytest.fail(f"dead letter {a}")).ops]
    assert sent == want
    handed = [e for c in chunks for e in (c.encs or [])]
    assert all((e is not None) == (form in ("wrapped", "spaced", "crlf")) for e, (_, form) in zip(handed, lines))


@pytest.mark.parametrize("nest", ["M", "L"])
def test_fast_validation_keeps_the_depth_limit_for_strings_and_numbers_in_maps_and_lists(nest: str) -> None:
    for leaf in ({"S": "x"}, {"N": "1"}):
        v: Dict[str, Any] = leaf
        for _ in range(32):
            v = {"M": {"a": v}} if nest == "M" else {"L": [v]}
        item = {"top": v}
        assert item_problem(item) is not None and valid_item_names(item) is None
        got, reason, _ = parse_item(orjson.dumps({"Item": item}), "ddb")
        assert got is None and reason is not None and "32 levels" in reason


# ------------------------------------------------------------------ what a transform may return

def test_a_transform_may_return_any_mapping_alone_or_in_a_list() -> None:
    """A dict is the usual return (checked by its type first, for speed); any other mapping is
    an item too, and anything else is named."""
    import collections
    import types

    from ddbmigrate.core.transform import Transform
    from ddbmigrate.errors import TransformError

    item = {"pk": {"S": "a"}, "n": {"N": "1"}}
    want = [{"pk": {"S": "a"}, "n": {"N": "1"}}]
    listed_want = want + [{"pk": {"S": "b"}, "n": {"N": "1"}}]
    def alone(wrap: Any) -> Any:
        return lambda it: wrap(it)

    def listed(wrap: Any) -> Any:
        return lambda it: [wrap(it), wrap(dict(it, pk="b"))]

    for wrap in (dict, types.MappingProxyType, collections.OrderedDict, collections.ChainMap):
        assert Transform(alone(wrap), "t", "h", "test")(item) == want
        assert Transform(listed(wrap), "t", "h", "test")(item) == listed_want
    assert Transform(lambda it: (it, dict(it, pk="b")), "t", "h", "test")(item) == listed_want
    for bad, said in ((lambda it: 3, "returned int"), (lambda it: [it, 3], "a list holding int"),
                      (lambda it: [it, _NotAMapping()], "a list holding _NotAMapping")):
        with pytest.raises(TransformError, match=said) as ei:
            Transform(bad, "t", "h", "test")(item)
        assert ei.value.code == "BadReturnType"


class _NotAMapping:
    """Has items() as a mapping does, but is not one."""

    def items(self) -> List[Any]:
        return [("pk", "x")]


class _Text(str):
    pass


class _Int(int):
    pass


class _Bytes(bytes):
    pass


set_members = st.one_of(
    st.text(max_size=5), st.text(max_size=5).map(_Text),
    st.integers(-10**6, 10**6), st.integers(0, 9).map(_Int), st.booleans(), st.sampled_from([10**38, -10**40]),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-100, max_value=100),
    st.floats(allow_nan=False, allow_infinity=False, width=32), st.sampled_from([0.1, 1e300, float("inf")]),
    st.just(Decimal("0.1")), st.binary(max_size=4), st.binary(max_size=4).map(_Bytes),
)


@PROPS
@given(st.lists(set_members, min_size=1, max_size=5))
def test_a_python_set_becomes_the_set_type_of_its_members_or_is_refused(members: List[Any]) -> None:
    """Strings (and their subclasses) make an SS, numbers that are not booleans an NS (each value
    once, as DynamoDB counts them), bytes (and theirs) a BS; a mix, booleans or a number DynamoDB
    cannot hold is refused naming the attribute."""
    value = set(members)
    if all(isinstance(m, str) for m in value):
        got = from_python({"s": value})["s"]["SS"]
        assert sorted(got) == sorted(value) and all(type(g) is str for g in got)
    elif all(isinstance(m, (int, float, Decimal)) and not isinstance(m, bool) for m in value):
        def number(m: Any) -> Decimal:
            return Decimal(repr(m)) if isinstance(m, float) else Decimal(m)

        from ddbmigrate.core.items import number_problem  # DynamoDB's rule, tested on its own

        if any(number_problem(repr(m) if isinstance(m, float) else str(m)) for m in value):
            with pytest.raises(InvalidItemError, match="^s: "):
                from_python({"s": value})
            return
        got = [Decimal(g) for g in from_python({"s": value})["s"]["NS"]]
        assert len(set(got)) == len(got) and set(got) == {number(m) for m in value}
    elif all(isinstance(m, bytes) for m in value):
        got = from_python({"s": value})["s"]["BS"]
        assert sorted(base64.b64decode(g) for g in got) == sorted(value)
    else:
        with pytest.raises(InvalidItemError, match="^s: a set must hold only"):
            from_python({"s": value})


def test_a_float_and_a_decimal_spelled_as_one_number_are_one_member_of_a_number_set() -> None:
    assert from_python({"s": {0.1, Decimal("0.1"), 2}})["s"]["NS"] in (["0.1", "2"], ["2", "0.1"])


def test_a_set_member_whose_class_cannot_be_hashed_is_refused_naming_the_attribute() -> None:
    class Meta(type):
        def __eq__(cls, other: object) -> bool:  # and so no __hash__: the class is unhashable
            return cls is other

    class Odd(metaclass=Meta):
        def __hash__(self) -> int:
            return 1

    with pytest.raises(InvalidItemError, match="^s: a set must hold only"):
        from_python({"s": {Odd()}})


def test_key_values_at_dynamodbs_byte_limits_pass_and_one_byte_more_does_not() -> None:
    # 2,048 bytes for a partition key, 1,024 for a sort key, a binary key counted in the bytes its
    # base64 holds (its padding is not bytes): a 2,047-byte binary key was refused.
    import base64

    from ddbmigrate.core.items import KeySchema, index_key_problem

    ks = KeySchema("h", "B", "r", "S")
    for n in (2046, 2047, 2048):
        item = {"h": {"B": base64.b64encode(b"x" * n).decode()}, "r": {"S": "é" * 512}}  # 1,024 bytes of UTF-8
        assert ks.problem(item) is None, n
    assert "over 2048" in (ks.problem({"h": {"B": base64.b64encode(b"x" * 2049).decode()}, "r": {"S": "a"}}) or "")
    assert "over 1024" in (ks.problem({"h": {"B": "eA=="}, "r": {"S": "é" * 512 + "a"}}) or "")
    idx = (("g", "B", "G1", "HASH"),)
    assert index_key_problem({"g": {"B": base64.b64encode(b"x" * 2048).decode()}}, idx) is None
    assert index_key_problem({"g": {"B": base64.b64encode(b"x" * 2049).decode()}}, idx) is not None


def test_a_delete_of_an_item_without_the_key_is_a_dead_letter_not_a_key_error() -> None:
    """Emptying a table deletes each item read by its key: an item a server gave without the key
    (or with it of another type) stopped `clean` with KeyError."""
    from ddbmigrate.core.items import KeySchema
    from ddbmigrate.core.processing import Processing, Processor
    from ddbmigrate.core.records import DELETE, Chunk

    proc = Processor(Processing(key_schema=KeySchema("pk", "S")))
    dead: List[Any] = []
    chunk = Chunk(ops=[(DELETE, {"pk": {"S": "a"}, "x": {"N": "1"}}), (DELETE, {"x": {"N": "2"}}),
                       (DELETE, {"pk": {"N": "3"}})], position=None)
    out = proc.chunk(chunk, 0, lambda *a, **k: dead.append(a))
    assert [orjson.loads(op.enc) for op in out.ops] == [{"pk": {"S": "a"}}]
    assert [(d[0], d[2]) for d in dead] == [({"x": {"N": "2"}}, "InvalidKey"), ({"pk": {"N": "3"}}, "InvalidKey")]
