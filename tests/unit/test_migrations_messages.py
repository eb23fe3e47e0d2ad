"""The errors ``migrations up`` ends with tell the command that exists: a job's own advice
("rerun the same command with --resume") is wrong there, a plain ``up`` resumes the migration."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddbmigrate import RunOptions
from ddbmigrate.engine.run import interrupted_error, max_errors_error
from ddbmigrate.errors import EXIT_DEAD_LETTERS, EXIT_INTERRUPTED, EXIT_RETRIABLE, DdbMigrateError, RetriableError
from ddbmigrate.migrations.context import AwsSettings, MigrationContext, StepFailed
from ddbmigrate.migrations.files import load
from ddbmigrate.migrations.runner import _failed
from ddbmigrate.reporting.report import Report


def test_job_errors_inside_a_migration_point_to_migrations_up(tmp_path: Path) -> None:
    f = tmp_path / "0001_m.py"
    f.write_text('"""M."""\n\ndef upgrade(ctx):\n    pass\n')
    m = load(str(f))

    stopped = _failed(m, interrupted_error("state/0001_m/01-copy.checkpoint.json"))
    assert isinstance(stopped, DdbMigrateError) and stopped.exit_code == EXIT_INTERRUPTED
    assert str(stopped) == "migration 0001_m interrupted; run `ddbmigrate migrations up` again to resume it"
    assert stopped.hint is None

    slow = RetriableError("throttled", hint="checkpoint kept at x.json; rerun the same command with --resume")
    out = _failed(m, slow)
    assert isinstance(out, DdbMigrateError) and out.exit_code == EXIT_RETRIABLE
    assert out.hint == "checkpoint kept at x.json; run `ddbmigrate migrations up` again"

    many = _failed(m, max_errors_error(5))
    assert "--resume" not in str(many) and "run `ddbmigrate migrations up` again" in str(many)
    assert str(many).startswith("migration 0001_m failed: more than --max-errors 5")


def test_a_downgrade_stopped_midway_points_to_migrations_down(tmp_path: Path) -> None:
    # `down` passes its own advice: `up` would find the migration applied and do nothing, while
    # the downgrade goes on with `down` (it used to say "run `migrations up` again").
    f = tmp_path / "0001_m.py"
    f.write_text('"""M."""\n\ndef upgrade(ctx):\n    pass\n')
    m = load(str(f))
    again = "run `ddbmigrate migrations down --to 0` again"
    stopped = _failed(m, KeyboardInterrupt(), again)
    assert str(stopped) == f"migration 0001_m interrupted; {again} to resume it"
    slow = _failed(m, RetriableError("throttled", hint="rerun the same command with --resume"), again)
    assert slow.hint == again  # type: ignore[attr-defined]
    ctx = MigrationContext("0001_m.down", AwsSettings(), state_dir=str(tmp_path), again=again)
    with pytest.raises(StepFailed) as ei:
        ctx._run("update", "t", RunOptions(), lambda: Report(job="update", status="done",
                                                              counters={"dead_lettered": 2}))
    assert str(ei.value).endswith(f"fix the cause and {again}") and "migrations up" not in str(ei.value)
    assert ei.value.exit_code == EXIT_DEAD_LETTERS  # done with dead letters, as every job: not 1


def test_a_failed_steps_history_entry_does_not_advise_resume(tmp_path: Path) -> None:
    # The migration's error said `migrations up`, its step's entry still "rerun ... with --resume".
    ctx = MigrationContext("0001_m", AwsSettings(), state_dir=str(tmp_path))

    def stopped() -> Report:
        raise interrupted_error("state/0001_m/01-update.checkpoint.json")

    with pytest.raises(DdbMigrateError):
        ctx._run("update", "t", RunOptions(), stopped)
    error = ctx.summary[-1]["error"]
    assert "--resume" not in error and "run `ddbmigrate migrations up` again" in error, error
