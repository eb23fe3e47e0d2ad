"""A failed migration edited before the next ``up``, on DynamoDB Local: a step's checkpoint is
resumed only by the same job. A step now copying into another table (retargeted, or a step
inserted before it so that its place is another job's) starts from the beginning, and every
table ends up holding exactly the source's items; a finished step whose transform was edited
runs again; the history counts what the run that applied the migration wrote; and no message
names an option ``migrations up`` does not have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from support import as_set, boto_client, create_table, one_error_line, scan_all, unique

from ddbmigrate import RunOptions
from ddbmigrate.core.items import to_python
from ddbmigrate.migrations import AwsSettings, history_records, up

pytestmark = pytest.mark.integration

YES = lambda message: True
N = 2005
# About 3 MB: several scan pages, so the failed run has checkpointed progress before the failing item.
PAD = "x" * 1500


def source_items() -> List[Dict[str, Any]]:
    return [{"pk": {"S": f"p{i // 5}"}, "sk": {"N": str(i % 5)}, "n": {"N": str(i)}, "pad": {"S": PAD}}
            for i in range(N)]


def fill(endpoint: str, table: str, items: List[Dict[str, Any]]) -> None:
    c = boto_client(endpoint)
    for i in range(0, len(items), 25):
        todo: Dict[str, Any] = {table: [{"PutRequest": {"Item": it}} for it in items[i:i + 25]]}
        while todo:
            todo = c.batch_write_item(RequestItems=todo).get("UnprocessedItems") or {}


def keyed_table(endpoint: str) -> str:
    return create_table(endpoint, hash_key=("pk", "S"), range_key=("sk", "N"))


@pytest.fixture
def w(endpoint: str, tmp_path: Path) -> Dict[str, Any]:
    src = keyed_table(endpoint)
    fill(endpoint, src, source_items())
    d = tmp_path / "mig"
    d.mkdir()
    return {"dir": d, "src": src, "hist": unique("hist"), "state": tmp_path / "state",
            "s": AwsSettings(region="us-east-1", endpoint_url=endpoint), "endpoint": endpoint}


def run_up(w: Dict[str, Any]) -> Any:
    return up(str(w["dir"]), w["s"], history_table=w["hist"], state_dir=str(w["state"]), confirm=YES,
              options=RunOptions(progress="off"))


def record(w: Dict[str, Any], mid: str) -> Dict[str, Any]:
    return {r["id"]: r for r in history_records(w["s"], history_table=w["hist"])}[mid]


def checkpoint(w: Dict[str, Any], mid: str, step: str) -> Dict[str, Any]:
    return json.loads((w["state"] / mid / f"{step}.checkpoint.json").read_text())


FAST = "checkpoint_every=0.05"


def migration(steps: str, *, boom: bool = True) -> str:
    return f'''"""retarget again"""


import time


def tr(item):
    if {boom!r} and item["pk"] == "p33":
        time.sleep(0.5)  # the checkpoint saves what was written before (FAST: every 50 ms)
        raise RuntimeError("boom")
    return item


def upgrade(ctx):
{steps}
'''


def assert_copy_of_source(w: Dict[str, Any], table: str) -> None:
    assert as_set(scan_all(w["endpoint"], table)) == as_set(source_items()), table


def assert_failed_midway(w: Dict[str, Any], mid: str, step: str, table: str) -> None:
    """The failed run left a checkpoint with progress in it: resuming it elsewhere would skip items."""
    cp = checkpoint(w, mid, step)
    assert cp["state"] == "running" and cp["counters"].get("written", 0) > 0, cp
    assert 0 < len(scan_all(w["endpoint"], table)) < N


def test_a_failed_step_retargeted_to_another_table_starts_from_the_beginning(w: Dict[str, Any]) -> None:
    a, b = keyed_table(w["endpoint"]), keyed_table(w["endpoint"])
    f = w["dir"] / "0009_retarget.py"
    f.write_text(migration(f'    ctx.copy("{w["src"]}", "{a}", transform=tr, {FAST})'))
    with pytest.raises(Exception, match="boom"):
        run_up(w)
    assert_failed_midway(w, "0009_retarget", "01-copy", a)

    f.write_text(migration(f'    ctx.copy("{w["src"]}", "{b}")'))
    assert run_up(w).done == ["0009_retarget"]
    assert_copy_of_source(w, b)
    rec = record(w, "0009_retarget")
    step = rec["summary"][0]
    # The counts are this run's, which wrote every item into b.
    assert step["counters"]["read"] == N and step["counters"]["written"] == N, step
    assert "started_over" in step and a in step["started_over"], step
    assert checkpoint(w, "0009_retarget", "01-copy")["job"]["target"]["table"] == b
    # The other job's checkpoint is kept aside, not resumed and not lost.
    aside = [p.name for p in (w["state"] / "0009_retarget").iterdir() if "superseded" in p.name]
    assert len(aside) == 1, aside


def test_a_step_inserted_before_a_failed_one_copies_everything_and_says_no_missing_flag(
        w: Dict[str, Any], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    a, b, c = (keyed_table(w["endpoint"]) for _ in range(3))
    f = w["dir"] / "0010_insert.py"
    f.write_text(migration(f'    ctx.copy("{w["src"]}", "{a}")\n'
                           f'    ctx.copy("{w["src"]}", "{b}", transform=tr, {FAST})'))
    cmd = ["migrations", "up", "--dir", str(w["dir"]), "--history-table", w["hist"], "--state-dir", str(w["state"]),
           "--endpoint-url", w["endpoint"], "--region", "us-east-1", "--progress", "off", "--yes"]
    r = CliRunner().invoke(main, cmd)
    assert r.exit_code != 0 and "boom" in r.stderr, r.stderr
    assert checkpoint(w, "0010_insert", "01-copy")["state"] == "done"
    assert_failed_midway(w, "0010_insert", "02-copy", b)

    # A new first step (into c): the old step 1's finished checkpoint and step 2's unfinished one
    # are now at the places of other jobs.
    f.write_text(migration(f'    ctx.copy("{w["src"]}", "{c}")\n    ctx.copy("{w["src"]}", "{a}")\n'
                           f'    ctx.copy("{w["src"]}", "{b}", transform=tr, {FAST})', boom=False))
    r = CliRunner().invoke(main, cmd)
    assert r.exit_code == 0, r.stderr
    assert "--restart" not in r.stderr and "--force" not in r.stderr, r.stderr
    for t in (a, b, c):
        assert_copy_of_source(w, t)
    rec = record(w, "0010_insert")
    assert rec["state"] == "applied"
    assert [s["counters"]["written"] for s in rec["summary"]] == [N, N, N], rec["summary"]


def test_a_finished_step_whose_transform_was_edited_is_kept_not_run_again(w: Dict[str, Any]) -> None:
    """A transform defined in the migration file is identified by the file's hash, so fixing a later
    step edits every earlier one: run again, an update that raises a price would raise it twice.
    The finished step is kept as it was, and its history entry says so."""
    a, b = keyed_table(w["endpoint"]), keyed_table(w["endpoint"])
    f = w["dir"] / "0011_edit.py"
    body = '''
def mark{v}(item):
    item["v"] = {v}
    return item
'''
    f.write_text(migration(f'    ctx.copy("{w["src"]}", "{a}", transform=mark1)\n'
                           f'    ctx.copy("{w["src"]}", "{b}", transform=tr, {FAST})') + body.format(v=1))
    with pytest.raises(Exception, match="boom"):
        run_up(w)
    assert {to_python(it)["v"] for it in scan_all(w["endpoint"], a)} == {1}

    f.write_text(migration(f'    ctx.copy("{w["src"]}", "{a}", transform=mark2)\n'
                           f'    ctx.copy("{w["src"]}", "{b}", transform=tr, {FAST})', boom=False) + body.format(v=2))
    assert run_up(w).done == ["0011_edit"]
    got = [to_python(it) for it in scan_all(w["endpoint"], a)]
    assert len(got) == N and {it["v"] for it in got} == {1}
    assert_copy_of_source(w, b)
    first = record(w, "0011_edit")["summary"][0]
    assert first["counters"]["written"] == N and "not run again" in first["kept"], first


def test_a_failed_step_rerun_with_other_segments_starts_from_the_beginning(w: Dict[str, Any]) -> None:
    a = keyed_table(w["endpoint"])
    f = w["dir"] / "0012_segments.py"
    f.write_text(migration(f'    ctx.copy("{w["src"]}", "{a}", transform=tr, segments=1, {FAST})'))
    with pytest.raises(Exception, match="boom"):
        run_up(w)
    assert_failed_midway(w, "0012_segments", "01-copy", a)
    f.write_text(migration(f'    ctx.copy("{w["src"]}", "{a}", transform=tr, segments=3)', boom=False))
    assert run_up(w).done == ["0012_segments"]
    assert_copy_of_source(w, a)
    assert record(w, "0012_segments")["summary"][0]["counters"]["written"] == N


def test_a_damaged_step_checkpoint_is_one_line_with_what_to_do(w: Dict[str, Any]) -> None:
    from click.testing import CliRunner

    from ddbmigrate.cli import main

    a = keyed_table(w["endpoint"])
    f = w["dir"] / "0013_damaged.py"
    f.write_text(migration(f'    ctx.copy("{w["src"]}", "{a}", transform=tr, {FAST})'))
    with pytest.raises(Exception, match="boom"):
        run_up(w)
    path = w["state"] / "0013_damaged" / "01-copy.checkpoint.json"
    data = json.loads(path.read_text())
    data["counters"]["written"] += 1  # a hand edit: the checksum no longer matches
    path.write_text(json.dumps(data))
    f.write_text(migration(f'    ctx.copy("{w["src"]}", "{a}", transform=tr, {FAST})', boom=False))
    cmd = ["migrations", "up", "--dir", str(w["dir"]), "--history-table", w["hist"], "--state-dir", str(w["state"]),
           "--endpoint-url", w["endpoint"], "--region", "us-east-1", "--progress", "off", "--yes"]
    r = CliRunner().invoke(main, cmd)
    line = one_error_line(r, 2, "0013_damaged", str(path), "checksum", "migrations up")
    assert "--restart" not in line and "--force" not in line, line
    # Doing what it says: the step runs from the beginning.
    path.rename(path.with_name("01-copy.checkpoint.json.old"))
    r = CliRunner().invoke(main, cmd)
    assert r.exit_code == 0, r.stderr
    assert_copy_of_source(w, a)


IMPORT = '''"""Load the seed file, then check it against the reference."""


def upgrade(ctx):
    ctx.import_files({path!r}, "{table}", input_format="json")
    ctx.verify("{table}", "{other}")
'''


def test_an_import_step_is_kept_when_the_same_and_started_over_when_retargeted(endpoint: str, tmp_path: Path) -> None:
    a, b, other = create_table(endpoint), create_table(endpoint), create_table(endpoint)
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"pk": f"s{i}", "n": i}) + "\n" for i in range(7)))
    fill(endpoint, other, [{"pk": {"S": f"s{i}"}, "n": {"N": str(i)}} for i in range(6)])  # one missing
    d = tmp_path / "mig"
    d.mkdir()
    f = d / "0014_seed.py"
    f.write_text(IMPORT.format(path=str(seed), table=a, other=other))
    w = {"dir": d, "hist": unique("hist"), "state": tmp_path / "state", "endpoint": endpoint,
         "s": AwsSettings(region="us-east-1", endpoint_url=endpoint)}
    with pytest.raises(Exception, match="the tables differ"):
        run_up(w)
    first = checkpoint(w, "0014_seed", "01-import")
    assert first["state"] == "done"

    # Retargeted (the step's import now goes into b, checked against a): b gets every record.
    f.write_text(IMPORT.format(path=str(seed), table=b, other=a))
    assert run_up(w).done == ["0014_seed"]
    assert len(scan_all(endpoint, b)) == 7
    step = record(w, "0014_seed")["summary"][0]
    assert a in step["started_over"] and step["counters"]["written"] == 7, step
    assert checkpoint(w, "0014_seed", "01-import")["job"]["target"]["table"] == b


def test_an_unchanged_finished_import_step_is_a_no_op_on_the_next_up(endpoint: str, tmp_path: Path) -> None:
    a, other = create_table(endpoint), create_table(endpoint)
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"pk": f"s{i}", "n": i}) + "\n" for i in range(7)))
    fill(endpoint, other, [{"pk": {"S": f"s{i}"}, "n": {"N": str(i)}} for i in range(6)])  # one missing
    d = tmp_path / "mig"
    d.mkdir()
    (d / "0015_seed.py").write_text(IMPORT.format(path=str(seed), table=a, other=other))
    w = {"dir": d, "hist": unique("hist"), "state": tmp_path / "state", "endpoint": endpoint,
         "s": AwsSettings(region="us-east-1", endpoint_url=endpoint)}
    with pytest.raises(Exception, match="the tables differ"):
        run_up(w)
    before = checkpoint(w, "0015_seed", "01-import")
    fill(endpoint, other, [{"pk": {"S": "s6"}, "n": {"N": "6"}}])  # the fix is elsewhere
    assert run_up(w).done == ["0015_seed"]
    assert "started_over" not in record(w, "0015_seed")["summary"][0]
    # The finished import's checkpoint was resumed (nothing to do), not set aside for a second run.
    after = checkpoint(w, "0015_seed", "01-import")
    assert {k: v for k, v in after.items() if k != "saved_at"} == {k: v for k, v in before.items() if k != "saved_at"}
    assert not [p for p in (w["state"] / "0015_seed").iterdir() if "superseded" in p.name]
