"""``--report FILE`` of a job that fails before its pipeline starts still exists: the normal
report's fields, the real exit code, the error line and zero counts. A report the run wrote itself
is left as it is, and a stale one of an earlier run is replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner, Result

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.cli import main
from ddbmigrate.core.records import COUNTER_NAMES
from ddbmigrate.jobs.export import export_table
from support import create_table, one_error_line, put_items

pytestmark = pytest.mark.integration

UNREACHABLE = ["--endpoint-url", "http://127.0.0.1:1", "--max-attempts", "1"]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))




def failed_report(path: Path, code: int, *, job: str = "import") -> Dict[str, Any]:
    rep: Dict[str, Any] = json.loads(path.read_text())
    assert (rep["job"], rep["status"], rep["exit_code"]) == (job, "failed", code)
    assert rep["error"]
    assert rep["balanced"] is True
    return rep


@pytest.fixture(scope="module")
def normal_keys(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    """The fields of a successful import's report: a failure's report has the same ones."""
    d = tmp_path_factory.mktemp("ok")
    (d / "t.json").write_text('{"pk": "a"}\n')
    table = create_table(endpoint)
    r = cli("import", str(d / "t.json"), table, "--endpoint-url", endpoint, "--report", str(d / "ok.json"), "-q")
    assert r.exit_code == 0, r.stderr
    return sorted(json.loads((d / "ok.json").read_text()))


def test_a_nonexistent_source_leaves_a_report_with_exit_2(endpoint: str, tmp_path: Path,
                                                           normal_keys: List[str]) -> None:
    table = create_table(endpoint)
    rp = tmp_path / "r.json"
    r = cli("import", str(tmp_path / "nope.json"), table, "--endpoint-url", endpoint, "--report", str(rp), "-q")
    line = one_error_line(r, 2)
    rep = failed_report(rp, 2)
    assert rep["error"] in line and "does not exist" in rep["error"]
    assert sorted(rep) == normal_keys
    assert rep["counters"] == dict.fromkeys(COUNTER_NAMES, 0)
    assert table in rep["target"]


def test_an_unreachable_endpoint_leaves_a_report_with_exit_75(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{"pk": "a"}\n')
    rp = tmp_path / "r.json"
    r = cli("import", str(tmp_path / "t.json"), "Orders", *UNREACHABLE, "--report", str(rp), "-q")
    assert r.exit_code == 75, r.stderr
    assert "Traceback" not in r.stderr
    rep = failed_report(rp, 75)
    assert "cannot reach" in rep["error"] and rep["counters"]["written"] == 0


@pytest.mark.parametrize("argv,job", [
    (["copy", "Orders", "Orders2"], "copy"),
    (["export", "Orders", "out"], "export"),
    (["clean", "Orders", "--yes"], "clean"),
    (["verify", "Orders", "Orders2"], "verify"),
])
def test_every_job_command_leaves_its_report(argv: List[str], job: str, tmp_path: Path) -> None:
    rp = tmp_path / "r.json"
    r = cli(*argv, *UNREACHABLE, "--report", str(rp), "-q")
    assert r.exit_code == 75, r.stderr
    rep = failed_report(rp, 75, job=job)
    if job == "verify":
        assert rep["differences"] == 0  # VerifyReport's own fields, as a normal verify report


def test_a_usage_error_found_after_parsing_leaves_a_report(tmp_path: Path) -> None:
    rp = tmp_path / "r.json"
    r = cli("copy", "Orders", "Orders2", "--target-endpoint-url", "not-a-url", "--report", str(rp), "-q")
    line = one_error_line(r, 2)
    rep = failed_report(rp, 2, job="copy")
    assert "--target-endpoint-url" in line and "--target-endpoint-url" in rep["error"]


def test_a_stale_report_is_replaced(tmp_path: Path) -> None:
    rp = tmp_path / "r.json"
    rp.write_text('{"job": "import", "status": "done", "exit_code": 0}')
    r = cli("import", str(tmp_path / "nope.json"), "Orders", *UNREACHABLE, "--report", str(rp), "-q")
    assert r.exit_code == 2
    failed_report(rp, 2)


def test_a_plan_that_cannot_be_read_leaves_a_plan_report(tmp_path: Path) -> None:
    rp = tmp_path / "r.json"
    r = cli("run", str(tmp_path / "nope.yaml"), "--report", str(rp), "-q")
    assert r.exit_code == 2
    rep = json.loads(rp.read_text())
    assert (rep["kind"], rep["status"], rep["exit_code"], rep["jobs"]) == ("plan", "failed", 2, [])
    assert "nope.yaml" in rep["error"]


@pytest.fixture
def exported(endpoint: str, tmp_path: Path) -> Path:
    """An export folder (DynamoDB's layout, one data file) of a 3-item table."""
    src = create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i}"}} for i in range(3)])
    rep = export_table(TableRef(src, endpoint_url=endpoint, region="us-east-1"), str(tmp_path / "exp"),
                       RunOptions(segments=1))
    return Path(str(rep.extra["export_path"]))


def test_a_data_file_missing_from_a_manifest_leaves_a_report(endpoint: str, tmp_path: Path,
                                                              exported: Path) -> None:
    (data,) = exported.glob("data/*.json.gz")
    data.unlink()
    table = create_table(endpoint)
    rp = tmp_path / "r.json"
    r = cli("import", str(exported), table, "--endpoint-url", endpoint, "--report", str(rp), "-q")
    line = one_error_line(r, 1)
    rep = failed_report(rp, 1)
    assert data.name in line and data.name in rep["error"] and rep["counters"]["written"] == 0


def test_a_report_the_run_wrote_itself_is_kept(endpoint: str, tmp_path: Path, exported: Path) -> None:
    (data,) = exported.glob("data/*.json.gz")
    data.write_bytes(data.read_bytes()[:-12])  # a truncated gzip: found inside the run
    table = create_table(endpoint)
    rp = tmp_path / "r.json"
    r = cli("import", str(exported), table, "--endpoint-url", endpoint, "--report", str(rp), "-q")
    assert r.exit_code == 1, r.stderr
    rep = json.loads(rp.read_text())
    assert rep["exit_code"] == 1 and rep["extra"].get("failed_files"), rep  # the engine's own report


def test_a_missing_import_target_names_imports_own_options_and_leaves_a_report(endpoint: str,
                                                                               tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{"pk": "a"}\n')
    rp = tmp_path / "r.json"
    r = cli("import", str(tmp_path / "t.json"), "NoSuchTable", "--endpoint-url", endpoint, "--report", str(rp),
            "-q")
    line = one_error_line(r, 1)
    assert "--create-target --spec FILE" in line and "--target-spec" not in line
    failed_report(rp, 1)


def test_every_command_that_writes_a_report_has_a_failure_report() -> None:
    import click

    from ddbmigrate.cli.render import FAILURE_REPORTS

    def walk(group: click.Group) -> List[click.Command]:
        out: List[click.Command] = []
        for cmd in group.commands.values():
            out += walk(cmd) if isinstance(cmd, click.Group) else [cmd]
        return out

    for cmd in walk(main):
        if {"report", "report_path"} & {p.name for p in cmd.params} and cmd.callback is not None:
            name = cmd.callback.__name__.removesuffix("_cmd").replace("_", " ")
            if not name.startswith("estimate") and name != "demo":  # estimates write none; demo's job does
                assert name in FAILURE_REPORTS, name
