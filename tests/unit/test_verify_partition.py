"""The partitioned, spill-to-disk comparison gives exactly the in-memory answer (no server).

A tiny memory budget forces every partition to be split again on disk (several levels deep);
the categories must still match the obvious dict-based comparison key for key.
"""

from __future__ import annotations

import os
import tempfile
from decimal import Decimal
from typing import Any, Dict, List

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ddbmigrate.verify.compare import ACTUAL, EXPECTED, Comparer, compare_in_memory, diff_paths, sampled
from ddbmigrate.core.items import KeySchema
from ddbmigrate.verify.report import sample_confidence

KEYS = KeySchema("pk", "S", "sk", "N")

numbers = st.sampled_from(["1", "1.0", "1E0", "10E-1", "2", "-3.5", "0", "0.00", "1E+2", "100"])
scalars = st.one_of(
    st.builds(lambda s: {"S": s}, st.sampled_from(["a", "b", "1", ""])),
    st.builds(lambda n: {"N": n}, numbers),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda xs: {"SS": xs}, st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=3, unique=True)),
    st.builds(lambda xs: {"NS": xs}, st.lists(st.sampled_from(["1", "2", "3.5"]), min_size=1, max_size=3, unique=True)),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.builds(lambda xs: {"L": xs}, st.lists(inner, max_size=3)),
    st.builds(lambda d: {"M": d}, st.dictionaries(st.sampled_from(["p", "q"]), inner, max_size=2))), max_leaves=6)


def item_for(h: int, r: str, attrs: Dict[str, Any]) -> Dict[str, Any]:
    return {"pk": {"S": f"k{h}"}, "sk": {"N": r}, **attrs}


items = st.builds(item_for, st.integers(0, 40), numbers, st.dictionaries(st.sampled_from(["a", "b", "c"]), values,
                                                                        max_size=3))


def run(expected: List[Dict[str, Any]], actual: List[Dict[str, Any]], budget: int, partitions: int = 16,
        keys_only: bool = False, sample: Any = None) -> Dict[str, List[bytes]]:
    with tempfile.TemporaryDirectory() as d:
        c = Comparer(KEYS, os.path.join(d, "spill"), partitions=partitions, budget=budget, keys_only=keys_only,
                     sample=sample)
        # Several add() calls per side, as reader threads would make.
        for i in range(0, len(expected), 7):
            c.add(EXPECTED, expected[i:i + 7])
        for i in range(0, len(actual), 5):
            c.add(ACTUAL, actual[i:i + 5])
        seen: Dict[str, List[bytes]] = {"missing": [], "unexpected": [], "mismatched": []}

        def emit(diff: Dict[str, Any]) -> None:
            seen[diff["category"]].append(orjson.dumps(KEYS.key(diff["key"])))

        counts = c.compare(emit)
        assert counts.balanced()
        leftovers = [f for _, _, fs in os.walk(d) for f in fs]
        assert leftovers == []  # spill files are removed as partitions are done
        out = {k: sorted(v) for k, v in seen.items()}
        out["equal_count"] = counts.equal  # type: ignore[assignment]
        out["splits"] = counts.splits  # type: ignore[assignment]
        return out


def unique_by_key(xs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    seen: Dict[bytes, Dict[str, Any]] = {}
    for x in xs:
        seen[orjson.dumps(KEYS.key(x))] = x
    return list(seen.values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(items, max_size=60), st.lists(items, max_size=60), st.data())
def test_partitioned_equals_in_memory(exp: List[Dict[str, Any]], act: List[Dict[str, Any]], data: Any) -> None:
    exp, act = unique_by_key(exp), unique_by_key(act)
    # Make a good share of keys present on both sides, some of them with identical content.
    shared = data.draw(st.lists(st.sampled_from(exp), max_size=len(exp), unique_by=lambda x: orjson.dumps(KEYS.key(x))))\
        if exp else []
    act = unique_by_key(act + shared)
    ref = compare_in_memory(KEYS, exp, act)
    tiny = run(exp, act, budget=600, partitions=2)  # a few records per partition: splits, deep
    roomy = run(exp, act, budget=64 * 1024 * 1024)
    for got in (tiny, roomy):
        assert got["missing"] == ref["missing"]
        assert got["unexpected"] == ref["unexpected"]
        assert got["mismatched"] == ref["mismatched"]
        assert got["equal_count"] == len(ref["equal"])
    if len(exp) + len(act) > 10:
        assert tiny["splits"] > 0


def test_tiny_budget_splits_and_agrees_on_many_items() -> None:
    exp = [item_for(i, str(i % 3), {"v": {"N": str(i)}, "s": {"SS": ["b", "a"]}}) for i in range(3000)]
    act = [dict(it) for it in exp]
    for i in range(0, 3000, 97):
        act[i] = {**act[i], "v": {"S": str(i)}}  # N "i" vs S "i": a difference
    for i in range(5, 3000, 89):
        act[i] = {**act[i], "v": {"N": f"{i}.000"}, "s": {"SS": ["a", "b"]}}  # same values: not one
    act = act[:-7] + [item_for(100000 + i, "1", {}) for i in range(4)]
    ref = compare_in_memory(KEYS, exp, act)
    got = run(exp, act, budget=20_000, partitions=4)
    assert got["splits"] > 4
    assert got["missing"] == ref["missing"] and len(ref["missing"]) == 7
    assert got["unexpected"] == ref["unexpected"] and len(ref["unexpected"]) == 4
    assert got["mismatched"] == ref["mismatched"] and len(ref["mismatched"]) == len(range(0, 2993, 97))
    assert got["equal_count"] == len(ref["equal"])


def test_number_spelling_and_set_order_are_not_differences() -> None:
    exp = [item_for(1, "1", {"n": {"N": "1"}, "ns": {"NS": ["1", "2.5"]}, "ss": {"SS": ["a", "b"]},
                             "m": {"M": {"x": {"N": "100"}, "l": {"L": [{"N": "0.5"}]}}}})]
    act = [item_for(1, "1.0", {"n": {"N": "1E0"}, "ns": {"NS": ["2.50", "1.0"]}, "ss": {"SS": ["b", "a"]},
                               "m": {"M": {"l": {"L": [{"N": "5E-1"}]}, "x": {"N": "1E+2"}}}})]
    got = run(exp, act, budget=1 << 20)
    assert got["equal_count"] == 1 and not got["mismatched"] and not got["missing"] and not got["unexpected"]


def test_type_change_is_a_difference_with_its_path() -> None:
    e = item_for(1, "1", {"a": {"N": "1"}, "m": {"M": {"x": {"S": "1"}, "l": {"L": [{"N": "1"}, {"S": "k"}]}}}})
    a = item_for(1, "1", {"a": {"S": "1"}, "m": {"M": {"x": {"S": "1"}, "l": {"L": [{"N": "2"}]}}}, "extra": {"NULL": True}})
    assert diff_paths(e, a) == [
        ("a", {"N": "1"}, {"S": "1"}),
        ("extra", None, {"NULL": True}),
        ("m.l[0]", {"N": "1"}, {"N": "2"}),
        ("m.l[1]", {"S": "k"}, None),
    ]
    got = run([e], [a], budget=1 << 20)
    assert len(got["mismatched"]) == 1


def test_keys_only_ignores_content() -> None:
    exp = [item_for(i, "1", {"v": {"N": str(i)}}) for i in range(50)]
    act = [item_for(i, "1", {"v": {"S": "changed"}}) for i in range(1, 51)]
    got = run(exp, act, budget=1 << 20, keys_only=True)
    assert got["mismatched"] == [] and got["equal_count"] == 49
    assert len(got["missing"]) == 1 and len(got["unexpected"]) == 1


def test_sampling_is_deterministic_and_same_on_both_sides() -> None:
    exp = [item_for(i, "1", {"v": {"N": str(i)}}) for i in range(400)]
    act = [item_for(i, "1", {"v": {"N": str(i + 1)}}) for i in range(400)]  # every key mismatched
    got = run(exp, act, budget=1 << 20, sample=0.25)
    want = sorted(orjson.dumps(KEYS.key(x)) for x in exp if sampled(orjson.dumps(KEYS.key(x)), 0.25))
    assert got["mismatched"] == want and not got["missing"] and not got["unexpected"]
    assert 50 < len(want) < 150


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5])
def test_sample_confidence_statement(rate: float) -> None:
    c = sample_confidence(rate, 0)
    bound = c["max_differences_95"]
    # With `bound` differences, missing them all has probability <= 5%; with one fewer, > 5%.
    assert (1 - rate) ** bound <= 0.05 < (1 - rate) ** (bound - 1)
    assert c["catch_probability"]["1"] == pytest.approx(rate)
    assert sample_confidence(rate, 3)["estimated_total"] == pytest.approx(3 / rate, rel=1e-3)


def test_decimal_spellings_equal_by_value() -> None:
    # The canonical form is by value, so these all compare equal, and S "1" does not.
    for a, b in [("1", "1.0"), ("1", "1E0"), ("-0.5", "-5E-1"), ("12345678901234567890123456789012345678",
                                                                 "1.2345678901234567890123456789012345678E37")]:
        assert Decimal(a) == Decimal(b)
        assert diff_paths({"n": {"N": a}}, {"n": {"N": b}}) == []
    assert diff_paths({"n": {"N": "1"}}, {"n": {"S": "1"}}) == [("n", {"N": "1"}, {"S": "1"})]


def test_cli_parsers() -> None:
    import click

    from ddbmigrate.cli.commands_verify import SampleRate, parse_key_schema
    from ddbmigrate.errors import UsageError

    assert parse_key_schema("pk:S") == KeySchema("pk", "S")
    assert parse_key_schema("a:b:N, sk:b") == KeySchema("a:b", "N", "sk", "B")
    for bad in ("pk", "pk:X", "a:S,b:S,c:S", ":S"):
        with pytest.raises(UsageError):
            parse_key_schema(bad)
    rate = SampleRate()
    assert rate.convert("1%", None, None) == pytest.approx(0.01) and rate.convert("0.25", None, None) == 0.25
    for bad in ("0", "150%", "x", "-1"):
        with pytest.raises(click.BadParameter):
            rate.convert(bad, None, None)
