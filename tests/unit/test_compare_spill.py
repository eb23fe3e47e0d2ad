"""The compare sink: several writers' spill files, merged per partition, compare exactly as one
Comparer fed in one process does (no server)."""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any, Dict, List, Tuple

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ddbmigrate.core.items import KeySchema
from ddbmigrate.core.records import PUT, Op
from ddbmigrate.core.specs import Resources
from ddbmigrate.sinks.compare_spill import ACTUAL, EXPECTED, CompareSpillSpec, SpillSet
from ddbmigrate.verify.compare import Comparer
from formats_support import _item

KEYS = KeySchema("pk", "S")


def ops(items: List[Dict[str, Any]]) -> List[Op]:
    return [Op(PUT, None, orjson.dumps(it), None) for it in items]


def spill(spec: CompareSpillSpec, parts: List[List[Dict[str, Any]]]) -> SpillSet:
    """Each part written by its own sink (as worker processes would), merged by the spec."""
    states = []
    for part in parts:
        sink = pickle.loads(pickle.dumps(spec)).build(Resources())
        for i in range(0, len(part), 7):
            assert sink.write(ops(part[i:i + 7])).written == len(part[i:i + 7])
        with sink.commit(True) as st:
            states.append(st)
        sink.close()
    return SpillSet.from_dict(spec.merge(states))


def compare(parts_e: List[List[Dict[str, Any]]], parts_a: List[List[Dict[str, Any]]], budget: int,
            sample: Any = None) -> Tuple[Dict[str, List[str]], Dict[str, int], SpillSet, SpillSet]:
    with tempfile.TemporaryDirectory() as d:
        folder = os.path.join(d, "spill")
        exp = spill(CompareSpillSpec(EXPECTED, folder, KEYS, 16, sample=sample), parts_e)
        act = spill(CompareSpillSpec(ACTUAL, folder, KEYS, 16, sample=sample), parts_a)
        assert len({f for fs in exp.files + act.files for f in fs}) == sum(len(fs) for fs in exp.files + act.files)
        seen: Dict[str, List[str]] = {"missing": [], "unexpected": [], "mismatched": []}
        cc = Comparer(KEYS, folder, partitions=16, budget=budget, sample=sample).compare(
            lambda diff: seen[diff["category"]].append(diff["key"]["pk"]["S"]), sides=(exp, act))
        assert cc.balanced()
        assert [f for _, _, fs in os.walk(d) for f in fs] == []  # every worker's files removed
        return {k: sorted(v) for k, v in seen.items()}, cc.as_dict(), exp, act


def test_several_writers_compare_as_one() -> None:
    expected = [{"pk": {"S": f"k{i:03d}"}, "v": {"N": str(i)}} for i in range(200)]
    actual = [dict(it) for it in expected if it["pk"]["S"] not in ("k001", "k050")]
    actual[10] = {**actual[10], "v": {"S": "changed"}}
    actual.append({"pk": {"S": "extra"}})
    # Tiny budget: partitions are split again on disk, over every writer's files.
    for budget in (10 ** 8, 3000):
        got, counts, exp, act = compare([expected[0::3], expected[1::3], expected[2::3]],
                                        [actual[:90], actual[90:]], budget)
        assert got == {"missing": ["k001", "k050"], "unexpected": ["extra"], "mismatched": [actual[10]["pk"]["S"]]}
        assert counts["equal"] == 197 and counts["expected"] == 200 and counts["actual"] == 199
        assert sum(exp.counts) == 200 and sum(act.counts) == 199
        assert (budget == 3000) == (counts["splits"] > 0)


def test_sampling_is_by_key_on_both_sides() -> None:
    items = [{"pk": {"S": f"k{i:04d}"}} for i in range(1000)]
    got, counts, exp, act = compare([items[:500], items[500:]], [items], 10 ** 8, sample=0.3)
    assert got == {"missing": [], "unexpected": [], "mismatched": []}
    assert exp.sampled_out == act.sampled_out and 0 < exp.sampled_out < 1000
    assert counts["equal"] + exp.sampled_out == 1000


def _reordered(v: Any, rnd: Any) -> Any:
    """The same value with every map's names (and every set's members) in another order."""
    if isinstance(v, dict):
        names = list(v)
        rnd.shuffle(names)
        return {n: _reordered(v[n], rnd) for n in names}
    if isinstance(v, list):
        return [_reordered(x, rnd) for x in v]
    return v


@settings(max_examples=60, deadline=None)
@given(items=st.lists(_item, min_size=1, max_size=8), seed=st.integers(0, 10 ** 6), change=st.booleans())
def test_items_spilled_as_their_json_compare_by_content_not_attribute_order(
        items: List[Dict[str, Any]], seed: int, change: bool) -> None:
    """Items are spilled as the bytes they came in and digested as such; a side that returns
    the same items with names and set members in another order still compares equal (in full,
    canonically), and a changed value is still a mismatch."""
    import random

    rnd = random.Random(seed)
    expected = [{**it, "pk": {"S": f"k{i}"}} for i, it in enumerate(items)]
    actual = [_reordered(it, rnd) for it in expected]
    for it in actual:
        for v in it.values():
            for t in ("SS", "NS", "BS"):
                if t in v:
                    rnd.shuffle(v[t])
    if change:
        actual[0] = {**actual[0], "zz-changed": {"S": "new"}}
    got, counts, _, _ = compare([expected], [actual], 10 ** 8)
    assert got["mismatched"] == (["k0"] if change else [])
    assert counts["equal"] == len(items) - (1 if change else 0)
    assert not got["missing"] and not got["unexpected"]


def test_the_key_is_read_from_the_json_with_numbers_by_value() -> None:
    """A number key spelled differently on the two sides (1 and 1.0) is one key."""
    keys = KeySchema("n", "N")
    with tempfile.TemporaryDirectory() as d:
        folder = os.path.join(d, "spill")
        exp = spill(CompareSpillSpec(EXPECTED, folder, keys, 4), [[{"n": {"N": "1"}, "v": {"S": "a"}}]])
        act = spill(CompareSpillSpec(ACTUAL, folder, keys, 4), [[{"v": {"S": "a"}, "n": {"N": "1.0"}}]])
        seen: List[Any] = []
        cc = Comparer(keys, folder, partitions=4, budget=10 ** 8).compare(seen.append, sides=(exp, act))
        assert cc.as_dict()["equal"] == 1 and seen == []


def test_a_key_repeated_on_either_side_is_compared_by_its_last_record() -> None:
    """An import writes a repeated key's last record, whichever side the file is on: compared by
    its first record on the target side, a file whose repeated key ended different read EQUAL
    while the table imported from it did not (and the other way round read DIFFERENT)."""
    base = [{"pk": {"S": f"a{i}"}} for i in range(5)]
    later = {"pk": {"S": "a1"}, "x": {"S": "dup"}}
    for budget in (10 ** 8, 3000):
        got, counts, _, _ = compare([base], [base + [later]], budget)
        assert got == {"missing": [], "unexpected": [], "mismatched": ["a1"]}
        assert counts["actual_duplicates"] == 1 and counts["equal"] == 4
        got, counts, _, _ = compare([base + [later]], [base], budget)
        assert got == {"missing": [], "unexpected": [], "mismatched": ["a1"]}
        assert counts["expected_duplicates"] == 1
        # The repeat put back as it was: equal.
        got, counts, _, _ = compare([base], [base + [later, base[1]]], budget)
        assert got == {"missing": [], "unexpected": [], "mismatched": []} and counts["equal"] == 5


def test_an_item_without_the_key_is_refused_by_the_side_not_a_key_error() -> None:
    """No DynamoDB table gives an item without its key, but a server may: verify stopped with
    "internal error: KeyError: 'pk'". The sink refuses it, with why; the rest is spilled."""
    with tempfile.TemporaryDirectory() as d:
        spec = CompareSpillSpec(ACTUAL, os.path.join(d, "spill"), KEYS, 16)
        sink = spec.build(Resources())
        items = [{"pk": {"S": "a"}}, {"n": {"N": "1"}}, {"pk": {"N": "5"}}, {"pk": {"S": "b"}}]
        res = sink.write(ops(items))
        assert res.written == 2
        assert [(o.item, code) for o, _, code in res.rejected] == [(items[1], "InvalidKey"), (items[2], "InvalidKey")]
        assert all(reason for _, reason, _ in res.rejected)
        sink.close()
