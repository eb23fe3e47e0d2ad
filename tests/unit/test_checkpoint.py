"""Checkpoints: atomic saves survive kill -9 mid-write; identity rules for --resume/--restart/--force."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ddbmigrate.state.checkpoint import (
    TORN_PREFIX,
    VERSION,
    CheckpointState,
    CheckpointStore,
    default_path,
    fingerprint,
    open_checkpoint,
)
from ddbmigrate.errors import FingerprintMismatchError, UsageError

IDENTITY = {"job": "copy", "names": ["a", "b"], "source": {"table": "a"}, "target": {"table": "b"},
            "segments": 4, "transform": None, "transform_hash": None, "mode": "overwrite", "dry_run": False}


def state(identity: dict = IDENTITY, **kw: object) -> CheckpointState:
    base = dict(fingerprint=fingerprint(identity), job=identity, positions={"0": {"pk": {"S": "k9"}}},
                done=["1"], counters={"read": 10, "written": 10})
    base.update(kw)
    return CheckpointState(**base)  # type: ignore[arg-type]


def test_save_load_round_trip(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "ck" / "c.json"))
    store.save(state())
    got = store.load()
    assert got is not None
    assert got.positions == {"0": {"pk": {"S": "k9"}}} and got.done == ["1"]
    assert got.counters == {"read": 10, "written": 10} and got.state == "running"
    data = orjson.loads((tmp_path / "ck" / "c.json").read_bytes())
    assert data["version"] == VERSION and data["fingerprint"] == fingerprint(IDENTITY)
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["c.json"]  # no temp file left behind


def test_kill_mid_write_leaves_the_old_checkpoint_and_an_ignored_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    CheckpointStore(str(path)).save(state())
    before = path.read_bytes()
    code = (
        "import sys; from ddbmigrate.state.checkpoint import CheckpointStore, CheckpointState\n"
        f"CheckpointStore({str(path)!r}).save(CheckpointState(fingerprint='new', job={{}}, "
        "positions={'0': {'pk': {'S': 'x' * 5000}}}))\n"
    )
    env = dict(os.environ, DDBMIGRATE_CRASH_AT="mid_checkpoint_write")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert proc.returncode == -9  # SIGKILLed half-way through writing the temp file
    assert path.read_bytes() == before  # the checkpoint itself is untouched
    torn = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert len(torn) == 1 and 0 < torn[0].stat().st_size < 5000  # a torn half...
    got = CheckpointStore(str(path)).load()  # ...which loading ignores
    assert got is not None and got.fingerprint == fingerprint(IDENTITY)
    # The next process to write there deletes it: a dead writer's, nothing leaks run after run.
    # Another's temporary file is kept (it may be writing), as is any file not of this pattern.
    alive = tmp_path / f"{TORN_PREFIX}{torn[0].name[len(TORN_PREFIX):].split('-')[0]}-1-keepme"  # pid 1: init
    alive.write_bytes(b"x")
    (tmp_path / ".tmp-users-own").write_bytes(b"y")
    proc = subprocess.run([sys.executable, "-c", code.replace("'new'", "'newer'")], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c.json", alive.name, ".tmp-users-own"])
    assert CheckpointStore(str(path)).load(verify=False).fingerprint == "newer"


def test_unfinished_run_needs_resume_or_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "c.json")
    CheckpointStore(path).save(state())
    with pytest.raises(UsageError, match="--resume to continue it or --restart"):
        open_checkpoint(path, IDENTITY, resume=False, restart=False, force=False)
    _, st = open_checkpoint(path, IDENTITY, resume=True, restart=False, force=False)
    assert st is not None and st.counters["read"] == 10
    _, st = open_checkpoint(path, IDENTITY, resume=False, restart=True, force=False)
    assert st is None  # --restart: start over


def test_finished_run_starts_over_unless_resumed(tmp_path: Path) -> None:
    path = str(tmp_path / "c.json")
    CheckpointStore(path).save(state(state="done"))
    assert open_checkpoint(path, IDENTITY, resume=False, restart=False, force=False)[1] is None
    st = open_checkpoint(path, IDENTITY, resume=True, restart=False, force=False)[1]
    assert st is not None and st.state == "done"


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    assert open_checkpoint(str(tmp_path / "none.json"), IDENTITY, resume=True, restart=False, force=False)[1] is None


def test_fingerprint_mismatch_is_refused_unless_forced(tmp_path: Path) -> None:
    path = str(tmp_path / "c.json")
    CheckpointStore(path).save(state())
    other = dict(IDENTITY, transform="t.py:f", transform_hash="abc")
    with pytest.raises(FingerprintMismatchError) as ei:
        open_checkpoint(path, other, resume=True, restart=False, force=False)
    assert "transform" in ei.value.message and "--force" in ei.value.message
    assert ei.value.exit_code == 2
    st = open_checkpoint(path, other, resume=True, restart=False, force=True)[1]
    assert st is not None and st.positions == {"0": {"pk": {"S": "k9"}}}


def test_another_segment_count_is_refused_even_forced(tmp_path: Path) -> None:
    # Segment "1" finished of 64 is not segment 1 of 4: read as such, a quarter of the table
    # would be skipped as done, and the report would say done.
    path = str(tmp_path / "c.json")
    CheckpointStore(path).save(state(dict(IDENTITY, segments=64)))
    for force in (False, True):
        with pytest.raises(FingerprintMismatchError) as ei:
            open_checkpoint(path, IDENTITY, resume=True, restart=False, force=force)
        assert "64 scan segments" in ei.value.message and "--segments 64" in ei.value.message
        assert "--force" not in ei.value.message and ei.value.exit_code == 2
    assert open_checkpoint(path, IDENTITY, resume=True, restart=True, force=False)[1] is None


def test_default_path_ignores_options_so_a_changed_option_meets_its_checkpoint() -> None:
    changed = dict(IDENTITY, transform="t.py:f", transform_hash="abc", segments=8, mode="skip-existing")
    assert default_path("copy", changed) == default_path("copy", IDENTITY)
    assert default_path("copy", dict(IDENTITY, target={"table": "c"})) != default_path("copy", IDENTITY)
    p = default_path("copy", IDENTITY)
    assert p.startswith(".ddbmigrate" + os.sep + "copy-a-b-") and p.endswith(".checkpoint.json")
    assert "/" not in os.path.basename(default_path("export", {"job": "export", "names": ["a", "s3://b/c"]}))


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"version": 1}', b'{"version": 99}'])
def test_unreadable_checkpoint_is_one_clear_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="--restart"):
        CheckpointStore(str(path)).load()


def test_a_finished_run_of_another_job_is_not_resumed_even_forced(tmp_path: Path) -> None:
    # Resuming it would report the other run's counts as this job's and write nothing.
    path = str(tmp_path / "c.json")
    CheckpointStore(path).save(state(state="done"))
    other = dict(IDENTITY, target="another-table")
    with pytest.raises(FingerprintMismatchError, match="finished run of a different job.*--restart"):
        open_checkpoint(path, other, resume=True, restart=False, force=True)
    assert open_checkpoint(path, other, resume=True, restart=True, force=True)[1] is None
