"""The summary and the report of a job name the endpoint the data really went to, also when it
was set by AWS_ENDPOINT_URL(_DYNAMODB) or a profile's ``endpoint_url`` (they named it only when
given with --endpoint-url: a copy into DynamoDB Local read as one into AWS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from support import create_table, put_items

pytestmark = pytest.mark.integration


def run(args: List[str], cwd: Path, env: Dict[str, str]) -> "subprocess.CompletedProcess[str]":
    full = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    full.update({"AWS_CONFIG_FILE": str(cwd / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(cwd / "aws-creds"),
                 "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    full.update(env)
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("how", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "profile"])
def test_the_summary_and_report_name_an_endpoint_not_given_as_an_option(endpoint: str, tmp_path: Path,
                                                                       how: str) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i}"}} for i in range(3)])
    # (a named profile takes its credentials from the files, not the environment)
    (tmp_path / "aws-config").write_text(f"[profile local]\nregion = us-east-1\nendpoint_url = {endpoint}\n"
                                         "aws_access_key_id = x\naws_secret_access_key = x\n")
    args = ["copy", src, dst, "--report", "run.json", "--progress", "off"]
    if how == "profile":
        env: Dict[str, str] = {}
        args += ["--profile", "local"]
    else:
        env = {how: endpoint}
    r = run(args, tmp_path, env)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "run.json").read_text())
    assert rep["source"] == f"{src} @ us-east-1 @ {endpoint}", rep["source"]
    assert rep["target"] == f"{dst} @ us-east-1 @ {endpoint}", rep["target"]
    assert f"{dst} @ us-east-1 @ {endpoint}" in r.stderr, r.stderr  # the summary table's target row
    shown = run(["report", "run.json"], tmp_path, {})
    assert shown.returncode == 0 and endpoint in shown.stdout, shown.stdout + shown.stderr


def test_a_failure_report_names_the_endpoint_of_the_environment_too(endpoint: str, tmp_path: Path) -> None:
    (tmp_path / "aws-config").write_text("")
    r = run(["copy", "nosuch-src-table", "nosuch-dst-table", "--report", "run.json", "--progress", "off"], tmp_path,
            {"AWS_ENDPOINT_URL": endpoint})
    assert r.returncode != 0
    rep = json.loads((tmp_path / "run.json").read_text())
    assert rep["status"] == "failed" and rep["source"].endswith(f"@ {endpoint}"), rep
