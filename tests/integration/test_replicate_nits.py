"""Small operator-facing promises of ``replicate`` (against the real DynamoDB Local):

* what can refuse the job (a missing target, a bad --target-spec, --no-backfill onto nothing, an
  unconfirmed --clean-target) refuses it before the stream is enabled and before any checkpoint or
  journal exists, so the fix the message names (e.g. rerun with --create-target) just works;
* ``replicate stop`` with nothing running exits 6 (docs/live-migration.md), a missing status
  file included;
* a failed job's error line is printed once (known defect, see the xfail below).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import click
import pytest
from click.testing import CliRunner, Result

from ddbmigrate.cli import main
from support import as_set, boto_client, create_table, one_error_line, put_items, scan_all, unique

pytestmark = pytest.mark.integration


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def base(endpoint: str) -> List[str]:
    return ["--endpoint-url", endpoint, "--region", "us-east-1"]




def nothing_written(tmp_path: Path) -> None:
    state = tmp_path / ".ddbmigrate"
    left = sorted(str(p.relative_to(tmp_path)) for p in state.rglob("*")) if state.exists() else []
    assert left == [], left


def source_with_items(endpoint: str, n: int = 5) -> str:
    src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    put_items(endpoint, src, [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(n)])
    return src


def exists(endpoint: str, table: str) -> bool:
    return table in boto_client(endpoint).list_tables()["TableNames"]


# --------------------------------------------------------------------------- C: refuse up front


def test_missing_target_is_refused_before_any_checkpoint_and_create_target_then_works(
        endpoint: str, tmp_path: Path) -> None:
    src = source_with_items(endpoint)
    dst = unique("nosuch")
    r = cli("replicate", src, dst, *base(endpoint), "--yes")
    one_error_line(r, 1, dst, "does not exist", "--create-target", alone=False)
    nothing_written(tmp_path)
    assert not exists(endpoint, dst)

    # The obvious fix, as the message says: no "checkpoint of an unfinished run exists".
    again = cli("replicate", src, dst, *base(endpoint), "--yes", "--create-target", "--stop-after-idle", "1",
                "--poll-interval", "0.1", "--progress", "off", "--quiet")
    assert again.exit_code == 0, (again.exit_code, again.stderr)
    assert "checkpoint" not in again.stderr
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))


def test_a_source_without_stream_is_not_enabled_for_a_job_refused_anyway(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)  # no stream: --yes would enable one
    dst = unique("nosuch")
    r = cli("replicate", src, dst, *base(endpoint), "--yes")
    one_error_line(r, 1, "--create-target", alone=False)
    assert not boto_client(endpoint).describe_table(TableName=src)["Table"].get("StreamSpecification")
    nothing_written(tmp_path)


def test_a_bad_target_spec_is_refused_before_any_checkpoint(endpoint: str, tmp_path: Path) -> None:
    src = source_with_items(endpoint)
    spec = tmp_path / "target.yaml"
    spec.write_text("KeySchema: [{AttributeName: pk, KeyType: HASH}]\n")  # no AttributeDefinitions
    r = cli("replicate", src, unique("nosuch"), *base(endpoint), "--yes", "--target-spec", str(spec))
    one_error_line(r, 2, str(spec), "AttributeDefinitions", alone=False)
    spec.unlink()
    nothing_written(tmp_path)


def test_no_backfill_onto_a_missing_target_is_refused_before_any_checkpoint(endpoint: str, tmp_path: Path) -> None:
    src = source_with_items(endpoint)
    dst = unique("nosuch")
    r = cli("replicate", src, dst, *base(endpoint), "--yes", "--no-backfill", "--create-target")
    one_error_line(r, 1, dst, "--no-backfill", alone=False)
    nothing_written(tmp_path)
    assert not exists(endpoint, dst)



def test_clean_target_with_no_backfill_is_refused_not_ignored(endpoint: str, tmp_path: Path) -> None:
    """Before: `--no-backfill --clean-target --yes` ran, the target kept as it was."""
    src = source_with_items(endpoint)
    dst = create_table(endpoint)
    put_items(endpoint, dst, [{"pk": {"S": "stale"}}])
    r = cli("replicate", src, dst, *base(endpoint), "--no-backfill", "--clean-target", "--yes", "--max-runtime", "2",
            "--progress", "off", "--quiet")
    one_error_line(r, 2, "--clean-target", "--no-backfill", alone=False)
    nothing_written(tmp_path)
    assert as_set(scan_all(endpoint, dst)) == as_set([{"pk": {"S": "stale"}}])


def test_an_unconfirmed_clean_target_is_refused_before_any_checkpoint(endpoint: str, tmp_path: Path) -> None:
    src = source_with_items(endpoint)
    dst = create_table(endpoint)
    put_items(endpoint, dst, [{"pk": {"S": "stale"}}])
    # No --yes and no terminal: the clean is not confirmed.
    r = cli("replicate", src, dst, *base(endpoint), "--clean-target", "--progress", "off")
    one_error_line(r, 2, "not emptying", dst, "--yes", alone=False)
    nothing_written(tmp_path)
    assert as_set(scan_all(endpoint, dst)) == as_set([{"pk": {"S": "stale"}}])

    # With --yes the fresh run cleans and backfills (asked once, up front; not a resumed run
    # that would skip the clean).
    ok = cli("replicate", src, dst, *base(endpoint), "--clean-target", "--yes", "--stop-after-idle", "1",
             "--poll-interval", "0.1", "--progress", "off", "--quiet")
    assert ok.exit_code == 0, (ok.exit_code, ok.stderr)
    assert as_set(scan_all(endpoint, dst)) == as_set(scan_all(endpoint, src))


# --------------------------------------------------------------------------- D: stop, nothing running


def test_stop_with_no_status_file_is_not_running_exit_6(endpoint: str, tmp_path: Path) -> None:
    r = cli("replicate", "stop", "aaa", "bbb", *base(endpoint))
    assert r.exit_code == 6, (r.exit_code, r.stderr, r.exception)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("not running: no replication status at "), r.stderr

    r = cli("replicate", "stop", "--status-file", str(tmp_path / "nowhere" / "status.json"))
    assert r.exit_code == 6 and "not running" in r.stderr, (r.exit_code, r.stderr)
    nothing_written(tmp_path)


# --------------------------------------------------------------------------- E: the error line once


def test_a_failed_jobs_error_line_is_printed_once() -> None:
    from ddbmigrate.cli.render import handle_errors
    from ddbmigrate.errors import InterruptedError_
    from ddbmigrate.reporting.report import Report

    @click.command()
    @handle_errors
    def copy_cmd(**kw: Any) -> int:
        # What an interrupted copy raises: its error, carrying its report (engine/run.py finish).
        e = InterruptedError_("interrupted; checkpoint saved to c.json; rerun the same command with --resume")
        rep = Report(job="copy", source="a", target="b", status="interrupted")
        rep.error = e.one_line()
        e.report = rep  # type: ignore[attr-defined]
        raise e

    r = CliRunner().invoke(copy_cmd, [])
    assert r.exit_code == 130
    assert r.stderr.count("interrupted; checkpoint saved to c.json") == 1, r.stderr
