"""Option values the CLI refuses before any work: exit 2 and one line naming the option, never an
internal error, a traceback, or a value silently replaced by its default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner, Result

from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.cli import main
from ddbmigrate.cli.options import build_run_options
from ddbmigrate.config import TableRef, endpoint_problem
from ddbmigrate.errors import TableNotFoundError, UsageError
from ddbmigrate.jobs.common import prepare_target

from support import one_usage_line


def run(args: List[str], **env: str) -> Result:
    return CliRunner().invoke(main, args, env=env or None)




@pytest.fixture
def data(tmp_path: Path) -> str:
    p = tmp_path / "t.json"
    p.write_text('{"pk": "a"}\n')
    return str(p)


# --------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize("url", ["not-a-url", "ftp://h:1", "http://", "http://h:99999", "http:///path"])
def test_a_malformed_endpoint_url_is_a_usage_error_naming_the_option(data: str, url: str) -> None:
    line = one_usage_line(run(["import", data, "Orders", "--endpoint-url", url, "-q"]), "--endpoint-url", url)
    assert "ValueError" not in line


@pytest.mark.parametrize("side", ["source", "target"])
def test_a_side_endpoint_is_named_by_its_own_option(side: str) -> None:
    other = "target" if side == "source" else "source"
    r = run(["copy", "Orders", "Orders2", f"--{side}-endpoint-url", "not-a-url",
             f"--{other}-endpoint-url", "http://127.0.0.1:1", "-q"])
    one_usage_line(r, f"--{side}-endpoint-url", "not-a-url")


def test_a_side_option_wins_over_a_bad_shared_one_only_for_its_side() -> None:
    r = run(["copy", "Orders", "Orders2", "--endpoint-url", "bad", "--source-endpoint-url", "http://127.0.0.1:1",
             "-q"])
    line = one_usage_line(r, "--endpoint-url 'bad'")
    assert "--source-endpoint-url" not in line


@pytest.mark.parametrize("var", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"])
def test_a_malformed_endpoint_variable_is_one_line_naming_it(data: str, var: str) -> None:
    one_usage_line(run(["import", data, "Orders", "-q"], **{var: "not-a-url"}), var, "not-a-url")


def test_a_malformed_s3_endpoint_is_named_too(data: str) -> None:
    r = run(["import", data, "Orders", "--endpoint-url", "http://127.0.0.1:1", "--s3-endpoint-url", "zz", "-q"])
    one_usage_line(r, "--s3-endpoint-url", "zz")


@pytest.mark.parametrize("argv", [["schema", "diff", "Orders", "Orders2"], ["migrations", "status"],
                                  ["verify", "Orders", "Orders2"]])
def test_other_commands_check_their_endpoint_too(argv: List[str]) -> None:
    one_usage_line(run([*argv, "--endpoint-url", "not-a-url"]), "--endpoint-url", "not-a-url")


def test_a_library_client_refuses_a_malformed_endpoint_with_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="not-a-url"):
        DynamoClient(TableRef("Orders", region="us-east-1", endpoint_url="not-a-url"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "ftp://h:1")  # botocore takes it; our transport could not
    with pytest.raises(UsageError, match="ftp://h:1"):
        DynamoClient(TableRef("Orders", region="us-east-1"))


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "https://dynamodb.eu-west-1.amazonaws.com",
                                 "http://localhost:4566/", "http://[::1]:8000", "https://vpce-1.example.com/x"])
def test_good_endpoints_pass(url: str) -> None:
    assert endpoint_problem(url) is None


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("n", ["0", "-1"])
@pytest.mark.parametrize("cmd", ["import", "copy", "verify", "export"])
def test_max_attempts_below_one_is_refused(data: str, cmd: str, n: str) -> None:
    args = {"import": ["import", data, "Orders"], "copy": ["copy", "Orders", "Orders2"],
            "verify": ["verify", "Orders", "Orders2"], "export": ["export", "Orders", "out"]}[cmd]
    r = run([*args, "--endpoint-url", "http://127.0.0.1:1", "--max-attempts", n, "-q"])
    one_usage_line(r, "--max-attempts", n)


def test_max_attempts_defaults_to_ten_only_when_absent() -> None:
    assert build_run_options({}).retry.max_attempts == 10
    assert build_run_options({"max_attempts": None}).retry.max_attempts == 10
    assert build_run_options({"max_attempts": 3}).retry.max_attempts == 3
    with pytest.raises(UsageError, match="--max-attempts"):
        build_run_options({"max_attempts": 0})


@pytest.mark.parametrize("kw", [{"checkpoint_every": 0}, {"checkpoint_every": 0.0}, {"drain_timeout": -1}])
def test_zero_is_not_swallowed_by_a_default(kw: Dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        build_run_options(kw)
    assert build_run_options({"drain_timeout": 0}).drain_timeout == 0


def test_checkpoint_every_zero_is_a_usage_error(data: str) -> None:
    r = run(["import", data, "Orders", "--endpoint-url", "http://127.0.0.1:1", "--checkpoint-every", "0", "-q"])
    one_usage_line(r, "--checkpoint-every")


def test_export_file_size_zero_is_refused_not_rounded_up() -> None:
    r = run(["export", "Orders", "out", "--endpoint-url", "http://127.0.0.1:1", "--file-size", "0", "-q"])
    one_usage_line(r, "--file-size")


# --------------------------------------------------------------------------- combinations


def test_sample_without_dry_run_is_a_usage_error(data: str) -> None:
    r = run(["import", data, "Orders", "--endpoint-url", "http://127.0.0.1:1", "--sample", "3", "-q"])
    one_usage_line(r, "--sample", "--dry-run")
    r = run(["copy", "Orders", "Orders2", "--endpoint-url", "http://127.0.0.1:1", "--sample", "3", "-q"])
    one_usage_line(r, "--sample", "--dry-run")


def test_sample_with_dry_run_and_sample_zero_are_accepted() -> None:
    assert build_run_options({"sample": 3, "dry_run": True}).sample == 3
    assert build_run_options({"sample": 0}).sample == 0
    with pytest.raises(UsageError, match="--sample"):
        build_run_options({"sample": -1, "dry_run": True})


def test_bulk_put_without_native_says_it_needs_native(data: str) -> None:
    r = run(["import", data, "Orders", "--endpoint-url", "http://127.0.0.1:1", "--bulk-put", "-q"])
    line = one_usage_line(r, "--bulk-put", "--native")
    assert "read S3" not in line


# --------------------------------------------------------------------------- a missing target's hint


class _NoTable:
    """A client whose table does not exist (no I/O)."""

    endpoint = "http://127.0.0.1:1"

    def __init__(self, name: str) -> None:
        self.ref = TableRef(name)

    def describe_table(self) -> Dict[str, Any]:
        raise TableNotFoundError("no such table", table=self.ref.table)


def test_a_missing_import_target_names_imports_options() -> None:
    with pytest.raises(TableNotFoundError) as e:
        prepare_target(_NoTable("Orders"))  # type: ignore[arg-type]  # files: no source table
    msg = e.value.one_line()
    assert "--create-target" in msg and "--spec FILE" in msg
    assert "--target-spec" not in msg and "source's schema" not in msg


def test_a_missing_copy_target_still_names_copys_options() -> None:
    with pytest.raises(TableNotFoundError) as e:
        prepare_target(_NoTable("Orders"), source_desc={"TableName": "Src"},  # type: ignore[arg-type]
                       source_client=_NoTable("Src"))  # type: ignore[arg-type]
    msg = e.value.one_line()
    assert "--create-target" in msg and "--target-spec FILE" in msg


@pytest.mark.parametrize("opt", ["--max-write-units", "--max-read-units", "--drain-timeout", "--checkpoint-every",
                                 "--write-percent"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_rate_or_time_that_is_not_a_finite_number_is_refused(opt: str, value: str) -> None:
    from ddbmigrate.cli.options import build_run_options
    from ddbmigrate.config import RunOptions

    kw = {opt.lstrip("-").replace("-", "_"): float(value)}
    if value == "inf" and opt in ("--drain-timeout",):
        RunOptions(drain_timeout=float("inf"))  # wait for the drain however long: allowed
        return
    with pytest.raises(UsageError, match=opt):
        build_run_options(kw)


def test_a_malformed_region_is_named_as_the_region_not_the_endpoint(data: str) -> None:
    line = one_usage_line(run(["import", data, "Orders", "--region", "us east 1", "-q"]), "invalid region", "us east 1")
    assert "endpoint" not in line


def test_a_transform_path_that_is_a_folder_is_said_to_be_one(tmp_path: Path) -> None:
    from ddbmigrate.core.transform import load_transform

    (tmp_path / "t.py").mkdir()
    with pytest.raises(UsageError) as e:
        load_transform(f"{tmp_path / 't.py'}:fn")
    assert "t.py is a folder; expected the .py file that defines fn" in str(e.value)


def test_a_blank_region_variable_is_named(data: str) -> None:
    one_usage_line(run(["import", data, "Orders", "--endpoint-url", "http://127.0.0.1:9", "-q"],
                       AWS_DEFAULT_REGION=" ", AWS_REGION="", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y"),
                   "invalid region ' '", "(from AWS_DEFAULT_REGION)")
    one_usage_line(run(["import", data, "Orders", "--endpoint-url", "http://127.0.0.1:9", "--region", "us east",
                        "-q"], AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y"),
                   "invalid region 'us east'", "(from the region option)")
    # AWS_REGION set too (as AWS's own environments do): botocore read AWS_DEFAULT_REGION, which is named.
    one_usage_line(run(["import", data, "Orders", "--endpoint-url", "http://127.0.0.1:9", "-q"],
                       AWS_DEFAULT_REGION=" ", AWS_REGION="eu-west-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y"),
                   "invalid region ' '", "(from AWS_DEFAULT_REGION)")


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix"])
def test_an_s3_url_naming_no_bucket_is_refused_not_taken_for_a_local_folder(tmp_path: Path, url: str,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    one_usage_line(run(["export", "Orders", url, "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1",
                        "-q"], AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y"), "expected s3://bucket/prefix")
    assert not (tmp_path / "s3:").exists()


def test_the_error_line_prints_control_characters_inertly(tmp_path: Path) -> None:
    """A message quotes the data (a transform's exception, a file name, a value): an escape
    sequence in it must not drive the terminal (an OSC sets the window title)."""
    name = str(tmp_path / "in\x1b]0;pwned\x07.json")
    r = run(["import", name, "Orders", "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1", "-q"],
            AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y")
    assert r.exit_code == 2, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output
    assert "in\\x1b]0;pwned\\x07.json" in r.output
