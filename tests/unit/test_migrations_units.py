"""Pure parts of migrations and in-place updates: item upgrades (hypothesis), the UpdateItem a
changed item becomes, the migrations folder. No I/O beyond tmp files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_items_properties import wire_items

from ddbmigrate.core.items import KeySchema, canonical_item, from_python, to_python
from ddbmigrate.core.transform import as_transform
from ddbmigrate.errors import UsageError
from ddbmigrate.migrations import UpgradeRegistry, upgrade_item
from ddbmigrate.migrations.files import discover, load, load_all, new, slug
from ddbmigrate.sinks.conditional_update import (
    MAX_EXPRESSION_OPERATORS,
    UpdateRequestBuilder,
    diff,
)

PROPS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REG = UpgradeRegistry("_v")


@REG.step(1)
def split_name(item: Dict[str, Any]) -> None:
    """v1 -> v2: "name" becomes "first" and "last" (in place)."""
    first, _, last = str(item.pop("name", "")).partition(" ")
    item["first"], item["last"] = first, last


@REG.step(2)
def gsi_key(item: Dict[str, Any]) -> Dict[str, Any]:
    """v2 -> v3: a GSI key from the last name (a new dict)."""
    return {**item, "gsi1pk": "LAST#" + item["last"].lower()}


names = st.text(min_size=0, max_size=12)


@st.composite
def v1_items(draw: Any) -> Dict[str, Any]:
    """A v1 item in wire form: any other attributes, a key, a name, maybe an explicit "_v": 1."""
    extra = {k: v for k, v in draw(wire_items).items() if k not in ("pk", "name", "_v", "first", "last", "gsi1pk")}
    item = dict(extra, pk={"S": "k" + draw(st.text(max_size=5))},
                name={"S": draw(names) + " " + draw(names)})
    if draw(st.booleans()):
        item["_v"] = {"N": "1"}
    return item


@PROPS
@given(v1_items(), st.booleans())
def test_lazy_upgrade_equals_backfill(wire: Dict[str, Any], stored_at_v2: bool) -> None:
    """What the application sees after upgrade_item on read == what the backfill (the registry
    as an update transform, through the wire codec) writes, from v1 and from a stored v2 item."""
    backfill = as_transform(REG)
    if stored_at_v2:
        # An item an earlier deployment upgraded to v2 and wrote back (through the codec).
        two = UpgradeRegistry("_v", {1: split_name})
        wire = from_python(upgrade_item(to_python(wire), two))
        assert to_python(wire)["_v"] == 2
    written = backfill(wire)
    assert len(written) == 1
    lazy = upgrade_item(to_python(wire), REG)
    assert canonical_item(from_python(lazy)) == canonical_item(written[0])
    assert lazy["_v"] == 3 and lazy["gsi1pk"] == "LAST#" + lazy["last"].lower()


@PROPS
@given(v1_items())
def test_upgrade_is_idempotent_and_never_mutates(wire: Dict[str, Any]) -> None:
    item = to_python(wire)
    before = copy.deepcopy(item)
    once = upgrade_item(item, REG)
    assert item == before
    assert upgrade_item(once, REG) == once


def test_registry_refuses_gaps_duplicates_and_bad_versions() -> None:
    reg = UpgradeRegistry("_v", {1: split_name, 3: gsi_key})
    with pytest.raises(UsageError, match="gap"):
        reg.check()
    with pytest.raises(UsageError, match="two upgrade steps"):
        UpgradeRegistry("_v", {1: split_name}).add(1, gsi_key)
    with pytest.raises(ValueError, match="whole number"):
        upgrade_item({"_v": "two"}, REG)
    newer = {"pk": "a", "_v": 7}
    assert upgrade_item(newer, REG) == newer  # written by newer code: left as it is
    assert upgrade_item({"pk": "a", "name": "A B"}, {1: split_name}) == {"pk": "a", "first": "A", "last": "B", "_v": 2}
    assert upgrade_item({"pk": "a", "name": "A B"}, [split_name, gsi_key]) == upgrade_item({"pk": "a", "name": "A B"}, REG)


def test_a_registry_with_a_gap_is_one_line_naming_the_reference(tmp_path: Path) -> None:
    from ddbmigrate.migrations.upgrade import load_registry

    f = tmp_path / "schema.py"
    f.write_text("from ddbmigrate.migrations import UpgradeRegistry\nR = UpgradeRegistry('_v', "
                 "{1: lambda i: None, 3: lambda i: None})\n")
    with pytest.raises(UsageError) as ei:
        load_registry(f"{f}:R", "_v")
    assert ei.value.message.startswith(f"--transform {f}:R: upgrade steps have a gap: no step from version 2")


# ------------------------------------------------------------------ the UpdateItem of one item

KEYS = KeySchema("pk", "S", "sk", "N")


def test_update_sets_changed_removes_dropped_and_conditions_on_what_was_read() -> None:
    before = {"pk": {"S": "a"}, "sk": {"N": "1"}, "keep": {"SS": ["x", "y"]}, "old": {"S": "o"}, "n": {"N": "1.50"}}
    after = {"pk": {"S": "a"}, "sk": {"N": "1"}, "keep": {"SS": ["y", "x"]}, "n": {"N": "1.5"}, "new": {"BOOL": True}}
    sets, removes = diff(before, after, KEYS.names)
    assert sets == {"new": {"BOOL": True}} and removes == ["old"]  # set order and number spelling are equal
    plan = UpdateRequestBuilder("T", KEYS).plan(before, after)
    req = plan.request
    assert req is not None and req["Key"] == {"pk": {"S": "a"}, "sk": {"N": "1"}}
    names = {v: k for k, v in req["ExpressionAttributeNames"].items()}
    vals = req["ExpressionAttributeValues"]
    assert req["UpdateExpression"] == f"SET {names['new']} = :v{len(vals) - 1} REMOVE {names['old']}"
    cond = req["ConditionExpression"]
    assert cond.startswith(f"attribute_exists({names['pk']})")
    for attr in ("keep", "old", "n"):
        assert f"{names[attr]} = :" in cond  # every attribute read, compared
    assert f"attribute_not_exists({names['new']})" in cond  # a created attribute did not appear meanwhile
    assert names.get("sk") is None or f"{names['sk']} =" not in cond
    assert plan.after == {k: v for k, v in before.items() if k != "old"} | {"new": {"BOOL": True}}
    assert UpdateRequestBuilder("T", KEYS).plan(before, dict(before)).unchanged


def test_update_with_version_attribute_conditions_on_it_alone_and_moves_it_on() -> None:
    b = UpdateRequestBuilder("T", KEYS, "ver")
    before = {"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"S": "1"}, "ver": {"N": "41"}}
    # A transform that sets the version itself: refused (the update manages it), not overridden.
    assert b.plan(before, dict(before, x={"S": "2"}, ver={"N": "999"})).code == "VersionChanged"
    plan = b.plan(before, {k: v for k, v in dict(before, x={"S": "2"}).items() if k != "ver"})  # left out: moved on
    req = plan.request
    assert req is not None
    names = {v: k for k, v in req["ExpressionAttributeNames"].items()}
    assert req["ConditionExpression"] == f"attribute_exists({names['pk']}) AND {names['ver']} = :v0"
    assert req["ExpressionAttributeValues"][":v0"] == {"N": "41"}
    assert plan.after is not None and plan.after["ver"] == {"N": "42"} and plan.after["x"] == {"S": "2"}
    unversioned = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    plan2 = b.plan(unversioned, dict(unversioned, x={"S": "1"}))
    assert plan2.after is not None and plan2.after["ver"] == {"N": "1"}
    assert plan2.request is not None and "attribute_not_exists" in plan2.request["ConditionExpression"]
    assert b.plan(dict(before, ver={"S": "x"}), dict(before, x={"S": "9"})).code == "BadVersionAttribute"
    # Moved on exactly in all of DynamoDB's 38 digits.
    for ver, nxt in (("1" + "0" * 36, "1" + "0" * 35 + "1"), ("9" * 38, "1" + "0" * 38)):
        moved = b.plan(dict(before, ver={"N": ver}), {k: v for k, v in dict(before, x={"S": "2"}).items() if k != "ver"})
        assert moved.after is not None and moved.after["ver"] == {"N": nxt}, moved.after


def test_a_condition_past_dynamodbs_limits_is_refused_with_a_hint() -> None:
    wide = {"pk": {"S": "a"}, "sk": {"N": "1"}, **{f"a{i}": {"N": str(i)} for i in range(MAX_EXPRESSION_OPERATORS)}}
    plan = UpdateRequestBuilder("T", KEYS).plan(wide, dict(wide, z={"S": "new"}))
    assert plan.request is None and plan.code == "ExpressionTooLarge" and "--version-attribute" in (plan.reason or "")
    wide["ver"] = {"N": "1"}
    assert UpdateRequestBuilder("T", KEYS, "ver").plan(wide, dict(wide, z={"S": "new"})).request is not None


# ------------------------------------------------------------------ the folder

def test_new_numbers_files_and_loading_never_runs_upgrade(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    assert slug("Add user alias!") == "add_user_alias"
    p1 = new(str(d), "create users")
    p2 = new(str(d), "add user alias")
    assert Path(p1).name == "0001_create_users.py" and Path(p2).name == "0002_add_user_alias.py"
    marker = tmp_path / "ran"
    Path(p2).write_text(f'"""Add a user alias."""\n\ndef upgrade(ctx):\n    open({str(marker)!r}, "w").write("x")\n')
    migs = load_all(str(d))
    assert [m.id for m in migs] == ["0001_create_users", "0002_add_user_alias"]
    assert migs[1].description == "Add a user alias." and migs[1].downgrade is None
    assert not marker.exists()


@pytest.mark.parametrize("name,text,needle", [
    ("0001_x.py", "def upgrade(ctx):\n    pass\n", "docstring"),
    ("0001_x.py", '"""d"""\n', "upgrade(ctx)"),
    ("0001_x.py", '"""d"""\ndef upgrade():\n    pass\n', "one argument"),
    ("0001_x.py", '"""d"""\ndef upgrade(ctx:\n', "syntax error"),
    ("0001_x.py", '"""d"""\nimport nope_not_here\n', "ModuleNotFoundError"),
    ("1_x.py", '"""d"""\ndef upgrade(ctx):\n    pass\n', "NNNN_title.py"),
    # Called and never awaited or iterated, these were recorded applied with nothing done.
    ("0001_x.py", '"""d"""\nasync def upgrade(ctx):\n    pass\n', "not async"),
    ("0001_x.py", '"""d"""\ndef upgrade(ctx):\n    yield\n', "not a generator"),
    ("0001_x.py", '"""d"""\ndef upgrade(ctx):\n    pass\nasync def verify(ctx):\n    pass\n', "verify must be"),
])
def test_bad_migration_files_are_one_line_naming_the_file(tmp_path: Path, name: str, text: str, needle: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(UsageError) as ei:
        load_all(str(tmp_path))
    assert needle in ei.value.message and name in ei.value.message


def test_duplicate_numbers_refused(tmp_path: Path) -> None:
    for n in ("0002_a.py", "0002_b.py"):
        (tmp_path / n).write_text('"""d"""\ndef upgrade(ctx):\n    pass\n')
    with pytest.raises(UsageError, match="share the number 0002"):
        discover(str(tmp_path))
    with pytest.raises(UsageError, match="does not exist"):
        discover(str(tmp_path / "nope"))
    assert load(str(tmp_path / "0002_a.py")).number == 2


@PROPS
@given(wire_items, wire_items, st.booleans())
def test_the_update_turns_what_was_read_into_what_the_transform_returned(a: Dict[str, Any], b: Dict[str, Any],
                                                                          versioned: bool) -> None:
    """For any two images of one key: the planned update's result is the transform's output
    (key and version attribute aside), it names only changed attributes, and it is empty (no
    write) exactly when nothing changed."""
    key = {"pk": {"S": "k"}, "sk": {"N": "1"}}
    before = {**{k: v for k, v in a.items() if k not in ("ver",)}, **key}
    after = {**{k: v for k, v in b.items() if k not in ("ver",)}, **key}
    if versioned:
        before["ver"] = {"N": "7"}
    plan = UpdateRequestBuilder("T", KEYS, "ver" if versioned else None).plan(before, after)
    sets, removes = diff(before, after, KEYS.names + (("ver",) if versioned else ()))
    if plan.code == "ExpressionTooLarge":
        return
    if not sets and not removes:
        assert plan.unchanged
        return
    assert plan.request is not None and plan.after is not None
    expected = dict(after, ver={"N": "8"}) if versioned else after
    assert canonical_item(plan.after) == canonical_item(expected)
    names = set(plan.request["ExpressionAttributeNames"].values())
    assert set(sets) | set(removes) <= names
    untouched = {k for k in before if k in after and k not in KEYS.names and k != "ver"} - set(sets)
    update = plan.request["UpdateExpression"]
    placeholders = {v: k for k, v in plan.request["ExpressionAttributeNames"].items()}
    set_clause = update.split(" REMOVE ")[0]
    for attr in untouched:  # an attribute the transform kept as it was is never written
        assert attr not in placeholders or f"{placeholders[attr]} = :" not in set_clause


def test_a_running_migration_whose_runner_is_gone_is_shown_interrupted(tmp_path: Path) -> None:
    # kill -9 of `migrations up` left the record "running": status said "running" (exit 0) for a
    # dead process. The lock says whether its runner still is.
    import os
    import socket
    import subprocess
    import sys

    from ddbmigrate.migrations.runner import _runner_gone, _status

    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    now = 1000.0
    assert "lock is free" in (_runner_gone(None, now) or "")
    assert "lock is free" in (_runner_gone({"who": f"u@{host} pid {os.getpid()}", "expires_at": 999.0}, now) or "")
    gone = _runner_gone({"who": f"u@{host} pid {dead}", "expires_at": 1294.0}, now)
    assert gone is not None and f"pid {dead}" in gone and "in 294 s" in gone
    assert _runner_gone({"who": f"u@{host} pid {os.getpid()}", "expires_at": 1294.0}, now) is None  # alive
    assert _runner_gone({"who": f"u@elsewhere-{host} pid {dead}", "expires_at": 1294.0}, now) is None  # can't tell
    new(str(tmp_path), "copy it")
    migs = load_all(str(tmp_path))
    recs = {migs[0].id: {"state": "running", "checksum": migs[0].checksum}}
    (row,) = _status(migs, recs, gone)
    assert row.state == "interrupted" and row.error == f"{gone}; the next `migrations up` resumes it"
    (row,) = _status(migs, recs, None)
    assert row.state == "running"
    # A revert under way whose runner is gone: `down` (the same --to) finishes it.
    runs = [{"kind": "up", "state": "applied"}, {"kind": "down", "state": "reverting", "to": "0"}]
    recs = {migs[0].id: {"state": "reverting", "checksum": migs[0].checksum, "runs": runs}}
    (row,) = _status(migs, recs, gone)
    assert row.state == "revert_interrupted"
    assert row.error == f"{gone}; run `ddbmigrate migrations down --to 0` again to finish its revert"
    (row,) = _status(migs, recs, None)
    assert row.state == "reverting"
