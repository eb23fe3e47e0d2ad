"""``ddbmigrate run PLAN --resume --force``: a plan's jobs resume a checkpoint made by another
definition of them (a fixed transform), as a single job's ``--force`` does, and the refusal inside
a plan names the plan's way out, not a ``--force`` that ``run`` would not have taken.

The last test runs the whole story on DynamoDB Local (marked ``integration``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml
from click.testing import CliRunner

from ddbmigrate.cli import main
from ddbmigrate.errors import FingerprintMismatchError, UsageError
from ddbmigrate.plan import load_plan, run_plan
from ddbmigrate.plan.run import _Runner


def _plan(tmp_path: Path, jobs: List[Dict[str, Any]], endpoint: str = "http://127.0.0.1:1") -> Path:
    side = {"endpoint_url": endpoint, "region": "us-east-1"}
    doc = {"version": 1, "defaults": {"source": side, "target": side}, "jobs": jobs, "state_dir": "st"}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _runner(path: Path, **kw: Any) -> _Runner:
    opts: Dict[str, Any] = dict(parallel=1, resume=False, restart=False, progress="off", stream=None,
                                fail_fast=False)
    opts.update(kw)
    return _Runner(load_plan(str(path)), **opts)


def test_force_reaches_every_job_s_run_options(tmp_path: Path) -> None:
    path = _plan(tmp_path, [{"kind": "copy", "source": "Orders", "target": "Orders2"}])
    job = load_plan(str(path)).jobs[0]
    assert _runner(path, resume=True, force=True).options(job).force is True
    assert _runner(path, resume=True, force=True).options(job).resume is True
    assert _runner(path, resume=True).options(job).force is False


def test_force_needs_resume(tmp_path: Path) -> None:
    path = _plan(tmp_path, [{"kind": "copy", "source": "Orders", "target": "Orders2"}])
    with pytest.raises(UsageError, match="--force .* needs --resume"):
        run_plan(str(path), force=True)
    r = CliRunner().invoke(main, ["run", str(path), "--force"])
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "needs --resume" in r.stderr and "No such option" not in r.stderr


def test_the_cli_takes_resume_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: Dict[str, Any] = {}

    def fake(path: str, **kw: Any) -> Any:
        seen.update(kw)
        raise UsageError("stopped by the test")

    import ddbmigrate.plan as plan_pkg

    monkeypatch.setattr(plan_pkg, "run_plan", fake)
    path = _plan(tmp_path, [{"kind": "copy", "source": "Orders", "target": "Orders2"}])
    r = CliRunner().invoke(main, ["run", str(path), "--resume", "--force"])
    assert r.exit_code == 2 and "stopped by the test" in r.stderr, r.stderr
    assert seen["resume"] is True and seen["force"] is True


def test_a_checkpoint_refusal_inside_a_plan_names_the_plan_s_way_out(tmp_path: Path) -> None:
    path = _plan(tmp_path, [{"kind": "copy", "source": "Orders", "target": "Orders2"}])
    runner = _runner(path, resume=True)
    err = FingerprintMismatchError("checkpoint st/checkpoints/x.checkpoint.json belongs to a different job "
                                   "(differs in: transform_hash); use --force to resume anyway or --restart to "
                                   "start over")
    line = runner._plan_error(err)
    assert "differs in: transform_hash" in line
    assert f"ddbmigrate run {path} --resume --force" in line and f"ddbmigrate run {path} --restart" in line
    assert "use --force to resume" not in line
    err2 = UsageError("a checkpoint of an unfinished run exists at st/x.json: add --resume to continue it or "
                      "--restart to start over")
    line = runner._plan_error(err2)
    assert f"ddbmigrate run {path} --resume" in line and f"ddbmigrate run {path} --restart" in line
    other = UsageError("something else")
    assert runner._plan_error(other) == "something else"


def test_a_refusal_that_force_cannot_lift_does_not_advise_it(tmp_path: Path) -> None:
    """A job moved to another target: "even with --force", then "use ... --resume --force to
    resume anyway" (which failed the same)."""
    path = _plan(tmp_path, [{"kind": "copy", "source": "Orders", "target": "Orders2"}])
    runner = _runner(path, resume=True)
    for text in ("checkpoint st/c.json is of a job with another target: its positions mean nothing for this one, "
                 "even with --force; use --restart to start over (or the old options to resume it)",
                 "checkpoint st/c.json is of a finished run of a different job (differs in: target); use --restart "
                 "to run this one",
                 "checkpoint st/c.json was made with 4 scan segments, and its positions mean nothing for 8: resume "
                 "with --segments 4 (or without --segments), or --restart to start over"):
        line = runner._plan_error(FingerprintMismatchError(text))
        assert "--force to resume anyway" not in line and line == text


FAILING = (
    "def f(item):\n"
    "    if item['pk'] == 'k0042':\n"
    "        raise RuntimeError('bug in the transform')\n"
    "    item['v'] = 1\n"
    "    return item\n"
)
FIXED = (
    "def f(item):\n"
    "    item['v'] = 2  # fixed\n"
    "    return item\n"
)


@pytest.mark.integration
def test_a_fixed_transform_resumes_with_resume_force_and_unblocks_the_dependents(
        endpoint: str, tmp_path: Path) -> None:
    from support import as_set, create_table, put_items, scan_all

    src = create_table(endpoint)
    items = [{"pk": {"S": f"k{i:04d}"}, "n": {"N": str(i)}} for i in range(120)]
    put_items(endpoint, src, items)
    (tmp_path / "tff.py").write_text(FAILING)
    path = _plan(tmp_path, [
        {"kind": "copy", "name": "first", "source": src, "target": src + "-a", "create_target": True,
         "transform": "tff.py:f", "options": {"segments": 1, "writers": 1, "on_error": "fail"}},
        {"kind": "copy", "name": "second", "after": ["first"], "source": src, "target": src + "-b",
         "create_target": True},
    ], endpoint=endpoint)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ddbmigrate", "run", str(path), "--quiet", *args],
                              capture_output=True, text=True, timeout=300)

    r = cli()
    assert r.returncode == 1, r.stderr
    (tmp_path / "tff.py").write_text(FIXED)

    r = cli("--resume", "--report", "r1.json")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    import json

    jobs = {j["name"]: j for j in json.loads(Path("r1.json").read_text())["jobs"]}
    assert jobs["first"]["status"] == "failed" and jobs["second"]["status"] == "blocked"
    error = jobs["first"]["error"]
    assert "differs in: transform_hash" in error, error
    assert f"ddbmigrate run {path} --resume --force" in error and f"ddbmigrate run {path} --restart" in error

    r = cli("--resume", "--force", "--report", "r2.json")
    assert r.returncode == 0, r.stderr
    jobs = {j["name"]: j for j in json.loads(Path("r2.json").read_text())["jobs"]}
    assert jobs["first"]["status"] == "done" and jobs["second"]["status"] == "done"
    got = scan_all(endpoint, src + "-a")
    assert {it["pk"]["S"] for it in got} == {it["pk"]["S"] for it in items}
    # The items written after the fix carry its value (the resumed part includes the failed one).
    assert next(it for it in got if it["pk"]["S"] == "k0042")["v"] == {"N": "2"}
    assert as_set(scan_all(endpoint, src + "-b")) == as_set(items)
